// One kind's list+watch against the API server (a "reflector" in client-go's terms).
//
// client-node 2.x has ListWatch/makeInformer for this. It was evaluated and not used, because:
//  - it never asks for bookmarks (no allowWatchBookmarks), so a quiet kind's resourceVersion goes
//    stale and every reconnect after a compaction becomes a full re-list;
//  - on any error other than 410 or a client timeout it calls the error handlers and stops for
//    good: no retry, no backoff, and the Retry-After of a 429/503 is lost in Watch;
//  - the list is not paginated, and there is no "initial list done" signal to gate the store on;
//  - watch lines that are not JSON, or objects without metadata, are dropped silently.
// What it gets right is kept here: resume from the last seen resourceVersion, and on 410 a full
// re-list diffed against what is known, so objects deleted during the gap become DELETED events.
import type { Logger } from "pino";
import { apiVersionOf, type KindInfo, type KindName } from "../api/kinds.ts";
import { keyOf, type K8sObject } from "../api/objects.ts";
import type { SourceEvent } from "./events.ts";
import { ApiError, Backoff, sleep, type KubeApi } from "./kubeapi.ts";

/** What the reflector reports for metrics; every method is optional to call. */
export interface SourceMetrics {
  watchRestart(kind: KindName): void;
  relist(kind: KindName): void;
  event(kind: KindName, type: string): void;
  synced(kind: KindName, synced: boolean): void;
  apiError(kind: KindName, status: number): void;
}

/** Per-kind state that outlives one reflector (a version switch starts a new one on the same state). */
export interface KindState {
  readonly kind: KindName;
  /** Objects the store was told about, by key. */
  readonly known: Map<string, K8sObject>;
  synced: boolean;
  /** The served version being watched; undefined while the kind is not served. */
  version: string | undefined;
  /** A watch stream is open right now. */
  connected: boolean;
  /** Last time the kind was known to be in good shape (list done, watch open, event seen), ms epoch. */
  lastProgress: number;
  /** Last error, for /healthz and logs. */
  lastError: string | undefined;
}

export function newKindState(kind: KindName): KindState {
  return { kind, known: new Map(), synced: false, version: undefined, connected: false, lastProgress: Date.now(), lastError: undefined };
}

export interface ReflectorOptions {
  api: KubeApi;
  info: KindInfo;
  version: string;
  state: KindState;
  emit: (event: SourceEvent) => void;
  log: Logger;
  metrics?: SourceMetrics | undefined;
  /** Server-side field selector (e.g. `type=kubernetes.io/tls` for Secrets). */
  fieldSelector?: string | undefined;
  /** Client-side filter; objects it rejects are treated as absent. */
  accept?: ((obj: K8sObject) => boolean) | undefined;
  backoff?: { initialMs?: number; maxMs?: number } | undefined;
  /** Server-side timeout of one watch request, before jitter; default 300 s. */
  watchTimeoutSeconds?: number | undefined;
  /** Page size of lists; default 500. */
  pageSize?: number | undefined;
}

export function sourceNameOf(kind: KindName): string {
  return `kube/${kind}`;
}

interface ListAnswer {
  metadata?: { resourceVersion?: string; continue?: string };
  items?: unknown[];
}

interface WatchLine {
  type?: unknown;
  object?: unknown;
}

/** A watch ended because the resourceVersion is too old: re-list. */
class Gone extends Error {}

