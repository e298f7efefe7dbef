// `sluice run -f DIR`: flags, logging and signals around startRun.
import { Option, type Command } from "commander";
import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import { isIP } from "node:net";
import { Writable } from "node:stream";
import { pino, type Logger } from "pino";
import { startRun } from "./run.ts";
import { parseListen } from "../../datapath/echo/cli.ts";

interface RunFlags {
  filename: string[];
  address: string[];
  portOffset: string;
  workers: string;
  admin?: string;
  accessLog: boolean;
  logFormat: "text" | "json";
  ebpf: boolean;
  bpfPinDir?: string;
}

/** Log lines for people at a terminal: `time level message {fields}`; JSON stays available for machines. */
function textStream(out: NodeJS.WritableStream): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString("utf8").split("\n")) {
        if (!line) continue;
        const { time, level, msg, pid: _pid, hostname: _host, ...rest } = JSON.parse(line) as Record<string, unknown>;
        const lvl = typeof level === "number" ? (level >= 50 ? "ERROR" : level >= 40 ? "WARN " : level >= 30 ? "INFO " : "DEBUG") : String(level);
        const extra = Object.keys(rest).length ? ` ${JSON.stringify(rest)}` : "";
        out.write(`${new Date(Number(time)).toISOString().slice(11, 23)} ${lvl} ${String(msg)}${extra}\n`);
      }
      cb();
    },
  });
}

export function makeLogger(format: "text" | "json"): Logger {
  const level = process.env.SLUICE_LOG_LEVEL ?? "info";
  return format === "json" ? pino({ level }, pino.destination({ fd: 2, sync: true })) : pino({ level }, textStream(process.stderr));
}

export function registerRunCommand(program: Command, setCode: (c: number) => void): void {
  program
    .command("run")
    .description("Serve the Gateways in a folder of manifests on this machine (standalone mode); edits apply live")
    .requiredOption("-f, --filename <path...>", "manifest files or directories (YAML or JSON, multi-document)")
    .option("--address <ip...>", "addresses every Gateway is served on", ["127.0.0.1"])
    .option("--port-offset <n>", "serve listener port P on P+n (so ports below 1024 need no privilege)", "0")
    .option("--workers <n>", "proxy worker processes (default: one per core)", String(availableParallelism()))
    .option("--admin <host:port>", "admin endpoint: /metrics, /healthz, /readyz")
    .option("--no-access-log", "do not write JSON access log lines to stdout")
    .option("--no-ebpf", "do not start the eBPF datapath (TCPRoute and UDPRoute listeners are then not served)")
    .option("--bpf-pin-dir <dir>", "where the eBPF maps are pinned while running (default /sys/fs/bpf/sluice-run)")
    .addOption(new Option("--log-format <format>", "log format on stderr").choices(["text", "json"]).default("text"))
    .action(async (flags: RunFlags) => {
      const bad = flags.address.filter((a) => isIP(a) === 0);
      const offset = Number(flags.portOffset);
      const workers = Number(flags.workers);
      const admin = flags.admin ? parseListen(flags.admin) : undefined;
      const problems = [
        ...(bad.length ? [`--address needs IP addresses, got ${bad.join(", ")}`] : []),
        ...(!Number.isInteger(offset) || offset < 0 || offset > 65000 ? [`--port-offset must be an integer from 0 to 65000, got ${flags.portOffset}`] : []),
        ...(!Number.isInteger(workers) || workers < 1 ? [`--workers must be a positive integer, got ${flags.workers}`] : []),
        ...(flags.admin && !admin ? [`--admin must be host:port, got ${flags.admin}`] : []),
        ...(flags.bpfPinDir !== undefined && !flags.bpfPinDir.startsWith("/") ? [`--bpf-pin-dir must be an absolute path, got ${flags.bpfPinDir}`] : []),
        // A mistyped folder would otherwise serve nothing, quietly, until someone created it.
        ...flags.filename.filter((f) => !existsSync(f)).map((f) => `-f ${f}: no such file or directory`),
      ];
      if (problems.length) {
        for (const p of problems) process.stderr.write(`sluice run: ${p}\n`);
        setCode(2);
        return;
      }
      const log = makeLogger(flags.logFormat);
      // Signals are handled from the start: a Ctrl-C while starting must still detach the eBPF
      // programs and remove the pins, not leave them on the host.
      let signalled: string | undefined;
      let onSignal: (sig: string) => void = (sig) => void (signalled = sig);
      process.once("SIGINT", () => onSignal("SIGINT"));
      process.once("SIGTERM", () => onSignal("SIGTERM"));
      const running = await startRun({
        paths: flags.filename, addresses: flags.address, portOffset: offset, workers, accessLog: flags.accessLog, log,
        l4: flags.ebpf,
        ...(flags.bpfPinDir ? { bpfPinDir: flags.bpfPinDir } : {}),
        ...(admin ? { admin } : {}),
      });
      const stopped = new Promise<void>((resolve) => {
        onSignal = (sig) => {
          log.info(`${sig}: draining connections`);
          void running.stop().then(resolve);
        };
      });
      if (signalled) onSignal(signalled);
      else {
        void running.ready.then(() => {
          if (signalled === undefined) log.info(`ready: config version ${running.version()}${admin ? `, admin on http://${admin.host}:${running.adminAddress()?.port ?? admin.port}` : ""}`);
        });
      }
      await stopped;
    });
}
