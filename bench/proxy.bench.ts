// The L7 proxy benchmark: `sluice run` (one worker, as a child process serving a folder of
// manifests) against nginx and HAProxy (one worker each) on the same route and backend, then the
// control-plane figures only Sluice has: route propagation, errors while routes and certificates
// change under load, and memory at thousands of routes. One markdown table against the targets.
// Run: node_modules/.bin/node bench/proxy.bench.ts [--quick] [--seconds N] [--rounds N] [--only a,b]
//   parts: throughput, propagation, edits, rotation, memory
// Needs nginx, haproxy and wrk (installed when run as root; see bench/l7/install.ts).
import { availableParallelism, cpus } from "node:os";
import { parseArgs } from "node:util";
import { makeCerts, send, type TestCert } from "../datapath/proxy/testkit.ts";
import { startBackend } from "./l7/backend.ts";
import { ensurePeers } from "./l7/install.ts";
import { measure, type Measured } from "./l7/load.ts";
import { startHaproxy, startNginx, startNodeHttp, type PeerOptions } from "./l7/peers.ts";
import { freePort, type Endpoint, type Server } from "./l7/proc.ts";
import { editsUnderLoad, measurePropagation, memoryWithRoutes, rotationUnderLoad, type Churn, type Memory } from "./l7/scenarios.ts";
import { baseManifests, httpRoute, rssMB, secretManifest, startSluice, type Sluice } from "./l7/sluice.ts";

const PARTS = ["throughput", "propagation", "edits", "rotation", "memory"] as const;
type Part = (typeof PARTS)[number];

const { values: flags } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    seconds: { type: "string" },
    rounds: { type: "string" },
    only: { type: "string" },
  },
});
const quick = flags.quick === true;
const cfg = {
  seconds: Number(flags.seconds ?? (quick ? 2 : 5)),
  rounds: Number(flags.rounds ?? (quick ? 1 : 3)),
  connections: [1, 16, 64],
  propagationRoutes: quick ? 20 : 100,
  // A user creating routes one by one, not a script: each measurement starts from a settled proxy.
  propagationGapMs: 50,
  changes: 20,
  changeIntervalMs: 200,
  memoryRoutes: quick ? 1000 : 5000,
  memoryNamespaces: 50,
};
const parts = new Set<Part>(flags.only ? (flags.only.split(",") as Part[]) : PARTS);
for (const p of parts) if (!PARTS.includes(p)) throw new Error(`unknown part ${p}; parts: ${PARTS.join(", ")}`);

const TARGETS = { rpsPerCpu: 1.0, p99: 1.5, propagationP50Ms: 10, rssMB: 150 };
const HOST = "bench.example";
const PREFIX = "/api";
const PATH = "/api/bench";
const PROXIES = ["Sluice", "nginx", "HAProxy"] as const;
/** What a proxy on node:http can reach at best (bench/l7/nodehttp.ts). */
const CEILING = "node:http";
type ProxyName = (typeof PROXIES)[number];

// ---- helpers ----

function median(xs: readonly number[]): number {
  const s = [...xs].filter(Number.isFinite).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] as number;
}

const int = (n: number): string => (Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "n/a");
const dec = (n: number, d = 2): string => (Number.isFinite(n) ? n.toFixed(d) : "n/a");
const times = (r: number): string => `${dec(r)}×`;

async function checkRoute(name: string, ep: Endpoint): Promise<void> {
  const cases: [string, string, number][] = [
    [HOST, PREFIX, 200], [HOST, PATH, 200], [`${HOST}:${ep.port}`, PATH, 200],
    [HOST, `${PREFIX}x`, 404], [HOST, "/", 404], ["other.example", PATH, 404],
  ];
  for (const [host, path, want] of cases) {
    const got = (await send({ address: ep.host, port: ep.port, host, path })).status;
    if (got !== want) throw new Error(`${name}: Host ${host} ${path} gave ${got}, want ${want}`);
  }
}

type Row = { measure: string; sluice: string; nginx?: string; haproxy?: string; target?: string; met?: boolean };
const rows: Row[] = [];
/** Sluice's requests per CPU-second at 16 connections with one route, to compare the many-routes figure with. */
let oneRoutePerCpu = Number.NaN;
const notes: string[] = [];

// ---- run ----

console.error(`proxy.bench: ${quick ? "quick" : "full"} run, parts: ${[...parts].join(", ")}`);
await ensurePeers();
const servers: Server[] = [];
let sluice: Sluice | undefined;
let memory: Memory | undefined;
const certs = makeCerts([
  { cn: HOST, sans: [`DNS:${HOST}`] },
  { cn: HOST, sans: [`DNS:${HOST}`] },
]).leaves as [TestCert, TestCert];

