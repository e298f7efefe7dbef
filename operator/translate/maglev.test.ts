import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { murmur3x64_128 } from "./murmur3.ts";
import {
  DEFAULT_MAGLEV_HASH_SEED,
  DEFAULT_MAGLEV_TABLE_SIZE,
  SUPPORTED_MAGLEV_TABLE_SIZES,
  buildMaglevTable,
  maglevHashKey,
} from "./maglev.ts";
import type { MaglevBackend } from "./maglev.ts";

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

describe("murmur3x64_128", () => {
  // Published vectors, each list copied from the named test file; h1 and h2 as unsigned 64-bit.
  const vectors: [input: string, seed: number, h1: bigint, h2: bigint][] = [
    // Elasticsearch MurmurHash3Tests.testKnownValues (same values in Apache Spark's Murmur3_128Suite).
    ["hell", 0, 0x629942693e10f867n, 0x92db0b82baeb5347n],
    ["hello", 1, 0xa78ddff5adae8d10n, 0x128900ef20900135n],
    ["hello ", 2, 0x8a486b23f422e826n, 0xf962a2c58947765fn],
    ["hello w", 3, 0x2ea59f466f6bed8cn, 0xc610990acc428a17n],
    ["hello wo", 4, 0x79f6305a386c572cn, 0x46305aed3483b94en],
    ["hello wor", 5, 0xc2219d213ec1f1b5n, 0xa1d8e2e0a52785bdn],
    ["The quick brown fox jumps over the lazy dog", 0, 0xe34bbc7bbc071b6cn, 0x7a433ca9c49a9347n],
    ["The quick brown fox jumps over the lazy cog", 0, 0x658ca970ff85269an, 0x43fee3eaa68e5c3en],
    // spaolacci/murmur3 murmur_test.go (the Go package Cilium's pkg/murmur3 mirrors).
    ["", 0x00, 0x0000000000000000n, 0x0000000000000000n],
    ["hello", 0x00, 0xcbd8a7b341bd9b02n, 0x5b1e906a48ae1d19n],
    ["hello, world", 0x00, 0x342fac623a5ebc8en, 0x4cdcbc079642414dn],
    ["19 Jan 2038 at 3:14:07 AM", 0x00, 0xb89e5988b737affcn, 0x664fc2950231b2cbn],
    ["The quick brown fox jumps over the lazy dog.", 0x00, 0xcd99481f9ee902c9n, 0x695da1a38987b6e7n],
    ["", 0x01, 0x4610abe56eff5cb5n, 0x51622daa78f83583n],
    ["hello, world", 0x01, 0x8b95f808840725c6n, 0x1597ed5422bd493bn],
    ["19 Jan 2038 at 3:14:07 AM", 0x01, 0x2a929de9c8f97b2fn, 0x56a41d99af43a2dbn],
    ["The quick brown fox jumps over the lazy dog.", 0x01, 0xfb3325171f9744dan, 0xaaf8b92a5f722952n],
    ["", 0x2a, 0xf02aa77dfa1b8523n, 0xd1016610da11cbb9n],
    ["hello", 0x2a, 0xc4b8b3c960af6f08n, 0x2334b875b0efbc7an],
    ["hello, world", 0x2a, 0xb91864d797caa956n, 0xd5d139a55afe6150n],
    ["19 Jan 2038 at 3:14:07 AM", 0x2a, 0xfd8f19ebdc8c6b6an, 0xd30fdc310fa08ff9n],
    ["The quick brown fox jumps over the lazy dog.", 0x2a, 0x74f33c659cda5af7n, 0x4ec7a891caf316f0n],
    // Python mmh3 tests/test_mmh3.py test_hash64 (signed=False); the second has a seed >= 2^31.
    ["foo", 0, 16316970633193145697n, 9128664383759220103n],
    ["The quick brown fox jumps over the lazy dog", 0x9747b28c, 8325606756057297185n, 17961889624427075301n],
  ];

  for (const [input, seed, h1, h2] of vectors) {
    it(`hashes ${JSON.stringify(input)} with seed ${seed}`, () => {
      assert.deepEqual(murmur3x64_128(utf8(input), seed), [h1, h2]);
    });
  }

  it("matches mmh3.hash128('foo', 42), which packs h2 above h1", () => {
    const [h1, h2] = murmur3x64_128(utf8("foo"), 42);
    assert.equal((h2 << 64n) | h1, 215966891540331383248189432718888555506n);
  });

  it("passes SMHasher's verification test (0x6384BA69 for MurmurHash3_x64_128)", () => {
    // KeysetTest.cpp VerificationTest: hash {0}, {0,1}, ... {0..254} with seed 256 - length, store
    // each 128-bit result little-endian, hash that 4096-byte buffer with seed 0, and read the
    // first four bytes little-endian. Covers every tail length and multi-block inputs.
    const key = new Uint8Array(256);
    const hashes = new Uint8Array(16 * 256);
    const out = new DataView(hashes.buffer);
    for (let i = 0; i < 256; i++) {
      key[i] = i;
      const [h1, h2] = murmur3x64_128(key.subarray(0, i), 256 - i);
      out.setBigUint64(i * 16, h1, true);
      out.setBigUint64(i * 16 + 8, h2, true);
    }
    const [final] = murmur3x64_128(hashes, 0);
    assert.equal(Number(final & 0xffffffffn), 0x6384ba69);
  });

  it("reads full blocks from a subarray at a non-zero, unaligned offset", () => {
    const text = "The quick brown fox jumps over the lazy dog.";
    const buf = utf8(`xyz${text}xyz`);
    assert.deepEqual(murmur3x64_128(buf.subarray(3, 3 + text.length), 0x2a), [0x74f33c659cda5af7n, 0x4ec7a891caf316f0n]);
  });

  it("rejects seeds that are not unsigned 32-bit integers", () => {
    for (const seed of [-1, 2 ** 32, 1.5, Number.NaN]) {
      assert.throws(() => murmur3x64_128(new Uint8Array(0), seed), RangeError);
    }
  });
});

