// The status writer: puts the translator's statuses on the objects, and nothing more often than
// needed. Per object it
//   1. merges the desired status onto the live one (statusmerge.ts: lastTransitionTime kept while a
//      condition's status holds, other controllers' Route parents untouched) and writes only when
//      that changes something: an identical translation costs zero requests;
//   2. coalesces per key: a burst of translations for one object becomes one write of the latest;
//   3. writes with PUT on the /status subresource carrying the resourceVersion it merged onto, so
//      a concurrent writer (another controller's parents entry) is never overwritten: a 409 means
//      re-read, re-merge, retry (bounded);
//   4. backs off on 429/5xx (Retry-After honoured), drops an object that was deleted (404), and
//      after repeated failure puts a Warning Event on the object.
import { CustomObjectsApi, type ConfigurationOptions, type ObservableMiddleware } from "@kubernetes/client-node";
import type { KubeConfig } from "@kubernetes/client-node";
import { Counter, Registry } from "prom-client";
import { ROUTE_KINDS } from "../api/kinds.ts";
import { objectKey, type K8sObject } from "../api/objects.ts";
import type { Snapshot } from "../store/snapshot.ts";
import { CONTROLLER_NAME } from "../translate/gatewayclass.ts";
import type { ObjectStatus, TranslateResult } from "../translate/output.ts";
import type { EventRecorder } from "./events.ts";
import { apiFailure, backoffDelay, isRetryable, pause, pooledCallOptions, resourceOf, silentLogger, type BackoffOptions, type SinkLogger } from "./kube.ts";
import { KeyedQueue } from "./queue.ts";
import { hasOurSharedEntries, mergeStatus, rfc3339, statusEqual, topCondition, type Json } from "./statusmerge.ts";

export interface StatusWriterOptions {
  kubeConfig: KubeConfig;
  /** Leader gate: nothing is written (or queued) while it returns false. */
  isLeader?: () => boolean;
  controllerName?: string;
  /** Objects written in parallel. Default 8. */
  concurrency?: number;
  /** Attempts per write on 409 Conflict (each after a fresh read). Default 5. */
  conflictAttempts?: number;
  /** Attempts per write on 429/5xx/no answer. Default 6. */
  retryAttempts?: number;
  backoff?: BackoffOptions;
  events?: EventRecorder;
  now?: () => Date;
  log?: SinkLogger;
  registry?: Registry;
}

interface Job {
  kind: string;
  desired: Json;
  /** The object as last seen (snapshot, or our own last write if the snapshot lags behind it). */
  object: K8sObject;
}

/** What we wrote last per key: lets a lagging snapshot (watch not caught up) not cause a rewrite. */
interface Written {
  /** resourceVersions older than `object` (what we merged onto, and what those were merged onto). */
  olderRvs: Set<string>;
  object: K8sObject;
}

const MAX_OLDER_RVS = 8;

export class StatusWriter {
  private readonly api: CustomObjectsApi;
  private readonly callOpts: ConfigurationOptions<ObservableMiddleware>;
  private readonly isLeader: () => boolean;
  private readonly controllerName: string;
  private readonly conflictAttempts: number;
  private readonly retryAttempts: number;
  private readonly backoff: BackoffOptions;
  private readonly events: EventRecorder | undefined;
  private readonly now: () => Date;
  private readonly log: SinkLogger;
  private readonly queue: KeyedQueue<Job>;
  private readonly written = new Map<string, Written>();
  /**
   * Per key, the (desired, live) pair last found needing nothing or queued: the translator and the
   * store keep unchanged objects identical, so at 10k routes an unchanged one costs a map lookup.
   */
  private checked = new Map<string, { desired: unknown; live: unknown }>();
  private wasLeader = false;
  private readonly counter: Counter<"kind" | "result">;
  private writes = 0;
  private requests = 0;

  constructor(opts: StatusWriterOptions) {
    this.api = opts.kubeConfig.makeApiClient(CustomObjectsApi);
    this.callOpts = pooledCallOptions(opts.kubeConfig);
    this.isLeader = opts.isLeader ?? (() => true);
    this.controllerName = opts.controllerName ?? CONTROLLER_NAME;
    this.conflictAttempts = opts.conflictAttempts ?? 5;
    this.retryAttempts = opts.retryAttempts ?? 6;
    this.backoff = opts.backoff ?? {};
    this.events = opts.events;
    this.now = opts.now ?? (() => new Date());
    this.log = opts.log ?? silentLogger;
    this.counter = new Counter({
      name: "sluice_status_writes_total",
      help: "Status writes by kind and result (written, conflict, retried, gone, failed).",
      labelNames: ["kind", "result"],
      registers: [opts.registry ?? new Registry()],
    });
    this.queue = new KeyedQueue<Job>(opts.concurrency ?? 8, (key, job, signal) => this.run(key, job, signal), (key, err) => {
      this.log.error({ err, object: key }, "status write crashed");
    });
  }

