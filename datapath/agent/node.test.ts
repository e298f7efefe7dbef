// The node agent end to end: the operator (against the fake API server) streams the translated
// datapath to `startNodeAgent`, whose proxy then serves the HTTPRoute for real; its acknowledgement
// turns the Gateway Programmed, and a config the node cannot serve is NACKed, not acknowledged.
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import * as grpc from "@grpc/grpc-js";
import { pino } from "pino";
import { gatewayApiCrds, sluiceCrds, startFakeApiServer, type FakeApiServer } from "../../operator/fakeapi/server.ts";
import { gateway, gatewayClass, httpRoute, kubeConfigFor, ns, service, until } from "../../operator/sources/kubetestkit.ts";
import { startDistributionServer, tokenReviewAuthenticator, type DistributionServer } from "../../operator/sinks/distribution.ts";
import { startOperator, type RunningOperator } from "../../operator/host/host.ts";
import { kubeSinks } from "../../operator/host/sinks.ts";
import { startEcho, type EchoServer } from "../echo/echo.ts";
import { randomLoopback, send } from "../proxy/testkit.ts";
import { startNodeAgent, type NodeAgent } from "./node.ts";

const GW = "gateway.networking.k8s.io/v1";
const AGENT_USER = "system:serviceaccount:sluice-system:sluice-agent";
const quiet = pino({ level: "silent" });

interface Cluster {
  fake: FakeApiServer;
  distribution: DistributionServer;
  op: RunningOperator;
  echo: EchoServer;
  addr: string;
  close(): Promise<void>;
}

/** A cluster with one Gateway and one HTTPRoute to an echo backend, and a running operator. */
async function cluster(): Promise<Cluster> {
  const addr = randomLoopback();
  const echo = await startEcho({ mode: "http", host: addr, port: 0, identity: { pod: "backend-0", namespace: "app" } });
  const fake = await startFakeApiServer({ crds: [...gatewayApiCrds(), ...sluiceCrds()], tokens: { "agent-token": { username: AGENT_USER } } });
  fake.apply(ns("app"));
  fake.apply(gatewayClass());
  fake.apply(gateway("app", "gw"));
  fake.apply(service("app", "backend"));
  fake.apply({
    apiVersion: "discovery.k8s.io/v1", kind: "EndpointSlice",
    metadata: { namespace: "app", name: "backend-1", labels: { "kubernetes.io/service-name": "backend" } },
    addressType: "IPv4", endpoints: [{ addresses: [addr], conditions: { ready: true }, targetRef: { kind: "Pod", name: "backend-0", namespace: "app" } }],
    ports: [{ name: "http", port: echo.port, protocol: "TCP" }],
  });
  fake.apply(httpRoute("app", "r1", "gw"));
  const distribution = await startDistributionServer({
    address: "127.0.0.1", port: 0, credentials: grpc.ServerCredentials.createInsecure(), log: quiet,
    authenticate: tokenReviewAuthenticator(kubeConfigFor(fake.url, fake.token), { allowed: [AGENT_USER] }),
  });
  const op = await startOperator({
    kubeConfig: kubeConfigFor(fake.url, fake.token), log: quiet, coalesceMs: 5, distribution,
    source: { discoveryIntervalMs: 300, backoff: { initialMs: 20, maxMs: 300 } },
    sinks: (ctx) => [kubeSinks(ctx, { backoff: { initialMs: 20, maxMs: 200 } })],
    sinkBackoff: { initialMs: 20, maxMs: 200 },
  });
  await op.ready;
  // The cloud's load balancer controller gives the Gateway's Service an address.
  assert.ok(await until(() => generatedService(fake) !== undefined));
  const svc = generatedService(fake);
  if (svc) fake.apply({ ...svc, status: { loadBalancer: { ingress: [{ ip: "203.0.113.10" }] } } });
  return {
    fake, distribution, op, echo, addr,
    async close() {
      await op.stop();
      await distribution.close();
      await fake.close();
      await echo.close();
    },
  };
}

function generatedService(fake: FakeApiServer): ReturnType<FakeApiServer["list"]>[number] | undefined {
  return fake.list("v1", "Service", "app").find((s) => s.metadata.ownerReferences?.some((o) => o.kind === "Gateway" && o.name === "gw"));
}

