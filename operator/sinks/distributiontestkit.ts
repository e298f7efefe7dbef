// Test support for the datapath distribution: synthetic per-Gateway datapaths with honest
// config hashes (any content change changes the hash, as the translator's does), a quiet logger,
// and an agent that records what it applied.
import { createHash } from "node:crypto";
import { pino, type Logger } from "pino";
import type { CaBundle, Cluster, DatapathConfig, GatewayDatapath, L4Service, RouteEntry, TlsCertificate } from "../translate/output.ts";
import type { DatapathUpdate } from "../../datapath/agent/subscribe.ts";

export function quietLog(): Logger {
  return pino({ level: process.env.DISTRIBUTION_LOG ?? "silent" });
}

export interface GatewaySpec {
  name: string;
  /** Changes the content (and so the hash) without changing the shape. */
  tag?: string;
  routes?: number;
  /** Certificate material of this Gateway's HTTPS listener (defaults to a small PEM-like text). */
  cert?: string;
  ca?: string;
  maglev?: Uint32Array;
}

function route(gw: string, i: number, cluster: string): RouteEntry {
  return {
    id: `HTTPRoute/${gw}/r${i}/0/0`,
    route: { kind: "HTTPRoute", namespace: gw.split("/")[0] as string, name: `r${i}` },
    ruleIndex: 0,
    matchIndex: 0,
    match: { path: { type: "PathPrefix", value: `/app-${i}/` }, headers: [{ type: "Exact", name: "x-route", value: String(i) }], queryParams: [] },
    grpc: false,
    filters: [],
    backends: [{ weight: 1, cluster, filters: [] }],
  };
}

/** A Gateway with an HTTPS listener (certificate, client CA), `routes` routes to two clusters, and one TCP service with a Maglev table. */
export function gatewayOf(s: GatewaySpec): { gateway: GatewayDatapath; clusters: Cluster[]; certificates: TlsCertificate[]; caBundles: CaBundle[] } {
  const [ns] = s.name.split("/") as [string];
  const tag = s.tag ?? "v1";
  const clusterIds = [`${ns}/svc-a:8080`, `${ns}/svc-b:8080`];
  const clusters: Cluster[] = clusterIds.map((id, i) => ({
    id,
    service: { namespace: ns, name: `svc-${"ab"[i]}`, port: 8080 },
    protocol: "http1",
    endpoints: [{ address: `10.0.${i}.1`, port: 8080, ready: true, target: `pod-${tag}` }],
  }));
  const certificates: TlsCertificate[] = [{ id: `${ns}/tls-${tag}`, cert: s.cert ?? `-----BEGIN CERTIFICATE-----\n${tag}\n-----END CERTIFICATE-----\n`, key: "k" }];
  const caBundles: CaBundle[] = [{ id: `${ns}/ca`, pem: s.ca ?? "-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n" }];
  const routes = Array.from({ length: s.routes ?? 2 }, (_, i) => route(s.name, i, clusterIds[i % 2] as string));
  const l4: L4Service[] = [{
    id: `${s.name}/tcp`,
    protocol: "TCP",
    frontends: [{ address: "192.0.2.10", port: 5432, protocol: "TCP" }],
    backends: [{ address: "10.0.9.1", port: 5432, protocol: "TCP", weight: 65535, state: "active" }],
    maglev: s.maglev ?? new Uint32Array(251),
  }];
  const gateway: GatewayDatapath = {
    gateway: s.name,
    configHash: "",
    addresses: ["192.0.2.10"],
    ports: [{
      port: 443,
      listeners: [{
        id: `${s.name}/https`,
        name: "https",
        protocol: "HTTPS",
        tls: { mode: "Terminate", certificates: [certificates[0]?.id as string], clientValidation: { caCertificates: [`${ns}/ca`], mode: "AllowValidOnly" } },
        virtualHosts: [{ hostname: `${tag}.example.com`, routes }],
        tlsRoutes: [],
      }],
    }],
    l4,
  };
  const hash = createHash("sha256").update(JSON.stringify({ gateway, clusters, certificates, caBundles }, (_k, v: unknown) => (v instanceof Uint32Array ? Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("hex") : v)));
  gateway.configHash = hash.digest("hex");
  return { gateway, clusters, certificates, caBundles };
}

/**
 * The DatapathConfig of several Gateways, merged as the translator does. Gateways in one
 * namespace share cluster and CA ids, so give each Gateway its own namespace unless sharing is
 * what a test wants.
 */
export function configOf(specs: GatewaySpec[]): DatapathConfig {
  const parts = specs.map(gatewayOf);
  const byId = <T extends { id: string }>(list: T[]): T[] => [...new Map(list.map((x) => [x.id, x])).values()].sort((a, b) => (a.id < b.id ? -1 : 1));
  return {
    gateways: parts.map((p) => p.gateway).sort((a, b) => (a.gateway < b.gateway ? -1 : 1)),
    clusters: byId(parts.flatMap((p) => p.clusters)),
    certificates: byId(parts.flatMap((p) => p.certificates)),
    caBundles: byId(parts.flatMap((p) => p.caBundles)),
  };
}

export function hashesOf(config: DatapathConfig): Map<string, string> {
  return new Map(config.gateways.map((g) => [g.gateway, g.configHash]));
}

/** An `apply` that records every update; `gate` can hold it (await) or reject it. */
export class RecordingAgent {
  updates: DatapathUpdate[] = [];
  gate: ((u: DatapathUpdate) => Promise<void> | void) | undefined;
  readonly apply = async (u: DatapathUpdate): Promise<void> => {
    if (this.gate) await this.gate(u);
    this.updates.push(u);
  };
  last(): DatapathUpdate | undefined {
    return this.updates[this.updates.length - 1];
  }
}
