// Id allocation: stable, reused only after release, late reuse, bounded, seeded from the maps.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { IdAllocator, IdSpaceExhausted, newIds, resolveIds, seedIds } from "./ids.ts";
import { desiredState } from "./desired.ts";
import { datapathOf, l4Yaml } from "./testkit.ts";
import type { LbState } from "../bpf/state.ts";

const empty = (): LbState => ({ frontends: [], backends: [], maglev: new Map(), vips: [], version: "" });

describe("IdAllocator", () => {
  it("gives a key the same id until released, and reuses ids only after release, as late as possible", () => {
    const a = new IdAllocator("backend", 3);
    assert.equal(a.allocate("x"), 1);
    assert.equal(a.allocate("y"), 2);
    assert.equal(a.allocate("x"), 1);
    a.retain(new Set([2])); // x's entry left the maps
    assert.equal(a.idOf("x"), undefined);
    assert.equal(a.allocate("z"), 3, "the cursor moves on before reusing 1");
    assert.equal(a.allocate("x"), 1, "then wraps to the released id");
    assert.throws(() => a.allocate("w"), (e: unknown) => e instanceof IdSpaceExhausted && /backend ids exhausted: all 3 are in use/.test(e.message));
  });

  it("seeds from held ids: bind claims a held id once, never one bound to another key", () => {
    const a = new IdAllocator("service", 10);
    a.hold(4);
    assert.equal(a.bind("s", 4), true);
    assert.equal(a.bind("t", 4), false);
    assert.equal(a.bind("s", 4), true);
    assert.equal(a.allocate("t"), 5, "new ids start after the highest seeded one");
    assert.throws(() => a.hold(11), /service id 11 is outside 1\.\.10/);
    assert.throws(() => new IdAllocator("x", 0), /positive integer/);
  });
});

describe("resolveIds", () => {
  const yaml = l4Yaml({
    tcp: { port: 9000, backends: [{ name: "a", endpoints: [{ address: "10.0.0.1", port: 1 }, { address: "10.0.0.2", port: 1 }] }] },
    udp: { port: 9001, backends: [{ name: "u", endpoints: [{ address: "10.0.0.3", port: 2 }] }] },
  });
  const desired = desiredState(datapathOf(yaml, ["127.0.0.9"]), { maglevSize: 251 });

  it("maps table indices to backend ids", () => {
    const ids = newIds(100, 100);
    const s = resolveIds(desired, ids, empty());
    const byAddr = new Map(s.backends.map((b) => [b.address, b.id]));
    const tcpId = ids.services.idOf("default/gw/tcp");
    assert.ok(tcpId);
    const table = s.maglev.get(tcpId);
    assert.ok(table);
    assert.deepEqual(new Set(table), new Set([byAddr.get("10.0.0.1"), byAddr.get("10.0.0.2")]));
  });

  it("after a restart, services take back the ids their frontends point at and backends theirs", () => {
    const first = resolveIds(desired, newIds(100, 100), empty());
    // A fresh allocator knows nothing but what the maps hold.
    const ids = newIds(100, 100);
    seedIds(ids, first);
    const again = resolveIds(desired, ids, first);
    assert.deepEqual(again.frontends, first.frontends);
    assert.deepEqual(again.backends, first.backends);
    assert.deepEqual([...again.maglev.keys()], [...first.maglev.keys()]);
  });

  it("fails clearly when the maps cannot hold that many backends", () => {
    assert.throws(() => resolveIds(desired, newIds(100, 2), empty()), /backend ids exhausted: all 2 are in use/);
  });
});
