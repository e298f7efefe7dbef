// The operator host: cluster sources → store → Translator (addressing "service") → sinks, plus
// leader election and the operations endpoints. Every replica runs the sources, the store and the
// translator (a standby has a warm cache and takes over without a re-list); only the leader's
// sinks write. Sinks are parameters, so the host does not depend on any particular writer.
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { Subject, map, tap, type Observable, type Subscription } from "rxjs";
import type { KubeConfig } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { KIND_NAMES, type KindName } from "../api/kinds.ts";
import { kubeApi, sleep, Backoff, type KubeApi } from "../sources/kubeapi.ts";
import { SourceMonitor, kubeSourceNames, watchCluster, type KubeSourceOptions } from "../sources/kube.ts";
import { createStore } from "../store/store.ts";
import type { Snapshot } from "../store/snapshot.ts";
import { Translator, type TranslateOptions } from "../translate/translate.ts";
import type { TranslateResult } from "../translate/output.ts";
import { statusLines, type Reported } from "../run/report.ts";
import { startAdmin, type AdminChecks, type AdminServer } from "../shell/admin.ts";
import { LeaderElector } from "../shell/leader.ts";
import { OperatorMetrics } from "../shell/metrics.ts";
import type { DistributionServer } from "../sinks/distribution.ts";
import { distributionSink } from "./sinks.ts";
import { heapCompactor, logCompaction } from "../heap/compact.ts";

/** One translation: the snapshot and what the translator made of it. */
export interface Update {
  snapshot: Snapshot;
  result: TranslateResult;
}

/** Something that writes a translation somewhere (statuses, Services, Events, the datapath stream). */
export interface Sink {
  readonly name: string;
  /**
   * Brings the world in line with `update`. Called with the latest update only (intermediate
   * ones are skipped while a call runs), and only while this replica may write. `signal` aborts
   * when leadership is lost or the operator stops: stop writing at once. A rejection is logged
   * and the latest update is retried with backoff.
   */
  apply(update: Update, signal: AbortSignal): Promise<void>;
  /** Told when this replica gains or loses the right to write (before apply resumes / after it stops). */
  leading?(leader: boolean): void;
  close?(): Promise<void>;
}

/** What a sink factory gets to build its sinks with. */
export interface SinkContext {
  kubeConfig: KubeConfig;
  api: KubeApi;
  log: Logger;
  metrics: OperatorMetrics;
  isLeader(): boolean;
  /** The datapath distribution server, when there is one (its NACKs become Events). */
  distribution?: DistributionServer;
}

export interface LeaderElectionConfig {
  namespace: string;
  name?: string;
  /** Default: the host name (the pod name) and a random suffix. */
  identity?: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
}

export interface OperatorOptions {
  kubeConfig: KubeConfig;
  log: Logger;
  /** Campaign for a Lease; without it this replica always writes (a single replica). */
  leaderElection?: LeaderElectionConfig;
  admin?: { host: string; port: number };
  sinks?: Sink[] | ((ctx: SinkContext) => Sink[]);
  /** Datapath acknowledgements (from the distribution stream), into the store. */
  acks$?: Observable<ReadonlyMap<string, string>>;
  /**
   * The datapath distribution server: its acknowledgements feed the store (Gateways turn
   * Programmed once acknowledged) and the leader publishes every translation to it.
   */
  distribution?: DistributionServer;
  /** Default: a new registry per operator. */
  metrics?: OperatorMetrics;
  translator?: Omit<TranslateOptions, "addressing">;
  source?: Omit<KubeSourceOptions, "api" | "log" | "metrics" | "monitor">;
  coalesceMs?: number;
  /** /healthz fails when a served kind has had no open watch and no progress for this long; default 5 min. */
  wedgedAfterMs?: number;
  /** Pause after a failed sink run, doubling; default 500 ms to 30 s. */
  sinkBackoff?: { initialMs?: number; maxMs?: number };
}

export interface RunningOperator {
  /** Resolves once the first complete snapshot has been translated. */
  ready: Promise<void>;
  /** Every translation, as it happens (hot). */
  updates$: Observable<Update>;
  latest(): Update | undefined;
  isLeader(): boolean;
  identity: string;
  metrics: OperatorMetrics;
  monitor: SourceMonitor;
  adminAddress(): { host: string; port: number } | undefined;
  /** Stops everything; a leader releases its Lease unless `releaseLease` is false (a crash, in tests). */
  stop(opts?: { releaseLease?: boolean }): Promise<void>;
}

