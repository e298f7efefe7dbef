// The agent against the in-memory maps (same rules as the kernel side): minimal diffs, ordering
// at every prefix, idempotence, adoption after a restart, id stability, weights, dry runs,
// serialised applies, failures and metrics.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { GatewayDatapath, L4Service } from "../../operator/translate/output.ts";
import type { MapOp } from "../bpf/state.ts";
import { L4Agent } from "./agent.ts";
import { diff, formatOps, type AgentState } from "./diff.ts";
import { MemoryMaps } from "./memmaps.ts";
import { datapathOf, firstInconsistentPrefix, inconsistency, l4Service, l4Yaml, prng, slotsPerBackend } from "./testkit.ts";

const M = 251;

interface B {
  address: string;
  port: number;
  weight: number;
  terminating?: boolean;
}

function l4(id: string, protocol: "TCP" | "UDP", addresses: string[], port: number, backends: Parameters<typeof l4Service>[4], m = M): L4Service {
  return l4Service(id, protocol, addresses, port, backends, m);
}

const gw = (name: string, l4s: L4Service[]): GatewayDatapath => ({ gateway: name, configHash: name, addresses: [], ports: [], l4: l4s });

const base = (): GatewayDatapath[] => [
  gw("ns/a", [
    l4("ns/a/tcp", "TCP", ["127.0.0.9", "127.0.0.10"], 9000, [{ address: "10.0.0.1", port: 80, weight: 100 }, { address: "10.0.0.2", port: 80, weight: 100 }]),
    l4("ns/a/udp", "UDP", ["127.0.0.9"], 53, [{ address: "10.0.0.3", port: 53, weight: 100 }]),
  ]),
];

const kinds = (ops: readonly MapOp[]): string[] => ops.map((o) => o.op);

async function fresh(): Promise<{ maps: MemoryMaps; agent: L4Agent }> {
  const maps = new MemoryMaps({ maglevSize: M });
  const agent = new L4Agent(maps);
  await agent.apply("1", base());
  return { maps, agent };
}

