// Byte layouts of the BPF map keys and values (lb.h) and of the requests the co-process
// (bpfd.c) understands. Pure: no kernel needed, unit-tested on its own.
import { Buffer } from "node:buffer";
import { isIPv4, isIPv6 } from "node:net";
import type { BackendEntry, ConntrackTimeouts, FrontendEntry, FrontendKey, L4Protocol, MapOp } from "./state.ts";

export const CMD = {
  apply: 1,
  dump: 2,
  maglevDump: 3,
  ctCount: 4,
  attach: 5,
  detach: 6,
  testRun: 7,
} as const;

export const OP = {
  upsert: 1,
  delete: 2,
  feUpsert: 3,
  feDelete: 4,
  maglevSet: 5,
  maglevDel: 6,
} as const;

/** Map indices, in bpfd.c's order. */
export const MAP = {
  fe: 0,
  stats: 1,
  vip: 2,
  be: 3,
  maglev: 4,
  ct: 5,
  frag: 6,
  config: 7,
  version: 8,
} as const;

export const FE_KEY_SIZE = 8;
export const FE_VAL_SIZE = 8;
export const BE_VAL_SIZE = 12;
export const CONFIG_SIZE = 32;
export const VERSION_SIZE = 256;
export const VERSION_MAX = 252;
export const MAGLEV_EMPTY = 0xffff_ffff;

const PROTO_NUM: Record<L4Protocol, number> = { TCP: 6, UDP: 17 };

export function protoNumber(p: L4Protocol): number {
  const n = PROTO_NUM[p];
  if (n === undefined) throw new RangeError(`unsupported protocol ${JSON.stringify(p)} (TCP or UDP)`);
  return n;
}

export function protoName(n: number): L4Protocol {
  if (n === 6) return "TCP";
  if (n === 17) return "UDP";
  throw new RangeError(`unknown IP protocol ${n} in the maps`);
}

/** Four bytes in network order. IPv6 has its own maps (lb6), not built yet. */
export function ipv4Bytes(addr: string): Buffer {
  if (!isIPv4(addr)) {
    if (isIPv6(addr)) throw new RangeError(`IPv6 address ${addr}: the datapath handles IPv4 only so far`);
    throw new RangeError(`invalid IPv4 address ${JSON.stringify(addr)}`);
  }
  return Buffer.from(addr.split(".").map(Number));
}

export function ipv4String(b: Buffer, off = 0): string {
  return `${b[off]}.${b[off + 1]}.${b[off + 2]}.${b[off + 3]}`;
}

function checkPort(port: number, what: string): void {
  if (!Number.isInteger(port) || port < 0 || port > 0xffff) throw new RangeError(`${what}: invalid port ${port}`);
}

function checkU32(n: number, what: string): void {
  if (!Number.isInteger(n) || n < 0 || n > 0xffff_ffff) throw new RangeError(`${what}: invalid ${n} (u32 expected)`);
}

export function encodeFrontendKey(k: FrontendKey): Buffer {
  const b = Buffer.alloc(FE_KEY_SIZE);
  ipv4Bytes(k.address).copy(b, 0);
  checkPort(k.port, `frontend ${k.address}`);
  b.writeUInt16BE(k.port, 4);
  b.writeUInt8(protoNumber(k.protocol), 6);
  return b;
}

export function decodeFrontendKey(b: Buffer, off = 0): FrontendKey {
  return { address: ipv4String(b, off), port: b.readUInt16BE(off + 4), protocol: protoName(b.readUInt8(off + 6)) };
}

export function encodeFrontendValue(f: FrontendEntry): Buffer {
  checkU32(f.serviceId, "frontend serviceId");
  checkU32(f.flags, "frontend flags");
  const b = Buffer.alloc(FE_VAL_SIZE);
  b.writeUInt32LE(f.serviceId, 0);
  b.writeUInt32LE(f.flags, 4);
  return b;
}

export function encodeU32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n, 0);
  return b;
}

export function encodeBackendValue(be: BackendEntry): Buffer {
  const b = Buffer.alloc(BE_VAL_SIZE);
  ipv4Bytes(be.address).copy(b, 0);
  if (be.snatAddress !== undefined && be.snatAddress !== "") ipv4Bytes(be.snatAddress).copy(b, 4);
  checkPort(be.port, `backend ${be.id}`);
  b.writeUInt16BE(be.port, 8);
  b.writeUInt8(protoNumber(be.protocol), 10);
  return b;
}

export function decodeBackend(id: number, b: Buffer, off = 0): BackendEntry {
  const snat = b.readUInt32BE(off + 4);
  return {
    id,
    address: ipv4String(b, off),
    port: b.readUInt16BE(off + 8),
    protocol: protoName(b.readUInt8(off + 10)),
    ...(snat !== 0 ? { snatAddress: ipv4String(b, off + 4) } : {}),
  };
}

export function encodeConfig(maglevSize: number, t: ConntrackTimeouts): Buffer {
  const b = Buffer.alloc(CONFIG_SIZE);
  b.writeUInt32LE(maglevSize, 0);
  const fields: (keyof ConntrackTimeouts)[] = ["tcpEstablished", "tcpClosing", "tcpSyn", "udp"];
  fields.forEach((f, i) => {
    const s = t[f];
    if (!Number.isInteger(s) || s < 1 || s > 0xffff_ffff) throw new RangeError(`config: ${f} must be whole seconds ≥ 1, got ${s}`);
    b.writeUInt32LE(s, 4 + 4 * i);
  });
  return b;
}

