// Per-snapshot lookups shared by every Gateway's translation, and the dependency recorder that
// lets the translator reuse a Gateway's previous result when nothing it read has changed.
import { schemaErrorsOf, type KindName } from "../api/kinds.ts";
import { keyOf, type EndpointSlice, type K8sObject } from "../api/objects.ts";
import type { Snapshot } from "../store/snapshot.ts";
import { ReferenceGrants } from "./referencegrant.ts";

type DepKind = KindName | "slices";

/** The collection a recorded read depends on ("slices" are derived from EndpointSlices). */
function collectionOf(world: World, kind: DepKind): unknown {
  return world.snapshot.objects[kind === "slices" ? "EndpointSlice" : kind];
}

/** Lookups made while translating one Gateway: (kind, key) → the instance seen. */
export class Deps {
  private readonly seen = new Map<DepKind, { key: string; value: unknown }[]>();
  private readonly collections = new Map<KindName, unknown>();
  /**
   * Per kind, the collection instance the reads were last found valid against. Snapshots are
   * immutable, so reads from an unchanged collection need no re-check: a one-route tick then
   * checks each Gateway in O(kinds) instead of O(reads).
   */
  private readonly validAgainst = new Map<DepKind, unknown>();

  record(kind: DepKind, key: string, value: unknown): void {
    const list = this.seen.get(kind);
    if (list) list.push({ key, value });
    else this.seen.set(kind, [{ key, value }]);
  }
  recordCollection(kind: KindName, value: unknown): void {
    this.collections.set(kind, value);
  }
  /** Takes over another recorder's reads (a route compiled, or reused, inside a Gateway's translation). */
  absorb(other: Deps): void {
    for (const [kind, list] of other.seen) for (const d of list) this.record(kind, d.key, d.value);
    for (const [kind, coll] of other.collections) this.collections.set(kind, coll);
  }
  stillValid(world: World): boolean {
    for (const [kind, coll] of this.collections) if (world.snapshot.objects[kind] !== coll) return false;
    for (const [kind, list] of this.seen) {
      const coll = collectionOf(world, kind);
      if (this.validAgainst.get(kind) === coll) continue;
      if (kind === "slices") {
        for (const d of list) if (!sameItems(world.slicesOf(d.key), d.value as readonly unknown[])) return false;
      } else {
        const objects = world.snapshot.objects[kind] as ReadonlyMap<string, unknown>;
        for (const d of list) if (objects.get(d.key) !== d.value) return false;
      }
      this.validAgainst.set(kind, coll);
    }
    return true;
  }
}

export function sameItems(a: readonly unknown[], b: readonly unknown[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

const EMPTY: readonly EndpointSlice[] = [];
const CORE_KINDS = new Set<KindName>(["Service", "EndpointSlice", "Secret", "ConfigMap", "Namespace"]);

export class World {
  readonly snapshot: Snapshot;
  readonly grants: ReferenceGrants;
  private readonly validations: WeakMap<object, string[]>;
  private readonly slicesByService: Map<string, EndpointSlice[]>;

  /**
   * `previous` (the last tick's World of the same translator) lends its derived indexes when the
   * collections they come from are the same instances, so an unrelated change re-indexes nothing.
   */
  constructor(snapshot: Snapshot, validations: WeakMap<object, string[]>, previous?: World) {
    this.snapshot = snapshot;
    this.validations = validations;
    const prev = previous?.snapshot.objects;
    this.grants = prev && prev.ReferenceGrant === snapshot.objects.ReferenceGrant
      ? (previous as World).grants
      : new ReferenceGrants([...snapshot.objects.ReferenceGrant.values()].filter((g) => this.schemaErrors(g).length === 0));
    if (prev && prev.EndpointSlice === snapshot.objects.EndpointSlice) {
      this.slicesByService = (previous as World).slicesByService;
      return;
    }
    this.slicesByService = new Map();
    for (const s of snapshot.objects.EndpointSlice.values()) {
      if (this.schemaErrors(s).length) continue;
      const svc = s.metadata.labels?.["kubernetes.io/service-name"];
      if (!svc) continue;
      const key = `${s.metadata.namespace ?? "default"}/${svc}`;
      const list = this.slicesByService.get(key);
      if (list) list.push(s);
      else this.slicesByService.set(key, [s]);
    }
  }

  /**
   * Gets a referenced object and records the read in `deps`. A core object that fails its schema
   * (which the API server would never have stored; files can hold anything) counts as absent.
   */
  get<K extends KindName>(deps: Deps, kind: K, key: string): ReturnType<Snapshot["objects"][K]["get"]> {
    const v = this.snapshot.objects[kind].get(key) as ReturnType<Snapshot["objects"][K]["get"]>;
    deps.record(kind, key, v);
    if (v && CORE_KINDS.has(kind) && this.schemaErrors(v as K8sObject).length) return undefined as ReturnType<Snapshot["objects"][K]["get"]>;
    return v;
  }

  /** EndpointSlices of a Service (`namespace/name`), in key order. */
  slicesOf(serviceKey: string): readonly EndpointSlice[] {
    const list = this.slicesByService.get(serviceKey);
    if (!list) return EMPTY;
    if (list.length > 1) list.sort((a, b) => (keyOf(a) < keyOf(b) ? -1 : 1));
    return list;
  }

  slices(deps: Deps, serviceKey: string): readonly EndpointSlice[] {
    const v = this.slicesOf(serviceKey);
    deps.record("slices", serviceKey, v);
    return v;
  }

  /** Schema errors of an object (memoized per instance). */
  schemaErrors(obj: K8sObject): string[] {
    let errs = this.validations.get(obj);
    if (!errs) {
      errs = schemaErrorsOf(obj);
      this.validations.set(obj, errs);
    }
    return errs;
  }
}
