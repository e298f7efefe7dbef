// translate(snapshot): the pure heart of Sluice. Given the same snapshot it always returns the
// same result. A Translator instance additionally reuses each Gateway's previous result when
// nothing that Gateway read has changed, and keeps the whole-world parts (route index, route
// statuses, DNS records, merged clusters) up to date from what changed since its previous
// snapshot, which keeps a one-route change cheap at 10k routes; that reuse never changes the
// output (tested against fresh translations after random sequences of changes).
import { keyOf, type BackendTLSPolicy, type Condition, type Gateway, type GatewayClass, type K8sObject } from "../api/objects.ts";
import type { Snapshot } from "../store/snapshot.ts";
import { BackendTLSPolicies } from "./backendtlspolicy.ts";
import { DnsRecords } from "./dns.ts";
import { FirstById } from "./firstbyid.ts";
import { evaluateClass, CONTROLLER_NAME, type ClassInfo } from "./gatewayclass.ts";
import { translateGateway, type Addressing, type CachedRoute, type GatewayOptions, type GatewayResult, type RouteObj } from "./gateway.ts";
import { buildMaglevTable, DEFAULT_MAGLEV_TABLE_SIZE, maglevHashKey } from "./maglev.ts";
import type { CaBundle, Cluster, L4Backend, ObjectStatus, TlsCertificate, TranslateResult } from "./output.ts";
import { RouteIndex } from "./routeindex.ts";
import { RouteStatuses, type GatewayResultChange } from "./routestatus.ts";
import { Deps, World } from "./world.ts";

export type { Addressing } from "./gateway.ts";

export interface TranslateOptions {
  controllerName?: string;
  addressing?: Addressing;
  assumeAcknowledged?: boolean;
  maglevTableSize?: number;
  /** external-dns-compatible TXT owner id. */
  dnsOwnerId?: string;
  /**
   * Whether to compute the desired DNS records (default true). A host that publishes none
   * (`sluice run`) turns them off: at 5,000 hostnames they hold ~9 MB and cost every tick.
   */
  dnsRecords?: boolean;
}

interface Memo {
  gateway: Gateway;
  classInfo: ClassInfo;
  routes: readonly RouteObj[];
  ack: string | undefined;
  deps: Deps;
  result: GatewayResult;
  /** The Maglev tables of the result's L4 services, by maglevKey. */
  maglev: [string, Uint32Array][];
}

const statusKey = (kind: string, key: string) => `${kind}/${key}`;

export class Translator {
  private readonly opts: GatewayOptions;
  private readonly validations = new WeakMap<object, string[]>();
  private memo = new Map<string, Memo>();
  private classMemo = new Map<string, { gc: GatewayClass; configs: unknown; info: ClassInfo }>();
  private policiesMemo?: { policies: unknown; configMaps: unknown; value: BackendTLSPolicies };
  private readonly dnsOwnerId: string;
  private readonly dnsRecords: boolean;
  private routeIndex = new RouteIndex();
  private routeStatuses: RouteStatuses;
  private dns: DnsRecords;
  private world?: World;
  private gatewaysMemo?: { coll: unknown; sorted: Gateway[] };
  private maglevCache = new Map<string, Uint32Array>();
  /** Compiled routes by route object, reused across ticks while what they read is unchanged. */
  private compiledRoutes = new WeakMap<object, CachedRoute>();
  private clusters = new FirstById<Cluster>();
  private certificates = new FirstById<TlsCertificate>();
  private caBundles = new FirstById<CaBundle>();

  constructor(options: TranslateOptions = {}) {
    this.opts = {
      controllerName: options.controllerName ?? CONTROLLER_NAME,
      addressing: options.addressing ?? { mode: "service" },
      assumeAcknowledged: options.assumeAcknowledged ?? false,
      maglevTableSize: options.maglevTableSize ?? DEFAULT_MAGLEV_TABLE_SIZE,
    };
    this.dnsOwnerId = options.dnsOwnerId ?? "sluice";
    this.dnsRecords = options.dnsRecords ?? true;
    this.routeStatuses = new RouteStatuses(this.opts.controllerName);
    this.dns = new DnsRecords(this.dnsOwnerId);
  }

  translate(snapshot: Snapshot): TranslateResult {
    try {
      return this.translateIncrementally(snapshot);
    } catch (err) {
      // The incremental state may be half updated: start the next call from scratch.
      this.reset();
      throw err;
    }
  }

  private reset(): void {
    this.memo = new Map();
    this.classMemo = new Map();
    this.policiesMemo = undefined;
    this.routeIndex = new RouteIndex();
    this.routeStatuses = new RouteStatuses(this.opts.controllerName);
    this.dns = new DnsRecords(this.dnsOwnerId);
    this.world = undefined;
    this.gatewaysMemo = undefined;
    this.maglevCache = new Map();
    this.compiledRoutes = new WeakMap();
    this.clusters = new FirstById<Cluster>();
    this.certificates = new FirstById<TlsCertificate>();
    this.caBundles = new FirstById<CaBundle>();
  }

