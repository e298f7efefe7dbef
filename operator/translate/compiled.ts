// A route compiled independently of the Gateway it attaches to.
import type { RouteKind } from "../api/kinds.ts";
import type { K8sObject } from "../api/objects.ts";
import type { RefFailure } from "./cluster.ts";
import type { ClusterEndpoint, RouteEntry, RouteRef, WeightedBackend } from "./output.ts";

export interface L4BackendRef {
  weight: number;
  endpoints: ClusterEndpoint[];
}

export interface CompiledRoute {
  kind: RouteKind;
  route: K8sObject;
  ref: RouteRef;
  /** Schema errors: the whole route is rejected with them. */
  schemaErrors: string[];
  /** HTTPRoute/GRPCRoute: entries without hosts, in rule/match order. */
  entries: RouteEntry[];
  /** TLSRoute: weighted backends across all rules. */
  backends: WeightedBackend[];
  /** TCPRoute/UDPRoute: endpoints per backendRef. */
  l4: L4BackendRef[];
  /** The first unresolved reference (ResolvedRefs=False), if any. */
  refFailure?: RefFailure;
  /** Rules dropped as invalid, with why; all rules invalid means the route is not accepted. */
  invalidRules: string[];
  ruleCount: number;
}

export function routeRef(kind: RouteKind, route: K8sObject): RouteRef {
  return { kind, namespace: route.metadata.namespace ?? "default", name: route.metadata.name };
}

export function emptyCompiled(kind: RouteKind, route: K8sObject, schemaErrors: string[]): CompiledRoute {
  return { kind, route, ref: routeRef(kind, route), schemaErrors, entries: [], backends: [], l4: [], invalidRules: [], ruleCount: 0 };
}
