import { test } from "node:test";
import assert from "node:assert/strict";
import type { Gateway } from "../api/objects.ts";
import type { GatewayClassConfigSpec } from "../api/gatewayclassconfig.ts";
import {
  GATEWAY_NAME_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE, desiredService, generatedServiceName, labelValue,
} from "./service.ts";

const DNS1035 = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

function gateway(name = "web", extra: Partial<Gateway["metadata"]> = {}, infrastructure?: NonNullable<Gateway["spec"]>["infrastructure"]): Gateway {
  return {
    apiVersion: "gateway.networking.k8s.io/v1",
    kind: "Gateway",
    metadata: { name, namespace: "apps", uid: "uid-1", ...extra },
    spec: { gatewayClassName: "sluice", listeners: [], ...(infrastructure ? { infrastructure } : {}) },
  };
}

test("generatedServiceName keeps short names readable", () => {
  assert.equal(generatedServiceName("web"), "sluice-web");
});

test("generatedServiceName shortens long names to distinct, stable DNS-1035 labels", () => {
  const a = "a".repeat(60) + "-one";
  const b = "a".repeat(60) + "-two";
  const na = generatedServiceName(a);
  const nb = generatedServiceName(b);
  for (const n of [na, nb]) {
    assert.ok(n.length <= 63, n);
    assert.match(n, DNS1035);
    assert.ok(n.startsWith("sluice-aaaa"), n);
  }
  assert.notEqual(na, nb);
  assert.equal(generatedServiceName(a), na, "stable across calls");
  // Exactly at the limit: no hash needed.
  const edge = "b".repeat(63 - "sluice-".length);
  assert.equal(generatedServiceName(edge), `sluice-${edge}`);
  assert.notEqual(generatedServiceName(edge + "b"), `sluice-${edge}b`);
  assert.ok(generatedServiceName("x".repeat(253)).length <= 63);
});

test("generatedServiceName turns dotted Gateway names into valid labels without colliding", () => {
  const dotted = generatedServiceName("a.b");
  assert.match(dotted, DNS1035);
  assert.notEqual(dotted, generatedServiceName("a-b"));
  // Trailing hyphens left by truncation are trimmed, so no `--` appears before the hash.
  const tricky = generatedServiceName("c".repeat(44) + "-".repeat(20) + "d");
  assert.match(tricky, DNS1035);
  assert.ok(!tricky.includes("--"), tricky);
});

test("labelValue passes valid values and shortens long ones uniquely", () => {
  assert.equal(labelValue("web"), "web");
  assert.equal(labelValue("a.b_c-d"), "a.b_c-d");
  const long1 = "g".repeat(70) + "1";
  const long2 = "g".repeat(70) + "2";
  for (const v of [labelValue(long1), labelValue(long2), labelValue("-bad-"), labelValue("x/y"), labelValue("...")]) {
    assert.ok(v.length <= 63, v);
    assert.match(v, LABEL_VALUE);
  }
  assert.notEqual(labelValue(long1), labelValue(long2));
  assert.equal(labelValue(long1), labelValue(long1));
  assert.equal(labelValue(""), "");
});

test("a Gateway without config gets a plain LoadBalancer Service", () => {
  const svc = desiredService(gateway(), [{ port: 80, protocol: "TCP" }], undefined);
  assert.deepEqual(svc, {
    apiVersion: "v1",
    kind: "Service",
    metadata: {
      name: "sluice-web",
      namespace: "apps",
      labels: { "app.kubernetes.io/managed-by": "sluice", "gateway.networking.k8s.io/gateway-name": "web" },
      ownerReferences: [{
        apiVersion: "gateway.networking.k8s.io/v1", kind: "Gateway", name: "web", uid: "uid-1",
        controller: true, blockOwnerDeletion: true,
      }],
    },
    spec: { type: "LoadBalancer", ports: [{ name: "port-80", protocol: "TCP", port: 80, targetPort: 80 }] },
  });
  assert.equal(svc.spec?.selector, undefined, "no selector: the datapath intercepts traffic");
});

test("the owner reference omits the uid when the Gateway has none", () => {
  const gw = gateway();
  delete gw.metadata.uid;
  const owner = desiredService(gw, [], undefined).metadata.ownerReferences?.[0];
  assert.ok(owner);
  assert.ok(!("uid" in owner));
});

test("ports are deduplicated, sorted by port with TCP before UDP, and named", () => {
  const svc = desiredService(gateway(), [
    { port: 443, protocol: "UDP" },
    { port: 8080, protocol: "TCP" },
    { port: 443, protocol: "TCP" },
    { port: 53, protocol: "UDP" },
    { port: 443, protocol: "TCP" },
  ], undefined);
  assert.deepEqual(svc.spec?.ports, [
    { name: "port-53-udp", protocol: "UDP", port: 53, targetPort: 53 },
    { name: "port-443", protocol: "TCP", port: 443, targetPort: 443 },
    { name: "port-443-udp", protocol: "UDP", port: 443, targetPort: 443 },
    { name: "port-8080", protocol: "TCP", port: 8080, targetPort: 8080 },
  ]);
});

