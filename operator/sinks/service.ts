// The Service applier: each Gateway's generated Service (translate/service.ts) goes to the API
// server with server-side apply under the field manager `sluice`, and Services Sluice made but no
// longer wants are swept.
//
// - SSA: our applied configuration is the whole truth of what Sluice owns. A label or annotation
//   dropped from it is removed by the API server (Cilium #34155, where merged annotations lingered
//   forever); fields other managers own (a webhook's `spec.loadBalancerClass`, the cloud
//   controller's status, allocated nodePorts and clusterIPs) are left alone. force=true takes our
//   own fields back if someone edited them.
// - loadBalancerClass: only sent when the GatewayClassConfig sets one. A class set by someone else
//   (the AWS Load Balancer Controller's mutating webhook, Cilium #28949) is echoed back unchanged
//   when we have seen it, so an apply can never try to remove an immutable field.
// - No-op detection: the applied configuration's hash rides on the Service as an annotation; an
//   unchanged Gateway whose Service still carries our fields and hash costs no request.
// - Ownership: controller ownerReference to the Gateway (uid from the snapshot), so Kubernetes
//   garbage-collects the Service with its Gateway. We never take over a Service we did not create
//   (same name, no managed-by label): that is a conflict reported as an Event.
// - Sweep: lists Services labelled managed-by=sluice and deletes those not desired, only when they
//   carry our controller ownerReference and their Gateway is gone or no longer ours. A Gateway of
//   ours that is rejected for now (say, a broken GatewayClassConfig) keeps its Service: deleting it
//   would destroy the load balancer and its address over a typo.
// - No finalizer: nothing outside the cluster is created by this sink (the AWS Load Balancer
//   Controller owns the NLB and has its own finalizer `service.k8s.aws/resources`).
import { createHash } from "node:crypto";
import { CoreV1Api, PatchStrategy, setHeaderOptions, type ConfigurationOptions, type KubeConfig, type ObservableMiddleware } from "@kubernetes/client-node";
import { Counter, Registry } from "prom-client";
import { GATEWAY_GROUP } from "../api/kinds.ts";
import { objectKey, type Gateway, type Service } from "../api/objects.ts";
import type { Snapshot } from "../store/snapshot.ts";
import { CONTROLLER_NAME } from "../translate/gatewayclass.ts";
import type { TranslateResult } from "../translate/output.ts";
import { MANAGED_BY_LABEL, MANAGED_BY_VALUE, generatedServiceName } from "../translate/service.ts";
import type { EventRecorder } from "./events.ts";
import { apiFailure, backoffDelay, isRetryable, jsonEqual, pause, pooledCallOptions, silentLogger, type BackoffOptions, type SinkLogger } from "./kube.ts";
import { KeyedQueue } from "./queue.ts";
import { involvedOf } from "./status.ts";

export const FIELD_MANAGER = "sluice";
/** Hash of the configuration last applied; lets an unchanged Gateway cost no request. */
export const CONFIG_HASH_ANNOTATION = "sluice.dev/applied-config-hash";

export interface ServiceApplierOptions {
  kubeConfig: KubeConfig;
  isLeader?: () => boolean;
  fieldManager?: string;
  controllerName?: string;
  /** Services applied in parallel. Default 4. */
  concurrency?: number;
  /** Attempts per apply on 429/5xx/no answer. Default 6. */
  retryAttempts?: number;
  backoff?: BackoffOptions;
  /** A Service missing from the snapshot right after we applied it is the watch lagging; after this it is re-applied. Default 30 s. */
  watchLagMs?: number;
  events?: EventRecorder;
  log?: SinkLogger;
  registry?: Registry;
}

interface Job {
  config: Service;
  hash: string;
  gateway: Gateway;
  /** The live Service from the snapshot, if it holds one. */
  live: Service | undefined;
}

interface Applied {
  hash: string;
  /** resourceVersions that are this apply's result or older. */
  rvs: Set<string>;
  at: number;
  /** spec.loadBalancerClass the API server answered with (a webhook may have set it). */
  loadBalancerClass?: string;
}

