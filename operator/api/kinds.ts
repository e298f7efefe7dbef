// The one exhaustive table of the kinds Sluice reads: group, served versions, scope, and the
// schema each version is validated against. Every stage looks kinds up here, so a kind can't be
// handled in one place and forgotten in another (Cilium #44824).
import { GatewayClass as GatewayClassModel } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/GatewayClass";
import { Gateway as GatewayModel } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/Gateway";
import { HTTPRoute as HTTPRouteModel } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/HTTPRoute";
import { GRPCRoute as GRPCRouteModel } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/GRPCRoute";
import { TLSRoute as TLSRouteModel } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/TLSRoute";
import { TLSRoute as TLSRouteV1a2Model } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1alpha2/TLSRoute";
import { TLSRoute as TLSRouteV1a3Model } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1alpha3/TLSRoute";
import { TCPRoute as TCPRouteModel } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1alpha2/TCPRoute";
import { UDPRoute as UDPRouteModel } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1alpha2/UDPRoute";
import { ReferenceGrant as ReferenceGrantModel } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/ReferenceGrant";
import { ReferenceGrant as ReferenceGrantV1b1Model } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1beta1/ReferenceGrant";
import { BackendTLSPolicy as BackendTLSPolicyModel } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/BackendTLSPolicy";
import { BackendTLSPolicy as BackendTLSPolicyV1a3Model } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1alpha3/BackendTLSPolicy";
import { Service as ServiceModel } from "kubernetes-models/v1/Service";
import { Secret as SecretModel } from "kubernetes-models/v1/Secret";
import { ConfigMap as ConfigMapModel } from "kubernetes-models/v1/ConfigMap";
import { Namespace as NamespaceModel } from "kubernetes-models/v1/Namespace";
import { EndpointSlice as EndpointSliceModel } from "kubernetes-models/discovery.k8s.io/v1/EndpointSlice";
import type { K8sObject } from "./objects.ts";
import { validateGatewayClassConfig } from "./gatewayclassconfig.ts";

export const GATEWAY_GROUP = "gateway.networking.k8s.io";
export const SLUICE_GROUP = "sluice.dev";
export const CERT_MANAGER_GROUP = "cert-manager.io";

export type KindName =
  | "GatewayClass" | "Gateway" | "HTTPRoute" | "GRPCRoute" | "TLSRoute" | "TCPRoute" | "UDPRoute"
  | "ReferenceGrant" | "BackendTLSPolicy"
  | "Service" | "EndpointSlice" | "Secret" | "ConfigMap" | "Namespace"
  | "GatewayClassConfig"
  | "Certificate";

export type RouteKind = "HTTPRoute" | "GRPCRoute" | "TLSRoute" | "TCPRoute" | "UDPRoute";
export const ROUTE_KINDS: readonly RouteKind[] = ["HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute"];

/** Checks one object against its version's schema; returns human-readable errors (empty = valid). */
type Validator = (obj: K8sObject) => string[];

export interface KindInfo {
  readonly kind: KindName;
  readonly group: string;
  /** Served versions, preferred first. */
  readonly versions: readonly string[];
  readonly namespaced: boolean;
  /** Plural resource name, as the API server spells it. */
  readonly plural: string;
  readonly validate: (version: string) => Validator;
}

interface ModelClass {
  new (data: never): { validate(): void };
}

// A model validates the object as its own apiVersion; versions that share a schema reuse one
// model, so the object is validated with the model's apiVersion swapped in.
function modelValidator(models: Record<string, ModelClass>): (version: string) => Validator {
  return (version) => (obj) => {
    const Model = models[version];
    if (!Model) return [`apiVersion ${obj.apiVersion} is not served for ${obj.kind}`];
    const modelApiVersion = (Model as unknown as { apiVersion: string }).apiVersion;
    try {
      new Model({ ...obj, apiVersion: modelApiVersion } as never).validate();
      return [];
    } catch (err) {
      return schemaErrors(err);
    }
  };
}

interface AjvLikeError {
  instancePath?: string;
  message?: string;
  params?: { allowedValues?: unknown[] };
}

