// The fake API server through @kubernetes/client-node: REST semantics, errors, patches, the status
// subresource, finalizers, garbage collection, CRDs, TokenReview and fault injection.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import {
  ApiextensionsV1Api, ApisApi, AuthenticationV1Api, CoordinationV1Api, CoreV1Api, CustomObjectsApi,
  KubernetesObjectApi, PatchStrategy, setHeaderOptions, type V1ConfigMap,
} from "@kubernetes/client-node";
import { gatewayApiCrds, sluiceCrds, certManagerCrds, startFakeApiServer, type FakeApiServer } from "./server.ts";
import { failure, until } from "./testutil.ts";

let api: FakeApiServer;
let core: CoreV1Api;
let custom: CustomObjectsApi;

before(async () => {
  api = await startFakeApiServer({ crds: gatewayApiCrds(), tokens: { "agent-token": { username: "system:serviceaccount:sluice:agent", groups: ["system:serviceaccounts"] } } });
  const kc = api.kubeConfig();
  core = kc.makeApiClient(CoreV1Api);
  custom = kc.makeApiClient(CustomObjectsApi);
});
after(() => api.close());

const merge = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);

test("unauthenticated requests get 401; TokenReview answers from the token table", async () => {
  const r = await fetch(`${api.url}/api/v1/namespaces`);
  assert.equal(r.status, 401);
  assert.equal(((await r.json()) as { reason: string }).reason, "Unauthorized");
  const bad = await fetch(`${api.url}/api/v1/namespaces`, { headers: { authorization: "Bearer nope" } });
  assert.equal(bad.status, 401);

  const auth = api.kubeConfig().makeApiClient(AuthenticationV1Api);
  const ok = await auth.createTokenReview({ body: { apiVersion: "authentication.k8s.io/v1", kind: "TokenReview", spec: { token: "agent-token", audiences: ["sluice"] } } });
  assert.equal(ok.status?.authenticated, true);
  assert.equal(ok.status?.user?.username, "system:serviceaccount:sluice:agent");
  assert.deepEqual(ok.status?.user?.groups, ["system:serviceaccounts", "system:authenticated"]);
  const no = await auth.createTokenReview({ body: { apiVersion: "authentication.k8s.io/v1", kind: "TokenReview", spec: { token: "forged" } } });
  assert.equal(no.status?.authenticated, false);
  // The agent's own token is accepted by the server too.
  const asAgent = await fetch(`${api.url}/api/v1/namespaces/default`, { headers: { authorization: "Bearer agent-token" } });
  assert.equal(asAgent.status, 200);
  assert.equal(api.requests.at(-1)?.user, "system:serviceaccount:sluice:agent");
});

