import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type { FakeApiServer } from "../fakeapi/server.ts";
import { CONTROLLER_NAME } from "../translate/gatewayclass.ts";
import type { TranslateResult } from "../translate/output.ts";
import { Translator } from "../translate/translate.ts";
import { EventRecorder } from "./events.ts";
import { StatusWriter, type StatusWriterOptions } from "./status.ts";
import { gateway, gatewayClass, httpRoute, kubeConfigOf, put, requestsSince, snapshotFrom, startServer } from "./testkit.ts";

let server: FakeApiServer;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server.close();
});

const OTHER = "example.com/other-controller";
const GW_API = "gateway.networking.k8s.io/v1";

function writer(extra: Partial<StatusWriterOptions> = {}): StatusWriter {
  return new StatusWriter({ kubeConfig: kubeConfigOf(server), backoff: { initialMs: 5, maxMs: 100 }, ...extra });
}

type Parent = { controllerName: string; parentRef: { name: string }; conditions: { type: string; status: string; reason: string; lastTransitionTime?: string }[] };
const parentsOf = (ns: string, name: string): Parent[] =>
  ((server.get(GW_API, "HTTPRoute", ns, name)?.status as { parents?: Parent[] } | undefined)?.parents ?? []);
const conditionsOf = (kind: string, ns: string | undefined, name: string) =>
  ((server.get(GW_API, kind, ns, name)?.status as { conditions?: { type: string; status: string; reason: string; lastTransitionTime?: string }[] } | undefined)?.conditions ?? []);

function otherEntry(gw: string, status = "True") {
  return {
    parentRef: { group: "gateway.networking.k8s.io", kind: "Gateway", namespace: "s1", name: gw },
    controllerName: OTHER,
    conditions: [{ type: "Accepted", status, reason: "Accepted", message: "theirs", observedGeneration: 1, lastTransitionTime: "2026-01-01T00:00:00Z" }],
  };
}