  private translateIncrementally(snapshot: Snapshot): TranslateResult {
    const world = new World(snapshot, this.validations, this.world);
    this.world = world;
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
    const { byGateway: routesByGateway, changes: routeChanges } = this.routeIndex.update(snapshot);

    // Gateways, each reusing its previous result when nothing it read changed.
    const results: { key: string; gateway: Gateway; result: GatewayResult }[] = [];
    const nextMemo = new Map<string, Memo>();
    const usedMaglev = new Map<string, Uint32Array>();
    const reacknowledged = new Set<string>();
    const maglev = (backends: L4Backend[]) => this.maglev(backends, usedMaglev);
    for (const gw of this.sortedGateways(snapshot)) {
      const classInfo = classes.get(gw.spec?.gatewayClassName ?? "");
      if (!classInfo) continue;
      const key = keyOf(gw);
      const routes = routesByGateway.get(key) ?? [];
      const ack = snapshot.acks.get(key);
      const prev = this.memo.get(key);
      let memo: Memo;
      const same = prev && prev.gateway === gw && prev.classInfo === classInfo && sameRoutes(prev.routes, routes, schemaErrors) && prev.deps.stillValid(world);
      if (same && prev.ack === ack) {
        memo = prev;
        for (const [k, table] of memo.maglev) usedMaglev.set(k, table);
      } else if (same && prev.result.statusFor) {
        // Only the acknowledgement changed: only the Gateway's own status can differ.
        memo = { ...prev, ack, result: { ...prev.result, status: prev.result.statusFor(ack) } };
        for (const [k, table] of memo.maglev) usedMaglev.set(k, table);
        reacknowledged.add(key);
      } else {
        const deps = new Deps();
        const result = translateGateway({ gateway: gw, classInfo, routes, world, deps, policies, opts: this.opts, maglev, ack, compiledRoutes: this.compiledRoutes });
        const tables = (result.datapath?.l4 ?? []).map((s): [string, Uint32Array] => [maglevKey(s.backends, this.opts.maglevTableSize), s.maglev]);
        memo = { gateway: gw, classInfo, routes, ack, deps, result, maglev: tables };
      }
      nextMemo.set(key, memo);
      results.push({ key, gateway: gw, result: memo.result });
      statuses.set(statusKey("Gateway", key), { kind: "Gateway", namespace: gw.metadata.namespace, name: gw.metadata.name, status: memo.result.status });
    }
    // Gateways whose result is not the one of the previous tick: only routes they list (before or
    // after) can have a different status.
    const gatewayChanges: GatewayResultChange[] = [];
    for (const [key, m] of nextMemo) {
      const before = this.memo.get(key)?.result;
      if (before !== m.result && !reacknowledged.has(key)) gatewayChanges.push({ key, before, after: m.result });
    }
    for (const [key, m] of this.memo) if (!nextMemo.has(key)) gatewayChanges.push({ key, before: m.result, after: undefined });
    this.memo = nextMemo;
    this.maglevCache = usedMaglev;

    const resultsByKey = new Map(results.map(({ key, result }) => [key, result]));
    this.routeStatuses.update(snapshot, this.routeIndex, resultsByKey, routeChanges, gatewayChanges, statuses, warnings);
    this.policyStatuses(policies, results, statuses);

    const items = <T>(pick: (r: GatewayResult) => readonly T[]) =>
      gatewayChanges.map(({ key, before, after }) => ({ key, before: before ? pick(before) : [], after: after ? pick(after) : [] }));
    return {
      statuses,
      services: results.flatMap(({ result }) => (result.service ? [result.service] : [])),
      dns: this.dnsRecords ? this.dns.update(results.flatMap(({ result }) => (result.dns ? [result.dns] : []))) : [],
      datapath: {
        gateways: results.flatMap(({ result }) => (result.datapath ? [result.datapath] : [])),
        clusters: this.clusters.update(items((r) => r.clusters)),
        certificates: this.certificates.update(items((r) => r.certificates)),
        caBundles: this.caBundles.update(items((r) => r.caBundles)),
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

  /** Gateways in key order (re-sorted only when the collection changes). */
  private sortedGateways(snapshot: Snapshot): Gateway[] {
    const coll = snapshot.objects.Gateway;
    if (this.gatewaysMemo?.coll !== coll) this.gatewaysMemo = { coll, sorted: [...coll.values()].sort(byKey) };
    return this.gatewaysMemo.sorted;
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

/**
 * Whether a Gateway's routes are the same for its translation. A route whose status alone changed
 * (our own status write, echoed back; the store keeps the spec instance then) still counts as the
 * same: a Gateway's translation reads a route's spec, generation, age and schema validity, never
 * its status, and re-translating every route of a Gateway per status write is quadratic.
 */
function sameRoutes(a: readonly RouteObj[], b: readonly RouteObj[], schemaErrors: (o: K8sObject) => string[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = (a[i] as RouteObj).route;
    const y = (b[i] as RouteObj).route;
    if (x === y) continue;
    if (x.spec !== y.spec || x.metadata.name !== y.metadata.name || x.metadata.namespace !== y.metadata.namespace) return false;
    if (x.metadata.generation !== y.metadata.generation || x.metadata.creationTimestamp !== y.metadata.creationTimestamp) return false;
    if (schemaErrors(x).join("\n") !== schemaErrors(y).join("\n")) return false;
  }
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
