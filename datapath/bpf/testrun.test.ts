// Privileged: the tc programs run on crafted packets with BPF_PROG_TEST_RUN — rewriting and
// checksums, SNAT ports, fragments, conntrack expiry, and malformed input that must neither
// crash anything nor leave map entries behind.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { datapathUnavailable, openDatapath, removePinned } from "./datapath.ts";
import type { Datapath } from "./datapath.ts";
import { TCP_ACK, TCP_RST, TCP_SYN, TC_ACT_OK, TC_ACT_SHOT, buildPacket, parsePacket } from "./packet.ts";
import { FRONTEND_L7_PROXY } from "./state.ts";
import type { MapOp } from "./state.ts";

const skip = datapathUnavailable();
if (skip) console.warn(`SKIPPING eBPF test-run tests: ${skip}`);

const M = 251;
const VIP = "10.7.0.1";
const CLIENT = "10.7.1.2";
const fill = (id: number): Uint32Array => new Uint32Array(M).fill(id);

describe("tc programs on crafted packets", { skip, timeout: 30_000 }, () => {
  let dp: Datapath;
  const pinDir = `/sys/fs/bpf/sluice-testrun-${randomBytes(3).toString("hex")}`;

  before(async () => {
    dp = await openDatapath({ pinDir, maglevSize: M, maxServices: 64, maxBackends: 64, ctSize: 4096 });
    const ops: MapOp[] = [
      { op: "backend-upsert", backend: { id: 1, address: "10.7.2.2", port: 8080, protocol: "TCP" } },
      { op: "backend-upsert", backend: { id: 2, address: "10.7.3.2", port: 8080, protocol: "TCP" } },
      { op: "backend-upsert", backend: { id: 3, address: "10.7.4.2", port: 9090, protocol: "TCP", snatAddress: "10.7.9.1" } },
      { op: "backend-upsert", backend: { id: 11, address: "10.7.2.2", port: 5353, protocol: "UDP" } },
      { op: "backend-upsert", backend: { id: 12, address: "10.7.3.2", port: 5353, protocol: "UDP" } },
      { op: "backend-upsert", backend: { id: 21, address: "10.7.1.1", port: 15001, protocol: "TCP", snatAddress: "10.7.9.1" } },
      { op: "maglev-upsert", serviceId: 1, table: fill(1) },
      { op: "maglev-upsert", serviceId: 2, table: fill(11) },
      { op: "maglev-upsert", serviceId: 3, table: fill(3) },
      { op: "maglev-upsert", serviceId: 4, table: fill(21) },
      { op: "frontend-upsert", frontend: { address: VIP, port: 80, protocol: "TCP", serviceId: 1, flags: 0 } },
      { op: "frontend-upsert", frontend: { address: VIP, port: 53, protocol: "UDP", serviceId: 2, flags: 0 } },
      { op: "frontend-upsert", frontend: { address: VIP, port: 90, protocol: "TCP", serviceId: 3, flags: 0 } },
      { op: "frontend-upsert", frontend: { address: VIP, port: 443, protocol: "TCP", serviceId: 4, flags: FRONTEND_L7_PROXY } },
      { op: "vip-upsert", address: VIP },
      { op: "config", timeouts: { tcpEstablished: 3600, tcpClosing: 1, tcpSyn: 60, udp: 1 } },
    ];
    await dp.apply(ops);
  });

  after(async () => {
    await dp?.close();
    await removePinned(pinDir);
  });

  test("TCP DNAT and reverse NAT keep IP and TCP checksums valid", async () => {
    const syn = await dp.testRun(buildPacket({ proto: "TCP", saddr: CLIENT, daddr: VIP, sport: 40001, dport: 80 }));
    assert.equal(syn.verdict, TC_ACT_OK);
    const p = parsePacket(syn.packet);
    assert.deepEqual([p.saddr, p.sport, p.daddr, p.dport], [CLIENT, 40001, "10.7.2.2", 8080]);
    assert.ok(p.ipChecksumOk && p.l4ChecksumOk);

    const synack = await dp.testRun(
      buildPacket({ proto: "TCP", saddr: "10.7.2.2", daddr: CLIENT, sport: 8080, dport: 40001, tcpFlags: TCP_SYN | TCP_ACK, payload: Buffer.from("odd") }),
    );
    const q = parsePacket(synack.packet);
    assert.deepEqual([q.saddr, q.sport, q.daddr, q.dport], [VIP, 80, CLIENT, 40001]);
    assert.ok(q.ipChecksumOk && q.l4ChecksumOk);
  });

  test("IP options are skipped correctly", async () => {
    const r = await dp.testRun(
      buildPacket({ proto: "TCP", saddr: CLIENT, daddr: VIP, sport: 40002, dport: 80, ipOptions: Buffer.from([1, 1, 1, 0]) }),
    );
    assert.equal(r.verdict, TC_ACT_OK);
    const p = parsePacket(r.packet);
    assert.deepEqual([p.daddr, p.dport], ["10.7.2.2", 8080]);
    assert.ok(p.ipChecksumOk && p.l4ChecksumOk);
  });

  test("UDP with and without a checksum", async () => {
    const a = parsePacket((await dp.testRun(buildPacket({ proto: "UDP", saddr: CLIENT, daddr: VIP, sport: 5000, dport: 53, payload: Buffer.from("q") }))).packet);
    assert.deepEqual([a.daddr, a.dport, a.l4ChecksumOk], ["10.7.2.2", 5353, true]);
    const raw = (await dp.testRun(buildPacket({ proto: "UDP", saddr: CLIENT, daddr: VIP, sport: 5001, dport: 53, udpNoChecksum: true }))).packet;
    assert.equal(raw.readUInt16BE(14 + 20 + 6), 0, "a zero UDP checksum stays zero");
    assert.ok(parsePacket(raw).ipChecksumOk);
  });

  test("SNAT picks a port above the ephemeral range, and the reply is reverse-SNATed", async () => {
    const ports = new Set<number>();
    for (let i = 0; i < 20; i++) {
      const r = parsePacket((await dp.testRun(buildPacket({ proto: "TCP", saddr: CLIENT, daddr: VIP, sport: 41000 + i, dport: 90 }))).packet);
      assert.deepEqual([r.saddr, r.daddr, r.dport], ["10.7.9.1", "10.7.4.2", 9090]);
      assert.ok(r.l4ChecksumOk && r.ipChecksumOk);
      assert.ok((r.sport ?? 0) >= 61000 && (r.sport ?? 0) <= 65535, `port ${r.sport}`);
      ports.add(r.sport ?? 0);
      if (i === 0) {
        const back = parsePacket(
          (await dp.testRun(buildPacket({ proto: "TCP", saddr: "10.7.4.2", daddr: "10.7.9.1", sport: 9090, dport: r.sport, tcpFlags: TCP_SYN | TCP_ACK }))).packet,
        );
        assert.deepEqual([back.saddr, back.sport, back.daddr, back.dport], [VIP, 90, CLIENT, 41000]);
        assert.ok(back.l4ChecksumOk && back.ipChecksumOk);
      }
    }
    assert.equal(ports.size, 20, "distinct flows get distinct SNAT ports");
  });

  test("L7 frontend: DNAT to the local listener without SNAT; egress rewrites the proxy's reply", async () => {
    const r = parsePacket((await dp.testRun(buildPacket({ proto: "TCP", saddr: CLIENT, daddr: VIP, sport: 42000, dport: 443 }))).packet);
    assert.deepEqual([r.saddr, r.sport, r.daddr, r.dport], [CLIENT, 42000, "10.7.1.1", 15001]);
    const out = await dp.testRun(buildPacket({ proto: "TCP", saddr: "10.7.1.1", daddr: CLIENT, sport: 15001, dport: 42000, tcpFlags: TCP_SYN | TCP_ACK }), "egress");
    const e = parsePacket(out.packet);
    assert.deepEqual([e.saddr, e.sport, e.daddr, e.dport], [VIP, 443, CLIENT, 42000]);
    assert.ok(e.l4ChecksumOk);
    // Egress never balances: a packet to the VIP leaving the node is left alone.
    const pass = await dp.testRun(buildPacket({ proto: "TCP", saddr: CLIENT, daddr: VIP, sport: 42001, dport: 443 }), "egress");
    assert.equal(parsePacket(pass.packet).daddr, VIP);
  });

  test("unknown port or protocol on a VIP is dropped; other traffic passes untouched", async () => {
    assert.equal((await dp.testRun(buildPacket({ proto: "TCP", saddr: CLIENT, daddr: VIP, dport: 81 }))).verdict, TC_ACT_SHOT);
    assert.equal((await dp.testRun(buildPacket({ proto: "UDP", saddr: CLIENT, daddr: VIP, dport: 80 }))).verdict, TC_ACT_SHOT);
    assert.equal((await dp.testRun(buildPacket({ proto: 1, saddr: CLIENT, daddr: VIP, payload: Buffer.alloc(8) }))).verdict, TC_ACT_SHOT);
    const other = buildPacket({ proto: "TCP", saddr: CLIENT, daddr: "10.7.50.5", dport: 80 });
    const r = await dp.testRun(other);
    assert.equal(r.verdict, TC_ACT_OK);
    assert.deepEqual(r.packet, other);
  });

  test("IPv4 fragments: the first is balanced, later ones follow it, unknown ones pass untouched", async () => {
    const first = buildPacket({ proto: "UDP", saddr: CLIENT, daddr: VIP, sport: 6000, dport: 53, ipId: 0x4242, fragOff: 0x2000, payload: Buffer.alloc(64, 1) });
    const f1 = parsePacket((await dp.testRun(first)).packet);
    assert.deepEqual([f1.daddr, f1.dport], ["10.7.2.2", 5353]);
    const later = buildPacket({ proto: 17, saddr: CLIENT, daddr: VIP, ipId: 0x4242, fragOff: 9, payload: Buffer.alloc(40, 2) });
    const f2 = await dp.testRun(later);
    assert.equal(f2.verdict, TC_ACT_OK);
    const p2 = parsePacket(f2.packet);
    assert.deepEqual([p2.saddr, p2.daddr, p2.ipChecksumOk], [CLIENT, "10.7.2.2", true]);
    assert.deepEqual(f2.packet.subarray(34), later.subarray(34), "the payload of a later fragment is not touched");
    const stray = buildPacket({ proto: 17, saddr: CLIENT, daddr: VIP, ipId: 0x9999, fragOff: 9, payload: Buffer.alloc(40, 3) });
    const f3 = await dp.testRun(stray);
    assert.equal(f3.verdict, TC_ACT_OK);
    assert.deepEqual(f3.packet, stray);
  });

  test("malformed and truncated packets: no crash, sensible verdicts, no conntrack entries", async () => {
    const before = await dp.conntrackCount();
    const good = buildPacket({ proto: "TCP", saddr: CLIENT, daddr: VIP, sport: 43000, dport: 80 });

    // The kernel's test run itself refuses frames shorter than Ethernet + IPv4 headers (on the
    // wire such frames reach the program, which passes them: nothing to look up).
    await assert.rejects(dp.testRun(good.subarray(0, 10)), /Ethernet header/);
    await assert.rejects(dp.testRun(good.subarray(0, 30)), /IPv4 header/);
    const arp = Buffer.from(good.subarray(0, 14));
    arp.writeUInt16BE(0x0806, 12);
    assert.equal((await dp.testRun(arp)).verdict, TC_ACT_OK, "Ethernet header only, not IPv4");
    assert.equal((await dp.testRun(good.subarray(0, 34))).verdict, TC_ACT_SHOT, "IPv4 header only, TCP header missing");

    const badIhl = Buffer.from(good);
    badIhl[14] = 0x43;
    assert.equal((await dp.testRun(badIhl)).verdict, TC_ACT_SHOT, "IHL 3 to a VIP");
    const badVersion = Buffer.from(good);
    badVersion[14] = 0x65;
    assert.equal((await dp.testRun(badVersion)).verdict, TC_ACT_SHOT, "version 6 in an IPv4 frame");
    const longTot = Buffer.from(good);
    longTot.writeUInt16BE(1400, 16);
    assert.equal((await dp.testRun(longTot)).verdict, TC_ACT_SHOT, "total length beyond the frame");
    const shortTot = Buffer.from(good);
    shortTot.writeUInt16BE(12, 16);
    assert.equal((await dp.testRun(shortTot)).verdict, TC_ACT_SHOT, "total length below the header");
    const ihlBeyond = Buffer.from(good);
    ihlBeyond[14] = 0x4f; // 60-byte header in a 40-byte packet
    assert.equal((await dp.testRun(ihlBeyond)).verdict, TC_ACT_SHOT, "IHL beyond the total length");

    const truncTcp = Buffer.from(good.subarray(0, 14 + 20 + 10));
    truncTcp.writeUInt16BE(30, 16);
    assert.equal((await dp.testRun(truncTcp)).verdict, TC_ACT_SHOT, "truncated TCP header");
    const udp = buildPacket({ proto: "UDP", saddr: CLIENT, daddr: VIP, sport: 43001, dport: 53 });
    const truncUdp = Buffer.from(udp.subarray(0, 14 + 20 + 4));
    truncUdp.writeUInt16BE(24, 16);
    assert.equal((await dp.testRun(truncUdp)).verdict, TC_ACT_SHOT, "truncated UDP header");

    const elsewhere = Buffer.from(truncTcp);
    elsewhere.writeUInt8(99, 33); // daddr 10.7.0.99: not a VIP, left to the stack
    assert.equal((await dp.testRun(elsewhere)).verdict, TC_ACT_OK);

    // Random junk behind an IPv4 Ethernet type.
    for (let i = 0; i < 300; i++) {
      const junk = Buffer.concat([good.subarray(0, 14), randomBytes(20 + (i % 80))]);
      if (i % 2 === 0) junk.writeUInt32BE(0x0a070001, 30); // half of them aimed at the VIP
      const r = await dp.testRun(junk);
      assert.ok(r.verdict === TC_ACT_OK || r.verdict === TC_ACT_SHOT, `verdict ${r.verdict}`);
    }
    assert.equal(await dp.conntrackCount(), before, "garbage created no conntrack entries");
  });

  test("batched deletes tolerate missing keys and delete the rest", async () => {
    const ids = [101, 102, 103, 104, 105];
    await dp.apply(ids.map((id): MapOp => ({ op: "backend-upsert", backend: { id, address: "10.7.8.1", port: id, protocol: "UDP" } })));
    await dp.apply([101, 999, 103, 998, 105].map((id): MapOp => ({ op: "backend-delete", id })));
    const left = (await dp.read()).backends.map((b) => b.id).filter((id) => id > 100);
    assert.deepEqual(left, [102, 104]);
    await dp.apply([102, 104].map((id): MapOp => ({ op: "backend-delete", id })));
  });

  test("conntrack keeps a flow's backend across table changes until it expires; RST shortens TCP", async () => {
    const udpPkt = buildPacket({ proto: "UDP", saddr: CLIENT, daddr: VIP, sport: 7000, dport: 53 });
    const tcpPkt = (flags: number): Buffer => buildPacket({ proto: "TCP", saddr: CLIENT, daddr: VIP, sport: 7001, dport: 80, tcpFlags: flags });
    assert.equal(parsePacket((await dp.testRun(udpPkt)).packet).daddr, "10.7.2.2");
    assert.equal(parsePacket((await dp.testRun(tcpPkt(TCP_SYN))).packet).daddr, "10.7.2.2");
    await dp.apply([
      { op: "maglev-upsert", serviceId: 1, table: fill(2) },
      { op: "maglev-upsert", serviceId: 2, table: fill(12) },
    ]);
    assert.equal(parsePacket((await dp.testRun(udpPkt)).packet).daddr, "10.7.2.2", "UDP flow sticks");
    assert.equal(parsePacket((await dp.testRun(tcpPkt(TCP_ACK))).packet).daddr, "10.7.2.2", "TCP flow sticks");
    assert.equal(parsePacket((await dp.testRun(tcpPkt(TCP_RST | TCP_ACK))).packet).daddr, "10.7.2.2");
    // A new flow gets the new table at once.
    const fresh = buildPacket({ proto: "UDP", saddr: CLIENT, daddr: VIP, sport: 7002, dport: 53 });
    assert.equal(parsePacket((await dp.testRun(fresh)).packet).daddr, "10.7.3.2");
    const live = await dp.conntrackCount();
    await sleep(1100); // udp and tcpClosing are 1 s here
    assert.ok((await dp.conntrackCount()) <= live - 6, "expired flows no longer count as live");
    assert.equal(parsePacket((await dp.testRun(udpPkt)).packet).daddr, "10.7.3.2", "expired UDP flow is balanced anew");
    assert.equal(parsePacket((await dp.testRun(tcpPkt(TCP_SYN))).packet).daddr, "10.7.3.2", "closed TCP flow is balanced anew");
  });
});
