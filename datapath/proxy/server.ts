// The proxy's sockets. Each binding (address:port) is one TCP listener whose connections are
// sorted by their first bytes: a TLS ClientHello goes to the listener its SNI selects (spliced
// as-is for passthrough, terminated otherwise), the HTTP/2 preface to the h2c server, anything
// else to the HTTP/1.1 server. Config updates swap the route table in one assignment and open or
// close only the sockets that changed; open connections are never cut by an update.
import net from "node:net";
import http from "node:http";
import http2 from "node:http2";
import tls from "node:tls";
import type { Duplex } from "node:stream";
import type { L7Listener } from "../../operator/translate/output.ts";
import { selectListener } from "./router.ts";
import { hostnameMatches } from "../../operator/translate/hostname.ts";
import type { ProxyConfig } from "./config.ts";
import { compileTable, type PortRuntime, type Table } from "./table.ts";
import { TlsContextCache, pickCertificate } from "./tlscontext.ts";
import { Upstreams, type Endpoint, type UpstreamOptions } from "./upstream.ts";
import { chooseBackend, handleRequest, routeRequest, serve, errorReply, routeLabel, type ConnInfo, type ProxyState, type Req, type Res, type RouteLabels, type Upgrade } from "./handler.ts";
import { parseClientHello, looksLikeTls } from "./clienthello.ts";
import { parseProxyHeader, rememberClient } from "./proxyprotocol.ts";
import { createObserver, type Observer } from "./observe.ts";
import { spliceTo } from "./splice.ts";

export interface Limits {
  /** Largest request head (HTTP/1.1 header bytes, HTTP/2 header list). */
  maxHeaderBytes: number;
  /** Most request headers; more answer 431. */
  maxHeaders: number;
  /** Time to receive a complete request head (slowloris). */
  headersTimeoutMs: number;
  /** Time to receive a complete request. */
  requestTimeoutMs: number;
  /** Idle keep-alive connections and HTTP/2 sessions are closed after this. */
  idleTimeoutMs: number;
  /** Open connections per binding; more are refused. */
  maxConnections: number;
  /** Concurrent HTTP/2 streams per connection. */
  maxConcurrentStreams: number;
  /** Largest request body buffered so it can be retried or mirrored. */
  replayLimit: number;
  /** Spliced connections (WebSocket, TLS passthrough and terminate) with no traffic either way are closed after this (Envoy's TCP proxy default). */
  tunnelIdleTimeoutMs: number;
}

export const DEFAULT_LIMITS: Limits = {
  maxHeaderBytes: 32 * 1024,
  maxHeaders: 100,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 300_000,
  idleTimeoutMs: 60_000,
  maxConnections: 50_000,
  maxConcurrentStreams: 250,
  replayLimit: 1024 * 1024,
  tunnelIdleTimeoutMs: 3_600_000,
};

export interface ProxyOptions {
  limits?: Partial<Limits>;
  upstream?: UpstreamOptions;
  observer?: Observer;
  /** Bind with SO_REUSEPORT so several worker processes share each socket. */
  reusePort?: boolean;
}

export interface ApplyResult {
  version: number;
  /** Bindings that could not be opened, with why. */
  errors: { binding: string; message: string }[];
}

const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

/** How often HTTP/1.1 servers look for connections past headersTimeout/requestTimeout. */
function checkingInterval(l: Limits): number {
  return Math.max(100, Math.min(1000, Math.floor(l.headersTimeoutMs / 2)));
}

// What a 405 for CONNECT lists: any method but CONNECT is routed.
const ALLOWED_METHODS = "GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH";

/** An HTTP/1.1 CONNECT asks for a forward proxy, which a gateway is not: 405, and the connection closes. */
function refuseConnect(socket: Duplex): void {
  socket.on("error", () => socket.destroy());
  socket.end(`HTTP/1.1 405 Method Not Allowed\r\nallow: ${ALLOWED_METHODS}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`);
}

