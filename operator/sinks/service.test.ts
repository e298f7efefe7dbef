import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { CoreV1Api, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import type { Service } from "../api/objects.ts";
import { gatewayApiCrds, sluiceCrds, startFakeApiServer, type FakeApiServer } from "../fakeapi/server.ts";
import { Translator } from "../translate/translate.ts";
import { EventRecorder } from "./events.ts";
import { CONFIG_HASH_ANNOTATION, isSubset, ServiceApplier, type ServiceApplierOptions } from "./service.ts";
import { gateway, gatewayClass, gatewayClassConfig, kubeConfigOf, put, requestsSince, snapshotFrom, startServer } from "./testkit.ts";

let server: FakeApiServer;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server.close();
});

const NLB = "service.beta.kubernetes.io/aws-load-balancer-";

function applier(extra: Partial<ServiceApplierOptions> = {}, srv = server): ServiceApplier {
  return new ServiceApplier({ kubeConfig: kubeConfigOf(srv), backoff: { initialMs: 5, maxMs: 50 }, ...extra });
}

const svc = (ns: string, name: string, srv = server) => srv.get("v1", "Service", ns, name) as unknown as Service | undefined;

async function converge(a: ServiceApplier, t: Translator, srv = server): Promise<void> {
  const snap = snapshotFrom(srv);
  a.update(t.translate(snap), snap);
  await a.idle();
}

test("isSubset: fields only the live object has are fine; values and list lengths must match", () => {
  assert.equal(isSubset({ a: 1, l: [{ p: 80 }] }, { a: 1, b: 2, l: [{ p: 80, nodePort: 30000 }] }), true);
  assert.equal(isSubset({ a: 1 }, { a: 2 }), false);
  assert.equal(isSubset({ l: [{ p: 80 }] }, { l: [{ p: 80 }, { p: 81 }] }), false);
  assert.equal(isSubset({ m: { k: "v" } }, {}), false);
});

test("applies the Service with SSA (field manager sluice), labels, owner reference; no request when nothing changed", async () => {
  put(server, gatewayClassConfig("cfg", { service: { annotations: { "example.com/team": "a" } }, aws: { nlb: { scheme: "internet-facing", subnets: ["subnet-1", "subnet-2"] } } }, "a1"));
  put(server, gatewayClass("a1", undefined, { group: "sluice.dev", kind: "GatewayClassConfig", name: "cfg", namespace: "a1" }));
  const gw = put(server, gateway("gw", "a1", { infrastructure: { labels: { tier: "edge" }, annotations: { "example.com/team": "b" } } }, "a1"));
  const a = applier();
  const t = new Translator({ assumeAcknowledged: true });
  const mark = server.requests.length;
  await converge(a, t);
  const s = svc("a1", "sluice-gw");
  assert.ok(s, "Service created");
  assert.equal(s.spec?.type, "LoadBalancer");
  assert.deepEqual(s.spec?.ports?.map((p) => p.port), [80]);
  assert.equal(s.metadata.labels?.["app.kubernetes.io/managed-by"], "sluice");
  assert.equal(s.metadata.labels?.["gateway.networking.k8s.io/gateway-name"], "gw");
  assert.equal(s.metadata.labels?.tier, "edge");
  assert.equal(s.metadata.annotations?.["example.com/team"], "b", "Gateway infrastructure wins over the class config");
  assert.equal(s.metadata.annotations?.[`${NLB}scheme`], "internet-facing");
  assert.equal(s.metadata.annotations?.[`${NLB}subnets`], "subnet-1,subnet-2");
  assert.deepEqual(s.metadata.ownerReferences, [{ apiVersion: "gateway.networking.k8s.io/v1", kind: "Gateway", name: "gw", uid: gw.metadata.uid, controller: true, blockOwnerDeletion: true }]);
  const patches = requestsSince(server, mark).filter((r) => r.method === "PATCH");
  assert.equal(patches.length, 1);
  assert.equal(patches[0]?.contentType, "application/apply-patch+yaml");
  assert.equal(patches[0]?.fieldManager, "sluice");
  assert.match(patches[0]?.query ?? "", /force=true/);
  assert.equal(a.applyCount(), 1);

  // Unchanged: zero requests, whether the snapshot lags (same snapshot) or not.
  const mark2 = server.requests.length;
  const snap = snapshotFrom(server);
  assert.equal(a.update(t.translate(snap), snap), 0);
  await a.idle();
  assert.deepEqual(requestsSince(server, mark2).filter((r) => r.path.includes("/services")), []);
  // A restarted operator: the hash annotation says the Service is current, so no apply; only the
  // one sweep listing that follows (re)gaining leadership.
  const mark3 = server.requests.length;
  const fresh = applier();
  fresh.update(t.translate(snap), snap);
  await fresh.idle();
  assert.deepEqual(requestsSince(server, mark3).map((r) => `${r.method} ${r.path}`), ["GET /api/v1/services"]);
});