type Verdict = "desired" | "not-ours" | "keep" | "delete";

export class ServiceApplier {
  private readonly core: CoreV1Api;
  private readonly callOpts: ConfigurationOptions<ObservableMiddleware>;
  private readonly applyOpts: ConfigurationOptions<ObservableMiddleware>;
  private readonly isLeader: () => boolean;
  private readonly fieldManager: string;
  private readonly controllerName: string;
  private readonly retryAttempts: number;
  private readonly backoff: BackoffOptions;
  private readonly watchLagMs: number;
  private readonly events: EventRecorder | undefined;
  private readonly log: SinkLogger;
  private readonly queue: KeyedQueue<Job>;
  private readonly applied = new Map<string, Applied>();
  /** Keys whose name we checked is free or ours (a user's Service of the same name is never taken over). */
  private readonly cleared = new Set<string>();
  private readonly counter: Counter<"result">;
  private desiredKeys = new Set<string>();
  private lastSnapshot: Snapshot | undefined;
  private wasLeader = false;
  private sweepRunning: Promise<number> | undefined;
  private sweepAgain = false;
  private applies = 0;
  private deletes = 0;
  private requests = 0;

  constructor(opts: ServiceApplierOptions) {
    this.core = opts.kubeConfig.makeApiClient(CoreV1Api);
    this.callOpts = pooledCallOptions(opts.kubeConfig);
    this.applyOpts = pooledCallOptions(opts.kubeConfig, setHeaderOptions("Content-Type", PatchStrategy.ServerSideApply));
    this.isLeader = opts.isLeader ?? (() => true);
    this.fieldManager = opts.fieldManager ?? FIELD_MANAGER;
    this.controllerName = opts.controllerName ?? CONTROLLER_NAME;
    this.retryAttempts = opts.retryAttempts ?? 6;
    this.backoff = opts.backoff ?? {};
    this.watchLagMs = opts.watchLagMs ?? 30_000;
    this.events = opts.events;
    this.log = opts.log ?? silentLogger;
    this.counter = new Counter({
      name: "sluice_service_operations_total",
      help: "Generated Service operations by result (applied, unchanged, deleted, conflict, failed).",
      labelNames: ["result"],
      registers: [opts.registry ?? new Registry()],
    });
    this.queue = new KeyedQueue<Job>(opts.concurrency ?? 4, (key, job, signal) => this.run(key, job, signal), (key, err) => {
      this.log.error({ err, service: key }, "service apply crashed");
    });
  }

  /**
   * Queues an apply for every desired Service that is not already in place, and a sweep when a
   * Service of ours may have become unwanted. Returns how many applies were queued.
   */
  update(result: TranslateResult, snapshot: Snapshot): number {
    if (!this.isLeader()) {
      this.wasLeader = false;
      return 0;
    }
    let sweep = false;
    if (!this.wasLeader) {
      // (Re)gained leadership: another replica may have changed things meanwhile.
      this.wasLeader = true;
      this.applied.clear();
      this.cleared.clear();
      sweep = true;
    }
    this.lastSnapshot = snapshot;
    const next = new Set<string>();
    let queued = 0;
    for (const desired of result.services) {
      const key = objectKey(desired.metadata.namespace, desired.metadata.name);
      next.add(key);
      const gateway = ownerGateway(desired, snapshot);
      if (!gateway?.metadata.uid) {
        this.log.warn({ service: key }, "service not applied: its Gateway has no uid in the snapshot");
        continue;
      }
      const live = snapshot.objects.Service.get(key);
      const { config, hash } = this.appliedConfig(desired, gateway, live, this.applied.get(key));
      if (this.upToDate(key, config, hash, live)) {
        this.queue.cancel(key);
        continue;
      }
      this.queue.push(key, { config, hash, gateway, live });
      queued++;
    }
    for (const k of this.desiredKeys) if (!next.has(k)) sweep = true;
    for (const k of this.desiredKeys) if (!next.has(k)) this.queue.cancel(k);
    this.desiredKeys = next;
    if (!sweep) {
      for (const svc of snapshot.objects.Service.values()) {
        if (this.verdict(svc, snapshot) === "delete") {
          sweep = true;
          break;
        }
      }
    }
    if (sweep) void this.sweep().catch((err: unknown) => this.log.warn({ err }, "sweep failed"));
    return queued;
  }

