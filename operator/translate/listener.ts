// Listener validation: protocol, field combinations the CRD's CEL rules would reject, conflicts
// on a shared port, allowed route kinds, certificates and frontend client-certificate CAs.
import { GATEWAY_GROUP, type RouteKind } from "../api/kinds.ts";
import { generationOf, objectKey, type Condition, type Gateway } from "../api/objects.ts";
import { condition, CondType, Reason } from "./conditions.ts";
import type { LabelSelector } from "./namespaces.ts";
import type { ListenerTLS } from "./output.ts";
import { checkCaConfigMap, checkTlsSecret } from "./pem.ts";
import type { Deps, World } from "./world.ts";

export type ListenerProtocol = "HTTP" | "HTTPS" | "TLS" | "TCP" | "UDP";

export interface ListenerInfo {
  index: number;
  name: string;
  port: number;
  protocol: string;
  hostname?: string;
  /** Accepted=True: routes may attach. */
  accepted: boolean;
  /** Can serve traffic once the Gateway has an address. */
  usable: boolean;
  supportedKinds: RouteKind[];
  acceptedCond: Condition;
  resolvedRefsCond: Condition;
  conflictedCond: Condition;
  /** Reason and message for Programmed=False when the listener itself is the problem. */
  invalid?: { reason: string; message: string };
  tls?: ListenerTLS;
  from: "Same" | "All" | "Selector" | "None";
  selector?: LabelSelector;
  attachedRoutes: number;
}

const KINDS_BY_PROTOCOL: Record<ListenerProtocol, RouteKind[]> = {
  HTTP: ["HTTPRoute", "GRPCRoute"],
  HTTPS: ["HTTPRoute", "GRPCRoute"],
  TLS: ["TLSRoute"],
  TCP: ["TCPRoute"],
  UDP: ["UDPRoute"],
};

function isProtocol(p: string): p is ListenerProtocol {
  return Object.hasOwn(KINDS_BY_PROTOCOL, p);
}

/** L4 protocol a listener occupies its port with. */
export function transportOf(protocol: string): "TCP" | "UDP" {
  return protocol === "UDP" ? "UDP" : "TCP";
}

/**
 * Whether two listeners can share a port; returns the conflict reason when they cannot. HTTPS and
 * TLS listeners share a port by SNI, TCP and UDP by transport; HTTP needs the port to itself.
 */
function conflictBetween(a: ListenerInfo, b: ListenerInfo): string | undefined {
  if (transportOf(a.protocol) !== transportOf(b.protocol)) return undefined;
  const sni = (p: string) => p === "HTTPS" || p === "TLS";
  if (a.protocol === "TCP" || a.protocol === "UDP" || b.protocol === "TCP" || b.protocol === "UDP") return Reason.ProtocolConflict;
  if (a.protocol === b.protocol) return a.hostname === b.hostname ? Reason.HostnameConflict : undefined;
  if (sni(a.protocol) && sni(b.protocol)) return a.hostname === b.hostname ? Reason.ProtocolConflict : undefined;
  return Reason.ProtocolConflict;
}

