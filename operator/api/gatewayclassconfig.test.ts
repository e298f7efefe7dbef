// GatewayClassConfig validation beyond the schema: what the API server would refuse in the
// generated Service must be InvalidParameters on the class, not a failed apply later.
import { test } from "node:test";
import assert from "node:assert/strict";
import { validateGatewayClassConfig } from "./gatewayclassconfig.ts";

test("a valid config has no errors", () => {
  assert.deepEqual(validateGatewayClassConfig({
    service: {
      type: "LoadBalancer", loadBalancerSourceRanges: ["10.0.0.0/8", "2001:db8::/32", "0.0.0.0/0"],
      labels: { team: "edge", "example.com/tier": "front-1", empty: "" },
      annotations: { "service.beta.kubernetes.io/aws-load-balancer-name": "anything goes: values are free" },
    },
  }), []);
  assert.deepEqual(validateGatewayClassConfig(undefined), []);
});

test("source ranges must be CIDRs", () => {
  assert.deepEqual(validateGatewayClassConfig({ service: { loadBalancerSourceRanges: ["10.0.0.0/8", "10.0.0.1", "10.0.0.0/33", "::/129", "office"] } }), [
    'spec.service.loadBalancerSourceRanges.1: "10.0.0.1" is not a CIDR',
    'spec.service.loadBalancerSourceRanges.2: "10.0.0.0/33" is not a CIDR',
    'spec.service.loadBalancerSourceRanges.3: "::/129" is not a CIDR',
    'spec.service.loadBalancerSourceRanges.4: "office" is not a CIDR',
  ]);
});

test("label and annotation names, and label values, must be what Kubernetes accepts", () => {
  assert.deepEqual(validateGatewayClassConfig({
    service: {
      labels: { "bad key": "x", "Example.com/x": "y", ok: "not ok!", [`${"a".repeat(64)}`]: "z" },
      annotations: { "-leading": "v", "example.com/": "v" },
    },
  }), [
    'spec.service.labels: "bad key" is not a valid label name',
    'spec.service.labels: "Example.com/x" is not a valid label name',
    'spec.service.labels.ok: "not ok!" is not a valid label value',
    `spec.service.labels: "${"a".repeat(64)}" is not a valid label name`,
    'spec.service.annotations: "-leading" is not a valid annotation name',
    'spec.service.annotations: "example.com/" is not a valid annotation name',
  ]);
});

test("schema errors come first and alone", () => {
  assert.deepEqual(validateGatewayClassConfig({ service: { type: "ClusterIP" } }), ["spec.service.type: must be equal to one of the allowed values"]);
});