/**
 * Only WebSocket upgrades become tunnels. Any other Upgrade (h2c above all, which curl --http2
 * sends) is served as a plain request without its hop-by-hop Upgrade header, as Envoy does: a
 * backend that accepted it would otherwise get a raw connection that no route governs.
 */
function isWebSocketUpgrade(req: http.IncomingMessage): boolean {
  return /(^|,)\s*websocket\s*($|,)/i.test(req.headers.upgrade ?? "");
}

/**
 * Starts Node's HTTP/1.1 connection tracking. It starts on 'listening', which servers that are
 * only handed connections never emit: without it headersTimeout and requestTimeout are not
 * enforced (slowloris) and closeIdleConnections() closes nothing.
 */
function trackHttp1(server: http.Server | http2.Http2SecureServer): void {
  server.emit("listening");
}

/** Request header fields, not counting HTTP/2 pseudo-headers (:method, :path, ...). */
function headerCount(req: Req): number {
  const raw = req.rawHeaders;
  if (!("stream" in req)) return raw.length / 2;
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) if ((raw[i] as string).charCodeAt(0) !== 58 /* ':' */) n++;
  return n;
}

/** One socket and the protocol servers its connections are handed to. */
class Bound {
  key: string;
  server: net.Server;
  h1: http.Server;
  h2c: http2.Http2Server;
  /** Terminating servers per TLS listener (HTTPS: h2 + HTTP/1.1 by ALPN; TLS: a byte splice after the handshake). */
  secure = new Map<string, { server: tls.Server; shape: string; defaultCert: unknown }>();
  sockets = new Set<net.Socket>();
  closing = false;

  constructor(key: string, server: net.Server, h1: http.Server, h2c: http2.Http2Server) {
    this.key = key;
    this.server = server;
    this.h1 = h1;
    this.h2c = h2c;
  }
}

export class Proxy {
  readonly state: ProxyState;
  readonly limits: Limits;
  private bound = new Map<string, Bound>();
  private contexts = new TlsContextCache();
  private reusePort: boolean;
  private h2Sessions = new Set<http2.Http2Session>();

  constructor(opts: ProxyOptions = {}) {
    this.limits = { ...DEFAULT_LIMITS, ...opts.limits };
    this.reusePort = opts.reusePort ?? false;
    this.state = {
      table: { version: 0, ports: new Map(), certificates: new Map() },
      upstreams: new Upstreams(opts.upstream),
      observer: opts.observer ?? createObserver(),
      replayLimit: this.limits.replayLimit,
      tunnelIdleMs: this.limits.tunnelIdleTimeoutMs,
    };
  }

  get version(): number {
    return this.state.table.version;
  }

  /** Serves a new config: the table swaps at once; sockets open and close to match it. */
  async apply(config: ProxyConfig): Promise<ApplyResult> {
    const table = compileTable(config, this.contexts);
    this.state.upstreams.apply(config.clusters, table.certificates);
    this.state.table = table;
    this.refreshSecure(table);
    const errors: ApplyResult["errors"] = [];
    const opening: Promise<void>[] = [];
    for (const [key, port] of table.ports) {
      if (this.bound.has(key)) continue;
      opening.push(this.open(port).catch((err: unknown) => void errors.push({ binding: key, message: (err as Error).message })));
    }
    for (const [key, b] of this.bound) if (!table.ports.has(key)) this.retire(b);
    await Promise.all(opening);
    return { version: table.version, errors };
  }

  /** Stops accepting, lets in-flight requests finish for up to graceMs, then closes everything. */
  async close(graceMs = 10_000): Promise<void> {
    const all = [...this.bound.values()];
    for (const b of all) this.retire(b);
    for (const s of this.h2Sessions) s.close();
    const deadline = Date.now() + graceMs;
    while (Date.now() < deadline && all.some((b) => b.sockets.size > 0)) {
      for (const b of all) b.h1.closeIdleConnections();
      await new Promise((r) => setTimeout(r, 25));
    }
    for (const b of all) for (const s of b.sockets) s.destroy();
    await this.state.upstreams.close();
  }

