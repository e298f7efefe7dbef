// Tests of the echo backend over real sockets on 127.0.0.1.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes, createHash } from "node:crypto";
import dgram from "node:dgram";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import https from "node:https";
import net from "node:net";
import type { Duplex } from "node:stream";
import tls from "node:tls";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { canonicalHeaderName, GRPC_ECHO_SERVICE, grpcEchoCall, startEcho } from "./echo.ts";
import type { EchoHttpResponse, EchoServer } from "./echo.ts";

const HOST = "127.0.0.1";
const identity = { pod: "echo-pod-1", namespace: "ns-a", service: "svc-a" };

interface HttpResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  json: EchoHttpResponse;
  /** Whether the request went out on a kept-alive connection. */
  reused: boolean;
}

function request(
  port: number,
  opts: { method?: string; path?: string; headers?: http.OutgoingHttpHeaders; body?: string; agent?: http.Agent },
): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: HOST, port, method: opts.method ?? "GET", path: opts.path ?? "/", headers: opts.headers, agent: opts.agent },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          const json = JSON.parse(text) as EchoHttpResponse;
          resolve({ status: res.statusCode ?? 0, headers: res.headers, json, reused: req.reusedSocket });
        });
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(opts.body);
  });
}

function h2Request(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
): Promise<{ headers: http2.IncomingHttpHeaders; json: EchoHttpResponse }> {
  return new Promise((resolve, reject) => {
    const stream = session.request(headers);
    let resHeaders: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on("response", (h) => (resHeaders = h));
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", () => {
      try {
        resolve({ headers: resHeaders, json: JSON.parse(Buffer.concat(chunks).toString()) as EchoHttpResponse });
      } catch (e) {
        reject(e as Error);
      }
    });
    stream.on("error", reject);
    stream.end();
  });
}

