// One Gateway's translation: listeners, the routes that attach to them, addresses, the datapath
// configuration it needs, its Service and DNS inputs, and every status those imply.
import { createHash } from "node:crypto";
import { isIP } from "node:net";
import { GATEWAY_GROUP } from "../api/kinds.ts";
import {
  generationOf, keyOf, objectKey,
  type Condition, type Gateway, type GRPCRoute, type HTTPRoute, type Service, type TCPRoute, type TLSRoute, type UDPRoute,
} from "../api/objects.ts";
import type { GatewayClassConfigSpec } from "../api/gatewayclassconfig.ts";
import type { BackendTLSPolicies } from "./backendtlspolicy.ts";
import type { RouteContext } from "./cluster.ts";
import type { CompiledRoute } from "./compiled.ts";
import { condition, CondType, Reason } from "./conditions.ts";
import type { DnsInput } from "./dns.ts";
import { resolveConfigRef, type ClassInfo } from "./gatewayclass.ts";
import { compileGRPCRoute } from "./grpcroute.ts";
import { compareHostnameSpecificity } from "./hostname.ts";
import { compileHTTPRoute } from "./httproute.ts";
import { compileL4Route } from "./l4route.ts";
import { transportOf, usesInsecureFallback, validateListeners, type ListenerInfo } from "./listener.ts";
import { maglevHashKey } from "./maglev.ts";
import type { CaBundle, Cluster, GatewayDatapath, L4Backend, L4Service, L7Listener, L7Port, RouteEntry, RouteRef, TLSRouteEntry, TlsCertificate, VirtualHost } from "./output.ts";
import { byAge, compareEntries } from "./precedence.ts";
import { attach, defaultParentRef, isGatewayRef, parentRefsOf, type Attachment, type DefaultedParentRef } from "./route.ts";
import { desiredService, generatedServiceName } from "./service.ts";
import { PROXY_PROTOCOL_ANNOTATION } from "./nlb.ts";
import { compileTLSRoute } from "./tlsroute.ts";
import { checkCaConfigMap, checkTlsSecret } from "./pem.ts";
import { Deps, type World } from "./world.ts";

export type Addressing =
  /** Kubernetes: addresses come from the status of the Gateway's generated Service. */
  | { mode: "service" }
  /** Standalone: this host serves every Gateway on these IPs, or a Gateway on its own (`byGateway`, keyed `namespace/name`). */
  | { mode: "static"; addresses: string[]; byGateway?: Readonly<Record<string, string[]>> };

export interface GatewayOptions {
  controllerName: string;
  addressing: Addressing;
  /** Treat every config as applied by the datapath (render: there is no datapath). */
  assumeAcknowledged: boolean;
  maglevTableSize: number;
}

export type RouteObj = { key: string } & (
  | { kind: "HTTPRoute"; route: HTTPRoute }
  | { kind: "GRPCRoute"; route: GRPCRoute }
  | { kind: "TLSRoute"; route: TLSRoute }
  | { kind: "TCPRoute"; route: TCPRoute }
  | { kind: "UDPRoute"; route: UDPRoute }
);

export interface ParentEntry {
  /** Index of the parentRef in the route's spec. */
  index: number;
  status: { parentRef: DefaultedParentRef; controllerName: string; conditions: Condition[] };
}

export interface GatewayResult {
  status: Record<string, unknown>;
  /** Route status key (`Kind/namespace/name`) → this Gateway's parent entries for it. */
  routeParents: Map<string, ParentEntry[]>;
  datapath?: GatewayDatapath;
  clusters: Cluster[];
  certificates: TlsCertificate[];
  caBundles: CaBundle[];
  service?: Service;
  dns?: DnsInput;
  /** BackendTLSPolicy keys the Gateway's routes use. */
  policiesUsed: string[];
  /** The status under another datapath acknowledgement, everything else equal. */
  statusFor?: (ack: string | undefined) => Record<string, unknown>;
}

