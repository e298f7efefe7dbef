import { test } from "node:test";
import assert from "node:assert/strict";
import { nlbAnnotations } from "./nlb.ts";

const P = "service.beta.kubernetes.io/aws-load-balancer-";

test("an empty config hands the Service to the LBC with ip targets", () => {
  assert.deepEqual(nlbAnnotations({}), { [`${P}nlb-target-type`]: "ip", [`${P}type`]: "external" });
});

test("every field maps to its annotation", () => {
  const got = nlbAnnotations({
    scheme: "internet-facing",
    targetType: "instance",
    name: "edge",
    subnets: ["subnet-a", "subnet-b"],
    securityGroups: ["sg-1", "sg-2"],
    manageBackendSecurityGroupRules: false,
    ipAddressType: "dualstack",
    loadBalancerAttributes: { "load_balancing.cross_zone.enabled": "true", "deletion_protection.enabled": "true" },
    targetGroupAttributes: { "preserve_client_ip.enabled": "true", "deregistration_delay.timeout_seconds": "30" },
    proxyProtocol: true,
    healthCheck: {
      protocol: "HTTP",
      port: "traffic-port",
      path: "/healthz",
      intervalSeconds: 10,
      timeoutSeconds: 6,
      healthyThreshold: 2,
      unhealthyThreshold: 3,
      successCodes: "200-399",
    },
    additionalTags: { team: "edge", env: "prod" },
  });
  assert.deepEqual(got, {
    [`${P}additional-resource-tags`]: "env=prod,team=edge",
    [`${P}attributes`]: "deletion_protection.enabled=true,load_balancing.cross_zone.enabled=true",
    [`${P}healthcheck-healthy-threshold`]: "2",
    [`${P}healthcheck-interval`]: "10",
    [`${P}healthcheck-path`]: "/healthz",
    [`${P}healthcheck-port`]: "traffic-port",
    [`${P}healthcheck-protocol`]: "HTTP",
    [`${P}healthcheck-success-codes`]: "200-399",
    [`${P}healthcheck-timeout`]: "6",
    [`${P}healthcheck-unhealthy-threshold`]: "3",
    [`${P}ip-address-type`]: "dualstack",
    [`${P}manage-backend-security-group-rules`]: "false",
    [`${P}name`]: "edge",
    [`${P}nlb-target-type`]: "instance",
    [`${P}proxy-protocol`]: "*",
    [`${P}scheme`]: "internet-facing",
    [`${P}security-groups`]: "sg-1,sg-2",
    [`${P}subnets`]: "subnet-a,subnet-b",
    [`${P}target-group-attributes`]: "deregistration_delay.timeout_seconds=30,preserve_client_ip.enabled=true",
    [`${P}type`]: "external",
  });
});

test("output keys are sorted, whatever the input order", () => {
  const a = nlbAnnotations({ additionalTags: { b: "2", a: "1" }, scheme: "internal", subnets: ["s"] });
  const b = nlbAnnotations({ subnets: ["s"], scheme: "internal", additionalTags: { a: "1", b: "2" } });
  assert.deepEqual(Object.entries(a), Object.entries(b));
  const keys = Object.keys(a);
  assert.deepEqual(keys, [...keys].sort());
});

test("proxyProtocol false, empty lists and empty maps emit nothing", () => {
  const got = nlbAnnotations({
    proxyProtocol: false,
    subnets: [],
    securityGroups: [],
    loadBalancerAttributes: {},
    targetGroupAttributes: {},
    additionalTags: {},
    healthCheck: {},
  });
  assert.deepEqual(Object.keys(got).sort(), [`${P}nlb-target-type`, `${P}type`]);
});

test("manageBackendSecurityGroupRules true is written as the string true", () => {
  assert.equal(nlbAnnotations({ manageBackendSecurityGroupRules: true })[`${P}manage-backend-security-group-rules`], "true");
});