export function validateListeners(gw: Gateway, world: World, deps: Deps): ListenerInfo[] {
  const gen = generationOf(gw);
  const listeners = Array.isArray(gw.spec?.listeners) ? gw.spec.listeners : [];
  const out: ListenerInfo[] = [];
  const names = new Set<string>();
  const frontend = frontendValidation(gw, world, deps);

  listeners.forEach((l, index) => {
    const info: ListenerInfo = {
      index, name: l.name, port: l.port, protocol: l.protocol, hostname: l.hostname || undefined,
      accepted: true, usable: true, supportedKinds: [],
      acceptedCond: condition(CondType.Accepted, true, Reason.Accepted, "Listener is accepted", gen),
      resolvedRefsCond: condition(CondType.ResolvedRefs, true, Reason.ResolvedRefs, "All references are resolved", gen),
      conflictedCond: condition(CondType.Conflicted, false, Reason.NoConflicts, "No conflicts", gen),
      from: (l.allowedRoutes?.namespaces?.from as ListenerInfo["from"] | undefined) ?? "Same",
      selector: l.allowedRoutes?.namespaces?.selector as LabelSelector | undefined,
      attachedRoutes: 0,
    };
    out.push(info);
    const reject = (reason: string, message: string, kindsToo = true) => {
      info.accepted = false;
      info.usable = false;
      info.acceptedCond = condition(CondType.Accepted, false, reason, message, gen);
      info.invalid = { reason: Reason.Invalid, message };
      if (kindsToo) info.supportedKinds = [];
    };

    if (!isProtocol(l.protocol)) {
      reject(Reason.UnsupportedProtocol, `Protocol ${l.protocol} is not supported; use HTTP, HTTPS, TLS, TCP or UDP`);
      return;
    }
    const bad = invalidFieldCombination(l, names);
    names.add(l.name);
    if (bad) {
      reject(Reason.UnsupportedValue, bad);
      return;
    }
    for (const other of out) {
      if (other === info || !other.accepted || other.port !== info.port) continue;
      const reason = conflictBetween(other, info);
      if (reason) {
        const msg = `Conflicts with listener ${other.name} on port ${info.port}`;
        reject(reason, msg);
        info.conflictedCond = condition(CondType.Conflicted, true, reason, msg, gen);
        return;
      }
    }

    // Allowed route kinds.
    const allowed = KINDS_BY_PROTOCOL[l.protocol];
    if (l.allowedRoutes?.kinds && l.allowedRoutes.kinds.length > 0) {
      const bad: string[] = [];
      const kinds: RouteKind[] = [];
      for (const k of l.allowedRoutes.kinds) {
        const group = k.group ?? GATEWAY_GROUP;
        if (group === GATEWAY_GROUP && (allowed as string[]).includes(k.kind)) {
          if (!kinds.includes(k.kind as RouteKind)) kinds.push(k.kind as RouteKind);
        } else bad.push(group ? `${group}/${k.kind}` : k.kind);
      }
      info.supportedKinds = kinds;
      if (bad.length) {
        info.resolvedRefsCond = condition(CondType.ResolvedRefs, false, Reason.InvalidRouteKinds,
          `Route kinds not supported on a ${l.protocol} listener: ${bad.join(", ")}`, gen);
        if (kinds.length === 0) {
          info.usable = false;
          info.invalid = { reason: Reason.Invalid, message: "No supported route kinds" };
        }
      }
    } else info.supportedKinds = [...allowed];

    if (info.from === "Selector" && !info.selector) {
      reject(Reason.UnsupportedValue, "allowedRoutes.namespaces.selector is required when from is Selector", false);
      return;
    }

    // Certificates, for listeners that terminate TLS.
    const mode = l.tls?.mode ?? (l.protocol === "HTTPS" ? "Terminate" : undefined);
    if (l.protocol === "HTTPS" || (l.protocol === "TLS" && mode === "Terminate")) {
      const certs = resolveCertificates(gw, l.tls?.certificateRefs ?? [], world, deps);
      info.tls = { mode: "Terminate", certificates: certs.valid };
      if (certs.failure && info.resolvedRefsCond.status === "True") {
        info.resolvedRefsCond = condition(CondType.ResolvedRefs, false, certs.failure.reason, certs.failure.message, gen);
      }
      if (certs.valid.length === 0) {
        info.usable = false;
        info.invalid = { reason: Reason.Invalid, message: certs.failure?.message ?? "No usable certificate" };
      }
      const fv = l.protocol === "HTTPS" ? frontend.forPort(l.port) : undefined;
      if (fv?.failure) {
        info.resolvedRefsCond = condition(CondType.ResolvedRefs, false, fv.failure.reason, fv.failure.message, gen);
        info.acceptedCond = condition(CondType.Accepted, false, Reason.NoValidCACertificate, fv.failure.message, gen);
        info.accepted = false;
        info.usable = false;
        info.invalid = { reason: Reason.Invalid, message: fv.failure.message };
      } else if (fv?.ok) {
        info.tls.clientValidation = fv.ok;
      }
    } else if (l.protocol === "TLS") {
      info.tls = { mode: "Passthrough", certificates: [] };
    }
  });
  return out;
}

type ListenerSpec = NonNullable<NonNullable<Gateway["spec"]>["listeners"]>[number];

/** The rules the Gateway CRD enforces with CEL, checked here for objects read from files. */
function invalidFieldCombination(l: ListenerSpec, names: Set<string>): string | undefined {
  if (names.has(l.name)) return `Listener name ${l.name} is used twice`;
  if (l.tls && (l.protocol === "HTTP" || l.protocol === "TCP" || l.protocol === "UDP")) return `tls must not be set for protocol ${l.protocol}`;
  if (l.hostname && (l.protocol === "TCP" || l.protocol === "UDP")) return `hostname must not be set for protocol ${l.protocol}`;
  if (l.protocol === "HTTPS" && l.tls?.mode && l.tls.mode !== "Terminate") return "tls mode must be Terminate for HTTPS";
  if (l.protocol === "TLS" && !l.tls?.mode) return "tls mode must be set for protocol TLS";
  return undefined;
}

interface Failure { reason: string; message: string }

type SecretRef = NonNullable<NonNullable<ListenerSpec["tls"]>["certificateRefs"]>[number];