/**
 * A cluster changes in bursts (a GitOps sync, our own status writes echoed back by the watch):
 * one snapshot per 50 ms bounds the per-tick passes over every object, at a cost no user notices.
 */
const DEFAULT_COALESCE_MS = 50;

export async function startOperator(opts: OperatorOptions): Promise<RunningOperator> {
  const log = opts.log;
  const api = kubeApi(opts.kubeConfig);
  const metrics = opts.metrics ?? new OperatorMetrics();
  const monitor = new SourceMonitor();
  const kinds: readonly KindName[] = opts.source?.kinds ?? KIND_NAMES;
  const identity = opts.leaderElection?.identity ?? `${hostname()}_${randomUUID().slice(0, 8)}`;
  const translator = new Translator({ ...opts.translator, addressing: { mode: "service" } });
  const updates$ = new Subject<Update>();
  let latest: Update | undefined;
  let markReady: () => void = () => undefined;
  const ready = new Promise<void>((r) => (markReady = r));

  let elector: LeaderElector | undefined;
  const isLeader = (): boolean => (elector ? elector.isLeader() : true);
  const ctx: SinkContext = { kubeConfig: opts.kubeConfig, api, log, metrics, isLeader, ...(opts.distribution ? { distribution: opts.distribution } : {}) };
  const sinks = [
    ...(typeof opts.sinks === "function" ? opts.sinks(ctx) : (opts.sinks ?? [])),
    ...(opts.distribution ? [distributionSink(opts.distribution)] : []),
  ];
  const acks$ = opts.acks$ ?? opts.distribution?.acks$;
  const runners = sinks.map((s) => new SinkRunner(s, log, metrics, opts.sinkBackoff));

  const wedgedAfterMs = opts.wedgedAfterMs ?? 5 * 60_000;
  let admin: AdminServer | undefined;
  if (opts.admin) {
    // Before anything runs: a port in use must fail start-up cleanly, with nothing left behind.
    admin = await startAdmin(opts.admin, adminChecks()).catch(async (err: unknown) => {
      await Promise.all(runners.map((r) => r.close()));
      throw new Error(`admin endpoint ${opts.admin?.host}:${opts.admin?.port}: ${(err as Error).message}`);
    });
    log.info(`admin endpoint on http://${admin.address().host}:${admin.address().port} (/healthz, /readyz, /metrics)`);
  }

  function adminChecks(): AdminChecks {
    return {
      health: () => monitor.wedged(wedgedAfterMs).map((w) => `${w.kind}: no watch for ${Math.round((Date.now() - w.since) / 1000)} s${w.error ? ` (${w.error})` : ""}`),
      readiness: () => {
        const waiting = monitor.unsynced();
        if (waiting.length || monitor.kinds.size === 0) return [`waiting for the initial list of ${waiting.length ? waiting.join(", ") : "every kind (API discovery)"}`];
        return latest ? [] : ["waiting for the first snapshot"];
      },
      describe: () => [elector ? (elector.isLeader() ? `leader (${identity})` : `standby (${identity}; leader: ${elector.holder() ?? "unknown"})`) : "leader (no leader election)"],
      metrics: () => metrics.text(),
    };
  }

  const events$ = watchCluster({ ...opts.source, api, log, metrics, monitor }).pipe(
    tap((e) => {
      if (e.type === "ERROR") log.warn({ source: e.source }, e.error.message);
    }),
  );
  const reported: Reported = new Map();
  let warned = new Set<string>();
  const compactor = heapCompactor({ onCompacted: logCompaction(log, "heap compacted once the cluster's state settled") });
  const sub: Subscription = createStore(events$, { coalesceMs: opts.coalesceMs ?? DEFAULT_COALESCE_MS, sources: kubeSourceNames(kinds), ...(acks$ ? { acks$ } : {}) })
    .pipe(
      map((snapshot): Update => {
        const t0 = performance.now();
        const result = translator.translate(snapshot);
        metrics.snapshots.inc();
        metrics.translateSeconds.inc((performance.now() - t0) / 1000);
        return { snapshot, result };
      }),
    )
    .subscribe({
      next: (update) => {
        latest = update;
        // Problems are logged once when they appear, not again on every snapshot.
        for (const line of statusLines(update.result, reported)) {
          if (/=(False|Unknown)/.test(line)) log.info(line);
          else log.debug(line);
        }
        const now = new Set(update.result.warnings);
        for (const w of now) if (!warned.has(w)) log.warn(w);
        warned = now;
        if (update.snapshot.version === 1) {
          log.info({ objects: countObjects(update.snapshot) }, "initial sync complete; first snapshot translated");
          markReady();
        }
        updates$.next(update);
        if (isLeader()) for (const r of runners) r.offer(update);
        compactor.changed();
      },
      // The store and translator do not throw on bad input; if something does, say so loudly.
      error: (err: unknown) => log.error({ err }, "operator pipeline failed"),
    });

  if (opts.leaderElection) {
    elector = new LeaderElector({
      api, log, identity, ...opts.leaderElection,
      onStartedLeading: () => {
        metrics.leader(true);
        for (const r of runners) r.resume(latest);
      },
      onStoppedLeading: () => {
        metrics.leader(false);
        for (const r of runners) r.pause();
      },
    });
    metrics.leader(false);
    for (const r of runners) r.pause();
    elector.start();
  } else {
    metrics.leader(true);
    for (const r of runners) r.resume(undefined);
  }

  return {
    ready,
    updates$: updates$.asObservable(),
    latest: () => latest,
    isLeader,
    identity,
    metrics,
    monitor,
    adminAddress: () => admin?.address(),
    async stop(stopOpts = {}) {
      // Stop writing first, then step down (releasing the Lease lets a standby take over at once).
      for (const r of runners) r.pause();
      await elector?.stop(stopOpts.releaseLease ?? true);
      sub.unsubscribe();
      compactor.stop();
      updates$.complete();
      await Promise.all(runners.map((r) => r.close()));
      await admin?.close();
    },
  };
}

