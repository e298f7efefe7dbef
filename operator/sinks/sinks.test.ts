// GatewayClassConfig end to end: objects in the (fake) API server → translate → the sinks → the
// generated Service and the statuses and Events a user sees.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type { Service } from "../api/objects.ts";
import type { FakeApiServer } from "../fakeapi/server.ts";
import { translate } from "../translate/translate.ts";
import { KubeSinks } from "./sinks.ts";
import { gateway, gatewayClass, gatewayClassConfig, kubeConfigOf, put, snapshotFrom, startServer } from "./testkit.ts";

let server: FakeApiServer;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server.close();
});

const NLB = "service.beta.kubernetes.io/aws-load-balancer-";
const GW_API = "gateway.networking.k8s.io/v1";
const ref = (name: string, namespace: string) => ({ group: "sluice.dev", kind: "GatewayClassConfig", name, namespace });

async function round(sinks: KubeSinks): Promise<void> {
  const snap = snapshotFrom(server);
  sinks.update(translate(snap, { addressing: { mode: "service" } }), snap);
  await sinks.idle();
}

const accepted = (name: string) =>
  ((server.get(GW_API, "GatewayClass", undefined, name)?.status as { conditions?: { type: string; status: string; reason: string; message: string }[] } | undefined)?.conditions ?? [])
    .find((c) => c.type === "Accepted");

test("a full GatewayClassConfig becomes the Service's type, class, policy, ranges and NLB annotations", async () => {
  put(server, gatewayClassConfig("nlb", {
    service: {
      type: "LoadBalancer",
      loadBalancerClass: "service.k8s.aws/nlb",
      externalTrafficPolicy: "Local",
      loadBalancerSourceRanges: ["10.0.0.0/8", "192.168.0.0/16"],
      labels: { "cost-center": "edge" },
      annotations: { "example.com/owner": "class" },
    },
    aws: {
      nlb: {
        scheme: "internet-facing",
        targetType: "instance",
        subnets: ["subnet-a", "subnet-b"],
        securityGroups: ["sg-1"],
        manageBackendSecurityGroupRules: true,
        ipAddressType: "dualstack",
        loadBalancerAttributes: { "load_balancing.cross_zone.enabled": "true", "deletion_protection.enabled": "true" },
        targetGroupAttributes: { "deregistration_delay.timeout_seconds": "30", "preserve_client_ip.enabled": "true" },
        proxyProtocol: true,
        healthCheck: { protocol: "HTTP", port: "traffic-port", path: "/healthz", intervalSeconds: 10, timeoutSeconds: 5, healthyThreshold: 2, unhealthyThreshold: 3, successCodes: "200-299" },
        additionalTags: { team: "net", env: "prod" },
      },
    },
  }, "i1"));
  put(server, gatewayClass("i1", undefined, ref("nlb", "i1")));
  put(server, gateway("gw", "i1", {
    listeners: [{ name: "http", port: 80, protocol: "HTTP" }, { name: "dns", port: 53, protocol: "UDP" }],
    infrastructure: { labels: { "cost-center": "gw" }, annotations: { "example.com/owner": "gateway", [`${NLB}scheme`]: "internal" } },
  }, "i1"));
  const sinks = new KubeSinks({ kubeConfig: kubeConfigOf(server), backoff: { initialMs: 5, maxMs: 50 } });
  await round(sinks);

  assert.equal(accepted("i1")?.status, "True");
  const s = server.get("v1", "Service", "i1", "sluice-gw") as unknown as Service;
  assert.ok(s);
  assert.equal(s.spec?.type, "LoadBalancer");
  assert.equal(s.spec?.loadBalancerClass, "service.k8s.aws/nlb");
  assert.equal(s.spec?.externalTrafficPolicy, "Local");
  assert.deepEqual(s.spec?.loadBalancerSourceRanges, ["10.0.0.0/8", "192.168.0.0/16"]);
  assert.deepEqual(s.spec?.ports?.map((p) => `${p.port}/${p.protocol}`), ["53/UDP", "80/TCP"]);
  const a = s.metadata.annotations ?? {};
  assert.equal(a[`${NLB}type`], "external");
  assert.equal(a[`${NLB}nlb-target-type`], "instance");
  assert.equal(a[`${NLB}scheme`], "internal", "Gateway infrastructure annotations win over the class config");
  assert.equal(a[`${NLB}subnets`], "subnet-a,subnet-b");
  assert.equal(a[`${NLB}security-groups`], "sg-1");
  assert.equal(a[`${NLB}manage-backend-security-group-rules`], "true");
  assert.equal(a[`${NLB}ip-address-type`], "dualstack");
  assert.equal(a[`${NLB}attributes`], "deletion_protection.enabled=true,load_balancing.cross_zone.enabled=true");
  assert.equal(a[`${NLB}target-group-attributes`], "deregistration_delay.timeout_seconds=30,preserve_client_ip.enabled=true");
  assert.equal(a[`${NLB}proxy-protocol`], "*");
  assert.equal(a[`${NLB}healthcheck-protocol`], "HTTP");
  assert.equal(a[`${NLB}healthcheck-port`], "traffic-port");
  assert.equal(a[`${NLB}healthcheck-path`], "/healthz");
  assert.equal(a[`${NLB}healthcheck-interval`], "10");
  assert.equal(a[`${NLB}healthcheck-timeout`], "5");
  assert.equal(a[`${NLB}healthcheck-healthy-threshold`], "2");
  assert.equal(a[`${NLB}healthcheck-unhealthy-threshold`], "3");
  assert.equal(a[`${NLB}healthcheck-success-codes`], "200-299");
  assert.equal(a[`${NLB}additional-resource-tags`], "env=prod,team=net");
  assert.equal(a["example.com/owner"], "gateway");
  assert.equal(s.metadata.labels?.["cost-center"], "gw");
  sinks.stop();
});

