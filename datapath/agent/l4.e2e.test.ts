// The agent driving the real eBPF datapath (root, network namespaces): a client, a node with the
// programs attached, three backends. Weighted splits measured over real flows, backend removal
// with established and new flows, and an agent restart under TCP traffic.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { datapathUnavailable, openDatapath, removePinned, type Datapath } from "../bpf/datapath.ts";
import { NsHelper, createTopology, netnsUnavailable, type Topology } from "../bpf/netns.ts";
import type { ConntrackTimeouts } from "../bpf/state.ts";
import { L4Agent } from "./agent.ts";
import { routeSnat } from "./snat.ts";
import { datapathOf, l4Yaml, type L4BackendRef } from "./testkit.ts";

const skip = datapathUnavailable() ?? netnsUnavailable();
if (skip) console.warn(`SKIPPING L4 agent end-to-end tests: ${skip}`);

const VIP = "10.8.100.1";
const M = 16381;
const BE = { be1: "10.8.11.2", be2: "10.8.12.2", be3: "10.8.13.2" } as const;
// Short UDP conntrack lifetime so replayed tuples are balanced afresh after a change.
const TIMEOUTS: ConntrackTimeouts = { tcpEstablished: 3600, tcpClosing: 10, tcpSyn: 10, udp: 1 };

/**
 * Sends one UDP datagram from each source port in [from, from+count) to host:port (50 at a time)
 * and prints {port: backend name}; runs inside the client namespace.
 */
const UDP_FLOWS = `
const dgram = require("node:dgram");
const [host, port, from, count] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3]), Number(process.argv[4])];
const out = {};
function one(p) {
  return new Promise((resolve) => {
    const s = dgram.createSocket("udp4");
    const t = setTimeout(() => { out[p] = "timeout"; s.close(); resolve(); }, 1500);
    s.on("error", (e) => { clearTimeout(t); out[p] = "error " + e.message; try { s.close(); } catch {} resolve(); });
    s.on("message", (m) => { clearTimeout(t); out[p] = JSON.parse(m.toString().split("\\n")[0]).name; s.close(); resolve(); });
    s.bind(p, () => s.send("x", port, host));
  });
}
(async () => {
  let next = from;
  const worker = async () => { while (next < from + count) await one(next++); };
  await Promise.all(Array.from({ length: 50 }, worker));
  process.stdout.write(JSON.stringify(out));
})();
`;

