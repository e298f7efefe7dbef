// The datapath distribution's wire format, shared by the operator's server
// (operator/sinks/distribution.ts) and the node agent's client (datapath/agent/subscribe.ts):
// the gRPC service definition, the per-Gateway resource payload (JSON, Maglev tables as
// base64 of little-endian uint32s) and the packing of resources into size-bounded messages.
import { fileURLToPath } from "node:url";
import { endianness } from "node:os";
import type * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import type { CaBundle, Cluster, DatapathConfig, GatewayDatapath, TlsCertificate } from "../translate/output.ts";

export const DISTRIBUTION_SERVICE = "sluice.distribution.v1.Distribution";
export const STREAM_PATH = `/${DISTRIBUTION_SERVICE}/Stream`;
export const DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024;
/** Below this a single Gateway name plus framing could not fit with room for payload. */
export const MIN_MAX_MESSAGE_BYTES = 16 * 1024;

// ---- messages, as @grpc/proto-loader presents them (camelCase, longs as numbers, defaults) ----

export interface WireResource {
  name: string;
  version: string;
  payload: Buffer;
  chunkIndex: number;
  chunkCount: number;
}

export interface ServerMessage {
  systemVersion: number;
  nonce: string;
  partIndex: number;
  partCount: number;
  resources: WireResource[];
  removed: string[];
}

export interface SubscribeMessage {
  node: string;
  initialResourceVersions: Record<string, string>;
  maxMessageBytes: number;
  agentVersion: string;
}

export interface AgentMessage {
  subscribe?: SubscribeMessage | null;
  ack?: { nonce: string; applied: Record<string, string> } | null;
  nack?: { nonce: string; error: string } | null;
  /** Which of the oneof is set (proto-loader's `oneofs: true`). */
  kind?: "subscribe" | "ack" | "nack";
}

const PROTO_PATH = fileURLToPath(new URL("./distribution.proto", import.meta.url));
let definition: grpc.ServiceDefinition | undefined;

/** The Distribution service definition (loaded once). */
export function distributionService(): grpc.ServiceDefinition {
  if (!definition) {
    const pkg = protoLoader.loadSync(PROTO_PATH, { keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true });
    const def = pkg[DISTRIBUTION_SERVICE];
    if (!def || !("Stream" in def)) throw new Error(`${PROTO_PATH} does not define ${DISTRIBUTION_SERVICE}`);
    definition = def as grpc.ServiceDefinition;
  }
  return definition;
}

/** The exact serialized size of a server message (what gRPC's message-size limits measure). */
export function serializedSize(msg: ServerMessage): number {
  const method = distributionService()["Stream"];
  if (!method) throw new Error("Distribution.Stream missing");
  return method.responseSerialize(msg).length;
}

// ---- resource payloads ----

/** What one resource carries: a Gateway's datapath plus exactly the shared objects it references. */
export interface ResourcePayload {
  gateway: GatewayDatapath;
  clusters: Cluster[];
  certificates: TlsCertificate[];
  caBundles: CaBundle[];
}

const littleEndian = endianness() === "LE";

export function u32ToBase64(a: Uint32Array): string {
  if (littleEndian) return Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString("base64");
  const b = Buffer.allocUnsafe(a.length * 4);
  for (let i = 0; i < a.length; i++) b.writeUInt32LE(a[i] as number, i * 4);
  return b.toString("base64");
}

export function base64ToU32(s: string): Uint32Array {
  const b = Buffer.from(s, "base64");
  if (b.length % 4 !== 0) throw new Error(`Maglev table of ${b.length} bytes is not a whole number of uint32s`);
  const out = new Uint32Array(b.length / 4);
  if (littleEndian) new Uint8Array(out.buffer).set(b);
  else for (let i = 0; i < out.length; i++) out[i] = b.readUInt32LE(i * 4);
  return out;
}

