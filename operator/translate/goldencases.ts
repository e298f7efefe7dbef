// The golden cases shared by golden.test.ts (rendered output and routing decisions) and
// datapath/proxy/conformance.test.ts (the same request expectations replayed through the real
// proxy): testdata/<case>.in.yaml on top of the shared testdata/base/*.yaml, the case's
// `# render-options:` and its <case>.expect.yaml.
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { keyOf } from "../api/objects.ts";
import { parseManifests, type ParsedManifests } from "../sources/manifests.ts";
import type { TranslateOptions } from "./translate.ts";

export const testdataDir = join(import.meta.dirname, "testdata");

const baseFiles = readdirSync(join(testdataDir, "base")).filter((f) => f.endsWith(".yaml")).sort();
const base = baseFiles.map((f) => parseManifests(readFileSync(join(testdataDir, "base", f), "utf8"), `base/${f}`));
/** `Kind/namespace/name` of every base object. */
export const baseKeys: ReadonlySet<string> = new Set(base.flatMap((b) => b.objects.map((o) => `${o.kind}/${keyOf(o.object)}`)));

/** Options from a leading `# render-options: {...}` comment (JSON). */
export function optionsOf(text: string): TranslateOptions {
  const m = /^# render-options: (.*)$/m.exec(text);
  const opts: TranslateOptions = { addressing: { mode: "static", addresses: ["192.0.2.10"] }, assumeAcknowledged: true };
  return m ? { ...opts, ...(JSON.parse(m[1] as string) as TranslateOptions) } : opts;
}

export interface GoldenCase {
  name: string;
  /** The case's own objects. */
  own: ParsedManifests;
  /** Base objects first, then the case's own (later duplicates win in a snapshot). */
  merged: ParsedManifests;
  options: TranslateOptions;
}

export function loadCase(name: string): GoldenCase {
  const text = readFileSync(join(testdataDir, `${name}.in.yaml`), "utf8");
  const own = parseManifests(text, `${name}.in.yaml`);
  assert.deepEqual(own.errors, [], `${name}.in.yaml must parse`);
  const merged: ParsedManifests = {
    objects: [...base.flatMap((b) => b.objects), ...own.objects],
    errors: [],
    ignored: [...base.flatMap((b) => b.ignored), ...own.ignored],
  };
  return { name, own, merged, options: optionsOf(text) };
}

/** Case names, sorted; GOLDEN_ONLY=<regex> limits them. */
export function caseNames(): string[] {
  const only = process.env.GOLDEN_ONLY ? new RegExp(process.env.GOLDEN_ONLY) : undefined;
  return readdirSync(testdataDir)
    .filter((f) => f.endsWith(".in.yaml"))
    .map((f) => f.slice(0, -".in.yaml".length))
    .filter((c) => !only || only.test(c))
    .sort();
}

// ---- expectations ----

export type CondSpec = Record<string, string>;

export interface RequestSpec {
  /** `namespace/name` of the Gateway. */
  gateway: string;
  /** Listener port; 80 when absent. */
  port?: number;
  /** Host header; the Gateway's address when absent. */
  host?: string;
  path?: string;
  method?: string;
  headers?: Record<string, string>;
}

export interface RedirectSpec {
  statusCode?: number;
  scheme?: string;
  hostname?: string;
  port?: number;
}

export interface Expectation {
  gatewayClass?: string;
  gateway?: string;
  listener?: string;
  listenerCount?: number;
  addresses?: string[];
  route?: string;
  parent?: string;
  parentCount?: number;
  policy?: string;
  ancestor?: string;
  conditions?: CondSpec;
  attachedRoutes?: number;
  supportedKinds?: string[];
  service?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  request?: RequestSpec;
  /** `namespace/name` of the Service that must answer. */
  backend?: string;
  /** Services that may answer (weighted backends). */
  backends?: string[];
  status?: number;
  redirect?: RedirectSpec;
}

/** The case's <case>.expect.yaml, or undefined when it has none. */
export function loadExpectations(name: string): Expectation[] | undefined {
  const path = join(testdataDir, `${name}.expect.yaml`);
  return existsSync(path) ? (parse(readFileSync(path, "utf8")) as Expectation[]) : undefined;
}
