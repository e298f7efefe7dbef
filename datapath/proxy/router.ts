// Request → route entry, over the translator's L7 route table. Pure and allocation-light: the
// proxy calls it per request, and tests call it to check routing decisions without sockets.
import type { L7Listener, L7Port, RouteEntry, RouteMatch, StringMatch, VirtualHost } from "../../operator/translate/output.ts";
import { hostnameMatches, hostWithoutPort } from "../../operator/translate/hostname.ts";

export interface RequestInfo {
  /** Host header (or :authority); a port in it is ignored. */
  host: string;
  /** Path with query, as received. */
  path: string;
  method: string;
  /** Lower-case names; repeated headers as arrays. */
  headers: Readonly<Record<string, string | readonly string[] | undefined>>;
}

const regexCache = new Map<string, RegExp>();

/** Full-string match, compiled once per pattern. */
export function fullMatch(pattern: string, value: string): boolean {
  let re = regexCache.get(pattern);
  if (!re) {
    re = new RegExp(`^(?:${pattern})$`, "u");
    if (regexCache.size > 10_000) regexCache.clear();
    regexCache.set(pattern, re);
  }
  return re.test(value);
}

/** Listener isolation: the most specific listener whose hostname matches serves the request. */
export function selectListener(port: L7Port, host: string): L7Listener | undefined {
  const h = hostWithoutPort(host);
  return port.listeners.find((l) => hostnameMatches(l.hostname, h));
}

interface HostIndex {
  exact: Map<string, VirtualHost>;
  /** Wildcard and catch-all hosts, most specific first (the translator's order). */
  patterns: VirtualHost[];
}

// Built once per listener object: a config update brings new listener objects, so stale
// indexes are never consulted and are collected with their listener.
const hostIndexes = new WeakMap<L7Listener, HostIndex>();

function hostIndex(listener: L7Listener): HostIndex {
  let idx = hostIndexes.get(listener);
  if (!idx) {
    idx = { exact: new Map(), patterns: [] };
    for (const v of listener.virtualHosts) {
      if (v.hostname === "*" || v.hostname.startsWith("*.")) idx.patterns.push(v);
      else if (!idx.exact.has(v.hostname)) idx.exact.set(v.hostname, v);
    }
    hostIndexes.set(listener, idx);
  }
  return idx;
}

/**
 * The most specific virtual host matching the host; there is no fallback to a less specific one.
 * An exact name is always the most specific, so it is looked up directly; only wildcards are scanned.
 */
export function selectVirtualHost(listener: L7Listener, host: string): VirtualHost | undefined {
  const h = hostWithoutPort(host);
  const idx = hostIndex(listener);
  return idx.exact.get(h) ?? idx.patterns.find((v) => hostnameMatches(v.hostname, h));
}

export function pathMatches(m: RouteMatch["path"], path: string): boolean {
  switch (m.type) {
    case "Exact": return path === m.value;
    case "PathPrefix":
      // Whole segments only: /v2 matches /v2 and /v2/x, never /v2x.
      return m.value === "/" || path === m.value || (path.startsWith(m.value) && path.charCodeAt(m.value.length) === 47);
    case "RegularExpression": return fullMatch(m.value, path);
  }
}

function stringMatch(m: StringMatch, value: string | undefined): boolean {
  if (value === undefined) return false;
  return m.type === "Exact" ? value === m.value : fullMatch(m.value, value);
}

function headerValue(headers: RequestInfo["headers"], name: string): string | undefined {
  const v = headers[name];
  return v === undefined ? undefined : typeof v === "string" ? v : v.join(",");
}

export function entryMatches(e: RouteEntry, path: string, query: URLSearchParams | undefined, req: RequestInfo): boolean {
  const m = e.match;
  if (!pathMatches(m.path, path)) return false;
  if (m.method !== undefined && m.method !== req.method) return false;
  for (const h of m.headers) if (!stringMatch(h, headerValue(req.headers, h.name))) return false;
  for (const q of m.queryParams) if (!stringMatch(q, query?.get(q.name) ?? undefined)) return false;
  return true;
}

/** The first entry, in precedence order, that matches the request. */
export function selectRoute(vhost: VirtualHost, req: RequestInfo): RouteEntry | undefined {
  const qi = req.path.indexOf("?");
  const path = qi < 0 ? req.path : req.path.slice(0, qi);
  const query = qi < 0 ? undefined : new URLSearchParams(req.path.slice(qi + 1));
  for (const e of vhost.routes) if (entryMatches(e, path, query, req)) return e;
  return undefined;
}

export type Decision =
  | { kind: "route"; listener: L7Listener; entry: RouteEntry }
  | { kind: "notFound"; listener?: L7Listener };

export function decide(port: L7Port, req: RequestInfo): Decision {
  const listener = selectListener(port, req.host);
  if (!listener) return { kind: "notFound" };
  const vhost = selectVirtualHost(listener, req.host);
  const entry = vhost && selectRoute(vhost, req);
  return entry ? { kind: "route", listener, entry } : { kind: "notFound", listener };
}
