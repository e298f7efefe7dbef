// Running commands for the L4 benchmark: in the root namespace or inside one of the benchmark's
// network namespaces (`ip netns exec`, which execs the command after setns, so the child's pid is
// the command's own pid), with stdin input and an error that carries the command's stderr.
import { spawn, type ChildProcess } from "node:child_process";

export type RunOptions = { input?: string; timeoutMs?: number; ns?: string };
export type RunResult = { stdout: string; stderr: string };

/** Runs `bin args` (inside `ns` when given) to completion; rejects with its stderr on failure. */
export function run(bin: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const [file, argv] = opts.ns === undefined ? [bin, [...args]] : ["ip", ["netns", "exec", opts.ns, bin, ...args]];
  const what = `${opts.ns === undefined ? "" : `[netns ${opts.ns}] `}${bin} ${args.join(" ")}`.slice(0, 300);
  return new Promise((resolve, reject) => {
    const child = spawn(file, argv, { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderr = (stderr + d).slice(-8192);
    });
    const timer = opts.timeoutMs === undefined ? undefined : setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs);
    child.once("error", (e) => {
      clearTimeout(timer);
      reject(new Error(`${what}: ${e.message}`));
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve({ stdout, stderr });
      else reject(new Error(`${what}: exited ${code ?? signal}: ${(stderr || stdout).trim().slice(-2000)}`));
    });
    // A command that exits before reading all its input (a parse error) closes the pipe: EPIPE is
    // then not the error to report, its exit status and stderr are.
    child.stdin.on("error", () => undefined);
    child.stdin.end(opts.input ?? "");
  });
}

/** A long-running process (a server, a load generator) started inside `ns`. */
export type Proc = { pid: number; child: ChildProcess; exited: Promise<number | null>; stdout(): string; stderr(): string; stop(): Promise<void> };

// Kill whatever is still running if the benchmark script dies: a server left in a namespace keeps
// it (and its veths) alive after `ip netns del`.
const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const c of live) {
    try {
      c.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
});

export function startIn(ns: string, bin: string, args: readonly string[]): Proc {
  const child = spawn("ip", ["netns", "exec", ns, bin, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  live.add(child);
  let stderr = "";
  let stdout = "";
  child.stdout?.setEncoding("utf8").on("data", (d: string) => {
    stdout = (stdout + d).slice(-65536);
  });
  child.stderr?.setEncoding("utf8").on("data", (d: string) => {
    stderr = (stderr + d).slice(-8192);
  });
  let done = false;
  const exited = new Promise<number | null>((resolve) => {
    child.once("error", (e) => {
      stderr += `\n${e.message}`;
      done = true;
      live.delete(child);
      resolve(null);
    });
    child.once("exit", (code) => {
      done = true;
      live.delete(child);
      resolve(code);
    });
  });
  const pid = child.pid ?? -1;
  return {
    pid,
    child,
    exited,
    stdout: () => stdout,
    stderr: () => `${stderr}${stdout ? `\n${stdout.slice(-2000)}` : ""}`.trim(),
    async stop() {
      if (done) return;
      child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 3000);
      await exited;
      clearTimeout(t);
    },
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A short random tag for namespace, interface, chain and pin names shared with other runs. */
export function randomTag(): string {
  return Math.random().toString(36).slice(2, 8);
}

/** Rejects with "<what> timed out after N s" unless `p` settles first. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${Math.round(ms / 1000)} s`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}
