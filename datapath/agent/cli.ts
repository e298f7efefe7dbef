// `sluice agent diff|apply -f DIR`: the L4 agent by hand (`sluice agent run`, the node agent fed
// by the operator, is in nodecli.ts). Translates the manifests the way
// `sluice run` does, then prints the map operations that would bring the pinned maps there
// (diff, nothing written) or applies them once (apply, root).
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { isIP } from "node:net";
import type { Command } from "commander";
import { readManifests } from "../../operator/sources/folder.ts";
import { snapshotOf } from "../../operator/store/snapshot.ts";
import { translate } from "../../operator/translate/translate.ts";
import { DEFAULT_MAGLEV_TABLE_SIZE, SUPPORTED_MAGLEV_TABLE_SIZES } from "../../operator/translate/maglev.ts";
import type { DatapathConfig } from "../../operator/translate/output.ts";
import type { LbMaps } from "../bpf/state.ts";
import { DEFAULT_PIN_DIR, datapathUnavailable, openDatapath, type Datapath } from "../bpf/datapath.ts";
import { L4Agent, type L4AgentOptions } from "./agent.ts";
import { formatOps } from "./diff.ts";
import { MemoryMaps } from "./memmaps.ts";
import { noSnat, routeSnat } from "./snat.ts";
import { registerNodeAgentCommand } from "./nodecli.ts";

interface AgentFlags {
  filename: string[];
  address: string[];
  portOffset: string;
  pinDir: string;
  maglevSize: string;
  proxy?: string;
  proxyPortOffset: string;
  snat: boolean;
  attach?: string[];
}

/** The version a config is applied as: derived from the Gateways' config hashes, so the same manifests apply as the same version. */
export function versionOf(config: DatapathConfig): string {
  const h = createHash("sha256");
  for (const g of config.gateways) h.update(`${g.gateway}=${g.configHash}\n`);
  return h.digest("hex").slice(0, 16);
}

export function registerAgentCommand(program: Command, setCode: (c: number) => void): void {
  const agent = program.command("agent").description("The node agent: run it against the operator's stream, or show/apply the eBPF map changes for a folder of manifests");
  registerNodeAgentCommand(agent, setCode);
  const common = (c: Command): Command =>
    c
      .requiredOption("-f, --filename <path...>", "manifest files or directories (YAML or JSON, multi-document)")
      .option("--address <ip...>", "addresses every Gateway is served on", ["127.0.0.1"])
      .option("--port-offset <n>", "serve listener port P on P+n", "0")
      .option("--pin-dir <dir>", "where the maps are pinned", DEFAULT_PIN_DIR)
      .option("--maglev-size <m>", `Maglev table size (one of ${SUPPORTED_MAGLEV_TABLE_SIZES.join(", ")})`, String(DEFAULT_MAGLEV_TABLE_SIZE))
      .option("--proxy <ip>", "steer L7 listeners (HTTP, HTTPS, TLS) to the local proxy on this address")
      .option("--proxy-port-offset <n>", "the proxy serves L7 port P on P+n", "0")
      .option("--no-snat", "never SNAT (default: SNAT backends reached via a gateway to the route's source address)");

  common(agent.command("diff"))
    .description("Print the map operations the agent would apply, without applying them")
    .action(async (flags: AgentFlags) => {
      setCode(await run("diff", flags));
    });
  common(agent.command("apply"))
    .description("Apply the map operations once (root); the programs stay attached and the maps pinned")
    .option("--attach <ifname...>", "also attach the programs to these interfaces")
    .action(async (flags: AgentFlags) => {
      setCode(await run("apply", flags));
    });
}