test("discovery lists built-in groups, CRD groups and status subresources; CRD install and removal change it", async () => {
  const kc = api.kubeConfig();
  const groups = await kc.makeApiClient(ApisApi).getAPIVersions();
  const names = groups.groups.map((g) => g.name);
  for (const g of ["discovery.k8s.io", "coordination.k8s.io", "events.k8s.io", "authentication.k8s.io", "apiextensions.k8s.io", "gateway.networking.k8s.io"]) assert.ok(names.includes(g), g);
  const gw = groups.groups.find((g) => g.name === "gateway.networking.k8s.io");
  assert.equal(gw?.preferredVersion?.version, "v1");
  assert.ok(gw?.versions.some((v) => v.version === "v1alpha2"));

  const res = (await (await fetch(`${api.url}/apis/gateway.networking.k8s.io/v1`, { headers: { authorization: `Bearer ${api.token}` } })).json()) as { resources: { name: string; namespaced: boolean; kind: string; verbs: string[] }[] };
  const gateways = res.resources.find((r) => r.name === "gateways");
  assert.equal(gateways?.namespaced, true);
  assert.deepEqual(gateways?.verbs, ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]);
  assert.ok(res.resources.some((r) => r.name === "gateways/status"));
  assert.equal(res.resources.find((r) => r.name === "gatewayclasses")?.namespaced, false);
  const coreRes = await core.getAPIResources();
  assert.ok(coreRes.resources.some((r) => r.name === "services/status"));
  assert.ok(!coreRes.resources.some((r) => r.name === "configmaps/status"));

  // cert-manager isn't there until its CRD is created over HTTP.
  const ext = kc.makeApiClient(ApiextensionsV1Api);
  assert.equal((await fetch(`${api.url}/apis/cert-manager.io/v1`, { headers: { authorization: `Bearer ${api.token}` } })).status, 404);
  const created = await ext.createCustomResourceDefinition({ body: certManagerCrds()[0] as never });
  assert.ok(created.metadata?.finalizers?.includes("customresourcecleanup.apiextensions.k8s.io"));
  assert.equal(created.status?.conditions?.find((c) => c.type === "Established")?.status, "True");
  const objects = KubernetesObjectApi.makeApiClient(kc);
  const cert = await objects.create<{ apiVersion: string; kind: string; metadata: { name: string; namespace: string; generation?: number }; spec: unknown }>({ apiVersion: "cert-manager.io/v1", kind: "Certificate", metadata: { name: "c1", namespace: "default" }, spec: { secretName: "s" } });
  assert.equal(cert.metadata?.generation, 1);
  await ext.deleteCustomResourceDefinition({ name: "certificates.cert-manager.io" });
  assert.ok(await until(async () => (await fetch(`${api.url}/apis/cert-manager.io/v1`, { headers: { authorization: `Bearer ${api.token}` } })).status === 404));
  assert.equal(api.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", undefined, "certificates.cert-manager.io"), undefined);
  // Its instances went with it.
  api.apply(certManagerCrds()[0] as never);
  assert.equal(api.list("cert-manager.io/v1", "Certificate").length, 0);

  // Sluice's CRD, from the generated manifest.
  api.apply(sluiceCrds()[0] as never);
  const gcc = await custom.createNamespacedCustomObject({ group: "sluice.dev", version: "v1alpha1", namespace: "default", plural: "gatewayclassconfigs", body: { apiVersion: "sluice.dev/v1alpha1", kind: "GatewayClassConfig", metadata: { name: "cfg" }, spec: {} } });
  assert.equal((gcc as { metadata: { namespace: string } }).metadata.namespace, "default");
});

