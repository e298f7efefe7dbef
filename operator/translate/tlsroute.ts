// TLSRoute → weighted backends reached by SNI (passthrough) or after termination.
import type { TLSRoute } from "../api/objects.ts";
import { backendFor, type RouteContext } from "./cluster.ts";
import { emptyCompiled, type CompiledRoute } from "./compiled.ts";

export function compileTLSRoute(route: TLSRoute, schemaErrors: string[], ctx: RouteContext): CompiledRoute {
  const out = emptyCompiled("TLSRoute", route, schemaErrors);
  if (schemaErrors.length) return out;
  const from = { kind: "TLSRoute" as const, namespace: route.metadata.namespace ?? "default" };
  const rules = route.spec?.rules ?? [];
  out.ruleCount = rules.length;
  for (const rule of rules) {
    for (const br of rule.backendRefs ?? []) {
      const { backend, failure } = backendFor(br, from, "tcp", ctx);
      if (failure) out.refFailure ??= failure;
      out.backends.push(backend);
    }
  }
  return out;
}
