// HTTP routing and filters through real sockets: client → proxy → echo backends.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { startEcho, type EchoHttpResponse, type EchoServer } from "../echo/echo.ts";
import { backendService, objectsOf, randomLoopback, send, startStack, type Stack, httpGatewayYaml, until } from "./testkit.ts";

const NS = "demo";

function base(extra: string): string {
  return `${httpGatewayYaml(NS)}---
${extra}`;
}

describe("HTTP proxying", () => {
  const addr = randomLoopback();
  let v1: EchoServer;
  let v2: EchoServer;
  let stack: Stack;
  const port = (): number => 80 + stack.portOffset;

  before(async () => {
    v1 = await startEcho({ mode: "http", host: addr, port: 0, identity: { pod: "v1-pod", namespace: NS } });
    v2 = await startEcho({ mode: "http", host: addr, port: 0, identity: { pod: "v2-pod", namespace: NS } });
    const yaml = base(`${backendService(NS, "v1", 8080, [{ address: addr, port: v1.port, pod: "v1-pod" }])}---
${backendService(NS, "v2", 8080, [{ address: addr, port: v2.port, pod: "v2-pod" }])}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: ${NS}}
spec:
  parentRefs: [{name: gw}]
  hostnames: [example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /v2}}]
    backendRefs: [{name: v2, port: 8080}]
  - matches: [{headers: [{name: x-canary, value: "yes"}]}]
    backendRefs: [{name: v2, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /split}}]
    backendRefs: [{name: v1, port: 8080, weight: 95}, {name: v2, port: 8080, weight: 5}]
  - matches: [{path: {type: PathPrefix, value: /add}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {add: [{name: X-Added, value: a}], set: [{name: X-Set, value: s}], remove: [x-remove]}
    - type: ResponseHeaderModifier
      responseHeaderModifier: {set: [{name: X-Resp, value: r}]}
    backendRefs: [{name: v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: v1, port: 8080}]
`);
    stack = await startStack(objectsOf(yaml), { address: addr });
  });
  after(async () => {
    await stack.close();
    await v1.close();
    await v2.close();
  });

  it("routes by path prefix and header and answers 404 for other hosts", async () => {
    const a = await send({ address: addr, port: port(), host: "example.com", path: "/hello?x=1" });
    assert.equal(a.status, 200, a.body);
    const ja = JSON.parse(a.body) as EchoHttpResponse;
    assert.equal(ja.pod, "v1-pod");
    assert.equal(ja.path, "/hello?x=1");
    assert.equal(ja.host, "example.com");
    const b = await send({ address: addr, port: port(), host: "example.com", path: "/v2/x" });
    assert.equal((JSON.parse(b.body) as EchoHttpResponse).pod, "v2-pod");
    const c = await send({ address: addr, port: port(), host: "example.com", path: "/", headers: { "x-canary": "yes" } });
    assert.equal((JSON.parse(c.body) as EchoHttpResponse).pod, "v2-pod");
    const d = await send({ address: addr, port: port(), host: "other.com", path: "/" });
    assert.equal(d.status, 404);
  });

  it("sets forwarding headers", async () => {
    const a = await send({ address: addr, port: port(), host: "example.com:80", path: "/", headers: { "x-forwarded-for": "203.0.113.9" } });
    const j = JSON.parse(a.body) as EchoHttpResponse;
    assert.deepEqual(j.headers["X-Forwarded-For"], ["203.0.113.9, 127.0.0.1"]);
    assert.deepEqual(j.headers["X-Forwarded-Proto"], ["http"]);
    assert.deepEqual(j.headers["X-Forwarded-Host"], ["example.com:80"]);
    assert.match(j.headers["X-Request-Id"]?.[0] ?? "", /^[0-9a-f-]{36}$/);
  });

  it("applies request and response header modifiers", async () => {
    const a = await send({ address: addr, port: port(), host: "example.com", path: "/add", headers: { "x-added": "orig", "x-remove": "gone", "x-set": "old" } });
    const j = JSON.parse(a.body) as EchoHttpResponse;
    assert.deepEqual(j.headers["X-Added"], ["orig,a"]);
    assert.deepEqual(j.headers["X-Set"], ["s"]);
    assert.equal(j.headers["X-Remove"], undefined);
    assert.equal(a.headers["x-resp"], "r");
  });

  it("splits 95/5 by weight", async () => {
    let v2n = 0;
    const n = 2000;
    for (let i = 0; i < n; i += 50) {
      const replies = await Promise.all(Array.from({ length: 50 }, () => send({ address: addr, port: port(), host: "example.com", path: "/split" })));
      for (const r of replies) if ((JSON.parse(r.body) as EchoHttpResponse).pod === "v2-pod") v2n++;
    }
    const share = v2n / n;
    assert.ok(share > 0.03 && share < 0.07, `v2 share ${share}`);
  });

  it("routes and forwards the normal form of a path, so a prefix cannot be sidestepped", async () => {
    // A raw request line: clients such as curl would resolve the dot segments themselves.
    const raw = (target: string): Promise<EchoHttpResponse> => new Promise((resolve, reject) => {
      const s = net.connect({ host: addr, port: port() });
      let got = "";
      s.on("data", (c: Buffer) => (got += c.toString("latin1")));
      s.on("error", reject);
      s.on("close", () => resolve(JSON.parse(got.slice(got.indexOf("\r\n\r\n") + 4)) as EchoHttpResponse));
      s.write(`GET ${target} HTTP/1.1\r\nhost: example.com\r\nconnection: close\r\n\r\n`);
    });
    const cases: [string, string, string][] = [
      ["/v2/../hello", "v1-pod", "/hello"],
      ["/v2/%2e%2e/hello?x=/../", "v1-pod", "/hello?x=/../"],
      ["/x/../v2/y", "v2-pod", "/v2/y"],
      ["/%762/y", "v2-pod", "/v2/y"],
      ["//v2//y", "v2-pod", "/v2/y"],
      ["/v2%2Fy", "v1-pod", "/v2%2Fy"],
    ];
    for (const [target, pod, path] of cases) {
      const j = await raw(target);
      assert.deepEqual([j.pod, j.path], [pod, path], target);
    }
  });

  it("answers Expect: 100-continue and forwards the body (curl sends it for large uploads)", async () => {
    const body = "x".repeat(2048);
    const s = net.connect({ host: addr, port: port() });
    let got = "";
    s.on("data", (c: Buffer) => (got += c.toString("latin1")));
    s.write(`POST /upload HTTP/1.1\r\nhost: example.com\r\ncontent-length: ${body.length}\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n`);
    assert.ok(await until(() => got.length > 0, 2000), "no interim answer");
    assert.match(got, /^HTTP\/1\.1 100 Continue\r\n\r\n/);
    s.write(body);
    const closed = await until(() => s.destroyed || s.readableEnded, 3000);
    s.destroy();
    assert.ok(closed, `no answer after the body: ${got}`);
    const final = got.slice(got.indexOf("\r\n\r\n") + 4);
    assert.match(final, /^HTTP\/1\.1 200 /, final);
    const j = JSON.parse(final.slice(final.indexOf("\r\n\r\n") + 4)) as EchoHttpResponse;
    assert.equal(j.method, "POST");
    assert.equal(j.path, "/upload");
  });

  it("serves h2c with prior knowledge", async () => {
    const a = await send({ address: addr, port: port(), host: "example.com", path: "/v2/h2", h2: true });
    assert.equal(a.status, 200, a.body);
    const j = JSON.parse(a.body) as EchoHttpResponse;
    assert.equal(j.pod, "v2-pod");
  });
});
