// The L4 benchmark: new TCP connections per second and throughput through a frontend VIP to a
// backend, via Sluice's eBPF datapath, iptables DNAT as kube-proxy writes it (nf_tables and legacy
// backends) and IPVS, at 10, 1,000 and 10,000 services, all in the same topology and the same run;
// then the time to write 10,000 backend changes (map layer, agent) and Maglev build times.
// One markdown table against the targets of issue #4.
// Run (as root): node_modules/.bin/node bench/l4.bench.ts [--quick] [--seconds N] [--rounds N]
//   [--services 10,1000,10000] [--connections N] [--only conn,changes,maglev]
// Needs iproute2, iptables, iperf3, wrk and nginx (scripts/setup.sh installs them).
//
// Method. Each (datapath, service count) cell gets a fresh topology (bench/l4/topology.ts: client
// ns → node ns → backend ns), so no conntrack entry, TIME_WAIT socket or port reuse carries over
// from one cell to the next. The measured service is the LAST of the N (its rules are at the end
// of KUBE-SERVICES: the linear walk's worst case, what a Service created after the others gets).
// New connections: wrk, one thread, "Connection: close" to nginx answering 204 without keep-alive.
// Throughput: one iperf3 stream. Rounds interleave the datapaths, so a noisy neighbour on a shared
// machine hits them alike; "Direct" (the backend's own address, no translation) runs in every
// round as the ceiling and the yardstick for "flat in N". The eBPF programs are attached to the
// node's client-facing interface only (DNAT on ingress, reverse NAT on egress), as on an uplink.
// A full run takes about 15 minutes on 2 cores, 2 of them writing 10,000 services into the eBPF
// maps; --quick (10 and 100 services, 1 s per figure, one round) takes well under a minute.
import { availableParallelism, cpus, release } from "node:os";
import { parseArgs } from "node:util";
import { agentChanges, loadAgent, mapLayerChanges, maglevBuildMs, type AgentChanges, type MapLayerChanges } from "./l4/changes.ts";
import { loadDatapath, openBenchDatapath, serviceOps, type BenchDatapath } from "./l4/ebpf.ts";
import { installIptables, iptablesUnavailable, IPTABLES_VARIANTS, natRuleCount, type IptablesVariant } from "./l4/iptables.ts";
import { installIpvs, ipvsUnavailable } from "./l4/ipvs.ts";
import { connRate, probeHttp, throughput, type ConnRate, type Throughput } from "./l4/load.ts";
import { measuredService, servicesFor, type Service } from "./l4/services.ts";
import { run, withTimeout } from "./l4/sh.ts";
import { ADDR, createTopology, HTTP_PORT, IPERF_PORT, NODE_IF, startServers, type Topology } from "./l4/topology.ts";

const PARTS = ["conn", "changes", "maglev"] as const;
type Part = (typeof PARTS)[number];

