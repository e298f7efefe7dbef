// Small helpers shared by the fake API server's tests.
import { ApiException } from "@kubernetes/client-node";

/** Polls until `cond` holds; false after `ms`. */
export async function until(cond: () => boolean | Promise<boolean>, ms = 3000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return cond();
}

export interface StatusLike { kind?: string; code?: number; reason?: string; message?: string; details?: { causes?: { field?: string; message?: string }[]; retryAfterSeconds?: number } }

/** The HTTP status and metav1 Status body of a failed client-node call. */
export async function failure(p: Promise<unknown>): Promise<{ code: number; status: StatusLike; headers: Record<string, string> }> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ApiException) {
      const body = (err as ApiException<unknown>).body;
      let status: StatusLike;
      try {
        status = (typeof body === "string" ? JSON.parse(body) : body) as StatusLike;
      } catch {
        status = { message: String(body) };
      }
      return { code: err.code, status, headers: (err as ApiException<unknown>).headers };
    }
    throw err;
  }
  throw new Error("expected the call to fail");
}
