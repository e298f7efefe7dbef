// Items (clusters, certificates, CA bundles) that several Gateways may each provide under the same
// id, merged into one list sorted by id: an id's item is the one of the first Gateway in key order
// that has it. Kept up to date from the Gateways whose items changed, so a tick that re-translates
// one Gateway does not walk every Gateway's items.

export interface ItemsChange<T> {
  /** Gateway key. */
  key: string;
  before: readonly T[];
  after: readonly T[];
}

export class FirstById<T extends { id: string }> {
  /** id → Gateway key → that Gateway's item. */
  private readonly providers = new Map<string, Map<string, T>>();
  private readonly chosen = new Map<string, T>();
  private sorted: T[] = [];

  update(changes: readonly ItemsChange<T>[]): T[] {
    const affected = new Set<string>();
    for (const { key, before } of changes) {
      for (const item of before) {
        affected.add(item.id);
        const p = this.providers.get(item.id);
        p?.delete(key);
        if (p?.size === 0) this.providers.delete(item.id);
      }
    }
    for (const { key, after } of changes) {
      for (const item of after) {
        affected.add(item.id);
        const p = this.providers.get(item.id);
        if (!p) this.providers.set(item.id, new Map([[key, item]]));
        // A Gateway listing an id twice: its first item counts.
        else if (!p.has(key)) p.set(key, item);
      }
    }
    if (affected.size === 0) return [...this.sorted];

    let resort = false;
    const replaced: T[] = [];
    for (const id of affected) {
      const p = this.providers.get(id);
      let first: string | undefined;
      if (p) for (const key of p.keys()) if (first === undefined || key < first) first = key;
      const item = first === undefined ? undefined : p?.get(first);
      const had = this.chosen.get(id);
      if (item === had) continue;
      if (!item) this.chosen.delete(id);
      else this.chosen.set(id, item);
      if (!item || !had) resort = true;
      else replaced.push(item);
    }
    if (resort) this.sorted = [...this.chosen.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
    else for (const item of replaced) this.sorted[indexOf(this.sorted, item.id)] = item;
    return [...this.sorted];
  }
}

/** Position of an id in a list sorted by id (which must hold it). */
function indexOf(sorted: readonly { id: string }[], id: string): number {
  let lo = 0;
  let hi = sorted.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((sorted[mid] as { id: string }).id < id) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
