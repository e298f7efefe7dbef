// The operator benchmark's harness, shared by the script and its smoke test: a fake API server
// in this process, `sluice operator` as a child process pointed at it, routes written over HTTP
// the way kubectl or a GitOps tool would, and the API server's request log as the write count.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { Pool } from "undici";
import { gatewayApiCrds, sluiceCrds, startFakeApiServer, type FakeApiServer, type K8sObjectLike } from "../../operator/fakeapi/server.ts";
import { rssMB, settledRss } from "../l7/sluice.ts";
import { freePort } from "../l7/proc.ts";

const SLUICE_BIN = fileURLToPath(new URL("../../bin/sluice.js", import.meta.url));
const CONTROLLER = "sluice.dev/gateway-controller";
const GW_API = "gateway.networking.k8s.io/v1";

export interface OperatorBenchOptions {
  routes: number;
  gateways: number;
  namespaces: number;
  /** Give up waiting for the statuses after this long. */
  timeoutMs?: number;
  log?: (line: string) => void;
}

export interface OperatorBenchResult {
  routes: number;
  writeMs: number;
  /** From the last route write until every status was written. */
  settleMs: number;
  statusWrites: { routes: number; gateways: number; classes: number; conflicts: number; conflictPaths: string[] };
  /** RSS once settled (held still for 5 s, at most 30 s after the statuses were done). */
  rssMB: number;
  /** RSS right after every status was written. */
  doneRssMB: number;
  peakRssMB: number;
}

const ns = (i: number): string => `team-${String(i).padStart(3, "0")}`;

function baseObjects(o: OperatorBenchOptions): K8sObjectLike[] {
  const out: K8sObjectLike[] = [
    { apiVersion: "v1", kind: "Namespace", metadata: { name: "infra" } },
    { apiVersion: GW_API, kind: "GatewayClass", metadata: { name: "sluice" }, spec: { controllerName: CONTROLLER } },
  ];
  for (let g = 0; g < o.gateways; g++) {
    out.push({
      apiVersion: GW_API, kind: "Gateway", metadata: { name: `gw-${g}`, namespace: "infra" },
      spec: { gatewayClassName: "sluice", listeners: [{ name: "http", port: 80, protocol: "HTTP", allowedRoutes: { namespaces: { from: "All" } } }] },
    });
  }
  for (let n = 0; n < o.namespaces; n++) {
    out.push({ apiVersion: "v1", kind: "Namespace", metadata: { name: ns(n) } });
    out.push({ apiVersion: "v1", kind: "Service", metadata: { name: "echo", namespace: ns(n) }, spec: { ports: [{ name: "http", port: 8080, protocol: "TCP" }] } });
    out.push({
      apiVersion: "discovery.k8s.io/v1", kind: "EndpointSlice",
      metadata: { name: "echo-1", namespace: ns(n), labels: { "kubernetes.io/service-name": "echo" } },
      addressType: "IPv4",
      endpoints: [{ addresses: [`10.${n >> 8}.${n & 255}.10`], conditions: { ready: true } }],
      ports: [{ name: "http", port: 8080, protocol: "TCP" }],
    });
  }
  return out;
}

function route(i: number, o: OperatorBenchOptions): K8sObjectLike {
  return {
    apiVersion: GW_API, kind: "HTTPRoute",
    metadata: { name: `route-${i}`, namespace: ns(i % o.namespaces) },
    spec: {
      parentRefs: [{ name: `gw-${i % o.gateways}`, namespace: "infra" }],
      hostnames: [`r${i}.bench.example`],
      rules: [{ matches: [{ path: { type: "PathPrefix", value: `/r${i}` } }], backendRefs: [{ name: "echo", port: 8080 }] }],
    },
  };
}

interface ParentStatus { controllerName?: string; conditions?: { type: string; status: string }[] }

