// The control-plane side of the L7 benchmark, against a running `sluice run`: how fast a new
// route is served, whether requests fail while routes and certificates change under load, and
// the memory a large config takes. The clients run in the benchmark process; sluice runs apart.
import { X509Certificate } from "node:crypto";
import http from "node:http";
import https from "node:https";
import type { TLSSocket } from "node:tls";
import { setTimeout as sleep } from "node:timers/promises";
import { Pool } from "undici";
import type { TestCert } from "../../datapath/proxy/testkit.ts";
import type { Endpoint } from "./proc.ts";
import { baseManifests, httpRoute, manyHost, namespaceOfRoutes, rssMB, secretManifest, settledRss, startSluice, type Sluice } from "./sluice.ts";

// ---- load loops ----

export type Tally = {
  requests: number;
  ok: number;
  non2xx: number;
  errors: number;
  /** Non-2xx statuses and error codes, with counts: what went wrong, for the report. */
  kinds: Map<string, number>;
  /** Values of the marker (a response header, or the served certificate) with counts. */
  markers: Map<string, number>;
  lastMarker: string | undefined;
};

export type LoadSpec = {
  target: Endpoint;
  host: string;
  path: string;
  /** HTTPS, verifying the served certificate against `ca` for `servername`. */
  tls?: { ca: string; servername: string };
  /** Loops sending requests back to back over a pool of as many keep-alive connections. */
  keepAlive: number;
  /** Loops opening a new connection (and over TLS, a new handshake) for every request. */
  fresh: number;
  /** Response header whose values are tallied (e.g. the route version a ResponseHeaderModifier sets). */
  marker?: string;
  /** Over TLS, tally the certificate fresh connections were served instead (its SHA-256 fingerprint). */
  markCertificate?: boolean;
};

export function newTally(): Tally {
  return { requests: 0, ok: 0, non2xx: 0, errors: 0, kinds: new Map(), markers: new Map(), lastMarker: undefined };
}

const bump = (m: Map<string, number>, k: string): void => void m.set(k, (m.get(k) ?? 0) + 1);

function record(t: Tally, status: number, marker: string | undefined): void {
  t.requests++;
  if (status >= 200 && status < 300) t.ok++;
  else {
    t.non2xx++;
    bump(t.kinds, String(status));
  }
  if (marker !== undefined) {
    bump(t.markers, marker);
    t.lastMarker = marker;
  }
}

function recordError(t: Tally, err: unknown): void {
  t.requests++;
  t.errors++;
  const e = err as NodeJS.ErrnoException;
  bump(t.kinds, `${e.code ?? e.name ?? "Error"}: ${String(e.message ?? err).slice(0, 80)}`);
}

const headerOf = (h: http.IncomingHttpHeaders | Record<string, string | string[] | undefined>, name: string): string | undefined => {
  const v = h[name];
  return Array.isArray(v) ? v.join(",") : v;
};

export function keepAlivePool(target: Endpoint, tls?: LoadSpec["tls"], connections = 1): Pool {
  return new Pool(`${tls ? "https" : "http"}://${target.host}:${target.port}`, {
    connections,
    pipelining: 1,
    headersTimeout: 10_000,
    bodyTimeout: 10_000,
    ...(tls ? { connect: { ca: tls.ca, servername: tls.servername } } : {}),
  });
}

/** One request on a new connection (`agent: false` sends `Connection: close`). */
function freshRequest(spec: LoadSpec): Promise<{ status: number; marker: string | undefined }> {
  return new Promise((resolve, reject) => {
    const base = { host: spec.target.host, port: spec.target.port, path: spec.path, headers: { host: spec.host }, agent: false as const, timeout: 10_000 };
    const onRes = (res: http.IncomingMessage): void => {
      const marker = spec.markCertificate && spec.tls
        ? (res.socket as TLSSocket).getPeerCertificate().fingerprint256
        : spec.marker ? headerOf(res.headers, spec.marker) : undefined;
      res.resume();
      res.once("end", () => resolve({ status: res.statusCode ?? 0, marker }));
      res.once("error", reject);
    };
    const req = spec.tls ? https.request({ ...base, ca: spec.tls.ca, servername: spec.tls.servername }, onRes) : http.request(base, onRes);
    req.once("timeout", () => req.destroy(new Error("client timeout")));
    req.once("error", reject);
    req.end();
  });
}

export type Load = { tally: Tally; stop(): Promise<Tally> };

