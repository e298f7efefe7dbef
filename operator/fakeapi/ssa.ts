// Server-side apply field ownership, after structured-merge-diff: objects are flattened into leaf
// field paths in the fieldsV1 vocabulary (`f:name`, `k:{"key":v}`, `v:value`, `.`), each manager
// owns a set of them, apply merges the config and prunes what its manager stopped applying, and
// an update takes ownership of whatever it changed.
import { clone, deepEqual, isObject, type Json, type JsonObject, type ListKeys } from "./json.ts";

/** A leaf field path, e.g. ["f:spec", "f:ports", 'k:{"port":80,"protocol":"TCP"}', "."]. */
export type FieldPath = string[];

export interface ManagedFieldsEntry {
  manager: string;
  operation: "Apply" | "Update";
  apiVersion: string;
  time: string;
  fieldsType: "FieldsV1";
  fieldsV1: JsonObject;
  subresource?: string;
}

const pathKey = (p: FieldPath): string => JSON.stringify(p);
const fromKey = (k: string): FieldPath => JSON.parse(k) as FieldPath;

/** Metadata fields that ownership is tracked for; the rest of metadata is the server's. */
const TRACKED_META = ["labels", "annotations", "finalizers", "ownerReferences"];

/** What of an object field ownership covers: no apiVersion/kind, metadata only where tracked. */
export function trackedPart(obj: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(obj)) {
    if (k === "apiVersion" || k === "kind") continue;
    if (k === "metadata" && isObject(v)) {
      const meta: JsonObject = {};
      for (const m of TRACKED_META) if (v[m] !== undefined && v[m] !== null) meta[m] = v[m];
      if (Object.keys(meta).length > 0) out.metadata = meta;
      continue;
    }
    out[k] = v;
  }
  return out;
}

function itemKey(item: Json, keys: string[], defaults: Record<string, Json>): string {
  const k: JsonObject = {};
  for (const name of keys) {
    const v = isObject(item) ? (item[name] ?? defaults[name]) : undefined;
    if (v !== undefined) k[name] = v;
  }
  return `k:${JSON.stringify(k)}`;
}

/** Defaults of list-map key fields that the server fills in before keys are compared (Service ports' protocol). */
const KEY_DEFAULTS: Record<string, Json> = { protocol: "TCP" };

/** Leaf paths of a value, with the values they hold (undefined for "." entries). */
export function leaves(value: Json, listKeys: ListKeys, schemaPath = "", prefix: FieldPath = [], out = new Map<string, Json>()): Map<string, Json> {
  if (isObject(value)) {
    const entries = Object.entries(value);
    if (entries.length === 0 && prefix.length > 0) out.set(pathKey(prefix), value);
    for (const [k, v] of entries) leaves(v, listKeys, schemaPath ? `${schemaPath}.${k}` : k, [...prefix, `f:${k}`], out);
    return out;
  }
  if (Array.isArray(value)) {
    const lt = listKeys(schemaPath);
    if (lt.type === "map" && lt.keys.length > 0 && value.every(isObject)) {
      for (const item of value) {
        const p = [...prefix, itemKey(item, lt.keys, KEY_DEFAULTS)];
        out.set(pathKey([...p, "."]), null);
        for (const [k, v] of Object.entries(item as JsonObject)) leaves(v, listKeys, `${schemaPath}[].${k}`, [...p, `f:${k}`], out);
      }
      return out;
    }
    if (lt.type === "set" && value.every((v) => !isObject(v) && !Array.isArray(v))) {
      for (const v of value) out.set(pathKey([...prefix, `v:${JSON.stringify(v)}`]), v);
      return out;
    }
  }
  out.set(pathKey(prefix), value);
  return out;
}

/** fieldsV1 JSON from a set of leaf paths. */
export function toFieldsV1(keys: Iterable<string>): JsonObject {
  const root: JsonObject = {};
  for (const k of keys) {
    let node = root;
    for (const pe of fromKey(k)) {
      if (!isObject(node[pe])) node[pe] = {};
      node = node[pe] as JsonObject;
    }
  }
  return root;
}

/** Leaf path keys of a fieldsV1 value. */
export function fromFieldsV1(f: Json, prefix: FieldPath = [], out = new Set<string>()): Set<string> {
  if (!isObject(f)) return out;
  const entries = Object.entries(f);
  if (entries.length === 0 && prefix.length > 0) out.add(pathKey(prefix));
  for (const [pe, child] of entries) {
    if (pe === ".") out.add(pathKey([...prefix, "."]));
    else fromFieldsV1(child, [...prefix, pe], out);
  }
  return out;
}

