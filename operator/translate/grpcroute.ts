// GRPCRoute → route entries. A gRPC method is the HTTP/2 path `/<service>/<method>`, so method
// matches become path matches: both names → Exact, service only → a path prefix, method only or
// regular expressions → a regular expression. Backends are always reached over HTTP/2.
import type { GRPCRoute } from "../api/objects.ts";
import type { RouteContext } from "./cluster.ts";
import { emptyCompiled, type CompiledRoute } from "./compiled.ts";
import { compileBackends, compileFilters, directResponse } from "./filters.ts";
import { regexError, stringMatches } from "./httproute.ts";
import type { RouteEntry, RouteMatch } from "./output.ts";

type Rule = NonNullable<NonNullable<GRPCRoute["spec"]>["rules"]>[number];
type Match = NonNullable<Rule["matches"]>[number];

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

export function grpcPathMatch(m: Match["method"]): RouteMatch["path"] | string {
  if (!m || (!m.service && !m.method)) return { type: "PathPrefix", value: "/" };
  if ((m.type ?? "Exact") === "Exact") {
    if (m.service && m.method) return { type: "Exact", value: `/${m.service}/${m.method}` };
    if (m.service) return { type: "PathPrefix", value: `/${m.service}` };
    return { type: "RegularExpression", value: `/[^/]+/${escapeRe(m.method as string)}` };
  }
  for (const re of [m.service, m.method]) {
    if (re !== undefined) {
      const err = regexError(re);
      if (err) return `invalid regular expression ${JSON.stringify(re)}: ${err}`;
    }
  }
  return { type: "RegularExpression", value: `/(?:${m.service ?? "[^/]+"})/(?:${m.method ?? "[^/]+"})` };
}

export function compileGRPCRoute(route: GRPCRoute, schemaErrors: string[], ctx: RouteContext): CompiledRoute {
  const out = emptyCompiled("GRPCRoute", route, schemaErrors);
  if (schemaErrors.length) return out;
  const from = { kind: "GRPCRoute" as const, namespace: route.metadata.namespace ?? "default" };
  const rules: Rule[] = route.spec?.rules?.length ? route.spec.rules : [{}];
  out.ruleCount = rules.length;

  rules.forEach((rule, ruleIndex) => {
    const matches: Match[] = rule.matches?.length ? rule.matches : [{}];
    const compiled: RouteMatch[] = [];
    for (const m of matches) {
      const path = grpcPathMatch(m.method);
      if (typeof path === "string") {
        out.invalidRules.push(`rule ${ruleIndex}: ${path}`);
        return;
      }
      const headers = stringMatches(m.headers, true);
      if (typeof headers === "string") {
        out.invalidRules.push(`rule ${ruleIndex}: ${headers}`);
        return;
      }
      compiled.push({ path, headers, queryParams: [] });
    }
    const filters = compileFilters(rule.filters, from, ctx, false);
    if (filters.invalid) {
      out.invalidRules.push(`rule ${ruleIndex}: ${filters.invalid}`);
      return;
    }
    if (filters.refFailure) out.refFailure ??= filters.refFailure;
    const backends = compileBackends(rule.backendRefs, from, "grpc", ctx, false, out, ruleIndex);
    if (!backends) return;
    const direct = directResponse(filters, backends, false);
    compiled.forEach((match, matchIndex) => {
      const entry: RouteEntry = {
        id: `GRPCRoute/${out.ref.namespace}/${out.ref.name}/${ruleIndex}/${matchIndex}`,
        route: out.ref, ruleIndex, matchIndex, match, grpc: true, filters: filters.filters, backends,
      };
      if (rule.name) entry.ruleName = rule.name;
      if (direct) entry.direct = direct;
      out.entries.push(entry);
    });
  });
  return out;
}