  /**
   * Lists every Service labelled managed-by=sluice and deletes those that are ours and no longer
   * wanted (see the file comment for what "ours" means). Returns how many were deleted. Calls
   * during a running sweep make it run once more afterwards.
   */
  sweep(): Promise<number> {
    if (this.sweepRunning) {
      this.sweepAgain = true;
      return this.sweepRunning;
    }
    const run = async (): Promise<number> => {
      let total = 0;
      do {
        this.sweepAgain = false;
        total += await this.sweepOnce();
      } while (this.sweepAgain && this.isLeader());
      return total;
    };
    this.sweepRunning = run().finally(() => {
      this.sweepRunning = undefined;
    });
    return this.sweepRunning;
  }

  applyCount(): number {
    return this.applies;
  }

  deleteCount(): number {
    return this.deletes;
  }

  requestCount(): number {
    return this.requests;
  }

  /** Resolves once queued applies and a running sweep are done. */
  async idle(): Promise<void> {
    for (;;) {
      await this.queue.idle();
      if (this.sweepRunning) await this.sweepRunning.catch(() => 0);
      if (this.queue.size === 0 && !this.sweepRunning) return;
    }
  }

  stop(): void {
    this.queue.stop();
  }

  /** The object we apply: the translator's Service, our owner reference, the hash, and a seen loadBalancerClass. */
  private appliedConfig(desired: Service, gateway: Gateway, live: Service | undefined, applied: Applied | undefined): { config: Service; hash: string } {
    const md = desired.metadata;
    const base: Service = {
      apiVersion: "v1",
      kind: "Service",
      metadata: {
        name: md.name,
        ...(md.namespace ? { namespace: md.namespace } : {}),
        labels: { ...md.labels, [MANAGED_BY_LABEL]: MANAGED_BY_VALUE },
        ...(md.annotations ? { annotations: { ...md.annotations } } : {}),
        ownerReferences: [{
          apiVersion: gateway.apiVersion || `${GATEWAY_GROUP}/v1`,
          kind: "Gateway",
          name: gateway.metadata.name,
          uid: gateway.metadata.uid as string,
          controller: true,
          blockOwnerDeletion: true,
        }],
      },
      spec: { ...desired.spec },
    };
    const hash = createHash("sha256").update(canonical(base)).digest("hex").slice(0, 16);
    base.metadata.annotations = { ...base.metadata.annotations, [CONFIG_HASH_ANNOTATION]: hash };
    // A class someone else set stays: we echo it (it is immutable) instead of leaving it out,
    // which would make SSA try to remove it if the API server ever attributed it to us.
    const spec = base.spec ?? {};
    if (spec.type !== "NodePort" && !spec.loadBalancerClass) {
      const seen = live?.spec?.loadBalancerClass ?? applied?.loadBalancerClass;
      if (seen) spec.loadBalancerClass = seen;
    }
    return { config: base, hash };
  }

  private upToDate(key: string, config: Service, hash: string, live: Service | undefined): boolean {
    if (live) {
      if (live.metadata.annotations?.[CONFIG_HASH_ANNOTATION] === hash && isSubset(config, live)) {
        this.counter.inc({ result: "unchanged" });
        return true;
      }
      const a = this.applied.get(key);
      // The snapshot still shows the version before (or of) our last apply of this very config.
      return !!a && a.hash === hash && live.metadata.resourceVersion !== undefined && a.rvs.has(live.metadata.resourceVersion);
    }
    const a = this.applied.get(key);
    return !!a && a.hash === hash && Date.now() - a.at < this.watchLagMs;
  }

