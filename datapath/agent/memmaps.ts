// An in-memory LbMaps with the kernel side's rules, for unit tests of the agent: ops apply in
// order and the first that would leave a dangling reference is rejected (the ones before it stay
// applied), exactly as the datapath would see it.
import type { BackendEntry, ConntrackTimeouts, FrontendCounters, FrontendEntry, LbMaps, MapOp } from "../bpf/state.ts";
import type { AgentState } from "./diff.ts";
import { frontendKeyOf } from "./desired.ts";

export interface MemoryMapsOptions {
  maglevSize?: number;
  maxBackends?: number;
  maxServices?: number;
}

export class MemoryMaps implements LbMaps {
  readonly maglevSize: number;
  /** Every op applied so far, in order (tests check what was written). */
  readonly log: MapOp[] = [];
  /** Calls to apply() (dry runs must make none). */
  applyCalls = 0;
  /** Makes the op at this index (counted over all applies) fail, once. */
  failAt: number | undefined;
  closed = false;
  private backends = new Map<number, BackendEntry>();
  private frontends = new Map<string, FrontendEntry>();
  private maglev = new Map<number, Uint32Array>();
  private vips = new Set<string>();
  private version = "";
  private timeouts: ConntrackTimeouts | undefined;
  private counts = new Map<string, { packets: bigint; bytes: bigint }>();
  private readonly maxBackends: number;
  private readonly maxServices: number;

  constructor(opts: MemoryMapsOptions = {}) {
    this.maglevSize = opts.maglevSize ?? 251;
    this.maxBackends = opts.maxBackends ?? 65535;
    this.maxServices = opts.maxServices ?? 65535;
  }

  async apply(ops: readonly MapOp[]): Promise<void> {
    this.applyCalls++;
    for (const [i, o] of ops.entries()) {
      if (this.closed) throw new Error("maps are closed");
      if (this.failAt !== undefined && this.log.length === this.failAt) {
        this.failAt = undefined;
        throw new Error(`op ${i} (${o.op}) failed: injected failure`);
      }
      const problem = this.check(o);
      if (problem) throw new Error(`op ${i} (${o.op}) rejected: ${problem}`);
      this.exec(o);
      this.log.push(o);
    }
  }

  async read(): Promise<AgentState> {
    const s: AgentState = {
      frontends: [...this.frontends.values()].map((f) => ({ ...f })),
      backends: [...this.backends.values()].map((b) => ({ ...b })),
      maglev: new Map([...this.maglev].map(([k, t]) => [k, t.slice()])),
      vips: [...this.vips],
      version: this.version,
    };
    if (this.timeouts) s.timeouts = { ...this.timeouts };
    return s;
  }

  /** What read() returns without the timeouts (maps that cannot report them). */
  async readWithoutTimeouts(): Promise<AgentState> {
    const { timeouts: _t, ...rest } = await this.read();
    return rest;
  }

  /** Traffic the datapath would have counted on a frontend (tests of the metrics). */
  count(key: FrontendEntry | { address: string; port: number; protocol: "TCP" | "UDP" }, packets: bigint, bytes: bigint): void {
    const c = this.counts.get(frontendKeyOf(key)) ?? { packets: 0n, bytes: 0n };
    this.counts.set(frontendKeyOf(key), { packets: c.packets + packets, bytes: c.bytes + bytes });
  }

  async counters(): Promise<FrontendCounters[]> {
    return [...this.frontends.values()].map((f) => {
      const c = this.counts.get(frontendKeyOf(f)) ?? { packets: 0n, bytes: 0n };
      return { address: f.address, port: f.port, protocol: f.protocol, ...c };
    });
  }

  async conntrackCount(): Promise<number> {
    return 0;
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  /** Why the op cannot apply now, or undefined. */
  private check(o: MapOp): string | undefined {
    switch (o.op) {
      case "backend-upsert":
        if (!this.backends.has(o.backend.id) && this.backends.size >= this.maxBackends) return `backend map full (${this.maxBackends})`;
        if (o.backend.id < 1) return `backend id ${o.backend.id} is not positive`;
        return undefined;
      case "backend-delete": {
        if (!this.backends.has(o.id)) return `backend ${o.id} does not exist`;
        for (const [sid, t] of this.maglev) if (t.includes(o.id)) return `backend ${o.id} is still in the Maglev table of service ${sid}`;
        return undefined;
      }
      case "maglev-upsert": {
        if (o.table.length !== this.maglevSize) return `table of ${o.table.length} slots, the maps hold ${this.maglevSize}`;
        if (!this.maglev.has(o.serviceId) && this.maglev.size >= this.maxServices) return `Maglev outer map full (${this.maxServices})`;
        for (const id of new Set(o.table)) if (!this.backends.has(id)) return `table of service ${o.serviceId} refers to unknown backend ${id}`;
        return undefined;
      }
      case "maglev-delete":
        if (!this.maglev.has(o.serviceId)) return `service ${o.serviceId} has no table`;
        for (const f of this.frontends.values()) if (f.serviceId === o.serviceId) return `frontend ${frontendKeyOf(f)} still uses service ${o.serviceId}`;
        return undefined;
      case "frontend-upsert":
        if (!this.maglev.has(o.frontend.serviceId)) return `frontend ${frontendKeyOf(o.frontend)} refers to service ${o.frontend.serviceId}, which has no Maglev table`;
        return undefined;
      case "frontend-delete":
        return this.frontends.has(frontendKeyOf(o.key)) ? undefined : `frontend ${frontendKeyOf(o.key)} does not exist`;
      case "vip-delete":
        return this.vips.has(o.address) ? undefined : `vip ${o.address} does not exist`;
      default:
        return undefined;
    }
  }

  private exec(o: MapOp): void {
    switch (o.op) {
      case "backend-upsert": this.backends.set(o.backend.id, { ...o.backend }); break;
      case "backend-delete": this.backends.delete(o.id); break;
      case "maglev-upsert": this.maglev.set(o.serviceId, o.table.slice()); break;
      case "maglev-delete": this.maglev.delete(o.serviceId); break;
      case "frontend-upsert": this.frontends.set(frontendKeyOf(o.frontend), { ...o.frontend }); break;
      case "frontend-delete": this.frontends.delete(frontendKeyOf(o.key)); this.counts.delete(frontendKeyOf(o.key)); break;
      case "vip-upsert": this.vips.add(o.address); break;
      case "vip-delete": this.vips.delete(o.address); break;
      case "config": this.timeouts = { ...o.timeouts }; break;
      case "version": this.version = o.version; break;
    }
  }
}
