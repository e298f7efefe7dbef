// translate(snapshot): the pure heart of Sluice. Given the same snapshot it always returns the
// same result. A Translator instance additionally reuses each Gateway's previous result when
// nothing that Gateway read has changed, which keeps a one-route change cheap at 10k routes;
// that reuse never changes the output (tested against fresh translations).
import { ROUTE_KINDS, type RouteKind } from "../api/kinds.ts";
import { keyOf, objectKey, type BackendTLSPolicy, type Condition, type Gateway, type GatewayClass, type K8sObject } from "../api/objects.ts";
import type { Snapshot } from "../store/snapshot.ts";
import { BackendTLSPolicies } from "./backendtlspolicy.ts";
import { desiredDnsRecords } from "./dns.ts";
import { evaluateClass, CONTROLLER_NAME, type ClassInfo } from "./gatewayclass.ts";
import { translateGateway, type Addressing, type GatewayOptions, type GatewayResult, type ParentEntry, type RouteObj } from "./gateway.ts";
import { buildMaglevTable, DEFAULT_MAGLEV_TABLE_SIZE, maglevHashKey } from "./maglev.ts";
import type { CaBundle, Cluster, L4Backend, ObjectStatus, TlsCertificate, TranslateResult } from "./output.ts";
import { defaultParentRef, isGatewayRef, parentRefsOf } from "./route.ts";
import { Deps, sameItems, World } from "./world.ts";

export type { Addressing } from "./gateway.ts";

export interface TranslateOptions {
  controllerName?: string;
  addressing?: Addressing;
  assumeAcknowledged?: boolean;
  maglevTableSize?: number;
  /** external-dns-compatible TXT owner id. */
  dnsOwnerId?: string;
}

interface Memo {
  gateway: Gateway;
  classInfo: ClassInfo;
  routes: readonly RouteObj[];
  ack: string | undefined;
  deps: Deps;
  result: GatewayResult;
}

interface RouteStatusMemo {
  route: K8sObject;
  gateways: unknown;
  entries: ParentEntry[];
  status: ObjectStatus | undefined;
  warnings: string[];
}

const statusKey = (kind: string, key: string) => `${kind}/${key}`;

export class Translator {
  private readonly opts: GatewayOptions;
  private readonly dnsOwnerId: string;
  private readonly validations = new WeakMap<object, string[]>();
  private memo = new Map<string, Memo>();
  private classMemo = new Map<string, { gc: GatewayClass; configs: unknown; info: ClassInfo }>();
  private policiesMemo?: { policies: unknown; configMaps: unknown; value: BackendTLSPolicies };
  private routeIndexMemo?: { colls: unknown[]; value: Map<string, RouteObj[]> };
  private maglevCache = new Map<string, Uint32Array>();
  private routeStatusMemo = new Map<string, RouteStatusMemo>();

  constructor(options: TranslateOptions = {}) {
    this.opts = {
      controllerName: options.controllerName ?? CONTROLLER_NAME,
      addressing: options.addressing ?? { mode: "service" },
      assumeAcknowledged: options.assumeAcknowledged ?? false,
      maglevTableSize: options.maglevTableSize ?? DEFAULT_MAGLEV_TABLE_SIZE,
    };
    this.dnsOwnerId = options.dnsOwnerId ?? "sluice";
  }

