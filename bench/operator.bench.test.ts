// Smoke test of the operator benchmark: a small run must complete, every route must get its
// status, and the writes must stay near one per route (coalescing works), so the harness and the
// figure it prints cannot rot. No timing is asserted.
import { test } from "node:test";
import assert from "node:assert/strict";
import { runOperatorBench } from "./operator/run.ts";

test("operator benchmark: 300 HTTPRoutes over 3 Gateways all get their status, with about one write per route", { timeout: 120_000 }, async () => {
  const r = await runOperatorBench({ routes: 300, gateways: 3, namespaces: 5, timeoutMs: 90_000 });
  assert.equal(r.routes, 300);
  assert.ok(r.statusWrites.routes >= 300, `every route is written at least once (${r.statusWrites.routes})`);
  assert.ok(r.statusWrites.routes <= 600, `no more than two writes per route on average (${r.statusWrites.routes})`);
  // Nobody else writes these objects: a conflict could only be the operator racing itself.
  assert.equal(r.statusWrites.conflicts, 0, `409s on ${r.statusWrites.conflictPaths.slice(0, 3).join(", ")}`);
  assert.ok(r.rssMB > 0);
});
