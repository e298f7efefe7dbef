import { test } from "node:test";
import assert from "node:assert/strict";
import { parseManifests } from "./manifests.ts";

const summary = (text: string) => {
  const parsed = parseManifests(text, "m.yaml");
  return {
    objects: parsed.objects.map((o) => `${o.kind} ${o.object.metadata.namespace ?? "-"}/${o.object.metadata.name} @${o.line}`),
    errors: parsed.errors.map((e) => `${e.line}:${e.column} ${e.message}`),
    ignored: parsed.ignored.map((i) => `${i.line} ${i.reason}`),
  };
};

test("multi-document YAML: every object carries its file and 1-based line", () => {
  const text = [
    "# leading comment",
    "apiVersion: gateway.networking.k8s.io/v1",
    "kind: Gateway",
    "metadata:",
    "  name: gw",
    "  namespace: infra",
    "spec:",
    "  gatewayClassName: sluice",
    "---",
    "apiVersion: gateway.networking.k8s.io/v1",
    "kind: HTTPRoute",
    "metadata: {name: web}",
    "---",
    "",
  ].join("\n");
  const parsed = parseManifests(text, "dir/m.yaml");
  assert.deepEqual(parsed.errors, []);
  assert.deepEqual(parsed.ignored, []);
  assert.deepEqual(parsed.objects.map((o) => [o.kind, o.file, o.line]), [["Gateway", "dir/m.yaml", 2], ["HTTPRoute", "dir/m.yaml", 10]]);
  assert.deepEqual(parsed.objects[0]?.object, {
    apiVersion: "gateway.networking.k8s.io/v1",
    kind: "Gateway",
    metadata: { name: "gw", namespace: "infra" },
    spec: { gatewayClassName: "sluice" },
  });
});

test("JSON is parsed, including a List", () => {
  const text = JSON.stringify({
    apiVersion: "v1", kind: "List",
    items: [{ apiVersion: "v1", kind: "Service", metadata: { name: "a" } }, { apiVersion: "v1", kind: "Secret", metadata: { name: "s", namespace: "x" } }],
  }, null, 2);
  assert.deepEqual(summary(text), { objects: ["Service default/a @5", "Secret x/s @12"], errors: [], ignored: [] });
});

test("a syntax error is located exactly and leaves the other documents parsed", () => {
  const text = [
    "apiVersion: v1",
    "kind: Service",
    "metadata: {name: before}",
    "---",
    "apiVersion: v1",
    "kind: Service",
    "metadata:",
    "  name: broken: yes",
    "---",
    "apiVersion: v1",
    "kind: ConfigMap",
    "metadata: {name: after}",
  ].join("\n");
  const parsed = parseManifests(text, "m.yaml");
  assert.deepEqual(parsed.objects.map((o) => `${o.object.metadata.name}@${o.line}`), ["before@1", "after@10"]);
  // yaml's own sentence, without the source excerpt prettyErrors would append.
  assert.deepEqual(parsed.errors, [{ file: "m.yaml", line: 8, column: 9, message: "Nested mappings are not allowed in compact mappings" }]);
});

test("a duplicate key is a YAML error at the duplicate", () => {
  const { errors, objects } = summary("apiVersion: v1\nkind: Service\nmetadata: {name: a}\nkind: Secret\n");
  assert.deepEqual(objects, []);
  assert.equal(errors.length, 1);
  assert.match(errors[0] ?? "", /^4:1 Map keys must be unique/);
});

test("kind: List and typed *List expand to their items, each at its own line", () => {
  const text = [
    "apiVersion: v1",
    "kind: List",
    "items:",
    "  - apiVersion: v1",
    "    kind: Service",
    "    metadata: {name: a, namespace: ns}",
    "  - apiVersion: apps/v1",
    "    kind: Deployment",
    "    metadata: {name: d}",
    "---",
    "apiVersion: gateway.networking.k8s.io/v1",
    "kind: HTTPRouteList",
    "items:",
    "  - metadata: {name: r1}",
    "  - metadata: {name: r2}",
  ].join("\n");
  assert.deepEqual(summary(text), {
    objects: ["Service ns/a @4", "HTTPRoute default/r1 @14", "HTTPRoute default/r2 @15"],
    errors: [],
    ignored: ["7 apps/v1 Deployment is not a kind Sluice reads"],
  });
  const route = parseManifests(text, "m.yaml").objects[1]?.object;
  assert.equal(route?.apiVersion, "gateway.networking.k8s.io/v1");
  assert.equal(route?.kind, "HTTPRoute");
});

