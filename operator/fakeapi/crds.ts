// CRD objects tests install into the fake API server: the Gateway API kinds Sluice reads (from
// operator/api/kinds.ts, so they can't drift), Sluice's own CRD (the generated file in crds/), and
// cert-manager's Certificate. Schemas are minimal but keep the list types that decide how
// server-side apply merges (listeners by name, conditions by type; route parents are atomic).
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";
import { GATEWAY_GROUP, KINDS } from "../api/kinds.ts";

type Schema = Record<string, unknown>;

const open: Schema = { type: "object", "x-kubernetes-preserve-unknown-fields": true };
const conditions: Schema = {
  type: "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
  items: { ...open, properties: { type: { type: "string" } }, required: ["type"] },
};
const mapList = (key: string, item: Schema = {}): Schema => ({
  type: "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": [key],
  items: { ...open, ...item, properties: { [key]: { type: "string" }, ...((item.properties as Schema | undefined) ?? {}) }, required: [key] },
});

function schemaFor(kind: string): Schema {
  let spec: Schema = open;
  let status: Schema = { ...open, properties: { conditions } };
  if (kind === "Gateway") {
    spec = { ...open, properties: { listeners: mapList("name") } };
    status = { ...open, properties: { conditions, listeners: mapList("name", { properties: { conditions } }) } };
  } else if (kind.endsWith("Route")) {
    // RouteStatus.parents has no list type upstream, so it is atomic.
    status = { ...open, properties: { parents: { type: "array", items: { ...open, properties: { conditions } } } } };
  } else if (kind === "BackendTLSPolicy") {
    status = { ...open, properties: { ancestors: { type: "array", items: { ...open, properties: { conditions } } } } };
  }
  return { type: "object", properties: { apiVersion: { type: "string" }, kind: { type: "string" }, metadata: { type: "object" }, spec, status } };
}

export function crd(group: string, kind: string, plural: string, namespaced: boolean, versions: readonly string[], schema: Schema = schemaFor(kind), shortNames: string[] = []): Record<string, unknown> {
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: `${plural}.${group}` },
    spec: {
      group,
      names: { kind, listKind: `${kind}List`, plural, singular: kind.toLowerCase(), ...(shortNames.length > 0 ? { shortNames } : {}) },
      scope: namespaced ? "Namespaced" : "Cluster",
      versions: versions.map((name, i) => ({ name, served: true, storage: i === 0, subresources: { status: {} }, schema: { openAPIV3Schema: schema } })),
    },
  };
}

/** The Gateway API CRDs for every kind Sluice reads, all versions it serves, each with the status subresource. */
export function gatewayApiCrds(): Record<string, unknown>[] {
  return Object.values(KINDS)
    .filter((k) => k.group === GATEWAY_GROUP)
    .map((k) => crd(k.group, k.kind, k.plural, k.namespaced, k.versions));
}

/** Sluice's own CRDs, read from the generated manifests in crds/. */
export function sluiceCrds(): Record<string, unknown>[] {
  const text = readFileSync(new URL("../../crds/sluice.dev_gatewayclassconfigs.yaml", import.meta.url), "utf8");
  return parseAllDocuments(text).map((d) => d.toJS() as Record<string, unknown>).filter((d) => d && d.kind === "CustomResourceDefinition");
}

/** cert-manager's Certificate (cert-manager.io/v1), for tests of certificate references. */
export function certManagerCrds(): Record<string, unknown>[] {
  return [crd("cert-manager.io", "Certificate", "certificates", true, ["v1"], undefined, ["cert", "certs"])];
}