  private async run(key: string, job: Job, signal: AbortSignal): Promise<void> {
    const { config } = job;
    const name = config.metadata.name;
    const namespace = config.metadata.namespace ?? "default";
    if (!(await this.nameIsOurs(key, job, signal))) return;
    let failures = 0;
    for (;;) {
      if (signal.aborted || !this.isLeader() || this.queue.hasPending(key)) return;
      try {
        this.requests++;
        const res = (await this.core.patchNamespacedService(
          { name, namespace, body: config, fieldManager: this.fieldManager, force: true },
          this.applyOpts,
        )) as unknown as Service;
        this.applies++;
        this.counter.inc({ result: "applied" });
        const prev = this.applied.get(key);
        const rvs = new Set<string>(prev && prev.hash === job.hash ? prev.rvs : []);
        if (job.live?.metadata.resourceVersion) rvs.add(job.live.metadata.resourceVersion);
        if (res?.metadata?.resourceVersion) rvs.add(res.metadata.resourceVersion);
        const lbClass = res?.spec?.loadBalancerClass;
        this.applied.set(key, { hash: job.hash, rvs, at: Date.now(), ...(lbClass ? { loadBalancerClass: lbClass } : {}) });
        return;
      } catch (err) {
        const f = apiFailure(err);
        if (isRetryable(f) && ++failures < this.retryAttempts) {
          if (!(await pause(backoffDelay(failures, this.backoff, f.retryAfterMs), signal))) return;
          continue;
        }
        this.applied.delete(key);
        this.counter.inc({ result: "failed" });
        this.log.warn({ service: key, status: f.status }, `service apply failed: ${f.message}`);
        this.events?.record(involvedOf(job.gateway), "Warning", "ServiceApplyFailed", `Service ${name} was not applied (HTTP ${f.status || "no answer"}): ${f.message}`);
        return;
      }
    }
  }

  /** Before the first apply of a name: is it free, or a Service we made? Never take over a user's. */
  private async nameIsOurs(key: string, job: Job, signal: AbortSignal): Promise<boolean> {
    if (this.cleared.has(key)) return true;
    let existing: Service | undefined = job.live;
    if (!existing) {
      for (let attempt = 1; ; attempt++) {
        if (signal.aborted) return false;
        try {
          this.requests++;
          existing = (await this.core.readNamespacedService({ name: job.config.metadata.name, namespace: job.config.metadata.namespace ?? "default" }, this.callOpts)) as unknown as Service;
          break;
        } catch (err) {
          const f = apiFailure(err);
          if (f.status === 404) break;
          if (!isRetryable(f) || attempt >= this.retryAttempts) {
            this.log.warn({ service: key, status: f.status }, `service not applied: cannot read it: ${f.message}`);
            return false;
          }
          if (!(await pause(backoffDelay(attempt, this.backoff, f.retryAfterMs), signal))) return false;
        }
      }
    }
    if (existing && existing.metadata?.labels?.[MANAGED_BY_LABEL] !== MANAGED_BY_VALUE) {
      this.counter.inc({ result: "conflict" });
      this.log.warn({ service: key }, "service not applied: a Service of that name exists and is not managed by Sluice");
      this.events?.record(involvedOf(job.gateway), "Warning", "ServiceNameConflict",
        `Service ${key} exists and is not managed by Sluice (no ${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE} label); Sluice leaves it alone`);
      return false;
    }
    this.cleared.add(key);
    return true;
  }

  /** Whether a Service is ours and unwanted; the same rule for the snapshot check and the sweep. */
  private verdict(svc: Service, snapshot: Snapshot | undefined): Verdict {
    const key = objectKey(svc.metadata.namespace, svc.metadata.name);
    if (this.desiredKeys.has(key)) return "desired";
    if (svc.metadata.labels?.[MANAGED_BY_LABEL] !== MANAGED_BY_VALUE) return "not-ours";
    const owner = svc.metadata.ownerReferences?.find((o) => o.controller === true);
    if (!owner || owner.kind !== "Gateway" || !owner.apiVersion.startsWith(`${GATEWAY_GROUP}/`)) return "not-ours";
    if (generatedServiceName(owner.name) !== svc.metadata.name) return "not-ours";
    const managers = (svc.metadata as { managedFields?: { manager?: string }[] }).managedFields;
    if (Array.isArray(managers) && managers.length > 0 && !managers.some((m) => m.manager === this.fieldManager)) return "not-ours";
    if (svc.metadata.deletionTimestamp) return "keep"; // already going
    const gw = snapshot?.objects.Gateway.get(objectKey(svc.metadata.namespace, owner.name));
    if (gw && (!owner.uid || gw.metadata.uid === owner.uid) && this.isOurGateway(gw, snapshot)) return "keep";
    return "delete";
  }

