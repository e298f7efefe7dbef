import { test } from "node:test";
import assert from "node:assert/strict";
import { hasOurSharedEntries, mergeStatus, rfc3339, statusEqual } from "./statusmerge.ts";

const OURS = "sluice.dev/gateway-controller";
const T0 = "2026-01-01T00:00:00Z";
const NOW = "2026-02-02T02:02:02Z";
const opts = { controllerName: OURS, now: NOW };

const cond = (type: string, status: string, reason = type, extra: Record<string, unknown> = {}) => ({ type, status, reason, message: "m", observedGeneration: 1, ...extra });
const parentRef = (name: string) => ({ group: "gateway.networking.k8s.io", kind: "Gateway", namespace: "default", name });

test("rfc3339 drops the fraction", () => {
  assert.equal(rfc3339(new Date("2026-03-04T05:06:07.890Z")), "2026-03-04T05:06:07Z");
});

test("lastTransitionTime: kept while the status holds, now when it changes or is new", () => {
  const live = { conditions: [cond("Accepted", "True", "Accepted", { lastTransitionTime: T0 }), cond("Programmed", "False", "Pending", { lastTransitionTime: T0 })] };
  const desired = { conditions: [cond("Accepted", "True", "Accepted"), cond("Programmed", "True", "Programmed"), cond("ResolvedRefs", "True")] };
  const next = mergeStatus(desired, live, opts);
  const times = (next.conditions as { type: string; lastTransitionTime: string }[]).map((c) => [c.type, c.lastTransitionTime]);
  assert.deepEqual(times, [["Accepted", T0], ["Programmed", NOW], ["ResolvedRefs", NOW]]);
  assert.equal(statusEqual(next, live), false);
});

test("a reason or message change keeps lastTransitionTime but is a change", () => {
  const live = { conditions: [cond("Accepted", "False", "Invalid", { lastTransitionTime: T0 })] };
  const next = mergeStatus({ conditions: [cond("Accepted", "False", "InvalidParameters")] }, live, opts);
  assert.equal((next.conditions as { lastTransitionTime: string }[])[0]?.lastTransitionTime, T0);
  assert.equal(statusEqual(next, live), false);
});

test("equal when only lastTransitionTime and condition order differ", () => {
  const live = { conditions: [cond("B", "True", "B", { lastTransitionTime: T0 }), cond("A", "True", "A", { lastTransitionTime: T0 })] };
  const next = mergeStatus({ conditions: [cond("A", "True"), cond("B", "True")] }, live, opts);
  assert.equal(statusEqual(next, live), true);
  assert.equal(statusEqual({ conditions: [cond("A", "True", "A", { lastTransitionTime: NOW })] }, { conditions: [cond("A", "True", "A", { lastTransitionTime: T0 })] }), true);
});

test("nested listener conditions are matched by listener name", () => {
  const live = {
    conditions: [],
    listeners: [
      { name: "b", attachedRoutes: 0, conditions: [cond("Programmed", "True", "P", { lastTransitionTime: "2026-01-01T00:00:02Z" })] },
      { name: "a", attachedRoutes: 1, conditions: [cond("Programmed", "True", "P", { lastTransitionTime: T0 })] },
    ],
  };
  const next = mergeStatus({ conditions: [], listeners: [{ name: "a", attachedRoutes: 1, conditions: [cond("Programmed", "True", "P")] }] }, live, opts);
  const listeners = next.listeners as { name: string; conditions: { lastTransitionTime: string }[] }[];
  assert.equal(listeners.length, 1, "a listener dropped from the Gateway leaves the status");
  assert.equal(listeners[0]?.conditions[0]?.lastTransitionTime, T0);
});

test("Gateway-like status: fields the translator dropped are removed", () => {
  const live = { addresses: [{ type: "IPAddress", value: "10.0.0.1" }], conditions: [] };
  const next = mergeStatus({ conditions: [] }, live, opts);
  assert.equal(next.addresses, undefined);
  assert.equal(statusEqual(next, live), false);
});

