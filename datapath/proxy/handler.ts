// One HTTP request through the proxy (HTTP/1.1 and HTTP/2 alike, through Node's compatible
// request/response API): listener and route selection, filters, backend choice, forwarding with
// timeouts and retries, and the response back with its filters applied.
import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import type { IncomingHttpHeaders, OutgoingHttpHeaders, ServerResponse } from "node:http";
import { randomUUID } from "node:crypto";
import type { Dispatcher } from "undici";
import { PassThrough, type Duplex, type Readable } from "node:stream";
import { tunnel } from "./websocket.ts";
import type { Filter, L7Listener, RouteEntry, WeightedBackend } from "../../operator/translate/output.ts";
import { selectListener, selectRoute, selectVirtualHost } from "./router.ts";
import { hostWithoutPort } from "../../operator/translate/hostname.ts";
import { modifyHeaders, redirectLocation, rewritePath, type HeaderMap } from "./rewrite.ts";
import { actualHeaders, isPreflight, originAllowed, preflightHeaders, type CorsFilter } from "./cors.ts";
import { recordResult, type ClusterRuntime, type Endpoint, type Upstreams } from "./upstream.ts";
import type { PortRuntime, Table } from "./table.ts";
import { grpcStatusFor, sendGrpcError, takeStatusHeaders } from "./grpc.ts";
import { normalizeTarget } from "./path.ts";
import { copyRequestHeaders, flatResponseHeaders, forwardableResponseHeaders, responseHeadersFor } from "./headers.ts";
import { clientAddress } from "./proxyprotocol.ts";
import type { Observer } from "./observe.ts";

export type Req = IncomingMessage | Http2ServerRequest;
/** What the handler uses of a response; both ServerResponse and Http2ServerResponse have it. */
export interface Res {
  statusCode: number;
  readonly headersSent: boolean;
  readonly destroyed: boolean;
  readonly writableFinished: boolean;
  /** Whether end() was called; unlike writableFinished, false for an HTTP/2 stream reset before the answer. */
  readonly writableEnded: boolean;
  writeHead(status: number, headers?: OutgoingHttpHeaders): unknown;
  setHeader(name: string, value: string): unknown;
  write(chunk: Buffer): boolean;
  end(): unknown;
  end(chunk: string): unknown;
  addTrailers(trailers: OutgoingHttpHeaders): void;
  writeEarlyHints(hints: Record<string, string | string[]>): void;
  destroy(err?: Error): unknown;
  on(event: "close", cb: () => void): unknown;
  once(event: "close" | "drain", cb: () => void): unknown;
  removeListener(event: "close", cb: () => void): unknown;
}


/** What the server a request arrived on knows: its socket, and over TLS the listener the handshake was made for. */
export interface ConnInfo {
  bindKey: string;
  tls: boolean;
  /**
   * Id of the listener chosen by the ClientHello's SNI. An id, not the object: every config
   * update brings new listener objects, and a connection outlives many of them.
   */
  listenerId?: string;
}

export interface ProxyState {
  table: Table;
  upstreams: Upstreams;
  observer: Observer;
  /** Largest request body buffered for retries and mirrors. */
  replayLimit: number;
  /** Spliced connections idle this long either way are closed. */
  tunnelIdleMs: number;
}

/** The outcome of routing, before any forwarding: what the access log and metrics label by. */
export interface RouteLabels {
  route: string;
  backend: string;
}

export function handleRequest(state: ProxyState, conn: ConnInfo, req: Req, res: Res): void {
  const call = new Call(performance.now());
  // One listener per request does both jobs: observing the outcome, then cancelling a forward
  // still waiting for its answer. (once() would allocate a wrapper per listener.)
  res.on("close", () => {
    state.observer.request(req, res, call, call.started);
    call.forwarding?.clientClosed();
  });
  const r = routeRequest(state, conn, req);
  if ("status" in r) {
    // A removed listener, or a request too broken to trust what follows it on the connection:
    // close it (HTTP/1.1 only; HTTP/2 has no Connection header and its streams are independent).
    if ((r.status === 503 || r.status === 400) && !("stream" in req)) res.setHeader("connection", "close");
    return void errorReply(res, r.grpc, r.status, r.message);
  }
  call.route = routeLabel(r.entry);
  serve(state, req, res, { port: r.port, conn: r.conn, listener: r.listener, entry: r.entry, authority: r.authority, path: r.path, grpc: r.grpc, labels: call });
}

