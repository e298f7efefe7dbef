// Route statuses, assembled from every Gateway's parent entries for a route. A tick redoes only
// the routes that can have a different status: those whose object changed and those a changed
// Gateway result lists (before or after). A change to the Gateway collection itself (which decides
// the "parentRef Gateway does not exist" warnings) redoes them all.
import { ROUTE_KINDS, type RouteKind } from "../api/kinds.ts";
import { objectKey, type K8sObject } from "../api/objects.ts";
import type { Snapshot } from "../store/snapshot.ts";
import type { GatewayResult, ParentEntry } from "./gateway.ts";
import type { ObjectStatus } from "./output.ts";
import { defaultParentRef, isGatewayRef, parentRefsOf } from "./route.ts";
import type { RouteChanges, RouteIndex } from "./routeindex.ts";
import { sameItems } from "./world.ts";

interface Memo {
  sk: string;
  route: K8sObject;
  entries: ParentEntry[];
  status: ObjectStatus | undefined;
  warnings: string[];
}

export interface GatewayResultChange {
  /** Gateway key. */
  key: string;
  before: GatewayResult | undefined;
  after: GatewayResult | undefined;
}

/** A route's place in the output order; its memo is replaced when the route is redone. */
interface Slot {
  memo: Memo;
  /** Index of its status in the output arrays, -1 without one. */
  at: number;
}

export class RouteStatuses {
  private readonly controllerName: string;
  private slots = new Map<RouteKind, Map<string, Slot>>();
  /** Every route's slot in output order (kind, then collection order). */
  private ordered: Slot[] = [];
  // The output in flat arrays (status keys, statuses, warnings), patched in place when a redone
  // route keeps the same shape of output: copying them out is the only per-route cost of a tick.
  private outKeys: string[] = [];
  private outStatuses: ObjectStatus[] = [];
  private outWarnings: string[] = [];
  private gateways: unknown;

  constructor(controllerName: string) {
    this.controllerName = controllerName;
  }

  /**
   * Adds every route's status (routes in kind, then collection order) to `statuses` and its
   * warnings to `warnings`. `routeChanges` undefined, or a changed Gateway collection, means
   * everything is redone; `gatewayChanges` lists the Gateways whose result is a new instance.
   */
  update(
    snapshot: Snapshot,
    index: RouteIndex,
    results: ReadonlyMap<string, GatewayResult>,
    routeChanges: RouteChanges | undefined,
    gatewayChanges: readonly GatewayResultChange[],
    statuses: Map<string, ObjectStatus>,
    warnings: string[],
  ): void {
    const gateways = snapshot.objects.Gateway;
    if (routeChanges && this.gateways === gateways) {
      const dirty = new Map<RouteKind, Set<string>>();
      const mark = (kind: RouteKind, key: string) => {
        const set = dirty.get(kind);
        if (set) set.add(key);
        else dirty.set(kind, new Set([key]));
      };
      for (const [kind, keys] of routeChanges) for (const key of keys) mark(kind, key);
      for (const { before, after } of gatewayChanges) {
        for (const r of [before, after]) {
          for (const sk of r?.routeParents.keys() ?? []) {
            const i = sk.indexOf("/");
            mark(sk.slice(0, i) as RouteKind, sk.slice(i + 1));
          }
        }
      }
      let reorder = false;
      let relayout = false;
      for (const [kind, keys] of dirty) {
        const coll = snapshot.objects[kind] as ReadonlyMap<string, K8sObject>;
        let slots = this.slots.get(kind);
        if (!slots) this.slots.set(kind, (slots = new Map()));
        for (const key of keys) {
          const route = coll.get(key);
          const slot = slots.get(key);
          if (!route) {
            if (slot) reorder = true;
            slots.delete(key);
          } else if (slot) {
            const before = slot.memo;
            const memo = this.compute(kind, key, route, index, results, gateways, before);
            if (memo === before) continue;
            slot.memo = memo;
            if (slot.at >= 0 && memo.status) this.outStatuses[slot.at] = memo.status;
            else if (slot.at >= 0 || memo.status) relayout = true;
            if (!sameItems(before.warnings, memo.warnings)) relayout = true;
          } else {
            slots.set(key, { memo: this.compute(kind, key, route, index, results, gateways, undefined), at: -1 });
            reorder = true;
          }
        }
      }
      // Added or removed routes: the route index has checked that collections kept their order.
      if (reorder) this.ordered = this.order(snapshot);
      if (reorder || relayout) this.layout();
    } else {
      this.slots = new Map();
      for (const kind of ROUTE_KINDS) {
        const slots = new Map<string, Slot>();
        for (const [key, route] of snapshot.objects[kind] as ReadonlyMap<string, K8sObject>) {
          slots.set(key, { memo: this.compute(kind, key, route, index, results, gateways, undefined), at: -1 });
        }
        this.slots.set(kind, slots);
      }
      this.ordered = this.order(snapshot);
      this.layout();
    }
    this.gateways = gateways;

    const keys = this.outKeys;
    const values = this.outStatuses;
    for (let i = 0; i < keys.length; i++) statuses.set(keys[i] as string, values[i] as ObjectStatus);
    for (const w of this.outWarnings) warnings.push(w);
  }

