// A synthetic, realistic world of Gateways, routes, Services and EndpointSlices, shared by the
// translator's property tests and its benchmark.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import type { K8sObject, Secret } from "../api/objects.ts";

export interface WorldShape {
  gateways: number;
  httpRoutes: number;
  services: number;
  namespaces?: number;
  tcpRoutes?: number;
}

const GW = "gateway.networking.k8s.io/v1";

/** The test certificate from the golden fixtures, as a Secret body. */
function certificateData(): Record<string, string> {
  const text = readFileSync(join(import.meta.dirname, "testdata", "base", "certificates.yaml"), "utf8");
  for (const doc of parseAllDocuments(text)) {
    const s = doc.toJS() as Secret | null;
    if (s?.metadata?.name === "tls-validity-checks-certificate" && s.data) return s.data;
  }
  throw new Error("certificate fixture not found");
}

export function syntheticWorld(shape: WorldShape): K8sObject[] {
  const nsCount = shape.namespaces ?? 10;
  const ns = (i: number) => `team-${i % nsCount}`;
  const cert = certificateData();
  const out: K8sObject[] = [
    { apiVersion: GW, kind: "GatewayClass", metadata: { name: "sluice" }, spec: { controllerName: "sluice.dev/gateway-controller" } },
  ];
  for (let i = 0; i < nsCount; i++) {
    out.push({ apiVersion: "v1", kind: "Namespace", metadata: { name: ns(i), labels: { team: String(i) } } });
    out.push({ apiVersion: "v1", kind: "Secret", metadata: { name: "tls", namespace: ns(i) }, type: "kubernetes.io/tls", data: cert } as Secret);
  }
  for (let s = 0; s < shape.services; s++) {
    out.push({
      apiVersion: "v1", kind: "Service", metadata: { name: `svc-${s}`, namespace: ns(s) },
      spec: { ports: [{ name: "http", port: 8080, targetPort: 3000 }, { name: "tcp", port: 9000, targetPort: 9000 }] },
    });
    out.push({
      apiVersion: "discovery.k8s.io/v1", kind: "EndpointSlice",
      metadata: { name: `svc-${s}-a`, namespace: ns(s), labels: { "kubernetes.io/service-name": `svc-${s}` } },
      addressType: "IPv4",
      ports: [{ name: "http", port: 3000 }, { name: "tcp", port: 9000 }],
      endpoints: [0, 1, 2].map((e) => ({ addresses: [`10.${(s >> 8) & 255}.${s & 255}.${e + 1}`], conditions: { ready: true } })),
    } as K8sObject);
  }
  for (let g = 0; g < shape.gateways; g++) {
    out.push({
      apiVersion: GW, kind: "Gateway", metadata: { name: `gw-${g}`, namespace: ns(g) },
      spec: {
        gatewayClassName: "sluice",
        listeners: [
          { name: "http", port: 80, protocol: "HTTP", hostname: `*.g${g}.example.com`, allowedRoutes: { namespaces: { from: "All" } } },
          { name: "https", port: 443, protocol: "HTTPS", hostname: `*.g${g}.example.com`, tls: { certificateRefs: [{ name: "tls" }] }, allowedRoutes: { namespaces: { from: "All" } } },
          { name: "tcp", port: 9000, protocol: "TCP", allowedRoutes: { namespaces: { from: "All" } } },
        ],
      },
    });
  }
  for (let r = 0; r < shape.httpRoutes; r++) out.push(httpRoute(r, shape, ns));
  for (let r = 0; r < (shape.tcpRoutes ?? 0); r++) {
    const g = r % shape.gateways;
    out.push({
      apiVersion: GW, kind: "TCPRoute", metadata: { name: `tcp-${r}`, namespace: ns(r), creationTimestamp: stamp(r) },
      spec: {
        parentRefs: [{ name: `gw-${g}`, namespace: ns(g), sectionName: "tcp" }],
        rules: [{ backendRefs: [{ name: `svc-${r % shape.services}`, namespace: ns(r % shape.services), port: 9000, weight: 80 }, { name: `svc-${(r + 1) % shape.services}`, namespace: ns((r + 1) % shape.services), port: 9000, weight: 20 }] }],
      },
    });
  }
  return out;
}

function stamp(i: number): string {
  return new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString().replace(/\.\d+Z$/, "Z");
}

export function httpRoute(r: number, shape: WorldShape, ns: (i: number) => string, version = 0): K8sObject {
  const g = r % shape.gateways;
  const svc = (k: number) => ({ name: `svc-${k % shape.services}`, namespace: ns(k % shape.services), port: 8080 });
  return {
    apiVersion: GW, kind: "HTTPRoute",
    metadata: { name: `route-${r}`, namespace: ns(g), creationTimestamp: stamp(r), generation: version + 1 },
    spec: {
      parentRefs: [{ name: `gw-${g}` }],
      hostnames: [`app-${r % 7}.g${g}.example.com`],
      rules: [
        {
          matches: [{ path: { type: "PathPrefix", value: `/r${r}` }, headers: [{ name: "x-version", value: `v${version}` }] }],
          filters: [{ type: "RequestHeaderModifier", requestHeaderModifier: { set: [{ name: "x-route", value: `route-${r}` }] } }],
          backendRefs: [{ ...svc(r), weight: 90 }, { ...svc(r + 1), weight: 10 }],
        },
        { matches: [{ path: { type: "Exact", value: `/r${r}/exact` } }], backendRefs: [svc(r + 2)] },
      ],
    },
  };
}

/** Namespace naming used by syntheticWorld. */
export function syntheticNamespace(shape: WorldShape): (i: number) => string {
  const n = shape.namespaces ?? 10;
  return (i) => `team-${i % n}`;
}
