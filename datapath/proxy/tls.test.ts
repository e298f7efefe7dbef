// TLS and WebSocket behaviour of the proxy through real sockets on loopback: SNI listener and
// certificate selection, ALPN, misdirected requests (421), HTTP→HTTPS redirects, TLSRoute
// passthrough and termination, frontend client certificates, BackendTLSPolicy, certificate
// rotation under open connections, and WebSocket upgrades over HTTP and HTTPS.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes, X509Certificate } from "node:crypto";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import tls from "node:tls";
import { Duplex } from "node:stream";
import { startEcho, type EchoHttpResponse, type EchoServer } from "../echo/echo.ts";
import { backendService, makeCerts, objectsOf, randomLoopback, send, startStack, tlsSecret, type Stack, type TestCert, GATEWAY_CLASS_YAML } from "./testkit.ts";

const NS = "demo";
const OFFSET = 20000;

// One CA for everything the tests trust, and a second one nobody trusts.
const names = [
  "a.example.com", "b.example.com", "one.multi.org", "two.multi.org", "redirect.example.com", "any.example.com",
  "a.pass.org", "term.example.org", "web.example.org", "client.example", "backend.example.internal",
  "rot.example.org", "rot.example.org", "ws.example.org", "mtls.example.org",
] as const;
const pki = makeCerts([
  ...names.map((n) => ({ cn: n, sans: [`DNS:${n}`] })),
  // The conformance suite's single certificate for every listener of the misdirected-request Gateway.
  { cn: "example.org", sans: ["DNS:example.org", "DNS:second-example.org", "DNS:*.wildcard.org", "DNS:fourth-example.wildcard.org"] },
]);
const other = makeCerts([{ cn: "client.example", sans: ["DNS:client.example"] }]);
const leaf = (i: number): TestCert => pki.leaves[i] as TestCert;
const CA = pki.ca.cert;
const cert = {
  a: leaf(0), b: leaf(1), one: leaf(2), two: leaf(3), redirect: leaf(4), any: leaf(5), pass: leaf(6), term: leaf(7),
  web: leaf(8), client: leaf(9), backend: leaf(10), rot1: leaf(11), rot2: leaf(12), ws: leaf(13), mtls: leaf(14), misdirect: leaf(15),
  otherClient: other.leaves[0] as TestCert,
};

// ---- manifests ----


function secrets(list: Record<string, TestCert>): string {
  return Object.entries(list).map(([name, c]) => `---\n${tlsSecret(NS, name, c)}`).join("");
}

function caConfigMap(name: string, pem: string): string {
  // A JSON string is a valid YAML double-quoted scalar, newlines included.
  return `---
apiVersion: v1
kind: ConfigMap
metadata: {name: ${name}, namespace: ${NS}}
data: {ca.crt: ${JSON.stringify(pem)}}
`;
}

function route(name: string, sections: string[], rest: string, kind = "HTTPRoute", version = "v1"): string {
  return `---
apiVersion: gateway.networking.k8s.io/${version}
kind: ${kind}
metadata: {name: ${name}, namespace: ${NS}}
spec:
  parentRefs: [${sections.map((s) => `{name: gw, sectionName: ${s}}`).join(", ")}]
${rest}`;
}

// ---- clients ----

interface TlsOpts {
  /** "" sends no SNI. */
  servername: string;
  /** Verify the chain against this CA (names are checked by the tests themselves). */
  ca?: string;
  cert?: TestCert;
  alpn?: string[];
  /** A TLS session to resume. */
  session?: Buffer;
}

/** The latest session (TLS 1.3 ticket) each client connection received. */
const sessions = new WeakMap<tls.TLSSocket, Buffer>();

const open = new Set<Duplex>();
after(() => {
  for (const s of open) s.destroy();
});

function track<T extends Duplex>(s: T): T {
  open.add(s);
  s.once("close", () => open.delete(s));
  return s;
}

/** A TLS connection, resolved once the handshake is done. */
function dial(address: string, port: number, o: TlsOpts): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = track(tls.connect({
      host: address, port,
      servername: o.servername,
      ALPNProtocols: o.alpn ?? ["http/1.1"],
      ...(o.ca ? { ca: o.ca, rejectUnauthorized: true } : { rejectUnauthorized: false }),
      ...(o.cert ? { cert: o.cert.cert, key: o.cert.key } : {}),
      ...(o.session ? { session: o.session } : {}),
      checkServerIdentity: () => undefined,
    }));
    s.on("session", (session: Buffer) => sessions.set(s, session));
    s.once("secureConnect", () => {
      s.removeListener("error", reject);
      resolve(s);
    });
    s.once("error", reject);
  });
}

/** The CN of the certificate the server presented. */
function peerCN(s: tls.TLSSocket): string {
  return /CN=([^\n]+)/.exec(s.getPeerX509Certificate()?.subject ?? "")?.[1] ?? "";
}

interface Reply {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Reads one HTTP/1.1 response head, and its body by content-length unless it is a 101. */
function readResponse(socket: Duplex): Promise<Reply & { rest: Buffer }> {
  return new Promise((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    const done = (): void => {
      socket.off("data", onData);
      socket.off("end", onEnd);
      socket.off("close", onEnd);
      socket.off("error", onError);
    };
    const onError = (err: Error): void => {
      done();
      reject(err);
    };
    const onEnd = (): void => onError(new Error(`connection closed after ${buf.length} bytes`));
    const onData = (c: Buffer): void => {
      buf = buf.length ? Buffer.concat([buf, c]) : c;
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      const lines = buf.subarray(0, end).toString("latin1").split("\r\n");
      const status = Number(lines[0]?.split(" ")[1]);
      const headers: Record<string, string> = {};
      for (const l of lines.slice(1)) {
        const i = l.indexOf(":");
        headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
      }
      const len = status === 101 ? 0 : Number(headers["content-length"] ?? "0");
      if (buf.length < end + 4 + len) return;
      done();
      // Bytes past the response stay unread by anyone else: they are handed back.
      socket.pause();
      resolve({ status, headers, body: buf.subarray(end + 4, end + 4 + len).toString("utf8"), rest: buf.subarray(end + 4 + len) });
    };
    socket.on("data", onData);
    socket.once("end", onEnd);
    socket.once("close", onEnd);
    socket.once("error", onError);
    socket.resume();
  });
}

/** One keep-alive HTTP/1.1 GET on an open connection. */
async function get(socket: Duplex, host: string, path: string, headers: Record<string, string> = {}): Promise<Reply> {
  const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join("");
  socket.write(`GET ${path} HTTP/1.1\r\nhost: ${host}\r\n${extra}\r\n`);
  return readResponse(socket);
}

function echoOf(r: { status: number; body: string }): EchoHttpResponse {
  assert.equal(r.status, 200, r.body);
  return JSON.parse(r.body) as EchoHttpResponse;
}

/** An h2 session over a TLS connection negotiated with ALPN h2. */
async function h2open(address: string, port: number, o: TlsOpts): Promise<{ session: http2.ClientHttp2Session; socket: tls.TLSSocket }> {
  const socket = await dial(address, port, { ...o, alpn: ["h2"] });
  assert.equal(socket.alpnProtocol, "h2");
  const session = http2.connect(`https://${address}:${port}`, { createConnection: () => socket });
  session.on("error", () => undefined);
  return { session, socket };
}

function h2get(session: http2.ClientHttp2Session, host: string, path: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ":method": "GET", ":path": path, ":authority": host });
    let status = 0;
    const chunks: Buffer[] = [];
    stream.on("response", (h) => (status = Number(h[":status"])));
    stream.on("data", (c: Buffer) => chunks.push(c));
    // A session that goes away ends its streams without a response: that is a failure here.
    stream.on("end", () => (status ? resolve({ status, headers: {}, body: Buffer.concat(chunks).toString("utf8") }) : reject(new Error("no response"))));
    stream.on("close", () => reject(new Error(`stream closed (${stream.rstCode ?? "no code"})`)));
    stream.on("error", reject);
  });
}