export interface GatewayInput {
  gateway: Gateway;
  classInfo: ClassInfo;
  routes: readonly RouteObj[];
  world: World;
  deps: Deps;
  policies: BackendTLSPolicies;
  opts: GatewayOptions;
  maglev: (backends: L4Backend[]) => Uint32Array;
  ack: string | undefined;
  /** Compiled routes from earlier translations, reused while what they read is unchanged. */
  compiledRoutes?: WeakMap<object, CachedRoute>;
}

/** A route compiled in a Gateway's context, with what compiling it read and added. */
export interface CachedRoute {
  compiled: CompiledRoute;
  deps: Deps;
  clusters: Cluster[];
  policiesUsed: string[];
  clientCertificate: string | undefined;
  policies: BackendTLSPolicies;
}

export function translateGateway(input: GatewayInput): GatewayResult {
  const { gateway: gw, world, deps, opts } = input;
  const gen = generationOf(gw);
  const gwKey = keyOf(gw);
  const ns = gw.metadata.namespace ?? "default";
  const result: GatewayResult = { status: {}, routeParents: new Map(), clusters: [], certificates: [], caBundles: [], policiesUsed: [] };

  // Why the Gateway as a whole is rejected, if it is.
  let rejected: { reason: string; message: string } | undefined;
  let config: GatewayClassConfigSpec | undefined = input.classInfo.config;
  const schemaErrors = world.schemaErrors(gw);
  if (schemaErrors.length) rejected = { reason: Reason.Invalid, message: `Invalid: ${schemaErrors.join("; ")}` };
  else if (input.classInfo.accepted.status !== "True") {
    rejected = { reason: Reason.InvalidParameters, message: `GatewayClass ${input.classInfo.gatewayClass.metadata.name} is not accepted: ${input.classInfo.accepted.message}` };
  } else if (gw.spec?.infrastructure?.parametersRef) {
    deps.recordCollection("GatewayClassConfig", world.snapshot.objects.GatewayClassConfig);
    const r = resolveConfigRef({ ...gw.spec.infrastructure.parametersRef, namespace: ns }, ns, world.snapshot, (o) => world.schemaErrors(o));
    if (r.problem) rejected = { reason: Reason.InvalidParameters, message: r.problem };
    else config = r.config;
  }
  rejected ??= unsupportedAddress(gw);

  const listeners = schemaErrors.length ? [] : validateListeners(gw, world, deps);
  const backendClient = schemaErrors.length ? undefined : backendClientCertificate(gw, world, deps);
  const ctx: RouteContext = {
    world, deps, policies: input.policies, clusters: new Map(), policiesUsed: new Set(),
    ...(backendClient?.key ? { clientCertificate: backendClient.key } : {}),
  };

  // Routes: compile, attach, and collect parent statuses.
  const attached = new Map<ListenerInfo, { compiled: CompiledRoute; attachment: Attachment }[]>();
  const counted = new Map<ListenerInfo, Set<string>>();
  const dnsHostnames: DnsInput["hostnames"] = [];
  for (const ro of input.routes) {
    const compiled = compileCached(ro, ctx, input.compiledRoutes);
    const entries: ParentEntry[] = [];
    parentRefsOf(ro.route).forEach((raw, index) => {
      const ref = defaultParentRef(raw, ro.route.metadata.namespace ?? "default");
      if (!isGatewayRef(ref) || objectKey(ref.namespace, ref.name) !== gwKey) return;
      const rgen = generationOf(ro.route);
      const resolvedRefs = compiled.refFailure
        ? condition(CondType.ResolvedRefs, false, compiled.refFailure.reason, compiled.refFailure.message, rgen)
        : condition(CondType.ResolvedRefs, true, Reason.ResolvedRefs, "All references are resolved", rgen);
      const conditions: Condition[] = [];
      if (compiled.schemaErrors.length) {
        conditions.push(condition(CondType.Accepted, false, Reason.UnsupportedValue, `Invalid: ${compiled.schemaErrors.join("; ")}`, rgen));
      } else if (rejected) {
        conditions.push(condition(CondType.Accepted, false, Reason.Pending, `Gateway ${gwKey} is not accepted: ${rejected.message}`, rgen));
      } else {
        const a = attach(ro.kind, ro.route, ref, ns, listeners, world, deps);
        if (!a.accepted) conditions.push(condition(CondType.Accepted, false, a.reason, a.message, rgen));
        else if (compiled.ruleCount > 0 && compiled.invalidRules.length === compiled.ruleCount) {
          conditions.push(condition(CondType.Accepted, false, Reason.UnsupportedValue, `No valid rule: ${compiled.invalidRules.join("; ")}`, rgen));
        } else {
          conditions.push(condition(CondType.Accepted, true, Reason.Accepted, "Route is accepted", rgen));
          if (compiled.invalidRules.length) {
            conditions.push(condition(CondType.PartiallyInvalid, true, Reason.UnsupportedValue, `Dropped invalid rules: ${compiled.invalidRules.join("; ")}`, rgen));
          }
          for (const att of a.attachments) {
            let set = counted.get(att.listener);
            if (!set) counted.set(att.listener, (set = new Set()));
            if (set.has(ro.key)) continue;
            set.add(ro.key);
            att.listener.attachedRoutes++;
            const list = attached.get(att.listener);
            if (list) list.push({ compiled, attachment: att });
            else attached.set(att.listener, [{ compiled, attachment: att }]);
            for (const h of att.hostnames) if (h !== "*") dnsHostnames.push({ name: h, resource: `${ro.kind.toLowerCase()}/${ro.key}` });
          }
        }
      }
      conditions.push(resolvedRefs);
      entries.push({ index, status: { parentRef: ref, controllerName: opts.controllerName, conditions } });
    });
    if (entries.length) result.routeParents.set(`${ro.kind}/${ro.key}`, entries);
  }

  // Gateway Accepted.
  let accepted: Condition;
  const invalidListeners = listeners.filter((l) => !l.accepted);
  if (rejected) accepted = condition(CondType.Accepted, false, rejected.reason, rejected.message, gen);
  else if (listeners.length > 0 && invalidListeners.length === listeners.length) {
    accepted = condition(CondType.Accepted, false, Reason.ListenersNotValid, "No listener is valid", gen);
  } else if (invalidListeners.length) {
    accepted = condition(CondType.Accepted, true, Reason.ListenersNotValid, `Invalid listeners: ${invalidListeners.map((l) => l.name).join(", ")}`, gen);
  } else accepted = condition(CondType.Accepted, true, Reason.Accepted, "Gateway is accepted", gen);
  const isAccepted = accepted.status === "True";

  // Addresses, datapath, Programmed.
  const addr = isAccepted ? resolveAddresses(gw, opts.addressing, world, deps) : { addresses: [] };
  let programmedFor: (ack: string | undefined) => Condition;
  if (isAccepted) {
    const ips = addr.addresses.filter((a) => a.type === "IPAddress").map((a) => a.value);
    const material = tlsMaterial(listeners, ctx);
    const ports = listeners.filter((l) => l.accepted).map((l) => ({ port: l.port, protocol: transportOf(l.protocol) }));
    result.service = desiredService(gw, ports, config);
    // Whatever asked for it (class config, class or infrastructure annotations), the datapath must expect it.
    const proxyProtocol = result.service.metadata?.annotations?.[PROXY_PROTOCOL_ANNOTATION] === "*";
    const dp = buildDatapath(gwKey, ips, listeners, attached, ctx, input.maglev, material, proxyProtocol);
    result.datapath = dp;
    result.certificates = material.certificates;
    result.caBundles = material.caBundles;
    result.clusters = [...ctx.clusters.values()];
    result.policiesUsed = [...ctx.policiesUsed].sort();
    const { problem } = addr;
    if (problem) programmedFor = () => condition(CondType.Programmed, false, problem.reason, problem.message, gen);
    else if (addr.addresses.length === 0) programmedFor = () => condition(CondType.Programmed, false, Reason.AddressNotAssigned, "Waiting for an address", gen);
    else {
      programmedFor = (ack) => !opts.assumeAcknowledged && ack !== dp.configHash
        ? condition(CondType.Programmed, false, Reason.Pending, `Waiting for the datapath to apply configuration ${dp.configHash.slice(0, 12)}`, gen)
        : condition(CondType.Programmed, true, Reason.Programmed, "Gateway is programmed", gen);
    }
    const hostnames = [
      ...listeners.filter((l) => l.accepted && l.hostname).map((l) => ({ name: l.hostname as string, resource: `gateway/${gwKey}` })),
      ...dnsHostnames,
    ];
    result.dns = { gateway: gwKey, addresses: addr.addresses, hostnames };
  } else {
    programmedFor = () => condition(CondType.Programmed, false, Reason.Invalid, accepted.message, gen);
  }

  // The datapath's acknowledgement changes only the Programmed conditions: the status is a
  // function of it, so an acknowledgement alone needs no new translation (statusFor).
  const statusFor = (ack: string | undefined): Record<string, unknown> => {
    const programmed = programmedFor(ack);
    const gwProgrammed = programmed.status === "True";
    const conditions: Condition[] = [accepted, programmed];
    if (backendClient) conditions.push(backendClient.condition(gen));
    if (!schemaErrors.length && usesInsecureFallback(gw)) {
      conditions.push(condition(CondType.InsecureFrontendValidationMode, true, Reason.ConfigurationChanged, "Clients without a valid certificate are allowed on some listeners", gen));
    }
    const status: Record<string, unknown> = {};
    if (addr.addresses.length) status.addresses = addr.addresses;
    status.conditions = conditions;
    status.listeners = listeners.map((l) => ({
      name: l.name,
      supportedKinds: l.supportedKinds.map((kind) => ({ group: GATEWAY_GROUP, kind })),
      attachedRoutes: l.attachedRoutes,
      conditions: [
        l.acceptedCond,
        listenerProgrammed(l, gwProgrammed, programmed, rejected, gen),
        l.resolvedRefsCond,
        l.conflictedCond,
      ],
    }));
    return status;
  };
  result.status = statusFor(input.ack);
  result.statusFor = statusFor;
  return result;
}

