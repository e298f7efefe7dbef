// Hostname matching as the Gateway API defines it: a leading `*.` matches one or more labels,
// never the bare suffix; an absent hostname matches everything.

/** Does `host` (a concrete name, or a pattern) fall under `pattern`? */
export function hostnameMatches(pattern: string | undefined, host: string): boolean {
  if (pattern === undefined || pattern === "*") return true;
  if (!pattern.startsWith("*.")) return pattern === host;
  const suffix = pattern.slice(1); // ".example.com"
  if (host.startsWith("*.")) return host.length >= pattern.length && host.endsWith(suffix);
  return host.length > suffix.length && host.endsWith(suffix);
}

/**
 * The hostnames a route serves on a listener: the intersection of the listener's hostname with
 * the route's. Returns undefined when they do not intersect; `["*"]` when both are unrestricted.
 */
export function intersectHostnames(listener: string | undefined, route: readonly string[]): string[] | undefined {
  if (route.length === 0) return [listener ?? "*"];
  if (listener === undefined) return [...route];
  const out: string[] = [];
  for (const r of route) {
    // The narrower of the two names is what is actually served.
    if (hostnameMatches(listener, r)) out.push(r);
    else if (hostnameMatches(r, listener)) out.push(listener);
  }
  return out.length ? [...new Set(out)] : undefined;
}

/**
 * Orders hostnames most specific first: exact names before wildcards, longer wildcards before
 * shorter ones, `*` last; ties broken alphabetically for determinism.
 */
export function compareHostnameSpecificity(a: string, b: string): number {
  return rank(a) - rank(b) || b.length - a.length || (a < b ? -1 : a > b ? 1 : 0);
}

function rank(h: string): number {
  return h === "*" ? 2 : h.startsWith("*.") ? 1 : 0;
}

/** Strips a `:port` from a Host header value (IPv6 literals keep their brackets). */
export function hostWithoutPort(host: string): string {
  if (host.startsWith("[")) {
    const end = host.indexOf("]");
    return end < 0 ? host : host.slice(0, end + 1);
  }
  const colon = host.indexOf(":");
  return (colon < 0 ? host : host.slice(0, colon)).toLowerCase();
}