/** Everything the server sends until it closes; `reset` when it closed with a RST. */
function drain(socket: Duplex): Promise<{ bytes: number; text: string; ended: boolean; reset: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let ended = false;
    let reset = false;
    socket.on("data", (c: Buffer) => chunks.push(c));
    socket.on("end", () => (ended = true));
    socket.on("error", () => (reset = true));
    socket.on("close", () => {
      const all = Buffer.concat(chunks);
      resolve({ bytes: all.length, text: all.toString("latin1"), ended, reset });
    });
  });
}

/** A ClientHello as Node's TLS client sends it, captured without any network. */
function clientHello(servername: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const wire = new Duplex({
      read() {},
      write(chunk: Buffer, _enc, cb) {
        cb();
        resolve(Buffer.from(chunk));
        setImmediate(() => s.destroy());
      },
    });
    const s = tls.connect({ socket: wire, servername });
    s.on("error", reject);
  });
}

/** A TCP connection whose first write (the ClientHello) goes out one byte per event-loop turn. */
async function trickle(address: string, port: number): Promise<Duplex> {
  const raw = track(net.connect({ host: address, port, noDelay: true }));
  await new Promise<void>((resolve, reject) => {
    raw.once("connect", resolve);
    raw.once("error", reject);
  });
  let first = true;
  const wire = new Duplex({
    read() {},
    write(chunk: Buffer, _enc, cb) {
      if (!first) return void raw.write(chunk, cb);
      first = false;
      void (async () => {
        for (let i = 0; i < chunk.length; i++) {
          raw.write(chunk.subarray(i, i + 1));
          // Let the proxy read each byte on its own before the next one is sent.
          await new Promise((r) => setImmediate(r));
        }
        cb();
      })();
    },
    final(cb) {
      raw.end();
      cb();
    },
    destroy(err, cb) {
      raw.destroy();
      cb(err);
    },
  });
  raw.on("data", (d: Buffer) => wire.push(d));
  raw.on("end", () => wire.push(null));
  raw.on("error", (e) => wire.destroy(e));
  return wire;
}

function tlsOver(wire: Duplex, o: TlsOpts): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = track(tls.connect({ socket: wire, servername: o.servername, ca: o.ca, ALPNProtocols: o.alpn ?? ["http/1.1"], checkServerIdentity: () => undefined }));
    s.once("secureConnect", () => resolve(s));
    s.once("error", reject);
  });
}

// ---- WebSocket, hand-built (the global WebSocket cannot trust a private CA) ----

class Ws {
  private buf: Buffer;
  private socket: Duplex;
  constructor(socket: Duplex, rest: Buffer) {
    this.socket = socket;
    this.buf = rest;
  }

  /** Sends the upgrade request; resolves with the response and, on a 101, the open WebSocket. */
  static async connect(socket: Duplex, host: string, path: string): Promise<{ reply: Reply; ws?: Ws }> {
    const key = randomBytes(16).toString("base64");
    socket.write(`GET ${path} HTTP/1.1\r\nhost: ${host}\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: ${key}\r\nsec-websocket-version: 13\r\n\r\n`);
    const r = await readResponse(socket);
    if (r.status !== 101) return { reply: r };
    const accept = createHash("sha1").update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest("base64");
    assert.equal(r.headers["sec-websocket-accept"], accept);
    return { reply: r, ws: new Ws(socket, r.rest) };
  }

  send(text: string): void {
    const payload = Buffer.from(text);
    assert.ok(payload.length < 126);
    const mask = randomBytes(4);
    const masked = Buffer.from(payload.map((b, i) => b ^ (mask[i & 3] as number)));
    this.socket.write(Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked]));
  }

  /** The next (unmasked, short) frame from the server. */
  next(): Promise<{ opcode: number; text: string }> {
    return new Promise((resolve, reject) => {
      const tryFrame = (): boolean => {
        if (this.buf.length < 2) return false;
        const len = (this.buf[1] as number) & 0x7f;
        if (this.buf.length < 2 + len) return false;
        const frame = { opcode: (this.buf[0] as number) & 0x0f, text: this.buf.subarray(2, 2 + len).toString() };
        this.buf = this.buf.subarray(2 + len);
        resolve(frame);
        return true;
      };
      if (tryFrame()) return;
      const onData = (c: Buffer): void => {
        this.buf = Buffer.concat([this.buf, c]);
        if (tryFrame()) cleanup();
      };
      const onClose = (): void => {
        cleanup();
        reject(new Error("closed before a frame arrived"));
      };
      const cleanup = (): void => {
        this.socket.off("data", onData);
        this.socket.off("close", onClose);
        this.socket.pause();
      };
      this.socket.on("data", onData);
      this.socket.once("close", onClose);
      this.socket.resume();
    });
  }
}

// ---- tests ----

