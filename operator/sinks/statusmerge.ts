// Pure status logic of the status writer: merge what the translator wants with what the object
// carries now, and say whether the merge changes anything.
//
// - lastTransitionTime: the translator leaves it out (it is pure); a condition keeps the live time
//   while its status stays the same and gets `now` when its status changes or it is new.
// - Shared lists: a Route's `status.parents` and a policy's `status.ancestors` hold entries of
//   every controller that handles a parent. Only entries whose controllerName is ours are
//   replaced; the other controllers' entries are kept exactly as they are now.
// - Equality ignores lastTransitionTime, the order of conditions, and the order of shared-list
//   entries (two controllers each putting their own entries first must not ping-pong).
import { jsonEqual } from "./kube.ts";

export type Json = Record<string, unknown>;

/** Status fields that several controllers write, each its own entries (keyed by controllerName). */
export const SHARED_LISTS: readonly string[] = ["parents", "ancestors"];

const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

/** RFC 3339 without fractions, as metav1.Time serialises. */
export function rfc3339(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** Canonical JSON (sorted keys) for identities. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (isObject(v)) {
    return `{${Object.keys(v).filter((k) => v[k] !== undefined).sort().map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(",")}}`;
  }
  return JSON.stringify(v) ?? "null";
}

/** What identifies an entry of a status list across writes; undefined = position. */
function identity(entry: unknown, listKey: string | undefined): string | undefined {
  if (!isObject(entry)) return undefined;
  if (listKey === "conditions" && typeof entry.type === "string") return `type:${entry.type}`;
  if (isObject(entry.parentRef)) return `parent:${String(entry.controllerName)}:${canonical(entry.parentRef)}`;
  if (isObject(entry.ancestorRef)) return `ancestor:${String(entry.controllerName)}:${canonical(entry.ancestorRef)}`;
  if (typeof entry.name === "string") return `name:${entry.name}`;
  return undefined;
}

function controllerOf(entry: unknown): unknown {
  return isObject(entry) ? entry.controllerName : undefined;
}

/** Sets lastTransitionTime on every condition under `desired` (mutates it), matching `live` by identity. */
function fillTimes(desired: unknown, live: unknown, now: string, key: string | undefined): void {
  if (Array.isArray(desired)) {
    const liveArr = Array.isArray(live) ? live : [];
    const byId = new Map<string, unknown>();
    for (const l of liveArr) {
      const id = identity(l, key);
      if (id !== undefined && !byId.has(id)) byId.set(id, l);
    }
    desired.forEach((d, i) => {
      const id = identity(d, key);
      const match = id !== undefined ? byId.get(id) : liveArr[i];
      if (key === "conditions" && isObject(d)) {
        const kept = isObject(match) && match.status === d.status && typeof match.lastTransitionTime === "string";
        d.lastTransitionTime = kept ? match.lastTransitionTime : now;
      } else fillTimes(d, match, now, undefined);
    });
    return;
  }
  if (isObject(desired)) {
    const liveObj = isObject(live) ? live : {};
    for (const k of Object.keys(desired)) fillTimes(desired[k], liveObj[k], now, k);
  }
}

export interface MergeOptions {
  controllerName: string;
  /** RFC 3339 time for conditions whose status changed. */
  now: string;
}

/**
 * The status to write: `desired` (from the translator) merged onto `live` (the object's status
 * now). With shared lists the rest of the live status is kept; otherwise `desired` is the whole
 * status (Gateway, GatewayClass: one controller owns it, fields it dropped must go).
 */
export function mergeStatus(desired: Json, live: unknown, opts: MergeOptions): Json {
  const d = JSON.parse(JSON.stringify(desired)) as Json; // drops undefined, never aliases the translator's objects
  const liveObj = isObject(live) ? live : {};
  const shared = SHARED_LISTS.filter((k) => Array.isArray(d[k]));
  if (shared.length === 0) {
    fillTimes(d, liveObj, opts.now, undefined);
    return d;
  }
  const out: Json = { ...liveObj };
  for (const [k, v] of Object.entries(d)) {
    if (!SHARED_LISTS.includes(k)) {
      fillTimes(v, liveObj[k], opts.now, k);
      out[k] = v;
    }
  }
  for (const k of shared) {
    const liveList = Array.isArray(liveObj[k]) ? (liveObj[k] as unknown[]) : [];
    const ours = (d[k] as unknown[]).filter((e) => controllerOf(e) === opts.controllerName);
    const others = liveList.filter((e) => controllerOf(e) !== opts.controllerName);
    fillTimes(ours, liveList.filter((e) => controllerOf(e) === opts.controllerName), opts.now, k);
    out[k] = [...ours, ...others];
  }
  return out;
}

/** A copy for comparison: no lastTransitionTime, conditions and shared lists in identity order. */
function normalize(v: unknown, key: string | undefined): unknown {
  if (Array.isArray(v)) {
    const items = v.map((e) => normalize(e, undefined));
    if (key === "conditions" || (key !== undefined && SHARED_LISTS.includes(key))) {
      const ids = v.map((e) => identity(e, key) ?? canonical(e));
      return items.map((item, i) => ({ id: ids[i] as string, item })).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)).map((x) => x.item);
    }
    return items;
  }
  if (isObject(v)) {
    const out: Json = {};
    for (const [k, val] of Object.entries(v)) {
      if (val === undefined || k === "lastTransitionTime") continue;
      out[k] = normalize(val, k);
    }
    return out;
  }
  return v;
}

/** Whether writing `next` over `live` would change anything a reader cares about. */
export function statusEqual(next: unknown, live: unknown): boolean {
  return jsonEqual(normalize(next ?? {}, undefined), normalize(live ?? {}, undefined));
}

/** Whether `status` holds entries of ours in a shared list (a Route we must clean up when it leaves us). */
export function hasOurSharedEntries(status: unknown, controllerName: string): boolean {
  if (!isObject(status)) return false;
  return SHARED_LISTS.some((k) => Array.isArray(status[k]) && (status[k] as unknown[]).some((e) => controllerOf(e) === controllerName));
}

/** The top-level condition of `type` in a status, if any. */
export function topCondition(status: unknown, type: string): Json | undefined {
  if (!isObject(status) || !Array.isArray(status.conditions)) return undefined;
  return (status.conditions as unknown[]).find((c): c is Json => isObject(c) && c.type === type);
}
