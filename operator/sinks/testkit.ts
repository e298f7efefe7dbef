// Test helpers for the sinks: a fake API server with the Gateway API and Sluice CRDs, snapshots
// read back from it (what the watch-based sources would deliver), and small manifests.
import { KubeConfig } from "@kubernetes/client-node";
import { apiVersionOf, KIND_NAMES, KINDS } from "../api/kinds.ts";
import type { K8sObject } from "../api/objects.ts";
import { gatewayApiCrds, sluiceCrds, startFakeApiServer, type FakeApiServer, type K8sObjectLike } from "../fakeapi/server.ts";
import { snapshotOf, type Snapshot } from "../store/snapshot.ts";
import { CONTROLLER_NAME } from "../translate/gatewayclass.ts";

export async function startServer(): Promise<FakeApiServer> {
  return startFakeApiServer({ crds: [...gatewayApiCrds(), ...sluiceCrds()] });
}

/**
 * A KubeConfig for the fake server. client-node 2.x refuses plain http:// unless the cluster has
 * skipTLSVerify set, so it is set here.
 */
export function kubeConfigOf(server: FakeApiServer): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: "fakeapi", server: server.url, skipTLSVerify: true }],
    users: [{ name: "fakeapi-admin", token: server.token }],
    contexts: [{ name: "fakeapi", cluster: "fakeapi", user: "fakeapi-admin", namespace: "default" }],
    currentContext: "fakeapi",
  });
  return kc;
}

/** Every object of every kind the translator reads, as the server holds them now. */
export function snapshotFrom(server: FakeApiServer, version = 1): Snapshot {
  const objects: K8sObject[] = [];
  for (const kind of KIND_NAMES) {
    const info = KINDS[kind];
    try {
      objects.push(...(server.list(apiVersionOf(info, info.versions[0] ?? "v1"), kind) as unknown as K8sObject[]));
    } catch {
      // kind not served by this server (CRD not installed)
    }
  }
  return snapshotOf(objects, new Map(), version);
}

export function put(server: FakeApiServer, obj: Record<string, unknown>): K8sObjectLike {
  return server.apply(obj as unknown as K8sObjectLike);
}

export const gatewayClass = (name = "sluice", controllerName = CONTROLLER_NAME, parametersRef?: Record<string, unknown>) => ({
  apiVersion: "gateway.networking.k8s.io/v1",
  kind: "GatewayClass",
  metadata: { name },
  spec: { controllerName, ...(parametersRef ? { parametersRef } : {}) },
});

export const gateway = (name = "gw", className = "sluice", extra: Record<string, unknown> = {}, namespace = "default") => ({
  apiVersion: "gateway.networking.k8s.io/v1",
  kind: "Gateway",
  metadata: { name, namespace },
  spec: { gatewayClassName: className, listeners: [{ name: "http", port: 80, protocol: "HTTP" }], ...extra },
});

export const httpRoute = (name: string, parents: string[], namespace = "default") => ({
  apiVersion: "gateway.networking.k8s.io/v1",
  kind: "HTTPRoute",
  metadata: { name, namespace },
  spec: { parentRefs: parents.map((p) => ({ name: p })), rules: [{ matches: [{ path: { type: "PathPrefix", value: "/" } }] }] },
});

export const gatewayClassConfig = (name: string, spec: Record<string, unknown>, namespace = "default") => ({
  apiVersion: "sluice.dev/v1alpha1",
  kind: "GatewayClassConfig",
  metadata: { name, namespace },
  spec,
});

/** Requests the sinks made since `from` (index into server.requests), ignoring watches. */
export function requestsSince(server: FakeApiServer, from: number): FakeApiServer["requests"] {
  return server.requests.slice(from).filter((r) => !r.query.includes("watch=true"));
}
