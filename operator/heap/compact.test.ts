import assert from "node:assert/strict";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { heapCompactor, type Compacted } from "./compact.ts";

test("heapCompactor compacts once changes have been quiet, and only when the heap grew enough", async () => {
  let heap = 100;
  const calls: string[] = [];
  const done: Compacted[] = [];
  const c = heapCompactor({
    quietMs: 30, growthBytes: 50, heapTotal: () => heap,
    gc: (o) => {
      calls.push(`${o?.type}/${o?.flavor}`);
      heap = 110;
    },
    onCompacted: (r) => done.push(r),
  });
  heap = 140; // grew 40: not enough
  c.changed();
  await sleep(60);
  assert.deepEqual(calls, []);
  heap = 200;
  c.changed();
  await sleep(10);
  c.changed(); // still changing: the quiet time starts again
  await sleep(10);
  assert.deepEqual(calls, [], "not while changes keep coming");
  await sleep(60);
  assert.deepEqual(calls, ["major/last-resort"]);
  assert.deepEqual(done.map((d) => [d.beforeBytes, d.afterBytes]), [[200, 110]]);
  heap = 150; // 40 above the new baseline
  c.changed();
  await sleep(60);
  assert.equal(calls.length, 1);
  c.stop();
});

test("heapCompactor: stop() cancels a pending compaction", async () => {
  let calls = 0;
  let heap = 0;
  const c = heapCompactor({ quietMs: 20, growthBytes: 1, heapTotal: () => heap, gc: () => void calls++ });
  heap = 10;
  c.changed();
  c.stop();
  await sleep(50);
  assert.equal(calls, 0);
});

test("heapCompactor returns V8's grown heap (the young generation included) with the real collector", async () => {
  const done: Compacted[] = [];
  // Created before the load, as a host does at start: the growth is measured from here.
  const c = heapCompactor({ quietMs: 10, growthBytes: 32 * 2 ** 20, onCompacted: (r) => done.push(r) });
  const { heapTotal: start } = process.memoryUsage();
  // Grow the heap the way loading does: lots of small objects that survive for a while.
  let keep: object[][] = [];
  for (let i = 0; i < 40; i++) keep.push(Array.from({ length: 25_000 }, (_, j) => ({ i, j, s: `x${j}` })));
  const grown = process.memoryUsage().heapTotal;
  assert.ok(grown - start > 64 * 2 ** 20, `the heap grew ${((grown - start) / 2 ** 20).toFixed(0)} MiB`);
  keep = [];
  assert.equal(keep.length, 0);
  c.changed();
  for (let i = 0; i < 100 && done.length === 0; i++) await sleep(20);
  c.stop();
  assert.equal(done.length, 1, "compacted");
  const d = done[0] as Compacted;
  assert.ok(d.beforeBytes - d.afterBytes > 64 * 2 ** 20, `returned ${((d.beforeBytes - d.afterBytes) / 2 ** 20).toFixed(0)} MiB (${(d.beforeBytes / 2 ** 20).toFixed(0)} → ${(d.afterBytes / 2 ** 20).toFixed(0)})`);
});