function listenerProgrammed(l: ListenerInfo, gwProgrammed: boolean, gwCond: Condition, rejected: unknown, gen: number): Condition {
  if (l.invalid) return condition(CondType.Programmed, false, l.invalid.reason, l.invalid.message, gen);
  if (rejected) return condition(CondType.Programmed, false, Reason.Invalid, "Gateway is not accepted", gen);
  if (gwProgrammed) return condition(CondType.Programmed, true, Reason.Programmed, "Listener is programmed", gen);
  return condition(CondType.Programmed, false, Reason.Pending, gwCond.message, gen);
}

/**
 * A route's compilation depends on the route, what it reads through the world (Services,
 * EndpointSlices, ReferenceGrants, policies) and the Gateway's backend client certificate; when
 * none of those changed, the earlier result is reused, so adding one route to a Gateway with a
 * hundred does not compile the other hundred again.
 */
function compileCached(ro: RouteObj, ctx: RouteContext, cache: WeakMap<object, CachedRoute> | undefined): CompiledRoute {
  if (!cache) return compileRoute(ro, ctx);
  let entry = cache.get(ro.route);
  if (!entry || entry.clientCertificate !== ctx.clientCertificate || entry.policies !== ctx.policies || !entry.deps.stillValid(ctx.world)) {
    const own: RouteContext = { ...ctx, deps: new Deps(), clusters: new Map(), policiesUsed: new Set() };
    const compiled = compileRoute(ro, own);
    entry = { compiled, deps: own.deps, clusters: [...own.clusters.values()], policiesUsed: [...own.policiesUsed], clientCertificate: ctx.clientCertificate, policies: ctx.policies };
    cache.set(ro.route, entry);
  }
  ctx.deps.absorb(entry.deps);
  for (const c of entry.clusters) if (!ctx.clusters.has(c.id)) ctx.clusters.set(c.id, c);
  for (const p of entry.policiesUsed) ctx.policiesUsed.add(p);
  return entry.compiled;
}

