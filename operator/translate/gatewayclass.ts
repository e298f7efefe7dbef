// GatewayClass: is it ours, is it accepted, and what GatewayClassConfig does it carry.
import { SLUICE_GROUP } from "../api/kinds.ts";
import { generationOf, objectKey, type Condition, type GatewayClass, type GatewayClassConfig } from "../api/objects.ts";
import type { GatewayClassConfigSpec } from "../api/gatewayclassconfig.ts";
import type { Snapshot } from "../store/snapshot.ts";
import { condition, CondType, Reason } from "./conditions.ts";
import { SUPPORTED_FEATURES } from "./features.ts";

export const CONTROLLER_NAME = "sluice.dev/gateway-controller";

export interface ClassInfo {
  gatewayClass: GatewayClass;
  /** The config object it was evaluated with (for memoization). */
  configObject?: GatewayClassConfig;
  accepted: Condition;
  config?: GatewayClassConfigSpec;
  status: Record<string, unknown>;
}

/** Resolves a parametersRef to a GatewayClassConfig; returns the problem when it cannot. */
export function resolveConfigRef(
  ref: { group?: string; kind?: string; name?: string; namespace?: string } | undefined,
  defaultNamespace: string | undefined,
  snapshot: Snapshot,
  schemaErrors: (c: GatewayClassConfig) => string[],
): { object?: GatewayClassConfig; config?: GatewayClassConfigSpec; problem?: string } {
  if (!ref) return {};
  if (ref.group !== SLUICE_GROUP || ref.kind !== "GatewayClassConfig") {
    return { problem: `parametersRef must point at a ${SLUICE_GROUP} GatewayClassConfig, not ${ref.group ?? ""}/${ref.kind ?? ""}` };
  }
  const ns = ref.namespace ?? defaultNamespace;
  if (!ns) return { problem: "parametersRef to a GatewayClassConfig must set a namespace" };
  const key = objectKey(ns, ref.name ?? "");
  const object = snapshot.objects.GatewayClassConfig.get(key);
  if (!object) return { problem: `GatewayClassConfig ${key} does not exist` };
  const errs = schemaErrors(object);
  if (errs.length) return { object, problem: `GatewayClassConfig ${key} is invalid: ${errs.join("; ")}` };
  return { object, config: object.spec ?? {} };
}

export function evaluateClass(gc: GatewayClass, snapshot: Snapshot, schemaErrors: (o: GatewayClass | GatewayClassConfig) => string[]): ClassInfo {
  const gen = generationOf(gc);
  const errs = schemaErrors(gc);
  let accepted: Condition;
  let resolved: ReturnType<typeof resolveConfigRef> = {};
  if (errs.length) {
    accepted = condition(CondType.Accepted, false, Reason.InvalidParameters, `Invalid: ${errs.join("; ")}`, gen);
  } else {
    resolved = resolveConfigRef(gc.spec?.parametersRef, undefined, snapshot, schemaErrors);
    accepted = resolved.problem
      ? condition(CondType.Accepted, false, Reason.InvalidParameters, resolved.problem, gen)
      : condition(CondType.Accepted, true, Reason.Accepted, "GatewayClass is accepted", gen);
  }
  const info: ClassInfo = {
    gatewayClass: gc,
    accepted,
    status: { conditions: [accepted], supportedFeatures: SUPPORTED_FEATURES.map((name) => ({ name })) },
  };
  if (resolved.object) info.configObject = resolved.object;
  if (resolved.config) info.config = resolved.config;
  return info;
}