/** A request from arrival until its response closes: its labels, and the forward that may still be running. */
class Call implements RouteLabels {
  route = "";
  backend = "";
  readonly started: number;
  forwarding: Forwarding | undefined = undefined;

  constructor(started: number) {
    this.started = started;
  }
}

export type Routed = Omit<Exchange, "labels">;

/** Listener, virtual host and route for a request, or the status that answers it. */
export function routeRequest(state: ProxyState, conn: ConnInfo, req: Req, method = req.method ?? "GET"): Routed | { status: number; message: string; grpc: boolean } {
  const h = req.headers;
  const grpc = typeof h["content-type"] === "string" && h["content-type"].startsWith("application/grpc");
  const port = state.table.ports.get(conn.bindKey);
  // The listener was removed while this connection was open: answer, and close the connection.
  if (!port) return { status: 503, message: "listener removed", grpc };
  let authority = (h[":authority"] as string | undefined) ?? h.host;
  const url = req.url ?? "/";
  let path = url;
  if (!url.startsWith("/")) {
    // Absolute form (RFC 9112 §3.2.2) is accepted; anything else is not a path.
    if (url.startsWith("http://") || url.startsWith("https://")) {
      const start = url.indexOf("//") + 2;
      const end = url.slice(start).search(/[/?#]/);
      const target = end < 0 ? url.slice(start) : url.slice(start, start + end);
      if (!target || target.includes("@")) return { status: 400, message: "bad request target", grpc: false };
      // Its authority, not the Host header, names the host (§3.2.2): route and forward by it.
      authority = target;
      const rest = end < 0 ? "" : url.slice(start + end);
      path = rest.startsWith("/") ? rest : `/${rest}`;
    } else if (url === "*" && method === "OPTIONS") {
      // Asterisk form asks about the server in general (RFC 9110 §9.3.7): no route's path can
      // match it, and what the backends allow varies by route, so the gateway answers the ping.
      return { status: 200, message: "", grpc: false };
    } else return { status: 400, message: "bad request target", grpc: false };
  }
  if (!authority) return { status: 400, message: "missing Host header", grpc: false };
  // Routed and forwarded in its normal form: both see the same path (path.ts says why).
  path = normalizeTarget(path);
  const listener = selectFor(port, conn, authority);
  if (listener === "misdirected") return { status: 421, message: "misdirected request", grpc };
  const vhost = listener && selectVirtualHost(listener, authority);
  const entry = vhost && selectRoute(vhost, { host: authority, path, method, headers: h as HeaderMap });
  if (!listener || !entry) return { status: 404, message: "no route", grpc };
  return { port, conn, listener, entry, authority, path, grpc };
}

export interface Exchange {
  port: PortRuntime;
  conn: ConnInfo;
  listener: L7Listener;
  entry: RouteEntry;
  authority: string;
  path: string;
  grpc: boolean;
  labels: RouteLabels;
}

/**
 * Listener isolation across plaintext and TLS: over TLS, the listener chosen by SNI must also be
 * the one the Host header selects, or the request was misdirected (421, RFC 9110 §15.5.20).
 */
function selectFor(port: PortRuntime, conn: ConnInfo, authority: string): L7Listener | undefined | "misdirected" {
  if (!conn.tls) return selectListener(port.plain, authority);
  const byHost = selectListener(port.secure, authority);
  if (conn.listenerId !== undefined && byHost?.id !== conn.listenerId) return "misdirected";
  return byHost;
}

// Per entry, not per request: entries live as long as their config.
const labelOf = new WeakMap<RouteEntry, string>();

export function routeLabel(e: RouteEntry): string {
  let label = labelOf.get(e);
  if (label === undefined) {
    label = `${e.route.kind}/${e.route.namespace}/${e.route.name}/${e.ruleIndex}`;
    labelOf.set(e, label);
  }
  return label;
}

/**
 * A WebSocket request. Over HTTP/1.1 (Upgrade): the raw client socket and the bytes read past its
 * head. Over HTTP/2 (RFC 8441 extended CONNECT): the request's stream, and no head.
 */
export interface Upgrade {
  socket: Duplex;
  head: Buffer;
  /** Set once the backend agreed and the tunnel opened: the status the client was given. */
  opened?: number;
}

type Mirror = Extract<Filter, { type: "RequestMirror" }>;
type ResponseMod = Extract<Filter, { type: "ResponseHeaderModifier" }>;
// Shared by the requests without filters (most): read only, never mutated.
const NO_MIRRORS: readonly Mirror[] = Object.freeze([]);
const NO_RESPONSE_MODS: readonly ResponseMod[] = Object.freeze([]);
const NO_RESPONSE_HEADERS: Readonly<Record<string, string>> = Object.freeze({});

/** What a route's filters decided. Made only for requests whose rule or backend has filters. */
class Filtered {
  host: string;
  upstreamPath: string;
  cors: CorsFilter | undefined = undefined;
  mirrors: Mirror[] = [];
  responseMods: ResponseMod[] = [];

  constructor(host: string, upstreamPath: string) {
    this.host = host;
    this.upstreamPath = upstreamPath;
  }

  /** Applies filters in order; false when one of them answered the request itself. */
  apply(filters: readonly Filter[], req: Req, res: Res, x: Exchange, out: HeaderMap, pathOnly: string, query: string): boolean {
    const h = req.headers as HeaderMap;
    for (const f of filters) {
      switch (f.type) {
        case "CORS":
          this.cors = f;
          if (isPreflight(req.method ?? "", h)) {
            // Answered here, never forwarded: the backend may not know CORS at all.
            res.writeHead(204, preflightHeaders(f, h));
            res.end();
            return false;
          }
          break;
        case "RequestRedirect": {
          const location = redirectLocation(f, {
            scheme: x.conn.tls ? "https" : "http",
            host: hostWithoutPort(x.authority),
            listenerPort: x.port.binding.gatewayPort,
            path: pathOnly,
            query,
            match: x.entry.match,
            portOffset: x.port.binding.port - x.port.binding.gatewayPort,
          });
          res.writeHead(f.statusCode, { location, "content-length": "0" });
          res.end();
          return false;
        }
        case "RequestHeaderModifier":
          modifyHeaders(out, f.modifier);
          break;
        case "ResponseHeaderModifier":
          this.responseMods.push(f);
          break;
        case "URLRewrite":
          if (f.hostname !== undefined) this.host = f.hostname;
          if (f.path) this.upstreamPath = rewritePath(pathOnly, f.path, x.entry.match);
          break;
        case "RequestMirror":
          this.mirrors.push(f);
          break;
      }
    }
    return true;
  }
}

export function serve(state: ProxyState, req: Req, res: Res, x: Exchange, upgrade?: Upgrade): void {
  const { entry } = x;
  const h = req.headers as HeaderMap;
  const qi = x.path.indexOf("?");
  const pathOnly = qi < 0 ? x.path : x.path.slice(0, qi);
  const query = qi < 0 ? "" : x.path.slice(qi);

  // Rule filters, then (once a backend is chosen) its own filters.
  const out: HeaderMap = {};
  copyRequestHeaders(h, out);
  let filtered: Filtered | undefined;
  if (entry.filters.length) {
    filtered = new Filtered(x.authority, pathOnly);
    if (!filtered.apply(entry.filters, req, res, x, out, pathOnly, query)) return;
  }
  if (entry.direct) return void errorReply(res, x.grpc, entry.direct.status, entry.direct.reason);
  const backend = chooseBackend(entry.backends);
  if (!backend) return void errorReply(res, x.grpc, 500, "no backends");
  if (backend.filters.length) {
    filtered ??= new Filtered(x.authority, pathOnly);
    if (!filtered.apply(backend.filters, req, res, x, out, pathOnly, query)) return;
  }
  let responseHeaders = NO_RESPONSE_HEADERS;
  // After both filter lists: a CORS filter may sit on the rule or on the chosen backendRef.
  const cors = filtered?.cors;
  if (cors) {
    const origin = h.origin;
    if (typeof origin === "string" && originAllowed(cors, origin)) responseHeaders = actualHeaders(cors, origin);
  }
  if (!backend.cluster) return void errorReply(res, x.grpc, 500, backend.invalid ?? "invalid backend");
  x.labels.backend = backend.cluster;
  const cluster = state.upstreams.cluster(backend.cluster, x.grpc);
  if (!cluster || cluster.size === 0) return void errorReply(res, x.grpc, 503, "no healthy endpoints");

  // Forwarding headers.
  const remote = clientAddress(req.socket);
  const xff = out["x-forwarded-for"];
  out["x-forwarded-for"] = xff ? `${Array.isArray(xff) ? xff.join(", ") : xff}, ${remote}` : remote;
  out["x-forwarded-proto"] = x.conn.tls ? "https" : "http";
  out["x-forwarded-host"] ??= x.authority;
  if (typeof out["x-request-id"] !== "string" || out["x-request-id"].length > 200) out["x-request-id"] = randomUUID();
  out.host = filtered ? filtered.host : x.authority;
  if (x.grpc) out.te = "trailers";

  const mirrors = filtered ? filtered.mirrors : NO_MIRRORS;
  const fwd: Forward = {
    method: req.method ?? "GET",
    path: (filtered ? filtered.upstreamPath : pathOnly) + query,
    headers: out,
    responseHeaders,
    responseMods: filtered ? filtered.responseMods : NO_RESPONSE_MODS,
    entry,
    grpc: x.grpc,
  };
  if (upgrade) return void tunnel(req, res, cluster, fwd, upgrade, state.tunnelIdleMs);
  const hasBody = requestHasBody(req);
  const replay = hasBody && (entry.retry !== undefined || mirrors.length > 0);
  if (!hasBody) {
    if (mirrors.length) fireMirrors(state, mirrors, fwd, null);
    return void forward(req, res, cluster, fwd, null, x.labels);
  }
  if (!replay) return void forward(req, res, cluster, fwd, req, x.labels);
  readBody(req, state.replayLimit).then(
    (body) => {
      // Too large to keep (a stream): sent once, without mirrors or retries, as Envoy does.
      if (Buffer.isBuffer(body)) fireMirrors(state, mirrors, fwd, body);
      forward(req, res, cluster, fwd, body, x.labels);
    },
    () => res.destroy(),
  );
}

function requestHasBody(req: Req): boolean {
  if ("stream" in req) return !req.stream.endAfterHeaders;
  const cl = req.headers["content-length"];
  return (cl !== undefined && cl !== "0") || req.headers["transfer-encoding"] !== undefined;
}

/**
 * The request body in memory when it fits in `limit` bytes. Past that, a stream of all of it:
 * the bytes read so far, then the rest as it arrives.
 */
function readBody(req: Req, limit: number): Promise<Buffer | Readable> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer): void => {
      chunks.push(c);
      size += c.length;
      if (size <= limit) return;
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", reject);
      req.pause();
      const all = new PassThrough();
      for (const b of chunks) all.write(b);
      req.once("error", (err) => all.destroy(err));
      req.pipe(all);
      resolve(all);
    };
    const onEnd = (): void => resolve(Buffer.concat(chunks));
    req.on("data", onData);
    req.once("end", onEnd);
    req.once("error", reject);
  });
}