/** Index of the shared objects of a DatapathConfig, built once per publish. */
export interface SharedIndex {
  clusters: Map<string, Cluster>;
  certificates: Map<string, TlsCertificate>;
  caBundles: Map<string, CaBundle>;
}

export function sharedIndex(config: DatapathConfig): SharedIndex {
  return {
    clusters: new Map(config.clusters.map((c) => [c.id, c])),
    certificates: new Map(config.certificates.map((c) => [c.id, c])),
    caBundles: new Map(config.caBundles.map((c) => [c.id, c])),
  };
}

/** Cluster ids a Gateway's routes name (backends, backend filters, mirrors), wherever they sit. */
function clusterRefs(value: unknown, out: Set<string>): void {
  if (Array.isArray(value)) {
    for (const v of value) clusterRefs(v, out);
    return;
  }
  // Typed arrays (Maglev tables) hold no references; walking them would cost a lot for nothing.
  if (value === null || typeof value !== "object" || ArrayBuffer.isView(value)) return;
  for (const [k, v] of Object.entries(value)) {
    if (k === "cluster" && typeof v === "string") out.add(v);
    else clusterRefs(v, out);
  }
}

/** The self-contained payload of one Gateway: its datapath plus the clusters, certificates and CA bundles it references. */
export function resourcePayloadOf(gw: GatewayDatapath, index: SharedIndex): ResourcePayload {
  const clusterIds = new Set<string>();
  clusterRefs(gw.ports, clusterIds);
  const certIds = new Set<string>();
  const caIds = new Set<string>();
  for (const p of gw.ports) {
    for (const l of p.listeners) {
      for (const id of l.tls?.certificates ?? []) certIds.add(id);
      for (const id of l.tls?.clientValidation?.caCertificates ?? []) caIds.add(id);
    }
  }
  const clusters: Cluster[] = [];
  for (const id of [...clusterIds].sort()) {
    const c = index.clusters.get(id);
    if (!c) continue;
    clusters.push(c);
    if (c.tls?.clientCertificate) certIds.add(c.tls.clientCertificate);
  }
  const pick = <T>(ids: Set<string>, from: Map<string, T>): T[] => [...ids].sort().flatMap((id) => {
    const v = from.get(id);
    return v ? [v] : [];
  });
  return { gateway: gw, clusters, certificates: pick(certIds, index.certificates), caBundles: pick(caIds, index.caBundles) };
}

export function encodePayload(p: ResourcePayload): Buffer {
  return Buffer.from(JSON.stringify(p, (_k, v: unknown) => (v instanceof Uint32Array ? u32ToBase64(v) : v)), "utf8");
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** Parses and checks a payload; throws with what is wrong. */
export function decodePayload(name: string, version: string, bytes: Uint8Array): ResourcePayload {
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8"));
  } catch (err) {
    throw new Error(`resource ${name}: payload is not JSON: ${(err as Error).message}`, { cause: err });
  }
  if (!isObject(raw) || !isObject(raw["gateway"])) throw new Error(`resource ${name}: payload has no gateway object`);
  const gw = raw["gateway"];
  if (gw["gateway"] !== name) throw new Error(`resource ${name}: payload is for Gateway ${String(gw["gateway"])}`);
  if (gw["configHash"] !== version) throw new Error(`resource ${name}: payload has configHash ${String(gw["configHash"])}, expected version ${version}`);
  for (const k of ["addresses", "ports", "l4"]) if (!Array.isArray(gw[k])) throw new Error(`resource ${name}: gateway.${k} is not a list`);
  for (const k of ["clusters", "certificates", "caBundles"]) if (!Array.isArray(raw[k])) throw new Error(`resource ${name}: ${k} is not a list`);
  for (const [i, s] of (gw["l4"] as unknown[]).entries()) {
    if (!isObject(s)) throw new Error(`resource ${name}: gateway.l4[${i}] is not an object`);
    if (typeof s["maglev"] !== "string") throw new Error(`resource ${name}: gateway.l4[${i}].maglev is not a base64 string`);
    try {
      s["maglev"] = base64ToU32(s["maglev"]);
    } catch (err) {
      throw new Error(`resource ${name}: gateway.l4[${i}].maglev: ${(err as Error).message}`, { cause: err });
    }
  }
  // Shape beyond this is the translator's output type; the datapath validates what it programs.
  return raw as unknown as ResourcePayload;
}