test("labels: class config < Gateway infrastructure < Sluice's own", () => {
  const config: GatewayClassConfigSpec = {
    service: { labels: { team: "class", tier: "class", [MANAGED_BY_LABEL]: "someone-else" } },
  };
  const gw = gateway("web", {}, { labels: { tier: "gateway", [GATEWAY_NAME_LABEL]: "spoofed" } });
  assert.deepEqual(desiredService(gw, [], config).metadata.labels, {
    [MANAGED_BY_LABEL]: MANAGED_BY_VALUE,
    [GATEWAY_NAME_LABEL]: "web",
    team: "class",
    tier: "gateway",
  });
});

test("the gateway-name label is shortened for long Gateway names", () => {
  const name = "n".repeat(100);
  const labels = desiredService(gateway(name), [], undefined).metadata.labels ?? {};
  assert.equal(labels[GATEWAY_NAME_LABEL], labelValue(name));
  assert.ok((labels[GATEWAY_NAME_LABEL] ?? "").length <= 63);
});

test("annotations: NLB < class config < Gateway infrastructure, keys sorted", () => {
  const config: GatewayClassConfigSpec = {
    service: {
      annotations: {
        "service.beta.kubernetes.io/aws-load-balancer-scheme": "internal",
        "example.com/from": "class",
        "example.com/class-only": "yes",
      },
    },
    aws: { nlb: { scheme: "internet-facing", name: "edge" } },
  };
  const gw = gateway("web", {}, {
    annotations: { "example.com/from": "gateway", "service.beta.kubernetes.io/aws-load-balancer-name": "mine" },
  });
  const annotations = desiredService(gw, [], config).metadata.annotations ?? {};
  assert.deepEqual(annotations, {
    "example.com/class-only": "yes",
    "example.com/from": "gateway",
    "service.beta.kubernetes.io/aws-load-balancer-name": "mine",
    "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "ip",
    "service.beta.kubernetes.io/aws-load-balancer-scheme": "internal",
    "service.beta.kubernetes.io/aws-load-balancer-type": "external",
  });
  assert.deepEqual(Object.keys(annotations), Object.keys(annotations).sort());
});

test("annotations are omitted when there are none", () => {
  assert.ok(!("annotations" in desiredService(gateway(), [], { service: {} }).metadata));
});

test("LoadBalancer-only fields are set for LoadBalancer Services", () => {
  const config: GatewayClassConfigSpec = {
    service: {
      loadBalancerClass: "service.k8s.aws/nlb",
      loadBalancerSourceRanges: ["10.0.0.0/8", "192.168.0.0/16"],
      externalTrafficPolicy: "Local",
    },
  };
  const spec = desiredService(gateway(), [{ port: 80, protocol: "TCP" }], config).spec;
  assert.deepEqual(spec, {
    type: "LoadBalancer",
    ports: [{ name: "port-80", protocol: "TCP", port: 80, targetPort: 80 }],
    loadBalancerClass: "service.k8s.aws/nlb",
    loadBalancerSourceRanges: ["10.0.0.0/8", "192.168.0.0/16"],
    externalTrafficPolicy: "Local",
  });
  assert.notEqual(spec?.loadBalancerSourceRanges, config.service?.loadBalancerSourceRanges, "copied, not shared");
});

test("NodePort Services drop LoadBalancer-only fields but keep externalTrafficPolicy", () => {
  const config: GatewayClassConfigSpec = {
    service: {
      type: "NodePort",
      loadBalancerClass: "service.k8s.aws/nlb",
      loadBalancerSourceRanges: ["10.0.0.0/8"],
      externalTrafficPolicy: "Cluster",
    },
  };
  assert.deepEqual(desiredService(gateway(), [], config).spec, { type: "NodePort", ports: [], externalTrafficPolicy: "Cluster" });
});

test("no field is ever undefined and the output is stable", () => {
  const config: GatewayClassConfigSpec = { service: { labels: { b: "2", a: "1" } }, aws: { nlb: {} } };
  const one = desiredService(gateway(), [{ port: 1, protocol: "UDP" }], config);
  const two = desiredService(gateway(), [{ port: 1, protocol: "UDP" }], config);
  assert.equal(JSON.stringify(one), JSON.stringify(two));
  const walk = (v: unknown, path: string): void => {
    assert.notEqual(v, undefined, path);
    if (v && typeof v === "object") for (const [k, c] of Object.entries(v)) walk(c, `${path}.${k}`);
  };
  walk(one, "svc");
  const gw = gateway();
  delete gw.metadata.namespace;
  walk(desiredService(gw, [], { service: { loadBalancerSourceRanges: [] } }), "svc");
  assert.ok(!("loadBalancerSourceRanges" in (desiredService(gw, [], { service: { loadBalancerSourceRanges: [] } }).spec ?? {})));
});
