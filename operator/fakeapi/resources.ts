// The resource types the fake API server serves: the built-in set and the ones CRDs define, with
// what discovery says about them and the list semantics server-side apply needs.
import { isObject, type Json, type JsonObject, type ListKeys } from "./json.ts";

export interface ResourceType {
  readonly group: string;
  /** Served versions, in kube version priority (preferred first). */
  readonly versions: readonly string[];
  readonly plural: string;
  readonly singular: string;
  readonly kind: string;
  readonly listKind: string;
  readonly namespaced: boolean;
  readonly shortNames: readonly string[];
  /** Has the status subresource: main writes ignore .status, /status writes change only it. */
  readonly status: boolean;
  /** metadata.generation is maintained. */
  readonly generation: boolean;
  readonly verbs: readonly string[];
  /** Name of the CRD that defines it; undefined for built-ins. */
  readonly crd?: string;
  readonly listKeys: ListKeys;
  /** Field selector labels beyond metadata.name/metadata.namespace. */
  readonly fieldLabels: readonly string[];
}

export const ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

export const rid = (rt: { group: string; plural: string }): string => `${rt.group}/${rt.plural}`;

const META_LISTS: Record<string, { type: "atomic" | "map" | "set"; keys: string[] }> = {
  "metadata.ownerReferences": { type: "map", keys: ["uid"] },
  "metadata.finalizers": { type: "set", keys: [] },
};

function tableKeys(table: Record<string, { type: "atomic" | "map" | "set"; keys: string[] }>): ListKeys {
  return (path) => META_LISTS[path] ?? table[path] ?? { type: "atomic", keys: [] };
}

const CONDITIONS = { type: "map" as const, keys: ["type"] };

function builtin(group: string, plural: string, kind: string, namespaced: boolean, extra: Partial<ResourceType> = {}): ResourceType {
  return {
    group, versions: ["v1"], plural, singular: kind.toLowerCase(), kind, listKind: `${kind}List`, namespaced,
    shortNames: [], status: false, generation: false, verbs: ALL_VERBS, listKeys: tableKeys({}), fieldLabels: [], ...extra,
  };
}

export const BUILTINS: readonly ResourceType[] = [
  builtin("", "namespaces", "Namespace", false, {
    status: true, generation: false, shortNames: ["ns"], fieldLabels: ["status.phase"],
    verbs: ["create", "delete", "get", "list", "patch", "update", "watch"],
    listKeys: tableKeys({ "status.conditions": CONDITIONS }),
  }),
  builtin("", "services", "Service", true, {
    status: true, generation: true, shortNames: ["svc"], fieldLabels: ["spec.clusterIP", "spec.type"],
    listKeys: tableKeys({ "spec.ports": { type: "map", keys: ["port", "protocol"] }, "status.conditions": CONDITIONS }),
  }),
  builtin("", "secrets", "Secret", true, { fieldLabels: ["type"] }),
  builtin("", "configmaps", "ConfigMap", true, { shortNames: ["cm"] }),
  builtin("", "events", "Event", true, {
    shortNames: ["ev"],
    fieldLabels: ["involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
      "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"],
  }),
  builtin("discovery.k8s.io", "endpointslices", "EndpointSlice", true),
  builtin("coordination.k8s.io", "leases", "Lease", true),
  builtin("events.k8s.io", "events", "Event", true, { shortNames: ["ev"] }),
  builtin("authentication.k8s.io", "tokenreviews", "TokenReview", false, { verbs: ["create"] }),
  builtin("apiextensions.k8s.io", "customresourcedefinitions", "CustomResourceDefinition", false, {
    status: true, generation: true, shortNames: ["crd", "crds"], singular: "customresourcedefinition",
  }),
];

/** Kube version priority: GA before beta before alpha, higher numbers first, anything else last by name. */
export function compareVersions(a: string, b: string): number {
  const parse = (v: string): [number, number, number] | undefined => {
    const m = /^v(\d+)(?:(alpha|beta)(\d+))?$/.exec(v);
    if (!m) return undefined;
    return [m[2] === "alpha" ? 0 : m[2] === "beta" ? 1 : 2, Number(m[1]), Number(m[3] ?? 0)];
  };
  const pa = parse(a);
  const pb = parse(b);
  if (!pa || !pb) return pa ? -1 : pb ? 1 : a.localeCompare(b);
  for (let i = 0; i < 3; i++) if ((pa[i] ?? 0) !== (pb[i] ?? 0)) return (pb[i] ?? 0) - (pa[i] ?? 0);
  return 0;
}