async function run(mode: "diff" | "apply", flags: AgentFlags): Promise<number> {
  const err = (s: string): void => void process.stderr.write(`sluice agent ${mode}: ${s}\n`);
  const offset = Number(flags.portOffset);
  const proxyOffset = Number(flags.proxyPortOffset);
  const m = Number(flags.maglevSize);
  const problems = [
    ...flags.address.filter((a) => isIP(a) === 0).map((a) => `--address needs IP addresses, got ${a}`),
    ...(!Number.isInteger(offset) || offset < 0 || offset > 65000 ? [`--port-offset must be an integer from 0 to 65000, got ${flags.portOffset}`] : []),
    ...(!Number.isInteger(proxyOffset) || proxyOffset < 0 || proxyOffset > 65000 ? [`--proxy-port-offset must be an integer from 0 to 65000, got ${flags.proxyPortOffset}`] : []),
    ...(!SUPPORTED_MAGLEV_TABLE_SIZES.includes(m) ? [`--maglev-size must be one of ${SUPPORTED_MAGLEV_TABLE_SIZES.join(", ")}, got ${flags.maglevSize}`] : []),
    ...(flags.proxy !== undefined && isIP(flags.proxy) === 0 ? [`--proxy needs an IP address, got ${flags.proxy}`] : []),
    ...(!flags.pinDir.startsWith("/") ? [`--pin-dir must be an absolute path, got ${flags.pinDir}`] : []),
  ];
  if (problems.length) {
    for (const p of problems) err(p);
    return 2;
  }
  const parsed = await readManifests(flags.filename);
  for (const e of parsed.errors) process.stderr.write(`${e.file}:${e.line}:${e.column}: ${e.message}\n`);
  if (parsed.errors.length) return 1;
  const result = translate(snapshotOf(parsed.objects.map((p) => p.object)), {
    addressing: { mode: "static", addresses: flags.address },
    maglevTableSize: m,
    assumeAcknowledged: true,
  });
  for (const w of result.warnings) err(`warning: ${w}`);
  const config = result.datapath;
  const proxy = flags.proxy;
  const opts: L4AgentOptions = {
    portOffset: offset,
    snatFor: flags.snat ? routeSnat({ onError: (a, msg) => err(`warning: no route to backend ${a}: ${msg}`) }) : noSnat,
    ...(proxy ? { l7Proxy: (_a: string, port: number) => ({ address: proxy, port: port + proxyOffset }) } : {}),
  };

  const why = datapathUnavailable();
  let maps: LbMaps;
  let dp: Datapath | undefined;
  if (mode === "diff" && (why || !existsSync(flags.pinDir))) {
    // Reading real maps needs root; without them the diff is against empty maps, which is still what a first apply would write.
    err(`${why ? `cannot read the maps (${why})` : `no maps pinned in ${flags.pinDir}`}: showing the diff against empty maps`);
    maps = new MemoryMaps({ maglevSize: m });
  } else if (why) {
    err(`the eBPF datapath is unavailable: ${why}`);
    return 1;
  } else {
    try {
      dp = await openDatapath({ pinDir: flags.pinDir, maglevSize: m });
      maps = dp;
    } catch (e) {
      err((e as Error).message);
      return 1;
    }
  }
  try {
    const agent = new L4Agent(maps, opts);
    const version = versionOf(config);
    const { ops, problems: issues } = await agent.plan(version, config);
    for (const p of issues) err(`warning: ${p}`);
    await agent.adopt();
    process.stdout.write(formatOps(ops, agent.current()));
    if (mode === "diff") {
      err(`${ops.length} operation${ops.length === 1 ? "" : "s"} (not applied)`);
      return 0;
    }
    const r = await agent.apply(version, config);
    for (const ifname of flags.attach ?? []) await dp?.attach(ifname);
    err(`applied ${r.ops} operation${r.ops === 1 ? "" : "s"}; the maps hold version ${r.version}${flags.attach?.length ? `; attached to ${flags.attach.join(", ")}` : ""}`);
    return 0;
  } catch (e) {
    err((e as Error).message);
    return 1;
  } finally {
    await maps.close().catch(() => undefined);
  }
}
