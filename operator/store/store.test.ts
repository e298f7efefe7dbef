import { test } from "node:test";
import assert from "node:assert/strict";
import { Subject, firstValueFrom, from, lastValueFrom, toArray, type Observable } from "rxjs";
import { TestScheduler } from "rxjs/testing";
import { KIND_NAMES, type KindName } from "../api/kinds.ts";
import type { K8sObject } from "../api/objects.ts";
import type { SourceEvent } from "../sources/events.ts";
import { createStore, type StoreOptions } from "./store.ts";
import type { Snapshot } from "./snapshot.ts";

const GW = "gateway.networking.k8s.io/v1";

const route = (name: string, ...backends: string[]): K8sObject => ({
  apiVersion: GW, kind: "HTTPRoute", metadata: { name, namespace: "apps" },
  spec: { parentRefs: [{ name: "gw", namespace: "infra" }], rules: [{ backendRefs: backends.map((b) => ({ name: b, port: 80 })) }] },
});
const service = (name: string, labels?: Record<string, string>): K8sObject => ({
  apiVersion: "v1", kind: "Service", metadata: { name, namespace: "apps", ...(labels ? { labels } : {}) }, spec: { ports: [{ port: 80 }] },
});
const slice = (name: string, serviceName: string): K8sObject => ({
  apiVersion: "discovery.k8s.io/v1", kind: "EndpointSlice", metadata: { name, namespace: "apps", labels: { "kubernetes.io/service-name": serviceName } },
  addressType: "IPv4", endpoints: [{ addresses: ["10.0.0.1"] }],
} as K8sObject);
const secret = (name: string): K8sObject => ({ apiVersion: "v1", kind: "Secret", metadata: { name, namespace: "infra" }, data: { k: "dg==" } } as K8sObject);
const gateway = (...certs: string[]): K8sObject => ({
  apiVersion: GW, kind: "Gateway", metadata: { name: "gw", namespace: "infra" },
  spec: { gatewayClassName: "sluice", listeners: [{ name: "https", port: 443, protocol: "HTTPS", tls: { certificateRefs: certs.map((name) => ({ name })) } }] },
});

const added = (object: K8sObject): SourceEvent => ({ type: "ADDED", kind: object.kind as KindName, object });
const modified = (object: K8sObject): SourceEvent => ({ type: "MODIFIED", kind: object.kind as KindName, object });
const deleted = (object: K8sObject): SourceEvent => ({ type: "DELETED", kind: object.kind as KindName, object });
const synced = (source = "files"): SourceEvent => ({ type: "SYNCED", source });

interface Emitted {
  at: number;
  snapshot: Snapshot;
}

/**
 * Runs the store in virtual time: `marbles` schedule the events (one frame = 1 ms), so "nothing
 * was emitted in that window" is an exact statement rather than a guess after a sleep.
 */
function runStore(
  marbles: string,
  values: Record<string, SourceEvent>,
  opts: Omit<StoreOptions, "acks$"> & { acks?: { marbles: string; values: Record<string, ReadonlyMap<string, string>> } } = {},
): Emitted[] {
  const scheduler = new TestScheduler((actual, expected) => assert.deepEqual(actual, expected));
  const out: Emitted[] = [];
  scheduler.run(({ hot }) => {
    const acks$ = opts.acks ? hot(opts.acks.marbles, opts.acks.values) : undefined;
    createStore(hot(marbles, values), { coalesceMs: 10, ...opts, acks$ })
      .subscribe((snapshot) => out.push({ at: scheduler.now(), snapshot }));
  });
  return out;
}

const keys = (s: Snapshot | undefined, kind: KindName): string[] => [...(s?.objects[kind].keys() ?? [])].sort();
const summary = (emitted: Emitted[]) => emitted.map(({ at, snapshot }) => ({
  at, version: snapshot.version,
  routes: keys(snapshot, "HTTPRoute"), services: keys(snapshot, "Service"), slices: keys(snapshot, "EndpointSlice"), secrets: keys(snapshot, "Secret"),
}));

// The first snapshot comes coalesceMs after the first event, once the sources are synced.
test("no snapshot before SYNCED; then one snapshot with everything received", () => {
  const out = runStore("a b c d 40ms s", {
    a: added(route("web", "web")), b: added(service("web")), c: added(service("unreferenced")), d: added(slice("web-1", "web")), s: synced(),
  });
  assert.deepEqual(summary(out), [{ at: 54, version: 1, routes: ["apps/web"], services: ["apps/web"], slices: ["apps/web-1"], secrets: [] }]);
  const [first] = out;
  assert.equal(first?.snapshot.acks.size, 0);
  for (const kind of KIND_NAMES) assert.ok(first?.snapshot.objects[kind] instanceof Map, kind);
});

