// `sluice run` as the L7 benchmark runs it: a child process (so its CPU and memory are its own and
// it never shares the load generator's event loop) serving a temp folder of manifests, plus the
// manifests themselves: the same route the nginx and HAProxy peers are given, on the same backend.
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { backendService, tlsSecret, type TestCert } from "../../datapath/proxy/testkit.ts";
import { descendantsOf } from "./load.ts";
import { freePort, makeTempDir, startServer, type Endpoint, type Server, type StartOptions } from "./proc.ts";

const SLUICE_BIN = fileURLToPath(new URL("../../bin/sluice.js", import.meta.url));

/** The Gateway every benchmark route attaches to. */
export const GATEWAY = { namespace: "bench", name: "bench" } as const;
export const HTTP_PORT = 80;
export const HTTPS_PORT = 443;
export const SECRET = "bench-tls";

export type Sluice = Server & {
  /** The manifest folder `sluice run -f` watches. */
  dir: string;
  http: Endpoint;
  https: Endpoint;
  /** Writes a manifest file atomically (temp file + rename), as editors and GitOps tools do. */
  put(file: string, text: string): void;
  /** The temp file written, the rename still to do. */
  stage(file: string, text: string): () => void;
};

export type SluiceOptions = StartOptions & { workers?: number };

/** An offset that puts both Gateway ports (80 and 443) on free high ports, as `--port-offset` does in the demo. */
async function freeOffset(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const offset = (await freePort()) - HTTP_PORT;
    if (offset + HTTPS_PORT > 65535) continue;
    if (await isFree(offset + HTTPS_PORT)) return offset;
  }
  throw new Error("no port offset with both 80+N and 443+N free");
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
}

/**
 * Atomic write, in two steps: the temp file is written now (hidden, so the folder watcher skips
 * it), the returned function renames it into place, so a caller can time from the rename.
 */
export function stageFile(dir: string, file: string, text: string): () => void {
  const tmp = join(dir, `.${file}.tmp`);
  writeFileSync(tmp, text);
  return () => renameSync(tmp, join(dir, file));
}

/** Atomic write: a reader (the folder watcher) never sees a half-written file. */
export function putFile(dir: string, file: string, text: string): void {
  stageFile(dir, file, text)();
}

/**
 * `sluice run -f DIR --workers N --port-offset O --no-access-log` on 127.0.0.1 with `files` in DIR.
 * Resolves once the HTTP listener accepts connections, i.e. once the first config is served.
 */
export async function startSluice(files: Record<string, string>, opts: SluiceOptions = {}): Promise<Sluice> {
  const dir = await makeTempDir("sluice");
  for (const [name, text] of Object.entries(files)) putFile(dir, name, text);
  const offset = await freeOffset();
  const http = { host: "127.0.0.1", port: HTTP_PORT + offset };
  const args = [SLUICE_BIN, "run", "-f", dir, "--workers", String(opts.workers ?? 1), "--port-offset", String(offset), "--no-access-log"];
  // process.execPath: the Node 24 this script runs on (the system node may be older).
  const server = await startServer("sluice", process.execPath, args, http, dir, opts);
  return { ...server, dir, http, https: { host: "127.0.0.1", port: HTTPS_PORT + offset }, put: (file, text) => putFile(dir, file, text), stage: (file, text) => stageFile(dir, file, text) };
}

/** Resident memory of a process and its live descendants (proxy workers), from /proc/<pid>/status. */
export function rssMB(pid: number): number {
  let kb = 0;
  for (const p of [pid, ...descendantsOf(pid)]) {
    let status: string;
    try {
      status = readFileSync(`/proc/${p}/status`, "utf8");
    } catch {
      continue; // exited
    }
    kb += Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1] ?? 0);
  }
  return kb / 1024;
}

/**
 * RSS once it has held still (within 1 MB) for 5 s, sampled every 250 ms for at most 30 s. Longer
 * than the 3 s of quiet after which Sluice compacts its heap (operator/heap/compact.ts).
 */
