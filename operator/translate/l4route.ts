// TCPRoute and UDPRoute → endpoints per backendRef, for the eBPF datapath.
import type { TCPRoute, UDPRoute } from "../api/objects.ts";
import { Reason } from "./conditions.ts";
import { endpointsOf, resolveServiceRef } from "./backend.ts";
import type { RouteContext } from "./cluster.ts";
import { emptyCompiled, type CompiledRoute } from "./compiled.ts";

export function compileL4Route(kind: "TCPRoute" | "UDPRoute", route: TCPRoute | UDPRoute, schemaErrors: string[], ctx: RouteContext): CompiledRoute {
  const out = emptyCompiled(kind, route, schemaErrors);
  if (schemaErrors.length) return out;
  const from = { kind, namespace: route.metadata.namespace ?? "default" };
  const rules = route.spec?.rules ?? [];
  out.ruleCount = rules.length;
  const wantProtocol = kind === "UDPRoute" ? "UDP" : "TCP";
  for (const rule of rules) {
    for (const br of rule.backendRefs ?? []) {
      const weight = typeof br.weight === "number" ? br.weight : 1;
      const r = resolveServiceRef(br, from, ctx.world, ctx.deps);
      if (!r.ok) {
        out.refFailure ??= { reason: r.reason, message: r.message };
        out.l4.push({ weight, endpoints: [] });
        continue;
      }
      if ((r.port.protocol ?? "TCP") !== wantProtocol) {
        out.refFailure ??= { reason: Reason.UnsupportedProtocol, message: `Service ${r.key} port ${r.port.port} is ${r.port.protocol ?? "TCP"}, not ${wantProtocol}` };
        out.l4.push({ weight, endpoints: [] });
        continue;
      }
      out.l4.push({ weight, endpoints: endpointsOf(r, ctx.world, ctx.deps) });
    }
  }
  return out;
}
