// Unprivileged (needs clang and libbpf-dev, skips without): the build and its stamp.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { buildBpf, buildUnavailable } from "./build.ts";

const skip = buildUnavailable();
if (skip) console.warn(`SKIPPING eBPF build test: ${skip}`);

test("a missing compiler is named", () => {
  assert.match(buildUnavailable("/nonexistent/clang") ?? "", /\/nonexistent\/clang not found/);
});

test("builds the object and the co-process once; the stamp skips unchanged sources", { skip }, async () => {
  const first = await buildBpf();
  assert.ok(existsSync(first.object) && existsSync(first.daemon));
  const second = await buildBpf();
  assert.equal(second.built, false);
  assert.equal(second.object, first.object);
});
