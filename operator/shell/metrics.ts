// The operator's Prometheus metrics. One registry per operator instance (not prom-client's
// global one), so two replicas in one test process do not share counters.
import { Counter, Gauge, Registry, collectDefaultMetrics } from "prom-client";
import type { KindName } from "../api/kinds.ts";
import type { SourceMetrics } from "../sources/kube.ts";

export class OperatorMetrics implements SourceMetrics {
  readonly registry = new Registry();
  private readonly watchRestarts: Counter<"kind">;
  private readonly relists: Counter<"kind">;
  private readonly events: Counter<"kind" | "type">;
  private readonly apiErrors: Counter<"kind" | "code">;
  private readonly syncedGauge: Gauge<"kind">;
  private readonly leaderGauge: Gauge;
  private readonly leaderTransitions: Counter;
  readonly snapshots: Counter;
  readonly translateSeconds: Counter;
  readonly sinkErrors: Counter<"sink">;

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    this.watchRestarts = new Counter({ name: "sluice_watch_restarts_total", help: "Watch requests that ended and were resumed, per kind", labelNames: ["kind"], registers });
    this.relists = new Counter({ name: "sluice_relists_total", help: "Full re-lists after the initial list (410 Gone, version switch), per kind", labelNames: ["kind"], registers });
    this.events = new Counter({ name: "sluice_watch_events_total", help: "Watch events received, per kind and type (ADDED, MODIFIED, DELETED, BOOKMARK, ERROR)", labelNames: ["kind", "type"], registers });
    this.apiErrors = new Counter({ name: "sluice_source_api_errors_total", help: "Failed list/watch requests, per kind and HTTP status (0: no answer)", labelNames: ["kind", "code"], registers });
    this.syncedGauge = new Gauge({ name: "sluice_source_synced", help: "1 once a kind's initial list is in (or it is known not to be served)", labelNames: ["kind"], registers });
    this.leaderGauge = new Gauge({ name: "sluice_leader", help: "1 while this replica holds the leader Lease (or runs without leader election)", registers });
    this.leaderTransitions = new Counter({ name: "sluice_leader_transitions_total", help: "Times this replica gained or lost leadership", registers });
    this.snapshots = new Counter({ name: "sluice_snapshots_total", help: "Snapshots translated", registers });
    this.translateSeconds = new Counter({ name: "sluice_translate_seconds_total", help: "Time spent translating snapshots", registers });
    this.sinkErrors = new Counter({ name: "sluice_sink_errors_total", help: "Sink runs that failed, per sink", labelNames: ["sink"], registers });
    if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  watchRestart(kind: KindName): void {
    this.watchRestarts.inc({ kind });
  }
  relist(kind: KindName): void {
    this.relists.inc({ kind });
  }
  event(kind: KindName, type: string): void {
    this.events.inc({ kind, type });
  }
  synced(kind: KindName, synced: boolean): void {
    this.syncedGauge.set({ kind }, synced ? 1 : 0);
  }
  apiError(kind: KindName, status: number): void {
    this.apiErrors.inc({ kind, code: String(status) });
  }
  private leading: boolean | undefined;
  leader(leading: boolean): void {
    this.leaderGauge.set(leading ? 1 : 0);
    if (this.leading !== undefined && this.leading !== leading) this.leaderTransitions.inc();
    this.leading = leading;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
