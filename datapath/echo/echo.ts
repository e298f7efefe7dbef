// Sluice's echo backend, modelled on the Gateway API conformance suite's echo-basic: it answers
// every request with what it received, so tests and the standalone demo can check what a proxy
// forwarded (path, Host, headers, protocol, TLS parameters, which backend answered).
import { createHash, X509Certificate } from "node:crypto";
import dgram from "node:dgram";
import { fileURLToPath } from "node:url";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import type { Readable, Duplex } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import type tls from "node:tls";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

export type EchoMode = "http" | "tls" | "grpc" | "tcp" | "udp";

export interface EchoIdentity {
  pod?: string;
  namespace?: string;
  service?: string;
  /** Only reported by gRPC (Context.ingress), as upstream. */
  ingress?: string;
}

export interface EchoTlsOptions {
  /** PEM contents, not file names. */
  cert: string;
  key: string;
  /** PEM CA bundle: client certificates are then verified if given (unauthenticated clients still pass). */
  ca?: string;
  /** Ask clients for a certificate and report it, verified or not (implied by `ca`). */
  requestCert?: boolean;
}

export interface EchoOptions {
  mode: EchoMode;
  host: string;
  /** 0 picks an ephemeral port. */
  port: number;
  /** Defaults from env POD_NAME, NAMESPACE, SERVICE_NAME (and INGRESS_NAME). */
  identity?: EchoIdentity;
  /** Required for mode "tls". */
  tls?: EchoTlsOptions;
}

export interface EchoServer {
  address: string;
  port: number;
  /** Stops listening and destroys open connections, so callers never wait on idle clients. */
  close(): Promise<void>;
}

/** The JSON body of every HTTP answer (the shape of echo-basic's RequestAssertions). */
export interface EchoHttpResponse {
  path: string;
  host: string;
  method: string;
  proto: string;
  /** Go canonical header names; Host is reported in `host` only (as Go's http.Request does). */
  headers: Record<string, string[]>;
  namespace: string;
  ingress: string;
  service: string;
  pod: string;
  body?: string;
  tls?: EchoTlsAssertions;
  sni?: string;
}

export interface EchoTlsAssertions {
  version: string;
  serverName: string;
  negotiatedProtocol: string;
  cipherSuite: string;
  peerCertificates: string[];
}

interface ResolvedIdentity {
  pod: string;
  namespace: string;
  service: string;
  ingress: string;
}

export async function startEcho(opts: EchoOptions): Promise<EchoServer> {
  const id = resolveIdentity(opts.identity);
  switch (opts.mode) {
    case "http":
      return startHttp(opts, id);
    case "tls":
      return startTls(opts, id);
    case "grpc":
      return startGrpc(opts, id);
    case "tcp":
      return startTcp(opts, id);
    case "udp":
      return startUdp(opts, id);
    default:
      throw new Error(`unknown echo mode ${String(opts.mode satisfies never)}`);
  }
}

function resolveIdentity(i: EchoIdentity | undefined): ResolvedIdentity {
  const env = process.env;
  return {
    pod: i?.pod ?? env.POD_NAME ?? "",
    namespace: i?.namespace ?? env.NAMESPACE ?? "",
    service: i?.service ?? env.SERVICE_NAME ?? "",
    ingress: i?.ingress ?? env.INGRESS_NAME ?? "",
  };
}

function identityLine(id: ResolvedIdentity): string {
  return JSON.stringify({ pod: id.pod, namespace: id.namespace, service: id.service }) + "\n";
}

// ---------------------------------------------------------------------------------------------
// Listening and shutdown shared by the stream-based modes.

function listen(server: net.Server, host: string, port: number): Promise<net.AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host, port }, () => {
      server.off("error", reject);
      resolve(server.address() as net.AddressInfo);
    });
  });
}

/** Tracks sockets so close() can destroy them: server.close() alone waits for idle keep-alive clients. */
class SocketSet {
  readonly sockets = new Set<net.Socket>();
  add(s: net.Socket): void {
    this.sockets.add(s);
    s.once("close", () => this.sockets.delete(s));
  }
  destroyAll(): void {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }
}