describe("L4Agent", () => {
  it("first apply writes everything in dependency order, then nothing more for the same config", async () => {
    const maps = new MemoryMaps({ maglevSize: M });
    const agent = new L4Agent(maps);
    const r = await agent.apply("1", base());
    assert.deepEqual(kinds(maps.log), [
      "backend-upsert", "backend-upsert", "backend-upsert",
      "maglev-upsert", "maglev-upsert",
      "frontend-upsert", "frontend-upsert", "frontend-upsert",
      "vip-upsert", "vip-upsert",
      "version",
    ]);
    assert.equal(r.ops, 11);
    assert.equal(agent.appliedVersion(), "1");
    assert.deepEqual((await agent.plan("1", base())).ops, []);
    assert.deepEqual(kinds((await agent.plan("2", base())).ops), ["version"]);
    const again = await agent.apply("1", base());
    assert.equal(again.ops, 0);
    assert.equal(maps.applyCalls, 1, "nothing to write: the maps are not even called");
  });

  it("a weight change rewrites only that service's table", async () => {
    const { maps, agent } = await fresh();
    const before = maps.log.length;
    const cfg = base();
    const a = cfg[0] as GatewayDatapath;
    a.l4[0] = l4("ns/a/tcp", "TCP", ["127.0.0.9", "127.0.0.10"], 9000, [{ address: "10.0.0.1", port: 80, weight: 300 }, { address: "10.0.0.2", port: 80, weight: 100 }]);
    await agent.apply("2", cfg);
    const ops = maps.log.slice(before);
    assert.deepEqual(kinds(ops), ["maglev-upsert", "version"]);
  });

  it("adding a backend writes it before the table that uses it; removing one deletes it after the table stops using it", async () => {
    const { maps, agent } = await fresh();
    let at = maps.log.length;
    const three: B[] = [{ address: "10.0.0.1", port: 80, weight: 100 }, { address: "10.0.0.2", port: 80, weight: 100 }, { address: "10.0.0.4", port: 80, weight: 100 }];
    const cfg = base();
    (cfg[0] as GatewayDatapath).l4[0] = l4("ns/a/tcp", "TCP", ["127.0.0.9", "127.0.0.10"], 9000, three);
    await agent.apply("2", cfg);
    assert.deepEqual(kinds(maps.log.slice(at)), ["backend-upsert", "maglev-upsert", "version"]);
    at = maps.log.length;
    (cfg[0] as GatewayDatapath).l4[0] = l4("ns/a/tcp", "TCP", ["127.0.0.9", "127.0.0.10"], 9000, three.slice(1));
    await agent.apply("3", cfg);
    assert.deepEqual(kinds(maps.log.slice(at)), ["maglev-upsert", "backend-delete", "version"]);
  });

  it("removing a service deletes VIP, frontends, table and its own backends, in that order", async () => {
    const { maps, agent } = await fresh();
    const at = maps.log.length;
    const cfg = base();
    (cfg[0] as GatewayDatapath).l4 = [(cfg[0] as GatewayDatapath).l4[0] as L4Service];
    (cfg[0] as GatewayDatapath).l4[0] = l4("ns/a/tcp", "TCP", ["127.0.0.10"], 9000, [{ address: "10.0.0.1", port: 80, weight: 100 }, { address: "10.0.0.2", port: 80, weight: 100 }]);
    await agent.apply("2", cfg);
    assert.deepEqual(kinds(maps.log.slice(at)), ["vip-delete", "frontend-delete", "frontend-delete", "maglev-delete", "backend-delete", "version"]);
    const text = formatOps(maps.log.slice(at));
    assert.match(text, /^- vip 127\.0\.0\.9$/m);
    assert.match(text, /^- frontend 127\.0\.0\.9:53\/UDP$/m);
    assert.match(text, /^- frontend 127\.0\.0\.9:9000\/TCP$/m);
  });

  it("keeps every prefix of every diff consistent over a random walk of configs, and converges each time", async () => {
    const rnd = prng(7);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
    const maps = new MemoryMaps({ maglevSize: M });
    const agent = new L4Agent(maps);
    const vips = ["127.0.0.1", "127.0.0.2", "127.0.0.3"];
    for (let step = 1; step <= 40; step++) {
      const gws: GatewayDatapath[] = [];
      for (const g of ["ns/g1", "ns/g2"]) {
        const services: L4Service[] = [];
        for (let s = 0; s < 1 + Math.floor(rnd() * 4); s++) {
          const protocol = pick(["TCP", "UDP"] as const);
          const addrs = vips.filter(() => rnd() < 0.6);
          const backends: B[] = [];
          for (let i = 1; i <= 8; i++) if (rnd() < 0.4) backends.push({ address: `10.0.0.${i}`, port: pick([80, 81]), weight: 1000 * (1 + Math.floor(rnd() * 5)), terminating: rnd() < 0.15 });
          const dedup = [...new Map(backends.map((b) => [`${b.address}:${b.port}`, b])).values()];
          services.push(l4(`${g}/l${s}`, protocol, addrs, pick([9000, 9001, 9002]), dedup));
        }
        gws.push(gw(g, services));
      }
      const current = (await maps.read()) as AgentState;
      const { ops } = await agent.plan(String(step), gws);
      assert.equal(firstInconsistentPrefix(current, ops), undefined, `step ${step}`);
      await agent.apply(String(step), gws); // MemoryMaps rejects any op that would dangle
      const after = await maps.read();
      assert.equal(inconsistency(after), undefined);
      assert.deepEqual(diff(after, { ...after }), []);
      assert.deepEqual((await agent.plan(String(step), gws)).ops, [], `step ${step}: idempotent`);
      // A restarted agent on the same maps has nothing to write.
      assert.deepEqual((await new L4Agent(maps).plan(String(step), gws)).ops, [], `step ${step}: adoption`);
    }
  });

  it("after a restart: the same config writes nothing, ids stay, and a change writes only the change", async () => {
    const { maps } = await fresh();
    const before = await maps.read();
    const agent = new L4Agent(maps);
    const r = await agent.apply("1", base());
    assert.equal(r.ops, 0);
    assert.equal(agent.appliedVersion(), "1");
    const cfg = base();
    (cfg[0] as GatewayDatapath).l4.push(l4("ns/a/tcp2", "TCP", ["127.0.0.9"], 9100, [{ address: "10.0.0.1", port: 80, weight: 1 }, { address: "10.0.0.5", port: 80, weight: 1 }]));
    const at = maps.log.length;
    await agent.apply("2", cfg);
    assert.deepEqual(kinds(maps.log.slice(at)), ["backend-upsert", "maglev-upsert", "frontend-upsert", "version"]);
    const after = await maps.read();
    for (const b of before.backends) assert.deepEqual(after.backends.find((x) => x.id === b.id), b, "existing backends keep their ids");
    for (const f of before.frontends) assert.deepEqual(after.frontends.find((x) => x.address === f.address && x.port === f.port && x.protocol === f.protocol), f);
    const newIds = new Set(after.maglev.keys());
    for (const id of before.maglev.keys()) newIds.delete(id);
    assert.equal(newIds.size, 1);
    assert.ok(![...before.maglev.keys()].includes([...newIds][0] as number), "a new service gets a fresh id");
  });

  it("rewrites the conntrack timeouts once when the maps do not report them, never when they do", async () => {
    const timeouts = { tcpEstablished: 600, tcpClosing: 10, tcpSyn: 20, udp: 30 };
    const maps = new MemoryMaps({ maglevSize: M });
    await new L4Agent(maps, { timeouts }).apply("1", base());
    assert.deepEqual(maps.log.filter((o) => o.op === "config").length, 1);
    assert.deepEqual((await new L4Agent(maps, { timeouts }).plan("1", base())).ops, []);
    const blind = { ...maps, maglevSize: M, read: () => maps.readWithoutTimeouts(), apply: (o: readonly MapOp[]) => maps.apply(o), counters: () => maps.counters(), conntrackCount: () => maps.conntrackCount(), close: () => maps.close() };
    assert.deepEqual(kinds((await new L4Agent(blind, { timeouts }).plan("1", base())).ops), ["config"]);
    assert.deepEqual((await new L4Agent(blind).plan("1", base())).ops, []);
  });

  it("keeps the weights: slots per backend follow an 80/20 split", async () => {
    const maps = new MemoryMaps({ maglevSize: 1021 });
    const agent = new L4Agent(maps);
    const cfg = [gw("ns/a", [l4("ns/a/udp", "UDP", ["127.0.0.9"], 53, [{ address: "10.0.0.1", port: 53, weight: 80 * 400 }, { address: "10.0.0.2", port: 53, weight: 20 * 400 }], 1021)])];
    await agent.apply("1", cfg);
    const s = await maps.read();
    const [table] = [...s.maglev.values()];
    assert.ok(table);
    const slots = slotsPerBackend(table);
    const id1 = s.backends.find((b) => b.address === "10.0.0.1")?.id as number;
    const share = (slots.get(id1) ?? 0) / 1021;
    assert.ok(Math.abs(share - 0.8) < 0.02, `share ${share}`);
  });

  it("a dry run writes nothing", async () => {
    const maps = new MemoryMaps({ maglevSize: M });
    const agent = new L4Agent(maps);
    const { ops } = await agent.plan("1", base());
    assert.equal(ops.length, 11);
    assert.equal(maps.applyCalls, 0);
    assert.deepEqual((await maps.read()).backends, []);
    assert.equal(agent.appliedVersion(), "");
    // The plan's ids are what the apply then uses.
    await agent.apply("1", base());
    assert.deepEqual(maps.log, ops);
  });

  it("serialises applies: of several queued behind a running one only the latest is applied", async () => {
    const maps = new MemoryMaps({ maglevSize: M });
    const agent = new L4Agent(maps);
    const cfg2 = base();
    (cfg2[0] as GatewayDatapath).l4.pop();
    const [r1, r2, r3] = await Promise.all([agent.apply("1", base()), agent.apply("2", cfg2), agent.apply("3", base())]);
    assert.equal(r1.version, "1");
    assert.equal(r2.superseded, true);
    assert.equal(r2.version, "3");
    assert.equal(r3.superseded, undefined);
    assert.equal(maps.applyCalls, 2);
    assert.deepEqual(kinds(maps.log).slice(-3), ["vip-upsert", "version", "version"], "v3 equals v1 but for the version; v2 was never written");
    assert.equal((await maps.read()).version, "3");
  });

  it("recovers from a failed apply: the error says which op, and the next apply converges", async () => {
    const maps = new MemoryMaps({ maglevSize: M });
    const agent = new L4Agent(maps);
    maps.failAt = 4;
    await assert.rejects(agent.apply("1", base()), /op 4 \(maglev-upsert\) failed/);
    assert.equal((await maps.read()).backends.length, 3, "the ops before the failing one stay applied");
    const r = await agent.apply("1", base());
    assert.equal(r.ops, 7);
    assert.equal(inconsistency(await maps.read()), undefined);
    assert.deepEqual((await new L4Agent(maps).plan("1", base())).ops, []);
    assert.match(await agent.registry.metrics(), /^sluice_agent_apply_errors_total 1$/m);
  });

  it("reports version, ops by type, durations, entries and per-frontend traffic as Prometheus metrics", async () => {
    const { maps, agent } = await fresh();
    maps.count({ address: "127.0.0.9", port: 9000, protocol: "TCP" }, 12n, 3400n);
    const text = await agent.registry.metrics();
    assert.match(text, /^sluice_agent_applied_version 1$/m);
    assert.match(text, /^sluice_agent_applied_version_info\{version="1"\} 1$/m);
    assert.match(text, /^sluice_agent_map_ops_total\{op="backend-upsert"\} 3$/m);
    assert.match(text, /^sluice_agent_map_ops_total\{op="maglev-upsert"\} 2$/m);
    assert.match(text, /^sluice_agent_apply_duration_seconds_count 1$/m);
    assert.match(text, /^sluice_agent_frontend_packets_total\{frontend="127\.0\.0\.9:9000\/TCP"\} 12$/m);
    assert.match(text, /^sluice_agent_frontend_bytes_total\{frontend="127\.0\.0\.9:9000\/TCP"\} 3400$/m);
    assert.match(text, /^sluice_agent_frontend_packets_total\{frontend="127\.0\.0\.10:9000\/TCP"\} 0$/m);
    assert.match(text, /^sluice_agent_entries\{kind="backend"\} 3$/m);
    // A removed frontend's series goes away with it (label sets stay bounded by the frontends).
    const cfg = base();
    (cfg[0] as GatewayDatapath).l4.pop();
    await agent.apply("2", cfg);
    const after = await agent.registry.metrics();
    assert.doesNotMatch(after, /frontend="127\.0\.0\.9:53\/UDP"/);
    assert.match(after, /^sluice_agent_applied_version_info\{version="2"\} 1$/m);
    assert.doesNotMatch(after, /version="1"/);
  });

  it("serves manifests end to end: TCPRoute and UDPRoute through the translator", async () => {
    const yaml = l4Yaml({
      tcp: { port: 9000, backends: [{ name: "a", weight: 80, endpoints: [{ address: "10.0.0.1", port: 8080 }] }, { name: "b", weight: 20, endpoints: [{ address: "10.0.0.2", port: 8080 }] }] },
      udp: { port: 9001, backends: [{ name: "u", endpoints: [{ address: "10.0.0.3", port: 53 }] }] },
    });
    const maps = new MemoryMaps({ maglevSize: M });
    const agent = new L4Agent(maps, { portOffset: 20000 });
    await agent.apply("1", datapathOf(yaml, ["127.0.0.9"]));
    const s = await maps.read();
    assert.deepEqual(s.frontends.map((f) => `${f.address}:${f.port}/${f.protocol}`).sort(), ["127.0.0.9:29000/TCP", "127.0.0.9:29001/UDP"]);
    assert.equal(s.backends.length, 3);
  });

  it("prints diffs one line per op", () => {
    const ops: MapOp[] = [
      { op: "backend-upsert", backend: { id: 7, address: "10.0.1.2", port: 8080, protocol: "TCP", snatAddress: "10.0.0.1" } },
      { op: "maglev-upsert", serviceId: 3, table: new Uint32Array([7, 7, 8]) },
      { op: "frontend-upsert", frontend: { address: "10.0.100.1", port: 80, protocol: "TCP", serviceId: 3, flags: 1 } },
      { op: "frontend-delete", key: { address: "10.0.100.1", port: 9000, protocol: "UDP" } },
      { op: "config", timeouts: { tcpEstablished: 600, tcpClosing: 10, tcpSyn: 20, udp: 30 } },
      { op: "version", version: "42" },
    ];
    assert.equal(formatOps(ops), [
      "+ backend 7 10.0.1.2:8080/TCP snat 10.0.0.1",
      "~ maglev svc 3 (3 slots, 2 backends)",
      "+ frontend 10.0.100.1:80/TCP → svc 3 (L7 proxy)",
      "- frontend 10.0.100.1:9000/UDP",
      "~ conntrack timeouts tcp 600s, closing 10s, syn 20s, udp 30s",
      "~ version 42",
      "",
    ].join("\n"));
  });
});

describe("L4Agent adoption failures", () => {
  it("reports maps that cannot be read and adopts once they can", async () => {
    const maps = new MemoryMaps({ maglevSize: M });
    let broken = true;
    const flaky = Object.assign(Object.create(maps) as MemoryMaps, {
      read: () => (broken ? Promise.reject(new Error("EPERM")) : maps.read()),
    });
    const agent = new L4Agent(flaky);
    await assert.rejects(agent.apply("1", base()), /reading the maps failed: EPERM/);
    broken = false;
    const r = await agent.apply("1", base());
    assert.equal(r.ops, 11);
  });
});
