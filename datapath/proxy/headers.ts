// Which headers cross the proxy. Hop-by-hop headers (RFC 9110 §7.6.1) describe one connection and
// stop at it, and so do the headers a Connection header names; everything else is forwarded.
import type { IncomingHttpHeaders } from "node:http";
import type { Forward } from "./handler.ts";
import { modifyHeaders, type HeaderMap } from "./rewrite.ts";

// Host too (the proxy sets its own), and Expect: Node has already answered 100-continue to the
// client (as Envoy does by default), and undici refuses to send the header at all.
const REQUEST_HOP_BY_HOP = new Set([
  "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer", "http2-settings", "host", "expect",
]);
const RESPONSE_HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer", "http2-settings"]);

/**
 * The header names a Connection header lists besides keep-alive and close. Undefined for the
 * usual values, without splitting them.
 */
function connectionListed(v: string | string[] | undefined): string[] | undefined {
  if (v === undefined || v === "keep-alive" || v === "close") return undefined;
  const names = (Array.isArray(v) ? v.join(",") : v).toLowerCase().split(",").map((n) => n.trim()).filter((n) => n && n !== "keep-alive" && n !== "close");
  return names.length ? names : undefined;
}

/** The client's request headers that go on to the backend: no pseudo-headers, nothing hop-by-hop. */
export function copyRequestHeaders(from: HeaderMap, to: HeaderMap): void {
  const named = connectionListed(from.connection);
  for (const k in from) {
    if (k.charCodeAt(0) === 58 /* ':' */ || REQUEST_HOP_BY_HOP.has(k) || named?.includes(k)) continue;
    to[k] = from[k];
  }
}

/** The backend's response headers for an HTTP/1.1 client, hop-by-hop ones left out, as writeHead's flat list. */
export function flatResponseHeaders(upstream: IncomingHttpHeaders): (string | string[])[] {
  const out: (string | string[])[] = [];
  const named = connectionListed(upstream.connection);
  for (const k in upstream) {
    const v = upstream[k];
    if (v === undefined || RESPONSE_HOP_BY_HOP.has(k) || named?.includes(k)) continue;
    out.push(k, v);
  }
  return out;
}

/** The backend's response headers that go on to the client (for HTTP/2, without pseudo-headers). */
export function forwardableResponseHeaders(upstream: IncomingHttpHeaders, h2: boolean): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  const named = connectionListed(upstream.connection);
  for (const k in upstream) {
    const v = upstream[k];
    if (v === undefined || RESPONSE_HOP_BY_HOP.has(k) || (h2 && k.charCodeAt(0) === 58) || named?.includes(k)) continue;
    out[k] = v;
  }
  return out;
}

/** The same, after the route's response header filters and the headers it adds (CORS). */
export function responseHeadersFor(upstream: IncomingHttpHeaders, fwd: Pick<Forward, "responseMods" | "responseHeaders">, h2: boolean): Record<string, string | string[]> {
  const out: HeaderMap = forwardableResponseHeaders(upstream, h2);
  for (const m of fwd.responseMods) modifyHeaders(out, m.modifier);
  for (const k in fwd.responseHeaders) {
    const prev = out[k];
    const add = fwd.responseHeaders[k] as string;
    // Vary lists what the answer depends on: CORS adds Origin to the backend's list, never replaces it.
    out[k] = k === "vary" && prev !== undefined ? `${Array.isArray(prev) ? prev.join(", ") : prev}, ${add}` : add;
  }
  return out as Record<string, string | string[]>;
}