test("documents that are not Kubernetes objects are errors naming what is missing", () => {
  const text = [
    "- a",
    "- b",
    "---",
    "just a string",
    "---",
    "metadata: {name: x}",
    "---",
    "apiVersion: v1",
    "kind: Service",
    "metadata: {namespace: ns}",
    "---",
    "apiVersion: v1",
    "kind: Service",
    "---",
    "apiVersion: v1",
    "kind: Service",
    "metadata: {name: ok, namespace: 7}",
  ].join("\n");
  assert.deepEqual(summary(text).errors, [
    "1:1 not a Kubernetes object: expected a mapping, found a sequence",
    "4:1 not a Kubernetes object: expected a mapping, found string",
    "6:1 not a Kubernetes object: missing apiVersion, kind",
    "8:1 not a Kubernetes object: missing metadata.name",
    "12:1 not a Kubernetes object: missing metadata.name",
    "15:1 metadata.namespace must be a string",
  ]);
  assert.deepEqual(summary("kind: Service\n").errors, ["1:1 not a Kubernetes object: missing apiVersion, metadata.name"]);
});

test("empty documents are skipped silently", () => {
  const text = "---\n# nothing here\n---\n\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: n}\n---\n---\n";
  assert.deepEqual(summary(text), { objects: ["Namespace -/n @6"], errors: [], ignored: [] });
  assert.deepEqual(summary(""), { objects: [], errors: [], ignored: [] });
  assert.deepEqual(summary("null\n"), { objects: [], errors: [], ignored: [] });
});

test("unknown kinds and unserved versions are ignored with a reason", () => {
  const text = [
    "apiVersion: apps/v1",
    "kind: Deployment",
    "metadata: {name: d}",
    "---",
    "apiVersion: gateway.networking.k8s.io/v1alpha1",
    "kind: HTTPRoute",
    "metadata: {name: old}",
    "---",
    "apiVersion: example.com/v1",
    "kind: Service",
    "metadata: {name: s}",
  ].join("\n");
  assert.deepEqual(summary(text), {
    objects: [],
    errors: [],
    ignored: [
      "1 apps/v1 Deployment is not a kind Sluice reads",
      "5 HTTPRoute gateway.networking.k8s.io/v1alpha1 is not served; use one of gateway.networking.k8s.io/v1, gateway.networking.k8s.io/v1beta1",
      "9 example.com/v1 Service is not a kind Sluice reads",
    ],
  });
});

test("namespaced kinds default to `default`; cluster-scoped kinds drop a namespace", () => {
  const text = [
    "apiVersion: v1",
    "kind: Service",
    "metadata: {name: s}",
    "---",
    "apiVersion: v1",
    "kind: Secret",
    "metadata: {name: t, namespace: ''}",
    "---",
    "apiVersion: gateway.networking.k8s.io/v1",
    "kind: GatewayClass",
    "metadata: {name: c, namespace: ignored}",
    "---",
    "apiVersion: v1",
    "kind: Namespace",
    "metadata: {name: n}",
  ].join("\n");
  const { objects } = parseManifests(text, "m.yaml");
  assert.deepEqual(objects.map((o) => o.object.metadata), [
    { name: "s", namespace: "default" },
    { name: "t", namespace: "default" },
    { name: "c" },
    { name: "n" },
  ]);
  assert.ok(objects.every((o) => Object.getPrototypeOf(o.object) === Object.prototype));
});

test("anchors, aliases and merge keys resolve to plain values", () => {
  const text = [
    "apiVersion: v1",
    "kind: ConfigMap",
    "metadata:",
    "  name: c",
    "  labels: &l {app: x}",
    "  annotations:",
    "    <<: *l",
    "    extra: y",
  ].join("\n");
  assert.deepEqual(parseManifests(text, "m.yaml").objects[0]?.object.metadata, {
    name: "c", namespace: "default", labels: { app: "x" }, annotations: { app: "x", extra: "y" },
  });
});
