// Turns a resolved Service port into a backend cluster (endpoints + upstream protocol + TLS),
// shared by every route and Gateway that uses the same combination.
import { Reason } from "./conditions.ts";
import { endpointsOf, httpProtocolOf, resolveServiceRef, type BackendRefLike } from "./backend.ts";
import type { BackendTLSPolicies } from "./backendtlspolicy.ts";
import type { Cluster, ClusterProtocol, WeightedBackend, Filter } from "./output.ts";
import type { RouteKind } from "../api/kinds.ts";
import type { Deps, World } from "./world.ts";

export interface RouteContext {
  world: World;
  deps: Deps;
  policies: BackendTLSPolicies;
  /** The Gateway's backend client certificate (`namespace/name`), when it has one. */
  clientCertificate?: string;
  clusters: Map<string, Cluster>;
  policiesUsed: Set<string>;
}

export interface RefFailure { reason: string; message: string }

export type Purpose = "http" | "grpc" | "tcp";

/** Resolves a backendRef into a weighted backend; a failure keeps its weight and answers 500. */
export function backendFor(
  ref: BackendRefLike & { weight?: number },
  from: { kind: RouteKind; namespace: string },
  purpose: Purpose,
  ctx: RouteContext,
  filters: Filter[] = [],
): { backend: WeightedBackend; failure?: RefFailure } {
  const weight = typeof ref.weight === "number" ? ref.weight : 1;
  const r = resolveServiceRef(ref, from, ctx.world, ctx.deps);
  if (!r.ok) return { backend: { weight, invalid: r.message, filters }, failure: { reason: r.reason, message: r.message } };

  // The BackendTLSPolicy alone decides whether the hop is TLS, whatever the appProtocol says.
  let policy: ReturnType<BackendTLSPolicies["forPort"]>;
  if (purpose !== "tcp") {
    ctx.deps.recordCollection("BackendTLSPolicy", ctx.world.snapshot.objects.BackendTLSPolicy);
    ctx.deps.recordCollection("ConfigMap", ctx.world.snapshot.objects.ConfigMap);
    for (const p of ctx.policies.allForPort(r.key, r.port.name)) ctx.policiesUsed.add(p.key);
    policy = ctx.policies.forPort(r.key, r.port.name);
  }

  let protocol: ClusterProtocol | undefined;
  if (purpose === "grpc") protocol = "h2c";
  else if (purpose === "tcp") protocol = "tcp";
  else protocol = httpProtocolOf(r.port.appProtocol) ?? (policy ? "http1" : undefined);
  if (!protocol) {
    const message = `Service ${r.key} port ${r.port.port} has appProtocol ${r.port.appProtocol}, which HTTPRoute backends cannot speak`;
    return { backend: { weight, invalid: message, filters }, failure: { reason: Reason.UnsupportedProtocol, message } };
  }

  const cluster: Cluster = {
    id: "",
    service: { namespace: r.namespace, name: r.service.metadata.name, port: r.port.port },
    protocol,
    endpoints: [],
  };
  if (policy) {
    if (!policy.tls) return { backend: { weight, invalid: `BackendTLSPolicy ${policy.key}: ${policy.problem ?? "not usable"}`, filters } };
    cluster.tls = ctx.clientCertificate ? { ...policy.tls, clientCertificate: ctx.clientCertificate } : { ...policy.tls };
    if (protocol === "h2c") cluster.protocol = "h2";
  }
  if (r.service.spec?.type === "ExternalName" && r.service.spec.externalName) cluster.externalName = r.service.spec.externalName;
  else cluster.endpoints = endpointsOf(r, ctx.world, ctx.deps);
  cluster.id = `${r.key}:${r.port.port}` + (cluster.protocol !== "http1" ? `/${cluster.protocol}` : "") +
    (cluster.tls ? `/tls${cluster.tls.clientCertificate ? `+${cluster.tls.clientCertificate}` : ""}` : "");
  if (!ctx.clusters.has(cluster.id)) ctx.clusters.set(cluster.id, cluster);
  return { backend: { weight, cluster: cluster.id, filters } };
}
