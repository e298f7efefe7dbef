// Every `request:` expectation of the golden cases (operator/translate/testdata), replayed over
// real sockets: client → Proxy → echo backends. golden.test.ts checks the same expectations
// against the pure router only; here the translated config is served by the real proxy and the
// echo that answers says which Service it belongs to.
//
// Per case: the fixtures' pod addresses (10.244.A.B) become loopback addresses, one echo server
// listens on each endpoint, every Gateway gets its own loopback address, and listener port P is
// served on P + OFFSET. Cases run one after another; each closes its proxy and echoes.
// Requests are HTTP/1.1 (over TLS with SNI = host on HTTPS listeners), except GrpcEcho calls,
// which are made as real gRPC calls over h2c: that is what GRPCRoutes route.
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { isIP } from "node:net";
import { after, before, describe, it, type TestContext } from "node:test";
import { status as GrpcCode, type ServiceError } from "@grpc/grpc-js";
import { GRPC_ECHO_SERVICE, grpcEchoCall, startEcho, type EchoHttpResponse, type EchoServer, type EchoTlsOptions, type GrpcEchoResponse } from "../echo/echo.ts";
import { keyOf, type EndpointSlice, type K8sObject, type Secret } from "../../operator/api/objects.ts";
import { snapshotOf } from "../../operator/store/snapshot.ts";
import { caseNames, loadCase, loadExpectations, type Expectation, type RequestSpec } from "../../operator/translate/goldencases.ts";
import type { Cluster, DatapathConfig, L7Listener, L7Port, RouteEntry } from "../../operator/translate/output.ts";
import { Translator } from "../../operator/translate/translate.ts";
import { proxyConfigFrom } from "./config.ts";
import { decide, selectListener } from "./router.ts";
import { Proxy } from "./server.ts";
import { send, type Reply } from "./testkit.ts";

/** Listener port P is served on P + OFFSET (standalone mode); redirects carry the offset too. */
const OFFSET = 30000;
const WELL_KNOWN: Record<string, number> = { http: 80, https: 443 };

// ---- a case brought up on loopback ----

interface Backend {
  address: string;
  port: number;
  pod: string;
  namespace: string;
  service: string;
}

interface FixtureCert {
  id: string;
  x509: X509Certificate;
  cert: string;
  key: string;
}

interface Running {
  datapath: DatapathConfig;
  /** Gateway key → the loopback address it was given. */
  gatewayAddress: Map<string, string>;
  /** kubernetes.io/tls Secrets of the fixtures: backend server and frontend client certificates. */
  certs: FixtureCert[];
  close(): Promise<void>;
}

/** Later duplicates win, as in a snapshot: an object a case redefines must not be served twice. */
function dedupe(objects: K8sObject[]): K8sObject[] {
  const byKey = new Map<string, K8sObject>();
  for (const o of objects) {
    const k = `${o.kind}/${keyOf(o)}`;
    byKey.delete(k);
    byKey.set(k, o);
  }
  return [...byKey.values()];
}

/**
 * Pod addresses 10.244.A.B become 127.S.A.B, S numbering the Service: the fixtures' pods serve
 * several Services (the conformance suite's tls-backend, infra-backend-v1), but an echo reports
 * one Service, so each (Service, pod) pair gets its own address. 127.0.x.y is left to Gateways.
 * The base objects are shared with other cases: slices are copied, never changed in place.
 */
