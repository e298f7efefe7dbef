// Backend clusters at run time: endpoints with pooled keep-alive connections (undici), round-robin
// choice, passive ejection of failing endpoints, and TLS to backends per BackendTLSPolicy.
// Endpoint state (pool, failure counts) survives config updates that keep the endpoint, so an
// update neither drops pooled connections nor forgets an ejection.
import { Pool, type Dispatcher } from "undici";
import { checkServerIdentity } from "node:tls";
import type { PeerCertificate } from "node:tls";
import type { Cluster, TlsCertificate } from "../../operator/translate/output.ts";

/** Consecutive failures (connect errors, 502/503/504) that eject an endpoint. */
const EJECT_AFTER = 5;
const EJECT_BASE_MS = 10_000;
const EJECT_MAX_MS = 300_000;

export type Wire = "http1" | "h2c" | "h2";

export interface Endpoint {
  /** Pool identity: wire protocol, TLS settings and address. */
  key: string;
  host: string;
  port: number;
  wire: Wire;
  tls: boolean;
  pool: Pool;
  failures: number;
  ejections: number;
  ejectedUntil: number;
  /** Only for raw connections (WebSocket, TLSRoute terminate): what tls.connect needs. */
  connectTls?: TlsConnect;
}

export interface TlsConnect {
  servername: string;
  ca?: string[];
  cert?: string;
  key?: string;
  checkServerIdentity: (host: string, cert: PeerCertificate) => Error | undefined;
  ALPNProtocols?: string[];
}

export class ClusterRuntime {
  readonly cluster: Cluster;
  private endpoints: Endpoint[];
  private next = 0;

  constructor(cluster: Cluster, endpoints: Endpoint[]) {
    this.cluster = cluster;
    this.endpoints = endpoints;
  }

  get size(): number {
    return this.endpoints.length;
  }

  /**
   * Round robin over ready endpoints, skipping ejected ones unless every endpoint is ejected
   * (then the least recently ejected serves: failing open beats answering 503 to everyone).
   */
  pick(now: number, avoid?: Endpoint): Endpoint | undefined {
    const n = this.endpoints.length;
    if (n === 0) return undefined;
    for (let i = 0; i < n; i++) {
      const ep = this.endpoints[(this.next + i) % n] as Endpoint;
      if (ep.ejectedUntil > now || (ep === avoid && n > 1)) continue;
      this.next = (this.next + i + 1) % n;
      return ep;
    }
    let best = this.endpoints[0] as Endpoint;
    for (const ep of this.endpoints) if (ep.ejectedUntil < best.ejectedUntil) best = ep;
    return best;
  }
}

export function recordResult(ep: Endpoint, ok: boolean, now: number): void {
  if (ok) {
    ep.failures = 0;
    return;
  }
  ep.failures++;
  if (ep.failures >= EJECT_AFTER) {
    ep.ejections++;
    ep.ejectedUntil = now + Math.min(EJECT_BASE_MS * ep.ejections, EJECT_MAX_MS);
    ep.failures = 0;
  }
}

/**
 * The largest response head a backend may send, as Envoy's default (60 KiB) allows; undici's
 * own default (Node's 16 KiB) turned 20 KB of cookies into a 502.
 */
export const MAX_RESPONSE_HEAD_BYTES = 64 * 1024;

export interface UpstreamOptions {
  connectionsPerEndpoint?: number;
  connectTimeoutMs?: number;
  keepAliveTimeoutMs?: number;
}

export class Upstreams {
  private endpoints = new Map<string, Endpoint>();
  private clusters = new Map<string, ClusterRuntime>();
  /** gRPC always goes over HTTP/2: a GRPCRoute backend without an h2 appProtocol is dialled with h2c. */
  private grpcClusters = new Map<string, ClusterRuntime>();
  private opts: Required<UpstreamOptions>;

  constructor(opts: UpstreamOptions = {}) {
    this.opts = {
      connectionsPerEndpoint: opts.connectionsPerEndpoint ?? 128,
      connectTimeoutMs: opts.connectTimeoutMs ?? 5_000,
      keepAliveTimeoutMs: opts.keepAliveTimeoutMs ?? 30_000,
    };
  }

  cluster(id: string, grpc: boolean): ClusterRuntime | undefined {
    return (grpc ? this.grpcClusters : this.clusters).get(id);
  }

