// `sluice run` end to end: a folder of manifests served live, edits applied without a restart,
// statuses reported, and the README's demo command verified.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import dgram from "node:dgram";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execFile, execFileSync, spawn } from "node:child_process";
import { Writable } from "node:stream";
import { pino } from "pino";
import { startEcho, type EchoServer } from "../../datapath/echo/echo.ts";
import { backendService, randomLoopback, send, httpGatewayYaml } from "../../datapath/proxy/testkit.ts";
import { startRun, type Running } from "./run.ts";
import { datapathUnavailable } from "../../datapath/bpf/datapath.ts";
import { l4Yaml } from "../../datapath/agent/testkit.ts";

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

describe("the sluice command line", () => {
  const bin = join(import.meta.dirname, "../../bin/sluice.js");
  const sluice = (args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> => new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { timeout: 20_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === "number" ? err.code : null) : 0, stdout, stderr }));
  });
  const run = (args: string[]): ReturnType<typeof sluice> => sluice(["run", ...args]);

  it("prints its version", async () => {
    const { version } = JSON.parse(readFileSync(join(import.meta.dirname, "../../package.json"), "utf8")) as { version: string };
    assert.deepEqual(await sluice(["--version"]), { code: 0, stdout: `${version}\n`, stderr: "" });
  });

  // The machines' own Node (20) cannot run TypeScript; the command must say so, not crash.
  const oldNode = ["/usr/bin/node", "/usr/local/bin/node"].find((p) => existsSync(p) && Number(execFileSync(p, ["-p", "process.versions.node"]).toString().split(".")[0]) < 24);
  it("tells an older Node which Node to use", { skip: oldNode ? false : "no Node older than 24 on this machine" }, async () => {
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      execFile(oldNode as string, [bin, "run", "-f", "."], { timeout: 20_000 }, (err, _stdout, stderr) => resolve({ code: err ? (typeof err.code === "number" ? err.code : null) : 0, stderr }));
    });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^sluice needs Node\.js 24 or later, and this is v\d+.*npx sluice/);
  });

  it("run says what is wrong with its flags and exits with 2, before serving anything", async () => {
    const missing = await run(["-f", "/nonexistent/sluice-manifests", "--port-offset", "40000"]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /-f \/nonexistent\/sluice-manifests: no such file or directory/);
    const offset = await run(["-f", import.meta.dirname, "--port-offset", "abc"]);
    assert.equal(offset.code, 2);
    assert.match(offset.stderr, /--port-offset must be an integer/);
  });
});

describe("the README's demo command", () => {
  it("serves the walkthrough and every check passes", { timeout: 120_000 }, async () => {
    const out = await new Promise<string>((resolve, reject) => {
      execFile("bash", ["scripts/demo.sh", "--check"], { env: { ...process.env, SLUICE_PORT_OFFSET: "28000" }, timeout: 110_000 }, (err, stdout, stderr) =>
        err ? reject(new Error(`${err.message}\n${stdout}\n${stderr}`)) : resolve(stdout));
    });
    assert.match(out, /demo check passed/);
  });
});

