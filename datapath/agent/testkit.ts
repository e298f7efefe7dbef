// Test helpers for the L4 agent: Gateway/TCPRoute/UDPRoute manifests over real endpoints, and the
// consistency rules every prefix of an op list must keep.
import type { LbState, MapOp } from "../bpf/state.ts";
import { snapshotOf } from "../../operator/store/snapshot.ts";
import { translate } from "../../operator/translate/translate.ts";
import type { DatapathConfig, L4Service } from "../../operator/translate/output.ts";
import { buildMaglevTable, maglevHashKey } from "../../operator/translate/maglev.ts";
import { GATEWAY_CLASS_YAML, objectsOf } from "../proxy/testkit.ts";
import { applyOps, type AgentState } from "./diff.ts";
import { frontendKeyOf } from "./desired.ts";

export interface L4BackendRef {
  /** Service name. */
  name: string;
  weight?: number;
  endpoints: { address: string; port: number; ready?: boolean }[];
}

export interface L4ListenerSpec {
  port: number;
  backends: L4BackendRef[];
}

/** A Gateway `gw` with listeners `tcp` and/or `udp`, a TCPRoute and/or UDPRoute, and their Services. */
export function l4Yaml(opts: { namespace?: string; gateway?: string; tcp?: L4ListenerSpec; udp?: L4ListenerSpec }): string {
  const ns = opts.namespace ?? "default";
  const gw = opts.gateway ?? "gw";
  const listeners: string[] = [];
  const docs: string[] = [];
  for (const proto of ["TCP", "UDP"] as const) {
    const spec = proto === "TCP" ? opts.tcp : opts.udp;
    if (!spec) continue;
    const lname = proto.toLowerCase();
    const kind = proto === "TCP" ? "TCPRoute" : "UDPRoute";
    listeners.push(`  - {name: ${lname}, protocol: ${proto}, port: ${spec.port}, allowedRoutes: {kinds: [{kind: ${kind}}]}}`);
    docs.push(`apiVersion: gateway.networking.k8s.io/v1alpha2
kind: ${kind}
metadata: {name: ${gw}-${lname}, namespace: ${ns}}
spec:
  parentRefs: [{name: ${gw}, sectionName: ${lname}}]
  rules:
  - backendRefs: [${spec.backends.map((b) => `{name: ${b.name}, port: 7000${b.weight === undefined ? "" : `, weight: ${b.weight}`}}`).join(", ")}]
`);
    for (const b of spec.backends) {
      docs.push(`apiVersion: v1
kind: Service
metadata: {name: ${b.name}, namespace: ${ns}}
spec:
  ports: [{name: p, port: 7000, protocol: ${proto}}]
`);
      const byPort = new Map<number, L4BackendRef["endpoints"]>();
      for (const e of b.endpoints) byPort.set(e.port, [...(byPort.get(e.port) ?? []), e]);
      let i = 0;
      for (const [port, eps] of byPort) {
        docs.push(`apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ${b.name}-${i++}, namespace: ${ns}, labels: {kubernetes.io/service-name: ${b.name}}}
addressType: IPv4
ports: [{name: p, port: ${port}, protocol: ${proto}}]
endpoints:
${eps.map((e) => `  - {addresses: [${e.address}], conditions: {ready: ${e.ready ?? true}}}`).join("\n")}
`);
      }
    }
  }
  return [
    GATEWAY_CLASS_YAML,
    `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: ${gw}, namespace: ${ns}}
spec:
  gatewayClassName: sluice
  listeners:
${listeners.join("\n")}
`,
    ...docs,
  ].join("---\n");
}

/** The translator's datapath config for manifests, as `sluice run` would compute it. */
export function datapathOf(yaml: string, addresses: string[], maglevTableSize = 251): DatapathConfig {
  return translate(snapshotOf(objectsOf(yaml)), { addressing: { mode: "static", addresses }, maglevTableSize, assumeAcknowledged: true }).datapath;
}

/** Why `state` would make the datapath follow a dangling reference, or undefined. */
export function inconsistency(state: LbState): string | undefined {
  const backends = new Set(state.backends.map((b) => b.id));
  for (const f of state.frontends) if (!state.maglev.has(f.serviceId)) return `frontend ${frontendKeyOf(f)} → service ${f.serviceId} without a table`;
  for (const [sid, t] of state.maglev) for (const id of new Set(t)) if (!backends.has(id)) return `table of service ${sid} → unknown backend ${id}`;
  return undefined;
}

/** Checks the state after every prefix of `ops`; answers the first problem, with the op index. */
export function firstInconsistentPrefix(start: AgentState, ops: readonly MapOp[]): string | undefined {
  let s = start;
  for (const [i, o] of ops.entries()) {
    s = applyOps(s, [o]);
    const p = inconsistency(s);
    if (p) return `after op ${i} (${o.op}): ${p}`;
  }
  return undefined;
}

/** Slots per backend id in a table. */
export function slotsPerBackend(table: Uint32Array): Map<number, number> {
  const out = new Map<number, number>();
  for (const id of table) out.set(id, (out.get(id) ?? 0) + 1);
  return out;
}

/** A small deterministic PRNG (mulberry32), so randomised tests replay. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An L4Service as the translator would build it (Maglev table included), for unit tests. */
export function l4Service(
  id: string, protocol: "TCP" | "UDP", addresses: string[], port: number,
  backends: { address: string; port: number; weight: number; terminating?: boolean }[], m = 251,
): L4Service {
  const bs = backends.map((b) => ({ address: b.address, port: b.port, protocol, weight: b.weight, state: b.terminating ? ("terminating" as const) : ("active" as const) }));
  return {
    id,
    protocol,
    frontends: addresses.map((address) => ({ address, port, protocol })),
    backends: bs,
    maglev: buildMaglevTable(bs.map((b) => ({ hashKey: maglevHashKey(b.address, b.port, protocol), weight: b.state === "active" ? b.weight : 0 })), m),
  };
}
