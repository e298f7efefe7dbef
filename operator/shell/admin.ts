// The operator's operations endpoints: /healthz (liveness: the process answers and no watch is
// wedged), /readyz (readiness: every kind's initial list is in; a standby is as ready as the
// leader, it just does not write), /metrics (Prometheus text).
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface AdminChecks {
  /** Problems that make the process unhealthy (empty = healthy). */
  health(): string[];
  /** Why the operator is not ready yet (empty = ready). */
  readiness(): string[];
  metrics(): Promise<string>;
  /** Extra facts for /readyz's body (leader identity, ...). */
  describe?(): string[];
}

export interface AdminServer {
  address(): { host: string; port: number };
  close(): Promise<void>;
}

export function startAdmin(at: { host: string; port: number }, checks: AdminChecks): Promise<AdminServer> {
  const server = http.createServer((req, res) => {
    const send = (status: number, body: string, type = "text/plain; charset=utf-8"): void => {
      res.writeHead(status, { "content-type": type, "cache-control": "no-store" });
      res.end(body);
    };
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") return send(405, "method not allowed\n");
    if (path === "/healthz" || path === "/livez") {
      const problems = safe(() => checks.health());
      return problems.length ? send(503, problems.map((p) => `${p}\n`).join("")) : send(200, "ok\n");
    }
    if (path === "/readyz") {
      const problems = safe(() => checks.readiness());
      const extra = safe(() => checks.describe?.() ?? []);
      return problems.length ? send(503, [...problems, ...extra].map((p) => `${p}\n`).join("")) : send(200, ["ok", ...extra].map((p) => `${p}\n`).join(""));
    }
    if (path === "/metrics") {
      checks.metrics().then((m) => send(200, m, "text/plain; version=0.0.4; charset=utf-8"), (err: unknown) => send(500, `${(err as Error).message}\n`));
      return;
    }
    send(404, "not found; try /healthz, /readyz or /metrics\n");
  });
  // Probes must not keep the process alive on shutdown.
  server.keepAliveTimeout = 1_000;
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(at.port, at.host, () => {
      server.off("error", reject);
      resolve({
        address: () => {
          const a = server.address() as AddressInfo;
          return { host: a.address, port: a.port };
        },
        close: () => new Promise<void>((r) => {
          server.close(() => r());
          server.closeAllConnections();
        }),
      });
    });
  });
}

/** A check that throws is itself a problem, not a crash. */
function safe(f: () => string[]): string[] {
  try {
    return f();
  } catch (err) {
    return [`check failed: ${(err as Error).message}`];
  }
}
