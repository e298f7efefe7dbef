// The L4 agent: turns the translator's datapath config into ordered minimal map diffs and applies
// them to the pinned maps. On start it adopts whatever the maps hold (ids, tables, version), so a
// restart with unchanged desired state writes nothing and traffic never notices it.
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { DatapathConfig, GatewayDatapath } from "../../operator/translate/output.ts";
import type { ConntrackTimeouts, FrontendCounters, LbMaps, MapOp } from "../bpf/state.ts";
import { desiredState, frontendKeyOf, type DesiredOptions } from "./desired.ts";
import { applyOps, diff, type AgentState } from "./diff.ts";
import { cloneIds, liveIds, newIds, resolveIds, seedIds, type Ids } from "./ids.ts";
import { noSnat, type SnatResolver } from "./snat.ts";

export interface L4AgentOptions {
  /** Frontends are served on port+offset (standalone mode). */
  portOffset?: number;
  /** Where the local proxy serves an L7 port; none = no L7 frontends. */
  l7Proxy?: DesiredOptions["l7Proxy"];
  /** Drop packets to frontend addresses on unknown ports (default true). */
  dropUnknownPorts?: boolean;
  /** The maps take IPv6 entries (default false: IPv6 frontends and backends are left out and reported). */
  ipv6?: boolean;
  /** SNAT decision per backend address (default: none; see routeSnat). */
  snatFor?: SnatResolver;
  /** Conntrack timeouts to set; undefined leaves the datapath's own. */
  timeouts?: ConntrackTimeouts;
  maxServices?: number;
  maxBackends?: number;
  /** Metrics are registered here (default: a new Registry, see `registry`). */
  registry?: Registry;
}

export interface ApplyResult {
  /** Map operations written. */
  ops: number;
  /** The version the maps now hold. */
  version: string;
  /** What could not be honoured (frontend conflicts, ...); the rest was applied. */
  problems: string[];
  /** A later apply() queued behind this one and was applied instead (latest wins). */
  superseded?: boolean;
}

interface Job {
  version: string;
  config: DatapathConfig | readonly GatewayDatapath[];
  waiters: { resolve: (r: ApplyResult) => void; reject: (e: unknown) => void }[];
}

export class L4Agent {
  readonly registry: Registry;
  private readonly maps: LbMaps;
  private readonly opts: L4AgentOptions;
  private ids: Ids;
  private state: AgentState | undefined;
  private adopting: Promise<void> | undefined;
  private queued: Job | undefined;
  private busy: Promise<void> | undefined;
  private counterCache: { at: number; value: Promise<FrontendCounters[]> } | undefined;
  private readonly m: {
    version: Gauge;
    versionInfo: Gauge;
    ops: Counter;
    duration: Histogram;
    errors: Counter;
  };

  constructor(maps: LbMaps, opts: L4AgentOptions = {}) {
    this.maps = maps;
    this.opts = opts;
    this.ids = newIds(opts.maxServices ?? 65535, opts.maxBackends ?? 65535);
    this.registry = opts.registry ?? new Registry();
    const registers = [this.registry];
    const counters = (): Promise<FrontendCounters[]> => {
      // Both per-frontend metrics are collected in one scrape: read the maps once for them.
      if (!this.counterCache || Date.now() - this.counterCache.at > 250) this.counterCache = { at: Date.now(), value: this.maps.counters() };
      return this.counterCache.value;
    };
    const perFrontend = (field: "packets" | "bytes") =>
      async function collect(this: Counter): Promise<void> {
        const list = await counters();
        // Only frontends the maps hold: series of removed ones go away, so labels stay bounded.
        const live = new Set(sizes()?.frontends.map(frontendKeyOf));
        this.reset();
        for (const c of list) if (live.has(frontendKeyOf(c))) this.inc({ frontend: frontendKeyOf(c) }, Number(c[field]));
      };
    const sizes = (): AgentState | undefined => this.state;
    this.m = {
      version: new Gauge({ name: "sluice_agent_applied_version", help: "Desired-state version the maps hold (numeric versions only)", registers }),
      versionInfo: new Gauge({ name: "sluice_agent_applied_version_info", help: "Desired-state version the maps hold, as a label", labelNames: ["version"], registers }),
      ops: new Counter({ name: "sluice_agent_map_ops_total", help: "Map operations applied, by type", labelNames: ["op"], registers }),
      duration: new Histogram({
        name: "sluice_agent_apply_duration_seconds",
        help: "Time to compute and write one desired state",
        buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
        registers,
      }),
      errors: new Counter({ name: "sluice_agent_apply_errors_total", help: "Applies that failed (the maps hold the ops before the failing one)", registers }),
    };
    new Counter({ name: "sluice_agent_frontend_packets_total", help: "Packets received per frontend", labelNames: ["frontend"], registers, collect: perFrontend("packets") });
    new Counter({ name: "sluice_agent_frontend_bytes_total", help: "Bytes received per frontend", labelNames: ["frontend"], registers, collect: perFrontend("bytes") });
    new Gauge({
      name: "sluice_agent_entries",
      help: "Entries the maps hold, by kind",
      labelNames: ["kind"],
      registers,
      collect(this: Gauge) {
        const s = sizes();
        this.set({ kind: "frontend" }, s?.frontends.length ?? 0);
        this.set({ kind: "service" }, s?.maglev.size ?? 0);
        this.set({ kind: "backend" }, s?.backends.length ?? 0);
        this.set({ kind: "vip" }, s?.vips.length ?? 0);
      },
    });
  }

