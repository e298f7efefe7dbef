// Golden tests: testdata/<case>.in.yaml (+ the shared testdata/base/*.yaml) is rendered and
// compared with testdata/<case>.out.yaml. Regenerate with UPDATE_GOLDENS=1 (npm run
// goldens:update) and review the diff. A case may also have <case>.expect.yaml: the checks the
// Gateway API conformance suite makes (conditions, listeners, attached routes, routing
// decisions), evaluated against the same output so a golden can't silently drift from the spec.
import assert from "node:assert/strict";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { decide } from "../../datapath/proxy/router.ts";
import { keyOf, type K8sObject } from "../api/objects.ts";
import { formatDocument, renderDocument, type RenderDocument } from "../render/render.ts";
import { baseKeys, caseNames, loadCase, loadExpectations, testdataDir as dir, type CondSpec, type Expectation } from "./goldencases.ts";
import type { GatewayDatapath } from "./output.ts";

const update = process.env.UPDATE_GOLDENS === "1";

export function renderCase(name: string): { doc: RenderDocument; yaml: string } {
  const { own, merged, options } = loadCase(name);
  const doc = renderDocument(merged, options);
  // Base objects are shared context; only the case's own objects belong in its golden.
  const ownKeys = new Set(own.objects.map((p) => `${p.kind}/${keyOf(p.object)}`));
  doc.objects = doc.objects.filter((o) => !baseKeys.has(`${o.kind}/${keyOf(o)}`) || ownKeys.has(`${o.kind}/${keyOf(o)}`));
  return { doc, yaml: formatDocument(doc, "yaml") };
}

// GOLDEN_ONLY=<regex> limits a run (and an update) to matching cases.
const cases = caseNames();

test("there are golden cases", () => assert.ok(cases.length > 0));

for (const name of cases) {
  test(`golden: ${name}`, () => {
    const { doc, yaml } = renderCase(name);
    const outPath = join(dir, `${name}.out.yaml`);
    if (update || !existsSync(outPath)) {
      if (!update) assert.fail(`${name}.out.yaml is missing: run npm run goldens:update and review it`);
      writeFileSync(outPath, yaml);
    } else {
      assert.equal(yaml, readFileSync(outPath, "utf8"), `${name}: output differs from ${name}.out.yaml (npm run goldens:update, then review the diff)`);
    }
    const expectations = loadExpectations(name);
    if (expectations) checkExpectations(name, doc, expectations);
  });
}

// ---- expectations ----

interface Cond { type: string; status: string; reason: string }

function checkConditions(where: string, actual: Cond[] | undefined, spec: CondSpec | undefined): void {
  for (const [type, want] of Object.entries(spec ?? {})) {
    const c = (actual ?? []).find((x) => x.type === type);
    assert.ok(c, `${where}: no ${type} condition`);
    const [status, reason] = String(want).split("/");
    assert.equal(c.status, status, `${where}: ${type} status (reason ${c.reason}: ${(c as unknown as { message: string }).message})`);
    if (reason && reason !== "*") assert.equal(c.reason, reason, `${where}: ${type} reason`);
  }
}

function find(doc: RenderDocument, kind: string, key: string): K8sObject {
  const o = doc.objects.find((x) => x.kind === kind && keyOf(x) === key);
  assert.ok(o, `no ${kind} ${key} in the output`);
  return o;
}

