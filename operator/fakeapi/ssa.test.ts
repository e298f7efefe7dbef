// Server-side apply through client-node's KubernetesObjectApi.patch(..., PatchStrategy.ServerSideApply):
// create by apply, managedFields, pruning of fields a manager stopped applying, shared ownership,
// conflicts and force, map-list merging, the status subresource, and ownership taken by updates.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { CoreV1Api, CustomObjectsApi, KubernetesObjectApi, PatchStrategy, setHeaderOptions, type KubernetesObject, type V1Service } from "@kubernetes/client-node";
import { gatewayApiCrds, startFakeApiServer, type FakeApiServer } from "./server.ts";
import { failure } from "./testutil.ts";

let api: FakeApiServer;
let objects: KubernetesObjectApi;
let core: CoreV1Api;

before(async () => {
  api = await startFakeApiServer({ crds: gatewayApiCrds() });
  objects = KubernetesObjectApi.makeApiClient(api.kubeConfig());
  core = api.kubeConfig().makeApiClient(CoreV1Api);
});
after(() => api.close());

type Obj = KubernetesObject & Record<string, unknown>;
const ssa = (o: Obj, manager: string, force?: boolean): Promise<Obj> =>
  objects.patch(o, undefined, undefined, manager, force, PatchStrategy.ServerSideApply) as Promise<Obj>;

const svc = (labels: Record<string, string>, ports: { name: string; port: number }[], extra: Record<string, unknown> = {}): Obj => ({
  apiVersion: "v1", kind: "Service", metadata: { name: "gw", namespace: "default", labels },
  spec: { type: "LoadBalancer", selector: { app: "gw" }, ports, ...extra },
});

function managers(o: Obj): Record<string, unknown> {
  return Object.fromEntries((o.metadata?.managedFields ?? []).map((m) => [`${m.manager}/${m.operation}${m.subresource ? `/${m.subresource}` : ""}`, m.fieldsV1]));
}

test("apply creates, records ownership in fieldsV1, and prunes what the manager stops applying", async () => {
  const created = await ssa(svc({ a: "1", b: "2" }, [{ name: "http", port: 80 }, { name: "https", port: 443 }]), "sluice");
  assert.equal(api.requests.at(-1)?.status, 201);
  assert.equal(api.requests.at(-1)?.fieldManager, "sluice");
  const spec = created.spec as V1Service["spec"];
  assert.ok(spec?.clusterIP, "server defaults are filled in");
  assert.ok(spec?.ports?.every((p) => p.nodePort && p.protocol === "TCP"));
  const f = managers(created)["sluice/Apply"] as Record<string, Record<string, Record<string, unknown>>>;
  assert.deepEqual(Object.keys(f["f:metadata"]?.["f:labels"] ?? {}).sort(), ["f:a", "f:b"]);
  assert.ok(f["f:spec"]?.["f:ports"]?.['k:{"port":80,"protocol":"TCP"}'], JSON.stringify(f));
  assert.equal(f["f:spec"]?.["f:clusterIP"], undefined, "defaulted fields aren't the applier's");

  // Re-applying without label b and port 443 removes them; the allocated clusterIP/nodePorts stay.
  const again = await ssa(svc({ a: "1" }, [{ name: "http", port: 80 }]), "sluice");
  assert.deepEqual(again.metadata?.labels, { a: "1" });
  const s2 = again.spec as V1Service["spec"];
  assert.deepEqual(s2?.ports?.map((p) => p.port), [80]);
  assert.equal(s2?.clusterIP, spec?.clusterIP);
  assert.equal(s2?.ports?.[0]?.nodePort, spec?.ports?.[0]?.nodePort);
  // Applying the same thing again changes nothing: no new resourceVersion.
  const same = await ssa(svc({ a: "1" }, [{ name: "http", port: 80 }]), "sluice");
  assert.equal(same.metadata?.resourceVersion, again.metadata?.resourceVersion);
  assert.equal(await failure(objects.patch(svc({}, []), undefined, undefined, undefined, undefined, PatchStrategy.ServerSideApply)).then((f) => f.code), 400, "apply needs a fieldManager");
});

