// The machinery of bench/l4.bench.ts, in miniature: the kube-proxy rules and eBPF map ops it
// programs (no privileges needed), the namespace topology with iptables DNAT for real, and one
// tiny quick run of the whole script (10 services, 1 s per figure) whose table must hold measured
// figures, or "unavailable: <reason>" exactly where this machine says a datapath cannot run. Not a
// performance test: the figures are only checked to be measured.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { test } from "node:test";
import { loadDatapath, serviceOps } from "./l4/ebpf.ts";
import { installIptables, IPTABLES_VARIANTS, kubeProxyRules, natRuleCount, type IptablesVariant } from "./l4/iptables.ts";
import { ipvsUnavailable } from "./l4/ipvs.ts";
import { probeHttp } from "./l4/load.ts";
import { measuredService, servicesFor } from "./l4/services.ts";
import { run } from "./l4/sh.ts";
import { ADDR, createTopology, HTTP_PORT, IPERF_PORT, startServers, vipOf } from "./l4/topology.ts";

const rootSkip = process.getuid?.() === 0 ? undefined : "needs root (network namespaces, iptables, eBPF): run the L4 benchmark tests as root";
const nft = IPTABLES_VARIANTS[0] as IptablesVariant;

test("VIPs are distinct, inside 10.96.0.0/16, never .0 or .255", () => {
  const seen = new Set<string>();
  for (let i = 0; i < 10_000; i++) {
    const v = vipOf(i);
    assert.match(v, /^10\.96\.\d+\.\d+$/);
    const last = Number(v.split(".")[3]);
    assert.ok(last >= 1 && last <= 250, v);
    seen.add(v);
  }
  assert.equal(seen.size, 10_000);
  assert.throws(() => vipOf(-1), RangeError);
  assert.throws(() => servicesFor(0), RangeError);
});

test("kube-proxy rules: one KUBE-SERVICES rule per service port, the measured service's HTTP port last", () => {
  const services = servicesFor(50);
  const text = kubeProxyRules(services);
  const lines = text.split("\n");
  assert.equal(lines[0], "*nat");
  assert.equal(lines.at(-2), "COMMIT");
  const dispatch = lines.filter((l) => l.startsWith("-A KUBE-SERVICES -d "));
  assert.equal(dispatch.length, 51); // 49 services × 1 port + the measured one × 2
  const m = measuredService(50);
  assert.match(dispatch.at(-1) ?? "", new RegExp(`^-A KUBE-SERVICES -d ${m.vip.replaceAll(".", "\\.")}/32 -p tcp .* --dport ${HTTP_PORT} -j KUBE-SVC-`));
  assert.match(dispatch.at(-2) ?? "", new RegExp(`--dport ${IPERF_PORT} `));
  // Every jump target is declared, every declared chain is used.
  const declared = new Set(lines.filter((l) => l.startsWith(":")).map((l) => l.slice(1).split(" ")[0]));
  for (const l of lines.filter((x) => x.startsWith("-A "))) {
    const target = / -j (KUBE-[A-Z0-9-]+)/.exec(l)?.[1];
    if (target) assert.ok(declared.has(target), `undeclared ${target}`);
  }
  assert.ok(lines.some((l) => l.includes(`DNAT --to-destination ${ADDR.backend}:${HTTP_PORT}`)));
});

test("eBPF ops: backends, then Maglev tables, then frontends, then VIPs; tables point at the service's backend", () => {
  const ops = serviceOps(servicesFor(3), 251);
  const kinds = ops.map((o) => o.op);
  assert.deepEqual(kinds, [
    ...Array<string>(4).fill("backend-upsert"),
    ...Array<string>(4).fill("maglev-upsert"),
    ...Array<string>(4).fill("frontend-upsert"),
    ...Array<string>(3).fill("vip-upsert"),
  ]);
  for (const o of ops) {
    if (o.op !== "maglev-upsert") continue;
    assert.equal(o.table.length, 251);
    const fe = ops.find((f) => f.op === "frontend-upsert" && f.frontend.serviceId === o.serviceId);
    assert.ok(fe);
    // One backend per service port, numbered like the services: every slot holds it.
    assert.ok(o.table.every((id) => id === o.serviceId), `service ${o.serviceId}`);
  }
});

