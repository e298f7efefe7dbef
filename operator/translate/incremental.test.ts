// The incremental paths of the Translator (route index, route statuses, DNS records, merged
// clusters/certificates) under random sequences of changes: after every step a long-lived
// Translator must give exactly what a fresh one gives, down to the order of every list and of the
// status map, and a one-route change must leave every other Gateway's result untouched.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { KindName } from "../api/kinds.ts";
import { keyOf, type K8sObject } from "../api/objects.ts";
import { snapshotOf, type Snapshot } from "../store/snapshot.ts";
import type { TranslateResult } from "./output.ts";
import { generatedServiceName } from "./service.ts";
import { httpRoute, syntheticNamespace, syntheticWorld, type WorldShape } from "./synthetic.ts";
import { translate, Translator, type TranslateOptions } from "./translate.ts";

const GW = "gateway.networking.k8s.io/v1";

// Deterministic pseudo-random numbers, so a failure reproduces.
function rng(seed: number): () => number {
  let x = seed >>> 0;
  return () => ((x = (Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0) / 2 ** 32);
}

type Coll = Map<string, K8sObject>;

/** A mutable view of a snapshot: changed collections are copied once per step, the rest shared. */
class Step {
  private readonly base: Snapshot;
  private readonly copies = new Map<KindName, Coll>();
  acks: ReadonlyMap<string, string>;
  constructor(base: Snapshot) {
    this.base = base;
    this.acks = base.acks;
  }
  get(kind: KindName): ReadonlyMap<string, K8sObject> {
    return this.copies.get(kind) ?? (this.base.objects[kind] as ReadonlyMap<string, K8sObject>);
  }
  edit(kind: KindName): Coll {
    let c = this.copies.get(kind);
    if (!c) this.copies.set(kind, (c = new Map(this.base.objects[kind] as ReadonlyMap<string, K8sObject>)));
    return c;
  }
  replace(kind: KindName, coll: Coll): void {
    this.copies.set(kind, coll);
  }
  put(obj: K8sObject): void {
    this.edit(obj.kind as KindName).set(keyOf(obj), obj);
  }
  snapshot(): Snapshot {
    const objects = { ...this.base.objects } as Record<KindName, ReadonlyMap<string, K8sObject>>;
    for (const [k, c] of this.copies) objects[k] = c;
    return { version: this.base.version + 1, acks: this.acks, objects: objects as unknown as Snapshot["objects"] };
  }
}

function pick<T>(r: () => number, xs: readonly T[]): T | undefined {
  return xs.length ? xs[Math.floor(r() * xs.length)] : undefined;
}

const HOSTNAMES = ["shared.example.com", "Shared.Example.com.", "app-1.g0.example.com", "app-2.g1.example.com", "*.wild.example.com", "x.g2.example.com"];

function clone<T>(o: T): T {
  return structuredClone(o);
}

function grpcRoute(i: number, ns: string, parents: unknown[], hostnames: string[]): K8sObject {
  return {
    apiVersion: GW, kind: "GRPCRoute",
    metadata: { name: `grpc-${i}`, namespace: ns, creationTimestamp: new Date(Date.UTC(2026, 1, 1) + i * 1000).toISOString().replace(/\.\d+Z$/, "Z") },
    spec: {
      parentRefs: parents, hostnames,
      rules: [{ matches: [{ method: { service: `pkg.Svc${i % 3}`, method: "Get" } }], backendRefs: [{ name: `svc-${i % 4}`, namespace: ns, port: 8080 }] }],
    },
  } as K8sObject;
}

/** An extra Gateway with hostname-less listeners, so routes on several Gateways can ask for the same DNS name. */
function openGateway(i: number, ns: string): K8sObject {
  return {
    apiVersion: GW, kind: "Gateway", metadata: { name: `open-${i}`, namespace: ns },
    spec: {
      gatewayClassName: "sluice",
      listeners: [
        { name: "http", port: 80, protocol: "HTTP", allowedRoutes: { namespaces: { from: "All" } } },
        ...(i % 2 ? [{ name: "https", port: 443, protocol: "HTTPS", hostname: "*.wild.example.com", tls: { certificateRefs: [{ name: "tls" }] }, allowedRoutes: { namespaces: { from: "All" } } }] : []),
      ],
    },
  } as K8sObject;
}

/** Random parentRefs: zero to three, to existing or missing Gateways, sometimes repeated or with a section. */
function randomParents(r: () => number, st: Step, ns: (i: number) => string): unknown[] {
  const gws = [...st.get("Gateway").values()].map((g) => ({ name: g.metadata.name, namespace: g.metadata.namespace }));
  gws.push({ name: "gw-missing", namespace: ns(0) });
  const out: unknown[] = [];
  const n = Math.floor(r() * 4);
  for (let i = 0; i < n; i++) {
    const g = pick(r, gws) as { name: string; namespace: string };
    const ref: Record<string, unknown> = { ...g };
    if (r() < 0.2) ref.sectionName = pick(r, ["http", "https", "nope"]);
    out.push(ref);
    if (r() < 0.15) out.push({ ...ref });
  }
  return out;
}

interface Ctx {
  r: () => number;
  shape: WorldShape;
  ns: (i: number) => string;
  next: number;
  version: number;
  serviceMode: boolean;
}

type Op = (st: Step, c: Ctx) => string;

const routeKinds: KindName[] = ["HTTPRoute", "GRPCRoute", "TCPRoute"];

const OPS: [number, Op][] = [
  [6, (st, c) => {
    const key = pick(c.r, [...st.get("HTTPRoute").keys()]);
    if (!key) return "no route to edit";
    const i = Number(key.split("route-")[1]);
    st.put(httpRoute(i, c.shape, c.ns, ++c.version));
    return `edit ${key}`;
  }],
  [4, (st, c) => {
    const i = c.next++;
    if (c.r() < 0.5) {
      const route = httpRoute(i, c.shape, c.ns, 0);
      if (c.r() < 0.4) (route.spec as { hostnames: string[] }).hostnames = [pick(c.r, HOSTNAMES) as string];
      st.put(route);
      return `add ${keyOf(route)}`;
    }
    const route = grpcRoute(i, c.ns(i), randomParents(c.r, st, c.ns), [pick(c.r, HOSTNAMES) as string]);
    st.put(route);
    return `add ${keyOf(route)}`;
  }],
  [3, (st, c) => {
    const kind = pick(c.r, routeKinds) as KindName;
    const key = pick(c.r, [...st.get(kind).keys()]);
    if (!key) return "no route to delete";
    st.edit(kind).delete(key);
    return `delete ${kind} ${key}`;
  }],
  [5, (st, c) => {
    const kind = pick(c.r, ["HTTPRoute", "GRPCRoute"] as KindName[]) as KindName;
    const key = pick(c.r, [...st.get(kind).keys()]);
    if (!key) return "no route to move";
    const route = clone(st.get(kind).get(key) as K8sObject) as K8sObject & { spec: { parentRefs: unknown[] } };
    route.spec.parentRefs = randomParents(c.r, st, c.ns);
    st.put(route);
    return `move ${kind} ${key} to ${JSON.stringify(route.spec.parentRefs)}`;
  }],
  [4, (st, c) => {
    const kind = pick(c.r, ["HTTPRoute", "GRPCRoute"] as KindName[]) as KindName;
    const key = pick(c.r, [...st.get(kind).keys()]);
    if (!key) return "no route to rename";
    const route = clone(st.get(kind).get(key) as K8sObject) as K8sObject & { spec: { hostnames: string[] } };
    route.spec.hostnames = HOSTNAMES.filter(() => c.r() < 0.3);
    st.put(route);
    return `hostnames of ${kind} ${key}: ${route.spec.hostnames.join(",")}`;
  }],
  [2, (st, c) => {
    const i = c.next++;
    const gw = openGateway(i, c.ns(i));
    st.put(gw);
    return `add Gateway ${keyOf(gw)}`;
  }],
  [2, (st, c) => {
    const key = pick(c.r, [...st.get("Gateway").keys()]);
    if (!key) return "no Gateway to remove";
    st.edit("Gateway").delete(key);
    return `remove Gateway ${key}`;
  }],
  [2, (st, c) => {
    const key = pick(c.r, [...st.get("Gateway").keys()]);
    if (!key) return "no Gateway to edit";
    const gw = clone(st.get("Gateway").get(key) as K8sObject) as K8sObject & { spec: { listeners: { hostname?: string }[] } };
    const l = pick(c.r, gw.spec.listeners);
    if (l) {
      if (c.r() < 0.3) delete l.hostname;
      else l.hostname = pick(c.r, ["*.example.com", "shared.example.com", "*.g0.example.com", "*.wild.example.com"]);
    }
    st.put(gw);
    return `listener hostname of ${key}: ${l?.hostname}`;
  }],
  [1, (st) => {
    const gc = clone(st.get("GatewayClass").get("sluice") as K8sObject) as K8sObject & { spec: { controllerName: string } };
    gc.spec.controllerName = gc.spec.controllerName === "sluice.dev/gateway-controller" ? "example.com/other" : "sluice.dev/gateway-controller";
    st.put(gc);
    return `GatewayClass controller ${gc.spec.controllerName}`;
  }],
  [1, (st) => {
    st.replace("HTTPRoute", new Map([...st.get("HTTPRoute")].reverse()));
    return "reverse the HTTPRoute collection";
  }],
  [2, (st, c) => {
    const key = pick(c.r, [...st.get("HTTPRoute").keys()]);
    if (!key) return "no route to re-add";
    const coll = st.edit("HTTPRoute");
    const route = coll.get(key) as K8sObject;
    coll.delete(key);
    coll.set(key, clone(route));
    return `delete and re-add ${key}`;
  }],
  [2, (st, c) => {
    const key = pick(c.r, [...st.get("EndpointSlice").keys()]);
    if (!key) return "no slice";
    const old = st.get("EndpointSlice").get(key) as K8sObject;
    st.put({ ...old, endpoints: [{ addresses: [`10.9.${c.version++ % 250}.1`], conditions: { ready: c.r() < 0.8 } }] } as K8sObject);
    return `endpoints of ${key}`;
  }],
  [1, (st, c) => {
    const key = pick(c.r, [...st.get("Service").keys()].filter((k) => !k.includes("sluice-")));
    if (!key) return "no Service";
    st.edit("Service").delete(key);
    return `delete Service ${key}`;
  }],
  [2, (st, c) => {
    const gws = [...st.get("Gateway").keys()];
    const key = pick(c.r, gws);
    if (!key) return "no Gateway to ack";
    const fresh = translate(st.snapshot(), options(c));
    const g = fresh.datapath.gateways.find((d) => d.gateway === key);
    const acks = new Map(st.acks);
    acks.set(key, g && c.r() < 0.8 ? g.configHash : "stale");
    st.acks = acks;
    return `ack ${key}`;
  }],
  [3, (st, c) => {
    if (!c.serviceMode) return "static addressing";
    const gwKey = pick(c.r, [...st.get("Gateway").keys()]);
    if (!gwKey) return "no Gateway";
    const [ns, name] = gwKey.split("/") as [string, string];
    const ingress = c.r() < 0.3 ? [] : c.r() < 0.5
      ? [{ hostname: `lb-${Math.floor(c.r() * 3)}.elb.example.com` }]
      : [{ ip: `198.51.100.${Math.floor(c.r() * 3)}` }, ...(c.r() < 0.3 ? [{ ip: "2001:db8::1" }] : [])];
    st.put({
      apiVersion: "v1", kind: "Service", metadata: { name: generatedServiceName(name), namespace: ns },
      spec: { type: "LoadBalancer", ports: [{ port: 80 }] }, status: { loadBalancer: { ingress } },
    } as K8sObject);
    return `load balancer of ${gwKey}: ${JSON.stringify(ingress)}`;
  }],
];

function options(c: Ctx): TranslateOptions {
  return c.serviceMode ? { addressing: { mode: "service" } } : { addressing: { mode: "static", addresses: ["192.0.2.1", "2001:db8::7"] } };
}

function randomOp(r: () => number): Op {
  const total = OPS.reduce((n, [w]) => n + w, 0);
  let x = r() * total;
  for (const [w, op] of OPS) if ((x -= w) < 0) return op;
  return (OPS[0] as [number, Op])[1];
}

/** Equal content and equal order (deepStrictEqual does not look at a Map's order). */
function assertSame(actual: TranslateResult, expected: TranslateResult, what: string): void {
  assert.deepStrictEqual(actual, expected, what);
  assert.deepStrictEqual([...actual.statuses.keys()], [...expected.statuses.keys()], `${what}: status order`);
}

function randomSequence(seed: number, serviceMode: boolean, steps: number): void {
  const shape: WorldShape = { gateways: 4, httpRoutes: 30, services: 6, tcpRoutes: 4 };
  const c: Ctx = { r: rng(seed), shape, ns: syntheticNamespace(shape), next: 1000, version: 1, serviceMode };
  const t = new Translator(options(c));
  let s = snapshotOf(syntheticWorld(shape));
  assertSame(t.translate(s), translate(s, options(c)), "initial");
  const log: string[] = [];
  for (let i = 0; i < steps; i++) {
    const st = new Step(s);
    // Mostly one change per tick, sometimes a few at once.
    const n = c.r() < 0.75 ? 1 : 2 + Math.floor(c.r() * 3);
    const did: string[] = [];
    for (let k = 0; k < n; k++) did.push(randomOp(c.r)(st, c));
    s = st.snapshot();
    log.push(did.join("; "));
    assertSame(t.translate(s), translate(s, options(c)), `seed ${seed}, step ${i}: ${log.slice(-3).join(" | ")}`);
  }
}

test("random change sequences: incremental equals fresh after every step (static addresses)", () => {
  for (const seed of [1, 2, 3]) randomSequence(seed, false, 60);
});

test("random change sequences: incremental equals fresh after every step (load balancer addresses, DNS)", () => {
  for (const seed of [11, 12]) randomSequence(seed, true, 60);
});

test("a one-route change re-translates only the Gateways that route names", () => {
  const shape: WorldShape = { gateways: 5, httpRoutes: 50, services: 10, tcpRoutes: 5 };
  const ns = syntheticNamespace(shape);
  const opts: TranslateOptions = { addressing: { mode: "static", addresses: ["192.0.2.1"] } };
  const t = new Translator(opts);
  const s0 = snapshotOf(syntheticWorld(shape));
  const a = t.translate(s0);
  // route-7 is on gw-2.
  const st = new Step(s0);
  st.put(httpRoute(7, shape, ns, 5));
  const s1 = st.snapshot();
  const b = t.translate(s1);
  assertSame(b, translate(s1, opts), "after the edit");
  for (const [i, g] of b.datapath.gateways.entries()) {
    if (g.gateway === `${ns(2)}/gw-2`) assert.notEqual(g, a.datapath.gateways[i], "the route's Gateway is re-translated");
    else assert.equal(g, a.datapath.gateways[i], `${g.gateway} is reused`);
  }
  // Moving it to gw-3 re-translates gw-2 and gw-3 only.
  const st2 = new Step(s1);
  const moved = httpRoute(7, shape, ns, 6) as K8sObject & { spec: { parentRefs: unknown[] } };
  moved.spec.parentRefs = [{ name: "gw-3", namespace: ns(3) }];
  st2.put(moved);
  const s2 = st2.snapshot();
  const c = t.translate(s2);
  assertSame(c, translate(s2, opts), "after the move");
  for (const [i, g] of c.datapath.gateways.entries()) {
    const redone = g.gateway === `${ns(2)}/gw-2` || g.gateway === `${ns(3)}/gw-3`;
    assert.equal(g === b.datapath.gateways[i], !redone, `${g.gateway} ${redone ? "re-translated" : "reused"}`);
  }
  // A tick with no change returns equal output.
  assertSame(t.translate({ ...s2, version: s2.version + 1 }), c, "unchanged tick");
});

test("a route whose status alone changed (spec kept by the store) does not re-translate its Gateway; a status that breaks the schema does", () => {
  const shape: WorldShape = { gateways: 3, httpRoutes: 12, services: 4, tcpRoutes: 2 };
  const opts: TranslateOptions = { addressing: { mode: "static", addresses: ["192.0.2.1"] } };
  const t = new Translator(opts);
  const s0 = snapshotOf(syntheticWorld(shape));
  const a = t.translate(s0);
  const route = [...s0.objects.HTTPRoute.values()][4] as K8sObject;
  // Another controller's parents entry and our own echoed write: the status changes, the spec is the same instance.
  const written = { ...route, metadata: { ...route.metadata, resourceVersion: "999" }, status: { parents: [{ controllerName: "other.example/controller", parentRef: { name: "x" }, conditions: [{ type: "Accepted", status: "True", reason: "Accepted", message: "", lastTransitionTime: "2024-01-01T00:00:00Z", observedGeneration: 1 }] }] } };
  const st = new Step(s0);
  st.put(written);
  const s1 = st.snapshot();
  const b = t.translate(s1);
  assertSame(b, translate(s1, opts), "after the status-only change");
  for (const [i, g] of b.datapath.gateways.entries()) assert.equal(g, a.datapath.gateways[i], `${g.gateway} is reused`);
  const parents = (b.statuses.get(`HTTPRoute/${keyOf(route)}`)?.status as { parents: { controllerName: string }[] }).parents;
  assert.ok(parents.some((p) => p.controllerName === "other.example/controller"), "the other controller's entry is kept");
  // A status that fails the schema makes the route invalid: that must be seen.
  const st2 = new Step(s1);
  st2.put({ ...written, status: { parents: "not a list" } });
  const s2 = st2.snapshot();
  assertSame(t.translate(s2), translate(s2, opts), "after a schema-breaking status");
});

test("a route added to a Gateway reuses the other routes' compiled entries; a changed backend recompiles its routes", () => {
  const shape: WorldShape = { gateways: 2, httpRoutes: 20, services: 4, tcpRoutes: 0 };
  const ns = syntheticNamespace(shape);
  const opts: TranslateOptions = { addressing: { mode: "static", addresses: ["192.0.2.1"] } };
  const t = new Translator(opts);
  const s0 = snapshotOf(syntheticWorld(shape));
  const entriesOf = (r: TranslateResult) => new Map(r.datapath.gateways.flatMap((g) => g.ports.flatMap((p) => p.listeners.flatMap((l) => l.virtualHosts.flatMap((v) => v.routes)))).map((e) => [e.id, e]));
  const before = entriesOf(t.translate(s0));
  const st = new Step(s0);
  st.put(httpRoute(100, shape, ns, 1));
  const s1 = st.snapshot();
  const r1 = t.translate(s1);
  assertSame(r1, translate(s1, opts), "after the addition");
  const after = entriesOf(r1);
  assert.ok(after.size > before.size, "the new route is served");
  for (const [id, e] of before) assert.equal(after.get(id), e, `${id} is not compiled again`);
  // A Service's endpoints change: equality with a fresh translation shows the routes using it were recompiled.
  const svc = [...s1.objects.EndpointSlice.values()][0] as K8sObject & { endpoints: { addresses: string[] }[] };
  const st2 = new Step(s1);
  st2.put({ ...svc, endpoints: [{ addresses: ["198.51.100.77"], conditions: { ready: true } }] } as K8sObject);
  const s2 = st2.snapshot();
  assertSame(t.translate(s2), translate(s2, opts), "after the endpoint change");
});

test("after a translation that throws, the next one starts over and equals a fresh one", () => {
  const shape: WorldShape = { gateways: 3, httpRoutes: 12, services: 4, tcpRoutes: 2 };
  const ns = syntheticNamespace(shape);
  const opts: TranslateOptions = { addressing: { mode: "static", addresses: ["192.0.2.1"] } };
  const t = new Translator(opts);
  const s0 = snapshotOf(syntheticWorld(shape));
  t.translate(s0);
  // A collection that fails while being read, after the HTTPRoute change has been seen.
  class Failing extends Map<string, K8sObject> {
    override [Symbol.iterator](): MapIterator<[string, K8sObject]> {
      throw new Error("unreadable collection");
    }
  }
  const st = new Step(s0);
  st.put(httpRoute(4, shape, ns, 3));
  st.replace("TCPRoute", new Failing(st.get("TCPRoute")));
  const s1 = st.snapshot();
  assert.throws(() => t.translate(s1), /unreadable collection/);
  const s2: Snapshot = { ...s1, version: s1.version + 1, objects: { ...s1.objects, TCPRoute: s0.objects.TCPRoute } };
  assertSame(t.translate(s2), translate(s2, opts), "after the failure");
});