test("another manager: same value is shared ownership, a different value conflicts (409) unless forced", async () => {
  await ssa({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "shared", namespace: "default", labels: { team: "net" } }, data: { mode: "a", mine: "x" } }, "sluice");
  // Same value: no conflict, both own it; the first manager dropping it keeps it (the other still owns it).
  await ssa({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "shared", namespace: "default" }, data: { mode: "a" } }, "helm");
  const kept = await ssa({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "shared", namespace: "default", labels: { team: "net" } }, data: { mine: "x" } }, "sluice");
  assert.equal((kept.data as Record<string, string>).mode, "a");

  const c = await failure(ssa({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "shared", namespace: "default" }, data: { mode: "b", mine: "y" } }, "helm"));
  assert.equal(c.code, 409);
  assert.equal(c.status.reason, "Conflict");
  assert.match(c.status.message ?? "", /^Apply failed with 1 conflict: conflict with "sluice": \.data\.mine/);
  assert.deepEqual(c.status.details?.causes?.map((x) => x.field), [".data.mine"]);

  const forced = await ssa({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "shared", namespace: "default" }, data: { mode: "b", mine: "y" } }, "helm", true);
  assert.deepEqual(forced.data, { mode: "b", mine: "y" });
  const m = managers(forced) as Record<string, { "f:data"?: Record<string, unknown> }>;
  assert.deepEqual(Object.keys(m["helm/Apply"]?.["f:data"] ?? {}).sort(), ["f:mine", "f:mode"]);
  assert.equal(m["sluice/Apply"]?.["f:data"], undefined, "forced fields moved away from sluice");
  // sluice no longer owns data.mine, so its next apply without it leaves it alone.
  const after = await ssa({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "shared", namespace: "default", labels: { team: "net" } } }, "sluice");
  assert.deepEqual(after.data, { mode: "b", mine: "y" });
});

test("updates take ownership of what they change; apply then conflicts with them", async () => {
  await ssa({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "upd", namespace: "default" }, data: { k: "1" } }, "sluice");
  await core.patchNamespacedConfigMap({ namespace: "default", name: "upd", body: { data: { k: "2" } } }, setHeaderOptions("Content-Type", PatchStrategy.MergePatch));
  const cm = (await objects.read({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "upd", namespace: "default" } })) as Obj;
  const mf = cm.metadata?.managedFields ?? [];
  const updater = mf.find((m) => m.operation === "Update");
  assert.ok(updater, JSON.stringify(mf));
  assert.deepEqual(updater.fieldsV1, { "f:data": { "f:k": {} } });
  assert.equal(mf.find((m) => m.manager === "sluice"), undefined, "sluice lost its only field");
  const c = await failure(ssa({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "upd", namespace: "default" }, data: { k: "3" } }, "sluice"));
  assert.equal(c.code, 409);
});

test("map lists merge by key across managers; atomic lists are replaced whole", async () => {
  const gw = (manager: string, listeners: { name: string; port: number }[], addresses?: { value: string }[]): Promise<Obj> => ssa({
    apiVersion: "gateway.networking.k8s.io/v1", kind: "Gateway", metadata: { name: "lists", namespace: "default" },
    spec: { gatewayClassName: "sluice", listeners: listeners.map((l) => ({ ...l, protocol: "HTTP" })), ...(addresses ? { addresses } : {}) },
  }, manager);
  await gw("a", [{ name: "http", port: 80 }], [{ value: "10.0.0.1" }]);
  const both = await gw("b", [{ name: "admin", port: 9000 }]);
  const names = (o: Obj): string[] => ((o.spec as { listeners: { name: string }[] }).listeners).map((l) => l.name);
  assert.deepEqual(names(both), ["http", "admin"]);
  const gone = await gw("a", []);
  assert.deepEqual(names(gone), ["admin"], "a's listener is pruned, b's stays");
  // spec.addresses has no list type: atomic, so a's removal of it removes the whole list.
  assert.equal((gone.spec as { addresses?: unknown }).addresses, undefined);
  // A changed port on b's listener is a conflict for a.
  const c = await failure(gw("a", [{ name: "admin", port: 9001 }]));
  assert.equal(c.code, 409);
  assert.match(c.status.message ?? "", /\.spec\.listeners\[name="admin"\]\.port/);
});

