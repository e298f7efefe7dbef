// An in-process fake Kubernetes API server for tests: real HTTP, real REST paths and Status
// errors, a global resourceVersion, watches with bounded history (410 Gone), bookmarks,
// merge/JSON/strategic/server-side-apply patches with managedFields, the status subresource,
// finalizers, owner-reference garbage collection, CRDs that become served resources, TokenReview,
// and fault injection. See README.md for what is faithful and what is approximated.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { randomBytes, randomUUID } from "node:crypto";
import { KubeConfig } from "@kubernetes/client-node";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import {
  clone, deepEqual, isObject, jsonPatch, mergePatch, PatchError, strategicMergePatch,
  type Json, type JsonObject,
} from "./json.ts";
import { apiResource, BUILTINS, crdProblems, crdResourceType, rid, type ResourceType } from "./resources.ts";
import { matches, parseFieldSelector, parseLabelSelector, SelectorError, type Requirement } from "./selectors.ts";
import { apply as ssaApply, leaves, nowSeconds, trackedPart, updateManagedFields, type ManagedFieldsEntry } from "./ssa.ts";

export { gatewayApiCrds, sluiceCrds, certManagerCrds } from "./crds.ts";

export interface K8sObjectLike {
  apiVersion: string;
  kind: string;
  metadata: {
    name?: string;
    generateName?: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    generation?: number;
    creationTimestamp?: string;
    deletionTimestamp?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    finalizers?: string[];
    ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string; controller?: boolean; blockOwnerDeletion?: boolean }[];
    managedFields?: unknown[];
    [k: string]: unknown;
  };
  [k: string]: unknown;
}

export interface FakeApiOptions {
  /** Extra kinds/CRDs installed at start (see below); the built-in set is always there. */
  crds?: object[];
  /** Default 1000 (only for watches with allowWatchBookmarks=true). */
  bookmarkIntervalMs?: number;
  /** Watch events kept for resume; default 10000. */
  historyLimit?: number;
  /** Bearer tokens accepted; TokenReview answers from this. */
  tokens?: Record<string, { username: string; groups?: string[] }>;
  /** Default 1.5 MiB -> 413. */
  maxObjectBytes?: number;
}

export interface RequestRecord {
  method: string;
  path: string;
  query: string;
  contentType?: string;
  status: number;
  fieldManager?: string;
  subresource?: string;
  /** The authenticated user, when there was one. */
  user?: string;
}

export interface Fault {
  status: 500 | 429 | 503 | 409;
  count?: number;
  retryAfterSeconds?: number;
  match?: (r: { method: string; path: string }) => boolean;
}

export interface FakeApiServer {
  readonly url: string;
  readonly token: string;
  kubeConfig(): KubeConfig;
  kubeConfigYaml(): string;
  apply(obj: K8sObjectLike): K8sObjectLike;
  get(apiVersion: string, kind: string, namespace: string | undefined, name: string): K8sObjectLike | undefined;
  list(apiVersion: string, kind: string, namespace?: string): K8sObjectLike[];
  remove(apiVersion: string, kind: string, namespace: string | undefined, name: string): void;
  failNext(f: Fault): void;
  /** Abruptly end every open watch stream (the connection is destroyed). */
  dropWatches(): void;
  /** End every open watch stream cleanly, as the server's request timeout does. */
  endWatches(): void;
  compact(): void;
  /** The current global resourceVersion. */
  readonly resourceVersion: string;
  /** Number of open watch streams. */
  readonly openWatches: number;
  readonly requests: RequestRecord[];
  close(): Promise<void>;
}

/** An error answered as a metav1 Status. */
export class ApiError extends Error {
  readonly code: number;
  readonly reason: string;
  readonly details: JsonObject | undefined;
  readonly headers: Record<string, string>;
  constructor(code: number, reason: string, message: string, details?: JsonObject, headers: Record<string, string> = {}) {
    super(message);
    this.code = code;
    this.reason = reason;
    this.details = details;
    this.headers = headers;
  }
  status(): JsonObject {
    return {
      kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message: this.message, reason: this.reason,
      ...(this.details ? { details: this.details } : {}), code: this.code,
    };
  }
}

const qualified = (rt: ResourceType): string => (rt.group ? `${rt.plural}.${rt.group}` : rt.plural);

const notFound = (rt: ResourceType, name: string): ApiError =>
  new ApiError(404, "NotFound", `${qualified(rt)} "${name}" not found`, { name, ...(rt.group ? { group: rt.group } : {}), kind: rt.plural });
const conflict = (rt: ResourceType, name: string, why: string): ApiError =>
  new ApiError(409, "Conflict", `Operation cannot be fulfilled on ${qualified(rt)} "${name}": ${why}`, { name, ...(rt.group ? { group: rt.group } : {}), kind: rt.plural });
const invalid = (rt: ResourceType, name: string, causes: { field: string; message: string }[]): ApiError =>
  new ApiError(422, "Invalid", `${rt.kind}${rt.group ? `.${rt.group}` : ""} "${name}" is invalid: ${causes.map((c) => `${c.field}: ${c.message}`).join(", ")}`, {
    name, ...(rt.group ? { group: rt.group } : {}), kind: rt.kind,
    causes: causes.map((c) => ({ reason: "FieldValueInvalid", message: c.message, field: c.field })),
  });
const badRequest = (message: string): ApiError => new ApiError(400, "BadRequest", message);
const PATH_NOT_FOUND = (): ApiError => new ApiError(404, "NotFound", "the server could not find the requested resource", {});
const expired = (message: string): ApiError => new ApiError(410, "Expired", message);

const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

const meta = (o: JsonObject): JsonObject => (isObject(o.metadata) ? o.metadata : (o.metadata = {}));
const strOf = (v: Json | undefined): string | undefined => (typeof v === "string" ? v : undefined);
const nameOf = (o: JsonObject): string => strOf(meta(o).name) ?? "";
const nsOf = (o: JsonObject): string | undefined => strOf(meta(o).namespace) || undefined;
const keyOf = (ns: string | undefined, name: string): string => `${ns ?? ""}/${name}`;
const gvOf = (group: string, version: string): string => (group ? `${group}/${version}` : version);

function splitApiVersion(apiVersion: string): { group: string; version: string } {
  const i = apiVersion.lastIndexOf("/");
  return i < 0 ? { group: "", version: apiVersion } : { group: apiVersion.slice(0, i), version: apiVersion.slice(i + 1) };
}

interface HistoryEvent {
  rv: number;
  rid: string;
  type: "ADDED" | "MODIFIED" | "DELETED";
  obj: JsonObject;
  /** The stored object before this event (undefined for ADDED). */
  prev: JsonObject | undefined;
}

interface Watcher {
  rid: string;
  version: string;
  namespace: string | undefined;
  labels: Requirement[];
  fields: Requirement[];
  res: ServerResponse;
  timers: NodeJS.Timeout[];
  closed: boolean;
}

interface WriteContext {
  manager: string;
  apiVersion: string;
  subresource?: string;
  dryRun?: boolean;
  /** Direct (test setup) writes: status is kept and the namespace is created when missing. */
  direct?: boolean;
}

interface Route {
  rt: ResourceType;
  version: string;
  namespace: string | undefined;
  name: string | undefined;
  subresource: string | undefined;
}

const ADMIN_USER = { username: "fakeapi-admin", groups: ["system:masters"] };

class FakeApi implements FakeApiServer {
  url = "";
  readonly token = randomBytes(16).toString("hex");
  readonly requests: RequestRecord[] = [];
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly stores = new Map<string, Map<string, JsonObject>>();
  private readonly uids = new Map<string, { rid: string; key: string }>();
  private history: HistoryEvent[] = [];
  private compactedRV = 0;
  private rv = 0;
  private readonly watchers = new Set<Watcher>();
  private readonly faults: (Fault & { remaining: number })[] = [];
  private readonly bookmarkIntervalMs: number;
  private readonly historyLimit: number;
  private readonly maxObjectBytes: number;
  private readonly tokens: Record<string, { username: string; groups?: string[] }>;
  private sweepTimer: NodeJS.Timeout | undefined;
  private nextNodePort = 30000;
  private nextClusterIP = 10;

