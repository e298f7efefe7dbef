// The datapath publisher: a gRPC server that streams every node agent the datapath of each
// Gateway, Delta-xDS style (see docs/distribution.md). Resources are per Gateway, versioned by
// their configHash; each agent gets only what differs from what it holds, in messages under a
// size bound; its acknowledgements come back as `acks$`, which feeds the store so a Gateway turns
// Programmed only once every connected agent applied its configuration.
import { createHash, randomBytes } from "node:crypto";
import net from "node:net";
import type { PeerCertificate } from "node:tls";
import * as grpc from "@grpc/grpc-js";
import { BehaviorSubject, Subject, type Observable } from "rxjs";
import { Counter, Gauge, Registry } from "prom-client";
import type { Logger } from "pino";
import { AuthenticationV1Api, type KubeConfig } from "@kubernetes/client-node";
import type { DatapathConfig } from "../translate/output.ts";
import {
  DEFAULT_MAX_MESSAGE_BYTES,
  MIN_MAX_MESSAGE_BYTES,
  distributionService,
  encodePayload,
  packBatch,
  resourcePayloadOf,
  sharedIndex,
  type AgentMessage,
  type OutgoingResource,
  type ServerMessage,
} from "./distributionwire.ts";

/** Who an agent is, once authenticated. `node`, when known, binds the credential to one node name. */
export interface AgentIdentity {
  node?: string;
  identity: string;
}

/** Reviews a bearer token: an identity, or undefined when the token is not acceptable. Throws when it cannot tell (API down). */
export type Authenticator = (token: string) => Promise<AgentIdentity | undefined>;

/** Maps a verified client certificate (mTLS) to an identity, or undefined to reject it. */
export type CertificateAuthenticator = (cert: PeerCertificate) => Promise<AgentIdentity | undefined> | AgentIdentity | undefined;

export interface DistributionServerOptions {
  address: string;
  /** 0 picks a free port (see `port` on the result). */
  port: number;
  /** TLS (`ServerCredentials.createSsl`) in a cluster; insecure credentials only bind loopback addresses. */
  credentials: grpc.ServerCredentials;
  /** Bearer token (`authorization: Bearer <ServiceAccount token>`) authentication. */
  authenticate?: Authenticator;
  /**
   * mTLS alternative: used when the agent sends no token and presented a client certificate.
   * The credentials must be `createSsl(ca, pairs, true)` so that the certificate was verified
   * against the CA during the handshake.
   */
  authenticateCertificate?: CertificateAuthenticator;
  /** Upper bound of one serialized message (default 1 MiB); larger resources are chunked. */
  maxMessageBytes?: number;
  log: Logger;
  /** Where the metrics go (default: a registry of its own, see `registry`). */
  registry?: Registry;
}

export interface AgentInfo {
  node: string;
  identity: string;
  peer: string;
  agentVersion: string;
  connectedSince: Date;
  /** The system version of the last acknowledged batch (0 before the first). */
  systemVersion: number;
  /** What the agent has applied: Gateway → configHash. */
  acked: Record<string, string>;
  /** Nonce of the batch awaiting its ACK/NACK. */
  pending?: string;
  messagesSent: number;
  bytesSent: number;
  resourcesSent: number;
  acks: number;
  nacks: number;
  lastNack?: string;
}

export interface NackEvent {
  node: string;
  systemVersion: number;
  /** The rejected batch: name → version (undefined = removal). */
  resources: Record<string, string | null>;
  error: string;
}

export interface DistributionServer {
  /** The bound port. */
  readonly port: number;
  /** The new desired datapath: every agent gets what differs from what it holds. */
  publish(version: number, config: DatapathConfig): void;
  /** Gateway → configHash applied by every currently connected agent (empty with no agent). */
  readonly acks$: Observable<ReadonlyMap<string, string>>;
  /** Rejected batches, for logs and Kubernetes Events. */
  readonly nacks$: Observable<NackEvent>;
  agents(): AgentInfo[];
  /** A standby replica (not the leader) closes its streams and refuses new ones, so agents land on the leader. */
  setActive(active: boolean): void;
  readonly registry: Registry;
  close(): Promise<void>;
}

interface Desired {
  version: string;
  payload: Buffer;
}

interface Batch {
  nonce: string;
  systemVersion: number;
  /** name → version, null for a removal. */
  entries: Map<string, string | null>;
}

