// The node agent's side of the datapath distribution (see docs/distribution.md): one gRPC
// stream to the operator, authenticated with the agent's ServiceAccount token (or mTLS). It
// tells the server what it holds, receives only what differs, reassembles chunked resources,
// hands the whole DatapathConfig to `apply` and answers ACK (applied) or NACK (rejected: the
// previous configuration stays). Reconnects with exponential backoff and jitter.
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { DatapathConfig } from "../../operator/translate/output.ts";
import {
  BatchAssembler,
  DEFAULT_MAX_MESSAGE_BYTES,
  MIN_MAX_MESSAGE_BYTES,
  STREAM_PATH,
  assembleConfig,
  decodePayload,
  distributionService,
  type AgentMessage,
  type ResourcePayload,
  type ServerMessage,
} from "../../operator/sinks/distributionwire.ts";

export interface DatapathUpdate {
  /** The operator's config version this update brings the agent to. */
  version: number;
  /** Everything the agent holds after this update, reassembled from all its resources. */
  config: DatapathConfig;
  /** Gateways (`namespace/name`) new or changed in this update. */
  changed: string[];
  /** Gateways dropped by this update. */
  removed: string[];
}

export interface SubscribeOptions {
  /** `host:port` of the operator's distribution Service. */
  target: string;
  /** `credentials.createSsl(ca[, key, cert])` in a cluster (mTLS with key and cert); insecure only for loopback tests. */
  credentials: grpc.ChannelCredentials;
  /** The ServiceAccount token, re-read on every (re)connect: projected tokens rotate. Absent with mTLS. */
  token?: () => Promise<string> | string;
  node: string;
  /** Resolve = ACK, reject = NACK (the agent keeps what it had). */
  apply: (update: DatapathUpdate) => Promise<void>;
  log: Logger;
  /** Largest message accepted from the server (default 1 MiB; the server packs under it). */
  maxMessageBytes?: number;
  backoff?: { initialMs?: number; maxMs?: number };
  agentVersion?: string;
  /** Extra channel options (e.g. `grpc.ssl_target_name_override`). */
  channelOptions?: grpc.ChannelOptions;
}

export type SubscriptionStatus = "connecting" | "subscribed" | "backoff" | "closed";

export interface SubscriptionState {
  status: SubscriptionStatus;
  node: string;
  /** The operator config version last applied (0 before the first). */
  version: number;
  /** What is applied: Gateway → configHash. */
  resources: Record<string, string>;
  /** Streams opened so far (1 + reconnects). */
  connects: number;
  /** Batches received since start, applied and rejected. */
  batches: number;
  applied: number;
  rejected: number;
  /** Resources received since start (a chunked resource counts once). */
  resourcesReceived: number;
  lastError?: string;
}

export interface Subscription {
  state(): SubscriptionState;
  close(): Promise<void>;
}

interface Held {
  version: string;
  payload: ResourcePayload;
}

/** Size limit for what the agent sends (its subscribe lists everything it holds). */
const SEND_LIMIT = 16 * 1024 * 1024;