describe("maglevHashKey", () => {
  it("formats IPv4 backends like Cilium's BackendInfo hash string", () => {
    assert.equal(maglevHashKey("10.0.0.1", 8080, "TCP"), "[10.0.0.1:8080/TCP,State:active]");
    assert.equal(maglevHashKey("192.168.1.20", 53, "UDP"), "[192.168.1.20:53/UDP,State:active]");
  });

  it("brackets IPv6 and renders it the way Go's netip does", () => {
    assert.equal(maglevHashKey("2001:db8::1", 443, "TCP"), "[[2001:db8::1]:443/TCP,State:active]");
    assert.equal(maglevHashKey("2001:DB8:0:0:1:0:0:1", 80, "UDP"), "[[2001:db8::1:0:0:1]:80/UDP,State:active]");
    assert.equal(maglevHashKey("fe80:0:0:1:0:0:0:0", 1, "TCP"), "[[fe80:0:0:1::]:1/TCP,State:active]");
    assert.equal(maglevHashKey("0:0:0:0:0:0:0:0", 1, "TCP"), "[[::]:1/TCP,State:active]");
    assert.equal(maglevHashKey("1:0:2:3:4:5:6:7", 1, "TCP"), "[[1:0:2:3:4:5:6:7]:1/TCP,State:active]");
    assert.equal(maglevHashKey("::FFFF:10.0.0.1", 1, "TCP"), "[[::ffff:10.0.0.1]:1/TCP,State:active]");
    assert.equal(maglevHashKey("::1.2.3.4", 1, "TCP"), "[[::102:304]:1/TCP,State:active]");
  });

  it("rejects invalid addresses and ports", () => {
    for (const address of ["", "10.0.0", "010.0.0.1", "example.com", "fe80::1%eth0", "[::1]"]) {
      assert.throws(() => maglevHashKey(address, 80, "TCP"), RangeError, address);
    }
    for (const port of [-1, 65536, 1.5]) {
      assert.throws(() => maglevHashKey("10.0.0.1", port, "TCP"), RangeError);
    }
  });
});

