// The `sluice` command line. Each command's module is loaded only when that command runs (all of
// them for help): the operator's Kubernetes client alone adds ~85 MB that `sluice run` must not pay.
import { readFileSync } from "node:fs";
import { Command } from "commander";

type Register = (program: Command, setCode: (c: number) => void) => void;

const COMMANDS: Record<string, () => Promise<Register>> = {
  render: async () => (await import("./render/cli.ts")).registerRenderCommand,
  run: async () => (await import("./run/cli.ts")).registerRunCommand,
  operator: async () => (await import("./host/cli.ts")).registerOperatorCommand,
  agent: async () => (await import("../datapath/agent/cli.ts")).registerAgentCommand,
  echo: async () => (await import("../datapath/echo/cli.ts")).registerEchoCommand,
};

export async function main(argv: string[]): Promise<number> {
  const { version } = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string };
  const program = new Command("sluice")
    .description("Sluice: a Kubernetes Gateway API implementation (operator, eBPF L4 datapath, L7 proxy)")
    .version(version)
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  let code = 0;
  const setCode = (c: number): void => void (code = c);

  const named = argv.find((a) => !a.startsWith("-"));
  const wanted = named !== undefined && named in COMMANDS ? [named] : Object.keys(COMMANDS);
  for (const name of wanted) (await (COMMANDS[name] as () => Promise<Register>)())(program, setCode);

  try {
    await program.parseAsync(argv, { from: "user" });
  } catch (err) {
    const e = err as { exitCode?: number; code?: string };
    if (e.code === "commander.helpDisplayed" || e.code === "commander.version" || e.code === "commander.help") return 0;
    return typeof e.exitCode === "number" ? e.exitCode : 1;
  }
  return code;
}
