// The eBPF datapath from Node: builds the C side, starts the libbpf co-process (bpfd.c) that
// loads the tc programs with their maps pinned under pinDir (adopting maps that are already
// pinned), and speaks its binary protocol. See docs/datapath.md for why a co-process.
import { Buffer } from "node:buffer";
import { spawn } from "node:child_process";
import type { ChildProcessWithoutNullStreams } from "node:child_process";
import { existsSync, mkdirSync, statfsSync } from "node:fs";
import { rm } from "node:fs/promises";
import { execFileSync } from "node:child_process";
import { SUPPORTED_MAGLEV_TABLE_SIZES, DEFAULT_MAGLEV_TABLE_SIZE } from "../../operator/translate/maglev.ts";
import { buildBpf, buildUnavailable } from "./build.ts";
import {
  BE_VAL_SIZE,
  CMD,
  FE_KEY_SIZE,
  FE_VAL_SIZE,
  MAP,
  decodeBackend,
  decodeFrontendKey,
  decodeVersion,
  encodeOps,
  ipv4String,
} from "./codec.ts";
import type { FrontendCounters, FrontendEntry, LbMaps, LbState, MapOp } from "./state.ts";

export interface DatapathOptions {
  /** Where the maps are pinned; default /sys/fs/bpf/sluice. */
  pinDir?: string;
  /** Maglev table size M; default 16381. Must be one of the translator's supported primes. */
  maglevSize?: number;
  maxServices?: number;
  maxBackends?: number;
  ctSize?: number;
}

export interface Datapath extends LbMaps {
  /** Attaches the programs at ingress and egress of ifname; idempotent; replaces an older program atomically. */
  attach(ifname: string, netns?: string): Promise<void>;
  detach(ifname: string, netns?: string): Promise<void>;
  /** Run the tc program on one packet (BPF_PROG_TEST_RUN): verdict and the packet after rewriting. */
  testRun(packet: Buffer, direction?: "ingress" | "egress"): Promise<{ verdict: number; packet: Buffer }>;
  readonly pinDir: string;
  /** True when the maps were already pinned (a restart): their entries were kept. */
  readonly adopted: boolean;
}

export const DEFAULT_PIN_DIR = "/sys/fs/bpf/sluice";
const BPF_FS_MAGIC = 0xcafe4a11;
const LIBBPF_SO = ["/usr/lib/x86_64-linux-gnu/libbpf.so.1", "/usr/lib/aarch64-linux-gnu/libbpf.so.1", "/usr/lib/libbpf.so.1"];

/** Why the eBPF datapath cannot run here (not root, no clang, no libbpf, no bpffs), or undefined. */
export function datapathUnavailable(): string | undefined {
  if (process.platform !== "linux") return "the eBPF datapath needs Linux";
  if (process.getuid?.() !== 0) return "the eBPF datapath needs root (CAP_BPF and CAP_NET_ADMIN)";
  const build = buildUnavailable();
  if (build) return build;
  if (!LIBBPF_SO.some((p) => existsSync(p))) return "libbpf.so.1 not found (apt-get install libbpf1 libbpf-dev)";
  if (!existsSync("/sys/fs/bpf")) return "/sys/fs/bpf does not exist (kernel without bpffs?)";
  if (!existsSync("/sys/kernel/btf/vmlinux")) return "the kernel has no BTF (/sys/kernel/btf/vmlinux)";
  return undefined;
}

/** Mounts bpffs on /sys/fs/bpf when nothing is mounted there yet. */
function ensureBpffs(pinDir: string): void {
  if (!pinDir.startsWith("/sys/fs/bpf/")) return;
  if (statfsSync("/sys/fs/bpf").type === BPF_FS_MAGIC) return;
  try {
    execFileSync("mount", ["-t", "bpf", "bpf", "/sys/fs/bpf"], { stdio: "pipe" });
  } catch (err) {
    throw new Error(`bpffs is not mounted on /sys/fs/bpf and mounting it failed: ${(err as Error).message}`, { cause: err });
  }
}

/** Removes the pinned maps (the state is gone once no program uses them). */
export async function removePinned(pinDir: string = DEFAULT_PIN_DIR): Promise<void> {
  await rm(pinDir, { recursive: true, force: true });
}

interface Reply {
  status: number;
  index: number;
  payload: Buffer;
}

/** The co-process and its framed request/response stream. Requests are answered in order. */
class Daemon {
  private readonly child: ChildProcessWithoutNullStreams;
  private buf: Buffer = Buffer.alloc(0);
  private readonly waiting: { resolve: (r: Reply) => void; reject: (e: Error) => void }[] = [];
  private stderr = "";
  private exited: Error | undefined;
  readonly exit: Promise<void>;

