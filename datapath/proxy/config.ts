// What the proxy serves: the translator's datapath state, reduced to the sockets this process
// binds. Plain data, so it crosses the worker IPC channel as JSON unchanged.
import type { CaBundle, Cluster, DatapathConfig, L7Listener, TlsCertificate } from "../../operator/translate/output.ts";
import { compareHostnameSpecificity } from "../../operator/translate/hostname.ts";

export interface Binding {
  /** `address:port`, the socket this binding listens on. */
  key: string;
  address: string;
  port: number;
  /** The Gateway listener port (before any offset): redirects and X-Forwarded-Port speak of it. */
  gatewayPort: number;
  /** Listeners of every Gateway served on this socket, most specific hostname first. */
  listeners: L7Listener[];
  /**
   * PROXY protocol headers before connections: "required" when every Gateway on the socket has a
   * load balancer that sends them, "optional" when only some do (a connection may or may not
   * start with one). Absent: never read, so no client can claim another's address.
   */
  proxyProtocol?: "required" | "optional";
}

export interface ProxyConfig {
  /** Monotonic per source; what the proxy reports as applied. */
  version: number;
  bindings: Binding[];
  clusters: Cluster[];
  certificates: TlsCertificate[];
  caBundles: CaBundle[];
  /** Gateway key → configHash of the Gateways this config carries (for acknowledgements). */
  gateways: Record<string, string>;
}

export interface BindOptions {
  /** Added to every listener port (standalone mode runs unprivileged on high ports). */
  portOffset?: number;
  /**
   * Bind every Gateway here instead of on its own addresses: a node proxy in a cluster, whose
   * Gateways' addresses are the load balancer's and whose traffic arrives on the node's own.
   */
  address?: string;
}

export function bindKey(address: string, port: number): string {
  return address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`;
}

/**
 * Every (address, port) of every Gateway becomes one binding. Gateways that share an address
 * and port share the socket: their listeners are merged and isolated by hostname, as on a node
 * proxy that serves many Gateways.
 */
export function proxyConfigFrom(dp: DatapathConfig, version: number, opts: BindOptions = {}): ProxyConfig {
  const offset = opts.portOffset ?? 0;
  const bindings = new Map<string, Binding>();
  const gateways: Record<string, string> = {};
  // Per socket, how many of its Gateways expect PROXY headers, of how many.
  const proxied = new Map<string, { with: number; of: number }>();
  for (const gw of dp.gateways) {
    gateways[gw.gateway] = gw.configHash;
    for (const address of opts.address !== undefined ? [opts.address] : gw.addresses) {
      for (const p of gw.ports) {
        const port = p.port + offset;
        const key = bindKey(address, port);
        const b = bindings.get(key);
        if (b) b.listeners.push(...p.listeners);
        else bindings.set(key, { key, address, port, gatewayPort: p.port, listeners: [...p.listeners] });
        const count = proxied.get(key) ?? { with: 0, of: 0 };
        count.of++;
        if (gw.proxyProtocol) count.with++;
        proxied.set(key, count);
      }
    }
  }
  for (const [key, c] of proxied) {
    const b = bindings.get(key);
    if (b && c.with > 0) b.proxyProtocol = c.with === c.of ? "required" : "optional";
  }
  // Stable sort: on equal hostnames the earlier Gateway (translator order) keeps precedence.
  for (const b of bindings.values()) b.listeners.sort((a, b2) => compareHostnameSpecificity(a.hostname ?? "*", b2.hostname ?? "*"));
  return {
    version,
    bindings: [...bindings.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)),
    clusters: dp.clusters,
    certificates: dp.certificates,
    caBundles: dp.caBundles,
    gateways,
  };
}
