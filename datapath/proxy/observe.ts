// Access logs (JSON lines through pino) and Prometheus metrics (prom-client) for every request.
// Metric labels are bounded: route rule and backend cluster, never the path or the host.
//
// Per request the request counter only bumps a plain number: prom-client validates and hashes the
// label object on every inc(). The counts reach prom-client when it is scraped (the counter's
// collect hook), so what a scrape reads is the same.
import { pino, type DestinationStream, type Logger } from "pino";
import { Counter, Histogram, Registry } from "prom-client";
import type { Req, Res, RouteLabels } from "./handler.ts";
import { clientAddress } from "./proxyprotocol.ts";

export interface Observer {
  /**
   * A request is over. `status` says how a tunnel (WebSocket) opened, as its response never
   * finishes: 101, or 200 over HTTP/2.
   */
  request(req: Req, res: Res, labels: RouteLabels, startedMs: number, status?: number): void;
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
  const counts = new RequestCounts();
  new Counter({
    name: "sluice_proxy_requests_total",
    help: "HTTP requests answered by the proxy, by route rule, backend cluster and status code",
    labelNames: ["route", "backend", "code"] as const,
    registers: [registry],
    collect() {
      counts.flush(this);
    },
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
    request(req, res, labels, startedMs, status) {
      const seconds = (performance.now() - startedMs) / 1000;
      // 0: the connection closed (or the HTTP/2 stream was reset) before a full response.
      const code = status ?? (res.writableEnded && res.writableFinished ? res.statusCode : 0);
      counts.add(labels.route, labels.backend, code);
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
        client: clientAddress(req.socket),
        requestId: req.headers["x-request-id"],
      });
    },
  };
}

interface Count {
  labels: { route: string; backend: string; code: string };
  /** Requests since the last scrape. */
  pending: number;
}

/** Request counts by route, backend and code, handed to the prom-client counter at each scrape. */
class RequestCounts {
  private byRoute = new Map<string, Map<string, Map<number, Count>>>();
  private all: Count[] = [];

  add(route: string, backend: string, code: number): void {
    let byBackend = this.byRoute.get(route);
    if (!byBackend) this.byRoute.set(route, (byBackend = new Map()));
    let byCode = byBackend.get(backend);
    if (!byCode) byBackend.set(backend, (byCode = new Map()));
    let c = byCode.get(code);
    if (!c) {
      c = { labels: { route, backend, code: String(code) }, pending: 0 };
      byCode.set(code, c);
      this.all.push(c);
    }
    c.pending++;
  }

  flush(counter: Counter<"route" | "backend" | "code">): void {
    for (const c of this.all) {
      if (c.pending === 0) continue;
      counter.inc(c.labels, c.pending);
      c.pending = 0;
    }
  }
}
