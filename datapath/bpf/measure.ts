// Measures how fast map writes reach the kernel, for the choice recorded in docs/datapath.md:
// the libbpf co-process (datapath.ts) against bpftool batch mode and one bpftool per update.
// Workload: 10,000 backend upserts plus one 16381-entry Maglev table swapped in.
// Run as root: node_modules/.bin/node datapath/bpf/measure.ts
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { writeFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { datapathUnavailable, openDatapath, removePinned } from "./datapath.ts";
import { encodeBackendValue, encodeU32 } from "./codec.ts";
import type { BackendEntry, MapOp } from "./state.ts";

const run = promisify(execFile);
const N = 10_000;
const M = 16381;

function backends(round: number): BackendEntry[] {
  return Array.from({ length: N }, (_, i) => ({
    id: i + 1,
    address: `10.${(i >> 8) & 255}.${i & 255}.${1 + (round % 200)}`,
    port: 8080 + round,
    protocol: "TCP" as const,
  }));
}

function table(): Uint32Array {
  return Uint32Array.from({ length: M }, (_, i) => 1 + (i % N));
}

const bytes = (b: Buffer): string => [...b].join(" ");

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

async function main(): Promise<void> {
  const why = datapathUnavailable();
  if (why) {
    console.error(`measure: ${why}`);
    process.exitCode = 1;
    return;
  }
  const pinDir = `/sys/fs/bpf/sluice-measure-${randomBytes(3).toString("hex")}`;
  const dp = await openDatapath({ pinDir, maglevSize: M, maxBackends: 65536 });
  const results: [string, number][] = [];
  try {
    // 1. The co-process: one request, one batch syscall for the backends, one mmap'd table.
    const co: number[] = [];
    for (let round = 0; round < 5; round++) {
      const ops: MapOp[] = backends(round).map((backend) => ({ op: "backend-upsert", backend }));
      ops.push({ op: "maglev-upsert", serviceId: 1, table: table() });
      const t0 = performance.now();
      await dp.apply(ops);
      co.push(performance.now() - t0);
    }
    results.push(["libbpf co-process (batch update + mmap'd inner map), median of 5", median(co)]);

    const sw: number[] = [];
    for (let round = 0; round < 5; round++) {
      const t0 = performance.now();
      await dp.apply([{ op: "maglev-upsert", serviceId: 1, table: table() }]);
      sw.push(performance.now() - t0);
    }
    results.push(["  of which one Maglev table swap alone, median of 5", median(sw)]);

    const del: number[] = [];
    for (let round = 0; round < 3; round++) {
      const t0 = performance.now();
      await dp.apply(backends(round).map((b): MapOp => ({ op: "backend-delete", id: b.id })));
      del.push(performance.now() - t0);
      await dp.apply(backends(round).map((backend): MapOp => ({ op: "backend-upsert", backend })));
    }
    results.push(["  10,000 backend deletes (batch delete), median of 3", median(del)]);

    // 2. bpftool batch mode: one bpftool process reading a command file.
    const file = join(tmpdir(), `sluice-measure-${process.pid}.batch`);
    const inner = join(pinDir, "measure_inner");
    const lines: string[] = [];
    for (const b of backends(7)) {
      lines.push(`map update pinned ${pinDir}/sl_lb4_be key ${bytes(encodeU32(b.id))} value ${bytes(encodeBackendValue(b))}`);
    }
    lines.push(`map create ${inner} type array key 4 value 4 entries ${M} name measure_inner flags 1024`);
    const t = table();
    for (let i = 0; i < M; i++) lines.push(`map update pinned ${inner} key ${bytes(encodeU32(i))} value ${bytes(encodeU32(t[i] ?? 0))}`);
    lines.push(`map update pinned ${pinDir}/sl_lb4_maglev key 1 0 0 0 value pinned ${inner}`);
    await writeFile(file, lines.join("\n") + "\n");
    const bt: number[] = [];
    for (let round = 0; round < 3; round++) {
      await rm(inner, { force: true });
      const t0 = performance.now();
      await run("bpftool", ["batch", "file", file], { maxBuffer: 64 << 20 });
      bt.push(performance.now() - t0);
    }
    await rm(inner, { force: true });
    await rm(file, { force: true });
    results.push([`bpftool batch file (${lines.length} commands), median of 3`, median(bt)]);

    // 3. One bpftool process per update, extrapolated from 200 updates.
    const t0 = performance.now();
    const few = backends(9).slice(0, 200);
    for (const b of few) {
      await run("bpftool", ["map", "update", "pinned", `${pinDir}/sl_lb4_be`, "key", ...bytes(encodeU32(b.id)).split(" "), "value", ...bytes(encodeBackendValue(b)).split(" ")]);
    }
    const per = (performance.now() - t0) / few.length;
    results.push([`one bpftool per update (${per.toFixed(2)} ms each), extrapolated to ${N + M + 2} updates`, per * (N + M + 2)]);
  } finally {
    await dp.close();
    await removePinned(pinDir);
  }
  console.log(`10,000 backend upserts + one ${M}-entry Maglev table:`);
  for (const [what, ms] of results) console.log(`  ${ms.toFixed(1).padStart(10)} ms  ${what}`);
}

await main();
