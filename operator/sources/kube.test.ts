// The cluster source against the in-repo fake API server (real HTTP, real resourceVersion and
// 410 semantics), and against a raw HTTP server for malformed watch streams.
import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { startFakeApiServer, gatewayApiCrds, sluiceCrds, type FakeApiServer } from "../fakeapi/server.ts";
import { crd } from "../fakeapi/crds.ts";
import { KIND_NAMES, type KindName } from "../api/kinds.ts";
import type { SourceEvent } from "./events.ts";
import { Backoff, kubeApi, retryAfter } from "./kubeapi.ts";
import { SourceMonitor, kubeSourceNames, watchCluster, type KubeSourceOptions, type SourceMetrics } from "./kube.ts";
import { captureLog, gateway, gatewayClass, httpRoute, kubeConfigFor, ns, service, until } from "./kubetestkit.ts";

const FAST = { discoveryIntervalMs: 200, backoff: { initialMs: 20, maxMs: 300 } };

class RecordingMetrics implements SourceMetrics {
  counts = new Map<string, number>();
  private add(k: string): void {
    this.counts.set(k, (this.counts.get(k) ?? 0) + 1);
  }
  get(k: string): number {
    return this.counts.get(k) ?? 0;
  }
  watchRestart(kind: KindName): void { this.add(`restart/${kind}`); }
  relist(kind: KindName): void { this.add(`relist/${kind}`); }
  event(kind: KindName, type: string): void { this.add(`event/${kind}/${type}`); }
  synced(kind: KindName): void { this.add(`synced/${kind}`); }
  apiError(kind: KindName, status: number): void { this.add(`error/${kind}/${status}`); }
}

interface Running {
  events: SourceEvent[];
  logs: ReturnType<typeof captureLog>;
  metrics: RecordingMetrics;
  monitor: SourceMonitor;
  /** Events of one kind and object name. */
  of(kind: KindName, name: string): string[];
  synced(): string[];
  stop(): void;
}

function startSource(server: string, token: string, opts: Partial<KubeSourceOptions> = {}): Running {
  const logs = captureLog();
  const metrics = new RecordingMetrics();
  const monitor = new SourceMonitor();
  const events: SourceEvent[] = [];
  const sub = watchCluster({ api: kubeApi(kubeConfigFor(server, token)), log: logs.log, metrics, monitor, ...FAST, ...opts }).subscribe((e) => events.push(e));
  return {
    events, logs, metrics, monitor,
    of: (kind, name) => events.filter((e) => e.type !== "SYNCED" && e.type !== "ERROR" && e.kind === kind && e.object.metadata.name === name).map((e) => e.type),
    synced: () => events.filter((e) => e.type === "SYNCED").map((e) => (e as { source: string }).source),
    stop: () => sub.unsubscribe(),
  };
}

async function withFake(opts: Parameters<typeof startFakeApiServer>[0], f: (fake: FakeApiServer) => Promise<void>): Promise<void> {
  const fake = await startFakeApiServer(opts);
  try {
    await f(fake);
  } finally {
    await fake.close();
  }
}

const allCrds = () => [...gatewayApiCrds(), ...sluiceCrds()];
const routePath = "/apis/gateway.networking.k8s.io/v1/httproutes";
const isWatch = (q: string) => /(^|&)watch=(1|true)/.test(q);
const rvOf = (q: string) => new URLSearchParams(q).get("resourceVersion") ?? "";

