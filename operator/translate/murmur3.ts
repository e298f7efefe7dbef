// MurmurHash3 x64 128-bit (Austin Appleby's MurmurHash3_x64_128), returning h1 and h2 as unsigned
// 64-bit integers. Blocks are read little-endian, which is what the reference code does on x86-64
// and what Cilium's pkg/murmur3 Hash128 (used for Maglev permutations) produces on the nodes it
// runs on. The 32-bit seed initialises both h1 and h2, as in the reference.

const MASK64 = 0xffff_ffff_ffff_ffffn;
const C1 = 0x87c3_7b91_1142_53d5n;
const C2 = 0x4cf5_ad43_2745_937fn;
const FMIX_1 = 0xff51_afd7_ed55_8ccdn;
const FMIX_2 = 0xc4ce_b9fe_1a85_ec53n;

function rotl64(x: bigint, r: bigint): bigint {
  return ((x << r) | (x >> (64n - r))) & MASK64;
}

function fmix64(k: bigint): bigint {
  k ^= k >> 33n;
  k = (k * FMIX_1) & MASK64;
  k ^= k >> 33n;
  k = (k * FMIX_2) & MASK64;
  k ^= k >> 33n;
  return k;
}

function mixK1(k1: bigint): bigint {
  k1 = (k1 * C1) & MASK64;
  k1 = rotl64(k1, 31n);
  return (k1 * C2) & MASK64;
}

function mixK2(k2: bigint): bigint {
  k2 = (k2 * C2) & MASK64;
  k2 = rotl64(k2, 33n);
  return (k2 * C1) & MASK64;
}

/** Little-endian 64-bit word from up to 8 bytes starting at `from` (missing bytes are zero). */
function readLE64(data: Uint8Array, from: number, count: number): bigint {
  // Build two 32-bit halves with plain numbers so a tail costs one BigInt conversion per half.
  let lo = 0;
  let hi = 0;
  for (let b = Math.min(count, 8) - 1; b >= 0; b--) {
    const byte = data[from + b] ?? 0;
    if (b >= 4) hi = hi * 256 + byte;
    else lo = lo * 256 + byte;
  }
  return (BigInt(hi) << 32n) | BigInt(lo);
}

export function murmur3x64_128(data: Uint8Array, seed: number): [bigint, bigint] {
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffff_ffff) {
    throw new RangeError(`murmur3 seed must be an unsigned 32-bit integer, got ${seed}`);
  }
  const len = data.length;
  const nblocks = len >>> 4;
  let h1 = BigInt(seed);
  let h2 = h1;

  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  for (let i = 0; i < nblocks; i++) {
    const off = i << 4;
    h1 ^= mixK1(view.getBigUint64(off, true));
    h1 = rotl64(h1, 27n);
    h1 = (h1 + h2) & MASK64;
    h1 = (h1 * 5n + 0x52dc_e729n) & MASK64;

    h2 ^= mixK2(view.getBigUint64(off + 8, true));
    h2 = rotl64(h2, 31n);
    h2 = (h2 + h1) & MASK64;
    h2 = (h2 * 5n + 0x3849_5ab5n) & MASK64;
  }

  const tail = nblocks << 4;
  const rem = len & 15;
  if (rem > 8) h2 ^= mixK2(readLE64(data, tail + 8, rem - 8));
  if (rem > 0) h1 ^= mixK1(readLE64(data, tail, rem));

  const bigLen = BigInt(len);
  h1 ^= bigLen;
  h2 ^= bigLen;
  h1 = (h1 + h2) & MASK64;
  h2 = (h2 + h1) & MASK64;
  h1 = fmix64(h1);
  h2 = fmix64(h2);
  h1 = (h1 + h2) & MASK64;
  h2 = (h2 + h1) & MASK64;
  return [h1, h2];
}
