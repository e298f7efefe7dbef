// `sluice run` end to end: a folder of manifests served live, edits applied without a restart,
// statuses reported, and the README's demo command verified.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execFile } from "node:child_process";
import { Writable } from "node:stream";
import { pino } from "pino";
import { startEcho, type EchoServer } from "../../datapath/echo/echo.ts";
import { backendService, randomLoopback, send, httpGatewayYaml } from "../../datapath/proxy/testkit.ts";
import { startRun, type Running } from "./run.ts";

const base = (addr: string, echoPort: number): string => `${httpGatewayYaml("default")}---
${backendService("default", "echo", 8080, [{ address: addr, port: echoPort, pod: "echo-0" }])}`;

const route = (name: string, path: string): string => `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ${name}, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: ${path}}}]
    backendRefs: [{name: echo, port: 8080}]
`;

/** Writes atomically, as editors and GitOps tools do (a half-written file is never read). */
function put(dir: string, name: string, text: string): void {
  writeFileSync(join(dir, `.${name}.tmp`), text);
  renameSync(join(dir, `.${name}.tmp`), join(dir, name));
}

async function until(what: string, check: () => Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.fail(`timed out waiting for ${what}`);
}

for (const workers of [1, 2]) {
  describe(`sluice run with ${workers} worker(s)`, () => {
    const addr = randomLoopback();
    const offset = 21000 + workers * 100;
    const port = 80 + offset;
    let dir: string;
    let echo: EchoServer;
    let running: Running;
    const lines: string[] = [];

    before(async () => {
      dir = mkdtempSync(join(tmpdir(), "sluice-run-"));
      echo = await startEcho({ mode: "http", host: addr, port: 0, identity: { pod: "echo-0" } });
      put(dir, "base.yaml", base(addr, echo.port));
      put(dir, "route-a.yaml", route("a", "/a"));
      const sink = new Writable({ write: (c: Buffer, _e, cb) => void (lines.push(...c.toString().split("\n").filter(Boolean)), cb()) });
      running = await startRun({ paths: [dir], addresses: [addr], portOffset: offset, workers, accessLog: false, log: pino({ level: "info" }, sink), admin: { host: addr, port: 0 } });
      await running.ready;
    });
    after(async () => {
      await running.stop(500);
      await echo.close();
      rmSync(dir, { recursive: true, force: true });
    });

    it("serves the folder and reports statuses", async () => {
      const r = await send({ address: addr, port, host: "x", path: "/a/1" });
      assert.equal(r.status, 200);
      await until("Programmed", async () => lines.some((l) => l.includes("Gateway default/gw: Accepted, Programmed")));
      assert.ok(lines.some((l) => l.includes("HTTPRoute default/a: default/gw: Accepted, ResolvedRefs")), lines.join("\n"));
    });

    it("applies a new route, an edit and a deletion live", async () => {
      assert.equal((await send({ address: addr, port, host: "x", path: "/b" })).status, 404);
      put(dir, "route-b.yaml", route("b", "/b"));
      await until("/b to answer 200", async () => (await send({ address: addr, port, host: "x", path: "/b" })).status === 200);
      // Once applied, every worker serves it: new connections land on workers at the kernel's choice.
      const fresh = await Promise.all(Array.from({ length: 20 }, () => send({ address: addr, port, host: "x", path: "/b" })));
      assert.deepEqual(fresh.map((r) => r.status), new Array<number>(20).fill(200));
      put(dir, "route-b.yaml", route("b", "/c"));
      await until("/c to answer 200", async () => (await send({ address: addr, port, host: "x", path: "/c" })).status === 200);
      assert.equal((await send({ address: addr, port, host: "x", path: "/b" })).status, 404);
      rmSync(join(dir, "route-b.yaml"));
      await until("/c to answer 404", async () => (await send({ address: addr, port, host: "x", path: "/c" })).status === 404);
    });

    it("keeps serving the last good config when a file breaks, and says where", async () => {
      put(dir, "route-a.yaml", "kind: HTTPRoute\nmetadata: [oops\n");
      await until("a parse error in the log", async () => lines.some((l) => l.includes("route-a.yaml")));
      assert.equal((await send({ address: addr, port, host: "x", path: "/a" })).status, 200);
      put(dir, "route-a.yaml", route("a", "/a"));
    });

    it("exposes metrics, health and readiness", async () => {
      const admin = running.adminAddress();
      assert.ok(admin);
      const m = await send({ address: addr, port: admin.port, path: "/metrics" });
      assert.match(m.body, /sluice_proxy_requests_total\{route="HTTPRoute\/default\/a\/0",backend="default\/echo:8080",code="200"\} \d+/);
      assert.equal((await send({ address: addr, port: admin.port, path: "/readyz" })).status, 200);
    });
  });
}

describe("the README's demo command", () => {
  it("serves the walkthrough and every check passes", { timeout: 120_000 }, async () => {
    const out = await new Promise<string>((resolve, reject) => {
      execFile("bash", ["scripts/demo.sh", "--check"], { env: { ...process.env, SLUICE_PORT_OFFSET: "28000" }, timeout: 110_000 }, (err, stdout, stderr) =>
        err ? reject(new Error(`${err.message}\n${stdout}\n${stderr}`)) : resolve(stdout));
    });
    assert.match(out, /demo check passed/);
  });
});