function findItem(list: Json[], pe: string): number {
  if (pe.startsWith("v:")) {
    const v = JSON.parse(pe.slice(2)) as Json;
    return list.findIndex((x) => deepEqual(x, v));
  }
  const key = JSON.parse(pe.slice(2)) as JsonObject;
  return list.findIndex((x) => isObject(x) && Object.entries(key).every(([k, v]) => deepEqual(x[k] ?? KEY_DEFAULTS[k], v)));
}

/** Removes one leaf path from an object (in place), dropping containers the removal emptied. */
export function removePath(obj: JsonObject, path: FieldPath): void {
  const stack: { container: Json; pe: string }[] = [];
  let cur: Json = obj;
  for (let i = 0; i < path.length; i++) {
    const pe = path[i] ?? "";
    const last = i === path.length - 1 || (i === path.length - 2 && path[i + 1] === ".");
    if (pe.startsWith("f:") && isObject(cur)) {
      const name = pe.slice(2);
      if (!(name in cur)) return;
      if (last) {
        delete cur[name];
        break;
      }
      stack.push({ container: cur, pe });
      cur = cur[name] as Json;
    } else if ((pe.startsWith("k:") || pe.startsWith("v:")) && Array.isArray(cur)) {
      const idx = findItem(cur, pe);
      if (idx < 0) return;
      if (last) {
        cur.splice(idx, 1);
        break;
      }
      stack.push({ container: cur, pe });
      cur = cur[idx] as Json;
    } else {
      return;
    }
  }
  // Drop what the removal emptied, but never a top-level field such as spec or metadata.
  for (let i = stack.length - 1; i >= 1; i--) {
    const { container, pe } = stack[i] as { container: Json; pe: string };
    const child: Json | undefined = isObject(container) ? container[pe.slice(2)] : Array.isArray(container) ? container[findItem(container, pe)] : undefined;
    const empty = (isObject(child) && Object.keys(child).length === 0) || (Array.isArray(child) && child.length === 0);
    if (!empty) break;
    if (isObject(container)) delete container[pe.slice(2)];
    else if (Array.isArray(container)) container.splice(findItem(container, pe), 1);
  }
}

/** Structured merge of an apply config into a live object: map-lists by key, sets by value, atomic lists replaced. */
export function structuredMerge(live: Json | undefined, config: Json, listKeys: ListKeys, schemaPath = ""): Json {
  if (isObject(config)) {
    const out: JsonObject = isObject(live) ? { ...live } : {};
    for (const [k, v] of Object.entries(config)) {
      // In an apply config, null means "unset": the field is owned but has no value.
      if (v === null) delete out[k];
      else out[k] = structuredMerge(out[k], v, listKeys, schemaPath ? `${schemaPath}.${k}` : k);
    }
    return out;
  }
  if (Array.isArray(config) && Array.isArray(live)) {
    const lt = listKeys(schemaPath);
    if (lt.type === "map" && lt.keys.length > 0) {
      const out = live.map((x) => clone(x));
      for (const item of config) {
        const idx = findItem(out, itemKey(item, lt.keys, KEY_DEFAULTS));
        if (idx >= 0) out[idx] = structuredMerge(out[idx], item, listKeys, `${schemaPath}[]`);
        else out.push(clone(item));
      }
      return out;
    }
    if (lt.type === "set") {
      const out = [...live];
      for (const v of config) if (!out.some((x) => deepEqual(x, v))) out.push(clone(v));
      return out;
    }
  }
  return clone(config);
}

export interface Conflict { manager: string; field: string }

/** `.spec.ports[port=80,protocol="TCP"].name`-style rendering of a path, as conflict messages show them. */
export function renderPath(key: string): string {
  let s = "";
  for (const pe of fromKey(key)) {
    if (pe === ".") continue;
    if (pe.startsWith("f:")) s += `.${pe.slice(2)}`;
    else if (pe.startsWith("v:")) s += `[=${pe.slice(2)}]`;
    else if (pe.startsWith("k:")) {
      const k = JSON.parse(pe.slice(2)) as JsonObject;
      s += `[${Object.entries(k).map(([n, v]) => `${n}=${JSON.stringify(v)}`).join(",")}]`;
    }
  }
  return s;
}

/** Paths whose value is new or different in `after` (Added ∪ Modified) and those gone (Removed). */
export function compare(before: Map<string, Json>, after: Map<string, Json>): { changed: Set<string>; removed: Set<string> } {
  const changed = new Set<string>();
  const removed = new Set<string>();
  for (const [k, v] of after) if (!before.has(k) || !deepEqual(before.get(k), v)) changed.add(k);
  for (const k of before.keys()) if (!after.has(k)) removed.add(k);
  return { changed, removed };
}

const sameEntry = (e: ManagedFieldsEntry, manager: string, operation: string, subresource: string | undefined): boolean =>
  e.manager === manager && e.operation === operation && (e.subresource ?? "") === (subresource ?? "");

