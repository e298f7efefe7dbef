// Ordering rules: route precedence within a host, and "oldest first, then by name" tie-breaks.
import { keyOf, type K8sObject } from "../api/objects.ts";
import type { RouteEntry } from "./output.ts";

/** Oldest first (by creationTimestamp; missing timestamps sort last), then `namespace/name`. */
export function byAge(a: K8sObject, b: K8sObject): number {
  const ta = a.metadata.creationTimestamp ?? "\uffff";
  const tb = b.metadata.creationTimestamp ?? "\uffff";
  if (ta !== tb) return ta < tb ? -1 : 1;
  const ka = keyOf(a);
  const kb = keyOf(b);
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

const PATH_RANK = { Exact: 0, RegularExpression: 1, PathPrefix: 2 } as const;

/**
 * The Gateway API's match precedence: Exact path, then (regex, then) the longest prefix, then a
 * method match, then more header matches, then more query matches; then the oldest route, then
 * the route name, then rule and match order within the route.
 */
export function compareEntries(a: RouteEntry, b: RouteEntry, age: (e: RouteEntry) => number): number {
  const pa = a.match.path;
  const pb = b.match.path;
  return (
    PATH_RANK[pa.type] - PATH_RANK[pb.type] ||
    pb.value.length - pa.value.length ||
    Number(b.match.method !== undefined) - Number(a.match.method !== undefined) ||
    b.match.headers.length - a.match.headers.length ||
    b.match.queryParams.length - a.match.queryParams.length ||
    age(a) - age(b) ||
    a.ruleIndex - b.ruleIndex ||
    a.matchIndex - b.matchIndex
  );
}