test("route parents: ours replaced, other controllers' entries kept untouched", () => {
  const theirs = { parentRef: parentRef("other"), controllerName: "example.com/other", conditions: [cond("Accepted", "True", "Accepted", { lastTransitionTime: T0 })] };
  const oursOld = { parentRef: parentRef("gw"), controllerName: OURS, conditions: [cond("Accepted", "False", "NotAllowedByListeners", { lastTransitionTime: T0 })] };
  const oursGone = { parentRef: parentRef("gone"), controllerName: OURS, conditions: [cond("Accepted", "True", "Accepted", { lastTransitionTime: T0 })] };
  const live = { parents: [theirs, oursOld, oursGone] };
  // The translator's desired status may carry a stale copy of the other entry: ignored.
  const desired = { parents: [{ parentRef: parentRef("gw"), controllerName: OURS, conditions: [cond("Accepted", "True", "Accepted")] }, { ...theirs, conditions: [] }] };
  const next = mergeStatus(desired, live, opts);
  const parents = next.parents as { controllerName: string; parentRef: { name: string }; conditions: { status: string; lastTransitionTime: string }[] }[];
  assert.deepEqual(parents.map((p) => p.parentRef.name), ["gw", "other"]);
  assert.deepEqual(parents[1], theirs, "the other controller's entry is byte-for-byte what it was");
  assert.equal(parents[0]?.conditions[0]?.status, "True");
  assert.equal(parents[0]?.conditions[0]?.lastTransitionTime, NOW);
});

test("route parents: equality ignores entry order (no ping-pong with another controller)", () => {
  const a = { parentRef: parentRef("gw"), controllerName: OURS, conditions: [cond("Accepted", "True", "Accepted", { lastTransitionTime: T0 })] };
  const b = { parentRef: parentRef("x"), controllerName: "example.com/other", conditions: [] };
  const live = { parents: [b, a] };
  const next = mergeStatus({ parents: [{ ...a, conditions: [cond("Accepted", "True", "Accepted")] }] }, live, opts);
  assert.equal(statusEqual(next, live), true);
});

test("empty desired parents removes only our entries", () => {
  const b = { parentRef: parentRef("x"), controllerName: "example.com/other", conditions: [] };
  const live = { parents: [{ parentRef: parentRef("gw"), controllerName: OURS, conditions: [] }, b] };
  assert.equal(hasOurSharedEntries(live, OURS), true);
  const next = mergeStatus({ parents: [] }, live, opts);
  assert.deepEqual(next, { parents: [b] });
  assert.equal(hasOurSharedEntries(next, OURS), false);
});

test("policy ancestors are shared like parents", () => {
  const theirs = { ancestorRef: parentRef("o"), controllerName: "example.com/other", conditions: [] };
  const live = { ancestors: [theirs] };
  const next = mergeStatus({ ancestors: [{ ancestorRef: parentRef("gw"), controllerName: OURS, conditions: [cond("Accepted", "True")] }] }, live, opts);
  assert.equal((next.ancestors as unknown[]).length, 2);
  assert.deepEqual((next.ancestors as unknown[])[1], theirs);
});

test("malformed live status never throws", () => {
  for (const live of [undefined, null, "x", 3, [], { conditions: "no" }, { parents: {} }, { listeners: [null, 1] }]) {
    const next = mergeStatus({ conditions: [cond("Accepted", "True")], listeners: [{ name: "a", conditions: [] }] }, live, opts);
    assert.equal((next.conditions as { lastTransitionTime: string }[])[0]?.lastTransitionTime, NOW);
    mergeStatus({ parents: [] }, live, opts);
  }
});

test("the translator's desired object is never mutated", () => {
  const desired = { conditions: [cond("Accepted", "True")] };
  const copy = JSON.parse(JSON.stringify(desired)) as unknown;
  mergeStatus(desired, undefined, opts);
  assert.deepEqual(desired, copy);
});