function checkExpectations(name: string, doc: RenderDocument, list: Expectation[]): void {
  assert.ok(Array.isArray(list), `${name}.expect.yaml must be a list`);
  for (const [i, e] of list.entries()) {
    const where = `${name}.expect.yaml[${i}]`;
    if (e.gatewayClass) {
      const gc = find(doc, "GatewayClass", e.gatewayClass);
      checkConditions(where, (gc.status as { conditions?: Cond[] }).conditions, e.conditions);
    } else if (e.request) {
      checkRequest(where, doc, e);
    } else if (e.gateway) {
      const gw = find(doc, "Gateway", e.gateway);
      const st = (gw.status ?? {}) as { conditions?: Cond[]; listeners?: { name: string; attachedRoutes: number; conditions: Cond[]; supportedKinds: { kind: string }[] }[]; addresses?: { value: string }[] };
      if (e.listenerCount !== undefined) assert.equal(st.listeners?.length ?? 0, e.listenerCount, `${where}: listener count`);
      if (e.addresses) assert.deepEqual((st.addresses ?? []).map((a) => a.value), e.addresses, `${where}: addresses`);
      if (e.listener) {
        const l = st.listeners?.find((x) => x.name === e.listener);
        assert.ok(l, `${where}: no listener ${e.listener}`);
        checkConditions(`${where} listener ${e.listener}`, l.conditions, e.conditions);
        if (e.attachedRoutes !== undefined) assert.equal(l.attachedRoutes, e.attachedRoutes, `${where}: attachedRoutes`);
        if (e.supportedKinds) {
          const kinds = l.supportedKinds.map((k) => k.kind);
          if (e.supportedKinds.length === 0) assert.deepEqual(kinds, [], `${where}: supportedKinds must be empty`);
          else for (const k of e.supportedKinds) assert.ok(kinds.includes(k), `${where}: supportedKinds lacks ${k}`);
        }
      } else checkConditions(where, st.conditions, e.conditions);
    } else if (e.route) {
      const [kind, ...rest] = e.route.split("/");
      const r = find(doc, kind as string, rest.join("/"));
      const parents = ((r.status ?? {}) as { parents?: { parentRef: { namespace?: string; name: string }; conditions: Cond[] }[] }).parents ?? [];
      if (e.parentCount !== undefined) assert.equal(parents.length, e.parentCount, `${where}: parent count`);
      if (e.parent) {
        const p = parents.find((x) => `${x.parentRef.namespace}/${x.parentRef.name}` === e.parent);
        assert.ok(p, `${where}: no parent ${e.parent}`);
        checkConditions(`${where} parent ${e.parent}`, p.conditions, e.conditions);
      }
    } else if (e.policy) {
      const [kind, ...rest] = e.policy.split("/");
      const p = find(doc, kind as string, rest.join("/"));
      const anc = ((p.status ?? {}) as { ancestors?: { ancestorRef: { namespace?: string; name: string }; conditions: Cond[] }[] }).ancestors ?? [];
      const a = anc.find((x) => `${x.ancestorRef.namespace}/${x.ancestorRef.name}` === e.ancestor);
      assert.ok(a, `${where}: no ancestor ${e.ancestor}`);
      checkConditions(`${where} ancestor ${e.ancestor}`, a.conditions, e.conditions);
    } else if (e.service) {
      const svc = doc.generated.find((s) => keyOf(s) === e.service);
      assert.ok(svc, `${where}: no generated Service ${e.service}`);
      for (const [k, v] of Object.entries(e.labels ?? {})) assert.equal(svc.metadata.labels?.[k], v, `${where}: label ${k}`);
      for (const [k, v] of Object.entries(e.annotations ?? {})) assert.equal(svc.metadata.annotations?.[k], v, `${where}: annotation ${k}`);
    } else assert.fail(`${where}: unknown expectation ${JSON.stringify(e)}`);
  }
}

function checkRequest(where: string, doc: RenderDocument, e: Expectation): void {
  const r = e.request as NonNullable<Expectation["request"]>;
  const gws = (doc.datapath as { gateways: GatewayDatapath[] }).gateways;
  const gw = gws.find((g) => g.gateway === r.gateway);
  const port = gw?.ports.find((p) => p.port === (r.port ?? 80));
  const d = port ? decide(port, { host: r.host ?? "192.0.2.10", path: r.path ?? "/", method: r.method ?? "GET", headers: lower(r.headers ?? {}) }) : { kind: "notFound" as const };
  const desc = `${where}: ${r.method ?? "GET"} ${r.host ?? ""}${r.path ?? "/"} ${JSON.stringify(r.headers ?? {})}`;
  if (e.status === 404) {
    assert.equal(d.kind, "notFound", `${desc}: expected 404, got ${d.kind === "route" ? d.entry.id : ""}`);
    return;
  }
  assert.equal(d.kind, "route", `${desc}: expected a route, got 404`);
  if (d.kind !== "route") return;
  const entry = d.entry;
  if (e.redirect) {
    // A redirect may sit on the rule or on the chosen backend (backendRef filters).
    const f = [...entry.filters, ...entry.backends.flatMap((b) => b.filters)].find((x) => x.type === "RequestRedirect");
    assert.ok(f && f.type === "RequestRedirect", `${desc}: expected a redirect (${entry.id})`);
    for (const [k, v] of Object.entries(e.redirect)) assert.equal((f as unknown as Record<string, unknown>)[k], v, `${desc}: redirect ${k}`);
    return;
  }
  if (e.status !== undefined) {
    assert.equal(entry.direct?.status, e.status, `${desc}: expected ${e.status} from ${entry.id}`);
    return;
  }
  assert.equal(entry.direct, undefined, `${desc}: ${entry.id} answers ${entry.direct?.status}: ${entry.direct?.reason}`);
  const clusters = (doc.datapath as { clusters: { id: string; service: { namespace: string; name: string } }[] }).clusters;
  const services = entry.backends
    .filter((b) => b.weight > 0 && b.cluster)
    .map((b) => {
      const c = clusters.find((x) => x.id === b.cluster);
      return c ? `${c.service.namespace}/${c.service.name}` : "?";
    })
    .sort();
  if (e.backend) assert.deepEqual(services, [e.backend], `${desc}: backend (${entry.id})`);
  if (e.backends) assert.deepEqual(services, [...e.backends].sort(), `${desc}: backends (${entry.id})`);
}

function lower(h: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(h).map(([k, v]) => [k.toLowerCase(), v]));
}
