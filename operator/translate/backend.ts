// backendRef resolution: kind, ReferenceGrant, Service and port, then endpoints from the
// Service's EndpointSlices (never its ClusterIP or selector), and the upstream protocol.
import { isIP } from "node:net";
import { GATEWAY_GROUP, type RouteKind } from "../api/kinds.ts";
import { objectKey, type Service } from "../api/objects.ts";
import { Reason } from "./conditions.ts";
import type { ClusterEndpoint, ClusterProtocol } from "./output.ts";
import type { Deps, World } from "./world.ts";

export interface BackendRefLike {
  group?: string;
  kind?: string;
  name: string;
  namespace?: string;
  port?: number;
}

type ServicePort = NonNullable<NonNullable<Service["spec"]>["ports"]>[number];

export type Resolved =
  | { ok: true; namespace: string; service: Service; port: ServicePort; key: string }
  | { ok: false; reason: string; message: string };

export function resolveServiceRef(ref: BackendRefLike, from: { kind: RouteKind; namespace: string }, world: World, deps: Deps): Resolved {
  const group = ref.group ?? "";
  const kind = ref.kind ?? "Service";
  const ns = ref.namespace ?? from.namespace;
  const key = objectKey(ns, ref.name);
  if (group !== "" || kind !== "Service") {
    return { ok: false, reason: Reason.InvalidKind, message: `backendRef ${group ? group + "/" : ""}${kind} ${key} is not a Service` };
  }
  if (ns !== from.namespace) {
    deps.recordCollection("ReferenceGrant", world.snapshot.objects.ReferenceGrant);
    if (!world.grants.allows({ group: GATEWAY_GROUP, kind: from.kind, namespace: from.namespace }, { group: "", kind: "Service", namespace: ns, name: ref.name })) {
      return { ok: false, reason: Reason.RefNotPermitted, message: `Service ${key} is in another namespace and no ReferenceGrant allows it` };
    }
  }
  const svc = world.get(deps, "Service", key);
  if (!svc) return { ok: false, reason: Reason.BackendNotFound, message: `Service ${key} does not exist` };
  if (ref.port === undefined) return { ok: false, reason: Reason.BackendNotFound, message: `backendRef to Service ${key} must set a port` };
  const port = (svc.spec?.ports ?? []).find((p) => p.port === ref.port);
  if (!port) return { ok: false, reason: Reason.BackendNotFound, message: `Service ${key} has no port ${ref.port}` };
  return { ok: true, namespace: ns, service: svc, port, key };
}

/**
 * Endpoints for a Service port: addresses of its EndpointSlices whose port has the same name.
 * Ready endpoints take traffic; serving-but-terminating ones are kept (ready: false) so
 * established connections can drain.
 */
export function endpointsOf(r: Extract<Resolved, { ok: true }>, world: World, deps: Deps): ClusterEndpoint[] {
  const portName = r.port.name ?? "";
  const protocol = r.port.protocol ?? "TCP";
  const out = new Map<string, ClusterEndpoint>();
  for (const slice of world.slices(deps, r.key)) {
    if (slice.addressType === "FQDN") continue;
    const sp = (slice.ports ?? []).find((p) => (p.name ?? "") === portName && (p.protocol ?? "TCP") === protocol);
    // The API server rejects these; files may still hold them.
    if (!sp || !Number.isInteger(sp.port) || (sp.port as number) < 1 || (sp.port as number) > 65535) continue;
    const family = slice.addressType === "IPv6" ? 6 : 4;
    for (const ep of slice.endpoints ?? []) {
      const c = ep.conditions ?? {};
      const ready = c.ready !== false;
      if (!ready && !(c.serving === true && c.terminating === true)) continue;
      for (const address of ep.addresses ?? []) {
        if (isIP(address) !== family) continue;
        const id = `${address}:${sp.port}`;
        const prev = out.get(id);
        if (prev && prev.ready) continue;
        const e: ClusterEndpoint = { address, port: sp.port as number, ready };
        if (ep.zone) e.zone = ep.zone;
        if (ep.targetRef?.name) e.target = ep.targetRef.name;
        out.set(id, e);
      }
    }
  }
  return [...out.values()].sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : a.port - b.port));
}

/** Upstream protocol for an HTTPRoute backend from the Service port's appProtocol. */
export function httpProtocolOf(appProtocol: string | undefined): ClusterProtocol | undefined {
  // IANA service names are case-insensitive (Services in the wild say HTTPS, https, HTTP2...).
  switch ((appProtocol ?? "").toLowerCase()) {
    case "": case "http": case "https": case "kubernetes.io/http": return "http1";
    case "kubernetes.io/h2c": case "h2c": case "grpc": return "h2c";
    case "kubernetes.io/ws": case "kubernetes.io/wss": return "websocket";
    default: return undefined;
  }
}