export function nowSeconds(): string {
  return new Date().toISOString().replace(/\.\d+Z$/, "Z");
}

/** Managed fields after a non-apply write: the writer takes what it changed, everyone loses what was removed. */
export function updateManagedFields(
  entries: ManagedFieldsEntry[], before: Map<string, Json>, after: Map<string, Json>,
  manager: string, apiVersion: string, subresource: string | undefined,
): ManagedFieldsEntry[] {
  const { changed, removed } = compare(before, after);
  const out: ManagedFieldsEntry[] = [];
  let mine: Set<string> = new Set();
  let found = false;
  for (const e of entries) {
    const set = fromFieldsV1(e.fieldsV1);
    for (const k of removed) set.delete(k);
    if (sameEntry(e, manager, "Update", subresource)) {
      found = true;
      mine = set;
      continue;
    }
    for (const k of changed) set.delete(k);
    if (set.size > 0) out.push({ ...e, fieldsV1: toFieldsV1(set) });
  }
  for (const k of changed) mine.add(k);
  if (mine.size > 0 && (changed.size > 0 || found)) {
    out.push({ manager, operation: "Update", apiVersion, time: nowSeconds(), fieldsType: "FieldsV1", fieldsV1: toFieldsV1(mine), ...(subresource ? { subresource } : {}) });
  }
  return out;
}

export type ApplyResult =
  | { ok: true; object: JsonObject; managedFields: ManagedFieldsEntry[] }
  | { ok: false; conflicts: Conflict[] };

/**
 * Server-side apply of `config` (already reduced to what this endpoint may change) onto `live`
 * (the same reduction of the stored object). Returns the merged object and the new managed fields.
 */
export function apply(
  live: JsonObject, config: JsonObject, entries: ManagedFieldsEntry[], listKeys: ListKeys,
  manager: string, apiVersion: string, subresource: string | undefined, force: boolean,
): ApplyResult {
  const applied = leaves(trackedPart(config), listKeys);
  const liveLeaves = leaves(trackedPart(live), listKeys);
  const merged = structuredMerge(live, config, listKeys) as JsonObject;
  const { changed } = compare(liveLeaves, leaves(trackedPart(merged), listKeys));
  // Fields set to null in the config are owned but absent; they count as changed if present.
  for (const [k, v] of applied) if (v === null && liveLeaves.has(k) && !k.endsWith('"."]')) changed.add(k);

  const conflicts: Conflict[] = [];
  const others: { entry: ManagedFieldsEntry; set: Set<string> }[] = [];
  let previous = new Set<string>();
  for (const e of entries) {
    const set = fromFieldsV1(e.fieldsV1);
    if (sameEntry(e, manager, "Apply", subresource)) {
      previous = set;
      continue;
    }
    // Fields of another subresource can't be touched through this endpoint.
    if ((e.subresource ?? "") !== (subresource ?? "")) {
      others.push({ entry: e, set });
      continue;
    }
    for (const k of changed) {
      if (set.has(k) && e.manager !== manager) conflicts.push({ manager: e.manager, field: renderPath(k) });
    }
    others.push({ entry: e, set });
  }
  if (conflicts.length > 0 && !force) return { ok: false, conflicts };

  // Prune what this manager applied before, applies no longer, and nobody else owns.
  const ownedByOthers = new Set<string>();
  for (const o of others) {
    if ((o.entry.subresource ?? "") === (subresource ?? "")) for (const k of changed) o.set.delete(k);
    for (const k of o.set) ownedByOthers.add(k);
  }
  const result = clone(merged);
  const pruned: string[] = [];
  for (const k of previous) {
    if (applied.has(k) || ownedByOthers.has(k)) continue;
    // A map-list item stays while another manager still owns a field inside it.
    const p = fromKey(k);
    if (p[p.length - 1] === ".") {
      const prefix = JSON.stringify(p.slice(0, -1)).slice(0, -1);
      if ([...ownedByOthers].some((o) => o.startsWith(prefix + ","))) continue;
    }
    pruned.push(k);
  }
  // Remove deeper paths first so an item's "." goes after its fields.
  pruned.sort((a, b) => fromKey(b).length - fromKey(a).length);
  for (const k of pruned) removePath(result, fromKey(k));

  const out: ManagedFieldsEntry[] = [];
  for (const o of others) {
    if (o.set.size > 0) out.push({ ...o.entry, fieldsV1: toFieldsV1(o.set) });
  }
  if (applied.size > 0) {
    out.push({ manager, operation: "Apply", apiVersion, time: nowSeconds(), fieldsType: "FieldsV1", fieldsV1: toFieldsV1(applied.keys()), ...(subresource ? { subresource } : {}) });
  }
  return { ok: true, object: result, managedFields: out };
}