test("with sources named, the first snapshot waits for all of them", () => {
  const out = runStore("f a 30ms k 30ms b", { f: synced("files"), k: synced("k8s"), a: added(route("a")), b: added(route("b")) }, { sources: ["k8s", "files"] });
  assert.deepEqual(summary(out).map((s) => [s.at, s.version, s.routes]), [[42, 1, ["apps/a"]], [73, 2, ["apps/a", "apps/b"]]]);
  // Without `sources`, the first SYNCED is enough.
  const first = runStore("f a 30ms k", { f: synced("files"), k: synced("k8s"), a: added(route("a")) });
  assert.deepEqual(summary(first).map((s) => [s.at, s.version, s.routes]), [[10, 1, ["apps/a"]]]);
});

test("a burst is coalesced into one snapshot, coalesceMs after its first event", () => {
  const out = runStore("s 99ms a 2ms b 2ms c 2ms d 20ms e", {
    s: synced(), a: added(route("a")), b: added(route("b")), c: added(route("c")), d: modified(route("a", "x")), e: added(route("e")),
  });
  assert.deepEqual(summary(out).map((s) => [s.at, s.version, s.routes]), [
    [10, 1, []],
    [110, 2, ["apps/a", "apps/b", "apps/c"]],
    [140, 3, ["apps/a", "apps/b", "apps/c", "apps/e"]],
  ]);
  assert.deepEqual(out[1]?.snapshot.objects.HTTPRoute.get("apps/a")?.spec, route("a", "x").spec);
});

test("coalesceMs 0: events delivered in one turn make one snapshot, taken in the next turn", async () => {
  const events$ = new Subject<SourceEvent>();
  const snapshots: Snapshot[] = [];
  const sub = createStore(events$, { coalesceMs: 0 }).subscribe((s) => snapshots.push(s));
  events$.next(added(route("a")));
  events$.next(added(route("b")));
  events$.next(synced());
  assert.equal(snapshots.length, 0, "not in the same turn");
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(snapshots.map((s) => [...s.objects.HTTPRoute.keys()]), [["apps/a", "apps/b"]]);
  events$.next(added(route("c")));
  await new Promise((r) => setImmediate(r));
  assert.equal(snapshots.length, 2);
  sub.unsubscribe();
});

test("unchanged collections and objects keep their identity across snapshots", () => {
  const web = route("web", "web");
  const other = route("other");
  const svc = service("web");
  const out = runStore("a b c s 20ms m 20ms n", {
    a: added(web), b: added(other), c: added(svc), s: synced(),
    // A deep-equal copy changes nothing; a real change to `other` does.
    m: modified(structuredClone(web)), n: modified(route("other", "web")),
  });
  assert.deepEqual(out.map((e) => e.snapshot.version), [1, 2]);
  const [v1, v2] = out.map((e) => e.snapshot);
  assert.ok(v1 && v2);
  assert.equal(v2.objects.Service, v1.objects.Service);
  assert.equal(v2.objects.Gateway, v1.objects.Gateway);
  assert.notEqual(v2.objects.HTTPRoute, v1.objects.HTTPRoute);
  assert.equal(v2.objects.HTTPRoute.get("apps/web"), web);
  assert.equal(v1.objects.Service.get("apps/web"), svc);
  // Snapshots are immutable: the first one still shows what it showed.
  assert.deepEqual(v1.objects.HTTPRoute.get("apps/other"), other);
});

test("a status-only change keeps the spec instance; a spec change does not", () => {
  const web = route("web", "web");
  const withStatus = { ...structuredClone(web), status: { parents: [] } } as K8sObject;
  const edited = route("web", "web", "other");
  const out = runStore("a s 20ms m 20ms n", { a: added(web), s: synced(), m: modified(withStatus), n: modified(edited) });
  const [v1, v2, v3] = out.map((e) => e.snapshot);
  assert.ok(v1 && v2 && v3);
  const w2 = v2.objects.HTTPRoute.get("apps/web");
  assert.deepEqual(w2?.status, { parents: [] });
  assert.equal(w2?.spec, web.spec, "the translator can tell the spec did not change");
  assert.notEqual(v3.objects.HTTPRoute.get("apps/web")?.spec, web.spec);
  assert.deepEqual(v3.objects.HTTPRoute.get("apps/web")?.spec, edited.spec);
});

