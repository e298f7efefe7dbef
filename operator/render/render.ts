// `sluice render`: read manifests, translate once, print everything the pipeline would do.
// The output is deterministic (sorted, no timestamps) so it can be diffed and golden-tested.
import { createHash } from "node:crypto";
import { stringify } from "yaml";
import { KIND_NAMES, schemaErrorsOf, type KindName } from "../api/kinds.ts";
import { keyOf, type K8sObject } from "../api/objects.ts";
import type { ParsedManifests } from "../sources/manifests.ts";
import { snapshotOf } from "../store/snapshot.ts";
import type { L4Service, TranslateResult } from "../translate/output.ts";
import { translate, type TranslateOptions } from "../translate/translate.ts";

/** Kinds whose objects appear in the output, in this order. */
const OUTPUT_KINDS: readonly KindName[] = [
  "GatewayClass", "Gateway", "HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute", "ReferenceGrant", "BackendTLSPolicy",
];

export interface RenderDocument {
  apiVersion: "sluice.dev/v1alpha1";
  kind: "Render";
  objects: K8sObject[];
  generated: K8sObject[];
  dns: TranslateResult["dns"];
  datapath: unknown;
  warnings: string[];
}

export function renderDocument(parsed: ParsedManifests, options: TranslateOptions): RenderDocument {
  const objects = parsed.objects.map((p) => p.object);
  const result = translate(snapshotOf(objects), options);
  const warnings: string[] = [];
  for (const d of parsed.ignored) warnings.push(`${d.file}:${d.line}: ignored: ${d.reason}`);
  for (const p of parsed.objects) {
    const errs = schemaErrorsOf(p.object);
    if (errs.length) warnings.push(`${p.file}:${p.line}: ${p.kind} ${keyOf(p.object)} is invalid: ${errs.join("; ")}`);
  }
  warnings.push(...result.warnings);

  const order = new Map(KIND_NAMES.map((k, i) => [k, i]));
  const out = objects
    .filter((o) => OUTPUT_KINDS.includes(o.kind as KindName))
    .sort((a, b) => (order.get(a.kind as KindName) ?? 0) - (order.get(b.kind as KindName) ?? 0) || cmp(keyOf(a), keyOf(b)))
    .map((o) => {
      const computed = result.statuses.get(`${o.kind}/${keyOf(o)}`);
      const copy: K8sObject = { ...o };
      if (computed) copy.status = computed.status;
      return copy;
    });
  return {
    apiVersion: "sluice.dev/v1alpha1",
    kind: "Render",
    objects: out,
    generated: result.services,
    dns: result.dns,
    datapath: {
      gateways: result.datapath.gateways.map((g) => ({ ...g, l4: g.l4.map(summarizeL4) })),
      clusters: result.datapath.clusters,
      // Key material never reaches the output: a digest says which certificate is served.
      certificates: result.datapath.certificates.map((c) => ({ id: c.id, certSha256: sha256(c.cert) })),
      caBundles: result.datapath.caBundles.map((c) => ({ id: c.id, sha256: sha256(c.pem) })),
    },
    warnings,
  };
}

/** A Maglev table is M numbers; print how many slots each backend owns and a digest instead. */
function summarizeL4(s: L4Service): unknown {
  const slots = new Array<number>(s.backends.length).fill(0);
  for (const i of s.maglev) slots[i] = (slots[i] ?? 0) + 1;
  return {
    ...s,
    backends: s.backends.map((b, i) => ({ ...b, maglevSlots: slots[i] })),
    maglev: { size: s.maglev.length, sha256: createHash("sha256").update(s.maglev).digest("hex") },
  };
}

function sha256(s: string): string {
  return createHash("sha256").update(s).digest("hex");
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function formatDocument(doc: RenderDocument, format: "yaml" | "json"): string {
  return format === "json" ? JSON.stringify(doc, null, 2) + "\n" : stringify(doc, { lineWidth: 0, aliasDuplicateObjects: false });
}