describe("HTTPS termination", { timeout: 15_000 }, () => {
  const addr = randomLoopback();
  let v1: EchoServer;
  let stack: Stack;

  before(async () => {
    v1 = await startEcho({ mode: "http", host: addr, port: 0, identity: { pod: "v1-pod", namespace: NS } });
    const https = (name: string, hostname: string | undefined, port: number, certs: string[]): string =>
      `  - name: ${name}\n    protocol: HTTPS\n    port: ${port}\n${hostname ? `    hostname: "${hostname}"\n` : ""}    tls: {certificateRefs: [${certs.map((c) => `{name: ${c}}`).join(", ")}]}\n`;
    const yaml = `${GATEWAY_CLASS_YAML}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: ${NS}}
spec:
  gatewayClassName: sluice
  listeners:
  - {name: http, protocol: HTTP, port: 80}
${https("a", "a.example.com", 443, ["cert-a"])}${https("b", "b.example.com", 443, ["cert-b"])}${https("multi", "*.multi.org", 443, ["cert-one", "cert-two"])}${https("redirect", "redirect.example.com", 443, ["cert-redirect"])}${https("any", undefined, 8443, ["cert-any"])}${secrets({ "cert-a": cert.a, "cert-b": cert.b, "cert-one": cert.one, "cert-two": cert.two, "cert-redirect": cert.redirect, "cert-any": cert.any })}---
${backendService(NS, "v1", 8080, [{ address: addr, port: v1.port, pod: "v1-pod" }])}${route("web", ["a", "b", "multi", "redirect", "any"], `  rules:
  - backendRefs: [{name: v1, port: 8080}]
`)}${route("to-https", ["http"], `  hostnames: [redirect.example.com]
  rules:
  - filters:
    - type: RequestRedirect
      requestRedirect: {scheme: https, statusCode: 301}
`)}`;
    stack = await startStack(objectsOf(yaml), { address: addr, portOffset: OFFSET });
  });
  after(async () => {
    await stack.close();
    await v1.close();
  });

  it("chooses the listener, and its certificate, by SNI", async () => {
    for (const [sni, cn] of [["a.example.com", "a.example.com"], ["b.example.com", "b.example.com"]] as const) {
      const s = await dial(addr, 443 + OFFSET, { servername: sni, ca: CA });
      assert.equal(peerCN(s), cn);
      const j = echoOf(await get(s, sni, "/x"));
      assert.equal(j.pod, "v1-pod");
      assert.equal(j.host, sni);
      assert.deepEqual(j.headers["X-Forwarded-Proto"], ["https"]);
      s.destroy();
    }
  });

  it("chooses among a listener's certificates by SNI", async () => {
    for (const [sni, cn] of [["one.multi.org", "one.multi.org"], ["two.multi.org", "two.multi.org"], ["three.multi.org", "one.multi.org"]] as const) {
      const s = await dial(addr, 443 + OFFSET, { servername: sni, ca: CA });
      assert.equal(peerCN(s), cn, sni);
      assert.equal(echoOf(await get(s, sni, "/")).host, sni);
      s.destroy();
    }
  });

  it("serves h2 and HTTP/1.1 by ALPN", async () => {
    const h1 = await dial(addr, 443 + OFFSET, { servername: "a.example.com", ca: CA, alpn: ["http/1.1"] });
    assert.equal(h1.alpnProtocol, "http/1.1");
    assert.equal(echoOf(await get(h1, "a.example.com", "/h1")).path, "/h1");
    h1.destroy();
    const { session, socket } = await h2open(addr, 443 + OFFSET, { servername: "a.example.com", ca: CA });
    assert.equal(peerCN(socket), "a.example.com");
    const j = echoOf(await h2get(session, "a.example.com", "/h2"));
    assert.equal(j.path, "/h2");
    assert.equal(j.host, "a.example.com");
    assert.deepEqual(j.headers["X-Forwarded-Proto"], ["https"]);
    session.close();
    // A client that offers no ALPN at all gets HTTP/1.1.
    const none = await dial(addr, 443 + OFFSET, { servername: "b.example.com", ca: CA, alpn: [] });
    assert.equal(echoOf(await get(none, "b.example.com", "/")).proto, "HTTP/1.1");
    none.destroy();
  });

  it("serves clients without SNI, or with an unknown one, from a listener without hostname", async () => {
    for (const sni of ["", "unknown.example.net"]) {
      const s = await dial(addr, 8443 + OFFSET, { servername: sni, ca: CA });
      assert.equal(peerCN(s), "any.example.com");
      assert.equal(echoOf(await get(s, "whatever.example", "/")).pod, "v1-pod");
      s.destroy();
    }
  });

  it("closes connections whose SNI no listener serves", async () => {
    for (const sni of ["", "c.example.com", "multi.org"]) {
      await assert.rejects(dial(addr, 443 + OFFSET, { servername: sni, ca: CA }), sni || "no SNI");
    }
    // The proxy still serves afterwards.
    const s = await dial(addr, 443 + OFFSET, { servername: "a.example.com", ca: CA });
    assert.equal((await get(s, "a.example.com", "/")).status, 200);
    s.destroy();
  });

  it("serves a ClientHello that arrives one byte at a time", async () => {
    const s = await tlsOver(await trickle(addr, 443 + OFFSET), { servername: "b.example.com", ca: CA });
    assert.equal(peerCN(s), "b.example.com");
    assert.equal(echoOf(await get(s, "b.example.com", "/slow")).path, "/slow");
    s.destroy();
  });

  it("redirects HTTP to HTTPS, and the redirect target serves (cilium#28796)", async () => {
    const r = await send({ address: addr, port: 80 + OFFSET, host: "redirect.example.com", path: "/login?next=%2F" });
    assert.equal(r.status, 301);
    const location = new URL(String(r.headers.location));
    assert.equal(location.protocol, "https:");
    assert.equal(location.hostname, "redirect.example.com");
    // In tests the proxy adds its port offset to redirect ports: 443 is served on 443 + offset.
    assert.equal(Number(location.port), 443 + OFFSET);
    const s = await dial(addr, Number(location.port), { servername: location.hostname, ca: CA });
    assert.equal(peerCN(s), "redirect.example.com");
    const j = echoOf(await get(s, location.host, location.pathname + location.search));
    assert.equal(j.path, "/login?next=%2F");
    s.destroy();
  });
});

describe("HTTPS limits", { timeout: 15_000 }, () => {
  const addr = randomLoopback();
  let v1: EchoServer;
  let stack: Stack;

  before(async () => {
    v1 = await startEcho({ mode: "http", host: addr, port: 0, identity: { pod: "v1-pod", namespace: NS } });
    const yaml = `${GATEWAY_CLASS_YAML}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: ${NS}}
spec:
  gatewayClassName: sluice
  listeners:
  - {name: http, protocol: HTTP, port: 80}
  - {name: https, protocol: HTTPS, port: 443, hostname: a.example.com, tls: {certificateRefs: [{name: cert-a}]}}
${secrets({ "cert-a": cert.a })}---
${backendService(NS, "v1", 8080, [{ address: addr, port: v1.port, pod: "v1-pod" }])}${route("web", ["http", "https"], `  rules:
  - backendRefs: [{name: v1, port: 8080}]
`)}`;
    stack = await startStack(objectsOf(yaml), { address: addr, portOffset: OFFSET, proxy: { limits: { headersTimeoutMs: 300, maxHeaders: 10 } } });
  });
  after(async () => {
    await stack.close();
    await v1.close();
  });

  it("closes HTTP/1.1 connections that trickle their headers (slowloris), over TLS and in plaintext", async () => {
    for (const tlsOn of [true, false]) {
      const s = tlsOn ? await dial(addr, 443 + OFFSET, { servername: "a.example.com", ca: CA }) : track(net.connect({ host: addr, port: 80 + OFFSET }));
      const started = Date.now();
      const result = drain(s);
      // One header, one byte at a time: never complete, never too large.
      s.write("GET / HTTP/1.1\r\nhost: a.example.com\r\nx-slow: ");
      const timer = setInterval(() => s.write("a"), 50);
      const r = await result;
      clearInterval(timer);
      const took = Date.now() - started;
      assert.ok(took < 3000, `tls=${tlsOn}: closed after ${took} ms`);
      assert.match(r.text, /^HTTP\/1\.1 408 /, `tls=${tlsOn}`);
    }
  });

  it("applies the header count limit to HTTP/1.1 over TLS", async () => {
    const s = await dial(addr, 443 + OFFSET, { servername: "a.example.com", ca: CA });
    const many = Object.fromEntries(Array.from({ length: 12 }, (_, i) => [`x-h${i}`, "v"]));
    assert.equal((await get(s, "a.example.com", "/", many)).status, 431);
    s.destroy();
  });
});

