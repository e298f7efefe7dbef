// Unprivileged: byte layouts the C side (lb.h, bpfd.c) expects, and how ops are batched.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  MAP,
  OP,
  decodeBackend,
  decodeFrontendKey,
  decodeVersion,
  encodeBackendValue,
  encodeConfig,
  encodeFrontendKey,
  encodeOps,
  encodeVersion,
} from "./codec.ts";
import type { MapOp } from "./state.ts";
import { buildPacket, parsePacket } from "./packet.ts";

test("frontend keys: address and port in network order, protocol number, padding", () => {
  const k = encodeFrontendKey({ address: "10.1.2.3", port: 443, protocol: "UDP" });
  assert.deepEqual([...k], [10, 1, 2, 3, 0x01, 0xbb, 17, 0]);
  assert.deepEqual(decodeFrontendKey(k), { address: "10.1.2.3", port: 443, protocol: "UDP" });
  assert.throws(() => encodeFrontendKey({ address: "fd00::1", port: 1, protocol: "TCP" }), /IPv4 only/);
  assert.throws(() => encodeFrontendKey({ address: "10.1.2.3", port: 70000, protocol: "TCP" }), /invalid port/);
});

test("backend values round-trip, with and without an SNAT address", () => {
  const with_ = { id: 5, address: "10.0.0.9", port: 8080, protocol: "TCP" as const, snatAddress: "10.0.3.1" };
  const v = encodeBackendValue(with_);
  assert.deepEqual([...v], [10, 0, 0, 9, 10, 0, 3, 1, 0x1f, 0x90, 6, 0]);
  assert.deepEqual(decodeBackend(5, v), with_);
  const without = { id: 6, address: "10.0.0.9", port: 53, protocol: "UDP" as const };
  assert.deepEqual(decodeBackend(6, encodeBackendValue(without)), without);
});

test("config and version", () => {
  const c = encodeConfig(16381, { tcpEstablished: 7200, tcpClosing: 10, tcpSyn: 60, udp: 30 });
  assert.deepEqual([c.readUInt32LE(0), c.readUInt32LE(4), c.readUInt32LE(16)], [16381, 7200, 30]);
  assert.throws(() => encodeConfig(251, { tcpEstablished: 0, tcpClosing: 1, tcpSyn: 1, udp: 1 }), /tcpEstablished/);
  assert.equal(decodeVersion(encodeVersion("v42 ✓")), "v42 ✓");
  assert.throws(() => encodeVersion("x".repeat(300)), /at most 252/);
});

test("runs of one kind become one batch; order is kept; the first invalid op stops encoding", () => {
  const be = (id: number): MapOp => ({ op: "backend-upsert", backend: { id, address: "10.0.0.1", port: 1, protocol: "TCP" } });
  const ops: MapOp[] = [
    be(1),
    be(2),
    { op: "maglev-upsert", serviceId: 1, table: new Uint32Array(251) },
    be(3),
    { op: "vip-upsert", address: "10.0.0.100" },
    { op: "backend-upsert", backend: { id: 4, address: "bogus", port: 1, protocol: "TCP" } },
    be(5),
  ];
  const { encoded, error } = encodeOps(ops, 251);
  assert.deepEqual(
    encoded.map((e) => [e.first, e.count, e.bytes[0]?.[0]]),
    [
      [0, 2, OP.upsert],
      [2, 1, OP.maglevSet],
      [3, 1, OP.upsert],
      [4, 1, OP.upsert],
    ],
  );
  assert.equal(encoded[0]?.bytes[0]?.[1], MAP.be);
  assert.equal(encoded[3]?.bytes[0]?.[1], MAP.vip);
  assert.deepEqual(error?.index, 5);
  assert.match(error?.message ?? "", /invalid IPv4 address "bogus"/);
  assert.match(encodeOps([{ op: "maglev-upsert", serviceId: 1, table: new Uint32Array(3) }], 251).error?.message ?? "", /M=251/);
});

test("test packets carry valid checksums", () => {
  const p = parsePacket(buildPacket({ proto: "TCP", saddr: "1.2.3.4", daddr: "5.6.7.8", sport: 1, dport: 2, payload: Buffer.from("abc") }));
  assert.ok(p.ipChecksumOk && p.l4ChecksumOk);
  const u = parsePacket(buildPacket({ proto: "UDP", saddr: "1.2.3.4", daddr: "5.6.7.8", ipOptions: Buffer.from([1, 1, 1, 1]) }));
  assert.ok(u.ipChecksumOk && u.l4ChecksumOk);
});
