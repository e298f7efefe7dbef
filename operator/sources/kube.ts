// The cluster as a source: one list+watch per kind Sluice reads (kinds.ts), at the version the
// cluster serves, feeding the same SourceEvents as the folder source. Each kind is its own source
// name and sends SYNCED once its first list is in (or at once when its CRD is not installed), so a
// store created with `sources: kubeSourceNames()` takes its first snapshot only when it is complete.
// Discovery is re-checked periodically: a CRD installed later is picked up, a served version change
// switches the watch, and a CRD removed for good turns its objects into DELETED events.
import { Observable } from "rxjs";
import type { Logger } from "pino";
import { KINDS, KIND_NAMES, apiVersionOf, type KindName } from "../api/kinds.ts";
import type { K8sObject, Secret } from "../api/objects.ts";
import type { SourceEvent } from "./events.ts";
import { Backoff, sleep, type KubeApi } from "./kubeapi.ts";
import { discoverKinds, type KindDiscovery } from "./kubediscovery.ts";
import { newKindState, runReflector, sourceNameOf, type KindState, type SourceMetrics } from "./kubereflector.ts";

export type { SourceMetrics, KindState } from "./kubereflector.ts";
export { sourceNameOf } from "./kubereflector.ts";

export const TLS_SECRET_TYPE = "kubernetes.io/tls";

export interface KubeSourceOptions {
  api: KubeApi;
  log: Logger;
  /** Kinds to watch; default every kind in kinds.ts. */
  kinds?: readonly KindName[];
  /** How often discovery is re-checked for CRDs installed, upgraded or removed; default 30 s. */
  discoveryIntervalMs?: number;
  backoff?: { initialMs?: number; maxMs?: number };
  /** Server-side timeout of one watch request (jittered up to twice this); default 300 s. */
  watchTimeoutSeconds?: number;
  pageSize?: number;
  metrics?: SourceMetrics;
  /** Receives the per-kind state, for health checks. */
  monitor?: SourceMonitor;
}

/** The source names a store must wait for (StoreOptions.sources). */
export function kubeSourceNames(kinds: readonly KindName[] = KIND_NAMES): string[] {
  return kinds.map(sourceNameOf);
}

/** Live per-kind state of the cluster source, read by /healthz and /readyz. */
export class SourceMonitor {
  readonly kinds = new Map<KindName, KindState>();

  /** Every kind has its initial state (listed, or known not to be served). */
  synced(): boolean {
    return this.kinds.size > 0 && [...this.kinds.values()].every((s) => s.synced);
  }

  unsynced(): KindName[] {
    return [...this.kinds.values()].filter((s) => !s.synced).map((s) => s.kind);
  }

  /** Served kinds with no open watch and no progress for longer than `afterMs`. */
  wedged(afterMs: number, now = Date.now()): { kind: KindName; since: number; error: string | undefined }[] {
    return [...this.kinds.values()]
      .filter((s) => s.version !== undefined && !s.connected && now - s.lastProgress > afterMs)
      .map((s) => ({ kind: s.kind, since: s.lastProgress, error: s.lastError }));
  }
}

/**
 * A cold Observable: subscribing starts discovery and the watches, unsubscribing stops them.
 * It never errors; API failures are logged and retried with backoff.
 */
