// WebSocket (and any HTTP/1.1 Upgrade): once routed and filtered like any request, the upgrade
// request goes to the backend, and only the backend's 101 turns the connection into a byte
// splice. Any other answer is relayed as a response that closes the connection: a refused
// upgrade must not leave a raw tunnel that later requests would take unrouted.
import { request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders } from "node:http";
import { request as httpsRequest } from "node:https";
import type { Socket } from "node:net";
import type { Forward, Req, Res, Upgrade } from "./handler.ts";
import type { ClusterRuntime } from "./upstream.ts";
import { recordResult } from "./upstream.ts";
import { CONNECT_TIMEOUT_MS, splice } from "./splice.ts";
import { modifyHeaders, type HeaderMap } from "./rewrite.ts";

const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer"]);

export function tunnel(req: Req, res: Res, cluster: ClusterRuntime, fwd: Forward, up: Upgrade, idleMs: number): void {
  const ep = cluster.pick(Date.now());
  if (!ep) return void fail(res, 503, "no healthy endpoints");
  const upgrade = req.headers.upgrade;
  const headers: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(fwd.headers)) if (v !== undefined) headers[k] = v;
  headers.connection = "upgrade";
  headers.upgrade = Array.isArray(upgrade) ? upgrade.join(", ") : (upgrade ?? "websocket");
  const base = { host: ep.host, port: ep.port, method: fwd.method, path: fwd.path, headers, setHost: false, agent: false as const };
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
    // The backend's 101 with its handshake headers (Sec-WebSocket-Accept, -Protocol, ...), after
    // the route's response header filters, which apply to every response the route gives.
    const lines = [`HTTP/1.1 ${bres.statusCode ?? 101} ${bres.statusMessage ?? "Switching Protocols"}`];
    for (const [name, value] of upgradeResponseHeaders(bres.rawHeaders, fwd)) lines.push(`${name}: ${value}`);
    up.socket.write(`${lines.join("\r\n")}\r\n\r\n`, "latin1");
    if (bhead.length) up.socket.write(bhead);
    if (up.head.length) bsocket.write(up.head);
    splice(up.socket, bsocket, idleMs);
  });
  breq.on("response", (bres: IncomingMessage) => {
    const status = bres.statusCode ?? 502;
    settle(status !== 502 && status !== 503 && status !== 504);
    breq.setTimeout(0);
    const out: HeaderMap = {};
    for (const [k, v] of Object.entries(bres.headers)) if (!HOP_BY_HOP.has(k)) out[k] = v;
    for (const m of fwd.responseMods) modifyHeaders(out, m.modifier);
    Object.assign(out, fwd.responseHeaders);
    // The onUpgrade response closes the client connection once it is finished.
    res.writeHead(status, out as OutgoingHttpHeaders);
    bres.on("data", (c: Buffer) => res.write(c));
    bres.on("end", () => res.end());
    bres.on("error", () => res.destroy());
    res.once("close", () => bres.destroy());
  });
  breq.on("error", (err) => {
    if (answered) return void up.socket.destroy();
    settle(false);
    if (up.socket.destroyed) return;
    if (err instanceof TimeoutError) fail(res, 504, "upstream timeout");
    else fail(res, CONNECT_ERRORS.has((err as NodeJS.ErrnoException).code ?? "") ? 503 : 502, "upstream unavailable");
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

function fail(res: Res, status: number, message: string): void {
  if (res.headersSent) return void res.destroy();
  res.writeHead(status, { "content-type": "text/plain", connection: "close", "content-length": String(message.length + 1) });
  res.end(`${message}\n`);
}