/** RFC 6455 handshake and frames by hand over a raw stream: text, fragments, ping, bad frame, close. */
async function wsRoundTrip(sock: Duplex): Promise<void> {
  const key = randomBytes(16).toString("base64");
  let data: Buffer = Buffer.alloc(0);
  const waiters: (() => void)[] = [];
  sock.on("data", (c: Buffer) => {
    data = Buffer.concat([data, c]);
    waiters.splice(0).forEach((w) => w());
  });
  const ended = new Promise<void>((r) => sock.once("end", () => r()));
  const waitFor = async (pred: () => boolean): Promise<void> => {
    while (!pred()) await new Promise<void>((r) => waiters.push(r));
  };
  const take = async (n: number): Promise<number[]> => {
    await waitFor(() => data.length >= n);
    const out = [...data.subarray(0, n)];
    data = data.subarray(n);
    return out;
  };
  const frame = (b0: number, payload: Buffer, mask = true): Buffer => {
    if (!mask) return Buffer.concat([Buffer.from([b0, payload.length]), payload]);
    const m = randomBytes(4);
    const body = Buffer.from(payload.map((b, i) => b ^ (m[i & 3] ?? 0)));
    return Buffer.concat([Buffer.from([b0, 0x80 | payload.length]), m, body]);
  };
  const bytes = (s: string): number[] => [...Buffer.from(s)];
  try {
    sock.write(
      `GET /ws HTTP/1.1\r\nHost: ws.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    );
    await waitFor(() => data.includes("\r\n\r\n"));
    const end = data.indexOf("\r\n\r\n") + 4;
    const head = data.subarray(0, end).toString();
    data = data.subarray(end);
    assert.match(head, /^HTTP\/1\.1 101 /);
    const accept = createHash("sha1").update(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64");
    assert.ok(head.includes(`Sec-WebSocket-Accept: ${accept}\r\n`), head);

    sock.write(frame(0x81, Buffer.from("hello websocket")));
    assert.deepEqual(await take(17), [0x81, 15, ...bytes("hello websocket")], "FIN + text, unmasked");

    // A fragmented message comes back fragmented the same way.
    sock.write(Buffer.concat([frame(0x01, Buffer.from("ab")), frame(0x80, Buffer.from("c"))]));
    assert.deepEqual(await take(4), [0x01, 2, ...bytes("ab")]);
    assert.deepEqual(await take(3), [0x80, 1, ...bytes("c")]);

    sock.write(frame(0x89, Buffer.from("p")));
    assert.deepEqual(await take(3), [0x8a, 1, ...bytes("p")], "ping answered by pong");

    const code = Buffer.alloc(2);
    code.writeUInt16BE(1000);
    sock.write(frame(0x88, code));
    assert.deepEqual(await take(4), [0x88, 2, 0x03, 0xe8], "close 1000 echoed");
    await ended;
  } finally {
    sock.destroy();
  }
}

test("canonicalHeaderName follows Go's CanonicalMIMEHeaderKey", () => {
  assert.equal(canonicalHeaderName("x-forwarded-for"), "X-Forwarded-For");
  assert.equal(canonicalHeaderName("CONTENT-TYPE"), "Content-Type");
  assert.equal(canonicalHeaderName("x--a"), "X--A");
  assert.equal(canonicalHeaderName("bad header"), "bad header");
});

describe("http mode", () => {
  let server: EchoServer;
  before(async () => {
    server = await startEcho({ mode: "http", host: HOST, port: 0, identity });
  });
  after(() => server.close());

  test("HTTP/1.1 request is echoed as JSON", async () => {
    const r = await request(server.port, {
      method: "POST",
      path: "/some/path?x=1&y=2",
      headers: { host: "example.com", "x-forwarded-for": "10.0.0.1", "x-multi": ["a", "b"], "content-type": "text/plain" },
      body: "hello body",
    });
    assert.equal(r.status, 200);
    assert.match(r.headers["content-type"] ?? "", /^application\/json/);
    assert.equal(r.json.path, "/some/path?x=1&y=2");
    assert.equal(r.json.host, "example.com");
    assert.equal(r.json.method, "POST");
    assert.equal(r.json.proto, "HTTP/1.1");
    assert.deepEqual(r.json.headers["X-Forwarded-For"], ["10.0.0.1"]);
    assert.deepEqual(r.json.headers["X-Multi"], ["a", "b"]);
    assert.deepEqual(r.json.headers["Content-Type"], ["text/plain"]);
    assert.equal(r.json.headers["Host"], undefined, "Host is reported in `host`, as Go does");
    assert.equal(r.json.body, "hello body");
    assert.equal(r.json.pod, "echo-pod-1");
    assert.equal(r.json.namespace, "ns-a");
    assert.equal(r.json.service, "svc-a");
    assert.equal(r.json.tls, undefined);
  });

  test("an empty body is left out and a large one truncated to 64 KiB", async () => {
    const r1 = await request(server.port, {});
    assert.equal(r1.json.body, undefined);
    const r2 = await request(server.port, { method: "PUT", body: "x".repeat(200 * 1024) });
    assert.equal(r2.json.body?.length, 64 * 1024);
  });

  test("keep-alive connections serve several requests after the protocol sniff", async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      for (let i = 0; i < 3; i++) {
        const r = await request(server.port, { path: `/k${i}`, agent });
        assert.equal(r.json.path, `/k${i}`);
        assert.equal(r.reused, i > 0);
      }
    } finally {
      agent.destroy();
    }
  });

  test("h2c with prior knowledge on the same port", async () => {
    const session = http2.connect(`http://${HOST}:${server.port}`);
    try {
      const a = await h2Request(session, { ":path": "/h2?q=1", ":authority": "h2.example", "x-test": ["1", "2"] });
      assert.equal(a.headers[":status"], 200);
      assert.equal(a.json.proto, "HTTP/2.0");
      assert.equal(a.json.path, "/h2?q=1");
      assert.equal(a.json.host, "h2.example");
      assert.equal(a.json.method, "GET");
      assert.deepEqual(a.json.headers["X-Test"], ["1", "2"]);
      assert.ok(Object.keys(a.json.headers).every((k) => !k.startsWith(":")), "no pseudo-headers");
      // A second stream on the same session.
      const b = await h2Request(session, { ":path": "/two", "x-echo-status": "503", "x-echo-set-header": "X-From-Echo: yes" });
      assert.equal(b.headers[":status"], 503);
      assert.equal(b.headers["x-from-echo"], "yes");
      assert.equal(b.json.path, "/two");
    } finally {
      session.close();
    }
  });

  test("h2c: headers HTTP/2 forbids are skipped, and x-echo-close drops the session", async () => {
    const session = http2.connect(`http://${HOST}:${server.port}`);
    session.on("error", () => {});
    try {
      const r = await h2Request(session, { ":path": "/", "x-echo-set-header": "Connection: close, X-Ok: 1" });
      assert.equal(r.headers[":status"], 200);
      assert.equal(r.headers["x-ok"], "1");
      await assert.rejects(h2Request(session, { ":path": "/", "x-echo-close": "1" }), /NGHTTP2_INTERNAL_ERROR/);
      await new Promise<void>((resolve) => (session.closed ? resolve() : session.once("close", () => resolve())));
    } finally {
      session.destroy();
    }
  });

  test("x-echo-status, x-echo-set-header and x-echo-delay-ms", async () => {
    const r = await request(server.port, {
      headers: { "x-echo-status": "418", "x-echo-set-header": ["X-A: 1, X-B: two", "X-A: 3"] },
    });
    assert.equal(r.status, 418);
    assert.equal(r.headers["x-a"], "1,3");
    assert.equal(r.headers["x-b"], "two");
    assert.equal(r.json.path, "/");

    const t0 = performance.now();
    const d = await request(server.port, { headers: { "x-echo-delay-ms": "200" } });
    assert.equal(d.status, 200);
    assert.ok(performance.now() - t0 >= 180, "delayed");

    const q = performance.now();
    await request(server.port, { path: "/?delay=150ms" });
    assert.ok(performance.now() - q >= 130, "echo-basic's ?delay= query parameter");
  });

  test("x-echo-close drops the connection without an answer", async () => {
    await assert.rejects(request(server.port, { headers: { "x-echo-close": "1" } }), /socket hang up|ECONNRESET/);
    // The server still serves afterwards.
    assert.equal((await request(server.port, {})).status, 200);
  });

  test("WebSocket echo with hand-built masked client frames", async () => {
    await wsRoundTrip(net.connect(server.port, HOST));
  });

  test("an unmasked client frame is a protocol error (close 1002)", async () => {
    const sock = net.connect(server.port, HOST);
    try {
      const key = randomBytes(16).toString("base64");
      sock.write(
        `GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
      sock.write(Buffer.from([0x81, 1, 0x41]));
      const chunks: Buffer[] = [];
      for await (const c of sock as AsyncIterable<Buffer>) chunks.push(c);
      const all = Buffer.concat(chunks);
      const frames = all.subarray(all.indexOf("\r\n\r\n") + 4);
      assert.deepEqual([...frames], [0x88, 2, 0x03, 0xea]);
    } finally {
      sock.destroy();
    }
  });

  test("WebSocket echo with Node's WebSocket client", async () => {
    const ws = new WebSocket(`ws://${HOST}:${server.port}/ws`);
    ws.binaryType = "arraybuffer";
    const messages: unknown[] = [];
    const got = new Promise<void>((resolve, reject) => {
      ws.addEventListener("message", (e) => {
        messages.push(e.data);
        if (messages.length === 2) resolve();
      });
      ws.addEventListener("error", () => reject(new Error("websocket error")));
    });
    await new Promise<void>((resolve, reject) => {
      ws.addEventListener("open", () => resolve());
      ws.addEventListener("error", () => reject(new Error("websocket error")));
    });
    ws.send("x".repeat(70_000)); // 64-bit length encoding
    ws.send(new Uint8Array([1, 2, 3]));
    await got;
    assert.equal(messages[0], "x".repeat(70_000));
    assert.deepEqual([...new Uint8Array(messages[1] as ArrayBuffer)], [1, 2, 3]);
    const closed = new Promise<CloseEvent>((r) => ws.addEventListener("close", (e) => r(e)));
    ws.close(1000);
    assert.equal((await closed).code, 1000);
  });

  test("an Upgrade that is not WebSocket is answered as a plain request", async () => {
    const r = await request(server.port, { headers: { connection: "upgrade", upgrade: "h2c" } });
    assert.equal(r.status, 200);
    assert.equal(r.json.proto, "HTTP/1.1");
  });
});

describe("identity defaults", () => {
  test("POD_NAME, NAMESPACE and SERVICE_NAME are used when no identity is given", async () => {
    const saved = { ...process.env };
    Object.assign(process.env, { POD_NAME: "env-pod", NAMESPACE: "env-ns", SERVICE_NAME: "env-svc" });
    const server = await startEcho({ mode: "http", host: HOST, port: 0 });
    process.env = saved;
    try {
      const r = await request(server.port, {});
      assert.deepEqual([r.json.pod, r.json.namespace, r.json.service], ["env-pod", "env-ns", "env-svc"]);
    } finally {
      await server.close();
    }
  });
});

describe("close()", () => {
  test("ends idle keep-alive, h2 and tcp connections promptly", async () => {
    const web = await startEcho({ mode: "http", host: HOST, port: 0, identity });
    const tcp = await startEcho({ mode: "tcp", host: HOST, port: 0, identity });
    const agent = new http.Agent({ keepAlive: true });
    await request(web.port, { agent });
    const session = http2.connect(`http://${HOST}:${web.port}`);
    await h2Request(session, { ":path": "/" });
    session.on("error", () => {});
    const client = net.connect(tcp.port, HOST);
    client.on("error", () => {});
    await new Promise((r) => client.once("data", r));
    const slow = request(web.port, { headers: { "x-echo-delay-ms": "60000" } }).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 50));
    const t0 = performance.now();
    await Promise.all([web.close(), tcp.close()]);
    assert.ok(performance.now() - t0 < 2000, "close did not wait for clients");
    assert.ok((await slow) instanceof Error, "the delayed request was cut off");
    agent.destroy();
    session.destroy();
    client.destroy();
  });
});

