// The whole operator (cluster sources → store → translator → status/Service sinks, leader
// election, admin endpoints) against the in-repo fake API server.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startFakeApiServer, certManagerCrds, gatewayApiCrds, sluiceCrds, type FakeApiServer, type K8sObjectLike } from "../fakeapi/server.ts";
import { crd } from "../fakeapi/crds.ts";
import { captureLog, gateway, gatewayClass, httpRoute, kubeConfigFor, ns, service, until, type CapturedLog } from "../sources/kubetestkit.ts";
import * as grpc from "@grpc/grpc-js";
import { startDistributionServer, tokenReviewAuthenticator } from "../sinks/distribution.ts";
import { subscribe, type DatapathUpdate } from "../../datapath/agent/subscribe.ts";
import { startOperator, type OperatorOptions, type RunningOperator } from "./host.ts";
import { kubeSinks } from "./sinks.ts";

const GW = "gateway.networking.k8s.io/v1";
const FAST_SOURCE = { discoveryIntervalMs: 300, backoff: { initialMs: 20, maxMs: 300 } };
const FAST_LEASE = { namespace: "sluice-system", leaseDurationMs: 1000, renewDeadlineMs: 700, retryPeriodMs: 100 };

interface Cond { type: string; status: string; reason: string }
type Status = { conditions?: Cond[]; parents?: { conditions?: Cond[] }[] };

const statusOf = (fake: FakeApiServer, kind: string, namespace: string | undefined, name: string): Status =>
  ((fake.get(kind === "Service" ? "v1" : GW, kind, namespace, name) as { status?: Status } | undefined)?.status ?? {});
const cond = (conds: Cond[] | undefined, type: string): Cond | undefined => conds?.find((c) => c.type === type);
const routeCond = (fake: FakeApiServer, ns: string, name: string, type: string): Cond | undefined => cond(statusOf(fake, "HTTPRoute", ns, name).parents?.[0]?.conditions, type);

/** Status writes (PUT/PATCH on .../status) since request index `from`, optionally by user. */
function statusWrites(fake: FakeApiServer, from = 0, user?: string): FakeApiServer["requests"] {
  return fake.requests.slice(from).filter((r) => r.subresource === "status" && (r.method === "PUT" || r.method === "PATCH") && (!user || r.user === user));
}

async function fakeCluster(opts: Parameters<typeof startFakeApiServer>[0] = {}): Promise<FakeApiServer> {
  const fake = await startFakeApiServer({ crds: [...gatewayApiCrds(), ...sluiceCrds()], ...opts });
  fake.apply(ns("app"));
  fake.apply(ns("sluice-system"));
  fake.apply(gatewayClass());
  fake.apply(gateway("app", "gw"));
  fake.apply(service("app", "backend"));
  fake.apply(httpRoute("app", "r1", "gw"));
  return fake;
}

interface Started {
  op: RunningOperator;
  logs: CapturedLog;
}

async function operator(fake: FakeApiServer, extra: Partial<OperatorOptions> = {}, token = fake.token): Promise<Started> {
  const logs = captureLog();
  const op = await startOperator({
    kubeConfig: kubeConfigFor(fake.url, token), log: logs.log, source: FAST_SOURCE, coalesceMs: 5,
    sinks: (ctx) => [kubeSinks(ctx, { backoff: { initialMs: 20, maxMs: 200 } })],
    sinkBackoff: { initialMs: 20, maxMs: 200 },
    ...extra,
  });
  return { op, logs };
}

const has = (op: RunningOperator, kind: "HTTPRoute" | "Gateway" | "GatewayClass", key: string): boolean => op.latest()?.snapshot.objects[kind].has(key) ?? false;

async function get(url: string): Promise<{ status: number; body: string }> {
  const res = await fetch(url);
  return { status: res.status, body: await res.text() };
}