  /** Open connection count over all bindings (for tests and metrics). */
  connections(): number {
    let n = 0;
    for (const b of this.bound.values()) n += b.sockets.size;
    return n;
  }

  private retire(b: Bound): void {
    if (b.closing) return;
    b.closing = true;
    this.bound.delete(b.key);
    // Stop accepting; open connections finish what they are doing and are closed when idle.
    b.server.close();
    // close() on the protocol servers closes their idle connections and stops their timeout checks.
    b.h1.close();
    for (const e of b.secure.values()) e.server.close();
  }

  private async open(port: PortRuntime): Promise<void> {
    const { binding } = port;
    const conn: ConnInfo = { bindKey: binding.key, tls: false };
    const h1 = http.createServer(
      {
        maxHeaderSize: this.limits.maxHeaderBytes,
        headersTimeout: this.limits.headersTimeoutMs,
        requestTimeout: this.limits.requestTimeoutMs,
        keepAliveTimeout: this.limits.idleTimeoutMs,
        connectionsCheckingInterval: checkingInterval(this.limits),
        noDelay: true,
        // A request without Content-Length or Transfer-Encoding has no body (RFC 9112 §6.3): its
        // stream starts ended instead of going through a readable's life cycle of events.
        optimizeEmptyRequests: true,
        shouldUpgradeCallback: isWebSocketUpgrade,
      },
      (req, res) => this.onRequest(conn, req, res),
    );
    // Node truncates past maxHeadersCount; one more than the limit lets the handler see the excess and refuse.
    h1.maxHeadersCount = this.limits.maxHeaders + 1;
    trackHttp1(h1);
    h1.on("upgrade", (req: http.IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(conn, req, socket, head));
    h1.on("connect", (_req: http.IncomingMessage, socket: Duplex) => refuseConnect(socket));
    const h2c = http2.createServer(this.h2Options(), (req, res) => this.onRequest(conn, req, res));
    h2c.on("connect", (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => this.onConnect(conn, req, res));
    this.trackSessions(h2c);
    const server = net.createServer({ noDelay: true, keepAlive: true });
    server.maxConnections = this.limits.maxConnections;
    const b = new Bound(binding.key, server, h1, h2c);
    server.on("connection", (socket) => this.onConnection(b, socket));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host: binding.address, port: binding.port, reusePort: this.reusePort, backlog: 4096 }, () => {
        server.removeListener("error", reject);
        server.on("error", (err) => this.state.observer.log.error({ binding: binding.key, err: err.message }, "listener error"));
        resolve();
      });
    });
    this.bound.set(binding.key, b);
  }

  private h2Options(): http2.ServerOptions {
    return {
      maxHeaderListPairs: this.limits.maxHeaders + 4,
      maxSessionMemory: 32,
      // HTTP/2 rapid reset (CVE-2023-44487): Node closes sessions that reset streams abusively;
      // these bound the other per-session abuses.
      maxSessionInvalidFrames: 1000,
      maxSessionRejectedStreams: 100,
      // RFC 8441: WebSockets over HTTP/2 streams (extended CONNECT), as browsers use when offered.
      settings: { maxConcurrentStreams: this.limits.maxConcurrentStreams, maxHeaderListSize: this.limits.maxHeaderBytes, enableConnectProtocol: true },
      unknownProtocolTimeout: this.limits.headersTimeoutMs,
    };
  }

  private trackSessions(server: http2.Http2Server | http2.Http2SecureServer): void {
    server.on("session", (s: http2.ServerHttp2Session) => {
      this.h2Sessions.add(s);
      s.setTimeout(this.limits.idleTimeoutMs, () => s.close());
      s.once("close", () => this.h2Sessions.delete(s));
      s.on("error", () => undefined);
    });
    server.on("sessionError", () => undefined);
  }

  private onRequest(conn: ConnInfo, req: Req, res: Res): void {
    if (headerCount(req) > this.limits.maxHeaders) {
      // HTTP/2 has no Connection header (Node warns and drops it); the stream simply ends.
      res.writeHead(431, "stream" in req ? { "content-length": "0" } : { connection: "close", "content-length": "0" });
      res.end();
      return;
    }
    handleRequest(this.state, conn, req, res);
  }

  private onUpgrade(conn: ConnInfo, req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    const res = new http.ServerResponse(req);
    res.assignSocket(socket as net.Socket);
    res.shouldKeepAlive = false;
    socket.on("error", () => socket.destroy());
    // A locally generated answer (404, 503, ...) ends the connection; a tunnel never finishes res.
    res.once("finish", () => socket.end());
    const up: Upgrade = { socket, head };
    const labels: RouteLabels = { route: "", backend: "" };
    const started = performance.now();
    // One access log line and count per upgrade, once the connection (tunnel or not) is over.
    socket.once("close", () => this.state.observer.request(req, res, labels, started, up.opened));
    const r = routeRequest(this.state, conn, req);
    if ("status" in r) return void errorReply(res, false, r.status, r.message);
    labels.route = routeLabel(r.entry);
    serve(this.state, req, res, { ...r, labels }, up);
  }

  /**
   * HTTP/2 CONNECT. Only RFC 8441's extended form for WebSockets is served: routed and filtered
   * like the GET with Upgrade it stands for. A plain CONNECT asks for a forward proxy, which a
   * gateway is not (405, as Node answers without this listener); another protocol is not implemented.
   */
  private onConnect(conn: ConnInfo, req: http2.Http2ServerRequest, res: http2.Http2ServerResponse): void {
    const up: Upgrade = { socket: req.stream, head: Buffer.alloc(0) };
    const labels: RouteLabels = { route: "", backend: "" };
    const started = performance.now();
    res.once("close", () => this.state.observer.request(req, res, labels, started, up.opened));
    const protocol = req.headers[":protocol"];
    const refuse = (status: number): void => {
      res.writeHead(status, { "content-length": "0" });
      res.end();
    };
    if (protocol === undefined) {
      res.setHeader("allow", ALLOWED_METHODS);
      return refuse(405);
    }
    if (String(protocol).toLowerCase() !== "websocket") return refuse(501);
    if (headerCount(req) > this.limits.maxHeaders) return refuse(431);
    const r = routeRequest(this.state, conn, req, "GET");
    if ("status" in r) return void errorReply(res, false, r.status, r.message);
    labels.route = routeLabel(r.entry);
    serve(this.state, req, res, { ...r, labels }, up);
  }

  private onConnection(b: Bound, socket: net.Socket): void {
    b.sockets.add(socket);
    socket.once("close", () => b.sockets.delete(socket));
    socket.on("error", () => socket.destroy());
    // A client must say enough to pick a protocol soon: an absolute deadline, not an idle timeout,
    // so trickling the ClientHello or the HTTP/2 preface a byte at a time does not hold a socket.
    // Judged after the next poll phase (setImmediate): bytes that arrived in time while the event
    // loop was busy are read first, so a busy proxy does not reset clients that were prompt.
    let decided = false;
    const deadline = setTimeout(() => setImmediate(() => decided || socket.destroy()), this.limits.headersTimeoutMs);
    socket.once("close", () => clearTimeout(deadline));
    let seen: Buffer = Buffer.alloc(0);
    // PROXY protocol first, where this socket's Gateways asked their load balancer for it.
    let proxyMode = this.state.table.ports.get(b.key)?.binding.proxyProtocol;
    const onData = (chunk: Buffer): void => {
      seen = seen.length ? Buffer.concat([seen, chunk]) : chunk;
      if (proxyMode) {
        const header = parseProxyHeader(seen);
        if (header.state === "more") return;
        if (header.state === "invalid" || (header.state === "none" && proxyMode === "required")) {
          socket.removeListener("data", onData);
          decided = true;
          clearTimeout(deadline);
          return void socket.destroy();
        }
        proxyMode = undefined;
        if (header.state === "ok") {
          if (header.source) rememberClient(socket, header.source);
          seen = seen.subarray(header.length);
          if (seen.length === 0) return;
        }
      }
      const first = seen[0] as number;
      if (looksLikeTls(first)) {
        const hello = parseClientHello(seen);
        if (hello.state === "more") return;
        socket.removeListener("data", onData);
        socket.pause();
        decided = true;
        clearTimeout(deadline);
        if (hello.state === "invalid") return void socket.destroy();
        return this.onTls(b, socket, seen, hello.sni);
      }
      const n = Math.min(seen.length, H2_PREFACE.length);
      const h2 = seen.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
      if (h2 && seen.length < H2_PREFACE.length) return;
      socket.removeListener("data", onData);
      socket.pause();
      decided = true;
      clearTimeout(deadline);
      socket.unshift(seen);
      (h2 ? b.h2c : b.h1).emit("connection", socket);
      // The protocol servers only add listeners; the paused socket needs a resume.
      process.nextTick(() => socket.resume());
    };
    socket.on("data", onData);
  }

  private onTls(b: Bound, socket: net.Socket, hello: Buffer, sni: string | undefined): void {
    const port = this.state.table.ports.get(b.key);
    const listener = port && selectListener(port.secure, sni ?? "");
    if (!port || !listener) return void socket.destroy();
    if (listener.tls?.mode === "Passthrough") return this.passthrough(socket, hello, listener, sni);
    const entry = this.secureServer(b, port, listener);
    if (!entry) return void socket.destroy();
    socket.unshift(hello);
    entry.emit("connection", socket);
  }

  /** TLSRoute passthrough: the backend terminates TLS; the proxy only splices bytes. */
  private passthrough(socket: net.Socket, hello: Buffer, listener: L7Listener, sni: string | undefined): void {
    const ep = this.tlsRouteEndpoint(listener, sni ?? "");
    // Nothing to send it to: close without a TLS alert, as a passthrough proxy cannot speak TLS.
    if (!ep) return void socket.destroy();
    spliceTo(socket, ep, { first: [hello], idleMs: this.limits.tunnelIdleTimeoutMs, onFail: () => socket.destroy() });
  }

  /** The terminating server of a TLS listener, created on first use and kept while its shape holds. */
  private secureServer(b: Bound, port: PortRuntime, listener: L7Listener): tls.Server | undefined {
    const lt = port.tls.get(listener.id);
    if (!lt) return undefined;
    const shape = `${listener.protocol}|${lt.requestCert}|${lt.rejectUnauthorized}`;
    const existing = b.secure.get(listener.id);
    if (existing && existing.shape === shape) return existing.server;
    // Replaced (client validation or protocol changed): its connections go on; idle ones are closed.
    existing?.server.close();
    const first = lt.certificates[0];
    if (!first) return undefined;
    // Later certificates are chosen by SNI from the current table, so rotation needs no new server.
    const SNICallback = (servername: string, cb: (err: Error | null, ctx?: tls.SecureContext) => void): void => {
      const now = this.state.table.ports.get(b.key)?.tls.get(listener.id);
      const cert = now && pickCertificate(now, servername.toLowerCase());
      cb(null, cert?.context ?? first.context);
    };
    const conn: ConnInfo = { bindKey: b.key, tls: true, listenerId: listener.id };
    let server: tls.Server;
    if (listener.protocol === "HTTPS") {
      // HTTP/1.1 over TLS gets the same limits as in plaintext (Node reads these from http1Options).
      const http1Options = {
        maxHeaderSize: this.limits.maxHeaderBytes,
        headersTimeout: this.limits.headersTimeoutMs,
        requestTimeout: this.limits.requestTimeoutMs,
        keepAliveTimeout: this.limits.idleTimeoutMs,
        connectionsCheckingInterval: checkingInterval(this.limits),
        optimizeEmptyRequests: true,
      };
      const s = http2.createSecureServer({
        ...this.h2Options(),
        allowHTTP1: true,
        http1Options,
        SNICallback,
        requestCert: lt.requestCert,
        rejectUnauthorized: lt.rejectUnauthorized,
        handshakeTimeout: this.limits.headersTimeoutMs,
      }, (req, res) => this.onRequest(conn, req, res));
      s.setSecureContext(first.options);
      // Node's HTTP/1.1 fallback reads these from the server itself, not from http1Options.
      Object.assign(s, { maxHeadersCount: this.limits.maxHeaders + 1, shouldUpgradeCallback: isWebSocketUpgrade });
      trackHttp1(s);
      s.on("upgrade", (req: http.IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(conn, req, socket, head));
      // Both protocols emit 'connect' here: HTTP/2 with a response, HTTP/1.1 with the raw socket.
      s.on("connect", (req: http2.Http2ServerRequest | http.IncomingMessage, second: http2.Http2ServerResponse | Duplex) => {
        if (second instanceof http2.Http2ServerResponse) this.onConnect(conn, req as http2.Http2ServerRequest, second);
        else refuseConnect(second);
      });
      this.trackSessions(s);
      server = s;
    } else {
      // TLSRoute in Terminate mode: decrypt, then splice the plaintext to the backend.
      server = tls.createServer({ ...first.options, SNICallback, requestCert: lt.requestCert, rejectUnauthorized: lt.rejectUnauthorized, handshakeTimeout: this.limits.headersTimeoutMs });
      server.on("secureConnection", (s: tls.TLSSocket) => this.terminatedTls(b.key, listener, s));
    }
    server.on("tlsClientError", () => undefined);
    b.secure.set(listener.id, { server, shape, defaultCert: first });
    return server;
  }

  private terminatedTls(bindKey: string, listener: L7Listener, s: tls.TLSSocket): void {
    // Until the splice takes over, a client reset would otherwise be an unhandled 'error'.
    s.on("error", () => s.destroy());
    // The listener as the current table has it: this server may predate the latest update.
    const now = this.state.table.ports.get(bindKey)?.secure.listeners.find((l) => l.id === listener.id) ?? listener;
    const ep = this.tlsRouteEndpoint(now, typeof s.servername === "string" ? s.servername : "");
    if (!ep) return void s.destroy();
    spliceTo(s, ep, { first: [], idleMs: this.limits.tunnelIdleTimeoutMs, onFail: () => s.destroy() });
  }

  /** The endpoint a TLSRoute connection goes to: the route for the SNI, a backend by weight, an endpoint. */
  private tlsRouteEndpoint(listener: L7Listener, sni: string): Endpoint | undefined {
    const route = listener.tlsRoutes.find((r) => r.hostnames.some((h) => hostnameMatches(h, sni)));
    const backend = route && chooseBackend(route.backends);
    const cluster = backend?.cluster ? this.state.upstreams.cluster(backend.cluster, false) : undefined;
    return cluster?.pick(Date.now());
  }

  /** Keeps each terminating server's no-SNI certificate in step with the table. */
  private refreshSecure(table: Table): void {
    for (const b of this.bound.values()) {
      const port = table.ports.get(b.key);
      for (const [id, entry] of b.secure) {
        const first = port?.tls.get(id)?.certificates[0];
        if (!first) {
          // The listener is gone: stop its connection checks, close its idle connections.
          entry.server.close();
          b.secure.delete(id);
          continue;
        }
        if (first !== entry.defaultCert) {
          entry.server.setSecureContext(first.options);
          entry.defaultCert = first;
        }
      }
    }
  }
}
