// Test support: manifests → translator → a real Proxy on loopback, and a client that speaks
// HTTP/1.1, HTTPS and HTTP/2 (TLS or prior knowledge) to it. Each stack takes its own random
// 127.x.y.z address so test files running in parallel never collide on a port.
import http from "node:http";
import net from "node:net";
import https from "node:https";
import http2 from "node:http2";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseManifests } from "../../operator/sources/manifests.ts";
import { snapshotOf } from "../../operator/store/snapshot.ts";
import { Translator, type TranslateOptions } from "../../operator/translate/translate.ts";
import type { K8sObject } from "../../operator/api/objects.ts";
import type { TranslateResult } from "../../operator/translate/output.ts";
import { proxyConfigFrom } from "./config.ts";
import { Proxy, type ProxyOptions } from "./server.ts";

export function randomLoopback(): string {
  const b = (): number => 1 + Math.floor(Math.random() * 250);
  return `127.${b()}.${b()}.${b()}`;
}

export function objectsOf(yaml: string): K8sObject[] {
  const parsed = parseManifests(yaml, "test.yaml");
  if (parsed.errors.length) throw new Error(parsed.errors.map((e) => `${e.line}: ${e.message}`).join("\n"));
  return parsed.objects.map((o, i) => {
    const obj = o.object;
    obj.metadata.generation ??= 1;
    obj.metadata.creationTimestamp ??= new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString();
    return obj;
  });
}

export interface Stack {
  proxy: Proxy;
  address: string;
  portOffset: number;
  result: TranslateResult;
  /** Re-translates with new objects and applies the result. */
  update(objects: K8sObject[]): Promise<TranslateResult>;
  close(): Promise<void>;
}

export interface StackOptions {
  address?: string;
  portOffset?: number;
  translate?: TranslateOptions;
  proxy?: ProxyOptions;
}

export async function startStack(objects: K8sObject[], opts: StackOptions = {}): Promise<Stack> {
  const address = opts.address ?? randomLoopback();
  const portOffset = opts.portOffset ?? 20000;
  const translator = new Translator({ addressing: { mode: "static", addresses: [address] }, assumeAcknowledged: true, ...opts.translate });
  const proxy = new Proxy({ ...opts.proxy, observer: opts.proxy?.observer });
  let version = 0;
  const apply = async (objs: K8sObject[]): Promise<TranslateResult> => {
    const result = translator.translate(snapshotOf(objs, new Map(), ++version));
    const applied = await proxy.apply(proxyConfigFrom(result.datapath, version, { portOffset }));
    if (applied.errors.length) throw new Error(`bind failed: ${JSON.stringify(applied.errors)}`);
    return result;
  };
  const result = await apply(objects);
  const stack: Stack = {
    proxy, address, portOffset, result,
    async update(objs) {
      stack.result = await apply(objs);
      return stack.result;
    },
    close: () => proxy.close(500),
  };
  return stack;
}

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  trailers?: Record<string, string | string[] | undefined>;
}

export interface RequestOptions {
  address: string;
  port: number;
  host?: string;
  path?: string;
  method?: string;
  headers?: Record<string, string | string[]>;
  body?: string | Buffer;
  /** HTTPS: SNI and trusted CA. */
  tls?: { servername?: string; ca?: string; cert?: string; key?: string };
  /** HTTP/2 (over TLS with `tls`, else prior knowledge). */
  h2?: boolean;
  timeoutMs?: number;
}

export function send(o: RequestOptions): Promise<Reply> {
  return o.h2 ? sendH2(o) : sendH1(o);
}

function sendH1(o: RequestOptions): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers = { ...(o.host ? { host: o.host } : {}), ...o.headers };
    const base = { host: o.address, port: o.port, path: o.path ?? "/", method: o.method ?? "GET", headers, agent: false as const };
    const onRes = (res: http.IncomingMessage): void => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") }));
      res.on("error", reject);
    };
    const req = o.tls
      ? https.request({ ...base, servername: o.tls.servername, ca: o.tls.ca, cert: o.tls.cert, key: o.tls.key, rejectUnauthorized: o.tls.ca !== undefined }, onRes)
      : http.request(base, onRes);
    req.setTimeout(o.timeoutMs ?? 10_000, () => req.destroy(new Error("client timeout")));
    req.on("error", reject);
    req.end(o.body);
  });
}

