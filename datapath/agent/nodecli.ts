// `sluice agent run`: the node agent of the datapath DaemonSet (flags, credentials, signals).
import { readFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { hostname } from "node:os";
import { Option, type Command } from "commander";
import { DEFAULT_PIN_DIR } from "../bpf/datapath.ts";
import { DEFAULT_MAGLEV_TABLE_SIZE, SUPPORTED_MAGLEV_TABLE_SIZES } from "../../operator/translate/maglev.ts";
import { parseListen } from "../echo/cli.ts";
import { makeLogger } from "../../operator/run/cli.ts";

interface NodeFlags {
  operator: string;
  node?: string;
  tokenFile?: string;
  ca?: string;
  cert?: string;
  key?: string;
  serverName?: string;
  listenAddress: string;
  portOffset: string;
  workers: string;
  accessLog: boolean;
  ebpf: boolean;
  interface: string[];
  pinDir: string;
  maglevSize: string;
  proxyAddress?: string;
  snat: boolean;
  admin: string;
  logFormat: "text" | "json";
}

export function registerNodeAgentCommand(agent: Command, setCode: (c: number) => void): void {
  agent
    .command("run")
    .description("Run the node agent: apply the operator's datapath stream to this node's proxy and eBPF datapath")
    .requiredOption("--operator <host:port>", "the operator's distribution endpoint")
    .option("--node <name>", "this node's name (default: NODE_NAME, then the host name)")
    .option("--token-file <file>", "ServiceAccount token presented to the operator, re-read on every reconnect")
    .option("--ca <file>", "CA that signed the operator's certificate (without it the stream is plaintext, loopback only)")
    .option("--cert <file>", "client certificate for mTLS")
    .option("--key <file>", "its private key")
    .option("--server-name <name>", "name to check the operator's certificate against (when dialling an IP)")
    .option("--listen-address <ip>", "where the proxy listens for every Gateway port", "0.0.0.0")
    .option("--port-offset <n>", "serve listener port P on P+n", "0")
    .option("--workers <n>", "proxy worker processes", "1")
    .option("--no-access-log", "no per-request access log")
    .option("--no-ebpf", "do not start the eBPF datapath (TCPRoute and UDPRoute are then not served)")
    .option("--interface <ifname...>", "attach the eBPF programs to these interfaces", [])
    .option("--pin-dir <dir>", "where the maps are pinned (kept across restarts)", DEFAULT_PIN_DIR)
    .option("--maglev-size <m>", `Maglev table size (one of ${SUPPORTED_MAGLEV_TABLE_SIZES.join(", ")})`, String(DEFAULT_MAGLEV_TABLE_SIZE))
    .option("--proxy-address <ip>", "this node's address the proxy is reached on: L7 listeners on Gateway addresses are steered to it")
    .option("--no-snat", "never SNAT (default: SNAT backends reached through a gateway)")
    .option("--admin <host:port>", "operations endpoint: /healthz, /readyz, /metrics", "0.0.0.0:9902")
    .addOption(new Option("--log-format <format>", "log format on stderr").choices(["text", "json"]).default("json"))
    .action(async (flags: NodeFlags) => {
      const offset = Number(flags.portOffset);
      const workers = Number(flags.workers);
      const m = Number(flags.maglevSize);
      const admin = parseListen(flags.admin);
      const target = parseListen(flags.operator);
      const problems = [
        ...(!target ? [`--operator must be host:port, got ${flags.operator}`] : []),
        ...(!admin ? [`--admin must be host:port, got ${flags.admin}`] : []),
        ...(isIP(flags.listenAddress) === 0 ? [`--listen-address needs an IP address, got ${flags.listenAddress}`] : []),
        ...(flags.proxyAddress !== undefined && isIP(flags.proxyAddress) === 0 ? [`--proxy-address needs an IP address, got ${flags.proxyAddress}`] : []),
        ...(!Number.isInteger(offset) || offset < 0 || offset > 65000 ? [`--port-offset must be an integer from 0 to 65000, got ${flags.portOffset}`] : []),
        ...(!Number.isInteger(workers) || workers < 1 ? [`--workers must be a positive integer, got ${flags.workers}`] : []),
        ...(!SUPPORTED_MAGLEV_TABLE_SIZES.includes(m) ? [`--maglev-size must be one of ${SUPPORTED_MAGLEV_TABLE_SIZES.join(", ")}, got ${flags.maglevSize}`] : []),
        ...(!flags.pinDir.startsWith("/") ? [`--pin-dir must be an absolute path, got ${flags.pinDir}`] : []),
        ...((flags.cert === undefined) !== (flags.key === undefined) ? ["--cert and --key go together"] : []),
        ...(flags.cert && !flags.ca ? ["--cert needs --ca"] : []),
        ...(!flags.ca && target && !isLoopback(target.host) ? [`a plaintext stream is for loopback only: give --ca to reach ${flags.operator}`] : []),
      ];
      let ca: Buffer | undefined;
      let cert: Buffer | undefined;
      let key: Buffer | undefined;
      try {
        if (flags.ca) ca = readFileSync(flags.ca);
        if (flags.cert) cert = readFileSync(flags.cert);
        if (flags.key) key = readFileSync(flags.key);
        if (flags.tokenFile) readFileSync(flags.tokenFile);
      } catch (err) {
        problems.push((err as Error).message);
      }
      if (problems.length || !target || !admin) {
        for (const p of problems) process.stderr.write(`sluice agent run: ${p}\n`);
        setCode(2);
        return;
      }
      // Loaded here, not at the top: `sluice agent diff|apply` must not pay for gRPC and the proxy.
      const grpc = await import("@grpc/grpc-js");
      const { startNodeAgent } = await import("./node.ts");
      const log = makeLogger(flags.logFormat);
      const tokenFile = flags.tokenFile;
      let signalled: string | undefined;
      let onSignal: (sig: string) => void = (sig) => void (signalled = sig);
      process.once("SIGINT", () => onSignal("SIGINT"));
      process.once("SIGTERM", () => onSignal("SIGTERM"));
      const node = await startNodeAgent({
        target: `${target.host.includes(":") ? `[${target.host}]` : target.host}:${target.port}`,
        credentials: ca ? grpc.credentials.createSsl(ca, key ?? null, cert ?? null) : grpc.credentials.createInsecure(),
        ...(flags.serverName ? { channelOptions: { "grpc.ssl_target_name_override": flags.serverName } } : {}),
        ...(tokenFile ? { token: async () => (await readFile(tokenFile, "utf8")).trim() } : {}),
        node: flags.node ?? process.env.NODE_NAME ?? hostname(),
        listenAddress: flags.listenAddress, portOffset: offset, workers, accessLog: flags.accessLog,
        l4: {
          enabled: flags.ebpf, interfaces: flags.interface, pinDir: flags.pinDir, maglevSize: m, snat: flags.snat,
          ...(flags.proxyAddress ? { proxyAddress: flags.proxyAddress } : {}),
        },
        admin, log,
      });
      log.info(`node agent started: stream to ${flags.operator}, admin on http://${admin.host}:${node.adminAddress()?.port ?? admin.port}`);
      await new Promise<void>((resolve) => {
        onSignal = (sig) => {
          log.info(`${sig}: draining; the eBPF programs and maps stay for the next agent`);
          void node.stop().then(resolve);
        };
        if (signalled) onSignal(signalled);
      });
    });
}

function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || host.startsWith("127.");
}