test("lists every kind at its served version, one SYNCED per kind, and only TLS Secrets", async () => {
  await withFake({ crds: allCrds() }, async (fake) => {
    fake.apply(ns("a"));
    fake.apply(gatewayClass());
    fake.apply(gateway("a", "gw"));
    fake.apply(httpRoute("a", "r1", "gw"));
    fake.apply({ apiVersion: "v1", kind: "Secret", metadata: { namespace: "a", name: "opaque" }, type: "Opaque", data: {} });
    fake.apply({ apiVersion: "v1", kind: "Secret", metadata: { namespace: "a", name: "tls" }, type: "kubernetes.io/tls", data: { "tls.crt": "", "tls.key": "" } });
    const src = startSource(fake.url, fake.token);
    try {
      assert.ok(await until(() => src.synced().length === KIND_NAMES.length), `synced: ${src.synced().join(", ")}`);
      assert.deepEqual(src.synced().sort(), kubeSourceNames().sort());
      assert.ok(src.monitor.synced());
      // Each kind's objects come before its SYNCED.
      const routeAt = src.events.findIndex((e) => e.type === "ADDED" && e.kind === "HTTPRoute");
      const routeSynced = src.events.findIndex((e) => e.type === "SYNCED" && e.source === "kube/HTTPRoute");
      assert.ok(routeAt >= 0 && routeAt < routeSynced);
      const route = src.events[routeAt] as { object: { apiVersion: string; metadata: { managedFields?: unknown } } };
      assert.equal(route.object.apiVersion, "gateway.networking.k8s.io/v1");
      assert.equal(route.object.metadata.managedFields, undefined, "managedFields are dropped");
      // Typed lists omit apiVersion/kind on items: filled in.
      const nsEvent = src.events.find((e) => e.type === "ADDED" && e.kind === "Namespace") as { object: { apiVersion: string; kind: string } };
      assert.equal(nsEvent.object.apiVersion, "v1");
      assert.equal(nsEvent.object.kind, "Namespace");
      assert.deepEqual(src.of("Secret", "tls"), ["ADDED"]);
      assert.deepEqual(src.of("Secret", "opaque"), []);
      const secretReqs = fake.requests.filter((r) => r.path === "/api/v1/secrets");
      assert.ok(secretReqs.length >= 1 && secretReqs.every((r) => new URLSearchParams(r.query).get("fieldSelector") === "type=kubernetes.io/tls"));
      // Watch requests ask for bookmarks.
      assert.ok(await until(() => fake.requests.some((r) => r.path === routePath && isWatch(r.query) && /allowWatchBookmarks=true/.test(r.query))));
      // Live events.
      fake.apply({ ...httpRoute("a", "r1", "gw"), metadata: { namespace: "a", name: "r1", labels: { x: "1" } } });
      fake.remove("gateway.networking.k8s.io/v1", "Gateway", "a", "gw");
      assert.ok(await until(() => src.of("HTTPRoute", "r1").includes("MODIFIED") && src.of("Gateway", "gw").includes("DELETED")));
    } finally {
      src.stop();
    }
  });
});

test("optional CRDs: absent at start is an empty, synced kind; installed later it is watched; removed, its objects are deleted", async () => {
  const crds = gatewayApiCrds().filter((c) => (c as { spec: { names: { kind: string } } }).spec.names.kind !== "TCPRoute");
  await withFake({ crds }, async (fake) => {
    fake.apply(ns("a"));
    const src = startSource(fake.url, fake.token);
    try {
      assert.ok(await until(() => src.synced().length === KIND_NAMES.length));
      assert.ok(src.logs.find(/TCPRoute is not served/).length === 1);
      assert.ok(src.logs.find(/GatewayClassConfig is not served/).length === 1);
      const tcpCrd = crd("gateway.networking.k8s.io", "TCPRoute", "tcproutes", true, ["v1alpha2"]);
      fake.apply(tcpCrd as never);
      fake.apply({ apiVersion: "gateway.networking.k8s.io/v1alpha2", kind: "TCPRoute", metadata: { namespace: "a", name: "t1" }, spec: { parentRefs: [{ name: "gw" }], rules: [{ backendRefs: [{ name: "b", port: 9 }] }] } });
      for (const c of sluiceCrds()) fake.apply(c as never);
      fake.apply({ apiVersion: "sluice.dev/v1alpha1", kind: "GatewayClassConfig", metadata: { namespace: "a", name: "cfg" }, spec: {} });
      assert.ok(await until(() => src.of("TCPRoute", "t1").includes("ADDED") && src.of("GatewayClassConfig", "cfg").includes("ADDED"), 5000), src.events.length.toString());
      const t1 = src.events.find((e) => e.type === "ADDED" && e.kind === "TCPRoute") as { object: { apiVersion: string } };
      assert.equal(t1.object.apiVersion, "gateway.networking.k8s.io/v1alpha2");
      assert.ok(src.logs.find(/TCPRoute is now served/).length === 1);
      fake.remove("apiextensions.k8s.io/v1", "CustomResourceDefinition", undefined, "tcproutes.gateway.networking.k8s.io");
      assert.ok(await until(() => src.of("TCPRoute", "t1").includes("DELETED"), 5000));
      // The CRD's objects go with it (a DELETED from the watch); discovery then retires the kind.
      assert.ok(await until(() => src.logs.find(/TCPRoute is no longer served/).length === 1, 3000));
    } finally {
      src.stop();
    }
  });
});