test("create/get/list: namespaces must exist, AlreadyExists, NotFound Status, generateName, list items and resourceVersion", async () => {
  const nf = await failure(core.createNamespacedConfigMap({ namespace: "missing", body: { metadata: { name: "a" } } }));
  assert.equal(nf.code, 404);
  assert.equal(nf.status.reason, "NotFound");
  assert.match(nf.status.message ?? "", /namespaces "missing" not found/);

  await core.createNamespace({ body: { metadata: { name: "crud" } } });
  const ns = await core.readNamespace({ name: "crud" });
  assert.equal(ns.metadata?.labels?.["kubernetes.io/metadata.name"], "crud");
  assert.equal(ns.status?.phase, "Active");

  const cm = await core.createNamespacedConfigMap({ namespace: "crud", body: { metadata: { name: "a", labels: { app: "x", tier: "web" } }, data: { k: "v" } } });
  assert.match(cm.metadata?.uid ?? "", /^[0-9a-f-]{36}$/);
  assert.match(cm.metadata?.resourceVersion ?? "", /^[0-9]+$/);
  assert.ok(cm.metadata?.creationTimestamp);
  assert.equal(cm.metadata?.generation, undefined);
  assert.equal(cm.metadata?.managedFields?.[0]?.operation, "Update");

  const dup = await failure(core.createNamespacedConfigMap({ namespace: "crud", body: { metadata: { name: "a" } } }));
  assert.equal(dup.code, 409);
  assert.equal(dup.status.reason, "AlreadyExists");

  const missing = await failure(core.readNamespacedConfigMap({ namespace: "crud", name: "nope" }));
  assert.equal(missing.code, 404);
  assert.deepEqual([missing.status.kind, missing.status.reason, missing.status.message], ["Status", "NotFound", 'configmaps "nope" not found']);

  const gen = await core.createNamespacedConfigMap({ namespace: "crud", body: { metadata: { generateName: "gen-", labels: { app: "y" } } } });
  assert.match(gen.metadata?.name ?? "", /^gen-[a-z0-9]{5}$/);
  await core.createNamespacedConfigMap({ namespace: "crud", body: { metadata: { name: "c", labels: { tier: "db" } } } });

  const names = async (labelSelector?: string, fieldSelector?: string): Promise<string[]> =>
    (await core.listNamespacedConfigMap({ namespace: "crud", labelSelector, fieldSelector })).items.map((i) => i.metadata?.name ?? "");
  assert.deepEqual(await names("app=x"), ["a"]);
  assert.deepEqual(await names("app!=x"), ["c", gen.metadata?.name].sort());
  assert.deepEqual(await names("app in (x,y)"), ["a", gen.metadata?.name].sort());
  assert.deepEqual(await names("app notin (x)"), ["c", gen.metadata?.name].sort());
  assert.deepEqual(await names("tier"), ["a", "c"]);
  assert.deepEqual(await names("!tier"), [gen.metadata?.name]);
  assert.deepEqual(await names("app=x,tier=web"), ["a"]);
  assert.deepEqual(await names(undefined, "metadata.name=c"), ["c"]);
  assert.deepEqual(await names(undefined, "metadata.name!=c"), ["a", gen.metadata?.name].sort());
  const badSel = await failure(core.listNamespacedConfigMap({ namespace: "crud", fieldSelector: "spec.foo=bar" }));
  assert.equal(badSel.code, 400);

  const list = await core.listNamespacedConfigMap({ namespace: "crud" });
  assert.equal(list.metadata?.resourceVersion, api.resourceVersion);
  // Like the real server, items of built-in lists carry no apiVersion/kind.
  const raw = (await (await fetch(`${api.url}/api/v1/namespaces/crud/configmaps`, { headers: { authorization: `Bearer ${api.token}` } })).json()) as { kind: string; items: Record<string, unknown>[] };
  assert.equal(raw.kind, "ConfigMapList");
  assert.equal(raw.items[0]?.kind, undefined);
  const all = await core.listConfigMapForAllNamespaces();
  assert.ok(all.items.some((i) => i.metadata?.namespace === "crud"));

  // Pages: limit + continue, remainingItemCount, a consistent snapshot across pages.
  const p1 = await core.listNamespacedConfigMap({ namespace: "crud", limit: 2 });
  assert.equal(p1.items.length, 2);
  assert.equal(p1.metadata?.remainingItemCount, 1);
  await core.createNamespacedConfigMap({ namespace: "crud", body: { metadata: { name: "zz" } } });
  const p2 = await core.listNamespacedConfigMap({ namespace: "crud", limit: 2, _continue: p1.metadata?._continue });
  assert.deepEqual(p2.items.map((i) => i.metadata?.name), [gen.metadata?.name], "the second page comes from the first page's snapshot");
  assert.equal(p2.metadata?._continue, undefined);
  assert.equal(p2.metadata?.resourceVersion, p1.metadata?.resourceVersion);
});

test("PUT needs the current resourceVersion; 409 Conflict otherwise; no-op writes don't bump it", async () => {
  await core.createNamespace({ body: { metadata: { name: "put" } } });
  const cm = await core.createNamespacedConfigMap({ namespace: "put", body: { metadata: { name: "a" }, data: { k: "1" } } });
  const updated = await core.replaceNamespacedConfigMap({ namespace: "put", name: "a", body: { ...cm, data: { k: "2" } } });
  assert.ok(Number(updated.metadata?.resourceVersion) > Number(cm.metadata?.resourceVersion));
  const stale = await failure(core.replaceNamespacedConfigMap({ namespace: "put", name: "a", body: { ...cm, data: { k: "3" } } }));
  assert.equal(stale.code, 409);
  assert.equal(stale.status.reason, "Conflict");
  assert.match(stale.status.message ?? "", /the object has been modified/);
  const same = await core.replaceNamespacedConfigMap({ namespace: "put", name: "a", body: updated });
  assert.equal(same.metadata?.resourceVersion, updated.metadata?.resourceVersion);

  // dryRun=All validates and answers but stores nothing.
  const dry = await core.createNamespacedConfigMap({ namespace: "put", body: { metadata: { name: "dry" } }, dryRun: "All" });
  assert.equal(dry.metadata?.name, "dry");
  assert.equal(api.get("v1", "ConfigMap", "put", "dry"), undefined);
  // deletecollection with a label selector.
  await core.createNamespacedConfigMap({ namespace: "put", body: { metadata: { name: "tmp1", labels: { tmp: "y" } } } });
  await core.createNamespacedConfigMap({ namespace: "put", body: { metadata: { name: "tmp2", labels: { tmp: "y" } } } });
  await core.deleteCollectionNamespacedConfigMap({ namespace: "put", labelSelector: "tmp=y" });
  assert.deepEqual(api.list("v1", "ConfigMap", "put").map((o) => o.metadata.name), ["a"]);

  // Leases, as leader election uses them.
  const coord = api.kubeConfig().makeApiClient(CoordinationV1Api);
  const lease = await coord.createNamespacedLease({ namespace: "put", body: { metadata: { name: "leader" }, spec: { holderIdentity: "a", leaseDurationSeconds: 15 } } });
  const mine = await coord.replaceNamespacedLease({ namespace: "put", name: "leader", body: { ...lease, spec: { ...lease.spec, holderIdentity: "b" } } });
  assert.equal(mine.spec?.holderIdentity, "b");
  const lost = await failure(coord.replaceNamespacedLease({ namespace: "put", name: "leader", body: { ...lease, spec: { ...lease.spec, holderIdentity: "c" } } }));
  assert.equal(lost.code, 409);
});