function compileRoute(ro: RouteObj, ctx: RouteContext): CompiledRoute {
  const errs = ctx.world.schemaErrors(ro.route);
  switch (ro.kind) {
    case "HTTPRoute": return compileHTTPRoute(ro.route, errs, ctx);
    case "GRPCRoute": return compileGRPCRoute(ro.route, errs, ctx);
    case "TLSRoute": return compileTLSRoute(ro.route, errs, ctx);
    case "TCPRoute": case "UDPRoute": return compileL4Route(ro.kind, ro.route, errs, ctx);
  }
}

// ---- addresses ----

const SUPPORTED_ADDRESS_TYPES = new Set(["IPAddress"]);

function unsupportedAddress(gw: Gateway): { reason: string; message: string } | undefined {
  for (const a of gw.spec?.addresses ?? []) {
    const type = a.type ?? "IPAddress";
    if (!SUPPORTED_ADDRESS_TYPES.has(type)) return { reason: Reason.UnsupportedAddress, message: `Address type ${type} is not supported` };
    if (a.value !== undefined && a.value !== "" && isIP(a.value) === 0) return { reason: Reason.UnsupportedAddress, message: `${a.value} is not an IP address` };
  }
  return undefined;
}

interface StatusAddress { type: "IPAddress" | "Hostname"; value: string }

