// AwsNlbConfig → the AWS Load Balancer Controller's Service annotations. Values follow the LBC's
// string encodings: booleans "true"/"false", lists "a,b", maps "k1=v1,k2=v2".
import type { AwsNlbConfig } from "../api/gatewayclassconfig.ts";

export const NLB_ANNOTATION_PREFIX = "service.beta.kubernetes.io/aws-load-balancer-";
/** Set to "*", the NLB sends PROXY protocol v2 on every target group. */
export const PROXY_PROTOCOL_ANNOTATION = `${NLB_ANNOTATION_PREFIX}proxy-protocol`;

/** Code-unit order: the same on every machine, unlike localeCompare. */
function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** `k1=v1,k2=v2` with keys sorted, so an unchanged config never produces a diff. */
function stringMap(map: Readonly<Record<string, string>>): string {
  return Object.keys(map)
    .sort(compareStrings)
    .map((k) => `${k}=${map[k] ?? ""}`)
    .join(",");
}

export function nlbAnnotations(nlb: AwsNlbConfig): Record<string, string> {
  const out: Record<string, string> = {};
  const set = (suffix: string, value: string | number | boolean | undefined): void => {
    if (value !== undefined) out[NLB_ANNOTATION_PREFIX + suffix] = String(value);
  };
  const list = (suffix: string, values: readonly string[] | undefined): void => {
    if (values && values.length > 0) set(suffix, values.join(","));
  };
  const map = (suffix: string, values: Readonly<Record<string, string>> | undefined): void => {
    if (values && Object.keys(values).length > 0) set(suffix, stringMap(values));
  };

  // `external` hands the Service to the LBC even without loadBalancerClass (the cloud provider's
  // legacy controller skips it instead of building a Classic LB). With a class the LBC defaults the
  // target type to `instance`, so it is always written; `ip` targets pods directly, no NodePorts.
  set("type", "external");
  set("nlb-target-type", nlb.targetType ?? "ip");
  set("scheme", nlb.scheme);
  set("name", nlb.name);
  list("subnets", nlb.subnets);
  list("security-groups", nlb.securityGroups);
  set("manage-backend-security-group-rules", nlb.manageBackendSecurityGroupRules);
  set("ip-address-type", nlb.ipAddressType);
  map("attributes", nlb.loadBalancerAttributes);
  map("target-group-attributes", nlb.targetGroupAttributes);
  // `*` is the only value the LBC accepts: PPv2 on every target group. false = leave it off.
  if (nlb.proxyProtocol === true) set("proxy-protocol", "*");
  const hc = nlb.healthCheck;
  if (hc) {
    set("healthcheck-protocol", hc.protocol);
    set("healthcheck-port", hc.port);
    set("healthcheck-path", hc.path);
    set("healthcheck-interval", hc.intervalSeconds);
    set("healthcheck-timeout", hc.timeoutSeconds);
    set("healthcheck-healthy-threshold", hc.healthyThreshold);
    set("healthcheck-unhealthy-threshold", hc.unhealthyThreshold);
    set("healthcheck-success-codes", hc.successCodes);
  }
  map("additional-resource-tags", nlb.additionalTags);

  const sorted: Record<string, string> = {};
  for (const k of Object.keys(out).sort(compareStrings)) sorted[k] = out[k] ?? "";
  return sorted;
}