test("picks the served version Sluice knows, logs versions it does not", async () => {
  const crds = [
    ...gatewayApiCrds().filter((c) => !["HTTPRoute", "TLSRoute"].includes((c as { spec: { names: { kind: string } } }).spec.names.kind)),
    // v2 is newer than anything Sluice reads; v1 is still served.
    crd("gateway.networking.k8s.io", "HTTPRoute", "httproutes", true, ["v2", "v1"]),
    crd("gateway.networking.k8s.io", "TLSRoute", "tlsroutes", true, ["v1alpha2"]),
  ];
  await withFake({ crds }, async (fake) => {
    fake.apply(ns("a"));
    fake.apply(httpRoute("a", "r1", "gw"));
    const src = startSource(fake.url, fake.token);
    try {
      assert.ok(await until(() => src.synced().length === KIND_NAMES.length));
      assert.equal(src.logs.find(/HTTPRoute is served at gateway.networking.k8s.io\/v2, which Sluice does not read; reading gateway.networking.k8s.io\/v1/).length, 1);
      assert.ok(fake.requests.some((r) => r.path === routePath));
      assert.ok(!fake.requests.some((r) => r.path === "/apis/gateway.networking.k8s.io/v2/httproutes"));
      assert.ok(fake.requests.some((r) => r.path === "/apis/gateway.networking.k8s.io/v1alpha2/tlsroutes"));
      assert.deepEqual(src.of("HTTPRoute", "r1"), ["ADDED"]);
    } finally {
      src.stop();
    }
  });
});

test("a dropped watch resumes from its resourceVersion without a re-list; bookmarks keep it fresh", async () => {
  await withFake({ crds: allCrds(), bookmarkIntervalMs: 50 }, async (fake) => {
    fake.apply(ns("a"));
    fake.apply(httpRoute("a", "r1", "gw"));
    const src = startSource(fake.url, fake.token);
    try {
      assert.ok(await until(() => src.synced().length === KIND_NAMES.length));
      // Changes to other kinds move the global resourceVersion; bookmarks carry it to this watch.
      for (let i = 0; i < 3; i++) fake.apply(service("a", `s${i}`));
      const rvAfterServices = Number(fake.resourceVersion);
      await new Promise((r) => setTimeout(r, 200));
      const before = fake.requests.length;
      fake.dropWatches();
      fake.apply({ ...httpRoute("a", "r2", "gw") });
      assert.ok(await until(() => src.of("HTTPRoute", "r2").includes("ADDED")));
      const after = fake.requests.slice(before).filter((r) => r.path === routePath);
      assert.ok(after.length >= 1);
      assert.ok(after.every((r) => isWatch(r.query)), `no list after a drop: ${after.map((r) => r.query).join(" | ")}`);
      assert.ok(Number(rvOf(after[0]!.query)) >= rvAfterServices, `resumed at ${rvOf(after[0]!.query)}, bookmarks had reached ${rvAfterServices}`);
      assert.equal(src.metrics.get("relist/HTTPRoute"), 0);
      assert.ok(src.metrics.get("event/HTTPRoute/BOOKMARK") > 0);
      // Thanks to the bookmark, even a compaction does not force a re-list.
      await new Promise((r) => setTimeout(r, 150));
      fake.compact();
      fake.dropWatches();
      fake.apply(httpRoute("a", "r3", "gw"));
      assert.ok(await until(() => src.of("HTTPRoute", "r3").includes("ADDED")));
      assert.equal(src.metrics.get("relist/HTTPRoute"), 0);
    } finally {
      src.stop();
    }
  });
});