/** Starts the loops; `stop` lets every in-flight request finish and returns the tally. */
export function startLoad(spec: LoadSpec): Load {
  const tally = newTally();
  const pool = spec.keepAlive > 0 ? keepAlivePool(spec.target, spec.tls, spec.keepAlive) : undefined;
  let stopped = false;
  const keepAliveLoop = async (p: Pool): Promise<void> => {
    while (!stopped) {
      try {
        const r = await p.request({ path: spec.path, method: "GET", headers: { host: spec.host } });
        await r.body.dump();
        record(tally, r.statusCode, spec.marker ? headerOf(r.headers, spec.marker) : undefined);
      } catch (err) {
        recordError(tally, err);
        await sleep(1); // a dead proxy must not turn this into a busy loop
      }
    }
  };
  const freshLoop = async (): Promise<void> => {
    while (!stopped) {
      try {
        const r = await freshRequest(spec);
        record(tally, r.status, spec.markCertificate ? undefined : r.marker);
        if (spec.markCertificate && r.marker) {
          bump(tally.markers, r.marker);
          tally.lastMarker = r.marker;
        }
      } catch (err) {
        recordError(tally, err);
        await sleep(1);
      }
    }
  };
  const loops = [
    ...Array.from({ length: pool ? spec.keepAlive : 0 }, () => keepAliveLoop(pool as Pool)),
    ...Array.from({ length: spec.fresh }, () => freshLoop()),
  ];
  return {
    tally,
    async stop() {
      stopped = true;
      await Promise.all(loops);
      await pool?.close();
      return tally;
    },
  };
}

// ---- propagation ----

export type Propagation = {
  /** Rename → first 200, per route, in creation order. */
  ms: number[];
  /** Statuses other than 200 and 404, and socket errors, while polling. */
  errors: number;
  /** Routes not served within the timeout. */
  timeouts: number;
  kinds: Map<string, number>;
};

export type PropagationOptions = {
  count: number;
  host: string;
  /** Distinguishes this run's routes from an earlier run's on the same sluice. */
  tag: string;
  /** Pause after a route is served before the next is created. */
  gapMs: number;
  timeoutMs?: number;
};

/**
 * Creates `count` HTTPRoutes one after another, each a new file with its own path prefix, and
 * times each from the rename until the first 200 on its path, polling every millisecond over one
 * keep-alive connection (so the poll itself costs a request's latency, not a handshake).
 */
export async function measurePropagation(s: Sluice, o: PropagationOptions): Promise<Propagation> {
  const out: Propagation = { ms: [], errors: 0, timeouts: 0, kinds: new Map() };
  const pool = keepAlivePool(s.http);
  const timeoutMs = o.timeoutMs ?? 10_000;
  try {
    for (let i = 0; i < o.count; i++) {
      const name = `prop-${o.tag}-${i}`;
      const path = `/${name}`;
      const rename = s.stage(`${name}.yaml`, httpRoute({ name, hostnames: [o.host], pathPrefix: path }));
      const t0 = performance.now();
      rename();
      for (;;) {
        let status = 0;
        try {
          const r = await pool.request({ path: `${path}/x`, method: "GET", headers: { host: o.host } });
          await r.body.dump();
          status = r.statusCode;
        } catch (err) {
          out.errors++;
          const e = err as NodeJS.ErrnoException;
          bump(out.kinds, `${e.code ?? "Error"}: ${e.message}`);
        }
        if (status === 200) {
          out.ms.push(performance.now() - t0);
          break;
        }
        if (status !== 404 && status !== 0) {
          out.errors++;
          bump(out.kinds, String(status));
        }
        if (performance.now() - t0 > timeoutMs) {
          out.timeouts++;
          break;
        }
        await sleep(1);
      }
      await sleep(o.gapMs);
    }
  } finally {
    await pool.close();
  }
  return out;
}

// ---- changes under load ----

export type Churn = {
  tally: Tally;
  changes: number;
  /** The last change was observed by the clients (so the changes really took effect). */
  lastApplied: boolean;
  /** Distinct route versions or certificates the clients saw, */
  distinct: number;
  /** of this many there were to see. */
  versions: number;
};

export type ChurnOptions = { changes: number; intervalMs: number; host: string; keepAlive: number; fresh: number };

const EDIT_HEADER = "x-bench-edit";
const editRoute = (host: string, n: number): string =>
  httpRoute({ name: "edit", hostnames: [host], pathPrefix: "/edit", responseHeader: { name: EDIT_HEADER, value: String(n) }, split: { backend: "backend-b", weight: 1 + (n % 2) } });

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await check().catch(() => false)) return;
    await sleep(5);
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function getOnce(target: Endpoint, host: string, path: string): Promise<{ status: number; headers: Record<string, string | string[] | undefined> }> {
  const pool = keepAlivePool(target);
  try {
    const r = await pool.request({ path, method: "GET", headers: { host } });
    await r.body.dump();
    return { status: r.statusCode, headers: r.headers };
  } finally {
    await pool.close();
  }
}

/**
 * Edits one HTTPRoute `changes` times, `intervalMs` apart, while clients keep requesting its
 * path: each edit changes a ResponseHeaderModifier value (which the clients tally, proving the
 * edits land) and the weight of a second backend, so the route and its clusters really change.
 */