/** The whole DatapathConfig from every held resource: Gateways in translator order (by key), shared objects merged by id. */
export function assembleConfig(held: Iterable<ResourcePayload>): DatapathConfig {
  const gateways: GatewayDatapath[] = [];
  const clusters = new Map<string, Cluster>();
  const certificates = new Map<string, TlsCertificate>();
  const caBundles = new Map<string, CaBundle>();
  for (const p of held) {
    gateways.push(p.gateway);
    for (const c of p.clusters) clusters.set(c.id, c);
    for (const c of p.certificates) certificates.set(c.id, c);
    for (const c of p.caBundles) caBundles.set(c.id, c);
  }
  const byStr = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
  const byId = <T extends { id: string }>(m: Map<string, T>): T[] => [...m.values()].sort((a, b) => byStr(a.id, b.id));
  return {
    gateways: gateways.sort((a, b) => byStr(a.gateway, b.gateway)),
    clusters: byId(clusters),
    certificates: byId(certificates),
    caBundles: byId(caBundles),
  };
}

// ---- packing under the message bound ----

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

/** A length-delimited field with a one-byte tag. */
const fieldSize = (len: number): number => 1 + varintSize(len) + len;
/** A uint32 field when non-zero (proto3 omits zeros). */
const uintFieldSize = (n: number): number => (n === 0 ? 0 : 1 + varintSize(n));

function resourceSize(name: number, version: number, payload: number, chunkIndex: number, chunkCount: number): number {
  const inner = fieldSize(name) + fieldSize(version) + (payload ? fieldSize(payload) : 0) + uintFieldSize(chunkIndex) + uintFieldSize(chunkCount);
  return fieldSize(inner);
}

/** Upper bound of a message's fields other than resources and removed names. */
function headerSize(nonce: number): number {
  return 1 + 10 + fieldSize(nonce) + 1 + 5 + 1 + 5;
}

export interface OutgoingResource {
  name: string;
  version: string;
  payload: Buffer;
}

/**
 * Packs one batch (changed resources, then removed names) into messages no larger than
 * `maxBytes` serialized. A resource whose payload does not fit in one message is split into
 * chunks, each in order; the last chunk shares its message with what follows.
 */
export function packBatch(systemVersion: number, nonce: string, resources: readonly OutgoingResource[], removed: readonly string[], maxBytes: number): ServerMessage[] {
  const nonceLen = Buffer.byteLength(nonce);
  const budget = maxBytes - headerSize(nonceLen);
  const messages: ServerMessage[] = [];
  let current: ServerMessage | undefined;
  let used = 0;
  const room = (size: number): ServerMessage => {
    if (!current || used + size > budget) {
      current = { systemVersion, nonce, partIndex: messages.length, partCount: 0, resources: [], removed: [] };
      messages.push(current);
      used = 0;
    }
    used += size;
    return current;
  };
  for (const r of resources) {
    const nameLen = Buffer.byteLength(r.name);
    const versionLen = Buffer.byteLength(r.version);
    const whole = resourceSize(nameLen, versionLen, r.payload.length, 0, 0);
    if (whole <= budget) {
      room(whole).resources.push({ name: r.name, version: r.version, payload: r.payload, chunkIndex: 0, chunkCount: 0 });
      continue;
    }
    // Worst-case framing of a chunk (5-byte varints for every length and chunk field).
    const frame = 1 + 5 + fieldSize(nameLen) + fieldSize(versionLen) + 1 + 5 + 1 + 5 + 1 + 5;
    const chunkBytes = budget - frame;
    if (chunkBytes < 1024) throw new Error(`message bound ${maxBytes} leaves no room for resource ${r.name}`);
    const count = Math.ceil(r.payload.length / chunkBytes);
    for (let i = 0; i < count; i++) {
      const payload = r.payload.subarray(i * chunkBytes, Math.min(r.payload.length, (i + 1) * chunkBytes));
      room(resourceSize(nameLen, versionLen, payload.length, i, count)).resources.push({ name: r.name, version: r.version, payload, chunkIndex: i, chunkCount: count });
    }
  }
  for (const name of removed) room(fieldSize(Buffer.byteLength(name))).removed.push(name);
  // Every batch has at least one message: an empty one still tells the agent it is in sync.
  if (messages.length === 0) messages.push({ systemVersion, nonce, partIndex: 0, partCount: 1, resources: [], removed: [] });
  for (const m of messages) m.partCount = messages.length;
  return messages;
}

