// Desired DNS records for Gateway/route hostnames, with external-dns-compatible TXT ownership
// records, so Sluice and a stock external-dns can share a zone without touching each other's names.
import { isIPv4, isIPv6 } from "node:net";
import type { DnsRecord } from "./output.ts";

export interface DnsInput {
  /** `namespace/name` of the Gateway. */
  gateway: string;
  addresses: { type: "IPAddress" | "Hostname"; value: string }[];
  hostnames: {
    name: string;
    /** What asks for the name, as external-dns spells it: `httproute/ns/name`, `gateway/ns/name`, ... */
    resource: string;
  }[];
}

const HERITAGE = "external-dns";
/** Route53 (RFC 1035) caps each TXT character-string at 255 characters. */
const TXT_STRING_MAX = 255;

type DataType = "A" | "AAAA" | "ALIAS";

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function normalizeName(name: string): string {
  return name.trim().toLowerCase().replace(/\.$/, "");
}

function recordType(address: DnsInput["addresses"][number]): DataType | undefined {
  if (address.type === "Hostname") return "ALIAS";
  if (isIPv4(address.value)) return "A";
  if (isIPv6(address.value)) return "AAAA";
  return undefined;
}

/**
 * external-dns's TXT registry name (`AffixNameMapper.ToTXTName`, no prefix/suffix): the lowercased
 * type is prepended to the first label. An ALIAS is an A-ALIAS in external-dns, which since v0.18
 * owns it with the `a-` name, not the legacy `cname-`. Wildcards keep their `*` (external-dns's
 * default, `--txt-wildcard-replacement` unset): `*.example.com` → `a-*.example.com`, which Route53
 * stores as a literal `*` because it is not a whole leftmost label.
 */
export function txtRecordName(name: string, type: DataType): string {
  // With no --txt-suffix, `<type>-<firstLabel>.<rest>` is simply the type prefixed to the name.
  return (type === "AAAA" ? "aaaa-" : "a-") + name;
}

/** Quoted, with values over 255 characters split into several strings as Route53 requires. */
function quoteTxt(value: string): string {
  const chunks: string[] = [];
  for (let i = 0; i < value.length; i += TXT_STRING_MAX) chunks.push(value.slice(i, i + TXT_STRING_MAX));
  return chunks.map((c) => `"${c.replace(/["\\]/g, "\\$&")}"`).join(" ");
}

/** The registry value external-dns writes: heritage first, then its labels with keys sorted. */
export function ownershipValue(ownerId: string, resource: string | undefined): string {
  const labels = [`heritage=${HERITAGE}`, `${HERITAGE}/owner=${ownerId}`];
  if (resource) labels.push(`${HERITAGE}/resource=${resource}`);
  return quoteTxt(labels.join(","));
}

interface Requested {
  targets: Set<string>;
  resources: Set<string>;
}

/** What one input asks for: normalized name → record type → targets and resources. */
type Contribution = Map<string, Map<DataType, Requested>>;

function contributionOf(input: DnsInput): Contribution {
  const out: Contribution = new Map();
  const addresses: { type: DataType; target: string }[] = [];
  for (const address of input.addresses) {
    const type = recordType(address);
    if (type) addresses.push({ type, target: type === "ALIAS" ? normalizeName(address.value) : address.value });
  }
  if (addresses.length === 0) return out;
  for (const host of input.hostnames) {
    const name = normalizeName(host.name);
    // `*` alone (a listener with no hostname) is not a name we can publish.
    if (name === "" || name === "*") continue;
    let types = out.get(name);
    if (!types) out.set(name, (types = new Map()));
    for (const { type, target } of addresses) {
      let r = types.get(type);
      if (!r) types.set(type, (r = { targets: new Set(), resources: new Set() }));
      r.targets.add(target);
      r.resources.add(host.resource);
    }
  }
  return out;
}

function compareRecords(a: DnsRecord, b: DnsRecord): number {
  return compareStrings(a.name, b.name) || compareStrings(a.type, b.type);
}

/**
 * The desired records for a set of inputs, kept up to date as inputs come and go. Inputs are
 * taken as immutable and told apart by instance (the translator hands over the same DnsInput for
 * a Gateway whose translation it reused), so an update re-merges only the names that the
 * added or removed inputs ask for. The result never depends on the update history.
 */
export class DnsRecords {
  private readonly ownerId: string;
  private readonly contributions = new Map<DnsInput, Contribution>();
  /** Normalized name → the contributions asking for it. */
  private readonly byName = new Map<string, Set<Contribution>>();
  /** Normalized name → its records (data records and their ownership TXTs), sorted. */
  private readonly records = new Map<string, DnsRecord[]>();
  /** Every record, sorted by (name, type). */
  private sorted: DnsRecord[] = [];

  constructor(ownerId: string) {
    this.ownerId = ownerId;
  }