test("merge patch, JSON patch (with failing test op), strategic merge on built-ins and 415 for custom resources", async () => {
  await core.createNamespace({ body: { metadata: { name: "patch" } } });
  await core.createNamespacedConfigMap({ namespace: "patch", body: { metadata: { name: "a", labels: { x: "1", y: "2" } }, data: { k: "v", gone: "soon" } } });
  const merged = await core.patchNamespacedConfigMap({ namespace: "patch", name: "a", body: { metadata: { labels: { y: null, z: "3" } }, data: { gone: null } } }, merge);
  assert.deepEqual(merged.metadata?.labels, { x: "1", z: "3" });
  assert.deepEqual(merged.data, { k: "v" });

  // The generated client's default patch type is JSON patch.
  const jp = await core.patchNamespacedConfigMap({ namespace: "patch", name: "a", body: [{ op: "add", path: "/data/n", value: "1" }, { op: "replace", path: "/metadata/labels/x", value: "9" }, { op: "remove", path: "/metadata/labels/z" }] });
  assert.deepEqual(jp.data, { k: "v", n: "1" });
  assert.deepEqual(jp.metadata?.labels, { x: "9" });
  assert.equal(api.requests.at(-1)?.contentType, "application/json-patch+json");
  const failed = await failure(core.patchNamespacedConfigMap({ namespace: "patch", name: "a", body: [{ op: "test", path: "/data/k", value: "other" }, { op: "remove", path: "/data/k" }] }));
  assert.equal(failed.code, 422);
  assert.equal((await core.readNamespacedConfigMap({ namespace: "patch", name: "a" })).data?.k, "v");
  // A patch carrying a stale resourceVersion conflicts.
  const stale = await failure(core.patchNamespacedConfigMap({ namespace: "patch", name: "a", body: { metadata: { resourceVersion: "1" }, data: { k: "w" } } }, merge));
  assert.equal(stale.code, 409);

  // Strategic merge: Service ports merge by port.
  await core.createNamespacedService({ namespace: "patch", body: { metadata: { name: "svc" }, spec: { ports: [{ name: "http", port: 80 }] } } });
  const smp = await core.patchNamespacedService({ namespace: "patch", name: "svc", body: { spec: { ports: [{ name: "https", port: 443 }] } } }, setHeaderOptions("Content-Type", PatchStrategy.StrategicMergePatch));
  assert.deepEqual(smp.spec?.ports?.map((p) => p.port), [80, 443]);
  assert.ok(smp.spec?.clusterIP);

  api.apply({ apiVersion: "gateway.networking.k8s.io/v1", kind: "GatewayClass", metadata: { name: "smp" }, spec: { controllerName: "sluice.dev/x" } });
  const unsupported = await failure(custom.patchClusterCustomObject({ group: "gateway.networking.k8s.io", version: "v1", plural: "gatewayclasses", name: "smp", body: { spec: { description: "d" } } }, setHeaderOptions("Content-Type", PatchStrategy.StrategicMergePatch)));
  assert.equal(unsupported.code, 415);
  assert.equal(unsupported.status.reason, "UnsupportedMediaType");
  const ok = (await custom.patchClusterCustomObject({ group: "gateway.networking.k8s.io", version: "v1", plural: "gatewayclasses", name: "smp", body: { spec: { description: "d" } } }, merge)) as { spec: { description: string } };
  assert.equal(ok.spec.description, "d");
});

