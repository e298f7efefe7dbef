// GRPCRoute through real sockets: a grpc-js client over h2c to the proxy, the proxy over h2c to
// gRPC echo backends. Matching, errors as gRPC statuses, weights, header filters and trailers.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import http2 from "node:http2";
import net from "node:net";
import * as grpc from "@grpc/grpc-js";
import { GRPC_ECHO_SERVICE, grpcEchoCall, startEcho, type EchoServer, type GrpcEchoResponse } from "../echo/echo.ts";
import { backendService, objectsOf, randomLoopback, startStack, type Stack, httpGatewayYaml } from "./testkit.ts";

const NS = "demo";

function grpcRoute(name: string, hostname: string, rules: string): string {
  return `---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: ${name}, namespace: ${NS}}
spec:
  parentRefs: [{name: gw}]
  hostnames: [${hostname}]
  rules:
${rules}`;
}

function manifests(addr: string, v1: number, v2: number, dead: number): string {
  const method = (m: string, backend: string): string => `  - matches: [{method: {service: ${GRPC_ECHO_SERVICE}, method: ${m}}}]
    backendRefs: [{name: ${backend}, port: 8080}]
`;
  const headers = (list: [string, string][], backend: string): string =>
    `  - matches: [{headers: [${list.map(([n, v]) => `{name: ${n}, value: ${v}}`).join(", ")}]}]
    backendRefs: [{name: ${backend}, port: 8080}]
`;
  return `${httpGatewayYaml(NS)}---
${backendService(NS, "grpc-v1", 8080, [{ address: addr, port: v1, pod: "grpc-v1-pod" }], "kubernetes.io/h2c")}---
${backendService(NS, "grpc-v2", 8080, [{ address: addr, port: v2, pod: "grpc-v2-pod" }])}---
${backendService(NS, "grpc-dead", 8080, [{ address: addr, port: dead, pod: "dead-pod" }])}${grpcRoute("exact", "exact.example", method("Echo", "grpc-v1") + method("EchoTwo", "grpc-v2"))}${grpcRoute("headers", "headers.example", [
    headers([["version", "one"]], "grpc-v1"),
    headers([["version", "two"]], "grpc-v2"),
    headers([["version", "two"], ["color", "orange"]], "grpc-v1"),
    `  - matches: [{headers: [{name: color, value: blue}]}, {headers: [{name: color, value: green}]}]
    backendRefs: [{name: grpc-v1, port: 8080}]
`,
    `  - matches: [{headers: [{name: color, value: red}]}, {headers: [{name: color, value: yellow}]}]
    backendRefs: [{name: grpc-v2, port: 8080}]
`,
  ].join(""))}${grpcRoute("service", "service.example", `  - matches: [{method: {service: ${GRPC_ECHO_SERVICE}}}]
    backendRefs: [{name: grpc-v2, port: 8080}]
`)}${grpcRoute("weights", "weights.example", `  - backendRefs: [{name: grpc-v1, port: 8080, weight: 70}, {name: grpc-v2, port: 8080, weight: 30}]
`)}${grpcRoute("nobackend", "nobackend.example", `  - matches: [{method: {service: ${GRPC_ECHO_SERVICE}, method: Echo}}]
  - matches: [{method: {service: ${GRPC_ECHO_SERVICE}, method: EchoTwo}}]
    backendRefs: [{name: missing, port: 8080}]
  - matches: [{method: {service: ${GRPC_ECHO_SERVICE}, method: EchoThree}}]
    backendRefs: [{name: grpc-dead, port: 8080}]
`)}${grpcRoute("modifier", "modifier.example", `  - matches: [{method: {service: ${GRPC_ECHO_SERVICE}, method: Echo}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: X-Header-Set, value: set-overwrites-values}]
        add: [{name: X-Header-Add, value: add-appends-values}]
        remove: [X-Header-Remove]
    backendRefs: [{name: grpc-v1, port: 8080}]
  - matches: [{method: {service: ${GRPC_ECHO_SERVICE}, method: EchoTwo}}]
    backendRefs:
    - name: grpc-v2
      port: 8080
      filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Backend, value: v2}]}}]
`)}`;
}

