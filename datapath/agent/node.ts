// The node agent (`sluice agent run`), one per node in the datapath DaemonSet: it subscribes to
// the operator's distribution stream and applies every update to this node's L7 proxy and eBPF
// datapath, acknowledging only when both took it (a NACK otherwise, which keeps the Gateway from
// turning Programmed on a config this node does not serve).
import http from "node:http";
import type * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import { proxyConfigFrom } from "../proxy/config.ts";
import { startDataplane, type Dataplane } from "../proxy/workers.ts";
import { subscribe, type DatapathUpdate, type Subscription, type SubscriptionState } from "./subscribe.ts";
import { startL4, type L4Host } from "./host.ts";
import { routeSnat } from "./snat.ts";

export interface NodeAgentOptions {
  /** `host:port` of the operator's distribution endpoint. */
  target: string;
  credentials: grpc.ChannelCredentials;
  channelOptions?: grpc.ChannelOptions;
  /** The ServiceAccount token, read again on every reconnect (projected tokens rotate). */
  token?: () => Promise<string> | string;
  node: string;
  /** The proxy binds every Gateway's ports here (the node's addresses; default 0.0.0.0). */
  listenAddress: string;
  portOffset: number;
  workers: number;
  accessLog: boolean;
  l4: {
    enabled: boolean;
    /** Interfaces the eBPF programs are attached to; none = no eBPF datapath. */
    interfaces: string[];
    pinDir: string;
    maglevSize?: number;
    /** A node address the proxy listens on: L7 listeners on Gateway addresses are steered to it. */
    proxyAddress?: string;
    /** SNAT backends reached through a gateway, so their replies come back through this node. */
    snat: boolean;
  };
  admin?: { host: string; port: number };
  log: Logger;
}

export interface NodeAgent {
  state(): SubscriptionState;
  /** The admin endpoint's address, when enabled. */
  adminAddress(): { host: string; port: number } | undefined;
  /**
   * Stops serving. The eBPF programs and maps stay (traffic keeps flowing until the next agent
   * adopts them); the proxy drains for `graceMs`.
   */
  stop(graceMs?: number): Promise<void>;
}

export async function startNodeAgent(o: NodeAgentOptions): Promise<NodeAgent> {
  const { log } = o;
  const dataplane: Dataplane = await startDataplane({ workers: o.workers, accessLog: o.accessLog });
  const l4: L4Host = startL4({
    log, portOffset: o.portOffset, enabled: o.l4.enabled && o.l4.interfaces.length > 0, pinDir: o.l4.pinDir,
    interfaces: o.l4.interfaces, keepOnClose: true, steerL7: o.l4.proxyAddress !== undefined,
    ...(o.l4.maglevSize ? { maglevSize: o.l4.maglevSize } : {}),
    agent: {
      dropUnknownPorts: true,
      ...(o.l4.proxyAddress !== undefined ? { l7Proxy: proxySteering(o.l4.proxyAddress, o.portOffset) } : {}),
      ...(o.l4.snat ? { snatFor: routeSnat() } : {}),
    },
  });
  let applied = 0;

  const apply = async (u: DatapathUpdate): Promise<void> => {
    const proxy = await dataplane.apply(proxyConfigFrom(u.config, u.version, { portOffset: o.portOffset, address: o.listenAddress }));
    if (proxy.errors.length) {
      const why = proxy.errors.map((e) => `${e.binding}: ${e.message}`).join("; ");
      log.error(`config version ${u.version} not served: ${why}`);
      throw new Error(`the proxy could not open ${why}`);
    }
    if (!(await l4.apply(u.version, u.config))) throw new Error("the eBPF datapath could not apply it (see the agent's log)");
    applied = u.version;
    log.info({ version: u.version, changed: u.changed, removed: u.removed }, `config version ${u.version} applied`);
  };

  const subscription: Subscription = subscribe({
    target: o.target, credentials: o.credentials, node: o.node, apply, log: log.child({ component: "subscribe" }),
    ...(o.token ? { token: o.token } : {}),
    ...(o.channelOptions ? { channelOptions: o.channelOptions } : {}),
  });

  const admin = o.admin ? await startAdmin(o.admin, {
    healthy: () => subscription.state().status !== "closed",
    // Ready once a config from the operator is served: a node that never heard from it must not take traffic.
    ready: () => applied > 0,
    metrics: async () => `${await dataplane.metrics()}\n${await l4.metrics()}`,
  }) : undefined;

  return {
    state: () => subscription.state(),
    adminAddress: () => admin?.address,
    async stop(graceMs = 10_000) {
      subscription.close();
      await admin?.close();
      await dataplane.close(graceMs);
      await l4.close();
    },
  };
}

/** L7 listeners on Gateway addresses are DNATed to the node's proxy on the same (offset) port. */
function proxySteering(proxyAddress: string, portOffset: number): (address: string, port: number) => { address: string; port: number } {
  return (_address, port) => ({ address: proxyAddress, port: port + portOffset });
}

interface Admin {
  address: { host: string; port: number };
  close(): Promise<void>;
}

async function startAdmin(at: { host: string; port: number }, h: { healthy: () => boolean; ready: () => boolean; metrics: () => Promise<string> }): Promise<Admin> {
  const server = http.createServer((req, res) => {
    const answer = (code: number, body: string, type = "text/plain"): void => void res.writeHead(code, { "content-type": type }).end(body);
    if (req.url === "/healthz") return answer(h.healthy() ? 200 : 503, h.healthy() ? "ok\n" : "stream closed\n");
    if (req.url === "/readyz") return answer(h.ready() ? 200 : 503, h.ready() ? "ok\n" : "no config from the operator yet\n");
    if (req.url === "/metrics") {
      h.metrics().then((m) => answer(200, m, "text/plain; version=0.0.4"), (err: unknown) => answer(500, `${(err as Error).message}\n`));
      return;
    }
    answer(404, "not found\n");
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(at.port, at.host, () => resolve());
  });
  const addr = server.address();
  const port = addr && typeof addr === "object" ? addr.port : at.port;
  return {
    address: { host: at.host, port },
    close: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}