export async function settledRss(pid: number): Promise<{ mb: number; afterS: number }> {
  const t0 = performance.now();
  let still = rssMB(pid);
  let since = t0;
  while (performance.now() - t0 < 30_000) {
    await new Promise((r) => setTimeout(r, 250));
    const now = rssMB(pid);
    if (Math.abs(now - still) > 1) {
      still = now;
      since = performance.now();
    } else if (performance.now() - since >= 5000) break;
  }
  return { mb: rssMB(pid), afterS: (since - t0) / 1000 };
}

// ---- manifests ----

/** GatewayClass, the Gateway (HTTP on 80, and HTTPS on 443 with the Secret when `tls`), and the backend Services. */
export function baseManifests(o: { backendPort: number; tls: boolean }): string {
  const https = o.tls
    ? `
  - name: https
    protocol: HTTPS
    port: ${HTTPS_PORT}
    tls: {certificateRefs: [{name: ${SECRET}}]}
    allowedRoutes: {namespaces: {from: All}}`
    : "";
  const backend = [{ address: "127.0.0.1", port: o.backendPort, pod: "backend-0" }];
  return `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: sluice}
spec: {controllerName: sluice.dev/gateway-controller}
---
apiVersion: v1
kind: Namespace
metadata: {name: ${GATEWAY.namespace}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: ${GATEWAY.name}, namespace: ${GATEWAY.namespace}}
spec:
  gatewayClassName: sluice
  listeners:
  - name: http
    protocol: HTTP
    port: ${HTTP_PORT}
    allowedRoutes: {namespaces: {from: All}}${https}
---
${backendService(GATEWAY.namespace, "backend", 8080, backend)}---
${backendService(GATEWAY.namespace, "backend-b", 8080, backend)}`;
}

/** The HTTPS listener's certificate Secret. */
export function secretManifest(cert: TestCert): string {
  return tlsSecret(GATEWAY.namespace, SECRET, cert);
}

export type RouteSpec = {
  name: string;
  namespace?: string;
  hostnames?: string[];
  pathPrefix: string;
  /** A Service in the route's namespace, port 8080; default `backend`. */
  backend?: string;
  /** A ResponseHeaderModifier `set` on the rule: lets clients see which version of the route answered. */
  responseHeader?: { name: string; value: string };
  /** A second weighted backendRef (the first gets weight 1). */
  split?: { backend: string; weight: number };
};

export function httpRoute(r: RouteSpec): string {
  const q = (s: string) => JSON.stringify(s); // JSON strings are YAML flow scalars
  const hostnames = r.hostnames?.length ? `\n  hostnames: [${r.hostnames.map(q).join(", ")}]` : "";
  const filters = r.responseHeader
    ? `\n    filters:\n    - type: ResponseHeaderModifier\n      responseHeaderModifier: {set: [{name: ${q(r.responseHeader.name)}, value: ${q(r.responseHeader.value)}}]}`
    : "";
  const backends = [`{name: ${r.backend ?? "backend"}, port: 8080, weight: 1}`];
  if (r.split) backends.push(`{name: ${r.split.backend}, port: 8080, weight: ${r.split.weight}}`);
  return `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ${r.name}, namespace: ${r.namespace ?? GATEWAY.namespace}}
spec:
  parentRefs: [{name: ${GATEWAY.name}, namespace: ${GATEWAY.namespace}}]${hostnames}
  rules:
  - matches: [{path: {type: PathPrefix, value: ${q(r.pathPrefix)}}}]${filters}
    backendRefs: [${backends.join(", ")}]
`;
}

/** A namespace of `routes` HTTPRoutes, each with its own hostname and path, and a Service for them to use. */
export function namespaceOfRoutes(ns: string, routes: number, backendPort: number): string {
  const parts = [
    `apiVersion: v1\nkind: Namespace\nmetadata: {name: ${ns}}\n`,
    backendService(ns, "backend", 8080, [{ address: "127.0.0.1", port: backendPort, pod: `backend-${ns}` }]),
  ];
  for (let i = 0; i < routes; i++) parts.push(httpRoute({ name: `r${i}`, namespace: ns, hostnames: [manyHost(ns, i)], pathPrefix: `/r${i}` }));
  return parts.join("---\n");
}

export function manyHost(ns: string, i: number): string {
  return `r${i}.${ns}.bench.example`;
}
