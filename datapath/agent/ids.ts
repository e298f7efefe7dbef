// Stable ids for services and backends. Ids are what the maps and conntrack entries refer to, so
// a service or backend keeps its id as long as it exists, across agent restarts (seeded from the
// pinned maps), and an id is handed out again only after the maps no longer hold it. New ids
// come from a rotating cursor, so a released id is reused as late as possible (a stale conntrack
// entry then rarely meets a different backend under the same id).
import type { BackendEntry, FrontendEntry, LbState } from "../bpf/state.ts";
import { endpointKey, frontendKeyOf, type DesiredState } from "./desired.ts";

export class IdSpaceExhausted extends Error {}

export class IdAllocator {
  readonly kind: string;
  /** Ids are 1..max (0 means "none" in the maps). */
  readonly max: number;
  private byKey = new Map<string, number>();
  private byId = new Map<number, string | undefined>();
  private cursor = 1;

  constructor(kind: string, max: number) {
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`${kind} id space must be a positive integer, got ${max}`);
    this.kind = kind;
    this.max = max;
  }

  /** Marks an id the maps hold, without (yet) knowing whose it is. */
  hold(id: number): void {
    this.check(id);
    if (!this.byId.has(id)) this.byId.set(id, undefined);
    if (id >= this.cursor) this.cursor = id + 1 > this.max ? 1 : id + 1;
  }

  /** Binds `key` to the held or free `id`; false if either is already bound elsewhere. */
  bind(key: string, id: number): boolean {
    this.check(id);
    const owner = this.byId.get(id);
    if (owner !== undefined) return owner === key;
    if (this.byKey.has(key)) return false;
    this.hold(id);
    this.byId.set(id, key);
    this.byKey.set(key, id);
    return true;
  }

  idOf(key: string): number | undefined {
    return this.byKey.get(key);
  }

  isHeld(id: number): boolean {
    return this.byId.has(id);
  }

  /** The key's id, allocating one if it has none. */
  allocate(key: string): number {
    const have = this.byKey.get(key);
    if (have !== undefined) return have;
    if (this.byId.size >= this.max) {
      throw new IdSpaceExhausted(`${this.kind} ids exhausted: all ${this.max} are in use (raise the limit or remove ${this.kind}s)`);
    }
    let id = this.cursor;
    while (this.byId.has(id)) id = id >= this.max ? 1 : id + 1;
    this.cursor = id >= this.max ? 1 : id + 1;
    this.byId.set(id, key);
    this.byKey.set(key, id);
    return id;
  }

  /** Forgets every id not in `live` (the maps no longer hold them). */
  retain(live: ReadonlySet<number>): void {
    for (const [id, key] of this.byId) {
      if (live.has(id)) continue;
      this.byId.delete(id);
      if (key !== undefined) this.byKey.delete(key);
    }
  }

  size(): number {
    return this.byId.size;
  }

  clone(): IdAllocator {
    const c = new IdAllocator(this.kind, this.max);
    c.byKey = new Map(this.byKey);
    c.byId = new Map(this.byId);
    c.cursor = this.cursor;
    return c;
  }

  private check(id: number): void {
    if (!Number.isInteger(id) || id < 1 || id > this.max) throw new RangeError(`${this.kind} id ${id} is outside 1..${this.max}`);
  }
}

export interface Ids {
  services: IdAllocator;
  backends: IdAllocator;
}

export function newIds(maxServices: number, maxBackends: number): Ids {
  return { services: new IdAllocator("service", maxServices), backends: new IdAllocator("backend", maxBackends) };
}

export function cloneIds(ids: Ids): Ids {
  return { services: ids.services.clone(), backends: ids.backends.clone() };
}

/** Seeds the allocators from what the maps hold: backends by their address, service ids held until a desired service claims them. */
export function seedIds(ids: Ids, state: LbState): void {
  for (const b of state.backends) {
    if (!ids.backends.bind(endpointKey(b.address, b.port, b.protocol), b.id)) ids.backends.hold(b.id);
  }
  for (const id of state.maglev.keys()) ids.services.hold(id);
  for (const f of state.frontends) ids.services.hold(f.serviceId);
}

/** Ids every entry of `state` uses (what the allocators must keep). */
export function liveIds(state: LbState): { services: Set<number>; backends: Set<number> } {
  return {
    services: new Set([...state.maglev.keys(), ...state.frontends.map((f) => f.serviceId)]),
    backends: new Set(state.backends.map((b) => b.id)),
  };
}

/**
 * The desired state with ids: a service keeps the id it has; an unbound service (after an agent
 * restart) takes the id its frontends point at in `current` if no one else has claimed it.
 * Throws IdSpaceExhausted when the maps cannot hold that many services or backends.
 */
export function resolveIds(desired: DesiredState, ids: Ids, current: LbState): LbState {
  const backendIds = new Map<string, number>();
  const backends: BackendEntry[] = desired.backends.map((b) => {
    const id = ids.backends.allocate(b.key);
    backendIds.set(b.key, id);
    const e: BackendEntry = { id, address: b.address, port: b.port, protocol: b.protocol };
    if (b.snatAddress) e.snatAddress = b.snatAddress;
    return e;
  });
  const currentService = new Map(current.frontends.map((f) => [frontendKeyOf(f), f.serviceId]));
  const frontends: FrontendEntry[] = [];
  const maglev = new Map<number, Uint32Array>();
  for (const s of desired.services) {
    let id = ids.services.idOf(s.key);
    if (id === undefined) {
      // Most frontends' current service id first, so a restart keeps every table where it is.
      const votes = new Map<number, number>();
      for (const f of s.frontends) {
        const c = currentService.get(frontendKeyOf(f));
        if (c !== undefined) votes.set(c, (votes.get(c) ?? 0) + 1);
      }
      const ranked = [...votes.entries()].sort((a, b) => b[1] - a[1] || a[0] - b[0]);
      for (const [candidate] of ranked) {
        if (ids.services.bind(s.key, candidate)) {
          id = candidate;
          break;
        }
      }
      id ??= ids.services.allocate(s.key);
    }
    const slotIds = s.backends.map((k) => backendIds.get(k) ?? 0);
    maglev.set(id, idTable(s.table, slotIds));
    for (const f of s.frontends) frontends.push({ address: f.address, port: f.port, protocol: f.protocol, serviceId: id, flags: f.flags });
  }
  return { frontends, backends, maglev, vips: [...desired.vips], version: current.version };
}


// The translator reuses a table object while its backends are unchanged; with unchanged ids the
// resolved table is then the same object too, so unchanged services cost neither a copy nor a
// slot-by-slot comparison in the diff.
const resolved = new WeakMap<Uint32Array, { ids: string; table: Uint32Array }>();

function idTable(indices: Uint32Array, slotIds: readonly number[]): Uint32Array {
  const key = slotIds.join(",");
  const hit = resolved.get(indices);
  if (hit && hit.ids === key) return hit.table;
  const table = new Uint32Array(indices.length);
  for (let i = 0; i < table.length; i++) table[i] = slotIds[indices[i] as number] ?? 0;
  resolved.set(indices, { ids: key, table });
  return table;
}
