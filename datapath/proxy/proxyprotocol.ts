// The PROXY protocol (HAProxy's spec, versions 1 and 2): the header a load balancer such as the
// AWS NLB puts before a connection's first byte to say whom the connection is really from. Read
// only on sockets whose Gateways asked their load balancer for it (config.ts); the address it
// names is the client's in X-Forwarded-For and the access log.
import { isIP } from "node:net";

export type ProxyHeader =
  /** Too few bytes yet to tell. */
  | { state: "more" }
  /** These bytes cannot begin a PROXY header. */
  | { state: "none" }
  | { state: "invalid"; reason: string }
  /** A header of `length` bytes; `source` is absent for LOCAL, UNKNOWN and non-IP families. */
  | { state: "ok"; length: number; source?: string };

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = Buffer.from("PROXY ", "latin1");
/** The longest version 1 line the spec allows, CRLF included. */
const V1_MAX = 107;

/** Reads a PROXY header at the start of `buf`. */
export function parseProxyHeader(buf: Buffer): ProxyHeader {
  if (startsLike(buf, V2_SIGNATURE)) return buf.length < 16 ? { state: "more" } : parseV2(buf);
  if (startsLike(buf, V1_PREFIX)) return buf.length < V1_PREFIX.length ? { state: "more" } : parseV1(buf);
  return { state: "none" };
}

/** `buf` and `prefix` agree on their common length. */
function startsLike(buf: Buffer, prefix: Buffer): boolean {
  const n = Math.min(buf.length, prefix.length);
  return buf.subarray(0, n).equals(prefix.subarray(0, n));
}

function parseV2(buf: Buffer): ProxyHeader {
  const versionCommand = buf[12] as number;
  if (versionCommand >> 4 !== 2) return { state: "invalid", reason: "unknown PROXY protocol version" };
  const command = versionCommand & 0x0f;
  if (command > 1) return { state: "invalid", reason: "unknown PROXY protocol command" };
  const length = 16 + buf.readUInt16BE(14);
  if (buf.length < length) return { state: "more" };
  // LOCAL: the load balancer's own connection (a health check): its addresses are the socket's.
  if (command === 0) return { state: "ok", length };
  const family = (buf[13] as number) >> 4;
  if (family === 1) {
    if (length < 16 + 12) return { state: "invalid", reason: "short IPv4 PROXY header" };
    return { state: "ok", length, source: [...buf.subarray(16, 20)].join(".") };
  }
  if (family === 2) {
    if (length < 16 + 36) return { state: "invalid", reason: "short IPv6 PROXY header" };
    const groups: string[] = [];
    for (let i = 0; i < 8; i++) groups.push(buf.readUInt16BE(16 + i * 2).toString(16));
    // The URL parser writes an IPv6 address in its canonical, compressed form.
    return { state: "ok", length, source: new URL(`http://[${groups.join(":")}]`).hostname.slice(1, -1) };
  }
  // UNSPEC or a UNIX socket: nothing that could go into X-Forwarded-For.
  return { state: "ok", length };
}

function parseV1(buf: Buffer): ProxyHeader {
  const end = buf.indexOf("\r\n");
  if (end < 0) return buf.length >= V1_MAX ? { state: "invalid", reason: "PROXY line too long" } : { state: "more" };
  if (end + 2 > V1_MAX) return { state: "invalid", reason: "PROXY line too long" };
  const [proto, source, destination, sourcePort, destinationPort, ...rest] = buf.subarray(V1_PREFIX.length, end).toString("latin1").split(" ");
  if (proto === "UNKNOWN") return { state: "ok", length: end + 2 };
  const family = proto === "TCP4" ? 4 : proto === "TCP6" ? 6 : 0;
  const portOk = (p: string | undefined): boolean => p !== undefined && /^\d{1,5}$/.test(p) && Number(p) <= 65535;
  if (!family || rest.length || isIP(source ?? "") !== family || isIP(destination ?? "") !== family || !portOk(sourcePort) || !portOk(destinationPort)) {
    return { state: "invalid", reason: "malformed PROXY line" };
  }
  return { state: "ok", length: end + 2, source };
}

// The client a PROXY header named, on the connection's socket (read through HTTP/2's socket proxy too).
const CLIENT = Symbol("sluice.proxyProtocolClient");
let anyClient = false;

type Tagged = { [CLIENT]?: string; _parent?: Tagged; remoteAddress?: string };

/** Remembers the client a PROXY header named for this connection. */
export function rememberClient(socket: object, address: string): void {
  (socket as Tagged)[CLIENT] = address;
  anyClient = true;
}

/**
 * The client's address: the one a PROXY header named, else the socket's peer. A TLS socket
 * looks at the TCP socket under it (`_parent`, where Node keeps it).
 */
export function clientAddress(socket: object): string {
  const s = socket as Tagged;
  if (anyClient) {
    const named = s[CLIENT] ?? s._parent?.[CLIENT];
    if (named !== undefined) return named;
  }
  return s.remoteAddress ?? "";
}
