// One HTTP request through the proxy (HTTP/1.1 and HTTP/2 alike, through Node's compatible
// request/response API): listener and route selection, filters, backend choice, forwarding with
// timeouts and retries, and the response back with its filters applied.
import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";
import { randomUUID } from "node:crypto";
import type { Dispatcher } from "undici";
import type { Duplex } from "node:stream";
import { tunnel } from "./websocket.ts";
import type { Filter, L7Listener, RouteEntry, WeightedBackend } from "../../operator/translate/output.ts";
import { selectListener, selectRoute, selectVirtualHost } from "./router.ts";
import { hostWithoutPort } from "../../operator/translate/hostname.ts";
import { modifyHeaders, redirectLocation, rewritePath, type HeaderMap } from "./rewrite.ts";
import { actualHeaders, isPreflight, originAllowed, preflightHeaders, type CorsFilter } from "./cors.ts";
import { recordResult, type ClusterRuntime, type Endpoint, type Upstreams } from "./upstream.ts";
import type { PortRuntime, Table } from "./table.ts";
import { grpcStatusFor, sendGrpcError, takeStatusHeaders } from "./grpc.ts";
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
  destroy(err?: Error): unknown;
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

const HOP_BY_HOP = new Set([
  "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer", "http2-settings", "host",
]);

/** The outcome of routing, before any forwarding: what the access log and metrics label by. */
export interface RouteLabels {
  route: string;
  backend: string;
}

export function handleRequest(state: ProxyState, conn: ConnInfo, req: Req, res: Res): void {
  const started = performance.now();
  const labels: RouteLabels = { route: "", backend: "" };
  res.once("close", () => state.observer.request(req, res, labels, started));
  const r = routeRequest(state, conn, req);
  if ("status" in r) {
    // A removed listener, or a request too broken to trust what follows it on the connection:
    // close it (HTTP/1.1 only; HTTP/2 has no Connection header and its streams are independent).
    if ((r.status === 503 || r.status === 400) && !("stream" in req)) res.setHeader("connection", "close");
    return void errorReply(res, r.grpc, r.status, r.message);
  }
  labels.route = routeLabel(r.entry);
  serve(state, req, res, { ...r, labels });
}

export type Routed = Omit<Exchange, "labels">;

/** Listener, virtual host and route for a request, or the status that answers it. */
export function routeRequest(state: ProxyState, conn: ConnInfo, req: Req): Routed | { status: number; message: string; grpc: boolean } {
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
    } else if (!(url === "*" && req.method === "OPTIONS")) return { status: 400, message: "bad request target", grpc: false };
  }
  if (!authority) return { status: 400, message: "missing Host header", grpc: false };
  const listener = selectFor(port, conn, authority);
  if (listener === "misdirected") return { status: 421, message: "misdirected request", grpc };
  const vhost = listener && selectVirtualHost(listener, authority);
  const entry = vhost && selectRoute(vhost, { host: authority, path, method: req.method ?? "GET", headers: h as HeaderMap });
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

/** A WebSocket (HTTP/1.1 Upgrade) request: the raw client socket and the bytes read past its head. */
export interface Upgrade {
  socket: Duplex;
  head: Buffer;
}