  constructor(opts: FakeApiOptions) {
    this.bookmarkIntervalMs = opts.bookmarkIntervalMs ?? 1000;
    this.historyLimit = Math.max(1, opts.historyLimit ?? 10000);
    this.maxObjectBytes = opts.maxObjectBytes ?? 1.5 * 1024 * 1024;
    this.tokens = { ...(opts.tokens ?? {}), [this.token]: ADMIN_USER };
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        const e = err instanceof ApiError ? err : new ApiError(500, "InternalError", `Internal error occurred: ${String((err as Error)?.message ?? err)}`);
        if (!res.headersSent) this.sendError(req, res, e);
        else res.destroy();
      });
    });
    this.server.on("connection", (s) => {
      this.sockets.add(s);
      s.on("close", () => this.sockets.delete(s));
    });
    for (const ns of ["default", "kube-system", "kube-public", "kube-node-lease"]) {
      this.apply({ apiVersion: "v1", kind: "Namespace", metadata: { name: ns } });
    }
    for (const crd of opts.crds ?? []) this.apply(crd as K8sObjectLike);
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(0, "127.0.0.1", () => resolve());
    });
    const addr = this.server.address() as AddressInfo;
    this.url = `http://127.0.0.1:${addr.port}`;
  }

  get resourceVersion(): string {
    return String(this.rv);
  }

  get openWatches(): number {
    return this.watchers.size;
  }

  // ---- resource types ----

  private resourceTypes(): ResourceType[] {
    const out = [...BUILTINS];
    for (const crd of this.stores.get("apiextensions.k8s.io/customresourcedefinitions")?.values() ?? []) {
      if (crdProblems(crd).length === 0) out.push(crdResourceType(crd));
    }
    return out;
  }

  private findType(group: string, version: string, plural: string): ResourceType | undefined {
    return this.resourceTypes().find((rt) => rt.group === group && rt.plural === plural && rt.versions.includes(version));
  }

  private typeOfKind(apiVersion: string, kind: string): { rt: ResourceType; version: string } {
    const { group, version } = splitApiVersion(apiVersion);
    const rt = this.resourceTypes().find((r) => r.group === group && r.kind === kind && r.versions.includes(version));
    if (!rt) throw new Error(`fakeapi: no resource of kind ${kind} is served in ${apiVersion}`);
    return { rt, version };
  }

  private store(rt: ResourceType): Map<string, JsonObject> {
    let s = this.stores.get(rid(rt));
    if (!s) this.stores.set(rid(rt), (s = new Map()));
    return s;
  }

  /** A stored object as served at `version`: CRD versions share one stored object (conversion "None"). */
  private view(rt: ResourceType, obj: JsonObject, version: string): JsonObject {
    const out = clone(obj);
    out.apiVersion = gvOf(rt.group, version);
    out.kind = rt.kind;
    return out;
  }

  // ---- watch history ----

  private emit(rt: ResourceType, type: HistoryEvent["type"], obj: JsonObject, prev: JsonObject | undefined): void {
    const ev: HistoryEvent = { rv: this.rv, rid: rid(rt), type, obj: clone(obj), prev: prev ? clone(prev) : undefined };
    this.history.push(ev);
    if (this.history.length > this.historyLimit) {
      const dropped = this.history.splice(0, this.history.length - this.historyLimit);
      this.compactedRV = Math.max(this.compactedRV, dropped[dropped.length - 1]?.rv ?? 0);
    }
    for (const w of this.watchers) if (w.rid === ev.rid) this.deliver(w, rt, ev);
  }

  private selected(rt: ResourceType, w: { namespace: string | undefined; labels: Requirement[]; fields: Requirement[] }, obj: JsonObject): boolean {
    const m = meta(obj);
    if (w.namespace !== undefined && m.namespace !== w.namespace) return false;
    const labels = isObject(m.labels) ? m.labels : {};
    if (!matches(w.labels, (k) => strOf(labels[k]))) return false;
    return matches(w.fields, (f) => fieldValue(obj, f));
  }

  private deliver(w: Watcher, rt: ResourceType, ev: HistoryEvent): void {
    const now = this.selected(rt, w, ev.obj);
    const before = ev.prev !== undefined && ev.type === "MODIFIED" && this.selected(rt, w, ev.prev);
    let type: string | undefined;
    if (ev.type === "MODIFIED") type = now && before ? "MODIFIED" : now ? "ADDED" : before ? "DELETED" : undefined;
    else type = now ? ev.type : undefined;
    if (type) this.write(w, { type, object: this.view(rt, ev.obj, w.version) });
  }

  private write(w: Watcher, event: JsonObject): void {
    if (!w.closed) w.res.write(JSON.stringify(event) + "\n");
  }

  /** The objects of a resource as they were at `rv` (undefined when history no longer reaches back). */
  private stateAt(rt: ResourceType, rv: number): Map<string, JsonObject> | undefined {
    if (rv < this.compactedRV) return undefined;
    const state = new Map(this.store(rt));
    for (let i = this.history.length - 1; i >= 0; i--) {
      const ev = this.history[i] as HistoryEvent;
      if (ev.rv <= rv) break;
      if (ev.rid !== rid(rt)) continue;
      const key = keyOf(nsOf(ev.obj), nameOf(ev.obj));
      if (ev.prev) state.set(key, ev.prev);
      else state.delete(key);
    }
    return state;
  }

  // ---- writes ----

  private bump(obj: JsonObject): void {
    this.rv++;
    meta(obj).resourceVersion = String(this.rv);
  }

  private checkSize(obj: JsonObject): void {
    const size = Buffer.byteLength(JSON.stringify(obj));
    if (size > this.maxObjectBytes) {
      throw new ApiError(413, "RequestEntityTooLarge", `Request entity too large: limit is ${this.maxObjectBytes}`);
    }
  }

  private namespaceCheck(rt: ResourceType, obj: JsonObject, ctx: WriteContext): void {
    if (!rt.namespaced) {
      delete meta(obj).namespace;
      return;
    }
    const ns = nsOf(obj);
    if (!ns) throw badRequest("the namespace of the object must be set");
    const nsType = BUILTINS[0] as ResourceType;
    const nsObj = this.store(nsType).get(keyOf(undefined, ns));
    if (!nsObj) {
      if (ctx.direct) {
        this.create(nsType, { apiVersion: "v1", kind: "Namespace", metadata: { name: ns } }, ctx);
        return;
      }
      throw notFound(nsType, ns);
    }
    if (meta(nsObj).deletionTimestamp) {
      throw new ApiError(403, "Forbidden", `${rt.kind.toLowerCase()} "${nameOf(obj)}" is forbidden: unable to create new content in namespace ${ns} because it is being terminated`, {
        name: nameOf(obj), kind: rt.plural, causes: [{ reason: "NamespaceTerminating", message: `namespace ${ns} is being terminated`, field: "metadata.namespace" }],
      });
    }
  }

  private validateMeta(rt: ResourceType, obj: JsonObject): void {
    const name = nameOf(obj);
    if (!name) throw invalid(rt, "", [{ field: "metadata.name", message: "Required value: name or generateName is required" }]);
    const re = rt.kind === "Namespace" || rt.kind === "Service" ? DNS1123_LABEL : DNS1123_SUBDOMAIN;
    if (!re.test(name) || name.length > (re === DNS1123_LABEL ? 63 : 253)) {
      throw invalid(rt, name, [{ field: "metadata.name", message: `Invalid value: "${name}": a lowercase RFC 1123 ${re === DNS1123_LABEL ? "label" : "subdomain"} must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character` }]);
    }
    const m = meta(obj);
    for (const field of ["labels", "annotations"]) {
      const v = m[field];
      if (v === undefined || v === null) continue;
      if (!isObject(v) || Object.values(v).some((x) => typeof x !== "string")) {
        throw invalid(rt, name, [{ field: `metadata.${field}`, message: "Invalid value: must be a map of strings" }]);
      }
    }
    if (m.finalizers !== undefined && m.finalizers !== null && (!Array.isArray(m.finalizers) || m.finalizers.some((f) => typeof f !== "string"))) {
      throw invalid(rt, name, [{ field: "metadata.finalizers", message: "Invalid value: must be a list of strings" }]);
    }
    if (m.ownerReferences !== undefined && m.ownerReferences !== null) {
      const refs = m.ownerReferences;
      if (!Array.isArray(refs) || refs.some((r) => !isObject(r) || !r.uid || !r.name || !r.kind || !r.apiVersion)) {
        throw invalid(rt, name, [{ field: "metadata.ownerReferences", message: "Invalid value: each owner reference needs apiVersion, kind, name and uid" }]);
      }
    }
    if (rt.kind === "CustomResourceDefinition") {
      const problems = crdProblems(obj);
      if (problems.length > 0) throw invalid(rt, name, problems.map((p) => ({ field: p.split(":")[0] ?? "", message: p.split(": ").slice(1).join(": ") })));
    }
  }

  /** Kind-specific defaulting, as the real registries do it. */
  private defaults(rt: ResourceType, obj: JsonObject, old: JsonObject | undefined): void {
    const m = meta(obj);
    if (rt.kind === "Namespace" && rt.group === "") {
      m.labels = { ...(isObject(m.labels) ? m.labels : {}), "kubernetes.io/metadata.name": nameOf(obj) };
      const spec = isObject(obj.spec) ? obj.spec : (obj.spec = {});
      if (!old && !Array.isArray(spec.finalizers)) spec.finalizers = ["kubernetes"];
      const status = isObject(obj.status) ? obj.status : (obj.status = {});
      if (!status.phase) status.phase = "Active";
    } else if (rt.kind === "Service" && rt.group === "") {
      this.serviceDefaults(obj, old);
    } else if (rt.kind === "Secret" && rt.group === "") {
      if (!obj.type) obj.type = "Opaque";
      if (isObject(obj.stringData)) {
        const data = isObject(obj.data) ? obj.data : (obj.data = {});
        for (const [k, v] of Object.entries(obj.stringData)) data[k] = Buffer.from(String(v)).toString("base64");
        delete obj.stringData;
      }
    } else if (rt.kind === "CustomResourceDefinition") {
      const spec = obj.spec as JsonObject;
      const names = spec.names as JsonObject;
      if (!names.singular) names.singular = String(names.kind).toLowerCase();
      if (!names.listKind) names.listKind = `${String(names.kind)}List`;
      // The cleanup finalizer and the Established condition are the CRD controllers' doing.
      const fins = Array.isArray(m.finalizers) ? m.finalizers : (m.finalizers = []);
      if (!old && !fins.includes("customresourcecleanup.apiextensions.k8s.io")) fins.push("customresourcecleanup.apiextensions.k8s.io");
      const storage = (spec.versions as Json[]).filter(isObject).find((v) => v.storage === true);
      const now = nowSeconds();
      obj.status = {
        acceptedNames: clone(names),
        conditions: [
          { type: "NamesAccepted", status: "True", lastTransitionTime: now, reason: "NoConflicts", message: "no conflicts found" },
          { type: "Established", status: "True", lastTransitionTime: now, reason: "InitialNamesAccepted", message: "the initial names have been accepted" },
        ],
        storedVersions: [strOf(storage?.name) ?? ""],
      };
      if (old && isObject(old.status)) obj.status = { ...obj.status, conditions: clone(old.status.conditions ?? []) };
    }
  }

  private serviceDefaults(obj: JsonObject, old: JsonObject | undefined): void {
    const spec = isObject(obj.spec) ? obj.spec : (obj.spec = {});
    const oldSpec = old && isObject(old.spec) ? old.spec : {};
    if (!isObject(obj.status)) obj.status = { loadBalancer: {} };
    if (!spec.type) spec.type = "ClusterIP";
    if (!spec.sessionAffinity) spec.sessionAffinity = "None";
    const ports = Array.isArray(spec.ports) ? spec.ports.filter(isObject) : [];
    const oldPorts = Array.isArray(oldSpec.ports) ? oldSpec.ports.filter(isObject) : [];
    for (const p of ports) {
      if (!p.protocol) p.protocol = "TCP";
      if (p.targetPort === undefined) p.targetPort = p.port ?? null;
    }
    if (spec.type === "ExternalName") return;
    // Allocated values survive an update that omits them (the registry's patchAllocatedValues).
    if (!spec.clusterIP && oldSpec.clusterIP) {
      spec.clusterIP = oldSpec.clusterIP;
      spec.clusterIPs = clone(oldSpec.clusterIPs ?? [oldSpec.clusterIP]);
    }
    if (!spec.clusterIP) {
      const n = this.nextClusterIP++;
      spec.clusterIP = `10.96.${Math.floor(n / 250)}.${(n % 250) + 1}`;
    }
    if (!Array.isArray(spec.clusterIPs)) spec.clusterIPs = spec.clusterIP === "None" ? ["None"] : [spec.clusterIP];
    if (!spec.ipFamilies) spec.ipFamilies = ["IPv4"];
    if (!spec.ipFamilyPolicy) spec.ipFamilyPolicy = "SingleStack";
    if (!spec.internalTrafficPolicy) spec.internalTrafficPolicy = "Cluster";
    if (spec.type === "LoadBalancer" || spec.type === "NodePort") {
      if (!spec.externalTrafficPolicy) spec.externalTrafficPolicy = "Cluster";
      if (spec.type === "LoadBalancer" && spec.allocateLoadBalancerNodePorts === undefined) spec.allocateLoadBalancerNodePorts = true;
      if (spec.type === "NodePort" || spec.allocateLoadBalancerNodePorts !== false) {
        for (const p of ports) {
          if (p.nodePort) continue;
          const prev = oldPorts.find((o) => o.port === p.port && (o.protocol ?? "TCP") === p.protocol);
          p.nodePort = prev?.nodePort ?? this.nextNodePort++;
        }
      }
    }
  }

  private statusReset(rt: ResourceType, obj: JsonObject, old: JsonObject | undefined): void {
    if (!rt.status) return;
    if (old && old.status !== undefined) obj.status = clone(old.status);
    else delete obj.status;
  }

  /** Generation follows changes outside metadata (and outside status when that is a subresource). */
  private nextGeneration(rt: ResourceType, old: JsonObject, next: JsonObject): number | undefined {
    if (!rt.generation) return undefined;
    const strip = (o: JsonObject): JsonObject => {
      const c = { ...o };
      delete c.metadata;
      delete c.apiVersion;
      delete c.kind;
      if (rt.status) delete c.status;
      return c;
    };
    const gen = typeof meta(old).generation === "number" ? (meta(old).generation as number) : 1;
    return deepEqual(strip(old), strip(next)) ? gen : gen + 1;
  }

  create(rt: ResourceType, input: JsonObject, ctx: WriteContext, managed?: ManagedFieldsEntry[]): JsonObject {
    const obj = clone(input);
    const m = meta(obj);
    if (!m.name && typeof m.generateName === "string" && m.generateName) {
      m.name = `${m.generateName}${randomBytes(3).toString("hex").slice(0, 5)}`;
    }
    this.validateMeta(rt, obj);
    this.namespaceCheck(rt, obj, ctx);
    const store = this.store(rt);
    const key = keyOf(nsOf(obj), nameOf(obj));
    if (store.has(key)) {
      throw new ApiError(409, "AlreadyExists", `${qualified(rt)} "${nameOf(obj)}" already exists`, { name: nameOf(obj), ...(rt.group ? { group: rt.group } : {}), kind: rt.plural });
    }
    if (m.resourceVersion && !ctx.direct) {
      throw new ApiError(500, "InternalError", "Internal error occurred: resourceVersion should not be set on objects to be created");
    }
    if (!ctx.direct) this.statusReset(rt, obj, undefined);
    for (const f of ["uid", "resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"]) delete m[f];
    m.uid = randomUUID();
    m.creationTimestamp = nowSeconds();
    if (rt.generation) m.generation = 1;
    else delete m.generation;
    this.defaults(rt, obj, undefined);
    const owned = trackedPart(obj);
    if (rt.status) delete owned.status;
    const createManaged = leaves(owned, rt.listKeys);
    // Values the Service registry allocates (not defaults) belong to no manager.
    if (rt.kind === "Service" && rt.group === "") {
      for (const k of [...createManaged.keys()]) if (/"f:(clusterIPs?|ipFamilies|ipFamilyPolicy|nodePort)"/.test(k)) createManaged.delete(k);
    }
    m.managedFields = (managed ?? updateManagedFields([], new Map(), createManaged, ctx.manager, ctx.apiVersion, undefined)) as unknown as Json[];
    if ((m.managedFields as Json[]).length === 0) delete m.managedFields;
    this.checkSize(obj);
    if (ctx.dryRun) return obj;
    this.bump(obj);
    store.set(key, obj);
    this.uids.set(strOf(m.uid) ?? "", { rid: rid(rt), key });
    this.emit(rt, "ADDED", obj, undefined);
    this.scheduleSweep();
    return obj;
  }

  /**
   * Stores `next` in place of `old`. `managed` is set by apply; other writes compute ownership from
   * the change. `checkRV`: the body's resourceVersion must match (PUT and patches carrying one).
   */
  update(rt: ResourceType, old: JsonObject, input: JsonObject, ctx: WriteContext, managed?: ManagedFieldsEntry[]): JsonObject {
    let next = clone(input);
    const nm = meta(next);
    const om = meta(old);
    const name = nameOf(old);
    if (nm.name !== undefined && nm.name !== name) throw badRequest(`the name of the object (${String(nm.name)}) does not match the name on the URL (${name})`);
    if (nm.resourceVersion !== undefined && nm.resourceVersion !== "" && nm.resourceVersion !== om.resourceVersion) {
      throw conflict(rt, name, "the object has been modified; please apply your changes to the latest version and try again");
    }
    if (nm.uid !== undefined && nm.uid !== "" && nm.uid !== om.uid) {
      throw conflict(rt, name, `Precondition failed: UID in precondition: ${String(nm.uid)}, UID in object meta: ${String(om.uid)}`);
    }
    if (ctx.subresource === "status") {
      // /status changes only .status.
      const status = next.status;
      next = clone(old);
      if (status === undefined) delete next.status;
      else next.status = status;
    } else if (ctx.subresource === "finalize") {
      // A Namespace's /finalize changes only spec.finalizers.
      const fins = isObject(next.spec) && Array.isArray(next.spec.finalizers) ? next.spec.finalizers : [];
      next = clone(old);
      next.spec = { ...(isObject(next.spec) ? next.spec : {}), finalizers: fins };
    } else if (!ctx.direct) {
      this.statusReset(rt, next, old);
    }
    const m = meta(next);
    m.name = name;
    if (rt.namespaced && om.namespace !== undefined) m.namespace = om.namespace;
    else delete m.namespace;
    for (const f of ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"]) {
      if (om[f] !== undefined) m[f] = om[f];
      else delete m[f];
    }
    m.resourceVersion = om.resourceVersion ?? "";
    this.validateMeta(rt, next);
    if (om.deletionTimestamp) {
      const before = new Set(Array.isArray(om.finalizers) ? om.finalizers : []);
      const added = (Array.isArray(m.finalizers) ? m.finalizers : []).filter((f) => !before.has(f));
      if (added.length > 0) {
        throw invalid(rt, name, [{ field: "metadata.finalizers", message: `Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers ${JSON.stringify(added)}` }]);
      }
    }
    this.defaults(rt, next, old);
    const gen = this.nextGeneration(rt, old, next);
    if (gen !== undefined) m.generation = gen;
    if (managed) m.managedFields = managed as unknown as Json[];
    else {
      const oldManaged = (Array.isArray(om.managedFields) ? om.managedFields : []) as unknown as ManagedFieldsEntry[];
      const part = (o: JsonObject): JsonObject => {
        const t = trackedPart(o);
        if (rt.status && ctx.subresource !== "status") delete t.status;
        if (ctx.subresource === "status") return isObject(o.status) ? { status: o.status } : {};
        return t;
      };
      m.managedFields = updateManagedFields(oldManaged, leaves(part(old), rt.listKeys), leaves(part(next), rt.listKeys), ctx.manager, ctx.apiVersion, ctx.subresource) as unknown as Json[];
    }
    if ((m.managedFields as Json[]).length === 0) delete m.managedFields;
    // A write that changes nothing (managedFields timestamps aside) is not stored: no new resourceVersion, no event.
    const withoutTimes = (o: JsonObject): JsonObject => {
      const c = clone(o);
      const mf = meta(c).managedFields;
      if (Array.isArray(mf)) for (const e of mf) if (isObject(e)) delete e.time;
      return c;
    };
    if (deepEqual(withoutTimes(old), withoutTimes(next))) return old;
    this.checkSize(next);
    if (ctx.dryRun) return next;
    this.bump(next);
    const key = keyOf(nsOf(next), name);
    this.store(rt).set(key, next);
    this.emit(rt, "MODIFIED", next, old);
    if (m.deletionTimestamp && !pendingFinalizers(rt, next)) this.erase(rt, next);
    this.scheduleSweep();
    return next;
  }

  /** Removes an object for good: DELETED event carrying the deletion's resourceVersion. */
  private erase(rt: ResourceType, obj: JsonObject): JsonObject {
    const key = keyOf(nsOf(obj), nameOf(obj));
    const gone = clone(obj);
    this.bump(gone);
    this.store(rt).delete(key);
    this.uids.delete(strOf(meta(obj).uid) ?? "");
    this.emit(rt, "DELETED", gone, obj);
    if (rt.kind === "CustomResourceDefinition") this.crdGone(obj);
    this.scheduleSweep();
    return gone;
  }

  /** Delete: objects with finalizers are only marked (deletionTimestamp) until the list empties. */
  delete(rt: ResourceType, obj: JsonObject, opts: JsonObject, dryRun = false): JsonObject {
    const m = meta(obj);
    const pre = isObject(opts.preconditions) ? opts.preconditions : {};
    if (pre.uid && pre.uid !== m.uid) {
      throw conflict(rt, nameOf(obj), `Precondition failed: UID in precondition: ${String(pre.uid)}, UID in object meta: ${String(m.uid)}`);
    }
    if (pre.resourceVersion && pre.resourceVersion !== m.resourceVersion) {
      throw conflict(rt, nameOf(obj), `Precondition failed: ResourceVersion in precondition: ${String(pre.resourceVersion)}, ResourceVersion in object meta: ${String(m.resourceVersion)}`);
    }
    if (dryRun) return obj;
    const nsFinalizers = rt.kind === "Namespace" && rt.group === "";
    if (!pendingFinalizers(rt, obj)) return this.erase(rt, obj);
    if (m.deletionTimestamp) return obj;
    const next = clone(obj);
    const nm = meta(next);
    nm.deletionTimestamp = nowSeconds();
    nm.deletionGracePeriodSeconds = 0;
    if (typeof nm.generation === "number") nm.generation += 1;
    if (nsFinalizers) next.status = { ...(isObject(next.status) ? next.status : {}), phase: "Terminating" };
    this.bump(next);
    this.store(rt).set(keyOf(nsOf(next), nameOf(next)), next);
    this.emit(rt, "MODIFIED", next, obj);
    this.scheduleSweep();
    return next;
  }

  /** A CRD went away: its resource is no longer served, so its watches end. */
  private crdGone(crd: JsonObject): void {
    const spec = isObject(crd.spec) ? crd.spec : {};
    const names = isObject(spec.names) ? spec.names : {};
    const id = `${String(spec.group)}/${String(names.plural)}`;
    this.stores.delete(id);
    for (const w of [...this.watchers]) if (w.rid === id) this.closeWatch(w, false);
  }

  // ---- controllers: garbage collection, namespace and CRD cleanup ----

  private scheduleSweep(): void {
    if (this.sweepTimer) return;
    // The real controllers act asynchronously; a few milliseconds later is close enough.
    this.sweepTimer = setTimeout(() => {
      this.sweepTimer = undefined;
      this.sweep();
    }, 5);
    this.sweepTimer.unref();
  }

  private sweep(): void {
    const types = this.resourceTypes();
    const byRid = new Map(types.map((t) => [rid(t), t]));
    for (const [id, store] of this.stores) {
      const rt = byRid.get(id);
      if (!rt) continue;
      for (const obj of [...store.values()]) {
        const refs = meta(obj).ownerReferences;
        if (!Array.isArray(refs) || refs.length === 0 || meta(obj).deletionTimestamp) continue;
        const alive = refs.some((r) => isObject(r) && this.uids.has(String(r.uid)));
        if (!alive) this.delete(rt, obj, {});
      }
    }
    const nsType = BUILTINS[0] as ResourceType;
    for (const ns of [...this.store(nsType).values()]) {
      if (!meta(ns).deletionTimestamp) continue;
      let remaining = 0;
      for (const [id, store] of this.stores) {
        const rt = byRid.get(id);
        if (!rt?.namespaced) continue;
        for (const obj of [...store.values()]) {
          if (meta(obj).namespace !== nameOf(ns)) continue;
          remaining++;
          if (!meta(obj).deletionTimestamp) this.delete(rt, obj, {});
        }
      }
      if (remaining === 0) {
        // The namespace controller's /finalize: drop spec.finalizers, then the object goes.
        const next = clone(ns);
        (next.spec as JsonObject).finalizers = [];
        this.update(nsType, ns, next, { manager: "namespace-controller", apiVersion: "v1", direct: true });
      }
    }
    const crdType = BUILTINS.find((b) => b.kind === "CustomResourceDefinition") as ResourceType;
    for (const crd of [...this.store(crdType).values()]) {
      if (!meta(crd).deletionTimestamp) continue;
      const rt = types.find((t) => t.crd === nameOf(crd));
      const store = rt ? this.stores.get(rid(rt)) : undefined;
      if (rt && store && store.size > 0) {
        for (const obj of [...store.values()]) if (!meta(obj).deletionTimestamp) this.delete(rt, obj, {});
        continue;
      }
      const next = clone(crd);
      const nm = meta(next);
      nm.finalizers = (Array.isArray(nm.finalizers) ? nm.finalizers : []).filter((f) => f !== "customresourcecleanup.apiextensions.k8s.io");
      this.update(crdType, crd, next, { manager: "apiextensions-controller", apiVersion: "apiextensions.k8s.io/v1", direct: true });
    }
  }

  // ---- direct access ----

  apply(input: K8sObjectLike): K8sObjectLike {
    const obj = clone(input) as unknown as JsonObject;
    if (!isObject(obj) || typeof obj.apiVersion !== "string" || typeof obj.kind !== "string" || !isObject(obj.metadata)) {
      throw new Error("fakeapi.apply: the object needs apiVersion, kind and metadata");
    }
    const { rt, version } = this.typeOfKind(obj.apiVersion, obj.kind);
    if (rt.kind === "TokenReview") throw new Error("fakeapi.apply: TokenReviews are not stored");
    const ctx: WriteContext = { manager: "fakeapi-test", apiVersion: obj.apiVersion, direct: true };
    if (!rt.namespaced) delete meta(obj).namespace;
    else if (!nsOf(obj)) meta(obj).namespace = "default";
    const old = this.store(rt).get(keyOf(nsOf(obj), nameOf(obj)));
    try {
      if (!old) return this.view(rt, this.create(rt, obj, ctx), version) as unknown as K8sObjectLike;
      delete meta(obj).resourceVersion;
      return this.view(rt, this.update(rt, old, obj, ctx), version) as unknown as K8sObjectLike;
    } catch (err) {
      if (err instanceof ApiError) throw new Error(`fakeapi.apply: ${err.message}`, { cause: err });
      throw err;
    }
  }

  get(apiVersion: string, kind: string, namespace: string | undefined, name: string): K8sObjectLike | undefined {
    const { rt, version } = this.typeOfKind(apiVersion, kind);
    const obj = this.store(rt).get(keyOf(rt.namespaced ? namespace : undefined, name));
    return obj ? (this.view(rt, obj, version) as unknown as K8sObjectLike) : undefined;
  }

  list(apiVersion: string, kind: string, namespace?: string): K8sObjectLike[] {
    const { rt, version } = this.typeOfKind(apiVersion, kind);
    return [...this.store(rt).entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([, o]) => o)
      .filter((o) => namespace === undefined || nsOf(o) === namespace)
      .map((o) => this.view(rt, o, version) as unknown as K8sObjectLike);
  }

  remove(apiVersion: string, kind: string, namespace: string | undefined, name: string): void {
    const { rt } = this.typeOfKind(apiVersion, kind);
    const obj = this.store(rt).get(keyOf(rt.namespaced ? namespace : undefined, name));
    if (obj) this.delete(rt, obj, {});
  }

  failNext(f: Fault): void {
    this.faults.push({ ...f, remaining: f.count ?? 1 });
  }

  dropWatches(): void {
    for (const w of [...this.watchers]) this.closeWatch(w, true);
  }

  endWatches(): void {
    for (const w of [...this.watchers]) this.closeWatch(w, false);
  }

  compact(): void {
    this.history = [];
    this.compactedRV = this.rv;
  }

  kubeConfig(): KubeConfig {
    const kc = new KubeConfig();
    kc.loadFromString(this.kubeConfigYaml());
    return kc;
  }

  kubeConfigYaml(): string {
    return stringifyYaml({
      apiVersion: "v1", kind: "Config",
      // client-node 2.x refuses plain http unless TLS verification is off (there is no TLS to verify).
      clusters: [{ name: "fakeapi", cluster: { server: this.url, "insecure-skip-tls-verify": true } }],
      users: [{ name: "fakeapi-admin", user: { token: this.token } }],
      contexts: [{ name: "fakeapi", context: { cluster: "fakeapi", user: "fakeapi-admin", namespace: "default" } }],
      "current-context": "fakeapi",
    });
  }

  async close(): Promise<void> {
    if (this.sweepTimer) clearTimeout(this.sweepTimer);
    this.sweepTimer = undefined;
    this.dropWatches();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  // ---- HTTP ----

  private record(req: IncomingMessage, status: number, route?: Route, user?: string): void {
    const u = new URL(req.url ?? "/", "http://x");
    const fm = u.searchParams.get("fieldManager");
    const ct = req.headers["content-type"];
    this.requests.push({
      method: req.method ?? "GET", path: u.pathname, query: u.search.replace(/^\?/, ""), status,
      ...(ct ? { contentType: ct } : {}), ...(fm ? { fieldManager: fm } : {}),
      ...(route?.subresource ? { subresource: route.subresource } : {}), ...(user ? { user } : {}),
    });
  }

  private send(req: IncomingMessage, res: ServerResponse, status: number, body: Json, route?: Route, user?: string, headers: Record<string, string> = {}): void {
    this.record(req, status, route, user);
    const text = JSON.stringify(body);
    res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text), "Cache-Control": "no-cache, private", ...headers });
    res.end(text);
  }

  private sendError(req: IncomingMessage, res: ServerResponse, e: ApiError, route?: Route, user?: string): void {
    this.send(req, res, e.code, e.status(), route, user, e.headers);
  }

  private async readBody(req: IncomingMessage): Promise<string> {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    for await (const chunk of req) {
      size += (chunk as Buffer).length;
      if (size > this.maxObjectBytes) tooLarge = true;
      else chunks.push(chunk as Buffer);
    }
    if (tooLarge) throw new ApiError(413, "RequestEntityTooLarge", `Request entity too large: limit is ${this.maxObjectBytes}`);
    return Buffer.concat(chunks).toString("utf8");
  }

  private authenticate(req: IncomingMessage): { username: string; groups?: string[] } | undefined {
    const h = req.headers.authorization ?? "";
    const m = /^Bearer\s+(\S+)$/i.exec(h);
    return m ? this.tokens[m[1] ?? ""] : undefined;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const u = new URL(req.url ?? "/", "http://x");
    const method = req.method ?? "GET";
    const user = this.authenticate(req);
    if (!user) {
      req.resume();
      this.sendError(req, res, new ApiError(401, "Unauthorized", "Unauthorized"));
      return;
    }
    const fault = this.faults.find((f) => f.remaining > 0 && (!f.match || f.match({ method, path: u.pathname })));
    if (fault) {
      fault.remaining--;
      if (fault.remaining <= 0) this.faults.splice(this.faults.indexOf(fault), 1);
      req.resume();
      const retry = fault.retryAfterSeconds ?? (fault.status === 429 ? 1 : undefined);
      const headers: Record<string, string> = retry !== undefined ? { "Retry-After": String(retry) } : {};
      const e =
        fault.status === 429 ? new ApiError(429, "TooManyRequests", "the server has received too many requests and has asked us to try again later", retry !== undefined ? { retryAfterSeconds: retry } : {}, headers)
        : fault.status === 503 ? new ApiError(503, "ServiceUnavailable", "the server is currently unable to handle the request", retry !== undefined ? { retryAfterSeconds: retry } : undefined, headers)
        : fault.status === 409 ? new ApiError(409, "Conflict", "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again (injected fault)")
        : new ApiError(500, "InternalError", "Internal error occurred: injected fault", undefined, headers);
      this.sendError(req, res, e, undefined, user.username);
      return;
    }
    let route: Route | undefined;
    try {
      if (method === "GET" && this.discovery(req, res, u.pathname, user.username)) return;
      route = this.route(u.pathname);
      await this.serve(req, res, u, route, user);
    } catch (err) {
      const e = err instanceof ApiError ? err
        : err instanceof PatchError ? new ApiError(err.status, err.status === 400 ? "BadRequest" : "Invalid", err.message)
        : err instanceof SelectorError ? badRequest(err.message)
        : undefined;
      if (!e) throw err;
      if (!res.headersSent) this.sendError(req, res, e, route, user.username);
    }
  }

  private discovery(req: IncomingMessage, res: ServerResponse, path: string, user: string): boolean {
    const p = path.replace(/\/+$/, "") || "/";
    const types = this.resourceTypes();
    const groups = new Map<string, Set<string>>();
    for (const t of types) {
      const g = groups.get(t.group) ?? new Set<string>();
      for (const v of t.versions) g.add(v);
      groups.set(t.group, g);
    }
    const groupJson = (name: string): JsonObject => {
      const versions = [...(groups.get(name) ?? [])].sort((a, b) => {
        const ta = types.find((t) => t.group === name && t.versions.includes(a));
        const tb = types.find((t) => t.group === name && t.versions.includes(b));
        return (ta?.versions.indexOf(a) ?? 0) - (tb?.versions.indexOf(b) ?? 0) || a.localeCompare(b);
      });
      const vs = versions.map((v) => ({ groupVersion: `${name}/${v}`, version: v }));
      return { name, versions: vs, preferredVersion: vs[0] ?? {} };
    };
    const resourceList = (group: string, version: string): JsonObject => ({
      kind: "APIResourceList", apiVersion: "v1", groupVersion: gvOf(group, version),
      resources: types.filter((t) => t.group === group && t.versions.includes(version)).flatMap((t) => apiResource(t, version)),
    });
    let body: JsonObject | undefined;
    if (p === "/api") body = { kind: "APIVersions", versions: ["v1"], serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress: this.url.replace("http://", "") }] };
    else if (p === "/api/v1") body = resourceList("", "v1");
    else if (p === "/apis") body = { kind: "APIGroupList", apiVersion: "v1", groups: [...groups.keys()].filter((g) => g !== "").sort().map(groupJson) };
    else if (p === "/version") body = { major: "1", minor: "33", gitVersion: "v1.33.0-fakeapi", platform: "linux/amd64" };
    else if (p === "/healthz" || p === "/readyz" || p === "/livez") {
      this.record(req, 200, undefined, user);
      res.writeHead(200, { "Content-Type": "text/plain" }).end("ok");
      return true;
    } else {
      const m = /^\/apis\/([^/]+)(?:\/([^/]+))?$/.exec(p);
      if (m) {
        const group = m[1] ?? "";
        if (!groups.has(group)) throw PATH_NOT_FOUND();
        if (m[2] === undefined) body = { kind: "APIGroup", apiVersion: "v1", ...groupJson(group) };
        else if (groups.get(group)?.has(m[2])) body = resourceList(group, m[2]);
        else throw PATH_NOT_FOUND();
      }
    }
    if (!body) return false;
    this.send(req, res, 200, body, undefined, user);
    return true;
  }

  private route(path: string): Route {
    const segs = path.split("/").filter((s) => s !== "").map(decodeURIComponent);
    let group: string;
    let version: string;
    let rest: string[];
    if (segs[0] === "api" && segs.length >= 2) {
      group = "";
      version = segs[1] ?? "";
      rest = segs.slice(2);
    } else if (segs[0] === "apis" && segs.length >= 3) {
      group = segs[1] ?? "";
      version = segs[2] ?? "";
      rest = segs.slice(3);
    } else throw PATH_NOT_FOUND();
    let namespace: string | undefined;
    // namespaces/{ns}/{plural}/... is namespaced; namespaces/{name}[/status] is the Namespace itself.
    if (rest[0] === "namespaces" && rest.length >= 3 && rest[2] !== "status" && rest[2] !== "finalize") {
      namespace = rest[1];
      rest = rest.slice(2);
    }
    const [plural, name, subresource, ...extra] = rest;
    if (!plural || extra.length > 0) throw PATH_NOT_FOUND();
    const rt = this.findType(group, version, plural);
    if (!rt) throw PATH_NOT_FOUND();
    if (namespace !== undefined && !rt.namespaced) throw PATH_NOT_FOUND();
    if (subresource !== undefined && !(subresource === "status" && rt.status) && !(subresource === "finalize" && rt.kind === "Namespace")) throw PATH_NOT_FOUND();
    return { rt, version, namespace, name, subresource };
  }

  private parseBody(text: string, contentType: string): Json {
    if (text.trim() === "") throw badRequest("the request body is empty");
    const yaml = /yaml/.test(contentType);
    try {
      return (yaml ? parseYaml(text) : JSON.parse(text)) as Json;
    } catch (err) {
      throw badRequest(`the body of the request could not be decoded: ${yaml ? "yaml" : "json"} parse error: ${(err as Error).message}`);
    }
  }

  /** Checks apiVersion/kind of a body against the URL; built-ins may omit them, custom resources may not. */
  private checkGVK(route: Route, body: Json): JsonObject {
    if (!isObject(body)) throw badRequest("the body of the request must be a JSON object");
    const gv = gvOf(route.rt.group, route.version);
    if (body.apiVersion === undefined || body.kind === undefined) {
      if (route.rt.crd) throw badRequest(`Object '${body.kind === undefined ? "Kind" : "apiVersion"}' is missing in '${JSON.stringify(body).slice(0, 200)}'`);
      body.apiVersion ??= gv;
      body.kind ??= route.rt.kind;
    }
    if (body.apiVersion !== gv) throw badRequest(`the API version in the data (${String(body.apiVersion)}) does not match the expected API version (${gv})`);
    if (body.kind !== route.rt.kind) throw badRequest(`the kind in the data (${String(body.kind)}) does not match the expected kind (${route.rt.kind})`);
    const m = isObject(body.metadata) ? body.metadata : (body.metadata = {});
    if (route.namespace !== undefined) {
      if (m.namespace !== undefined && m.namespace !== "" && m.namespace !== route.namespace) {
        throw badRequest("the namespace of the provided object does not match the namespace sent on the request");
      }
      m.namespace = route.namespace;
    }
    return body;
  }

  private async serve(req: IncomingMessage, res: ServerResponse, u: URL, route: Route, user: { username: string; groups?: string[] }): Promise<void> {
    const { rt } = route;
    const method = req.method ?? "GET";
    const q = u.searchParams;
    const ctx: WriteContext = {
      manager: q.get("fieldManager") ?? defaultManager(req.headers["user-agent"]),
      apiVersion: gvOf(rt.group, route.version),
      ...(route.subresource ? { subresource: route.subresource } : {}),
      ...(q.getAll("dryRun").includes("All") ? { dryRun: true } : {}),
    };
    const verbOk = (verb: string): void => {
      if (!rt.verbs.includes(verb)) throw new ApiError(405, "MethodNotAllowed", `the server does not allow this method on the requested resource`, {});
    };
    if (rt.kind === "TokenReview") {
      verbOk(method === "POST" && route.name === undefined ? "create" : "get");
      const body = this.checkGVK(route, this.parseBody(await this.readBody(req), req.headers["content-type"] ?? ""));
      this.send(req, res, 201, this.tokenReview(body, route), route, user.username);
      return;
    }
    const store = this.store(rt);
    if (route.name === undefined) {
      if (method === "GET") {
        if (q.get("watch") === "true" || q.get("watch") === "1") {
          verbOk("watch");
          this.watch(req, res, route, q, user.username);
          return;
        }
        verbOk("list");
        this.send(req, res, 200, this.listBody(route, q), route, user.username);
        return;
      }
      if (method === "POST") {
        verbOk("create");
        if (route.namespace === undefined && rt.namespaced) throw new ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource", {});
        const body = this.checkGVK(route, this.parseBody(await this.readBody(req), req.headers["content-type"] ?? ""));
        this.refuseWhileCrdTerminates(rt);
        const obj = this.create(rt, body, ctx);
        this.send(req, res, 201, this.view(rt, obj, route.version), route, user.username);
        return;
      }
      if (method === "DELETE") {
        verbOk("deletecollection");
        const text = await this.readBody(req);
        const opts = text.trim() ? this.parseBody(text, "json") : {};
        const items = this.selectItems(route, q, store);
        for (const obj of items) this.delete(rt, obj, isObject(opts) ? opts : {}, ctx.dryRun);
        this.send(req, res, 200, { kind: rt.listKind, apiVersion: ctx.apiVersion, metadata: { resourceVersion: String(this.rv) }, items: items.map((o) => this.view(rt, o, route.version)) }, route, user.username);
        return;
      }
      throw new ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource", {});
    }
    if (method === "GET" && (q.get("watch") === "true" || q.get("watch") === "1")) {
      // The deprecated watch of one named object: a collection watch narrowed to that name.
      verbOk("watch");
      q.set("fieldSelector", [q.get("fieldSelector"), `metadata.name=${route.name}`].filter(Boolean).join(","));
      this.watch(req, res, { ...route, name: undefined }, q, user.username);
      return;
    }
    const key = keyOf(route.namespace, route.name);
    const existing = store.get(key);
    if (method === "GET") {
      verbOk("get");
      if (!existing) throw notFound(rt, route.name);
      this.send(req, res, 200, this.view(rt, existing, route.version), route, user.username);
      return;
    }
    if (method === "PUT") {
      verbOk("update");
      const body = this.checkGVK(route, this.parseBody(await this.readBody(req), req.headers["content-type"] ?? ""));
      if (isObject(body.metadata) && body.metadata.name !== undefined && body.metadata.name !== route.name) {
        throw badRequest(`the name of the object (${String(body.metadata.name)}) does not match the name on the URL (${route.name})`);
      }
      if (!existing) {
        // PUT creates only where the registry allows it (not for the kinds served here), so 404.
        throw notFound(rt, route.name);
      }
      const obj = this.update(rt, existing, body, ctx);
      this.send(req, res, 200, this.view(rt, obj, route.version), route, user.username);
      return;
    }
    if (method === "PATCH") {
      verbOk("patch");
      const ct = (req.headers["content-type"] ?? "").split(";")[0]?.trim() ?? "";
      const text = await this.readBody(req);
      const { status, obj } = this.patch(route, existing, ct, text, ctx, q);
      this.send(req, res, status, this.view(rt, obj, route.version), route, user.username);
      return;
    }
    if (method === "DELETE") {
      verbOk("delete");
      const text = await this.readBody(req);
      const opts = text.trim() ? this.parseBody(text, "json") : {};
      if (!existing) throw notFound(rt, route.name);
      const obj = this.delete(rt, existing, isObject(opts) ? opts : {}, ctx.dryRun);
      const pending = !ctx.dryRun && store.has(key);
      // Like the real registries: an object whose deletion waits on finalizers comes back; an
      // immediate delete answers Status Success, except for custom resources (ReturnDeletedObject).
      const body = pending || rt.crd ? this.view(rt, obj, route.version) : {
        kind: "Status", apiVersion: "v1", metadata: {}, status: "Success",
        details: { name: route.name, ...(rt.group ? { group: rt.group } : {}), kind: rt.plural, uid: meta(obj).uid ?? "" },
      };
      this.send(req, res, 200, body, route, user.username);
      return;
    }
    throw new ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource", {});
  }

  private refuseWhileCrdTerminates(rt: ResourceType): void {
    if (!rt.crd) return;
    const crd = this.stores.get("apiextensions.k8s.io/customresourcedefinitions")?.get(keyOf(undefined, rt.crd));
    if (crd && meta(crd).deletionTimestamp) {
      throw new ApiError(405, "MethodNotAllowed", `create not allowed while custom resource definition is terminating`, {});
    }
  }

  private patch(route: Route, existing: JsonObject | undefined, ct: string, text: string, ctx: WriteContext, q: URLSearchParams): { status: number; obj: JsonObject } {
    const { rt } = route;
    const name = route.name ?? "";
    const accepted = ["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml", ...(rt.crd ? [] : ["application/strategic-merge-patch+json"])];
    if (!accepted.includes(ct)) {
      throw new ApiError(415, "UnsupportedMediaType", `the body of the request was in an unknown format - accepted media types include: ${accepted.join(", ")}`);
    }
    const body = this.parseBody(text, ct);
    if (ct === "application/apply-patch+yaml" && !q.get("fieldManager")) {
      throw badRequest("PATCH /apply requires fieldManager: the fieldManager query parameter is required for apply patches");
    }
    if (ct === "application/apply-patch+yaml") return this.serverSideApply(route, existing, body, ctx, q.get("force") === "true");
    if (q.get("force") !== null) throw badRequest("force is only allowed for server-side apply (application/apply-patch+yaml)");
    if (!existing) throw notFound(rt, name);
    const current = this.view(rt, existing, route.version);
    let patched: Json;
    if (ct === "application/json-patch+json") patched = jsonPatch(current, body);
    else if (ct === "application/merge-patch+json") {
      if (!isObject(body)) throw badRequest("a merge patch must be a JSON object");
      patched = mergePatch(current, body);
    } else {
      if (!isObject(body)) throw badRequest("a strategic merge patch must be a JSON object");
      patched = strategicMergePatch(current, body, rt.listKeys);
    }
    if (!isObject(patched)) throw new ApiError(422, "Invalid", "the patch produced something that is not an object");
    if (patched.apiVersion !== current.apiVersion || patched.kind !== current.kind) {
      throw badRequest("the patch may not change apiVersion or kind");
    }
    return { status: 200, obj: this.update(rt, existing, patched, ctx) };
  }

  private serverSideApply(route: Route, existing: JsonObject | undefined, body: Json, ctx: WriteContext, force: boolean): { status: number; obj: JsonObject } {
    const { rt } = route;
    const name = route.name ?? "";
    if (!isObject(body)) throw badRequest("the apply configuration must be an object");
    const config = this.checkGVK(route, body);
    const cm = meta(config);
    if (cm.name !== undefined && cm.name !== name) throw badRequest(`the name of the object (${String(cm.name)}) does not match the name on the URL (${name})`);
    cm.name = name;
    if (!existing) this.refuseWhileCrdTerminates(rt);
    // Apply's precondition: a resourceVersion in the config must match.
    if (cm.resourceVersion !== undefined && cm.resourceVersion !== "" && (!existing || cm.resourceVersion !== meta(existing).resourceVersion)) {
      throw conflict(rt, name, "the object has been modified; please apply your changes to the latest version and try again");
    }
    // Apply changes only what this endpoint may: status through /status, the rest through the main resource.
    const reduce = (o: JsonObject): JsonObject => {
      if (ctx.subresource === "status") return { apiVersion: o.apiVersion ?? null, kind: o.kind ?? null, metadata: { name }, ...(o.status !== undefined ? { status: o.status } : {}) };
      const c = { ...o };
      if (rt.status) delete c.status;
      return c;
    };
    const cfg = reduce(config);
    const cmeta = meta(cfg);
    for (const f of ["resourceVersion", "uid", "creationTimestamp", "generation", "managedFields", "deletionTimestamp", "selfLink"]) delete cmeta[f];
    if (!existing) {
      if (ctx.subresource === "status") throw notFound(rt, name);
      const r = ssaApply({}, cfg, [], rt.listKeys, ctx.manager, ctx.apiVersion, undefined, force);
      if (!r.ok) throw new Error("unreachable: conflicts on create");
      const created = this.create(rt, { ...r.object, apiVersion: ctx.apiVersion, kind: rt.kind, metadata: { ...meta(r.object), name, ...(route.namespace ? { namespace: route.namespace } : {}) } }, ctx, r.managedFields);
      return { status: 201, obj: created };
    }
    const liveFull = this.view(rt, existing, route.version);
    const live = reduce(liveFull);
    const entries = (Array.isArray(meta(existing).managedFields) ? meta(existing).managedFields : []) as unknown as ManagedFieldsEntry[];
    const r = ssaApply(live, cfg, entries, rt.listKeys, ctx.manager, ctx.apiVersion, ctx.subresource, force);
    if (!r.ok) {
      const n = r.conflicts.length;
      const lines = r.conflicts.map((c) => `conflict with "${c.manager}": ${c.field}`);
      const message = n === 1 ? `Apply failed with 1 conflict: ${lines[0] ?? ""}` : `Apply failed with ${n} conflicts: ${lines.join("\n")}`;
      throw new ApiError(409, "Conflict", message, {
        causes: r.conflicts.map((c) => ({ reason: "FieldManagerConflict", message: `conflict with "${c.manager}"`, field: c.field })),
      });
    }
    let next: JsonObject;
    if (ctx.subresource === "status") {
      next = clone(liveFull);
      if (r.object.status === undefined) delete next.status;
      else next.status = r.object.status;
    } else {
      next = r.object;
      if (rt.status && liveFull.status !== undefined) next.status = clone(liveFull.status);
      // Server-owned metadata comes from the live object.
      const nm = meta(next);
      const lm = meta(liveFull);
      for (const f of ["uid", "creationTimestamp", "generation", "deletionTimestamp", "deletionGracePeriodSeconds", "namespace"]) if (lm[f] !== undefined) nm[f] = lm[f];
    }
    delete meta(next).resourceVersion;
    return { status: 200, obj: this.update(rt, existing, next, ctx, r.managedFields) };
  }

  private tokenReview(body: JsonObject, route: Route): JsonObject {
    const spec = isObject(body.spec) ? body.spec : {};
    const token = strOf(spec.token) ?? "";
    const who = token ? this.tokens[token] : undefined;
    const audiences = Array.isArray(spec.audiences) ? spec.audiences : [];
    const status: JsonObject = who
      ? {
        authenticated: true,
        user: { username: who.username, uid: `fakeapi-${who.username}`, groups: [...new Set([...(who.groups ?? []), "system:authenticated"])] },
        ...(audiences.length > 0 ? { audiences } : {}),
      }
      : { authenticated: false, user: {}, error: token ? "[invalid bearer token, token lookup failed]" : "token is empty" };
    return { kind: "TokenReview", apiVersion: gvOf(route.rt.group, route.version), metadata: { creationTimestamp: null }, spec, status };
  }

  private selectors(route: Route, q: URLSearchParams): { labels: Requirement[]; fields: Requirement[] } {
    const supported = (f: string): boolean => f === "metadata.name" || f === "metadata.namespace" || route.rt.fieldLabels.includes(f);
    return { labels: parseLabelSelector(q.get("labelSelector") ?? ""), fields: parseFieldSelector(q.get("fieldSelector") ?? "", supported) };
  }

  private selectItems(route: Route, q: URLSearchParams, source: Map<string, JsonObject>): JsonObject[] {
    const sel = { ...this.selectors(route, q), namespace: route.namespace };
    return [...source.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([, o]) => o)
      .filter((o) => this.selected(route.rt, sel, o));
  }

  private listBody(route: Route, q: URLSearchParams): JsonObject {
    const { rt } = route;
    const rvParam = q.get("resourceVersion") ?? "";
    const match = q.get("resourceVersionMatch") ?? "";
    const cont = q.get("continue") ?? "";
    const limit = Number(q.get("limit") ?? "0");
    if (!Number.isInteger(limit) || limit < 0) throw badRequest(`invalid limit ${JSON.stringify(q.get("limit"))}`);
    if (match && !rvParam) throw badRequest("resourceVersionMatch is forbidden unless resourceVersion is provided");
    if (match && match !== "Exact" && match !== "NotOlderThan") throw badRequest(`resourceVersionMatch: Unsupported value: "${match}"`);
    if (cont && rvParam) throw badRequest("specifying resource version is not allowed when using continue");
    let atRV = this.rv;
    let after = "";
    if (cont) {
      let token: { rv?: unknown; start?: unknown };
      try {
        token = JSON.parse(Buffer.from(cont, "base64url").toString("utf8")) as { rv?: unknown; start?: unknown };
      } catch {
        throw badRequest("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)");
      }
      if (typeof token.rv !== "number" || typeof token.start !== "string") throw badRequest("continue key is not valid");
      atRV = token.rv;
      after = token.start;
    } else if (rvParam && rvParam !== "0") {
      const n = parseRV(rvParam);
      if (n > this.rv) {
        throw new ApiError(504, "Timeout", `Too large resource version: ${n}, current: ${this.rv}`, { causes: [{ reason: "ResourceVersionTooLarge", message: "Too large resource version" }], retryAfterSeconds: 1 });
      }
      if (match === "Exact") atRV = n;
    }
    const state = atRV === this.rv ? this.store(rt) : this.stateAt(rt, atRV);
    if (!state) {
      throw expired(cont
        ? "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list."
        : `too old resource version: ${atRV} (${this.compactedRV})`);
    }
    let items = this.selectItems(route, q, state);
    if (after) items = items.filter((o) => keyOf(nsOf(o), nameOf(o)) > after);
    const listMeta: JsonObject = { resourceVersion: String(atRV) };
    if (limit > 0 && items.length > limit) {
      const page = items.slice(0, limit);
      const last = page[page.length - 1] as JsonObject;
      listMeta.continue = Buffer.from(JSON.stringify({ rv: atRV, start: keyOf(nsOf(last), nameOf(last)) })).toString("base64url");
      listMeta.remainingItemCount = items.length - limit;
      items = page;
    }
    return {
      kind: rt.listKind, apiVersion: gvOf(rt.group, route.version), metadata: listMeta,
      // Built-in lists carry no apiVersion/kind on their items; custom resource lists do.
      items: items.map((o) => {
        const v = this.view(rt, o, route.version);
        if (!rt.crd) {
          delete v.apiVersion;
          delete v.kind;
        }
        return v;
      }),
    };
  }

  private watch(req: IncomingMessage, res: ServerResponse, route: Route, q: URLSearchParams, user: string): void {
    const { rt } = route;
    const sel = this.selectors(route, q);
    const rvParam = q.get("resourceVersion") ?? "";
    const initial = q.get("sendInitialEvents") === "true";
    const bookmarks = q.get("allowWatchBookmarks") === "true" || q.get("allowWatchBookmarks") === "1";
    const timeoutSeconds = Number(q.get("timeoutSeconds") ?? "0");
    const from = rvParam === "" || rvParam === "0" ? undefined : parseRV(rvParam);
    if (initial && !bookmarks) throw badRequest("sendInitialEvents requires allowWatchBookmarks=true");
    this.record(req, 200, route, user);
    res.writeHead(200, { "Content-Type": "application/json", "Transfer-Encoding": "chunked", "Cache-Control": "no-cache, private" });
    res.flushHeaders();
    const w: Watcher = { rid: rid(rt), version: route.version, namespace: route.namespace, ...sel, res, timers: [], closed: false };
    if (from !== undefined && from < this.compactedRV && !initial) {
      // The real server answers a too-old watch with 200 and a single ERROR event.
      this.write(w, { type: "ERROR", object: expired(`too old resource version: ${from} (${this.compactedRV})`).status() });
      res.end();
      return;
    }
    if (from === undefined || initial) {
      for (const obj of this.selectItems(route, q, this.store(rt))) this.write(w, { type: "ADDED", object: this.view(rt, obj, route.version) });
      if (initial) {
        this.write(w, { type: "BOOKMARK", object: { apiVersion: gvOf(rt.group, route.version), kind: rt.kind, metadata: { resourceVersion: String(this.rv), annotations: { "k8s.io/initial-events-end": "true" } } } });
      }
    } else {
      for (const ev of this.history) if (ev.rv > from && ev.rid === w.rid) this.deliver(w, rt, ev);
    }
    this.watchers.add(w);
    if (bookmarks) {
      const t = setInterval(() => {
        this.write(w, { type: "BOOKMARK", object: { apiVersion: gvOf(rt.group, route.version), kind: rt.kind, metadata: { resourceVersion: String(this.rv) } } });
      }, this.bookmarkIntervalMs);
      w.timers.push(t);
    }
    if (timeoutSeconds > 0) w.timers.push(setTimeout(() => this.closeWatch(w, false), timeoutSeconds * 1000));
    const gone = (): void => this.closeWatch(w, false);
    res.on("close", gone);
  }

  private closeWatch(w: Watcher, abrupt: boolean): void {
    if (w.closed) return;
    w.closed = true;
    for (const t of w.timers) clearTimeout(t);
    this.watchers.delete(w);
    if (abrupt) w.res.socket?.destroy();
    else w.res.end();
  }
}

