// Hostile and malformed clients over raw sockets: header limits, slowloris, request smuggling,
// HTTP/2 rapid reset, the connection limit, bad request targets; then access logs and metrics.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { Writable } from "node:stream";
import { startEcho, type EchoHttpResponse, type EchoServer } from "../echo/echo.ts";
import { createObserver, type Observer } from "./observe.ts";
import { backendService, objectsOf, randomLoopback, send, startStack, type Stack, httpGatewayYaml, until } from "./testkit.ts";

const NS = "demo";
const HOST = "hardening.example";

/** `addr` is where the backends listen. */
function manifests(addr: string, echo: number, recorder: number): string {
  return `${httpGatewayYaml(NS)}---
${backendService(NS, "echo", 8080, [{ address: addr, port: echo, pod: "echo-pod" }])}---
${backendService(NS, "recorder", 8080, [{ address: addr, port: recorder, pod: "recorder-pod" }])}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: ${NS}}
spec:
  parentRefs: [{name: gw}]
  hostnames: [${HOST}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /recorded}}]
    backendRefs: [{name: recorder, port: 8080}]
  - backendRefs: [{name: echo, port: 8080}]
`;
}

interface RawResult {
  data: string;
  /** The proxy closed the connection (rather than the test giving up). */
  closed: boolean;
  ms: number;
}

/** Writes bytes (all at once, or as timed chunks) and reads until the proxy closes or `waitMs` passes. */
function raw(address: string, port: number, chunks: (string | { delayMs: number })[], waitMs = 2000): Promise<RawResult> {
  return new Promise((resolve) => {
    const started = Date.now();
    const sock = net.connect({ host: address, port });
    let data = "";
    let done = false;
    const finish = (closed: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({ data, closed, ms: Date.now() - started });
    };
    const timer = setTimeout(() => finish(false), waitMs);
    sock.on("data", (c: Buffer) => (data += c.toString("latin1")));
    sock.on("close", () => finish(true));
    sock.on("error", () => finish(true));
    sock.once("connect", async () => {
      for (const c of chunks) {
        if (done) return;
        if (typeof c === "string") sock.write(c);
        else await new Promise((r) => setTimeout(r, c.delayMs));
      }
    });
  });
}

const statusOf = (r: RawResult): number => Number(/^HTTP\/1\.1 (\d{3})/.exec(r.data)?.[1] ?? 0);

/** HTTP/2 frame: 9-byte header and payload. */
function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream, 5);
  return Buffer.concat([h, payload]);
}

