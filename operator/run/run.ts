// `sluice run`: the standalone host of the pipeline. A folder of manifests is the source; the
// store and the pure translator are the operator's own; the sinks are the L7 proxy and, as root,
// the eBPF L4 datapath on this machine (TCPRoute/UDPRoute). Every change to the folder is applied
// live; the datapath's acknowledgement flows back into the store so Gateways turn Programmed
// exactly as they do in a cluster.
import { Subject, concatMap, map, tap, type Subscription } from "rxjs";
import http from "node:http";
import type { Logger } from "pino";
import { watchManifests, sourceName } from "../sources/folder.ts";
import { heapCompactor, logCompaction } from "../heap/compact.ts";
import { createStore } from "../store/store.ts";
import { Translator } from "../translate/translate.ts";
import type { TranslateResult } from "../translate/output.ts";
import { proxyConfigFrom, type ProxyConfig } from "../../datapath/proxy/config.ts";
import { startDataplane, type Dataplane } from "../../datapath/proxy/workers.ts";
import { statusLines, type Reported } from "./report.ts";
import { startL4, type L4Host } from "../../datapath/agent/host.ts";

export interface RunOptions {
  paths: string[];
  addresses: string[];
  portOffset: number;
  workers: number;
  accessLog: boolean;
  /** Admin endpoint (/metrics, /healthz, /readyz, /config), or none. */
  admin?: { host: string; port: number };
  log: Logger;
  /** How long the folder watcher waits for a burst of writes to settle. */
  debounceMs?: number;
  /** Serve TCPRoute/UDPRoute listeners in eBPF when possible (root); default true. */
  l4?: boolean;
  /** Where the eBPF maps are pinned (default /sys/fs/bpf/sluice-run). */
  bpfPinDir?: string;
}

export interface Running {
  /** Resolves once the first complete config is being served. */
  ready: Promise<void>;
  /** The config version being served (0 before the first). */
  version(): number;
  /** The admin endpoint's actual address, when enabled. */
  adminAddress(): { host: string; port: number } | undefined;
  stop(graceMs?: number): Promise<void>;
}

export async function startRun(opts: RunOptions): Promise<Running> {
  const { log } = opts;
  const dataplane: Dataplane = await startDataplane({ workers: opts.workers, accessLog: opts.accessLog });
  const acks$ = new Subject<ReadonlyMap<string, string>>();
  const source = sourceName(opts.paths);
  const events$ = watchManifests(opts.paths, { debounceMs: opts.debounceMs ?? 5 }).pipe(
    tap((e) => {
      if (e.type === "ERROR") log.warn({ file: e.error.file, line: e.error.line }, e.error.message);
    }),
  );
  // No DNS records: nothing publishes them here.
  const translator = new Translator({ addressing: { mode: "static", addresses: opts.addresses }, dnsRecords: false });
  const compactor = heapCompactor({ onCompacted: logCompaction(log, "heap compacted once the configuration settled") });
  let served = 0;
  let appliedHashes = "";
  // The eBPF side starts with the first L4 listener, so HTTP-only configs never touch the kernel.
  const l4: L4Host = startL4({ log, portOffset: opts.portOffset, enabled: opts.l4 ?? true, ...(opts.bpfPinDir ? { pinDir: opts.bpfPinDir } : {}) });
  let markReady: () => void = () => undefined;
  const ready = new Promise<void>((r) => (markReady = r));
  const reported: Reported = new Map();

  const apply = async (version: number, result: TranslateResult): Promise<void> => {
    for (const line of statusLines(result, reported)) log.info(line);
    for (const w of result.warnings) log.warn(w);
    const config: ProxyConfig = proxyConfigFrom(result.datapath, version, { portOffset: opts.portOffset });
    const hashes = JSON.stringify(config.gateways);
    // An acknowledgement comes back as a new snapshot with the same config: nothing to apply.
    if (hashes === appliedHashes && served > 0) return;
    const t0 = performance.now();
    const [applied, l4ok] = await Promise.all([dataplane.apply(config), l4.apply(version, result.datapath)]);
    for (const e of applied.errors) log.error({ binding: e.binding }, `cannot listen on ${e.binding}: ${e.message}`);
    const first = served === 0;
    served = version;
    // A failed L4 apply is retried with the next change; its Gateways are not acknowledged until then.
    if (l4ok) appliedHashes = hashes;
    const acked = new Map(Object.entries(config.gateways));
    if (!l4ok) for (const g of result.datapath.gateways) if (g.l4.length > 0) acked.delete(g.gateway);
    log.debug({ version, ms: Math.round((performance.now() - t0) * 100) / 100 }, "config applied");
    if (first) for (const b of config.bindings) log.info(`serving ${b.listeners.map((l) => `${l.protocol} ${l.id}`).join(", ")} on ${b.address}:${b.port}`);
    acks$.next(acked);
    compactor.changed();
    if (first) markReady();
  };

  const sub: Subscription = createStore(events$, { coalesceMs: 0, sources: [source], acks$ })
    .pipe(
      map((snapshot) => ({ version: snapshot.version, result: translator.translate(snapshot) })),
      concatMap(({ version, result }) => apply(version, result)),
    )
    .subscribe({ error: (err: unknown) => log.error({ err }, "pipeline failed") });

  const admin = opts.admin ? await startAdmin(opts.admin, dataplane, l4, () => served) : undefined;
  return {
    ready,
    version: () => served,
    adminAddress: () => {
      const a = admin?.address();
      return a && typeof a === "object" ? { host: a.address, port: a.port } : undefined;
    },
    async stop(graceMs = 10_000) {
      sub.unsubscribe();
      compactor.stop();
      admin?.close();
      await Promise.all([dataplane.close(graceMs), l4.close()]);
    },
  };
}

function startAdmin(at: { host: string; port: number }, dataplane: Dataplane, l4: L4Host, version: () => number): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const send = (status: number, body: string, type = "text/plain; charset=utf-8"): void => {
      res.writeHead(status, { "content-type": type });
      res.end(body);
    };
    if (req.url === "/healthz") return send(200, "ok\n");
    if (req.url === "/readyz") return version() > 0 ? send(200, "ok\n") : send(503, "no configuration applied yet\n");
    if (req.url === "/metrics") {
      Promise.all([dataplane.metrics(), l4.metrics()]).then(([m, a]) => send(200, m && a && !m.endsWith("\n") ? `${m}\n${a}` : m + a, "text/plain; version=0.0.4"), (err: unknown) => send(500, `${(err as Error).message}\n`));
      return;
    }
    send(404, "not found\n");
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(at.port, at.host, () => resolve(server));
  });
}