const { values: flags } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    seconds: { type: "string" },
    rounds: { type: "string" },
    services: { type: "string" },
    connections: { type: "string" },
    only: { type: "string" },
  },
});
const quick = flags.quick === true;
function positiveInt(name: string, v: string | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got ${JSON.stringify(v)}`);
  return n;
}
const cfg = {
  seconds: positiveInt("seconds", flags.seconds, quick ? 1 : 5),
  rounds: positiveInt("rounds", flags.rounds, quick ? 1 : 3),
  connections: positiveInt("connections", flags.connections, 32),
  services: (flags.services ?? (quick ? "10,100" : "10,1000,10000")).split(",").map((s) => positiveInt("services", s, 1)),
  warmupSec: quick ? 0 : 1,
  iperfSec: quick ? 1 : 3,
  changes: 10_000,
  // One inner Maglev map per service: 10,000 services × 251 slots × 4 bytes = 10 MB.
  maglevSize: 251,
  maglevRuns: quick ? 3 : 15,
};
const parts = new Set<Part>(flags.only ? (flags.only.split(",") as Part[]) : PARTS);
for (const p of parts) if (!PARTS.includes(p)) throw new Error(`unknown part ${p}; parts: ${PARTS.join(", ")}`);

const TARGETS = { vsIptables: 1.5, flat: 0.9, changesSec: 1 };

// ---- helpers ----

function median(xs: readonly number[]): number {
  const s = [...xs].filter(Number.isFinite).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}
const int = (n: number): string => (Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "n/a");
const dec = (n: number, d = 2): string => (Number.isFinite(n) ? n.toFixed(d) : "n/a");
const ms = (sec: number): string => (Number.isFinite(sec) ? `${(sec * 1000).toFixed(sec < 0.01 ? 2 : 0)} ms` : "n/a");
const errText = (err: unknown): string => (err instanceof Error ? err.message : String(err)).split("\n")[0]?.slice(0, 200) ?? "";

// ---- the datapaths ----

type PathId = "direct" | "ebpf" | "nft" | "legacy" | "ipvs";
type Installed = { installSec: number; teardown(): Promise<void> };
type Path = {
  id: PathId;
  label: string;
  /** Set when the path cannot run here: printed instead of figures. */
  unavailable?: string;
  /** Where the client sends the measured service's traffic. */
  host(s: Service): string;
  install(topo: Topology, services: Service[]): Promise<Installed>;
};

const iptablesPath = (id: PathId, v: IptablesVariant): Path => ({
  id,
  label: v.name,
  host: (s) => s.vip,
  async install(topo, services) {
    const installSec = await installIptables(v, topo.node, services);
    const want = services.reduce((a, s) => a + 4 * s.ports.length, 0) + 8;
    const got = await natRuleCount(v, topo.node);
    if (got !== want) throw new Error(`${v.name}: ${got} nat rules installed, expected ${want}`);
    return { installSec, teardown: async () => undefined }; // the namespace takes them along
  },
});

const PATHS: Path[] = [
  // The ceiling: the backend's own address, routed by the node, no VIP, no translation, no conntrack.
  { id: "direct", label: "Direct (routed, no VIP)", host: () => ADDR.backend, install: async () => ({ installSec: 0, teardown: async () => undefined }) },
  {
    id: "ebpf",
    label: "Sluice eBPF",
    host: (s) => s.vip,
    async install(topo, services) {
      // The maps do not depend on the namespaces: programmed once per service count and kept
      // across rounds (10,000 services take a while to write); only the attachment is per topology.
      const prog = await ebpfFor(services);
      const attached: string[] = [];
      const detach = async () => {
        for (const ifname of attached) await withTimeout(prog.dp.detach(ifname, topo.node), 30_000, `detach ${ifname}`).catch(() => undefined);
      };
      try {
        // The client-facing interface only, as on a node's uplink: ingress does the frontend
        // lookup and DNAT, egress the reverse NAT of the replies the node routes back to the client.
        for (const ifname of [NODE_IF.toClient]) {
          await withTimeout(prog.dp.attach(ifname, topo.node), 30_000, `attach ${ifname}`);
          attached.push(ifname);
        }
      } catch (err) {
        await detach();
        throw err;
      }
      return { installSec: prog.installSec, teardown: detach };
    },
  },
  iptablesPath("nft", IPTABLES_VARIANTS[0] as IptablesVariant),
  iptablesPath("legacy", IPTABLES_VARIANTS[1] as IptablesVariant),
  {
    id: "ipvs",
    label: "IPVS",
    host: (s) => s.vip,
    async install(topo, services) {
      return { installSec: await installIpvs(topo.node, services), teardown: async () => undefined };
    },
  },
];
const pathOf = (id: PathId): Path => PATHS.find((p) => p.id === id) as Path;

/** Fills in `unavailable` for every path, probing in a throwaway topology. */
async function detect(): Promise<void> {
  const dp = await loadDatapath();
  if (typeof dp === "string") pathOf("ebpf").unavailable = dp;
  const topo = await createTopology();
  try {
    for (const [id, v] of [["nft", IPTABLES_VARIANTS[0]], ["legacy", IPTABLES_VARIANTS[1]]] as const) {
      const why = await iptablesUnavailable(v as IptablesVariant, topo.node);
      if (why) pathOf(id).unavailable = why;
    }
    const why = await ipvsUnavailable(topo.node);
    if (why) pathOf("ipvs").unavailable = why;
  } finally {
    await topo.destroy();
  }
}

// ---- cells ----

type Programmed = { n: number; dp: BenchDatapath; installSec: number; close(): Promise<void> };
let programmed: Programmed | undefined;

async function ebpfFor(services: Service[]): Promise<Programmed> {
  if (programmed?.n === services.length) return programmed;
  await closeEbpf();
  const ports = services.reduce((a, s) => a + s.ports.length, 0);
  const { dp, close } = await withTimeout(openBenchDatapath({ maglevSize: cfg.maglevSize, maxServices: ports + 16, maxBackends: ports + 16 }), 120_000, "opening the eBPF datapath");
  try {
    const ops = serviceOps(services, cfg.maglevSize);
    const t0 = performance.now();
    await withTimeout(dp.apply(ops), 600_000, `writing ${services.length} services to the maps`);
    programmed = { n: services.length, dp, installSec: (performance.now() - t0) / 1000, close };
    return programmed;
  } catch (err) {
    await withTimeout(close(), 10_000, "closing the datapath").catch(() => undefined);
    throw err;
  }
}

async function closeEbpf(): Promise<void> {
  const p = programmed;
  programmed = undefined;
  await (p ? withTimeout(p.close(), 10_000, "closing the datapath").catch(() => undefined) : undefined);
}

type CellResult = { conn: ConnRate[]; tput: Throughput[]; installSec: number; failed?: string };
const cells = new Map<string, CellResult>();
const cellKey = (id: PathId, n: number) => `${id}@${n}`;

async function runCell(path: Path, n: number, round: number): Promise<void> {
  const key = cellKey(path.id, n);
  const cell = cells.get(key) ?? { conn: [], tput: [], installSec: Number.NaN };
  cells.set(key, cell);
  if (cell.failed) return;
  const services = servicesFor(n);
  const target = path.host(measuredService(n));
  const topo = await createTopology();
  let servers: Awaited<ReturnType<typeof startServers>> | undefined;
  let installed: Installed | undefined;
  try {
    servers = await startServers(topo);
    installed = await path.install(topo, services);
    if (round === 0) cell.installSec = installed.installSec;
    const status = await probeHttp(topo.client, target, HTTP_PORT);
    if (status !== 204) throw new Error(`probe through ${target}:${HTTP_PORT} got HTTP ${status}, want 204`);
    const url = `http://${target}:${HTTP_PORT}/`;
    if (cfg.warmupSec > 0) await connRate({ clientNs: topo.client, url, connections: cfg.connections, seconds: cfg.warmupSec, nginxPid: servers.nginx.pid });
    const m = await connRate({ clientNs: topo.client, url, connections: cfg.connections, seconds: cfg.seconds, nginxPid: servers.nginx.pid });
    cell.conn.push(m);
    const t = await throughput(topo.client, target, IPERF_PORT, cfg.iperfSec);
    cell.tput.push(t);
    console.error(`  round ${round + 1} ${path.label} N=${int(n)}: ${int(m.cps)} conn/s, ${dec(m.usPerConn, 1)} µs CPU/conn, p99 ${dec(m.p99Ms, 2)} ms, errors ${m.errors}; machine ${dec(m.machineCores)} cores busy: wrk ${dec(m.wrkCores)}, nginx ${dec(m.nginxCores)}, softirq ${dec(m.softirqCores)}; ${dec(t.gbps)} Gbit/s`);
  } catch (err) {
    cell.failed = errText(err);
    console.error(`  ${path.label} N=${int(n)} FAILED: ${cell.failed}`);
  } finally {
    await installed?.teardown().catch((e: unknown) => console.error(`  teardown of ${path.label}: ${errText(e)}`));
    if (path.id === "ebpf" && (cell.failed || round === cfg.rounds - 1)) await closeEbpf();
    await servers?.stop();
    await topo.destroy();
  }
}