/** Weighted random choice; a zero total (all weights 0) means no backend. */
export function chooseBackend(backends: readonly WeightedBackend[], rand: () => number = Math.random): WeightedBackend | undefined {
  if (backends.length === 1) return (backends[0] as WeightedBackend).weight > 0 ? backends[0] : undefined;
  let total = 0;
  for (const b of backends) total += b.weight;
  if (total <= 0) return undefined;
  let r = rand() * total;
  for (const b of backends) {
    r -= b.weight;
    if (r < 0) return b;
  }
  return backends[backends.length - 1];
}

export interface Forward {
  method: string;
  path: string;
  headers: HeaderMap;
  /** Added to the response (CORS). */
  responseHeaders: Readonly<Record<string, string>>;
  responseMods: readonly ResponseMod[];
  entry: RouteEntry;
  grpc: boolean;
}

type Body = Buffer | Readable | null;

class TimeoutError extends Error {}
class RetryableStatus extends Error {
  status: number;
  constructor(status: number) {
    super(`retryable status ${status}`);
    this.status = status;
  }
}

type Outcome = "done" | "error" | "status" | "timeout";

function forward(req: Req, res: Res, cluster: ClusterRuntime, fwd: Forward, body: Body, labels: RouteLabels): void {
  const f = new Forwarding(req, res, cluster, fwd, body);
  // A client that goes away cancels the upstream request: through the request's own close
  // listener when there is one (handleRequest), else through one of our own.
  if (labels instanceof Call) labels.forwarding = f;
  else res.once("close", () => f.clientClosed());
  f.start();
}

