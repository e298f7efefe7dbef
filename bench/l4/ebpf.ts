// Sluice's eBPF datapath for the L4 benchmark: the N services written through the map layer
// (datapath/bpf/datapath.ts) as the agent would write them (backends, then each service's Maglev
// table, then its frontends and VIP), and the tc programs attached in the node namespace.
//
// datapath.ts is loaded at run time, not imported statically: the benchmark must still run (and
// say why the eBPF rows are missing) on a checkout or machine where the datapath cannot load.
import { mkdir, rm } from "node:fs/promises";
import { buildMaglevTable, maglevHashKey } from "../../operator/translate/maglev.ts";
import type { BackendEntry, LbMaps, MapOp } from "../../datapath/bpf/state.ts";
import type { Service } from "./services.ts";
import { randomTag } from "./sh.ts";

export type DatapathOptions = { pinDir: string; maglevSize: number; maxServices: number; maxBackends: number };

/** The part of datapath.ts's Datapath the benchmark uses. */
export interface BenchDatapath extends LbMaps {
  attach(ifname: string, netns?: string): Promise<void>;
  detach(ifname: string, netns?: string): Promise<void>;
}

type DatapathModule = {
  openDatapath(o: DatapathOptions): Promise<BenchDatapath>;
  datapathUnavailable(): string | undefined | Promise<string | undefined>;
};

const MODULE = new URL("../../datapath/bpf/datapath.ts", import.meta.url);

let loaded: Promise<DatapathModule | string> | undefined;

/** The datapath module, or why it cannot be used. */
export function loadDatapath(): Promise<DatapathModule | string> {
  loaded ??= (async () => {
    let mod: Partial<DatapathModule>;
    try {
      mod = (await import(MODULE.href)) as Partial<DatapathModule>;
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      return e.code === "ERR_MODULE_NOT_FOUND" && String(e.message).includes("datapath.ts")
        ? "datapath/bpf/datapath.ts does not exist in this checkout"
        : `datapath/bpf/datapath.ts does not load: ${e.message}`;
    }
    if (typeof mod.openDatapath !== "function" || typeof mod.datapathUnavailable !== "function") {
      return "datapath/bpf/datapath.ts does not export openDatapath and datapathUnavailable";
    }
    const why = await mod.datapathUnavailable();
    if (why !== undefined) return why;
    return mod as DatapathModule;
  })();
  return loaded;
}

/** A datapath with its own pin directory under /sys/fs/bpf, removed by close(). */
export async function openBenchDatapath(o: Omit<DatapathOptions, "pinDir">): Promise<{ dp: BenchDatapath; close(): Promise<void> }> {
  const mod = await loadDatapath();
  if (typeof mod === "string") throw new Error(mod);
  const pinDir = `/sys/fs/bpf/sluice-bench-${process.pid}-${randomTag()}`;
  await mkdir(pinDir, { recursive: true });
  let dp: BenchDatapath;
  try {
    dp = await mod.openDatapath({ ...o, pinDir });
  } catch (err) {
    await rm(pinDir, { recursive: true, force: true });
    throw err;
  }
  return {
    dp,
    async close() {
      await dp.close().catch(() => undefined);
      await rm(pinDir, { recursive: true, force: true });
    },
  };
}

/** Backend ids: the service's ports in order, numbered from 1 across all services. */
export function serviceOps(services: readonly Service[], maglevSize: number): MapOp[] {
  const backends: MapOp[] = [];
  const tables: MapOp[] = [];
  const frontends: MapOp[] = [];
  const vips: MapOp[] = [];
  let backendId = 1;
  let serviceId = 1;
  // One Maglev table per (service, port), as a Gateway listener is one L4 service.
  const tableCache = new Map<string, Uint32Array>();
  for (const s of services) {
    for (const p of s.ports) {
      const b: BackendEntry = { id: backendId++, address: s.backend, port: p.backendPort, protocol: "TCP" };
      backends.push({ op: "backend-upsert", backend: b });
      // One backend: every slot is it. Built with the real builder anyway (cached: identical input).
      const key = maglevHashKey(b.address, b.port, "TCP");
      let idx = tableCache.get(key);
      if (!idx) {
        idx = buildMaglevTable([{ hashKey: key, weight: 1 }], maglevSize);
        tableCache.set(key, idx);
      }
      const table = new Uint32Array(idx.length);
      for (let i = 0; i < idx.length; i++) table[i] = b.id; // index 0 → this backend's id
      tables.push({ op: "maglev-upsert", serviceId, table });
      frontends.push({ op: "frontend-upsert", frontend: { address: s.vip, port: p.port, protocol: "TCP", serviceId, flags: 0 } });
      serviceId++;
    }
    vips.push({ op: "vip-upsert", address: s.vip });
  }
  return [...backends, ...tables, ...frontends, ...vips];
}
