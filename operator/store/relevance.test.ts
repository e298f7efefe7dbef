import { test } from "node:test";
import assert from "node:assert/strict";
import { KIND_NAMES } from "../api/kinds.ts";
import type { K8sObject } from "../api/objects.ts";
import { isRelevant, relevantKeys } from "./relevance.ts";
import type { Collections } from "./snapshot.ts";

const GW = "gateway.networking.k8s.io/v1";
const obj = (apiVersion: string, kind: string, namespace: string, name: string, spec?: unknown, labels?: Record<string, string>): K8sObject => ({
  apiVersion, kind, metadata: { name, namespace, ...(labels ? { labels } : {}) }, ...(spec === undefined ? {} : { spec }),
});
// Keyed by position, not keyOf(): malformed objects (no metadata) must get in too.
const relevant = (...objects: K8sObject[]) => {
  const collections = new Map(KIND_NAMES.map((k) => [k as string, new Map<string, K8sObject>()]));
  objects.forEach((o, i) => collections.get(o.kind)?.set(String(i), o));
  return relevantKeys(Object.fromEntries(collections) as unknown as Collections);
};
const sorted = (s: ReadonlySet<string>): string[] => [...s].sort();

test("route backendRefs and requestMirror backends make Services relevant", () => {
  const mirror = (name: string, extra: Record<string, string> = {}) => ({ type: "RequestMirror", requestMirror: { backendRef: { name, ...extra } } });
  const rel = relevant(
    obj(GW, "HTTPRoute", "apps", "web", {
      rules: [{
        backendRefs: [
          { name: "web", port: 80 },
          { name: "far", namespace: "other", port: 80 },
          { name: "explicit", group: "", kind: "Service", port: 80 },
          { name: "bucket", group: "example.com", kind: "Bucket" },
          { name: "not-a-service", kind: "ServiceImport" },
          { name: "with-filter", port: 80, filters: [mirror("mirror-in-backend")] },
        ],
        filters: [mirror("mirror-in-rule", { namespace: "shadow" }), { type: "RequestHeaderModifier" }],
      }],
    }),
    obj(GW, "GRPCRoute", "apps", "grpc", { rules: [{ backendRefs: [{ name: "grpc" }], filters: [mirror("grpc-mirror")] }] }),
    obj(GW, "TLSRoute", "apps", "tls", { rules: [{ backendRefs: [{ name: "tls" }] }] }),
    obj("gateway.networking.k8s.io/v1alpha2", "TCPRoute", "apps", "tcp", { rules: [{ backendRefs: [{ name: "tcp" }] }] }),
    obj("gateway.networking.k8s.io/v1alpha2", "UDPRoute", "dns", "udp", { rules: [{ backendRefs: [{ name: "udp" }] }] }),
  );
  assert.deepEqual(sorted(rel.services), [
    "apps/explicit", "apps/grpc", "apps/grpc-mirror", "apps/mirror-in-backend", "apps/tcp", "apps/tls", "apps/web", "apps/with-filter",
    "dns/udp", "other/far", "shadow/mirror-in-rule",
  ]);
  assert.deepEqual(sorted(rel.secrets), []);
  assert.deepEqual(sorted(rel.configMaps), []);
});

test("BackendTLSPolicy targets Services and its CA refs are ConfigMaps, both in its own namespace", () => {
  const rel = relevant(obj(GW, "BackendTLSPolicy", "apps", "p", {
    targetRefs: [{ group: "", kind: "Service", name: "secure" }, { group: "", kind: "Pod", name: "pod" }],
    validation: { hostname: "x", caCertificateRefs: [{ group: "", kind: "ConfigMap", name: "ca" }, { group: "", kind: "Secret", name: "nope" }] },
  }));
  assert.deepEqual(sorted(rel.services), ["apps/secure"]);
  assert.deepEqual(sorted(rel.configMaps), ["apps/ca"]);
  assert.deepEqual(sorted(rel.secrets), []);
});

test("Services Sluice manages are always relevant", () => {
  const rel = relevant(
    obj("v1", "Service", "infra", "gw-sluice", {}, { "app.kubernetes.io/managed-by": "sluice" }),
    obj("v1", "Service", "infra", "helm", {}, { "app.kubernetes.io/managed-by": "Helm" }),
  );
  assert.deepEqual(sorted(rel.services), ["infra/gw-sluice"]);
});

