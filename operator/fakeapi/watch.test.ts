// Watches and informers against the fake API server, through client-node's Watch and makeInformer:
// initial ADDED events, resume from a resourceVersion, 410 Expired and the informer's re-list,
// bookmarks, selectors, timeouts, dropped streams, and CRDs that become watchable.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import {
  ApiextensionsV1Api, CoreV1Api, CustomObjectsApi, KubernetesObjectApi, Watch, makeInformer,
  type KubernetesObject, type V1ConfigMap,
} from "@kubernetes/client-node";
import { gatewayApiCrds, startFakeApiServer, type FakeApiServer } from "./server.ts";
import { until } from "./testutil.ts";

let api: FakeApiServer;
let core: CoreV1Api;

before(async () => {
  api = await startFakeApiServer({ bookmarkIntervalMs: 100 });
  core = api.kubeConfig().makeApiClient(CoreV1Api);
});
after(() => api.close());

interface Seen { type: string; name: string; rv: string; obj: KubernetesObject & Record<string, unknown> }

/** Starts a client-node Watch and collects its events until `done`. */
async function watch(path: string, query: Record<string, string | number | boolean>): Promise<{ events: Seen[]; done: Promise<unknown>; stop: () => void }> {
  const events: Seen[] = [];
  let finish: (err: unknown) => void = () => {};
  const done = new Promise<unknown>((r) => (finish = r));
  const controller = await new Watch(api.kubeConfig()).watch(path, query, (type, obj: KubernetesObject & Record<string, unknown>) => {
    events.push({ type, name: obj.metadata?.name ?? "", rv: obj.metadata?.resourceVersion ?? "", obj });
  }, (err) => finish(err ?? null));
  return { events, done, stop: () => controller.abort() };
}

test("watch from a list's resourceVersion sees ADDED, MODIFIED and DELETED in order; resume replays history", async () => {
  await core.createNamespace({ body: { metadata: { name: "w1" } } });
  await core.createNamespacedConfigMap({ namespace: "w1", body: { metadata: { name: "before" } } });
  const list = await core.listNamespacedConfigMap({ namespace: "w1" });
  const w = await watch("/api/v1/namespaces/w1/configmaps", { resourceVersion: list.metadata?.resourceVersion ?? "" });
  const a = await core.createNamespacedConfigMap({ namespace: "w1", body: { metadata: { name: "a" }, data: { v: "1" } } });
  await core.replaceNamespacedConfigMap({ namespace: "w1", name: "a", body: { ...a, data: { v: "2" } } });
  await core.deleteNamespacedConfigMap({ namespace: "w1", name: "a" });
  await core.createNamespace({ body: { metadata: { name: "w1-other" } } });
  await core.createNamespacedConfigMap({ namespace: "w1-other", body: { metadata: { name: "elsewhere" } } });
  assert.ok(await until(() => w.events.length >= 3));
  assert.deepEqual(w.events.map((e) => `${e.type} ${e.name}`), ["ADDED a", "MODIFIED a", "DELETED a"]);
  // Watch events carry apiVersion/kind, and a DELETED object carries the deletion's resourceVersion.
  assert.equal(w.events[0]?.obj.kind, "ConfigMap");
  const rvs = w.events.map((e) => Number(e.rv));
  assert.ok(rvs[0]! < rvs[1]! && rvs[1]! < rvs[2]!);
  w.stop();

  // Resuming from the first event's resourceVersion replays what came after it.
  const resumed = await watch("/api/v1/namespaces/w1/configmaps", { resourceVersion: w.events[0]?.rv ?? "" });
  assert.ok(await until(() => resumed.events.length >= 2));
  assert.deepEqual(resumed.events.map((e) => `${e.type} ${e.name}`), ["MODIFIED a", "DELETED a"]);
  resumed.stop();

  // resourceVersion "0" (or none) starts with synthetic ADDED events for the current state.
  const fresh = await watch("/api/v1/namespaces/w1/configmaps", { resourceVersion: "0" });
  assert.ok(await until(() => fresh.events.length >= 1));
  assert.deepEqual(fresh.events.map((e) => `${e.type} ${e.name}`), ["ADDED before"]);
  fresh.stop();
});

test("a watch from a compacted resourceVersion gets one ERROR 410 Expired event and ends", async () => {
  await core.createNamespace({ body: { metadata: { name: "w2" } } });
  const a = await core.createNamespacedConfigMap({ namespace: "w2", body: { metadata: { name: "a" } } });
  await core.createNamespacedConfigMap({ namespace: "w2", body: { metadata: { name: "b" } } });
  api.compact();
  const w = await watch("/api/v1/namespaces/w2/configmaps", { resourceVersion: a.metadata?.resourceVersion ?? "" });
  assert.equal(await w.done, null, "the stream ends cleanly");
  assert.equal(w.events.length, 1);
  assert.equal(w.events[0]?.type, "ERROR");
  const status = w.events[0]?.obj as unknown as { kind: string; code: number; reason: string };
  assert.deepEqual([status.kind, status.code, status.reason], ["Status", 410, "Expired"]);
  // The current resourceVersion is still good after a compaction.
  const ok = await watch("/api/v1/namespaces/w2/configmaps", { resourceVersion: api.resourceVersion });
  await core.createNamespacedConfigMap({ namespace: "w2", body: { metadata: { name: "c" } } });
  assert.ok(await until(() => ok.events.some((e) => e.name === "c")));
  ok.stop();
});