  private isOurGateway(gw: Gateway, snapshot: Snapshot | undefined): boolean {
    const cls = snapshot?.objects.GatewayClass.get(gw.spec?.gatewayClassName ?? "");
    return cls?.spec?.controllerName === this.controllerName;
  }

  private async sweepOnce(): Promise<number> {
    if (!this.isLeader()) return 0;
    const snapshot = this.lastSnapshot;
    let items: Service[];
    try {
      this.requests++;
      const list = await this.core.listServiceForAllNamespaces({ labelSelector: `${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE}` }, this.callOpts);
      items = (list.items ?? []) as unknown as Service[];
    } catch (err) {
      const f = apiFailure(err);
      this.log.warn({ status: f.status }, `sweep: cannot list Services: ${f.message}`);
      return 0;
    }
    let deleted = 0;
    for (const svc of items) {
      if (!this.isLeader()) break;
      const verdict = this.verdict(svc, snapshot);
      const key = objectKey(svc.metadata.namespace, svc.metadata.name);
      if (verdict === "keep" && !svc.metadata.deletionTimestamp) {
        this.log.info({ service: key }, "sweep: keeping the Service of a Gateway that is ours but currently produces none");
      }
      if (verdict !== "delete") continue;
      try {
        this.requests++;
        await this.core.deleteNamespacedService({
          name: svc.metadata.name,
          namespace: svc.metadata.namespace ?? "default",
          // Only the exact object we judged: a Service re-created meanwhile is not ours to delete.
          body: { preconditions: { ...(svc.metadata.uid ? { uid: svc.metadata.uid } : {}), ...(svc.metadata.resourceVersion ? { resourceVersion: svc.metadata.resourceVersion } : {}) } },
        }, this.callOpts);
        deleted++;
        this.deletes++;
        this.counter.inc({ result: "deleted" });
        this.applied.delete(key);
        this.cleared.delete(key);
        this.log.info({ service: key }, "sweep: deleted a Service Sluice no longer wants");
      } catch (err) {
        const f = apiFailure(err);
        if (f.status === 404 || f.status === 409) continue; // gone already, or changed: the next sweep judges again
        this.log.warn({ service: key, status: f.status }, `sweep: delete failed: ${f.message}`);
      }
    }
    return deleted;
  }
}

/** The Gateway a desired Service belongs to (the translator sets the owner reference's name). */
function ownerGateway(svc: Service, snapshot: Snapshot): Gateway | undefined {
  const owner = svc.metadata.ownerReferences?.find((o) => o.kind === "Gateway");
  if (!owner) return undefined;
  return snapshot.objects.Gateway.get(objectKey(svc.metadata.namespace, owner.name));
}

/** Canonical JSON: sorted keys, so the hash does not depend on insertion order. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (typeof v === "object" && v !== null) {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o).filter((k) => o[k] !== undefined).sort().map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`).join(",")}}`;
  }
  return JSON.stringify(v) ?? "null";
}

/**
 * Whether every field of `want` is in `have` with the same value (lists element by element, same
 * length). Fields only `have` carries (nodePort, clusterIP, other managers' annotations) are fine.
 */
export function isSubset(want: unknown, have: unknown): boolean {
  if (Array.isArray(want)) {
    if (!Array.isArray(have) || have.length !== want.length) return false;
    return want.every((w, i) => isSubset(w, have[i]));
  }
  if (typeof want === "object" && want !== null) {
    if (typeof have !== "object" || have === null || Array.isArray(have)) return false;
    const h = have as Record<string, unknown>;
    return Object.entries(want as Record<string, unknown>).every(([k, v]) => v === undefined || isSubset(v, h[k]));
  }
  return jsonEqual(want, have);
}
