// Certificate material checks for Secrets and CA ConfigMaps. Parsing is pure (no I/O) and
// memoized per object instance, since the same Secret is read by many listeners.
import { X509Certificate, createPrivateKey } from "node:crypto";
import type { ConfigMap, Secret } from "../api/objects.ts";

export type Checked<T> = { ok: true; value: T } | { ok: false; message: string };

const tlsCache = new WeakMap<Secret, Checked<{ cert: string; key: string }>>();
const caCache = new WeakMap<ConfigMap, Checked<string>>();

function secretValue(secret: Secret, field: string): string | undefined {
  const plain = secret.stringData?.[field];
  if (typeof plain === "string") return plain;
  const b64 = secret.data?.[field];
  return typeof b64 === "string" ? Buffer.from(b64, "base64").toString("utf8") : undefined;
}

/** A `kubernetes.io/tls` Secret whose certificate and key parse and belong together. */
export function checkTlsSecret(secret: Secret): Checked<{ cert: string; key: string }> {
  let r = tlsCache.get(secret);
  if (!r) {
    r = computeTls(secret);
    tlsCache.set(secret, r);
  }
  return r;
}

function computeTls(secret: Secret): Checked<{ cert: string; key: string }> {
  const cert = secretValue(secret, "tls.crt");
  const key = secretValue(secret, "tls.key");
  if (!cert || !key) return { ok: false, message: "must have tls.crt and tls.key" };
  try {
    const x509 = new X509Certificate(cert);
    const pk = createPrivateKey(key);
    if (!x509.checkPrivateKey(pk)) return { ok: false, message: "tls.key does not match tls.crt" };
    return { ok: true, value: { cert, key } };
  } catch (err) {
    return { ok: false, message: `tls.crt/tls.key do not parse as PEM: ${(err as Error).message}` };
  }
}

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** A ConfigMap holding at least one parsable CA certificate under `ca.crt`. */
export function checkCaConfigMap(cm: ConfigMap): Checked<string> {
  let r = caCache.get(cm);
  if (!r) {
    r = computeCa(cm);
    caCache.set(cm, r);
  }
  return r;
}

function computeCa(cm: ConfigMap): Checked<string> {
  const pem = cm.data?.["ca.crt"];
  if (typeof pem !== "string" || pem.trim() === "") return { ok: false, message: "has no ca.crt" };
  const blocks = pem.match(PEM_BLOCK) ?? [];
  if (blocks.length === 0) return { ok: false, message: "ca.crt holds no PEM certificate" };
  try {
    for (const b of blocks) new X509Certificate(b);
  } catch (err) {
    return { ok: false, message: `ca.crt does not parse: ${(err as Error).message}` };
  }
  return { ok: true, value: pem };
}