test("status subresource: main writes ignore .status, /status writes only .status; generation follows spec", async () => {
  await core.createNamespace({ body: { metadata: { name: "status" } } });
  const base = { group: "gateway.networking.k8s.io", version: "v1", namespace: "status", plural: "gateways" };
  type Gw = { metadata: { generation: number; resourceVersion: string; labels?: Record<string, string> }; spec: { gatewayClassName: string; listeners: unknown[] }; status?: { conditions?: { type: string }[] } };
  const created = (await custom.createNamespacedCustomObject({ ...base, body: { apiVersion: "gateway.networking.k8s.io/v1", kind: "Gateway", metadata: { name: "gw" }, spec: { gatewayClassName: "c", listeners: [{ name: "http", port: 80, protocol: "HTTP" }] }, status: { conditions: [{ type: "Forged" }] } } })) as Gw;
  assert.equal(created.status, undefined);
  assert.equal(created.metadata.generation, 1);

  const cond = { type: "Accepted", status: "True", reason: "Accepted", message: "", lastTransitionTime: "2026-01-01T00:00:00Z", observedGeneration: 1 };
  const st = (await custom.replaceNamespacedCustomObjectStatus({ ...base, name: "gw", body: { ...created, spec: { gatewayClassName: "changed", listeners: [] }, metadata: { ...created.metadata, labels: { sneaky: "1" } }, status: { conditions: [cond] } } })) as Gw;
  assert.deepEqual(st.status?.conditions, [cond]);
  assert.equal(st.spec.gatewayClassName, "c");
  assert.equal(st.metadata.labels, undefined);
  assert.equal(st.metadata.generation, 1);
  assert.ok(Number(st.metadata.resourceVersion) > Number(created.metadata.resourceVersion));

  const labelled = (await custom.patchNamespacedCustomObject({ ...base, name: "gw", body: { metadata: { labels: { a: "b" } }, status: { conditions: [] } } }, merge)) as Gw;
  assert.equal(labelled.metadata.generation, 1);
  assert.deepEqual(labelled.status?.conditions, [cond]);
  const specChange = (await custom.patchNamespacedCustomObject({ ...base, name: "gw", body: { spec: { gatewayClassName: "d" } } }, merge)) as Gw;
  assert.equal(specChange.metadata.generation, 2);
  const statusPatch = (await custom.patchNamespacedCustomObjectStatus({ ...base, name: "gw", body: { status: { conditions: [{ ...cond, observedGeneration: 2 }] }, spec: { gatewayClassName: "e" } } }, merge)) as Gw;
  assert.equal(statusPatch.spec.gatewayClassName, "d");
  assert.equal(statusPatch.metadata.generation, 2);
  assert.equal(api.requests.at(-1)?.subresource, "status");

  // Versions share one stored object; each is served with its own apiVersion.
  const beta = (await custom.getNamespacedCustomObject({ ...base, version: "v1beta1", name: "gw" })) as { apiVersion: string };
  assert.equal(beta.apiVersion, "gateway.networking.k8s.io/v1beta1");
  const mismatch = await failure(custom.createNamespacedCustomObject({ ...base, version: "v1beta1", body: { apiVersion: "gateway.networking.k8s.io/v1", kind: "Gateway", metadata: { name: "x" }, spec: {} } }));
  assert.equal(mismatch.code, 400);
  assert.equal((await fetch(`${api.url}/apis/gateway.networking.k8s.io/v9/namespaces/status/gateways`, { headers: { authorization: `Bearer ${api.token}` } })).status, 404);
});