describe("L4 agent on the eBPF datapath", { skip: skip ?? false }, () => {
  let topo: Topology;
  let dp: Datapath | undefined;
  let client: NsHelper;
  const helpers: NsHelper[] = [];
  const pinDir = `/sys/fs/bpf/sluice-agent-e2e-${process.pid}-${Math.floor(Math.random() * 1e6)}`;

  const udpFlows = async (from: number, count: number): Promise<Map<number, string>> => {
    const text = await topo.exec("client", [process.execPath, "-e", UDP_FLOWS, VIP, "53", String(from), String(count)], { timeoutMs: 60_000 });
    return new Map(Object.entries(JSON.parse(text) as Record<string, string>).map(([p, n]) => [Number(p), n]));
  };
  const tally = (flows: Map<number, string>): Map<string, number> => {
    const out = new Map<string, number>();
    for (const n of flows.values()) out.set(n, (out.get(n) ?? 0) + 1);
    return out;
  };
  const config = (udp: L4BackendRef[], tcp: L4BackendRef[] = [{ name: "t", endpoints: Object.values(BE).map((address) => ({ address, port: 8080 })) }]) =>
    datapathOf(l4Yaml({ tcp: { port: 80, backends: tcp }, udp: { port: 53, backends: udp } }), [VIP], M);
  const one = (name: keyof typeof BE, weight?: number, ready = true): L4BackendRef => ({ name, ...(weight ? { weight } : {}), endpoints: [{ address: BE[name], port: 5353, ready }] });
  const agentFor = (maps: Datapath): L4Agent => new L4Agent(maps, { timeouts: TIMEOUTS, snatFor: routeSnat({ netns: topo.ns("node1") }) });

  before(async () => {
    topo = await createTopology({
      namespaces: ["client", "node1", "be1", "be2", "be3"],
      links: [
        { a: "client", b: "node1", aAddr: "10.8.1.2/24", bAddr: "10.8.1.1/24" },
        { a: "node1", b: "be1", aAddr: "10.8.11.1/24", bAddr: "10.8.11.2/24" },
        { a: "node1", b: "be2", aAddr: "10.8.12.1/24", bAddr: "10.8.12.2/24" },
        { a: "node1", b: "be3", aAddr: "10.8.13.1/24", bAddr: "10.8.13.2/24" },
      ],
      routers: ["node1"],
      routes: [
        { ns: "client", to: "10.8.100.0/24", via: "10.8.1.1" },
        { ns: "be1", to: "default", via: "10.8.11.1" },
        { ns: "be2", to: "default", via: "10.8.12.1" },
        { ns: "be3", to: "default", via: "10.8.13.1" },
        // A network behind be3, to check the SNAT decision for a backend reached via a gateway.
        { ns: "node1", to: "10.8.50.0/24", via: "10.8.13.2" },
      ],
    });
    client = new NsHelper(topo, "client");
    helpers.push(client);
    for (const [name, addr] of Object.entries(BE)) {
      const h = new NsHelper(topo, name);
      helpers.push(h);
      await h.ready();
      assert.ok((await h.serve("tcp", addr, 8080, name)).ok);
      assert.ok((await h.serve("udp", addr, 5353, name)).ok);
    }
    await client.ready();
    dp = await openDatapath({ pinDir, maglevSize: M, maxServices: 64, maxBackends: 64, ctSize: 65536 });
    for (const ifname of topo.interfaces("node1")) await dp.attach(ifname, topo.ns("node1"));
  });

  after(async () => {
    for (const h of helpers) h.stop();
    if (dp) {
      for (const ifname of topo?.interfaces("node1") ?? []) await dp.detach(ifname, topo.ns("node1")).catch(() => {});
      await dp.close().catch(() => {});
    }
    await topo?.destroy();
    await removePinned(pinDir);
  });

  it("decides SNAT from the node's routes: none for attached networks, the route's source via a gateway", async () => {
    const snat = routeSnat({ netns: topo.ns("node1") });
    assert.equal(await snat(BE.be1), undefined);
    assert.equal(await snat("10.8.50.7"), "10.8.13.1");
  });

  it("splits 2,000 UDP flows 80/20 within ±5%", { timeout: 90_000 }, async (t) => {
    assert.ok(dp);
    const agent = agentFor(dp);
    const r = await agent.apply("split", config([one("be1", 80), one("be2", 20)]));
    assert.ok(r.ops > 0);
    const flows = await udpFlows(30000, 2000);
    const n = tally(flows);
    assert.equal((n.get("be1") ?? 0) + (n.get("be2") ?? 0), 2000, JSON.stringify([...n]));
    const share = (n.get("be1") ?? 0) / 2000;
    t.diagnostic(`be1 ${(share * 100).toFixed(1)}%, be2 ${(100 - share * 100).toFixed(1)}%`);
    assert.ok(Math.abs(share - 0.8) <= 0.05, `be1 got ${(share * 100).toFixed(1)}% of the flows`);
  });

  it("removing a backend leaves established flows alone and moves new flows by at most 2% beyond its share", { timeout: 90_000 }, async (t) => {
    assert.ok(dp);
    const agent = agentFor(dp);
    await agent.apply("three", config([one("be1"), one("be2"), one("be3")]));
    // Established TCP flows to every backend, held open.
    const held: { hold: string; name: string }[] = [];
    for (let i = 0; i < 24; i++) {
      const r = await client.call({ op: "tcp", host: VIP, port: 80, hold: `h${i}` });
      assert.ok(r.ok, r.error);
      held.push({ hold: `h${i}`, name: r.line?.name ?? "" });
    }
    assert.deepEqual(new Set(held.map((h) => h.name)), new Set(["be1", "be2", "be3"]));
    const flows = 900;
    const before = await udpFlows(40000, flows);
    const share3 = [...before.values()].filter((n) => n === "be3").length / flows;

    // be3 terminating: out of the tables, its established flows kept; then gone altogether.
    const tcpTerminating: L4BackendRef[] = [{ name: "t", endpoints: [{ address: BE.be1, port: 8080 }, { address: BE.be2, port: 8080 }, { address: BE.be3, port: 8080, ready: false }] }];
    await agent.apply("be3-terminating", config([one("be1"), one("be2"), one("be3", undefined, false)], tcpTerminating));
    for (const h of held) {
      const s = await client.call({ op: "send", hold: h.hold, data: `still ${h.hold}` });
      assert.ok(s.ok, `established flow ${h.hold} to ${h.name}: ${s.error ?? ""}`);
    }
    await new Promise((r) => setTimeout(r, 2500)); // the UDP conntrack entries expire
    const after = await udpFlows(40000, flows);
    let moved = 0;
    for (const [p, n] of after) {
      assert.notEqual(n, "be3", `flow from port ${p} went to the terminating backend`);
      assert.ok(n === "be1" || n === "be2", `flow from port ${p}: ${n}`);
      if (before.get(p) !== n) moved++;
    }
    t.diagnostic(`be3 had ${(share3 * 100).toFixed(1)}% of ${flows} flows; ${((moved / flows) * 100).toFixed(1)}% moved`);
    assert.ok(moved / flows <= share3 + 0.02, `${moved} of ${flows} flows moved; be3 had ${(share3 * 100).toFixed(1)}%`);

    const tcpTwo: L4BackendRef[] = [{ name: "t", endpoints: [{ address: BE.be1, port: 8080 }, { address: BE.be2, port: 8080 }] }];
    await agent.apply("be3-removed", config([one("be1"), one("be2")], tcpTwo));
    for (const h of held.filter((x) => x.name !== "be3")) {
      const s = await client.call({ op: "send", hold: h.hold, data: `again ${h.hold}` });
      assert.ok(s.ok, `established flow ${h.hold} to ${h.name} after the removal: ${s.error ?? ""}`);
    }
    for (const h of held) await client.call({ op: "close", hold: h.hold });
  });

  it("restarting the agent under TCP traffic fails no connection and rewrites nothing", { timeout: 90_000 }, async (t) => {
    assert.ok(dp);
    const cfg = config([one("be1"), one("be2"), one("be3")]);
    await agentFor(dp).apply("steady", cfg);
    const pre = await client.call({ op: "tcp", host: VIP, port: 80, hold: "pre" });
    assert.ok(pre.ok, pre.error);
    const count = 3000;
    const t0 = Date.now();
    let trafficDone = 0;
    const traffic = client.call({ op: "tcp-many", host: VIP, port: 80, count, timeoutMs: 3000 }).finally(() => (trafficDone = Date.now()));
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(trafficDone, 0, "traffic is flowing when the agent stops");
    // The old agent goes away (its co-process exits; programs and pinned maps stay) ...
    await dp.close();
    dp = undefined;
    // ... and a new one adopts the pinned maps.
    dp = await openDatapath({ pinDir, maglevSize: M, maxServices: 64, maxBackends: 64, ctSize: 65536 });
    assert.equal(dp.adopted, true);
    for (const ifname of topo.interfaces("node1")) await dp.attach(ifname, topo.ns("node1"));
    const agent = agentFor(dp);
    const { ops } = await agent.plan("steady", cfg);
    // The maps do not report conntrack timeouts, so the agent may write them once more; nothing else.
    assert.deepEqual(ops.filter((o) => o.op !== "config"), [], JSON.stringify(ops.map((o) => o.op)));
    await agent.apply("steady", cfg);
    const restarted = Date.now();
    assert.equal(trafficDone, 0, "traffic is still flowing when the new agent has applied (raise the count if this fails)");
    const r = await traffic;
    t.diagnostic(`restart done ${restarted - t0} ms into ${trafficDone - t0} ms of traffic (${count} connections)`);
    const failed = (r.results ?? []).filter((x) => !x.ok);
    assert.equal(r.results?.length, count);
    assert.equal(failed.length, 0, `${failed.length} connections failed: ${JSON.stringify(failed.slice(0, 3))}`);
    const s = await client.call({ op: "send", hold: "pre", data: "after the restart" });
    assert.ok(s.ok, s.error);
    await client.call({ op: "close", hold: "pre" });
  });
});