describe("tls mode", () => {
  let dir: string;
  let server: EchoServer;
  let strict: EchoServer;
  let ca: string;
  let clientCert: string;
  let clientKey: string;
  let rogueCert: string;
  let rogueKey: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "sluice-echo-"));
    const ossl = (...args: string[]): void => {
      execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
    };
    const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    ossl("req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=echo-test-ca", "-days", "1",
      "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign");
    const leaf = (name: string, ext: string): void => {
      writeFileSync(join(dir, `${name}.ext`), ext);
      ossl("req", ...ec, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${name}`);
      ossl("x509", "-req", "-in", `${name}.csr`, "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", `${name}.crt`, "-days", "1", "-extfile", `${name}.ext`);
    };
    leaf("server", "subjectAltName=DNS:echo.test,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
    leaf("client", "extendedKeyUsage=clientAuth\n");
    ossl("req", "-x509", ...ec, "-keyout", "rogue.key", "-out", "rogue.crt", "-subj", "/CN=rogue", "-days", "1");
    const read = (f: string): string => readFileSync(join(dir, f), "utf8");
    ca = read("ca.crt");
    clientCert = read("client.crt");
    clientKey = read("client.key");
    rogueCert = read("rogue.crt");
    rogueKey = read("rogue.key");
    const tlsOpts = { cert: read("server.crt"), key: read("server.key") };
    server = await startEcho({ mode: "tls", host: HOST, port: 0, identity, tls: { ...tlsOpts, requestCert: true } });
    strict = await startEcho({ mode: "tls", host: HOST, port: 0, identity, tls: { ...tlsOpts, ca } });
  });
  after(async () => {
    await server.close();
    await strict.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const pemBody = (pem: string): string => pem.replace(/-----[^-]+-----|\s/g, "");

  test("h2 by ALPN, with the client certificate recorded", async () => {
    const session = http2.connect(`https://${HOST}:${server.port}`, {
      ca,
      servername: "echo.test",
      cert: clientCert,
      key: clientKey,
    });
    try {
      const r = await h2Request(session, { ":path": "/secure", ":authority": "echo.test" });
      assert.equal(r.json.proto, "HTTP/2.0");
      assert.equal(r.json.host, "echo.test");
      const t = r.json.tls;
      assert.ok(t);
      assert.equal(t.negotiatedProtocol, "h2");
      assert.equal(t.serverName, "echo.test");
      assert.equal(t.version, "TLSv1.3");
      assert.match(t.cipherSuite, /^TLS_/);
      assert.ok(t.peerCertificates.length >= 1);
      assert.equal(pemBody(t.peerCertificates[0] ?? ""), pemBody(clientCert));
      assert.equal(r.json.sni, "echo.test");
    } finally {
      session.close();
    }
  });

  test("http/1.1 by ALPN, without a client certificate", async () => {
    // https.request hands ALPNProtocols to tls.connect; @types/node does not list it.
    const options: https.RequestOptions & Pick<tls.ConnectionOptions, "ALPNProtocols"> = {
      host: HOST,
      port: server.port,
      path: "/one?a=b",
      ca,
      servername: "echo.test",
      ALPNProtocols: ["http/1.1"],
      agent: false,
    };
    const r = await new Promise<EchoHttpResponse>((resolve, reject) => {
      const req = https.request(
        options,
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => resolve(JSON.parse(Buffer.concat(chunks).toString()) as EchoHttpResponse));
        },
      );
      req.on("error", reject);
      req.end();
    });
    assert.equal(r.proto, "HTTP/1.1");
    assert.equal(r.path, "/one?a=b");
    assert.equal(r.tls?.negotiatedProtocol, "http/1.1");
    assert.equal(r.tls?.serverName, "echo.test");
    assert.deepEqual(r.tls?.peerCertificates, []);
  });

  test("WebSocket over TLS (http/1.1 by ALPN)", async () => {
    const sock = tls.connect({ host: HOST, port: server.port, ca, servername: "echo.test", ALPNProtocols: ["http/1.1"] });
    await new Promise<void>((resolve, reject) => {
      sock.once("secureConnect", () => resolve());
      sock.once("error", reject);
    });
    await wsRoundTrip(sock);
  });

  test("with a CA, trusted client certificates and clients without one pass; others are cut off", async () => {
    const get = (extra: { cert?: string; key?: string }): Promise<EchoHttpResponse> =>
      new Promise((resolve, reject) => {
        const req = https.request(
          { host: HOST, port: strict.port, path: "/", ca, servername: "echo.test", agent: false, ...extra },
          (res) => {
            const chunks: Buffer[] = [];
            res.on("data", (c: Buffer) => chunks.push(c));
            res.on("end", () => resolve(JSON.parse(Buffer.concat(chunks).toString()) as EchoHttpResponse));
          },
        );
        req.on("error", reject);
        req.end();
      });
    const ok = await get({ cert: clientCert, key: clientKey });
    assert.equal(pemBody(ok.tls?.peerCertificates[0] ?? ""), pemBody(clientCert));
    assert.deepEqual((await get({})).tls?.peerCertificates, []);
    await assert.rejects(get({ cert: rogueCert, key: rogueKey }));
  });
});