function closer(server: net.Server, sockets: SocketSet, abort?: AbortController): () => Promise<void> {
  let closing: Promise<void> | undefined;
  return () => {
    closing ??= new Promise<void>((resolve) => {
      abort?.abort();
      server.close(() => resolve());
      sockets.destroyAll();
    });
    return closing;
  };
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 + h2c (prior knowledge) on one port.

const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

async function startHttp(opts: EchoOptions, id: ResolvedIdentity): Promise<EchoServer> {
  const abort = new AbortController();
  const handler = makeHttpHandler({ id, tls: false, signal: abort.signal });
  // Neither server listens: the front net.Server hands each connection to one of them.
  const h1 = http.createServer({ shouldUpgradeCallback: isWebSocketUpgrade }, handler);
  h1.on("upgrade", onWebSocketUpgrade);
  const h2 = http2.createServer({}, handler);
  const sockets = new SocketSet();
  const front = net.createServer((socket) => {
    sockets.add(socket);
    // A client that resets mid-sniff must not crash the process; the HTTP servers add their own handlers.
    socket.on("error", () => {});
    sniffPreface(socket, (isH2) => (isH2 ? h2 : h1).emit("connection", socket));
  });
  const addr = await listen(front, opts.host, opts.port);
  return { address: addr.address, port: addr.port, close: closer(front, sockets, abort) };
}

/** Reads until the bytes seen either are the HTTP/2 preface or cannot be, then hands the socket over. */
function sniffPreface(socket: net.Socket, handOver: (isH2: boolean) => void): void {
  let seen: Buffer = Buffer.alloc(0);
  const onData = (chunk: Buffer): void => {
    seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
    const n = Math.min(seen.length, H2_PREFACE.length);
    const isPrefix = seen.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
    if (isPrefix && seen.length < H2_PREFACE.length) return;
    socket.off("data", onData);
    socket.pause();
    socket.unshift(seen);
    handOver(isPrefix);
    // The receiving server only adds listeners; the paused socket needs an explicit resume.
    process.nextTick(() => socket.resume());
  };
  socket.on("data", onData);
}

// ---------------------------------------------------------------------------------------------
// HTTPS: HTTP/1.1 and h2 chosen by ALPN.

async function startTls(opts: EchoOptions, id: ResolvedIdentity): Promise<EchoServer> {
  const t = opts.tls;
  if (!t) throw new Error('echo mode "tls" needs tls.cert and tls.key');
  const abort = new AbortController();
  const handler = makeHttpHandler({ id, tls: true, signal: abort.signal });
  const verifyCa = t.ca !== undefined;
  const server = http2.createSecureServer(
    {
      cert: t.cert,
      key: t.key,
      ...(verifyCa ? { ca: t.ca } : {}),
      allowHTTP1: true,
      requestCert: verifyCa || t.requestCert === true,
      // Verification is done below so that clients without a certificate still get through
      // (Go's VerifyClientCertIfGiven, as echo-basic does).
      rejectUnauthorized: false,
      shouldUpgradeCallback: isWebSocketUpgrade,
    } as http2.SecureServerOptions,
    handler,
  );
  const sockets = new SocketSet();
  server.on("connection", (s: net.Socket) => sockets.add(s));
  server.on("secureConnection", (s: tls.TLSSocket) => {
    sockets.add(s);
    if (verifyCa && s.getPeerCertificate().raw !== undefined && !s.authorized) s.destroy();
  });
  // HTTP/1.1 connections go through Node's http machinery, which emits 'upgrade' on this server.
  server.on("upgrade", onWebSocketUpgrade);
  const addr = await listen(server, opts.host, opts.port);
  return { address: addr.address, port: addr.port, close: closer(server, sockets, abort) };
}

// ---------------------------------------------------------------------------------------------
// The request handler shared by http and tls modes.

type AnyRequest = http.IncomingMessage | http2.Http2ServerRequest;
type AnyResponse = http.ServerResponse | http2.Http2ServerResponse;

/** The part of both response classes we use (calling methods on the union does not typecheck). */
interface ResponseLike {
  setHeader(name: string, value: string | string[]): unknown;
  writeHead(status: number): unknown;
  end(body?: string): unknown;
}

interface HandlerContext {
  id: ResolvedIdentity;
  tls: boolean;
  signal: AbortSignal;
}

const MAX_BODY = 64 * 1024;
/** Connection-specific headers HTTP/2 forbids (RFC 9113 §8.2.2); Node would drop them with a warning. */
const H2_FORBIDDEN_HEADERS = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"]);
const MAX_DELAY_MS = 5 * 60 * 1000;

function makeHttpHandler(ctx: HandlerContext): (req: AnyRequest, res: AnyResponse) => void {
  return (req, res) => {
    handleHttp(req, res, ctx).catch(() => {
      // The client went away or close() destroyed the connection: nothing left to answer.
      if (!res.headersSent) destroyConnection(req);
    });
  };
}

async function handleHttp(req: AnyRequest, res: AnyResponse, ctx: HandlerContext): Promise<void> {
  const headers = canonicalHeaders(req.rawHeaders);
  if (first(headers, "X-Echo-Close") === "1") {
    destroyConnection(req);
    return;
  }
  const body = await readBounded(req);
  const delay = requestedDelay(headers, req.url ?? "");
  if (delay > 0) await sleep(delay, undefined, { signal: ctx.signal });

  const isH2 = req.httpVersionMajor === 2;
  const answer: EchoHttpResponse = {
    path: req.url ?? "",
    host: headerString((isH2 ? req.headers[":authority"] : undefined) ?? req.headers.host),
    method: req.method ?? "",
    proto: isH2 ? "HTTP/2.0" : `HTTP/${req.httpVersion}`,
    headers,
    namespace: ctx.id.namespace,
    ingress: ctx.id.ingress,
    service: ctx.id.service,
    pod: ctx.id.pod,
  };
  if (body.length > 0) answer.body = body.toString("utf8");
  if (ctx.tls) {
    answer.tls = tlsAssertions(req.socket as unknown as tls.TLSSocket);
    answer.sni = answer.tls.serverName;
  }

  const out = res as ResponseLike;
  for (const [name, value] of requestedResponseHeaders(headers)) {
    if (isH2 && H2_FORBIDDEN_HEADERS.has(name.toLowerCase())) continue;
    try {
      out.setHeader(name, value);
    } catch {
      // Invalid header names or values: skip rather than fail the echo.
    }
  }
  const status = requestedStatus(headers);
  const json = JSON.stringify(answer);
  out.setHeader("Content-Type", "application/json");
  out.setHeader("X-Content-Type-Options", "nosniff");
  const noBody = req.method === "HEAD" || status === 204 || status === 205 || status === 304;
  if (!noBody) out.setHeader("Content-Length", String(Buffer.byteLength(json)));
  out.writeHead(status);
  out.end(noBody ? undefined : json);
}

/** Keeps the first 64 KiB and drains the rest, so a large upload costs no memory. */
async function readBounded(req: Readable): Promise<Buffer> {
  const kept: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    if (size >= MAX_BODY) continue;
    const part = chunk.subarray(0, MAX_BODY - size);
    kept.push(part);
    size += part.length;
  }
  return Buffer.concat(kept);
}

