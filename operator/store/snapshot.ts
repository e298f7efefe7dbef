// A consistent, immutable view of every object the translator reads, as of one store tick.
// Collections that did not change between ticks are the same Map instances, and unchanged
// objects are the same object instances: the translator memoizes on identity.
import { KIND_NAMES, type KindName } from "../api/kinds.ts";
import {
  keyOf,
  type BackendTLSPolicy, type ConfigMap, type EndpointSlice, type Gateway, type GatewayClass, type GatewayClassConfig,
  type GRPCRoute, type HTTPRoute, type K8sObject, type Namespace, type ReferenceGrant, type Secret, type Service,
  type TCPRoute, type TLSRoute, type UDPRoute, type Certificate,
} from "../api/objects.ts";

export interface ObjectsByKind {
  GatewayClass: GatewayClass;
  Gateway: Gateway;
  HTTPRoute: HTTPRoute;
  GRPCRoute: GRPCRoute;
  TLSRoute: TLSRoute;
  TCPRoute: TCPRoute;
  UDPRoute: UDPRoute;
  ReferenceGrant: ReferenceGrant;
  BackendTLSPolicy: BackendTLSPolicy;
  Service: Service;
  EndpointSlice: EndpointSlice;
  Secret: Secret;
  ConfigMap: ConfigMap;
  Namespace: Namespace;
  GatewayClassConfig: GatewayClassConfig;
  Certificate: Certificate;
}

/** Per kind: `namespace/name` (or `name`) → object. */
export type Collections = { readonly [K in KindName]: ReadonlyMap<string, ObjectsByKind[K]> };

export interface Snapshot {
  /** Increases by one per emitted snapshot. */
  readonly version: number;
  readonly objects: Collections;
  /**
   * Datapath acknowledgements: Gateway key (`namespace/name`) → the config hash the datapath
   * last applied for it. A Gateway is Programmed only once its current hash is acknowledged.
   */
  readonly acks: ReadonlyMap<string, string>;
}

export function emptyCollections(): Collections {
  const out = {} as Record<KindName, ReadonlyMap<string, K8sObject>>;
  for (const k of KIND_NAMES) out[k] = new Map();
  return out as unknown as Collections;
}

/** Builds a snapshot from a flat list of objects (render, tests). Later duplicates win. */
export function snapshotOf(objects: Iterable<K8sObject>, acks: ReadonlyMap<string, string> = new Map(), version = 1): Snapshot {
  const maps = {} as Record<KindName, Map<string, K8sObject>>;
  for (const k of KIND_NAMES) maps[k] = new Map();
  for (const obj of objects) {
    const m = maps[obj.kind as KindName];
    if (m) m.set(keyOf(obj), obj);
  }
  return { version, objects: maps as unknown as Collections, acks };
}