/** Cilium's maglev_test.go mkAddr(i): IPv4 address i (big-endian), port i, TCP. */
const ciliumTestKey = (i: number): string =>
  maglevHashKey(`${(i >>> 24) & 255}.${(i >>> 16) & 255}.${(i >>> 8) & 255}.${i & 255}`, i % 65535, "TCP");

const backendsN = (n: number, weight = 1): MaglevBackend[] =>
  Array.from({ length: n }, (_, i) => ({ hashKey: maglevHashKey(`10.1.${i >> 8}.${i & 255}`, 8080, "TCP"), weight }));

function shares(table: Uint32Array, n: number): number[] {
  const counts = new Array<number>(n).fill(0);
  for (const b of table) counts[b] = (counts[b] ?? 0) + 1;
  return counts.map((c) => c / table.length);
}

function runLengths(table: Uint32Array): string {
  const runs: string[] = [];
  for (let k = 0; k < table.length; ) {
    let j = k;
    while (j < table.length && table[j] === table[k]) j++;
    runs.push(`${table[k]}(${j - k})`);
    k = j;
  }
  return runs.join(",");
}

/** Deterministic Fisher-Yates shuffle (LCG), returning the permutation applied. */
function shuffled<T>(items: readonly T[], seed: number): { items: T[]; from: number[] } {
  const from = items.map((_, i) => i);
  let s = seed;
  for (let i = from.length - 1; i > 0; i--) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    const j = s % (i + 1);
    [from[i], from[j]] = [from[j] ?? 0, from[i] ?? 0];
  }
  return { items: from.map((k) => items[k] as T), from };
}