function routeDone(obj: K8sObjectLike | undefined): boolean {
  const parents = (obj?.status as { parents?: ParentStatus[] } | undefined)?.parents ?? [];
  const ours = parents.find((p) => p.controllerName === CONTROLLER);
  return ours?.conditions?.some((c) => c.type === "Accepted" && c.status === "True") ?? false;
}

function attachedRoutes(obj: K8sObjectLike | undefined): number {
  const listeners = (obj?.status as { listeners?: { attachedRoutes?: number }[] } | undefined)?.listeners ?? [];
  return listeners.reduce((n, l) => n + (l.attachedRoutes ?? 0), 0);
}

/** Creates objects over HTTP with `parallel` requests in flight; throws on the first failure. */
async function createAll(fake: FakeApiServer, objects: readonly K8sObjectLike[], parallel: number): Promise<void> {
  const pool = new Pool(fake.url, { connections: parallel });
  try {
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < objects.length) {
        const obj = objects[next++] as K8sObjectLike;
        const res = await pool.request({
          method: "POST", path: collectionPath(obj),
          headers: { authorization: `Bearer ${fake.token}`, "content-type": "application/json" },
          body: JSON.stringify(obj),
        });
        const text = await res.body.text();
        if (res.statusCode !== 201) throw new Error(`create ${obj.kind} ${obj.metadata.name}: ${res.statusCode} ${text}`);
      }
    };
    await Promise.all(Array.from({ length: parallel }, worker));
  } finally {
    await pool.close();
  }
}

function collectionPath(obj: K8sObjectLike): string {
  const [group, version] = obj.apiVersion.includes("/") ? obj.apiVersion.split("/") : ["", obj.apiVersion];
  const base = group ? `/apis/${group}/${version}` : `/api/${version}`;
  const plural = `${obj.kind.toLowerCase()}${obj.kind.endsWith("s") ? "es" : "s"}`;
  const namespaced = obj.metadata.namespace !== undefined;
  return namespaced ? `${base}/namespaces/${obj.metadata.namespace}/${plural}` : `${base}/${plural}`;
}

