// `sluice agent diff|apply` as a user runs them (a child process per command).
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { datapathUnavailable, removePinned } from "../bpf/datapath.ts";
import { l4Yaml } from "./testkit.ts";

const main = `
import { Command } from "commander";
import { registerAgentCommand } from ${JSON.stringify(new URL("./cli.ts", import.meta.url).href)};
let code = 0;
const program = new Command("sluice").exitOverride();
registerAgentCommand(program, (c) => (code = c));
try { await program.parseAsync(process.argv.slice(1), { from: "user" }); } catch (e) { code = e.exitCode ?? 1; }
process.exitCode = code;
`;

function sluice(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ["--input-type=module", "-e", main, "--", ...args], { timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

describe("sluice agent", () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "sluice-agent-cli-"));
    writeFileSync(join(dir, "l4.yaml"), l4Yaml({
      tcp: { port: 9000, backends: [{ name: "a", endpoints: [{ address: "127.0.0.1", port: 8080 }, { address: "127.0.0.2", port: 8080 }] }] },
      udp: { port: 9001, backends: [{ name: "u", endpoints: [{ address: "127.0.0.3", port: 53 }] }] },
    }));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("run: refuses a plaintext stream to a remote operator and other bad flags, saying why", async () => {
    const r = await sluice(["agent", "run", "--operator", "10.0.0.1:9000", "--listen-address", "nope", "--cert", "c.pem"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /a plaintext stream is for loopback only: give --ca/);
    assert.match(r.stderr, /--listen-address needs an IP address, got nope/);
    assert.match(r.stderr, /--cert and --key go together/);
  });

  it("diff prints what a first apply would write when no maps are pinned, and writes nothing", async () => {
    const pinDir = `/sys/fs/bpf/sluice-agent-cli-none-${process.pid}`;
    const r = await sluice(["agent", "diff", "-f", dir, "--address", "127.0.0.50", "--maglev-size", "251", "--pin-dir", pinDir]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^\+ backend 1 127\.0\.0\.1:8080\/TCP$/m);
    assert.match(r.stdout, /^\+ maglev svc \d+ \(251 slots, 2 backends\)$/m);
    assert.match(r.stdout, /^\+ frontend 127\.0\.0\.50:9001\/UDP → svc \d+$/m);
    assert.match(r.stdout, /^\+ vip 127\.0\.0\.50$/m);
    assert.match(r.stderr, /no maps pinned|cannot read the maps/);
    assert.match(r.stderr, /9 operations \(not applied\)/);
    assert.equal(existsSync(pinDir), false, "a dry run pins nothing");
  });

  it("rejects bad flags with exit code 2", async () => {
    const r = await sluice(["agent", "diff", "-f", dir, "--address", "nope", "--maglev-size", "1000"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--address needs IP addresses, got nope/);
    assert.match(r.stderr, /--maglev-size must be one of/);
  });

  const why = datapathUnavailable();
  it("apply writes the maps once; diff then shows nothing to do; a changed folder shows only the change", { skip: why ? `eBPF datapath unavailable: ${why}` : false, timeout: 90_000 }, async () => {
    const pinDir = `/sys/fs/bpf/sluice-agent-cli-${process.pid}-${Math.floor(Math.random() * 1e6)}`;
    try {
      const args = ["-f", dir, "--address", "127.0.0.50", "--maglev-size", "251", "--pin-dir", pinDir];
      const a = await sluice(["agent", "apply", ...args]);
      assert.equal(a.code, 0, a.stderr);
      assert.match(a.stderr, /applied 9 operations; the maps hold version [0-9a-f]{16}/);
      const d = await sluice(["agent", "diff", ...args]);
      assert.equal(d.code, 0, d.stderr);
      assert.equal(d.stdout, "");
      assert.match(d.stderr, /0 operations \(not applied\)/);
      writeFileSync(join(dir, "l4.yaml"), l4Yaml({
        tcp: { port: 9000, backends: [{ name: "a", endpoints: [{ address: "127.0.0.1", port: 8080 }] }] },
        udp: { port: 9001, backends: [{ name: "u", endpoints: [{ address: "127.0.0.3", port: 53 }] }] },
      }));
      const c = await sluice(["agent", "diff", ...args]);
      assert.equal(c.stdout.replace(/svc \d+/, "svc N").replace(/version \w+/, "version V"), "~ maglev svc N (251 slots, 1 backend)\n- backend 2\n~ version V\n");
    } finally {
      await removePinned(pinDir);
    }
  });
});