describe("buildMaglevTable", () => {
  it("exposes Cilium's defaults and supported sizes", () => {
    assert.equal(DEFAULT_MAGLEV_TABLE_SIZE, 16381);
    assert.equal(DEFAULT_MAGLEV_HASH_SEED, "JLfvgnHc2kaSUFaI");
    assert.deepEqual(SUPPORTED_MAGLEV_TABLE_SIZES, [251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071]);
    assert.equal(buildMaglevTable(backendsN(3)).length, DEFAULT_MAGLEV_TABLE_SIZE);
  });

  it("reproduces Cilium's own golden table (maglev_test.go TestReproducible)", () => {
    // Expected run-length encoding copied from cilium/cilium pkg/maglev/maglev_test.go: M=251,
    // default seed, backends mkAddr(1), mkAddr(3), mkAddr(4), mkAddr(5) with weights 2, 13,
    // 111, 10 and IDs 0..3 (our input indices).
    const expected =
      "2(5),3(1),2(3),1(1),2(2),0(1),2(1),3(1),2(1),3(1),2(1),1(1),2(7),1(1),2(14),3(1),2(1)," +
      "1(2),2(12),3(1),2(3),1(1),2(4),3(1),2(8),3(1),2(2),1(1),2(16),1(2),2(3),3(1),2(11),1(2),2(4),3(1),2(3)," +
      "1(1),2(4),3(1),2(1),0(1),1(1),2(8),1(1),2(7),1(1),2(4),3(1),2(1),3(1),2(9),1(2),2(5),1(1),2(7),3(1),2(1)," +
      "3(1),1(1),2(8),1(1),2(4),0(1),2(1),1(1),2(5),3(1),2(3),1(1),2(4),3(1),2(3),1(1),2(12),0(1),3(1),2(3),3(1)," +
      "2(4),3(1),2(2),1(1),2(7)";
    const backends = [
      { hashKey: ciliumTestKey(1), weight: 2 },
      { hashKey: ciliumTestKey(3), weight: 13 },
      { hashKey: ciliumTestKey(4), weight: 111 },
      { hashKey: ciliumTestKey(5), weight: 10 },
    ];
    assert.equal(ciliumTestKey(3), "[0.0.0.3:3/TCP,State:active]");
    assert.equal(runLengths(buildMaglevTable(backends, 251, DEFAULT_MAGLEV_HASH_SEED)), expected);
  });

  it("matches Cilium's weighted slot counts and removal bound (TestWeightedBackendWithRemoval)", () => {
    // Counts 16/98/832/75 and the < 1% bound are Cilium's assertions for M=1021.
    const backends = [2, 13, 111, 10].map((weight, i) => ({ hashKey: ciliumTestKey(i + 1), weight }));
    const before = buildMaglevTable(backends, 1021);
    const counts = [0, 0, 0, 0];
    for (const b of before) counts[b] = (counts[b] ?? 0) + 1;
    assert.deepEqual(counts, [16, 98, 832, 75]);

    const after = buildMaglevTable(backends.slice(1), 1021);
    let changed = 0;
    for (let k = 0; k < before.length; k++) {
      const was = before[k] ?? 0;
      if (was !== 0 && after[k] !== was - 1) changed++;
    }
    assert.ok((changed / 1021) * 100 < 1, `${changed} slots of surviving backends moved`);
  });

  it("fills every slot with a weighted backend, by input index", () => {
    const backends = [
      { hashKey: maglevHashKey("10.0.0.1", 80, "TCP"), weight: 0 },
      { hashKey: maglevHashKey("10.0.0.2", 80, "TCP"), weight: 3 },
      { hashKey: maglevHashKey("10.0.0.3", 80, "TCP"), weight: 0 },
      { hashKey: maglevHashKey("2001:db8::4", 80, "TCP"), weight: 5 },
      { hashKey: maglevHashKey("10.0.0.5", 80, "TCP"), weight: 2 },
    ];
    const table = buildMaglevTable(backends, 4093);
    assert.equal(table.length, 4093);
    const seen = new Set<number>();
    for (const b of table) {
      assert.ok((backends[b]?.weight ?? 0) > 0, `slot points at backend ${b}`);
      seen.add(b);
    }
    assert.deepEqual([...seen].sort(), [1, 3, 4]);
  });

  it("returns input-order indices: a shuffled input maps every slot to the same hashKey", () => {
    const backends = backendsN(40).map((b, i) => ({ ...b, weight: 50 + i }));
    const base = buildMaglevTable(backends, 8191);
    for (const seed of [1, 2, 3]) {
      const { items, from } = shuffled(backends, seed);
      assert.notDeepEqual(from, backends.map((_, i) => i));
      const table = buildMaglevTable(items, 8191);
      for (let k = 0; k < table.length; k++) {
        assert.equal(items[table[k] ?? -1]?.hashKey, backends[base[k] ?? -1]?.hashKey);
      }
    }
  });

  it("is deterministic", () => {
    const backends = backendsN(25, 100);
    assert.deepEqual(buildMaglevTable(backends, 16381), buildMaglevTable(backends, 16381));
    assert.deepEqual(buildMaglevTable(backends, 251), buildMaglevTable([...backends], 251));
  });

  it("uses only the first four seed bytes as the murmur seed, big-endian, like Cilium", () => {
    const backends = backendsN(5);
    const d = Buffer.from(DEFAULT_MAGLEV_HASH_SEED, "base64");
    const sameHead = Buffer.from(d);
    sameHead.fill(0xab, 4); // jhash seed bytes differ, murmur seed bytes do not
    assert.deepEqual(buildMaglevTable(backends, 1021, sameHead.toString("base64")), buildMaglevTable(backends, 1021));
    const otherHead = Buffer.from(d);
    otherHead.writeUInt32LE(d.readUInt32BE(0), 0); // byte-swapped murmur seed
    assert.notDeepEqual(buildMaglevTable(backends, 1021, otherHead.toString("base64")), buildMaglevTable(backends, 1021));
  });

  it("honours 80/20 weights within 1%", () => {
    const [a = 0, b = 0] = shares(buildMaglevTable([
      { hashKey: maglevHashKey("10.0.0.1", 80, "TCP"), weight: 80 },
      { hashKey: maglevHashKey("10.0.0.2", 80, "TCP"), weight: 20 },
    ], 16381), 2);
    assert.ok(Math.abs(a - 0.8) <= 0.01 && Math.abs(b - 0.2) <= 0.01, `${a} / ${b}`);
  });

  it("honours 1:1:2 weights at Cilium's weight scale (100/100/200) within 1%", () => {
    const backends = backendsN(3).map((b, i) => ({ ...b, weight: [100, 100, 200][i] ?? 0 }));
    const got = shares(buildMaglevTable(backends, 16381), 3);
    [0.25, 0.25, 0.5].forEach((want, i) => assert.ok(Math.abs((got[i] ?? 0) - want) <= 0.01, `${got}`));
  });

  it("treats weights 1/1/2 as equal, as Cilium does (weights apply only if floor(sum/n) > 1)", () => {
    const backends = backendsN(3).map((b, i) => ({ ...b, weight: [1, 1, 2][i] ?? 0 }));
    const got = shares(buildMaglevTable(backends, 16381), 3);
    for (const s of got) assert.ok(Math.abs(s - 1 / 3) <= 0.01, `${got}`);
  });

  it("gives weight-0 backends nothing and otherwise ignores them", () => {
    const live = backendsN(4, 100);
    const withZero = [...live, { hashKey: maglevHashKey("10.9.9.9", 8080, "TCP"), weight: 0 }];
    const table = buildMaglevTable(withZero, 4093);
    assert.ok(!table.includes(4));
    assert.deepEqual(table, buildMaglevTable(live, 4093));
  });

  for (const weight of [1, 100]) {
    it(`gives N=10 equal weights (${weight}) each 1/N within 1%`, () => {
      for (const s of shares(buildMaglevTable(backendsN(10, weight), 16381), 10)) {
        assert.ok(Math.abs(s - 0.1) <= 0.01, String(s));
      }
    });
  }

  it("disrupts minimally when a backend is removed or added", () => {
    const m = 16381;
    const ten = backendsN(11).slice(0, 10);
    const before = buildMaglevTable(ten, m);

    // Remove backend 4: indices above it shift down by one.
    const removed = 4;
    const after = buildMaglevTable(ten.filter((_, i) => i !== removed), m);
    let moved = 0;
    for (let k = 0; k < m; k++) {
      const was = before[k] ?? 0;
      if (was === removed) continue;
      if (after[k] !== (was > removed ? was - 1 : was)) moved++;
    }
    assert.ok(moved / m <= 0.02, `removal moved ${moved} surviving slots`);

    // Add an eleventh backend at the end: ideally only its ~1/11 share moves.
    const grown = buildMaglevTable(backendsN(11), m);
    let changed = 0;
    for (let k = 0; k < m; k++) if (grown[k] !== before[k]) changed++;
    assert.ok(changed / m <= 1 / 11 + 0.02, `addition changed ${changed} slots`);
  });

  it("matches a direct transcription of Cilium's turn loop when weights are skewed", () => {
    // The builder finds weighted turns with a tree once a linear probe gives up; this checks it
    // against Cilium's plain loop (start at n % l, skip while (n+1)*w < floor(cntr)).
    const cases: [number, (i: number) => number][] = [
      [300, (i) => (i === 7 ? 65535 : 1)],
      [200, (i) => (i % 50 === 0 ? 5000 : 1 + (i % 3))],
      [150, (i) => 1 + ((i * 7919) % 1000)],
    ];
    for (const [n, weightOf] of cases) {
      const backends = backendsN(n).map((b, i) => ({ ...b, weight: weightOf(i) }));
      const m = 4093;
      const seed = Buffer.from(DEFAULT_MAGLEV_HASH_SEED, "base64").readUInt32BE(0);
      const sorted = backends.map((b, i) => ({ ...b, i })).sort((a, b) => (a.hashKey < b.hashKey ? -1 : 1));
      const l = sorted.length;
      const sum = sorted.reduce((s, b) => s + b.weight, 0);
      const cntr = sorted.map((b) => b.weight / l);
      const perm = sorted.map((b) => {
        const [h1, h2] = murmur3x64_128(utf8(b.hashKey), seed);
        return { next: Number(h1 % BigInt(m)), skip: Number(h2 % BigInt(m - 1)) + 1 };
      });
      const want = new Array<number>(m).fill(-1);
      for (let step = 0; step < m; step++) {
        let i = step % l;
        while ((step + 1) * (sorted[i]?.weight ?? 0) < Math.floor(cntr[i] ?? 0)) i = (i + 1) % l;
        cntr[i] = (cntr[i] ?? 0) + sum;
        const p = perm[i];
        if (p === undefined) throw new Error("unreachable");
        while ((want[p.next] ?? 0) >= 0) p.next = (p.next + p.skip) % m;
        want[p.next] = sorted[i]?.i ?? -1;
        p.next = (p.next + p.skip) % m;
      }
      assert.deepEqual(Array.from(buildMaglevTable(backends, m)), want);
    }
  });

  it("pins the first 32 slots of a small table", () => {
    // Regression pin, not an independent golden: these values were produced by this
    // implementation (after it matched Cilium's TestReproducible above) to catch changes.
    const backends = [
      { hashKey: maglevHashKey("10.0.0.1", 8080, "TCP"), weight: 1 },
      { hashKey: maglevHashKey("10.0.0.2", 8080, "TCP"), weight: 1 },
      { hashKey: maglevHashKey("2001:db8::3", 8080, "TCP"), weight: 1 },
    ];
    assert.deepEqual(
      Array.from(buildMaglevTable(backends, 251).subarray(0, 32)),
      [2, 1, 0, 2, 0, 1, 0, 1, 1, 2, 2, 0, 1, 2, 1, 0, 1, 1, 2, 0, 2, 1, 2, 2, 0, 1, 2, 1, 0, 0, 2, 0],
    );
  });

  it("returns an empty table when no backend has weight", () => {
    assert.equal(buildMaglevTable([]).length, 0);
    assert.equal(buildMaglevTable(backendsN(3, 0), 251).length, 0);
  });

  it("rejects unsupported table sizes", () => {
    for (const m of [0, 250, 252, 16383, 65537, 1.5, Number.NaN]) {
      assert.throws(() => buildMaglevTable(backendsN(2), m), RangeError, String(m));
    }
  });

  it("rejects seeds that are not standard base64 of exactly 12 bytes", () => {
    const bad = [
      "",
      "JLfvgnHc2kaSUFa", // 15 chars
      "JLfvgnHc2kaSUFaI==", // bad padding
      "JLfvgnHc-kaSUFa_", // URL-safe alphabet
      "JLfvgnHc2kaSUFaIJLfvgg==", // 17 bytes
      "AAAAAAAAAAAAAA==", // 10 bytes
    ];
    for (const seed of bad) {
      assert.throws(() => buildMaglevTable(backendsN(2), 251, seed), RangeError, seed);
    }
    // Validated even when the table would be empty.
    assert.throws(() => buildMaglevTable([], 251, "nope"), RangeError);
    assert.throws(() => buildMaglevTable([], 252), RangeError);
  });

  it("rejects invalid weights and duplicate hash keys", () => {
    const key = maglevHashKey("10.0.0.1", 80, "TCP");
    for (const weight of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      assert.throws(() => buildMaglevTable([{ hashKey: key, weight }], 251), RangeError, String(weight));
    }
    assert.throws(() => buildMaglevTable([{ hashKey: "a", weight: 2 ** 31 }, { hashKey: "b", weight: 2 ** 31 }], 251), RangeError);
    assert.throws(() => buildMaglevTable([{ hashKey: key, weight: 1 }, { hashKey: key, weight: 2 }], 251), RangeError);
  });
});