export async function editsUnderLoad(s: Sluice, o: ChurnOptions): Promise<Churn> {
  s.put("edit.yaml", editRoute(o.host, 0));
  await until("the edit route to be served", async () => {
    const r = await getOnce(s.http, o.host, "/edit/x");
    return r.status === 200 && headerOf(r.headers, EDIT_HEADER) === "0";
  });
  const load = startLoad({ target: s.http, host: o.host, path: "/edit/x", keepAlive: o.keepAlive, fresh: o.fresh, marker: EDIT_HEADER });
  await sleep(300);
  for (let n = 1; n <= o.changes; n++) {
    s.put("edit.yaml", editRoute(o.host, n));
    await sleep(o.intervalMs);
  }
  await sleep(300);
  const tally = await load.stop();
  return { tally, changes: o.changes, lastApplied: tally.lastMarker === String(o.changes), distinct: tally.markers.size, versions: o.changes + 1 };
}

/**
 * Replaces the HTTPS listener's certificate Secret `changes` times, alternating between two
 * certificates, under HTTPS load from keep-alive connections and from a new connection per
 * request (whose handshakes show which certificate is being served).
 */
export async function rotationUnderLoad(s: Sluice, certs: readonly [TestCert, TestCert], o: ChurnOptions): Promise<Churn> {
  const [a] = certs;
  const tls = { ca: a.ca, servername: o.host };
  s.put("secret.yaml", secretManifest(a));
  const fingerprints = certs.map((c) => new X509Certificate(c.cert).fingerprint256);
  const load = startLoad({ target: s.https, host: o.host, path: "/api/rotate", tls, keepAlive: o.keepAlive, fresh: o.fresh, markCertificate: true });
  await sleep(300);
  for (let n = 1; n <= o.changes; n++) {
    s.put("secret.yaml", secretManifest(certs[n % 2] as TestCert));
    await sleep(o.intervalMs);
  }
  await sleep(300);
  const tally = await load.stop();
  return { tally, changes: o.changes, lastApplied: tally.lastMarker === fingerprints[o.changes % 2], distinct: tally.markers.size, versions: Math.min(2, o.changes + 1) };
}

// ---- memory ----


export type Memory = {
  routes: number;
  /**
   * RSS once settled: sampled after every route is served until it has held still for 5 s (at
   * most 30 s). `sluice run` returns the heap grown by a large load once the config is quiet.
   */
  rssMB: number;
  /** Seconds from the last route served until RSS settled. */
  settledAfterS: number;
  /** RSS right after every route is served (the highest of a few samples over a second). */
  servedRssMB: number;
  /** Highest RSS seen from start until every route was served. */
  peakMB: number;
  /** From spawning `sluice run` until the last route answered 200. */
  servedAfterMs: number;
  pid: number;
  /** The last route's address, for a load test against it. */
  last: { host: string; path: string };
  http: Endpoint;
  stop(): Promise<void>;
};

/**
 * A fresh `sluice run` started on a folder of `routes` HTTPRoutes over `namespaces` namespaces
 * (a file per namespace), every route attached to the one Gateway with its own hostname and path.
 */
export async function memoryWithRoutes(o: { routes: number; namespaces: number; backendPort: number }): Promise<Memory> {
  const per = Math.ceil(o.routes / o.namespaces);
  const files: Record<string, string> = { "base.yaml": baseManifests({ backendPort: o.backendPort, tls: false }) };
  let made = 0;
  let last = { host: "", path: "" };
  for (let n = 0; n < o.namespaces && made < o.routes; n++) {
    const ns = `team-${String(n).padStart(2, "0")}`;
    const count = Math.min(per, o.routes - made);
    files[`${ns}.yaml`] = namespaceOfRoutes(ns, count, o.backendPort);
    made += count;
    last = { host: manyHost(ns, count - 1), path: `/r${count - 1}/x` };
  }
  const t0 = performance.now();
  let peak = 0;
  let pid = 0;
  const sampler = setInterval(() => {
    if (pid) peak = Math.max(peak, rssMB(pid));
  }, 50);
  let s: Sluice | undefined;
  try {
    s = await startSluice(files, { readyTimeoutMs: 120_000, onSpawn: (p) => (pid = p) });
    const { http: ep } = s;
    await until(`${last.host}${last.path} to answer 200`, async () => (await getOnce(ep, last.host, last.path)).status === 200, 120_000);
    const servedAfterMs = performance.now() - t0;
    peak = Math.max(peak, rssMB(pid));
    let served = 0;
    for (let i = 0; i < 5; i++) {
      await sleep(200);
      served = Math.max(served, rssMB(pid));
    }
    const settled = await settledRss(pid);
    const running = s;
    return {
      routes: made, rssMB: settled.mb, settledAfterS: settled.afterS + 1, servedRssMB: served, peakMB: Math.max(peak, served),
      servedAfterMs, pid, last, http: ep, stop: () => running.stop(),
    };
  } catch (err) {
    await s?.stop();
    throw err;
  } finally {
    clearInterval(sampler);
  }
}
