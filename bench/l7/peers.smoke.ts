// Smoke run of the L7 benchmark peers: backend, nginx and HAProxy on loopback, the same route on
// both, a short wrk against each (and the backend directly, as the ceiling), one table.
// Run: node_modules/.bin/node bench/l7/peers.smoke.ts [seconds] [connections] [workers] [rounds]
// The targets take turns for `rounds` rounds and each row is the median round, because a shared
// 2-core VM varies by tens of percent from one run to the next; the range shows by how much.
import { request } from "node:http";
import { availableParallelism } from "node:os";
import { startBackend } from "./backend.ts";
import { ensurePeers } from "./install.ts";
import { measure, type Measured } from "./load.ts";
import { startHaproxy, startNginx, type PeerOptions } from "./peers.ts";
import { freePort, type Endpoint, type Server } from "./proc.ts";

const [durationSec = 3, connections = 16, workers = 1, rounds = 3] = process.argv.slice(2).map(Number);
const HOST = "bench.example";
const PREFIX = "/api";
const PATH = "/api/bench";

function statusOf(ep: Endpoint, host: string, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: ep.host, port: ep.port, path, headers: { host }, agent: false }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", reject);
    req.end();
  });
}

// The route must behave like a Gateway PathPrefix + hostname match before its numbers mean anything.
async function checkRoute(name: string, ep: Endpoint): Promise<void> {
  const cases: [string, string, number][] = [
    [HOST, PREFIX, 200], [HOST, PATH, 200], [`${HOST}:${ep.port}`, PATH, 200],
    [HOST, `${PREFIX}x`, 404], [HOST, "/", 404], ["other.example", PATH, 404],
  ];
  for (const [host, path, want] of cases) {
    const got = await statusOf(ep, host, path);
    if (got !== want) throw new Error(`${name}: Host ${host} ${path} gave ${got}, want ${want}`);
  }
}

await ensurePeers();
const servers: Server[] = [];
try {
  const backend = await startBackend();
  servers.push(backend);
  const upstream = { host: "127.0.0.1", port: backend.port };
  const peer = async (start: (o: PeerOptions) => Promise<Server>) => {
    const listen = { host: "127.0.0.1", port: await freePort() };
    const s = await start({ listen, upstream, workers, hostname: HOST, pathPrefix: PREFIX });
    servers.push(s);
    return { listen, pid: s.pid };
  };
  const targets = [
    { name: "backend (direct)", listen: { host: "127.0.0.1", port: backend.port }, pid: backend.pid },
    { name: "nginx", ...await peer(startNginx) },
    { name: "haproxy", ...await peer(startHaproxy) },
  ];
  for (const t of targets.slice(1)) await checkRoute(t.name, t.listen);

  const runs = new Map<string, Measured[]>(targets.map((t) => [t.name, []]));
  const url = (ep: Endpoint) => `http://${ep.host}:${ep.port}${PATH}`;
  for (const t of targets) await measure(t.name, [t.pid], { url: url(t.listen), host: HOST, connections, threads: 1, durationSec: 1 }); // warm-up
  for (let i = 0; i < rounds; i++) {
    for (const t of targets) {
      runs.get(t.name)?.push(await measure(t.name, [t.pid], { url: url(t.listen), host: HOST, connections, threads: 1, durationSec }));
    }
  }

  const f = (n: number, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : "n/a");
  console.log(`\n${durationSec} s wrk × ${rounds} rounds, ${connections} connections, 1 wrk thread, ${workers} proxy worker(s), ${availableParallelism()} cores; median round`);
  console.log("| proxy | rps | rps per CPU-second (min–max) | CPU s | p50 ms | p99 ms | errors (all rounds) | non-2xx (all rounds) |");
  console.log("|---|---|---|---|---|---|---|---|");
  for (const [name, rs] of runs) {
    const byEff = [...rs].sort((a, b) => a.rpsPerCpuSec - b.rpsPerCpuSec);
    const r = byEff[Math.floor(byEff.length / 2)];
    if (!r) continue;
    const range = `${f(byEff[0]?.rpsPerCpuSec ?? NaN)}–${f(byEff[byEff.length - 1]?.rpsPerCpuSec ?? NaN)}`;
    const errors = rs.reduce((a, x) => a + x.errors, 0);
    const non2xx = rs.reduce((a, x) => a + x.non2xx, 0);
    console.log(`| ${name} | ${f(r.rps)} | ${f(r.rpsPerCpuSec)} (${range}) | ${f(r.cpuSec, 2)} | ${f(r.p50Ms, 3)} | ${f(r.p99Ms, 3)} | ${errors} | ${non2xx} |`);
  }
} finally {
  for (const s of servers.reverse()) await s.stop();
}
