// GatewayClassConfig (sluice.dev/v1alpha1): how a GatewayClass's Gateways are exposed. The
// schema below is the single source of truth: the CRD in crds/ is generated from it
// (`npm run crds`) and the translator validates objects read from files with it, so a folder of
// manifests is held to what the API server would enforce.
import { isIP } from "node:net";
import { Ajv } from "ajv";

export interface NlbHealthCheck {
  protocol?: "TCP" | "HTTP" | "HTTPS";
  /** A port number, a port name, or `traffic-port`. */
  port?: string;
  path?: string;
  intervalSeconds?: number;
  timeoutSeconds?: number;
  healthyThreshold?: number;
  unhealthyThreshold?: number;
  successCodes?: string;
}

export interface AwsNlbConfig {
  scheme?: "internal" | "internet-facing";
  targetType?: "ip" | "instance";
  name?: string;
  subnets?: string[];
  securityGroups?: string[];
  manageBackendSecurityGroupRules?: boolean;
  ipAddressType?: "ipv4" | "dualstack";
  loadBalancerAttributes?: Record<string, string>;
  targetGroupAttributes?: Record<string, string>;
  proxyProtocol?: boolean;
  healthCheck?: NlbHealthCheck;
  additionalTags?: Record<string, string>;
}

export interface GatewayClassConfigSpec {
  service?: {
    type?: "LoadBalancer" | "NodePort";
    loadBalancerClass?: string;
    externalTrafficPolicy?: "Cluster" | "Local";
    loadBalancerSourceRanges?: string[];
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  aws?: { nlb?: AwsNlbConfig };
}

const stringMap = { type: "object", additionalProperties: { type: "string" } } as const;
const stringList = { type: "array", items: { type: "string", minLength: 1 } } as const;
const positiveInt = (max: number) => ({ type: "integer", minimum: 1, maximum: max }) as const;

/**
 * OpenAPI v3 schema of `spec`, as Ajv uses it. The CRD generator drops `additionalProperties:
 * false` where `properties` is set (Kubernetes forbids both), so the API server prunes unknown
 * fields where Ajv rejects them.
 */
export const gatewayClassConfigSpecSchema = {
  type: "object",
  additionalProperties: false,
  properties: {
    service: {
      type: "object",
      additionalProperties: false,
      description: "The generated Service of each Gateway.",
      properties: {
        type: { type: "string", enum: ["LoadBalancer", "NodePort"], description: "LoadBalancer (default) or NodePort (kind, bare metal)." },
        loadBalancerClass: { type: "string", minLength: 1, description: "e.g. service.k8s.aws/nlb to let the AWS Load Balancer Controller own the NLB." },
        externalTrafficPolicy: { type: "string", enum: ["Cluster", "Local"] },
        loadBalancerSourceRanges: { ...stringList, description: "CIDRs allowed to reach the load balancer." },
        labels: stringMap,
        annotations: stringMap,
      },
    },
    aws: {
      type: "object",
      additionalProperties: false,
      properties: {
        nlb: {
          type: "object",
          additionalProperties: false,
          description: "An AWS Network Load Balancer, mapped to the AWS Load Balancer Controller's Service annotations.",
          properties: {
            scheme: { type: "string", enum: ["internal", "internet-facing"] },
            targetType: { type: "string", enum: ["ip", "instance"] },
            name: { type: "string", minLength: 1, maxLength: 32 },
            subnets: stringList,
            securityGroups: stringList,
            manageBackendSecurityGroupRules: { type: "boolean" },
            ipAddressType: { type: "string", enum: ["ipv4", "dualstack"] },
            loadBalancerAttributes: stringMap,
            targetGroupAttributes: stringMap,
            proxyProtocol: { type: "boolean", description: "Proxy protocol v2 on every target group." },
            healthCheck: {
              type: "object",
              additionalProperties: false,
              properties: {
                protocol: { type: "string", enum: ["TCP", "HTTP", "HTTPS"] },
                port: { type: "string", minLength: 1 },
                path: { type: "string", pattern: "^/" },
                intervalSeconds: positiveInt(300),
                timeoutSeconds: positiveInt(120),
                healthyThreshold: positiveInt(10),
                unhealthyThreshold: positiveInt(10),
                successCodes: { type: "string", pattern: "^[0-9]{3}(-[0-9]{3})?(,[0-9]{3}(-[0-9]{3})?)*$" },
              },
            },
            additionalTags: stringMap,
          },
        },
      },
    },
  },
} as const;

const ajv = new Ajv({ allErrors: true, strict: false });
const validateSpec = ajv.compile(gatewayClassConfigSpecSchema);

/**
 * Returns human-readable errors for a GatewayClassConfig spec (empty when valid): the schema, then
 * what the API server would refuse in the generated Service (CIDRs, label and annotation names)
 * and a CRD schema cannot say, so a typo is InvalidParameters on the class, not a failed apply.
 */
export function validateGatewayClassConfig(spec: unknown): string[] {
  if (!validateSpec(spec ?? {})) {
    return (validateSpec.errors ?? []).map((e) => {
      const path = ["spec", ...e.instancePath.split("/").filter(Boolean)].join(".");
      const extra = e.keyword === "additionalProperties" ? ` (${String((e.params as { additionalProperty?: string }).additionalProperty)})` : "";
      return `${path}: ${e.message ?? "invalid"}${extra}`;
    });
  }
  const service = (spec as GatewayClassConfigSpec | undefined)?.service;
  const errors: string[] = [];
  for (const [i, cidr] of (service?.loadBalancerSourceRanges ?? []).entries()) {
    if (!isCidr(cidr)) errors.push(`spec.service.loadBalancerSourceRanges.${i}: ${JSON.stringify(cidr)} is not a CIDR`);
  }
  for (const [what, map] of [["labels", service?.labels], ["annotations", service?.annotations]] as const) {
    for (const [k, v] of Object.entries(map ?? {})) {
      if (!isQualifiedName(k)) errors.push(`spec.service.${what}: ${JSON.stringify(k)} is not a valid ${what === "labels" ? "label" : "annotation"} name`);
      if (what === "labels" && !LABEL_VALUE.test(v)) errors.push(`spec.service.labels.${k}: ${JSON.stringify(v)} is not a valid label value`);
    }
  }
  return errors;
}

// Kubernetes' qualified names: an optional DNS-subdomain prefix and "/", then 1-63 characters.
const NAME_PART = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;

function isQualifiedName(key: string): boolean {
  const slash = key.lastIndexOf("/");
  if (slash < 0) return NAME_PART.test(key);
  const prefix = key.slice(0, slash);
  return prefix.length <= 253 && DNS_SUBDOMAIN.test(prefix) && NAME_PART.test(key.slice(slash + 1));
}

function isCidr(text: string): boolean {
  const slash = text.indexOf("/");
  if (slash < 0) return false;
  const addr = text.slice(0, slash);
  const bits = text.slice(slash + 1);
  const family = isIP(addr);
  return family !== 0 && /^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128);
}