  update(inputs: readonly DnsInput[]): DnsRecord[] {
    const next = new Set(inputs);
    const affected = new Set<string>();
    for (const [input, c] of this.contributions) {
      if (next.has(input)) continue;
      this.contributions.delete(input);
      for (const name of c.keys()) {
        affected.add(name);
        const set = this.byName.get(name);
        set?.delete(c);
        if (set?.size === 0) this.byName.delete(name);
      }
    }
    for (const input of next) {
      if (this.contributions.has(input)) continue;
      const c = contributionOf(input);
      this.contributions.set(input, c);
      for (const name of c.keys()) {
        affected.add(name);
        const set = this.byName.get(name);
        if (set) set.add(c);
        else this.byName.set(name, new Set([c]));
      }
    }
    if (affected.size === 0) return [...this.sorted];

    // Same record keys as before: replace in place; otherwise sort everything again.
    let resort = false;
    const replaced: DnsRecord[] = [];
    for (const name of affected) {
      const before = this.records.get(name) ?? [];
      const after = this.merge(name);
      if (after.length) this.records.set(name, after);
      else this.records.delete(name);
      if (before.length !== after.length || before.some((r, i) => compareRecords(r, after[i] as DnsRecord) !== 0)) resort = true;
      else replaced.push(...after);
    }
    if (resort) {
      this.sorted = [...this.records.values()].flat().sort(compareRecords);
    } else {
      for (const r of replaced) this.sorted[indexOf(this.sorted, r)] = r;
    }
    return [...this.sorted];
  }

  /** The records for one name from every contribution asking for it. */
  private merge(name: string): DnsRecord[] {
    const merged = new Map<DataType, Requested>();
    for (const c of this.byName.get(name) ?? []) {
      for (const [type, r] of c.get(name) ?? []) {
        const m = merged.get(type);
        if (!m) merged.set(type, { targets: new Set(r.targets), resources: new Set(r.resources) });
        else {
          for (const t of r.targets) m.targets.add(t);
          for (const x of r.resources) m.resources.add(x);
        }
      }
    }
    const out: DnsRecord[] = [];
    // One TXT per TXT name: an A and an ALIAS for the same name share `a-<name>`, so their
    // resources are pooled and the value stays a single, deterministic string.
    const owners = new Map<string, Set<string>>();
    for (const [type, r] of merged) {
      out.push({ name, type, targets: [...r.targets].sort(compareStrings), resources: [...r.resources].sort(compareStrings) });
      const txtName = txtRecordName(name, type);
      const pooled = owners.get(txtName);
      if (pooled) for (const x of r.resources) pooled.add(x);
      else owners.set(txtName, new Set(r.resources));
    }
    for (const [txtName, pooled] of owners) {
      const resources = [...pooled].sort(compareStrings);
      out.push({ name: txtName, type: "TXT", targets: [ownershipValue(this.ownerId, resources[0])], resources });
    }
    return out.sort(compareRecords);
  }
}

/** Position of a record with the same (name, type) in a sorted list (which must hold one). */
function indexOf(sorted: readonly DnsRecord[], r: DnsRecord): number {
  let lo = 0;
  let hi = sorted.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareRecords(sorted[mid] as DnsRecord, r) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export function desiredDnsRecords(inputs: readonly DnsInput[], ownerId: string): DnsRecord[] {
  return new DnsRecords(ownerId).update(inputs);
}

/** Joins a TXT value's quoted strings (`"a" "b"` → `ab`); an unquoted value is taken as is. */
function unquoteTxt(value: string): string {
  const trimmed = value.trim();
  if (!trimmed.startsWith('"')) return trimmed;
  let out = "";
  const re = /"((?:[^"\\]|\\.)*)"/g;
  for (const m of trimmed.matchAll(re)) out += (m[1] ?? "").replace(/\\(.)/g, "$1");
  return out;
}

/**
 * Reads an ownership TXT value back, as external-dns's `NewLabelsFromStringPlain` does: tokens
 * that are not `key=value` are ignored, a missing or foreign heritage means "not a registry record"
 * (undefined), and a missing owner is the empty owner, which matches no Sluice instance.
 */
export function parseOwnership(txtValue: string): { owner: string; resource?: string } | undefined {
  let heritage = false;
  const labels = new Map<string, string>();
  for (const token of unquoteTxt(txtValue).split(",")) {
    const parts = token.split("=");
    if (parts.length !== 2) continue;
    const [key = "", value = ""] = parts;
    if (key === "heritage") {
      if (value !== HERITAGE) return undefined;
      heritage = true;
    } else if (key.startsWith(`${HERITAGE}/`)) {
      labels.set(key.slice(HERITAGE.length + 1), value);
    }
  }
  if (!heritage) return undefined;
  const resource = labels.get("resource");
  return { owner: labels.get("owner") ?? "", ...(resource !== undefined ? { resource } : {}) };
}
