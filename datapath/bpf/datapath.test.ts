// Privileged: the eBPF datapath forwarding real TCP and UDP between network namespaces.
//
//   client ──(10.9.1.0/24)── node1 ──(10.9.11.0/24)── be1
//     │                        ├────(10.9.12.0/24)── be2
//     │                        └────(10.9.3.0/24)─── node2 ──(10.9.13.0/24)── be3
//     └──────────────(10.9.5.0/24)────────────────────┘
//
// The VIP 10.9.100.1 is routed to node1, where the programs run on every interface. be3's
// replies go via node2 straight back to the client unless node1 SNATs (to 10.9.3.1).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { buildMaglevTable, maglevHashKey } from "../../operator/translate/maglev.ts";
import { datapathUnavailable, openDatapath, removePinned } from "./datapath.ts";
import type { Datapath } from "./datapath.ts";
import { NsHelper, createTopology, netnsUnavailable } from "./netns.ts";
import type { HelperReply, Topology } from "./netns.ts";
import { FRONTEND_L7_PROXY } from "./state.ts";
import type { BackendEntry, MapOp } from "./state.ts";

const skip = datapathUnavailable() ?? netnsUnavailable();
if (skip) console.warn(`SKIPPING eBPF datapath tests: ${skip}`);

const VIP = "10.9.100.1";
const M = 251;
const SNAT = "10.9.3.1";
const NODE1_CLIENT_SIDE = "10.9.1.1";

const tcpBackends: BackendEntry[] = [
  { id: 1, address: "10.9.11.2", port: 8080, protocol: "TCP" },
  { id: 2, address: "10.9.12.2", port: 8080, protocol: "TCP" },
  { id: 3, address: "10.9.13.2", port: 8080, protocol: "TCP", snatAddress: SNAT },
];
const udpBackends: BackendEntry[] = [
  { id: 11, address: "10.9.11.2", port: 5353, protocol: "UDP" },
  { id: 12, address: "10.9.12.2", port: 5353, protocol: "UDP" },
  { id: 13, address: "10.9.13.2", port: 5353, protocol: "UDP", snatAddress: SNAT },
];
const proxyBackend: BackendEntry = { id: 21, address: NODE1_CLIENT_SIDE, port: 15001, protocol: "TCP" };

function maglevOf(backends: BackendEntry[]): Uint32Array {
  const idx = buildMaglevTable(
    backends.map((b) => ({ hashKey: maglevHashKey(b.address, b.port, b.protocol), weight: 1 })),
    M,
  );
  return idx.map((i) => backends[i]?.id ?? 0xffff_ffff);
}

function desired(): MapOp[] {
  return [
    ...[...tcpBackends, ...udpBackends, proxyBackend].map((backend): MapOp => ({ op: "backend-upsert", backend })),
    { op: "maglev-upsert", serviceId: 1, table: maglevOf(tcpBackends) },
    { op: "maglev-upsert", serviceId: 2, table: maglevOf(udpBackends) },
    { op: "maglev-upsert", serviceId: 3, table: maglevOf([proxyBackend]) },
    { op: "frontend-upsert", frontend: { address: VIP, port: 80, protocol: "TCP", serviceId: 1, flags: 0 } },
    { op: "frontend-upsert", frontend: { address: VIP, port: 53, protocol: "UDP", serviceId: 2, flags: 0 } },
    { op: "frontend-upsert", frontend: { address: VIP, port: 8080, protocol: "TCP", serviceId: 3, flags: FRONTEND_L7_PROXY } },
    { op: "vip-upsert", address: VIP },
    { op: "config", timeouts: { tcpEstablished: 3600, tcpClosing: 10, tcpSyn: 30, udp: 30 } },
    { op: "version", version: "test-1" },
  ];
}

function names(rs: HelperReply[] | undefined): Map<string, number> {
  const out = new Map<string, number>();
  for (const r of rs ?? []) {
    assert.ok(r.ok, `request failed: ${r.error}`);
    const n = r.line?.name ?? "?";
    out.set(n, (out.get(n) ?? 0) + 1);
  }
  return out;
}