describe("HTTPRouteHTTPSListenerDetectMisdirectedRequests over h2", { timeout: 15_000 }, () => {
  const addr = randomLoopback();
  const echoes: EchoServer[] = [];
  let stack: Stack;

  before(async () => {
    for (const v of ["v1", "v2", "v3"]) echoes.push(await startEcho({ mode: "http", host: addr, port: 0, identity: { pod: `infra-backend-${v}`, namespace: NS } }));
    const listener = (name: string, hostname?: string): string =>
      `  - name: ${name}\n    port: 443\n    protocol: HTTPS\n${hostname ? `    hostname: "${hostname}"\n` : ""}    tls: {certificateRefs: [{name: tls-validity-checks-certificate}]}\n`;
    const r = (n: number, section: string, backend: string, hostnames = ""): string => route(`test-${n}`, [section], `${hostnames}  rules:
  - matches: [{path: {type: PathPrefix, value: /detect-misdirected-requests}}]
    backendRefs: [{name: ${backend}, port: 8080}]
`);
    const yaml = `${GATEWAY_CLASS_YAML}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: ${NS}}
spec:
  gatewayClassName: sluice
  listeners:
${listener("https")}${listener("https-with-hostname", "second-example.org")}${listener("https-with-wildcard-hostname", "*.wildcard.org")}${listener("https-with-hostname-matching-wildcard", "fourth-example.wildcard.org")}${secrets({ "tls-validity-checks-certificate": cert.misdirect })}${["v1", "v2", "v3"].map((v, i) => `---\n${backendService(NS, `infra-backend-${v}`, 8080, [{ address: addr, port: (echoes[i] as EchoServer).port, pod: `infra-backend-${v}` }])}`).join("")}${r(1, "https", "infra-backend-v1", "  hostnames: [example.org]\n")}${r(2, "https-with-hostname", "infra-backend-v2")}${r(3, "https-with-wildcard-hostname", "infra-backend-v3")}${r(4, "https-with-hostname-matching-wildcard", "infra-backend-v1")}`;
    stack = await startStack(objectsOf(yaml), { address: addr, portOffset: OFFSET });
  });
  after(async () => {
    await stack.close();
    for (const e of echoes) await e.close();
  });

  it("answers 200, 421 or 404 for every (SNI, Host) pair", async () => {
    const cases: [sni: string, host: string, status: number, backend?: string][] = [
      ["example.org", "example.org", 200, "v1"],
      ["example.org", "second-example.org", 421],
      ["example.org", "unknown-example.org", 404],
      ["second-example.org", "second-example.org", 200, "v2"],
      ["second-example.org", "example.org", 421],
      ["second-example.org", "unknown-example.org", 421],
      ["third-example.wildcard.org", "third-example.wildcard.org", 200, "v3"],
      ["third-example.wildcard.org", "fith-example.wildcard.org", 200, "v3"],
      ["third-example.wildcard.org", "fourth-example.wildcard.org", 421],
      ["third-example.wildcard.org", "second-example.org", 421],
      ["third-example.wildcard.org", "unknown-example.org", 421],
      ["fourth-example.wildcard.org", "fourth-example.wildcard.org", 200, "v1"],
      ["fourth-example.wildcard.org", "fith-example.wildcard.org", 421],
      ["unknown-example.org", "example.org", 200, "v1"],
      ["unknown-example.org", "unknown-example.org", 404],
    ];
    const got = await Promise.all(cases.map(async ([sni, host]) => {
      const { session } = await h2open(addr, 443 + OFFSET, { servername: sni, ca: CA });
      try {
        return await h2get(session, host, "/detect-misdirected-requests");
      } finally {
        session.close();
      }
    }));
    cases.forEach(([sni, host, status, backend], i) => {
      const r = got[i] as Reply;
      assert.equal(r.status, status, `SNI ${sni}, Host ${host}: ${r.body}`);
      if (backend) assert.equal((JSON.parse(r.body) as EchoHttpResponse).pod, `infra-backend-${backend}`, `SNI ${sni}, Host ${host}`);
    });
  });
});

describe("TLSRoute", { timeout: 15_000 }, () => {
  const addr = randomLoopback();
  let tlsEcho: EchoServer;
  let tcpEcho: EchoServer;
  let web: EchoServer;
  let stack: Stack;

  before(async () => {
    tlsEcho = await startEcho({ mode: "tls", host: addr, port: 0, identity: { pod: "tls-pod", namespace: NS }, tls: { cert: cert.pass.cert, key: cert.pass.key } });
    tcpEcho = await startEcho({ mode: "tcp", host: addr, port: 0, identity: { pod: "tcp-pod", namespace: NS } });
    web = await startEcho({ mode: "http", host: addr, port: 0, identity: { pod: "web-pod", namespace: NS } });
    // Passthrough, TLS termination and HTTPS share port 443, told apart by SNI.
    const yaml = `${GATEWAY_CLASS_YAML}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: ${NS}}
spec:
  gatewayClassName: sluice
  listeners:
  - {name: pass, protocol: TLS, port: 443, hostname: "*.pass.org", tls: {mode: Passthrough}}
  - {name: term, protocol: TLS, port: 443, hostname: term.example.org, tls: {mode: Terminate, certificateRefs: [{name: term}]}}
  - {name: web, protocol: HTTPS, port: 443, hostname: web.example.org, tls: {certificateRefs: [{name: web}]}}
${secrets({ term: cert.term, web: cert.web })}---
${backendService(NS, "tls-echo", 443, [{ address: addr, port: tlsEcho.port, pod: "tls-pod" }])}---
${backendService(NS, "tcp-echo", 9000, [{ address: addr, port: tcpEcho.port, pod: "tcp-pod" }])}---
${backendService(NS, "web", 8080, [{ address: addr, port: web.port, pod: "web-pod" }])}${route("pass", ["pass"], `  hostnames: [a.pass.org]
  rules:
  - backendRefs: [{name: tls-echo, port: 443}]
`, "TLSRoute")}${route("term", ["term"], `  hostnames: [term.example.org]
  rules:
  - backendRefs: [{name: tcp-echo, port: 9000}]
`, "TLSRoute")}${route("web", ["web"], `  rules:
  - backendRefs: [{name: web, port: 8080}]
`)}`;
    stack = await startStack(objectsOf(yaml), { address: addr, portOffset: OFFSET });
  });
  after(async () => {
    await stack.close();
    await tlsEcho.close();
    await tcpEcho.close();
    await web.close();
  });

  it("passes TLS through to the backend, which terminates it", async () => {
    for (const alpn of [["http/1.1"], ["h2", "http/1.1"]]) {
      const s = await dial(addr, 443 + OFFSET, { servername: "a.pass.org", ca: CA, alpn });
      // The backend's own certificate, and the backend's own ALPN choice.
      assert.equal(peerCN(s), "a.pass.org");
      assert.equal(s.alpnProtocol, alpn[0]);
      if (s.alpnProtocol === "h2") {
        const session = http2.connect(`https://${addr}`, { createConnection: () => s });
        const j = echoOf(await h2get(session, "a.pass.org", "/p2"));
        assert.equal(j.proto, "HTTP/2.0");
        assert.equal(j.sni, "a.pass.org");
        session.close();
      } else {
        const j = echoOf(await get(s, "a.pass.org", "/p1"));
        assert.equal(j.pod, "tls-pod");
        assert.equal(j.sni, "a.pass.org");
        assert.equal(j.tls?.serverName, "a.pass.org");
        // Nothing was added on the way: the proxy never saw the request.
        assert.equal(j.headers["X-Forwarded-For"], undefined);
        s.destroy();
      }
    }
  });

  it("passes through a ClientHello written one byte at a time", async () => {
    const s = await tlsOver(await trickle(addr, 443 + OFFSET), { servername: "a.pass.org", ca: CA });
    assert.equal(peerCN(s), "a.pass.org");
    assert.equal(echoOf(await get(s, "a.pass.org", "/trickle")).sni, "a.pass.org");
    s.destroy();
  });

  it("closes an unknown SNI without a byte of TLS alert", async () => {
    // b.pass.org selects the passthrough listener but no route; c.other.org selects no listener.
    for (const sni of ["b.pass.org", "c.other.org"]) {
      const raw = track(net.connect({ host: addr, port: 443 + OFFSET }));
      const result = drain(raw);
      raw.write(await clientHello(sni));
      const r = await result;
      assert.equal(r.bytes, 0, sni);
      assert.ok(r.ended && !r.reset, `${sni}: expected a clean EOF, got ${JSON.stringify(r)}`);
    }
  });

  it("terminates TLS and splices the plaintext to a TCP backend", async () => {
    const s = await dial(addr, 443 + OFFSET, { servername: "term.example.org", ca: CA });
    assert.equal(peerCN(s), "term.example.org");
    const lines: string[] = [];
    let buf = "";
    const gotLines = (n: number): Promise<void> => new Promise((resolve) => {
      const check = (): void => {
        if (lines.length >= n) {
          s.off("data", onData);
          resolve();
        }
      };
      const onData = (c: Buffer): void => {
        buf += c.toString();
        let i;
        while ((i = buf.indexOf("\n")) >= 0) {
          lines.push(buf.slice(0, i));
          buf = buf.slice(i + 1);
        }
        check();
      };
      s.on("data", onData);
      check();
    });
    await gotLines(1);
    assert.equal((JSON.parse(lines[0] as string) as { pod: string }).pod, "tcp-pod");
    s.write("ping over tls\n");
    await gotLines(2);
    assert.equal(lines[1], "ping over tls");
    s.destroy();
  });

  it("serves HTTPS on the same port by SNI", async () => {
    const s = await dial(addr, 443 + OFFSET, { servername: "web.example.org", ca: CA });
    assert.equal(peerCN(s), "web.example.org");
    assert.equal(echoOf(await get(s, "web.example.org", "/")).pod, "web-pod");
    s.destroy();
  });
});

