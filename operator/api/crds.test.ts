import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { parse } from "yaml";
import { GATEWAY_CLASS_CONFIG_CRD_PATH, renderGatewayClassConfigCrd } from "./crds.gen.ts";

test("the committed GatewayClassConfig CRD is up to date", () => {
  assert.equal(readFileSync(GATEWAY_CLASS_CONFIG_CRD_PATH, "utf8"), renderGatewayClassConfigCrd(), "run npm run crds");
});

interface Crd {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels: Record<string, string> };
  spec: {
    group: string;
    scope: string;
    names: Record<string, unknown>;
    versions: { name: string; served: boolean; storage: boolean; subresources: unknown; schema: { openAPIV3Schema: Schema } }[];
  };
}
interface Schema {
  type?: string;
  properties?: Record<string, Schema>;
  additionalProperties?: unknown;
  items?: Schema;
}

test("the CRD parses and carries the expected names", () => {
  const crd = parse(renderGatewayClassConfigCrd()) as Crd;
  assert.equal(crd.apiVersion, "apiextensions.k8s.io/v1");
  assert.equal(crd.kind, "CustomResourceDefinition");
  assert.equal(crd.metadata.name, "gatewayclassconfigs.sluice.dev");
  assert.deepEqual(crd.metadata.labels, { "app.kubernetes.io/part-of": "sluice" });
  assert.equal(crd.spec.group, "sluice.dev");
  assert.equal(crd.spec.scope, "Namespaced");
  assert.deepEqual(crd.spec.names, {
    kind: "GatewayClassConfig",
    listKind: "GatewayClassConfigList",
    plural: "gatewayclassconfigs",
    singular: "gatewayclassconfig",
    shortNames: ["gcc"],
    categories: ["sluice"],
  });
  assert.equal(crd.spec.versions.length, 1);
  const v = crd.spec.versions[0];
  assert.ok(v);
  assert.equal(v.name, "v1alpha1");
  assert.equal(v.served, true);
  assert.equal(v.storage, true);
  assert.deepEqual(v.subresources, { status: {} });
  const root = v.schema.openAPIV3Schema;
  assert.deepEqual(Object.keys(root.properties ?? {}), ["apiVersion", "kind", "metadata", "spec", "status"]);
  assert.ok(root.properties?.spec?.properties?.aws?.properties?.nlb?.properties?.healthCheck);
  const condition = root.properties?.status?.properties?.conditions?.items?.properties ?? {};
  assert.deepEqual(Object.keys(condition).sort(), ["lastTransitionTime", "message", "observedGeneration", "reason", "status", "type"]);
});

test("the CRD schema is structural: no additionalProperties next to properties", () => {
  const crd = parse(renderGatewayClassConfigCrd()) as Crd;
  const walk = (s: Schema, path: string): void => {
    if (s.properties) {
      assert.ok(!("additionalProperties" in s), `${path} sets both properties and additionalProperties`);
      for (const [k, child] of Object.entries(s.properties)) walk(child, `${path}.${k}`);
    }
    if (s.items) walk(s.items, `${path}[]`);
  };
  const root = crd.spec.versions[0]?.schema.openAPIV3Schema;
  assert.ok(root);
  walk(root, "openAPIV3Schema");
  // Maps keep their value schema.
  assert.deepEqual(root.properties?.spec?.properties?.service?.properties?.labels?.additionalProperties, { type: "string" });
});
