// The pure parts of HTTPRoute filters: header modifiers, redirect locations and URL rewrites.
import type { Filter, HeaderModifier, RouteMatch } from "../../operator/translate/output.ts";

export type HeaderMap = Record<string, string | string[] | undefined>;

/** Applies a modifier to lower-case-keyed headers in place: set replaces, add appends with a comma, remove deletes. */
export function modifyHeaders(headers: HeaderMap, m: HeaderModifier): void {
  for (const { name, value } of m.set) headers[name.toLowerCase()] = value;
  for (const { name, value } of m.add) {
    const k = name.toLowerCase();
    const prev = headers[k];
    headers[k] = prev === undefined ? value : `${Array.isArray(prev) ? prev.join(",") : prev},${value}`;
  }
  for (const name of m.remove) delete headers[name.toLowerCase()];
}

/**
 * ReplacePrefixMatch: the matched PathPrefix is replaced, whole segments only, without doubling
 * or losing the slash between the replacement and the rest (`/strip-prefix/x` with `/` → `/x`).
 */
export function replacePrefix(path: string, matched: string, replacement: string): string {
  const prefix = matched === "/" ? "" : matched.replace(/\/$/, "");
  const rest = path.slice(prefix.length);
  let rep = replacement;
  if (rep.endsWith("/") && (rest.startsWith("/") || rest === "")) rep = rest === "" ? rep : rep.slice(0, -1);
  const out = rep + rest;
  return out === "" ? "/" : out;
}

type PathChange = { type: "ReplaceFullPath"; value: string } | { type: "ReplacePrefixMatch"; value: string };

/** New path (without query) after a path modifier; the match tells which prefix was matched. */
export function rewritePath(path: string, change: PathChange, match: RouteMatch): string {
  if (change.type === "ReplaceFullPath") return change.value;
  // Validation only allows ReplacePrefixMatch with a PathPrefix match.
  return match.path.type === "PathPrefix" ? replacePrefix(path, match.path.value, change.value) : path;
}

const WELL_KNOWN: Record<string, number> = { http: 80, https: 443 };

export interface RedirectInput {
  /** `http` or `https`: how the request arrived. */
  scheme: string;
  /** Host without port. */
  host: string;
  /** The Gateway listener port the request arrived on. */
  listenerPort: number;
  path: string;
  query: string;
  match: RouteMatch;
  /** Added to redirect ports in standalone mode, where listener port P is served on P + offset. */
  portOffset: number;
}

/**
 * The Location of a RequestRedirect. Port rules (Gateway API): an explicit port wins; a scheme
 * change without a port goes to that scheme's well-known port; neither keeps the listener's port.
 * Well-known ports are left out of the Location.
 */
export function redirectLocation(f: Extract<Filter, { type: "RequestRedirect" }>, r: RedirectInput): string {
  const scheme = f.scheme ?? r.scheme;
  const port = f.port ?? (f.scheme !== undefined ? (WELL_KNOWN[scheme] ?? r.listenerPort) : r.listenerPort);
  const host = f.hostname ?? r.host;
  const path = f.path ? rewritePath(r.path, f.path, r.match) : r.path;
  const shown = r.portOffset === 0 && WELL_KNOWN[scheme] === port ? "" : `:${port + r.portOffset}`;
  const hostPart = host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
  return `${scheme}://${hostPart}${shown}${path}${r.query}`;
}