describe("frontend client-certificate validation", { timeout: 15_000 }, () => {
  const addr = randomLoopback();
  let v1: EchoServer;
  let stack: Stack;

  before(async () => {
    v1 = await startEcho({ mode: "http", host: addr, port: 0, identity: { pod: "v1-pod", namespace: NS } });
    const yaml = `${GATEWAY_CLASS_YAML}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: ${NS}}
spec:
  gatewayClassName: sluice
  tls:
    frontend:
      default:
        validation:
          caCertificateRefs: [{group: "", kind: ConfigMap, name: client-ca}]
      perPort:
      - port: 8443
        tls:
          validation:
            mode: AllowInsecureFallback
            caCertificateRefs: [{group: "", kind: ConfigMap, name: client-ca}]
  listeners:
  - {name: strict, protocol: HTTPS, port: 443, tls: {certificateRefs: [{name: mtls}]}}
  - {name: lenient, protocol: HTTPS, port: 8443, tls: {certificateRefs: [{name: mtls}]}}
${secrets({ mtls: cert.mtls })}${caConfigMap("client-ca", CA)}---
${backendService(NS, "v1", 8080, [{ address: addr, port: v1.port, pod: "v1-pod" }])}${route("web", ["strict", "lenient"], `  rules:
  - backendRefs: [{name: v1, port: 8080}]
`)}`;
    stack = await startStack(objectsOf(yaml), { address: addr, portOffset: OFFSET });
    const gw = stack.result.statuses.get(`Gateway/${NS}/gw`)?.status as { listeners?: { name: string; conditions: { type: string; status: string }[] }[] };
    for (const l of gw.listeners ?? []) assert.ok(l.conditions.every((c) => c.type === "Conflicted" ? c.status === "False" : c.status === "True"), JSON.stringify(l));
  });
  after(async () => {
    await stack.close();
    await v1.close();
  });

  /** A request over a fresh connection; rejects when the proxy refuses the handshake. */
  async function attempt(port: number, sni: string, client?: TestCert, h2 = false): Promise<Reply> {
    if (h2) {
      const { session } = await h2open(addr, port, { servername: sni, ca: CA, ...(client ? { cert: client } : {}) });
      try {
        return await h2get(session, sni, "/");
      } finally {
        session.destroy();
      }
    }
    const s = await dial(addr, port, { servername: sni, ca: CA, ...(client ? { cert: client } : {}) });
    try {
      return await get(s, sni || "mtls.example.org", "/");
    } finally {
      s.destroy();
    }
  }

  it("AllowValidOnly accepts a valid client certificate and nothing else", async () => {
    for (const h2 of [false, true]) {
      assert.equal((await attempt(443 + OFFSET, "mtls.example.org", cert.client, h2)).status, 200);
      // TLS 1.3: the client's handshake completes before the server checks its certificate; the
      // refusal (an alert and a close) arrives instead of the response.
      await assert.rejects(attempt(443 + OFFSET, "mtls.example.org", undefined, h2), `no certificate, h2=${h2}`);
      await assert.rejects(attempt(443 + OFFSET, "mtls.example.org", cert.otherClient, h2), `untrusted certificate, h2=${h2}`);
    }
    // Also without SNI (the listener's default context).
    assert.equal((await attempt(443 + OFFSET, "", cert.client)).status, 200);
    await assert.rejects(attempt(443 + OFFSET, "", undefined));
  });

  it("resumes sessions, but never with a ticket another listener issued", async () => {
    const strict = await dial(addr, 443 + OFFSET, { servername: "mtls.example.org", ca: CA, cert: cert.client });
    assert.equal((await get(strict, "mtls.example.org", "/")).status, 200);
    const ticket = sessions.get(strict);
    assert.ok(ticket, "no session ticket");
    strict.destroy();
    const resumed = await dial(addr, 443 + OFFSET, { servername: "mtls.example.org", ca: CA, cert: cert.client, session: ticket });
    assert.equal(resumed.isSessionReused(), true);
    assert.equal((await get(resumed, "mtls.example.org", "/")).status, 200);
    resumed.destroy();

    // A ticket from the lenient listener, where no certificate was needed, is no way into the strict one.
    const lenient = await dial(addr, 8443 + OFFSET, { servername: "mtls.example.org", ca: CA });
    assert.equal((await get(lenient, "mtls.example.org", "/")).status, 200);
    const foreign = sessions.get(lenient);
    assert.ok(foreign, "no session ticket");
    lenient.destroy();
    await assert.rejects((async () => {
      const s = await dial(addr, 443 + OFFSET, { servername: "mtls.example.org", ca: CA, session: foreign });
      try {
        return await get(s, "mtls.example.org", "/");
      } finally {
        s.destroy();
      }
    })());
  });

  it("AllowInsecureFallback also accepts clients without a valid certificate", async () => {
    assert.equal((await attempt(8443 + OFFSET, "mtls.example.org", cert.client)).status, 200);
    assert.equal((await attempt(8443 + OFFSET, "mtls.example.org")).status, 200);
    assert.equal((await attempt(8443 + OFFSET, "mtls.example.org", cert.otherClient)).status, 200);
    assert.equal((await attempt(8443 + OFFSET, "mtls.example.org", undefined, true)).status, 200);
  });
});