function destroyConnection(req: AnyRequest): void {
  if (req instanceof http2.Http2ServerRequest) {
    // Reset the stream first: a session destroyed with the stream still open looks to a client
    // like a clean, empty answer. Then drop the whole connection, as for HTTP/1.
    const { stream } = req;
    const session = stream.session;
    stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR, () => session?.destroy());
  } else {
    req.socket.destroy();
  }
}

function headerString(v: string | string[] | undefined): string {
  return Array.isArray(v) ? (v[0] ?? "") : (v ?? "");
}

function first(headers: Record<string, string[]>, name: string): string | undefined {
  return headers[name]?.[0]?.trim();
}

function requestedStatus(headers: Record<string, string[]>): number {
  const s = Number(first(headers, "X-Echo-Status"));
  return Number.isInteger(s) && s >= 200 && s <= 599 ? s : 200;
}

/** x-echo-delay-ms: <n>, or echo-basic's `?delay=<Go duration>` query parameter. */
function requestedDelay(headers: Record<string, string[]>, url: string): number {
  let ms = Number(first(headers, "X-Echo-Delay-Ms") ?? "0");
  if (!Number.isFinite(ms) || ms < 0) ms = 0;
  const q = url.indexOf("?");
  if (q >= 0) {
    const d = new URLSearchParams(url.slice(q + 1)).get("delay");
    if (d) ms = Math.max(ms, parseGoDuration(d) ?? 0);
  }
  return Math.min(ms, MAX_DELAY_MS);
}

const DURATION_UNITS_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, "µs": 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

