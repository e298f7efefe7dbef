// JSON helpers for the fake API server: deep copy/equality, RFC 7386 merge patch, RFC 6902 JSON
// patch, and a strategic-merge approximation (merge patch plus keyed list merging).
import { isDeepStrictEqual } from "node:util";

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
export type JsonObject = { [k: string]: Json };

export function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export function clone<T>(v: T): T {
  return structuredClone(v);
}

export function deepEqual(a: unknown, b: unknown): boolean {
  return isDeepStrictEqual(a, b);
}

/** RFC 7386: objects merge recursively, null deletes, everything else replaces. */
export function mergePatch(target: Json | undefined, patch: Json): Json {
  if (!isObject(patch)) return clone(patch);
  const out: JsonObject = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** A patch that could not be applied; `status` is the HTTP status the real server answers with. */
export class PatchError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

function parsePointer(ptr: string): string[] {
  if (ptr === "") return [];
  if (!ptr.startsWith("/")) throw new PatchError(400, `invalid JSON pointer ${JSON.stringify(ptr)}: must start with "/"`);
  return ptr.slice(1).split("/").map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
}

function arrayIndex(arr: Json[], token: string, forAdd: boolean): number {
  if (forAdd && token === "-") return arr.length;
  if (!/^(0|[1-9][0-9]*)$/.test(token)) throw new PatchError(422, `invalid array index ${JSON.stringify(token)}`);
  const i = Number(token);
  if (i > arr.length || (!forAdd && i === arr.length)) throw new PatchError(422, `array index ${i} out of bounds`);
  return i;
}

function getAt(doc: Json, path: string[]): Json {
  let cur: Json = doc;
  for (const tok of path) {
    if (Array.isArray(cur)) cur = cur[arrayIndex(cur, tok, false)] as Json;
    else if (isObject(cur) && Object.hasOwn(cur, tok)) cur = cur[tok] as Json;
    else throw new PatchError(422, `path /${path.join("/")} does not exist`);
  }
  return cur;
}

function parentOf(doc: Json, path: string[]): { parent: Json; last: string } {
  const last = path[path.length - 1];
  if (last === undefined) throw new PatchError(422, "the root cannot be the target of this operation");
  return { parent: getAt(doc, path.slice(0, -1)), last };
}

function removeAt(doc: Json, path: string[]): Json {
  const { parent, last } = parentOf(doc, path);
  if (Array.isArray(parent)) return parent.splice(arrayIndex(parent, last, false), 1)[0] as Json;
  if (isObject(parent) && Object.hasOwn(parent, last)) {
    const v = parent[last] as Json;
    delete parent[last];
    return v;
  }
  throw new PatchError(422, `unable to remove nonexistent key: ${last}: missing value`);
}

function addAt(doc: Json, path: string[], value: Json): Json {
  if (path.length === 0) return value;
  const { parent, last } = parentOf(doc, path);
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, last, true), 0, value);
  else if (isObject(parent)) parent[last] = value;
  else throw new PatchError(422, `cannot add at /${path.join("/")}: parent is not a container`);
  return doc;
}

/** RFC 6902. Throws PatchError(400) for a malformed document and PatchError(422) when an operation fails. */
export function jsonPatch(doc: Json, ops: unknown): Json {
  if (!Array.isArray(ops)) throw new PatchError(400, "a JSON patch must be an array of operations");
  let out = clone(doc);
  for (const op of ops) {
    if (!isObject(op) || typeof op.op !== "string" || typeof op.path !== "string") {
      throw new PatchError(400, `malformed JSON patch operation ${JSON.stringify(op)}`);
    }
    const path = parsePointer(op.path);
    const value = (): Json => {
      if (!Object.hasOwn(op, "value")) throw new PatchError(400, `operation ${op.op} needs a value`);
      return clone(op.value as Json);
    };
    const from = (): string[] => {
      if (typeof op.from !== "string") throw new PatchError(400, `operation ${op.op} needs "from"`);
      return parsePointer(op.from);
    };
    switch (op.op) {
      case "add": out = addAt(out, path, value()); break;
      case "remove": removeAt(out, path); break;
      case "replace": {
        if (path.length === 0) { out = value(); break; }
        getAt(out, path); // must exist
        removeAt(out, path);
        out = addAt(out, path, value());
        break;
      }
      case "move": {
        const f = from();
        const v = removeAt(out, f);
        out = addAt(out, path, v);
        break;
      }
      case "copy": out = addAt(out, path, clone(getAt(out, from()))); break;
      case "test":
        if (!deepEqual(getAt(out, path), op.value)) throw new PatchError(422, `testing value /${path.join("/")} failed`);
        break;
      default: throw new PatchError(400, `unknown JSON patch operation ${JSON.stringify(op.op)}`);
    }
  }
  return out;
}

/** Merge keys of lists, by dotted path with list items as "[]" (shared by SMP and SSA). */
export type ListKeys = (path: string) => { type: "atomic" | "map" | "set"; keys: string[] };

/**
 * Strategic merge patch, approximated: a merge patch in which lists with a merge key merge item by
 * item (and `$patch: delete` items remove), scalar sets union, and every other list is replaced.
 */
export function strategicMergePatch(target: Json | undefined, patch: Json, listKeys: ListKeys, path = ""): Json {
  if (Array.isArray(patch) && Array.isArray(target)) {
    const lt = listKeys(path);
    if (lt.type === "set") {
      const out = [...target];
      for (const v of patch) if (!out.some((x) => deepEqual(x, v))) out.push(clone(v));
      return out;
    }
    if (lt.type === "map" && lt.keys.length > 0) {
      const out: Json[] = target.map((x) => clone(x));
      const keyOf = (x: Json): string => JSON.stringify(lt.keys.map((k) => (isObject(x) ? x[k] : undefined)));
      for (const item of patch) {
        const idx = out.findIndex((x) => keyOf(x) === keyOf(item));
        if (isObject(item) && item.$patch === "delete") {
          if (idx >= 0) out.splice(idx, 1);
        } else if (idx >= 0) {
          out[idx] = strategicMergePatch(out[idx], item, listKeys, path + "[]");
        } else {
          out.push(clone(item));
        }
      }
      return out;
    }
    return clone(patch);
  }
  if (!isObject(patch)) return clone(patch);
  if (patch.$patch === "replace") {
    const rest = { ...patch };
    delete rest.$patch;
    return clone(rest);
  }
  const out: JsonObject = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (k.startsWith("$")) continue;
    if (v === null) delete out[k];
    else out[k] = strategicMergePatch(out[k], v, listKeys, path ? `${path}.${k}` : k);
  }
  return out;
}
