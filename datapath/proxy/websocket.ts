// WebSocket (and any HTTP/1.1 Upgrade): once routed and filtered like any request, the request
// head is written to a backend connection and the two sockets are spliced. The backend's 101
// (or refusal) reaches the client byte for byte.
import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import type { Duplex } from "node:stream";
import type { Forward, Req, Res, Upgrade } from "./handler.ts";
import type { ClusterRuntime } from "./upstream.ts";
import { recordResult } from "./upstream.ts";

export function tunnel(req: Req, res: Res, cluster: ClusterRuntime, fwd: Forward, up: Upgrade): void {
  const ep = cluster.pick(Date.now());
  if (!ep) return void fail(res, 503, "no healthy endpoints");
  const upgrade = req.headers.upgrade;
  const lines = [`${fwd.method} ${fwd.path} HTTP/1.1`];
  for (const [k, v] of Object.entries(fwd.headers)) {
    if (v === undefined) continue;
    for (const one of Array.isArray(v) ? v : [v]) lines.push(`${k}: ${one}`);
  }
  lines.push("connection: upgrade", `upgrade: ${Array.isArray(upgrade) ? upgrade.join(", ") : (upgrade ?? "websocket")}`);
  const head = Buffer.from(`${lines.join("\r\n")}\r\n\r\n`, "latin1");
  const backend: Socket = ep.connectTls
    ? tlsConnect({ host: ep.host, port: ep.port, ...ep.connectTls, servername: ep.connectTls.servername || undefined, ALPNProtocols: ["http/1.1"] })
    : netConnect({ host: ep.host, port: ep.port });
  let connected = false;
  backend.setNoDelay(true);
  backend.once(ep.connectTls ? "secureConnect" : "connect", () => {
    connected = true;
    recordResult(ep, true, Date.now());
    backend.write(head);
    if (up.head.length) backend.write(up.head);
    splice(up.socket, backend);
  });
  backend.once("error", () => {
    if (connected) return;
    recordResult(ep, false, Date.now());
    fail(res, 503, "upstream connect failed");
  });
}

/** Pipes both ways; either side closing or failing tears down the other. */
export function splice(a: Duplex, b: Duplex): void {
  a.pipe(b);
  b.pipe(a);
  const done = (): void => {
    a.destroy();
    b.destroy();
  };
  a.once("error", done);
  b.once("error", done);
  a.once("close", done);
  b.once("close", done);
}

function fail(res: Res, status: number, message: string): void {
  if (res.headersSent) return void res.destroy();
  res.writeHead(status, { "content-type": "text/plain", connection: "close", "content-length": String(message.length + 1) });
  res.end(`${message}\n`);
}