describe("hardening", () => {
  const addr = randomLoopback();
  const limitsAddr = randomLoopback();
  let echo: EchoServer;
  let recorder: http.Server;
  const recorded: string[] = [];
  let stack: Stack;
  let small: Stack;
  let observer: Observer;
  const logLines: string[] = [];
  const port = (): number => 80 + stack.portOffset;

  before(async () => {
    echo = await startEcho({ mode: "http", host: addr, port: 0, identity: { pod: "echo-pod", namespace: NS } });
    recorder = http.createServer((req, res) => {
      recorded.push(`${req.method} ${req.url}`);
      req.resume();
      req.on("end", () => res.end("ok"));
    });
    await new Promise<void>((r) => recorder.listen(0, addr, r));
    const recPort = (recorder.address() as net.AddressInfo).port;
    const capture = new Writable({
      write(chunk: Buffer, _enc, cb) {
        logLines.push(...chunk.toString().split("\n").filter(Boolean));
        cb();
      },
    });
    observer = createObserver({ accessLogStream: capture });
    const limits = { maxHeaderBytes: 4096, maxHeaders: 20, headersTimeoutMs: 600, requestTimeoutMs: 5000 };
    stack = await startStack(objectsOf(manifests(addr, echo.port, recPort)), { address: addr, proxy: { limits, observer } });
    small = await startStack(objectsOf(manifests(addr, echo.port, recPort)), { address: limitsAddr, proxy: { limits: { maxConnections: 3 } } });
  });
  after(async () => {
    await stack.close();
    await small.close();
    await echo.close();
    recorder.closeAllConnections();
    await new Promise<void>((r) => recorder.close(() => r()));
  });

  describe("request head limits", () => {
    it("answers 431 to a head larger than maxHeaderBytes", async () => {
      const r = await raw(addr, port(), [`GET / HTTP/1.1\r\nHost: ${HOST}\r\nX-Big: ${"a".repeat(5000)}\r\n\r\n`]);
      assert.equal(statusOf(r), 431, r.data);
      assert.ok(r.closed);
    });

    it("answers 431 to more headers than maxHeaders, and serves exactly maxHeaders", async () => {
      const many = Array.from({ length: 25 }, (_, i) => `X-H${i}: v\r\n`).join("");
      const r = await raw(addr, port(), [`GET / HTTP/1.1\r\nHost: ${HOST}\r\n${many}\r\n`]);
      assert.equal(statusOf(r), 431, r.data);
      const headers: Record<string, string> = {};
      for (let i = 0; i < 18; i++) headers[`x-h${i}`] = "v"; // plus Host and Connection: 20
      assert.equal((await send({ address: addr, port: port(), host: HOST, headers })).status, 200);
    });

    it("does not count HTTP/2 pseudo-headers against maxHeaders", async () => {
      const headers: Record<string, string> = {};
      for (let i = 0; i < 19; i++) headers[`x-h${i}`] = "v";
      const r = await send({ address: addr, port: port(), host: HOST, headers, h2: true });
      assert.equal(r.status, 200, r.body);
    });
  });

  describe("slow clients", () => {
    it("cuts a client that trickles its request head (slowloris) after headersTimeout", async () => {
      const trickle: (string | { delayMs: number })[] = [`GET / HTTP/1.1\r\nHost: ${HOST}\r\n`];
      for (let i = 0; i < 40; i++) trickle.push({ delayMs: 100 }, `X-Slow-${i}: v\r\n`);
      const r = await raw(addr, port(), trickle, 4000);
      assert.ok(r.closed, `still open after ${r.ms} ms`);
      assert.ok(r.ms < 2500, `closed after ${r.ms} ms`);
      assert.ok(r.data === "" || statusOf(r) === 408, r.data);
    });

    it("cuts a client that connects and sends nothing", async () => {
      const r = await raw(addr, port(), [], 4000);
      assert.ok(r.closed && r.ms < 2000, `closed=${r.closed} after ${r.ms} ms`);
    });

    it("cuts a client that trickles the bytes before the protocol is known", async () => {
      const trickle: (string | { delayMs: number })[] = [];
      for (const ch of "PRI * HTTP/2.0\r\n\r\nSM\r\n") trickle.push(ch, { delayMs: 150 });
      const r = await raw(addr, port(), trickle, 5000);
      assert.ok(r.closed && r.ms < 2000, `closed=${r.closed} after ${r.ms} ms`);
    });
  });

  describe("request smuggling", () => {
    const cases: [string, string][] = [
      ["Content-Length with Transfer-Encoding", "POST /recorded/a HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"],
      ["differing duplicate Content-Length", "POST /recorded/b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello"],
      ["a bad chunk size", "POST /recorded/c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"],
      ["a chunk size overflow", "POST /recorded/d HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\nhello\r\n0\r\n\r\n"],
      ["an unknown transfer coding", "POST /recorded/e HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"],
      ["whitespace before the colon", "POST /recorded/f HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n"],
    ];
    for (const [name, head] of cases) {
      it(`answers 400 and closes on ${name}`, async () => {
        const withHost = head.replace("Host: h", `Host: ${HOST}`);
        const r = await raw(addr, port(), [`${withHost}GET /recorded/smuggled HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`]);
        assert.equal(statusOf(r), 400, r.data);
        assert.ok(r.closed, "connection left open");
        assert.doesNotMatch(r.data, /HTTP\/1\.1 200/);
        await new Promise((res) => setTimeout(res, 50));
        assert.ok(!recorded.some((x) => x.includes("smuggled")), recorded.join("\n"));
      });
    }
  });

  describe("request targets", () => {
    it("answers 400 to a malformed request target", async () => {
      for (const target of ["foo", "*", "http//x/", "%%"]) {
        const r = await raw(addr, port(), [`GET ${target} HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`]);
        assert.equal(statusOf(r), 400, `${target}: ${r.data}`);
        assert.ok(r.closed, `${target}: connection left open`);
      }
    });

    it("routes an absolute-form target by its own authority, not the Host header", async () => {
      const r = await raw(addr, port(), [`GET http://${HOST}/abs?x=1 HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n`]);
      assert.equal(statusOf(r), 200, r.data);
      const body = JSON.parse(r.data.slice(r.data.indexOf("\r\n\r\n") + 4)) as EchoHttpResponse;
      assert.equal(body.path, "/abs?x=1");
      assert.equal(body.host, HOST);
      const other = await raw(addr, port(), [`GET http://other.example/abs HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`]);
      assert.equal(statusOf(other), 404, other.data);
    });

    it("answers OPTIONS * itself, empty, and keeps the connection", async () => {
      const r = await raw(addr, port(), [`OPTIONS * HTTP/1.1\r\nHost: ${HOST}\r\n\r\nGET / HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`]);
      const [first, second] = r.data.split(/(?=HTTP\/1\.1 )/);
      assert.equal(statusOf({ ...r, data: first ?? "" }), 200, r.data);
      assert.match(first ?? "", /\r\ncontent-length: 0\r\n/i);
      assert.equal(first?.slice(first.indexOf("\r\n\r\n") + 4), "", "OPTIONS * got a body");
      assert.equal(statusOf({ ...r, data: second ?? "" }), 200, r.data);
    });
  });

  describe("HTTP/2 rapid reset", () => {
    it("survives thousands of opened-and-reset streams and keeps serving others", async () => {
      const authority = Buffer.from(HOST);
      // HPACK: :method GET, :scheme http, :path / (static table), :authority literal without indexing.
      const block = Buffer.concat([Buffer.from([0x82, 0x86, 0x84, 0x01, authority.length]), authority]);
      const cancel = Buffer.from([0, 0, 0, 8]);
      const attacker = net.connect({ host: addr, port: port() });
      attacker.on("error", () => undefined);
      let attackerClosed = false;
      attacker.on("close", () => (attackerClosed = true));
      attacker.on("data", () => undefined);
      await new Promise<void>((r) => attacker.once("connect", () => r()));
      attacker.write(Buffer.concat([Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1"), frame(4, 0, 0, Buffer.alloc(0))]));
      const started = Date.now();
      let stream = 1;
      const bystander: Promise<number>[] = [];
      for (let batch = 0; batch < 20 && !attackerClosed; batch++) {
        const frames: Buffer[] = [];
        for (let i = 0; i < 500; i++, stream += 2) frames.push(frame(1, 0x5, stream, block), frame(3, 0, stream, cancel));
        attacker.write(Buffer.concat(frames));
        if (batch % 5 === 0) bystander.push(send({ address: addr, port: port(), host: HOST, path: "/during", timeoutMs: 5000 }).then((r) => r.status, () => 0));
        await new Promise((r) => setImmediate(r));
      }
      const statuses = await Promise.all(bystander);
      assert.deepEqual(statuses, statuses.map(() => 200));
      // Others are served right after the attack, over HTTP/1.1 and HTTP/2.
      assert.equal((await send({ address: addr, port: port(), host: HOST, path: "/after", timeoutMs: 3000 })).status, 200);
      assert.equal((await send({ address: addr, port: port(), host: HOST, path: "/after", h2: true, timeoutMs: 3000 })).status, 200);
      assert.ok(Date.now() - started < 8000, `took ${Date.now() - started} ms`);
      // nghttp2's reset rate limit answers the flood with GOAWAY and the session is closed.
      assert.ok(await until(() => attackerClosed, 3000), "attacking connection still open");
      attacker.destroy();
    });
  });

  describe("connection limit", () => {
    it("refuses connections past maxConnections and accepts again when one closes", async () => {
      const p = 80 + small.portOffset;
      const open = (): Promise<net.Socket> =>
        new Promise((resolve, reject) => {
          const s = net.connect({ host: limitsAddr, port: p }, () => resolve(s));
          s.on("error", reject);
        });
      const held = [await open(), await open(), await open()];
      await new Promise((r) => setTimeout(r, 50));
      const extra = await raw(limitsAddr, p, [`GET / HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`], 2000);
      assert.ok(extra.closed, "extra connection served");
      assert.equal(extra.data, "");
      (held.pop() as net.Socket).destroy();
      await new Promise((r) => setTimeout(r, 50));
      const again = await raw(limitsAddr, p, [`GET / HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`], 2000);
      assert.equal(statusOf(again), 200, again.data);
      for (const s of held) s.destroy();
    });
  });

  describe("observability", () => {
    it("writes one JSON access log line per request with route, backend and status", async () => {
      const path = `/logged-${Date.now()}`;
      await send({ address: addr, port: port(), host: HOST, path, headers: { "x-request-id": "req-123" } });
      await send({ address: addr, port: port(), host: "unrouted.example", path: "/nope" });
      await new Promise((r) => setTimeout(r, 100));
      const entries = logLines.map((l) => JSON.parse(l) as Record<string, unknown>);
      const mine = entries.find((e) => e.path === path);
      assert.ok(mine, `no line for ${path}`);
      assert.equal(mine.status, 200);
      assert.equal(mine.route, `HTTPRoute/${NS}/r/1`);
      assert.equal(mine.backend, `${NS}/echo:8080`);
      assert.equal(mine.method, "GET");
      assert.equal(mine.requestId, "req-123");
      assert.equal(typeof mine.durationMs, "number");
      assert.equal(typeof mine.time, "string");
      const unrouted = entries.find((e) => e.host === "unrouted.example");
      assert.equal(unrouted?.status, 404);
      assert.equal(unrouted?.route, undefined);
    });

    it("counts requests by route, backend and code, never by path", async () => {
      const path = `/metric-path-${Date.now()}`;
      await send({ address: addr, port: port(), host: HOST, path });
      await send({ address: addr, port: port(), host: HOST, path, headers: { "x-echo-status": "503" } });
      const text = await observer.registry.metrics();
      const line = (code: string): string | undefined =>
        text.split("\n").find((l) => l.startsWith("sluice_proxy_requests_total{") && l.includes(`route="HTTPRoute/${NS}/r/1"`) && l.includes(`backend="${NS}/echo:8080"`) && l.includes(`code="${code}"`));
      assert.ok(line("200"), text);
      assert.ok(line("503"), text);
      assert.ok(Number(line("200")?.split(" ").pop()) >= 1);
      assert.doesNotMatch(text, /metric-path-/);
      assert.match(text, /sluice_proxy_request_duration_seconds_bucket\{/);
    });

    it("logs a WebSocket once its tunnel closes: 101 over HTTP/1.1, 200 over HTTP/2", async () => {
      const h1Path = `/ws-h1-${Date.now()}`;
      const s = net.connect({ host: addr, port: port() });
      const key = Buffer.alloc(16, 1).toString("base64");
      s.write(`GET ${h1Path} HTTP/1.1\r\nhost: ${HOST}\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: ${key}\r\nsec-websocket-version: 13\r\n\r\n`);
      const head = await new Promise<string>((resolve) => {
        let got = "";
        s.on("data", (c: Buffer) => {
          got += c.toString("latin1");
          if (got.includes("\r\n\r\n")) resolve(got);
        });
      });
      assert.match(head, /^HTTP\/1\.1 101 /);
      // Nothing is logged while the tunnel is open.
      await new Promise((r) => setTimeout(r, 50));
      const lineFor = (path: string): Record<string, unknown> | undefined => logLines.map((l) => JSON.parse(l) as Record<string, unknown>).find((e) => e.path === path);
      assert.equal(lineFor(h1Path), undefined);
      s.end();
      await until(() => lineFor(h1Path) !== undefined, 2000);
      assert.deepEqual({ ...lineFor(h1Path), level: 0, time: 0, durationMs: 0, client: 0, requestId: 0 }, {
        level: 0, method: "GET", host: HOST, path: h1Path, proto: "1.1", status: 101, route: `HTTPRoute/${NS}/r/1`, backend: `${NS}/echo:8080`, time: 0, durationMs: 0, client: 0, requestId: 0,
      });

      const h2Path = `/ws-h2-${Date.now()}`;
      const session = http2.connect(`http://${addr}:${port()}`);
      session.on("error", () => undefined);
      await new Promise((r) => session.once("remoteSettings", r));
      const stream = session.request({ ":method": "CONNECT", ":protocol": "websocket", ":scheme": "http", ":path": h2Path, ":authority": HOST, "sec-websocket-version": "13" }, { endStream: false });
      assert.equal(await new Promise((resolve) => stream.once("response", (h) => resolve(h[":status"]))), 200);
      stream.end();
      stream.resume();
      await until(() => lineFor(h2Path) !== undefined, 2000);
      session.destroy();
      const h2 = lineFor(h2Path);
      assert.equal(h2?.status, 200);
      assert.equal(h2?.method, "CONNECT");
      assert.equal(h2?.route, `HTTPRoute/${NS}/r/1`);
    });

    it("records an HTTP/2 stream reset before the answer as code 0", async () => {
      const session = http2.connect(`http://${addr}:${port()}`);
      session.on("error", () => undefined);
      const s = session.request({ ":path": "/reset-me", ":authority": HOST, "x-echo-delay-ms": "300" });
      s.on("error", () => undefined);
      s.end();
      await new Promise((r) => setTimeout(r, 100));
      s.close(http2.constants.NGHTTP2_CANCEL);
      await new Promise((r) => setTimeout(r, 100));
      session.destroy();
      const line = logLines.map((l) => JSON.parse(l) as Record<string, unknown>).find((e) => e.path === "/reset-me");
      assert.equal(line?.status, 0);
    });
  });
});