function resolveAddresses(gw: Gateway, addressing: Addressing, world: World, deps: Deps): { addresses: StatusAddress[]; problem?: { reason: string; message: string } } {
  let available: StatusAddress[];
  if (addressing.mode === "static") {
    const own = addressing.byGateway?.[keyOf(gw)];
    available = (own ?? addressing.addresses).map((value) => ({ type: "IPAddress", value }));
  } else {
    const svc = world.get(deps, "Service", objectKey(gw.metadata.namespace ?? "default", generatedServiceName(gw.metadata.name)));
    available = [];
    for (const ing of svc?.status?.loadBalancer?.ingress ?? []) {
      if (ing.ip) available.push({ type: "IPAddress", value: ing.ip });
      if (ing.hostname) available.push({ type: "Hostname", value: ing.hostname });
    }
  }
  const requested = (gw.spec?.addresses ?? []).filter((a) => a.value).map((a) => a.value as string);
  if (requested.length === 0) return { addresses: available };
  const usable = requested.filter((r) => available.some((a) => a.value === r));
  const out = usable.map((value) => ({ type: "IPAddress" as const, value }));
  const missing = requested.filter((r) => !usable.includes(r));
  if (missing.length) return { addresses: out, problem: { reason: Reason.AddressNotUsable, message: `Addresses not usable: ${missing.join(", ")}` } };
  return { addresses: out };
}

// ---- backend client certificate (spec.tls.backend) ----

function backendClientCertificate(gw: Gateway, world: World, deps: Deps): { key?: string; condition: (gen: number) => Condition } | undefined {
  const ref = gw.spec?.tls?.backend?.clientCertificateRef;
  if (!ref) return undefined;
  const gwNs = gw.metadata.namespace ?? "default";
  const ns = ref.namespace ?? gwNs;
  const key = objectKey(ns, ref.name);
  const fail = (reason: string, message: string) => ({ condition: (gen: number) => condition(CondType.ResolvedRefs, false, reason, message, gen) });
  if ((ref.group ?? "") !== "" || (ref.kind ?? "Secret") !== "Secret") return fail(Reason.InvalidClientCertificateRef, `Client certificate reference ${ref.kind ?? ""} ${key} is not a Secret`);
  deps.recordCollection("ReferenceGrant", world.snapshot.objects.ReferenceGrant);
  if (!world.grants.allows({ group: GATEWAY_GROUP, kind: "Gateway", namespace: gwNs }, { group: "", kind: "Secret", namespace: ns, name: ref.name })) {
    return fail(Reason.RefNotPermitted, `Secret ${key} is in another namespace and no ReferenceGrant allows it`);
  }
  const secret = world.get(deps, "Secret", key);
  if (!secret) return fail(Reason.InvalidClientCertificateRef, `Secret ${key} does not exist`);
  const checked = checkTlsSecret(secret);
  if (!checked.ok) return fail(Reason.InvalidClientCertificateRef, `Secret ${key} ${checked.message}`);
  return { key, condition: (gen) => condition(CondType.ResolvedRefs, true, Reason.ResolvedRefs, "All references are resolved", gen) };
}