export function serve(state: ProxyState, req: Req, res: Res, x: Exchange, upgrade?: Upgrade): void {
  const { entry } = x;
  const h = req.headers as HeaderMap;
  const qi = x.path.indexOf("?");
  const pathOnly = qi < 0 ? x.path : x.path.slice(0, qi);
  const query = qi < 0 ? "" : x.path.slice(qi);
  const responseHeaders: Record<string, string> = {};
  let cors: CorsFilter | undefined;

  // Rule filters, then (once a backend is chosen) its own filters.
  const out: HeaderMap = {};
  copyRequestHeaders(h, out);
  let host = x.authority;
  let upstreamPath = pathOnly;
  const mirrors: Extract<Filter, { type: "RequestMirror" }>[] = [];
  const responseMods: Extract<Filter, { type: "ResponseHeaderModifier" }>[] = [];
  const apply = (filters: readonly Filter[]): boolean => {
    for (const f of filters) {
      switch (f.type) {
        case "CORS":
          cors = f;
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
            match: entry.match,
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
          responseMods.push(f);
          break;
        case "URLRewrite":
          if (f.hostname !== undefined) host = f.hostname;
          if (f.path) upstreamPath = rewritePath(pathOnly, f.path, entry.match);
          break;
        case "RequestMirror":
          mirrors.push(f);
          break;
      }
    }
    return true;
  };
  if (!apply(entry.filters)) return;
  if (entry.direct) return void errorReply(res, x.grpc, entry.direct.status, entry.direct.reason);
  const backend = chooseBackend(entry.backends);
  if (!backend) return void errorReply(res, x.grpc, 500, "no backends");
  if (!apply(backend.filters)) return;
  // After both filter lists: a CORS filter may sit on the rule or on the chosen backendRef.
  if (cors) {
    const origin = h.origin;
    if (typeof origin === "string" && originAllowed(cors, origin)) Object.assign(responseHeaders, actualHeaders(cors, origin));
  }
  if (!backend.cluster) return void errorReply(res, x.grpc, 500, backend.invalid ?? "invalid backend");
  x.labels.backend = backend.cluster;
  const cluster = state.upstreams.cluster(backend.cluster, x.grpc);
  if (!cluster || cluster.size === 0) return void errorReply(res, x.grpc, 503, "no healthy endpoints");

  // Forwarding headers.
  const remote = req.socket.remoteAddress ?? "";
  const xff = out["x-forwarded-for"];
  out["x-forwarded-for"] = xff ? `${Array.isArray(xff) ? xff.join(", ") : xff}, ${remote}` : remote;
  out["x-forwarded-proto"] = x.conn.tls ? "https" : "http";
  out["x-forwarded-host"] ??= x.authority;
  if (typeof out["x-request-id"] !== "string" || out["x-request-id"].length > 200) out["x-request-id"] = randomUUID();
  out.host = host;
  if (x.grpc) out.te = "trailers";

  const fwd: Forward = {
    method: req.method ?? "GET",
    path: upstreamPath + query,
    headers: out,
    responseHeaders,
    responseMods,
    entry,
    grpc: x.grpc,
  };
  if (upgrade) return void tunnel(req, res, cluster, fwd, upgrade, state.tunnelIdleMs);
  const hasBody = requestHasBody(req);
  const replay = hasBody && (entry.retry !== undefined || mirrors.length > 0);
  if (!hasBody) {
    fireMirrors(state, mirrors, fwd, null);
    void forward(state, req, res, cluster, fwd, null);
    return;
  }
  if (!replay) {
    void forward(state, req, res, cluster, fwd, req);
    return;
  }
  readBody(req, state.replayLimit).then(
    (body) => {
      if (body === "too-large") return void errorReply(res, x.grpc, 413, "request body too large to replay");
      fireMirrors(state, mirrors, fwd, body);
      void forward(state, req, res, cluster, fwd, body);
    },
    () => res.destroy(),
  );
}

function copyRequestHeaders(from: HeaderMap, to: HeaderMap): void {
  const connection = from.connection;
  const named = typeof connection === "string" ? connection.toLowerCase().split(/\s*,\s*/) : [];
  for (const k in from) {
    if (k.charCodeAt(0) === 58 /* ':' */ || HOP_BY_HOP.has(k)) continue;
    if (named.length && named.includes(k)) continue;
    to[k] = from[k];
  }
}

function requestHasBody(req: Req): boolean {
  if ("stream" in req) return !req.stream.endAfterHeaders;
  const cl = req.headers["content-length"];
  return (cl !== undefined && cl !== "0") || req.headers["transfer-encoding"] !== undefined;
}

function readBody(req: Req, limit: number): Promise<Buffer | "too-large"> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on("data", (c: Buffer) => {
      if (done) return;
      size += c.length;
      if (size > limit) {
        done = true;
        resolve("too-large");
        return;
      }
      chunks.push(c);
    });
    req.once("end", () => {
      if (!done) resolve(Buffer.concat(chunks));
    });
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
  responseHeaders: Record<string, string>;
  responseMods: Extract<Filter, { type: "ResponseHeaderModifier" }>[];
  entry: RouteEntry;
  grpc: boolean;
}

type Body = Buffer | Req | null;

class TimeoutError extends Error {}
class RetryableStatus extends Error {
  status: number;
  constructor(status: number) {
    super(`retryable status ${status}`);
    this.status = status;
  }
}

type Attempt = { kind: "done" } | { kind: "error"; error: Error; connect: boolean } | { kind: "status"; status: number } | { kind: "timeout" };

