// HTTPRoute CORS filter: preflights are answered by the gateway itself; actual requests get the
// allow headers added to the backend's response when their Origin is allowed.
import type { Filter } from "../../operator/translate/output.ts";
import type { HeaderMap } from "./rewrite.ts";

export type CorsFilter = Extract<Filter, { type: "CORS" }>;

/** An origin matches `*`, itself, or a pattern such as `https://*.bar.com` (one or more labels). */
export function originAllowed(f: CorsFilter, origin: string): boolean {
  for (const o of f.allowOrigins) {
    if (o === "*" || o === origin) return true;
    const star = o.indexOf("://*.");
    if (star >= 0) {
      const scheme = o.slice(0, star + 3);
      const suffix = o.slice(star + 4); // ".bar.com"
      if (origin.length <= scheme.length + suffix.length || !origin.startsWith(scheme) || !origin.endsWith(suffix)) continue;
      // The star covers whole DNS labels only: never a path, userinfo or port smuggled in front of the suffix.
      if (LABELS.test(origin.slice(scheme.length, origin.length - suffix.length))) return true;
    }
  }
  return false;
}

const LABELS = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*$/i;

export function isPreflight(method: string, headers: HeaderMap): boolean {
  return method === "OPTIONS" && headers.origin !== undefined && headers["access-control-request-method"] !== undefined;
}

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(", ") : v;
}

/** Headers answering a preflight; empty when the origin is not allowed. */
export function preflightHeaders(f: CorsFilter, headers: HeaderMap): Record<string, string> {
  const origin = one(headers.origin) ?? "";
  if (!originAllowed(f, origin)) return {};
  const out = actualHeaders(f, origin);
  const method = one(headers["access-control-request-method"]) ?? "";
  out["access-control-allow-methods"] = f.allowMethods.includes("*") ? method : f.allowMethods.join(", ");
  const requested = one(headers["access-control-request-headers"]);
  if (f.allowHeaders.includes("*")) {
    if (requested) out["access-control-allow-headers"] = requested;
  } else if (f.allowHeaders.length) out["access-control-allow-headers"] = f.allowHeaders.join(", ");
  if (f.maxAge !== undefined) out["access-control-max-age"] = String(f.maxAge);
  return out;
}

/** Headers added to an actual (non-preflight) response for an allowed origin. */
export function actualHeaders(f: CorsFilter, origin: string): Record<string, string> {
  // With credentials the origin must be echoed: browsers reject `*` there.
  const out: Record<string, string> = {
    "access-control-allow-origin": f.allowOrigins.includes("*") && !f.allowCredentials ? "*" : origin,
    vary: "Origin",
  };
  if (f.allowCredentials) out["access-control-allow-credentials"] = "true";
  if (f.exposeHeaders.length) out["access-control-expose-headers"] = f.exposeHeaders.join(", ");
  return out;
}