test("EndpointSlices are relevant iff they belong to a relevant Service in their namespace", () => {
  const rel = relevant(obj(GW, "HTTPRoute", "apps", "r", { rules: [{ backendRefs: [{ name: "web" }] }] }));
  const slice = (namespace: string, service?: string): K8sObject =>
    ({ ...obj("discovery.k8s.io/v1", "EndpointSlice", namespace, "s", undefined, service ? { "kubernetes.io/service-name": service } : undefined), addressType: "IPv4" }) as K8sObject;
  assert.equal(isRelevant(rel, "EndpointSlice", "apps/s", slice("apps", "web")), true);
  assert.equal(isRelevant(rel, "EndpointSlice", "other/s", slice("other", "web")), false);
  assert.equal(isRelevant(rel, "EndpointSlice", "apps/s", slice("apps", "db")), false);
  assert.equal(isRelevant(rel, "EndpointSlice", "apps/s", slice("apps")), false);
});

test("Gateways make certificate Secrets and client-validation ConfigMaps relevant", () => {
  const rel = relevant(obj(GW, "Gateway", "infra", "gw", {
    gatewayClassName: "sluice",
    listeners: [
      { name: "https", port: 443, protocol: "HTTPS", tls: { certificateRefs: [{ name: "cert" }, { name: "shared", namespace: "certs", kind: "Secret", group: "" }, { name: "cm", kind: "ConfigMap" }] } },
      { name: "http", port: 80, protocol: "HTTP" },
    ],
    tls: {
      backend: { clientCertificateRef: { name: "client" } },
      frontend: {
        default: { validation: { caCertificateRefs: [{ name: "ca", kind: "ConfigMap", group: "" }] } },
        perPort: [{ port: 8443, tls: { validation: { caCertificateRefs: [{ name: "ca-8443", namespace: "pki", kind: "ConfigMap" }] } } }],
      },
    },
  }));
  assert.deepEqual(sorted(rel.secrets), ["certs/shared", "infra/cert", "infra/client"]);
  assert.deepEqual(sorted(rel.configMaps), ["infra/ca", "pki/ca-8443"]);
  assert.deepEqual(sorted(rel.services), []);
});

test("isRelevant filters only Services, EndpointSlices, Secrets and ConfigMaps", () => {
  const rel = relevant();
  assert.equal(isRelevant(rel, "Service", "a/b", obj("v1", "Service", "a", "b")), false);
  assert.equal(isRelevant(rel, "Secret", "a/b", obj("v1", "Secret", "a", "b")), false);
  assert.equal(isRelevant(rel, "ConfigMap", "a/b", obj("v1", "ConfigMap", "a", "b")), false);
  assert.equal(isRelevant(rel, "HTTPRoute", "a/b", obj(GW, "HTTPRoute", "a", "b")), true);
  assert.equal(isRelevant(rel, "Namespace", "a", obj("v1", "Namespace", "", "a")), true);
});

test("malformed objects never throw and contribute nothing", () => {
  const junk: unknown[] = [null, 7, "x", [], {}, { rules: null }, { rules: "x" }, { rules: [null, 1, { backendRefs: {} }, { backendRefs: [null, 3, { name: 5 }, { name: "" }] }] },
    { rules: [{ filters: [null, { requestMirror: null }, { requestMirror: { backendRef: "x" } }] }] },
    { listeners: [null, { tls: null }, { tls: { certificateRefs: "x" } }], tls: { frontend: { perPort: [null, { tls: 1 }] }, backend: [] } },
    { targetRefs: [{}], validation: { caCertificateRefs: null } }];
  const objects: K8sObject[] = [];
  for (const [i, spec] of junk.entries()) {
    for (const kind of ["HTTPRoute", "GRPCRoute", "TCPRoute", "Gateway", "BackendTLSPolicy"]) objects.push(obj(GW, kind, "ns", `${kind}-${i}`, spec));
  }
  objects.push({ apiVersion: GW, kind: "HTTPRoute" } as unknown as K8sObject);
  objects.push({ apiVersion: "v1", kind: "Service", metadata: { name: "s", labels: null } } as unknown as K8sObject);
  const rel = relevant(...objects);
  assert.deepEqual([...rel.services, ...rel.secrets, ...rel.configMaps], []);
  assert.equal(rel.endpointSlice({ metadata: null } as unknown as Parameters<typeof rel.endpointSlice>[0]), false);
});