test("writes GatewayClass, Gateway and Route statuses; keeps other controllers' parents; an identical result costs zero requests", async () => {
  put(server, { ...gatewayClass("s1"), metadata: { name: "s1" } });
  put(server, gateway("gw", "s1", {}, "s1"));
  put(server, gateway("theirs", "not-ours", {}, "s1"));
  put(server, { ...httpRoute("r", ["gw", "theirs"], "s1"), status: { parents: [otherEntry("theirs")] } });
  const w = writer();
  const t = new Translator({ assumeAcknowledged: true });
  const snap = snapshotFrom(server);
  const result = t.translate(snap);
  w.update(result, snap);
  await w.idle();

  const gcConds = conditionsOf("GatewayClass", undefined, "s1");
  assert.equal(gcConds.find((c) => c.type === "Accepted")?.status, "True");
  assert.match(gcConds[0]?.lastTransitionTime ?? "", /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  assert.equal(conditionsOf("Gateway", "s1", "gw").find((c) => c.type === "Accepted")?.status, "True");
  const parents = parentsOf("s1", "r");
  assert.deepEqual(parents.map((p) => `${p.controllerName}/${p.parentRef.name}`).sort(), [`${OTHER}/theirs`, `${CONTROLLER_NAME}/gw`]);
  assert.deepEqual(parents.find((p) => p.controllerName === OTHER), otherEntry("theirs"), "the other controller's entry is untouched");
  const writes = w.writeCount();
  assert.ok(writes >= 3, `writes: ${writes}`);
  assert.ok(server.requests.some((r) => r.method === "PUT" && r.subresource === "status"), "PUT on /status");

  // The same result again, with the (now stale) snapshot and with a fresh one: nothing to do.
  const mark = server.requests.length;
  assert.equal(w.update(result, snap), 0);
  const fresh = snapshotFrom(server, 2);
  assert.equal(w.update(t.translate(fresh), fresh), 0);
  await w.idle();
  assert.deepEqual(requestsSince(server, mark), []);
  assert.equal(w.writeCount(), writes);
});

test("lastTransitionTime is kept while a condition's status holds and moves when it changes", async () => {
  put(server, gatewayClass("s2"));
  put(server, gateway("gw", "s2", {}, "s2"));
  let clock = new Date("2026-05-01T00:00:00Z");
  const w = writer({ now: () => clock });
  const t = new Translator({ assumeAcknowledged: true });
  let snap = snapshotFrom(server);
  w.update(t.translate(snap), snap);
  await w.idle();
  const t1 = conditionsOf("Gateway", "s2", "gw").find((c) => c.type === "Accepted")?.lastTransitionTime;
  assert.equal(t1, "2026-05-01T00:00:00Z");

  // Generation changes: observedGeneration moves, status stays True → time kept.
  clock = new Date("2026-05-02T00:00:00Z");
  const respec = (listeners: unknown[]) => {
    const live = server.get(GW_API, "Gateway", "s2", "gw");
    put(server, { ...live, spec: { ...(live?.spec as object), listeners } }); // keeps the status we wrote
  };
  respec([{ name: "http", port: 8080, protocol: "HTTP" }]);
  snap = snapshotFrom(server, 2);
  w.update(t.translate(snap), snap);
  await w.idle();
  const accepted = conditionsOf("Gateway", "s2", "gw").find((c) => c.type === "Accepted") as { lastTransitionTime?: string; observedGeneration?: number };
  assert.equal(accepted.lastTransitionTime, t1);
  assert.equal(accepted.observedGeneration, 2);

  // Invalid listener set: Accepted flips → new time.
  clock = new Date("2026-05-03T00:00:00Z");
  respec([{ name: "bad", port: 80, protocol: "NoSuchProtocol" }]);
  snap = snapshotFrom(server, 3);
  w.update(t.translate(snap), snap);
  await w.idle();
  const flipped = conditionsOf("Gateway", "s2", "gw").find((c) => c.type === "Accepted");
  assert.equal(flipped?.status, "False");
  assert.equal(flipped?.lastTransitionTime, "2026-05-03T00:00:00Z");
});

test("409 Conflict: re-read, re-merge, and keep what the other controller wrote meanwhile", async () => {
  put(server, gatewayClass("s3"));
  put(server, gateway("gw", "s3", {}, "s3"));
  put(server, { ...httpRoute("r", ["gw"], "s3"), status: { parents: [otherEntry("x")] } });
  const snap = snapshotFrom(server);
  const result = new Translator({ assumeAcknowledged: true }).translate(snap);
  // The other controller writes after our snapshot was taken: our PUT carries a stale resourceVersion.
  const route = server.get(GW_API, "HTTPRoute", "s3", "r");
  put(server, { ...route, status: { parents: [otherEntry("x", "False")] } });
  const mark = server.requests.length;
  const w = writer();
  w.update(result, snap);
  await w.idle();
  const reqs = requestsSince(server, mark).filter((r) => r.path.endsWith("/httproutes/r") || r.path.endsWith("/httproutes/r/status"));
  assert.deepEqual(reqs.map((r) => `${r.method} ${r.status}`), ["PUT 409", "GET 200", "PUT 200"]);
  const parents = parentsOf("s3", "r");
  assert.equal(parents.find((p) => p.controllerName === OTHER)?.conditions[0]?.status, "False", "their newer entry survives");
  assert.ok(parents.some((p) => p.controllerName === CONTROLLER_NAME));
});

test("5xx and 429 are retried with backoff, Retry-After honoured; a deleted object is dropped silently", async () => {
  put(server, gatewayClass("s4"));
  put(server, gateway("gw", "s4", {}, "s4"));
  put(server, gateway("gone", "s4", {}, "s4"));
  const snap = snapshotFrom(server);
  const result = new Translator({ assumeAcknowledged: true }).translate(snap);
  server.remove(GW_API, "Gateway", "s4", "gone");
  const onGw = (r: { method: string; path: string }) => r.method === "PUT" && r.path.includes("/namespaces/s4/gateways/gw");
  server.failNext({ status: 500, count: 2, match: onGw });
  server.failNext({ status: 429, retryAfterSeconds: 1, match: onGw });
  const events = new EventRecorder({ kubeConfig: kubeConfigOf(server) });
  const w = writer({ backoff: { initialMs: 5, maxMs: 5_000 }, events });
  const start = Date.now();
  w.update(result, snap);
  await w.idle();
  await events.idle();
  assert.ok(Date.now() - start >= 900, "Retry-After: 1 was waited for");
  assert.equal(conditionsOf("Gateway", "s4", "gw").find((c) => c.type === "Accepted")?.status, "True");
  const gwPuts = server.requests.filter((r) => onGw(r)).map((r) => r.status);
  assert.deepEqual(gwPuts.slice(-4), [500, 500, 429, 200]);
  assert.ok(server.requests.some((r) => r.path.includes("/gateways/gone/status") && r.status === 404), "the deleted Gateway got a 404");
  assert.equal(events.writeCount(), 0, "a 404 is not an error a user must see");
});

test("a status write that keeps failing gives up and puts a Warning Event on the object", async () => {
  put(server, gatewayClass("s5"));
  put(server, gateway("gw", "s5", {}, "s5"));
  const snap = snapshotFrom(server);
  const result = new Translator({ assumeAcknowledged: true }).translate(snap);
  server.failNext({ status: 503, count: 3, match: (r) => r.method === "PUT" && r.path.includes("/namespaces/s5/gateways/gw") });
  const events = new EventRecorder({ kubeConfig: kubeConfigOf(server) });
  const w = writer({ retryAttempts: 3, events });
  w.update(result, snap);
  await w.idle();
  await events.idle();
  const ev = server.list("v1", "Event", "s5").find((e) => (e as { reason?: string }).reason === "StatusWriteFailed") as Record<string, unknown> | undefined;
  assert.ok(ev, "StatusWriteFailed event");
  assert.equal((ev.involvedObject as { name: string }).name, "gw");
  assert.equal(ev.type, "Warning");
  assert.equal(ev.reportingComponent, CONTROLLER_NAME);
  // The next translation retries (the failure was forgotten, not remembered as written).
  w.update(result, snap);
  await w.idle();
  assert.equal(conditionsOf("Gateway", "s5", "gw").find((c) => c.type === "Accepted")?.status, "True");
});

test("per-key coalescing: a burst of translations for one object is one write of the latest", async () => {
  put(server, gatewayClass("s6"));
  put(server, gateway("gw", "s6", {}, "s6"));
  const snap = snapshotFrom(server);
  const base = new Translator({ assumeAcknowledged: true }).translate(snap);
  const key = "Gateway/s6/gw";
  const gwStatus = base.statuses.get(key);
  assert.ok(gwStatus);
  const w = writer({ concurrency: 1 });
  // Occupy the single worker with the GatewayClass so the Gateway's burst piles up behind it.
  const only = (k: string, i: number): TranslateResult => {
    const statuses = new Map(base.statuses);
    for (const sk of [...statuses.keys()]) if (sk !== k && sk !== "GatewayClass/s6") statuses.delete(sk);
    const s = statuses.get(k);
    if (s) statuses.set(k, { ...s, status: { ...s.status, conditions: [{ type: "Accepted", status: "True", reason: "Accepted", message: `burst ${i}`, observedGeneration: 1 }] } });
    return { ...base, statuses };
  };
  for (let i = 0; i < 50; i++) w.update(only(key, i), snap);
  await w.idle();
  const gwWrites = server.requests.filter((r) => r.method === "PUT" && r.path.includes("/namespaces/s6/gateways/gw/status"));
  assert.equal(gwWrites.length, 1);
  assert.equal((conditionsOf("Gateway", "s6", "gw")[0] as { message?: string }).message, "burst 49");
});

test("a Route that leaves our Gateway loses our parents entry, others' entries stay", async () => {
  put(server, gatewayClass("s7"));
  put(server, gateway("gw", "s7", {}, "s7"));
  put(server, { ...httpRoute("r", ["gw"], "s7"), status: { parents: [otherEntry("x")] } });
  const t = new Translator({ assumeAcknowledged: true });
  const w = writer();
  let snap = snapshotFrom(server);
  w.update(t.translate(snap), snap);
  await w.idle();
  assert.equal(parentsOf("s7", "r").length, 2);
  const route = server.get(GW_API, "HTTPRoute", "s7", "r");
  put(server, { ...route, spec: { ...(route?.spec as object), parentRefs: [{ name: "elsewhere", namespace: "nowhere" }] } });
  snap = snapshotFrom(server, 2);
  w.update(t.translate(snap), snap);
  await w.idle();
  assert.deepEqual(parentsOf("s7", "r").map((p) => p.controllerName), [OTHER]);
});

test("GatewayClass of another controller is never written; a follower writes nothing", async () => {
  put(server, gatewayClass("foreign", OTHER));
  put(server, gatewayClass("s8"));
  put(server, gateway("gw", "s8", {}, "s8"));
  const snap = snapshotFrom(server);
  const result = new Translator({ assumeAcknowledged: true }).translate(snap);
  result.statuses.set("GatewayClass/foreign", { kind: "GatewayClass", name: "foreign", status: { conditions: [] } });
  const mark = server.requests.length;
  let leader = false;
  const w = writer({ isLeader: () => leader });
  assert.equal(w.update(result, snap), 0);
  await w.idle();
  assert.deepEqual(requestsSince(server, mark), [], "follower: zero requests");
  leader = true;
  w.update(result, snap);
  await w.idle();
  assert.ok(!server.requests.slice(mark).some((r) => r.path.includes("/gatewayclasses/foreign")));
  assert.equal(conditionsOf("GatewayClass", undefined, "s8")[0]?.status, "True");
});

test("conflicts are bounded: after 5 attempts the writer gives up with an Event", async () => {
  put(server, gatewayClass("s9"));
  put(server, gateway("gw", "s9", {}, "s9"));
  const snap = snapshotFrom(server);
  const result = new Translator({ assumeAcknowledged: true }).translate(snap);
  const onPut = (r: { method: string; path: string }) => r.method === "PUT" && r.path.includes("/namespaces/s9/gateways/gw/status");
  server.failNext({ status: 409, count: 20, match: onPut });
  const events = new EventRecorder({ kubeConfig: kubeConfigOf(server) });
  const w = writer({ events });
  w.update(result, snap);
  await w.idle();
  await events.idle();
  assert.equal(server.requests.filter(onPut).length, 5);
  assert.equal(server.requests.filter((r) => r.method === "GET" && r.path.endsWith("/namespaces/s9/gateways/gw")).length, 4, "a fresh read after each conflict");
  assert.ok(server.list("v1", "Event", "s9").some((e) => (e as { reason?: string }).reason === "StatusWriteFailed"));
});
