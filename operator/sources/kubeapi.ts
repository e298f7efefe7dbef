// A small HTTP client for the Kubernetes API: JSON requests and watch streams, authenticated
// through client-node's KubeConfig (tokens, client certificates, exec plugins, CA bundles).
// client-node's generated API classes and its Watch are not used for list/watch because they
// drop what a careful reflector needs: the Retry-After header of a 429/503, the Status body of
// an error, and lines of a watch stream that do not parse (Watch ignores them silently).
import { HttpMethod, RequestContext, type KubeConfig } from "@kubernetes/client-node";
import { fetch, type Dispatcher, type Response } from "undici";

/** An error answer of the API server (or a transport failure, status 0). */
export class ApiError extends Error {
  readonly status: number;
  /** From a Retry-After header (seconds) or a Status body's details.retryAfterSeconds. */
  readonly retryAfterMs: number | undefined;
  /** The Status reason (`NotFound`, `Conflict`, `Expired`, ...), when the body was a Status. */
  readonly reason: string | undefined;

  constructor(status: number, message: string, retryAfterMs?: number, reason?: string) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.retryAfterMs = retryAfterMs;
    this.reason = reason;
  }
}

export interface RequestOptions {
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  /** Default `application/json` when there is a body. */
  contentType?: string;
  signal?: AbortSignal;
  /** Abort the request after this long; default 30 s. */
  timeoutMs?: number;
}

export interface KubeApi {
  readonly server: string;
  /** A JSON request; resolves with the parsed body, rejects with ApiError on any non-2xx answer. */
  request<T = unknown>(method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE", path: string, opts?: RequestOptions): Promise<T>;
  /** Opens a streaming GET (a watch); rejects with ApiError unless the answer is 200. */
  stream(path: string, query: RequestOptions["query"], signal: AbortSignal): Promise<Response>;
}

const METHODS = { GET: HttpMethod.GET, POST: HttpMethod.POST, PUT: HttpMethod.PUT, PATCH: HttpMethod.PATCH, DELETE: HttpMethod.DELETE } as const;

export function kubeApi(kubeConfig: KubeConfig): KubeApi {
  const cluster = kubeConfig.getCurrentCluster();
  if (!cluster) throw new Error("the kubeconfig has no current cluster");
  const server = cluster.server.replace(/\/+$/, "");

  const prepare = async (method: keyof typeof METHODS, path: string, query: RequestOptions["query"]) => {
    const url = new URL(server + path);
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const ctx = new RequestContext(url.toString(), METHODS[method]);
    // Re-applied per request: exec plugins and projected ServiceAccount tokens rotate.
    await kubeConfig.applySecurityAuthentication(ctx);
    return { url, headers: ctx.getHeaders(), dispatcher: ctx.getDispatcher() as Dispatcher | undefined };
  };

  const send = async (method: keyof typeof METHODS, path: string, opts: RequestOptions, accept: string): Promise<Response> => {
    const { url, headers, dispatcher } = await prepare(method, path, opts.query);
    headers.accept = accept;
    let body: string | undefined;
    if (opts.body !== undefined) {
      body = typeof opts.body === "string" ? opts.body : JSON.stringify(opts.body);
      headers["content-type"] = opts.contentType ?? "application/json";
    }
    try {
      return await fetch(url, { method, headers, body, ...(dispatcher ? { dispatcher } : {}), ...(opts.signal ? { signal: opts.signal } : {}) });
    } catch (err) {
      if (opts.signal?.aborted) throw err;
      throw new ApiError(0, `${method} ${path}: ${transportMessage(err)}`);
    }
  };

  return {
    server,
    async request<T>(method: keyof typeof METHODS, path: string, opts: RequestOptions = {}): Promise<T> {
      const timeout = AbortSignal.timeout(Math.max(1, Math.round(opts.timeoutMs ?? 30_000)));
      const signal = opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
      const res = await send(method, path, { ...opts, signal }, "application/json");
      const text = await res.text().catch((err: unknown) => {
        throw new ApiError(0, `${method} ${path}: reading the answer failed: ${transportMessage(err)}`);
      });
      if (res.status < 200 || res.status > 299) throw errorFrom(method, path, res, text);
      if (!text) return undefined as T;
      try {
        return JSON.parse(text) as T;
      } catch {
        throw new ApiError(res.status, `${method} ${path}: the answer is not JSON`);
      }
    },
    async stream(path, query, signal) {
      const res = await send("GET", path, { query, signal }, "application/json");
      if (res.status !== 200) {
        const text = await res.text().catch(() => "");
        throw errorFrom("GET", path, res, text);
      }
      return res;
    },
  };
}

function errorFrom(method: string, path: string, res: Response, text: string): ApiError {
  let message = `${method} ${path}: ${res.status} ${res.statusText}`;
  let reason: string | undefined;
  let retryAfterMs = retryAfter(res.headers.get("retry-after"));
  try {
    const status = JSON.parse(text) as { message?: unknown; reason?: unknown; details?: { retryAfterSeconds?: unknown } };
    if (typeof status.message === "string") message = `${method} ${path}: ${res.status} ${status.message}`;
    if (typeof status.reason === "string") reason = status.reason;
    const seconds = status.details?.retryAfterSeconds;
    if (retryAfterMs === undefined && typeof seconds === "number" && seconds >= 0) retryAfterMs = seconds * 1000;
  } catch {
    // Not a Status object: the status line says enough.
  }
  return new ApiError(res.status, message, retryAfterMs, reason);
}

/** Retry-After as seconds or an HTTP date; undefined when absent or unreadable. */
export function retryAfter(value: string | null): number | undefined {
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

function transportMessage(err: unknown): string {
  const e = err as { message?: string; cause?: { message?: string; code?: string } };
  const cause = e.cause?.code ?? e.cause?.message;
  return cause ? `${e.message ?? String(err)} (${cause})` : (e.message ?? String(err));
}

/** Exponential backoff with full jitter: a random delay in [base/2, base], base doubling to max. */
export class Backoff {
  private attempt = 0;
  private readonly initialMs: number;
  private readonly maxMs: number;
  private readonly random: () => number;

  constructor(initialMs = 500, maxMs = 30_000, random: () => number = Math.random) {
    this.initialMs = initialMs;
    this.maxMs = maxMs;
    this.random = random;
  }

  /** The delay before the next attempt; honours a server's Retry-After when it is longer. */
  next(retryAfterMs?: number): number {
    const base = Math.min(this.maxMs, this.initialMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    // Jitter keeps replicas (and kinds) that failed together from retrying in lock step.
    const delay = base / 2 + this.random() * (base / 2);
    return Math.round(retryAfterMs !== undefined ? Math.max(retryAfterMs, delay) : delay);
  }

  reset(): void {
    this.attempt = 0;
  }
}

/** Resolves after ms, or early (without error) when the signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
