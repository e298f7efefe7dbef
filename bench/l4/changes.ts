// Control-plane figures of the L4 benchmark: writing 10,000 backend changes through the map layer
// alone and through the agent (diff + apply, including the new Maglev tables of the services the
// backends belong to), and the Maglev table build time.
import type { GatewayDatapath, L4Service } from "../../operator/translate/output.ts";
import { buildMaglevTable, maglevHashKey, type MaglevBackend } from "../../operator/translate/maglev.ts";
import type { LbMaps, MapOp } from "../../datapath/bpf/state.ts";

/** `count` backend-upserts with ids from `firstId`; `generation` changes every address and port. */
export function backendUpserts(count: number, firstId: number, generation: number): MapOp[] {
  return Array.from({ length: count }, (_, i): MapOp => ({
    op: "backend-upsert",
    backend: { id: firstId + i, address: `10.${100 + generation}.${(i >> 8) & 255}.${i & 255}`, port: 8000 + (generation % 1000), protocol: "TCP" },
  }));
}

export type MapLayerChanges = { insertSec: number; updateSec: number; deleteSec: number };

/** Times three applies of `count` ops each on real maps: new backends, every one changed, all deleted. */
export async function mapLayerChanges(maps: LbMaps, count: number): Promise<MapLayerChanges> {
  const time = async (ops: MapOp[]): Promise<number> => {
    const t0 = performance.now();
    await maps.apply(ops);
    return (performance.now() - t0) / 1000;
  };
  const insertSec = await time(backendUpserts(count, 1, 0));
  const updateSec = await time(backendUpserts(count, 1, 1));
  const deleteSec = await time(Array.from({ length: count }, (_, i): MapOp => ({ op: "backend-delete", id: i + 1 })));
  return { insertSec, updateSec, deleteSec };
}

/**
 * A gateway with `services` TCP services of `perService` backends each, as the translator emits
 * it (backends sorted by Maglev hash key, tables built at `m`). `generation` moves every backend
 * to a new address, i.e. services × perService backend changes against the previous generation.
 */
export function agentConfig(services: number, perService: number, m: number, generation: number): GatewayDatapath[] {
  const l4: L4Service[] = [];
  for (let s = 0; s < services; s++) {
    const backends = Array.from({ length: perService }, (_, j) => {
      const n = s * perService + j;
      return { address: `10.${100 + (generation % 100)}.${(n >> 8) & 255}.${n & 255}`, port: 8080, protocol: "TCP" as const, weight: 1, state: "active" as const };
    });
    const keyed = backends.map((b) => ({ b, key: maglevHashKey(b.address, b.port, b.protocol) })).sort((x, y) => (x.key < y.key ? -1 : x.key > y.key ? 1 : 0));
    const sorted = keyed.map((k) => k.b);
    const maglev = buildMaglevTable(keyed.map((k): MaglevBackend => ({ hashKey: k.key, weight: 1 })), m);
    l4.push({
      id: `bench/gw/l${s}`,
      protocol: "TCP",
      frontends: [{ address: `10.96.${Math.floor(s / 250)}.${(s % 250) + 1}`, port: 80, protocol: "TCP" }],
      backends: sorted,
      maglev,
    });
  }
  return [{ gateway: "bench/gw", configHash: `g${generation}`, addresses: [], ports: [], l4 }];
}

type AgentResult = { ops: number; version: string; problems: string[] };
type AgentLike = {
  apply(version: string, config: readonly GatewayDatapath[]): Promise<AgentResult>;
  plan(version: string, config: readonly GatewayDatapath[]): Promise<{ ops: MapOp[]; problems: string[] }>;
};
export type AgentModule = { L4Agent: new (maps: LbMaps, opts?: { maxServices?: number; maxBackends?: number }) => AgentLike };
export type MemMapsModule = { MemoryMaps: new (opts?: { maglevSize?: number; maxBackends?: number; maxServices?: number }) => LbMaps };

/** The agent (datapath/agent/agent.ts) and its in-memory maps, or why they cannot be loaded. */
export async function loadAgent(): Promise<{ agent: AgentModule; memmaps: MemMapsModule } | string> {
  try {
    const agent = (await import(new URL("../../datapath/agent/agent.ts", import.meta.url).href)) as Partial<AgentModule>;
    const memmaps = (await import(new URL("../../datapath/agent/memmaps.ts", import.meta.url).href)) as Partial<MemMapsModule>;
    if (typeof agent.L4Agent !== "function" || typeof memmaps.MemoryMaps !== "function") return "datapath/agent/ does not export L4Agent and MemoryMaps";
    return { agent: agent as AgentModule, memmaps: memmaps as MemMapsModule };
  } catch (err) {
    return `datapath/agent/ does not load: ${(err as Error).message.split("\n")[0]}`;
  }
}

export type AgentChanges = {
  /** Programming generation 0 into empty maps. */
  initialSec: number;
  initialOps: number;
  /** plan() of generation 1: the diff alone, nothing written. */
  planSec: number;
  /** apply() of generation 1: diff and writes. */
  changeSec: number;
  changeOps: number;
  problems: string[];
};

/** Programs generation 0, then times the diff of generation 1 (every backend moved) and its apply. */
export async function agentChanges(mod: AgentModule, maps: LbMaps, services: number, perService: number, m: number, opts: { write?: boolean } = {}): Promise<AgentChanges> {
  // The translator's work (tables for both generations) is done before the clock starts.
  const gen0 = agentConfig(services, perService, m, 0);
  const gen1 = agentConfig(services, perService, m, 1);
  const agent = new mod.L4Agent(maps, { maxServices: services + 16, maxBackends: 2 * services * perService + 16 });
  let t0 = performance.now();
  const a = await agent.apply("0", gen0);
  const initialSec = (performance.now() - t0) / 1000;
  t0 = performance.now();
  const planned = await agent.plan("1", gen1);
  const planSec = (performance.now() - t0) / 1000;
  let changeSec = Number.NaN;
  let changeOps = planned.ops.length;
  if (opts.write !== false) {
    t0 = performance.now();
    const b = await agent.apply("1", gen1);
    changeSec = (performance.now() - t0) / 1000;
    changeOps = b.ops;
  }
  return { initialSec, initialOps: a.ops, planSec, changeSec, changeOps, problems: [...a.problems, ...planned.problems] };
}

/** Median milliseconds of `runs` builds of a table of size m over n equally weighted backends. */
export function maglevBuildMs(m: number, n: number, runs: number): number {
  const backends = Array.from({ length: n }, (_, i): MaglevBackend => ({ hashKey: maglevHashKey(`10.1.${(i >> 8) & 255}.${i & 255}`, 8080, "TCP"), weight: 1 }));
  buildMaglevTable(backends, m); // warm-up (JIT)
  const times: number[] = [];
  for (let r = 0; r < runs; r++) {
    const t0 = performance.now();
    buildMaglevTable(backends, m);
    times.push(performance.now() - t0);
  }
  times.sort((x, y) => x - y);
  return times[runs >> 1] ?? Number.NaN;
}