test("translates the cluster, writes statuses, serves /healthz /readyz /metrics; never calls process.exit", async (t) => {
  const exit = t.mock.method(process, "exit", () => {
    throw new Error("process.exit called");
  });
  const fake = await fakeCluster();
  const { op, logs } = await operator(fake, { admin: { host: "127.0.0.1", port: 0 } });
  try {
    const admin = `http://127.0.0.1:${op.adminAddress()!.port}`;
    await op.ready;
    assert.ok(has(op, "GatewayClass", "sluice") && has(op, "Gateway", "app/gw") && has(op, "HTTPRoute", "app/r1"));
    assert.ok(op.latest()!.result.statuses.has("HTTPRoute/app/r1"));
    assert.ok(await until(() => routeCond(fake, "app", "r1", "Accepted")?.status === "True"), JSON.stringify(statusOf(fake, "HTTPRoute", "app", "r1")));
    assert.equal(cond(statusOf(fake, "GatewayClass", undefined, "sluice").conditions, "Accepted")?.status, "True");
    // The Gateway's Service is applied.
    assert.ok(await until(() => fake.list("v1", "Service", "app").some((s) => s.metadata.ownerReferences?.some((o) => o.kind === "Gateway" && o.name === "gw"))));
    // Live: a new route is picked up and gets its status.
    fake.apply(httpRoute("app", "r2", "gw"));
    assert.ok(await until(() => routeCond(fake, "app", "r2", "Accepted")?.status === "True"));

    assert.equal((await get(`${admin}/healthz`)).status, 200);
    const ready = await get(`${admin}/readyz`);
    assert.equal(ready.status, 200);
    assert.match(ready.body, /leader \(no leader election\)/);
    const metrics = (await get(`${admin}/metrics`)).body;
    assert.match(metrics, /sluice_source_synced\{kind="HTTPRoute"\} 1/);
    assert.match(metrics, /sluice_watch_events_total\{kind="HTTPRoute",type="ADDED"\} [1-9]/);
    assert.match(metrics, /sluice_leader 1/);
    assert.match(metrics, /sluice_status_writes_total/);
    assert.match(metrics, /process_resident_memory_bytes/);
    assert.equal((await get(`${admin}/nope`)).status, 404);
    assert.ok(logs.find(/initial sync complete/).length === 1);

    // Watch errors (every list/watch failing for a while) are retried, never fatal.
    let failing = true;
    fake.failNext({ status: 500, count: 100_000, match: (r) => failing && r.path.startsWith("/apis/gateway.networking.k8s.io/") });
    fake.dropWatches();
    await until(() => logs.find(/list\/watch failed/).length >= 5);
    failing = false;
    fake.apply(httpRoute("app", "r3", "gw"));
    assert.ok(await until(() => routeCond(fake, "app", "r3", "Accepted")?.status === "True", 5000));
    assert.equal(exit.mock.callCount(), 0);
  } finally {
    await op.stop();
    await fake.close();
  }
});