test("apply to /status owns only status; status conditions merge by type between managers", async () => {
  await ssa({ apiVersion: "gateway.networking.k8s.io/v1", kind: "Gateway", metadata: { name: "st", namespace: "default" }, spec: { gatewayClassName: "sluice", listeners: [] }, status: { conditions: [{ type: "Forged" }] } }, "user");
  const custom = api.kubeConfig().makeApiClient(CustomObjectsApi);
  const base = { group: "gateway.networking.k8s.io", version: "v1", namespace: "default", plural: "gateways", name: "st" };
  const cond = (type: string): Record<string, unknown> => ({ type, status: "True", reason: type, message: "", lastTransitionTime: "2026-01-01T00:00:00Z", observedGeneration: 1 });
  const applyStatus = (manager: string, conditions: unknown[], force?: boolean): Promise<Obj> => custom.patchNamespacedCustomObjectStatus({
    ...base, fieldManager: manager, force, body: { apiVersion: "gateway.networking.k8s.io/v1", kind: "Gateway", metadata: { name: "st", namespace: "default" }, spec: { gatewayClassName: "ignored" }, status: { conditions } },
  }, setHeaderOptions("Content-Type", PatchStrategy.ServerSideApply)) as Promise<Obj>;

  const one = await applyStatus("sluice", [cond("Accepted"), cond("Programmed")]);
  assert.equal((one.spec as { gatewayClassName: string }).gatewayClassName, "sluice");
  assert.equal(one.metadata?.generation, 1);
  const m = (one.metadata?.managedFields ?? []).find((x) => x.manager === "sluice");
  assert.equal(m?.subresource, "status");
  assert.equal(m?.operation, "Apply");
  const two = await applyStatus("other", [cond("Other")]);
  const types = (o: Obj): string[] => ((o.status as { conditions: { type: string }[] }).conditions).map((c) => c.type);
  assert.deepEqual(types(two), ["Accepted", "Programmed", "Other"]);
  const pruned = await applyStatus("sluice", [cond("Accepted")]);
  assert.deepEqual(types(pruned), ["Accepted", "Other"]);
  const c = await failure(applyStatus("other", [{ ...cond("Accepted"), status: "False" }]));
  assert.equal(c.code, 409);
  // The main resource's apply ignored status; its manager owns spec only.
  const user = (pruned.metadata?.managedFields ?? []).find((x) => x.manager === "user");
  assert.equal((user?.fieldsV1 as Record<string, unknown>)["f:status"], undefined);
  assert.ok((user?.fieldsV1 as Record<string, unknown>)["f:spec"]);
});

test("apply with a stale resourceVersion conflicts; YAML bodies are accepted", async () => {
  const created = await ssa({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "yaml", namespace: "default" }, data: { a: "1" } }, "sluice");
  const stale = await failure(ssa({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "yaml", namespace: "default", resourceVersion: "1" }, data: { a: "2" } }, "sluice"));
  assert.equal(stale.code, 409);
  const res = await fetch(`${api.url}/api/v1/namespaces/default/configmaps/yaml?fieldManager=sluice`, {
    method: "PATCH",
    headers: { authorization: `Bearer ${api.token}`, "content-type": "application/apply-patch+yaml" },
    body: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: yaml\ndata:\n  a: \"3\"\n",
  });
  assert.equal(res.status, 200);
  const body = (await res.json()) as { data: Record<string, string>; metadata: { uid: string } };
  assert.deepEqual(body.data, { a: "3" });
  assert.equal(body.metadata.uid, created.metadata?.uid);
});