/**
 * One forwarded request across its attempts, driven by callbacks rather than promises: the
 * common case (one attempt, no timeout) then costs no promise, closure or microtask. Cancelling
 * (client gone, request timeout) aborts the running attempt (see Attempt.cancel).
 */
class Forwarding {
  readonly req: Req;
  readonly res: Res;
  readonly fwd: Forward;
  readonly body: Body;
  private readonly cluster: ClusterRuntime;
  private readonly maxRetries: number;
  private attempt = 0;
  private prev: Endpoint | undefined = undefined;
  private current: Attempt | undefined = undefined;
  private requestTimer: NodeJS.Timeout | undefined = undefined;
  private requestTimedOut = false;
  private clientGone = false;
  private finished = false;

  constructor(req: Req, res: Res, cluster: ClusterRuntime, fwd: Forward, body: Body) {
    this.req = req;
    this.res = res;
    this.cluster = cluster;
    this.fwd = fwd;
    this.body = body;
    const retry = fwd.entry.retry;
    const replayable = body === null || Buffer.isBuffer(body);
    this.maxRetries = replayable && retry ? retry.attempts : 0;
  }

  start(): void {
    const ms = this.fwd.entry.timeouts?.requestMs;
    if (ms) {
      this.requestTimer = setTimeout(() => {
        this.requestTimedOut = true;
        this.current?.cancel(new TimeoutError("request timeout"));
      }, ms);
    }
    this.next();
  }