  constructor(path: string, args: string[]) {
    // Its own process group: a terminal's Ctrl-C reaches only the Node process, which then detaches
    // and closes cleanly; the daemon exits on its own when its stdin closes.
    this.child = spawn(path, args, { stdio: ["pipe", "pipe", "pipe"], detached: true });
    this.child.stdout.on("data", (d: Buffer) => this.onData(d));
    this.child.stderr.on("data", (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-8192);
    });
    this.child.stdin.on("error", () => {}); // EPIPE after the daemon died: reported via exit
    this.exit = new Promise((resolve) => {
      this.child.on("error", (err) => this.fail(new Error(`sluice-bpfd: ${err.message}`)));
      this.child.on("exit", (code, signal) => {
        this.fail(new Error(`sluice-bpfd exited (${signal ?? `code ${code}`})${this.stderr ? `: ${this.stderr.trim()}` : ""}`));
        resolve();
      });
    });
  }

  private fail(err: Error): void {
    this.exited ??= err;
    for (const w of this.waiting.splice(0)) w.reject(this.exited);
  }

  private onData(d: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    while (this.buf.length >= 4) {
      const len = this.buf.readUInt32LE(0);
      if (this.buf.length < 4 + len) break;
      const body = this.buf.subarray(4, 4 + len);
      this.buf = this.buf.subarray(4 + len);
      const w = this.waiting.shift();
      w?.resolve({ status: body.readInt32LE(0), index: body.readUInt32LE(4), payload: Buffer.from(body.subarray(8)) });
    }
  }

  /** The first frame, sent unasked once the object is loaded (or loading failed). */
  ready(): Promise<Reply> {
    return this.next();
  }

  private next(): Promise<Reply> {
    if (this.exited) return Promise.reject(this.exited);
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  request(cmd: number, parts: Buffer[]): Promise<Reply> {
    if (this.exited) return Promise.reject(this.exited);
    const len = 1 + parts.reduce((n, p) => n + p.length, 0);
    const head = Buffer.alloc(5);
    head.writeUInt32LE(len, 0);
    head.writeUInt8(cmd, 4);
    const p = this.next();
    // One write: thousands of small writes to the pipe would cost more than the copy.
    this.child.stdin.write(Buffer.concat([head, ...parts]));
    return p;
  }

  async close(): Promise<void> {
    if (!this.exited) {
      this.child.stdin.end();
      const t = setTimeout(() => this.child.kill("SIGKILL"), 2000);
      await this.exit;
      clearTimeout(t);
    }
  }
}

function replyError(what: string, r: Reply): Error {
  const text = r.payload.toString("utf8");
  return new Error(`${what}: ${text || `errno ${-r.status}`}`);
}

class BpfDatapath implements Datapath {
  readonly maglevSize: number;
  readonly pinDir: string;
  readonly adopted: boolean;
  private readonly daemon: Daemon;
  // Requests go one after another so an apply is never interleaved with a read.
  private queue: Promise<unknown> = Promise.resolve();

  constructor(daemon: Daemon, pinDir: string, maglevSize: number, adopted: boolean) {
    this.daemon = daemon;
    this.pinDir = pinDir;
    this.maglevSize = maglevSize;
    this.adopted = adopted;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.queue.then(fn, fn);
    this.queue = p.catch(() => {});
    return p;
  }

  apply(ops: readonly MapOp[]): Promise<void> {
    return this.serial(async () => {
      const { encoded, error } = encodeOps(ops, this.maglevSize);
      if (encoded.length > 0) {
        const n = Buffer.alloc(4);
        n.writeUInt32LE(encoded.length, 0);
        const r = await this.daemon.request(CMD.apply, [n, ...encoded.flatMap((e) => e.bytes)]);
        if (r.status !== 0) {
          const sub = encoded[r.index];
          const text = r.payload.toString("utf8");
          const nl = text.indexOf("\n");
          const done = nl > 0 ? Number(text.slice(0, nl)) : 0;
          const at = sub ? sub.first + Math.min(done, sub.count - 1) : 0;
          throw new Error(`apply: op ${at} (${ops[at]?.op ?? "?"}) failed: ${nl >= 0 ? text.slice(nl + 1) : text}`);
        }
      }
      if (error) throw new Error(`apply: op ${error.index} (${ops[error.index]?.op ?? "?"}) is invalid: ${error.message}`);
    });
  }

  private async dump(map: number, keySize: number, valSize: number): Promise<{ n: number; keys: Buffer; vals: Buffer }> {
    const r = await this.daemon.request(CMD.dump, [Buffer.from([map])]);
    if (r.status !== 0) throw replyError("reading the maps", r);
    const n = r.payload.readUInt32LE(0);
    const keys = r.payload.subarray(4, 4 + n * keySize);
    const vals = r.payload.subarray(4 + n * keySize, 4 + n * (keySize + valSize));
    return { n, keys, vals };
  }