describe("grpc mode", () => {
  let server: EchoServer;
  before(async () => {
    server = await startEcho({ mode: "grpc", host: HOST, port: 0, identity: { ...identity, ingress: "sluice" } });
  });
  after(() => server.close());

  test("Echo reports headers, authority and context", async () => {
    const r = await grpcEchoCall(`${HOST}:${server.port}`, "Echo", {
      authority: "grpc.example:8080",
      metadata: { "x-test": "v1" },
    });
    const a = r.assertions;
    assert.ok(a);
    assert.equal(a.fullyQualifiedMethod, `/${GRPC_ECHO_SERVICE}/Echo`);
    assert.equal(a.authority, "grpc.example:8080");
    assert.ok(a.headers.some((h) => h.key === "x-test" && h.value === "v1"));
    assert.ok(a.headers.some((h) => h.key === ":authority" && h.value === "grpc.example:8080"));
    assert.deepEqual(a.context, { namespace: "ns-a", ingress: "sluice", serviceName: "svc-a", pod: "echo-pod-1" });
  });

  test("EchoTwo answers at its own method", async () => {
    const r = await grpcEchoCall(`${HOST}:${server.port}`, "EchoTwo");
    assert.equal(r.assertions?.fullyQualifiedMethod, `/${GRPC_ECHO_SERVICE}/EchoTwo`);
    assert.equal(r.assertions?.authority, `${HOST}:${server.port}`);
  });

  test("EchoThree and unknown methods are UNIMPLEMENTED", async () => {
    await assert.rejects(grpcEchoCall(`${HOST}:${server.port}`, "EchoThree"), (e: { code?: number }) => {
      assert.equal(e.code, grpc.status.UNIMPLEMENTED);
      return true;
    });
    const client = new grpc.Client(`${HOST}:${server.port}`, grpc.credentials.createInsecure());
    try {
      const code = await new Promise<number | undefined>((resolve) => {
        client.makeUnaryRequest(
          `/${GRPC_ECHO_SERVICE}/NoSuchMethod`,
          (b: Buffer) => b,
          (b: Buffer) => b,
          Buffer.alloc(0),
          (err) => resolve(err?.code),
        );
      });
      assert.equal(code, grpc.status.UNIMPLEMENTED);
    } finally {
      client.close();
    }
  });
});