  /** The client connection closed. (Http2ServerResponse has no `destroyed`, and its writableFinished is true after a reset: only writableEnded tells.) */
  clientClosed(): void {
    if (this.finished || this.res.writableEnded) return;
    this.clientGone = true;
    this.current?.cancel(new Error("client closed"));
  }

  private next(): void {
    if (this.requestTimedOut || this.clientGone) return this.finish();
    const ep = this.cluster.pick(Date.now(), this.prev);
    if (!ep) return this.finish();
    this.prev = ep;
    const { retry, timeouts } = this.fwd.entry;
    const a = new Attempt(this, ep, this.attempt < this.maxRetries ? retry?.codes : undefined, timeouts?.backendRequestMs);
    this.current = a;
    a.dispatch();
  }

  /** An attempt's outcome, once. */
  settled(a: Attempt): void {
    if (a.outcome === "done") {
      this.finished = true;
      clearTimeout(this.requestTimer);
      return;
    }
    // Decided once the undici callback that settled the attempt has returned, never inside it.
    queueMicrotask(() => this.afterAttempt(a));
  }

  private afterAttempt(a: Attempt): void {
    if (this.requestTimedOut || this.clientGone) return this.finish();
    // A backend request timeout is retried like a lost connection (HTTPRouteRetryWithTimeouts).
    const retryable = a.outcome === "status" || a.outcome === "timeout" || (a.outcome === "error" && a.connect);
    if (!retryable || this.res.headersSent || ++this.attempt > this.maxRetries) return this.finish();
    setTimeout(() => this.next(), this.fwd.entry.retry?.backoffMs ?? 25);
  }

  /** No attempt answered: says why, unless the client is gone or the answer already started. */
  private finish(): void {
    this.finished = true;
    clearTimeout(this.requestTimer);
    const { res, fwd } = this;
    if (this.clientGone) return;
    if (res.headersSent) return void res.destroy();
    const last = this.current;
    if (this.requestTimedOut || last?.outcome === "timeout") return errorReply(res, fwd.grpc, 504, "upstream timeout");
    if (last?.outcome === "status") return errorReply(res, fwd.grpc, last.status, "upstream error");
    // No attempt at all: as if no endpoint could be reached.
    const connect = last === undefined || (last.outcome === "error" && last.connect);
    errorReply(res, fwd.grpc, connect ? 503 : 502, "upstream unavailable");
  }
}

const CONNECT_ERRORS = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "UND_ERR_SOCKET", "UND_ERR_CONNECT_TIMEOUT", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN", "UND_ERR_CLOSED"]);

