// A per-key coalescing work queue with bounded concurrency, the sinks' answer to
// @dot-i/k8s-operator's single global queue: a burst of translations for one object becomes one
// write (only the latest value per key is kept), distinct keys run in parallel up to a limit, and
// one key is never worked on twice at the same time.

export type Worker<T> = (key: string, value: T, signal: AbortSignal) => Promise<void>;

export class KeyedQueue<T> {
  private readonly pending = new Map<string, T>();
  private readonly running = new Set<string>();
  private readonly idleWaiters: (() => void)[] = [];
  private readonly abort = new AbortController();
  private readonly concurrency: number;
  private readonly worker: Worker<T>;
  private readonly onError: (key: string, err: unknown) => void;

  constructor(concurrency: number, worker: Worker<T>, onError: (key: string, err: unknown) => void = () => {}) {
    this.concurrency = Math.max(1, Math.floor(concurrency));
    this.worker = worker;
    this.onError = onError;
  }

  /** Queues `value` for `key`, replacing a value still waiting for the same key. */
  push(key: string, value: T): void {
    if (this.abort.signal.aborted) return;
    this.pending.delete(key); // re-insert: a key that keeps changing does not starve the others
    this.pending.set(key, value);
    this.pump();
  }

  /** Drops the value waiting for `key` (a newer translation made it unnecessary). */
  cancel(key: string): void {
    this.pending.delete(key);
    this.settle();
  }

  /** Whether a newer value waits for `key` (a running attempt for it can give up early). */
  hasPending(key: string): boolean {
    return this.pending.has(key);
  }

  isBusy(key: string): boolean {
    return this.pending.has(key) || this.running.has(key);
  }

  get size(): number {
    return this.pending.size + this.running.size;
  }

  /** Resolves once nothing is waiting or running. */
  idle(): Promise<void> {
    if (this.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Drops everything waiting and aborts running work (its signal fires). */
  stop(): void {
    this.abort.abort();
    this.pending.clear();
    this.settle();
  }

  get signal(): AbortSignal {
    return this.abort.signal;
  }

  private pump(): void {
    if (this.running.size >= this.concurrency) return;
    for (const [key, value] of this.pending) {
      if (this.running.size >= this.concurrency) break;
      if (this.running.has(key)) continue;
      this.pending.delete(key);
      this.running.add(key);
      void this.run(key, value);
    }
  }

  private async run(key: string, value: T): Promise<void> {
    try {
      await this.worker(key, value, this.abort.signal);
    } catch (err) {
      this.onError(key, err);
    } finally {
      this.running.delete(key);
      if (!this.abort.signal.aborted) this.pump();
      this.settle();
    }
  }

  private settle(): void {
    if (this.size !== 0) return;
    for (const resolve of this.idleWaiters.splice(0)) resolve();
  }
}