describe("sluice run serves TCPRoute and UDPRoute in eBPF (root)", () => {
  const why = datapathUnavailable();
  it("forwards TCP and UDP to echo backends through lo, acknowledges, and cleans up", { skip: why ? `eBPF datapath unavailable: ${why}` : false, timeout: 60_000 }, async () => {
    const vip = randomLoopback();
    const backendAddr = randomLoopback();
    const offset = 23000 + Math.floor(Math.random() * 1000);
    const pinDir = `/sys/fs/bpf/sluice-runtest-${process.pid}-${Math.floor(Math.random() * 1e6)}`;
    const echoes = await Promise.all([
      startEcho({ mode: "tcp", host: backendAddr, port: 0, identity: { pod: "tcp-0" } }),
      startEcho({ mode: "udp", host: backendAddr, port: 0, identity: { pod: "udp-0" } }),
    ]);
    const [tcpEcho, udpEcho] = echoes as [EchoServer, EchoServer];
    const dir = mkdtempSync(join(tmpdir(), "sluice-run-l4-"));
    const lines: string[] = [];
    const sink = new Writable({ write: (c: Buffer, _e, cb) => void (lines.push(...c.toString().split("\n").filter(Boolean)), cb()) });
    put(dir, "l4.yaml", l4Yaml({
      tcp: { port: 900, backends: [{ name: "t", endpoints: [{ address: backendAddr, port: tcpEcho.port }] }] },
      udp: { port: 901, backends: [{ name: "u", endpoints: [{ address: backendAddr, port: udpEcho.port }] }] },
    }));
    let running: Running | undefined;
    try {
      running = await startRun({ paths: [dir], addresses: [vip], portOffset: offset, workers: 1, accessLog: false, log: pino({ level: "info" }, sink), bpfPinDir: pinDir, admin: { host: vip, port: 0 } });
      await running.ready;
      await until("Programmed", async () => lines.some((l) => l.includes("Gateway default/gw: Accepted, Programmed")));
      assert.ok(lines.some((l) => l.includes(`serving TCP default/gw/tcp on ${vip}:${900 + offset}`)), lines.join("\n"));
      // TCP: the echo answers with its identity, then echoes.
      const tcpReply = await new Promise<string>((resolve, reject) => {
        const c = net.connect({ host: vip, port: 900 + offset }, () => c.write("ping\n"));
        let got = "";
        c.on("data", (d) => {
          got += d.toString();
          if (got.includes("ping")) {
            c.destroy();
            resolve(got);
          }
        });
        c.on("error", reject);
        c.setTimeout(3000, () => reject(new Error(`TCP timed out, got ${JSON.stringify(got)}`)));
      });
      assert.match(tcpReply, /"pod":"tcp-0"/);
      // UDP: the reply must come back from the frontend's address and port (reverse NAT).
      const udpReply = await new Promise<{ msg: string; from: string }>((resolve, reject) => {
        const s = dgram.createSocket("udp4");
        const t = setTimeout(() => (s.close(), reject(new Error("UDP timed out"))), 3000);
        s.on("message", (m, r) => {
          clearTimeout(t);
          s.close();
          resolve({ msg: m.toString(), from: `${r.address}:${r.port}` });
        });
        s.send("hello", 901 + offset, vip);
      });
      assert.match(udpReply.msg, /"pod":"udp-0"[\s\S]*hello/);
      assert.equal(udpReply.from, `${vip}:${901 + offset}`);
      const admin = running.adminAddress();
      assert.ok(admin);
      const m = await send({ address: vip, port: admin.port, path: "/metrics" });
      assert.match(m.body, new RegExp(`^sluice_agent_frontend_packets_total\\{frontend="${vip.replaceAll(".", "\\.")}:${900 + offset}/TCP"\\} [1-9]\\d*$`, "m"));
      assert.match(m.body, /^# HELP sluice_proxy_requests_total /m, "the proxy's metrics are still there");
      const sluiceLines = lines.filter((l) => l.includes("L4 routes"));
      assert.deepEqual(sluiceLines, [], "no 'unavailable' line when the datapath runs");
    } finally {
      await running?.stop(500);
      for (const e of echoes) await e.close();
      rmSync(dir, { recursive: true, force: true });
    }
    assert.equal(existsSync(pinDir), false, "the pinned maps are removed on stop");
    assert.doesNotMatch(execFileSync("tc", ["filter", "show", "dev", "lo", "ingress"]).toString(), /sluice_ingress/, "the programs are detached from lo on stop");
  });

  it("detaches and removes its pins on Ctrl-C in a terminal (the whole process group gets SIGINT)", { skip: why ? `eBPF datapath unavailable: ${why}` : false, timeout: 60_000 }, async () => {
    const vip = randomLoopback();
    const offset = 25000 + Math.floor(Math.random() * 1000);
    const pinDir = `/sys/fs/bpf/sluice-runtest-${process.pid}-${Math.floor(Math.random() * 1e6)}`;
    const dir = mkdtempSync(join(tmpdir(), "sluice-run-sigint-"));
    put(dir, "l4.yaml", l4Yaml({ tcp: { port: 900, backends: [{ name: "t", endpoints: [{ address: vip, port: 1 }] }] } }));
    const bin = join(import.meta.dirname, "../../bin/sluice.js");
    // detached: its own process group, as a shell gives a foreground job; the group signal below is Ctrl-C.
    const child = spawn(process.execPath, [bin, "run", "-f", dir, "--address", vip, "--port-offset", String(offset), "--bpf-pin-dir", pinDir, "--no-access-log"], { detached: true, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    try {
      await until("the programs on lo", async () => /sluice_ingress/.test(execFileSync("tc", ["filter", "show", "dev", "lo", "ingress"]).toString()), 20_000);
      assert.ok(existsSync(pinDir));
      process.kill(-(child.pid as number), "SIGINT");
      assert.equal(await exited, 0, out);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    }
    assert.equal(existsSync(pinDir), false, `the pinned maps are removed on Ctrl-C\n${out}`);
    assert.doesNotMatch(execFileSync("tc", ["filter", "show", "dev", "lo", "ingress"]).toString(), /sluice_ingress/, "the programs are detached from lo on Ctrl-C");
  });

  it("says once that L4 routes are unavailable when the datapath is off, and serves the rest", async () => {
    const addr = randomLoopback();
    const offset = 24000 + Math.floor(Math.random() * 1000);
    const dir = mkdtempSync(join(tmpdir(), "sluice-run-nol4-"));
    const echo = await startEcho({ mode: "http", host: addr, port: 0, identity: { pod: "echo-0" } });
    const lines: string[] = [];
    const sink = new Writable({ write: (c: Buffer, _e, cb) => void (lines.push(...c.toString().split("\n").filter(Boolean)), cb()) });
    put(dir, "base.yaml", base(addr, echo.port));
    put(dir, "route-a.yaml", route("a", "/a"));
    put(dir, "l4.yaml", l4Yaml({ gateway: "gw4", tcp: { port: 900, backends: [{ name: "t", endpoints: [{ address: addr, port: 1 }] }] } }).split("---\n").slice(1).join("---\n"));
    const running = await startRun({ paths: [dir], addresses: [addr], portOffset: offset, workers: 1, accessLog: false, log: pino({ level: "info" }, sink), l4: false });
    try {
      await running.ready;
      assert.equal((await send({ address: addr, port: 80 + offset, host: "x", path: "/a" })).status, 200);
      put(dir, "route-a.yaml", route("a", "/b"));
      await until("/b", async () => (await send({ address: addr, port: 80 + offset, host: "x", path: "/b" })).status === 200);
      const l4Lines = lines.filter((l) => l.includes("L4 routes"));
      assert.equal(l4Lines.length, 1, lines.join("\n"));
      assert.match(l4Lines[0] as string, /L4 routes \(TCPRoute\/UDPRoute\) are unavailable: the eBPF datapath is disabled/);
    } finally {
      await running.stop(500);
      await echo.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