// ---- datapath ----

function buildDatapath(
  gwKey: string,
  ips: string[],
  listeners: readonly ListenerInfo[],
  attached: Map<ListenerInfo, { compiled: CompiledRoute; attachment: Attachment }[]>,
  ctx: RouteContext,
  maglev: (backends: L4Backend[]) => Uint32Array,
  material: TlsMaterial,
  proxyProtocol: boolean,
): GatewayDatapath {
  const ports = new Map<number, L7Listener[]>();
  const l4: L4Service[] = [];
  for (const l of listeners) {
    if (!l.usable) continue;
    const routes = attached.get(l) ?? [];
    const id = `${gwKey}/${l.name}`;
    if (l.protocol === "TCP" || l.protocol === "UDP") {
      l4.push(l4Service(id, l.protocol, l.port, ips, routes.map((r) => r.compiled), maglev));
      continue;
    }
    const listener: L7Listener = { id, name: l.name, protocol: l.protocol as L7Listener["protocol"], virtualHosts: [], tlsRoutes: [] };
    if (l.hostname) listener.hostname = l.hostname;
    if (l.tls) listener.tls = l.tls;
    if (l.protocol === "TLS") listener.tlsRoutes = tlsEntries(routes);
    else listener.virtualHosts = virtualHosts(routes);
    const list = ports.get(l.port);
    if (list) list.push(listener);
    else ports.set(l.port, [listener]);
  }
  const l7: L7Port[] = [...ports.entries()]
    .sort(([a], [b]) => a - b)
    .map(([port, list]) => ({ port, listeners: list.sort((a, b) => compareHostnameSpecificity(a.hostname ?? "*", b.hostname ?? "*")) }));
  const clusters = [...ctx.clusters.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
  const hash = createHash("sha256");
  // Named only when set, so the hash of every other Gateway stays what it was.
  hash.update(JSON.stringify(proxyProtocol ? { ips, l7, clusters, proxyProtocol } : { ips, l7, clusters }));
  // Certificate contents count: a rotated Secret is a new configuration the datapath must acknowledge.
  for (const c of material.certificates) hash.update(c.id).update(c.cert).update(c.key);
  for (const c of material.caBundles) hash.update(c.id).update(c.pem);
  for (const s of l4) {
    hash.update(JSON.stringify({ ...s, maglev: undefined }));
    hash.update(s.maglev);
  }
  const dp: GatewayDatapath = { gateway: gwKey, configHash: hash.digest("hex"), addresses: ips, ports: l7, l4 };
  if (proxyProtocol) dp.proxyProtocol = true;
  return dp;
}

/** Rank of each route by age (oldest first, then name), keyed by its compiled RouteRef object. */
function routeAgeRank(routes: readonly { compiled: CompiledRoute }[]): Map<RouteRef, number> {
  const compiled = [...new Set(routes.map((r) => r.compiled))].sort((a, b) => byAge(a.route, b.route));
  return new Map(compiled.map((c, i) => [c.ref, i]));
}

function virtualHosts(routes: readonly { compiled: CompiledRoute; attachment: Attachment }[]): VirtualHost[] {
  const rank = routeAgeRank(routes);
  const hosts = new Map<string, RouteEntry[]>();
  for (const { compiled, attachment } of routes) {
    for (const h of attachment.hostnames) {
      const list = hosts.get(h);
      if (list) list.push(...compiled.entries);
      else hosts.set(h, [...compiled.entries]);
    }
  }
  const age = (e: RouteEntry) => rank.get(e.route) ?? 0;
  return [...hosts.entries()]
    .sort(([a], [b]) => compareHostnameSpecificity(a, b))
    .map(([hostname, entries]) => ({ hostname, routes: entries.sort((a, b) => compareEntries(a, b, age)) }));
}

function tlsEntries(routes: readonly { compiled: CompiledRoute; attachment: Attachment }[]): TLSRouteEntry[] {
  const rank = routeAgeRank(routes);
  const out: { e: TLSRouteEntry; age: number }[] = [];
  for (const { compiled, attachment } of routes) {
    const age = rank.get(compiled.ref) ?? 0;
    for (const h of attachment.hostnames) out.push({ e: { route: compiled.ref, hostnames: [h], backends: compiled.backends }, age });
  }
  return out
    .sort((a, b) => compareHostnameSpecificity(a.e.hostnames[0] as string, b.e.hostnames[0] as string) || a.age - b.age)
    .map((x) => x.e);
}

/**
 * A TCP/UDP listener's eBPF service. Only the oldest attached route receives traffic. Each
 * backendRef's weight is spread over its endpoints so that per-endpoint Maglev weights keep the
 * refs' proportions.
 */
function l4Service(id: string, protocol: "TCP" | "UDP", port: number, ips: string[], routes: CompiledRoute[], maglev: (b: L4Backend[]) => Uint32Array): L4Service {
  const svc: L4Service = { id, protocol, frontends: ips.map((address) => ({ address, port, protocol })), backends: [], maglev: new Uint32Array(0) };
  const winner = [...routes].sort((a, b) => byAge(a.route, b.route))[0];
  if (!winner) return svc;
  svc.route = winner.ref;
  const refs = winner.l4.filter((r) => r.weight > 0 && r.endpoints.length > 0);
  // Per-endpoint share of its ref's weight, scaled to the 16-bit weights the datapath keeps. Large
  // values matter: Cilium's Maglev ignores weights whose mean is 1 or less.
  const shares = refs.map((r) => r.weight / r.endpoints.length);
  const top = Math.max(0, ...shares);
  const byKey = new Map<string, L4Backend>();
  refs.forEach((r, i) => {
    const per = Math.max(1, Math.round(((shares[i] as number) / top) * 65535));
    for (const ep of r.endpoints) {
      const k = maglevHashKey(ep.address, ep.port, protocol);
      const prev = byKey.get(k);
      if (prev) prev.weight = Math.min(65535, prev.weight + per);
      else byKey.set(k, { address: ep.address, port: ep.port, protocol, weight: per, state: ep.ready ? "active" : "terminating" });
    }
  });
  svc.backends = [...byKey.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, b]) => b);
  svc.maglev = maglev(svc.backends);
  return svc;
}

