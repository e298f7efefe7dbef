// The agent's subscription against a scripted gRPC server that speaks the distribution protocol:
// malformed updates are NACKed without touching the datapath, broken part sequences restart the
// stream with what is held, tokens are re-read, reconnects back off.
import assert from "node:assert/strict";
import { test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { subscribe } from "./subscribe.ts";
import { distributionService, encodePayload, packBatch, resourcePayloadOf, sharedIndex, type AgentMessage, type ServerMessage } from "../../operator/sinks/distributionwire.ts";
import { configOf, quietLog, RecordingAgent } from "../../operator/sinks/distributiontestkit.ts";
import { deadPort, randomLoopback, until } from "../proxy/testkit.ts";

const log = quietLog();

interface Scripted {
  target: string;
  /** Streams in arrival order, with what each agent sent. */
  streams: { call: grpc.ServerDuplexStream<AgentMessage, ServerMessage>; received: AgentMessage[]; token: string }[];
  close(): void;
}

/** A gRPC server with the Distribution service whose streams the test drives by hand. */
async function scripted(onStream: (s: Scripted["streams"][number]) => void = () => undefined): Promise<Scripted> {
  const address = randomLoopback();
  const server = new grpc.Server();
  const streams: Scripted["streams"] = [];
  server.addService(distributionService(), {
    Stream: (call: grpc.ServerDuplexStream<AgentMessage, ServerMessage>) => {
      const s = { call, received: [] as AgentMessage[], token: String(call.metadata.get("authorization")[0] ?? "") };
      streams.push(s);
      call.on("data", (m: AgentMessage) => s.received.push(m));
      call.on("error", () => undefined);
      onStream(s);
    },
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync(`${address}:0`, grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  return { target: `${address}:${port}`, streams, close: () => server.forceShutdown() };
}

function batchOf(version: number, nonce: string, specs: Parameters<typeof configOf>[0], removed: string[] = [], max = 1024 * 1024): ServerMessage[] {
  const config = configOf(specs);
  const index = sharedIndex(config);
  return packBatch(version, nonce, config.gateways.map((g) => ({ name: g.gateway, version: g.configHash, payload: encodePayload(resourcePayloadOf(g, index)) })), removed, max);
}

test("a malformed update is NACKed with the reason and never reaches apply; the next good one is applied and ACKed", async () => {
  const srv = await scripted();
  const rec = new RecordingAgent();
  const sub = subscribe({ target: srv.target, credentials: grpc.credentials.createInsecure(), token: () => "t", node: "node-1", apply: rec.apply, log, backoff: { initialMs: 20, maxMs: 100 } });
  try {
    assert.ok(await until(() => srv.streams[0]?.received.length === 1));
    const s = srv.streams[0];
    assert.ok(s);
    assert.equal(s.token, "Bearer t");
    assert.equal(s.received[0]?.subscribe?.node, "node-1");
    assert.deepEqual(s.received[0]?.subscribe?.initialResourceVersions, {});
    assert.equal(s.received[0]?.subscribe?.maxMessageBytes, 1024 * 1024);

    s.call.write({ systemVersion: 1, nonce: "bad-json", partIndex: 0, partCount: 1, resources: [{ name: "a/gw", version: "h", payload: Buffer.from("{"), chunkIndex: 0, chunkCount: 0 }], removed: [] });
    assert.ok(await until(() => s.received.length === 2));
    assert.equal(s.received[1]?.nack?.nonce, "bad-json");
    assert.match(s.received[1]?.nack?.error ?? "", /a\/gw: payload is not JSON/);

    const good = batchOf(2, "good", [{ name: "a/gw" }]);
    for (const m of good) s.call.write(m);
    assert.ok(await until(() => s.received.length === 3));
    assert.equal(s.received[2]?.ack?.nonce, "good");
    assert.deepEqual(Object.keys(s.received[2]?.ack?.applied ?? {}), ["a/gw"]);
    assert.equal(rec.updates.length, 1, "only the good update reached apply");
    assert.equal(sub.state().version, 2);
    assert.equal(sub.state().rejected, 1);
  } finally {
    await sub.close();
    srv.close();
  }
});

test("a broken part sequence restarts the stream, which reports what the agent holds", async () => {
  const srv = await scripted();
  const rec = new RecordingAgent();
  const sub = subscribe({ target: srv.target, credentials: grpc.credentials.createInsecure(), token: () => "t", node: "node-1", apply: rec.apply, log, backoff: { initialMs: 20, maxMs: 100 } });
  try {
    assert.ok(await until(() => srv.streams[0]?.received.length === 1));
    const first = srv.streams[0];
    assert.ok(first);
    const v1 = batchOf(1, "v1", [{ name: "a/gw" }, { name: "b/gw" }]);
    for (const m of v1) first.call.write(m);
    assert.ok(await until(() => first.received.length === 2));
    const held = sub.state().resources;
    assert.equal(Object.keys(held).length, 2);

    // Part 1 of a 2-part batch without part 0: the agent cannot answer it by nonce and starts over.
    const big = batchOf(2, "v2", [{ name: "a/gw", routes: 2000 }], [], 64 * 1024);
    assert.ok(big.length > 1);
    first.call.write(big[1] as ServerMessage);
    assert.ok(await until(() => srv.streams[1]?.received.length === 1, 3000));
    assert.deepEqual(srv.streams[1]?.received[0]?.subscribe?.initialResourceVersions, held);
    assert.match(sub.state().lastError ?? "", /protocol error: batch v2 starts at part 1/);
    assert.equal(rec.updates.length, 1);
  } finally {
    await sub.close();
    srv.close();
  }
});

test("the token is read on every connect; a failing token source is retried", async () => {
  let reads = 0;
  const srv = await scripted((s) => {
    // Refuse every stream: the agent must come back with a fresh token each time.
    setTimeout(() => s.call.emit("error", { code: grpc.status.UNAUTHENTICATED, details: "expired" }), 5);
  });
  const sub = subscribe({
    target: srv.target,
    credentials: grpc.credentials.createInsecure(),
    token: async () => {
      reads++;
      if (reads === 1) throw new Error("token file not mounted yet");
      return `tok-${reads}`;
    },
    node: "node-1",
    apply: async () => undefined,
    log,
    backoff: { initialMs: 10, maxMs: 40 },
  });
  try {
    assert.ok(await until(() => srv.streams.length >= 3, 5000));
    const tokens = srv.streams.map((s) => s.token);
    assert.equal(new Set(tokens).size, tokens.length, `a fresh token per stream: ${tokens.join(", ")}`);
    assert.equal(tokens[0], "Bearer tok-2", "the failed read produced no stream");
    assert.match(sub.state().lastError ?? "", /UNAUTHENTICATED: expired|token file/);
  } finally {
    await sub.close();
    srv.close();
  }
});

test("reconnects back off exponentially (with jitter) while the operator is unreachable", async () => {
  const address = randomLoopback();
  const port = await deadPort(address);
  const sub = subscribe({ target: `${address}:${port}`, credentials: grpc.credentials.createInsecure(), token: () => "t", node: "node-1", apply: async () => undefined, log, backoff: { initialMs: 50, maxMs: 400 } });
  try {
    await new Promise((r) => setTimeout(r, 1200));
    const n = sub.state().connects;
    // Without backoff this would be hundreds; with 50, 100, 200, 400, 400 ms ceilings (half of each fixed) about 4 to 8.
    assert.ok(n >= 3 && n <= 9, `${n} connects in 1.2 s`);
    assert.ok(["backoff", "connecting"].includes(sub.state().status));
  } finally {
    await sub.close();
  }
  assert.equal(sub.state().status, "closed");
});

test("close() returns while an apply is stuck", async () => {
  const srv = await scripted();
  const sub = subscribe({ target: srv.target, credentials: grpc.credentials.createInsecure(), token: () => "t", node: "node-1", apply: () => new Promise<void>(() => undefined), log });
  try {
    assert.ok(await until(() => srv.streams[0]?.received.length === 1));
    for (const m of batchOf(1, "v1", [{ name: "a/gw" }])) srv.streams[0]?.call.write(m);
    assert.ok(await until(() => sub.state().batches === 1));
  } finally {
    await sub.close();
    srv.close();
  }
  assert.equal(sub.state().status, "closed");
});

test("bad options are refused up front", () => {
  const base = { target: "127.0.0.1:1", credentials: grpc.credentials.createInsecure(), node: "n", apply: async () => undefined, log };
  assert.throws(() => subscribe({ ...base, node: "" }), /node name/);
  assert.throws(() => subscribe({ ...base, maxMessageBytes: 100 }), /maxMessageBytes must be an integer ≥ 16384/);
});
