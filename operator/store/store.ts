// The state store: folds source events into per-kind maps and emits coalesced, immutable
// Snapshots of what the translator may read. Identity is preserved wherever content is: an
// unchanged object, or an unchanged collection, is the same instance in the next snapshot.
import { isDeepStrictEqual } from "node:util";
import { EMPTY, Observable, audit, buffer, connect, defer, filter, map, merge, timer } from "rxjs";
import { KIND_NAMES, type KindName } from "../api/kinds.ts";
import { keyOf, type K8sObject } from "../api/objects.ts";
import type { SourceEvent } from "../sources/events.ts";
import { FILTERED_KINDS, REFERRING_KINDS, isRelevant, relevantKeys, type Relevant } from "./relevance.ts";
import type { Collections, Snapshot } from "./snapshot.ts";

export interface StoreOptions {
  /**
   * How long after a first change the snapshot is taken, gathering what arrives meanwhile; default
   * 10 ms. 0: as soon as the events already delivered with it are in (one event-loop turn).
   */
  coalesceMs?: number;
  /** Sources that must all have sent SYNCED before the first snapshot; default: the first SYNCED suffices. */
  sources?: string[];
  /** Datapath acknowledgements, carried into Snapshot.acks. */
  acks$?: Observable<ReadonlyMap<string, string>>;
}

type Input =
  | { type: "event"; event: SourceEvent }
  | { type: "acks"; acks: ReadonlyMap<string, string> };

export function createStore(events$: Observable<SourceEvent>, opts: StoreOptions = {}): Observable<Snapshot> {
  const coalesceMs = opts.coalesceMs ?? 10;
  // defer: every subscriber gets its own state.
  return defer(() => {
    const reduce = createReducer(opts.sources);
    const inputs$ = merge(
      events$.pipe(map((event): Input => ({ type: "event", event }))),
      (opts.acks$ ?? EMPTY).pipe(map((acks): Input => ({ type: "acks", acks }))),
    );
    return inputs$.pipe(
      // A batch closes coalesceMs after its first input (audit). connect() subscribes both
      // the buffer and its closing timer before the inputs start flowing.
      connect((shared$) => shared$.pipe(buffer(shared$.pipe(audit(() => (coalesceMs > 0 ? timer(coalesceMs) : nextTurn$)))))),
      map(reduce),
      filter((snapshot): snapshot is Snapshot => snapshot !== undefined),
    );
  });
}

/** Fires after the current event-loop turn: the events delivered with the first one are in the batch. */
const nextTurn$ = new Observable<void>((subscriber) => {
  const handle = setImmediate(() => {
    subscriber.next();
    subscriber.complete();
  });
  return () => clearImmediate(handle);
});

type MutableCollections = Record<KindName, Map<string, K8sObject>>;

/** Applies a batch of inputs; returns the next snapshot, or undefined when nothing visible changed. */
function createReducer(sources: readonly string[] | undefined): (batch: Input[]) => Snapshot | undefined {
  const all = Object.fromEntries(KIND_NAMES.map((k) => [k, new Map<string, K8sObject>()])) as MutableCollections;
  const synced = new Set<string>();
  /** Kinds whose stored content changed since the last snapshot. */
  const changed = new Set<KindName>();
  let acks: ReadonlyMap<string, string> = new Map();
  let acksChanged = false;
  let relevant: Relevant | undefined;
  let previous: Snapshot | undefined;

  const apply = (event: SourceEvent): void => {
    if (event.type === "SYNCED") {
      synced.add(event.source);
      return;
    }
    // ERROR events are for users, not state.
    if (event.type === "ERROR") return;
    const objects = (all as Partial<MutableCollections>)[event.kind];
    if (!objects || typeof event.object?.metadata?.name !== "string") return;
    const key = keyOf(event.object);
    if (event.type === "DELETED") {
      if (objects.delete(key)) changed.add(event.kind);
      return;
    }
    const old = objects.get(key);
    // Re-sent but equal: keep the old instance, so nothing downstream sees a change.
    if (old && isDeepStrictEqual(old, event.object)) return;
    // A status-only change (our own status write, echoed by the watch) keeps the old spec
    // instance, so the translator can tell that what it routes by did not change.
    const object = old?.spec !== undefined && old.spec !== event.object.spec && isDeepStrictEqual(old.spec, event.object.spec)
      ? { ...event.object, spec: old.spec }
      : event.object;
    objects.set(key, object);
    changed.add(event.kind);
  };

  const isSynced = (): boolean => (sources ? sources.every((s) => synced.has(s)) : synced.size > 0);

  /** Recomputes relevance when a referring kind changed, and says whether it differs. */
  const updateRelevance = (): { rel: Relevant; changed: boolean } => {
    if (relevant && ![...changed].some((k) => REFERRING_KINDS.has(k))) return { rel: relevant, changed: false };
    const next = relevantKeys(all as unknown as Collections);
    const same = relevant !== undefined && sameSet(relevant.services, next.services)
      && sameSet(relevant.secrets, next.secrets) && sameSet(relevant.configMaps, next.configMaps);
    relevant = next;
    return { rel: next, changed: !same };
  };

  const visible = (kind: KindName, rel: Relevant): Map<string, K8sObject> => {
    const source = all[kind];
    if (!FILTERED_KINDS.has(kind)) return new Map(source);
    const out = new Map<string, K8sObject>();
    for (const [key, obj] of source) if (isRelevant(rel, kind, key, obj)) out.set(key, obj);
    return out;
  };

  return (batch) => {
    for (const input of batch) {
      if (input.type === "acks") {
        acks = input.acks;
        acksChanged = true;
      } else {
        apply(input.event);
      }
    }
    if (!isSynced() || (previous && changed.size === 0 && !acksChanged)) return undefined;

    const { rel, changed: relevanceChanged } = updateRelevance();
    const objects = {} as Record<KindName, ReadonlyMap<string, K8sObject>>;
    let visibleChange = previous === undefined || acksChanged;
    for (const kind of KIND_NAMES) {
      const before = previous?.objects[kind] as ReadonlyMap<string, K8sObject> | undefined;
      const unaffected = !changed.has(kind) && !(FILTERED_KINDS.has(kind) && relevanceChanged);
      if (before && unaffected) {
        objects[kind] = before;
        continue;
      }
      const next = visible(kind, rel);
      objects[kind] = before && sameEntries(before, next) ? before : next;
      if (objects[kind] !== before) visibleChange = true;
    }
    changed.clear();
    acksChanged = false;
    if (!visibleChange) return undefined;
    previous = { version: (previous?.version ?? 0) + 1, objects: objects as unknown as Collections, acks };
    return previous;
  };
}

function sameSet(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  if (a.size !== b.size) return false;
  for (const v of a) if (!b.has(v)) return false;
  return true;
}

/** Same keys mapping to the same instances. */
function sameEntries(a: ReadonlyMap<string, unknown>, b: ReadonlyMap<string, unknown>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}