function countObjects(s: Snapshot): number {
  let n = 0;
  for (const k of KIND_NAMES) n += s.objects[k].size;
  return n;
}

/** Feeds one sink the latest update, one call at a time, with backoff after failures. */
class SinkRunner {
  private pending: Update | undefined;
  private running = false;
  private ctl = new AbortController();
  private closed = false;
  private readonly backoff: Backoff;
  private readonly sink: Sink;
  private readonly log: Logger;
  private readonly metrics: OperatorMetrics;

  constructor(sink: Sink, log: Logger, metrics: OperatorMetrics, backoff?: { initialMs?: number; maxMs?: number }) {
    this.sink = sink;
    this.log = log.child({ sink: sink.name });
    this.metrics = metrics;
    this.backoff = new Backoff(backoff?.initialMs ?? 500, backoff?.maxMs ?? 30_000);
  }

  offer(update: Update): void {
    this.pending = update;
    void this.pump();
  }

  /** Leadership lost: abort what is in flight and write nothing until resumed. */
  pause(): void {
    this.ctl.abort();
    this.pending = undefined;
    this.tell(false);
  }

  resume(latest: Update | undefined): void {
    if (this.closed) return;
    if (this.ctl.signal.aborted) this.ctl = new AbortController();
    this.tell(true);
    if (latest) this.offer(latest);
  }

  private tell(leader: boolean): void {
    try {
      this.sink.leading?.(leader);
    } catch (err) {
      this.log.warn(`sink ${this.sink.name}: ${(err as Error).message}`);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.pause();
    await this.sink.close?.().catch((err: unknown) => this.log.warn(`closing: ${(err as Error).message}`));
  }

  private async pump(): Promise<void> {
    if (this.running || this.closed) return;
    this.running = true;
    try {
      while (this.pending && !this.ctl.signal.aborted) {
        const update = this.pending;
        this.pending = undefined;
        const signal = this.ctl.signal;
        try {
          await this.sink.apply(update, signal);
          this.backoff.reset();
        } catch (err) {
          if (signal.aborted) break;
          this.metrics.sinkErrors.inc({ sink: this.sink.name });
          const delay = this.backoff.next();
          this.log.warn({ retryInMs: delay }, `sink ${this.sink.name} failed: ${(err as Error).message ?? String(err)}`);
          this.pending ??= update;
          await sleep(delay, signal);
        }
      }
    } finally {
      this.running = false;
    }
  }
}
