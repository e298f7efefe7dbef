// Scale-out: one proxy per core. Each worker process binds every socket itself with SO_REUSEPORT,
// so the kernel spreads connections without a primary in the data path; the primary only fans
// each config out to all workers and reports it applied once every worker has.
import cluster, { type Worker } from "node:cluster";
import { fileURLToPath } from "node:url";
import { AggregatorRegistry } from "prom-client";
import type { ProxyConfig } from "./config.ts";
import { Proxy, type ApplyResult, type Limits } from "./server.ts";
import { createObserver } from "./observe.ts";

export interface Dataplane {
  apply(config: ProxyConfig): Promise<ApplyResult>;
  /** Prometheus text of every worker, aggregated. */
  metrics(): Promise<string>;
  close(graceMs?: number): Promise<void>;
}

export interface DataplaneOptions {
  workers: number;
  accessLog: boolean;
  limits?: Partial<Limits>;
}

/** Messages between the primary and a worker. */
export type ToWorker =
  | { type: "apply"; seq: number; config: ProxyConfig }
  | { type: "metrics"; seq: number }
  | { type: "close"; seq: number; graceMs: number };
export type FromWorker =
  | { type: "ready" }
  | { type: "applied"; seq: number; result: ApplyResult }
  | { type: "metrics"; seq: number; metrics: unknown }
  | { type: "closed"; seq: number };

export function startDataplane(opts: DataplaneOptions): Promise<Dataplane> {
  return opts.workers <= 1 ? Promise.resolve(inProcess(opts)) : workerPool(opts);
}

function inProcess(opts: DataplaneOptions): Dataplane {
  const observer = createObserver(opts.accessLog ? { accessLogFd: 1 } : {});
  const proxy = new Proxy({ observer, ...(opts.limits ? { limits: opts.limits } : {}) });
  return {
    apply: (config) => proxy.apply(config),
    metrics: () => observer.registry.metrics(),
    close: (graceMs) => proxy.close(graceMs),
  };
}

async function workerPool(opts: DataplaneOptions): Promise<Dataplane> {
  cluster.setupPrimary({
    exec: fileURLToPath(new URL("./worker.ts", import.meta.url)),
    args: [],
    // Structured clone keeps typed arrays and is faster than JSON for large configs.
    serialization: "advanced",
  });
  const env = { SLUICE_ACCESS_LOG: opts.accessLog ? "1" : "", SLUICE_LIMITS: JSON.stringify(opts.limits ?? {}) };
  const workers: Worker[] = [];
  const pending = new Map<string, (m: FromWorker) => void>();
  let seq = 0;
  let latest: ProxyConfig | undefined;
  let closing = false;
  const ask = (w: Worker, msg: ToWorker): Promise<FromWorker> =>
    new Promise((resolve, reject) => {
      const key = `${w.id}:${msg.seq}`;
      pending.set(key, resolve);
      w.send(msg, (err: Error | null) => {
        if (err) {
          pending.delete(key);
          reject(err);
        }
      });
    });
  const spawn = async (): Promise<Worker> => {
    const w = cluster.fork(env);
    w.on("message", (m: FromWorker) => {
      if (m.type === "ready") return;
      const key = `${w.id}:${m.seq}`;
      const r = pending.get(key);
      pending.delete(key);
      r?.(m);
    });
    await new Promise<void>((resolve, reject) => {
      w.once("message", (m: FromWorker) => (m.type === "ready" ? resolve() : undefined));
      w.once("exit", (code) => reject(new Error(`proxy worker exited during start (${code})`)));
    });
    // A crashed worker is replaced and given the latest config: the others keep serving meanwhile.
    w.once("exit", () => {
      const i = workers.indexOf(w);
      if (i >= 0) workers.splice(i, 1);
      if (closing) return;
      void spawn().then(async (nw) => {
        if (latest) await ask(nw, { type: "apply", seq: ++seq, config: latest });
      });
    });
    workers.push(w);
    return w;
  };
  await Promise.all(Array.from({ length: opts.workers }, () => spawn()));
  return {
    async apply(config) {
      latest = config;
      const s = ++seq;
      const replies = await Promise.all(workers.map((w) => ask(w, { type: "apply", seq: s, config })));
      const errors = replies.flatMap((r) => (r.type === "applied" ? r.result.errors : []));
      // Every worker binds the same sockets: report each failure once.
      const unique = [...new Map(errors.map((e) => [`${e.binding}|${e.message}`, e])).values()];
      return { version: config.version, errors: unique };
    },
    async metrics() {
      const s = ++seq;
      const replies = await Promise.all(workers.map((w) => ask(w, { type: "metrics", seq: s })));
      const all = replies.flatMap((r) => (r.type === "metrics" ? [r.metrics] : []));
      return (await AggregatorRegistry.aggregate(all as Parameters<typeof AggregatorRegistry.aggregate>[0]).metrics());
    },
    async close(graceMs = 10_000) {
      closing = true;
      const s = ++seq;
      await Promise.all(workers.map((w) => ask(w, { type: "close", seq: s, graceMs }).catch(() => undefined)));
      for (const w of workers) w.kill();
    },
  };
}