test("410 after a watch gap re-lists and reports objects deleted during the gap", async () => {
  await withFake({ crds: allCrds() }, async (fake) => {
    fake.apply(ns("a"));
    fake.apply(httpRoute("a", "keep", "gw"));
    fake.apply(httpRoute("a", "gone", "gw"));
    const src = startSource(fake.url, fake.token);
    try {
      assert.ok(await until(() => src.synced().length === KIND_NAMES.length));
      // Keep HTTPRoute requests failing while the world changes and history is compacted.
      let blocking = true;
      fake.failNext({ status: 500, count: 100_000, match: (r) => blocking && r.path === routePath });
      fake.dropWatches();
      await until(() => src.metrics.get("error/HTTPRoute/500") > 0);
      fake.remove("gateway.networking.k8s.io/v1", "HTTPRoute", "a", "gone");
      fake.apply(httpRoute("a", "new", "gw"));
      fake.compact();
      blocking = false;
      assert.ok(await until(() => src.of("HTTPRoute", "gone").includes("DELETED") && src.of("HTTPRoute", "new").includes("ADDED"), 5000));
      assert.equal(src.metrics.get("relist/HTTPRoute"), 1);
      assert.deepEqual(src.of("HTTPRoute", "keep"), ["ADDED"], "an unchanged object is not re-sent");
      assert.ok(src.logs.find(/HTTPRoute watch expired \(410\); re-listing/).length >= 1);
    } finally {
      src.stop();
    }
  });
});

test("500 and 429 are retried with backoff, honouring Retry-After; the source recovers", async () => {
  await withFake({ crds: allCrds() }, async (fake) => {
    fake.apply(ns("a"));
    // The very first discovery fails too: nothing is watched until it succeeds.
    fake.failNext({ status: 500, count: 2, match: (r) => r.path === "/apis" });
    const src = startSource(fake.url, fake.token);
    try {
      assert.ok(await until(() => src.synced().length === KIND_NAMES.length));
      assert.equal(src.logs.find(/API discovery failed/).length, 2);
      fake.failNext({ status: 429, count: 1, retryAfterSeconds: 1, match: (r) => r.path === routePath });
      fake.failNext({ status: 500, count: 3, match: (r) => r.path === routePath });
      const before = fake.requests.length;
      fake.dropWatches();
      fake.apply(httpRoute("a", "after", "gw"));
      assert.ok(await until(() => src.of("HTTPRoute", "after").includes("ADDED"), 6000));
      const reqs = fake.requests.slice(before).filter((r) => r.path === routePath);
      const statuses = reqs.map((r) => r.status);
      assert.deepEqual(statuses.slice(0, 5), [429, 500, 500, 500, 200]);
      // Retry-After: 1 s, honoured even though the backoff alone would be 20 ms.
      assert.equal(src.metrics.get("error/HTTPRoute/429"), 1);
      assert.equal(src.metrics.get("error/HTTPRoute/500"), 3);
      assert.ok(src.logs.find(/HTTPRoute list\/watch failed/).some((l) => (l as { retryInMs?: number }).retryInMs! >= 1000));
      assert.equal(src.metrics.get("relist/HTTPRoute"), 0, "errors keep the resourceVersion: no re-list");
    } finally {
      src.stop();
    }
  });
});