// ---- run ----

type Row = { measure: string; values: Partial<Record<PathId, string>>; target?: string; met?: boolean };
const rows: Row[] = [];
const notes: string[] = [];
const isRoot = process.getuid?.() === 0;

console.error(`l4.bench: ${quick ? "quick" : "full"} run, parts: ${[...parts].join(", ")}`);

if (parts.has("conn")) {
  if (!isRoot) {
    notes.push("New connections and throughput: not measured, they need root (network namespaces, iptables, eBPF).");
  } else {
    await detect();
    const live = PATHS.filter((p) => !p.unavailable);
    try {
      for (const n of cfg.services) {
        for (let r = 0; r < cfg.rounds; r++) {
          for (const p of live) await runCell(p, n, r);
        }
      }
    } finally {
      await closeEbpf();
    }
    const cellOf = (id: PathId, n: number): CellResult | undefined => cells.get(cellKey(id, n));
    const cps = (id: PathId, n: number): number => median((cellOf(id, n)?.conn ?? []).map((c) => c.cps));
    const cpu = (id: PathId, n: number): number => median((cellOf(id, n)?.conn ?? []).map((c) => c.usPerConn));
    // Relative to the direct route in the same round: what a busy neighbour does to the machine
    // during one round it does to both.
    const vsDirect = (id: PathId, n: number): number => {
      const a = cellOf(id, n)?.conn ?? [];
      const d = cellOf("direct", n)?.conn ?? [];
      return median(a.slice(0, d.length).map((x, i) => x.cps / (d[i] as ConnRate).cps));
    };
    const above = (id: PathId, n: number): number => cpu(id, n) - cpu("direct", n);
    const show = (id: PathId, n: number, f: (c: CellResult) => string): string => {
      const p = pathOf(id);
      if (p.unavailable) return `unavailable: ${p.unavailable}`;
      const c = cellOf(id, n);
      if (!c) return "not run";
      if (c.failed) return `failed: ${c.failed}`;
      return f(c);
    };
    const bestIptables = (n: number): { id: PathId; cps: number } => {
      const c = (["nft", "legacy"] as const).map((id) => ({ id, cps: cps(id, n) })).filter((x) => Number.isFinite(x.cps));
      return c.sort((a, b) => b.cps - a.cps)[0] ?? { id: "nft", cps: Number.NaN };
    };
    const row = (measure: string, f: (id: PathId) => string): Row => ({ measure, values: Object.fromEntries(PATHS.map((p) => [p.id, f(p.id)])) as Partial<Record<PathId, string>> });
    for (const n of cfg.services) {
      const best = bestIptables(n);
      rows.push(row(`New TCP connections/s, ${int(n)} services`, (id) => show(id, n, () => {
        const v = cps(id, n);
        if (id === "direct") return int(v);
        return `${int(v)} (${dec(vsDirect(id, n))}× direct${id === "ebpf" ? `; ${dec(v / best.cps)}× best iptables` : ""})`;
      })));
      rows.push(row(`CPU µs per connection (wrk + nginx + ksoftirqd; above direct), ${int(n)} services`, (id) => show(id, n, () => (id === "direct" ? dec(cpu(id, n), 1) : `${dec(cpu(id, n), 1)} (${above(id, n) >= 0 ? "+" : ""}${dec(above(id, n), 1)})`))));
      rows.push(row(`Throughput Gbit/s, 1 iperf3 stream, ${int(n)} services`, (id) => show(id, n, (c) => dec(median(c.tput.map((t) => t.gbps))))));
      rows.push(row(`Programming ${int(n)} services (install time)`, (id) => (id === "direct" ? "" : show(id, n, (c) => ms(c.installSec)))));
    }
    const nMax = Math.max(...cfg.services);
    const nMin = Math.min(...cfg.services);
    const e = cps("ebpf", nMax);
    const best = bestIptables(nMax);
    const ratio = e / best.cps;
    rows.push({
      measure: `eBPF new conn/s vs best iptables, ${int(nMax)} services`,
      values: { ebpf: Number.isFinite(ratio) ? `${dec(ratio)}× (${pathOf(best.id).label})` : "n/a" },
      target: `≥ ${TARGETS.vsIptables}×`,
      met: Number.isFinite(ratio) && ratio >= TARGETS.vsIptables,
    });
    const flatOf = (id: PathId): number => vsDirect(id, nMax) / vsDirect(id, nMin);
    const flatText = (id: PathId): string => {
      const f = flatOf(id);
      return Number.isFinite(f) ? `${dec(f)}× (CPU above direct ${dec(above(id, nMin), 1)} → ${dec(above(id, nMax), 1)} µs)` : "n/a";
    };
    rows.push({
      measure: `New conn/s relative to direct at ${int(nMax)} vs ${int(nMin)} services (flat in N)`,
      values: { ebpf: flatText("ebpf"), nft: flatText("nft"), legacy: flatText("legacy") },
      target: `eBPF ≥ ${TARGETS.flat}×`,
      met: Number.isFinite(flatOf("ebpf")) && flatOf("ebpf") >= TARGETS.flat,
    });
    const prog = cellOf("ebpf", nMax);
    if (prog && Number.isFinite(prog.installSec)) {
      notes.push(`eBPF programming: ${dec((prog.installSec * 1000) / nMax, 2)} ms per service at ${int(nMax)} services (one backend, one ${cfg.maglevSize}-slot Maglev inner map, one frontend and one VIP each; the measured service has two ports).`);
    }

    // What saturates, per cell.
    console.log(`\n### New connections detail (${cfg.seconds} s wrk, 1 thread, ${cfg.connections} connections, "Connection: close"; ${cfg.rounds} round(s), medians)\n`);
    console.log("| Datapath | Services | conn/s | CPU µs/conn | p50 ms | p99 ms | socket errors | machine cores busy | of which softirq | wrk cores | nginx cores | Gbit/s | retransmits |");
    console.log("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (const n of cfg.services) {
      for (const p of live) {
        const c = cellOf(p.id, n);
        if (!c || c.conn.length === 0) continue;
        const md = (f: (x: ConnRate) => number) => median(c.conn.map(f));
        const gbps = median(c.tput.map((t) => t.gbps));
        const retr = c.tput.reduce((a, t) => a + t.retransmits, 0);
        console.log(`| ${p.label} | ${int(n)} | ${int(md((x) => x.cps))} | ${dec(md((x) => x.usPerConn), 1)} | ${dec(md((x) => x.p50Ms), 3)} | ${dec(md((x) => x.p99Ms), 3)} | ${c.conn.reduce((a, x) => a + x.errors, 0)} | ${dec(md((x) => x.machineCores))} | ${dec(md((x) => x.softirqCores))} | ${dec(md((x) => x.wrkCores))} | ${dec(md((x) => x.nginxCores))} | ${dec(gbps)} | ${retr} |`);
      }
    }
    const runs = [...cells.values()].flatMap((c) => c.conn);
    const wrkBound = runs.filter((c) => c.wrkCores > 0.85).length;
    const machineBound = runs.filter((c) => c.machineCores > 0.9 * availableParallelism()).length;
    notes.push(`Saturation: wrk (one thread) was above 0.85 cores in ${wrkBound} of ${runs.length} runs; the whole machine (${availableParallelism()} cores, shared by wrk, nginx, the node's forwarding in softirq, and anything else running) was above 90% busy in ${machineBound} of ${runs.length}. ` +
      "When the machine is the limit, connections/s follow each datapath's CPU cost per connection, the figure to compare across machines.");
    notes.push("The measured service is the last of the N (its KUBE-SERVICES rules come last: the linear walk's worst case); the others are single-port services to unreachable backends. eBPF: every service has a 251-slot Maglev table.");
    const ipt = (await run("/usr/sbin/iptables", ["--version"]).catch(() => ({ stdout: "?" }))).stdout.trim();
    notes.push(`\`iptables\` on this machine is ${ipt}; kube-proxy uses whichever the node has, so both backends are measured.`);
  }
}

