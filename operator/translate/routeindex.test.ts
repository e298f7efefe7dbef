// RouteIndex against a full re-index (the straightforward definition) after random collection
// changes, including the ones that force a re-index: reordered collections and keys re-added.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ROUTE_KINDS, type KindName, type RouteKind } from "../api/kinds.ts";
import { objectKey, type K8sObject } from "../api/objects.ts";
import { emptyCollections, type Snapshot } from "../store/snapshot.ts";
import type { RouteObj } from "./gateway.ts";
import { defaultParentRef, isGatewayRef, parentRefsOf } from "./route.ts";
import { RouteIndex } from "./routeindex.ts";

function rng(seed: number): () => number {
  let x = seed >>> 0;
  return () => ((x = (Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0) / 2 ** 32);
}

/** The index by definition: per Gateway, routes in kind order, then collection order. */
function reference(s: Snapshot): Map<string, RouteObj[]> {
  const index = new Map<string, RouteObj[]>();
  for (const kind of ROUTE_KINDS) {
    for (const [key, route] of s.objects[kind] as ReadonlyMap<string, K8sObject>) {
      const seen = new Set<string>();
      for (const raw of parentRefsOf(route)) {
        const ref = defaultParentRef(raw, route.metadata.namespace ?? "default");
        if (!isGatewayRef(ref)) continue;
        const gw = objectKey(ref.namespace, ref.name);
        if (seen.has(gw)) continue;
        seen.add(gw);
        const list = index.get(gw);
        if (list) list.push({ kind, key, route } as RouteObj);
        else index.set(gw, [{ kind, key, route } as RouteObj]);
      }
    }
  }
  return index;
}

const KINDS: RouteKind[] = ["HTTPRoute", "GRPCRoute", "TCPRoute"];
const GATEWAYS = ["a/gw-0", "a/gw-1", "b/gw-2", "b/gw-3", "c/gw-4"];

function route(kind: RouteKind, name: string, ns: string, r: () => number, version: number): K8sObject {
  const parentRefs: unknown[] = [];
  const n = Math.floor(r() * 4);
  for (let i = 0; i < n; i++) {
    const [gns, gname] = (GATEWAYS[Math.floor(r() * GATEWAYS.length)] as string).split("/") as [string, string];
    // Sometimes the namespace is left to default to the route's, sometimes the ref is not a Gateway.
    if (r() < 0.1) parentRefs.push({ kind: "Service", name: gname });
    else if (r() < 0.3 && gns === ns) parentRefs.push({ name: gname });
    else parentRefs.push({ name: gname, namespace: gns });
  }
  return { apiVersion: "gateway.networking.k8s.io/v1", kind, metadata: { name, namespace: ns, generation: version }, spec: { parentRefs } } as K8sObject;
}

test("the route index equals a full re-index after random changes, and leaves untouched Gateways' lists alone", () => {
  for (const seed of [1, 2, 3, 4]) {
    const r = rng(seed);
    const colls = emptyCollections() as Record<KindName, ReadonlyMap<string, K8sObject>>;
    let version = 0;
    let next = 0;
    const newRoute = (kind: RouteKind) => {
      const ns = ["a", "b", "c"][Math.floor(r() * 3)] as string;
      return route(kind, `r-${next++}`, ns, r, ++version);
    };
    for (const kind of KINDS) {
      const m = new Map<string, K8sObject>();
      for (let i = 0; i < 15; i++) {
        const o = newRoute(kind);
        m.set(`${o.metadata.namespace}/${o.metadata.name}`, o);
      }
      colls[kind] = m;
    }
    const index = new RouteIndex();
    let s: Snapshot = { version: 1, acks: new Map(), objects: { ...colls } as unknown as Snapshot["objects"] };
    let prev = new Map(index.update(s).byGateway);
    assert.deepStrictEqual(prev, reference(s));
    for (let step = 0; step < 150; step++) {
      const objects = { ...s.objects } as Record<KindName, ReadonlyMap<string, K8sObject>>;
      const what: string[] = [];
      const touched = new Set<string>();
      // Re-adding a key in the same tick or reordering makes the index start over (new lists).
      let reindexed = false;
      const gwsOf = (o: K8sObject | undefined) => (o ? [...reference({ ...s, objects: { ...emptyCollections(), [o.kind]: new Map([["k", o]]) } }).keys()] : []);
      for (let n = r() < 0.8 ? 1 : 3; n > 0; n--) {
        const kind = KINDS[Math.floor(r() * KINDS.length)] as RouteKind;
        const m = new Map(objects[kind]);
        const keys = [...m.keys()];
        const key = keys[Math.floor(r() * keys.length)];
        const x = r();
        if (x < 0.3 && key) {
          const old = m.get(key) as K8sObject;
          const o = route(kind, old.metadata.name, old.metadata.namespace as string, r, ++version);
          for (const g of [...gwsOf(old), ...gwsOf(o)]) touched.add(g);
          m.set(key, o);
          what.push(`edit ${kind} ${key}`);
        } else if (x < 0.55) {
          const o = newRoute(kind);
          for (const g of gwsOf(o)) touched.add(g);
          m.set(`${o.metadata.namespace}/${o.metadata.name}`, o);
          what.push(`add ${kind} ${o.metadata.name}`);
        } else if (x < 0.75 && key) {
          for (const g of gwsOf(m.get(key))) touched.add(g);
          m.delete(key);
          what.push(`delete ${kind} ${key}`);
        } else if (x < 0.85 && key) {
          const o = m.get(key) as K8sObject;
          m.delete(key);
          m.set(key, o);
          reindexed = true;
          what.push(`move ${kind} ${key} to the end`);
        } else if (x < 0.9) {
          objects[kind] = new Map([...m].reverse());
          reindexed = true;
          what.push(`reverse ${kind}`);
          continue;
        } else {
          what.push(`copy ${kind} unchanged`);
        }
        objects[kind] = m;
      }
      s = { version: s.version + 1, acks: s.acks, objects: objects as unknown as Snapshot["objects"] };
      const got = index.update(s).byGateway;
      assert.deepStrictEqual(new Map(got), reference(s), `seed ${seed}, step ${step}: ${what.join("; ")}`);
      // A Gateway none of the changed routes names keeps its list instance (its memo stays valid).
      if (!reindexed) for (const [gw, list] of got) if (!touched.has(gw)) assert.equal(list, prev.get(gw), `seed ${seed}, step ${step}: ${gw} kept its list`);
      prev = new Map(got);
    }
  }
});

test("an unchanged snapshot reports no changes; a route's Gateways are known", () => {
  const index = new RouteIndex();
  const r = rng(9);
  const m = new Map<string, K8sObject>();
  const o = route("HTTPRoute", "x", "a", r, 1);
  (o.spec as { parentRefs: unknown[] }).parentRefs = [{ name: "gw-1" }, { name: "gw-0", namespace: "a" }, { name: "gw-1", namespace: "a" }];
  m.set("a/x", o);
  const s = { version: 1, acks: new Map(), objects: { ...emptyCollections(), HTTPRoute: m } } as unknown as Snapshot;
  assert.equal(index.update(s).changes, undefined, "the first update indexes everything");
  assert.deepStrictEqual(index.gatewaysOf("HTTPRoute", "a/x"), ["a/gw-1", "a/gw-0"]);
  assert.deepStrictEqual(index.update({ ...s, version: 2 }).changes, new Map());
  const edited = { ...o, spec: { parentRefs: [] } } as K8sObject;
  const u = index.update({ ...s, version: 3, objects: { ...s.objects, HTTPRoute: new Map([["a/x", edited]]) } } as unknown as Snapshot);
  assert.deepStrictEqual(u.changes, new Map([["HTTPRoute", new Set(["a/x"])]]));
  assert.deepStrictEqual(u.byGateway, new Map());
  assert.deepStrictEqual(index.gatewaysOf("HTTPRoute", "a/x"), []);
});