try {
  const backend = await startBackend();
  servers.push(backend);
  const upstream = { host: "127.0.0.1", port: backend.port };
  const s = await startSluice({
    "base.yaml": baseManifests({ backendPort: backend.port, tls: true }),
    "secret.yaml": secretManifest(certs[0]),
    "api.yaml": httpRoute({ name: "api", hostnames: [HOST], pathPrefix: PREFIX }),
  }, { workers: 1 });
  sluice = s;
  await checkRoute("Sluice", s.http);
  const idleRss = rssMB(s.pid);

  // 1. Throughput and latency.
  if (parts.has("throughput")) {
    const peer = async (start: (o: PeerOptions) => Promise<Server>): Promise<{ listen: Endpoint; pid: number }> => {
      const listen = { host: "127.0.0.1", port: await freePort() };
      const srv = await start({ listen, upstream, workers: 1, hostname: HOST, pathPrefix: PREFIX });
      servers.push(srv);
      return { listen, pid: srv.pid };
    };
    const targets: { name: ProxyName | typeof CEILING; listen: Endpoint; pid: number }[] = [
      { name: "Sluice", listen: s.http, pid: s.pid },
      { name: "nginx", ...await peer(startNginx) },
      { name: "HAProxy", ...await peer(startHaproxy) },
      { name: CEILING, ...await peer(startNodeHttp) },
    ];
    for (const t of targets.slice(1)) await checkRoute(t.name, t.listen);
    const wrk = (t: (typeof targets)[number], connections: number, durationSec: number) =>
      measure(t.name, [t.pid], { url: `http://${t.listen.host}:${t.listen.port}${PATH}`, host: HOST, connections, threads: 1, durationSec });
    // Warm-up at every connection count: Sluice's JIT (its first seconds under load have
    // compile pauses that a long-running proxy does not), every proxy's upstream pool.
    for (const t of targets) for (const c of cfg.connections) await wrk(t, c, quick ? 1 : 2);
    const runs = new Map<string, Measured[]>();
    const key = (name: string, c: number) => `${name}@${c}`;
    // Rounds interleave the proxies, so that a noisy neighbour on a shared VM hits them alike.
    for (let r = 0; r < cfg.rounds; r++) {
      for (const c of cfg.connections) {
        for (const t of targets) {
          const m = await wrk(t, c, cfg.seconds);
          runs.set(key(t.name, c), [...(runs.get(key(t.name, c)) ?? []), m]);
          console.error(`  round ${r + 1} ${t.name} c=${c}: ${int(m.rps)} rps, ${int(m.rpsPerCpuSec)} per CPU-s, p99 ${dec(m.p99Ms, 3)} ms`);
        }
      }
    }
    type Med = { rps: number; perCpu: number; perCpuMin: number; perCpuMax: number; cores: number; p50: number; p99: number; errors: number; non2xx: number };
    const med = (name: string, c: number): Med => {
      const rs = runs.get(key(name, c)) ?? [];
      const eff = rs.map((x) => x.rpsPerCpuSec);
      return {
        rps: median(rs.map((x) => x.rps)),
        perCpu: median(eff),
        perCpuMin: Math.min(...eff),
        perCpuMax: Math.max(...eff),
        cores: median(rs.map((x) => x.cpuSec / cfg.seconds)),
        p50: median(rs.map((x) => x.p50Ms)),
        p99: median(rs.map((x) => x.p99Ms)),
        errors: rs.reduce((a, x) => a + x.errors, 0),
        non2xx: rs.reduce((a, x) => a + x.non2xx, 0),
      };
    };
    console.log(`\n### Throughput detail (${cfg.seconds} s wrk × ${cfg.rounds} round(s), 1 wrk thread, 1 proxy worker each; medians)\n`);
    console.log("| Proxy | Connections | rps | rps per CPU-second (min–max) | proxy cores busy | p50 ms | p99 ms | socket errors | non-2xx |");
    console.log("|---|---|---|---|---|---|---|---|---|");
    for (const c of cfg.connections) {
      for (const t of targets) {
        const m = med(t.name, c);
        console.log(`| ${t.name} | ${c} | ${int(m.rps)} | ${int(m.perCpu)} (${int(m.perCpuMin)}–${int(m.perCpuMax)}) | ${dec(m.cores)} | ${dec(m.p50, 3)} | ${dec(m.p99, 3)} | ${m.errors} | ${m.non2xx} |`);
      }
    }
    for (const c of cfg.connections) {
      const [sl, ng, ha] = PROXIES.map((p) => med(p, c)) as [Med, Med, Med];
      if (c === 16) oneRoutePerCpu = sl.perCpu;
      const conn = `${c} connection${c === 1 ? "" : "s"}`;
      rows.push({ measure: `Requests/s, ${conn}`, sluice: int(sl.rps), nginx: int(ng.rps), haproxy: int(ha.rps) });
      const eff = sl.perCpu / ng.perCpu;
      rows.push({
        measure: `Requests per proxy CPU-second, ${conn}`,
        sluice: `${int(sl.perCpu)} (${times(eff)} nginx)`, nginx: int(ng.perCpu), haproxy: `${int(ha.perCpu)} (${times(ha.perCpu / ng.perCpu)} nginx)`,
        target: `≥ ${dec(TARGETS.rpsPerCpu, 1)}× nginx`, met: eff >= TARGETS.rpsPerCpu,
      });
      rows.push({ measure: `Proxy CPU µs per request, ${conn}`, sluice: dec(1e6 / sl.perCpu, 1), nginx: dec(1e6 / ng.perCpu, 1), haproxy: dec(1e6 / ha.perCpu, 1) });
      const ceiling = med(CEILING, c);
      rows.push({ measure: `Ceiling: node:http answering the route itself, no forwarding, requests per CPU-second, ${conn}`, sluice: `${int(ceiling.perCpu)} (${times(ceiling.perCpu / ng.perCpu)} nginx)` });
      rows.push({ measure: `p50 latency ms, ${conn}`, sluice: `${dec(sl.p50, 3)} (${times(sl.p50 / ng.p50)} nginx)`, nginx: dec(ng.p50, 3), haproxy: dec(ha.p50, 3) });
      const lat = sl.p99 / ng.p99;
      rows.push({
        measure: `p99 latency ms, ${conn}`,
        sluice: `${dec(sl.p99, 3)} (${times(lat)} nginx)`, nginx: dec(ng.p99, 3), haproxy: `${dec(ha.p99, 3)} (${times(ha.p99 / ng.p99)} nginx)`,
        target: `≤ ${dec(TARGETS.p99, 1)}× nginx`, met: lat <= TARGETS.p99,
      });
      rows.push({ measure: `Ceiling: node:http answering the route itself, p99 latency ms, ${conn}`, sluice: `${dec(ceiling.p99, 3)} (${times(ceiling.p99 / ng.p99)} nginx)` });
      const failed = sl.errors + sl.non2xx + ng.errors + ng.non2xx + ha.errors + ha.non2xx;
      if (failed > 0) notes.push(`wrk saw errors or non-2xx at ${conn} (Sluice ${sl.errors}/${sl.non2xx}, nginx ${ng.errors}/${ng.non2xx}, HAProxy ${ha.errors}/${ha.non2xx}): see the detail table.`);
    }
    for (const t of targets.slice(1)) {
      const i = servers.findIndex((x) => x.pid === t.pid);
      if (i >= 0) await servers.splice(i, 1)[0]?.stop();
    }
  }

  // 2. Propagation of new routes.
  if (parts.has("propagation")) {
    console.error(`propagation: ${cfg.propagationRoutes} new HTTPRoutes`);
    const prop = await measurePropagation(s, { count: cfg.propagationRoutes, host: HOST, tag: "p", gapMs: cfg.propagationGapMs });
    const p50 = percentile(prop.ms, 50);
    rows.push({ measure: `Route propagation p50 ms (${cfg.propagationRoutes} new HTTPRoutes, rename → first 200)`, sluice: dec(p50, 1), target: `≤ ${TARGETS.propagationP50Ms} ms`, met: p50 <= TARGETS.propagationP50Ms });
    rows.push({ measure: "Route propagation p99 / max ms", sluice: `${dec(percentile(prop.ms, 99), 1)} / ${dec(Math.max(...prop.ms), 1)}` });
    // The folder source re-reads every file on each change: later routes (more files) may take longer.
    const fifth = Math.max(1, Math.floor(prop.ms.length / 5));
    rows.push({ measure: `Route propagation p50 ms, first ${fifth} / last ${fifth} routes`, sluice: `${dec(percentile(prop.ms.slice(0, fifth), 50), 1)} / ${dec(percentile(prop.ms.slice(-fifth), 50), 1)}` });
    rows.push({
      measure: "Errors while polling new routes (not 200/404, socket errors; timeouts)",
      sluice: `${prop.errors}; ${prop.timeouts} timed out`, target: "0", met: prop.errors === 0 && prop.timeouts === 0,
    });
    if (prop.kinds.size) notes.push(`propagation errors: ${[...prop.kinds].map(([k, n]) => `${n}× ${k}`).join("; ")}`);
  }

  // 3. Errors while the route and the certificate change under load.
  const churnRow = (what: string, c: Churn): void => {
    const bad = c.tally.non2xx + c.tally.errors;
    rows.push({
      measure: `${what}: non-2xx + socket errors`,
      sluice: `${bad} of ${int(c.tally.requests)} (${c.distinct} of ${c.versions} versions seen by clients${c.lastApplied ? ", last one served at the end" : ", LAST ONE NOT SERVED"})`,
      target: "0", met: bad === 0 && c.lastApplied,
    });
    if (c.tally.kinds.size) notes.push(`${what}: ${[...c.tally.kinds].map(([k, n]) => `${n}× ${k}`).join("; ")}`);
  };
  if (parts.has("edits")) {
    console.error(`edits: ${cfg.changes} route edits under load`);
    const c = await editsUnderLoad(s, { changes: cfg.changes, intervalMs: cfg.changeIntervalMs, host: HOST, keepAlive: 8, fresh: 2 });
    churnRow(`${cfg.changes} route edits ${cfg.changeIntervalMs} ms apart, 8 keep-alive + 2 new-connection loops`, c);
  }
  if (parts.has("rotation")) {
    console.error(`rotation: ${cfg.changes} certificate swaps under HTTPS load`);
    const c = await rotationUnderLoad(s, certs, { changes: cfg.changes, intervalMs: cfg.changeIntervalMs, host: HOST, keepAlive: 4, fresh: 4 });
    churnRow(`${cfg.changes} certificate Secret swaps ${cfg.changeIntervalMs} ms apart, HTTPS 4 keep-alive + 4 new-connection loops`, c);
  }
  rows.push({ measure: "RSS MB, 1 route (after the runs above)", sluice: `${dec(rssMB(s.pid), 1)} (${dec(idleRss, 1)} at start)` });
  await s.stop();
  sluice = undefined;

  // 4. Memory at many routes, in a fresh process.
  if (parts.has("memory")) {
    console.error(`memory: ${cfg.memoryRoutes} HTTPRoutes over ${cfg.memoryNamespaces} namespaces`);
    memory = await memoryWithRoutes({ routes: cfg.memoryRoutes, namespaces: cfg.memoryNamespaces, backendPort: backend.port });
    rows.push({ measure: `RSS MB, ${int(memory.routes)} HTTPRoutes served, settled (${dec(memory.settledAfterS, 1)} s after the last route was served)`, sluice: dec(memory.rssMB, 1), target: `≤ ${TARGETS.rssMB} MB`, met: memory.rssMB <= TARGETS.rssMB });
    rows.push({ measure: `RSS MB right after the last route was served; peak while loading; start → last route served`, sluice: `${dec(memory.servedRssMB, 1)}; ${dec(memory.peakMB, 1)}; ${dec(memory.servedAfterMs / 1000, 1)} s` });
    // How per-request routing cost grows with the table: the last route's host is the last virtual host.
    const last = { url: `http://${memory.http.host}:${memory.http.port}${memory.last.path}`, host: memory.last.host, connections: 16, threads: 1 };
    await measure("Sluice", [memory.pid], { ...last, durationSec: quick ? 1 : 2 }); // warm-up
    const m = await measure("Sluice", [memory.pid], { ...last, durationSec: cfg.seconds });
    rows.push({ measure: `Requests per CPU-second at ${int(memory.routes)} routes (last route's host, 16 connections)`, sluice: `${int(m.rpsPerCpuSec)} (${times(m.rpsPerCpuSec / oneRoutePerCpu)} the 1-route figure); p99 ${dec(m.p99Ms, 3)} ms` });
    await memory.stop();
    memory = undefined;
  }
} finally {
  await sluice?.stop();
  await memory?.stop();
  for (const srv of servers.reverse()) await srv.stop();
}

const cpu = cpus()[0]?.model ?? "unknown CPU";
console.log(`\n### Sluice vs nginx vs HAProxy (${quick ? "quick" : "full"} run; ${availableParallelism()} cores, ${cpu}; Node ${process.version})\n`);
console.log("| Measure | Sluice | nginx | HAProxy | Target | Met |");
console.log("|---|---|---|---|---|---|");
for (const r of rows) {
  const met = r.met === undefined ? "" : r.met ? "yes" : "**no**";
  console.log(`| ${r.measure} | ${r.sluice} | ${r.nginx ?? ""} | ${r.haproxy ?? ""} | ${r.target ?? ""} | ${met} |`);
}
const scored = rows.filter((r) => r.met !== undefined);
console.log(`\nTargets met: ${scored.filter((r) => r.met).length} of ${scored.length}.`);
for (const n of notes) console.log(`- ${n}`);