describe("GRPCRoute", () => {
  const addr = randomLoopback();
  let v1: EchoServer;
  let v2: EchoServer;
  let stack: Stack;
  const target = (): string => `${addr}:${80 + stack.portOffset}`;
  const call = (authority: string, method: "Echo" | "EchoTwo" | "EchoThree", metadata?: Record<string, string>): Promise<GrpcEchoResponse> =>
    grpcEchoCall(target(), method, { authority, ...(metadata ? { metadata } : {}), timeoutMs: 5000 });
  const pod = (r: GrpcEchoResponse): string => r.assertions?.context?.pod ?? "";
  /** The call's gRPC status code and message, when it fails. */
  const failure = async (p: Promise<unknown>): Promise<{ code: number; details: string }> => {
    try {
      await p;
    } catch (err) {
      const e = err as grpc.ServiceError;
      return { code: e.code, details: e.details };
    }
    throw new Error("call succeeded");
  };

  before(async () => {
    v1 = await startEcho({ mode: "grpc", host: addr, port: 0, identity: { pod: "grpc-v1-pod", namespace: NS } });
    v2 = await startEcho({ mode: "grpc", host: addr, port: 0, identity: { pod: "grpc-v2-pod", namespace: NS } });
    const s = net.createServer();
    await new Promise<void>((r) => s.listen(0, addr, r));
    const dead = (s.address() as net.AddressInfo).port;
    await new Promise<void>((r) => s.close(() => r()));
    stack = await startStack(objectsOf(manifests(addr, v1.port, v2.port, dead)), { address: addr });
    for (const name of ["exact", "headers", "service", "weights", "modifier"]) {
      const st = JSON.stringify(stack.result.statuses.get(`GRPCRoute/${NS}/${name}`)?.status ?? {});
      assert.match(st, /"type":"Accepted","status":"True"/, `${name}: ${st}`);
    }
  });
  after(async () => {
    await stack.close();
    await v1.close();
    await v2.close();
  });

  it("routes by exact method to two backends (h2c by appProtocol or by default)", async () => {
    const a = await call("exact.example", "Echo");
    assert.equal(pod(a), "grpc-v1-pod");
    assert.equal(a.assertions?.fullyQualifiedMethod, `/${GRPC_ECHO_SERVICE}/Echo`);
    assert.equal(a.assertions?.authority, "exact.example");
    assert.equal(pod(await call("exact.example", "EchoTwo")), "grpc-v2-pod");
  });

  it("answers an unmatched method, service or host with UNIMPLEMENTED from the proxy", async () => {
    const m = await failure(call("exact.example", "EchoThree"));
    assert.equal(m.code, grpc.status.UNIMPLEMENTED);
    assert.match(m.details, /no route/);
    const h = await failure(call("unknown.example", "Echo"));
    assert.equal(h.code, grpc.status.UNIMPLEMENTED);
    // Another service on a host whose only rule names GrpcEcho.
    const client = new grpc.Client(target(), grpc.credentials.createInsecure(), { "grpc.default_authority": "service.example" });
    const other = await new Promise<grpc.ServiceError | null>((resolve) => {
      client.makeUnaryRequest("/other.Service/Echo", (b: Buffer) => b, (b: Buffer) => b, Buffer.alloc(0), new grpc.Metadata(), { deadline: Date.now() + 5000 }, (err) => resolve(err));
    });
    client.close();
    assert.equal(other?.code, grpc.status.UNIMPLEMENTED);
  });

  it("matches a whole service, and passes the backend's own UNIMPLEMENTED through", async () => {
    assert.equal(pod(await call("service.example", "Echo")), "grpc-v2-pod");
    assert.equal(pod(await call("service.example", "EchoTwo")), "grpc-v2-pod");
    const three = await failure(call("service.example", "EchoThree"));
    assert.equal(three.code, grpc.status.UNIMPLEMENTED);
    assert.doesNotMatch(three.details, /no route/);
  });

  it("matches metadata as GRPCRouteHeaderMatching does", async () => {
    const cases: [Record<string, string>, string | undefined][] = [
      [{ version: "one" }, "grpc-v1-pod"],
      [{ version: "two" }, "grpc-v2-pod"],
      [{ version: "two", color: "orange" }, "grpc-v1-pod"],
      [{ version: "two", color: "blue" }, "grpc-v2-pod"],
      [{ color: "orange" }, undefined],
      [{ "some-other-header": "one" }, undefined],
      [{ color: "blue" }, "grpc-v1-pod"],
      [{ color: "green" }, "grpc-v1-pod"],
      [{ color: "red" }, "grpc-v2-pod"],
      [{ color: "yellow" }, "grpc-v2-pod"],
      [{ color: "purple" }, undefined],
    ];
    for (const [md, expected] of cases) {
      if (expected) assert.equal(pod(await call("headers.example", "Echo", md)), expected, JSON.stringify(md));
      else assert.equal((await failure(call("headers.example", "Echo", md))).code, grpc.status.UNIMPLEMENTED, JSON.stringify(md));
    }
  });

  it("answers rules that cannot forward with gRPC statuses, not HTTP errors", async () => {
    const none = await failure(call("nobackend.example", "Echo"));
    assert.equal(none.code, grpc.status.INTERNAL);
    assert.doesNotMatch(none.details, /HTTP status/);
    const missing = await failure(call("nobackend.example", "EchoTwo"));
    assert.equal(missing.code, grpc.status.INTERNAL);
    const dead = await failure(call("nobackend.example", "EchoThree"));
    assert.equal(dead.code, grpc.status.UNAVAILABLE);
    assert.doesNotMatch(dead.details, /HTTP status/);
  });

  it("splits 70/30 by weight", async () => {
    const n = 200;
    let v1n = 0;
    for (let i = 0; i < n; i += 25) {
      const replies = await Promise.all(Array.from({ length: 25 }, () => call("weights.example", "Echo")));
      for (const r of replies) if (pod(r) === "grpc-v1-pod") v1n++;
    }
    const share = v1n / n;
    assert.ok(share > 0.6 && share < 0.8, `v1 share ${share}`);
  });

  it("applies RequestHeaderModifier on the rule and on the backendRef", async () => {
    const r = await call("modifier.example", "Echo", { "x-header-set": "old", "x-header-add": "orig", "x-header-remove": "gone", keep: "k" });
    const headers = r.assertions?.headers ?? [];
    const values = (k: string): string[] => headers.filter((h) => h.key === k).map((h) => h.value);
    assert.deepEqual(values("x-header-set"), ["set-overwrites-values"]);
    assert.deepEqual(values("x-header-add").join(",").split(/,\s*/), ["orig", "add-appends-values"]);
    assert.deepEqual(values("x-header-remove"), []);
    assert.deepEqual(values("keep"), ["k"]);
    const two = await call("modifier.example", "EchoTwo");
    assert.equal(pod(two), "grpc-v2-pod");
    assert.deepEqual((two.assertions?.headers ?? []).filter((h) => h.key === "x-backend").map((h) => h.value), ["v2"]);
  });

  it("delivers the backend's trailers (grpc-status) to an HTTP/2 client", async () => {
    const session = http2.connect(`http://${target()}`);
    session.on("error", () => undefined);
    try {
      const exchange = (path: string): Promise<{ headers: http2.IncomingHttpHeaders; trailers?: http2.IncomingHttpHeaders; body: Buffer }> =>
        new Promise((resolve, reject) => {
          const stream = session.request({ ":method": "POST", ":path": path, ":authority": "exact.example", "content-type": "application/grpc", te: "trailers" });
          let headers: http2.IncomingHttpHeaders = {};
          let trailers: http2.IncomingHttpHeaders | undefined;
          const chunks: Buffer[] = [];
          stream.on("response", (h) => (headers = h));
          stream.on("trailers", (t) => (trailers = t));
          stream.on("data", (c: Buffer) => chunks.push(c));
          stream.on("end", () => resolve({ headers, body: Buffer.concat(chunks), ...(trailers ? { trailers } : {}) }));
          stream.on("error", reject);
          // An empty EchoRequest: uncompressed flag and a zero length.
          stream.end(Buffer.alloc(5));
        });
      const ok = await exchange(`/${GRPC_ECHO_SERVICE}/Echo`);
      assert.equal(ok.headers[":status"], 200);
      assert.equal(ok.headers["grpc-status"], undefined);
      assert.ok(ok.body.length > 5);
      assert.equal(ok.trailers?.["grpc-status"], "0");
      const none = await exchange(`/${GRPC_ECHO_SERVICE}/EchoThree`);
      assert.equal(none.headers[":status"], 200);
      assert.equal(none.headers["grpc-status"] ?? none.trailers?.["grpc-status"], String(grpc.status.UNIMPLEMENTED));
    } finally {
      session.close();
    }
  });
});