test("/readyz waits for the initial sync; /healthz reports a wedged watch", async () => {
  const fake = await fakeCluster();
  // Every HTTPRoute request fails: that kind never lists.
  let failing = true;
  fake.failNext({ status: 503, count: 100_000, match: (r) => failing && r.path.endsWith("/httproutes") });
  const { op } = await operator(fake, { admin: { host: "127.0.0.1", port: 0 }, wedgedAfterMs: 300 });
  try {
    const admin = `http://127.0.0.1:${op.adminAddress()!.port}`;
    assert.ok(await until(() => op.monitor.kinds.size > 0 && op.monitor.unsynced().length === 1, 3000));
    const ready = await get(`${admin}/readyz`);
    assert.equal(ready.status, 503);
    assert.match(ready.body, /waiting for the initial list of HTTPRoute/);
    assert.ok(await until(() => op.monitor.wedged(300).length > 0, 3000));
    const health = await get(`${admin}/healthz`);
    assert.equal(health.status, 503);
    assert.match(health.body, /HTTPRoute: no watch for \d+ s \(GET \/apis\/gateway.networking.k8s.io\/v1\/httproutes: 503/);
    failing = false;
    await op.ready;
    assert.equal((await get(`${admin}/readyz`)).status, 200);
    assert.ok(await until(() => op.monitor.wedged(300).length === 0));
    assert.equal((await get(`${admin}/healthz`)).status, 200);
  } finally {
    await op.stop();
    await fake.close();
  }
});

test("watch drop resumes without a re-list; a gap after compaction re-lists and the delete reaches the store", async () => {
  const fake = await fakeCluster();
  fake.apply(httpRoute("app", "doomed", "gw"));
  const { op } = await operator(fake);
  try {
    await op.ready;
    assert.ok(await until(() => routeCond(fake, "app", "doomed", "Accepted")?.status === "True"));
    const before = fake.requests.length;
    fake.dropWatches();
    fake.apply(httpRoute("app", "r2", "gw"));
    assert.ok(await until(() => has(op, "HTTPRoute", "app/r2")));
    const lists = fake.requests.slice(before).filter((r) => r.method === "GET" && r.path.endsWith("/httproutes") && !/watch=/.test(r.query));
    assert.equal(lists.length, 0, "resumed from the resourceVersion");

    let blocking = true;
    fake.failNext({ status: 500, count: 100_000, match: (r) => blocking && r.path.endsWith("/httproutes") });
    fake.dropWatches();
    await new Promise((r) => setTimeout(r, 100));
    fake.remove(GW, "HTTPRoute", "app", "doomed");
    fake.compact();
    blocking = false;
    assert.ok(await until(() => !has(op, "HTTPRoute", "app/doomed"), 5000), "the delete made during the gap reached the store");
    assert.ok(!op.latest()!.result.statuses.has("HTTPRoute/app/doomed"));
    assert.match(await op.metrics.text(), /sluice_relists_total\{kind="HTTPRoute"\} 1/);
  } finally {
    await op.stop();
    await fake.close();
  }
});

test("operator restart: catches up on what changed while down, rewrites no status that is already right", async () => {
  const fake = await fakeCluster();
  fake.apply(httpRoute("app", "stays", "gw"));
  fake.apply(httpRoute("app", "goes", "gw"));
  let { op } = await operator(fake);
  try {
    await op.ready;
    assert.ok(await until(() => ["r1", "stays", "goes"].every((n) => routeCond(fake, "app", n, "Accepted")?.status === "True")));
    await new Promise((r) => setTimeout(r, 200));
    await op.stop();
    // While it is down.
    fake.remove(GW, "HTTPRoute", "app", "goes");
    fake.apply(httpRoute("app", "new", "gw"));
    const from = fake.requests.length;
    ({ op } = await operator(fake));
    await op.ready;
    assert.ok(!has(op, "HTTPRoute", "app/goes") && has(op, "HTTPRoute", "app/new"));
    assert.ok(await until(() => routeCond(fake, "app", "new", "Accepted")?.status === "True"));
    await new Promise((r) => setTimeout(r, 300));
    const writes = statusWrites(fake, from).map((r) => r.path);
    assert.ok(writes.some((p) => p.endsWith("/httproutes/new/status")));
    assert.ok(!writes.some((p) => /\/httproutes\/(stays|r1)\/status$/.test(p)), `unchanged statuses rewritten: ${writes.join(", ")}`);
  } finally {
    await op.stop();
    await fake.close();
  }
});

test("API errors at start-up (500, 429 with Retry-After) are retried with backoff until the operator is ready", async () => {
  const fake = await fakeCluster();
  fake.failNext({ status: 500, count: 3 });
  fake.failNext({ status: 429, count: 2, retryAfterSeconds: 1, match: (r) => r.path.includes("/gateways") });
  const t0 = Date.now();
  const { op, logs } = await operator(fake);
  try {
    await op.ready;
    assert.ok(Date.now() - t0 >= 1000, "Retry-After honoured");
    assert.ok(logs.find(/failed/).length >= 3);
    assert.ok(await until(() => routeCond(fake, "app", "r1", "Accepted")?.status === "True"));
  } finally {
    await op.stop();
    await fake.close();
  }
});

test("two replicas: one leader writes, the standby only watches; the standby takes over when the leader dies; a deposed leader stops writing", async () => {
  const fake = await fakeCluster({ tokens: { "token-a": { username: "replica-a", groups: ["system:masters"] }, "token-b": { username: "replica-b", groups: ["system:masters"] } } });
  const a = await operator(fake, { leaderElection: { ...FAST_LEASE, identity: "a" } }, "token-a");
  await a.op.ready;
  assert.ok(await until(() => a.op.isLeader()));
  const b = await operator(fake, { leaderElection: { ...FAST_LEASE, identity: "b" }, admin: { host: "127.0.0.1", port: 0 } }, "token-b");
  try {
    await b.op.ready;
    assert.ok(await until(() => routeCond(fake, "app", "r1", "Accepted")?.status === "True"));
    fake.apply(httpRoute("app", "r2", "gw"));
    assert.ok(await until(() => routeCond(fake, "app", "r2", "Accepted")?.status === "True"));
    // Both translated it (warm standby); only the leader wrote.
    assert.ok(await until(() => has(b.op, "HTTPRoute", "app/r2")));
    assert.ok(!b.op.isLeader());
    assert.ok(statusWrites(fake, 0, "replica-a").length > 0);
    assert.equal(statusWrites(fake, 0, "replica-b").length, 0);
    const readyB = await get(`http://127.0.0.1:${b.op.adminAddress()!.port}/readyz`);
    assert.equal(readyB.status, 200, "a standby is ready");
    assert.match(readyB.body, /standby \(b; leader: a\)/);

    // The leader dies without releasing the Lease: b takes over within the lease duration.
    const t0 = Date.now();
    await a.op.stop({ releaseLease: false });
    assert.ok(await until(() => b.op.isLeader(), 3000));
    const took = Date.now() - t0;
    assert.ok(took >= FAST_LEASE.leaseDurationMs - 2 * FAST_LEASE.retryPeriodMs && took < FAST_LEASE.leaseDurationMs + 1000, `took over after ${took} ms`);
    fake.apply(httpRoute("app", "r3", "gw"));
    assert.ok(await until(() => routeCond(fake, "app", "r3", "Accepted")?.status === "True"));
    assert.ok(statusWrites(fake, 0, "replica-b").some((r) => r.path.endsWith("/httproutes/r3/status")));

    // Someone else takes the Lease: b stops writing at once.
    const lease = fake.get("coordination.k8s.io/v1", "Lease", "sluice-system", "sluice-operator")!;
    fake.apply({ ...lease, spec: { ...(lease.spec as object), holderIdentity: "intruder", leaseDurationSeconds: 60, renewTime: new Date().toISOString() } } as K8sObjectLike);
    assert.ok(await until(() => !b.op.isLeader(), 2000));
    const from = fake.requests.length;
    fake.apply(httpRoute("app", "r4", "gw"));
    assert.ok(await until(() => has(b.op, "HTTPRoute", "app/r4")));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(statusWrites(fake, from).length, 0, "a deposed leader writes nothing");
    assert.equal(routeCond(fake, "app", "r4", "Accepted"), undefined);
    assert.match(await b.op.metrics.text(), /sluice_leader 0/);
  } finally {
    await a.op.stop();
    await b.op.stop();
    await fake.close();
  }
});

test("bad input: unknown API version, oversized annotation, invalid regex, dangling backendRef: logs and status conditions, no crash", async () => {
  const crds = [
    ...gatewayApiCrds().filter((c) => (c as { spec: { names: { kind: string } } }).spec.names.kind !== "HTTPRoute"),
    // The cluster also serves a v2 of HTTPRoute that Sluice does not know.
    crd("gateway.networking.k8s.io", "HTTPRoute", "httproutes", true, ["v1", "v2"]),
    ...sluiceCrds(),
  ];
  const fake = await fakeCluster({ crds });
  fake.apply({ ...httpRoute("app", "from-v2", "gw"), apiVersion: "gateway.networking.k8s.io/v2" });
  fake.apply({ ...httpRoute("app", "big", "gw"), metadata: { namespace: "app", name: "big", annotations: { huge: "x".repeat(600_000) } } });
  fake.apply(httpRoute("app", "bad-regex", "gw", {
    rules: [{ matches: [{ path: { type: "RegularExpression", value: "/(unclosed" } }], backendRefs: [{ name: "backend", port: 8080 }] }],
  }));
  fake.apply(httpRoute("app", "dangling", "gw", { rules: [{ backendRefs: [{ name: "no-such-service", port: 8080 }] }] }));
  // Specs that break the schema: one still names its parent, one not even that.
  fake.apply({ ...httpRoute("app", "garbage", "gw"), spec: { parentRefs: [{ name: "gw" }], rules: 42 } });
  fake.apply({ ...httpRoute("app", "hopeless", "gw"), spec: { parentRefs: "not a list", rules: 42 } });
  const { op, logs } = await operator(fake, { admin: { host: "127.0.0.1", port: 0 } });
  try {
    await op.ready;
    assert.equal(logs.find(/HTTPRoute is served at gateway.networking.k8s.io\/v2, which Sluice does not read/).length, 1);
    assert.ok(has(op, "HTTPRoute", "app/from-v2") && has(op, "HTTPRoute", "app/big"));
    assert.ok(await until(() => routeCond(fake, "app", "big", "Accepted")?.status === "True"));
    assert.ok(await until(() => routeCond(fake, "app", "bad-regex", "Accepted")?.status === "False"), JSON.stringify(statusOf(fake, "HTTPRoute", "app", "bad-regex")));
    assert.ok(await until(() => routeCond(fake, "app", "dangling", "ResolvedRefs")?.status === "False"));
    assert.equal(routeCond(fake, "app", "dangling", "ResolvedRefs")?.reason, "BackendNotFound");
    assert.ok(await until(() => routeCond(fake, "app", "garbage", "Accepted")?.status === "False"), JSON.stringify(statusOf(fake, "HTTPRoute", "app", "garbage")));
    assert.match(routeCond(fake, "app", "garbage", "Accepted")?.reason ?? "", /UnsupportedValue|Invalid/);
    assert.ok(has(op, "HTTPRoute", "app/hopeless"), "held in the store, attached to nothing");
    assert.ok(logs.find(/HTTPRoute app\/bad-regex: .*Accepted=False/).length >= 1);
    assert.ok(logs.find(/HTTPRoute app\/dangling: .*ResolvedRefs=False \(BackendNotFound/).length >= 1);
    // The good route next to them is unaffected.
    assert.ok(await until(() => routeCond(fake, "app", "r1", "Accepted")?.status === "True"));
    assert.equal((await get(`http://127.0.0.1:${op.adminAddress()!.port}/healthz`)).status, 200);
  } finally {
    await op.stop();
    await fake.close();
  }
});

test("datapath distribution: the agent gets the config, its acknowledgement makes the Gateway Programmed", async () => {
  const agentUser = "system:serviceaccount:sluice-system:sluice-agent";
  const fake = await fakeCluster({ tokens: { "agent-token": { username: agentUser } } });
  const logs = captureLog();
  const distribution = await startDistributionServer({
    address: "127.0.0.1", port: 0, credentials: grpc.ServerCredentials.createInsecure(), log: logs.log,
    authenticate: tokenReviewAuthenticator(kubeConfigFor(fake.url, fake.token), { allowed: [agentUser] }),
  });
  const { op } = await operator(fake, { distribution });
  const updates: DatapathUpdate[] = [];
  const agent = subscribe({
    target: `127.0.0.1:${distribution.port}`, credentials: grpc.credentials.createInsecure(), token: () => "agent-token", node: "node-1",
    apply: async (u) => {
      updates.push(u);
    },
    log: logs.log, backoff: { initialMs: 20, maxMs: 200 },
  });
  try {
    await op.ready;
    assert.ok(await until(() => updates.some((u) => u.config.gateways.some((g) => g.gateway === "app/gw"))));
    // The cloud's load balancer controller gives the generated Service an address.
    assert.ok(await until(() => fake.list("v1", "Service", "app").some((s) => s.metadata.ownerReferences?.some((o) => o.name === "gw"))));
    const svc = fake.list("v1", "Service", "app").find((s) => s.metadata.ownerReferences?.some((o) => o.name === "gw"))!;
    fake.apply({ ...svc, status: { loadBalancer: { ingress: [{ ip: "203.0.113.10" }] } } });
    assert.ok(await until(() => cond(statusOf(fake, "Gateway", "app", "gw").conditions, "Programmed")?.status === "True", 5000),
      JSON.stringify(statusOf(fake, "Gateway", "app", "gw")));
    assert.ok(op.latest()!.snapshot.acks.has("app/gw"));
  } finally {
    await agent.close();
    await op.stop();
    await fake.close();
  }
});

test("an admin port in use fails start-up with a clear error", async () => {
  const fake = await fakeCluster();
  const blocker = (await import("node:http")).createServer();
  await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", r));
  const port = (blocker.address() as { port: number }).port;
  try {
    await assert.rejects(operator(fake, { admin: { host: "127.0.0.1", port } }), /admin endpoint 127\.0\.0\.1:\d+: .*EADDRINUSE/);
    // Nothing was started: no request reached the API server.
    assert.equal(fake.requests.length, 0);
  } finally {
    await new Promise((r) => blocker.close(r));
    await fake.close();
  }
});

test("cert-manager: a listener whose Secret a Certificate is still issuing says so; the Certificate CRD installed later is picked up", async () => {
  const fake = await fakeCluster();
  const gw = gateway("app", "tls-gw");
  fake.apply({ ...gw, spec: { ...gw.spec, listeners: [{ name: "https", protocol: "HTTPS", port: 443, tls: { certificateRefs: [{ name: "app-tls" }] } }] } });
  const { op } = await operator(fake);
  const listenerRefs = (): Cond | undefined => {
    const listeners = (statusOf(fake, "Gateway", "app", "tls-gw") as { listeners?: { name: string; conditions?: Cond[] }[] }).listeners;
    return cond(listeners?.find((l) => l.name === "https")?.conditions, "ResolvedRefs");
  };
  const message = (): string => (listenerRefs() as (Cond & { message?: string }) | undefined)?.message ?? "";
  try {
    await op.ready;
    assert.ok(await until(() => listenerRefs()?.reason === "InvalidCertificateRef"), JSON.stringify(statusOf(fake, "Gateway", "app", "tls-gw")));
    assert.doesNotMatch(message(), /cert-manager/);
    // cert-manager is installed, and starts issuing the Secret.
    for (const c of certManagerCrds()) fake.apply(c as K8sObjectLike);
    fake.apply({
      apiVersion: "cert-manager.io/v1", kind: "Certificate", metadata: { namespace: "app", name: "app" },
      spec: { secretName: "app-tls", issuerRef: { name: "le", kind: "ClusterIssuer" } },
      status: { conditions: [{ type: "Ready", status: "False", reason: "Issuing", message: "waiting for the ACME order" }] },
    });
    assert.ok(await until(() => /cert-manager Certificate app\/app \(Ready=False, Issuing: waiting for the ACME order\) has not issued it yet/.test(message()), 10_000), message());
  } finally {
    await op.stop();
    await fake.close();
  }
});