describe("BackendTLSPolicy", { timeout: 15_000 }, () => {
  const addr = randomLoopback();
  let backend: EchoServer;
  let stack: Stack;

  before(async () => {
    // The backend asks for a client certificate and reports the one it got.
    backend = await startEcho({ mode: "tls", host: addr, port: 0, identity: { pod: "tls-pod", namespace: NS }, tls: { cert: cert.backend.cert, key: cert.backend.key, ca: CA, requestCert: true } });
    const svc = (name: string): string => `---\n${backendService(NS, name, 443, [{ address: addr, port: backend.port, pod: "tls-pod" }])}`;
    const policy = (name: string, service: string, ca: string, hostname: string): string => `---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {name: ${name}, namespace: ${NS}}
spec:
  targetRefs: [{group: "", kind: Service, name: ${service}}]
  validation:
    caCertificateRefs: [{group: "", kind: ConfigMap, name: ${ca}}]
    hostname: ${hostname}
`;
    const yaml = `${GATEWAY_CLASS_YAML}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: ${NS}}
spec:
  gatewayClassName: sluice
  tls:
    backend:
      clientCertificateRef: {group: "", kind: Secret, name: gateway-client}
  listeners:
  - {name: http, protocol: HTTP, port: 80}
${secrets({ "gateway-client": cert.client })}${caConfigMap("backend-ca", CA)}${caConfigMap("other-ca", other.ca.cert)}${svc("good")}${svc("bad-san")}${svc("bad-ca")}${policy("good", "good", "backend-ca", "backend.example.internal")}${policy("bad-san", "bad-san", "backend-ca", "other.example.internal")}${policy("bad-ca", "bad-ca", "other-ca", "backend.example.internal")}${route("web", ["http"], `  rules:
  - matches: [{path: {type: PathPrefix, value: /bad-san}}]
    backendRefs: [{name: bad-san, port: 443}]
  - matches: [{path: {type: PathPrefix, value: /bad-ca}}]
    backendRefs: [{name: bad-ca, port: 443}]
  - backendRefs: [{name: good, port: 443}]
`)}`;
    stack = await startStack(objectsOf(yaml), { address: addr, portOffset: OFFSET });
  });
  after(async () => {
    await stack.close();
    await backend.close();
  });

  it("connects with the policy's SNI and CA and presents the Gateway's client certificate", async () => {
    const r = await send({ address: addr, port: 80 + OFFSET, host: "app.example.com", path: "/hello" });
    const j = echoOf(r);
    assert.equal(j.pod, "tls-pod");
    assert.equal(j.sni, "backend.example.internal");
    assert.equal(j.path, "/hello");
    const presented = j.tls?.peerCertificates[0];
    assert.ok(presented, "the proxy presented no client certificate");
    assert.equal(new X509Certificate(presented).fingerprint256, new X509Certificate(cert.client.cert).fingerprint256);
  });

  it("answers 5xx when the backend's certificate fails validation, and keeps serving", async () => {
    for (const path of ["/bad-san", "/bad-ca", "/bad-san/again", "/bad-ca/again"]) {
      const r = await send({ address: addr, port: 80 + OFFSET, host: "app.example.com", path });
      assert.ok(r.status >= 500 && r.status < 600, `${path}: ${r.status} ${r.body}`);
    }
    const h2 = await send({ address: addr, port: 80 + OFFSET, host: "app.example.com", path: "/bad-ca", h2: true });
    assert.ok(h2.status >= 500 && h2.status < 600, `h2c: ${h2.status}`);
    assert.equal(echoOf(await send({ address: addr, port: 80 + OFFSET, host: "app.example.com", path: "/" })).sni, "backend.example.internal");
  });

  it("upgrades WebSockets to the TLS backend", async () => {
    const raw = track(net.connect({ host: addr, port: 80 + OFFSET }));
    const { reply, ws } = await Ws.connect(raw, "app.example.com", "/ws");
    assert.equal(reply.status, 101, reply.body);
    ws?.send("over tls");
    assert.deepEqual(await ws?.next(), { opcode: 1, text: "over tls" });
    raw.destroy();
    for (const path of ["/bad-ca/ws", "/bad-san/ws"]) {
      const bad = track(net.connect({ host: addr, port: 80 + OFFSET }));
      const refused = await Ws.connect(bad, "app.example.com", path);
      assert.equal(refused.ws, undefined);
      assert.ok(refused.reply.status >= 500, `${path}: ${refused.reply.status}`);
      bad.destroy();
    }
  });
});

describe("certificate rotation", { timeout: 15_000 }, () => {
  const addr = randomLoopback();
  let v1: EchoServer;
  let stack: Stack;
  const yaml = (c: TestCert): string => `${GATEWAY_CLASS_YAML}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: ${NS}}
spec:
  gatewayClassName: sluice
  listeners:
  - {name: https, protocol: HTTPS, port: 443, hostname: rot.example.org, tls: {certificateRefs: [{name: rot}]}}
  - {name: any, protocol: HTTPS, port: 8443, tls: {certificateRefs: [{name: rot}]}}
${secrets({ rot: c })}---
${backendService(NS, "v1", 8080, [{ address: addr, port: v1.port, pod: "v1-pod" }])}${route("web", ["https", "any"], `  rules:
  - backendRefs: [{name: v1, port: 8080}]
`)}`;
  // Read before any application data: Node's client forgets the peer certificate once TLS 1.3
  // session tickets arrive.
  const serial = (s: tls.TLSSocket): string => s.getPeerX509Certificate()?.serialNumber ?? "";
  const serialOf = (c: TestCert): string => new X509Certificate(c.cert).serialNumber;

  before(async () => {
    v1 = await startEcho({ mode: "http", host: addr, port: 0, identity: { pod: "v1-pod", namespace: NS } });
    stack = await startStack(objectsOf(yaml(cert.rot1)), { address: addr, portOffset: OFFSET });
  });
  after(async () => {
    await stack.close();
    await v1.close();
  });

  it("keeps open connections and serves new ones with the new certificate", async () => {
    const h1 = await dial(addr, 443 + OFFSET, { servername: "rot.example.org", ca: CA });
    const { session, socket: h2 } = await h2open(addr, 443 + OFFSET, { servername: "rot.example.org", ca: CA });
    const noSni = await dial(addr, 8443 + OFFSET, { servername: "", ca: CA });
    for (const s of [h1, h2, noSni]) assert.equal(serial(s), serialOf(cert.rot1));
    assert.equal((await get(h1, "rot.example.org", "/before")).status, 200);
    assert.equal((await h2get(session, "rot.example.org", "/before")).status, 200);

    await stack.update(objectsOf(yaml(cert.rot2)));

    // The same connections and session still answer.
    const again = await get(h1, "rot.example.org", "/after");
    assert.equal(echoOf(again).path, "/after");
    assert.equal(echoOf(await h2get(session, "rot.example.org", "/after")).path, "/after");
    assert.equal((await get(noSni, "anything.example", "/after")).status, 200);

    // New connections, with SNI or without, get the new certificate.
    const fresh = await dial(addr, 443 + OFFSET, { servername: "rot.example.org", ca: CA });
    assert.equal(serial(fresh), serialOf(cert.rot2));
    assert.equal((await get(fresh, "rot.example.org", "/new")).status, 200);
    const freshNoSni = await dial(addr, 8443 + OFFSET, { servername: "", ca: CA });
    assert.equal(serial(freshNoSni), serialOf(cert.rot2));
    assert.equal((await get(freshNoSni, "x.example", "/new")).status, 200);
    const { session: s2, socket: h2new } = await h2open(addr, 443 + OFFSET, { servername: "rot.example.org", ca: CA });
    assert.equal(serial(h2new), serialOf(cert.rot2));
    assert.equal((await h2get(s2, "rot.example.org", "/new")).status, 200);
    for (const s of [h1, noSni, fresh, freshNoSni]) s.destroy();
    session.close();
    s2.close();
  });
});

