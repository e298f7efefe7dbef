// Maglev lookup-table builder that reproduces Cilium's pkg/maglev tables bit for bit, so a Sluice
// datapath and a Cilium node given the same backends, table size and seed pick the same backend
// for every flow hash.

import { Buffer } from "node:buffer";
import { isIPv4, isIPv6 } from "node:net";
import { murmur3x64_128 } from "./murmur3.ts";

export const DEFAULT_MAGLEV_TABLE_SIZE = 16381;

// The primes Cilium accepts for --bpf-lb-maglev-table-size.
export const SUPPORTED_MAGLEV_TABLE_SIZES: readonly number[] = Object.freeze([
  251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071,
]);

export const DEFAULT_MAGLEV_HASH_SEED = "JLfvgnHc2kaSUFaI";

export interface MaglevBackend {
  hashKey: string;
  weight: number;
}

/**
 * Cilium's per-backend hash string for an L4 backend, e.g. "[10.0.0.1:8080/TCP,State:active]".
 * IPv6 addresses are bracketed. The address is rendered the way Go's netip.Addr.String() does
 * (RFC 5952 for IPv6, "::ffff:a.b.c.d" for IPv4-mapped), because Cilium hashes that rendering.
 * Cilium appends "/i" after the protocol for internal-scope frontends' backends; L4 backends
 * here are always external scope. Throws RangeError for an invalid address or port.
 */
export function maglevHashKey(address: string, port: number, protocol: "TCP" | "UDP"): string {
  if (!Number.isInteger(port) || port < 0 || port > 0xffff) {
    throw new RangeError(`invalid port ${port}`);
  }
  let addr: string;
  if (isIPv4(address)) {
    addr = address;
  } else if (isIPv6(address) && !address.includes("%")) {
    addr = `[${formatIPv6(parseIPv6(address))}]`;
  } else {
    throw new RangeError(`invalid IP address ${JSON.stringify(address)}`);
  }
  return `[${addr}:${port}/${protocol},State:active]`;
}