function rewriteEndpoints(objects: K8sObject[]): { objects: K8sObject[]; backends: Backend[] } {
  const slices = objects.filter((o): o is EndpointSlice => o.kind === "EndpointSlice");
  const serviceOf = (s: EndpointSlice): string => `${s.metadata.namespace ?? ""}/${s.metadata.labels?.["kubernetes.io/service-name"] ?? ""}`;
  const services = [...new Set(slices.map(serviceOf))].sort();
  assert.ok(services.length < 255, "too many Services to number in one octet");
  const backends = new Map<string, Backend>();
  const out = objects.map((o) => {
    if (o.kind !== "EndpointSlice") return o;
    const slice = structuredClone(o) as EndpointSlice;
    const s = services.indexOf(serviceOf(slice)) + 1;
    for (const ep of slice.endpoints ?? []) {
      ep.addresses = ep.addresses.map((a) => {
        const m = /^10\.244\.(\d+)\.(\d+)$/.exec(a);
        // Anything else could be a real host: the replay must never connect to it.
        assert.ok(m, `${keyOf(slice)}: endpoint ${a} is not a 10.244/16 pod address`);
        const address = `127.${s}.${m[1]}.${m[2]}`;
        for (const p of slice.ports ?? []) {
          if ((p.protocol ?? "TCP") !== "TCP" || p.port === undefined) continue;
          backends.set(`${address}:${p.port}`, {
            address,
            port: p.port,
            pod: ep.targetRef?.name ?? "",
            namespace: slice.metadata.namespace ?? "",
            service: slice.metadata.labels?.["kubernetes.io/service-name"] ?? "",
          });
        }
        return address;
      });
    }
    return slice;
  });
  return { objects: out, backends: [...backends.values()] };
}

function fixtureCerts(objects: K8sObject[]): FixtureCert[] {
  const out: FixtureCert[] = [];
  for (const o of objects) {
    if (o.kind !== "Secret" || (o as Secret).type !== "kubernetes.io/tls") continue;
    const data = (o as Secret).data ?? {};
    const cert = Buffer.from(data["tls.crt"] ?? "", "base64").toString("utf8");
    const key = Buffer.from(data["tls.key"] ?? "", "base64").toString("utf8");
    try {
      out.push({ id: keyOf(o), x509: new X509Certificate(cert), cert, key });
    } catch {
      // Malformed certificates are fixtures for invalid references; nothing serves them.
    }
  }
  return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

function pemCerts(bundle: string): X509Certificate[] {
  const out: X509Certificate[] = [];
  for (const m of bundle.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g)) {
    try {
      out.push(new X509Certificate(m[0]));
    } catch {
      // Not a certificate: nothing can chain to it.
    }
  }
  return out;
}

function signedBy(c: X509Certificate, cas: readonly X509Certificate[]): boolean {
  return cas.some((ca) => c.checkIssued(ca) && c.verify(ca.publicKey));
}

/**
 * What a TLS backend serves: a fixture certificate that chains to the policy's CA and is valid for
 * its SNI (the conformance suite's tls-backend serves tls-checks-certificate, which does).
 */
function backendCertFor(tls: NonNullable<Cluster["tls"]>, certs: readonly FixtureCert[]): EchoTlsOptions {
  const cas = tls.caCertificates === "System" ? [] : tls.caCertificates.flatMap(pemCerts);
  const score = (c: FixtureCert): number => (signedBy(c.x509, cas) ? 2 : 0) + (c.x509.checkHost(tls.sni) ? 1 : 0);
  const best = [...certs].sort((a, b) => score(b) - score(a))[0];
  assert.ok(best, "the fixtures hold no TLS certificate for a backend");
  return { cert: best.cert, key: best.key };
}

/** Clusters GRPCRoute entries forward to: their pods are gRPC servers. */
function grpcClusters(dp: DatapathConfig): Set<string> {
  const out = new Set<string>();
  for (const gw of dp.gateways) {
    for (const p of gw.ports) {
      for (const l of p.listeners) {
        for (const v of l.virtualHosts) {
          for (const e of v.routes) {
            if (!e.grpc) continue;
            for (const b of e.backends) if (b.cluster) out.add(b.cluster);
          }
        }
      }
    }
  }
  return out;
}