function parseGoDuration(s: string): number | undefined {
  if (!/^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/.test(s)) return undefined;
  let total = 0;
  for (const m of s.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) {
    total += Number(m[1]) * (DURATION_UNITS_MS[m[2] ?? ""] ?? 0);
  }
  return total;
}

/**
 * x-echo-set-header: "Name: value", repeatable and comma-separated, as echo-basic: a name given
 * twice gets its values joined with ",".
 */
function requestedResponseHeaders(headers: Record<string, string[]>): Map<string, string> {
  const out = new Map<string, string>();
  for (const list of headers["X-Echo-Set-Header"] ?? []) {
    for (const item of list.split(",")) {
      const colon = item.indexOf(":");
      if (colon <= 0) continue;
      const name = item.slice(0, colon).trim();
      const value = item.slice(colon + 1).trim();
      if (!name) continue;
      const prev = out.get(name);
      out.set(name, prev === undefined ? value : `${prev},${value}`);
    }
  }
  return out;
}

/** Raw header pairs to Go's http.Header shape: canonical names, repeats kept, no pseudo-headers or Host. */
export function canonicalHeaders(raw: readonly string[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] ?? "";
    if (name.startsWith(":") || name.toLowerCase() === "host") continue;
    const key = canonicalHeaderName(name);
    (out[key] ??= []).push(raw[i + 1] ?? "");
  }
  return out;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Go's textproto.CanonicalMIMEHeaderKey: "x-forwarded-for" → "X-Forwarded-For"; non-tokens unchanged. */
export function canonicalHeaderName(name: string): string {
  if (!TOKEN.test(name)) return name;
  let upper = true;
  let out = "";
  for (const ch of name) {
    out += upper ? ch.toUpperCase() : ch.toLowerCase();
    upper = ch === "-";
  }
  return out;
}

function tlsAssertions(socket: tls.TLSSocket): EchoTlsAssertions {
  return {
    version: socket.getProtocol() ?? "",
    serverName: typeof socket.servername === "string" ? socket.servername : "",
    negotiatedProtocol: typeof socket.alpnProtocol === "string" ? socket.alpnProtocol : "",
    cipherSuite: socket.getCipher()?.standardName ?? "",
    peerCertificates: peerCertificatesPem(socket),
  };
}

/** The peer's chain as PEM, leaf first (Node links it through issuerCertificate; a root points to itself). */
function peerCertificatesPem(socket: tls.TLSSocket): string[] {
  const pems: string[] = [];
  const seen = new Set<string>();
  let cert: tls.DetailedPeerCertificate | undefined = socket.getPeerCertificate(true);
  while (cert?.raw && !seen.has(cert.fingerprint256)) {
    seen.add(cert.fingerprint256);
    pems.push(new X509Certificate(cert.raw).toString());
    cert = cert.issuerCertificate;
  }
  return pems;
}

// ---------------------------------------------------------------------------------------------
// WebSocket (RFC 6455), server side: handshake, then every data frame is echoed back.

const WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const WS_MAX_FRAME = 1 << 20;

function isWebSocketUpgrade(req: http.IncomingMessage): boolean {
  return /(^|,)\s*websocket\s*($|,)/i.test(req.headers.upgrade ?? "");
}

function onWebSocketUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
  socket.on("error", () => {});
  const key = req.headers["sec-websocket-key"];
  if (req.method !== "GET" || typeof key !== "string" || req.headers["sec-websocket-version"] !== "13") {
    socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    return;
  }
  const accept = createHash("sha1").update(key + WS_GUID).digest("base64");
  // Pick the first offered subprotocol: a client that asked for one may insist on getting one.
  const protocol = req.headers["sec-websocket-protocol"]?.split(",")[0]?.trim();
  socket.write(
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      `Sec-WebSocket-Accept: ${accept}\r\n` +
      (protocol ? `Sec-WebSocket-Protocol: ${protocol}\r\n` : "") +
      "\r\n",
  );
  serveWebSocket(socket, head);
}

function wsFrame(opcode: number, payload: Buffer, fin = true): Buffer {
  const len = payload.length;
  const header = len < 126 ? Buffer.alloc(2) : len < 65536 ? Buffer.alloc(4) : Buffer.alloc(10);
  header[0] = (fin ? 0x80 : 0) | opcode;
  if (len < 126) header[1] = len;
  else if (len < 65536) {
    header[1] = 126;
    header.writeUInt16BE(len, 2);
  } else {
    header[1] = 127;
    header.writeBigUInt64BE(BigInt(len), 2);
  }
  return Buffer.concat([header, payload]);
}

