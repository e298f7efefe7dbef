// Leader election on a coordination.k8s.io/v1 Lease, following client-go's leaderelection:
// a candidate takes the Lease when it is free or its holder stopped renewing for longer than
// leaseDurationSeconds (measured on this replica's own clock, from when the Lease last changed, so
// clock skew between nodes does not matter); every write carries the resourceVersion that was
// read, so two candidates can never both win. The leader renews every retryPeriod and gives up
// the moment it cannot renew within renewDeadline or sees another holder: onStoppedLeading runs
// before any further write could be made.
import type { Logger } from "pino";
import { ApiError, sleep, type KubeApi } from "../sources/kubeapi.ts";

export interface LeaderElectionOptions {
  api: KubeApi;
  namespace: string;
  /** Lease name; default `sluice-operator`. */
  name?: string;
  /** This replica's identity (the pod name and a random suffix). */
  identity: string;
  /** How long a Lease is valid without renewal; default 15 s. Stored as whole seconds. */
  leaseDurationMs?: number;
  /** The leader gives up if it could not renew for this long; default 10 s (< leaseDuration). */
  renewDeadlineMs?: number;
  /** Pause between attempts to acquire or renew; default 2 s. */
  retryPeriodMs?: number;
  log: Logger;
  onStartedLeading: () => void;
  onStoppedLeading: () => void;
}

interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

interface Lease {
  apiVersion: "coordination.k8s.io/v1";
  kind: "Lease";
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec?: LeaseSpec;
}

/** MicroTime, as the API server writes it: RFC 3339 with microseconds. */
function microTime(d = new Date()): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}

export class LeaderElector {
  private readonly opts: Required<Omit<LeaderElectionOptions, "onStartedLeading" | "onStoppedLeading" | "log" | "api">>;
  private readonly api: KubeApi;
  private readonly log: Logger;
  private readonly started: () => void;
  private readonly stopped: () => void;
  private readonly path: string;
  private readonly stopCtl = new AbortController();
  private leading = false;
  /** Last Lease seen, and when (local monotonic clock) it last changed. */
  private observed: { key: string; at: number; lease: Lease } | undefined;
  private lastRenew = 0;
  private watchdog: NodeJS.Timeout | undefined;
  private loop: Promise<void> | undefined;

  constructor(opts: LeaderElectionOptions) {
    const leaseDurationMs = opts.leaseDurationMs ?? 15_000;
    const renewDeadlineMs = opts.renewDeadlineMs ?? Math.min(10_000, leaseDurationMs * 2 / 3);
    if (renewDeadlineMs >= leaseDurationMs) throw new Error("leader election: renewDeadline must be shorter than leaseDuration");
    this.opts = {
      namespace: opts.namespace, name: opts.name ?? "sluice-operator", identity: opts.identity,
      leaseDurationMs, renewDeadlineMs, retryPeriodMs: opts.retryPeriodMs ?? Math.min(2_000, renewDeadlineMs / 4),
    };
    this.api = opts.api;
    this.log = opts.log.child({ lease: `${this.opts.namespace}/${this.opts.name}`, identity: opts.identity });
    this.started = opts.onStartedLeading;
    this.stopped = opts.onStoppedLeading;
    this.path = `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(this.opts.namespace)}/leases`;
  }

  get identity(): string {
    return this.opts.identity;
  }

  isLeader(): boolean {
    return this.leading;
  }

