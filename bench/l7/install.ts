// Finds (and, as root, installs) the peer proxies and the load generator for the L7 benchmark.
// Debian 12 packages: `nginx` (nginx-light there is only nginx plus the echo module, which the
// benchmark does not use), `haproxy`, `wrk`.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile, rm, writeFile } from "node:fs/promises";
import { promisify } from "node:util";

const run = promisify(execFile);

export const PEER_BINARIES = { nginx: "/usr/sbin/nginx", haproxy: "/usr/sbin/haproxy", wrk: "/usr/bin/wrk" } as const;
export const DEBIAN_PACKAGES = { nginx: "nginx", haproxy: "haproxy", wrk: "wrk" } as const;

export type PeerBinaries = { nginx: string; haproxy: string; wrk: string };

const POLICY_RC_D = "/usr/sbin/policy-rc.d";

export async function ensurePeers(): Promise<PeerBinaries> {
  const missing = (Object.keys(PEER_BINARIES) as (keyof typeof PEER_BINARIES)[]).filter((k) => !existsSync(PEER_BINARIES[k]));
  if (missing.length > 0) {
    if (process.getuid?.() !== 0) {
      throw new Error(`missing ${missing.map((k) => PEER_BINARIES[k]).join(", ")}; as root run: ` +
        `apt-get install -y --no-install-recommends ${missing.map((k) => DEBIAN_PACKAGES[k]).join(" ")}`);
    }
    await aptInstall(missing.map((k) => DEBIAN_PACKAGES[k]));
    for (const k of missing) {
      if (!existsSync(PEER_BINARIES[k])) throw new Error(`installed ${DEBIAN_PACKAGES[k]} but ${PEER_BINARIES[k]} is still missing`);
    }
  }
  return { ...PEER_BINARIES };
}

async function aptInstall(packages: string[]): Promise<void> {
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  // A policy-rc.d that exits 101 stops the maintainer scripts from starting the packages' system
  // services: the Debian nginx would otherwise serve port 80, and the benchmark binds loopback high
  // ports only. Containers usually ship one already; we only add (and then remove) our own.
  const ownPolicy = !existsSync(POLICY_RC_D);
  if (ownPolicy) await writeFile(POLICY_RC_D, "#!/bin/sh\n# sluice bench/l7/install.ts: do not start services\nexit 101\n", { mode: 0o755 });
  try {
    const args = ["install", "-y", "-qq", "--no-install-recommends", ...packages];
    try {
      await run("apt-get", args, { env, maxBuffer: 64 << 20 });
    } catch {
      // Most often a stale or empty package list on a fresh machine.
      await run("apt-get", ["update", "-qq"], { env, maxBuffer: 64 << 20 });
      await run("apt-get", args, { env, maxBuffer: 64 << 20 });
    }
  } finally {
    if (ownPolicy) await rm(POLICY_RC_D, { force: true });
  }
  await stopSystemServices();
}

// policy-rc.d keeps the services from starting now, but on a systemd host the units are still
// enabled for the next boot; and a system nginx started some other way still holds port 80.
async function stopSystemServices(): Promise<void> {
  if (existsSync("/run/systemd/system")) {
    await run("systemctl", ["disable", "--now", "nginx.service", "haproxy.service"]).catch(() => undefined);
  }
  const pid = Number((await readFile("/run/nginx.pid", "utf8").catch(() => "")).trim());
  if (pid > 0 && isAlive(pid)) {
    await run(PEER_BINARIES.nginx, ["-s", "quit"]).catch(() => process.kill(pid, "SIGQUIT"));
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