  /** Installs the clusters of a new config; pools no longer used are closed after their in-flight requests. */
  apply(clusters: readonly Cluster[], certificates: ReadonlyMap<string, TlsCertificate>): void {
    const used = new Map<string, Endpoint>();
    const build = (c: Cluster, wire: Wire): ClusterRuntime => {
      const eps: Endpoint[] = [];
      const tls = c.tls ? tlsConnectOf(c, certificates) : undefined;
      const targets = c.externalName
        ? [{ host: c.externalName, port: c.service.port }]
        : c.endpoints.filter((e) => e.ready).map((e) => ({ host: e.address, port: e.port }));
      for (const t of targets) {
        const key = `${wire}|${tls ? JSON.stringify({ ...tls, checkServerIdentity: undefined, san: c.tls?.subjectAltNames }) : "plain"}|${t.host}|${t.port}`;
        let ep = used.get(key) ?? this.endpoints.get(key);
        if (!ep) ep = this.newEndpoint(key, t.host, t.port, wire, tls);
        used.set(key, ep);
        eps.push(ep);
      }
      return new ClusterRuntime(c, eps);
    };
    const next = new Map<string, ClusterRuntime>();
    const nextGrpc = new Map<string, ClusterRuntime>();
    for (const c of clusters) {
      const wire = wireOf(c);
      next.set(c.id, build(c, wire));
      nextGrpc.set(c.id, wire === "http1" ? build(c, c.tls ? "h2" : "h2c") : (next.get(c.id) as ClusterRuntime));
    }
    for (const [key, ep] of this.endpoints) if (!used.has(key)) void ep.pool.close().catch(() => undefined);
    this.endpoints = used;
    this.clusters = next;
    this.grpcClusters = nextGrpc;
  }

  /** Called once the proxy's clients are gone: what is still in flight (a stuck mirror) has no one to answer, so it is cut. */
  async close(): Promise<void> {
    await Promise.all([...this.endpoints.values()].map((ep) => ep.pool.destroy().catch(() => undefined)));
    this.endpoints.clear();
  }

  private newEndpoint(key: string, host: string, port: number, wire: Wire, tls: TlsConnect | undefined): Endpoint {
    const hostPart = host.includes(":") ? `[${host}]` : host;
    const origin = `${tls ? "https" : "http"}://${hostPart}:${port}`;
    const pool = new (tls?.servername ? sniPool(tls.servername) : Pool)(origin, {
      connections: wire === "http1" ? this.opts.connectionsPerEndpoint : 4,
      pipelining: 1,
      maxHeaderSize: MAX_RESPONSE_HEAD_BYTES,
      keepAliveTimeout: this.opts.keepAliveTimeoutMs,
      keepAliveMaxTimeout: this.opts.keepAliveTimeoutMs * 2,
      // The proxy enforces its own request timeouts; undici's defaults would cut long streams.
      headersTimeout: 0,
      bodyTimeout: 0,
      allowH2: wire !== "http1",
      ...(wire === "h2c" ? { useH2c: true } : {}),
      connect: {
        timeout: this.opts.connectTimeoutMs,
        ...(tls
          ? {
              servername: tls.servername || undefined,
              ...(tls.ca ? { ca: tls.ca } : {}),
              ...(tls.cert && tls.key ? { cert: tls.cert, key: tls.key } : {}),
              checkServerIdentity: tls.checkServerIdentity,
              ALPNProtocols: wire === "h2" ? ["h2", "http/1.1"] : ["http/1.1"],
            }
          : {}),
      },
    });
    // A pool emits 'connectionError'/'disconnect'; requests see the failure themselves.
    pool.on("connectionError", () => undefined);
    pool.on("disconnect", () => undefined);
    const ep: Endpoint = { key, host, port, wire, tls: tls !== undefined, pool, failures: 0, ejections: 0, ejectedUntil: 0 };
    if (tls) ep.connectTls = tls;
    return ep;
  }
}

/**
 * A Pool that always sends the BackendTLSPolicy's SNI. undici otherwise takes each request's SNI
 * from its Host header, and reconnects whenever two requests' Host headers differ.
 */
function sniPool(servername: string): typeof Pool {
  return class extends Pool {
    override dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
      return super.dispatch({ ...opts, servername } as Dispatcher.DispatchOptions, handler);
    }
  };
}

function wireOf(c: Cluster): Wire {
  if (c.protocol === "h2") return "h2";
  if (c.protocol === "h2c") return c.tls ? "h2" : "h2c";
  return "http1";
}

/** BackendTLSPolicy → connect options: the policy's SNI, its CAs, and its SAN list (or the SNI) as identity. */
export function tlsConnectOf(c: Cluster, certificates: ReadonlyMap<string, TlsCertificate>): TlsConnect {
  const t = c.tls;
  if (!t) throw new Error(`cluster ${c.id} has no TLS settings`);
  const client = t.clientCertificate ? certificates.get(t.clientCertificate) : undefined;
  const sans = t.subjectAltNames;
  const out: TlsConnect = {
    servername: t.sni,
    checkServerIdentity: (_host, cert) => {
      if (sans.length === 0) return checkServerIdentity(t.sni, cert);
      const names = (cert.subjectaltname ?? "").split(/,\s*/);
      for (const s of sans) {
        if (s.type === "URI" && names.includes(`URI:${s.value}`)) return undefined;
        if (s.type === "Hostname" && checkServerIdentity(s.value, cert) === undefined) return undefined;
      }
      return new Error(`backend certificate matches none of the subjectAltNames ${sans.map((s) => s.value).join(", ")}`);
    },
  };
  if (t.caCertificates !== "System") out.ca = t.caCertificates;
  if (client) {
    out.cert = client.cert;
    out.key = client.key;
  }
  return out;
}