export async function runOperatorBench(o: OperatorBenchOptions): Promise<OperatorBenchResult> {
  const log = o.log ?? (() => undefined);
  const timeoutMs = o.timeoutMs ?? 300_000;
  // History large enough that the operator's watches never fall out of it during the burst.
  const fake = await startFakeApiServer({ crds: [...gatewayApiCrds(), ...sluiceCrds()], historyLimit: o.routes * 4 + 10_000 });
  const dir = await mkdtemp(join(tmpdir(), "sluice-operator-bench-"));
  let child: ChildProcess | undefined;
  try {
    for (const obj of baseObjects(o)) fake.apply(obj);
    const kubeconfig = join(dir, "kubeconfig");
    await writeFile(kubeconfig, fake.kubeConfigYaml());
    const adminPort = await freePort();
    child = spawn(process.execPath, [SLUICE_BIN, "operator", "--kubeconfig", kubeconfig, "--admin", `127.0.0.1:${adminPort}`, "--log-format", "json"], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr?.setEncoding("utf8").on("data", (d: string) => (stderr = (stderr + d).slice(-8192)));
    const pid = child.pid as number;
    let peak = 0;
    const sampler = setInterval(() => (peak = Math.max(peak, rssMB(pid))), 100);
    try {
      const gateways = Array.from({ length: o.gateways }, (_, g) => `gw-${g}`);
      const gatewaysAccepted = (): boolean => gateways.every((g) => {
        const conds = (fake.get(GW_API, "Gateway", "infra", g)?.status as { conditions?: { type: string; status: string }[] } | undefined)?.conditions ?? [];
        return conds.some((c) => c.type === "Accepted" && c.status === "True");
      });
      await waitFor("the Gateways to be accepted", gatewaysAccepted, 60_000, () => stderr, child);
      log(`operator.bench: operator up, ${o.gateways} Gateways accepted; writing ${o.routes} HTTPRoutes`);

      const first = fake.requests.length;
      const routes = Array.from({ length: o.routes }, (_, i) => route(i, o));
      const t0 = performance.now();
      await createAll(fake, routes, 32);
      const tLast = performance.now();
      log(`operator.bench: written in ${((tLast - t0) / 1000).toFixed(2)} s; waiting for the statuses`);

      // Watching the API server's request log, not reading every route on every poll (a read is a
      // deep copy in the fake server, which shares this process's CPU): a route is a candidate
      // once a status write for it succeeded; candidates are read once to check they are Accepted.
      const pathOf = (m: K8sObjectLike["metadata"]): string => `${collectionPath({ apiVersion: GW_API, kind: "HTTPRoute", metadata: m } as K8sObjectLike)}/${m.name as string}`;
      let pending = new Map(routes.map((r) => [pathOf(r.metadata), r.metadata]));
      let seen = first;
      const written = new Set<string>();
      const allDone = (): boolean => {
        const reqs = fake.requests;
        for (; seen < reqs.length; seen++) {
          const r = reqs[seen] as (typeof reqs)[number];
          if (r.subresource === "status" && r.status === 200 && (r.method === "PUT" || r.method === "PATCH")) written.add(r.path.replace(/\/status$/, ""));
        }
        if (![...pending.keys()].every((k) => written.has(k))) return false;
        pending = new Map([...pending].filter(([, m]) => !routeDone(fake.get(GW_API, "HTTPRoute", m.namespace, m.name as string))));
        return pending.size === 0 && gateways.reduce((n, g) => n + attachedRoutes(fake.get(GW_API, "Gateway", "infra", g)), 0) === o.routes;
      };
      await waitFor(`every route status (${o.routes})`, allDone, timeoutMs, () => `${pending.size} routes pending\n${stderr}`, child);
      const settleMs = performance.now() - tLast;
      // Whatever the operator still writes after settling counts too: a short quiet period.
      await sleep(500);

      const writes = fake.requests.slice(first).filter((r) => r.subresource === "status" && (r.method === "PUT" || r.method === "PATCH"));
      const count = (re: RegExp): number => writes.filter((w) => re.test(w.path)).length;
      let rss = 0;
      for (let i = 0; i < 5; i++) {
        rss = Math.max(rss, rssMB(pid));
        await sleep(100);
      }
      // The operator returns the heap grown by the burst once the state is quiet.
      const settled = await settledRss(pid);
      return {
        routes: o.routes,
        writeMs: tLast - t0,
        settleMs,
        statusWrites: {
          routes: count(/\/httproutes\//),
          gateways: count(/\/gateways\//),
          classes: count(/\/gatewayclasses\//),
          conflicts: writes.filter((w) => w.status === 409).length,
          conflictPaths: writes.filter((w) => w.status === 409).map((w) => w.path),
        },
        rssMB: settled.mb,
        doneRssMB: rss,
        peakRssMB: Math.max(peak, rss),
      };
    } finally {
      clearInterval(sampler);
    }
  } finally {
    if (child && child.exitCode === null) {
      const exited = new Promise<void>((r) => child?.once("exit", () => r()));
      child.kill("SIGTERM");
      await Promise.race([exited, sleep(5000)]);
      if (child.exitCode === null) child.kill("SIGKILL");
    }
    await fake.close();
    await rm(dir, { recursive: true, force: true });
  }
}

async function waitFor(what: string, done: () => boolean, timeoutMs: number, diagnosis: () => string, child: ChildProcess): Promise<void> {
  const t0 = performance.now();
  for (;;) {
    if (done()) return;
    if (child.exitCode !== null) throw new Error(`sluice operator exited (${child.exitCode}) while waiting for ${what}:\n${diagnosis()}`);
    if (performance.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}:\n${diagnosis()}`);
    await sleep(50);
  }
}
