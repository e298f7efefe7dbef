// Builds and parses Ethernet/IPv4/TCP/UDP frames for BPF_PROG_TEST_RUN, with real checksums,
// so tests can check that the programs' incremental checksum updates stay correct.
import { Buffer } from "node:buffer";
import { ipv4Bytes, ipv4String } from "./codec.ts";

export interface PacketSpec {
  proto: "TCP" | "UDP" | number;
  saddr: string;
  daddr: string;
  sport?: number;
  dport?: number;
  /** TCP flags byte; default SYN. */
  tcpFlags?: number;
  payload?: Buffer;
  ipId?: number;
  /** Raw frag_off field (flags and offset in 8-byte units). */
  fragOff?: number;
  /** IP options bytes (padded to 4). */
  ipOptions?: Buffer;
  ttl?: number;
  /** Leave the UDP checksum at zero ("no checksum"). */
  udpNoChecksum?: boolean;
}

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;

export const TC_ACT_OK = 0;
export const TC_ACT_SHOT = 2;

function sum16(b: Buffer, start = 0, end = b.length, acc = 0): number {
  let s = acc;
  for (let i = start; i + 1 < end; i += 2) s += b.readUInt16BE(i);
  if ((end - start) % 2 === 1) s += (b[end - 1] ?? 0) << 8;
  return s;
}

function fold(s: number): number {
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return s;
}

export function ipChecksum(b: Buffer): number {
  return ~fold(sum16(b)) & 0xffff;
}

function l4Checksum(saddr: Buffer, daddr: Buffer, proto: number, l4: Buffer): number {
  const pseudo = Buffer.alloc(12);
  saddr.copy(pseudo, 0);
  daddr.copy(pseudo, 4);
  pseudo.writeUInt8(proto, 9);
  pseudo.writeUInt16BE(l4.length, 10);
  const c = ~fold(sum16(l4, 0, l4.length, sum16(pseudo))) & 0xffff;
  return proto === 17 && c === 0 ? 0xffff : c;
}

function protoNum(p: PacketSpec["proto"]): number {
  return p === "TCP" ? 6 : p === "UDP" ? 17 : p;
}

/** An Ethernet + IPv4 frame; for TCP/UDP with a correct L4 checksum over the whole datagram. */
export function buildPacket(s: PacketSpec): Buffer {
  const proto = protoNum(s.proto);
  const payload = s.payload ?? Buffer.alloc(0);
  let l4: Buffer;
  if (proto === 6) {
    l4 = Buffer.alloc(20 + payload.length);
    l4.writeUInt16BE(s.sport ?? 40000, 0);
    l4.writeUInt16BE(s.dport ?? 80, 2);
    l4.writeUInt32BE(1, 4);
    l4.writeUInt8(5 << 4, 12);
    l4.writeUInt8(s.tcpFlags ?? TCP_SYN, 13);
    l4.writeUInt16BE(65535, 14);
    payload.copy(l4, 20);
  } else if (proto === 17) {
    l4 = Buffer.alloc(8 + payload.length);
    l4.writeUInt16BE(s.sport ?? 40000, 0);
    l4.writeUInt16BE(s.dport ?? 53, 2);
    l4.writeUInt16BE(l4.length, 4);
    payload.copy(l4, 8);
  } else {
    l4 = Buffer.from(payload);
  }
  const saddr = ipv4Bytes(s.saddr);
  const daddr = ipv4Bytes(s.daddr);
  if (proto === 6) l4.writeUInt16BE(l4Checksum(saddr, daddr, 6, l4), 16);
  if (proto === 17 && !s.udpNoChecksum) l4.writeUInt16BE(l4Checksum(saddr, daddr, 17, l4), 6);

  const opts = s.ipOptions ?? Buffer.alloc(0);
  const optLen = Math.ceil(opts.length / 4) * 4;
  const ip = Buffer.alloc(20 + optLen);
  ip.writeUInt8(0x40 | ((20 + optLen) / 4), 0);
  ip.writeUInt16BE(ip.length + l4.length, 2);
  ip.writeUInt16BE(s.ipId ?? 0x1234, 4);
  ip.writeUInt16BE(s.fragOff ?? 0x4000, 6); // DF
  ip.writeUInt8(s.ttl ?? 64, 8);
  ip.writeUInt8(proto, 9);
  saddr.copy(ip, 12);
  daddr.copy(ip, 16);
  opts.copy(ip, 20);
  ip.writeUInt16BE(ipChecksum(ip), 10);

  const eth = Buffer.alloc(14);
  eth.set([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
  eth.writeUInt16BE(0x0800, 12);
  return Buffer.concat([eth, ip, l4]);
}

export interface ParsedPacket {
  saddr: string;
  daddr: string;
  proto: number;
  sport?: number;
  dport?: number;
  ipChecksumOk: boolean;
  /** Undefined when not checkable (fragment, no L4, UDP without checksum). */
  l4ChecksumOk?: boolean;
}

/** Parses a frame built like buildPacket's and verifies its checksums. */
export function parsePacket(b: Buffer): ParsedPacket {
  const ihl = (b.readUInt8(14) & 0x0f) * 4;
  const ip = b.subarray(14, 14 + ihl);
  const tot = b.readUInt16BE(16);
  const proto = b.readUInt8(23);
  const fragOff = b.readUInt16BE(20);
  const out: ParsedPacket = {
    saddr: ipv4String(b, 26),
    daddr: ipv4String(b, 30),
    proto,
    ipChecksumOk: fold(sum16(ip)) === 0xffff,
  };
  const l4 = b.subarray(14 + ihl, 14 + tot);
  if ((fragOff & 0x1fff) !== 0 || (proto !== 6 && proto !== 17)) return out;
  out.sport = l4.readUInt16BE(0);
  out.dport = l4.readUInt16BE(2);
  if ((fragOff & 0x2000) !== 0) return out; // first fragment: the checksum covers all fragments
  if (proto === 17 && l4.readUInt16BE(6) === 0) return out;
  const pseudo = Buffer.alloc(12);
  b.copy(pseudo, 0, 26, 34);
  pseudo.writeUInt8(proto, 9);
  pseudo.writeUInt16BE(l4.length, 10);
  out.l4ChecksumOk = fold(sum16(l4, 0, l4.length, sum16(pseudo))) === 0xffff;
  return out;
}