/** Collects the parts of one batch and reassembles chunked resources; throws on a malformed sequence. */
export class BatchAssembler {
  private nonce: string | undefined;
  private next = 0;
  private resources = new Map<string, { version: string; payload: Buffer }>();
  private chunks: { name: string; version: string; count: number; parts: Buffer[] } | undefined;
  private removed: string[] = [];

  /** Adds one message; answers the complete batch once its last part arrived. */
  add(m: ServerMessage): { systemVersion: number; nonce: string; resources: Map<string, { version: string; payload: Buffer }>; removed: string[] } | undefined {
    if (m.partCount < 1 || m.partIndex >= m.partCount) throw new Error(`part ${m.partIndex} of ${m.partCount} is out of range`);
    if (this.nonce === undefined) {
      if (m.partIndex !== 0) throw new Error(`batch ${m.nonce} starts at part ${m.partIndex}`);
      this.nonce = m.nonce;
    } else if (m.nonce !== this.nonce) {
      throw new Error(`batch ${this.nonce} interrupted by ${m.nonce} after ${this.next} parts`);
    } else if (m.partIndex !== this.next) {
      throw new Error(`batch ${m.nonce}: part ${m.partIndex} arrived, expected ${this.next}`);
    }
    this.next++;
    for (const r of m.resources) {
      if (!r.name) throw new Error(`batch ${m.nonce}: resource without a name`);
      if (r.chunkCount <= 1) {
        if (this.chunks) throw new Error(`batch ${m.nonce}: resource ${r.name} interrupts the chunks of ${this.chunks.name}`);
        this.resources.set(r.name, { version: r.version, payload: Buffer.from(r.payload) });
        continue;
      }
      if (!this.chunks) {
        if (r.chunkIndex !== 0) throw new Error(`batch ${m.nonce}: resource ${r.name} starts at chunk ${r.chunkIndex}`);
        this.chunks = { name: r.name, version: r.version, count: r.chunkCount, parts: [] };
      }
      const c = this.chunks;
      if (r.name !== c.name || r.version !== c.version || r.chunkCount !== c.count || r.chunkIndex !== c.parts.length) {
        throw new Error(`batch ${m.nonce}: chunk ${r.chunkIndex}/${r.chunkCount} of ${r.name} out of order (expected chunk ${c.parts.length}/${c.count} of ${c.name})`);
      }
      c.parts.push(Buffer.from(r.payload));
      if (c.parts.length === c.count) {
        this.resources.set(c.name, { version: c.version, payload: Buffer.concat(c.parts) });
        this.chunks = undefined;
      }
    }
    this.removed.push(...m.removed);
    if (m.partIndex !== m.partCount - 1) return undefined;
    if (this.chunks) throw new Error(`batch ${m.nonce} ended inside the chunks of ${this.chunks.name}`);
    const done = { systemVersion: m.systemVersion, nonce: m.nonce, resources: this.resources, removed: this.removed };
    this.reset();
    return done;
  }

  reset(): void {
    this.nonce = undefined;
    this.next = 0;
    this.resources = new Map();
    this.chunks = undefined;
    this.removed = [];
  }
}