function serveWebSocket(socket: Duplex, head: Buffer): void {
  let buf: Buffer = Buffer.alloc(0);
  let done = false;
  const fail = (code: number): void => {
    const p = Buffer.alloc(2);
    p.writeUInt16BE(code);
    done = true;
    socket.end(wsFrame(0x8, p));
  };
  const onData = (chunk: Buffer): void => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    while (!done && buf.length >= 2) {
      const b0 = buf[0] ?? 0;
      const b1 = buf[1] ?? 0;
      const fin = (b0 & 0x80) !== 0;
      const opcode = b0 & 0x0f;
      let len = b1 & 0x7f;
      let off = 2;
      if (len === 126) {
        if (buf.length < 4) return;
        len = buf.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (buf.length < 10) return;
        const big = buf.readBigUInt64BE(2);
        len = big > BigInt(WS_MAX_FRAME) ? WS_MAX_FRAME + 1 : Number(big);
        off = 10;
      }
      // Extensions are never negotiated, and clients must mask (RFC 6455 §5.1): else protocol error.
      if ((b0 & 0x70) !== 0 || (b1 & 0x80) === 0) return fail(1002);
      if (len > WS_MAX_FRAME) return fail(1009);
      if (opcode >= 0x8 && (!fin || len > 125)) return fail(1002);
      if (buf.length < off + 4 + len) return;
      const mask = buf.subarray(off, off + 4);
      const payload = Buffer.from(buf.subarray(off + 4, off + 4 + len));
      for (let i = 0; i < payload.length; i++) payload[i] = (payload[i] ?? 0) ^ (mask[i & 3] ?? 0);
      buf = buf.subarray(off + 4 + len);
      switch (opcode) {
        case 0x0: // continuation
        case 0x1: // text
        case 0x2: // binary
          // Same opcode and FIN bit back, so fragmented messages come back fragmented alike.
          socket.write(wsFrame(opcode, payload, fin));
          break;
        case 0x8: // close: answer with the same status code, then hang up
          done = true;
          socket.end(wsFrame(0x8, payload.subarray(0, payload.length >= 2 ? 2 : 0)));
          return;
        case 0x9:
          socket.write(wsFrame(0xa, payload));
          break;
        case 0xa:
          break;
        default:
          return fail(1002);
      }
    }
  };
  socket.on("data", onData);
  // Bytes that arrived with the handshake (a client may send its first frame right away).
  if (head.length > 0) onData(head);
}

// ---------------------------------------------------------------------------------------------
// gRPC: the conformance suite's GrpcEcho service over h2c.

export const GRPC_ECHO_SERVICE = "gateway_api_conformance.echo_basic.grpcecho.GrpcEcho";
const PROTO_PATH = fileURLToPath(new URL("./grpcecho.proto", import.meta.url));

export interface GrpcEchoHeader {
  key: string;
  value: string;
}

export interface GrpcEchoAssertions {
  fullyQualifiedMethod: string;
  headers: GrpcEchoHeader[];
  authority: string;
  context: { namespace: string; ingress: string; serviceName: string; pod: string } | null;
  tlsAssertions: {
    version: string;
    negotiatedProtocol: string;
    serverName: string;
    cipherSuite: string;
    peerCertificates: string[];
  } | null;
}

export interface GrpcEchoResponse {
  assertions: GrpcEchoAssertions | null;
}

let serviceDefinition: grpc.ServiceDefinition | undefined;

function grpcEchoService(): grpc.ServiceDefinition {
  if (!serviceDefinition) {
    // defaults: true so absent fields read as ""/[] (proto3 semantics) rather than undefined.
    const pkg = protoLoader.loadSync(PROTO_PATH, { keepCase: false, longs: String, enums: String, defaults: true });
    const def = pkg[GRPC_ECHO_SERVICE];
    if (!def || !("Echo" in def)) throw new Error(`${PROTO_PATH} does not define ${GRPC_ECHO_SERVICE}`);
    serviceDefinition = def as grpc.ServiceDefinition;
  }
  return serviceDefinition;
}