function programmed(fake: FakeApiServer): string | undefined {
  const conds = (fake.get(GW, "Gateway", "app", "gw")?.status as { conditions?: { type: string; status: string }[] } | undefined)?.conditions;
  return conds?.find((c) => c.type === "Programmed")?.status;
}

function agent(c: Cluster, listenAddress: string, portOffset: number): Promise<NodeAgent> {
  return startNodeAgent({
    target: `127.0.0.1:${c.distribution.port}`, credentials: grpc.credentials.createInsecure(), token: () => "agent-token",
    node: "node-1", listenAddress, portOffset, workers: 1, accessLog: false,
    l4: { enabled: false, interfaces: [], pinDir: "/nonexistent", snat: false },
    admin: { host: listenAddress, port: 0 }, log: quiet,
  });
}

test("the node agent serves what the operator translated, and its acknowledgement makes the Gateway Programmed", { timeout: 60_000 }, async () => {
  const c = await cluster();
  const listen = randomLoopback();
  const offset = 26000 + Math.floor(Math.random() * 1000);
  let node: NodeAgent | undefined;
  try {
    assert.notEqual(programmed(c.fake), "True", "not Programmed before any datapath acknowledged");
    node = await agent(c, listen, offset);
    assert.ok(await until(() => programmed(c.fake) === "True", 15_000), JSON.stringify(c.fake.get(GW, "Gateway", "app", "gw")?.status));
    const r = await send({ address: listen, port: 80 + offset, host: "r1.example.com", path: "/hello" });
    assert.equal(r.status, 200, r.body);
    assert.match(r.body, /"pod":"backend-0"/);
    const admin = node.adminAddress();
    assert.ok(admin);
    assert.equal((await send({ address: admin.host, port: admin.port, path: "/readyz" })).status, 200);

    // A route added in the cluster reaches the node's proxy.
    c.fake.apply(httpRoute("app", "r2", "gw", { rules: [{ matches: [{ path: { type: "PathPrefix", value: "/two" } }], backendRefs: [{ name: "backend", port: 8080 }] }] }));
    let status = 0;
    assert.ok(await until(() => {
      void send({ address: listen, port: 80 + offset, host: "r2.example.com", path: "/two" }).then((x) => (status = x.status), () => undefined);
      return status === 200;
    }, 15_000, 50));
  } finally {
    await node?.stop(500);
    await c.close();
  }
});

test("a config the node cannot serve is NACKed: the Gateway does not turn Programmed", { timeout: 60_000 }, async () => {
  const c = await cluster();
  const listen = randomLoopback();
  const offset = 27000 + Math.floor(Math.random() * 1000);
  // Someone else holds the port the Gateway's listener needs on this node.
  const squatter = net.createServer();
  await new Promise<void>((r) => squatter.listen(80 + offset, listen, () => r()));
  const nacks: string[] = [];
  const sub = c.distribution.nacks$.subscribe((n) => nacks.push(n.error));
  let node: NodeAgent | undefined;
  try {
    node = await agent(c, listen, offset);
    assert.ok(await until(() => nacks.length > 0, 15_000), "the agent rejects the config");
    assert.match(nacks[0] ?? "", /could not open/);
    await new Promise((r) => setTimeout(r, 300));
    assert.notEqual(programmed(c.fake), "True");
    const admin = node.adminAddress();
    assert.ok(admin);
    assert.equal((await send({ address: admin.host, port: admin.port, path: "/readyz" })).status, 503, "not ready without a served config");
    // The Gateway's owner sees why: an Event on the Gateway.
    const rejected = (): boolean => c.fake.list("v1", "Event", "app").some((e) =>
      (e as { reason?: string; involvedObject?: { kind?: string; name?: string } }).reason === "DatapathRejected" &&
      (e as { involvedObject?: { kind?: string; name?: string } }).involvedObject?.name === "gw");
    assert.ok(await until(rejected, 10_000), "a DatapathRejected Event on the Gateway");
  } finally {
    sub.unsubscribe();
    await node?.stop(500);
    await new Promise((r) => squatter.close(r));
    await c.close();
  }
});