class StreamEnded extends Error {}

function isLoopback(address: string): boolean {
  if (address === "localhost") return true;
  if (net.isIPv4(address)) return address.startsWith("127.");
  return address === "::1" || address === "[::1]";
}

export async function startDistributionServer(opts: DistributionServerOptions): Promise<DistributionServer> {
  const { log } = opts;
  const maxBytes = opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  if (!Number.isInteger(maxBytes) || maxBytes < MIN_MAX_MESSAGE_BYTES) throw new Error(`maxMessageBytes must be an integer ≥ ${MIN_MAX_MESSAGE_BYTES}, got ${maxBytes}`);
  if (!opts.credentials._isSecure() && !isLoopback(opts.address)) {
    throw new Error(`the distribution server on ${opts.address} needs TLS credentials: insecure is only allowed on loopback`);
  }
  if (!opts.authenticate && !opts.authenticateCertificate) throw new Error("the distribution server needs a token or certificate authenticator");

  const registry = opts.registry ?? new Registry();
  const metrics = {
    agents: new Gauge({ name: "sluice_distribution_agents", help: "Node agents subscribed to the datapath stream", registers: [registry] }),
    resources: new Gauge({ name: "sluice_distribution_resources", help: "Gateway resources in the published datapath", registers: [registry] }),
    messages: new Counter({ name: "sluice_distribution_messages_sent_total", help: "Messages sent to agents", registers: [registry] }),
    bytes: new Counter({ name: "sluice_distribution_bytes_sent_total", help: "Serialized bytes sent to agents", registers: [registry] }),
    resourcesSent: new Counter({ name: "sluice_distribution_resources_sent_total", help: "Resources (or chunks) sent to agents", registers: [registry] }),
    acks: new Counter({ name: "sluice_distribution_acks_total", help: "Batches acknowledged by agents", registers: [registry] }),
    nacks: new Counter({ name: "sluice_distribution_nacks_total", help: "Batches rejected by agents", registers: [registry] }),
    authFailures: new Counter({ name: "sluice_distribution_auth_failures_total", help: "Streams refused for lack of valid credentials", labelNames: ["reason"], registers: [registry] }),
  };

  const acks$ = new BehaviorSubject<ReadonlyMap<string, string>>(new Map());
  const nacks$ = new Subject<NackEvent>();
  let desired: Map<string, Desired> | undefined;
  let systemVersion = 0;
  let active = true;
  let closed = false;
  const sessions = new Map<string, Session>();
  const streams = new Set<Session>();

  // How many subscribed agents hold each (Gateway, version): a Gateway is acknowledged when one
  // version is held by all of them. Kept incrementally so that an ACK costs O(Gateways), not
  // O(agents × Gateways), and emitted once per tick however many ACKs arrived in it.
  const holders = new Map<string, Map<string, number>>();
  const count = (name: string, version: string, delta: number): void => {
    let versions = holders.get(name);
    if (!versions) holders.set(name, (versions = new Map()));
    const n = (versions.get(version) ?? 0) + delta;
    if (n > 0) versions.set(version, n);
    else {
      versions.delete(version);
      if (versions.size === 0) holders.delete(name);
    }
  };
  let acksScheduled = false;
  const recomputeAcks = (): void => {
    if (acksScheduled) return;
    acksScheduled = true;
    queueMicrotask(() => {
      acksScheduled = false;
      if (closed) return;
      const next = new Map<string, string>();
      const agents = sessions.size;
      if (agents > 0) {
        for (const [name, versions] of holders) {
          for (const [version, n] of versions) if (n === agents) next.set(name, version);
        }
      }
      const prev = acks$.getValue();
      if (prev.size === next.size && [...next].every(([k, v]) => prev.get(k) === v)) return;
      acks$.next(next);
    });
  };

  class Session {
    readonly call: grpc.ServerDuplexStream<AgentMessage, Buffer>;
    readonly peer: string;
    readonly connectedSince = new Date();
    identity: AgentIdentity | undefined;
    node = "";
    agentVersion = "";
    maxBytes = maxBytes;
    /** What the agent has applied: name → version. Change it only through hold()/drop(). */
    readonly held = new Map<string, string>();
    /** Whether this session counts in `holders` (subscribed and not replaced or ended). */
    counted = false;
    /** Versions the agent rejected: not resent until the desired version changes. */
    rejected = new Map<string, string | null>();
    inflight: Batch | undefined;
    sending = false;
    synced = false;
    ackedSystemVersion = 0;
    seq = 0;
    ended = false;
    private queue: Promise<void> = Promise.resolve();
    private readonly endWaiters = new Set<() => void>();
    stats = { messagesSent: 0, bytesSent: 0, resourcesSent: 0, acks: 0, nacks: 0, lastNack: undefined as string | undefined };

    constructor(call: grpc.ServerDuplexStream<AgentMessage, Buffer>) {
      this.call = call;
      this.peer = call.getPeer();
    }

    /** Runs message handlers one at a time, in arrival order. */
    enqueue(fn: () => Promise<void> | void): void {
      this.queue = this.queue.then(fn).catch((err: unknown) => {
        if (err instanceof StreamEnded) return;
        log.error({ err, node: this.node, peer: this.peer }, "distribution stream handler failed");
        this.fail(grpc.status.INTERNAL, (err as Error).message);
      });
    }

    /** Ends the stream with a status; the agent reconnects (with backoff) on its own. */
    fail(code: grpc.status, details: string): void {
      if (this.ended) return;
      this.call.emit("error", { code, details });
      this.cleanup();
    }

    cleanup(): void {
      if (this.ended) return;
      this.ended = true;
      streams.delete(this);
      for (const w of this.endWaiters) w();
      this.endWaiters.clear();
      if (this.node && sessions.get(this.node) === this) {
        sessions.delete(this.node);
        this.uncount();
        metrics.agents.set(sessions.size);
        log.info({ node: this.node, peer: this.peer }, "agent disconnected");
        recomputeAcks();
      }
    }

    handle(msg: AgentMessage): void {
      if (this.ended) return;
      if (!this.node) {
        const sub = msg.subscribe;
        if (msg.kind !== "subscribe" || !sub) return this.fail(grpc.status.INVALID_ARGUMENT, "the first message must be a subscribe");
        this.subscribe(sub.node, sub.initialResourceVersions, sub.maxMessageBytes, sub.agentVersion);
        return;
      }
      if (msg.kind === "ack" && msg.ack) this.ack(msg.ack.nonce, msg.ack.applied);
      else if (msg.kind === "nack" && msg.nack) this.nack(msg.nack.nonce, msg.nack.error);
      else this.fail(grpc.status.INVALID_ARGUMENT, "expected an ack or a nack");
    }

    subscribe(node: string, initial: Record<string, string>, agentMax: number, agentVersion: string): void {
      if (!node || node.length > 253) return this.fail(grpc.status.INVALID_ARGUMENT, "subscribe needs the node name (1 to 253 characters)");
      const id = this.identity as AgentIdentity;
      if (id.node !== undefined && id.node !== node) {
        metrics.authFailures.inc({ reason: "node-mismatch" });
        return this.fail(grpc.status.PERMISSION_DENIED, `credentials of ${id.identity} are bound to node ${id.node}, not ${node}`);
      }
      if (agentMax !== 0 && agentMax < MIN_MAX_MESSAGE_BYTES) return this.fail(grpc.status.INVALID_ARGUMENT, `max_message_bytes ${agentMax} is below ${MIN_MAX_MESSAGE_BYTES}`);
      this.maxBytes = agentMax ? Math.min(maxBytes, agentMax) : maxBytes;
      this.node = node;
      this.agentVersion = agentVersion;
      for (const [name, version] of Object.entries(initial)) if (name && version) this.held.set(name, version);
      // The agent reports these as applied (it persists nothing else): they count as acknowledged.
      const previous = sessions.get(node);
      // A reconnecting agent may arrive before its old stream timed out: the newest stream wins.
      if (previous && previous !== this) previous.fail(grpc.status.ABORTED, "replaced by a newer stream from the same node");
      sessions.set(node, this);
      this.counted = true;
      for (const [name, version] of this.held) count(name, version, 1);
      metrics.agents.set(sessions.size);
      log.info({ node, identity: id.identity, peer: this.peer, holds: this.held.size }, "agent subscribed");
      recomputeAcks();
      this.pump();
    }

    ack(nonce: string, applied: Record<string, string>): void {
      const batch = this.inflight;
      if (!batch || batch.nonce !== nonce) {
        log.debug({ node: this.node, nonce }, "ACK for a batch that is not in flight (ignored)");
        return;
      }
      this.inflight = undefined;
      for (const [name, version] of batch.entries) {
        if (version === null) this.drop(name);
        else {
          if (applied[name] !== undefined && applied[name] !== version) log.warn({ node: this.node, name, sent: version, applied: applied[name] }, "agent acknowledged a different version than sent");
          this.hold(name, version);
        }
        this.rejected.delete(name);
      }
      this.ackedSystemVersion = batch.systemVersion;
      this.stats.acks++;
      metrics.acks.inc();
      recomputeAcks();
      this.pump();
    }

    nack(nonce: string, error: string): void {
      const batch = this.inflight;
      if (!batch || batch.nonce !== nonce) {
        log.debug({ node: this.node, nonce }, "NACK for a batch that is not in flight (ignored)");
        return;
      }
      this.inflight = undefined;
      for (const [name, version] of batch.entries) this.rejected.set(name, version);
      this.stats.nacks++;
      this.stats.lastNack = error;
      metrics.nacks.inc();
      log.warn({ node: this.node, systemVersion: batch.systemVersion, resources: [...batch.entries.keys()], error }, "agent rejected the datapath update (it keeps its previous configuration)");
      nacks$.next({ node: this.node, systemVersion: batch.systemVersion, resources: Object.fromEntries(batch.entries), error });
      this.pump();
    }

    private hold(name: string, version: string): void {
      const prev = this.held.get(name);
      if (prev === version) return;
      if (this.counted) {
        if (prev !== undefined) count(name, prev, -1);
        count(name, version, 1);
      }
      this.held.set(name, version);
    }

    private drop(name: string): void {
      const prev = this.held.get(name);
      if (prev === undefined) return;
      if (this.counted) count(name, prev, -1);
      this.held.delete(name);
    }

    private uncount(): void {
      if (!this.counted) return;
      this.counted = false;
      for (const [name, version] of this.held) count(name, version, -1);
    }

    /** Sends the next batch when nothing is in flight: what differs between desired and held, minus what was rejected. */
    pump(): void {
      if (this.ended || !this.node || this.inflight || this.sending || !desired) return;
      const want = desired;
      const changed: OutgoingResource[] = [];
      const removed: string[] = [];
      for (const [name, d] of want) {
        if (this.held.get(name) === d.version || this.rejected.get(name) === d.version) continue;
        changed.push({ name, version: d.version, payload: d.payload });
      }
      for (const name of this.held.keys()) {
        if (!want.has(name) && !(this.rejected.has(name) && this.rejected.get(name) === null)) removed.push(name);
      }
      if (this.synced && changed.length === 0 && removed.length === 0) return;
      this.synced = true;
      changed.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      removed.sort();
      const nonce = `${++this.seq}-${randomBytes(4).toString("hex")}`;
      const batch: Batch = { nonce, systemVersion, entries: new Map() };
      for (const r of changed) batch.entries.set(r.name, r.version);
      for (const name of removed) batch.entries.set(name, null);
      this.inflight = batch;
      const messages = packBatch(systemVersion, nonce, changed, removed, this.maxBytes);
      this.sending = true;
      this.enqueue(async () => {
        try {
          await this.send(messages);
        } finally {
          this.sending = false;
        }
      });
    }

    private async send(messages: ServerMessage[]): Promise<void> {
      for (const m of messages) {
        if (this.ended) throw new StreamEnded();
        const bytes = serialize(m);
        this.stats.messagesSent++;
        this.stats.bytesSent += bytes.length;
        this.stats.resourcesSent += m.resources.length;
        metrics.messages.inc();
        metrics.bytes.inc(bytes.length);
        metrics.resourcesSent.inc(m.resources.length);
        if (!this.call.write(bytes)) await this.drained();
      }
      log.debug({ node: this.node, nonce: messages[0]?.nonce, parts: messages.length }, "batch sent");
    }

    private drained(): Promise<void> {
      return new Promise((resolve) => {
        const done = (): void => {
          this.call.off("drain", done);
          this.endWaiters.delete(done);
          resolve();
        };
        this.call.once("drain", done);
        this.endWaiters.add(done);
      });
    }

    info(): AgentInfo {
      return {
        node: this.node,
        identity: this.identity?.identity ?? "",
        peer: this.peer,
        agentVersion: this.agentVersion,
        connectedSince: this.connectedSince,
        systemVersion: this.ackedSystemVersion,
        acked: Object.fromEntries(this.held),
        ...(this.inflight ? { pending: this.inflight.nonce } : {}),
        messagesSent: this.stats.messagesSent,
        bytesSent: this.stats.bytesSent,
        resourcesSent: this.stats.resourcesSent,
        acks: this.stats.acks,
        nacks: this.stats.nacks,
        ...(this.stats.lastNack !== undefined ? { lastNack: this.stats.lastNack } : {}),
      };
    }
  }

  const authenticateCall = async (call: grpc.ServerDuplexStream<AgentMessage, Buffer>): Promise<{ ok: AgentIdentity } | { code: grpc.status; reason: string }> => {
    const header = call.metadata.get("authorization")[0];
    if (typeof header === "string" && header.length > 0) {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
      if (!m) return { code: grpc.status.UNAUTHENTICATED, reason: "authorization metadata is not `Bearer <token>`" };
      if (!opts.authenticate) return { code: grpc.status.UNAUTHENTICATED, reason: "token authentication is not enabled on this server" };
      try {
        const id = await opts.authenticate(m[1] as string);
        return id ? { ok: id } : { code: grpc.status.UNAUTHENTICATED, reason: "token rejected" };
      } catch (err) {
        log.warn({ err, peer: call.getPeer() }, "cannot review an agent token");
        return { code: grpc.status.UNAVAILABLE, reason: `cannot review the token: ${(err as Error).message}` };
      }
    }
    const cert = call.getAuthContext().sslPeerCertificate;
    if (cert && Object.keys(cert).length > 0 && opts.authenticateCertificate) {
      try {
        const id = await opts.authenticateCertificate(cert);
        return id ? { ok: id } : { code: grpc.status.UNAUTHENTICATED, reason: "client certificate not allowed" };
      } catch (err) {
        return { code: grpc.status.UNAVAILABLE, reason: `cannot check the client certificate: ${(err as Error).message}` };
      }
    }
    return { code: grpc.status.UNAUTHENTICATED, reason: "no credentials: send `authorization: Bearer <token>` or a client certificate" };
  };

  const handler = (call: grpc.ServerDuplexStream<AgentMessage, Buffer>): void => {
    const session = new Session(call);
    if (!active || closed) {
      session.fail(grpc.status.UNAVAILABLE, closed ? "the server is shutting down" : "this operator replica is on standby; reconnect to the leader");
      return;
    }
    streams.add(session);
    call.on("error", () => session.cleanup());
    call.on("cancelled", () => session.cleanup());
    call.on("close", () => session.cleanup());
    call.on("end", () => {
      // The agent half-closed: finish our side too.
      if (!session.ended) call.end();
      session.cleanup();
    });
    const authenticated = authenticateCall(call);
    session.enqueue(async () => {
      const result = await authenticated;
      if ("code" in result) {
        metrics.authFailures.inc({ reason: result.code === grpc.status.UNAVAILABLE ? "review-failed" : "rejected" });
        log.warn({ peer: session.peer, reason: result.reason }, "agent stream refused");
        session.fail(result.code, result.reason);
        return;
      }
      session.identity = result.ok;
    });
    call.on("data", (msg: AgentMessage) => session.enqueue(() => session.handle(msg)));
  };

  // The handler writes already-serialized messages: each is serialized once, and its exact size
  // is what the metrics count.
  const base = distributionService();
  const stream = base["Stream"];
  if (!stream) throw new Error("Distribution.Stream missing from the service definition");
  const serialize = (m: ServerMessage): Buffer => stream.responseSerialize(m);
  const service: grpc.ServiceDefinition = { Stream: { ...stream, responseSerialize: (b: Buffer) => b } };

  const server = new grpc.Server({
    "grpc.max_send_message_length": maxBytes,
    // What agents send is small except a subscribe listing everything an agent holds.
    "grpc.max_receive_message_length": Math.max(maxBytes, 16 * 1024 * 1024),
    // Finds agents that vanished without closing (node lost): their acknowledgements must stop counting.
    "grpc.keepalive_time_ms": 30_000,
    "grpc.keepalive_timeout_ms": 10_000,
  });
  server.addService(service, { Stream: handler });
  const bindHost = net.isIPv6(opts.address) ? `[${opts.address}]` : opts.address;
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${bindHost}:${opts.port}`, opts.credentials, (err, p) => (err ? reject(err) : resolve(p)));
  });
  log.info({ address: opts.address, port, maxMessageBytes: maxBytes, tls: opts.credentials._isSecure() }, "datapath distribution listening");

  return {
    port,
    acks$: acks$.asObservable(),
    nacks$: nacks$.asObservable(),
    registry,
    publish(version: number, config: DatapathConfig): void {
      if (closed) return;
      const index = sharedIndex(config);
      const next = new Map<string, Desired>();
      for (const gw of config.gateways) {
        if (next.has(gw.gateway)) {
          log.warn({ gateway: gw.gateway }, "the datapath names a Gateway twice; the last one is distributed");
        }
        const prev = desired?.get(gw.gateway);
        // Same configHash, same content: the encoded payload is reused.
        const payload = prev && prev.version === gw.configHash ? prev.payload : encodePayload(resourcePayloadOf(gw, index));
        next.set(gw.gateway, { version: gw.configHash, payload });
      }
      desired = next;
      systemVersion = version;
      metrics.resources.set(next.size);
      for (const s of sessions.values()) s.pump();
    },
    agents: () => [...sessions.values()].map((s) => s.info()).sort((a, b) => (a.node < b.node ? -1 : 1)),
    setActive(value: boolean): void {
      if (active === value) return;
      active = value;
      if (!value) for (const s of [...streams]) s.fail(grpc.status.UNAVAILABLE, "this operator replica is on standby; reconnect to the leader");
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      for (const s of [...streams]) s.fail(grpc.status.UNAVAILABLE, "the server is shutting down");
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 1000);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      acks$.next(new Map());
      acks$.complete();
      nacks$.complete();
    },
  };
}

// ---- authenticators ----

export interface TokenReviewOptions {
  /** Usernames allowed, e.g. `system:serviceaccount:sluice-system:sluice-agent`. */
  allowed: string[];
  /** Audiences the token must be valid for (the projected token's audience). */
  audiences?: string[];
  /** How long a positive review is reused (reconnect storms must not flood the API server); default 60 s. */
  cacheMs?: number;
}

/** The node a bound ServiceAccount token was issued on (Kubernetes ≥ 1.30 puts it in the user's extra). */
const NODE_NAME_EXTRA = "authentication.kubernetes.io/node-name";

/** Bearer tokens checked with a TokenReview against the API server. */
export function tokenReviewAuthenticator(kubeConfig: KubeConfig, opts: TokenReviewOptions): Authenticator {
  const api = kubeConfig.makeApiClient(AuthenticationV1Api);
  const allowed = new Set(opts.allowed);
  const cacheMs = opts.cacheMs ?? 60_000;
  const cache = new Map<string, { until: number; id: AgentIdentity }>();
  return async (token: string) => {
    const key = createHash("sha256").update(token).digest("hex");
    const now = Date.now();
    const hit = cache.get(key);
    if (hit && hit.until > now) return hit.id;
    const review = await api.createTokenReview({
      body: { apiVersion: "authentication.k8s.io/v1", kind: "TokenReview", spec: { token, ...(opts.audiences ? { audiences: opts.audiences } : {}) } },
    });
    const st = review.status;
    const username = st?.user?.username;
    if (!st?.authenticated || !username || !allowed.has(username)) return undefined;
    const node = st.user?.extra?.[NODE_NAME_EXTRA]?.[0];
    const id: AgentIdentity = node ? { identity: username, node } : { identity: username };
    for (const [k, v] of cache) if (v.until <= now) cache.delete(k);
    cache.set(key, { until: now + cacheMs, id });
    return id;
  };
}

/** mTLS: accepts verified client certificates whose subject CN is listed; the identity is the CN. */
export function certificateAuthenticator(opts: { allowedSubjects: string[] }): CertificateAuthenticator {
  const allowed = new Set(opts.allowedSubjects);
  return (cert) => {
    const cn = cert.subject?.CN;
    const name = Array.isArray(cn) ? cn[0] : cn;
    return name && allowed.has(name) ? { identity: name } : undefined;
  };
}
