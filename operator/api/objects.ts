// The object model every stage shares: Kubernetes objects as plain, immutable JSON values.
// Spec and status shapes come from @kubernetes-models (generated from the upstream Go types);
// this file only names them and adds the envelope the pipeline needs.
import type { IIoK8sSigsGatewayApiApisV1GatewayClassSpec as GatewayClassSpec } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/GatewayClassSpec";
import type { IIoK8sSigsGatewayApiApisV1GatewaySpec as GatewaySpec } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/GatewaySpec";
import type { IIoK8sSigsGatewayApiApisV1HTTPRouteSpec as HTTPRouteSpec } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/HTTPRouteSpec";
import type { IIoK8sSigsGatewayApiApisV1GRPCRouteSpec as GRPCRouteSpec } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/GRPCRouteSpec";
import type { IIoK8sSigsGatewayApiApisV1TLSRouteSpec as TLSRouteSpec } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/TLSRouteSpec";
import type { IIoK8sSigsGatewayApiApisV1alpha2TCPRouteSpec as TCPRouteSpec } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1alpha2/TCPRouteSpec";
import type { IIoK8sSigsGatewayApiApisV1alpha2UDPRouteSpec as UDPRouteSpec } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1alpha2/UDPRouteSpec";
import type { IIoK8sSigsGatewayApiApisV1ReferenceGrantSpec as ReferenceGrantSpec } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/ReferenceGrantSpec";
import type { IIoK8sSigsGatewayApiApisV1BackendTLSPolicySpec as BackendTLSPolicySpec } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/BackendTLSPolicySpec";
import type { IIoK8sApiCoreV1ServiceSpec as ServiceSpec } from "kubernetes-models/v1/ServiceSpec";
import type { IIoK8sApiCoreV1ServiceStatus as ServiceStatus } from "kubernetes-models/v1/ServiceStatus";
import type { IIoK8sApiDiscoveryV1Endpoint as Endpoint } from "kubernetes-models/discovery.k8s.io/v1/Endpoint";
import type { IIoK8sApiDiscoveryV1EndpointPort as EndpointPort } from "kubernetes-models/discovery.k8s.io/v1/EndpointPort";
import type { GatewayClassConfigSpec } from "./gatewayclassconfig.ts";

export type {
  GatewayClassSpec, GatewaySpec, HTTPRouteSpec, GRPCRouteSpec, TLSRouteSpec, TCPRouteSpec, UDPRouteSpec,
  ReferenceGrantSpec, BackendTLSPolicySpec, ServiceSpec, ServiceStatus, Endpoint, EndpointPort,
};

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid?: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: OwnerReference[];
}

/** A Kubernetes object as the pipeline sees it. Never mutated once it has entered the store. */
export interface K8sObject<Spec = unknown, Status = unknown> {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec?: Spec;
  status?: Status;
}

export interface Condition {
  type: string;
  status: "True" | "False" | "Unknown";
  reason: string;
  message: string;
  observedGeneration: number;
  /** Set by the status writer, never by the (pure) translator. */
  lastTransitionTime?: string;
}

export type GatewayClass = K8sObject<GatewayClassSpec>;
export type Gateway = K8sObject<GatewaySpec>;
export type HTTPRoute = K8sObject<HTTPRouteSpec>;
export type GRPCRoute = K8sObject<GRPCRouteSpec>;
export type TLSRoute = K8sObject<TLSRouteSpec>;
export type TCPRoute = K8sObject<TCPRouteSpec>;
export type UDPRoute = K8sObject<UDPRouteSpec>;
export type ReferenceGrant = K8sObject<ReferenceGrantSpec>;
export type BackendTLSPolicy = K8sObject<BackendTLSPolicySpec>;
export type Service = K8sObject<ServiceSpec, ServiceStatus>;
export type GatewayClassConfig = K8sObject<GatewayClassConfigSpec>;

export interface EndpointSlice extends K8sObject {
  addressType: "IPv4" | "IPv6" | "FQDN";
  endpoints?: Endpoint[];
  ports?: EndpointPort[];
}
export interface Secret extends K8sObject {
  type?: string;
  /** base64-encoded values, as the API server returns them. */
  data?: Record<string, string>;
  stringData?: Record<string, string>;
}
export interface ConfigMap extends K8sObject {
  data?: Record<string, string>;
}
export type Namespace = K8sObject;

/** cert-manager's Certificate: the fields Sluice reads. */
export type Certificate = K8sObject<{ secretName: string }, { conditions?: { type: string; status: string; reason?: string; message?: string }[] }>;

/** `namespace/name` for namespaced objects, `name` for cluster-scoped ones. */
export function objectKey(namespace: string | undefined, name: string): string {
  return namespace ? `${namespace}/${name}` : name;
}

export function keyOf(obj: K8sObject): string {
  return objectKey(obj.metadata.namespace, obj.metadata.name);
}

/** Objects read from files have no generation; the API server starts at 1. */
export function generationOf(obj: K8sObject): number {
  return obj.metadata.generation ?? 1;
}