/**
 * One attempt against one endpoint, as undici's dispatch handler. Streams the response to the
 * client unless its status is to be retried. Cancelling aborts it once running; one still
 * waiting in a pool queue has no controller yet: it settles at once, and aborts itself should
 * the pool start it later.
 */
class Attempt implements Dispatcher.DispatchHandler {
  /** Undefined while running. */
  outcome: Outcome | undefined = undefined;
  /** For "status": the status to answer with. */
  status = 0;
  /** For "error": failed before any response, in a way another endpoint may not. */
  connect = false;
  private readonly f: Forwarding;
  private readonly ep: Endpoint;
  private readonly retryCodes: readonly number[] | undefined;
  private readonly timeoutMs: number | undefined;
  private started = false;
  private queued = true;
  private controller: Dispatcher.DispatchController | undefined = undefined;
  private cancelled: Error | undefined = undefined;
  private timer: NodeJS.Timeout | undefined = undefined;
  private statusTrailers: Record<string, string | string[]> | undefined = undefined;

  constructor(f: Forwarding, ep: Endpoint, retryCodes: readonly number[] | undefined, timeoutMs: number | undefined) {
    this.f = f;
    this.ep = ep;
    this.retryCodes = retryCodes;
    this.timeoutMs = timeoutMs;
  }

  dispatch(): void {
    const { fwd, body } = this.f;
    try {
      this.ep.pool.dispatch(
        {
          path: fwd.path,
          method: fwd.method as Dispatcher.HttpMethod,
          headers: fwd.headers as Record<string, string | string[]>,
          body: body as Buffer | null,
          // Idempotency is the route author's call here: retries are configured per rule.
          idempotent: true,
          blocking: false,
          // Plain connections have no SNI; naming one spares undici deriving it from the Host
          // header on every request (an IPv6 regex test). TLS ones keep undici's (or the pool's) choice.
          servername: this.ep.tls ? undefined : this.ep.host,
        } as Dispatcher.DispatchOptions,
        this,
      );
    } catch {
      this.settle("error", true);
    }
  }

  cancel(err: Error): void {
    if (this.cancelled) return;
    this.cancelled = err;
    if (this.controller) this.controller.abort(err);
    else if (this.queued) this.settle(err instanceof TimeoutError ? "timeout" : "error", false);
  }

  private settle(outcome: Outcome, connect = false, status = 0): void {
    if (this.outcome !== undefined) return;
    this.outcome = outcome;
    this.connect = connect;
    this.status = status;
    this.queued = false;
    clearTimeout(this.timer);
    this.f.settled(this);
  }

  onRequestStart(c: Dispatcher.DispatchController): void {
    this.queued = false;
    this.controller = c;
    // Cancelled while it waited for a pooled connection.
    if (this.cancelled || this.outcome !== undefined) return void c.abort(this.cancelled ?? new Error("cancelled"));
    if (this.timeoutMs) this.timer = setTimeout(() => c.abort(new TimeoutError("backend request timeout")), this.timeoutMs);
  }

  onResponseStart(c: Dispatcher.DispatchController, status: number, headers: IncomingHttpHeaders): void {
    if (this.outcome !== undefined) return void c.abort(new Error("cancelled"));
    if (status < 200) return this.interim(c, status, headers);
    const failed = status === 502 || status === 503 || status === 504;
    recordResult(this.ep, !failed, Date.now());
    if (this.retryCodes?.includes(status)) return void c.abort(new RetryableStatus(status));
    this.started = true;
    // Backend timeouts cover the wait for the response head; a streaming body may take its time.
    clearTimeout(this.timer);
    const { req, res, fwd } = this.f;
    if ("stream" in req) {
      const out = responseHeadersFor(headers, fwd, true);
      if (fwd.grpc) this.statusTrailers = takeStatusHeaders(out);
      res.writeHead(status, out);
    } else if (fwd.responseMods.length === 0 && fwd.responseHeaders === NO_RESPONSE_HEADERS) {
      // Nothing to merge: a flat [name, value, ...] list, which Node's HTTP/1.1 response writes
      // without an object walk (HTTP/2's takes only string values there).
      (res as unknown as ServerResponse).writeHead(status, flatResponseHeaders(headers));
    } else {
      res.writeHead(status, responseHeadersFor(headers, fwd, false));
    }
    // Small responses fit the first write; flushing the head early would cost a packet.
  }