test("a removed NLB annotation disappears; a webhook-set loadBalancerClass is kept", async () => {
  put(server, gatewayClassConfig("cfg", { aws: { nlb: { scheme: "internal", subnets: ["subnet-1"], proxyProtocol: true } } }, "a2"));
  put(server, gatewayClass("a2", undefined, { group: "sluice.dev", kind: "GatewayClassConfig", name: "cfg", namespace: "a2" }));
  put(server, gateway("gw", "a2", {}, "a2"));
  const a = applier();
  const t = new Translator({ assumeAcknowledged: true });
  await converge(a, t);
  assert.equal(svc("a2", "sluice-gw")?.metadata.annotations?.[`${NLB}subnets`], "subnet-1");
  assert.equal(svc("a2", "sluice-gw")?.spec?.loadBalancerClass, undefined, "our config sets no class, so we send none");

  // The AWS Load Balancer Controller's webhook (another field manager) sets the class.
  const core = kubeConfigOf(server).makeApiClient(CoreV1Api);
  await core.patchNamespacedService(
    { name: "sluice-gw", namespace: "a2", fieldManager: "aws-load-balancer-webhook", force: true, body: { apiVersion: "v1", kind: "Service", metadata: { name: "sluice-gw", namespace: "a2" }, spec: { loadBalancerClass: "service.k8s.aws/nlb" } } },
    setHeaderOptions("Content-Type", PatchStrategy.ServerSideApply),
  );

  // Drop subnets and proxy protocol from the GatewayClassConfig.
  put(server, gatewayClassConfig("cfg", { aws: { nlb: { scheme: "internal" } } }, "a2"));
  await converge(a, t);
  const s = svc("a2", "sluice-gw");
  assert.equal(s?.metadata.annotations?.[`${NLB}subnets`], undefined, "removed annotation is gone (Cilium #34155)");
  assert.equal(s?.metadata.annotations?.[`${NLB}proxy-protocol`], undefined);
  assert.equal(s?.metadata.annotations?.[`${NLB}scheme`], "internal");
  assert.equal(s?.spec?.loadBalancerClass, "service.k8s.aws/nlb", "the webhook's class is kept (Cilium #28949)");

  // Someone edits one of our annotations by hand: force=true takes it back on the next translation.
  const live = server.get("v1", "Service", "a2", "sluice-gw");
  put(server, { ...live, metadata: { ...live?.metadata, annotations: { ...(live?.metadata.annotations ?? {}), [`${NLB}scheme`]: "internet-facing" } } });
  await converge(a, t);
  assert.equal(svc("a2", "sluice-gw")?.metadata.annotations?.[`${NLB}scheme`], "internal");
  assert.equal(svc("a2", "sluice-gw")?.spec?.loadBalancerClass, "service.k8s.aws/nlb");
});

test("sweep deletes only Services Sluice owns and no longer wants; a user's look-alike is never touched", async () => {
  put(server, gatewayClass("a3"));
  put(server, gatewayClass("a3-foreign", "example.com/other"));
  put(server, gateway("keep", "a3", {}, "a3"));
  put(server, gateway("move", "a3", {}, "a3"));
  const a = applier();
  const t = new Translator({ assumeAcknowledged: true });
  await converge(a, t);
  assert.ok(svc("a3", "sluice-keep"));
  assert.ok(svc("a3", "sluice-move"));
  // A user's Service with our name pattern and no label; one with our label but no owner.
  put(server, { apiVersion: "v1", kind: "Service", metadata: { name: "sluice-user", namespace: "a3" }, spec: { type: "ClusterIP", ports: [{ port: 1 }] } });
  put(server, { apiVersion: "v1", kind: "Service", metadata: { name: "sluice-labelled", namespace: "a3", labels: { "app.kubernetes.io/managed-by": "sluice" } }, spec: { ports: [{ port: 1 }] } });

  // "move" goes to another controller's class: Kubernetes GC won't delete its Service, the sweep must.
  const mv = server.get("gateway.networking.k8s.io/v1", "Gateway", "a3", "move");
  put(server, { ...mv, spec: { ...(mv?.spec as object), gatewayClassName: "a3-foreign" } });
  await converge(a, t);
  assert.equal(svc("a3", "sluice-move"), undefined, "swept");
  assert.ok(svc("a3", "sluice-keep"));
  assert.ok(svc("a3", "sluice-user"), "a user's Service is never touched");
  assert.ok(svc("a3", "sluice-labelled"), "no controller owner reference: not ours");
  const deletes = server.requests.filter((r) => r.method === "DELETE" && r.path.includes("/namespaces/a3/services/"));
  assert.deepEqual(deletes.map((r) => r.path.split("/").pop()), ["sluice-move"]);
  assert.equal(a.deleteCount(), 1);
});

