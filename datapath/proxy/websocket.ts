// WebSocket (and any HTTP/1.1 Upgrade): once routed and filtered like any request, the upgrade
// request goes to the backend, and only the backend's 101 turns the connection into a byte
// splice. Any other answer is relayed as a response that closes the connection: a refused
// upgrade must not leave a raw tunnel that later requests would take unrouted.
import { request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders } from "node:http";
import { request as httpsRequest } from "node:https";
import { createHash, randomBytes } from "node:crypto";
import type { Socket } from "node:net";
import type { Forward, Req, Res, Upgrade } from "./handler.ts";
import type { ClusterRuntime } from "./upstream.ts";
import { MAX_RESPONSE_HEAD_BYTES, recordResult } from "./upstream.ts";
import { CONNECT_TIMEOUT_MS, splice } from "./splice.ts";
import { modifyHeaders, type HeaderMap } from "./rewrite.ts";
import { responseHeadersFor } from "./headers.ts";

export function tunnel(req: Req, res: Res, cluster: ClusterRuntime, fwd: Forward, up: Upgrade, idleMs: number): void {
  // HTTP/2 (RFC 8441): the client's extended CONNECT stands for the HTTP/1.1 handshake, which the
  // proxy makes with the backend itself: a GET with a key of our own, and its answer to check.
  const h2 = "stream" in req;
  const ep = cluster.pick(Date.now());
  if (!ep) return void fail(res, h2, 503, "no healthy endpoints");
  const headers: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(fwd.headers)) if (v !== undefined) headers[k] = v;
  headers.connection = "upgrade";
  let key = "";
  if (h2) {
    headers.upgrade = String(req.headers[":protocol"]);
    key = randomBytes(16).toString("base64");
    headers["sec-websocket-key"] = key;
    headers["sec-websocket-version"] ??= "13";
  } else {
    const upgrade = req.headers.upgrade;
    headers.upgrade = Array.isArray(upgrade) ? upgrade.join(", ") : (upgrade ?? "websocket");
  }
  const base = { host: ep.host, port: ep.port, method: h2 ? "GET" : fwd.method, path: fwd.path, headers, setHost: false, agent: false as const, maxHeaderSize: MAX_RESPONSE_HEAD_BYTES };
  const t = ep.connectTls;
  const breq = t
    ? httpsRequest({ ...base, ...t, servername: t.servername || undefined })
    : httpRequest(base);
  let answered = false;
  const onClientGone = (): void => void breq.destroy();
  up.socket.once("close", onClientGone);
  const settle = (ok: boolean): void => {
    answered = true;
    up.socket.removeListener("close", onClientGone);
    recordResult(ep, ok, Date.now());
  };
  breq.setTimeout(CONNECT_TIMEOUT_MS, () => breq.destroy(new TimeoutError()));
  breq.on("upgrade", (bres: IncomingMessage, bsocket: Socket, bhead: Buffer) => {
    settle(true);
    bsocket.setTimeout(0);
    if (h2) {
      if (bres.headers["sec-websocket-accept"] !== websocketAccept(key)) {
        bsocket.destroy();
        return void fail(res, true, 502, "backend answered the WebSocket handshake wrongly");
      }
      // A 200 opens the tunnel on the client's stream (RFC 8441 §5), with the 101's other headers
      // (Sec-WebSocket-Protocol, -Extensions, ...) after the route's response filters.
      const out = responseHeadersFor(bres.headers, fwd, true);
      delete out["sec-websocket-accept"];
      // Sent at once (HTTP/2's writeHead responds on the stream), ahead of the tunnel's bytes.
      res.writeHead(200, out);
    } else {
      // The backend's 101 with its handshake headers (Sec-WebSocket-Accept, -Protocol, ...), after
      // the route's response header filters, which apply to every response the route gives.
      const lines = [`HTTP/1.1 ${bres.statusCode ?? 101} ${bres.statusMessage ?? "Switching Protocols"}`];
      for (const [name, value] of upgradeResponseHeaders(bres.rawHeaders, fwd)) lines.push(`${name}: ${value}`);
      up.socket.write(`${lines.join("\r\n")}\r\n\r\n`, "latin1");
    }
    up.opened = h2 ? 200 : (bres.statusCode ?? 101);
    if (bhead.length) up.socket.write(bhead);
    if (up.head.length) bsocket.write(up.head);
    splice(up.socket, bsocket, idleMs);
  });
  breq.on("response", (bres: IncomingMessage) => {
    const status = bres.statusCode ?? 502;
    settle(status !== 502 && status !== 503 && status !== 504);
    breq.setTimeout(0);
    // Over HTTP/1.1, the onUpgrade response closes the client connection once it is finished.
    res.writeHead(status, responseHeadersFor(bres.headers, fwd, h2));
    bres.on("data", (c: Buffer) => res.write(c));
    bres.on("end", () => res.end());
    bres.on("error", () => res.destroy());
    res.once("close", () => bres.destroy());
  });
  breq.on("error", (err) => {
    if (answered) return void up.socket.destroy();
    settle(false);
    if (up.socket.destroyed) return;
    if (err instanceof TimeoutError) fail(res, h2, 504, "upstream timeout");
    else fail(res, h2, CONNECT_ERRORS.has((err as NodeJS.ErrnoException).code ?? "") ? 503 : 502, "upstream unavailable");
  });
  breq.end();
}

/**
 * A 101's headers with the route's response filters applied. Connection and Upgrade are the
 * handshake itself and stay as the backend sent them; everything else is filtered like any response.
 */
function upgradeResponseHeaders(raw: readonly string[], fwd: Forward): [string, string][] {
  if (fwd.responseMods.length === 0 && Object.keys(fwd.responseHeaders).length === 0) {
    const out: [string, string][] = [];
    for (let i = 0; i + 1 < raw.length; i += 2) out.push([raw[i] ?? "", raw[i + 1] ?? ""]);
    return out;
  }
  const handshake: [string, string][] = [];
  const rest: HeaderMap = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] ?? "";
    const value = raw[i + 1] ?? "";
    const k = name.toLowerCase();
    if (k === "connection" || k === "upgrade") handshake.push([name, value]);
    else {
      const prev = rest[k];
      rest[k] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value];
    }
  }
  for (const m of fwd.responseMods) modifyHeaders(rest, m.modifier);
  Object.assign(rest, fwd.responseHeaders);
  for (const [k, v] of Object.entries(rest)) {
    if (v === undefined) continue;
    for (const one of Array.isArray(v) ? v : [v]) handshake.push([k, String(one)]);
  }
  return handshake;
}

class TimeoutError extends Error {}

const CONNECT_ERRORS = new Set(["ECONNREFUSED", "ECONNRESET", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN"]);

/** Over HTTP/1.1 the connection closes after it; HTTP/2 has no Connection header, and only the stream ends. */
function fail(res: Res, h2: boolean, status: number, message: string): void {
  if (res.headersSent) return void res.destroy();
  const length = String(message.length + 1);
  res.writeHead(status, h2 ? { "content-type": "text/plain", "content-length": length } : { "content-type": "text/plain", connection: "close", "content-length": length });
  res.end(`${message}\n`);
}

/** RFC 6455 §4.2.2: what a server answers to a Sec-WebSocket-Key. */
function websocketAccept(key: string): string {
  return createHash("sha1").update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest("base64");
}