  /**
   * Queues a write for every status in `result` that differs from the object in `snapshot` (or
   * from what this writer last wrote, when the snapshot has not caught up yet). Also removes our
   * parents entries from Routes that no longer attach to any of our Gateways. Returns how many
   * objects were queued.
   */
  update(result: TranslateResult, snapshot: Snapshot): number {
    if (!this.isLeader()) {
      this.wasLeader = false;
      return 0;
    }
    if (!this.wasLeader) {
      // (Re)gained leadership: what we checked as a follower, or before, proves nothing now.
      this.wasLeader = true;
      this.checked.clear();
    }
    let queued = 0;
    const checked = new Map<string, { desired: unknown; live: unknown }>();
    for (const [key, os] of result.statuses) {
      const live = this.liveOf(os, snapshot);
      const prev = this.checked.get(key);
      if (prev && prev.desired === os.status && prev.live === live && !this.written.has(key)) {
        checked.set(key, prev);
        continue;
      }
      if (this.consider(key, os.kind, os.status, live)) queued++;
      checked.set(key, { desired: os.status, live });
    }
    this.checked = checked;
    // Routes (and policies) whose status still carries our entries but that the translator no
    // longer gives a status: they left our Gateways, so our entries must go.
    for (const kind of [...ROUTE_KINDS, "BackendTLSPolicy" as const]) {
      for (const [objKey, obj] of snapshot.objects[kind] as ReadonlyMap<string, K8sObject>) {
        const key = `${kind}/${objKey}`;
        if (result.statuses.has(key)) continue;
        const base = this.base(key, obj);
        if (!hasOurSharedEntries(base.status, this.controllerName)) continue;
        const list = kind === "BackendTLSPolicy" ? "ancestors" : "parents";
        if (this.consider(key, kind, { [list]: [] }, obj)) queued++;
      }
    }
    return queued;
  }

  /** Successful status writes so far (also `sluice_status_writes_total{result="written"}`). */
  writeCount(): number {
    return this.writes;
  }

  /** HTTP requests made so far (writes, conflicting writes and re-reads). */
  requestCount(): number {
    return this.requests;
  }

  /** Objects waiting or being written. */
  pending(): number {
    return this.queue.size;
  }

  idle(): Promise<void> {
    return this.queue.idle();
  }

  /** Forgets queued work (leadership lost, shutdown). */
  stop(): void {
    this.queue.stop();
  }

  private liveOf(os: ObjectStatus, snapshot: Snapshot): K8sObject | undefined {
    const coll = (snapshot.objects as unknown as Record<string, ReadonlyMap<string, K8sObject> | undefined>)[os.kind];
    return coll?.get(objectKey(os.namespace, os.name));
  }

  /** The object to compare against: the snapshot's, unless we already wrote on top of exactly that version. */
  private base(key: string, live: K8sObject): K8sObject {
    const ours = this.newerWrite(key, live);
    if (ours) return ours;
    this.written.delete(key); // caught up (same version) or changed by someone else: the snapshot is right
    return live;
  }

  /** Our last write of `key`, when `seen` is a version that write replaced (the watch lags behind it). */
  private newerWrite(key: string, seen: K8sObject): K8sObject | undefined {
    const w = this.written.get(key);
    const rv = seen.metadata.resourceVersion;
    return w && rv !== undefined && w.olderRvs.has(rv) ? w.object : undefined;
  }

  private consider(key: string, kind: string, desired: Record<string, unknown>, live: K8sObject | undefined): boolean {
    if (!live) {
      this.queue.cancel(key); // deleted meanwhile: nothing to write on
      return false;
    }
    if (kind === "GatewayClass" && (live.spec as { controllerName?: unknown } | undefined)?.controllerName !== this.controllerName) return false;
    const object = this.base(key, live);
    const next = mergeStatus(desired, object.status, { controllerName: this.controllerName, now: rfc3339(this.now()) });
    if (statusEqual(next, object.status)) {
      this.queue.cancel(key);
      return false;
    }
    this.queue.push(key, { kind, desired, object });
    return true;
  }

  private async run(key: string, job: Job, signal: AbortSignal): Promise<void> {
    let settled = false;
    try {
      settled = await this.attempt(key, job, signal);
    } finally {
      // Not written and not moot (leadership lost, aborted, gave up): check it again next time.
      if (!settled) this.checked.delete(key);
    }
  }

