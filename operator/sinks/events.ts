// Kubernetes Events for failures a user must see on the object itself (`kubectl describe`):
// an invalid GatewayClassConfig, a Service the API server rejects, a status write that keeps
// failing. Modelled on client-go's recorder: identical events are aggregated into one Event whose
// count and lastTimestamp grow, and a per-object token bucket stops a hot loop from flooding etcd.
import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import { CoreV1Api, PatchStrategy, setHeaderOptions, type ConfigurationOptions, type CoreV1Event, type KubeConfig, type ObservableMiddleware } from "@kubernetes/client-node";
import { Counter, Registry } from "prom-client";
import { CONTROLLER_NAME } from "../translate/gatewayclass.ts";
import { KeyedQueue } from "./queue.ts";
import { apiFailure, backoffDelay, isRetryable, pause, pooledCallOptions, silentLogger, type SinkLogger } from "./kube.ts";
import { rfc3339 } from "./statusmerge.ts";

export interface InvolvedObject {
  apiVersion: string;
  kind: string;
  name: string;
  namespace?: string;
  uid?: string;
}

export type EventType = "Normal" | "Warning";

export interface EventRecorderOptions {
  kubeConfig: KubeConfig;
  /** Only the leader writes; others drop events (the leader sees the same failures). */
  isLeader?: () => boolean;
  reportingController?: string;
  reportingInstance?: string;
  /** An identical event within this window updates the existing Event. Default 10 min (client-go). */
  aggregateWindowMs?: number;
  /** Repeats of one Event are written at most this often; the count catches up. Default 30 s. */
  minUpdateIntervalMs?: number;
  /** Per involved object: burst and refill interval of new Events (client-go: 25, one per 5 min). */
  burst?: number;
  refillMs?: number;
  now?: () => Date;
  log?: SinkLogger;
  registry?: Registry;
}

interface Entry {
  key: string;
  involved: InvolvedObject;
  namespace: string;
  type: EventType;
  reason: string;
  message: string;
  /** The Event's name once created. */
  name?: string;
  count: number;
  writtenCount: number;
  first: Date;
  last: Date;
  lastWriteAt: number;
  flushTimer?: NodeJS.Timeout;
}

interface Bucket {
  tokens: number;
  at: number;
}

const MAX_ENTRIES = 4096; // client-go's LRU size
const MAX_MESSAGE = 1024;

export class EventRecorder {
  private readonly core: CoreV1Api;
  private readonly callOpts: ConfigurationOptions<ObservableMiddleware>;
  private readonly patchOpts: ConfigurationOptions<ObservableMiddleware>;
  private readonly isLeader: () => boolean;
  private readonly controller: string;
  private readonly instance: string;
  private readonly windowMs: number;
  private readonly minIntervalMs: number;
  private readonly burst: number;
  private readonly refillMs: number;
  private readonly now: () => Date;
  private readonly log: SinkLogger;
  private readonly entries = new Map<string, Entry>();
  private readonly buckets = new Map<string, Bucket>();
  private readonly queue: KeyedQueue<Entry>;
  private readonly counter: Counter<"type" | "result">;
  private writes = 0;
  private dropped = 0;

  constructor(opts: EventRecorderOptions) {
    this.core = opts.kubeConfig.makeApiClient(CoreV1Api);
    this.callOpts = pooledCallOptions(opts.kubeConfig);
    this.patchOpts = pooledCallOptions(opts.kubeConfig, setHeaderOptions("Content-Type", PatchStrategy.MergePatch));
    this.isLeader = opts.isLeader ?? (() => true);
    this.controller = opts.reportingController ?? CONTROLLER_NAME;
    this.instance = opts.reportingInstance ?? hostname();
    this.windowMs = opts.aggregateWindowMs ?? 10 * 60_000;
    this.minIntervalMs = opts.minUpdateIntervalMs ?? 30_000;
    this.burst = opts.burst ?? 25;
    this.refillMs = opts.refillMs ?? 5 * 60_000;
    this.now = opts.now ?? (() => new Date());
    this.log = opts.log ?? silentLogger;
    this.counter = new Counter({
      name: "sluice_events_total",
      help: "Kubernetes Events written by Sluice, by type and result (created, updated, failed, dropped).",
      labelNames: ["type", "result"],
      registers: [opts.registry ?? new Registry()],
    });
    this.queue = new KeyedQueue<Entry>(2, (_key, entry, signal) => this.write(entry, signal), (key, err) => {
      this.log.warn({ err, event: key }, "event write failed");
    });
  }