if (parts.has("changes")) {
  let mapLayer: MapLayerChanges | string;
  const agentRuns: { label: string; r: AgentChanges | string }[] = [];
  const mod = isRoot ? await loadDatapath() : "needs root (bpffs, BPF maps)";
  const agent = await loadAgent();
  if (typeof mod === "string") {
    mapLayer = mod;
  } else {
    const { dp, close } = await withTimeout(openBenchDatapath({ maglevSize: cfg.maglevSize, maxServices: 1024, maxBackends: cfg.changes + 16 }), 120_000, "opening the eBPF datapath");
    try {
      mapLayer = await withTimeout(mapLayerChanges(dp, cfg.changes), 120_000, "map layer changes").catch((err: unknown) => `failed: ${errText(err)}`);
    } finally {
      await withTimeout(close(), 10_000, "closing the datapath").catch(() => undefined);
    }
  }
  // 10,000 backend changes as services see them: every backend of S services moves, so the agent
  // writes 10,000 new backends, S new Maglev tables, then deletes the 10,000 old backends.
  const shapes = [
    ...(quick ? [] : [{ services: 1000, per: 10, m: 251 }]),
    { services: 100, per: 100, m: 16381 },
  ];
  if (typeof agent !== "string") {
    for (const s of shapes) {
      const what = `${int(s.services)} services × ${s.per} backends, M = ${int(s.m)}`;
      const sizes = { maglevSize: s.m, maxServices: s.services + 16, maxBackends: 2 * s.services * s.per + 16 };
      if (typeof mod !== "string") {
        const { dp, close } = await withTimeout(openBenchDatapath(sizes), 120_000, "opening the eBPF datapath");
        try {
          const r = await withTimeout(agentChanges(agent.agent, dp, s.services, s.per, s.m), 300_000, "the agent's applies").catch((err: unknown) => `failed: ${errText(err)}`);
          agentRuns.push({ label: `kernel maps, ${what}`, r });
        } finally {
          await withTimeout(close(), 10_000, "closing the datapath").catch(() => undefined);
        }
      } else {
        // Without the kernel maps only the diff can be timed: the in-memory maps are a test double
        // whose own checks are not the kernel's cost.
        const mem = new agent.memmaps.MemoryMaps(sizes);
        const r = await withTimeout(agentChanges(agent.agent, mem, s.services, s.per, s.m, { write: false }), 300_000, "the agent's diff").catch((err: unknown) => `failed: ${errText(err)}`);
        agentRuns.push({ label: `diff only (no kernel maps: ${mod}), ${what}`, r });
      }
    }
  }
  const c = int(cfg.changes);
  if (typeof mapLayer === "string") {
    rows.push({ measure: `${c} backend changes through the map layer`, values: { ebpf: mapLayer.startsWith("failed") ? mapLayer : `unavailable: ${mapLayer}` }, target: `< ${TARGETS.changesSec} s`, met: false });
  } else {
    rows.push({ measure: `${c} backend changes through the map layer (one apply: every backend's address and port changed)`, values: { ebpf: ms(mapLayer.updateSec) }, target: `< ${TARGETS.changesSec} s`, met: mapLayer.updateSec < TARGETS.changesSec });
    rows.push({ measure: `${c} new backends / ${c} deletions through the map layer`, values: { ebpf: `${ms(mapLayer.insertSec)} / ${ms(mapLayer.deleteSec)}` } });
  }
  if (typeof agent === "string") rows.push({ measure: `${c} backend changes through the agent`, values: { ebpf: `unavailable: ${agent}` } });
  for (const { label, r } of agentRuns) {
    const kernel = label.startsWith("kernel");
    const measure = `${c} backend changes through the agent (diff + apply), ${label}`;
    if (typeof r === "string") {
      rows.push({ measure, values: { ebpf: r }, ...(kernel ? { target: `< ${TARGETS.changesSec} s`, met: false } : {}) });
      continue;
    }
    rows.push({
      measure,
      values: { ebpf: `${kernel ? `${ms(r.changeSec)} (${int(r.changeOps)} map ops), of which diff ${ms(r.planSec)}` : `diff ${ms(r.planSec)} (${int(r.changeOps)} map ops)`}; programming from empty: ${ms(r.initialSec)} (${int(r.initialOps)} ops)` },
      ...(kernel ? { target: `< ${TARGETS.changesSec} s`, met: r.changeSec < TARGETS.changesSec } : {}),
    });
    if (r.problems.length) notes.push(`agent problems (${label}): ${r.problems.slice(0, 3).join("; ")}`);
  }
}