function sendH2(o: RequestOptions): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const authority = `${o.tls ? "https" : "http"}://${o.address}:${o.port}`;
    const session = o.tls
      ? http2.connect(authority, { servername: o.tls.servername, ca: o.tls.ca, cert: o.tls.cert, key: o.tls.key, rejectUnauthorized: o.tls.ca !== undefined })
      : http2.connect(authority);
    session.on("error", reject);
    const headers: http2.OutgoingHttpHeaders = { ":method": o.method ?? "GET", ":path": o.path ?? "/", ...o.headers };
    if (o.host) headers[":authority"] = o.host;
    const stream = session.request(headers, { endStream: o.body === undefined });
    if (o.body !== undefined) stream.end(o.body);
    let status = 0;
    let resHeaders: Record<string, string | string[] | undefined> = {};
    let trailers: Record<string, string | string[] | undefined> | undefined;
    const chunks: Buffer[] = [];
    stream.setTimeout(o.timeoutMs ?? 10_000, () => stream.close(http2.constants.NGHTTP2_CANCEL));
    stream.on("response", (h) => {
      status = Number(h[":status"]);
      resHeaders = h as Record<string, string | string[] | undefined>;
    });
    stream.on("trailers", (t) => (trailers = t as Record<string, string | string[] | undefined>));
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", () => {
      session.close();
      resolve({ status, headers: resHeaders, body: Buffer.concat(chunks).toString("utf8"), ...(trailers ? { trailers } : {}) });
    });
    stream.on("error", (err) => {
      session.destroy();
      reject(err);
    });
  });
}

export interface TestCert {
  cert: string;
  key: string;
  /** The CA that signed it (self-signed: the cert itself). */
  ca: string;
}

/** A CA and leaf certificates for the given names, made with openssl in a temporary directory. */
export function makeCerts(leaves: { cn: string; sans: string[] }[]): { ca: TestCert; leaves: TestCert[] } {
  const dir = mkdtempSync(join(tmpdir(), "sluice-certs-"));
  try {
    const run = (args: string[]): void => void execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
    run(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=sluice-test-ca"]);
    const ca = readFileSync(join(dir, "ca.crt"), "utf8");
    const out = leaves.map((l, i) => {
      run(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", `l${i}.key`, "-out", `l${i}.csr`, "-subj", `/CN=${l.cn}`]);
      const ext = join(dir, `l${i}.ext`);
      execFileSync("sh", ["-c", `printf 'subjectAltName=${l.sans.join(",")}\\n' > ${ext}`]);
      run(["x509", "-req", "-in", `l${i}.csr`, "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", `l${i}.crt`, "-days", "2", "-extfile", ext]);
      return { cert: readFileSync(join(dir, `l${i}.crt`), "utf8"), key: readFileSync(join(dir, `l${i}.key`), "utf8"), ca };
    });
    return { ca: { cert: ca, key: readFileSync(join(dir, "ca.key"), "utf8"), ca }, leaves: out };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function tlsSecret(namespace: string, name: string, c: TestCert): string {
  return `apiVersion: v1
kind: Secret
metadata: {name: ${name}, namespace: ${namespace}}
type: kubernetes.io/tls
data:
  tls.crt: ${Buffer.from(c.cert).toString("base64")}
  tls.key: ${Buffer.from(c.key).toString("base64")}
`;
}

/** A Service plus an EndpointSlice pointing at real local servers. */
export function backendService(namespace: string, name: string, port: number, endpoints: { address: string; port: number; pod: string }[], appProtocol?: string): string {
  const byPort = new Map<number, typeof endpoints>();
  for (const e of endpoints) byPort.set(e.port, [...(byPort.get(e.port) ?? []), e]);
  let out = `apiVersion: v1
kind: Service
metadata: {name: ${name}, namespace: ${namespace}}
spec:
  ports: [{name: p, port: ${port}${appProtocol ? `, appProtocol: ${appProtocol}` : ""}}]
`;
  let i = 0;
  for (const [p, eps] of byPort) {
    out += `---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ${name}-${i++}, namespace: ${namespace}, labels: {kubernetes.io/service-name: ${name}}}
addressType: IPv4
ports: [{name: p, port: ${p}}]
endpoints:
${eps.map((e) => `  - {addresses: [${e.address}], conditions: {ready: true}, targetRef: {kind: Pod, name: ${e.pod}}}`).join("\n")}
`;
  }
  return out;
}

/** GatewayClass `sluice`, controlled by Sluice. */
export const GATEWAY_CLASS_YAML = `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: sluice}
spec: {controllerName: sluice.dev/gateway-controller}
`;

/** GatewayClass `sluice` and Gateway `gw` in `namespace` with one HTTP listener on port 80. */
export function httpGatewayYaml(namespace: string): string {
  return `${GATEWAY_CLASS_YAML}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: ${namespace}}
spec:
  gatewayClassName: sluice
  listeners:
  - {name: http, protocol: HTTP, port: 80}
`;
}

/** A port with nothing listening: connections to it are refused. */
export async function deadPort(address: string): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, address, r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Polls `cond` every 10 ms for up to `ms`; answers whether it came true. */
export async function until(cond: () => boolean, ms = 3000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return cond();
}
