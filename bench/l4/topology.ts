// The L4 benchmark's topology: three network namespaces joined by two veth pairs.
//
//   client 10.201.1.2 ── cl 10.201.1.1 [node, ip_forward] 10.201.2.1 bk ── 10.201.2.2 backend
//
// The client routes the VIP range 10.96.0.0/16 to the node; the node has no route for it, so a
// packet to a VIP reaches the backend only if the datapath under test (iptables DNAT, IPVS, eBPF)
// translates it. The backend's default route is the node, so replies come back through it and the
// node reverses the translation. Every interface is created directly inside its namespace, so the
// names cannot collide with other runs; the namespaces carry a random tag.
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomTag, run, sleep, startIn, type Proc } from "./sh.ts";
import { nginxMainConfig } from "../l7/peers.ts";

export const ADDR = {
  client: "10.201.1.2",
  nodeClientSide: "10.201.1.1",
  nodeBackendSide: "10.201.2.1",
  backend: "10.201.2.2",
  vipNet: "10.96.0.0/16",
} as const;

/** Node-side interface names (inside the node namespace). */
export const NODE_IF = { toClient: "cl", toBackend: "bk" } as const;

export const HTTP_PORT = 80;
export const IPERF_PORT = 5201;

export type Topology = {
  tag: string;
  client: string;
  node: string;
  backend: string;
  destroy(): Promise<void>;
};

/**
 * Creates the three namespaces and the links. Sysctls, all per namespace:
 * - node: ip_forward;
 * - client: the whole port range and tcp_tw_reuse, because a new-connection benchmark opens far
 *   more than 28k connections (the default range) within a TIME_WAIT period;
 * - backend: room for a burst of SYNs (somaxconn, syn backlog).
 */
export async function createTopology(): Promise<Topology> {
  const tag = randomTag();
  const names = { client: `sl4-${tag}-c`, node: `sl4-${tag}-n`, backend: `sl4-${tag}-b` };
  const created: string[] = [];
  const destroy = async (): Promise<void> => {
    for (const ns of created.reverse()) await run("ip", ["netns", "del", ns]).catch(() => undefined);
    created.length = 0;
  };
  try {
    for (const ns of [names.client, names.node, names.backend]) {
      await run("ip", ["netns", "add", ns]);
      created.push(ns);
      await run("ip", ["-n", ns, "link", "set", "lo", "up"]);
    }
    await run("ip", ["link", "add", "eth0", "netns", names.client, "type", "veth", "peer", "name", NODE_IF.toClient, "netns", names.node]);
    await run("ip", ["link", "add", "eth0", "netns", names.backend, "type", "veth", "peer", "name", NODE_IF.toBackend, "netns", names.node]);
    const addr = async (ns: string, dev: string, cidr: string) => {
      await run("ip", ["-n", ns, "addr", "add", cidr, "dev", dev]);
      await run("ip", ["-n", ns, "link", "set", dev, "up"]);
    };
    await addr(names.client, "eth0", `${ADDR.client}/24`);
    await addr(names.node, NODE_IF.toClient, `${ADDR.nodeClientSide}/24`);
    await addr(names.node, NODE_IF.toBackend, `${ADDR.nodeBackendSide}/24`);
    await addr(names.backend, "eth0", `${ADDR.backend}/24`);
    await run("ip", ["-n", names.client, "route", "add", "default", "via", ADDR.nodeClientSide]);
    await run("ip", ["-n", names.client, "route", "add", ADDR.vipNet, "via", ADDR.nodeClientSide]);
    await run("ip", ["-n", names.backend, "route", "add", "default", "via", ADDR.nodeBackendSide]);
    await run("sysctl", ["-qw", "net.ipv4.ip_forward=1"], { ns: names.node });
    await run("sysctl", ["-qw", "net.ipv4.ip_local_port_range=1024 65535", "net.ipv4.tcp_tw_reuse=1"], { ns: names.client });
    await run("sysctl", ["-qw", "net.core.somaxconn=8192", "net.ipv4.tcp_max_syn_backlog=8192"], { ns: names.backend });
    return { tag, ...names, destroy };
  } catch (err) {
    await destroy();
    throw err;
  }
}

export type Servers = { nginx: Proc; iperf: Proc; stop(): Promise<void> };

/** Waits until something listens on TCP `port` inside `ns`. */
async function listening(ns: string, port: number, proc: Proc, name: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const { stdout } = await run("ss", ["-Hltn", `sport = :${port}`], { ns });
    if (stdout.trim() !== "") return;
    const code = await Promise.race([proc.exited, sleep(50).then(() => "running" as const)]);
    if (code !== "running") throw new Error(`${name} exited (${code}) before listening on port ${port}: ${proc.stderr()}`);
    if (Date.now() > deadline) throw new Error(`${name} not listening on port ${port} after 10 s: ${proc.stderr()}`);
  }
}

/**
 * The backend's servers: nginx (one worker) answering 204 and closing the connection, the cheapest
 * complete TCP + HTTP exchange, so the new-connection rate measures connection setup through the
 * node; and `iperf3 -s` for throughput.
 */
export async function startServers(topo: Topology): Promise<Servers> {
  const dir = await mkdtemp(join(tmpdir(), "sluice-l4-nginx-"));
  // nginx workers run unprivileged and must reach the temp paths.
  await chmod(dir, 0o755);
  const conf = nginxMainConfig(dir, 1, `  server {
    listen ${ADDR.backend}:${HTTP_PORT} default_server backlog=8192;
    location / {
      return 204;
    }
  }`, { workerConnections: 16384, keepaliveTimeout: "0" });
  await writeFile(join(dir, "nginx.conf"), conf);
  const procs: Proc[] = [];
  const stop = async (): Promise<void> => {
    for (const p of procs.reverse()) await p.stop();
    procs.length = 0;
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const nginx = startIn(topo.backend, "/usr/sbin/nginx", ["-p", dir, "-c", join(dir, "nginx.conf"), "-e", join(dir, "error.log"), "-g", "daemon off;"]);
    procs.push(nginx);
    await listening(topo.backend, HTTP_PORT, nginx, "nginx");
    const iperf = startIn(topo.backend, "/usr/bin/iperf3", ["-s", "-B", ADDR.backend, "-p", String(IPERF_PORT)]);
    procs.push(iperf);
    await listening(topo.backend, IPERF_PORT, iperf, "iperf3 -s");
    return { nginx, iperf, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Service i's VIP (i from 0): 10.96.x.y, y in 1..250, so no VIP ends in .0 or .255. */
export function vipOf(i: number): string {
  if (!Number.isInteger(i) || i < 0 || i >= 250 * 256) throw new RangeError(`service index ${i} outside the 10.96.0.0/16 VIP range`);
  return `10.96.${Math.floor(i / 250)}.${(i % 250) + 1}`;
}