/**
 * One forwarded request across its attempts. Cancelling (client gone, request timeout) aborts the
 * running attempt, ends one still waiting in a pool queue at once, and makes it abort itself
 * should the pool start it later: a queued request has no controller to abort yet.
 */
interface Flight {
  controller?: Dispatcher.DispatchController;
  cancelled?: Error;
  /** Settles the current attempt while it has not started. */
  settleQueued?: (a: Attempt) => void;
}

function cancel(flight: Flight, err: Error): void {
  if (flight.cancelled) return;
  flight.cancelled = err;
  if (flight.controller) flight.controller.abort(err);
  else flight.settleQueued?.(err instanceof TimeoutError ? { kind: "timeout" } : { kind: "error", error: err, connect: false });
}

const NO_ATTEMPT: Attempt = { kind: "error", error: new Error("no endpoint was tried"), connect: true };

async function forward(state: ProxyState, req: Req, res: Res, cluster: ClusterRuntime, fwd: Forward, body: Body): Promise<void> {
  const retry = fwd.entry.retry;
  const timeouts = fwd.entry.timeouts;
  const replayable = body === null || Buffer.isBuffer(body);
  const maxRetries = replayable && retry ? retry.attempts : 0;
  let requestTimedOut = false;
  let clientGone = false;
  let flight: Flight = {};
  const requestTimer = timeouts?.requestMs
    ? setTimeout(() => {
        requestTimedOut = true;
        cancel(flight, new TimeoutError("request timeout"));
      }, timeouts.requestMs)
    : undefined;
  // A client that goes away cancels the upstream request. (Http2ServerResponse has no
  // `destroyed`, and its writableFinished is true after a reset: only writableEnded tells.)
  const onClose = (): void => {
    if (res.writableEnded) return;
    clientGone = true;
    cancel(flight, new Error("client closed"));
  };
  res.once("close", onClose);
  // Shared, not per request: an Error captures a stack trace, which costs more than the routing.
  let last: Attempt = NO_ATTEMPT;
  let prev: Endpoint | undefined;
  try {
    for (let attempt = 0; attempt <= maxRetries; attempt++) {
      if (attempt > 0) await sleep(retry?.backoffMs ?? 25);
      if (requestTimedOut || clientGone) break;
      const ep = cluster.pick(Date.now(), prev);
      if (!ep) break;
      prev = ep;
      const retryCodes = attempt < maxRetries ? retry?.codes : undefined;
      flight = {};
      last = await once(req, res, ep, fwd, body, retryCodes, timeouts?.backendRequestMs, flight);
      if (last.kind === "done") return;
      if (requestTimedOut || clientGone) break;
      // A backend request timeout is retried like a lost connection (HTTPRouteRetryWithTimeouts).
      const retryable = last.kind === "status" || last.kind === "timeout" || (last.kind === "error" && last.connect);
      if (!retryable || res.headersSent) break;
    }
    if (clientGone) return;
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (requestTimedOut || last.kind === "timeout") return void errorReply(res, fwd.grpc, 504, "upstream timeout");
    if (last.kind === "status") return void errorReply(res, fwd.grpc, last.status, "upstream error");
    return void errorReply(res, fwd.grpc, last.kind === "error" && last.connect ? 503 : 502, "upstream unavailable");
  } finally {
    clearTimeout(requestTimer);
    res.removeListener("close", onClose);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

const CONNECT_ERRORS = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "UND_ERR_SOCKET", "UND_ERR_CONNECT_TIMEOUT", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN", "UND_ERR_CLOSED"]);

/** One attempt against one endpoint. Streams the response to the client unless its status is to be retried. */
function once(
  req: Req, res: Res, ep: Endpoint, fwd: Forward, body: Body,
  retryCodes: readonly number[] | undefined, timeoutMs: number | undefined, flight: Flight,
): Promise<Attempt> {
  return new Promise<Attempt>((resolve) => {
    let settled = false;
    let started = false;
    let timer: NodeJS.Timeout | undefined;
    let statusTrailers: Record<string, string | string[]> | undefined;
    const settle = (a: Attempt): void => {
      if (settled) return;
      settled = true;
      flight.settleQueued = undefined;
      clearTimeout(timer);
      resolve(a);
    };
    flight.settleQueued = settle;
    const handler: Dispatcher.DispatchHandler = {
      onRequestStart(c) {
        flight.settleQueued = undefined;
        flight.controller = c;
        // Cancelled while it waited for a pooled connection.
        if (flight.cancelled || settled) return void c.abort(flight.cancelled ?? new Error("cancelled"));
        if (timeoutMs) timer = setTimeout(() => c.abort(new TimeoutError("backend request timeout")), timeoutMs);
      },
      onResponseStart(c, status, headers) {
        if (settled) return void c.abort(new Error("cancelled"));
        const failed = status === 502 || status === 503 || status === 504;
        recordResult(ep, !failed, Date.now());
        if (retryCodes?.includes(status)) {
          c.abort(new RetryableStatus(status));
          return;
        }
        started = true;
        // Backend timeouts cover the wait for the response head; a streaming body may take its time.
        clearTimeout(timer);
        const out = responseHeadersFor(headers, fwd, "stream" in req);
        if (fwd.grpc && "stream" in req) statusTrailers = takeStatusHeaders(out);
        res.writeHead(status, out);
        // Small responses fit the first write; flushing the head early would cost a packet.
      },
      onResponseData(c, chunk) {
        if (settled) return void c.abort(new Error("cancelled"));
        if (!res.write(chunk)) {
          // Resumed on drain; a client that goes away instead aborts the request (onClose), so a
          // paused upstream connection is never left waiting for a drain that cannot come.
          c.pause();
          res.once("drain", () => c.resume());
        }
      },
      onResponseEnd(_c, trailers) {
        if (settled) return;
        // HTTP/1.1 responses here are not chunked with a Trailer header, so only HTTP/2 carries trailers (gRPC).
        const all = statusTrailers ? { ...statusTrailers, ...trailers } : trailers;
        if ("stream" in req && all && Object.keys(all).length) res.addTrailers(all);
        res.end();
        settle({ kind: "done" });
      },
      onResponseError(_c, err) {
        if (err instanceof RetryableStatus) return settle({ kind: "status", status: err.status });
        if (err instanceof TimeoutError) {
          if (started) res.destroy();
          return settle({ kind: "timeout" });
        }
        // A cancelled request says nothing about the endpoint's health.
        if (flight.cancelled) {
          if (started) res.destroy();
          return settle({ kind: "error", error: err, connect: false });
        }
        const code = (err as NodeJS.ErrnoException).code ?? "";
        const connect = !started && CONNECT_ERRORS.has(code);
        if (!started) recordResult(ep, false, Date.now());
        if (started) res.destroy(err);
        settle({ kind: "error", error: err, connect });
      },
    };
    try {
      ep.pool.dispatch(
        {
          path: fwd.path,
          method: fwd.method as Dispatcher.HttpMethod,
          headers: fwd.headers as Record<string, string | string[]>,
          body: body as Buffer | null,
          // Idempotency is the route author's call here: retries are configured per rule.
          idempotent: true,
          blocking: false,
        } as Dispatcher.DispatchOptions,
        handler,
      );
    } catch (err) {
      settle({ kind: "error", error: err as Error, connect: true });
    }
  });
}

const DROP_RESPONSE = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer", "http2-settings"]);

function responseHeadersFor(upstream: IncomingHttpHeaders, fwd: Forward, h2: boolean): Record<string, string | string[]> {
  const out: HeaderMap = {};
  for (const k in upstream) {
    if (DROP_RESPONSE.has(k) || (h2 && k.charCodeAt(0) === 58)) continue;
    out[k] = upstream[k];
  }
  for (const m of fwd.responseMods) modifyHeaders(out, m.modifier);
  for (const k in fwd.responseHeaders) {
    const prev = out[k];
    // Vary lists what the answer depends on: CORS adds Origin to the backend's list, never replaces it.
    out[k] = k === "vary" && prev !== undefined ? `${Array.isArray(prev) ? prev.join(", ") : prev}, ${fwd.responseHeaders[k]}` : fwd.responseHeaders[k];
  }
  return out as Record<string, string | string[]>;
}

const MIRROR_TIMEOUT_MS = 30_000;

function fireMirrors(state: ProxyState, mirrors: readonly Extract<Filter, { type: "RequestMirror" }>[], fwd: Forward, body: Buffer | null): void {
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
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8", "content-length": String(Buffer.byteLength(message) + 1) });
  res.end(`${message}\n`);
}

/** A locally generated error: plain text for HTTP, a trailers-only gRPC status for gRPC. */
export function errorReply(res: Res, grpc: boolean, status: number, message: string): void {
  if (grpc && status !== 421) return sendGrpcError(res, grpcStatusFor(status), message);
  plain(res, status, message);
}
