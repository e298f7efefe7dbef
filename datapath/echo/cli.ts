// `sluice echo`: runs the echo backend as a process, for the standalone demo and manual checks.
import { readFile } from "node:fs/promises";
import { Option } from "commander";
import type { Command } from "commander";
// echo.ts is imported when the command runs: it brings gRPC, which other commands must not load.
import type { EchoMode, EchoTlsOptions } from "./echo.ts";

const MODES: readonly EchoMode[] = ["http", "tls", "grpc", "tcp", "udp"];

interface EchoCommandOptions {
  mode: EchoMode;
  listen: string;
  pod?: string;
  namespace?: string;
  service?: string;
  cert?: string;
  key?: string;
  ca?: string;
  requestCert: boolean;
}

/** "host:port", "[v6]:port" or ":port" (all addresses). Undefined when malformed. */
export function parseListen(s: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(s);
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  return { host: m[1] ?? (m[2] || "0.0.0.0"), port };
}

export function registerEchoCommand(program: Command): void {
  const cmd: Command = program
    .command("echo")
    .description("Run an echo backend that answers with what it received (like the conformance suite's echo-basic)")
    .addOption(new Option("--mode <mode>", "protocol to serve").choices(MODES).makeOptionMandatory())
    .requiredOption("--listen <host:port>", "address to listen on (port 0 picks a free one)")
    .option("--pod <name>", "pod name to report (default: env POD_NAME)")
    .option("--namespace <name>", "namespace to report (default: env NAMESPACE)")
    .option("--service <name>", "service name to report (default: env SERVICE_NAME)")
    .option("--cert <file>", "PEM certificate (mode tls)")
    .option("--key <file>", "PEM private key (mode tls)")
    .option("--ca <file>", "PEM CA bundle to verify client certificates with, when given (mode tls)")
    .option("--request-cert", "ask clients for a certificate and report it (mode tls)", false);

  cmd.action(async (opts: EchoCommandOptions) => {
    const addr = parseListen(opts.listen);
    if (!addr) cmd.error(`sluice echo: --listen needs host:port, got ${opts.listen}`, { exitCode: 2 });
    let tls: EchoTlsOptions | undefined;
    if (opts.mode === "tls") {
      if (!opts.cert || !opts.key) cmd.error("sluice echo: --mode tls needs --cert and --key", { exitCode: 2 });
      tls = {
        cert: await readFile(opts.cert, "utf8"),
        key: await readFile(opts.key, "utf8"),
        ...(opts.ca ? { ca: await readFile(opts.ca, "utf8") } : {}),
        requestCert: opts.requestCert,
      };
    }
    const { startEcho } = await import("./echo.ts");
    const server = await startEcho({
      mode: opts.mode,
      host: addr.host,
      port: addr.port,
      identity: {
        ...(opts.pod !== undefined ? { pod: opts.pod } : {}),
        ...(opts.namespace !== undefined ? { namespace: opts.namespace } : {}),
        ...(opts.service !== undefined ? { service: opts.service } : {}),
      },
      ...(tls ? { tls } : {}),
    });
    const host = server.address.includes(":") ? `[${server.address}]` : server.address;
    process.stdout.write(`echo ${opts.mode} listening on ${host}:${server.port}\n`);
    // Keep the action pending until a signal, so the caller's parseAsync returns only at shutdown.
    await new Promise<void>((resolve) => {
      const stop = (): void => {
        process.off("SIGINT", stop);
        process.off("SIGTERM", stop);
        void server.close().then(resolve);
      };
      process.on("SIGINT", stop);
      process.on("SIGTERM", stop);
    });
  });
}
