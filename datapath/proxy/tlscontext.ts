// Listener certificates as TLS secure contexts, chosen by SNI. Contexts are cached by content, so
// a config update that does not touch a certificate reuses its context, and a rotated
// certificate gets a new one while connections already established keep the old.
import { X509Certificate } from "node:crypto";
import { createSecureContext, type SecureContext, type SecureContextOptions } from "node:tls";
import type { CaBundle, L7Listener, TlsCertificate } from "../../operator/translate/output.ts";
import { hostnameMatches } from "../../operator/translate/hostname.ts";

export interface ServedCertificate {
  id: string;
  /** DNS names the certificate is valid for (SANs, or the CN without SANs). */
  names: string[];
  context: SecureContext;
  /** What built the context: a TLS server's default (no-SNI) certificate is set from these. */
  options: SecureContextOptions;
}

export interface ListenerTls {
  certificates: ServedCertificate[];
  /** Frontend client-certificate validation. */
  requestCert: boolean;
  rejectUnauthorized: boolean;
}

/** The certificate for an SNI name: an exact SAN first, then a wildcard, then the first one. */
export function pickCertificate(tls: ListenerTls, sni: string | undefined): ServedCertificate | undefined {
  if (sni) {
    for (const c of tls.certificates) if (c.names.includes(sni)) return c;
    for (const c of tls.certificates) if (c.names.some((n) => n.startsWith("*.") && hostnameMatches(n, sni))) return c;
  }
  return tls.certificates[0];
}

export class TlsContextCache {
  private contexts = new Map<string, ServedCertificate>();
  private used = new Set<string>();

  /** Builds the listener's TLS settings; undefined when it has no usable certificate. */
  forListener(listener: L7Listener, certs: ReadonlyMap<string, TlsCertificate>, cas: ReadonlyMap<string, CaBundle>): ListenerTls | undefined {
    const tls = listener.tls;
    if (!tls || tls.mode !== "Terminate") return undefined;
    const validation = tls.clientValidation;
    const ca = validation?.caCertificates.map((id) => cas.get(id)?.pem ?? "").filter((p) => p !== "");
    const served: ServedCertificate[] = [];
    for (const id of tls.certificates) {
      const c = certs.get(id);
      if (!c) continue;
      const key = `${id}\0${c.cert}\0${c.key}\0${ca?.join("\n") ?? ""}`;
      let entry = this.contexts.get(key);
      if (!entry) {
        const options: SecureContextOptions = { cert: c.cert, key: c.key, ...(ca?.length ? { ca } : {}) };
        entry = { id, names: certificateNames(c.cert), context: createSecureContext(options), options };
        this.contexts.set(key, entry);
      }
      this.used.add(key);
      served.push(entry);
    }
    if (served.length === 0) return undefined;
    return {
      certificates: served,
      requestCert: validation !== undefined,
      rejectUnauthorized: validation?.mode === "AllowValidOnly",
    };
  }

  /** Drops contexts no listener of the latest config uses. */
  sweep(): void {
    for (const k of this.contexts.keys()) if (!this.used.has(k)) this.contexts.delete(k);
    this.used = new Set();
  }
}

export function certificateNames(pem: string): string[] {
  const x = new X509Certificate(pem);
  const sans = (x.subjectAltName ?? "")
    .split(/,\s*/)
    .filter((s) => s.startsWith("DNS:"))
    .map((s) => s.slice(4).toLowerCase());
  if (sans.length) return sans;
  const cn = /(?:^|\n)CN=([^\n]+)/.exec(x.subject)?.[1];
  return cn ? [cn.toLowerCase()] : [];
}