export function schemaErrors(err: unknown): string[] {
  const errors = (err as { errors?: AjvLikeError[] }).errors;
  if (!Array.isArray(errors)) return [String((err as Error).message ?? err)];
  const out = new Set<string>();
  for (const e of errors) {
    const path = (e.instancePath ?? "").replace(/^\//, "").replace(/\//g, ".") || "(root)";
    const allowed = e.params?.allowedValues ? ` (${e.params.allowedValues.join(", ")})` : "";
    out.add(`${path}: ${e.message ?? "invalid"}${allowed}`);
  }
  return [...out];
}

const gw = (plural: string, kind: KindName, versions: string[], models: Record<string, ModelClass>): KindInfo => ({
  kind, group: GATEWAY_GROUP, versions, namespaced: kind !== "GatewayClass", plural, validate: modelValidator(models),
});

export const KINDS: Readonly<Record<KindName, KindInfo>> = {
  GatewayClass: gw("gatewayclasses", "GatewayClass", ["v1", "v1beta1"], { v1: GatewayClassModel, v1beta1: GatewayClassModel }),
  Gateway: gw("gateways", "Gateway", ["v1", "v1beta1"], { v1: GatewayModel, v1beta1: GatewayModel }),
  HTTPRoute: gw("httproutes", "HTTPRoute", ["v1", "v1beta1"], { v1: HTTPRouteModel, v1beta1: HTTPRouteModel }),
  GRPCRoute: gw("grpcroutes", "GRPCRoute", ["v1"], { v1: GRPCRouteModel }),
  TLSRoute: gw("tlsroutes", "TLSRoute", ["v1", "v1alpha3", "v1alpha2"], { v1: TLSRouteModel, v1alpha3: TLSRouteV1a3Model, v1alpha2: TLSRouteV1a2Model }),
  TCPRoute: gw("tcproutes", "TCPRoute", ["v1", "v1alpha2"], { v1: TCPRouteModel, v1alpha2: TCPRouteModel }),
  UDPRoute: gw("udproutes", "UDPRoute", ["v1", "v1alpha2"], { v1: UDPRouteModel, v1alpha2: UDPRouteModel }),
  ReferenceGrant: gw("referencegrants", "ReferenceGrant", ["v1", "v1beta1"], { v1: ReferenceGrantModel, v1beta1: ReferenceGrantV1b1Model }),
  BackendTLSPolicy: gw("backendtlspolicies", "BackendTLSPolicy", ["v1", "v1alpha3"], { v1: BackendTLSPolicyModel, v1alpha3: BackendTLSPolicyV1a3Model }),
  Service: { kind: "Service", group: "", versions: ["v1"], namespaced: true, plural: "services", validate: modelValidator({ v1: ServiceModel }) },
  EndpointSlice: { kind: "EndpointSlice", group: "discovery.k8s.io", versions: ["v1"], namespaced: true, plural: "endpointslices", validate: modelValidator({ v1: EndpointSliceModel }) },
  Secret: { kind: "Secret", group: "", versions: ["v1"], namespaced: true, plural: "secrets", validate: modelValidator({ v1: SecretModel }) },
  ConfigMap: { kind: "ConfigMap", group: "", versions: ["v1"], namespaced: true, plural: "configmaps", validate: modelValidator({ v1: ConfigMapModel }) },
  Namespace: { kind: "Namespace", group: "", versions: ["v1"], namespaced: false, plural: "namespaces", validate: modelValidator({ v1: NamespaceModel }) },
  GatewayClassConfig: {
    kind: "GatewayClassConfig", group: SLUICE_GROUP, versions: ["v1alpha1"], namespaced: true, plural: "gatewayclassconfigs",
    validate: (version) => (obj) => version === "v1alpha1" ? validateGatewayClassConfig(obj.spec) : [`apiVersion ${obj.apiVersion} is not served`],
  },
  // cert-manager's, read when its CRD exists: a listener whose Secret a Certificate is still
  // issuing says so instead of only "does not exist". Only the fields Sluice reads are checked.
  Certificate: {
    kind: "Certificate", group: CERT_MANAGER_GROUP, versions: ["v1"], namespaced: true, plural: "certificates",
    validate: (version) => (obj) => version !== "v1" ? [`apiVersion ${obj.apiVersion} is not served`] : validateCertificate(obj),
  },
};

function validateCertificate(obj: K8sObject): string[] {
  const spec = obj.spec as { secretName?: unknown } | undefined;
  if (typeof spec !== "object" || spec === null) return ["spec: must be an object"];
  return typeof spec.secretName === "string" && spec.secretName !== "" ? [] : ["spec.secretName: must be a non-empty string"];
}

export const KIND_NAMES = Object.keys(KINDS) as KindName[];

export function apiVersionOf(info: KindInfo, version: string): string {
  return info.group ? `${info.group}/${version}` : version;
}

/** Splits `group/version` (or a bare core `version`). */
export function parseApiVersion(apiVersion: string): { group: string; version: string } {
  const slash = apiVersion.lastIndexOf("/");
  return slash < 0 ? { group: "", version: apiVersion } : { group: apiVersion.slice(0, slash), version: apiVersion.slice(slash + 1) };
}

export type Recognition =
  | { known: true; info: KindInfo; version: string }
  | { known: false; reason: "unknown-kind" | "unserved-version"; message: string };

/** Says whether an object is of a kind Sluice reads, in a version it serves. */
export function recognize(obj: { apiVersion?: unknown; kind?: unknown }): Recognition {
  const kind = typeof obj.kind === "string" ? obj.kind : "";
  const { group, version } = parseApiVersion(typeof obj.apiVersion === "string" ? obj.apiVersion : "");
  const info = (KINDS as Record<string, KindInfo | undefined>)[kind];
  if (!info || info.group !== group) {
    return { known: false, reason: "unknown-kind", message: `${String(obj.apiVersion)} ${kind} is not a kind Sluice reads` };
  }
  if (!info.versions.includes(version)) {
    return {
      known: false, reason: "unserved-version",
      message: `${kind} ${group}/${version} is not served; use one of ${info.versions.map((v) => apiVersionOf(info, v)).join(", ")}`,
    };
  }
  return { known: true, info, version };
}

/** Schema errors of an object of a known kind, against its own apiVersion (empty when valid or not a Sluice kind). */
export function schemaErrorsOf(obj: K8sObject): string[] {
  const info = (KINDS as Record<string, KindInfo | undefined>)[obj.kind];
  return info ? info.validate(parseApiVersion(obj.apiVersion).version)(obj) : [];
}
