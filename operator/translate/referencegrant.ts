// ReferenceGrant: a cross-namespace reference is allowed only when a grant in the target's
// namespace names the referrer's (group, kind, namespace) and the target's (group, kind[, name]).
import type { ReferenceGrant } from "../api/objects.ts";

export interface RefFrom { group: string; kind: string; namespace: string }
export interface RefTo { group: string; kind: string; namespace: string; name: string }

export class ReferenceGrants {
  private readonly byNamespace = new Map<string, ReferenceGrant[]>();

  constructor(grants: Iterable<ReferenceGrant>) {
    for (const g of grants) {
      const ns = g.metadata.namespace ?? "default";
      const list = this.byNamespace.get(ns);
      if (list) list.push(g);
      else this.byNamespace.set(ns, [g]);
    }
  }

  allows(from: RefFrom, to: RefTo): boolean {
    if (from.namespace === to.namespace) return true;
    for (const g of this.byNamespace.get(to.namespace) ?? []) {
      const froms = Array.isArray(g.spec?.from) ? g.spec.from : [];
      const tos = Array.isArray(g.spec?.to) ? g.spec.to : [];
      const fromOk = froms.some((f) => (f.group ?? "") === from.group && f.kind === from.kind && f.namespace === from.namespace);
      if (!fromOk) continue;
      if (tos.some((t) => (t.group ?? "") === to.group && t.kind === to.kind && (t.name === undefined || t.name === "" || t.name === to.name))) {
        return true;
      }
    }
    return false;
  }
}