  /** Returns true when the object is settled: written, already right, or gone. */
  private async attempt(key: string, job: Job, signal: AbortSignal): Promise<boolean> {
    // Queued while our previous write of this object was in flight: build on what that wrote,
    // not on the version it replaced, or the write is a certain 409 and a re-read.
    let object = this.newerWrite(key, job.object) ?? job.object;
    let conflicts = 0;
    let failures = 0;
    for (;;) {
      if (signal.aborted || !this.isLeader() || this.queue.hasPending(key)) return false; // a newer desired status supersedes this one
      const next = mergeStatus(job.desired, object.status, { controllerName: this.controllerName, now: rfc3339(this.now()) });
      if (statusEqual(next, object.status)) return true;
      const res = resourceOf(object.kind, object.apiVersion);
      if (!res) {
        this.log.warn({ object: key, apiVersion: object.apiVersion }, "status not written: not a kind Sluice writes");
        return true;
      }
      // managedFields left out: an update that carries them would overwrite the server's record.
      const { managedFields: _omit, ...metadata } = object.metadata as K8sObject["metadata"] & { managedFields?: unknown };
      const body = { ...object, metadata, status: next };
      const name = object.metadata.name;
      const namespace = object.metadata.namespace;
      try {
        this.requests++;
        const params = { group: res.group, version: res.version, plural: res.plural, name, body };
        const written = (res.info.namespaced
          ? await this.api.replaceNamespacedCustomObjectStatus({ ...params, namespace: namespace ?? "default" }, this.callOpts)
          : await this.api.replaceClusterCustomObjectStatus(params, this.callOpts)) as K8sObject;
        this.writes++;
        this.counter.inc({ kind: job.kind, result: "written" });
        this.remember(key, [job.object, object], { ...body, ...written, status: written?.status ?? next });
        this.afterWrite(object, next);
        return true;
      } catch (err) {
        const f = apiFailure(err);
        if (f.status === 404) {
          this.counter.inc({ kind: job.kind, result: "gone" });
          this.written.delete(key);
          return true;
        }
        if (f.status === 409 && ++conflicts < this.conflictAttempts) {
          this.counter.inc({ kind: job.kind, result: "conflict" });
          // A short jittered pause (client-go's RetryOnConflict: 10 ms steps) so two writers racing
          // on the same Route do not collide again in lockstep.
          if (conflicts > 1 && !(await pause(backoffDelay(conflicts - 1, { initialMs: 10, maxMs: 1000 }), signal))) return false;
          const fresh = await this.read(res.info.namespaced, res, name, namespace, signal);
          if (fresh === "gone") {
            this.written.delete(key);
            return true;
          }
          if (fresh) object = fresh;
          else if (!(await pause(backoffDelay(conflicts, this.backoff), signal))) return false;
          continue;
        }
        if (isRetryable(f) && ++failures < this.retryAttempts) {
          this.counter.inc({ kind: job.kind, result: "retried" });
          if (!(await pause(backoffDelay(failures, this.backoff, f.retryAfterMs), signal))) return false;
          continue;
        }
        this.counter.inc({ kind: job.kind, result: "failed" });
        this.written.delete(key);
        this.log.warn({ object: key, status: f.status }, `status write failed: ${f.message}`);
        this.events?.record(involvedOf(object), "Warning", "StatusWriteFailed", `Sluice could not write the status (HTTP ${f.status || "no answer"}): ${f.message}`);
        return false;
      }
    }
  }

  private remember(key: string, bases: K8sObject[], object: K8sObject): void {
    const prev = this.written.get(key);
    const older = new Set<string>(prev ? [...prev.olderRvs, prev.object.metadata.resourceVersion ?? ""] : []);
    for (const b of bases) if (b.metadata.resourceVersion) older.add(b.metadata.resourceVersion);
    older.delete("");
    older.delete(object.metadata.resourceVersion ?? "");
    while (older.size > MAX_OLDER_RVS) older.delete(older.values().next().value as string);
    this.written.set(key, { olderRvs: older, object });
  }

  /** A fresh copy after a conflict; "gone" when deleted; undefined when the read itself failed. */
  private async read(namespaced: boolean, res: { group: string; version: string; plural: string }, name: string, namespace: string | undefined, signal: AbortSignal): Promise<K8sObject | "gone" | undefined> {
    if (signal.aborted) return undefined;
    try {
      this.requests++;
      const params = { group: res.group, version: res.version, plural: res.plural, name };
      return (namespaced
        ? await this.api.getNamespacedCustomObject({ ...params, namespace: namespace ?? "default" }, this.callOpts)
        : await this.api.getClusterCustomObject(params, this.callOpts)) as K8sObject;
    } catch (err) {
      return apiFailure(err).status === 404 ? "gone" : undefined;
    }
  }

  /** Events for conditions a user must see: a class or Gateway rejected for its parameters. */
  private afterWrite(object: K8sObject, next: Json): void {
    if (!this.events || (object.kind !== "GatewayClass" && object.kind !== "Gateway")) return;
    const accepted = topCondition(next, "Accepted");
    if (!accepted || accepted.status !== "False" || accepted.reason !== "InvalidParameters") return;
    const before = topCondition(object.status, "Accepted");
    if (before && before.status === "False" && before.reason === "InvalidParameters" && before.message === accepted.message) return;
    this.events.record(involvedOf(object), "Warning", "InvalidParameters", String(accepted.message ?? "invalid parameters"));
  }
}

export function involvedOf(obj: K8sObject): { apiVersion: string; kind: string; name: string; namespace?: string; uid?: string } {
  return {
    apiVersion: obj.apiVersion,
    kind: obj.kind,
    name: obj.metadata.name,
    ...(obj.metadata.namespace ? { namespace: obj.metadata.namespace } : {}),
    ...(obj.metadata.uid ? { uid: obj.metadata.uid } : {}),
  };
}