  translate(snapshot: Snapshot): TranslateResult {
    const world = new World(snapshot, this.validations);
    const schemaErrors = (o: K8sObject) => world.schemaErrors(o);
    const warnings: string[] = [];
    const statuses = new Map<string, ObjectStatus>();

    // GatewayClasses that name our controller.
    const classes = new Map<string, ClassInfo>();
    const nextClassMemo = new Map<string, { gc: GatewayClass; configs: unknown; info: ClassInfo }>();
    for (const gc of snapshot.objects.GatewayClass.values()) {
      if (gc.spec?.controllerName !== this.opts.controllerName) continue;
      const prev = this.classMemo.get(gc.metadata.name);
      const info = prev && prev.gc === gc && prev.configs === snapshot.objects.GatewayClassConfig
        ? prev.info
        : evaluateClass(gc, snapshot, schemaErrors);
      nextClassMemo.set(gc.metadata.name, { gc, configs: snapshot.objects.GatewayClassConfig, info });
      classes.set(gc.metadata.name, info);
      statuses.set(statusKey("GatewayClass", gc.metadata.name), { kind: "GatewayClass", name: gc.metadata.name, status: info.status });
    }
    this.classMemo = nextClassMemo;

    const policies = this.policies(snapshot, schemaErrors);
    const routesByGateway = this.routeIndex(snapshot);

    // Gateways, each reusing its previous result when nothing it read changed.
    const results: { key: string; gateway: Gateway; result: GatewayResult }[] = [];
    const nextMemo = new Map<string, Memo>();
    const usedMaglev = new Map<string, Uint32Array>();
    const maglev = (backends: L4Backend[]) => this.maglev(backends, usedMaglev);
    for (const gw of [...snapshot.objects.Gateway.values()].sort(byKey)) {
      const classInfo = classes.get(gw.spec?.gatewayClassName ?? "");
      if (!classInfo) continue;
      const key = keyOf(gw);
      const routes = routesByGateway.get(key) ?? [];
      const ack = snapshot.acks.get(key);
      const prev = this.memo.get(key);
      let memo: Memo;
      if (prev && prev.gateway === gw && prev.classInfo === classInfo && prev.ack === ack && sameRoutes(prev.routes, routes) && prev.deps.stillValid(world)) {
        memo = prev;
        for (const s of memo.result.datapath?.l4 ?? []) usedMaglev.set(maglevKey(s.backends, this.opts.maglevTableSize), s.maglev);
      } else {
        const deps = new Deps();
        const result = translateGateway({ gateway: gw, classInfo, routes, world, deps, policies, opts: this.opts, maglev, ack });
        memo = { gateway: gw, classInfo, routes, ack, deps, result };
      }
      nextMemo.set(key, memo);
      results.push({ key, gateway: gw, result: memo.result });
      statuses.set(statusKey("Gateway", key), { kind: "Gateway", namespace: gw.metadata.namespace, name: gw.metadata.name, status: memo.result.status });
    }
    this.memo = nextMemo;
    this.maglevCache = usedMaglev;

    this.routeStatuses(snapshot, results, statuses, warnings);
    this.policyStatuses(policies, results, statuses);

    const clusters = new Map<string, Cluster>();
    const certificates = new Map<string, TlsCertificate>();
    const caBundles = new Map<string, CaBundle>();
    for (const { result } of results) {
      for (const c of result.clusters) if (!clusters.has(c.id)) clusters.set(c.id, c);
      for (const c of result.certificates) if (!certificates.has(c.id)) certificates.set(c.id, c);
      for (const c of result.caBundles) if (!caBundles.has(c.id)) caBundles.set(c.id, c);
    }

    return {
      statuses,
      services: results.flatMap(({ result }) => (result.service ? [result.service] : [])),
      dns: desiredDnsRecords(results.flatMap(({ result }) => (result.dns ? [result.dns] : [])), this.dnsOwnerId),
      datapath: {
        gateways: results.flatMap(({ result }) => (result.datapath ? [result.datapath] : [])),
        clusters: [...clusters.values()].sort((a, b) => (a.id < b.id ? -1 : 1)),
        certificates: [...certificates.values()].sort((a, b) => (a.id < b.id ? -1 : 1)),
        caBundles: [...caBundles.values()].sort((a, b) => (a.id < b.id ? -1 : 1)),
      },
      warnings,
    };
  }

  private policies(snapshot: Snapshot, schemaErrors: (o: K8sObject) => string[]): BackendTLSPolicies {
    const m = this.policiesMemo;
    if (m && m.policies === snapshot.objects.BackendTLSPolicy && m.configMaps === snapshot.objects.ConfigMap) return m.value;
    const value = new BackendTLSPolicies(snapshot, (p: BackendTLSPolicy) => schemaErrors(p));
    this.policiesMemo = { policies: snapshot.objects.BackendTLSPolicy, configMaps: snapshot.objects.ConfigMap, value };
    return value;
  }

  /** Gateway key → the routes whose parentRefs name it (route order: kind, then key). */
  private routeIndex(snapshot: Snapshot): Map<string, RouteObj[]> {
    const colls = ROUTE_KINDS.map((k) => snapshot.objects[k]);
    const m = this.routeIndexMemo;
    if (m && sameItems(m.colls, colls)) return m.value;
    const index = new Map<string, RouteObj[]>();
    for (const kind of ROUTE_KINDS) {
      const coll = snapshot.objects[kind] as ReadonlyMap<string, K8sObject>;
      // Collection order is stable across snapshots; every output derived from this index is
      // sorted by its own full key, so no sort is needed here.
      for (const [key, route] of coll) {
        const seen = new Set<string>();
        for (const raw of parentRefsOf(route)) {
          const ref = defaultParentRef(raw, route.metadata.namespace ?? "default");
          if (!isGatewayRef(ref)) continue;
          const gwKey = objectKey(ref.namespace, ref.name);
          if (seen.has(gwKey)) continue;
          seen.add(gwKey);
          const ro = { kind, key, route } as RouteObj;
          const list = index.get(gwKey);
          if (list) list.push(ro);
          else index.set(gwKey, [ro]);
        }
      }
    }
    this.routeIndexMemo = { colls, value: index };
    return index;
  }

