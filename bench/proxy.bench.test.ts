// The machinery of bench/proxy.bench.ts, in miniature: a `sluice run` child process on the
// benchmark's manifests, one short wrk run with CPU accounting, route propagation, edits and a
// certificate rotation under load, and the memory reading. Not a performance test: the figures
// are only checked to be measured, the error counts to be zero.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { makeCerts, send, type TestCert } from "../datapath/proxy/testkit.ts";
import { startBackend, type Backend } from "./l7/backend.ts";
import { ensurePeers } from "./l7/install.ts";
import { measure } from "./l7/load.ts";
import { startNodeHttp } from "./l7/peers.ts";
import { freePort } from "./l7/proc.ts";
import { editsUnderLoad, measurePropagation, memoryWithRoutes, rotationUnderLoad } from "./l7/scenarios.ts";
import { baseManifests, httpRoute, rssMB, secretManifest, startSluice, type Sluice } from "./l7/sluice.ts";

const HOST = "bench.example";
let missing: string | undefined;
let backend: Backend | undefined;
let sluice: Sluice | undefined;
let certs: [TestCert, TestCert];

before(async () => {
  try {
    await ensurePeers();
  } catch (err) {
    missing = (err as Error).message;
    return;
  }
  certs = makeCerts([{ cn: HOST, sans: [`DNS:${HOST}`] }, { cn: HOST, sans: [`DNS:${HOST}`] }]).leaves as [TestCert, TestCert];
  backend = await startBackend();
  sluice = await startSluice({
    "base.yaml": baseManifests({ backendPort: backend.port, tls: true }),
    "secret.yaml": secretManifest(certs[0]),
    "api.yaml": httpRoute({ name: "api", hostnames: [HOST], pathPrefix: "/api" }),
  });
});

after(async () => {
  await sluice?.stop();
  await backend?.stop();
});

/** The running stack, or undefined after marking the test skipped when the peers are missing. */
function stack(t: { skip(message: string): void }): Sluice | undefined {
  if (missing !== undefined) {
    t.skip(`nginx, haproxy or wrk not available and not installable here: ${missing}`);
    return undefined;
  }
  return sluice;
}

test("sluice run serves the benchmark route on HTTP and HTTPS", async (t) => {
  const s = stack(t);
  if (!s) return;
  assert.equal((await send({ address: s.http.host, port: s.http.port, host: HOST, path: "/api/x" })).status, 200);
  assert.equal((await send({ address: s.http.host, port: s.http.port, host: HOST, path: "/apix" })).status, 404);
  const tls = { servername: HOST, ca: certs[0].ca };
  assert.equal((await send({ address: s.https.host, port: s.https.port, host: HOST, path: "/api/x", tls })).status, 200);
});

test("a short wrk run is measured with the proxy's CPU time", async (t) => {
  const s = stack(t);
  if (!s) return;
  const m = await measure("Sluice", [s.pid], { url: `http://${s.http.host}:${s.http.port}/api/x`, host: HOST, connections: 4, threads: 1, durationSec: 1 });
  assert.ok(m.requests > 100, `only ${m.requests} requests`);
  assert.equal(m.errors + m.non2xx, 0);
  assert.ok(m.cpuSec > 0 && Number.isFinite(m.rpsPerCpuSec), `cpu ${m.cpuSec}`);
  assert.ok(rssMB(s.pid) > 10);
});

test("the node:http ceiling server answers the benchmark route like the proxies do", async (t) => {
  if (!stack(t)) return;
  const port = await freePort();
  const srv = await startNodeHttp({ listen: { host: "127.0.0.1", port }, upstream: { host: "127.0.0.1", port: 1 }, workers: 1, hostname: HOST, pathPrefix: "/api" });
  try {
    const status = async (host: string, path: string): Promise<number> => (await send({ address: "127.0.0.1", port, host, path })).status;
    assert.deepEqual(
      [await status(HOST, "/api"), await status(`${HOST}:${port}`, "/api/x"), await status("BENCH.example", "/api/x?q"), await status(HOST, "/apix"), await status("other.example", "/api/x")],
      [200, 200, 200, 404, 404],
    );
  } finally {
    await srv.stop();
  }
});

test("propagation is measured for 5 new routes without errors", async (t) => {
  const s = stack(t);
  if (!s) return;
  const p = await measurePropagation(s, { count: 5, host: HOST, tag: "t", gapMs: 20, timeoutMs: 5000 });
  assert.equal(p.ms.length, 5);
  assert.deepEqual([p.errors, p.timeouts], [0, 0], [...p.kinds].map(([k, n]) => `${n}× ${k}`).join("; "));
  assert.ok(p.ms.every((ms) => ms > 0 && ms < 5000), p.ms.join(", "));
});

test("route edits under load: every edit lands, no request fails", async (t) => {
  const s = stack(t);
  if (!s) return;
  const c = await editsUnderLoad(s, { changes: 5, intervalMs: 100, host: HOST, keepAlive: 4, fresh: 1 });
  assert.ok(c.tally.requests > 50, `only ${c.tally.requests} requests`);
  assert.equal(c.tally.non2xx + c.tally.errors, 0, [...c.tally.kinds].map(([k, n]) => `${n}× ${k}`).join("; "));
  assert.ok(c.lastApplied, `last version seen ${c.tally.lastMarker}`);
});

test("certificate rotation under load: the certificates alternate, no request fails", async (t) => {
  const s = stack(t);
  if (!s) return;
  const c = await rotationUnderLoad(s, certs, { changes: 3, intervalMs: 150, host: HOST, keepAlive: 2, fresh: 2 });
  assert.ok(c.tally.requests > 20, `only ${c.tally.requests} requests`);
  assert.equal(c.distinct, 2);
  assert.ok(c.lastApplied);
  // Each config update used to turn every HTTPS answer into a 421 (listeners compared by identity).
  assert.equal(c.tally.non2xx + c.tally.errors, 0, [...c.tally.kinds].map(([k, n]) => `${n}× ${k}`).join("; "));
});

test("memory is read once a folder of routes is served", async (t) => {
  if (!stack(t) || !backend) return;
  const m = await memoryWithRoutes({ routes: 100, namespaces: 5, backendPort: backend.port });
  try {
    assert.equal(m.routes, 100);
    assert.ok(m.rssMB > 10 && m.peakMB >= m.servedRssMB, `rss ${m.rssMB}, served ${m.servedRssMB}, peak ${m.peakMB}`);
    assert.ok(m.settledAfterS >= 1 && m.settledAfterS < 35, `settled after ${m.settledAfterS} s`);
  } finally {
    await m.stop();
  }
});