test("topology: a VIP is unreachable until iptables DNAT is installed, then answers 204", { skip: rootSkip }, async () => {
  const topo = await createTopology();
  let servers: Awaited<ReturnType<typeof startServers>> | undefined;
  try {
    servers = await startServers(topo);
    const m = measuredService(10);
    assert.equal(await probeHttp(topo.client, ADDR.backend, HTTP_PORT), 204);
    await assert.rejects(probeHttp(topo.client, m.vip, HTTP_PORT));
    await installIptables(nft, topo.node, servicesFor(10));
    assert.equal(await natRuleCount(nft, topo.node), 10 * 4 + 4 + 8);
    assert.equal(await probeHttp(topo.client, m.vip, HTTP_PORT), 204);
  } finally {
    await servers?.stop();
    await topo.destroy();
  }
  const { stdout } = await run("ip", ["netns", "list"]);
  assert.doesNotMatch(stdout, new RegExp(`sl4-${topo.tag}-`));
});

/** The cells of the row whose first cell starts with `measure`, by column header. */
function rowOf(table: string, measure: string): Map<string, string> {
  const lines = table.split("\n").filter((l) => l.startsWith("| "));
  const header = lines.find((l) => l.startsWith("| Measure |"));
  const row = lines.find((l) => l.startsWith(`| ${measure}`));
  assert.ok(header && row, `no row "${measure}" in:\n${table}`);
  const cells = (l: string) => l.slice(2, -2).split(" | ");
  const h = cells(header);
  const r = cells(row);
  return new Map(h.map((name, i) => [name, r[i] ?? ""]));
}

test("a tiny quick run prints measured figures, or the reason a datapath is unavailable", { skip: rootSkip, timeout: 180_000 }, async () => {
  const before = new Set(readdirSync("/sys/fs/bpf"));
  const child = spawn(process.execPath, ["bench/l4.bench.ts", "--quick", "--services", "10"], { cwd: new URL("..", import.meta.url), stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
  child.stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
  const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  assert.equal(code, 0, `exit ${code}\n${err.slice(-3000)}`);

  const conn = rowOf(out, "New TCP connections/s, 10 services");
  const tput = rowOf(out, "Throughput Gbit/s, 1 iperf3 stream, 10 services");
  const measured = (cell: string | undefined, what: string) => {
    assert.match(cell ?? "", /^[\d,.]+/, `${what}: ${cell}`);
    assert.ok(Number((cell ?? "").split(" ")[0]?.replaceAll(",", "")) > 0, `${what}: ${cell}`);
  };
  for (const col of ["Direct (routed, no VIP)", nft.name, "iptables-legacy"]) {
    measured(conn.get(col), `${col} conn/s`);
    measured(tput.get(col), `${col} Gbit/s`);
  }
  const dp = await loadDatapath();
  if (typeof dp === "string") {
    assert.equal(conn.get("Sluice eBPF"), `unavailable: ${dp}`);
  } else {
    measured(conn.get("Sluice eBPF"), "eBPF conn/s");
    measured(tput.get("Sluice eBPF"), "eBPF Gbit/s");
    assert.match(rowOf(out, "10,000 backend changes through the map layer").get("Sluice eBPF") ?? "", /^\d+(\.\d+)? ms$/);
  }
  const { stdout: ns } = await run("ip", ["netns", "list"]);
  // The IPVS column says why it is missing, or holds a figure.
  const ipvsWhy = await (async () => {
    const topo = await createTopology();
    try {
      return await ipvsUnavailable(topo.node);
    } finally {
      await topo.destroy();
    }
  })();
  if (ipvsWhy) assert.equal(conn.get("IPVS"), `unavailable: ${ipvsWhy}`);
  else measured(conn.get("IPVS"), "IPVS conn/s");
  assert.match(rowOf(out, "Maglev table build, M = 65,521, 100 backends").get("Sluice eBPF") ?? "", /^\d+\.\d+ ms$/);

  // Nothing left behind: the run's namespaces and pin directories are gone.
  assert.doesNotMatch(ns, new RegExp(`^sl4-[a-z0-9]+-[cnb]\\b`, "m"), "namespaces left behind (or another L4 run in progress)");
  const leaked = readdirSync("/sys/fs/bpf").filter((d) => !before.has(d) && d.startsWith(`sluice-bench-${child.pid}-`));
  assert.deepEqual(leaked, []);
});
