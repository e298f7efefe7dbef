// Load generation (wrk) and the proxy CPU accounting for the L7 benchmark.
//
// Why requests per proxy CPU-second is the per-core figure: on a 2-core machine wrk, the backend
// and the proxy share two cores, so a proxy's wall-clock rps depends on how the scheduler splits
// them, not just on the proxy. Dividing the requests a run served by the CPU time the proxy's own
// processes consumed (user + system, all threads and workers) gives the requests one fully busy core
// would serve, which is comparable across proxies and machines. The contention still costs some
// CPU (context switches, colder caches), but it costs every proxy alike in the same run.
import { execFile, execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { PEER_BINARIES } from "./install.ts";

export type WrkOptions = { url: string; host: string; connections: number; threads: number; durationSec: number; wrk?: string };
export type WrkResult = { rps: number; p50Ms: number; p99Ms: number; errors: number; non2xx: number; requests: number };

export function runWrk(opts: WrkOptions): Promise<WrkResult> {
  const args = [
    "--latency",
    "-t", String(opts.threads),
    "-c", String(opts.connections),
    "-d", `${opts.durationSec}s`,
    "-H", `Host: ${opts.host}`,
    opts.url,
  ];
  return new Promise((resolve, reject) => {
    execFile(opts.wrk ?? PEER_BINARIES.wrk, args, { maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err) {
        reject(new Error(`wrk failed: ${err.message}\n${stdout}${stderr}`));
        return;
      }
      try {
        resolve(parseWrk(stdout));
      } catch (e) {
        reject(e instanceof Error ? e : new Error(String(e)));
      }
    });
  });
}

// wrk's format_time units (src/units.c); it prints us below 1 ms, then ms, s, m, h.
const TIME_UNIT_MS: Record<string, number> = { us: 1e-3, ms: 1, s: 1e3, m: 60e3, h: 3600e3 };

function latencyMs(text: string, percentile: string): number {
  const m = new RegExp(`^\\s*${percentile}%\\s+([\\d.]+)(us|ms|s|m|h)\\s*$`, "m").exec(text);
  if (!m) throw new Error(`wrk output has no ${percentile}% latency line:\n${text}`);
  return Number(m[1]) * (TIME_UNIT_MS[m[2] as string] as number);
}

/** Parses `wrk --latency` output. Socket errors and non-2xx lines are printed only when non-zero. */
export function parseWrk(text: string): WrkResult {
  const rps = /^Requests\/sec:\s+([\d.]+)/m.exec(text);
  const requests = /^\s*(\d+) requests in /m.exec(text);
  if (!rps || !requests) throw new Error(`not wrk output:\n${text}`);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(text);
  return {
    rps: Number(rps[1]),
    p50Ms: latencyMs(text, "50"),
    p99Ms: latencyMs(text, "99"),
    errors: sock ? sock.slice(1, 5).reduce((a, n) => a + Number(n), 0) : 0,
    non2xx: non2xx ? Number(non2xx[1]) : 0,
    requests: Number(requests[1]),
  };
}

type Stat = { ppid: number; ticks: number };

// /proc/<pid>/stat: "pid (comm) state ppid ... utime stime cutime cstime ..."; comm may hold spaces
// and parentheses, so fields are counted from the last ')'. utime is field 14, so index 11 after it.
function readStat(pid: number): Stat | undefined {
  let s: string;
  try {
    s = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined; // exited
  }
  const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
  const n = (i: number) => Number(f[i] ?? 0);
  // cutime/cstime: workers that exited and were reaped (a restarted nginx worker) still count.
  return { ppid: n(1), ticks: n(11) + n(12) + n(13) + n(14) };
}

function allStats(): Map<number, Stat> {
  const out = new Map<number, Stat>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const st = readStat(Number(name));
    if (st) out.set(Number(name), st);
  }
  return out;
}

function descendantsIn(stats: Map<number, Stat>, root: number): number[] {
  const children = new Map<number, number[]>();
  for (const [pid, st] of stats) {
    const list = children.get(st.ppid);
    if (list) list.push(pid);
    else children.set(st.ppid, [pid]);
  }
  const out: number[] = [];
  const stack = [root];
  for (let p = stack.pop(); p !== undefined; p = stack.pop()) {
    for (const c of children.get(p) ?? []) {
      out.push(c);
      stack.push(c);
    }
  }
  return out;
}

/** Live descendants (worker processes) of `pid`. */
export function descendantsOf(pid: number): number[] {
  return descendantsIn(allStats(), pid);
}

let clockTicks: number | undefined;
function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      clockTicks = 100; // USER_HZ on every mainstream Linux
    }
  }
  return clockTicks;
}

/**
 * CPU seconds (user + system) consumed so far by `pids` and all their live descendants, e.g. an
 * nginx master and its workers. Threads are included by /proc/<pid>/stat itself (HAProxy nbthread,
 * Node worker threads). Sample before and after a run and subtract.
 */
export function cpuTimeOf(pids: number[]): number {
  const stats = allStats();
  const seen = new Set<number>();
  for (const pid of pids) {
    seen.add(pid);
    for (const d of descendantsIn(stats, pid)) seen.add(d);
  }
  let ticks = 0;
  for (const pid of seen) ticks += stats.get(pid)?.ticks ?? 0;
  return ticks / ticksPerSecond();
}

export type Measured = WrkResult & { name: string; cpuSec: number; rpsPerCpuSec: number };

/** One wrk run against a proxy, with the CPU its processes (`pids` and their workers) used meanwhile. */
export async function measure(name: string, pids: number[], opts: WrkOptions): Promise<Measured> {
  const before = cpuTimeOf(pids);
  const r = await runWrk(opts);
  const cpuSec = cpuTimeOf(pids) - before;
  return { name, ...r, cpuSec, rpsPerCpuSec: cpuSec > 0 ? r.requests / cpuSec : Number.NaN };
}
