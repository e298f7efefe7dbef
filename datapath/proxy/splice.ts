// Byte splices between a client and a backend: TLSRoute passthrough and terminate, and WebSocket
// tunnels once the backend agreed to the upgrade.
import { Socket, connect as netConnect } from "node:net";
import type { Duplex } from "node:stream";
import { recordResult, type Endpoint } from "./upstream.ts";

/** How long a raw backend connection may take to connect. */
export const CONNECT_TIMEOUT_MS = 5_000;

export interface SpliceOptions {
  /** Written to the backend before the splice starts (the ClientHello of a passthrough). */
  first: Buffer[];
  /** Close the splice after this long with no traffic either way. */
  idleMs: number;
  /** The backend could not be reached in time; the client is still open. */
  onFail: () => void;
}

/** Dials a TCP backend for a byte splice (TLSRoute) and splices it to the client once connected. */
export function spliceTo(client: Duplex, ep: Endpoint, o: SpliceOptions): void {
  const backend: Socket = netConnect({ host: ep.host, port: ep.port });
  let connected = false;
  backend.setNoDelay(true);
  // A backend that never answers must not hold the client forever.
  backend.setTimeout(CONNECT_TIMEOUT_MS, () => backend.destroy(new Error("backend connect timeout")));
  // A client that leaves while the backend is being dialled takes the backend connection with it.
  const onClientGone = (): void => void (connected || backend.destroy());
  client.once("close", onClientGone);
  backend.once("connect", () => {
    connected = true;
    backend.setTimeout(0);
    client.removeListener("close", onClientGone);
    recordResult(ep, true, Date.now());
    for (const b of o.first) if (b.length) backend.write(b);
    splice(client, backend, o.idleMs);
  });
  // Kept for the socket's whole life: errors after the splice are the splice's to handle.
  backend.on("error", () => {
    if (connected) return;
    recordResult(ep, false, Date.now());
    if (!client.destroyed) o.onFail();
  });
}

/**
 * Pipes both ways. A side that ends (FIN, HTTP/2 END_STREAM) ends the other once everything
 * written to it is flushed, as nginx's stream proxy and Envoy's TCP proxy do: destroying it at
 * once would drop the tail still queued for a slow reader. A side that fails or is reset takes
 * the other down at once, and so does `idleMs` without traffic: a socket's timer restarts on its
 * reads and its writes, which are the two directions of the splice, so either timer running out
 * means nothing moved either way.
 */
export function splice(a: Duplex, b: Duplex, idleMs: number): void {
  const reset = (): void => {
    a.destroy();
    b.destroy();
  };
  // A side that closed before the splice would never emit 'close' again.
  if (a.destroyed || b.destroyed) return reset();
  // A socket's earlier timeout (the server's keep-alive idle) gives way to the splice's.
  for (const s of [a, b]) if (s instanceof Socket) s.setTimeout(idleMs, reset);
  // pipe() ends the destination when the source ends.
  a.pipe(b);
  b.pipe(a);
  a.once("error", reset);
  b.once("error", reset);
  a.once("close", () => closed(a, b));
  b.once("close", () => closed(b, a));
}

/** One side of a splice closed: the other follows, at once after a reset, after its flush after a clean end. */
function closed(gone: Duplex, other: Duplex): void {
  if (other.destroyed) return;
  if (!gone.readableEnded) return void other.destroy();
  // Nothing reads what the other side still sends; drop it rather than leave it unread, which
  // would make the kernel answer the final close with a reset instead of a FIN.
  other.resume();
  // A socket is closed once flushed. An HTTP/2 stream is left to close when the client ends its
  // half: destroying it would reset it, and a reset may discard data still queued in the session.
  if (!(other instanceof Socket)) return;
  if (other.writableFinished) return void other.destroy();
  other.once("finish", () => other.destroy());
}
