// Properties of the translator as a whole: deterministic, incremental reuse never changes the
// answer, and malformed input never throws.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { KindName } from "../api/kinds.ts";
import { keyOf, type K8sObject } from "../api/objects.ts";
import { snapshotOf, type Snapshot } from "../store/snapshot.ts";
import { httpRoute, syntheticNamespace, syntheticWorld, type WorldShape } from "./synthetic.ts";
import { translate, Translator, type TranslateOptions } from "./translate.ts";

const shape: WorldShape = { gateways: 6, httpRoutes: 60, services: 12, tcpRoutes: 6 };
const opts: TranslateOptions = { addressing: { mode: "static", addresses: ["192.0.2.1"] } };

/** A new snapshot with one object replaced (or removed), sharing every other collection. */
function withObject(s: Snapshot, kind: KindName, key: string, obj: K8sObject | undefined): Snapshot {
  const coll = new Map(s.objects[kind] as ReadonlyMap<string, K8sObject>);
  if (obj) coll.set(key, obj);
  else coll.delete(key);
  return { version: s.version + 1, acks: s.acks, objects: { ...s.objects, [kind]: coll } };
}

test("translation is deterministic", () => {
  const objs = syntheticWorld(shape);
  const a = translate(snapshotOf(objs), opts);
  const b = translate(snapshotOf([...objs].reverse()), opts);
  assert.deepEqual(a, b);
  assert.ok(a.statuses.size > shape.httpRoutes, "every route and Gateway has a status");
});

test("incremental translation equals a fresh translation after every kind of change", () => {
  const ns = syntheticNamespace(shape);
  const t = new Translator(opts);
  let s = snapshotOf(syntheticWorld(shape));
  t.translate(s);
  const steps: [string, (s: Snapshot) => Snapshot][] = [
    ["edit a route", (s) => withObject(s, "HTTPRoute", `${ns(3)}/route-3`, httpRoute(3, shape, ns, 1))],
    ["move a route to another Gateway", (s) => {
      const r = httpRoute(4, shape, ns, 2);
      (r.spec as { parentRefs: unknown[] }).parentRefs = [{ name: "gw-1", namespace: ns(1) }];
      return withObject(s, "HTTPRoute", keyOf(r), r);
    }],
    ["delete a route", (s) => withObject(s, "HTTPRoute", `${ns(5)}/route-5`, undefined)],
    ["change endpoints", (s) => {
      const key = `${ns(2)}/svc-2-a`;
      const old = s.objects.EndpointSlice.get(key) as K8sObject & { endpoints: unknown[] };
      return withObject(s, "EndpointSlice", key, { ...old, endpoints: [{ addresses: ["10.9.9.9"], conditions: { ready: true } }] } as K8sObject);
    }],
    ["delete a Service", (s) => withObject(s, "Service", `${ns(7)}/svc-7`, undefined)],
    ["break a certificate", (s) => {
      const key = `${ns(0)}/tls`;
      const old = s.objects.Secret.get(key) as K8sObject;
      return withObject(s, "Secret", key, { ...old, data: { "tls.crt": "bm9wZQ==", "tls.key": "bm9wZQ==" } } as K8sObject);
    }],
    ["add a ReferenceGrant", (s) => withObject(s, "ReferenceGrant", `${ns(1)}/rg`, {
      apiVersion: "gateway.networking.k8s.io/v1beta1", kind: "ReferenceGrant", metadata: { name: "rg", namespace: ns(1) },
      spec: { from: [{ group: "gateway.networking.k8s.io", kind: "HTTPRoute", namespace: ns(0) }], to: [{ group: "", kind: "Service" }] },
    })],
    ["acknowledge a Gateway's config", (s) => {
      const fresh = translate(s, opts);
      const g = fresh.datapath.gateways[0];
      assert.ok(g);
      return { ...s, version: s.version + 1, acks: new Map([[g.gateway, g.configHash]]) };
    }],
  ];
  for (const [what, change] of steps) {
    s = change(s);
    assert.deepEqual(t.translate(s), translate(s, opts), `after: ${what}`);
  }
});

test("an acknowledged config makes its Gateway Programmed", () => {
  const s = snapshotOf(syntheticWorld({ gateways: 1, httpRoutes: 2, services: 2 }));
  const first = translate(s, opts);
  const gwStatus = (r: ReturnType<typeof translate>) =>
    (r.statuses.get("Gateway/team-0/gw-0")?.status as { conditions: { type: string; status: string; reason: string }[] }).conditions.find((c) => c.type === "Programmed");
  assert.equal(gwStatus(first)?.reason, "Pending");
  const hash = first.datapath.gateways[0]?.configHash as string;
  const acked = translate({ ...s, acks: new Map([["team-0/gw-0", hash]]) }, opts);
  assert.equal(gwStatus(acked)?.status, "True");
  assert.equal(translate({ ...s, acks: new Map([["team-0/gw-0", "stale"]]) }, opts).datapath.gateways[0]?.configHash, hash);
});

// Deterministic pseudo-random numbers, so a failure reproduces.
function rng(seed: number): () => number {
  let x = seed >>> 0;
  return () => ((x = (Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0) / 2 ** 32);
}

const JUNK: unknown[] = [null, 0, -1, 70000, "", "x", "*", "/[", true, [], {}, [null], [{}], { name: 1 }, "::1", "1.2.3.999"];

/** Replaces a random field somewhere in the object with junk (a structural copy, the input is untouched). */
function mutate(obj: unknown, r: () => number, depth = 0): unknown {
  if (obj === null || typeof obj !== "object" || depth > 8) return JUNK[Math.floor(r() * JUNK.length)];
  const copy: Record<string, unknown> | unknown[] = Array.isArray(obj) ? [...obj] : { ...(obj as Record<string, unknown>) };
  const keys = Object.keys(copy);
  if (keys.length === 0) return JUNK[Math.floor(r() * JUNK.length)];
  const k = keys[Math.floor(r() * keys.length)] as string;
  if (depth === 0 && (k === "kind" || k === "apiVersion" || k === "metadata")) return copy;
  (copy as Record<string, unknown>)[k] = r() < 0.5 ? mutate((copy as Record<string, unknown>)[k], r, depth + 1) : JUNK[Math.floor(r() * JUNK.length)];
  return copy;
}

test("malformed objects never make the translator throw", () => {
  const objs = syntheticWorld({ gateways: 3, httpRoutes: 12, services: 4, tcpRoutes: 3 });
  const r = rng(42);
  for (let round = 0; round < 300; round++) {
    const mutated = objs.map((o) => (r() < 0.3 ? (mutate(o, r) as K8sObject) : o));
    try {
      const res = translate(snapshotOf(mutated), opts);
      for (const st of res.statuses.values()) assert.ok(st.status);
    } catch (err) {
      assert.fail(`round ${round}: ${(err as Error).stack}`);
    }
  }
});

test("dnsRecords: false leaves the DNS records out and changes nothing else", () => {
  const objs = syntheticWorld(shape);
  const withDns = translate(snapshotOf(objs), opts);
  const without = new Translator({ ...opts, dnsRecords: false }).translate(snapshotOf(objs));
  assert.ok(withDns.dns.length > 0, "the synthetic world asks for DNS names");
  assert.deepEqual(without.dns, []);
  assert.deepEqual({ ...without, dns: withDns.dns }, withDns);
});