function str(v: Json | undefined): string | undefined {
  return typeof v === "string" ? v : undefined;
}

/** The schema node at a dotted path ("spec.listeners[].conditions"), following properties/items. */
function schemaAt(root: Json | undefined, path: string): JsonObject | undefined {
  let node = isObject(root) ? root : undefined;
  for (const part of path.split(".")) {
    const name = part.endsWith("[]") ? part.slice(0, -2) : part;
    const props = node && isObject(node.properties) ? node.properties : undefined;
    node = props && isObject(props[name]) ? props[name] : undefined;
    if (part.endsWith("[]")) node = node && isObject(node.items) ? node.items : undefined;
    if (!node) return undefined;
  }
  return node;
}

/** Checks a CRD enough to serve it; returns the problems (empty = servable). */
export function crdProblems(crd: JsonObject): string[] {
  const spec = isObject(crd.spec) ? crd.spec : {};
  const names = isObject(spec.names) ? spec.names : {};
  const problems: string[] = [];
  const group = str(spec.group);
  const plural = str(names.plural);
  if (!group) problems.push("spec.group: Required value");
  if (!plural) problems.push("spec.names.plural: Required value");
  if (!str(names.kind)) problems.push("spec.names.kind: Required value");
  if (spec.scope !== "Namespaced" && spec.scope !== "Cluster") problems.push(`spec.scope: Unsupported value: ${JSON.stringify(spec.scope ?? "")}: supported values: "Cluster", "Namespaced"`);
  const versions = Array.isArray(spec.versions) ? spec.versions.filter(isObject) : [];
  if (versions.length === 0) problems.push("spec.versions: Invalid value: must have exactly one version marked as storage version");
  else if (versions.filter((v) => v.storage === true).length !== 1) problems.push("spec.versions: Invalid value: must have exactly one version marked as storage version");
  const name = isObject(crd.metadata) ? str(crd.metadata.name) : undefined;
  if (group && plural && name !== `${plural}.${group}`) problems.push(`metadata.name: Invalid value: ${JSON.stringify(name ?? "")}: must be spec.names.plural+"."+spec.group`);
  return problems;
}

export function crdResourceType(crd: JsonObject): ResourceType {
  const spec = crd.spec as JsonObject;
  const names = spec.names as JsonObject;
  const versions = (spec.versions as Json[]).filter(isObject);
  const served = versions.filter((v) => v.served !== false);
  const storage = versions.find((v) => v.storage === true) ?? versions[0];
  const schema = storage && isObject(storage.schema) ? storage.schema.openAPIV3Schema : undefined;
  const kind = str(names.kind) ?? "";
  const listKeys: ListKeys = (path) => {
    const meta = META_LISTS[path];
    if (meta) return meta;
    const node = schemaAt(schema, path);
    const t = node?.["x-kubernetes-list-type"];
    if (t === "map") return { type: "map", keys: Array.isArray(node?.["x-kubernetes-list-map-keys"]) ? (node["x-kubernetes-list-map-keys"] as Json[]).map(String) : [] };
    if (t === "set") return { type: "set", keys: [] };
    // CRD lists without a list type are atomic.
    return { type: "atomic", keys: [] };
  };
  return {
    group: str(spec.group) ?? "",
    versions: served.map((v) => str(v.name) ?? "").sort(compareVersions),
    plural: str(names.plural) ?? "",
    singular: str(names.singular) ?? kind.toLowerCase(),
    kind,
    listKind: str(names.listKind) ?? `${kind}List`,
    namespaced: spec.scope === "Namespaced",
    shortNames: Array.isArray(names.shortNames) ? names.shortNames.map(String) : [],
    status: served.some((v) => isObject(v.subresources) && isObject(v.subresources.status)),
    generation: true,
    verbs: ALL_VERBS,
    crd: str((crd.metadata as JsonObject).name),
    listKeys,
    fieldLabels: [],
  };
}

export function apiResource(rt: ResourceType, version: string): JsonObject[] {
  const base: JsonObject = {
    name: rt.plural, singularName: rt.singular, namespaced: rt.namespaced, kind: rt.kind, verbs: [...rt.verbs],
    ...(rt.shortNames.length > 0 ? { shortNames: [...rt.shortNames] } : {}),
    ...(rt.crd ? { storageVersionHash: Buffer.from(`${rt.group}/${version}/${rt.kind}`).toString("base64").slice(0, 11) } : {}),
  };
  const out = [base];
  if (rt.status) out.push({ name: `${rt.plural}/status`, singularName: "", namespaced: rt.namespaced, kind: rt.kind, verbs: ["get", "patch", "update"] });
  return out;
}
