// What `sluice run` tells its user about statuses: one line per object whose conditions
// changed, the way `kubectl get` would summarize them, so a mistake in a manifest shows at once.
import type { TranslateResult } from "../translate/output.ts";

interface Cond { type: string; status: string; reason: string; message?: string }

function conds(list: unknown): string {
  const cs = (Array.isArray(list) ? list : []) as Cond[];
  return cs.map((c) => (c.status === "True" ? `${c.type}` : `${c.type}=${c.status} (${c.reason}${c.message ? `: ${c.message}` : ""})`)).join(", ");
}

/** What was last reported per object: the status it was computed from, and its line. */
export type Reported = Map<string, { status: unknown; line: string }>;

/**
 * Summary lines for the statuses that differ from what was last reported; updates `reported`.
 * The translator keeps an unchanged status the same instance, so only changed ones are
 * summarized again: this runs every tick, over every object.
 */
export function statusLines(result: TranslateResult, reported: Reported): string[] {
  const out: string[] = [];
  for (const [key, s] of result.statuses) {
    const prev = reported.get(key);
    if (prev?.status === s.status) continue;
    let line: string;
    if (s.kind === "Gateway") {
      const st = s.status as { conditions?: unknown; listeners?: { name: string; attachedRoutes: number; conditions: unknown }[] };
      const listeners = (st.listeners ?? []).map((l) => `${l.name}: ${l.attachedRoutes} route(s)${problems(l.conditions)}`).join("; ");
      line = `${s.kind} ${s.namespace}/${s.name}: ${conds(st.conditions)}${listeners ? ` [${listeners}]` : ""}`;
    } else if (s.kind === "GatewayClass") {
      line = `${s.kind} ${s.name}: ${conds((s.status as { conditions?: unknown }).conditions)}`;
    } else {
      const parents = ((s.status as { parents?: { parentRef: { namespace?: string; name: string; sectionName?: string }; conditions: unknown }[] }).parents ?? [])
        .map((p) => `${p.parentRef.namespace ?? ""}/${p.parentRef.name}${p.parentRef.sectionName ? `#${p.parentRef.sectionName}` : ""}: ${conds(p.conditions)}`);
      const ancestors = ((s.status as { ancestors?: { ancestorRef: { namespace?: string; name: string }; conditions: unknown }[] }).ancestors ?? [])
        .map((a) => `${a.ancestorRef.namespace ?? ""}/${a.ancestorRef.name}: ${conds(a.conditions)}`);
      const all = [...parents, ...ancestors];
      line = `${s.kind} ${s.namespace}/${s.name}: ${all.length ? all.join("; ") : "not attached to any Gateway"}`;
    }
    reported.set(key, { status: s.status, line });
    if (prev?.line !== line) out.push(line);
  }
  for (const key of reported.keys()) if (!result.statuses.has(key)) reported.delete(key);
  return out;
}

function problems(list: unknown): string {
  const bad = ((Array.isArray(list) ? list : []) as Cond[]).filter((c) => (c.type === "Conflicted" ? c.status === "True" : c.status !== "True"));
  return bad.length ? ` (${bad.map((c) => `${c.type}=${c.status} ${c.reason}`).join(", ")})` : "";
}
