// The datapath distribution over real gRPC on loopback: incremental updates, acknowledgements
// into acks$, NACKs, several agents, message bounds with chunking, TLS, mTLS and token auth.
import assert from "node:assert/strict";
import { test } from "node:test";
import { existsSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import type { Subscription as RxSubscription } from "rxjs";
import type { startFakeApiServer as StartFakeApiServer } from "../fakeapi/server.ts";
import { startDistributionServer, certificateAuthenticator, tokenReviewAuthenticator, type DistributionServer, type DistributionServerOptions, type NackEvent } from "./distribution.ts";
import { subscribe, type Subscription, type SubscribeOptions } from "../../datapath/agent/subscribe.ts";
import { STREAM_PATH, distributionService, type AgentMessage, type ServerMessage } from "./distributionwire.ts";
import { configOf, hashesOf, quietLog, RecordingAgent, type GatewaySpec } from "./distributiontestkit.ts";
import { makeCerts, randomLoopback, until } from "../../datapath/proxy/testkit.ts";
import { caseNames, loadCase } from "../translate/goldencases.ts";
import { snapshotOf } from "../store/snapshot.ts";
import { translate } from "../translate/translate.ts";

const log = quietLog();
const TOKEN = "agent-token";
const fastBackoff = { initialMs: 20, maxMs: 200 };

interface Harness {
  server: DistributionServer;
  address: string;
  acks: () => ReadonlyMap<string, string>;
  nacks: NackEvent[];
  agent(node: string, extra?: Partial<SubscribeOptions>): { sub: Subscription; rec: RecordingAgent };
  close(): Promise<void>;
}

async function harness(opts: Partial<DistributionServerOptions> = {}): Promise<Harness> {
  const address = opts.address ?? randomLoopback();
  const server = await startDistributionServer({
    address,
    port: 0,
    credentials: grpc.ServerCredentials.createInsecure(),
    authenticate: async (t) => (t === TOKEN ? { identity: "system:serviceaccount:sluice-system:sluice-agent" } : undefined),
    log,
    ...opts,
  });
  let acks: ReadonlyMap<string, string> = new Map();
  const nacks: NackEvent[] = [];
  const subs: RxSubscription[] = [server.acks$.subscribe((a) => (acks = a)), server.nacks$.subscribe((n) => nacks.push(n))];
  const agents: Subscription[] = [];
  return {
    server,
    address,
    acks: () => acks,
    nacks,
    agent(node, extra = {}) {
      const rec = new RecordingAgent();
      const sub = subscribe({
        target: `${address}:${server.port}`,
        credentials: grpc.credentials.createInsecure(),
        token: () => TOKEN,
        node,
        apply: rec.apply,
        log,
        backoff: fastBackoff,
        ...extra,
      });
      agents.push(sub);
      return { sub, rec };
    },
    async close() {
      await Promise.all(agents.map((a) => a.close()));
      for (const s of subs) s.unsubscribe();
      await server.close();
    },
  };
}

const sameMap = (a: ReadonlyMap<string, string>, b: ReadonlyMap<string, string>): boolean => a.size === b.size && [...a].every(([k, v]) => b.get(k) === v);

test("incremental updates: only changed Gateways travel, removals too, and acks$ follows what the agent applied", async () => {
  const h = await harness();
  try {
    const specs: GatewaySpec[] = [{ name: "a/gw" }, { name: "b/gw" }, { name: "c/gw", routes: 50 }];
    const v1 = configOf(specs);
    h.server.publish(1, v1);
    const { sub, rec } = h.agent("node-1");
    assert.ok(await until(() => sameMap(h.acks(), hashesOf(v1))), "all three Gateways acknowledged");
    assert.equal(rec.updates.length, 1);
    assert.deepEqual(rec.last()?.config, v1, "the agent reassembled exactly the published config");
    assert.deepEqual(rec.last()?.changed, ["a/gw", "b/gw", "c/gw"]);
    assert.equal(rec.last()?.version, 1);
    const before = h.server.agents()[0];
    assert.ok(before);
    assert.equal(before.resourcesSent, 3);

    // One Gateway changes: one resource travels, and far fewer bytes than the whole config.
    const v2 = configOf([specs[0] as GatewaySpec, { name: "b/gw", tag: "v2" }, specs[2] as GatewaySpec]);
    h.server.publish(2, v2);
    assert.ok(await until(() => sameMap(h.acks(), hashesOf(v2))));
    const after = h.server.agents()[0];
    assert.ok(after);
    assert.equal(after.resourcesSent - before.resourcesSent, 1, "only b/gw was sent");
    assert.ok(after.bytesSent - before.bytesSent < before.bytesSent / 4, `incremental bytes ${after.bytesSent - before.bytesSent} vs first ${before.bytesSent}`);
    assert.deepEqual(rec.last()?.changed, ["b/gw"]);
    assert.deepEqual(rec.last()?.removed, []);
    assert.deepEqual(rec.last()?.config, v2);
    assert.equal(sub.state().version, 2);

    // Same config again (e.g. the re-translation an acknowledgement causes): nothing is sent.
    h.server.publish(3, v2);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(h.server.agents()[0]?.messagesSent, after.messagesSent);
    assert.equal(rec.updates.length, 2);

    // A Gateway goes away.
    const v4 = configOf([specs[0] as GatewaySpec, { name: "b/gw", tag: "v2" }]);
    h.server.publish(4, v4);
    assert.ok(await until(() => sameMap(h.acks(), hashesOf(v4))));
    assert.deepEqual(rec.last()?.removed, ["c/gw"]);
    assert.deepEqual(rec.last()?.changed, []);
    assert.deepEqual(rec.last()?.config, v4);
    assert.deepEqual(sub.state().resources, Object.fromEntries(hashesOf(v4)));

    const metrics = await h.server.registry.metrics();
    assert.match(metrics, /sluice_distribution_agents 1/);
    assert.match(metrics, /sluice_distribution_acks_total 3/);
  } finally {
    await h.close();
  }
});

test("the agent waits for the first publish: an operator without a config never tells it to drop what it holds", async () => {
  const h = await harness();
  try {
    const { sub, rec } = h.agent("node-1");
    assert.ok(await until(() => h.server.agents().length === 1));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(rec.updates.length, 0);
    assert.equal(sub.state().batches, 0);
    // An empty datapath is still a config: the agent applies it once.
    h.server.publish(1, configOf([]));
    assert.ok(await until(() => rec.updates.length === 1));
    assert.deepEqual(rec.last()?.config, { gateways: [], clusters: [], certificates: [], caBundles: [] });
  } finally {
    await h.close();
  }
});

test("NACK: the previous version stays acknowledged, the rejection is evented and not resent until the config changes", async () => {
  const h = await harness();
  try {
    const v1 = configOf([{ name: "a/gw" }, { name: "b/gw" }]);
    h.server.publish(1, v1);
    const { sub, rec } = h.agent("node-1");
    assert.ok(await until(() => sameMap(h.acks(), hashesOf(v1))));
    rec.gate = (u) => {
      if (u.config.gateways.some((g) => g.ports[0]?.listeners[0]?.virtualHosts[0]?.hostname === "bad.example.com")) throw new Error("cannot program bad.example.com");
    };
    const v2 = configOf([{ name: "a/gw", tag: "bad" }, { name: "b/gw" }]);
    h.server.publish(2, v2);
    assert.ok(await until(() => h.nacks.length === 1));
    assert.equal(h.nacks[0]?.node, "node-1");
    assert.equal(h.nacks[0]?.error, "cannot program bad.example.com");
    assert.deepEqual(Object.keys(h.nacks[0]?.resources ?? {}), ["a/gw"]);
    assert.ok(sameMap(h.acks(), hashesOf(v1)), "a/gw keeps its previous hash acknowledged");
    assert.equal(sub.state().rejected, 1);
    assert.deepEqual(sub.state().resources, Object.fromEntries(hashesOf(v1)), "the agent keeps what it had");
    assert.equal(h.server.agents()[0]?.lastNack, "cannot program bad.example.com");

    // Another Gateway changes: it is sent alone; the rejected version is not retried in a loop.
    const v3 = configOf([{ name: "a/gw", tag: "bad" }, { name: "b/gw", tag: "v3" }]);
    h.server.publish(3, v3);
    assert.ok(await until(() => h.acks().get("b/gw") === hashesOf(v3).get("b/gw")));
    assert.deepEqual(rec.last()?.changed, ["b/gw"]);
    assert.equal(h.acks().get("a/gw"), hashesOf(v1).get("a/gw"));
    assert.equal(h.nacks.length, 1);

    // A fixed a/gw is a new version: sent and applied.
    const v4 = configOf([{ name: "a/gw", tag: "fixed" }, { name: "b/gw", tag: "v3" }]);
    h.server.publish(4, v4);
    assert.ok(await until(() => sameMap(h.acks(), hashesOf(v4))));
    assert.deepEqual(rec.last()?.config, v4);
  } finally {
    await h.close();
  }
});

test("two agents: a Gateway is acknowledged only when both applied; a disconnected agent stops counting; none means nothing acknowledged", async () => {
  const h = await harness();
  try {
    const v1 = configOf([{ name: "a/gw" }, { name: "b/gw" }]);
    h.server.publish(1, v1);
    h.agent("node-1");
    const two = h.agent("node-2");
    assert.ok(await until(() => sameMap(h.acks(), hashesOf(v1)) && h.server.agents().length === 2));

    let release: () => void = () => undefined;
    const held = new Promise<void>((r) => (release = r));
    two.rec.gate = () => held;
    const v2 = configOf([{ name: "a/gw", tag: "v2" }, { name: "b/gw" }]);
    h.server.publish(2, v2);
    const ackedBy = (node: string, version: number) => () => h.server.agents().find((a) => a.node === node)?.systemVersion === version;
    assert.ok(await until(ackedBy("node-1", 2)));
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(h.acks().get("a/gw"), undefined, "node-2 has not applied a/gw@v2 and node-1 no longer holds v1: not acknowledged");
    assert.equal(h.acks().get("b/gw"), hashesOf(v1).get("b/gw"), "b/gw is unchanged on both");
    release();
    assert.ok(await until(() => sameMap(h.acks(), hashesOf(v2))));

    // node-2 is stuck on the next version, then goes away: node-1 alone decides.
    two.rec.gate = () => new Promise<void>(() => undefined);
    const v3 = configOf([{ name: "a/gw", tag: "v3" }, { name: "b/gw" }]);
    h.server.publish(3, v3);
    assert.ok(await until(ackedBy("node-1", 3)));
    await new Promise((r) => setTimeout(r, 10));
    assert.equal(h.acks().get("a/gw"), undefined);
    // Close the stuck agent's stream from the server side (its apply never returns).
    h.server.setActive(false);
    assert.ok(await until(() => h.server.agents().length === 0));
    assert.equal(h.acks().size, 0, "no agent connected: nothing acknowledged");
    await two.sub.close().catch(() => undefined);
    h.server.setActive(true);
    assert.ok(await until(() => sameMap(h.acks(), hashesOf(v3)), 5000), "node-1 reconnects alone and acknowledges everything");
    assert.deepEqual(h.server.agents().map((a) => a.node), ["node-1"]);
  } finally {
    await h.close();
  }
});

test("thirty agents: a change is acknowledged once the last one applied it", async () => {
  const h = await harness();
  try {
    const specs: GatewaySpec[] = Array.from({ length: 100 }, (_, i) => ({ name: `ns-${i}/gw` }));
    const v1 = configOf(specs);
    h.server.publish(1, v1);
    const agents = Array.from({ length: 30 }, (_, i) => h.agent(`node-${i}`));
    assert.ok(await until(() => sameMap(h.acks(), hashesOf(v1)) && h.server.agents().length === 30, 10_000));
    const last = agents[29];
    assert.ok(last);
    let release: () => void = () => undefined;
    last.rec.gate = () => new Promise<void>((r) => (release = r));
    specs[7] = { name: "ns-7/gw", tag: "v2" };
    const v2 = configOf(specs);
    h.server.publish(2, v2);
    assert.ok(await until(() => h.server.agents().filter((a) => a.systemVersion === 2).length === 29, 10_000));
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(h.acks().get("ns-7/gw"), undefined);
    assert.equal(h.acks().size, 99, "the other Gateways stay acknowledged");
    release();
    assert.ok(await until(() => sameMap(h.acks(), hashesOf(v2))));
    for (const a of h.server.agents()) assert.equal(a.resourcesSent, 101, `${a.node}: 100 + the one change`);
  } finally {
    await h.close();
  }
});

test("reconnect resyncs without resending what the agent already holds", async () => {
  const h = await harness();
  try {
    const specs: GatewaySpec[] = [{ name: "a/gw" }, { name: "b/gw" }, { name: "c/gw" }];
    const v1 = configOf(specs);
    h.server.publish(1, v1);
    const { sub, rec } = h.agent("node-1");
    assert.ok(await until(() => sameMap(h.acks(), hashesOf(v1))));
    assert.equal(sub.state().resourcesReceived, 3);

    // The stream drops; meanwhile one Gateway changes and one is removed.
    h.server.setActive(false);
    assert.ok(await until(() => sub.state().status !== "subscribed"));
    const v2 = configOf([specs[0] as GatewaySpec, { name: "b/gw", tag: "v2" }]);
    h.server.publish(2, v2);
    h.server.setActive(true);
    assert.ok(await until(() => sameMap(h.acks(), hashesOf(v2)), 5000));
    assert.equal(sub.state().resourcesReceived, 4, "only b/gw travelled again");
    assert.equal(h.server.agents()[0]?.resourcesSent, 1, "the new stream sent one resource");
    assert.deepEqual(rec.last()?.changed, ["b/gw"]);
    assert.deepEqual(rec.last()?.removed, ["c/gw"]);
    assert.deepEqual(rec.last()?.config, v2);
    assert.ok(sub.state().connects >= 2);
  } finally {
    await h.close();
  }
});

test("server restart: the agent reconnects, reports what it holds, and the new server acknowledges it without resending", async () => {
  const address = randomLoopback();
  const start = (port: number) => startDistributionServer({ address, port, credentials: grpc.ServerCredentials.createInsecure(), authenticate: async (t) => (t === TOKEN ? { identity: "agent" } : undefined), log });
  let server = await start(0);
  const port = server.port;
  const rec = new RecordingAgent();
  let tokenReads = 0;
  const sub = subscribe({ target: `${address}:${port}`, credentials: grpc.credentials.createInsecure(), token: () => (tokenReads++, TOKEN), node: "node-1", apply: rec.apply, log, backoff: fastBackoff });
  try {
    const v1 = configOf([{ name: "a/gw" }, { name: "b/gw" }]);
    server.publish(1, v1);
    assert.ok(await until(() => sub.state().version === 1));
    await server.close();
    assert.ok(await until(() => sub.state().status !== "subscribed"));

    server = await start(port);
    let acks: ReadonlyMap<string, string> = new Map();
    const s = server.acks$.subscribe((a) => (acks = a));
    server.publish(7, v1);
    assert.ok(await until(() => sameMap(acks, hashesOf(v1)), 5000), "the restarted operator learns the agent's state from its subscribe");
    assert.equal(server.agents()[0]?.resourcesSent, 0, "nothing resent");
    assert.ok(await until(() => sub.state().version === 7), "the empty resync batch brings the agent to the new version");
    assert.equal(rec.updates.length, 1, "nothing re-applied");
    assert.ok(tokenReads >= 2, "the token is read again on reconnect");

    const v2 = configOf([{ name: "a/gw", tag: "v2" }, { name: "b/gw" }]);
    server.publish(8, v2);
    assert.ok(await until(() => sameMap(acks, hashesOf(v2))));
    assert.deepEqual(rec.last()?.changed, ["a/gw"]);
    s.unsubscribe();
  } finally {
    await sub.close();
    await server.close();
  }
});

test("message bound: a 5 MiB certificate bundle is chunked under 1 MiB and thousands of routes are packed; the agent reassembles both", async () => {
  const h = await harness({ maxMessageBytes: 1024 * 1024 });
  try {
    // Base64-looking text that does not compress: the bound holds on real bytes.
    const big = Buffer.alloc(5 * 1024 * 1024);
    for (let i = 0; i < big.length; i += 4) big.writeUInt32LE((Math.random() * 2 ** 32) >>> 0, i);
    const ca = `-----BEGIN CERTIFICATE-----\n${big.toString("base64")}\n-----END CERTIFICATE-----\n`;
    const specs: GatewaySpec[] = [{ name: "big/gw", ca }, { name: "routes/gw", routes: 4000 }, ...Array.from({ length: 20 }, (_, i) => ({ name: `small-${i}/gw` }))];
    const v1 = configOf(specs);
    h.server.publish(1, v1);
    // The agent's channel refuses anything over 1 MiB: a message over the bound would fail the stream.
    const { sub, rec } = h.agent("node-1", { maxMessageBytes: 1024 * 1024 });
    assert.ok(await until(() => sameMap(h.acks(), hashesOf(v1)), 15_000), sub.state().lastError);
    assert.deepEqual(rec.last()?.config, v1);
    const info = h.server.agents()[0];
    assert.ok(info);
    assert.ok(info.messagesSent >= 8, `${info.messagesSent} messages for ~7 MiB`);
    assert.ok(info.bytesSent <= info.messagesSent * 1024 * 1024);
    assert.equal(sub.state().connects, 1, "no stream failed on an oversized message");

    // A smaller agent bound is honoured too (the server packs under the smaller of both).
    const small = h.agent("node-2", { maxMessageBytes: 64 * 1024 });
    assert.ok(await until(() => small.sub.state().version === 1, 15_000), small.sub.state().lastError);
    assert.deepEqual(small.rec.last()?.config, v1);
    assert.equal(small.sub.state().connects, 1);
  } finally {
    await h.close();
  }
});

test("Maglev tables survive the round trip bit for bit", async () => {
  const h = await harness();
  try {
    const table = new Uint32Array(16381);
    for (let i = 0; i < table.length; i++) table[i] = (Math.random() * 2 ** 32) >>> 0;
    table[0] = 0xffffffff;
    table[1] = 0;
    table[2] = 0x80000001;
    const v1 = configOf([{ name: "a/gw", maglev: table }, { name: "b/gw", maglev: new Uint32Array(0) }]);
    h.server.publish(1, v1);
    const { rec } = h.agent("node-1");
    assert.ok(await until(() => rec.updates.length === 1));
    const got = rec.last()?.config.gateways[0]?.l4[0]?.maglev;
    assert.ok(got instanceof Uint32Array);
    assert.deepEqual(got, table);
    assert.deepEqual(rec.last()?.config.gateways[1]?.l4[0]?.maglev, new Uint32Array(0));
  } finally {
    await h.close();
  }
});

test("every golden case's datapath crosses the wire unchanged (clusters, certificates, CA bundles, Maglev)", async () => {
  const h = await harness();
  try {
    const { rec } = h.agent("node-1");
    let version = 0;
    let compared = 0;
    for (const name of caseNames()) {
      const c = loadCase(name);
      const config = translate(snapshotOf(c.merged.objects.map((o) => o.object)), c.options).datapath;
      h.server.publish(++version, config);
      const want = hashesOf(config);
      assert.ok(await until(() => sameMap(h.acks(), want), 5000), `${name}: acknowledged`);
      if (want.size > 0) {
        // Clusters no route names (e.g. of a route that lost its hostname conflict) serve nothing: they are not distributed.
        const named = new Set([...JSON.stringify(config.gateways).matchAll(/"cluster":"([^"]+)"/g)].map((m) => m[1]));
        assert.deepEqual(rec.last()?.config, { ...config, clusters: config.clusters.filter((cl) => named.has(cl.id)) }, `${name}: reassembled config`);
        compared++;
      }
    }
    assert.ok(compared > 20, `${compared} cases compared`);
  } finally {
    await h.close();
  }
});

test("authentication: bad or missing tokens are refused with UNAUTHENTICATED; credentials bound to a node cannot subscribe for another", async () => {
  const h = await harness({
    authenticate: async (t) => (t === TOKEN ? { identity: "agent" } : t === "bound" ? { identity: "agent", node: "node-1" } : undefined),
  });
  try {
    h.server.publish(1, configOf([{ name: "a/gw" }]));
    const bad = h.agent("node-x", { token: () => "wrong" });
    const none = h.agent("node-y", { token: undefined });
    const stolen = h.agent("node-2", { token: () => "bound" });
    const right = h.agent("node-1", { token: () => "bound" });
    assert.ok(await until(() => right.sub.state().version === 1));
    assert.ok(await until(() => /UNAUTHENTICATED: token rejected/.test(bad.sub.state().lastError ?? "")), bad.sub.state().lastError);
    assert.ok(await until(() => /UNAUTHENTICATED: no credentials/.test(none.sub.state().lastError ?? "")), none.sub.state().lastError);
    assert.ok(await until(() => /PERMISSION_DENIED: .*bound to node node-1, not node-2/.test(stolen.sub.state().lastError ?? "")), stolen.sub.state().lastError);
    for (const a of [bad, none, stolen]) {
      assert.equal(a.rec.updates.length, 0);
      assert.equal(a.sub.state().batches, 0);
    }
    assert.deepEqual(h.server.agents().map((a) => a.node), ["node-1"]);
    assert.match(await h.server.registry.metrics(), /sluice_distribution_auth_failures_total\{reason="rejected"\} [1-9]/);
  } finally {
    await h.close();
  }
});

test("an authenticator that cannot answer (API server down) refuses with UNAVAILABLE; the agent retries and gets in once it can", async () => {
  let up = false;
  const h = await harness({
    authenticate: async () => {
      if (!up) throw new Error("connect ECONNREFUSED");
      return { identity: "agent" };
    },
  });
  try {
    h.server.publish(1, configOf([{ name: "a/gw" }]));
    const { sub } = h.agent("node-1");
    assert.ok(await until(() => /UNAVAILABLE: cannot review the token/.test(sub.state().lastError ?? "")), sub.state().lastError);
    up = true;
    assert.ok(await until(() => sub.state().version === 1, 5000));
  } finally {
    await h.close();
  }
});

test("insecure credentials are refused off loopback; TLS with a token works", async () => {
  await assert.rejects(
    startDistributionServer({ address: "0.0.0.0", port: 0, credentials: grpc.ServerCredentials.createInsecure(), authenticate: async () => undefined, log }),
    /needs TLS credentials/,
  );
  const address = randomLoopback();
  const { ca, leaves } = makeCerts([{ cn: "sluice-operator", sans: [`IP:${address}`, "DNS:sluice-operator.sluice-system.svc"] }]);
  const leaf = leaves[0];
  assert.ok(leaf);
  const h = await harness({ address, credentials: grpc.ServerCredentials.createSsl(Buffer.from(ca.cert), [{ cert_chain: Buffer.from(leaf.cert), private_key: Buffer.from(leaf.key) }], false) });
  try {
    const v1 = configOf([{ name: "a/gw" }]);
    h.server.publish(1, v1);
    // The agent dials the Service address and verifies the certificate's DNS name.
    const tls = h.agent("node-1", {
      credentials: grpc.credentials.createSsl(Buffer.from(ca.cert)),
      channelOptions: { "grpc.ssl_target_name_override": "sluice-operator.sluice-system.svc" },
    });
    assert.ok(await until(() => tls.sub.state().version === 1, 5000), tls.sub.state().lastError);
    // A plaintext client cannot talk to the TLS server.
    const plain = h.agent("node-2");
    assert.ok(await until(() => (plain.sub.state().lastError ?? "") !== ""), "plaintext fails");
    assert.equal(plain.sub.state().batches, 0);
  } finally {
    await h.close();
  }
});

test("mTLS: a verified client certificate authenticates without a token; no certificate, no stream", async () => {
  const address = randomLoopback();
  const { ca, leaves } = makeCerts([
    { cn: "sluice-operator", sans: ["DNS:sluice-operator.sluice-system.svc"] },
    { cn: "sluice-agent", sans: ["DNS:sluice-agent"] },
    { cn: "someone-else", sans: ["DNS:someone-else"] },
  ]);
  const [serverCert, agentCert, otherCert] = leaves;
  assert.ok(serverCert && agentCert && otherCert);
  const server = await startDistributionServer({
    address,
    port: 0,
    credentials: grpc.ServerCredentials.createSsl(Buffer.from(ca.cert), [{ cert_chain: Buffer.from(serverCert.cert), private_key: Buffer.from(serverCert.key) }], true),
    authenticateCertificate: certificateAuthenticator({ allowedSubjects: ["sluice-agent"] }),
    log,
  });
  const rec = new RecordingAgent();
  const common = { target: `${address}:${server.port}`, log, backoff: fastBackoff, apply: rec.apply, channelOptions: { "grpc.ssl_target_name_override": "sluice-operator.sluice-system.svc" } };
  const good = subscribe({ ...common, node: "node-1", credentials: grpc.credentials.createSsl(Buffer.from(ca.cert), Buffer.from(agentCert.key), Buffer.from(agentCert.cert)) });
  const other = subscribe({ ...common, node: "node-2", credentials: grpc.credentials.createSsl(Buffer.from(ca.cert), Buffer.from(otherCert.key), Buffer.from(otherCert.cert)) });
  const anonymous = subscribe({ ...common, node: "node-3", credentials: grpc.credentials.createSsl(Buffer.from(ca.cert)) });
  try {
    server.publish(1, configOf([{ name: "a/gw" }]));
    assert.ok(await until(() => good.state().version === 1, 5000), good.state().lastError);
    assert.ok(await until(() => /UNAUTHENTICATED: client certificate not allowed/.test(other.state().lastError ?? "")), other.state().lastError);
    assert.ok(await until(() => (anonymous.state().lastError ?? "") !== ""), "no client certificate: the handshake fails");
    assert.equal(anonymous.state().batches, 0);
    assert.deepEqual(server.agents().map((a) => [a.node, a.identity]), [["node-1", "sluice-agent"]]);
  } finally {
    await Promise.all([good.close(), other.close(), anonymous.close()]);
    await server.close();
  }
});

const fakeApiPath = new URL("../fakeapi/server.ts", import.meta.url);
test("TokenReview authenticator against the fake API server", { skip: existsSync(fakeApiPath) ? false : "operator/fakeapi/server.ts is not there yet" }, async () => {
  const { startFakeApiServer } = (await import(fakeApiPath.href)) as { startFakeApiServer: typeof StartFakeApiServer };
  const api = await startFakeApiServer({
    tokens: {
      "agent-tok": { username: "system:serviceaccount:sluice-system:sluice-agent" },
      "other-tok": { username: "system:serviceaccount:default:default" },
    },
  });
  const h = await harness({ authenticate: tokenReviewAuthenticator(api.kubeConfig(), { allowed: ["system:serviceaccount:sluice-system:sluice-agent"] }) });
  try {
    h.server.publish(1, configOf([{ name: "a/gw" }]));
    const good = h.agent("node-1", { token: () => "agent-tok" });
    const wrongAccount = h.agent("node-2", { token: () => "other-tok" });
    const unknown = h.agent("node-3", { token: () => "nope" });
    assert.ok(await until(() => good.sub.state().version === 1, 5000), good.sub.state().lastError);
    assert.ok(await until(() => /UNAUTHENTICATED/.test(wrongAccount.sub.state().lastError ?? "")), wrongAccount.sub.state().lastError);
    assert.ok(await until(() => /UNAUTHENTICATED/.test(unknown.sub.state().lastError ?? "")), unknown.sub.state().lastError);
    assert.equal(h.server.agents()[0]?.identity, "system:serviceaccount:sluice-system:sluice-agent");
    const reviews = api.requests.filter((r) => r.path.includes("tokenreviews"));
    assert.ok(reviews.length >= 3, `${reviews.length} TokenReviews`);
  } finally {
    await h.close();
    await api.close();
  }
});

/** A hand-driven agent stream: what the test writes goes out as is. */
function rawStream(target: string, token: string | undefined): { call: grpc.ClientDuplexStream<AgentMessage, ServerMessage>; received: ServerMessage[]; status: Promise<grpc.StatusObject>; client: grpc.Client } {
  const method = distributionService()["Stream"];
  assert.ok(method);
  const client = new grpc.Client(target, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  if (token) md.set("authorization", `Bearer ${token}`);
  const call = client.makeBidiStreamRequest<AgentMessage, ServerMessage>(STREAM_PATH, (m) => method.requestSerialize(m), (b) => method.responseDeserialize(b) as ServerMessage, md);
  const received: ServerMessage[] = [];
  call.on("data", (m: ServerMessage) => received.push(m));
  call.on("error", () => undefined);
  const status = new Promise<grpc.StatusObject>((r) => call.on("status", r));
  return { call, received, status, client };
}

test("bad agent input ends that stream with a clear status and never disturbs the server", async () => {
  const h = await harness();
  const target = `${h.address}:${h.server.port}`;
  const opened: grpc.Client[] = [];
  const raw = (token: string | undefined) => {
    const r = rawStream(target, token);
    opened.push(r.client);
    return r;
  };
  try {
    const v1 = configOf([{ name: "a/gw" }]);
    h.server.publish(1, v1);

    const ackFirst = raw(TOKEN);
    ackFirst.call.write({ ack: { nonce: "1", applied: {} } });
    assert.deepEqual(await ackFirst.status.then((s) => [s.code, s.details]), [grpc.status.INVALID_ARGUMENT, "the first message must be a subscribe"]);

    const noNode = raw(TOKEN);
    noNode.call.write({ subscribe: { node: "", initialResourceVersions: {}, maxMessageBytes: 0, agentVersion: "" } });
    assert.equal((await noNode.status).code, grpc.status.INVALID_ARGUMENT);

    const tiny = raw(TOKEN);
    tiny.call.write({ subscribe: { node: "n", initialResourceVersions: {}, maxMessageBytes: 100, agentVersion: "" } });
    assert.match((await tiny.status).details, /max_message_bytes 100 is below 16384/);

    const malformedAuth = rawStream(target, undefined);
    opened.push(malformedAuth.client);
    const md = new grpc.Metadata();
    md.set("authorization", "Basic abc");
    const basic = malformedAuth.client.makeBidiStreamRequest<AgentMessage, ServerMessage>(STREAM_PATH, (m) => (distributionService()["Stream"] as grpc.MethodDefinition<AgentMessage, unknown>).requestSerialize(m), (b) => b as unknown as ServerMessage, md);
    basic.on("error", () => undefined);
    const basicStatus = await new Promise<grpc.StatusObject>((r) => basic.on("status", r));
    assert.deepEqual([basicStatus.code, basicStatus.details], [grpc.status.UNAUTHENTICATED, "authorization metadata is not `Bearer <token>`"]);

    // A well-behaved raw agent: stale nonces are ignored, the real one is acknowledged.
    const good = raw(TOKEN);
    good.call.write({ subscribe: { node: "raw-1", initialResourceVersions: {}, maxMessageBytes: 0, agentVersion: "raw" } });
    assert.ok(await until(() => good.received.length === 1));
    good.call.write({ ack: { nonce: "not-the-nonce", applied: {} } });
    good.call.write({ nack: { nonce: "also-not", error: "x" } });
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(h.acks().size, 0);
    good.call.write({ ack: { nonce: good.received[0]?.nonce ?? "", applied: {} } });
    assert.ok(await until(() => sameMap(h.acks(), hashesOf(v1))));
    assert.equal(h.nacks.length, 0);

    // A second stream for the same node replaces the first (a reconnect racing the old stream's timeout).
    const again = raw(TOKEN);
    again.call.write({ subscribe: { node: "raw-1", initialResourceVersions: Object.fromEntries(hashesOf(v1)), maxMessageBytes: 0, agentVersion: "raw" } });
    const replaced = await good.status;
    assert.deepEqual([replaced.code, replaced.details], [grpc.status.ABORTED, "replaced by a newer stream from the same node"]);
    assert.ok(await until(() => again.received.length === 1));
    assert.deepEqual(again.received[0]?.resources, [], "it holds everything already");
    assert.equal(h.server.agents().length, 1);
    assert.equal(h.server.agents()[0]?.agentVersion, "raw");
    assert.ok(sameMap(h.acks(), hashesOf(v1)));

    // The agent half-closes: the stream ends cleanly and the agent no longer counts.
    again.call.end();
    assert.equal((await again.status).code, grpc.status.OK);
    assert.ok(await until(() => h.acks().size === 0 && h.server.agents().length === 0));
  } finally {
    for (const c of opened) c.close();
    await h.close();
  }
});