  /** Reads the maps once and seeds ids from them; plan() and apply() do it on first use. */
  adopt(): Promise<void> {
    this.adopting ??= this.maps.read().then(
      (s) => {
        this.ids = newIds(this.ids.services.max, this.ids.backends.max);
        seedIds(this.ids, s);
        this.state = s;
        this.setVersion(s.version);
      },
      (err: unknown) => {
        this.adopting = undefined; // tried again on the next call
        throw new Error(`reading the maps failed: ${(err as Error).message}`, { cause: err });
      },
    );
    return this.adopting;
  }

  /** The version the maps hold (after adoption), or undefined before. */
  appliedVersion(): string | undefined {
    return this.state?.version;
  }

  /** The agent's model of the maps (after adoption). */
  current(): AgentState | undefined {
    return this.state;
  }

  /** The ops apply() would write for this config now, without writing anything. */
  async plan(version: string, config: DatapathConfig | readonly GatewayDatapath[]): Promise<{ ops: MapOp[]; problems: string[] }> {
    await this.adopt();
    await this.busy;
    const { ops, problems } = await this.compute(version, config, cloneIds(this.ids));
    return { ops, problems };
  }

  /** Applies the config; one apply runs at a time and of several queued only the latest is applied. */
  apply(version: string, config: DatapathConfig | readonly GatewayDatapath[]): Promise<ApplyResult> {
    return new Promise<ApplyResult>((resolve, reject) => {
      if (this.queued) {
        this.queued.version = version;
        this.queued.config = config;
        this.queued.waiters.push({ resolve, reject });
      } else {
        this.queued = { version, config, waiters: [{ resolve, reject }] };
      }
      this.busy ??= this.drain();
    });
  }

  private async drain(): Promise<void> {
    try {
      while (this.queued) {
        const job = this.queued;
        this.queued = undefined;
        try {
          const r = await this.applyNow(job.version, job.config);
          job.waiters.forEach((w, i) => w.resolve(i === job.waiters.length - 1 ? r : { ...r, superseded: true }));
        } catch (err) {
          for (const w of job.waiters) w.reject(err);
        }
      }
    } finally {
      // Cleared in the same tick the queue is seen empty, so a new apply() always finds either a running drain or none.
      this.busy = undefined;
    }
  }

  private async applyNow(version: string, config: DatapathConfig | readonly GatewayDatapath[]): Promise<ApplyResult> {
    const end = this.m.duration.startTimer();
    try {
      await this.adopt();
      const { ops, next, problems } = await this.compute(version, config, this.ids);
      if (ops.length) await this.maps.apply(ops);
      this.counterCache = undefined;
      this.state = next;
      this.forgetDeadIds();
      for (const [op, n] of countByType(ops)) this.m.ops.inc({ op }, n);
      this.setVersion(next.version);
      return { ops: ops.length, version: next.version, problems };
    } catch (err) {
      this.m.errors.inc();
      await this.resync();
      throw err;
    } finally {
      end();
    }
  }

  private async compute(version: string, config: DatapathConfig | readonly GatewayDatapath[], ids: Ids): Promise<{ ops: MapOp[]; next: AgentState; problems: string[] }> {
    const current = this.state as AgentState;
    const snat = await this.resolveSnat(config);
    const desired = desiredState(config, {
      maglevSize: this.maps.maglevSize,
      portOffset: this.opts.portOffset ?? 0,
      ...(this.opts.l7Proxy ? { l7Proxy: this.opts.l7Proxy } : {}),
      ...(this.opts.dropUnknownPorts === false ? { dropUnknownPorts: false } : {}),
      ipv6: this.opts.ipv6 ?? false,
      snatFor: (a) => snat.get(a),
    });
    const target: AgentState = resolveIds(desired, ids, current);
    target.version = version;
    const timeouts = this.opts.timeouts ?? current.timeouts;
    if (timeouts) target.timeouts = timeouts;
    const ops = diff(current, target);
    return { ops, next: applyOps(current, ops), problems: desired.problems };
  }

  /** SNAT decisions for every backend address of the config, asked a few at a time. */
  private async resolveSnat(config: DatapathConfig | readonly GatewayDatapath[]): Promise<Map<string, string | undefined>> {
    const resolver = this.opts.snatFor ?? noSnat;
    const out = new Map<string, string | undefined>();
    if (resolver === noSnat) return out;
    const gws = "gateways" in config ? config.gateways : config;
    const addresses = [...new Set(gws.flatMap((g) => g.l4.flatMap((s) => s.backends.map((b) => b.address))))];
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < addresses.length) {
        const a = addresses[next++] as string;
        out.set(a, await resolver(a));
      }
    };
    await Promise.all(Array.from({ length: Math.min(16, addresses.length) }, worker));
    return out;
  }

  /** After a failed apply the maps hold the ops before the failing one: read them back. */
  private async resync(): Promise<void> {
    try {
      const s = await this.maps.read();
      // Timeouts the maps cannot report are unknown now: the next diff writes them again.
      this.state = s;
      this.forgetDeadIds();
      seedIds(this.ids, s);
      this.setVersion(s.version);
    } catch {
      // The maps cannot even be read: adopt again from scratch on the next apply.
      this.adopting = undefined;
    }
  }

  private forgetDeadIds(): void {
    if (!this.state) return;
    const live = liveIds(this.state);
    this.ids.services.retain(live.services);
    this.ids.backends.retain(live.backends);
  }

  private setVersion(version: string): void {
    this.m.versionInfo.reset();
    if (version !== "") this.m.versionInfo.set({ version }, 1);
    const n = Number(version);
    if (version !== "" && Number.isFinite(n)) this.m.version.set(n);
  }
}

function countByType(ops: readonly MapOp[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const o of ops) out.set(o.op, (out.get(o.op) ?? 0) + 1);
  return out;
}