describe("tcp mode", () => {
  test("identity line, then every byte echoed", async () => {
    const server = await startEcho({ mode: "tcp", host: HOST, port: 0, identity });
    const sock = net.connect(server.port, HOST);
    try {
      let data = "";
      const waitFor = (pred: () => boolean): Promise<void> =>
        new Promise((resolve) => {
          const check = (): void => {
            if (pred()) {
              sock.off("data", onData);
              resolve();
            }
          };
          const onData = (c: Buffer): void => {
            data += c.toString();
            check();
          };
          sock.on("data", onData);
          check();
        });
      await waitFor(() => data.includes("\n"));
      const nl = data.indexOf("\n");
      assert.deepEqual(JSON.parse(data.slice(0, nl)), { pod: "echo-pod-1", namespace: "ns-a", service: "svc-a" });
      data = data.slice(nl + 1);
      sock.write("ping\n");
      sock.write("pong");
      await waitFor(() => data.length >= 9);
      assert.equal(data, "ping\npong");
    } finally {
      sock.destroy();
      await server.close();
    }
  });
});

describe("udp mode", () => {
  test("each datagram is answered with the identity and the payload", async () => {
    const server = await startEcho({ mode: "udp", host: HOST, port: 0, identity });
    const client = dgram.createSocket("udp4");
    try {
      const reply = new Promise<Buffer>((resolve) => client.once("message", (m) => resolve(m)));
      client.send("hello udp", server.port, HOST);
      const text = (await reply).toString();
      const nl = text.indexOf("\n");
      assert.deepEqual(JSON.parse(text.slice(0, nl)), { pod: "echo-pod-1", namespace: "ns-a", service: "svc-a" });
      assert.equal(text.slice(nl + 1), "hello udp");
    } finally {
      client.close();
      await server.close();
    }
  });
});
