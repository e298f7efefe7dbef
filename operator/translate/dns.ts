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

interface Entry<T extends DnsRecord["type"]> {
  name: string;
  type: T;
  targets: Set<string>;
  resources: Set<string>;
}

/** Entries keyed by (name, type); targets and resources of repeated requests are merged. */
class Entries<T extends DnsRecord["type"]> {
  readonly byKey = new Map<string, Entry<T>>();
  get(name: string, type: T): Entry<T> {
    const key = `${name}\u0000${type}`;
    let e = this.byKey.get(key);
    if (!e) this.byKey.set(key, (e = { name, type, targets: new Set(), resources: new Set() }));
    return e;
  }
}

function toRecord(e: Entry<DnsRecord["type"]>): DnsRecord {
  return {
    name: e.name,
    type: e.type,
    targets: [...e.targets].sort(compareStrings),
    resources: [...e.resources].sort(compareStrings),
  };
}

export function desiredDnsRecords(inputs: readonly DnsInput[], ownerId: string): DnsRecord[] {
  const data = new Entries<DataType>();
  for (const input of inputs) {
    for (const host of input.hostnames) {
      const name = normalizeName(host.name);
      // `*` alone (a listener with no hostname) is not a name we can publish.
      if (name === "" || name === "*") continue;
      for (const address of input.addresses) {
        const type = recordType(address);
        if (!type) continue;
        const e = data.get(name, type);
        e.targets.add(type === "ALIAS" ? normalizeName(address.value) : address.value);
        e.resources.add(host.resource);
      }
    }
  }

  // One TXT per TXT name: an A and an ALIAS for the same name share `a-<name>`, so their
  // resources are pooled and the value stays a single, deterministic string.
  const txt = new Entries<"TXT">();
  for (const record of data.byKey.values()) {
    const t = txt.get(txtRecordName(record.name, record.type), "TXT");
    for (const r of record.resources) t.resources.add(r);
  }
  for (const t of txt.byKey.values()) {
    t.targets.add(ownershipValue(ownerId, [...t.resources].sort(compareStrings)[0]));
  }

  return [...data.byKey.values(), ...txt.byKey.values()]
    .map(toRecord)
    .sort((a, b) => compareStrings(a.name, b.name) || compareStrings(a.type, b.type));
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
