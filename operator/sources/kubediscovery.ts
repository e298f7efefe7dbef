// Which version of each kind the cluster serves, from the API server's discovery documents
// (/api, /apis, /apis/<group>/<version>). Optional CRDs (experimental Gateway API kinds,
// GatewayClassConfig) are simply kinds with no served version yet.
import { KINDS, type KindInfo, type KindName } from "../api/kinds.ts";
import { ApiError, type KubeApi } from "./kubeapi.ts";

interface GroupVersion {
  groupVersion?: string;
  version?: string;
}
interface ApiGroupList {
  groups?: { name?: string; versions?: GroupVersion[]; preferredVersion?: GroupVersion }[];
}
interface ApiVersions {
  versions?: string[];
}
interface ApiResourceList {
  resources?: { name?: string; kind?: string }[];
}

export interface KindDiscovery {
  /** The version to watch, or undefined when the cluster serves none that Sluice knows. */
  version: string | undefined;
  /** Versions the cluster serves for this kind that kinds.ts does not know (logged, not fatal). */
  unknownVersions: string[];
}

/**
 * Discovers the served version of every kind in `kinds`. The cluster's preferred version of the
 * group wins when Sluice knows it; otherwise the first version in kinds.ts's order (preferred
 * first) that the cluster serves. Rejects with ApiError when discovery itself fails.
 */
export async function discoverKinds(api: KubeApi, kinds: readonly KindName[], signal?: AbortSignal): Promise<Map<KindName, KindDiscovery>> {
  const infos = kinds.map((k) => KINDS[k]);
  const groups = new Set(infos.map((i) => i.group));
  /** group → its versions as served, and the preferred one. */
  const served = new Map<string, { versions: string[]; preferred: string | undefined }>();

  if (groups.has("")) {
    const core = await api.request<ApiVersions>("GET", "/api", { signal });
    served.set("", { versions: core?.versions ?? [], preferred: core?.versions?.[0] });
  }
  if ([...groups].some((g) => g !== "")) {
    const list = await api.request<ApiGroupList>("GET", "/apis", { signal });
    for (const g of list?.groups ?? []) {
      if (!g.name || !groups.has(g.name)) continue;
      const versions = (g.versions ?? []).map((v) => v.version).filter((v): v is string => typeof v === "string");
      served.set(g.name, { versions, preferred: g.preferredVersion?.version });
    }
  }

  // Resources of every group version some kind might be read at; unknown versions are fetched
  // too, only to say that a kind is served at a version Sluice cannot read.
  const resources = new Map<string, Map<string, string>>();
  const fetches: Promise<void>[] = [];
  for (const [group, { versions }] of served) {
    for (const version of versions) {
      const gv = group ? `${group}/${version}` : version;
      const path = group ? `/apis/${group}/${version}` : `/api/${version}`;
      fetches.push(api.request<ApiResourceList>("GET", path, { signal }).then(
        (list) => {
          const byPlural = new Map<string, string>();
          for (const r of list?.resources ?? []) if (r.name && !r.name.includes("/")) byPlural.set(r.name, r.kind ?? "");
          resources.set(gv, byPlural);
        },
        (err: unknown) => {
          // A group version removed between /apis and here: it serves nothing.
          if (err instanceof ApiError && err.status === 404) return;
          throw err;
        },
      ));
    }
  }
  await Promise.all(fetches);

  const out = new Map<KindName, KindDiscovery>();
  for (const info of infos) out.set(info.kind, pick(info, served.get(info.group), resources));
  return out;
}

function pick(info: KindInfo, group: { versions: string[]; preferred: string | undefined } | undefined, resources: Map<string, Map<string, string>>): KindDiscovery {
  if (!group) return { version: undefined, unknownVersions: [] };
  const servesKind = (v: string): boolean => resources.get(info.group ? `${info.group}/${v}` : v)?.has(info.plural) ?? false;
  const servedVersions = group.versions.filter(servesKind);
  const known = servedVersions.filter((v) => info.versions.includes(v));
  const unknownVersions = servedVersions.filter((v) => !info.versions.includes(v));
  if (known.length === 0) return { version: undefined, unknownVersions };
  const version = group.preferred && known.includes(group.preferred) ? group.preferred : info.versions.find((v) => known.includes(v));
  return { version, unknownVersions };
}
