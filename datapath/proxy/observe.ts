// Access logs (JSON lines through pino) and Prometheus metrics (prom-client) for every request.
// Metric labels are bounded: route rule and backend cluster, never the path or the host.
import { pino, type DestinationStream, type Logger } from "pino";
import { Counter, Histogram, Registry } from "prom-client";
import type { Req, Res, RouteLabels } from "./handler.ts";

export interface Observer {
  request(req: Req, res: Res, labels: RouteLabels, startedMs: number): void;
  readonly registry: Registry;
  readonly log: Logger;
}

export interface ObserverOptions {
  /** JSON access log lines to this file descriptor (1 = stdout); undefined turns them off. */
  accessLogFd?: number;
  /** JSON access log lines to this stream instead (tests, log shippers); wins over accessLogFd. */
  accessLogStream?: DestinationStream;
  registry?: Registry;
  log?: Logger;
}

export function createObserver(opts: ObserverOptions = {}): Observer {
  const registry = opts.registry ?? new Registry();
  const log = opts.log ?? pino({ level: process.env.SLUICE_LOG_LEVEL ?? "info" }, pino.destination({ fd: 2, sync: false }));
  const accessOpts = { base: null, timestamp: pino.stdTimeFunctions.isoTime };
  const access = opts.accessLogStream
    ? pino(accessOpts, opts.accessLogStream)
    : opts.accessLogFd === undefined ? undefined : pino(accessOpts, pino.destination({ fd: opts.accessLogFd, sync: false }));
  const requests = new Counter({
    name: "sluice_proxy_requests_total",
    help: "HTTP requests answered by the proxy, by route rule, backend cluster and status code",
    labelNames: ["route", "backend", "code"] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: "sluice_proxy_request_duration_seconds",
    help: "Time from request start until the response finished, by route rule",
    labelNames: ["route"] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
    registers: [registry],
  });
  return {
    registry,
    log,
    request(req, res, labels, startedMs) {
      const seconds = (performance.now() - startedMs) / 1000;
      // 0: the connection closed (or the HTTP/2 stream was reset) before a full response.
      const code = res.writableEnded && res.writableFinished ? res.statusCode : 0;
      requests.inc({ route: labels.route, backend: labels.backend, code: String(code) });
      duration.observe({ route: labels.route }, seconds);
      access?.info({
        method: req.method,
        host: req.headers[":authority"] ?? req.headers.host,
        path: (req.url ?? "").slice(0, 512),
        proto: req.httpVersion,
        status: code,
        route: labels.route || undefined,
        backend: labels.backend || undefined,
        durationMs: Math.round(seconds * 1e6) / 1e3,
        client: req.socket.remoteAddress,
        requestId: req.headers["x-request-id"],
      });
    },
  };
}