  /** Records an event on `involved`; never throws, never blocks. */
  record(involved: InvolvedObject, type: EventType, reason: string, message: string): void {
    if (!this.isLeader()) return;
    const msg = message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE - 3)}...` : message;
    const namespace = involved.namespace || "default"; // cluster-scoped objects: client-go uses "default"
    const key = [namespace, involved.kind, involved.name, involved.uid ?? "", type, reason, msg].join("\u0000");
    const now = this.now();
    let entry = this.entries.get(key);
    if (entry && now.getTime() - entry.last.getTime() < this.windowMs) {
      entry.count++;
      entry.last = now;
      this.entries.delete(key); // LRU: most recent last
      this.entries.set(key, entry);
      this.scheduleUpdate(entry);
      return;
    }
    if (entry?.flushTimer) clearTimeout(entry.flushTimer);
    if (!this.take(`${namespace}/${involved.kind}/${involved.name}`, now.getTime())) {
      this.dropped++;
      this.counter.inc({ type, result: "dropped" });
      return;
    }
    entry = { key, involved, namespace, type, reason, message: msg, count: 1, writtenCount: 0, first: now, last: now, lastWriteAt: 0 };
    this.entries.delete(key);
    this.entries.set(key, entry);
    this.evict();
    this.queue.push(key, entry);
  }

  /** Events written (created or updated) so far. */
  writeCount(): number {
    return this.writes;
  }

  /** Events dropped by the rate limiter. */
  droppedCount(): number {
    return this.dropped;
  }

  idle(): Promise<void> {
    return this.queue.idle();
  }

  /** Writes aggregated counts that are still waiting for their interval, then waits. */
  async flush(): Promise<void> {
    for (const e of this.entries.values()) {
      if (e.flushTimer) {
        clearTimeout(e.flushTimer);
        delete e.flushTimer;
        this.queue.push(e.key, e);
      }
    }
    await this.queue.idle();
  }

  stop(): void {
    for (const e of this.entries.values()) if (e.flushTimer) clearTimeout(e.flushTimer);
    this.queue.stop();
  }

  /** Writes the grown count at most every minUpdateIntervalMs; a write in flight reschedules itself. */
  private scheduleUpdate(entry: Entry): void {
    if (entry.flushTimer || this.queue.isBusy(entry.key) || this.entries.get(entry.key) !== entry) return;
    const wait = entry.lastWriteAt + this.minIntervalMs - Date.now();
    if (wait <= 0) {
      this.queue.push(entry.key, entry);
      return;
    }
    entry.flushTimer = setTimeout(() => {
      delete entry.flushTimer;
      if (this.entries.get(entry.key) === entry) this.queue.push(entry.key, entry);
    }, wait);
    entry.flushTimer.unref();
  }

  /** Token bucket per involved object. */
  private take(object: string, nowMs: number): boolean {
    let b = this.buckets.get(object);
    if (!b) {
      b = { tokens: this.burst, at: nowMs };
      this.buckets.set(object, b);
      if (this.buckets.size > MAX_ENTRIES) {
        const oldest = this.buckets.keys().next().value;
        if (oldest !== undefined) this.buckets.delete(oldest);
      }
    }
    const refill = Math.floor((nowMs - b.at) / this.refillMs);
    if (refill > 0) {
      b.tokens = Math.min(this.burst, b.tokens + refill);
      b.at += refill * this.refillMs;
    }
    if (b.tokens <= 0) return false;
    b.tokens--;
    return true;
  }

  private evict(): void {
    while (this.entries.size > MAX_ENTRIES) {
      const oldest = this.entries.values().next().value;
      if (!oldest) break;
      if (oldest.flushTimer) clearTimeout(oldest.flushTimer);
      this.entries.delete(oldest.key);
    }
  }

  private async write(entry: Entry, signal: AbortSignal): Promise<void> {
    if (entry.count === entry.writtenCount && entry.name) return;
    for (let attempt = 1; attempt <= 4; attempt++) {
      if (signal.aborted || !this.isLeader()) return;
      const count = entry.count;
      try {
        if (entry.name) {
          await this.core.patchNamespacedEvent(
            { name: entry.name, namespace: entry.namespace, body: { count, lastTimestamp: rfc3339(entry.last) } },
            this.patchOpts,
          );
          this.counter.inc({ type: entry.type, result: "updated" });
        } else {
          const name = eventName(entry.involved.name);
          await this.core.createNamespacedEvent({ namespace: entry.namespace, body: this.body(entry, name, count) }, this.callOpts);
          entry.name = name;
          this.counter.inc({ type: entry.type, result: "created" });
        }
        entry.writtenCount = count;
        entry.lastWriteAt = Date.now();
        this.writes++;
        // Repeats that arrived during the write: the queue still holds this key, so defer.
        if (entry.count > entry.writtenCount) setImmediate(() => this.scheduleUpdate(entry));
        return;
      } catch (err) {
        const f = apiFailure(err);
        if (f.status === 404 && entry.name) {
          delete entry.name; // the Event expired (TTL 1 h) or was deleted: start a new one
          continue;
        }
        if (!isRetryable(f) || attempt === 4) {
          this.counter.inc({ type: entry.type, result: "failed" });
          this.log.warn({ status: f.status, reason: entry.reason, object: `${entry.namespace}/${entry.involved.name}` }, `event not written: ${f.message}`);
          return;
        }
        if (!(await pause(backoffDelay(attempt, { initialMs: 200, maxMs: 10_000 }, f.retryAfterMs), signal))) return;
      }
    }
  }

  private body(entry: Entry, name: string, count: number): CoreV1Event {
    const inv = entry.involved;
    return {
      apiVersion: "v1",
      kind: "Event",
      metadata: { name, namespace: entry.namespace },
      involvedObject: {
        apiVersion: inv.apiVersion, kind: inv.kind, name: inv.name,
        ...(inv.namespace ? { namespace: inv.namespace } : {}),
        ...(inv.uid ? { uid: inv.uid } : {}),
      },
      type: entry.type,
      reason: entry.reason,
      message: entry.message,
      count,
      firstTimestamp: entry.first,
      lastTimestamp: entry.last,
      source: { component: "sluice" },
      reportingComponent: this.controller,
      reportingInstance: this.instance,
    };
  }
}

/** `<object>.<16 hex>` like client-go, within the 253-char name limit. */
function eventName(objectName: string): string {
  return `${objectName.slice(0, 230)}.${randomBytes(8).toString("hex")}`;
}