describe("WebSocket", { timeout: 15_000 }, () => {
  const addr = randomLoopback();
  let echo: EchoServer;
  let inspect: http.Server;
  let stack: Stack;

  before(async () => {
    echo = await startEcho({ mode: "http", host: addr, port: 0, identity: { pod: "ws-pod", namespace: NS } });
    // Accepts any upgrade, answering with the request headers it saw, base64-encoded in a
    // response header; a plain request gets them as its body.
    inspect = http.createServer((req, res) => res.end(JSON.stringify({ plain: true, url: req.url, headers: req.headers })));
    inspect.on("upgrade", (req: http.IncomingMessage, socket: Duplex) => {
      const accept = createHash("sha1").update(`${String(req.headers["sec-websocket-key"])}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest("base64");
      const seen = Buffer.from(JSON.stringify({ method: req.method, url: req.url, headers: req.headers })).toString("base64");
      // /inspect/bad-accept gets a handshake answer that does not match its key.
      const answer = req.url?.includes("bad-accept") ? "bm90IHRoZSByaWdodCBhbnN3ZXI=" : accept;
      socket.end(`HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: ${answer}\r\nx-seen: ${seen}\r\nx-drop: 1\r\nx-kept: k\r\n\r\n`);
    });
    await new Promise<void>((resolve) => inspect.listen(0, addr, resolve));
    const inspectPort = (inspect.address() as net.AddressInfo).port;
    const yaml = `${GATEWAY_CLASS_YAML}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: ${NS}}
spec:
  gatewayClassName: sluice
  listeners:
  - {name: http, protocol: HTTP, port: 80}
  - {name: https, protocol: HTTPS, port: 443, hostname: ws.example.org, tls: {certificateRefs: [{name: ws}]}}
${secrets({ ws: cert.ws })}---
${backendService(NS, "echo", 8080, [{ address: addr, port: echo.port, pod: "ws-pod" }])}---
${backendService(NS, "inspect", 8080, [{ address: addr, port: inspectPort, pod: "inspect-pod" }])}---
apiVersion: v1
kind: Service
metadata: {name: empty, namespace: ${NS}}
spec:
  ports: [{name: p, port: 8080}]
${route("ws", ["http", "https"], `  rules:
  - matches: [{path: {type: PathPrefix, value: /inspect}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {add: [{name: X-Added, value: yes}], set: [{name: X-Set, value: s}], remove: [x-remove]}
    - type: ResponseHeaderModifier
      responseHeaderModifier: {set: [{name: X-Resp, value: r}], remove: [x-drop]}
    backendRefs: [{name: inspect, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /empty}}]
    backendRefs: [{name: empty, port: 8080}]
  - backendRefs: [{name: echo, port: 8080}]
`)}`;
    stack = await startStack(objectsOf(yaml), { address: addr, portOffset: OFFSET });
  });
  after(async () => {
    await stack.close();
    await echo.close();
    inspect.closeAllConnections();
    await new Promise((r) => inspect.close(r));
  });

  it("upgrades through an HTTP listener (the global WebSocket client)", async () => {
    const ws = new WebSocket(`ws://${addr}:${80 + OFFSET}/chat`);
    try {
      await new Promise<void>((resolve, reject) => {
        ws.onopen = () => resolve();
        ws.onerror = () => reject(new Error("WebSocket failed"));
      });
      const echoed = new Promise<string>((resolve) => (ws.onmessage = (e: MessageEvent) => resolve(String(e.data))));
      ws.send("hello through the proxy");
      assert.equal(await echoed, "hello through the proxy");
    } finally {
      ws.close();
    }
  });

  it("upgrades through an HTTPS listener", async () => {
    const s = await dial(addr, 443 + OFFSET, { servername: "ws.example.org", ca: CA });
    const { reply, ws } = await Ws.connect(s, "ws.example.org", "/chat");
    assert.equal(reply.status, 101, reply.body);
    for (const text of ["one", "two"]) {
      ws?.send(text);
      assert.deepEqual(await ws?.next(), { opcode: 1, text });
    }
    s.destroy();
  });

  it("applies the route's RequestHeaderModifier to the upgrade request", async () => {
    for (const tlsOn of [false, true]) {
      const s = tlsOn ? await dial(addr, 443 + OFFSET, { servername: "ws.example.org", ca: CA }) : track(net.connect({ host: addr, port: 80 + OFFSET }));
      const key = randomBytes(16).toString("base64");
      s.write(`GET /inspect/x HTTP/1.1\r\nhost: ws.example.org\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: ${key}\r\nsec-websocket-version: 13\r\nx-remove: gone\r\nx-set: old\r\n\r\n`);
      const r = await readResponse(s);
      assert.equal(r.status, 101, r.body);
      const seen = JSON.parse(Buffer.from(r.headers["x-seen"] ?? "", "base64").toString()) as { url: string; headers: Record<string, string> };
      assert.equal(seen.url, "/inspect/x");
      assert.equal(seen.headers["x-added"], "yes");
      assert.equal(seen.headers["x-set"], "s");
      assert.equal(seen.headers["x-remove"], undefined);
      assert.equal(seen.headers.upgrade, "websocket");
      assert.equal(seen.headers["x-forwarded-proto"], tlsOn ? "https" : "http");
      // The route's ResponseHeaderModifier applies to the 101 too; the handshake headers stay.
      assert.equal(r.headers["x-resp"], "r");
      assert.equal(r.headers["x-drop"], undefined);
      assert.equal(r.headers["x-kept"], "k");
      assert.equal(r.headers.connection, "Upgrade");
      s.destroy();
    }
  });

  it("closes a tunnel after the idle timeout, and only once nothing moves either way", async () => {
    const idleStack = await startStack(objectsOf(`${GATEWAY_CLASS_YAML}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: idle, namespace: ${NS}}
spec:
  gatewayClassName: sluice
  listeners: [{name: http, protocol: HTTP, port: 81}]
---
${backendService(NS, "echo", 8080, [{ address: addr, port: echo.port, pod: "ws-pod" }])}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: idle, namespace: ${NS}}
spec:
  parentRefs: [{name: idle}]
  rules: [{backendRefs: [{name: echo, port: 8080}]}]
`), { address: addr, portOffset: OFFSET, proxy: { limits: { tunnelIdleTimeoutMs: 400 } } });
    try {
      const s = track(net.connect({ host: addr, port: 81 + OFFSET }));
      const { reply, ws } = await Ws.connect(s, "idle.example", "/chat");
      assert.equal(reply.status, 101, reply.body);
      const closed = new Promise<number>((r) => s.once("close", () => r(performance.now())));
      // Traffic every 150 ms keeps it open well past the timeout.
      const t0 = performance.now();
      for (let i = 0; i < 6; i++) {
        ws?.send(`ping ${i}`);
        assert.deepEqual(await ws?.next(), { opcode: 1, text: `ping ${i}` });
        await new Promise((r) => setTimeout(r, 150));
      }
      assert.ok(performance.now() - t0 > 800);
      const quietFrom = performance.now();
      const at = await closed;
      assert.ok(at - quietFrom >= 200 && at - quietFrom < 5000, `closed ${Math.round(at - quietFrom)} ms after the last traffic`);
    } finally {
      await idleStack.close();
    }
  });

  it("answers 503 to an upgrade for a route without endpoints, and closes", async () => {
    for (const tlsOn of [false, true]) {
      const s = tlsOn ? await dial(addr, 443 + OFFSET, { servername: "ws.example.org", ca: CA }) : track(net.connect({ host: addr, port: 80 + OFFSET }));
      const { reply, ws } = await Ws.connect(s, "ws.example.org", "/empty");
      assert.equal(ws, undefined);
      assert.equal(reply.status, 503, reply.body);
      // The connection is not left open waiting for anything.
      const closed = new Promise((r) => s.once("close", r));
      s.resume();
      await closed;
    }
  });

  it("serves any other Upgrade (h2c, ...) as a plain request, never as a tunnel, even where the backend would accept it", async () => {
    for (const tlsOn of [false, true]) {
      for (const [upgrade, connection] of [["h2c", "Upgrade, HTTP2-Settings"], ["foo", "upgrade"]] as const) {
        const s = tlsOn ? await dial(addr, 443 + OFFSET, { servername: "ws.example.org", ca: CA }) : track(net.connect({ host: addr, port: 80 + OFFSET }));
        s.write(`GET /inspect/plain HTTP/1.1\r\nhost: ws.example.org\r\nupgrade: ${upgrade}\r\nconnection: ${connection}\r\nhttp2-settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n`);
        const r = await readResponse(s);
        assert.equal(r.status, 200, `${upgrade} over ${tlsOn ? "TLS" : "plaintext"}: ${r.body}`);
        const seen = JSON.parse(r.body) as { plain?: boolean; url: string; headers: Record<string, string> };
        assert.equal(seen.plain, true, upgrade);
        assert.equal(seen.url, "/inspect/plain");
        assert.equal(seen.headers.upgrade, undefined);
        assert.equal(seen.headers["http2-settings"], undefined);
        s.destroy();
      }
    }
  });

  it("answers an HTTP/1.1 CONNECT with 405, over TLS and in plaintext, and keeps serving", async () => {
    for (const tlsOn of [true, false]) {
      const s = tlsOn ? await dial(addr, 443 + OFFSET, { servername: "ws.example.org", ca: CA }) : track(net.connect({ host: addr, port: 80 + OFFSET }));
      s.write("CONNECT ws.example.org:443 HTTP/1.1\r\nhost: ws.example.org:443\r\n\r\n");
      const r = await readResponse(s);
      assert.equal(r.status, 405, `over ${tlsOn ? "TLS" : "plaintext"}: ${r.body}`);
      s.destroy();
    }
    const after = await send({ address: addr, port: 80 + OFFSET, host: "ws.example.org", path: "/after" });
    assert.equal(after.status, 200);
  });

  describe("over HTTP/2 (RFC 8441 extended CONNECT)", () => {
    /** An HTTP/2 session to the HTTPS listener (ALPN h2) or, in plaintext, with prior knowledge. */
    const session = async (tlsOn: boolean): Promise<http2.ClientHttp2Session> => {
      const c = tlsOn
        ? http2.connect(`https://${addr}:${443 + OFFSET}`, { servername: "ws.example.org", ca: CA })
        : http2.connect(`http://${addr}:${80 + OFFSET}`);
      c.on("error", () => undefined);
      const settings = await new Promise<http2.Settings>((resolve) => c.once("remoteSettings", resolve));
      assert.equal(settings.enableConnectProtocol, true, "the proxy does not offer extended CONNECT");
      return c;
    };
    const connect = (c: http2.ClientHttp2Session, path: string, extra: http2.OutgoingHttpHeaders = {}): Promise<{ stream: http2.ClientHttp2Stream; headers: http2.IncomingHttpHeaders }> => {
      const stream = c.request({ ":method": "CONNECT", ":protocol": "websocket", ":scheme": "https", ":path": path, ":authority": "ws.example.org", "sec-websocket-version": "13", ...extra }, { endStream: false });
      return new Promise((resolve, reject) => {
        stream.once("response", (headers) => resolve({ stream, headers }));
        stream.once("error", reject);
      });
    };

    it("tunnels WebSockets on streams of one connection, over TLS and h2c, beside ordinary requests", async () => {
      for (const tlsOn of [true, false]) {
        const c = await session(tlsOn);
        try {
          const [one, two] = await Promise.all([connect(c, "/chat"), connect(c, "/chat")]);
          for (const t of [one, two]) assert.equal(t.headers[":status"], 200);
          const a = new Ws(one.stream, Buffer.alloc(0));
          const b = new Ws(two.stream, Buffer.alloc(0));
          a.send("first");
          b.send("second");
          assert.deepEqual(await a.next(), { opcode: 1, text: "first" });
          assert.deepEqual(await b.next(), { opcode: 1, text: "second" });
          // The connection still carries ordinary requests while the tunnels are open.
          const get = c.request({ ":path": "/plain", ":authority": "ws.example.org" });
          const status = await new Promise((resolve) => get.once("response", (h) => resolve(h[":status"])));
          get.resume();
          assert.equal(status, 200);
          a.send("again");
          assert.deepEqual(await a.next(), { opcode: 1, text: "again" });
        } finally {
          c.destroy();
        }
      }
    });

    it("makes the HTTP/1.1 handshake with the backend itself, through the route's filters", async () => {
      const c = await session(true);
      try {
        const { stream, headers } = await connect(c, "/inspect/x", { "x-remove": "gone", "x-set": "old", "sec-websocket-protocol": "chat" });
        assert.equal(headers[":status"], 200);
        const seen = JSON.parse(Buffer.from(String(headers["x-seen"]), "base64").toString()) as { method: string; url: string; headers: Record<string, string> };
        assert.equal(seen.method, "GET");
        assert.equal(seen.url, "/inspect/x");
        assert.equal(seen.headers.upgrade, "websocket");
        assert.match(seen.headers.connection ?? "", /upgrade/i);
        assert.equal(Buffer.from(seen.headers["sec-websocket-key"] ?? "", "base64").length, 16);
        assert.equal(seen.headers["sec-websocket-version"], "13");
        assert.equal(seen.headers["sec-websocket-protocol"], "chat");
        assert.equal(seen.headers.host, "ws.example.org");
        assert.equal(seen.headers["x-added"], "yes");
        assert.equal(seen.headers["x-set"], "s");
        assert.equal(seen.headers["x-remove"], undefined);
        assert.equal(seen.headers["x-forwarded-proto"], "https");
        // The 101's handshake stays between the proxy and the backend; the route's response filters apply.
        assert.equal(headers["sec-websocket-accept"], undefined);
        assert.equal(headers["x-resp"], "r");
        assert.equal(headers["x-drop"], undefined);
        assert.equal(headers["x-kept"], "k");
        // The backend closed right after its 101: the proxy ends its half of the stream and
        // leaves the client's half open, without a reset (which could discard queued data).
        const closed = new Promise((resolve) => stream.once("close", resolve));
        await new Promise((resolve) => {
          stream.once("end", resolve);
          stream.resume();
        });
        await new Promise((resolve) => setTimeout(resolve, 50));
        assert.equal(stream.closed, false, `the proxy reset the stream (code ${stream.rstCode})`);
        stream.end();
        await closed;
        assert.equal(stream.rstCode, http2.constants.NGHTTP2_NO_ERROR);
      } finally {
        c.destroy();
      }
    });

    it("answers 502 when the backend's handshake answer does not match the key", async () => {
      const c = await session(false);
      try {
        const { stream, headers } = await connect(c, "/inspect/bad-accept");
        assert.equal(headers[":status"], 502);
        stream.resume();
      } finally {
        c.destroy();
      }
    });

    it("answers what cannot be tunnelled on its stream, and the connection goes on", async () => {
      const c = await session(true);
      try {
        const empty = await connect(c, "/empty");
        assert.equal(empty.headers[":status"], 503);
        empty.stream.resume();
        const plain = c.request({ ":method": "CONNECT", ":authority": "ws.example.org:443" }, { endStream: false });
        assert.equal(await new Promise((resolve) => plain.once("response", (h) => resolve(h[":status"]))), 405);
        const other = await connect(c, "/chat", { ":protocol": "connect-udp" });
        assert.equal(other.headers[":status"], 501);
        const { stream, headers } = await connect(c, "/chat");
        assert.equal(headers[":status"], 200);
        const ws = new Ws(stream, Buffer.alloc(0));
        ws.send("still here");
        assert.deepEqual(await ws.next(), { opcode: 1, text: "still here" });
      } finally {
        c.destroy();
      }
    });
  });

  it("answers 421 to an upgrade whose Host is not the listener its SNI chose", async () => {
    const s = await dial(addr, 443 + OFFSET, { servername: "ws.example.org", ca: CA });
    const { reply } = await Ws.connect(s, "other.example.org", "/chat");
    assert.equal(reply.status, 421);
    s.destroy();
  });
});