test("bounded history: resuming from before the oldest retained event is 410 too", async () => {
  const small = await startFakeApiServer({ historyLimit: 3 });
  try {
    const c = small.kubeConfig().makeApiClient(CoreV1Api);
    const first = await c.createNamespacedConfigMap({ namespace: "default", body: { metadata: { name: "a" } } });
    for (const n of ["b", "c", "d", "e"]) await c.createNamespacedConfigMap({ namespace: "default", body: { metadata: { name: n } } });
    const res = await fetch(`${small.url}/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=${first.metadata?.resourceVersion}`, { headers: { authorization: `Bearer ${small.token}` } });
    assert.equal(res.status, 200);
    const lines = (await res.text()).trim().split("\n").map((l) => JSON.parse(l) as { type: string; object: { code: number } });
    assert.deepEqual(lines.map((l) => [l.type, l.object.code]), [["ERROR", 410]]);
  } finally {
    await small.close();
  }
});

test("bookmarks carry only apiVersion, kind and metadata.resourceVersion", async () => {
  await core.createNamespace({ body: { metadata: { name: "w3" } } });
  const w = await watch("/api/v1/namespaces/w3/configmaps", { allowWatchBookmarks: true, resourceVersion: api.resourceVersion });
  assert.ok(await until(() => w.events.some((e) => e.type === "BOOKMARK")));
  const bm = w.events.find((e) => e.type === "BOOKMARK")?.obj;
  assert.deepEqual(Object.keys(bm ?? {}).sort(), ["apiVersion", "kind", "metadata"]);
  assert.deepEqual(Object.keys(bm?.metadata ?? {}), ["resourceVersion"]);
  assert.equal(bm?.kind, "ConfigMap");
  w.stop();
  // Without allowWatchBookmarks there are none.
  const plain = await watch("/api/v1/namespaces/w3/configmaps", { resourceVersion: api.resourceVersion });
  await new Promise((r) => setTimeout(r, 250));
  assert.equal(plain.events.length, 0);
  plain.stop();
});

test("label and field selectors: objects entering and leaving the selection are ADDED and DELETED", async () => {
  await core.createNamespace({ body: { metadata: { name: "w4" } } });
  const w = await watch("/api/v1/namespaces/w4/configmaps", { labelSelector: "app=x", resourceVersion: api.resourceVersion });
  const byName = await watch("/api/v1/namespaces/w4/configmaps", { fieldSelector: "metadata.name=b", resourceVersion: api.resourceVersion });
  await core.createNamespacedConfigMap({ namespace: "w4", body: { metadata: { name: "a" } } });
  await core.createNamespacedConfigMap({ namespace: "w4", body: { metadata: { name: "b" } } });
  await core.patchNamespacedConfigMap({ namespace: "w4", name: "a", body: [{ op: "add", path: "/metadata/labels", value: { app: "x" } }] });
  await core.patchNamespacedConfigMap({ namespace: "w4", name: "a", body: [{ op: "add", path: "/data", value: { k: "v" } }] });
  await core.patchNamespacedConfigMap({ namespace: "w4", name: "a", body: [{ op: "replace", path: "/metadata/labels/app", value: "y" }] });
  assert.ok(await until(() => w.events.length >= 3 && byName.events.length >= 1));
  assert.deepEqual(w.events.map((e) => `${e.type} ${e.name}`), ["ADDED a", "MODIFIED a", "DELETED a"]);
  assert.deepEqual(byName.events.map((e) => `${e.type} ${e.name}`), ["ADDED b"]);
  w.stop();
  byName.stop();
  // The deprecated watch of one named object.
  const one = await watch("/api/v1/namespaces/w4/configmaps/b", { resourceVersion: "0" });
  await core.patchNamespacedConfigMap({ namespace: "w4", name: "a", body: [{ op: "add", path: "/data/x", value: "1" }] });
  await core.patchNamespacedConfigMap({ namespace: "w4", name: "b", body: [{ op: "add", path: "/data", value: { x: "1" } }] });
  assert.ok(await until(() => one.events.length >= 2));
  assert.deepEqual(one.events.map((e) => `${e.type} ${e.name}`), ["ADDED b", "MODIFIED b"]);
  one.stop();
});

test("timeoutSeconds ends the stream cleanly; dropWatches ends it with an error", async () => {
  const t0 = Date.now();
  const timed = await watch("/api/v1/configmaps", { timeoutSeconds: 1, resourceVersion: api.resourceVersion });
  assert.equal(await timed.done, null);
  assert.ok(Date.now() - t0 >= 900);
  const dropped = await watch("/api/v1/configmaps", { resourceVersion: api.resourceVersion });
  assert.ok(await until(() => api.openWatches === 1));
  api.dropWatches();
  assert.ok((await dropped.done) instanceof Error, "an abrupt end is an error to the client");
  assert.equal(api.openWatches, 0);
});