function resolveCertificates(gw: Gateway, refs: readonly SecretRef[], world: World, deps: Deps): { valid: string[]; failure?: Failure } {
  const gwNs = gw.metadata.namespace ?? "default";
  const valid: string[] = [];
  let failure: Failure | undefined;
  const fail = (f: Failure) => { failure ??= f; };
  if (refs.length === 0) fail({ reason: Reason.InvalidCertificateRef, message: "No certificateRefs are set" });
  for (const ref of refs) {
    const group = ref.group ?? "";
    const kind = ref.kind ?? "Secret";
    const ns = ref.namespace ?? gwNs;
    const key = objectKey(ns, ref.name);
    if (group !== "" || kind !== "Secret") {
      fail({ reason: Reason.InvalidCertificateRef, message: `Certificate reference ${group ? group + "/" : ""}${kind} ${key} is not a Secret` });
      continue;
    }
    deps.recordCollection("ReferenceGrant", world.snapshot.objects.ReferenceGrant);
    if (!world.grants.allows({ group: GATEWAY_GROUP, kind: "Gateway", namespace: gwNs }, { group: "", kind: "Secret", namespace: ns, name: ref.name })) {
      fail({ reason: Reason.RefNotPermitted, message: `Secret ${key} is in another namespace and no ReferenceGrant allows it` });
      continue;
    }
    const secret = world.get(deps, "Secret", key);
    if (!secret) {
      fail({ reason: Reason.InvalidCertificateRef, message: `Secret ${key} does not exist${pendingIssuance(ns, ref.name, world, deps)}` });
      continue;
    }
    const checked = checkTlsSecret(secret);
    if (!checked.ok) {
      fail({ reason: Reason.InvalidCertificateRef, message: `Secret ${key} ${checked.message}` });
      continue;
    }
    valid.push(key);
  }
  return failure ? { valid, failure } : { valid };
}

/**
 * When a cert-manager Certificate in the namespace is to write the missing Secret: says which, and
 * why it has not yet (its Ready condition), so a user waiting on ACME sees that, not a typo hunt.
 */
function pendingIssuance(ns: string, secretName: string, world: World, deps: Deps): string {
  const certs = world.snapshot.objects.Certificate;
  deps.recordCollection("Certificate", certs);
  const issuers: string[] = [];
  for (const c of certs.values()) {
    if ((c.metadata.namespace ?? "default") !== ns || c.spec?.secretName !== secretName || world.schemaErrors(c).length) continue;
    const ready = Array.isArray(c.status?.conditions) ? c.status.conditions.find((x) => x?.type === "Ready") : undefined;
    const why = ready && ready.status !== "True" ? ` (Ready=${ready.status}${ready.reason ? `, ${ready.reason}` : ""}${ready.message ? `: ${ready.message}` : ""})` : "";
    issuers.push(`${objectKey(ns, c.metadata.name)}${why}`);
  }
  return issuers.length ? `; cert-manager Certificate ${issuers.sort().join(", ")} has not issued it yet` : "";
}

type ValidationResult = { ok?: NonNullable<ListenerTLS["clientValidation"]>; failure?: Failure };

/** Resolves `spec.tls.frontend` (default and per-port client-certificate validation). */
function frontendValidation(gw: Gateway, world: World, deps: Deps): { forPort(port: number): ValidationResult | undefined } {
  const frontend = gw.spec?.tls?.frontend;
  if (!frontend) return { forPort: () => undefined };
  const gwNs = gw.metadata.namespace ?? "default";
  type Validation = NonNullable<NonNullable<typeof frontend.default>["validation"]>;
  const resolve = (v: Validation | undefined): ValidationResult | undefined => {
    if (!v) return undefined;
    const cas: string[] = [];
    for (const ref of v.caCertificateRefs ?? []) {
      const ns = ref.namespace ?? gwNs;
      const key = objectKey(ns, ref.name);
      if ((ref.group ?? "") !== "" || ref.kind !== "ConfigMap") {
        return { failure: { reason: Reason.InvalidCACertificateKind, message: `CA certificate reference ${ref.kind} ${key} is not a ConfigMap` } };
      }
      deps.recordCollection("ReferenceGrant", world.snapshot.objects.ReferenceGrant);
      if (!world.grants.allows({ group: GATEWAY_GROUP, kind: "Gateway", namespace: gwNs }, { group: "", kind: "ConfigMap", namespace: ns, name: ref.name })) {
        return { failure: { reason: Reason.RefNotPermitted, message: `ConfigMap ${key} is in another namespace and no ReferenceGrant allows it` } };
      }
      const cm = world.get(deps, "ConfigMap", key);
      if (!cm) return { failure: { reason: Reason.InvalidCACertificateRef, message: `ConfigMap ${key} does not exist` } };
      const checked = checkCaConfigMap(cm);
      if (!checked.ok) return { failure: { reason: Reason.InvalidCACertificateRef, message: `ConfigMap ${key} ${checked.message}` } };
      cas.push(key);
    }
    if (cas.length === 0) return { failure: { reason: Reason.InvalidCACertificateRef, message: "No caCertificateRefs are set" } };
    return { ok: { caCertificates: cas, mode: v.mode === "AllowInsecureFallback" ? "AllowInsecureFallback" : "AllowValidOnly" } };
  };
  const byPort = new Map<number, ValidationResult | undefined>();
  for (const p of frontend.perPort ?? []) byPort.set(p.port, resolve(p.tls?.validation));
  const def = resolve(frontend.default?.validation);
  return { forPort: (port) => (byPort.has(port) ? byPort.get(port) : def) };
}

/** True when any client validation on the Gateway allows clients without a valid certificate. */
export function usesInsecureFallback(gw: Gateway): boolean {
  const f = gw.spec?.tls?.frontend;
  if (!f) return false;
  return f.default?.validation?.mode === "AllowInsecureFallback" || (f.perPort ?? []).some((p) => p.tls?.validation?.mode === "AllowInsecureFallback");
}