async function startCase(name: string): Promise<Running> {
  const c = loadCase(name);
  const { objects, backends } = rewriteEndpoints(dedupe(c.merged.objects.map((p) => p.object)));
  const gateways = objects.filter((o) => o.kind === "Gateway").map(keyOf).sort();
  assert.ok(gateways.length < 254, "too many Gateways to number in one octet");
  const gatewayAddress = new Map(gateways.map((g, i) => [g, `127.0.1.${i + 1}`]));
  const byGateway = Object.fromEntries([...gatewayAddress].map(([g, a]) => [g, [a]]));
  // The case's own options (acknowledgement), with addressing replaced: each Gateway on its own address.
  const result = new Translator({ ...c.options, addressing: { mode: "static", addresses: [], byGateway } }).translate(snapshotOf(objects));
  const dp = result.datapath;
  const certs = fixtureCerts(objects);

  // Echo mode per endpoint: gRPC behind GRPCRoutes, TLS behind a BackendTLSPolicy, else HTTP/1.1 + h2c.
  const grpc = grpcClusters(dp);
  const modeOf = new Map<string, { mode: "grpc" } | { mode: "tls"; tls: EchoTlsOptions }>();
  for (const cl of dp.clusters) {
    for (const ep of cl.endpoints) {
      const k = `${ep.address}:${ep.port}`;
      if (cl.tls) modeOf.set(k, { mode: "tls", tls: backendCertFor(cl.tls, certs) });
      else if (grpc.has(cl.id) && !modeOf.has(k)) modeOf.set(k, { mode: "grpc" });
    }
  }
  const echoes: EchoServer[] = [];
  const proxy = new Proxy();
  const close = async (): Promise<void> => {
    await proxy.close(200);
    await Promise.all(echoes.map((e) => e.close()));
  };
  try {
    await Promise.all(
      backends.map(async (b) => {
        const m = modeOf.get(`${b.address}:${b.port}`);
        const identity = { pod: b.pod, namespace: b.namespace, service: b.service };
        const base = { host: b.address, port: b.port, identity };
        echoes.push(await startEcho(m?.mode === "tls" ? { ...base, mode: "tls", tls: m.tls } : { ...base, mode: m?.mode ?? "http" }));
      }),
    );
    const applied = await proxy.apply(proxyConfigFrom(dp, 1, { portOffset: OFFSET }));
    assert.deepEqual(applied.errors, [], `${name}: bindings failed`);
  } catch (err) {
    await close();
    throw err;
  }
  return { datapath: dp, gatewayAddress, certs, close };
}

// ---- one request ----

function lower(h: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(h).map(([k, v]) => [k.toLowerCase(), v]));
}

function describeRequest(i: number, e: Expectation): string {
  const r = e.request as RequestSpec;
  const want = e.status ?? (e.redirect ? `redirect ${JSON.stringify(e.redirect)}` : (e.backend ?? e.backends?.join("|") ?? 200));
  return `[${i}] ${r.method ?? "GET"} ${r.host ?? "<gateway address>"}:${r.port ?? 80}${r.path ?? "/"}${r.headers ? ` ${JSON.stringify(r.headers)}` : ""} → ${want}`;
}

/** Go duration of echo-basic's `?delay=` (only the forms the fixtures use). */
function delayMs(path: string): number {
  const q = path.indexOf("?");
  const d = q < 0 ? null : new URLSearchParams(path.slice(q + 1)).get("delay");
  const m = d ? /^(\d+)(ms|s)$/.exec(d) : null;
  return m ? Number(m[1]) * (m[2] === "s" ? 1000 : 1) : 0;
}

/** A proxy-made answer (plain text), not one relayed from an echo (JSON). */
function assertFromProxy(reply: Reply, status: number, where: string): void {
  assert.equal(reply.status, status, `${where}: expected ${status} from the proxy, got ${reply.status}: ${reply.body.slice(0, 200)}`);
  assert.match(String(reply.headers["content-type"] ?? ""), /^text\/plain/, `${where}: the ${status} must come from the proxy, not a backend`);
}

function assertBackend(namespace: string, service: string, e: Expectation, where: string): void {
  const got = `${namespace}/${service}`;
  if (e.backend) assert.equal(got, e.backend, `${where}: answered by ${got}`);
  if (e.backends) assert.ok(e.backends.includes(got), `${where}: answered by ${got}, not one of ${e.backends.join(", ")}`);
}

