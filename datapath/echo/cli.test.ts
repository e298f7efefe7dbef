// Tests of `sluice echo`: address parsing, and a real process started and stopped by signal.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import net from "node:net";
import { once } from "node:events";
import { test } from "node:test";
import { parseListen } from "./cli.ts";

test("parseListen", () => {
  assert.deepEqual(parseListen("127.0.0.1:8080"), { host: "127.0.0.1", port: 8080 });
  assert.deepEqual(parseListen("[::1]:0"), { host: "::1", port: 0 });
  assert.deepEqual(parseListen(":9000"), { host: "0.0.0.0", port: 9000 });
  assert.deepEqual(parseListen("localhost:1"), { host: "localhost", port: 1 });
  assert.equal(parseListen("127.0.0.1"), undefined);
  assert.equal(parseListen("::1:80"), undefined);
  assert.equal(parseListen("h:70000"), undefined);
});

// The lead wires registerEchoCommand into operator/cli.ts; here a bare commander program stands in.
const driver = `
import { Command } from "commander";
import { registerEchoCommand } from ${JSON.stringify(new URL("./cli.ts", import.meta.url).href)};
const program = new Command("sluice").exitOverride();
registerEchoCommand(program);
try { await program.parseAsync(process.argv.slice(1), { from: "user" }); }
catch (e) { process.exitCode = typeof e.exitCode === "number" ? e.exitCode : 1; }
`;

function runDriver(args: string[]): ReturnType<typeof spawn> {
  return spawn(process.execPath, ["--input-type=module", "-e", driver, "--", ...args], {
    cwd: new URL("../..", import.meta.url),
    stdio: ["ignore", "pipe", "pipe"],
    // The identity must come from the flags alone, whatever the caller's environment holds.
    env: Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !["POD_NAME", "NAMESPACE", "SERVICE_NAME"].includes(k)),
    ),
  });
}

test("sluice echo --mode tcp prints its address, serves, and stops on SIGTERM", async () => {
  const child = runDriver(["echo", "--mode", "tcp", "--listen", "127.0.0.1:0", "--pod", "cli-pod", "--namespace", "cli-ns"]);
  try {
    let out = "";
    child.stdout?.setEncoding("utf8");
    await new Promise<void>((resolve, reject) => {
      child.stdout?.on("data", (s: string) => {
        out += s;
        if (out.includes("\n")) resolve();
      });
      child.once("exit", (code) => reject(new Error(`exited early with ${code}`)));
    });
    const m = /^echo tcp listening on 127\.0\.0\.1:(\d+)\n$/.exec(out);
    assert.ok(m, out);
    const sock = net.connect(Number(m[1]), "127.0.0.1");
    const [line] = (await once(sock, "data")) as [Buffer];
    sock.destroy();
    assert.deepEqual(JSON.parse(line.toString()), { pod: "cli-pod", namespace: "cli-ns", service: "" });
    child.kill("SIGTERM");
    const [code] = (await once(child, "exit")) as [number | null];
    assert.equal(code, 0);
  } finally {
    child.kill("SIGKILL");
  }
});

test("sluice echo --mode tls without --cert fails with exit code 2", async () => {
  const child = runDriver(["echo", "--mode", "tls", "--listen", "127.0.0.1:0"]);
  let err = "";
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (s: string) => (err += s));
  const [code] = (await once(child, "exit")) as [number | null];
  assert.equal(code, 2);
  assert.match(err, /needs --cert and --key/);
});
