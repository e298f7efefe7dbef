// Returning memory after a large configuration load. Loading thousands of objects makes V8 grow
// its heap, the young generation included (to 128 MB at 5,000 routes: nearly everything loaded
// survives its first collections, which is V8's signal to grow it). V8 keeps all of it committed
// afterwards; only a memory-reducing ("last resort") full collection gives it back, and Node never
// asks for one. At 5,000 routes it takes `sluice run` from ~310 MB to ~160 MB.
//
// Such a collection pauses the process for a moment (~0.4 s at 5,000 routes), so it runs only once
// the configuration has been quiet for a while, and only when the heap grew a lot since the start
// or the last one. It also leaves the young generation at its smallest, to grow again with the
// traffic: not worth it for the ~20 MB a small configuration would give back.
import v8 from "node:v8";
import vm from "node:vm";
import type { Logger } from "pino";

type Gc = (options?: { type?: "major"; execution?: "sync"; flavor?: "last-resort" }) => void;

export interface CompactorOptions {
  /** Quiet time after the last change before compacting; default 3 s. */
  quietMs?: number;
  /** Heap growth since the start or the last compaction that makes one worthwhile; default 64 MiB. */
  growthBytes?: number;
  /** Told what each compaction did. */
  onCompacted?: (r: Compacted) => void;
  /** The collector; default V8's own, exposed at run time. Tests pass their own. */
  gc?: Gc;
  /** Heap size now; default process.memoryUsage().heapTotal. */
  heapTotal?: () => number;
}

export interface Compacted {
  beforeBytes: number;
  afterBytes: number;
  pauseMs: number;
}

/** Logs a compaction in whole MB and ms. */
export function logCompaction(log: Logger, message: string): (r: Compacted) => void {
  return ({ beforeBytes, afterBytes, pauseMs }) =>
    log.info({ beforeMB: Math.round(beforeBytes / 2 ** 20), afterMB: Math.round(afterBytes / 2 ** 20), pauseMs: Math.round(pauseMs) }, message);
}

export interface Compactor {
  /** A configuration change was applied: compact once things have been quiet for quietMs, if the heap grew enough. */
  changed(): void;
  stop(): void;
}

export function heapCompactor(opts: CompactorOptions = {}): Compactor {
  const quietMs = opts.quietMs ?? 3000;
  const growth = opts.growthBytes ?? 64 * 2 ** 20;
  const heapTotal = opts.heapTotal ?? (() => process.memoryUsage().heapTotal);
  let gc: Gc | undefined = opts.gc;
  let baseline = heapTotal();
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;

  const compact = (): void => {
    timer = undefined;
    const before = heapTotal();
    if (stopped || before - baseline < growth) return;
    gc ??= exposeGc();
    if (!gc) return;
    const t0 = performance.now();
    gc({ type: "major", execution: "sync", flavor: "last-resort" });
    const pauseMs = performance.now() - t0;
    baseline = heapTotal();
    opts.onCompacted?.({ beforeBytes: before, afterBytes: baseline, pauseMs });
  };

  return {
    changed() {
      if (stopped) return;
      clearTimeout(timer);
      timer = setTimeout(compact, quietMs);
      // Never what keeps a process alive.
      timer.unref();
    },
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

/** V8's gc() (the --expose-gc extension), enabled at run time; undefined where that is not possible. */
function exposeGc(): Gc | undefined {
  try {
    v8.setFlagsFromString("--expose-gc");
    // The extension is installed in contexts created from now on.
    const gc: unknown = vm.runInNewContext("gc");
    return typeof gc === "function" ? (gc as Gc) : undefined;
  } catch {
    return undefined;
  }
}