export function subscribe(opts: SubscribeOptions): Subscription {
  const { log, node } = opts;
  const maxBytes = opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  if (!Number.isInteger(maxBytes) || maxBytes < MIN_MAX_MESSAGE_BYTES) throw new Error(`maxMessageBytes must be an integer ≥ ${MIN_MAX_MESSAGE_BYTES}, got ${maxBytes}`);
  if (!node) throw new Error("subscribe needs the node name");
  const initialMs = opts.backoff?.initialMs ?? 500;
  const maxMs = opts.backoff?.maxMs ?? 30_000;
  const method = distributionService()["Stream"];
  if (!method) throw new Error("Distribution.Stream missing from the service definition");

  let held = new Map<string, Held>();
  let version = 0;
  let appliedOnce = false;
  let status: SubscriptionStatus = "connecting";
  let closed = false;
  let lastError: string | undefined;
  const counts = { connects: 0, batches: 0, applied: 0, rejected: 0, resourcesReceived: 0 };
  let current: { client: grpc.Client; call: grpc.ClientDuplexStream<AgentMessage, ServerMessage> } | undefined;
  let wake: (() => void) | undefined;
  let markClosed: () => void = () => undefined;
  const closedSignal = new Promise<void>((r) => (markClosed = r));

  /** Applies one complete batch; answers the message for the server. */
  const process = async (batch: NonNullable<ReturnType<BatchAssembler["add"]>>): Promise<AgentMessage> => {
    counts.batches++;
    counts.resourcesReceived += batch.resources.size;
    const next = new Map(held);
    const changed: string[] = [];
    const applied: Record<string, string> = {};
    try {
      for (const [name, r] of batch.resources) {
        next.set(name, { version: r.version, payload: decodePayload(name, r.version, r.payload) });
        changed.push(name);
        applied[name] = r.version;
      }
    } catch (err) {
      counts.rejected++;
      lastError = (err as Error).message;
      log.warn({ nonce: batch.nonce, error: lastError }, "rejecting a malformed datapath update");
      return { nack: { nonce: batch.nonce, error: lastError } };
    }
    const removed = batch.removed.filter((name) => next.delete(name));
    if (changed.length === 0 && removed.length === 0 && appliedOnce) {
      version = batch.systemVersion;
      return { ack: { nonce: batch.nonce, applied } };
    }
    const sorted = [...next.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const config = assembleConfig(sorted.map(([, h]) => h.payload));
    try {
      await opts.apply({ version: batch.systemVersion, config, changed, removed });
    } catch (err) {
      counts.rejected++;
      lastError = err instanceof Error ? err.message : String(err);
      log.warn({ version: batch.systemVersion, changed, removed, error: lastError }, "datapath update not applied; keeping the previous configuration");
      return { nack: { nonce: batch.nonce, error: lastError || "apply failed" } };
    }
    held = next;
    version = batch.systemVersion;
    appliedOnce = true;
    counts.applied++;
    log.debug({ version, changed: changed.length, removed: removed.length }, "datapath update applied");
    // Acknowledgement lists are informative (the server knows what it sent): very large ones are left out.
    return { ack: { nonce: batch.nonce, applied: changed.length <= 10_000 ? applied : {} } };
  };

  /** One stream, from connect to its end. Answers whether it got as far as receiving a batch. */
  const runStream = async (): Promise<boolean> => {
    const metadata = new grpc.Metadata();
    if (opts.token) {
      const token = (await opts.token()).trim();
      if (!token) throw new Error("the ServiceAccount token is empty");
      metadata.set("authorization", `Bearer ${token}`);
    }
    const client = new grpc.Client(opts.target, opts.credentials, {
      ...opts.channelOptions,
      "grpc.max_receive_message_length": maxBytes,
      "grpc.max_send_message_length": SEND_LIMIT,
      "grpc.keepalive_time_ms": 60_000,
      "grpc.keepalive_timeout_ms": 20_000,
    });
    const call = client.makeBidiStreamRequest<AgentMessage, ServerMessage>(
      STREAM_PATH,
      (m: AgentMessage) => method.requestSerialize(m),
      (b: Buffer) => method.responseDeserialize(b) as ServerMessage,
      metadata,
    );
    current = { client, call };
    counts.connects++;
    const assembler = new BatchAssembler();
    let received = false;
    let ended = false;
    let queue = Promise.resolve();
    const send = (m: AgentMessage): void => {
      if (!ended) call.write(m);
    };
    try {
      await new Promise<void>((resolve) => {
        const finish = (why: string): void => {
          if (ended) return;
          ended = true;
          if (!closed) {
            lastError = why;
            log.warn({ target: opts.target, reason: why }, "datapath stream ended");
          }
          resolve();
        };
        call.on("data", (m: ServerMessage) => {
          let batch: ReturnType<BatchAssembler["add"]>;
          try {
            batch = assembler.add(m);
          } catch (err) {
            // A broken sequence cannot be answered by nonce: start over on a fresh stream.
            call.cancel();
            finish(`protocol error: ${(err as Error).message}`);
            return;
          }
          if (!batch) return;
          status = "subscribed";
          received = true;
          const b = batch;
          queue = queue.then(async () => send(await process(b)));
        });
        call.on("error", (err: grpc.ServiceError) => finish(`${grpc.status[err.code] ?? err.code}: ${err.details || err.message}`));
        call.on("end", () => finish("server closed the stream"));
        const initial: Record<string, string> = {};
        for (const [name, h] of held) initial[name] = h.version;
        send({ subscribe: { node, initialResourceVersions: initial, maxMessageBytes: maxBytes, agentVersion: opts.agentVersion ?? "" } });
      });
      // A reconnect reports what is applied: let an apply in progress finish first (unless closing).
      await Promise.race([queue, closedSignal]);
    } finally {
      current = undefined;
      call.cancel();
      client.close();
    }
    return received;
  };

  const loop = async (): Promise<void> => {
    let attempt = 0;
    while (!closed) {
      status = "connecting";
      let progressed = false;
      try {
        progressed = await runStream();
      } catch (err) {
        lastError = (err as Error).message;
        log.warn({ target: opts.target, err }, "cannot open the datapath stream");
      }
      if (closed) break;
      attempt = progressed ? 0 : attempt + 1;
      // Equal jitter: half fixed, half random, so a fleet of agents spreads out after an operator restart.
      const ceiling = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 20));
      const delay = ceiling / 2 + Math.random() * (ceiling / 2);
      status = "backoff";
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delay);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = undefined;
    }
    status = "closed";
  };
  const running = loop();

  return {
    state: () => ({
      status,
      node,
      version,
      resources: Object.fromEntries([...held].map(([name, h]) => [name, h.version])),
      ...counts,
      ...(lastError !== undefined ? { lastError } : {}),
    }),
    async close() {
      if (closed) return running;
      closed = true;
      markClosed();
      current?.call.cancel();
      wake?.();
      await running;
    },
  };
}