  /** The current holder as last observed (undefined before the first read). */
  holder(): string | undefined {
    return this.observed?.lease.spec?.holderIdentity || undefined;
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** Stops campaigning; a leader steps down and releases the Lease so a standby takes over at once. */
  async stop(release = true): Promise<void> {
    this.stopCtl.abort();
    await this.loop;
    const wasLeading = this.leading;
    this.stepDown("stopping");
    if (release && wasLeading) await this.release();
  }

  private async run(): Promise<void> {
    const signal = this.stopCtl.signal;
    while (!signal.aborted) {
      const ok = await this.tryAcquireOrRenew().catch((err: unknown) => {
        const e = err as ApiError;
        if (!signal.aborted) this.log.warn({ status: e.status }, `leader election: ${e.message ?? String(err)}`);
        return false;
      });
      if (signal.aborted) break;
      if (ok) {
        this.lastRenew = performance.now();
        this.armWatchdog();
        if (!this.leading) {
          this.leading = true;
          this.log.info("became leader");
          this.started();
        }
      } else if (this.leading) {
        const other = this.holder();
        if (other && other !== this.opts.identity) this.stepDown(`the Lease is now held by ${other}`);
        // Otherwise the watchdog decides, once renewDeadline has passed without a renewal.
      }
      await sleep(this.opts.retryPeriodMs, signal);
    }
  }

  /** Fires at lastRenew + renewDeadline: leadership ends even while a request hangs. */
  private armWatchdog(): void {
    clearTimeout(this.watchdog);
    const left = this.lastRenew + this.opts.renewDeadlineMs - performance.now();
    this.watchdog = setTimeout(() => this.stepDown(`could not renew the Lease within ${this.opts.renewDeadlineMs} ms`), Math.max(0, left));
    this.watchdog.unref();
  }

  private stepDown(why: string): void {
    clearTimeout(this.watchdog);
    this.watchdog = undefined;
    if (!this.leading) return;
    this.leading = false;
    this.log.warn(`stopped leading: ${why}`);
    this.stopped();
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const nowDate = new Date();
    const now = performance.now();
    // A request must not outlive the time left to renew: a late success would be meaningless.
    const timeoutMs = this.leading ? Math.max(100, this.lastRenew + this.opts.renewDeadlineMs - now) : this.opts.renewDeadlineMs;
    const durationSeconds = Math.max(1, Math.ceil(this.opts.leaseDurationMs / 1000));
    let current: Lease;
    try {
      current = await this.api.request<Lease>("GET", `${this.path}/${encodeURIComponent(this.opts.name)}`, { timeoutMs, signal: this.stopCtl.signal });
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404)) throw err;
      const lease: Lease = {
        apiVersion: "coordination.k8s.io/v1", kind: "Lease",
        metadata: { name: this.opts.name, namespace: this.opts.namespace },
        spec: { holderIdentity: this.opts.identity, leaseDurationSeconds: durationSeconds, acquireTime: microTime(nowDate), renewTime: microTime(nowDate), leaseTransitions: 0 },
      };
      try {
        const created = await this.api.request<Lease>("POST", this.path, { body: lease, timeoutMs, signal: this.stopCtl.signal });
        this.observe(created, performance.now());
        return true;
      } catch (e) {
        if (e instanceof ApiError && e.status === 409) return false; // another candidate created it first
        throw e;
      }
    }

    this.observe(current, now);
    const spec = current.spec ?? {};
    const holder = spec.holderIdentity ?? "";
    const validMs = (spec.leaseDurationSeconds ?? durationSeconds) * 1000;
    const observedAt = this.observed?.at ?? now;
    if (holder && holder !== this.opts.identity && observedAt + validMs > now) return false;

    const mine = holder === this.opts.identity;
    const next: Lease = {
      ...current,
      spec: {
        ...spec,
        holderIdentity: this.opts.identity,
        leaseDurationSeconds: durationSeconds,
        renewTime: microTime(nowDate),
        acquireTime: mine && spec.acquireTime ? spec.acquireTime : microTime(nowDate),
        // As client-go: every change of holder counts, also taking over a released (empty) Lease.
        leaseTransitions: mine ? (spec.leaseTransitions ?? 0) : (spec.leaseTransitions ?? 0) + 1,
      },
    };
    try {
      // PUT with the resourceVersion just read: a concurrent writer makes this a 409.
      const updated = await this.api.request<Lease>("PUT", `${this.path}/${encodeURIComponent(this.opts.name)}`, { body: next, timeoutMs, signal: this.stopCtl.signal });
      this.observe(updated, performance.now());
      if (!mine) this.log.info({ previous: holder || undefined }, "acquired the Lease");
      return true;
    } catch (err) {
      if (err instanceof ApiError && err.status === 409) return false;
      throw err;
    }
  }

  private observe(lease: Lease, at: number): void {
    const s = lease.spec ?? {};
    const key = `${s.holderIdentity ?? ""}|${s.renewTime ?? ""}|${lease.metadata?.resourceVersion ?? ""}`;
    if (this.observed?.key !== key) this.observed = { key, at, lease };
  }

  private async release(): Promise<void> {
    const current = this.observed?.lease;
    if (!current || current.spec?.holderIdentity !== this.opts.identity) return;
    const now = microTime();
    try {
      await this.api.request("PUT", `${this.path}/${encodeURIComponent(this.opts.name)}`, {
        body: { ...current, spec: { ...current.spec, holderIdentity: "", leaseDurationSeconds: 1, renewTime: now, acquireTime: now } },
        timeoutMs: 2_000,
      });
      this.log.info("released the Lease");
    } catch (err) {
      // Not fatal: the Lease simply expires.
      this.log.warn(`could not release the Lease: ${(err as Error).message}`);
    }
  }
}
