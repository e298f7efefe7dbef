// Shared plumbing of the sinks: how an API error is classified, how long to back off, and the
// few facts about objects (their REST path pieces, their owner) every sink needs.
import { setTimeout as sleepTimer } from "node:timers/promises";
import { HttpMethod, Observable, RequestContext, type ConfigurationOptions, type KubeConfig, type ObservableMiddleware } from "@kubernetes/client-node";
import { KINDS, parseApiVersion, type KindInfo } from "../api/kinds.ts";

export interface SinkLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export const silentLogger: SinkLogger = { debug() {}, info() {}, warn() {}, error() {} };

/** What the sinks need to know about a failed API call. */
export interface ApiFailure {
  /** HTTP status; 0 when the request never got an answer (connection refused, reset, timeout). */
  status: number;
  /** Retry-After in milliseconds, when the server sent one. */
  retryAfterMs?: number;
  message: string;
}

/** Reads an ApiException (client-node), a fetch error, or anything else thrown. */
export function apiFailure(err: unknown): ApiFailure {
  const e = err as { code?: unknown; headers?: Record<string, string>; body?: unknown; message?: unknown };
  const status = typeof e?.code === "number" ? e.code : 0;
  let retryAfterMs: number | undefined;
  const header = e?.headers ? (e.headers["retry-after"] ?? e.headers["Retry-After"]) : undefined;
  if (header !== undefined) {
    const seconds = Number(header);
    if (Number.isFinite(seconds) && seconds >= 0) retryAfterMs = seconds * 1000;
    else {
      const at = Date.parse(header);
      if (Number.isFinite(at)) retryAfterMs = Math.max(0, at - Date.now());
    }
  }
  return { status, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}), message: statusMessage(e?.body) ?? String(e?.message ?? err) };
}

/** The `message` of a Kubernetes Status body (string or parsed). */
function statusMessage(body: unknown): string | undefined {
  let b: unknown = body;
  if (typeof body === "string") {
    try {
      b = JSON.parse(body);
    } catch {
      return body.length > 0 ? body.slice(0, 500) : undefined;
    }
  }
  const m = (b as { message?: unknown } | null)?.message;
  return typeof m === "string" ? m : undefined;
}

/** 429, 5xx and no answer at all: worth another try after a pause. */
export function isRetryable(f: ApiFailure): boolean {
  return f.status === 0 || f.status === 429 || f.status >= 500;
}

export interface BackoffOptions {
  /** First pause; doubles per attempt. Default 200 ms. */
  initialMs?: number;
  /** Upper bound of one pause (Retry-After is honoured up to this too). Default 30 s. */
  maxMs?: number;
}

/** Exponential backoff with full jitter over the upper half, so replicas and keys spread out. */
export function backoffDelay(attempt: number, opts: BackoffOptions = {}, retryAfterMs?: number): number {
  const initial = opts.initialMs ?? 200;
  const max = opts.maxMs ?? 30_000;
  if (retryAfterMs !== undefined) return Math.min(max, retryAfterMs);
  const base = Math.min(max, initial * 2 ** Math.max(0, attempt - 1));
  return Math.round(base / 2 + Math.random() * (base / 2));
}

/** Sleeps; resolves false when aborted instead of throwing. */
export async function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return false;
  try {
    await sleepTimer(ms, undefined, { signal });
    return true;
  } catch {
    return false;
  }
}

/** REST path pieces of a Sluice-read kind in the object's own apiVersion. */
export interface ResourceRef {
  info: KindInfo;
  group: string;
  version: string;
  plural: string;
}

export function resourceOf(kind: string, apiVersion: string): ResourceRef | undefined {
  const info = (KINDS as Record<string, KindInfo | undefined>)[kind];
  if (!info) return undefined;
  const { group, version } = parseApiVersion(apiVersion);
  if (group !== info.group) return undefined;
  return { info, group, version: version || (info.versions[0] ?? "v1"), plural: info.plural };
}

/** Deep equality of JSON values, independent of key order. */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== typeof b || a === null || b === null || typeof a !== "object") return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const bb = b as unknown[];
    if (a.length !== bb.length) return false;
    for (let i = 0; i < a.length; i++) if (!jsonEqual(a[i], bb[i])) return false;
    return true;
  }
  const ao = a as Record<string, unknown>;
  const bo = b as Record<string, unknown>;
  const ak = Object.keys(ao).filter((k) => ao[k] !== undefined);
  const bk = Object.keys(bo).filter((k) => bo[k] !== undefined);
  if (ak.length !== bk.length) return false;
  for (const k of ak) if (!jsonEqual(ao[k], bo[k])) return false;
  return true;
}

/**
 * Per-call options that send every request over one connection pool. client-node 2.0 builds a
 * new undici Agent for every request (config.ts applySecurityAuthentication), so every call costs
 * a fresh TCP and TLS handshake; at 10k status writes that dominates. Credentials are still
 * applied per request (exec and token refresh keep working); only the TLS agent is shared, so a
 * rotated client certificate file is picked up on restart.
 */
export function pooledCallOptions(kc: KubeConfig, extra?: ConfigurationOptions<ObservableMiddleware>): ConfigurationOptions<ObservableMiddleware> {
  let shared: Promise<RequestContext["getDispatcher"] extends () => infer D ? D : never> | undefined;
  const dispatcher = () => {
    shared ??= (async () => {
      const ctx = new RequestContext(kc.getCurrentCluster()?.server ?? "http://localhost", HttpMethod.GET);
      await kc.applySecurityAuthentication(ctx);
      return ctx.getDispatcher();
    })();
    return shared;
  };
  const pool: ObservableMiddleware = {
    pre: (req) => new Observable((async () => {
      try {
        const d = await dispatcher();
        if (d) req.setDispatcher(d);
      } catch {
        // keep the per-request dispatcher client-node already set
      }
      return req;
    })()),
    post: (res) => new Observable(Promise.resolve(res)),
  };
  return { ...extra, middleware: [...(extra?.middleware ?? []), pool], middlewareMergeStrategy: "append" };
}