export function watchCluster(opts: KubeSourceOptions): Observable<SourceEvent> {
  const kinds = opts.kinds ?? KIND_NAMES;
  const log = opts.log;
  const discoveryIntervalMs = opts.discoveryIntervalMs ?? 30_000;

  return new Observable<SourceEvent>((subscriber) => {
    const stop = new AbortController();
    const states = new Map<KindName, KindState>(kinds.map((k) => [k, newKindState(k)]));
    for (const [k, s] of states) opts.monitor?.kinds.set(k, s);
    const running = new Map<KindName, { version: string; ctl: AbortController; done: Promise<void> }>();
    /** Kinds discovery found missing last time: removal needs two looks in a row. */
    const missingOnce = new Set<KindName>();
    const reported = new Map<KindName, string>();
    const emit = (e: SourceEvent): void => subscriber.next(e);

    const startKind = (kind: KindName, version: string): void => {
      const state = states.get(kind);
      if (!state) return;
      state.version = version;
      const ctl = new AbortController();
      const isSecret = kind === "Secret";
      const done = runReflector({
        api: opts.api, info: KINDS[kind], version, state, emit, log, metrics: opts.metrics,
        backoff: opts.backoff, watchTimeoutSeconds: opts.watchTimeoutSeconds, pageSize: opts.pageSize,
        // Only TLS Secrets are read: the field selector keeps the rest (tokens, passwords, Helm
        // release blobs) out of memory, and the filter guards against a server that ignores it.
        fieldSelector: isSecret ? `type=${TLS_SECRET_TYPE}` : undefined,
        accept: isSecret ? (o: K8sObject) => (o as Secret).type === TLS_SECRET_TYPE : undefined,
      }, AbortSignal.any([stop.signal, ctl.signal]));
      running.set(kind, { version, ctl, done });
    };

    const stopKind = async (kind: KindName): Promise<void> => {
      const r = running.get(kind);
      if (!r) return;
      running.delete(kind);
      r.ctl.abort();
      await r.done;
    };

    const apply = async (found: Map<KindName, KindDiscovery>, initial: boolean): Promise<void> => {
      for (const kind of kinds) {
        const state = states.get(kind);
        const d = found.get(kind);
        if (!state || !d) continue;
        const note = d.unknownVersions.length
          ? `${kind} is served at ${d.unknownVersions.map((v) => apiVersionOf(KINDS[kind], v)).join(", ")}, which Sluice does not read${d.version ? `; reading ${apiVersionOf(KINDS[kind], d.version)}` : ""}`
          : "";
        if (note && reported.get(kind) !== note) log.warn({ kind }, note);
        reported.set(kind, note);

        const current = running.get(kind);
        if (d.version) {
          missingOnce.delete(kind);
          if (current?.version === d.version) continue;
          if (current) {
            log.info({ kind, from: current.version, to: d.version }, `${kind}: the cluster now serves ${d.version}; switching`);
            await stopKind(kind);
          } else if (!initial) {
            log.info({ kind, version: d.version }, `${kind} is now served (${apiVersionOf(KINDS[kind], d.version)}); watching it`);
          }
          startKind(kind, d.version);
          continue;
        }
        // Not served. At start that is simply an empty, complete state.
        if (!state.synced) {
          state.synced = true;
          state.version = undefined;
          opts.metrics?.synced(kind, true);
          log.info({ kind }, `${kind} is not served by this cluster (CRD not installed); checking again every ${Math.round(discoveryIntervalMs / 1000)} s`);
          emit({ type: "SYNCED", source: sourceNameOf(kind) });
          continue;
        }
        if (!current) continue;
        // A discovery document can miss a group for a moment (a CRD being updated); only a kind
        // missing twice in a row is taken as removed, which deletes all its objects downstream.
        if (!missingOnce.has(kind)) {
          missingOnce.add(kind);
          continue;
        }
        missingOnce.delete(kind);
        log.warn({ kind }, `${kind} is no longer served (CRD removed); forgetting its ${state.known.size} objects`);
        await stopKind(kind);
        state.version = undefined;
        for (const obj of state.known.values()) emit({ type: "DELETED", kind, object: obj });
        state.known.clear();
      }
    };

    const loop = async (): Promise<void> => {
      const backoff = new Backoff(opts.backoff?.initialMs ?? 500, opts.backoff?.maxMs ?? 30_000);
      let initial = true;
      while (!stop.signal.aborted) {
        let found: Map<KindName, KindDiscovery>;
        try {
          found = await discoverKinds(opts.api, kinds, stop.signal);
        } catch (err) {
          if (stop.signal.aborted) break;
          // Until the first discovery succeeds nothing is watched; later, the watches keep going.
          const e = err as { status?: number; retryAfterMs?: number; message?: string };
          const delay = initial ? backoff.next(e.retryAfterMs) : discoveryIntervalMs;
          log.warn({ status: e.status, retryInMs: delay }, `API discovery failed: ${e.message ?? String(err)}`);
          await sleep(delay, stop.signal);
          continue;
        }
        backoff.reset();
        await apply(found, initial);
        initial = false;
        await sleep(discoveryIntervalMs, stop.signal);
      }
    };

    const done = loop().catch((err: unknown) => log.error({ err }, "cluster source failed"));
    return () => {
      stop.abort();
      void done.then(() => Promise.all([...running.values()].map((r) => r.done)));
      for (const k of kinds) {
        const s = states.get(k);
        if (s && opts.monitor?.kinds.get(k) === s) opts.monitor.kinds.delete(k);
      }
    };
  });
}
