import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type { FakeApiServer } from "../fakeapi/server.ts";
import { CONTROLLER_NAME } from "../translate/gatewayclass.ts";
import { EventRecorder, type InvolvedObject } from "./events.ts";
import { kubeConfigOf, startServer } from "./testkit.ts";

let server: FakeApiServer;
before(async () => {
  server = await startServer();
  // Events live in their object's namespace, which must exist (as in a real cluster).
  for (const ns of ["e1", "e2", "e3", "e4", "e5"]) server.apply({ apiVersion: "v1", kind: "Namespace", metadata: { name: ns } });
});
after(async () => {
  await server.close();
});

type Ev = { reason: string; message: string; count: number; type: string; involvedObject: InvolvedObject; reportingComponent: string; firstTimestamp: string; lastTimestamp: string; metadata: { name: string } };
const eventsIn = (ns: string) => server.list("v1", "Event", ns) as unknown as Ev[];
const gw = (ns: string, name = "gw"): InvolvedObject => ({ apiVersion: "gateway.networking.k8s.io/v1", kind: "Gateway", namespace: ns, name, uid: `uid-${ns}-${name}` });

test("identical events aggregate into one Event whose count grows", async () => {
  let now = new Date("2026-06-01T00:00:00Z");
  const r = new EventRecorder({ kubeConfig: kubeConfigOf(server), minUpdateIntervalMs: 60_000, now: () => now });
  r.record(gw("e1"), "Warning", "ServiceApplyFailed", "boom");
  await r.idle();
  for (let i = 0; i < 9; i++) {
    now = new Date(now.getTime() + 1000);
    r.record(gw("e1"), "Warning", "ServiceApplyFailed", "boom");
  }
  await r.idle();
  // Within the update interval the count waits in memory: still one write.
  assert.equal(r.writeCount(), 1);
  assert.equal(eventsIn("e1")[0]?.count, 1);
  await r.flush();
  const evs = eventsIn("e1");
  assert.equal(evs.length, 1);
  assert.equal(evs[0]?.count, 10);
  assert.equal(evs[0]?.type, "Warning");
  assert.equal(evs[0]?.reportingComponent, CONTROLLER_NAME);
  assert.deepEqual(evs[0]?.involvedObject, gw("e1"));
  assert.equal(new Date(evs[0]?.lastTimestamp ?? 0).toISOString(), "2026-06-01T00:00:09.000Z");
  assert.equal(r.writeCount(), 2);
  r.stop();
});

test("a different message is a different Event; cluster-scoped objects get their Events in default", async () => {
  const r = new EventRecorder({ kubeConfig: kubeConfigOf(server), minUpdateIntervalMs: 0 });
  r.record(gw("e2"), "Warning", "InvalidParameters", "a");
  r.record(gw("e2"), "Warning", "InvalidParameters", "b");
  r.record({ apiVersion: "gateway.networking.k8s.io/v1", kind: "GatewayClass", name: "cls-e2" }, "Warning", "InvalidParameters", "bad config");
  await r.idle();
  assert.deepEqual(eventsIn("e2").map((e) => e.message).sort(), ["a", "b"]);
  assert.ok(eventsIn("default").some((e) => e.involvedObject.name === "cls-e2" && e.involvedObject.kind === "GatewayClass"));
  r.stop();
});

test("a per-object token bucket stops a flood of distinct events", async () => {
  const r = new EventRecorder({ kubeConfig: kubeConfigOf(server), burst: 3, refillMs: 3_600_000 });
  for (let i = 0; i < 10; i++) r.record(gw("e3"), "Warning", "X", `distinct ${i}`);
  r.record(gw("e3", "other"), "Warning", "X", "another object has its own bucket");
  await r.idle();
  assert.equal(eventsIn("e3").length, 4);
  assert.equal(r.droppedCount(), 7);
  r.stop();
});

test("an Event that vanished (TTL) is created again; a follower records nothing", async () => {
  let leader = true;
  const r = new EventRecorder({ kubeConfig: kubeConfigOf(server), minUpdateIntervalMs: 0, isLeader: () => leader });
  r.record(gw("e4"), "Normal", "Y", "m");
  await r.idle();
  const first = eventsIn("e4")[0];
  assert.ok(first);
  server.remove("v1", "Event", "e4", first.metadata.name);
  r.record(gw("e4"), "Normal", "Y", "m");
  await r.idle();
  const evs = eventsIn("e4");
  assert.equal(evs.length, 1);
  assert.notEqual(evs[0]?.metadata.name, first.metadata.name);
  leader = false;
  const mark = server.requests.length;
  r.record(gw("e4"), "Warning", "Z", "follower");
  await r.idle();
  assert.equal(server.requests.length, mark);
  r.stop();
});

test("API errors never throw out of record()", async () => {
  const r = new EventRecorder({ kubeConfig: kubeConfigOf(server) });
  server.failNext({ status: 500, count: 10, match: (q) => q.path.includes("/namespaces/e5/events") });
  r.record(gw("e5"), "Warning", "W", "m");
  await r.idle();
  assert.equal(r.writeCount(), 0);
  r.stop();
});