test("changes to objects nothing references emit nothing", () => {
  const out = runStore("r s 20ms a 20ms b 20ms c 20ms d 20ms e 20ms f", {
    r: added(route("web", "web")), s: synced(),
    a: added(secret("unused")),
    b: added(service("db")),
    c: added(slice("db-1", "db")),
    d: modified(service("db", { tier: "data" })),
    e: { type: "ERROR", source: "files", error: { file: "x.yaml", line: 1, column: 1, message: "broken" } },
    f: added(route("sentinel")),
  });
  assert.deepEqual(summary(out).map((s) => [s.at, s.version, s.routes, s.services, s.secrets]), [
    [10, 1, ["apps/web"], [], []],
    [137, 2, ["apps/sentinel", "apps/web"], [], []],
  ]);
});

test("a reference appearing later brings the stored Service, its slices and Secrets in; dropping it takes them out", () => {
  const out = runStore("a b c d g s 20ms r 20ms x 20ms t 20ms u", {
    a: added(route("web")), b: added(service("web")), c: added(slice("web-1", "web")), d: added(secret("cert")), g: added(gateway()), s: synced(),
    r: modified(route("web", "web")),
    x: added(slice("web-2", "web")),
    t: modified(gateway("cert")),
    u: modified(route("web")),
  });
  assert.deepEqual(summary(out).map(({ version, services, slices, secrets }) => [version, services, slices, secrets]), [
    [1, [], [], []],
    [2, ["apps/web"], ["apps/web-1"], []],
    [3, ["apps/web"], ["apps/web-1", "apps/web-2"], []],
    [4, ["apps/web"], ["apps/web-1", "apps/web-2"], ["infra/cert"]],
    [5, [], [], ["infra/cert"]],
  ]);
  const snaps = out.map((e) => e.snapshot);
  // Relevance moving does not touch unrelated collections.
  assert.equal(snaps[3]?.objects.Service, snaps[2]?.objects.Service);
  assert.equal(snaps[4]?.objects.Secret, snaps[3]?.objects.Secret);
});

test("Services Sluice manages are in every snapshot", () => {
  const out = runStore("a s", { a: added(service("gw-sluice", { "app.kubernetes.io/managed-by": "sluice" })), s: synced() });
  assert.deepEqual(summary(out).map((s) => s.services), [["apps/gw-sluice"]]);
});

test("deletions remove objects; deleting the unknown or adding-then-deleting emits nothing", () => {
  const a = route("a");
  const out = runStore("a s 20ms x 20ms y z 20ms d", {
    a: added(a), s: synced(),
    x: deleted(route("never-seen")),
    y: added(route("fleeting")), z: deleted(route("fleeting")),
    d: deleted(a),
  });
  assert.deepEqual(summary(out).map((s) => [s.at, s.version, s.routes]), [[10, 1, ["apps/a"]], [75, 2, []]]);
});

test("a new acks map triggers a snapshot carrying it, with the same collections", () => {
  const acks = new Map([["infra/gw", "hash-1"]]);
  const out = runStore("a s", { a: added(route("a")), s: synced() }, { acks: { marbles: "30ms k", values: { k: acks } } });
  assert.deepEqual(out.map((e) => [e.at, e.snapshot.version]), [[10, 1], [40, 2]]);
  assert.equal(out[1]?.snapshot.acks, acks);
  assert.equal(out[1]?.snapshot.objects.HTTPRoute, out[0]?.snapshot.objects.HTTPRoute);
  // Acks that arrive before the sources are synced wait for the first snapshot.
  const early = runStore("20ms s", { s: synced() }, { acks: { marbles: "k", values: { k: acks } } });
  assert.deepEqual(early.map((e) => [e.at, e.snapshot.version, e.snapshot.acks]), [[30, 1, acks]]);
});

test("on the real clock, with default options", async () => {
  const events$ = new Subject<SourceEvent>();
  const store$: Observable<Snapshot> = createStore(events$);
  const first = firstValueFrom(store$);
  events$.next(added(route("web", "web")));
  events$.next(added(service("web")));
  events$.next(synced());
  const snapshot = await first;
  assert.equal(snapshot.version, 1);
  assert.deepEqual(keys(snapshot, "Service"), ["apps/web"]);
});

test("a finite source gets its snapshot when it completes, without waiting", async () => {
  const out = await lastValueFrom(createStore(from([added(route("a")), synced()])).pipe(toArray()));
  assert.deepEqual(out.map((s) => [s.version, keys(s, "HTTPRoute")]), [[1, ["apps/a"]]]);
});