async function startGrpc(opts: EchoOptions, id: ResolvedIdentity): Promise<EchoServer> {
  const server = new grpc.Server();
  const echo = (call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>): void => {
    cb(null, grpcAnswer(call, id));
  };
  // EchoThree is left out on purpose: grpc-js answers UNIMPLEMENTED, as upstream's server does.
  server.addService(grpcEchoService(), { Echo: echo, EchoTwo: echo });
  const bindHost = net.isIPv6(opts.host) ? `[${opts.host}]` : opts.host;
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${bindHost}:${opts.port}`, grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    );
  });
  let closed = false;
  return {
    address: opts.host,
    port,
    close: async () => {
      if (closed) return;
      closed = true;
      // forceShutdown cancels in-flight calls and closes sessions: tests must not wait on clients.
      server.forceShutdown();
    },
  };
}

function grpcAnswer(call: grpc.ServerUnaryCall<unknown, unknown>, id: ResolvedIdentity): GrpcEchoResponse {
  const authority = call.getHost();
  // Go's grpc metadata carries :authority too, and echo-basic lists it among the headers.
  const headers: GrpcEchoHeader[] = [{ key: ":authority", value: authority }];
  for (const [key, values] of Object.entries(call.metadata.toJSON())) {
    for (const v of values) headers.push({ key, value: typeof v === "string" ? v : v.toString("base64") });
  }
  return {
    assertions: {
      fullyQualifiedMethod: call.getPath(),
      headers,
      authority,
      context: { namespace: id.namespace, ingress: id.ingress, serviceName: id.service, pod: id.pod },
      tlsAssertions: null,
    },
  };
}

export interface GrpcEchoCallOptions {
  /** Sets :authority (grpc-js channel option grpc.default_authority). */
  authority?: string;
  metadata?: Record<string, string>;
  /** Deadline in milliseconds; default 10 s. */
  timeoutMs?: number;
}

/**
 * One unary call to GrpcEcho over h2c, on a fresh channel that is closed afterwards. Rejects with
 * grpc-js's ServiceError (its `code` is a grpc.status) when the call fails.
 */
export function grpcEchoCall(
  target: string,
  method: "Echo" | "EchoTwo" | "EchoThree",
  opts: GrpcEchoCallOptions = {},
): Promise<GrpcEchoResponse> {
  const def = grpcEchoService()[method];
  if (!def) return Promise.reject(new Error(`no method ${method} in ${GRPC_ECHO_SERVICE}`));
  const client = new grpc.Client(
    target,
    grpc.credentials.createInsecure(),
    opts.authority ? { "grpc.default_authority": opts.authority } : {},
  );
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(opts.metadata ?? {})) md.add(k, v);
  const deadline = new Date(Date.now() + (opts.timeoutMs ?? 10_000));
  return new Promise<GrpcEchoResponse>((resolve, reject) => {
    client.makeUnaryRequest(
      def.path,
      def.requestSerialize,
      (b: Buffer) => def.responseDeserialize(b) as GrpcEchoResponse,
      {},
      md,
      { deadline },
      (err, value) => {
        client.close();
        if (err) reject(err);
        else if (value) resolve(value);
        else reject(new Error("empty gRPC response"));
      },
    );
  });
}

// ---------------------------------------------------------------------------------------------
// TCP and UDP.

async function startTcp(opts: EchoOptions, id: ResolvedIdentity): Promise<EchoServer> {
  const sockets = new SocketSet();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => {});
    socket.write(identityLine(id));
    socket.pipe(socket);
  });
  const addr = await listen(server, opts.host, opts.port);
  return { address: addr.address, port: addr.port, close: closer(server, sockets) };
}

async function startUdp(opts: EchoOptions, id: ResolvedIdentity): Promise<EchoServer> {
  const socket = dgram.createSocket(net.isIPv6(opts.host) ? "udp6" : "udp4");
  const prefix = Buffer.from(identityLine(id));
  socket.on("message", (msg, rinfo) => {
    socket.send(Buffer.concat([prefix, msg]), rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(opts.port, opts.host, () => {
      socket.off("error", reject);
      resolve();
    });
  });
  // Sends to a vanished peer can surface as ICMP errors; they must not crash the server.
  socket.on("error", () => {});
  const addr = socket.address();
  let closing: Promise<void> | undefined;
  return {
    address: addr.address,
    port: addr.port,
    close: () => (closing ??= new Promise<void>((resolve) => socket.close(() => resolve()))),
  };
}
