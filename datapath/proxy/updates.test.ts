// Updates without loss: config changes under load drop nothing, listeners open and close
// independently, in-flight requests survive their listener's removal, and shutdown drains.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import https from "node:https";
import { startEcho, type EchoServer } from "../echo/echo.ts";
import type { K8sObject } from "../../operator/api/objects.ts";
import { backendService, makeCerts, objectsOf, randomLoopback, send, startStack, tlsSecret, type Stack, GATEWAY_CLASS_YAML } from "./testkit.ts";

const NS = "u";

function manifests(addr: string, echoPort: number, opts: { value: string; extraListener: boolean; weight: number }): K8sObject[] {
  return objectsOf(`${GATEWAY_CLASS_YAML}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: ${NS}}
spec:
  gatewayClassName: sluice
  listeners:
  - {name: http, protocol: HTTP, port: 80}
${opts.extraListener ? "  - {name: extra, protocol: HTTP, port: 81}\n" : ""}---
${backendService(NS, "echo", 8080, [{ address: addr, port: echoPort, pod: "e0" }])}---
${backendService(NS, "echo2", 8080, [{ address: addr, port: echoPort, pod: "e0" }])}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: ${NS}}
spec:
  parentRefs: [{name: gw}]
  rules:
  - filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-version, value: "${opts.value}"}]}}]
    backendRefs: [{name: echo, port: 8080, weight: 100}, {name: echo2, port: 8080, weight: ${opts.weight}}]
`);
}

/** Keep-alive request loops until stopped; counts every answer that is not a 200. */
function load(addr: string, port: number, loops: number): { stop(): Promise<{ ok: number; bad: string[] }> } {
  const agent = new http.Agent({ keepAlive: true, maxSockets: loops });
  let running = true;
  let ok = 0;
  const bad: string[] = [];
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const req = http.get({ host: addr, port, path: "/", agent, headers: { host: "x" } }, (res) => {
        res.resume();
        res.on("end", () => {
          if (res.statusCode === 200) ok++;
          else bad.push(String(res.statusCode));
          resolve();
        });
      });
      req.on("error", (err) => {
        bad.push(err.message);
        resolve();
      });
    });
  const workers = Array.from({ length: loops }, async () => {
    while (running) await one();
  });
  return {
    async stop() {
      running = false;
      await Promise.all(workers);
      agent.destroy();
      return { ok, bad };
    },
  };
}

describe("config updates under load", () => {
  const addr = randomLoopback();
  let echo: EchoServer;
  let stack: Stack;
  const port = (): number => 80 + stack.portOffset;

  before(async () => {
    echo = await startEcho({ mode: "http", host: addr, port: 0 });
    stack = await startStack(manifests(addr, echo.port, { value: "0", extraListener: false, weight: 0 }), { address: addr });
  });
  after(async () => {
    await stack.close();
    await echo.close();
  });

  it("drops no request across 50 updates (route edits, weights, a listener opening and closing)", async () => {
    const l = load(addr, port(), 8);
    for (let i = 1; i <= 50; i++) {
      await stack.update(manifests(addr, echo.port, { value: String(i), extraListener: i % 2 === 1, weight: i % 3 }));
      await new Promise((r) => setTimeout(r, 20));
    }
    const { ok, bad } = await l.stop();
    assert.deepEqual(bad, [], `${bad.length} failures`);
    assert.ok(ok > 200, `only ${ok} requests completed`);
    const last = JSON.parse((await send({ address: addr, port: port(), host: "x" })).body) as { headers: Record<string, string[]> };
    assert.deepEqual(last.headers["X-Version"], ["50"]);
  });

  it("lets an in-flight request finish when its listener is removed, and refuses new connections there", async () => {
    await stack.update(manifests(addr, echo.port, { value: "a", extraListener: true, weight: 0 }));
    const slow = send({ address: addr, port: 81 + stack.portOffset, host: "x", headers: { "x-echo-delay-ms": "300" } });
    await new Promise((r) => setTimeout(r, 100));
    await stack.update(manifests(addr, echo.port, { value: "a", extraListener: false, weight: 0 }));
    const r = await slow;
    assert.equal(r.status, 200);
    await assert.rejects(send({ address: addr, port: 81 + stack.portOffset, host: "x" }), /ECONNREFUSED/);
    // The other listener never noticed.
    assert.equal((await send({ address: addr, port: port(), host: "x" })).status, 200);
  });
});

describe("graceful shutdown", () => {
  it("finishes in-flight requests before closing", async () => {
    const addr = randomLoopback();
    const echo = await startEcho({ mode: "http", host: addr, port: 0 });
    const stack = await startStack(manifests(addr, echo.port, { value: "0", extraListener: false, weight: 0 }), { address: addr });
    const slow = send({ address: addr, port: 80 + stack.portOffset, host: "x", headers: { "x-echo-delay-ms": "300" } });
    await new Promise((r) => setTimeout(r, 100));
    const closing = stack.proxy.close(5000);
    assert.equal((await slow).status, 200);
    await closing;
    await assert.rejects(send({ address: addr, port: 80 + stack.portOffset, host: "x" }), /ECONNREFUSED/);
    await echo.close();
  });

  it("closes idle HTTPS keep-alive connections at once instead of waiting for the grace period", async () => {
    const addr = randomLoopback();
    const echo = await startEcho({ mode: "http", host: addr, port: 0 });
    const { ca, leaves } = makeCerts([{ cn: "x", sans: ["DNS:x"] }]);
    const objects = [
      ...manifests(addr, echo.port, { value: "0", extraListener: false, weight: 0 }),
      ...objectsOf(`${tlsSecret(NS, "x", leaves[0] as (typeof leaves)[number])}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: tls, namespace: ${NS}}
spec:
  gatewayClassName: sluice
  listeners: [{name: https, protocol: HTTPS, port: 443, tls: {certificateRefs: [{name: x}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: tls, namespace: ${NS}}
spec:
  parentRefs: [{name: tls}]
  rules: [{backendRefs: [{name: echo, port: 8080}]}]
`),
    ];
    const stack = await startStack(objects, { address: addr });
    const agent = new https.Agent({ keepAlive: true, ca: ca.cert, servername: "x" });
    try {
      const status = await new Promise<number>((resolve, reject) => {
        https.get({ host: addr, port: 443 + stack.portOffset, path: "/", agent, headers: { host: "x" }, servername: "x" }, (res) => {
          res.resume();
          res.on("end", () => resolve(res.statusCode ?? 0));
        }).on("error", reject);
      });
      assert.equal(status, 200);
      assert.equal(stack.proxy.connections(), 1, "the keep-alive connection stays open, idle");
      const t0 = performance.now();
      await stack.proxy.close(10_000);
      assert.ok(performance.now() - t0 < 2000, `closed in ${Math.round(performance.now() - t0)} ms`);
    } finally {
      agent.destroy();
      await echo.close();
    }
  });
});