test("a user's Service already holding the generated name is not taken over: Event instead", async () => {
  put(server, gatewayClass("a4"));
  put(server, { apiVersion: "v1", kind: "Service", metadata: { name: "sluice-gw", namespace: "a4", annotations: { mine: "yes" } }, spec: { type: "ClusterIP", ports: [{ port: 9 }] } });
  put(server, gateway("gw", "a4", {}, "a4"));
  const events = new EventRecorder({ kubeConfig: kubeConfigOf(server) });
  const a = applier({ events });
  await converge(a, new Translator({ assumeAcknowledged: true }));
  await events.idle();
  const s = svc("a4", "sluice-gw");
  assert.equal(s?.spec?.type, "ClusterIP");
  assert.equal(s?.metadata.labels, undefined);
  assert.equal(a.applyCount(), 0);
  const ev = server.list("v1", "Event", "a4").find((e) => (e as { reason?: string }).reason === "ServiceNameConflict");
  assert.ok(ev, "ServiceNameConflict event on the Gateway");
});

test("a Service the API server rejects gives a ServiceApplyFailed Event on the Gateway", async () => {
  // Every input object fits the server's size limit; the Service that combines them does not.
  const small = await startFakeApiServer({ crds: [...gatewayApiCrds(), ...sluiceCrds()], maxObjectBytes: 16_000 });
  try {
    put(small, gatewayClassConfig("cfg", { service: { annotations: { "example.com/a": "x".repeat(7000), "example.com/b": "x".repeat(7000) } } }));
    put(small, gatewayClass("big", undefined, { group: "sluice.dev", kind: "GatewayClassConfig", name: "cfg", namespace: "default" }));
    put(small, gateway("gw", "big", { infrastructure: { annotations: { "example.com/c": "y".repeat(4000) } } }));
    const events = new EventRecorder({ kubeConfig: kubeConfigOf(small) });
    const a = applier({ events }, small);
    await converge(a, new Translator({ assumeAcknowledged: true }), small);
    await events.idle();
    assert.equal(svc("default", "sluice-gw", small), undefined);
    const ev = small.list("v1", "Event", "default").find((e) => (e as { reason?: string }).reason === "ServiceApplyFailed") as Record<string, unknown> | undefined;
    assert.ok(ev, "ServiceApplyFailed event");
    assert.match(String(ev.message), /413/);
    assert.equal((ev.involvedObject as { kind: string }).kind, "Gateway");
  } finally {
    await small.close();
  }
});

test("5xx on apply is retried; a follower applies and sweeps nothing", async () => {
  put(server, gatewayClass("a5"));
  put(server, gateway("gw", "a5", {}, "a5"));
  let leader = false;
  const a = applier({ isLeader: () => leader });
  const t = new Translator({ assumeAcknowledged: true });
  const mark = server.requests.length;
  await converge(a, t);
  assert.deepEqual(requestsSince(server, mark).filter((r) => r.path.includes("/services")), []);
  leader = true;
  server.failNext({ status: 503, count: 2, match: (r) => r.method === "PATCH" && r.path.endsWith("/namespaces/a5/services/sluice-gw") });
  await converge(a, t);
  assert.ok(svc("a5", "sluice-gw"));
  const patches = server.requests.filter((r) => r.method === "PATCH" && r.path.endsWith("/namespaces/a5/services/sluice-gw"));
  assert.deepEqual(patches.map((r) => (r.status === 201 ? 200 : r.status)), [503, 503, 200]);
  assert.ok(svc("a5", "sluice-gw")?.metadata.annotations?.[CONFIG_HASH_ANNOTATION]);
});
