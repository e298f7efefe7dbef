// Timeouts, retries, passive ejection and cancellation through real sockets. Retries follow the
// HTTPRouteRetry conformance tests, against a backend that fails a given number of times per id.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import http2 from "node:http2";
import type net from "node:net";
import { randomUUID } from "node:crypto";
import { startEcho, type EchoHttpResponse, type EchoServer } from "../echo/echo.ts";
import { backendService, objectsOf, randomLoopback, send, startStack, type Reply, type Stack, httpGatewayYaml, until, deadPort } from "./testkit.ts";

const NS = "demo";
const HOST = "resilience.example";

/**
 * The conformance suite's retry simulator: per `id`, the first `succeedAfter` attempts fail, with
 * `responseCode` or else a TCP reset, each after `delayRetry` ms; later attempts answer 200.
 * `/hold` never answers and records when its request is cancelled.
 */
interface Flaky {
  port: number;
  attempts: Map<string, number[]>;
  held: { started: number; cancelled: number };
  close(): Promise<void>;
}

async function startFlaky(address: string): Promise<Flaky> {
  const attempts = new Map<string, number[]>();
  const held = { started: 0, cancelled: 0 };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    if (url.pathname === "/hold") {
      held.started++;
      res.on("close", () => void (res.writableFinished || held.cancelled++));
      req.resume();
      return;
    }
    const id = url.searchParams.get("id") ?? "";
    const list = attempts.get(id) ?? [];
    list.push(Date.now());
    attempts.set(id, list);
    const fail = list.length <= Number(url.searchParams.get("succeedAfter") ?? "0");
    const code = Number(url.searchParams.get("responseCode") ?? "0");
    const delay = fail ? Number(url.searchParams.get("delayRetry") ?? "0") : 0;
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      setTimeout(() => {
        if (!fail) return void res.end(JSON.stringify({ ok: true, attempt: list.length, body: Buffer.concat(chunks).toString() }));
        if (code) {
          res.writeHead(code, { "content-type": "text/plain" });
          return void res.end("failing on purpose");
        }
        req.socket.resetAndDestroy();
      }, delay);
    });
  });
  await new Promise<void>((r) => server.listen(0, address, r));
  return {
    port: (server.address() as net.AddressInfo).port,
    attempts,
    held,
    close: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}

function manifests(addr: string, p: { echo: number; echo2: number; flaky: number; dead: number; dead2: number }): string {
  const rule = (path: string, backend: string, extra: string): string => `  - matches: [{path: {type: PathPrefix, value: ${path}}}]
    backendRefs: [{name: ${backend}, port: 8080}]
${extra ? `    ${extra}\n` : ""}`;
  return `${httpGatewayYaml(NS)}---
${backendService(NS, "echo", 8080, [{ address: addr, port: p.echo, pod: "echo-pod" }])}---
${backendService(NS, "flaky", 8080, [{ address: addr, port: p.flaky, pod: "flaky-pod" }])}---
${backendService(NS, "mixed", 8080, [{ address: addr, port: p.dead, pod: "dead-pod" }, { address: addr, port: p.echo, pod: "echo-pod" }])}---
${backendService(NS, "pair", 8080, [{ address: addr, port: p.echo, pod: "echo-pod" }, { address: addr, port: p.echo2, pod: "echo2-pod" }])}---
${backendService(NS, "mixed2", 8080, [{ address: addr, port: p.dead2, pod: "dead2-pod" }, { address: addr, port: p.echo, pod: "echo-pod" }])}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: timeouts, namespace: ${NS}}
spec:
  parentRefs: [{name: gw}]
  hostnames: [${HOST}]
  rules:
${rule("/request-timeout", "echo", "timeouts: {request: 500ms}")}${rule("/disable-request-timeout", "echo", 'timeouts: {request: "0s"}')}${rule("/backend-timeout", "echo", "timeouts: {backendRequest: 500ms}")}${rule("/disable-backend-timeout", "echo", 'timeouts: {backendRequest: "0s"}')}${rule("/hold", "flaky", "")}${rule("/mixed", "mixed", "")}${rule("/pair", "pair", "")}${rule("/dead-retry", "mixed2", "retry: {attempts: 1}")}${rule("/echo-close", "echo", "retry: {attempts: 2, backoff: 10ms}")}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: retries, namespace: ${NS}}
spec:
  parentRefs: [{name: gw}]
  hostnames: [${HOST}]
  rules:
${rule("/retry/code-500-attempts-3", "flaky", "retry: {codes: [500], attempts: 3, backoff: 10ms}")}${rule("/retry/code-all-attempts-2", "flaky", "retry: {codes: [500, 502, 503, 504], attempts: 2, backoff: 10ms}")}${rule("/retry/no-status-code-attempts-3", "flaky", "retry: {attempts: 3, backoff: 10ms}")}${rule("/retry/backend-request-timeout-200ms", "flaky", "retry: {attempts: 2, backoff: 10ms}\n    timeouts: {backendRequest: 200ms}")}${rule("/retry/request-timeout-200ms", "flaky", "retry: {codes: [500], attempts: 5, backoff: 10ms}\n    timeouts: {backendRequest: 200ms, request: 400ms}")}${rule("/retry/backoff-100ms", "flaky", "retry: {codes: [500], attempts: 2, backoff: 100ms}")}${rule("/retry/post", "flaky", "retry: {codes: [500], attempts: 2, backoff: 10ms}")}`;
}