/** Finalizers still to run: metadata.finalizers, and a Namespace's spec.finalizers. */
function pendingFinalizers(rt: ResourceType, obj: JsonObject): boolean {
  const m = meta(obj);
  if (Array.isArray(m.finalizers) && m.finalizers.length > 0) return true;
  if (rt.kind !== "Namespace" || rt.group !== "") return false;
  return isObject(obj.spec) && Array.isArray(obj.spec.finalizers) && obj.spec.finalizers.length > 0;
}

function parseRV(s: string): number {
  if (!/^[0-9]+$/.test(s)) throw badRequest(`resourceVersion: Invalid value: "${s}": strconv.ParseUint: parsing "${s}": invalid syntax`);
  return Number(s);
}

/** The default field manager of non-apply writes: the User-Agent's first word, as the real server does. */
function defaultManager(userAgent: string | undefined): string {
  const first = (userAgent ?? "").split("/")[0]?.trim();
  return first || "unknown";
}

/** Field values for field selectors: metadata.name/namespace and the kind's own labels. */
function fieldValue(obj: JsonObject, path: string): string | undefined {
  let cur: Json | undefined = obj;
  for (const part of path.split(".")) cur = isObject(cur) ? cur[part] : undefined;
  if (cur === undefined || cur === null) return path.startsWith("metadata.") ? undefined : "";
  return typeof cur === "string" ? cur : JSON.stringify(cur);
}

export async function startFakeApiServer(opts: FakeApiOptions = {}): Promise<FakeApiServer> {
  const s = new FakeApi(opts);
  await s.listen();
  return s;
}