describe("eBPF datapath between network namespaces", { skip, timeout: 60_000 }, () => {
  let topo: Topology;
  let dp: Datapath;
  let client: NsHelper;
  const helpers: NsHelper[] = [];
  const backendHelpers = new Map<string, NsHelper>();
  const pinDir = `/sys/fs/bpf/sluice-test-${randomBytes(3).toString("hex")}`;

  before(async () => {
    topo = await createTopology({
      namespaces: ["client", "node1", "node2", "be1", "be2", "be3"],
      links: [
        { a: "client", b: "node1", aAddr: "10.9.1.2/24", bAddr: "10.9.1.1/24" },
        { a: "client", b: "node2", aAddr: "10.9.5.2/24", bAddr: "10.9.5.1/24" },
        { a: "node1", b: "be1", aAddr: "10.9.11.1/24", bAddr: "10.9.11.2/24" },
        { a: "node1", b: "be2", aAddr: "10.9.12.1/24", bAddr: "10.9.12.2/24" },
        { a: "node1", b: "node2", aAddr: "10.9.3.1/24", bAddr: "10.9.3.2/24" },
        { a: "node2", b: "be3", aAddr: "10.9.13.1/24", bAddr: "10.9.13.2/24" },
      ],
      routers: ["node1", "node2"],
      routes: [
        { ns: "client", to: "10.9.100.0/24", via: "10.9.1.1" },
        { ns: "be1", to: "default", via: "10.9.11.1" },
        { ns: "be2", to: "default", via: "10.9.12.1" },
        { ns: "be3", to: "default", via: "10.9.13.1" },
        { ns: "node1", to: "10.9.13.0/24", via: "10.9.3.2" },
        // The bypass: node2 reaches the client directly, not through node1.
        { ns: "node2", to: "10.9.1.0/24", via: "10.9.5.2" },
      ],
    });
    client = new NsHelper(topo, "client");
    helpers.push(client);
    const serve: [string, string, string][] = [
      ["be1", "10.9.11.2", "be1"],
      ["be2", "10.9.12.2", "be2"],
      ["be3", "10.9.13.2", "be3"],
    ];
    for (const [ns, addr, name] of serve) {
      const h = new NsHelper(topo, ns);
      helpers.push(h);
      backendHelpers.set(name, h);
      await h.ready();
      assert.ok((await h.serve("tcp", addr, 8080, name)).ok);
      assert.ok((await h.serve("udp", addr, 5353, name)).ok);
    }
    const proxy = new NsHelper(topo, "node1");
    helpers.push(proxy);
    await proxy.ready();
    assert.ok((await proxy.serve("tcp", NODE1_CLIENT_SIDE, 15001, "l7proxy")).ok);
    await client.ready();

    dp = await openDatapath({ pinDir, maglevSize: M, maxServices: 256, maxBackends: 256, ctSize: 16384 });
    assert.equal(dp.adopted, false);
    for (const ifname of topo.interfaces("node1")) await dp.attach(ifname, topo.ns("node1"));
    await dp.apply(desired());
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

  test("maps read back what was applied", async () => {
    const st = await dp.read();
    assert.equal(st.version, "test-1");
    assert.deepEqual(st.vips, [VIP]);
    assert.equal(st.frontends.length, 3);
    assert.deepEqual(st.backends.find((b) => b.id === 3), tcpBackends[2]);
    assert.deepEqual([...(st.maglev.get(1) ?? [])], [...maglevOf(tcpBackends)]);
  });

  test("TCP through the frontend reaches all three backends, be3 via SNAT; the client sees the VIP", async () => {
    const r = await client.call({ op: "tcp-many", host: VIP, port: 80, count: 24, timeoutMs: 2000 });
    const seen = names(r.results);
    assert.deepEqual([...seen.keys()].sort(), ["be1", "be2", "be3"], JSON.stringify([...seen]));
    for (const res of r.results ?? []) {
      assert.equal(res.remote, `${VIP}:80`);
      const peer = res.line?.peer ?? "";
      if (res.line?.name === "be3") assert.match(peer, /^10\.9\.3\.1:(6[1-5]\d{3})$/, "be3 sees node1's SNAT address");
      else assert.match(peer, /^10\.9\.1\.2:/, "be1/be2 see the client itself");
    }
  });

  test("without SNAT, be3's replies bypass node1 and the connection fails (the topology needs SNAT)", async () => {
    const be3 = tcpBackends[2];
    assert.ok(be3);
    const { snatAddress: _, ...noSnat } = be3;
    await dp.apply([
      { op: "backend-upsert", backend: noSnat },
      { op: "maglev-upsert", serviceId: 1, table: maglevOf([be3]) },
    ]);
    try {
      const r = await client.call({ op: "tcp", host: VIP, port: 80, timeoutMs: 600 });
      assert.equal(r.ok, false, "the SYN-ACK comes from be3's own address and the client rejects it");
    } finally {
      await dp.apply([
        { op: "backend-upsert", backend: be3 },
        { op: "maglev-upsert", serviceId: 1, table: maglevOf(tcpBackends) },
      ]);
    }
    assert.equal((await client.call({ op: "tcp", host: VIP, port: 80 })).ok, true);
  });

  test("hairpin: a backend balanced to itself through the VIP gets its reply via the node", async () => {
    const be1 = tcpBackends[0];
    const h = backendHelpers.get("be1");
    assert.ok(be1 && h);
    await dp.apply([{ op: "maglev-upsert", serviceId: 1, table: maglevOf([be1]) }]);
    try {
      const r = await h.call({ op: "tcp", host: VIP, port: 80, timeoutMs: 2000 });
      assert.ok(r.ok, r.error);
      assert.equal(r.line?.name, "be1");
      assert.equal(r.remote, `${VIP}:80`);
      assert.match(r.line?.peer ?? "", new RegExp(`^${VIP.replaceAll(".", "\\.")}:6[1-5]\\d{3}$`), "SNATed to the VIP");
    } finally {
      await dp.apply([{ op: "maglev-upsert", serviceId: 1, table: maglevOf(tcpBackends) }]);
    }
  });

  test("UDP through the frontend reaches all three backends and replies come from the VIP", async () => {
    const r = await client.call({ op: "udp-many", host: VIP, port: 53, count: 24, data: "hello", timeoutMs: 1500 });
    const seen = names(r.results);
    assert.deepEqual([...seen.keys()].sort(), ["be1", "be2", "be3"], JSON.stringify([...seen]));
    for (const res of r.results ?? []) assert.equal(res.from, `${VIP}:53`);
  });

  test("an unknown port or protocol on the VIP is dropped", async () => {
    const [tcp, udp] = await Promise.all([
      client.call({ op: "tcp", host: VIP, port: 81, timeoutMs: 600 }),
      client.call({ op: "udp", host: VIP, port: 80, timeoutMs: 600 }),
    ]);
    assert.equal(tcp.ok, false);
    assert.equal(tcp.error, "timeout", "dropped, not refused");
    assert.equal(udp.error, "timeout");
  });

  test("an L7 frontend is delivered to the local proxy listener, and replies carry the VIP", async () => {
    const r = await client.call({ op: "tcp", host: VIP, port: 8080, hold: "l7" });
    assert.ok(r.ok, r.error);
    assert.equal(r.line?.name, "l7proxy");
    assert.equal(r.remote, `${VIP}:8080`);
    assert.match(r.line?.peer ?? "", /^10\.9\.1\.2:/);
    const s = await client.call({ op: "send", hold: "l7", data: "through the proxy" });
    assert.ok(s.ok, s.error);
    await client.call({ op: "close", hold: "l7" });
  });

  test("counters count per frontend", async () => {
    const c = await dp.counters();
    const tcp = c.find((x) => x.port === 80 && x.protocol === "TCP");
    const udp = c.find((x) => x.port === 53 && x.protocol === "UDP");
    assert.ok(tcp && tcp.packets >= 24n * 3n, `TCP packets ${tcp?.packets}`);
    assert.ok(udp && udp.packets >= 24n, `UDP packets ${udp?.packets}`);
    assert.ok(tcp.bytes > tcp.packets * 40n);
    assert.ok((await dp.conntrackCount()) > 0);
  });

  test("an established flow keeps its backend when its Maglev table is swapped and the backend deleted", async () => {
    const r = await client.call({ op: "tcp", host: VIP, port: 80, hold: "keep" });
    assert.ok(r.ok, r.error);
    const mine = tcpBackends.find((b) => r.line?.name === `be${b.id}`); // be1..be3 have ids 1..3
    assert.ok(mine, `backend of ${r.line?.name}`);
    const rest = tcpBackends.filter((b) => b !== mine);
    await dp.apply([
      { op: "maglev-upsert", serviceId: 1, table: maglevOf(rest) },
      { op: "backend-delete", id: mine.id },
    ]);
    const s = await client.call({ op: "send", hold: "keep", data: "still here" });
    assert.ok(s.ok, `established flow broke: ${s.error}`);
    const fresh = names((await client.call({ op: "tcp-many", host: VIP, port: 80, count: 12 })).results);
    assert.equal(fresh.get(r.line?.name ?? ""), undefined, "new flows avoid the removed backend");
    await client.call({ op: "close", hold: "keep" });
    await dp.apply([
      { op: "backend-upsert", backend: mine },
      { op: "maglev-upsert", serviceId: 1, table: maglevOf(tcpBackends) },
    ]);
  });

  test("attach is idempotent (one filter per direction) and detach stops the balancing", async () => {
    const ifname = topo.ifname("node1", "client");
    await dp.attach(ifname, topo.ns("node1"));
    await dp.attach(ifname, topo.ns("node1"));
    for (const dir of ["ingress", "egress"]) {
      const out = await topo.exec("node1", ["tc", "filter", "show", "dev", ifname, dir]);
      assert.equal(out.match(/direct-action/g)?.length, 1, `${dir}: ${out}`);
    }
    await dp.detach(ifname, topo.ns("node1"));
    const off = await client.call({ op: "tcp", host: VIP, port: 80, timeoutMs: 500 });
    assert.equal(off.ok, false, "no DNAT without the program");
    await dp.attach(ifname, topo.ns("node1"));
    assert.ok((await client.call({ op: "tcp", host: VIP, port: 80 })).ok);
  });

  test("adoption: a new datapath on the same pins keeps state and open connections", async () => {
    const held: string[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await client.call({ op: "tcp", host: VIP, port: 80, hold: `a${i}` });
      assert.ok(r.ok, r.error);
      held.push(`a${i}`);
    }
    const before = await dp.read();
    const ct = await dp.conntrackCount();
    await dp.close(); // the co-process that loaded the programs and held the maps exits

    for (const h of held) assert.ok((await client.call({ op: "send", hold: h, data: "between" })).ok);

    dp = await openDatapath({ pinDir, maglevSize: M });
    assert.equal(dp.adopted, true);
    const st = await dp.read();
    assert.deepEqual(st.frontends, before.frontends);
    assert.deepEqual(st.backends, before.backends);
    assert.equal(st.version, before.version);
    assert.ok((await dp.conntrackCount()) >= ct);
    // Re-attaching replaces the old programs atomically; held flows keep working.
    for (const ifname of topo.interfaces("node1")) await dp.attach(ifname, topo.ns("node1"));
    for (const h of held) {
      const s = await client.call({ op: "send", hold: h, data: "after" });
      assert.ok(s.ok, `${h}: ${s.error}`);
      await client.call({ op: "close", hold: h });
    }
    const fresh = names((await client.call({ op: "tcp-many", host: VIP, port: 80, count: 9 })).results);
    assert.ok(fresh.size >= 2);
  });

  test("adoption after the owning process is SIGKILLed: held connections survive, a new owner takes over", async () => {
    await dp.close();
    const mod = new URL("./datapath.ts", import.meta.url).pathname;
    const code = `
      import { openDatapath } from ${JSON.stringify(mod)};
      const dp = await openDatapath({ pinDir: ${JSON.stringify(pinDir)}, maglevSize: ${M} });
      for (const i of ${JSON.stringify(topo.interfaces("node1"))}) await dp.attach(i, ${JSON.stringify(topo.ns("node1"))});
      await dp.apply([{ op: "version", version: "from-child" }]);
      console.log("ready " + dp.adopted);
      setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ["--input-type=module", "-e", code], { stdio: ["ignore", "pipe", "pipe"] });
    try {
      const line = await new Promise<string>((resolve, reject) => {
        let out = "";
        let err = "";
        child.stdout.on("data", (d: Buffer) => {
          out += d.toString();
          if (out.includes("\n")) resolve(out.trim());
        });
        child.stderr.on("data", (d: Buffer) => (err += d.toString()));
        child.on("exit", (c) => reject(new Error(`child exited ${c}: ${err}`)));
      });
      assert.equal(line, "ready true");
      for (let i = 0; i < 4; i++) assert.ok((await client.call({ op: "tcp", host: VIP, port: 80, hold: `k${i}` })).ok);
    } finally {
      child.kill("SIGKILL");
    }
    await new Promise((r) => child.once("exit", r));
    for (let i = 0; i < 4; i++) assert.ok((await client.call({ op: "send", hold: `k${i}`, data: "orphaned" })).ok, "programs keep running with no owner");
    dp = await openDatapath({ pinDir, maglevSize: M });
    assert.equal((await dp.read()).version, "from-child");
    for (const ifname of topo.interfaces("node1")) await dp.attach(ifname, topo.ns("node1"));
    for (let i = 0; i < 4; i++) {
      assert.ok((await client.call({ op: "send", hold: `k${i}`, data: "adopted" })).ok);
      await client.call({ op: "close", hold: `k${i}` });
    }
    assert.ok((await client.call({ op: "tcp", host: VIP, port: 80 })).ok);
  });

  test("consecutive Maglev swaps and deletions (one batch each) land exactly, missing keys included", async () => {
    const tables = [11, 12, 13].map((id) => ({ id, table: Uint32Array.from({ length: M }, (_, i) => (i % 3 === 0 ? 0xffffffff : i % 2)) }));
    tables[1]?.table.fill(1);
    await dp.apply(tables.map((t) => ({ op: "maglev-upsert" as const, serviceId: t.id, table: t.table })));
    let st = await dp.read();
    for (const t of tables) assert.deepEqual(st.maglev.get(t.id), t.table, `service ${t.id}`);
    await dp.apply([11, 999, 13].map((id) => ({ op: "maglev-delete" as const, serviceId: id })));
    st = await dp.read();
    assert.deepEqual([11, 12, 13].filter((id) => st.maglev.has(id)), [12]);
    await dp.apply([{ op: "maglev-delete", serviceId: 12 }]);
  });

  test("apply rejects a bad op saying which, keeping the ops before it", async () => {
    await assert.rejects(
      dp.apply([
        { op: "version", version: "test-2" },
        { op: "backend-upsert", backend: { id: 99, address: "not-an-ip", port: 1, protocol: "TCP" } },
        { op: "version", version: "test-3" },
      ]),
      /op 1 \(backend-upsert\) is invalid: invalid IPv4 address/,
    );
    assert.equal((await dp.read()).version, "test-2");
    await assert.rejects(
      dp.apply([{ op: "maglev-upsert", serviceId: 1, table: new Uint32Array(7) }]),
      /op 0 \(maglev-upsert\) is invalid: .*M=251/,
    );
  });
});