test("NodePort class: NodePort Service without load balancer fields", async () => {
  put(server, gatewayClassConfig("np", { service: { type: "NodePort", loadBalancerClass: "ignored/for-nodeport", loadBalancerSourceRanges: ["10.0.0.0/8"], externalTrafficPolicy: "Cluster" } }, "i2"));
  put(server, gatewayClass("i2", undefined, ref("np", "i2")));
  put(server, gateway("gw", "i2", {}, "i2"));
  const sinks = new KubeSinks({ kubeConfig: kubeConfigOf(server), backoff: { initialMs: 5, maxMs: 50 } });
  await round(sinks);
  const s = server.get("v1", "Service", "i2", "sluice-gw") as unknown as Service;
  assert.equal(s.spec?.type, "NodePort");
  assert.equal(s.spec?.loadBalancerClass, undefined);
  assert.equal(s.spec?.loadBalancerSourceRanges, undefined);
  assert.equal(s.spec?.externalTrafficPolicy, "Cluster");
  sinks.stop();
});

test("an invalid GatewayClassConfig: Accepted=False/InvalidParameters, an Event, and the Service is kept", async () => {
  put(server, gatewayClassConfig("cfg", { aws: { nlb: { scheme: "internal" } } }, "i3"));
  put(server, gatewayClass("i3", undefined, ref("cfg", "i3")));
  put(server, gateway("gw", "i3", {}, "i3"));
  const sinks = new KubeSinks({ kubeConfig: kubeConfigOf(server), backoff: { initialMs: 5, maxMs: 50 } });
  await round(sinks);
  assert.equal(accepted("i3")?.status, "True");
  assert.ok(server.get("v1", "Service", "i3", "sluice-gw"));

  // A typo: the API server (like a real one with a structural schema) would prune or reject
  // unknown fields, so an enum violation is the realistic breakage.
  put(server, gatewayClassConfig("cfg", { aws: { nlb: { scheme: "public", healthCheck: { intervalSeconds: 0 } } } }, "i3"));
  await round(sinks);
  const cond = accepted("i3");
  assert.equal(cond?.status, "False");
  assert.equal(cond?.reason, "InvalidParameters");
  assert.match(cond?.message ?? "", /scheme/);
  const ev = (server.list("v1", "Event", "default") as unknown as { reason: string; involvedObject: { kind: string; name: string }; message: string; type: string }[])
    .find((e) => e.reason === "InvalidParameters" && e.involvedObject.kind === "GatewayClass" && e.involvedObject.name === "i3");
  assert.ok(ev, "InvalidParameters Event on the GatewayClass");
  assert.equal(ev.type, "Warning");
  const gwAccepted = ((server.get(GW_API, "Gateway", "i3", "gw")?.status as { conditions?: { type: string; status: string; reason: string }[] }).conditions ?? []).find((c) => c.type === "Accepted");
  assert.equal(gwAccepted?.reason, "InvalidParameters");
  // The Gateway is still ours: its Service (and the NLB behind it) survives the broken config.
  assert.ok(server.get("v1", "Service", "i3", "sluice-gw"), "Service kept while the class is rejected");
  assert.equal(sinks.services.deleteCount(), 0);

  // Fixed again: accepted, and no second Event.
  put(server, gatewayClassConfig("cfg", { aws: { nlb: { scheme: "internal" } } }, "i3"));
  const before = sinks.events.writeCount();
  await round(sinks);
  assert.equal(accepted("i3")?.status, "True");
  assert.equal(sinks.events.writeCount(), before);
  sinks.stop();
});
