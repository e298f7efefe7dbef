// The route → Gateway index, kept up to date across snapshots. A tick compares each route
// collection with the previous one by instance and re-indexes only the routes that changed; only
// the Gateways those routes name (before or after) get new route lists, so every other Gateway's
// list stays the same array and its memoized translation stays valid.
import { ROUTE_KINDS, type RouteKind } from "../api/kinds.ts";
import { objectKey, type K8sObject } from "../api/objects.ts";
import type { Snapshot } from "../store/snapshot.ts";
import type { RouteObj } from "./gateway.ts";
import { defaultParentRef, isGatewayRef, parentRefsOf } from "./route.ts";

interface RouteRec {
  route: K8sObject;
  /**
   * Position in its collection's iteration order. Ordinals only grow (a new key gets the next one),
   * so as long as a collection keeps its order (edits in place, additions at the end), sorting a
   * Gateway's routes by ordinal gives the order a full re-index would.
   */
  ordinal: number;
  /** Keys of the Gateways the route's parentRefs name, deduplicated, in parentRef order. */
  gateways: readonly string[];
}

/** Routes whose object was added, changed or removed this tick, by kind (keys). */
export type RouteChanges = ReadonlyMap<RouteKind, ReadonlySet<string>>;

export interface RouteIndexUpdate {
  /** Gateway key → the routes whose parentRefs name it (route order: kind, then collection order). */
  byGateway: ReadonlyMap<string, readonly RouteObj[]>;
  /** What changed since the previous update; undefined when everything was re-indexed. */
  changes: RouteChanges | undefined;
}

const KIND_RANK = new Map<string, number>(ROUTE_KINDS.map((k, i) => [k, i]));
const NO_GATEWAYS: readonly string[] = [];

function gatewaysOf(route: K8sObject): readonly string[] {
  let out: string[] | undefined;
  for (const raw of parentRefsOf(route)) {
    const ref = defaultParentRef(raw, route.metadata.namespace ?? "default");
    if (!isGatewayRef(ref)) continue;
    const gwKey = objectKey(ref.namespace, ref.name);
    if (!out) out = [gwKey];
    else if (!out.includes(gwKey)) out.push(gwKey);
  }
  return out ?? NO_GATEWAYS;
}

export class RouteIndex {
  private colls = new Map<RouteKind, ReadonlyMap<string, K8sObject>>();
  private recs = new Map<RouteKind, Map<string, RouteRec>>();
  private byGateway = new Map<string, RouteObj[]>();
  private nextOrdinal = 0;

  /** Gateway keys a route names (as of the last update); empty for an unknown route. */
  gatewaysOf(kind: RouteKind, key: string): readonly string[] {
    return this.recs.get(kind)?.get(key)?.gateways ?? NO_GATEWAYS;
  }

