// Load for the L4 benchmark: new connections per second (wrk with "Connection: close" against the
// backend's nginx, from the client namespace) and throughput (iperf3, one stream), with the CPU
// they cost.
//
// Where the datapath's CPU shows: with veth pairs, a packet is forwarded by the node namespace in
// the softirq of the CPU that sent it, mostly inside wrk's or nginx's time slice (charged to their
// system time) and otherwise in ksoftirqd. So the CPU per connection is that of wrk + nginx +
// ksoftirqd, compared with the direct route (no VIP, no translation) measured in the same run: the
// difference is the datapath's. Unlike the whole machine's busy time, it leaves out whatever else
// runs on a shared machine.
import { readdirSync, readFileSync } from "node:fs";
import { cpuTimeOf, parseWrk, type WrkResult } from "../l7/load.ts";
import { run, sleep, startIn } from "./sh.ts";

export const WRK = "/usr/bin/wrk";
export const IPERF3 = "/usr/bin/iperf3";

const USER_HZ = 100;

type CpuSample = { busy: number; total: number; softirq: number };

/** Machine-wide CPU seconds so far (all CPUs), from the first line of /proc/stat. */
function machineCpu(): CpuSample {
  const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0] ?? "";
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const v = (i: number): number => f[i] ?? 0;
  // user nice system idle iowait irq softirq steal (guest time is already inside user)
  const busy = v(0) + v(1) + v(2) + v(5) + v(6) + v(7);
  return { busy: busy / USER_HZ, total: (busy + v(3) + v(4)) / USER_HZ, softirq: v(6) / USER_HZ };
}

function ksoftirqdPids(): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readFileSync(`/proc/${name}/comm`, "utf8").startsWith("ksoftirqd/")) out.push(Number(name));
    } catch {
      // exited
    }
  }
  return out;
}

function procTicks(pid: number): number | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
    return Number(f[11] ?? 0) + Number(f[12] ?? 0);
  } catch {
    return undefined;
  }
}

export type ConnRate = WrkResult & {
  /** Connections per second (wrk's requests per second: one request per connection). */
  cps: number;
  /** CPU microseconds of wrk + nginx + ksoftirqd per connection. */
  usPerConn: number;
  /** Cores busy machine-wide, of which in softirq. */
  machineCores: number;
  softirqCores: number;
  /** Cores used by wrk and by nginx (master + worker): whichever is near 1.0 saturates. */
  wrkCores: number;
  nginxCores: number;
  seconds: number;
};

export type ConnRateOptions = { clientNs: string; url: string; connections: number; seconds: number; nginxPid: number };

/** One wrk run, every request on a new connection. */
export async function connRate(o: ConnRateOptions): Promise<ConnRate> {
  const args = ["--latency", "-t", "1", "-c", String(o.connections), "-d", `${o.seconds}s`, "-H", "Connection: close", o.url];
  const ksoftirqd = ksoftirqdPids();
  const m0 = machineCpu();
  const n0 = cpuTimeOf([o.nginxPid]);
  const k0 = cpuTimeOf(ksoftirqd);
  const t0 = performance.now();
  const wrk = startIn(o.clientNs, WRK, args);
  // wrk's CPU time is read while it runs: once it has exited (and been reaped) /proc has nothing.
  let wrkTicks = 0;
  const poll = (async () => {
    for (;;) {
      const t = procTicks(wrk.pid);
      if (t !== undefined) wrkTicks = t;
      const state = await Promise.race([wrk.exited.then(() => "done" as const), sleep(100).then(() => "running" as const)]);
      if (state === "done") return;
    }
  })();
  const code = await wrk.exited;
  await poll;
  const seconds = (performance.now() - t0) / 1000;
  const m1 = machineCpu();
  const nginxSec = cpuTimeOf([o.nginxPid]) - n0;
  const ksoftSec = cpuTimeOf(ksoftirqd) - k0;
  if (code !== 0) throw new Error(`wrk exited ${code}: ${wrk.stderr()}`);
  const r = parseWrk(wrk.stdout());
  const busy = m1.busy - m0.busy;
  return {
    ...r,
    cps: r.rps,
    usPerConn: r.requests > 0 ? ((wrkTicks / USER_HZ + nginxSec + ksoftSec) * 1e6) / r.requests : Number.NaN,
    machineCores: busy / seconds,
    softirqCores: (m1.softirq - m0.softirq) / seconds,
    wrkCores: wrkTicks / USER_HZ / seconds,
    nginxCores: nginxSec / seconds,
    seconds,
  };
}

export type Throughput = { gbps: number; retransmits: number; senderCpuPct: number; receiverCpuPct: number };

type IperfJson = {
  error?: string;
  end?: {
    sum_received?: { bits_per_second?: number };
    sum_sent?: { retransmits?: number };
    cpu_utilization_percent?: { host_total?: number; remote_total?: number };
  };
};

/** One iperf3 TCP stream from the client namespace to `host:port` for `seconds`. */
export async function throughput(clientNs: string, host: string, port: number, seconds: number): Promise<Throughput> {
  const { stdout } = await run(IPERF3, ["-c", host, "-p", String(port), "-t", String(seconds), "-J", "--connect-timeout", "3000"], { ns: clientNs, timeoutMs: (seconds + 15) * 1000 }).catch((err: Error) => {
    // iperf3 -J prints its error as JSON on stdout and exits 1.
    throw new Error(`iperf3 to ${host}:${port}: ${err.message.slice(-500)}`);
  });
  const j = JSON.parse(stdout) as IperfJson;
  if (j.error) throw new Error(`iperf3 to ${host}:${port}: ${j.error}`);
  const bps = j.end?.sum_received?.bits_per_second;
  if (bps === undefined) throw new Error(`iperf3 to ${host}:${port}: no sum_received in its JSON output`);
  return {
    gbps: bps / 1e9,
    retransmits: j.end?.sum_sent?.retransmits ?? 0,
    senderCpuPct: j.end?.cpu_utilization_percent?.host_total ?? Number.NaN,
    receiverCpuPct: j.end?.cpu_utilization_percent?.remote_total ?? Number.NaN,
  };
}

/** One TCP connection + HTTP request from the client namespace; resolves to the status line's code. */
export async function probeHttp(clientNs: string, host: string, port: number): Promise<number> {
  // wrk for a single request would need a duration; bash's /dev/tcp is enough and always there.
  const script = `exec 3<>/dev/tcp/${host}/${port} && printf 'GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n' >&3 && head -c 12 <&3`;
  const { stdout } = await run("timeout", ["3", "bash", "-c", script], { ns: clientNs, timeoutMs: 5000 });
  const m = /^HTTP\/1\.1 (\d{3})/.exec(stdout);
  if (!m) throw new Error(`no HTTP status from ${host}:${port}: ${JSON.stringify(stdout)}`);
  return Number(m[1]);
}
