// `sluice render -f DIR`: translate manifests once and print everything the pipeline would produce.
import { Option, type Command } from "commander";
import { isIP } from "node:net";
import { readManifests } from "../sources/folder.ts";
import { formatDocument, renderDocument } from "./render.ts";

export function registerRenderCommand(program: Command, setCode: (c: number) => void): void {
  program
    .command("render")
    .description("Translate manifests and print statuses, generated objects, DNS records and datapath state")
    .requiredOption("-f, --filename <path...>", "manifest files or directories (YAML or JSON, multi-document)")
    .addOption(new Option("-o, --output <format>", "output format").choices(["yaml", "json"]).default("yaml"))
    .option("--address <ip...>", "addresses the Gateways are served on (the standalone view)", ["127.0.0.1"])
    .option("--cluster", "the in-cluster view: addresses come from the generated Services' status", false)
    .option("--dns-owner-id <id>", "external-dns TXT owner id", "sluice")
    .action(async (opts: { filename: string[]; output: "yaml" | "json"; address: string[]; cluster: boolean; dnsOwnerId: string }) => {
      const bad = opts.address.filter((a) => isIP(a) === 0);
      if (bad.length) {
        process.stderr.write(`sluice render: --address needs IP addresses, got ${bad.join(", ")}\n`);
        setCode(2);
        return;
      }
      const parsed = await readManifests(opts.filename);
      for (const e of parsed.errors) process.stderr.write(`${e.file}:${e.line}:${e.column}: ${e.message}\n`);
      if (parsed.errors.length) {
        setCode(1);
        return;
      }
      const doc = renderDocument(parsed, {
        addressing: opts.cluster ? { mode: "service" } : { mode: "static", addresses: opts.address },
        assumeAcknowledged: true,
        dnsOwnerId: opts.dnsOwnerId,
      });
      process.stdout.write(formatDocument(doc, opts.output));
    });
}