describe("timeouts, retries and ejection", () => {
  const addr = randomLoopback();
  let echo: EchoServer;
  let echo2: EchoServer;
  let flaky: Flaky;
  let stack: Stack;
  const port = (): number => 80 + stack.portOffset;
  const get = (path: string, o: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Reply> =>
    send({ address: addr, port: port(), host: HOST, path, ...o });
  /** A probe with a fresh id, as the conformance suite sends. */
  const probe = async (path: string, query: string): Promise<{ reply: Reply; attempts: number[] }> => {
    const id = randomUUID();
    const reply = await get(`${path}?id=${id}&${query}`);
    return { reply, attempts: flaky.attempts.get(id) ?? [] };
  };

  before(async () => {
    echo = await startEcho({ mode: "http", host: addr, port: 0, identity: { pod: "echo-pod", namespace: NS } });
    echo2 = await startEcho({ mode: "http", host: addr, port: 0, identity: { pod: "echo2-pod", namespace: NS } });
    flaky = await startFlaky(addr);
    const yaml = manifests(addr, { echo: echo.port, echo2: echo2.port, flaky: flaky.port, dead: await deadPort(addr), dead2: await deadPort(addr) });
    // Few connections per endpoint, so a test can fill a pool and make requests queue.
    stack = await startStack(objectsOf(yaml), { address: addr, proxy: { upstream: { connectionsPerEndpoint: 4 } } });
    for (const name of ["timeouts", "retries"]) {
      const st = JSON.stringify(stack.result.statuses.get(`HTTPRoute/${NS}/${name}`)?.status ?? {});
      assert.match(st, /"type":"Accepted","status":"True"/, `${name}: ${st}`);
      assert.doesNotMatch(st, /PartiallyInvalid/, `${name}: ${st}`);
    }
  });
  after(async () => {
    await stack.close();
    await echo.close();
    await echo2.close();
    await flaky.close();
  });

  describe("timeouts", () => {
    it("answers 504 when the request timeout passes, and not when it is 0s", async () => {
      assert.equal((await get("/request-timeout")).status, 200);
      const started = Date.now();
      const slow = await get("/request-timeout", { headers: { "x-echo-delay-ms": "1000" } });
      assert.equal(slow.status, 504);
      assert.ok(Date.now() - started < 900, `took ${Date.now() - started} ms`);
      assert.equal((await get("/disable-request-timeout", { headers: { "x-echo-delay-ms": "700" } })).status, 200);
    });

    it("answers 504 when the backend request timeout passes, and not when it is 0s", async () => {
      assert.equal((await get("/backend-timeout")).status, 200);
      assert.equal((await get("/backend-timeout", { headers: { "x-echo-delay-ms": "1000" } })).status, 504);
      assert.equal((await get("/disable-backend-timeout", { headers: { "x-echo-delay-ms": "700" } })).status, 200);
    });
  });

  describe("retries (HTTPRouteRetry)", () => {
    it("retries listed codes up to `attempts` retries, and never an unlisted 503", async () => {
      const ok = await probe("/retry/code-500-attempts-3", "responseCode=500&succeedAfter=2");
      assert.equal(ok.reply.status, 200);
      assert.equal(ok.attempts.length, 3);
      const exhausted = await probe("/retry/code-500-attempts-3", "responseCode=500&succeedAfter=4");
      assert.equal(exhausted.reply.status, 500);
      assert.equal(exhausted.reply.body, "failing on purpose");
      // attempts is the number of retries: the initial try plus three.
      assert.equal(exhausted.attempts.length, 4);
      const unlisted = await probe("/retry/code-500-attempts-3", "responseCode=503&succeedAfter=2");
      assert.equal(unlisted.reply.status, 503);
      assert.equal(unlisted.attempts.length, 1);
    });

    it("retries each of several codes and answers the last one when they run out", async () => {
      for (const code of [500, 502, 503, 504]) {
        const ok = await probe("/retry/code-all-attempts-2", `responseCode=${code}&succeedAfter=1`);
        assert.equal(ok.reply.status, 200, `${code}`);
        const failed = await probe("/retry/code-all-attempts-2", `responseCode=${code}&succeedAfter=3`);
        assert.equal(failed.reply.status, code);
        assert.equal(failed.attempts.length, 3);
      }
    });

    it("retries connection resets without any codes listed", async () => {
      const ok = await probe("/retry/no-status-code-attempts-3", "succeedAfter=2");
      assert.equal(ok.reply.status, 200, ok.reply.body);
      const failed = await probe("/retry/no-status-code-attempts-3", "succeedAfter=4");
      assert.ok([500, 502, 503].includes(failed.reply.status), String(failed.reply.status));
      assert.equal(failed.attempts.length, 4);
    });

    it("retries attempts that pass the backend request timeout", async () => {
      const ok = await probe("/retry/backend-request-timeout-200ms", "responseCode=500&succeedAfter=2&delayRetry=300");
      assert.equal(ok.reply.status, 200, ok.reply.body);
      const failed = await probe("/retry/backend-request-timeout-200ms", "responseCode=500&succeedAfter=3&delayRetry=300");
      assert.equal(failed.reply.status, 504);
    });

    it("stops retrying when the request timeout passes", async () => {
      assert.equal((await probe("/retry/request-timeout-200ms", "responseCode=500&succeedAfter=1")).reply.status, 200);
      const started = Date.now();
      const late = await probe("/retry/request-timeout-200ms", "responseCode=500&succeedAfter=4&delayRetry=100");
      assert.equal(late.reply.status, 504);
      assert.ok(Date.now() - started < 700, `took ${Date.now() - started} ms`);
    });

    it("waits the backoff between attempts", async () => {
      const { reply, attempts } = await probe("/retry/backoff-100ms", "responseCode=500&succeedAfter=2");
      assert.equal(reply.status, 200);
      assert.equal(attempts.length, 3);
      for (let i = 1; i < attempts.length; i++) {
        const gap = (attempts[i] as number) - (attempts[i - 1] as number);
        assert.ok(gap >= 90 && gap < 1000, `gap ${gap} ms`);
      }
    });

    it("replays a request body on each attempt", async () => {
      const id = randomUUID();
      const r = await get(`/retry/post?id=${id}&responseCode=500&succeedAfter=1`, { method: "POST", body: "payload" });
      assert.equal(r.status, 200);
      assert.deepEqual(JSON.parse(r.body), { ok: true, attempt: 2, body: "payload" });
    });

    it("sends a body too large to keep for a retry once, in full, instead of refusing it", async () => {
      // Past the 1 MiB replay buffer, as Envoy does: streamed to one attempt, no retries.
      const body = "b".repeat(1024 * 1024 + 4096);
      const ok = randomUUID();
      const r = await get(`/retry/post?id=${ok}`, { method: "POST", body });
      assert.equal(r.status, 200);
      const j = JSON.parse(r.body) as { attempt: number; body: string };
      assert.equal(j.attempt, 1);
      assert.equal(j.body.length, body.length);
      assert.ok(j.body === body, "the body arrived altered");
      const failing = randomUUID();
      const f = await get(`/retry/post?id=${failing}&responseCode=500&succeedAfter=1`, { method: "POST", body });
      assert.equal(f.status, 500);
      assert.equal(flaky.attempts.get(failing)?.length, 1);
    });

    it("retries a refused connection on another endpoint", async () => {
      for (let i = 0; i < 10; i++) {
        const r = await get("/dead-retry");
        assert.equal(r.status, 200, r.body);
        assert.equal((JSON.parse(r.body) as EchoHttpResponse).pod, "echo-pod");
      }
    });

    it("answers 503 when every attempt loses its connection", async () => {
      const r = await get("/echo-close", { headers: { "x-echo-close": "1" } });
      assert.ok([502, 503].includes(r.status), String(r.status));
    });
  });

  describe("passive ejection", () => {
    it("ejects an endpoint that refuses connections; traffic goes to the healthy one", async () => {
      const statuses: number[] = [];
      for (let i = 0; i < 30; i++) statuses.push((await get("/mixed")).status);
      const failures = statuses.filter((s) => s !== 200).length;
      assert.ok(failures <= 5, `failures: ${statuses.join(",")}`);
      assert.ok(statuses.slice(12).every((s) => s === 200), statuses.join(","));
    });
  });

  describe("cancellation", () => {
    it("answers the request timeout on time while the request waits for a pooled connection", async () => {
      // Four requests that never get an answer hold every connection to the flaky endpoint.
      const hogs = Array.from({ length: 4 }, () => {
        const req = http.request({ host: addr, port: port(), path: "/hold", headers: { host: HOST }, agent: false });
        req.on("error", () => undefined);
        req.end();
        return req;
      });
      const startedBefore = flaky.held.started;
      try {
        assert.ok(await until(() => flaky.held.started === startedBefore + 4));
        const started = Date.now();
        const queued = await probe("/retry/request-timeout-200ms", "succeedAfter=0");
        assert.equal(queued.reply.status, 504);
        assert.ok(Date.now() - started < 1000, `took ${Date.now() - started} ms`);
      } finally {
        for (const h of hogs) h.destroy();
      }
      // The queued request, cancelled, never reaches the backend once connections free up.
      await new Promise((r) => setTimeout(r, 200));
      const ok = await probe("/retry/request-timeout-200ms", "succeedAfter=0");
      assert.equal(ok.reply.status, 200, ok.reply.body);
    });

    it("never ejects an endpoint because its clients went away", async () => {
      // More cancellations per endpoint than the ejection threshold.
      for (let i = 0; i < 14; i++) {
        const req = http.request({ host: addr, port: port(), path: "/pair", headers: { host: HOST, "x-echo-delay-ms": "2000" }, agent: false });
        req.on("error", () => undefined);
        req.end();
        await new Promise((r) => setTimeout(r, 20));
        req.destroy();
      }
      const pods = new Set<string>();
      for (let i = 0; i < 10; i++) pods.add((JSON.parse((await get("/pair")).body) as EchoHttpResponse).pod);
      assert.deepEqual([...pods].sort(), ["echo-pod", "echo2-pod"]);
    });

    it("cancels the upstream request when an HTTP/1.1 client goes away", async () => {
      const before = flaky.held.cancelled;
      const startedBefore = flaky.held.started;
      const req = http.request({ host: addr, port: port(), path: "/hold", headers: { host: HOST }, agent: false });
      req.on("error", () => undefined);
      req.end();
      assert.ok(await until(() => flaky.held.started === startedBefore + 1));
      req.destroy();
      assert.ok(await until(() => flaky.held.cancelled === before + 1, 2000), "upstream request not cancelled");
    });

    it("cancels the upstream request when an HTTP/2 stream is reset", async () => {
      const before = flaky.held.cancelled;
      const startedBefore = flaky.held.started;
      const session = http2.connect(`http://${addr}:${port()}`);
      session.on("error", () => undefined);
      const stream = session.request({ ":path": "/hold", ":authority": HOST });
      stream.on("error", () => undefined);
      stream.end();
      assert.ok(await until(() => flaky.held.started === startedBefore + 1));
      stream.close(http2.constants.NGHTTP2_CANCEL);
      assert.ok(await until(() => flaky.held.cancelled === before + 1, 2000), "upstream request not cancelled");
      session.destroy();
    });
  });
});