test("finalizers hold a deleted object until they are removed; namespaces terminate with their content", async () => {
  await core.createNamespace({ body: { metadata: { name: "fin" } } });
  await core.createNamespacedConfigMap({ namespace: "fin", body: { metadata: { name: "held", finalizers: ["sluice.dev/cleanup"] } } });
  // While finalizers are pending, DELETE answers with the object itself, not a Status (which
  // client-node's typed delete can't show, so this one goes over plain fetch).
  const res = await fetch(`${api.url}/api/v1/namespaces/fin/configmaps/held`, { method: "DELETE", headers: { authorization: `Bearer ${api.token}` } });
  assert.equal(res.status, 200);
  const marked = (await res.json()) as V1ConfigMap;
  assert.equal(marked.kind, "ConfigMap");
  assert.ok(marked.metadata?.deletionTimestamp);
  const still = await core.readNamespacedConfigMap({ namespace: "fin", name: "held" });
  assert.ok(still.metadata?.deletionTimestamp);
  const noNew = await failure(core.patchNamespacedConfigMap({ namespace: "fin", name: "held", body: { metadata: { finalizers: ["sluice.dev/cleanup", "other"] } } }, merge));
  assert.equal(noNew.code, 422);

  // The namespace can't finish terminating while the held object exists, and refuses new content.
  await core.deleteNamespace({ name: "fin" });
  assert.equal((await core.readNamespace({ name: "fin" })).status?.phase, "Terminating");
  const refused = await failure(core.createNamespacedConfigMap({ namespace: "fin", body: { metadata: { name: "new" } } }));
  assert.equal(refused.code, 403);

  await core.patchNamespacedConfigMap({ namespace: "fin", name: "held", body: { metadata: { finalizers: null } } }, merge);
  assert.equal((await failure(core.readNamespacedConfigMap({ namespace: "fin", name: "held" }))).code, 404);
  assert.ok(await until(() => api.get("v1", "Namespace", undefined, "fin") === undefined));

  // Delete preconditions.
  await core.createNamespace({ body: { metadata: { name: "pre" } } });
  await core.createNamespacedConfigMap({ namespace: "pre", body: { metadata: { name: "a" } } });
  const pre = await failure(core.deleteNamespacedConfigMap({ namespace: "pre", name: "a", body: { preconditions: { uid: "00000000-0000-0000-0000-000000000000" } } }));
  assert.equal(pre.code, 409);
});

test("garbage collection deletes dependents whose owners are gone", async () => {
  await core.createNamespace({ body: { metadata: { name: "gc" } } });
  const owner = await core.createNamespacedConfigMap({ namespace: "gc", body: { metadata: { name: "owner" } } });
  const other = await core.createNamespacedConfigMap({ namespace: "gc", body: { metadata: { name: "other" } } });
  const ref = (o: V1ConfigMap): { apiVersion: string; kind: string; name: string; uid: string } => ({ apiVersion: "v1", kind: "ConfigMap", name: o.metadata?.name ?? "", uid: o.metadata?.uid ?? "" });
  await core.createNamespacedSecret({ namespace: "gc", body: { metadata: { name: "dep", ownerReferences: [{ ...ref(owner), controller: true }] }, stringData: { a: "b" } } });
  await core.createNamespacedSecret({ namespace: "gc", body: { metadata: { name: "two-owners", ownerReferences: [ref(owner), ref(other)] } } });
  await core.createNamespacedService({ namespace: "gc", body: { metadata: { name: "svc", ownerReferences: [ref(owner)] }, spec: { type: "LoadBalancer", ports: [{ port: 80 }] } } });
  const dep = await core.readNamespacedSecret({ namespace: "gc", name: "dep" });
  assert.deepEqual(dep.data, { a: Buffer.from("b").toString("base64") });
  assert.equal(dep.type, "Opaque");

  await core.deleteNamespacedConfigMap({ namespace: "gc", name: "owner" });
  assert.ok(await until(() => api.get("v1", "Secret", "gc", "dep") === undefined && api.get("v1", "Service", "gc", "svc") === undefined));
  assert.ok(api.get("v1", "Secret", "gc", "two-owners"), "an object with a live owner stays");
});

test("faults: 429 with Retry-After, counted 500s, matched 503; requests are recorded", async () => {
  api.failNext({ status: 429, retryAfterSeconds: 7 });
  const limited = await failure(core.readNamespace({ name: "default" }));
  assert.equal(limited.code, 429);
  assert.equal(limited.headers["retry-after"], "7");
  assert.equal(limited.status.details?.retryAfterSeconds, 7);
  api.failNext({ status: 500, count: 2 });
  assert.equal((await failure(core.readNamespace({ name: "default" }))).code, 500);
  assert.equal((await failure(core.readNamespace({ name: "default" }))).code, 500);
  assert.equal((await core.readNamespace({ name: "default" })).metadata?.name, "default");
  api.failNext({ status: 503, match: (r) => r.method === "PUT" && r.path.endsWith("/status") });
  await core.readNamespace({ name: "default" });
  const ns = await core.readNamespace({ name: "default" });
  assert.equal((await failure(core.replaceNamespaceStatus({ name: "default", body: ns }))).code, 503);
  const recent = api.requests.slice(-3).map((r) => `${r.method} ${r.path} ${r.status}`);
  assert.deepEqual(recent, ["GET /api/v1/namespaces/default 200", "GET /api/v1/namespaces/default 200", "PUT /api/v1/namespaces/default/status 503"]);
  api.failNext({ status: 409, match: (r) => r.method === "POST" });
  assert.equal((await failure(core.createNamespace({ body: { metadata: { name: "f409" } } }))).code, 409);
});

