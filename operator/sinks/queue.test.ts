import { test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { KeyedQueue } from "./queue.ts";

test("a burst for one key runs the first and then only the latest", async () => {
  const seen: string[] = [];
  const q = new KeyedQueue<number>(4, async (key, v) => {
    seen.push(`${key}=${v}`);
    await sleep(20);
  });
  q.push("a", 1);
  for (let i = 2; i <= 50; i++) q.push("a", i);
  await q.idle();
  assert.deepEqual(seen, ["a=1", "a=50"]);
});

test("concurrency is bounded and one key never runs twice at once", async () => {
  let running = 0;
  let peak = 0;
  const perKey = new Map<string, number>();
  const q = new KeyedQueue<number>(3, async (key) => {
    running++;
    peak = Math.max(peak, running);
    perKey.set(key, (perKey.get(key) ?? 0) + 1);
    assert.equal(perKey.get(key), 1, `key ${key} ran concurrently`);
    await sleep(5);
    perKey.set(key, (perKey.get(key) ?? 1) - 1);
    running--;
  });
  for (let round = 0; round < 3; round++) for (let i = 0; i < 10; i++) q.push(`k${i}`, round);
  await q.idle();
  assert.equal(peak, 3);
});

test("cancel drops waiting work; a throwing worker does not stop the queue", async () => {
  const seen: string[] = [];
  const errors: string[] = [];
  const q = new KeyedQueue<string>(1, async (key) => {
    seen.push(key);
    if (key === "boom") throw new Error("boom");
    await sleep(1);
  }, (key) => errors.push(key));
  q.push("boom", "");
  q.push("x", "");
  q.push("y", "");
  q.cancel("x");
  await q.idle();
  assert.deepEqual(seen, ["boom", "y"]);
  assert.deepEqual(errors, ["boom"]);
});

test("stop aborts running work and resolves idle", async () => {
  let aborted = false;
  const q = new KeyedQueue<number>(1, async (_k, _v, signal) => {
    await new Promise<void>((resolve) => signal.addEventListener("abort", () => {
      aborted = true;
      resolve();
    }));
  });
  q.push("a", 1);
  q.push("b", 1);
  const idle = q.idle();
  q.stop();
  await idle;
  assert.equal(aborted, true);
  q.push("c", 1);
  assert.equal(q.size, 0, "nothing is accepted after stop");
});