export function encodeVersion(v: string): Buffer {
  const data = Buffer.from(v, "utf8");
  if (data.length > VERSION_MAX) throw new RangeError(`version is ${data.length} bytes; at most ${VERSION_MAX}`);
  const b = Buffer.alloc(VERSION_SIZE);
  b.writeUInt32LE(data.length, 0);
  data.copy(b, 4);
  return b;
}

export function decodeVersion(b: Buffer): string {
  const len = Math.min(b.readUInt32LE(0), VERSION_MAX);
  return b.subarray(4, 4 + len).toString("utf8");
}

/** One request sub-op covering MapOps [first, first + count). */
export interface EncodedOp {
  first: number;
  count: number;
  bytes: Buffer[];
}

type GroupKind = "be-up" | "be-del" | "fe-up" | "fe-del" | "vip-up" | "vip-del" | "mg-del";

function groupOf(op: MapOp): GroupKind | undefined {
  switch (op.op) {
    case "backend-upsert":
      return "be-up";
    case "backend-delete":
      return "be-del";
    case "frontend-upsert":
      return "fe-up";
    case "frontend-delete":
      return "fe-del";
    case "vip-upsert":
      return "vip-up";
    case "vip-delete":
      return "vip-del";
    case "maglev-delete":
      return "mg-del";
    default:
      return undefined;
  }
}

function header(kind: number, map: number | undefined, n: number): Buffer {
  const b = Buffer.alloc(map === undefined ? 5 : 6);
  b.writeUInt8(kind, 0);
  if (map === undefined) b.writeUInt32LE(n, 1);
  else {
    b.writeUInt8(map, 1);
    b.writeUInt32LE(n, 2);
  }
  return b;
}

/**
 * Encodes ops in order, merging runs of the same kind into one batch (one syscall in the
 * co-process). Stops at the first op that cannot be encoded and returns its error beside the
 * ops before it, which the caller still applies.
 */
export function encodeOps(
  ops: readonly MapOp[],
  maglevSize: number,
): { encoded: EncodedOp[]; error?: { index: number; message: string } } {
  const encoded: EncodedOp[] = [];
  let i = 0;
  while (i < ops.length) {
    const first = ops[i];
    if (first === undefined) break;
    const kind = groupOf(first);
    try {
      if (kind === undefined) {
        encoded.push({ first: i, count: 1, bytes: encodeSingle(first, maglevSize) });
        i++;
        continue;
      }
      const keys: Buffer[] = [];
      const vals: Buffer[] = [];
      let j = i;
      try {
        for (; j < ops.length; j++) {
          const op = ops[j];
          if (op === undefined || groupOf(op) !== kind) break;
          const [k, v] = encodeGrouped(op);
          keys.push(k);
          if (v) vals.push(v);
        }
      } catch (err) {
        if (j === i) throw err;
        // Flush the valid prefix; the failing op is reported on the next round.
      }
      const n = j - i;
      encoded.push({ first: i, count: n, bytes: [groupHeader(kind, n), ...keys, ...vals] });
      i = j;
    } catch (err) {
      return { encoded, error: { index: i, message: (err as Error).message } };
    }
  }
  return { encoded };
}

function groupHeader(kind: GroupKind, n: number): Buffer {
  switch (kind) {
    case "be-up":
      return header(OP.upsert, MAP.be, n);
    case "be-del":
      return header(OP.delete, MAP.be, n);
    case "fe-up":
      return header(OP.feUpsert, undefined, n);
    case "fe-del":
      return header(OP.feDelete, undefined, n);
    case "vip-up":
      return header(OP.upsert, MAP.vip, n);
    case "vip-del":
      return header(OP.delete, MAP.vip, n);
    case "mg-del":
      return header(OP.maglevDel, undefined, n);
  }
}

function encodeGrouped(op: MapOp): [Buffer, Buffer | undefined] {
  switch (op.op) {
    case "backend-upsert":
      checkU32(op.backend.id, "backend id");
      return [encodeU32(op.backend.id), encodeBackendValue(op.backend)];
    case "backend-delete":
      checkU32(op.id, "backend id");
      return [encodeU32(op.id), undefined];
    case "frontend-upsert":
      return [encodeFrontendKey(op.frontend), encodeFrontendValue(op.frontend)];
    case "frontend-delete":
      return [encodeFrontendKey(op.key), undefined];
    case "vip-upsert":
      return [ipv4Bytes(op.address), Buffer.from([1])];
    case "vip-delete":
      return [ipv4Bytes(op.address), undefined];
    case "maglev-delete":
      checkU32(op.serviceId, "serviceId");
      return [encodeU32(op.serviceId), undefined];
    default:
      throw new Error(`internal: ${op.op} is not a batched op`);
  }
}

function encodeSingle(op: MapOp, maglevSize: number): Buffer[] {
  switch (op.op) {
    case "maglev-upsert": {
      checkU32(op.serviceId, "serviceId");
      if (op.table.length !== maglevSize) {
        throw new RangeError(`Maglev table for service ${op.serviceId} has ${op.table.length} entries; the maps use M=${maglevSize}`);
      }
      const h = Buffer.alloc(9);
      h.writeUInt8(OP.maglevSet, 0);
      h.writeUInt32LE(op.serviceId, 1);
      h.writeUInt32LE(op.table.length, 5);
      // Host byte order is little-endian on every machine this runs on (x86_64, arm64).
      return [h, Buffer.from(op.table.buffer, op.table.byteOffset, op.table.byteLength)];
    }
    case "config":
      return [header(OP.upsert, MAP.config, 1), encodeU32(0), encodeConfig(maglevSize, op.timeouts)];
    case "version":
      return [header(OP.upsert, MAP.version, 1), encodeU32(0), encodeVersion(op.version)];
    default:
      throw new Error(`unknown map op ${JSON.stringify((op as { op?: unknown }).op)}`);
  }
}