async function replay(t: TestContext, run: Running, e: Expectation, where: string): Promise<void> {
  const r = e.request as RequestSpec;
  const address = run.gatewayAddress.get(r.gateway);
  assert.ok(address, `no Gateway ${r.gateway} in the case`);
  const gw = run.datapath.gateways.find((g) => g.gateway === r.gateway);
  const listenerPort = r.port ?? 80;
  const port: L7Port | undefined = gw?.ports.find((p) => p.port === listenerPort);
  if (!gw || !gw.addresses.includes(address) || !port) {
    // The translator serves nothing there (the 404 of the pure-router check): the proxy must refuse
    // the connection, and no HTTP status exists to compare.
    assert.equal(e.status, 404, `${where}: the Gateway serves nothing on port ${listenerPort}, yet a route is expected`);
    await assert.rejects(send({ address, port: listenerPort + OFFSET, host: r.host ?? address, path: r.path ?? "/" }), { code: "ECONNREFUSED" }, `${where}: something answers on an unserved port`);
    return t.skip(`${r.gateway} has no L7 listener on port ${listenerPort} (${gw ? "the listener is not programmed" : "the Gateway is not programmed"}): the connection is refused, there is no 404 to observe`);
  }
  const host = r.host ?? address;
  const path = r.path ?? "/";
  const method = r.method ?? "GET";
  const headers = lower(r.headers ?? {});
  const secure = port.listeners.some((l) => l.protocol === "HTTPS");

  if (path.startsWith(`/${GRPC_ECHO_SERVICE}/`)) return replayGrpc(t, e, where, address, listenerPort, host, path, headers, secure);

  // The listener a TLS client reaches (by SNI): its client-certificate validation decides what the client presents.
  let clientCert: { cert: string; key: string } | undefined;
  if (secure) {
    const https: L7Port = { port: port.port, listeners: port.listeners.filter((l) => l.protocol === "HTTPS") };
    const listener: L7Listener | undefined = selectListener(https, host);
    const validation = listener?.tls?.clientValidation;
    if (validation) {
      const cas = validation.caCertificates.flatMap((id) => pemCerts(run.datapath.caBundles.find((b) => b.id === id)?.pem ?? ""));
      const found = run.certs.find((c) => !c.x509.ca && signedBy(c.x509, cas));
      if (found) clientCert = { cert: found.cert, key: found.key };
      else if (validation.mode === "AllowValidOnly") {
        return t.skip(`listener ${listener.id} requires a client certificate signed by ${cas.map((c) => c.subject.replace(/\n/g, ",")).join(" or ")}, and the fixtures hold none`);
      }
    }
  }

  const reply = await send({
    address,
    port: listenerPort + OFFSET,
    host,
    path,
    method,
    headers,
    // Routing is what is tested, not the Gateway's certificate: no verification, SNI = host.
    ...(secure ? { tls: { ...(isIP(host) ? {} : { servername: host }), ...clientCert } } : {}),
  });

  if (e.status === 404 || e.status === 500) return assertFromProxy(reply, e.status, where);
  if (e.status !== undefined) return void assert.equal(reply.status, e.status, `${where}: status`);

  if (e.redirect) {
    const statusCode = e.redirect.statusCode ?? 302;
    assert.equal(reply.status, statusCode, `${where}: redirect status (${reply.body.slice(0, 200)})`);
    const location = String(reply.headers.location ?? "");
    const url = new URL(location);
    // Gateway API port rules: an explicit port; else a changed scheme's well-known port; else the listener's.
    const scheme = e.redirect.scheme ?? (secure ? "https" : "http");
    const want = e.redirect.port ?? (e.redirect.scheme !== undefined ? (WELL_KNOWN[scheme] ?? listenerPort) : listenerPort);
    assert.equal(url.protocol, `${scheme}:`, `${where}: Location ${location} scheme`);
    assert.equal(url.hostname, e.redirect.hostname ?? host, `${where}: Location ${location} host`);
    assert.equal(url.port, String(want + OFFSET), `${where}: Location ${location} port (listener port + ${OFFSET})`);
    return;
  }

  // A rule timeout shorter than the echo's requested delay answers 504 (conformance wants exactly
  // that), so which backend the route chose cannot be seen.
  const d = decide(port, { host, path, method, headers });
  const entry: RouteEntry | undefined = d.kind === "route" ? d.entry : undefined;
  const timeout = Math.min(entry?.timeouts?.requestMs || Infinity, entry?.timeouts?.backendRequestMs || Infinity);
  if (delayMs(path) > timeout) {
    assertFromProxy(reply, 504, where);
    return t.skip(`answered 504 by the rule's ${timeout}ms timeout before the echo's ?delay= ends, as conformance requires: the backend chosen is not observable`);
  }

  assert.equal(reply.status, 200, `${where}: expected 200 from a backend, got ${reply.status}: ${reply.body.slice(0, 200)}`);
  const echo = JSON.parse(reply.body) as EchoHttpResponse;
  assertBackend(echo.namespace, echo.service, e, where);
}

