// FirstById against its definition: per id, the item of the first Gateway (in key order) that
// has one, sorted by id; updated from random per-Gateway changes.
import assert from "node:assert/strict";
import { test } from "node:test";
import { FirstById } from "./firstbyid.ts";

interface Item { id: string; from: string; n: number }

function rng(seed: number): () => number {
  let x = seed >>> 0;
  return () => ((x = (Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0) / 2 ** 32);
}

function reference(byGateway: ReadonlyMap<string, readonly Item[]>): Item[] {
  const out = new Map<string, Item>();
  for (const key of [...byGateway.keys()].sort()) for (const item of byGateway.get(key) ?? []) if (!out.has(item.id)) out.set(item.id, item);
  return [...out.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
}

test("FirstById equals the first-Gateway-wins merge after random changes", () => {
  for (const seed of [1, 2, 3]) {
    const r = rng(seed);
    const merged = new FirstById<Item>();
    const state = new Map<string, Item[]>();
    let n = 0;
    // Items differ per Gateway (field `from`), so the test sees which Gateway's item won.
    const items = (gw: string) => Array.from({ length: Math.floor(r() * 6) }, () => ({ id: `c${Math.floor(r() * 12)}`, from: gw, n: n++ }));
    for (let step = 0; step < 300; step++) {
      const changes: { key: string; before: Item[]; after: Item[] }[] = [];
      for (let k = r() < 0.8 ? 1 : 3; k > 0; k--) {
        const gw = `ns/gw-${Math.floor(r() * 6)}`;
        if (changes.some((c) => c.key === gw)) continue;
        const before = state.get(gw) ?? [];
        const after = r() < 0.2 ? [] : items(gw);
        if (after.length) state.set(gw, after);
        else state.delete(gw);
        changes.push({ key: gw, before, after });
      }
      assert.deepEqual(merged.update(changes), reference(state), `seed ${seed}, step ${step}`);
    }
  }
});