  /**
   * An interim answer: 103 Early Hints reach the client as hints (never an HTTP/1.0 client,
   * RFC 9110 §15.2); other 1xx are dropped. Neither is the response, so the backend timeout keeps
   * running. (undici itself fails a 100 nobody asked for.) A status below 100 is no HTTP status.
   */
  private interim(c: Dispatcher.DispatchController, status: number, headers: IncomingHttpHeaders): void {
    if (status < 100) return void c.abort(new Error(`invalid status ${status} from the backend`));
    const { req, res } = this.f;
    if (status !== 103 || headers.link === undefined || (!("stream" in req) && req.httpVersion === "1.0")) return;
    res.writeEarlyHints(forwardableResponseHeaders(headers, "stream" in req));
  }

  onResponseData(c: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.outcome !== undefined) return void c.abort(new Error("cancelled"));
    const res = this.f.res;
    if (!res.write(chunk)) {
      // Resumed on drain; a client that goes away instead aborts the request (clientClosed), so a
      // paused upstream connection is never left waiting for a drain that cannot come.
      c.pause();
      res.once("drain", () => c.resume());
    }
  }

  onResponseEnd(_c: Dispatcher.DispatchController, trailers: IncomingHttpHeaders): void {
    if (this.outcome !== undefined) return;
    const { req, res } = this.f;
    // HTTP/1.1 responses here are not chunked with a Trailer header, so only HTTP/2 carries trailers (gRPC).
    if ("stream" in req) {
      const all = this.statusTrailers ? { ...this.statusTrailers, ...trailers } : trailers;
      if (all && Object.keys(all).length) res.addTrailers(all);
    }
    res.end();
    this.settle("done");
  }

  onResponseError(_c: Dispatcher.DispatchController | null, err: Error): void {
    if (err instanceof RetryableStatus) return this.settle("status", false, err.status);
    const res = this.f.res;
    if (err instanceof TimeoutError) {
      if (this.started) res.destroy();
      return this.settle("timeout");
    }
    // A cancelled request says nothing about the endpoint's health.
    if (this.cancelled) {
      if (this.started) res.destroy();
      return this.settle("error", false);
    }
    const code = (err as NodeJS.ErrnoException).code ?? "";
    const connect = !this.started && CONNECT_ERRORS.has(code);
    if (!this.started) recordResult(this.ep, false, Date.now());
    if (this.started) res.destroy(err);
    this.settle("error", connect);
  }
}

const MIRROR_TIMEOUT_MS = 30_000;

function fireMirrors(state: ProxyState, mirrors: readonly Mirror[], fwd: Forward, body: Buffer | null): void {
  for (const m of mirrors) {
    if (m.percent < 100 && Math.random() * 100 >= m.percent) continue;
    const cluster = m.backend.cluster ? state.upstreams.cluster(m.backend.cluster, fwd.grpc) : undefined;
    const ep = cluster?.pick(Date.now());
    if (!ep) continue;
    // Fire and forget: the mirror's answer is read and dropped, its failures never reach the client.
    // Bounded in time, so a mirror that never answers cannot pile up requests on its pool.
    const signal = AbortSignal.timeout(fwd.entry.timeouts?.requestMs || MIRROR_TIMEOUT_MS);
    ep.pool
      .request({ path: fwd.path, method: fwd.method as Dispatcher.HttpMethod, headers: fwd.headers as Record<string, string>, body, signal })
      .then((r) => r.body.dump())
      .catch(() => undefined);
  }
}

function plain(res: Res, status: number, message: string): void {
  if (res.headersSent) return void res.destroy();
  if (message === "") {
    res.writeHead(status, { "content-length": "0" });
    return void res.end();
  }
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8", "content-length": String(Buffer.byteLength(message) + 1) });
  res.end(`${message}\n`);
}

/** A locally generated error: plain text for HTTP, a trailers-only gRPC status for gRPC. */
export function errorReply(res: Res, grpc: boolean, status: number, message: string): void {
  if (grpc && status !== 421) return sendGrpcError(res, grpcStatusFor(status), message);
  plain(res, status, message);
}
