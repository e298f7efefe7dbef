// A small kit for network-namespace topologies in privileged tests and benchmarks: namespaces,
// veth pairs, addresses, routes and forwarding from a description; commands and long-running
// processes inside a namespace; teardown. Every name carries a random suffix so concurrent users
// never collide, and teardown also runs at process exit if the caller forgot.
import { execFile, execFileSync, spawn } from "node:child_process";
import type { ChildProcess, SpawnOptions } from "node:child_process";
import { existsSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface LinkSpec {
  /** Logical namespace names (keys of TopologySpec.namespaces). */
  a: string;
  b: string;
  /** CIDR addresses, e.g. "10.0.1.1/24". Omit for an unnumbered end. */
  aAddr?: string;
  bAddr?: string;
  /** Interface names; default "v-<peer>" (at most 15 characters). */
  aIf?: string;
  bIf?: string;
}

export interface RouteSpec {
  ns: string;
  /** Destination prefix or "default". */
  to: string;
  via: string;
}

export interface TopologySpec {
  namespaces: string[];
  links: LinkSpec[];
  routes?: RouteSpec[];
  /** Namespaces that forward (ip_forward=1). */
  routers?: string[];
  /** Extra addresses, e.g. a VIP on lo. */
  addresses?: { ns: string; dev: string; addr: string }[];
}

export interface Topology {
  /** The random suffix shared by this topology's names. */
  readonly id: string;
  /** The real netns name of a logical namespace (usable with `ip netns exec` and attach()). */
  ns(name: string): string;
  /** The interface in `ns` of its link to `peer`. */
  ifname(ns: string, peer: string): string;
  /** All interfaces of a namespace except lo. */
  interfaces(ns: string): string[];
  /** Runs a command in the namespace; resolves with stdout, rejects with stderr on failure. */
  exec(ns: string, argv: string[], opts?: { timeoutMs?: number }): Promise<string>;
  /** Starts a process in the namespace; it is killed by destroy(). */
  spawn(ns: string, argv: string[], opts?: SpawnOptions): ChildProcess;
  destroy(): Promise<void>;
}

/** Why namespaces cannot be created here, or undefined. */
export function netnsUnavailable(): string | undefined {
  if (process.platform !== "linux") return "network namespaces need Linux";
  if (process.getuid?.() !== 0) return "network namespaces need root";
  if (!["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].some((p) => existsSync(p))) return "iproute2 (ip) not found";
  return undefined;
}

const live = new Set<string>();
let exitHook = false;

function cleanupAtExit(): void {
  for (const ns of live) {
    try {
      execFileSync("ip", ["netns", "del", ns], { stdio: "ignore" });
    } catch {
      // already gone
    }
  }
  live.clear();
}

async function ip(args: string[]): Promise<void> {
  try {
    await run("ip", args);
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`ip ${args.join(" ")}: ${(e.stderr ?? e.message).trim()}`, { cause: err });
  }
}

export async function createTopology(spec: TopologySpec): Promise<Topology> {
  const why = netnsUnavailable();
  if (why) throw new Error(why);
  if (!exitHook) {
    exitHook = true;
    process.on("exit", cleanupAtExit);
  }
  const id = randomBytes(3).toString("hex");
  const names = new Map<string, string>();
  for (const n of spec.namespaces) {
    if (!/^[a-z0-9]{1,12}$/.test(n)) throw new Error(`namespace name ${JSON.stringify(n)}: use 1-12 lowercase letters/digits`);
    names.set(n, `sl-${n}-${id}`);
  }
  const nsOf = (n: string): string => {
    const real = names.get(n);
    if (!real) throw new Error(`unknown namespace ${JSON.stringify(n)} in topology ${id}`);
    return real;
  };
  const ifnames = new Map<string, string>();
  const ifs = new Map<string, string[]>();
  const children = new Set<ChildProcess>();

  const topo: Topology = {
    id,
    ns: nsOf,
    ifname(ns, peer) {
      const i = ifnames.get(`${ns}>${peer}`);
      if (!i) throw new Error(`no link ${ns}–${peer} in topology ${id}`);
      return i;
    },
    interfaces: (ns) => [...(ifs.get(ns) ?? [])],
    async exec(ns, argv, opts = {}) {
      try {
        const { stdout } = await run("ip", ["netns", "exec", nsOf(ns), ...argv], { timeout: opts.timeoutMs ?? 30_000 });
        return stdout;
      } catch (err) {
        const e = err as { stderr?: string; message: string };
        throw new Error(`in ${ns}: ${argv.join(" ")}: ${(e.stderr || e.message).trim()}`, { cause: err });
      }
    },
    spawn(ns, argv, opts = {}) {
      const child = spawn("ip", ["netns", "exec", nsOf(ns), ...argv], { stdio: "pipe", ...opts });
      children.add(child);
      child.on("exit", () => children.delete(child));
      child.on("error", () => children.delete(child));
      return child;
    },
    async destroy() {
      await Promise.all(
        [...children].map(
          (c) =>
            new Promise<void>((resolve) => {
              if (c.exitCode !== null || c.signalCode !== null) return resolve();
              c.once("exit", () => resolve());
              c.kill("SIGKILL");
            }),
        ),
      );
      for (const real of names.values()) {
        if (!live.has(real)) continue;
        await ip(["netns", "del", real]).catch(() => {});
        live.delete(real);
      }
    },
  };

  try {
    for (const real of names.values()) {
      await ip(["netns", "add", real]);
      live.add(real);
      await ip(["-n", real, "link", "set", "lo", "up"]);
      const forward = spec.routers?.some((r) => names.get(r) === real) ? "1" : "0";
      // rp_filter off everywhere: asymmetric paths (a reply bypassing the balancer) are part of the tests.
      await run("ip", [
        "netns", "exec", real, "sysctl", "-qw",
        `net.ipv4.ip_forward=${forward}`,
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.default.rp_filter=0",
      ]);
    }
    for (const l of spec.links) {
      const aIf = (l.aIf ?? `v-${l.b}`).slice(0, 15);
      const bIf = (l.bIf ?? `v-${l.a}`).slice(0, 15);
      const aNs = nsOf(l.a);
      const bNs = nsOf(l.b);
      await ip(["-n", aNs, "link", "add", aIf, "type", "veth", "peer", "name", bIf, "netns", bNs]);
      ifnames.set(`${l.a}>${l.b}`, aIf);
      ifnames.set(`${l.b}>${l.a}`, bIf);
      ifs.set(l.a, [...(ifs.get(l.a) ?? []), aIf]);
      ifs.set(l.b, [...(ifs.get(l.b) ?? []), bIf]);
      if (l.aAddr) await ip(["-n", aNs, "addr", "add", l.aAddr, "dev", aIf]);
      if (l.bAddr) await ip(["-n", bNs, "addr", "add", l.bAddr, "dev", bIf]);
      await ip(["-n", aNs, "link", "set", aIf, "up"]);
      await ip(["-n", bNs, "link", "set", bIf, "up"]);
    }
    for (const a of spec.addresses ?? []) await ip(["-n", nsOf(a.ns), "addr", "add", a.addr, "dev", a.dev]);
    for (const r of spec.routes ?? []) await ip(["-n", nsOf(r.ns), "route", "add", r.to, "via", r.via]);
  } catch (err) {
    await topo.destroy();
    throw err;
  }
  return topo;
}

/** What NsHelper commands answer; fields depend on the command (see nshelper.ts). */
export interface HelperReply {
  ok: boolean;
  error?: string;
  /** The server's identity line: its name and the peer address it saw. */
  line?: { name: string; peer: string };
  /** TCP: local port; UDP: "addr:port" the reply came from. */
  local?: number;
  remote?: string;
  from?: string;
  data?: string;
  results?: HelperReply[];
}

/**
 * Drives nshelper.ts inside a namespace: TCP/UDP servers that report the peer they saw, and
 * clients that connect, hold connections and send on them.
 */
export class NsHelper {
  private readonly child: ChildProcess;
  private nextId = 1;
  private readonly pending = new Map<number, (r: HelperReply) => void>();
  private buf = "";
  private readonly started: Promise<void>;

  constructor(topo: Topology, ns: string) {
    const script = new URL("./nshelper.ts", import.meta.url).pathname;
    this.child = topo.spawn(ns, [process.execPath, script]);
    let ready: () => void = () => {};
    this.started = new Promise((resolve, reject) => {
      ready = resolve;
      this.child.once("exit", (code) => reject(new Error(`nshelper in ${ns} exited (${code})`)));
    });
    this.started.catch(() => {});
    this.child.stdout?.on("data", (d: Buffer) => {
      this.buf += d.toString();
      let nl;
      while ((nl = this.buf.indexOf("\n")) >= 0) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        const msg = JSON.parse(line) as HelperReply & { id: number; ready?: boolean };
        if (msg.ready) ready();
        const cb = this.pending.get(msg.id);
        this.pending.delete(msg.id);
        cb?.(msg);
      }
    });
    this.child.on("exit", () => {
      for (const cb of this.pending.values()) cb({ ok: false, error: "nshelper exited" });
      this.pending.clear();
    });
  }

  ready(): Promise<void> {
    return this.started;
  }

  call(cmd: Record<string, unknown>): Promise<HelperReply> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.child.stdin?.write(JSON.stringify({ ...cmd, id }) + "\n");
    });
  }

  serve(proto: "tcp" | "udp", host: string, port: number, name: string): Promise<HelperReply> {
    return this.call({ op: "serve", proto, host, port, name });
  }

  stop(): void {
    this.child.kill("SIGKILL");
  }
}