/** Runs until the signal aborts. Never throws: every failure is logged and retried with backoff. */
export async function runReflector(opts: ReflectorOptions, signal: AbortSignal): Promise<void> {
  const { api, info, version, state, log, metrics } = opts;
  const kind = info.kind;
  const apiVersion = apiVersionOf(info, version);
  const path = `${info.group ? `/apis/${info.group}` : "/api"}/${version}/${info.plural}`;
  const backoff = new Backoff(opts.backoff?.initialMs ?? 500, opts.backoff?.maxMs ?? 30_000);
  const timeoutSeconds = opts.watchTimeoutSeconds ?? 300;
  const source = sourceNameOf(kind);
  let rv: string | undefined;
  // Every reflector starts with a list (after a version switch too: known objects carry the old
  // apiVersion); afterwards only a 410 makes it list again.
  let needList = true;

  /** Fills in what list items lack, drops managedFields; undefined for an unusable object. */
  const normalize = (raw: unknown, where: string): K8sObject | undefined => {
    const obj = raw as Partial<K8sObject> & { metadata?: { managedFields?: unknown } };
    if (!obj || typeof obj !== "object" || !obj.metadata || typeof obj.metadata !== "object" || typeof obj.metadata.name !== "string" || !obj.metadata.name) {
      log.warn({ kind, where }, `skipping a ${kind} without metadata.name from the API server`);
      return undefined;
    }
    // Typed lists omit apiVersion/kind on items; managedFields is large and never read.
    const { managedFields: _managed, ...metadata } = obj.metadata;
    return { ...obj, apiVersion: typeof obj.apiVersion === "string" ? obj.apiVersion : apiVersion, kind, metadata } as K8sObject;
  };

  const accepted = (obj: K8sObject): boolean => !opts.accept || opts.accept(obj);

  const upsert = (obj: K8sObject): void => {
    const key = keyOf(obj);
    if (!accepted(obj)) return remove(key);
    const old = state.known.get(key);
    if (old && old.metadata.resourceVersion !== undefined && old.metadata.resourceVersion === obj.metadata.resourceVersion && old.apiVersion === obj.apiVersion) return;
    state.known.set(key, obj);
    opts.emit({ type: old ? "MODIFIED" : "ADDED", kind, object: obj });
  };

  const remove = (key: string, last?: K8sObject): void => {
    const old = state.known.get(key);
    if (!old) return;
    state.known.delete(key);
    opts.emit({ type: "DELETED", kind, object: last ?? old });
  };

  const list = async (): Promise<void> => {
    const items: K8sObject[] = [];
    let cont: string | undefined;
    let listRv = "";
    do {
      let page: ListAnswer;
      try {
        page = await api.request<ListAnswer>("GET", path, {
          query: { limit: opts.pageSize ?? 500, continue: cont, fieldSelector: opts.fieldSelector }, signal, timeoutMs: 60_000,
        });
      } catch (err) {
        // An expired continue token: start the list over.
        if (err instanceof ApiError && err.status === 410 && cont) {
          log.info({ kind }, "list continuation expired; listing again");
          items.length = 0;
          cont = undefined;
          continue;
        }
        throw err;
      }
      if (!page || typeof page !== "object" || !Array.isArray(page.items)) throw new ApiError(200, `GET ${path}: the answer is not a list`);
      for (const raw of page.items) {
        const obj = normalize(raw, "list");
        if (obj) items.push(obj);
      }
      listRv = page.metadata?.resourceVersion ?? listRv;
      cont = page.metadata?.continue || undefined;
    } while (cont && !signal.aborted);
    if (signal.aborted) return;

    const seen = new Set<string>();
    for (const obj of items) {
      seen.add(keyOf(obj));
      upsert(obj);
    }
    // Whatever is known but no longer listed was deleted while nobody was watching.
    for (const key of [...state.known.keys()]) if (!seen.has(key)) remove(key);
    rv = listRv || undefined;
    state.lastProgress = Date.now();
    if (!state.synced) {
      state.synced = true;
      metrics?.synced(kind, true);
      opts.emit({ type: "SYNCED", source });
      log.info({ kind, version, objects: state.known.size }, `${kind} listed (${apiVersion})`);
    }
  };

  const watch = async (): Promise<{ events: number; ms: number }> => {
    const started = Date.now();
    let events = 0;
    // Jittered, so the watches of all kinds (and replicas) do not all reconnect at once.
    const serverTimeout = Math.round(timeoutSeconds * (1 + Math.random()));
    const ctl = new AbortController();
    // A half-open connection sends nothing forever: give up a little after the server would have.
    const deadline = setTimeout(() => ctl.abort(), (serverTimeout + 30) * 1000);
    const onAbort = (): void => ctl.abort();
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      const res = await api.stream(path, {
        watch: 1, resourceVersion: rv, allowWatchBookmarks: true, timeoutSeconds: serverTimeout, fieldSelector: opts.fieldSelector,
      }, ctl.signal);
      state.connected = true;
      state.lastProgress = Date.now();
      if (!res.body) return { events, ms: Date.now() - started };
      const decoder = new TextDecoder();
      let buffered = "";
      for await (const chunk of res.body) {
        buffered += decoder.decode(chunk as Uint8Array, { stream: true });
        let nl: number;
        while ((nl = buffered.indexOf("\n")) >= 0) {
          const line = buffered.slice(0, nl).trim();
          buffered = buffered.slice(nl + 1);
          if (!line) continue;
          events++;
          handleLine(line);
        }
      }
      const rest = (buffered + decoder.decode()).trim();
      if (rest) handleLine(rest);
    } catch (err) {
      if (err instanceof Gone) throw err;
      // Our own deadline or a stop: not an error.
      if (ctl.signal.aborted) return { events, ms: Date.now() - started };
      throw err;
    } finally {
      clearTimeout(deadline);
      signal.removeEventListener("abort", onAbort);
      state.connected = false;
    }
    return { events, ms: Date.now() - started };
  };

  const handleLine = (line: string): void => {
    let ev: WatchLine;
    try {
      ev = JSON.parse(line) as WatchLine;
    } catch {
      log.warn({ kind, line: line.slice(0, 200) }, `skipping a ${kind} watch event that is not JSON`);
      return;
    }
    const type = typeof ev?.type === "string" ? ev.type : "";
    metrics?.event(kind, type || "INVALID");
    state.lastProgress = Date.now();
    if (type === "ERROR") {
      const status = ev.object as { code?: unknown; reason?: unknown; message?: unknown } | undefined;
      if (status?.code === 410 || status?.reason === "Expired" || status?.reason === "Gone") throw new Gone(String(status?.message ?? "resourceVersion too old"));
      throw new ApiError(typeof status?.code === "number" ? status.code : 500, `watch ${path}: ${String(status?.message ?? "error event")}`);
    }
    const meta = (ev.object as { metadata?: { resourceVersion?: unknown } } | undefined)?.metadata;
    if (type === "BOOKMARK") {
      if (typeof meta?.resourceVersion === "string" && meta.resourceVersion) rv = meta.resourceVersion;
      return;
    }
    if (type !== "ADDED" && type !== "MODIFIED" && type !== "DELETED") {
      log.warn({ kind, type }, `skipping a ${kind} watch event of unknown type`);
      return;
    }
    const obj = normalize(ev.object, "watch");
    if (!obj) return;
    if (typeof obj.metadata.resourceVersion === "string" && obj.metadata.resourceVersion) rv = obj.metadata.resourceVersion;
    if (type === "DELETED") remove(keyOf(obj), obj);
    else upsert(obj);
  };

  while (!signal.aborted) {
    try {
      if (needList) {
        if (state.synced) metrics?.relist(kind);
        await list();
        needList = false;
        backoff.reset();
        state.lastError = undefined;
        if (signal.aborted) break;
      }
      const { events, ms } = await watch();
      if (signal.aborted) break;
      metrics?.watchRestart(kind);
      // A watch that closes at once with nothing in it must not become a tight loop.
      if (events === 0 && ms < 1000) await sleep(backoff.next(), signal);
      else backoff.reset();
    } catch (err) {
      if (signal.aborted) break;
      if (err instanceof Gone || (err instanceof ApiError && err.status === 410)) {
        log.info({ kind, rv }, `${kind} watch expired (410); re-listing`);
        needList = true;
        metrics?.watchRestart(kind);
        continue;
      }
      const status = err instanceof ApiError ? err.status : 0;
      metrics?.apiError(kind, status);
      const delay = backoff.next(err instanceof ApiError ? err.retryAfterMs : undefined);
      state.lastError = (err as Error).message ?? String(err);
      log.warn({ kind, status, retryInMs: delay }, `${kind} list/watch failed: ${state.lastError}`);
      await sleep(delay, signal);
    }
  }
}
