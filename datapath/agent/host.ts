// The L4 datapath of a host process. In `sluice run` (standalone) clients, proxy and backends are
// all on this host, so the programs go on `lo` (both directions of every flow pass its ingress),
// frontends are served on address:port+offset like the proxy's listeners, and the kernel side
// starts with the first TCP/UDP listener, so HTTP-only configs never touch eBPF. The node agent
// (`sluice agent run`) attaches to the node's interfaces, steers L7 listeners to its proxy, and
// leaves programs and maps in place when it stops, so traffic flows on while it restarts.
import type { Logger } from "pino";
import type { DatapathConfig } from "../../operator/translate/output.ts";
import { datapathUnavailable, openDatapath, removePinned, type Datapath } from "../bpf/datapath.ts";
import { L4Agent, type L4AgentOptions } from "./agent.ts";

export const DEFAULT_RUN_PIN_DIR = "/sys/fs/bpf/sluice-run";

export interface L4HostOptions {
  log: Logger;
  portOffset: number;
  /** false: never start the eBPF datapath (L4 listeners are then not served). */
  enabled: boolean;
  pinDir?: string;
  maglevSize?: number;
  /** Interfaces the programs are attached to (default lo). */
  interfaces?: string[];
  /** How desired state is built (default: standalone — no L7 frontends, unknown ports not dropped, no SNAT). */
  agent?: Pick<L4AgentOptions, "l7Proxy" | "dropUnknownPorts" | "snatFor">;
  /** Start the datapath for L7 listeners too (they are steered to the proxy), not only for TCP/UDP ones. */
  steerL7?: boolean;
  /** close() leaves the programs attached and the maps pinned (node agent: traffic outlives a restart). */
  keepOnClose?: boolean;
}

export interface L4Host {
  /** Applies the L4 part; false when it failed (its Gateways must not be acknowledged). */
  apply(version: number, config: DatapathConfig): Promise<boolean>;
  /** The agent's Prometheus metrics ("" before the datapath started). */
  metrics(): Promise<string>;
  /** Detaches the programs, closes the maps and removes their pins. */
  close(): Promise<void>;
}

export function startL4(opts: L4HostOptions): L4Host {
  const { log } = opts;
  const pinDir = opts.pinDir ?? DEFAULT_RUN_PIN_DIR;
  const ifaces = opts.interfaces ?? ["lo"];
  const iface = ifaces.join(", ");
  let running: { dp: Datapath; agent: L4Agent } | undefined;
  let off: string | undefined = opts.enabled ? undefined : "the eBPF datapath is disabled (--no-ebpf)";
  let warned = false;
  let shown = new Set<string>();
  let problems = new Set<string>();
  let closed = false;

  const start = async (): Promise<{ dp: Datapath; agent: L4Agent } | undefined> => {
    if (running) return running;
    off ??= datapathUnavailable();
    if (off) return undefined;
    let dp: Datapath | undefined;
    try {
      dp = await openDatapath({ pinDir, ...(opts.maglevSize ? { maglevSize: opts.maglevSize } : {}) });
      for (const i of ifaces) await dp.attach(i);
    } catch (err) {
      off = `starting the eBPF datapath failed: ${(err as Error).message}`;
      await dp?.close().catch(() => undefined);
      return undefined;
    }
    // Standalone addresses are the host's own (the proxy, the admin endpoint and backends may
    // share them), so unknown ports on them are not dropped.
    running = { dp, agent: new L4Agent(dp, { portOffset: opts.portOffset, dropUnknownPorts: false, ...opts.agent }) };
    log.info(`eBPF datapath attached to ${iface} (maps pinned in ${pinDir}${dp.adopted ? ", adopted" : ""})`);
    return running;
  };

  return {
    async apply(version, config) {
      if (closed) return true;
      const wanted = config.gateways.some((g) => g.l4.length > 0 || (opts.steerL7 === true && g.ports.length > 0));
      if (!running && !wanted) return true;
      const r = await start();
      if (!r) {
        if (wanted && !warned) {
          warned = true;
          log.warn(`L4 routes (TCPRoute/UDPRoute) are unavailable: ${off ?? "unknown reason"}; the other listeners are served`);
        }
        return true;
      }
      try {
        const res = await r.agent.apply(String(version), config);
        const now = new Set(res.problems);
        for (const p of now) if (!problems.has(p)) log.warn(`L4: ${p}`);
        problems = now;
        const lines = new Set<string>();
        for (const g of config.gateways) {
          for (const s of g.l4) {
            const at = s.frontends.map((f) => `${f.address}:${f.port + opts.portOffset}`).join(", ");
            lines.add(s.maglev.length ? `serving ${s.protocol} ${s.id} on ${at} (eBPF, ${s.backends.filter((b) => b.state === "active").length} backends)` : `${s.protocol} ${s.id} on ${at} has no ready backend: its traffic is not forwarded`);
          }
        }
        for (const l of lines) if (!shown.has(l)) log.info(l);
        shown = lines;
        log.debug({ version, ops: res.ops }, "L4 maps updated");
        return true;
      } catch (err) {
        log.error(`L4 apply of config version ${version} failed: ${(err as Error).message}`);
        return false;
      }
    },
    async metrics() {
      return running ? running.agent.registry.metrics() : "";
    },
    async close() {
      closed = true;
      const r = running;
      running = undefined;
      if (!r) return;
      if (opts.keepOnClose) return void (await r.dp.close().catch(() => undefined));
      try {
        for (const i of ifaces) await r.dp.detach(i);
        await r.dp.close().catch(() => undefined);
      } catch (err) {
        // A terminal's Ctrl-C signals the whole process group, co-process included: detach
        // through a fresh one on the same pins rather than leave the programs on lo.
        await r.dp.close().catch(() => undefined);
        try {
          const again = await openDatapath({ pinDir, ...(opts.maglevSize ? { maglevSize: opts.maglevSize } : {}) });
          try {
            for (const i of ifaces) await again.detach(i);
          } finally {
            await again.close();
          }
        } catch (err2) {
          log.warn(`detaching the eBPF programs from ${iface} failed: ${(err as Error).message}; ${(err2 as Error).message}`);
        }
      }
      await removePinned(pinDir).catch((err: unknown) => log.warn(`removing ${pinDir} failed: ${(err as Error).message}`));
    },
  };
}
