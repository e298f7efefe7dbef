// Test helpers for the cluster source, shell and host tests: a pino logger whose lines can be
// inspected, a KubeConfig for a fake API server user, and small objects.
import { Writable } from "node:stream";
import { KubeConfig } from "@kubernetes/client-node";
import { pino, type Logger } from "pino";

export interface CapturedLog {
  log: Logger;
  lines: { level: number; msg: string; [k: string]: unknown }[];
  /** Lines whose message matches. */
  find(re: RegExp): { level: number; msg: string }[];
}

/** A debug-level logger collecting parsed JSON lines; SLUICE_TEST_LOG=1 also prints them. */
export function captureLog(): CapturedLog {
  const lines: CapturedLog["lines"] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString("utf8").split("\n")) {
        if (!l) continue;
        const parsed = JSON.parse(l) as CapturedLog["lines"][number];
        lines.push(parsed);
        if (process.env.SLUICE_TEST_LOG) process.stderr.write(`${l}\n`);
      }
      cb();
    },
  });
  const log = pino({ level: "debug" }, stream);
  return { log, lines, find: (re) => lines.filter((l) => re.test(String(l.msg))) };
}

/**
 * A KubeConfig for `server` authenticating with `token` (a user the fake server was given).
 * client-node 2.x refuses plain http unless skipTLSVerify is set, hence the flag.
 */
export function kubeConfigFor(server: string, token: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromString(kubeConfigYamlFor(server, token));
  return kc;
}

export function kubeConfigYamlFor(server: string, token: string): string {
  return JSON.stringify({
    apiVersion: "v1", kind: "Config",
    clusters: [{ name: "c", cluster: { server, "insecure-skip-tls-verify": server.startsWith("http:") } }],
    users: [{ name: "u", user: { token } }],
    contexts: [{ name: "x", context: { cluster: "c", user: "u" } }],
    "current-context": "x",
  });
}

export async function until(cond: () => boolean, ms = 5000, stepMs = 10): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, stepMs));
  }
  return cond();
}

export const ns = (name: string) => ({ apiVersion: "v1", kind: "Namespace", metadata: { name } });

export const gatewayClass = (name = "sluice") => ({
  apiVersion: "gateway.networking.k8s.io/v1", kind: "GatewayClass", metadata: { name },
  spec: { controllerName: "sluice.dev/gateway-controller" },
});

export const gateway = (namespace: string, name: string, className = "sluice") => ({
  apiVersion: "gateway.networking.k8s.io/v1", kind: "Gateway", metadata: { namespace, name },
  spec: { gatewayClassName: className, listeners: [{ name: "http", protocol: "HTTP", port: 80, allowedRoutes: { namespaces: { from: "Same" } } }] },
});

export const httpRoute = (namespace: string, name: string, gatewayName: string, extra: Record<string, unknown> = {}) => ({
  apiVersion: "gateway.networking.k8s.io/v1", kind: "HTTPRoute", metadata: { namespace, name },
  spec: {
    parentRefs: [{ name: gatewayName }],
    hostnames: [`${name}.example.com`],
    rules: [{ backendRefs: [{ name: "backend", port: 8080 }] }],
    ...extra,
  },
});

export const service = (namespace: string, name: string, port = 8080) => ({
  apiVersion: "v1", kind: "Service", metadata: { namespace, name },
  spec: { ports: [{ name: "http", port, protocol: "TCP" }], selector: { app: name } },
});
