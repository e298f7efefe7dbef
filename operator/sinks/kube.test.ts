import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, connect, type AddressInfo, type Socket } from "node:net";
import { KubeConfig } from "@kubernetes/client-node";
import { Translator } from "../translate/translate.ts";
import { apiFailure, backoffDelay, jsonEqual } from "./kube.ts";
import { StatusWriter } from "./status.ts";
import { gateway, gatewayClass, httpRoute, put, snapshotFrom, startServer } from "./testkit.ts";

test("apiFailure reads status, Retry-After (seconds or date) and the Status message", () => {
  const f = apiFailure({ code: 429, headers: { "retry-after": "3" }, body: JSON.stringify({ kind: "Status", message: "slow down" }) });
  assert.deepEqual(f, { status: 429, retryAfterMs: 3000, message: "slow down" });
  const date = new Date(Date.now() + 5000).toUTCString();
  const g = apiFailure({ code: 503, headers: { "retry-after": date }, body: { message: "x" } });
  assert.ok((g.retryAfterMs ?? 0) > 3000 && (g.retryAfterMs ?? 0) <= 5000);
  assert.equal(apiFailure(new TypeError("fetch failed")).status, 0);
  assert.equal(apiFailure(undefined).status, 0);
});

test("backoffDelay doubles with jitter, is capped, and honours Retry-After up to the cap", () => {
  for (let i = 0; i < 50; i++) {
    const d3 = backoffDelay(3, { initialMs: 100, maxMs: 10_000 });
    assert.ok(d3 >= 200 && d3 <= 400, String(d3));
    assert.ok(backoffDelay(30, { initialMs: 100, maxMs: 1000 }) <= 1000);
  }
  assert.equal(backoffDelay(1, { maxMs: 2000 }, 5000), 2000);
  assert.equal(backoffDelay(1, {}, 1500), 1500);
});

test("jsonEqual ignores key order and undefined fields", () => {
  assert.equal(jsonEqual({ a: 1, b: [1, { c: 2 }] }, { b: [1, { c: 2 }], a: 1, d: undefined }), true);
  assert.equal(jsonEqual([1, 2], [2, 1]), false);
  assert.equal(jsonEqual({ a: null }, { a: 0 }), false);
});

test("requests share a connection pool instead of one connection per request", async () => {
  const server = await startServer();
  // A counting TCP proxy in front of the fake API server.
  let connections = 0;
  const sockets = new Set<Socket>();
  const target = new URL(server.url);
  const proxy = createServer((client) => {
    connections++;
    const upstream = connect(Number(target.port), target.hostname);
    sockets.add(client).add(upstream);
    client.pipe(upstream).pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
  });
  await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  try {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: "p", server: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`, skipTLSVerify: true }],
      users: [{ name: "u", token: server.token }],
      contexts: [{ name: "c", cluster: "p", user: "u" }],
      currentContext: "c",
    });
    put(server, gatewayClass("k1"));
    put(server, gateway("gw", "k1", {}, "k1"));
    for (let i = 0; i < 100; i++) put(server, httpRoute(`r${i}`, ["gw"], "k1"));
    const w = new StatusWriter({ kubeConfig: kc, concurrency: 4 });
    const snap = snapshotFrom(server);
    w.update(new Translator({ assumeAcknowledged: true }).translate(snap), snap);
    await w.idle();
    assert.equal(w.writeCount(), 102);
    assert.ok(connections <= 20, `${connections} connections for ${w.writeCount()} writes`);
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => proxy.close(() => resolve()));
    await server.close();
  }
});