async function replayGrpc(
  t: TestContext, e: Expectation, where: string, address: string, listenerPort: number,
  host: string, path: string, metadata: Record<string, string>, secure: boolean,
): Promise<void> {
  if (secure) return t.skip("gRPC over TLS: the echo client (grpcEchoCall) speaks h2c only");
  const method = path.slice(GRPC_ECHO_SERVICE.length + 2);
  if (method !== "Echo" && method !== "EchoTwo" && method !== "EchoThree") return t.skip(`no GrpcEcho method ${method} to call`);
  const call = grpcEchoCall(`${address}:${listenerPort + OFFSET}`, method, { authority: host, metadata });
  if (e.status !== undefined) {
    // The proxy answers gRPC with the status the HTTP one maps to (404 → UNIMPLEMENTED, 500 → INTERNAL)
    // and says why; a backend's UNIMPLEMENTED (EchoThree) would carry grpc-js's own message.
    const code = e.status === 404 ? GrpcCode.UNIMPLEMENTED : e.status === 500 ? GrpcCode.INTERNAL : undefined;
    assert.ok(code !== undefined, `${where}: no gRPC status for HTTP ${e.status}`);
    const err = await call.then(
      (res: GrpcEchoResponse) => assert.fail(`${where}: expected ${e.status}, answered by ${res.assertions?.context?.serviceName ?? "?"}`),
      (x: unknown) => x as ServiceError,
    );
    if (err.code === GrpcCode.INTERNAL && /Call ended without gRPC status/.test(err.details)) {
      // Proxy bug (datapath/proxy/grpc.ts sendGrpcError, not ours to edit): writeHead() then end()
      // on an Http2ServerResponse sends HEADERS without END_STREAM and then an empty DATA frame
      // with END_STREAM, so grpc-status arrives as initial metadata, not as a Trailers-Only
      // response; clients (grpc-js, grpc-go) see a stream without status and report INTERNAL.
      // The routing decision is still checked, on the raw HTTP/2 answer.
      const raw = await send({
        address, port: listenerPort + OFFSET, host, path, method: "POST", h2: true,
        headers: { ...metadata, "content-type": "application/grpc", te: "trailers" },
        body: Buffer.alloc(5), // one empty length-prefixed message
      });
      const field = (k: string): string => String(raw.headers[k] ?? raw.trailers?.[k] ?? "");
      assert.equal(field("grpc-status"), String(code), `${where}: grpc-status on the wire`);
      if (e.status === 404) assert.equal(decodeURIComponent(field("grpc-message")), "no route", `${where}: the 404 must come from the proxy`);
      t.todo(`proxy bug: its gRPC ${e.status} (grpc-status ${code}) is not a Trailers-Only response (grpc.ts sendGrpcError: writeHead then end), so the client reports INTERNAL "${err.details}"`);
    }
    assert.equal(err.code, code, `${where}: gRPC status (${err.details})`);
    if (e.status === 404) assert.equal(err.details, "no route", `${where}: the 404 must come from the proxy`);
    return;
  }
  const res = await call;
  const ctx = res.assertions?.context;
  assert.ok(ctx, `${where}: the echo reported no context`);
  assertBackend(ctx.namespace, ctx.serviceName, e, where);
}

// ---- the cases ----

const cases = caseNames()
  .map((name) => ({ name, requests: (loadExpectations(name) ?? []).flatMap((e, i) => (e.request ? [{ e, i }] : [])) }))
  .filter((c) => c.requests.length > 0);

it("there are request expectations to replay", () => assert.ok(cases.length > 0));

for (const { name, requests } of cases) {
  describe(name, () => {
    let run: Running | undefined;
    before(async () => {
      run = await startCase(name);
    });
    after(async () => {
      await run?.close();
    });
    for (const { e, i } of requests) {
      const where = `${name}.expect.yaml${describeRequest(i, e)}`;
      it(describeRequest(i, e), async (t) => {
        assert.ok(run, "the case did not start");
        await replay(t, run, e, where);
      });
    }
  });
}
