// The generated Service of a Gateway, modelled on Cilium's (`cilium-gateway-<name>`): one
// LoadBalancer (or NodePort) Service per Gateway, owned by it, with no selector because the
// datapath intercepts the traffic itself.
import { createHash } from "node:crypto";
import type { GatewayClassConfigSpec } from "../api/gatewayclassconfig.ts";
import type { Gateway, OwnerReference, Service, ServiceSpec } from "../api/objects.ts";
import { nlbAnnotations } from "./nlb.ts";

export const MANAGED_BY_LABEL = "app.kubernetes.io/managed-by";
export const MANAGED_BY_VALUE = "sluice";
export const GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name";

const SERVICE_NAME_PREFIX = "sluice-";
const MAX_LABEL_LENGTH = 63;
// 40 bits: collisions between two shortened names need the same 52-char prefix *and* a hash clash.
const HASH_LENGTH = 10;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

function shortHash(value: string): string {
  return createHash("sha256").update(value).digest("hex").slice(0, HASH_LENGTH);
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * `sluice-<gateway>` as a DNS-1035 label. Gateway names are DNS-1123 subdomains (up to 253 chars,
 * dots allowed), so anything too long or invalid is sanitised, truncated and suffixed with a hash of
 * the full original name: shortened names stay distinct and stable across restarts.
 */
export function generatedServiceName(gatewayName: string): string {
  const name = SERVICE_NAME_PREFIX + gatewayName;
  if (name.length <= MAX_LABEL_LENGTH && DNS1035_LABEL.test(name)) return name;
  const base = name
    .toLowerCase()
    .replace(/[^-a-z0-9]/g, "-")
    .slice(0, MAX_LABEL_LENGTH - 1 - HASH_LENGTH)
    .replace(/-+$/, "");
  return `${base}-${shortHash(name)}`;
}

/** A valid label value (≤63 chars, alphanumeric at both ends), shortened like generatedServiceName. */
export function labelValue(value: string): string {
  if (value.length <= MAX_LABEL_LENGTH && LABEL_VALUE.test(value)) return value;
  const base = value
    .replace(/[^-A-Za-z0-9_.]/g, "-")
    .slice(0, MAX_LABEL_LENGTH - 1 - HASH_LENGTH)
    .replace(/^[^A-Za-z0-9]+/, "")
    .replace(/[^A-Za-z0-9]+$/, "");
  return base ? `${base}-${shortHash(value)}` : shortHash(value);
}

export interface ServicePortSpec {
  port: number;
  protocol: "TCP" | "UDP";
}

type ServicePort = NonNullable<ServiceSpec["ports"]>[number];

/** One port per distinct (port, protocol), sorted by port with TCP first, named as Cilium does. */
function servicePorts(ports: readonly ServicePortSpec[]): ServicePort[] {
  const unique = new Map<string, ServicePortSpec>();
  for (const p of ports) unique.set(`${p.port}/${p.protocol}`, p);
  return [...unique.values()]
    .sort((a, b) => a.port - b.port || compareStrings(a.protocol, b.protocol))
    .map((p) => ({
      name: p.protocol === "UDP" ? `port-${p.port}-udp` : `port-${p.port}`,
      protocol: p.protocol,
      port: p.port,
      targetPort: p.port,
    }));
}

/** Merges maps left to right (later wins) and returns the keys sorted, so output is stable. */
function merge(...maps: (Readonly<Record<string, string>> | undefined)[]): Record<string, string> {
  const merged: Record<string, string> = {};
  for (const m of maps) Object.assign(merged, m);
  const sorted: Record<string, string> = {};
  for (const k of Object.keys(merged).sort(compareStrings)) sorted[k] = merged[k] ?? "";
  return sorted;
}

export function desiredService(
  gateway: Gateway,
  ports: readonly ServicePortSpec[],
  config: GatewayClassConfigSpec | undefined,
): Service {
  const gwName = gateway.metadata.name;
  const infra = gateway.spec?.infrastructure;
  const svc = config?.service;
  const nlb = config?.aws?.nlb;

  // Gateway infrastructure overrides class defaults; our own labels always win because the sinks
  // find (and garbage-collect) generated Services by them.
  const labels = merge(svc?.labels, infra?.labels, {
    [MANAGED_BY_LABEL]: MANAGED_BY_VALUE,
    [GATEWAY_NAME_LABEL]: labelValue(gwName),
  });
  const annotations = merge(nlb ? nlbAnnotations(nlb) : undefined, svc?.annotations, infra?.annotations);

  const owner: OwnerReference = {
    apiVersion: "gateway.networking.k8s.io/v1",
    kind: "Gateway",
    name: gwName,
    ...(gateway.metadata.uid ? { uid: gateway.metadata.uid } : {}),
    controller: true,
    blockOwnerDeletion: true,
  };

  const type = svc?.type ?? "LoadBalancer";
  const isLoadBalancer = type === "LoadBalancer";
  const spec: ServiceSpec = {
    type,
    ports: servicePorts(ports),
    // The API server rejects these on a NodePort Service.
    ...(isLoadBalancer && svc?.loadBalancerClass ? { loadBalancerClass: svc.loadBalancerClass } : {}),
    ...(isLoadBalancer && svc?.loadBalancerSourceRanges && svc.loadBalancerSourceRanges.length > 0
      ? { loadBalancerSourceRanges: [...svc.loadBalancerSourceRanges] }
      : {}),
    ...(svc?.externalTrafficPolicy ? { externalTrafficPolicy: svc.externalTrafficPolicy } : {}),
  };

  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: {
      name: generatedServiceName(gwName),
      ...(gateway.metadata.namespace !== undefined ? { namespace: gateway.metadata.namespace } : {}),
      labels,
      ...(Object.keys(annotations).length > 0 ? { annotations } : {}),
      ownerReferences: [owner],
    },
    spec,
  };
}
