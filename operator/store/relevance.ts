// Which Services, EndpointSlices, Secrets and ConfigMaps the translator can possibly read: only
// those something references. A cluster holds thousands of them; the snapshot carries the few that
// matter, so unrelated churn (a Secret rotated elsewhere) never causes a translation.
import { ROUTE_KINDS, type KindName } from "../api/kinds.ts";
import { objectKey, type EndpointSlice, type K8sObject } from "../api/objects.ts";
import type { Collections } from "./snapshot.ts";

/** Label of the Services Sluice generates for Gateways; their status carries the addresses. */
export const MANAGED_BY_LABEL = "app.kubernetes.io/managed-by";
export const MANAGED_BY_SLUICE = "sluice";
/** Label tying an EndpointSlice to its Service. */
export const SERVICE_NAME_LABEL = "kubernetes.io/service-name";

export interface Relevant {
  /** `namespace/name` keys. */
  readonly services: ReadonlySet<string>;
  readonly secrets: ReadonlySet<string>;
  readonly configMaps: ReadonlySet<string>;
  endpointSlice(slice: EndpointSlice): boolean;
}

/** The kinds whose objects are filtered by relevance; every other kind is always relevant. */
export const FILTERED_KINDS: ReadonlySet<KindName> = new Set<KindName>(["Service", "EndpointSlice", "Secret", "ConfigMap"]);
/** The kinds relevance is computed from. */
export const REFERRING_KINDS: ReadonlySet<KindName> = new Set<KindName>([...ROUTE_KINDS, "Gateway", "BackendTLSPolicy", "Service"]);

type Json = Record<string, unknown>;
const record = (v: unknown): Json | undefined => (typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Json) : undefined);
const array = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const string = (v: unknown): string | undefined => (typeof v === "string" && v !== "" ? v : undefined);

/** Field path lookup that tolerates any malformed shape (missing, null, wrong type). */
function at(v: unknown, ...fields: string[]): unknown {
  let cur = v;
  for (const f of fields) cur = record(cur)?.[f];
  return cur;
}

function namespaceOf(obj: unknown): string | undefined {
  return string(at(obj, "metadata", "namespace"));
}

function labelOf(obj: unknown, label: string): string | undefined {
  return string(at(obj, "metadata", "labels", label));
}

/**
 * Adds the key of `ref` if it names `kind` (group "", `kind` by default). Local references
 * (policy targets, BackendTLSPolicy CA refs) cannot leave the referrer's namespace.
 */
function addRef(into: Set<string>, ref: unknown, kind: string, from: unknown, local = false): void {
  const r = record(ref);
  const name = string(r?.name);
  if (!r || !name) return;
  if ((string(r.group) ?? "") !== "" || (string(r.kind) ?? kind) !== kind) return;
  const namespace = (local ? undefined : string(r.namespace)) ?? namespaceOf(from);
  into.add(objectKey(namespace, name));
}

function values(m: ReadonlyMap<string, unknown> | undefined): Iterable<unknown> {
  return m?.values() ?? [];
}

export function relevantKeys(objects: Collections): Relevant {
  const services = new Set<string>();
  const secrets = new Set<string>();
  const configMaps = new Set<string>();

  for (const kind of ROUTE_KINDS) {
    for (const route of values(objects[kind])) {
      for (const rule of array(at(route, "spec", "rules"))) {
        for (const backendRef of array(at(rule, "backendRefs"))) {
          addRef(services, backendRef, "Service", route);
          if (kind === "HTTPRoute" || kind === "GRPCRoute") {
            for (const filter of array(at(backendRef, "filters"))) addRef(services, at(filter, "requestMirror", "backendRef"), "Service", route);
          }
        }
        if (kind === "HTTPRoute" || kind === "GRPCRoute") {
          for (const filter of array(at(rule, "filters"))) addRef(services, at(filter, "requestMirror", "backendRef"), "Service", route);
        }
      }
    }
  }

  for (const policy of values(objects.BackendTLSPolicy)) {
    for (const target of array(at(policy, "spec", "targetRefs"))) addRef(services, target, "Service", policy, true);
    for (const ca of array(at(policy, "spec", "validation", "caCertificateRefs"))) addRef(configMaps, ca, "ConfigMap", policy, true);
  }

  for (const service of values(objects.Service)) {
    if (labelOf(service, MANAGED_BY_LABEL) === MANAGED_BY_SLUICE) {
      const name = string(at(service, "metadata", "name"));
      if (name) services.add(objectKey(namespaceOf(service), name));
    }
  }

  for (const gateway of values(objects.Gateway)) {
    for (const listener of array(at(gateway, "spec", "listeners"))) {
      for (const cert of array(at(listener, "tls", "certificateRefs"))) addRef(secrets, cert, "Secret", gateway);
    }
    addRef(secrets, at(gateway, "spec", "tls", "backend", "clientCertificateRef"), "Secret", gateway);
    const frontend = at(gateway, "spec", "tls", "frontend");
    for (const ca of array(at(frontend, "default", "validation", "caCertificateRefs"))) addRef(configMaps, ca, "ConfigMap", gateway);
    for (const perPort of array(at(frontend, "perPort"))) {
      for (const ca of array(at(perPort, "tls", "validation", "caCertificateRefs"))) addRef(configMaps, ca, "ConfigMap", gateway);
    }
  }

  return {
    services,
    secrets,
    configMaps,
    endpointSlice(slice) {
      const service = labelOf(slice, SERVICE_NAME_LABEL);
      return service !== undefined && services.has(objectKey(namespaceOf(slice), service));
    },
  };
}

/** Whether the object of `kind` stored under `key` (its `namespace/name`) belongs in a snapshot. */
export function isRelevant(relevant: Relevant, kind: KindName, key: string, obj: K8sObject): boolean {
  switch (kind) {
    case "Service": return relevant.services.has(key);
    case "EndpointSlice": return relevant.endpointSlice(obj as EndpointSlice);
    case "Secret": return relevant.secrets.has(key);
    case "ConfigMap": return relevant.configMaps.has(key);
    default: return true;
  }
}