test("bad input: malformed JSON 400, unknown resources 404, wrong method 405, oversized bodies 413, invalid names 422", async () => {
  const h = { authorization: `Bearer ${api.token}`, "content-type": "application/json" };
  const bad = await fetch(`${api.url}/api/v1/namespaces/default/configmaps`, { method: "POST", headers: h, body: "{nope" });
  assert.equal(bad.status, 400);
  assert.equal(((await bad.json()) as { reason: string }).reason, "BadRequest");
  assert.equal((await fetch(`${api.url}/api/v1/namespaces/default/widgets`, { headers: h })).status, 404);
  assert.equal((await fetch(`${api.url}/apis/example.com/v1/widgets`, { headers: h })).status, 404);
  assert.equal((await fetch(`${api.url}/nothing`, { headers: h })).status, 404);
  assert.equal((await fetch(`${api.url}/apis/authentication.k8s.io/v1/tokenreviews`, { headers: h })).status, 405);
  const invalid = await failure(core.createNamespacedConfigMap({ namespace: "default", body: { metadata: { name: "Not_Valid" } } }));
  assert.equal(invalid.code, 422);
  assert.equal(invalid.status.reason, "Invalid");
  const noName = await failure(core.createNamespacedConfigMap({ namespace: "default", body: { metadata: {} } }));
  assert.equal(noName.code, 422);

  const small = await startFakeApiServer({ maxObjectBytes: 4096 });
  try {
    const c = small.kubeConfig().makeApiClient(CoreV1Api);
    const big = await failure(c.createNamespacedConfigMap({ namespace: "default", body: { metadata: { name: "big" }, data: { x: "y".repeat(10000) } } }));
    assert.equal(big.code, 413);
    assert.equal(big.status.reason, "RequestEntityTooLarge");
    await c.createNamespacedConfigMap({ namespace: "default", body: { metadata: { name: "ok" }, data: { x: "y".repeat(1000) } } });
    // Growing an object past the limit by patches is refused too.
    const grow = await failure(c.patchNamespacedConfigMap({ namespace: "default", name: "ok", body: [{ op: "add", path: "/data/z", value: "y".repeat(3500) }] }));
    assert.equal(grow.code, 413);
  } finally {
    await small.close();
  }
});

test("lists at an exact older resourceVersion replay history; compacted ones answer 410", async () => {
  await core.createNamespace({ body: { metadata: { name: "hist" } } });
  const a = await core.createNamespacedConfigMap({ namespace: "hist", body: { metadata: { name: "a" }, data: { v: "1" } } });
  const rv = a.metadata?.resourceVersion ?? "";
  await core.patchNamespacedConfigMap({ namespace: "hist", name: "a", body: { data: { v: "2" } } }, merge);
  await core.createNamespacedConfigMap({ namespace: "hist", body: { metadata: { name: "b" } } });
  const then = await core.listNamespacedConfigMap({ namespace: "hist", resourceVersion: rv, resourceVersionMatch: "Exact" });
  assert.deepEqual(then.items.map((i) => [i.metadata?.name, i.data?.v]), [["a", "1"]]);
  assert.equal(then.metadata?.resourceVersion, rv);
  const notOlder = await core.listNamespacedConfigMap({ namespace: "hist", resourceVersion: rv, resourceVersionMatch: "NotOlderThan" });
  assert.equal(notOlder.items.length, 2);
  const tooNew = await failure(core.listNamespacedConfigMap({ namespace: "hist", resourceVersion: String(Number(api.resourceVersion) + 100) }));
  assert.equal(tooNew.code, 504);
  api.compact();
  const gone = await failure(core.listNamespacedConfigMap({ namespace: "hist", resourceVersion: rv, resourceVersionMatch: "Exact" }));
  assert.equal(gone.code, 410);
  assert.equal(gone.status.reason, "Expired");
});
