// Label selectors, for allowedRoutes `from: Selector`.
import type { Namespace } from "../api/objects.ts";

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: string; values?: string[] }[];
}

/** Labels of a namespace; `kubernetes.io/metadata.name` is always set, as the API server does. */
export function namespaceLabels(name: string, ns: Namespace | undefined): Record<string, string> {
  return { ...(ns?.metadata.labels ?? {}), "kubernetes.io/metadata.name": name };
}

/** Returns undefined when the selector is malformed (an unknown operator), so callers can reject it. */
export function selectorMatches(selector: LabelSelector, labels: Record<string, string>): boolean | undefined {
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, e.key);
    const values = e.values ?? [];
    switch (e.operator) {
      case "In": if (!has || !values.includes(labels[e.key] as string)) return false; break;
      case "NotIn": if (has && values.includes(labels[e.key] as string)) return false; break;
      case "Exists": if (!has) return false; break;
      case "DoesNotExist": if (has) return false; break;
      default: return undefined;
    }
  }
  return true;
}
