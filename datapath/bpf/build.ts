// Builds the eBPF object and the libbpf co-process from datapath/bpf/*.c with Debian's clang,
// into datapath/bpf/build/ (gitignored), only when a source or the compiler changed.
import { createHash } from "node:crypto";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);

export const BPF_SOURCE_DIR = dirname(fileURLToPath(import.meta.url));
export const BPF_BUILD_DIR = join(BPF_SOURCE_DIR, "build");

export interface BuildOutput {
  /** The tc programs and map definitions (lb.bpf.c). */
  object: string;
  /** The libbpf co-process (bpfd.c). */
  daemon: string;
  /** True when this call compiled; false when the stamp said everything was current. */
  built: boolean;
}

const SOURCES = ["lb.bpf.c", "lb.h", "bpfd.c"];
const INCLUDE_ARCH = "/usr/include/x86_64-linux-gnu";
const BPF_FLAGS = ["-O2", "-g", "-target", "bpf", "-Wall", `-I${INCLUDE_ARCH}`];
const DAEMON_FLAGS = ["-O2", "-g", "-Wall", `-I${INCLUDE_ARCH}`];
const DAEMON_LIBS = ["-lbpf"];

/** Why the C side cannot be built here, or undefined. */
export function buildUnavailable(clang = "clang"): string | undefined {
  if (process.platform !== "linux") return "the eBPF datapath needs Linux";
  const found = clang.includes("/")
    ? existsSync(clang)
    : (process.env["PATH"] ?? "").split(":").some((d) => d !== "" && existsSync(join(d, clang)));
  if (!found) {
    return `${clang} not found (install Debian's clang: apt-get install clang)`;
  }
  if (!existsSync("/usr/include/bpf/bpf_helpers.h") || !existsSync("/usr/include/bpf/libbpf.h")) {
    return "libbpf headers not found in /usr/include/bpf (apt-get install libbpf-dev)";
  }
  if (!existsSync(join(INCLUDE_ARCH, "asm/types.h"))) {
    return `kernel UAPI headers not found in ${INCLUDE_ARCH} (apt-get install linux-libc-dev)`;
  }
  return undefined;
}

let inflight: Promise<BuildOutput> | undefined;

/**
 * Compiles when needed. Concurrent callers in one process share a build; separate processes
 * write to temporary files and rename, so a reader never sees a half-written output.
 */
export function buildBpf(opts: { clang?: string; force?: boolean } = {}): Promise<BuildOutput> {
  inflight ??= doBuild(opts.clang ?? "clang", opts.force ?? false).finally(() => {
    inflight = undefined;
  });
  return inflight;
}

async function doBuild(clang: string, force: boolean): Promise<BuildOutput> {
  const why = buildUnavailable(clang);
  if (why) throw new Error(`cannot build the eBPF datapath: ${why}`);
  const object = join(BPF_BUILD_DIR, "lb.bpf.o");
  const daemon = join(BPF_BUILD_DIR, "sluice-bpfd");
  const stampFile = join(BPF_BUILD_DIR, "stamp");

  const hash = createHash("sha256");
  for (const f of SOURCES) hash.update(f).update(await readFile(join(BPF_SOURCE_DIR, f)));
  const { stdout: version } = await run(clang, ["--version"]);
  hash.update(version).update(BPF_FLAGS.join(" ")).update(DAEMON_FLAGS.join(" ")).update(DAEMON_LIBS.join(" "));
  const stamp = hash.digest("hex");
  if (!force && existsSync(object) && existsSync(daemon)) {
    const old = await readFile(stampFile, "utf8").catch(() => "");
    if (old.trim() === stamp) return { object, daemon, built: false };
  }

  await mkdir(BPF_BUILD_DIR, { recursive: true });
  const tag = `${process.pid}.${Date.now()}`;
  const tmpObj = `${object}.${tag}`;
  const tmpDaemon = `${daemon}.${tag}`;
  try {
    await compile(clang, [...BPF_FLAGS, "-c", join(BPF_SOURCE_DIR, "lb.bpf.c"), "-o", tmpObj]);
    await compile(clang, [...DAEMON_FLAGS, join(BPF_SOURCE_DIR, "bpfd.c"), "-o", tmpDaemon, ...DAEMON_LIBS]);
    await rename(tmpObj, object);
    await rename(tmpDaemon, daemon);
    await writeFile(`${stampFile}.${tag}`, stamp + "\n");
    await rename(`${stampFile}.${tag}`, stampFile);
  } finally {
    await rm(tmpObj, { force: true });
    await rm(tmpDaemon, { force: true });
  }
  return { object, daemon, built: true };
}

async function compile(clang: string, args: string[]): Promise<void> {
  try {
    await run(clang, args, { maxBuffer: 16 << 20 });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${clang} ${args.join(" ")} failed:\n${e.stderr || e.message}`, { cause: err });
  }
}