  private routeStatuses(snapshot: Snapshot, results: { key: string; result: GatewayResult }[], statuses: Map<string, ObjectStatus>, warnings: string[]): void {
    const parents = new Map<string, ParentEntry[]>();
    for (const { result } of results) {
      for (const [rk, entries] of result.routeParents) {
        const list = parents.get(rk);
        if (list) list.push(...entries);
        else parents.set(rk, [...entries]);
      }
    }
    const gateways = snapshot.objects.Gateway;
    const next = new Map<string, RouteStatusMemo>();
    for (const kind of ROUTE_KINDS) {
      for (const [key, route] of snapshot.objects[kind as RouteKind] as ReadonlyMap<string, K8sObject>) {
        const sk = statusKey(kind, key);
        const ours = (parents.get(sk) ?? []).sort((a, b) => a.index - b.index);
        const prev = this.routeStatusMemo.get(sk);
        let memo: RouteStatusMemo;
        if (prev && prev.route === route && prev.gateways === gateways && sameItems(prev.entries, ours)) memo = prev;
        else {
          const missing: string[] = [];
          for (const raw of parentRefsOf(route)) {
            const ref = defaultParentRef(raw, route.metadata.namespace ?? "default");
            if (isGatewayRef(ref) && !gateways.has(objectKey(ref.namespace, ref.name))) {
              missing.push(`${kind} ${key}: parentRef Gateway ${objectKey(ref.namespace, ref.name)} does not exist`);
            }
          }
          let status: ObjectStatus | undefined;
          if (ours.length) {
            // Entries written by other controllers stay as they are.
            const prevParents = (route.status as { parents?: { controllerName?: string }[] } | undefined)?.parents;
            const others = Array.isArray(prevParents) ? prevParents.filter((p) => p?.controllerName !== this.opts.controllerName) : [];
            status = {
              kind, namespace: route.metadata.namespace, name: route.metadata.name,
              status: { parents: [...ours.map((e) => e.status), ...others] },
            };
          }
          memo = { route, gateways, entries: ours, status, warnings: missing };
        }
        next.set(sk, memo);
        warnings.push(...memo.warnings);
        if (memo.status) statuses.set(sk, memo.status);
      }
    }
    this.routeStatusMemo = next;
  }

  private policyStatuses(policies: BackendTLSPolicies, results: { key: string; gateway: Gateway; result: GatewayResult }[], statuses: Map<string, ObjectStatus>): void {
    const ancestors = new Map<string, Gateway[]>();
    for (const { gateway, result } of results) {
      for (const pk of result.policiesUsed) {
        const list = ancestors.get(pk);
        if (list) list.push(gateway);
        else ancestors.set(pk, [gateway]);
      }
    }
    for (const [pk, gws] of ancestors) {
      const e = policies.evals.get(pk);
      if (!e) continue;
      const conds: Condition[] = [e.accepted, e.resolvedRefs];
      statuses.set(statusKey("BackendTLSPolicy", pk), {
        kind: "BackendTLSPolicy", namespace: e.policy.metadata.namespace, name: e.policy.metadata.name,
        status: {
          ancestors: gws.map((g) => ({
            ancestorRef: { group: "gateway.networking.k8s.io", kind: "Gateway", namespace: g.metadata.namespace ?? "default", name: g.metadata.name },
            controllerName: this.opts.controllerName,
            conditions: conds,
          })),
        },
      });
    }
  }

  private maglev(backends: L4Backend[], used: Map<string, Uint32Array>): Uint32Array {
    const key = maglevKey(backends, this.opts.maglevTableSize);
    let table = used.get(key) ?? this.maglevCache.get(key);
    if (!table) {
      table = buildMaglevTable(
        backends.map((b) => ({ hashKey: maglevHashKey(b.address, b.port, b.protocol), weight: b.state === "active" ? b.weight : 0 })),
        this.opts.maglevTableSize,
      );
    }
    used.set(key, table);
    return table;
  }
}

function sameRoutes(a: readonly RouteObj[], b: readonly RouteObj[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if ((a[i] as RouteObj).route !== (b[i] as RouteObj).route) return false;
  return true;
}

function maglevKey(backends: readonly L4Backend[], m: number): string {
  return `${m}:` + backends.map((b) => `${b.address}|${b.port}|${b.protocol}|${b.state === "active" ? b.weight : 0}`).join(",");
}

function byKey(a: K8sObject, b: K8sObject): number {
  const ka = keyOf(a);
  const kb = keyOf(b);
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

/** One-shot translation (render, tests). */
export function translate(snapshot: Snapshot, options?: TranslateOptions): TranslateResult {
  return new Translator(options).translate(snapshot);
}
