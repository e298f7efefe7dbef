// Label and field selectors with the API server's syntax: `a=b`, `a==b`, `a!=b`, `a in (x,y)`,
// `a notin (x)`, `a`, `!a` for labels; `path=v`, `path==v`, `path!=v` for fields.
export type Requirement =
  | { key: string; op: "=" | "!="; value: string }
  | { key: string; op: "in" | "notin"; values: string[] }
  | { key: string; op: "exists" | "!exists" };

export class SelectorError extends Error {}

/** Splits on commas that are not inside parentheses. */
function splitTop(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = "";
  for (const ch of s) {
    if (ch === "(") depth++;
    if (ch === ")") depth--;
    if (ch === "," && depth === 0) {
      out.push(cur);
      cur = "";
    } else cur += ch;
  }
  out.push(cur);
  return out.map((x) => x.trim()).filter((x) => x !== "");
}

const LABEL_KEY = /^([a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?)$/;

export function parseLabelSelector(s: string): Requirement[] {
  const reqs: Requirement[] = [];
  for (const part of splitTop(s)) {
    let m = /^([^\s!=()]+)\s+(in|notin)\s*\(([^)]*)\)$/.exec(part);
    let req: Requirement;
    if (m) {
      const values = (m[3] ?? "").split(",").map((v) => v.trim()).filter((v) => v !== "");
      req = { key: m[1] ?? "", op: m[2] === "in" ? "in" : "notin", values };
      for (const v of values) if (!LABEL_VALUE.test(v)) throw new SelectorError(`invalid label value: ${JSON.stringify(v)}`);
    } else if ((m = /^([^\s!=()]+)\s*(==|=|!=)\s*([^\s!=()]*)$/.exec(part))) {
      const value = m[3] ?? "";
      if (!LABEL_VALUE.test(value)) throw new SelectorError(`invalid label value: ${JSON.stringify(value)}`);
      req = { key: m[1] ?? "", op: m[2] === "!=" ? "!=" : "=", value };
    } else if ((m = /^(!?)\s*([^\s!=()]+)$/.exec(part))) {
      req = { key: m[2] ?? "", op: m[1] ? "!exists" : "exists" };
    } else {
      throw new SelectorError(`unable to parse requirement: ${JSON.stringify(part)}`);
    }
    if (!LABEL_KEY.test(req.key)) throw new SelectorError(`invalid label key ${JSON.stringify(req.key)}`);
    reqs.push(req);
  }
  return reqs;
}

export function parseFieldSelector(s: string, supported: (field: string) => boolean): Requirement[] {
  const reqs: Requirement[] = [];
  for (const part of splitTop(s)) {
    const m = /^([^\s!=]+)\s*(==|=|!=)\s*(.*)$/.exec(part);
    if (!m) throw new SelectorError(`invalid selector: '${s}'; can't understand '${part}'`);
    const key = m[1] ?? "";
    if (!supported(key)) throw new SelectorError(`field label not supported: ${key}`);
    reqs.push({ key, op: m[2] === "!=" ? "!=" : "=", value: (m[3] ?? "").trim() });
  }
  return reqs;
}

export function matches(reqs: readonly Requirement[], get: (key: string) => string | undefined): boolean {
  return reqs.every((r) => {
    const v = get(r.key);
    switch (r.op) {
      case "=": return v === r.value;
      // The real server's `!=` also matches objects without the label.
      case "!=": return v !== r.value;
      case "in": return v !== undefined && r.values.includes(v);
      case "notin": return v === undefined || !r.values.includes(v);
      case "exists": return v !== undefined;
      case "!exists": return v === undefined;
    }
    return false;
  });
}
