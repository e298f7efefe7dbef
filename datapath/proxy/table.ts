// A ProxyConfig compiled for serving: per socket, the plaintext and TLS listener sets and each
// TLS listener's certificates. Immutable once built; the proxy swaps the whole table at once.
import type { CaBundle, L7Listener, L7Port, TlsCertificate } from "../../operator/translate/output.ts";
import type { Binding, ProxyConfig } from "./config.ts";
import type { ListenerTls, TlsContextCache } from "./tlscontext.ts";

export interface PortRuntime {
  binding: Binding;
  /** HTTP listeners: what plaintext requests are matched against. */
  plain: L7Port;
  /** HTTPS and TLS listeners: what a ClientHello's SNI is matched against. */
  secure: L7Port;
  /** TLS settings of each terminating listener, by listener id. */
  tls: Map<string, ListenerTls>;
}

export interface Table {
  version: number;
  ports: Map<string, PortRuntime>;
  certificates: Map<string, TlsCertificate>;
}

export function compileTable(config: ProxyConfig, contexts: TlsContextCache): Table {
  const certificates = new Map(config.certificates.map((c) => [c.id, c]));
  const cas = new Map<string, CaBundle>(config.caBundles.map((c) => [c.id, c]));
  const ports = new Map<string, PortRuntime>();
  for (const b of config.bindings) {
    const plain: L7Listener[] = [];
    const secure: L7Listener[] = [];
    const tls = new Map<string, ListenerTls>();
    for (const l of b.listeners) {
      if (l.protocol === "HTTP") {
        plain.push(l);
        continue;
      }
      secure.push(l);
      const t = contexts.forListener(l, certificates, cas);
      if (t) tls.set(l.id, t);
    }
    ports.set(b.key, { binding: b, plain: { port: b.gatewayPort, listeners: plain }, secure: { port: b.gatewayPort, listeners: secure }, tls });
  }
  contexts.sweep();
  return { version: config.version, ports, certificates };
}
