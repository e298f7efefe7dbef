// HTTPRoute and GRPCRoute filters, normalized for the proxy. Unsupported or contradictory
// filters make their rule invalid; an unresolvable custom filter makes the rule answer 500.
import type { RouteKind } from "../api/kinds.ts";
import { Reason } from "./conditions.ts";
import { backendFor, type RefFailure, type RouteContext } from "./cluster.ts";
import type { Filter, HeaderModifier, RouteEntry, WeightedBackend } from "./output.ts";
import type { CompiledRoute } from "./compiled.ts";
import type { Purpose } from "./cluster.ts";

interface RawHeaderFilter {
  set?: { name: string; value: string }[];
  add?: { name: string; value: string }[];
  remove?: string[];
}

interface RawFilter {
  type: string;
  requestHeaderModifier?: RawHeaderFilter;
  responseHeaderModifier?: RawHeaderFilter;
  requestRedirect?: {
    scheme?: string; hostname?: string; port?: number; statusCode?: number;
    path?: { type: string; replaceFullPath?: string; replacePrefixMatch?: string };
  };
  urlRewrite?: { hostname?: string; path?: { type: string; replaceFullPath?: string; replacePrefixMatch?: string } };
  requestMirror?: {
    backendRef: { group?: string; kind?: string; name: string; namespace?: string; port?: number };
    percent?: number;
    fraction?: { numerator: number; denominator?: number };
  };
  cors?: {
    allowOrigins?: string[]; allowMethods?: string[]; allowHeaders?: string[]; exposeHeaders?: string[];
    allowCredentials?: boolean; maxAge?: number;
  };
  extensionRef?: { group: string; kind: string; name: string };
}

export interface CompiledFilters {
  filters: Filter[];
  /** The rule is invalid (dropped) for this reason. */
  invalid?: string;
  /** A reference could not be resolved (ResolvedRefs=False). */
  refFailure?: RefFailure;
  /** Requests on the rule must fail: a filter that cannot be applied must not be skipped. */
  mustFail?: string;
}

function headerModifier(f: RawHeaderFilter | undefined): HeaderModifier {
  return {
    set: (f?.set ?? []).map((h) => ({ name: h.name, value: h.value })),
    add: (f?.add ?? []).map((h) => ({ name: h.name, value: h.value })),
    remove: [...(f?.remove ?? [])],
  };
}

type PathModifier = { type: "ReplaceFullPath"; value: string } | { type: "ReplacePrefixMatch"; value: string };

function pathModifier(p: { type: string; replaceFullPath?: string; replacePrefixMatch?: string } | undefined): PathModifier | undefined | "invalid" {
  if (!p) return undefined;
  if (p.type === "ReplaceFullPath" && typeof p.replaceFullPath === "string") return { type: "ReplaceFullPath", value: p.replaceFullPath };
  if (p.type === "ReplacePrefixMatch" && typeof p.replacePrefixMatch === "string") return { type: "ReplacePrefixMatch", value: p.replacePrefixMatch };
  return "invalid";
}

/**
 * @param prefixOnly whether every match of the rule is a PathPrefix match (ReplacePrefixMatch
 *   needs one).
 */
