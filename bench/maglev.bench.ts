// Median Maglev table build time per table size and backend count.
// Run: node_modules/.bin/node bench/maglev.bench.ts
import { buildMaglevTable, maglevHashKey } from "../operator/translate/maglev.ts";
import type { MaglevBackend } from "../operator/translate/maglev.ts";

const RUNS = 15;

function backendsOf(n: number, weight: (i: number) => number): MaglevBackend[] {
  return Array.from({ length: n }, (_, i) => ({
    hashKey: maglevHashKey(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, 8080, "TCP"),
    weight: weight(i),
  }));
}

function medianMs(backends: readonly MaglevBackend[], m: number): number {
  buildMaglevTable(backends, m); // warm-up
  const times: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    const t0 = performance.now();
    buildMaglevTable(backends, m);
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return times[RUNS >> 1] ?? NaN;
}

// Weight 1 takes Cilium's unweighted path; 100 is Cilium's default backend weight (weighted path);
// "mixed" cycles 1..300 to exercise turn skipping.
const weightings: [string, (i: number) => number][] = [
  ["w=1", () => 1],
  ["w=100", () => 100],
  ["mixed", (i) => 1 + ((i * 37) % 300)],
];

const rows: Record<string, string>[] = [];
for (const m of [16381, 65521]) {
  for (const n of [10, 100, 1000]) {
    const row: Record<string, string> = { M: String(m), N: String(n) };
    for (const [label, w] of weightings) row[`${label} ms`] = medianMs(backendsOf(n, w), m).toFixed(2);
    rows.push(row);
  }
}
console.log(`median of ${RUNS} builds`);
console.table(rows);
