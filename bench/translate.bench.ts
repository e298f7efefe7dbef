// Translator benchmark: N HTTPRoutes over 100 Gateways. Prints full translation time, the time to
// re-translate after one route changes (a warm Translator), and the heap the result holds, next to
// the targets from issue #2. Run: node --expose-gc bench/translate.bench.ts [routes...]
import { performance } from "node:perf_hooks";
import type { HTTPRoute } from "../operator/api/objects.ts";
import { snapshotOf, type Snapshot } from "../operator/store/snapshot.ts";
import { httpRoute, syntheticNamespace, syntheticWorld, type WorldShape } from "../operator/translate/synthetic.ts";
import { Translator } from "../operator/translate/translate.ts";

const gc = (globalThis as { gc?: () => void }).gc;
const counts = process.argv.slice(2).map(Number).filter((n) => n > 0);
const TARGETS = { fullMs: 500, changeMs: 20, heapMB: 300 };
const opts = { addressing: { mode: "static" as const, addresses: ["192.0.2.1"] } };

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

function heapMB(): number {
  gc?.();
  gc?.();
  return process.memoryUsage().heapUsed / 2 ** 20;
}

function run(routes: number) {
  const shape: WorldShape = { gateways: 100, httpRoutes: routes, services: Math.max(50, routes / 10), tcpRoutes: 100 };
  const ns = syntheticNamespace(shape);
  const objects = syntheticWorld(shape);
  const snapshot = snapshotOf(objects);

  const full: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t = new Translator(opts);
    const t0 = performance.now();
    t.translate(snapshot);
    full.push(performance.now() - t0);
  }

  const before = heapMB();
  const translator = new Translator(opts);
  let result = translator.translate(snapshot);
  const held = heapMB() - before;

  const change: number[] = [];
  let s: Snapshot = snapshot;
  for (let i = 0; i < 30; i++) {
    const r = (i * 7919) % routes;
    const route = httpRoute(r, shape, ns, i + 1) as HTTPRoute;
    const coll = new Map(s.objects.HTTPRoute);
    coll.set(`${route.metadata.namespace}/${route.metadata.name}`, route);
    s = { version: s.version + 1, acks: s.acks, objects: { ...s.objects, HTTPRoute: coll } };
    const t0 = performance.now();
    result = translator.translate(s);
    change.push(performance.now() - t0);
  }
  const statusCount = result.statuses.size;
  return { routes, fullMs: median(full), changeMs: median(change), changeP90: [...change].sort((a, b) => a - b)[Math.floor(change.length * 0.9)] as number, heapMB: held, statusCount };
}

const rows = (counts.length ? counts : [1000, 10000]).map(run);
const fmt = (n: number) => n.toFixed(1);
console.log("| HTTPRoutes (100 Gateways) | full translation ms | one-route change ms (median / p90) | heap held MB | statuses |");
console.log("|---|---|---|---|---|");
for (const r of rows) console.log(`| ${r.routes} | ${fmt(r.fullMs)} | ${fmt(r.changeMs)} / ${fmt(r.changeP90)} | ${fmt(r.heapMB)} | ${r.statusCount} |`);
const last = rows[rows.length - 1];
if (last) {
  console.log(`\nAt ${last.routes} routes vs targets: full ${fmt(last.fullMs)} ms = ${(last.fullMs / TARGETS.fullMs).toFixed(2)}× the ${TARGETS.fullMs} ms budget; ` +
    `one-route change ${fmt(last.changeMs)} ms = ${(last.changeMs / TARGETS.changeMs).toFixed(2)}× the ${TARGETS.changeMs} ms budget; ` +
    `heap ${fmt(last.heapMB)} MB = ${(last.heapMB / TARGETS.heapMB).toFixed(2)}× the ${TARGETS.heapMB} MB budget.`);
}
if (!gc) console.log("(run with --expose-gc for a precise heap figure)");