test("watch lines that are not JSON, or objects without metadata, are logged and skipped", async () => {
  const server = http.createServer((req, res) => {
    const u = new URL(req.url ?? "/", "http://x");
    const json = (body: unknown): void => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    if (u.pathname === "/api") return json({ versions: ["v1"] });
    if (u.pathname === "/api/v1") return json({ resources: [{ name: "services", kind: "Service", namespaced: true }] });
    if (u.pathname === "/apis") return json({ groups: [] });
    if (u.pathname === "/api/v1/services" && u.searchParams.get("watch") !== "1") return json({ metadata: { resourceVersion: "5" }, items: [{ metadata: { namespace: "a", name: "listed" } }, { spec: {} }] });
    if (u.pathname === "/api/v1/services") {
      res.writeHead(200, { "content-type": "application/json" });
      res.write("this is not json\n");
      res.write(`${JSON.stringify({ type: "ADDED", object: { kind: "Service" } })}\n`);
      res.write(`${JSON.stringify({ type: "SURPRISE", object: {} })}\n`);
      // A valid event split across two writes.
      const ok = JSON.stringify({ type: "ADDED", object: { apiVersion: "v1", kind: "Service", metadata: { namespace: "a", name: "good", resourceVersion: "6" } } });
      res.write(ok.slice(0, 20));
      setTimeout(() => res.write(`${ok.slice(20)}\n`), 20);
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const src = startSource(url, "t", { kinds: ["Service"] });
  try {
    assert.ok(await until(() => src.of("Service", "good").includes("ADDED")));
    assert.deepEqual(src.of("Service", "listed"), ["ADDED"]);
    assert.equal(src.logs.find(/watch event that is not JSON/).length, 1);
    assert.equal(src.logs.find(/without metadata.name/).length, 2, "one in the list, one in the watch");
    assert.equal(src.logs.find(/watch event of unknown type/).length, 1);
  } finally {
    src.stop();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});

test("a CRD upgrade that serves a better version switches the watch, re-listing at the new version", async () => {
  const crds = [
    ...gatewayApiCrds().filter((c) => (c as { spec: { names: { kind: string } } }).spec.names.kind !== "TLSRoute"),
    crd("gateway.networking.k8s.io", "TLSRoute", "tlsroutes", true, ["v1alpha2"]),
  ];
  await withFake({ crds }, async (fake) => {
    fake.apply(ns("a"));
    fake.apply({ apiVersion: "gateway.networking.k8s.io/v1alpha2", kind: "TLSRoute", metadata: { namespace: "a", name: "t" }, spec: { parentRefs: [{ name: "gw" }], hostnames: ["t.example.com"], rules: [{ backendRefs: [{ name: "b", port: 443 }] }] } });
    const src = startSource(fake.url, fake.token);
    try {
      assert.ok(await until(() => src.of("TLSRoute", "t").includes("ADDED")));
      fake.apply(crd("gateway.networking.k8s.io", "TLSRoute", "tlsroutes", true, ["v1", "v1alpha2"]) as never);
      assert.ok(await until(() => src.of("TLSRoute", "t").includes("MODIFIED"), 5000));
      const last = src.events.filter((e) => e.type === "MODIFIED" && e.kind === "TLSRoute").at(-1) as { object: { apiVersion: string } };
      assert.equal(last.object.apiVersion, "gateway.networking.k8s.io/v1");
      assert.equal(src.logs.find(/TLSRoute: the cluster now serves v1; switching/).length, 1);
      assert.ok(fake.requests.some((r) => r.path === "/apis/gateway.networking.k8s.io/v1/tlsroutes"));
      assert.deepEqual(src.of("TLSRoute", "t").filter((t) => t === "DELETED"), [], "a switch deletes nothing");
    } finally {
      src.stop();
    }
  });
});

test("backoff doubles with jitter in [base/2, base], is capped, and yields to a longer Retry-After", () => {
  const high = new Backoff(500, 4000, () => 1);
  assert.deepEqual([1, 2, 3, 4, 5].map(() => high.next()), [500, 1000, 2000, 4000, 4000]);
  const low = new Backoff(500, 4000, () => 0);
  assert.deepEqual([1, 2, 3].map(() => low.next()), [250, 500, 1000]);
  low.reset();
  assert.equal(low.next(), 250);
  assert.equal(low.next(3000), 3000, "Retry-After wins when longer");
  assert.equal(low.next(10), 1000, "and the backoff when it is longer");
  assert.equal(retryAfter("3"), 3000);
  assert.equal(retryAfter(null), undefined);
  assert.equal(retryAfter("soon"), undefined);
  const inTwo = retryAfter(new Date(Date.now() + 2000).toUTCString())!;
  assert.ok(inTwo > 0 && inTwo <= 2000);
});
