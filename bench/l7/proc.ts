// Child-process plumbing shared by the peers and the backend: a temp dir per server, foreground
// start, readiness by TCP connect, and a stop that also reaps the server's worker processes.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { descendantsOf } from "./load.ts";

export type Endpoint = { host: string; port: number };
export type Server = { pid: number; stop(): Promise<void> };

// Kill whatever is still running if the benchmark script dies, so no server keeps its port; the
// workers too, since an nginx master killed outright leaves them running.
const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const c of live) {
    if (c.pid === undefined) continue;
    for (const pid of [c.pid, ...descendantsOf(c.pid)]) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
  }
});

export async function makeTempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `sluice-l7-${prefix}-`));
}

export async function freePort(host = "127.0.0.1"): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once("error", reject);
    srv.listen(0, host, resolve);
  });
  const addr = srv.address();
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  if (addr === null || typeof addr === "string") throw new Error("no port from the kernel");
  return addr.port;
}

function tryConnect(ep: Endpoint): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(ep.port, ep.host);
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

export type StartOptions = {
  env?: NodeJS.ProcessEnv;
  readyTimeoutMs?: number;
  /** Called with the pid as soon as the process is spawned, before it is ready (e.g. to sample its memory). */
  onSpawn?: (pid: number) => void;
};

/** Spawns `bin args` in the foreground, resolves once `listen` accepts connections. */
export async function startServer(name: string, bin: string, args: string[], listen: Endpoint, dir: string, opts: StartOptions = {}): Promise<Server> {
  const child = spawn(bin, args, { stdio: ["ignore", "ignore", "pipe"], ...(opts.env ? { env: opts.env } : {}) });
  live.add(child);
  if (child.pid !== undefined) opts.onSpawn?.(child.pid);
  // Keep the tail of stderr: it is the only diagnosis when a config is rejected.
  let stderr = "";
  child.stderr?.setEncoding("utf8").on("data", (d: string) => {
    stderr = (stderr + d).slice(-4096);
  });
  let exited: { code: number | null; signal: string | null } | undefined;
  const exit = new Promise<void>((resolve) => {
    child.once("exit", (code, signal) => {
      exited = { code, signal };
      live.delete(child);
      resolve();
    });
  });
  let spawnError: Error | undefined;
  child.once("error", (e) => {
    spawnError = e;
  });

  const cleanup = async () => {
    await stopChild(child, exit, () => exited !== undefined);
    await rm(dir, { recursive: true, force: true });
  };

  const readyMs = opts.readyTimeoutMs ?? 10_000;
  const deadline = Date.now() + readyMs;
  for (;;) {
    if (spawnError) {
      await cleanup();
      throw new Error(`${name}: cannot start ${bin}: ${spawnError.message}`);
    }
    if (exited) {
      await cleanup();
      throw new Error(`${name} exited (${exited.code ?? exited.signal}) before listening on ${listen.host}:${listen.port}: ${stderr.trim()}`);
    }
    if (await tryConnect(listen)) break;
    if (Date.now() > deadline) {
      await cleanup();
      throw new Error(`${name} not listening on ${listen.host}:${listen.port} after ${readyMs / 1000} s: ${stderr.trim()}`);
    }
    await sleep(20);
  }
  const pid = child.pid;
  if (pid === undefined) throw new Error(`${name}: no pid`);
  return { pid, stop: cleanup };
}

async function stopChild(child: ChildProcess, exit: Promise<void>, hasExited: () => boolean): Promise<void> {
  if (hasExited() || child.pid === undefined) return;
  // Taken before the signal: a master killed outright would leave its workers orphaned.
  const workers = descendantsOf(child.pid);
  child.kill("SIGTERM");
  // Unref'd so that a quick exit does not keep the benchmark alive for the rest of the grace period.
  const timedOut = await Promise.race([exit.then(() => false), sleep(5000, true, { ref: false })]);
  if (timedOut) {
    child.kill("SIGKILL");
    for (const pid of workers) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
  }
  await exit;
}