test("client-node informer: cache follows changes; after a 410 it re-lists and reports what was deleted meanwhile", async () => {
  await core.createNamespace({ body: { metadata: { name: "inf" } } });
  await core.createNamespacedConfigMap({ namespace: "inf", body: { metadata: { name: "a" } } });
  await core.createNamespacedConfigMap({ namespace: "inf", body: { metadata: { name: "b" } } });
  const informer = makeInformer(api.kubeConfig(), "/api/v1/namespaces/inf/configmaps", () => core.listNamespacedConfigMap({ namespace: "inf" }));
  const log: string[] = [];
  const errors: unknown[] = [];
  informer.on("add", (o: V1ConfigMap) => log.push(`add ${o.metadata?.name}`));
  informer.on("update", (o: V1ConfigMap) => log.push(`update ${o.metadata?.name}`));
  informer.on("delete", (o: V1ConfigMap) => log.push(`delete ${o.metadata?.name}`));
  informer.on("error", (e: unknown) => errors.push(e));
  await informer.start();
  try {
    assert.ok(await until(() => log.length >= 2));
    assert.deepEqual(log.splice(0).sort(), ["add a", "add b"]);
    await core.createNamespacedConfigMap({ namespace: "inf", body: { metadata: { name: "c" } } });
    await core.patchNamespacedConfigMap({ namespace: "inf", name: "a", body: [{ op: "add", path: "/data", value: { k: "v" } }] });
    assert.ok(await until(() => log.length >= 2));
    assert.deepEqual(log.splice(0), ["add c", "update a"]);

    // A clean end of the stream (the server's request timeout): the informer resumes where it was.
    api.endWatches();
    assert.ok(await until(() => api.openWatches === 1));
    await core.deleteNamespacedConfigMap({ namespace: "inf", name: "c" });
    assert.ok(await until(() => log.length >= 1));
    assert.deepEqual(log.splice(0), ["delete c"]);

    // An abrupt drop is an error: client-node's informer stops and must be restarted. Meanwhile b is
    // deleted and history compacted, so the restart's watch gets 410; the informer re-lists and its
    // cache diff reports b's deletion.
    api.dropWatches();
    assert.ok(await until(() => errors.length === 1));
    assert.equal(api.openWatches, 0);
    await core.deleteNamespacedConfigMap({ namespace: "inf", name: "b" });
    api.compact();
    const lists = api.requests.filter((r) => r.method === "GET" && r.path === "/api/v1/namespaces/inf/configmaps" && !r.query.includes("watch")).length;
    await informer.start();
    assert.ok(await until(() => log.includes("delete b")), `log: ${log.join(", ")}`);
    assert.deepEqual(informer.list().map((o) => o.metadata?.name).sort(), ["a"]);
    const relists = api.requests.filter((r) => r.method === "GET" && r.path === "/api/v1/namespaces/inf/configmaps" && !r.query.includes("watch")).length;
    assert.equal(relists, lists + 1, "one re-list after the 410");
  } finally {
    await informer.stop();
  }
});

test("a CRD created later is served, discoverable by KubernetesObjectApi and watchable", async () => {
  const kc = api.kubeConfig();
  const gwc = gatewayApiCrds().find((c) => (c.metadata as { name: string }).name === "gatewayclasses.gateway.networking.k8s.io");
  assert.ok(gwc);
  assert.equal((await fetch(`${api.url}/apis/gateway.networking.k8s.io/v1/gatewayclasses?watch=true`, { headers: { authorization: `Bearer ${api.token}` } })).status, 404);
  await kc.makeApiClient(ApiextensionsV1Api).createCustomResourceDefinition({ body: gwc as never });
  const w = await watch("/apis/gateway.networking.k8s.io/v1/gatewayclasses", {});
  const objects = KubernetesObjectApi.makeApiClient(kc);
  await objects.create({ apiVersion: "gateway.networking.k8s.io/v1", kind: "GatewayClass", metadata: { name: "sluice" }, spec: { controllerName: "sluice.dev/gateway-controller" } } as KubernetesObject);
  assert.ok(await until(() => w.events.length >= 1));
  assert.equal(w.events[0]?.type, "ADDED");
  assert.equal(w.events[0]?.obj.apiVersion, "gateway.networking.k8s.io/v1");
  const listed = (await kc.makeApiClient(CustomObjectsApi).listClusterCustomObject({ group: "gateway.networking.k8s.io", version: "v1beta1", plural: "gatewayclasses" })) as { items: { apiVersion: string; kind: string }[] };
  assert.deepEqual(listed.items.map((i) => [i.apiVersion, i.kind]), [["gateway.networking.k8s.io/v1beta1", "GatewayClass"]]);

  // Deleting the CRD deletes its objects (DELETED on the watch) and ends the watch.
  await kc.makeApiClient(ApiextensionsV1Api).deleteCustomResourceDefinition({ name: "gatewayclasses.gateway.networking.k8s.io" });
  assert.equal(await w.done, null);
  assert.deepEqual(w.events.map((e) => e.type), ["ADDED", "DELETED"]);
});
