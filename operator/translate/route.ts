// Route attachment: which listeners of a Gateway a parentRef lands on, and why not when none.
import { GATEWAY_GROUP, type RouteKind } from "../api/kinds.ts";
import { objectKey, type K8sObject } from "../api/objects.ts";
import { Reason } from "./conditions.ts";
import { intersectHostnames } from "./hostname.ts";
import type { ListenerInfo } from "./listener.ts";
import { namespaceLabels, selectorMatches } from "./namespaces.ts";
import type { Deps, World } from "./world.ts";

export interface ParentRef {
  group?: string;
  kind?: string;
  namespace?: string;
  name: string;
  sectionName?: string;
  port?: number;
}

export interface DefaultedParentRef {
  group: string;
  kind: string;
  namespace: string;
  name: string;
  sectionName?: string;
  port?: number;
}

/** The parentRef as the API server defaults it, which is what route status must echo. */
export function defaultParentRef(ref: ParentRef, routeNamespace: string): DefaultedParentRef {
  const out: DefaultedParentRef = {
    group: ref.group ?? GATEWAY_GROUP,
    kind: ref.kind ?? "Gateway",
    namespace: ref.namespace ?? routeNamespace,
    name: ref.name,
  };
  if (ref.sectionName !== undefined) out.sectionName = ref.sectionName;
  if (ref.port !== undefined) out.port = ref.port;
  return out;
}

export function isGatewayRef(ref: DefaultedParentRef): boolean {
  return ref.group === GATEWAY_GROUP && ref.kind === "Gateway";
}

export function parentRefsOf(route: K8sObject): ParentRef[] {
  const refs = (route.spec as { parentRefs?: unknown } | undefined)?.parentRefs;
  return Array.isArray(refs) ? (refs.filter((r) => r && typeof r === "object" && typeof (r as ParentRef).name === "string") as ParentRef[]) : [];
}

export interface Attachment {
  listener: ListenerInfo;
  /** Effective hostnames on this listener (`*` = any). */
  hostnames: string[];
}

export type AttachResult =
  | { accepted: true; attachments: Attachment[] }
  | { accepted: false; reason: string; message: string };

const HOSTNAME_KINDS = new Set<RouteKind>(["HTTPRoute", "GRPCRoute", "TLSRoute"]);

export function attach(
  kind: RouteKind,
  route: K8sObject,
  ref: DefaultedParentRef,
  gatewayNamespace: string,
  listeners: readonly ListenerInfo[],
  world: World,
  deps: Deps,
): AttachResult {
  const candidates = listeners.filter((l) => (ref.sectionName === undefined || l.name === ref.sectionName) && (ref.port === undefined || l.port === ref.port));
  if (candidates.length === 0) {
    const what = [ref.sectionName !== undefined ? `named ${ref.sectionName}` : "", ref.port !== undefined ? `on port ${ref.port}` : ""].filter(Boolean).join(" ");
    return { accepted: false, reason: Reason.NoMatchingParent, message: `Gateway ${objectKey(ref.namespace, ref.name)} has no listener ${what}` };
  }
  const routeNs = route.metadata.namespace ?? "default";
  const routeHostnames = HOSTNAME_KINDS.has(kind) ? hostnamesOf(route) : [];
  const attachments: Attachment[] = [];
  let hostnameMiss = false;
  for (const l of candidates) {
    if (!l.accepted || !l.supportedKinds.includes(kind) || !namespaceAllowed(l, routeNs, gatewayNamespace, world, deps)) continue;
    const hostnames = HOSTNAME_KINDS.has(kind) ? intersectHostnames(l.hostname, routeHostnames) : ["*"];
    if (!hostnames) {
      hostnameMiss = true;
      continue;
    }
    attachments.push({ listener: l, hostnames });
  }
  if (attachments.length) return { accepted: true, attachments };
  if (hostnameMiss) {
    return { accepted: false, reason: Reason.NoMatchingListenerHostname, message: "No listener hostname matches the route's hostnames" };
  }
  return { accepted: false, reason: Reason.NotAllowedByListeners, message: `No listener allows ${kind}s from namespace ${routeNs}` };
}

export function hostnamesOf(route: K8sObject): string[] {
  const h = (route.spec as { hostnames?: unknown } | undefined)?.hostnames;
  return Array.isArray(h) ? h.filter((x): x is string => typeof x === "string" && x !== "").map((x) => x.toLowerCase()) : [];
}

function namespaceAllowed(l: ListenerInfo, routeNs: string, gwNs: string, world: World, deps: Deps): boolean {
  switch (l.from) {
    case "All": return true;
    case "Same": return routeNs === gwNs;
    case "None": return false;
    case "Selector": {
      const ns = world.get(deps, "Namespace", routeNs);
      return l.selector !== undefined && selectorMatches(l.selector, namespaceLabels(routeNs, ns)) === true;
    }
    default: return false;
  }
}
