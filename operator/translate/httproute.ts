// HTTPRoute → hostless route entries: one per rule match, with filters, backends, timeouts and
// retries. Invalid rules are dropped (PartiallyInvalid); a rule with no usable backend answers 500.
import type { HTTPRoute } from "../api/objects.ts";
import type { RouteContext } from "./cluster.ts";
import { emptyCompiled, type CompiledRoute } from "./compiled.ts";
import { parseDuration } from "./duration.ts";
import { compileBackends, compileFilters, directResponse } from "./filters.ts";
import type { RouteEntry, RouteMatch, StringMatch } from "./output.ts";

type Rule = NonNullable<NonNullable<HTTPRoute["spec"]>["rules"]>[number];
type Match = NonNullable<Rule["matches"]>[number];

export function compileHTTPRoute(route: HTTPRoute, schemaErrors: string[], ctx: RouteContext): CompiledRoute {
  const out = emptyCompiled("HTTPRoute", route, schemaErrors);
  if (schemaErrors.length) return out;
  const from = { kind: "HTTPRoute" as const, namespace: route.metadata.namespace ?? "default" };
  const rules: Rule[] = route.spec?.rules?.length ? route.spec.rules : [{}];
  out.ruleCount = rules.length;

  rules.forEach((rule, ruleIndex) => {
    const matches: Match[] = rule.matches?.length ? rule.matches : [{}];
    const compiledMatches: RouteMatch[] = [];
    for (const m of matches) {
      const cm = compileMatch(m);
      if (typeof cm === "string") {
        out.invalidRules.push(`rule ${ruleIndex}: ${cm}`);
        return;
      }
      compiledMatches.push(cm);
    }
    const prefixOnly = compiledMatches.every((m) => m.path.type === "PathPrefix");
    const filters = compileFilters(rule.filters, from, ctx, prefixOnly);
    if (filters.invalid) {
      out.invalidRules.push(`rule ${ruleIndex}: ${filters.invalid}`);
      return;
    }
    if (filters.refFailure) out.refFailure ??= filters.refFailure;

    const timeouts = compileTimeouts(rule.timeouts);
    if (typeof timeouts === "string") {
      out.invalidRules.push(`rule ${ruleIndex}: ${timeouts}`);
      return;
    }
    const retry = compileRetry(rule.retry);
    if (typeof retry === "string") {
      out.invalidRules.push(`rule ${ruleIndex}: ${retry}`);
      return;
    }

    const backends = compileBackends(rule.backendRefs, from, "http", ctx, prefixOnly, out, ruleIndex);
    if (!backends) return;
    const direct = directResponse(filters, backends, filters.filters.some((f) => f.type === "RequestRedirect"));
    compiledMatches.forEach((match, matchIndex) => {
      const entry: RouteEntry = {
        id: `HTTPRoute/${out.ref.namespace}/${out.ref.name}/${ruleIndex}/${matchIndex}`,
        route: out.ref, ruleIndex, matchIndex, match, grpc: false, filters: filters.filters, backends,
      };
      if (rule.name) entry.ruleName = rule.name;
      if (direct) entry.direct = direct;
      if (timeouts) entry.timeouts = timeouts;
      if (retry) entry.retry = retry;
      out.entries.push(entry);
    });
  });
  return out;
}

function compileMatch(m: Match): RouteMatch | string {
  const type = m.path?.type ?? "PathPrefix";
  let value = m.path?.value ?? "/";
  if (type === "RegularExpression") {
    const err = regexError(value);
    if (err) return `invalid path regular expression ${JSON.stringify(value)}: ${err}`;
  } else if (!value.startsWith("/")) return `path ${JSON.stringify(value)} must start with /`;
  // A prefix matches whole path segments, so a trailing slash adds nothing.
  if (type === "PathPrefix" && value.length > 1 && value.endsWith("/")) value = value.replace(/\/+$/, "") || "/";
  const headers = stringMatches(m.headers, true);
  if (typeof headers === "string") return headers;
  const queryParams = stringMatches(m.queryParams, false);
  if (typeof queryParams === "string") return queryParams;
  const out: RouteMatch = { path: { type, value }, headers, queryParams };
  if (m.method) out.method = m.method;
  return out;
}

export function regexError(re: string): string | undefined {
  try {
    new RegExp(re, "u");
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

/** Header names compare case-insensitively, query names exactly; the first match of a name wins. */
export function stringMatches(list: { type?: string; name: string; value: string }[] | undefined, foldCase: boolean): StringMatch[] | string {
  const out: StringMatch[] = [];
  const seen = new Set<string>();
  for (const h of list ?? []) {
    const name = foldCase ? h.name.toLowerCase() : h.name;
    if (seen.has(name)) continue;
    seen.add(name);
    const type = h.type === "RegularExpression" ? "RegularExpression" : "Exact";
    if (type === "RegularExpression") {
      const err = regexError(h.value);
      if (err) return `invalid regular expression for ${h.name}: ${err}`;
    }
    out.push({ type, name, value: h.value });
  }
  return out;
}

function compileTimeouts(t: Rule["timeouts"]): RouteEntry["timeouts"] | string | undefined {
  if (!t) return undefined;
  const out: NonNullable<RouteEntry["timeouts"]> = {};
  if (t.request !== undefined) {
    const ms = parseDuration(t.request);
    if (ms === undefined) return `timeouts.request ${t.request} is not a duration`;
    out.requestMs = ms;
  }
  if (t.backendRequest !== undefined) {
    const ms = parseDuration(t.backendRequest);
    if (ms === undefined) return `timeouts.backendRequest ${t.backendRequest} is not a duration`;
    out.backendRequestMs = ms;
  }
  if (out.requestMs && out.backendRequestMs && out.backendRequestMs > out.requestMs) {
    return "timeouts.backendRequest must not be longer than timeouts.request";
  }
  return out;
}

function compileRetry(r: Rule["retry"]): RouteEntry["retry"] | string | undefined {
  if (!r) return undefined;
  const out: NonNullable<RouteEntry["retry"]> = { attempts: r.attempts ?? 1, codes: [...(r.codes ?? [])].sort((a, b) => a - b) };
  if (r.backoff !== undefined) {
    const ms = parseDuration(r.backoff);
    if (ms === undefined) return `retry.backoff ${r.backoff} is not a duration`;
    out.backoffMs = ms;
  }
  return out;
}