interface TlsMaterial {
  certificates: TlsCertificate[];
  caBundles: CaBundle[];
}

/** The certificate and CA contents the Gateway's usable listeners and backend client certificate refer to (all validated before). */
function tlsMaterial(listeners: ListenerInfo[], ctx: RouteContext): TlsMaterial {
  const certs = new Map<string, TlsCertificate>();
  const cas = new Map<string, CaBundle>();
  const addCert = (id: string): void => {
    if (certs.has(id)) return;
    const secret = ctx.world.get(ctx.deps, "Secret", id);
    const checked = secret && checkTlsSecret(secret);
    if (checked?.ok) certs.set(id, { id, cert: checked.value.cert, key: checked.value.key });
  };
  for (const l of listeners) {
    if (!l.usable || !l.tls) continue;
    for (const id of l.tls.certificates) addCert(id);
    for (const id of l.tls.clientValidation?.caCertificates ?? []) {
      if (cas.has(id)) continue;
      const cm = ctx.world.get(ctx.deps, "ConfigMap", id);
      const checked = cm && checkCaConfigMap(cm);
      if (checked?.ok) cas.set(id, { id, pem: checked.value });
    }
  }
  if (ctx.clientCertificate) addCert(ctx.clientCertificate);
  const byId = <T extends { id: string }>(a: T, b: T): number => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
  return { certificates: [...certs.values()].sort(byId), caBundles: [...cas.values()].sort(byId) };
}