  read(): Promise<LbState> {
    return this.serial(async () => {
      const fe = await this.dump(MAP.fe, FE_KEY_SIZE, FE_VAL_SIZE);
      const frontends: FrontendEntry[] = [];
      for (let i = 0; i < fe.n; i++) {
        frontends.push({
          ...decodeFrontendKey(fe.keys, i * FE_KEY_SIZE),
          serviceId: fe.vals.readUInt32LE(i * FE_VAL_SIZE),
          flags: fe.vals.readUInt32LE(i * FE_VAL_SIZE + 4),
        });
      }
      const be = await this.dump(MAP.be, 4, BE_VAL_SIZE);
      const backends = [];
      for (let i = 0; i < be.n; i++) backends.push(decodeBackend(be.keys.readUInt32LE(i * 4), be.vals, i * BE_VAL_SIZE));
      backends.sort((a, b) => a.id - b.id);
      const vip = await this.dump(MAP.vip, 4, 1);
      const vips: string[] = [];
      for (let i = 0; i < vip.n; i++) vips.push(ipv4String(vip.keys, i * 4));
      const ver = await this.dump(MAP.version, 4, 256);
      const version = ver.n > 0 ? decodeVersion(ver.vals.subarray(0, 256)) : "";

      const mg = await this.daemon.request(CMD.maglevDump, []);
      if (mg.status !== 0) throw replyError("reading the Maglev tables", mg);
      const maglev = new Map<number, Uint32Array>();
      const count = mg.payload.readUInt32LE(0);
      let off = 4;
      for (let i = 0; i < count; i++) {
        const svc = mg.payload.readUInt32LE(off);
        const m = mg.payload.readUInt32LE(off + 4);
        off += 8;
        const table = new Uint32Array(m);
        Buffer.from(table.buffer).set(mg.payload.subarray(off, off + m * 4));
        off += m * 4;
        maglev.set(svc, table);
      }
      return { frontends, backends, maglev, vips: vips.sort(), version };
    });
  }

  counters(): Promise<FrontendCounters[]> {
    return this.serial(async () => {
      const st = await this.dump(MAP.stats, FE_KEY_SIZE, 16);
      const out: FrontendCounters[] = [];
      for (let i = 0; i < st.n; i++) {
        out.push({
          ...decodeFrontendKey(st.keys, i * FE_KEY_SIZE),
          packets: st.vals.readBigUInt64LE(i * 16),
          bytes: st.vals.readBigUInt64LE(i * 16 + 8),
        });
      }
      return out;
    });
  }

  conntrackCount(): Promise<number> {
    return this.serial(async () => {
      const r = await this.daemon.request(CMD.ctCount, []);
      if (r.status !== 0) throw replyError("counting conntrack entries", r);
      return r.payload.readUInt32LE(0);
    });
  }

  private attachCmd(cmd: number, what: string, ifname: string, netns?: string): Promise<void> {
    return this.serial(async () => {
      const r = await this.daemon.request(cmd, [Buffer.from(`${ifname}\0${netns ?? ""}\0`)]);
      if (r.status !== 0) throw replyError(`${what} ${ifname}${netns ? ` (netns ${netns})` : ""}`, r);
    });
  }

  attach(ifname: string, netns?: string): Promise<void> {
    return this.attachCmd(CMD.attach, "attach", ifname, netns);
  }

  detach(ifname: string, netns?: string): Promise<void> {
    return this.attachCmd(CMD.detach, "detach", ifname, netns);
  }

  testRun(packet: Buffer, direction: "ingress" | "egress" = "ingress"): Promise<{ verdict: number; packet: Buffer }> {
    return this.serial(async () => {
      const r = await this.daemon.request(CMD.testRun, [Buffer.from([direction === "egress" ? 1 : 0]), packet]);
      if (r.status !== 0) throw replyError("testRun", r);
      return { verdict: r.index | 0, packet: r.payload };
    });
  }

  close(): Promise<void> {
    return this.serial(() => this.daemon.close());
  }
}

/**
 * Builds if needed, then loads the programs with their maps pinned in pinDir, adopting maps
 * that are already pinned (entries and conntrack kept; attached programs keep running until
 * attach() replaces them).
 */
export async function openDatapath(opts: DatapathOptions = {}): Promise<Datapath> {
  const why = datapathUnavailable();
  if (why) throw new Error(`eBPF datapath unavailable: ${why}`);
  const pinDir = opts.pinDir ?? DEFAULT_PIN_DIR;
  const maglevSize = opts.maglevSize ?? DEFAULT_MAGLEV_TABLE_SIZE;
  if (!SUPPORTED_MAGLEV_TABLE_SIZES.includes(maglevSize)) {
    throw new RangeError(`maglevSize ${maglevSize} is not one of ${SUPPORTED_MAGLEV_TABLE_SIZES.join(", ")}`);
  }
  const sizes = [opts.maxServices ?? 65536, opts.maxBackends ?? 65536, opts.ctSize ?? 262144];
  for (const s of sizes) {
    if (!Number.isInteger(s) || s < 1 || s > 1 << 26) throw new RangeError(`map size ${s} out of range`);
  }
  ensureBpffs(pinDir);
  mkdirSync(pinDir, { recursive: true, mode: 0o700 });
  const { object, daemon: bin } = await buildBpf();
  const daemon = new Daemon(bin, [object, pinDir, String(maglevSize), ...sizes.map(String)]);
  let ready: Reply;
  try {
    ready = await daemon.ready();
  } catch (err) {
    throw new Error(`loading the eBPF datapath failed: ${(err as Error).message}`, { cause: err });
  }
  if (ready.status !== 0) {
    await daemon.close();
    throw replyError("loading the eBPF datapath", ready);
  }
  return new BpfDatapath(daemon, pinDir, maglevSize, ready.index === 1);
}
