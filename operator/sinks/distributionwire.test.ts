// Packing under the message bound, measured with the real protobuf serializer, and the
// reassembly of chunked resources.
import assert from "node:assert/strict";
import { test } from "node:test";
import { BatchAssembler, MIN_MAX_MESSAGE_BYTES, base64ToU32, decodePayload, packBatch, serializedSize, u32ToBase64, type OutgoingResource } from "./distributionwire.ts";

function resource(name: string, bytes: number): OutgoingResource {
  const payload = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) payload[i] = (i * 131 + name.length) & 0xff;
  return { name, version: "f".repeat(64), payload };
}

test("packed messages never exceed the bound, whatever the mix of sizes", () => {
  for (const max of [MIN_MAX_MESSAGE_BYTES, 64 * 1024, 1024 * 1024]) {
    const rs: OutgoingResource[] = [];
    // Sizes around the boundaries: tiny, just under, exactly around and well over the bound.
    for (const size of [0, 1, 100, max - 300, max - 200, max - 100, max, max + 1, 3 * max + 17, 50]) rs.push(resource(`ns-${rs.length}/gw-${"x".repeat(rs.length * 20)}`, Math.max(0, size)));
    const removed = Array.from({ length: 2000 }, (_, i) => `gone-${i}/gateway-with-a-long-name`);
    const messages = packBatch(123456789, "42-deadbeef", rs, removed, max);
    for (const m of messages) {
      const size = serializedSize(m);
      assert.ok(size <= max, `message ${m.partIndex} is ${size} bytes > ${max}`);
      assert.equal(m.partCount, messages.length);
      assert.equal(m.nonce, "42-deadbeef");
    }
    // Messages are well used: no more than twice the lower bound of messages needed.
    const total = messages.reduce((n, m) => n + serializedSize(m), 0);
    assert.ok(messages.length <= 2 * Math.ceil(total / max) + 1, `${messages.length} messages for ${total} bytes at ${max}`);

    const asm = new BatchAssembler();
    let done: ReturnType<BatchAssembler["add"]>;
    for (const m of messages) done = asm.add(m);
    assert.ok(done);
    assert.equal(done.systemVersion, 123456789);
    assert.deepEqual([...done.resources.keys()], rs.map((r) => r.name));
    for (const r of rs) assert.ok(done.resources.get(r.name)?.payload.equals(r.payload), `${r.name} reassembled`);
    assert.deepEqual(done.removed, removed);
  }
});

test("an empty batch is one message", () => {
  const m = packBatch(1, "n", [], [], MIN_MAX_MESSAGE_BYTES);
  assert.equal(m.length, 1);
  assert.equal(m[0]?.partCount, 1);
  assert.ok(new BatchAssembler().add(m[0] as (typeof m)[number]));
});

test("the assembler refuses broken sequences with a reason", () => {
  const messages = packBatch(1, "n1", [resource("a/gw", 100_000)], [], MIN_MAX_MESSAGE_BYTES);
  assert.ok(messages.length > 2);
  const [first, second, third] = messages as [(typeof messages)[number], (typeof messages)[number], (typeof messages)[number]];
  assert.throws(() => new BatchAssembler().add(second), /starts at part 1/);
  let asm = new BatchAssembler();
  asm.add(first);
  assert.throws(() => asm.add(third), /part 2 arrived, expected 1/);
  asm = new BatchAssembler();
  asm.add(first);
  assert.throws(() => asm.add({ ...second, nonce: "other" }), /interrupted by other/);
  asm = new BatchAssembler();
  const chunk = first.resources[0];
  assert.ok(chunk);
  assert.throws(() => asm.add({ ...first, partCount: 1, resources: [chunk] }), /ended inside the chunks of a\/gw/);
  assert.throws(() => new BatchAssembler().add({ ...first, partIndex: 3, partCount: 2 }), /out of range/);
});

test("Maglev tables: base64 of little-endian uint32s, bit for bit", () => {
  const t = new Uint32Array([0, 1, 0xffffffff, 0x80000000, 0x01020304]);
  const b64 = u32ToBase64(t);
  assert.deepEqual([...Buffer.from(b64, "base64").subarray(16)], [4, 3, 2, 1], "little-endian");
  assert.deepEqual(base64ToU32(b64), t);
  // A view into a larger buffer encodes only its own elements.
  const view = new Uint32Array(t.buffer, 4, 2);
  assert.deepEqual(base64ToU32(u32ToBase64(view)), new Uint32Array([1, 0xffffffff]));
  assert.throws(() => base64ToU32(Buffer.from([1, 2, 3]).toString("base64")), /not a whole number/);
});

test("payload checks say what is wrong", () => {
  const ok = { gateway: { gateway: "a/gw", configHash: "h", addresses: [], ports: [], l4: [{ maglev: "" }] }, clusters: [], certificates: [], caBundles: [] };
  const enc = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));
  assert.deepEqual(decodePayload("a/gw", "h", enc(ok)).gateway.l4[0]?.maglev, new Uint32Array(0));
  assert.throws(() => decodePayload("a/gw", "h", Buffer.from("{")), /a\/gw: payload is not JSON/);
  assert.throws(() => decodePayload("b/gw", "h", enc(ok)), /payload is for Gateway a\/gw/);
  assert.throws(() => decodePayload("a/gw", "x", enc(ok)), /configHash h, expected version x/);
  assert.throws(() => decodePayload("a/gw", "h", enc({ ...ok, clusters: {} })), /clusters is not a list/);
  assert.throws(() => decodePayload("a/gw", "h", enc({ ...ok, gateway: { ...ok.gateway, l4: [{ maglev: 5 }] } })), /l4\[0\]\.maglev is not a base64 string/);
  assert.throws(() => decodePayload("a/gw", "h", enc({ ...ok, gateway: { ...ok.gateway, l4: [{ maglev: "AAA=" }] } })), /whole number of uint32s/);
  assert.throws(() => decodePayload("a/gw", "h", enc([])), /no gateway object/);
});