if (parts.has("maglev")) {
  for (const m of [16381, 65521]) {
    for (const n of [10, 100]) {
      rows.push({ measure: `Maglev table build, M = ${int(m)}, ${n} backends (median of ${cfg.maglevRuns})`, values: { ebpf: `${dec(maglevBuildMs(m, n, cfg.maglevRuns), 2)} ms` } });
    }
  }
}

const cpu = cpus()[0]?.model ?? "unknown CPU";
const shown = PATHS.filter((p) => rows.some((r) => r.values[p.id] !== undefined && r.values[p.id] !== ""));
console.log(`\n### L4: Sluice eBPF vs iptables vs IPVS (${quick ? "quick" : "full"} run; ${availableParallelism()} cores, ${cpu}; kernel ${release()}; Node ${process.version})\n`);
console.log(`| Measure | ${shown.map((p) => p.label).join(" | ")} | Target | Met |`);
console.log(`|---|${shown.map(() => "---|").join("")}---|---|`);
for (const r of rows) {
  const met = r.met === undefined ? "" : r.met ? "yes" : "**no**";
  console.log(`| ${r.measure} | ${shown.map((p) => r.values[p.id] ?? "").join(" | ")} | ${r.target ?? ""} | ${met} |`);
}
const scored = rows.filter((r) => r.met !== undefined);
console.log(`\nTargets met: ${scored.filter((r) => r.met).length} of ${scored.length}.`);
for (const n of notes) console.log(`- ${n}`);