export function compileFilters(raw: unknown, from: { kind: RouteKind; namespace: string }, ctx: RouteContext, prefixOnly: boolean): CompiledFilters {
  const out: CompiledFilters = { filters: [] };
  const list = Array.isArray(raw) ? (raw as RawFilter[]) : [];
  const seen = new Set<string>();
  for (const f of list) {
    if (seen.has(f.type) && f.type !== "RequestMirror") return { ...out, invalid: `Filter ${f.type} may appear only once per rule` };
    seen.add(f.type);
    switch (f.type) {
      case "RequestHeaderModifier":
        out.filters.push({ type: "RequestHeaderModifier", modifier: headerModifier(f.requestHeaderModifier) });
        break;
      case "ResponseHeaderModifier":
        out.filters.push({ type: "ResponseHeaderModifier", modifier: headerModifier(f.responseHeaderModifier) });
        break;
      case "RequestRedirect": {
        const r = f.requestRedirect ?? {};
        const path = pathModifier(r.path);
        if (path === "invalid") return { ...out, invalid: "RequestRedirect path is incomplete" };
        if (path?.type === "ReplacePrefixMatch" && !prefixOnly) return { ...out, invalid: "ReplacePrefixMatch needs PathPrefix matches" };
        const status = r.statusCode ?? 302;
        if (![301, 302, 303, 307, 308].includes(status)) return { ...out, invalid: `Redirect status ${status} is not supported` };
        const filter: Extract<Filter, { type: "RequestRedirect" }> = { type: "RequestRedirect", statusCode: status };
        if (r.scheme) filter.scheme = r.scheme;
        if (r.hostname) filter.hostname = r.hostname;
        if (r.port !== undefined) filter.port = r.port;
        if (path) filter.path = path;
        out.filters.push(filter);
        break;
      }
      case "URLRewrite": {
        const r = f.urlRewrite ?? {};
        const path = pathModifier(r.path);
        if (path === "invalid") return { ...out, invalid: "URLRewrite path is incomplete" };
        if (path?.type === "ReplacePrefixMatch" && !prefixOnly) return { ...out, invalid: "ReplacePrefixMatch needs PathPrefix matches" };
        const filter: Extract<Filter, { type: "URLRewrite" }> = { type: "URLRewrite" };
        if (r.hostname) filter.hostname = r.hostname;
        if (path) filter.path = path;
        out.filters.push(filter);
        break;
      }
      case "RequestMirror": {
        const m = f.requestMirror;
        if (!m?.backendRef) return { ...out, invalid: "RequestMirror needs a backendRef" };
        const { backend, failure } = backendFor({ ...m.backendRef, weight: 1 }, from, from.kind === "GRPCRoute" ? "grpc" : "http", ctx);
        if (failure) out.refFailure ??= failure;
        let percent = 100;
        if (typeof m.percent === "number") percent = m.percent;
        else if (m.fraction) percent = (m.fraction.numerator / (m.fraction.denominator ?? 100)) * 100;
        if (!(percent >= 0 && percent <= 100)) return { ...out, invalid: "RequestMirror fraction must be between 0 and 100%" };
        if (backend.cluster) out.filters.push({ type: "RequestMirror", backend, percent });
        break;
      }
      case "CORS": {
        const c = f.cors ?? {};
        const filter: Extract<Filter, { type: "CORS" }> = {
          type: "CORS",
          allowOrigins: [...(c.allowOrigins ?? [])],
          allowMethods: [...(c.allowMethods ?? [])],
          allowHeaders: [...(c.allowHeaders ?? [])],
          exposeHeaders: [...(c.exposeHeaders ?? [])],
          allowCredentials: c.allowCredentials === true,
        };
        if (typeof c.maxAge === "number") filter.maxAge = c.maxAge;
        out.filters.push(filter);
        break;
      }
      case "ExtensionRef": {
        const e = f.extensionRef;
        const msg = `ExtensionRef filter ${e ? `${e.group}/${e.kind} ${e.name}` : ""} is not supported by Sluice`;
        out.refFailure ??= { reason: Reason.InvalidKind, message: msg };
        out.mustFail = msg;
        break;
      }
      default:
        return { ...out, invalid: `Filter type ${f.type} is not supported` };
    }
  }
  if (seen.has("RequestRedirect") && seen.has("URLRewrite")) return { ...out, invalid: "RequestRedirect and URLRewrite cannot be used together" };
  return out;
}

interface RawBackendRef {
  group?: string; kind?: string; name: string; namespace?: string; port?: number; weight?: number; filters?: unknown;
}

/**
 * A rule's backendRefs with their own filters. Returns undefined (and records why in
 * `out.invalidRules`) when a backend filter makes the rule invalid.
 */
export function compileBackends(
  refs: readonly RawBackendRef[] | undefined,
  from: { kind: RouteKind; namespace: string },
  purpose: Purpose,
  ctx: RouteContext,
  prefixOnly: boolean,
  out: CompiledRoute,
  ruleIndex: number,
): WeightedBackend[] | undefined {
  const backends: WeightedBackend[] = [];
  for (const br of refs ?? []) {
    const bf = compileFilters(br.filters, from, ctx, prefixOnly);
    if (bf.invalid) {
      out.invalidRules.push(`rule ${ruleIndex}: backendRef ${br.name}: ${bf.invalid}`);
      return undefined;
    }
    if (bf.refFailure) out.refFailure ??= bf.refFailure;
    const { backend, failure } = backendFor(br, from, purpose, ctx, bf.filters);
    if (failure) out.refFailure ??= failure;
    if (bf.mustFail) backend.invalid ??= bf.mustFail;
    backends.push(backend);
  }
  return backends;
}

/** The fixed answer of a rule that cannot forward: a filter that must fail, or no usable backend. */
export function directResponse(filters: CompiledFilters, backends: readonly WeightedBackend[], redirects: boolean): RouteEntry["direct"] {
  if (filters.mustFail) return { status: 500, reason: filters.mustFail };
  if (redirects) return undefined;
  if (backends.length === 0) return { status: 500, reason: "Rule has no backendRefs" };
  if (backends.every((b) => b.weight === 0 || b.invalid)) return { status: 500, reason: "Rule has no usable backend" };
  return undefined;
}
