// @dot-i/k8s-operator as the shell, on client-node 2.x, against the fake API server; and
// `sluice operator` as a real child process that must survive watch errors.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import { startFakeApiServer, gatewayApiCrds, sluiceCrds, type FakeApiServer } from "../fakeapi/server.ts";
import { captureLog, gateway, gatewayClass, httpRoute, kubeConfigYamlFor, ns, service, until } from "../sources/kubetestkit.ts";
import { SluiceOperator } from "./operator.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");
const GW = "gateway.networking.k8s.io/v1";

async function fakeCluster(): Promise<FakeApiServer> {
  const fake = await startFakeApiServer({ crds: [...gatewayApiCrds(), ...sluiceCrds()] });
  fake.apply(ns("app"));
  fake.apply(gatewayClass());
  fake.apply(gateway("app", "gw"));
  fake.apply(service("app", "backend"));
  fake.apply(httpRoute("app", "r1", "gw"));
  return fake;
}

const accepted = (fake: FakeApiServer, name: string): boolean =>
  ((fake.get(GW, "HTTPRoute", "app", name) as { status?: { parents?: { conditions?: { type: string; status: string }[] }[] } } | undefined)
    ?.status?.parents?.[0]?.conditions ?? []).some((c) => c.type === "Accepted" && c.status === "True");

test("the library is resolved onto the project's client-node 2.x", () => {
  const fromLibrary = createRequire(createRequire(import.meta.url).resolve("@dot-i/k8s-operator"));
  const clientNode = fromLibrary.resolve("@kubernetes/client-node");
  assert.equal(clientNode, createRequire(import.meta.url).resolve("@kubernetes/client-node"), "one client-node for both");
  const pkg = JSON.parse(readFileSync(path.join(clientNode.slice(0, clientNode.lastIndexOf(`${path.sep}dist${path.sep}`)), "package.json"), "utf8")) as { version: string };
  assert.match(pkg.version, /^2\./);
});

test("SluiceOperator: the library's constructor loads KUBECONFIG; start() runs init() and the operator works", async () => {
  const fake = await fakeCluster();
  const dir = mkdtempSync(path.join(tmpdir(), "sluice-shell-"));
  const file = path.join(dir, "kubeconfig");
  writeFileSync(file, kubeConfigYamlFor(fake.url, fake.token));
  const saved = process.env.KUBECONFIG;
  process.env.KUBECONFIG = file;
  const { log, find } = captureLog();
  let operator: SluiceOperator | undefined;
  try {
    // No kubeConfig given: the base class's `new KubeConfig().loadFromDefault()` reads KUBECONFIG.
    operator = new SluiceOperator({ log, source: { discoveryIntervalMs: 300, backoff: { initialMs: 20, maxMs: 200 } } });
    assert.equal(operator.config.getCurrentCluster()?.server, fake.url);
    await operator.start();
    const host = operator.host!;
    await host.ready;
    assert.ok(host.latest()!.snapshot.objects.HTTPRoute.has("app/r1"));
    assert.ok(find(/initial sync complete/).length === 1);
  } finally {
    if (saved === undefined) delete process.env.KUBECONFIG;
    else process.env.KUBECONFIG = saved;
    await operator?.shutdown();
    assert.equal(operator?.host, undefined);
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Runs `sluice operator` through registerOperatorCommand (operator/cli.ts registers the same function). */
function runCli(args: string[]): { child: ReturnType<typeof spawn>; out: () => string; exited: Promise<number | null> } {
  const script = [
    `const { Command } = await import("commander");`,
    `const { registerOperatorCommand } = await import(${JSON.stringify(path.join(ROOT, "operator/host/cli.ts"))});`,
    `const program = new Command("sluice").exitOverride();`,
    `registerOperatorCommand(program, (c) => { process.exitCode = c; });`,
    `await program.parseAsync(process.argv.slice(1), { from: "user" });`,
  ].join("\n");
  const child = spawn(path.join(ROOT, "node_modules/.bin/node"), ["--input-type=module", "-e", script, "operator", ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return { child, out: () => out, exited };
}

test("sluice operator: bad flags exit with 2 and say what is wrong", async () => {
  const run = runCli(["--admin", "nonsense", "--kubeconfig", "/no/such/file"]);
  assert.equal(await run.exited, 2);
  assert.match(run.out(), /--admin must be host:port, got nonsense/);
  assert.match(run.out(), /--kubeconfig \/no\/such\/file: /);
});

test("sluice operator: watch errors and dropped connections never exit the process; it recovers and SIGTERM stops it", async () => {
  const fake = await fakeCluster();
  const dir = mkdtempSync(path.join(tmpdir(), "sluice-cli-"));
  const file = path.join(dir, "kubeconfig");
  writeFileSync(file, kubeConfigYamlFor(fake.url, fake.token));
  const run = runCli(["--kubeconfig", file, "--admin", "127.0.0.1:0", "--log-format", "json", "--discovery-interval", "0.5"]);
  try {
    assert.ok(await until(() => /admin endpoint on http:\/\/127\.0\.0\.1:\d+/.test(run.out()), 15_000), run.out());
    const port = Number(/admin endpoint on http:\/\/127\.0\.0\.1:(\d+)/.exec(run.out())![1]);
    let ready = false;
    await until(() => {
      void fetch(`http://127.0.0.1:${port}/readyz`).then((r) => (ready = r.ok), () => undefined);
      return ready;
    }, 10_000, 100);
    assert.ok(ready, run.out());
    assert.ok(await until(() => accepted(fake, "r1"), 5000));

    // Every Gateway API list/watch fails for a while, and open watches are cut.
    let failing = true;
    fake.failNext({ status: 500, count: 100_000, match: (r) => failing && r.path.startsWith("/apis/gateway.networking.k8s.io/") });
    fake.dropWatches();
    await until(() => (run.out().match(/list\/watch failed/g) ?? []).length >= 3, 5000);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(run.child.exitCode, null, "still running");
    failing = false;
    fake.apply(httpRoute("app", "after", "gw"));
    assert.ok(await until(() => accepted(fake, "after"), 10_000), run.out().slice(-2000));
    run.child.kill("SIGTERM");
    assert.equal(await run.exited, 0);
    assert.match(run.out(), /SIGTERM: stopping/);
  } finally {
    if (run.child.exitCode === null) run.child.kill("SIGKILL");
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