/** Eight 16-bit groups of an IPv6 address already accepted by net.isIPv6 (no zone). */
function parseIPv6(text: string): number[] {
  const toGroups = (part: string): number[] => {
    if (part === "") return [];
    const out: number[] = [];
    for (const piece of part.split(":")) {
      if (piece.includes(".")) {
        const [a = 0, b = 0, c = 0, d = 0] = piece.split(".").map(Number);
        out.push((a << 8) | b, (c << 8) | d);
      } else {
        out.push(parseInt(piece, 16));
      }
    }
    return out;
  };
  const gap = text.indexOf("::");
  if (gap < 0) return toGroups(text);
  const head = toGroups(text.slice(0, gap));
  const tail = toGroups(text.slice(gap + 2));
  return [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
}

/** Go netip.Addr.String() for a 16-byte address. */
function formatIPv6(g: readonly number[]): string {
  const at = (i: number): number => g[i] ?? 0;
  if (at(0) === 0 && at(1) === 0 && at(2) === 0 && at(3) === 0 && at(4) === 0 && at(5) === 0xffff) {
    return `::ffff:${at(6) >> 8}.${at(6) & 0xff}.${at(7) >> 8}.${at(7) & 0xff}`;
  }
  // Elide the first longest run of two or more zero groups.
  let zeroStart = -1;
  let zeroLen = 0;
  for (let i = 0; i < 8; i++) {
    let j = i;
    while (j < 8 && at(j) === 0) j++;
    if (j - i >= 2 && j - i > zeroLen) {
      zeroStart = i;
      zeroLen = j - i;
    }
  }
  let out = "";
  for (let i = 0; i < 8; i++) {
    if (i === zeroStart) {
      out += "::";
      i += zeroLen;
      if (i >= 8) break;
    } else if (i > 0) {
      out += ":";
    }
    out += at(i).toString(16);
  }
  return out;
}

const BASE64_STD = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Cilium's murmur seed: the first 4 of the 12 decoded seed bytes, big-endian. */
function murmurSeedFrom(seed: string): number {
  if (!BASE64_STD.test(seed)) {
    throw new RangeError(`Maglev hash seed ${JSON.stringify(seed)} is not standard base64`);
  }
  const d = Buffer.from(seed, "base64");
  if (d.length !== 12) {
    throw new RangeError(`Maglev hash seed decodes to ${d.length} bytes, not 12`);
  }
  return d.readUInt32BE(0);
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

const utf8 = new TextEncoder();

/**
 * Cilium's weighted turn order. Each backend has a counter starting at weight / l. At step n the
 * turn starts at backend n % l and passes over every backend with (n + 1) * weight <
 * floor(counter); the backend that takes it adds the weight sum to its counter. Some backend is
 * always eligible (the counters sum to at most (n + 1) * weightSum), so a turn is always taken.
 *
 * Walking backend by backend costs O(l) per step when weights are skewed (one heavy backend among
 * many light ones). So after a few probes the search falls back to a min-tree over each backend's
 * first eligible step. The tree is lazy: a backend's step only grows when it takes a turn, so a
 * stored step is a lower bound; a tree hit is re-checked exactly and repaired if stale. Each turn
 * makes at most one leaf stale, so repairs are bounded by the number of turns.
 */
class WeightedTurns {
  private static readonly PROBES = 64;
  private readonly weight: Float64Array;
  private readonly weightSum: number;
  private readonly counter: Float64Array;
  private readonly size: number;
  // Implicit binary tree: leaves at [size, size + l) hold lower bounds of each backend's first
  // eligible step, internal nodes the minimum of their children; unused leaves stay +Infinity.
  private readonly tree: Float64Array;

  constructor(weight: Float64Array, weightSum: number) {
    const l = weight.length;
    this.weight = weight;
    this.weightSum = weightSum;
    this.counter = new Float64Array(l);
    let size = 1;
    while (size < l) size <<= 1;
    this.size = size;
    this.tree = new Float64Array(2 * size).fill(Infinity);
    for (let i = 0; i < l; i++) {
      const w = weight[i] ?? 1;
      this.counter[i] = w / l;
      this.tree[size + i] = firstEligibleStep(w, w / l);
    }
    for (let p = size - 1; p >= 1; p--) {
      this.tree[p] = Math.min(this.tree[2 * p] ?? Infinity, this.tree[2 * p + 1] ?? Infinity);
    }
  }

  /** The backend that takes turn n, which Cilium starts looking for at backend `start`. */
  take(n: number, start: number): number {
    const l = this.counter.length;
    let i = start;
    let found = false;
    for (let probe = 0; probe < WeightedTurns.PROBES && probe < l; probe++) {
      if (this.eligible(i, n)) {
        found = true;
        break;
      }
      i = i + 1 === l ? 0 : i + 1;
    }
    if (!found) {
      // Backends [start, i) cyclically were just found ineligible; continue from i, wrapping.
      const j = this.search(i, n);
      i = j >= 0 ? j : this.search(0, n);
    }
    this.counter[i] = (this.counter[i] ?? 0) + this.weightSum;
    return i;
  }

  private eligible(i: number, n: number): boolean {
    return (n + 1) * (this.weight[i] ?? 1) >= Math.floor(this.counter[i] ?? 0);
  }

  /** Lowest eligible backend index >= from at step n, or -1. */
  private search(from: number, n: number): number {
    for (;;) {
      const i = this.firstAtOrAfter(1, 0, this.size, from, n);
      if (i < 0 || this.eligible(i, n)) return i;
      this.repair(i);
    }
  }

  private repair(i: number): void {
    const { tree } = this;
    let p = this.size + i;
    tree[p] = firstEligibleStep(this.weight[i] ?? 1, this.counter[i] ?? 0);
    for (p >>= 1; p >= 1; p >>= 1) {
      const a = tree[2 * p] ?? Infinity;
      const b = tree[2 * p + 1] ?? Infinity;
      const min = a < b ? a : b;
      if (tree[p] === min) break;
      tree[p] = min;
    }
  }

  /** Lowest index >= from within node's range [lo, hi) whose stored step is <= n; -1 if none. */
  private firstAtOrAfter(node: number, lo: number, hi: number, from: number, n: number): number {
    if (hi <= from || !((this.tree[node] ?? Infinity) <= n)) return -1;
    if (hi - lo === 1) return lo;
    const mid = (lo + hi) >> 1;
    const left = this.firstAtOrAfter(2 * node, lo, mid, from, n);
    return left >= 0 ? left : this.firstAtOrAfter(2 * node + 1, mid, hi, from, n);
  }
}

/** Smallest step n with (n + 1) * weight >= floor(counter), Cilium's eligibility test. */
function firstEligibleStep(weight: number, counter: number): number {
  const f = Math.floor(counter);
  let k = Math.ceil(f / weight);
  // The division may round; the products are exact (below 2^53), so settle k on them.
  while (k * weight < f) k++;
  while (k > 0 && (k - 1) * weight >= f) k--;
  return k - 1;
}

/**
 * Builds a Maglev lookup table of size m with Cilium's algorithm: backends sorted by hashKey,
 * permutation offset/skip from murmur3 x64_128 of the hashKey with the murmur seed taken from the
 * decoded seed bytes exactly as Cilium does, round-robin fill, and weights honoured with Cilium's
 * (Envoy PR 2982) weight-counter method. Returns, for each slot, the index of the chosen backend
 * IN THE INPUT ARRAY (not the sorted order). Backends with weight 0 never get a slot.
 * Returns an empty Uint32Array when no backend has weight > 0. Throws RangeError if m is not in
 * SUPPORTED_MAGLEV_TABLE_SIZES or the seed does not decode to 12 bytes.
 *
 * Also throws RangeError if a weight is not a non-negative integer, the weights sum past
 * 2^32 - 1 (keeps every counter exact in a double; Cilium's weights are uint16), or two
 * weighted backends share a hashKey (they would get identical permutations).
 *
 * Note Cilium only applies weights when floor(sum / count) > 1, so small weights such as
 * 1/1/2 are treated as equal; scale them (Cilium's default weight is 100).
 */
export function buildMaglevTable(
  backends: readonly MaglevBackend[],
  m: number = DEFAULT_MAGLEV_TABLE_SIZE,
  seed: string = DEFAULT_MAGLEV_HASH_SEED,
): Uint32Array {
  if (!SUPPORTED_MAGLEV_TABLE_SIZES.includes(m)) {
    throw new RangeError(
      `unsupported Maglev table size ${m}; expected one of ${SUPPORTED_MAGLEV_TABLE_SIZES.join(", ")}`,
    );
  }
  const murmurSeed = murmurSeedFrom(seed);

  // Cilium puts weight-0 backends into maintenance, which keeps them out of the Maglev input
  // altogether: they take no turn and do not count towards l in the weight counters.
  const picked: { index: number; key: Uint8Array; weight: number }[] = [];
  let weightSum = 0;
  for (let index = 0; index < backends.length; index++) {
    const b = backends[index];
    if (b === undefined) continue;
    if (!Number.isInteger(b.weight) || b.weight < 0) {
      throw new RangeError(`backend ${JSON.stringify(b.hashKey)} has invalid weight ${b.weight}`);
    }
    if (b.weight === 0) continue;
    weightSum += b.weight;
    picked.push({ index, key: utf8.encode(b.hashKey), weight: b.weight });
  }
  if (weightSum > 0xffff_ffff) {
    throw new RangeError(`total backend weight ${weightSum} exceeds 2^32 - 1`);
  }
  const l = picked.length;
  if (l === 0) return new Uint32Array(0);

  // Go compares strings bytewise, so order by UTF-8 bytes, not UTF-16 code units.
  picked.sort((a, b) => compareBytes(a.key, b.key));

  const origIndex = new Int32Array(l);
  const weight = new Float64Array(l);
  const cursor = new Int32Array(l);
  const skip = new Int32Array(l);
  const bigM = BigInt(m);
  const bigM1 = BigInt(m - 1);
  for (let i = 0; i < l; i++) {
    const p = picked[i];
    if (p === undefined) continue;
    const prev = picked[i - 1];
    if (prev !== undefined && compareBytes(prev.key, p.key) === 0) {
      throw new RangeError(`duplicate Maglev hashKey ${JSON.stringify(backends[p.index]?.hashKey)}`);
    }
    origIndex[i] = p.index;
    weight[i] = p.weight;
    // Only place BigInt is needed; the fill below runs on plain numbers.
    const [h1, h2] = murmur3x64_128(p.key, murmurSeed);
    cursor[i] = Number(h1 % bigM);
    skip[i] = Number(h2 % bigM1) + 1;
  }

  // Cilium: floor(weightSum / l) > 1, i.e. weights only steer turns when they average ≥ 2.
  const weightsUsed = weightSum >= 2 * l;
  const turns = weightsUsed ? new WeightedTurns(weight, weightSum) : undefined;

  // Int32 storage keeps the hot loop on small integers; -1 marks an empty slot. Every slot is
  // filled by the end, so the same bytes are returned as unsigned indices.
  const entry = new Int32Array(m).fill(-1);
  for (let n = 0; n < m; n++) {
    const i = turns === undefined ? n % l : turns.take(n, n % l);
    const s = skip[i] ?? 1;
    let c = cursor[i] ?? 0;
    while (entry[c] !== -1) {
      c += s;
      if (c >= m) c -= m;
    }
    entry[c] = origIndex[i] ?? 0;
    c += s;
    cursor[i] = c >= m ? c - m : c;
  }
  return new Uint32Array(entry.buffer);
}