  update(snapshot: Snapshot): RouteIndexUpdate {
    const changes = new Map<RouteKind, Set<string>>();
    // Per affected Gateway: the route status keys (`Kind/key`) whose entries must be redone.
    const touched = new Map<string, Set<string>>();
    const added: { kind: RouteKind; key: string; rec: RouteRec }[] = [];
    if (this.colls.size === 0) return this.rebuild(snapshot);
    for (const kind of ROUTE_KINDS) {
      const coll = snapshot.objects[kind] as ReadonlyMap<string, K8sObject>;
      if (this.colls.get(kind) === coll) continue;
      const recs = this.recs.get(kind) as Map<string, RouteRec>;
      const changed = new Set<string>();
      const fresh: [string, K8sObject][] = [];
      const removed: string[] = [];
      // Walk both collections in step (cheaper than a lookup per route). Known routes must keep
      // their relative order and new ones must come after them; anything else is a reordered
      // collection, which is simply indexed again.
      const prevColl = this.colls.get(kind) as ReadonlyMap<string, K8sObject>;
      const prevIt = prevColl.entries();
      let p = prevIt.next();
      for (const [key, route] of coll) {
        while (!p.done && p.value[0] !== key && !coll.has(p.value[0])) {
          removed.push(p.value[0]);
          p = prevIt.next();
        }
        if (!p.done && p.value[0] === key) {
          if (fresh.length) return this.rebuild(snapshot);
          if (p.value[1] !== route) changed.add(key);
          p = prevIt.next();
        } else if (recs.has(key)) {
          return this.rebuild(snapshot);
        } else {
          fresh.push([key, route]);
        }
      }
      for (; !p.done; p = prevIt.next()) removed.push(p.value[0]);

      const touch = (gws: readonly string[], key: string) => {
        for (const gw of gws) {
          const set = touched.get(gw);
          if (set) set.add(`${kind}/${key}`);
          else touched.set(gw, new Set([`${kind}/${key}`]));
        }
      };
      for (const key of removed) {
        touch((recs.get(key) as RouteRec).gateways, key);
        recs.delete(key);
        changed.add(key);
      }
      for (const key of changed) {
        const rec = recs.get(key);
        if (!rec) continue;
        touch(rec.gateways, key);
        const route = coll.get(key) as K8sObject;
        const next: RouteRec = { route, ordinal: rec.ordinal, gateways: gatewaysOf(route) };
        recs.set(key, next);
        touch(next.gateways, key);
        added.push({ kind, key, rec: next });
      }
      for (const [key, route] of fresh) {
        const rec: RouteRec = { route, ordinal: this.nextOrdinal++, gateways: gatewaysOf(route) };
        recs.set(key, rec);
        touch(rec.gateways, key);
        changed.add(key);
        added.push({ kind, key, rec });
      }
      this.colls.set(kind, coll);
      if (changed.size) changes.set(kind, changed);
    }

    // New lists for the touched Gateways only: drop their touched routes, then put back the
    // current ones in (kind, ordinal) order.
    const lists = new Map<string, RouteObj[]>();
    for (const [gw, keys] of touched) {
      lists.set(gw, (this.byGateway.get(gw) ?? []).filter((ro) => !keys.has(`${ro.kind}/${ro.key}`)));
    }
    for (const { kind, key, rec } of added) {
      for (const gw of rec.gateways) insertRoute(lists.get(gw) as RouteObj[], { kind, key, route: rec.route } as RouteObj, (ro) => this.rank(ro));
    }
    for (const [gw, list] of lists) {
      if (list.length) this.byGateway.set(gw, list);
      else this.byGateway.delete(gw);
    }
    return { byGateway: this.byGateway, changes };
  }

  private rank(ro: RouteObj): [number, number] {
    return [KIND_RANK.get(ro.kind) ?? 0, (this.recs.get(ro.kind)?.get(ro.key) as RouteRec).ordinal];
  }

  private rebuild(snapshot: Snapshot): RouteIndexUpdate {
    this.colls = new Map();
    this.recs = new Map();
    this.byGateway = new Map();
    for (const kind of ROUTE_KINDS) {
      const coll = snapshot.objects[kind] as ReadonlyMap<string, K8sObject>;
      const recs = new Map<string, RouteRec>();
      for (const [key, route] of coll) {
        const rec: RouteRec = { route, ordinal: this.nextOrdinal++, gateways: gatewaysOf(route) };
        recs.set(key, rec);
        for (const gw of rec.gateways) {
          const ro = { kind, key, route } as RouteObj;
          const list = this.byGateway.get(gw);
          if (list) list.push(ro);
          else this.byGateway.set(gw, [ro]);
        }
      }
      this.colls.set(kind, coll);
      this.recs.set(kind, recs);
    }
    return { byGateway: this.byGateway, changes: undefined };
  }
}

/** Inserts into a list sorted by rank (kind, then ordinal). */
function insertRoute(list: RouteObj[], ro: RouteObj, rank: (ro: RouteObj) => [number, number]): void {
  const [k, o] = rank(ro);
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const [mk, mo] = rank(list[mid] as RouteObj);
    if (mk < k || (mk === k && mo < o)) lo = mid + 1;
    else hi = mid;
  }
  list.splice(lo, 0, ro);
}