  private layout(): void {
    this.outKeys = [];
    this.outStatuses = [];
    this.outWarnings = [];
    for (const slot of this.ordered) {
      const { memo } = slot;
      for (const w of memo.warnings) this.outWarnings.push(w);
      slot.at = -1;
      if (memo.status) {
        slot.at = this.outKeys.length;
        this.outKeys.push(memo.sk);
        this.outStatuses.push(memo.status);
      }
    }
  }

  private order(snapshot: Snapshot): Slot[] {
    const out: Slot[] = [];
    for (const kind of ROUTE_KINDS) {
      const slots = this.slots.get(kind);
      for (const key of (snapshot.objects[kind] as ReadonlyMap<string, K8sObject>).keys()) out.push(slots?.get(key) as Slot);
    }
    return out;
  }

  private compute(
    kind: RouteKind, key: string, route: K8sObject, index: RouteIndex,
    results: ReadonlyMap<string, GatewayResult>, gateways: ReadonlyMap<string, unknown>, prev: Memo | undefined,
  ): Memo {
    const sk = `${kind}/${key}`;
    // Only the Gateways the route names can hold entries for it; take them in Gateway key order.
    let gws = index.gatewaysOf(kind, key);
    if (gws.length > 1) gws = [...gws].sort();
    const entries: ParentEntry[] = [];
    for (const gw of gws) {
      const e = results.get(gw)?.routeParents.get(sk);
      if (e) entries.push(...e);
    }
    entries.sort((a, b) => a.index - b.index);
    if (prev && prev.route === route && sameItems(prev.entries, entries)) return prev;

    const missing: string[] = [];
    for (const raw of parentRefsOf(route)) {
      const ref = defaultParentRef(raw, route.metadata.namespace ?? "default");
      if (isGatewayRef(ref) && !gateways.has(objectKey(ref.namespace, ref.name))) {
        missing.push(`${kind} ${key}: parentRef Gateway ${objectKey(ref.namespace, ref.name)} does not exist`);
      }
    }
    let status: ObjectStatus | undefined;
    if (entries.length) {
      // Entries written by other controllers stay as they are.
      const prevParents = (route.status as { parents?: { controllerName?: string }[] } | undefined)?.parents;
      const others = Array.isArray(prevParents) ? prevParents.filter((p) => p?.controllerName !== this.controllerName) : [];
      status = {
        kind, namespace: route.metadata.namespace, name: route.metadata.name,
        status: { parents: [...entries.map((e) => e.status), ...others] },
      };
    }
    return { sk, route, entries, status, warnings: missing };
  }
}
