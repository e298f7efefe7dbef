import { test } from "node:test";
import assert from "node:assert/strict";
import { isIPv4, isIPv6 } from "node:net";
import type { DnsInput } from "./dns.ts";
import { desiredDnsRecords, DnsRecords, ownershipValue, parseOwnership, txtRecordName } from "./dns.ts";
import type { DnsRecord } from "./output.ts";

const NLB = "k8s-apps-sluicewe-0123456789-abcdef.elb.us-east-1.amazonaws.com";

function txt(owner: string, resource: string): string {
  return `"heritage=external-dns,external-dns/owner=${owner},external-dns/resource=${resource}"`;
}

test("IPv4 → A, IPv6 → AAAA, each with its ownership TXT", () => {
  const inputs: DnsInput[] = [{
    gateway: "apps/web",
    addresses: [
      { type: "IPAddress", value: "203.0.113.10" },
      { type: "IPAddress", value: "2001:db8::1" },
      { type: "IPAddress", value: "198.51.100.7" },
    ],
    hostnames: [{ name: "app.example.com", resource: "httproute/apps/app" }],
  }];
  assert.deepEqual(desiredDnsRecords(inputs, "sluice"), [
    { name: "a-app.example.com", type: "TXT", targets: [txt("sluice", "httproute/apps/app")], resources: ["httproute/apps/app"] },
    { name: "aaaa-app.example.com", type: "TXT", targets: [txt("sluice", "httproute/apps/app")], resources: ["httproute/apps/app"] },
    { name: "app.example.com", type: "A", targets: ["198.51.100.7", "203.0.113.10"], resources: ["httproute/apps/app"] },
    { name: "app.example.com", type: "AAAA", targets: ["2001:db8::1"], resources: ["httproute/apps/app"] },
  ]);
});

test("a Hostname address becomes an ALIAS owned through the a- TXT name", () => {
  const inputs: DnsInput[] = [{
    gateway: "apps/web",
    addresses: [{ type: "Hostname", value: NLB }],
    hostnames: [{ name: "app.example.com", resource: "gateway/apps/web" }],
  }];
  assert.deepEqual(desiredDnsRecords(inputs, "cluster-1"), [
    { name: "a-app.example.com", type: "TXT", targets: [txt("cluster-1", "gateway/apps/web")], resources: ["gateway/apps/web"] },
    { name: "app.example.com", type: "ALIAS", targets: [NLB], resources: ["gateway/apps/web"] },
  ]);
});

test("empty and bare * hostnames are skipped, and so are addresses that are not IPs", () => {
  const inputs: DnsInput[] = [{
    gateway: "apps/web",
    addresses: [{ type: "IPAddress", value: "not-an-ip" }, { type: "IPAddress", value: "10.0.0.1" }],
    hostnames: [{ name: "", resource: "gateway/apps/web" }, { name: "*", resource: "gateway/apps/web" }],
  }];
  assert.deepEqual(desiredDnsRecords(inputs, "o"), []);
  assert.deepEqual(desiredDnsRecords([{ ...inputs[0]!, hostnames: [{ name: "x.example.com", resource: "r" }] }], "o")
    .filter((r) => r.type !== "TXT").map((r) => r.targets), [["10.0.0.1"]]);
});

test("wildcards keep the * in the TXT name (external-dns default)", () => {
  const records = desiredDnsRecords([{
    gateway: "apps/web",
    addresses: [{ type: "Hostname", value: NLB }],
    hostnames: [{ name: "*.example.com", resource: "gateway/apps/web" }],
  }], "o");
  assert.deepEqual(records.map((r) => [r.name, r.type]), [["*.example.com", "ALIAS"], ["a-*.example.com", "TXT"]]);
});

test("one name asked for by several Gateways and routes merges targets and resources", () => {
  const records = desiredDnsRecords([
    {
      gateway: "apps/b",
      addresses: [{ type: "IPAddress", value: "10.0.0.2" }],
      hostnames: [{ name: "shop.example.com", resource: "httproute/apps/z" }],
    },
    {
      gateway: "apps/a",
      addresses: [{ type: "IPAddress", value: "10.0.0.1" }, { type: "IPAddress", value: "10.0.0.2" }],
      hostnames: [
        { name: "Shop.Example.com.", resource: "httproute/apps/y" },
        { name: "shop.example.com", resource: "httproute/apps/z" },
      ],
    },
  ], "o");
  assert.deepEqual(records, [
    { name: "a-shop.example.com", type: "TXT", targets: [txt("o", "httproute/apps/y")], resources: ["httproute/apps/y", "httproute/apps/z"] },
    { name: "shop.example.com", type: "A", targets: ["10.0.0.1", "10.0.0.2"], resources: ["httproute/apps/y", "httproute/apps/z"] },
  ]);
});

test("several ALIAS targets for one name stay one record", () => {
  const other = "other-0123.elb.eu-west-1.amazonaws.com";
  const records = desiredDnsRecords([
    { gateway: "a/x", addresses: [{ type: "Hostname", value: NLB }], hostnames: [{ name: "m.example.com", resource: "gateway/a/x" }] },
    { gateway: "b/y", addresses: [{ type: "Hostname", value: `${other}.` }], hostnames: [{ name: "m.example.com", resource: "gateway/b/y" }] },
  ], "o");
  assert.deepEqual(records.filter((r) => r.type === "ALIAS"), [
    { name: "m.example.com", type: "ALIAS", targets: [NLB, other].sort(), resources: ["gateway/a/x", "gateway/b/y"] },
  ]);
});

test("an A and an ALIAS for one name share a single a- TXT record", () => {
  const records = desiredDnsRecords([
    { gateway: "a/x", addresses: [{ type: "IPAddress", value: "10.0.0.1" }], hostnames: [{ name: "m.example.com", resource: "gateway/a/x" }] },
    { gateway: "b/y", addresses: [{ type: "Hostname", value: NLB }], hostnames: [{ name: "m.example.com", resource: "gateway/b/y" }] },
  ], "o");
  assert.deepEqual(records.filter((r) => r.type === "TXT"), [
    { name: "a-m.example.com", type: "TXT", targets: [txt("o", "gateway/a/x")], resources: ["gateway/a/x", "gateway/b/y"] },
  ]);
});

test("output is sorted by name then type, independent of input order", () => {
  const inputs: DnsInput[] = [
    { gateway: "a/x", addresses: [{ type: "IPAddress", value: "10.0.0.1" }, { type: "IPAddress", value: "::1" }],
      hostnames: [{ name: "b.example.com", resource: "r1" }, { name: "a.example.com", resource: "r2" }] },
    { gateway: "a/y", addresses: [{ type: "Hostname", value: NLB }], hostnames: [{ name: "c.example.com", resource: "r3" }] },
  ];
  const forward = desiredDnsRecords(inputs, "o");
  const backward = desiredDnsRecords([...inputs].reverse(), "o");
  assert.deepEqual(forward, backward);
  const keys = forward.map((r) => `${r.name} ${r.type}`);
  assert.deepEqual(keys, [
    "a-a.example.com TXT", "a-b.example.com TXT", "a-c.example.com TXT",
    "a.example.com A", "a.example.com AAAA",
    "aaaa-a.example.com TXT", "aaaa-b.example.com TXT",
    "b.example.com A", "b.example.com AAAA",
    "c.example.com ALIAS",
  ]);
});

test("txtRecordName prefixes the first label with the record type", () => {
  assert.equal(txtRecordName("app.example.com", "A"), "a-app.example.com");
  assert.equal(txtRecordName("app.example.com", "AAAA"), "aaaa-app.example.com");
  assert.equal(txtRecordName("app.example.com", "ALIAS"), "a-app.example.com");
  assert.equal(txtRecordName("*.example.com", "AAAA"), "aaaa-*.example.com");
  assert.equal(txtRecordName("localhost", "A"), "a-localhost");
});

test("parseOwnership round-trips the values we write", () => {
  assert.deepEqual(parseOwnership(txt("sluice", "httproute/apps/app")), { owner: "sluice", resource: "httproute/apps/app" });
  assert.deepEqual(parseOwnership(ownershipValue("o", undefined)), { owner: "o" });
  for (const r of desiredDnsRecords([{
    gateway: "apps/web",
    addresses: [{ type: "Hostname", value: NLB }],
    hostnames: [{ name: "app.example.com", resource: "gateway/apps/web" }],
  }], "cluster-1").filter((x) => x.type === "TXT")) {
    assert.deepEqual(parseOwnership(r.targets[0] ?? ""), { owner: "cluster-1", resource: "gateway/apps/web" });
  }
});

test("long ownership values are split into 255-char strings and still parse", () => {
  const resource = `httproute/${"n".repeat(63)}/${"r".repeat(253)}`;
  const value = ownershipValue("sluice", resource);
  const strings = [...value.matchAll(/"([^"]*)"/g)].map((m) => m[1] ?? "");
  assert.ok(strings.length > 1);
  assert.ok(strings.every((s) => s.length <= 255));
  assert.deepEqual(parseOwnership(value), { owner: "sluice", resource });
});

test("parseOwnership accepts external-dns's own records, unquoted values and unknown labels", () => {
  assert.deepEqual(parseOwnership("heritage=external-dns,external-dns/owner=default"), { owner: "default" });
  assert.deepEqual(
    parseOwnership('"heritage=external-dns,external-dns/owner=x,external-dns/resource=service/ns/s,external-dns/extra=1,junk"'),
    { owner: "x", resource: "service/ns/s" },
  );
  assert.deepEqual(parseOwnership('"heritage=external-dns"'), { owner: "" }, "no owner matches no one");
});

test("parseOwnership rejects TXT records it does not own", () => {
  assert.equal(parseOwnership('"v=spf1 include:_spf.example.com ~all"'), undefined);
  assert.equal(parseOwnership('"google-site-verification=abc"'), undefined);
  assert.equal(parseOwnership('"heritage=other,external-dns/owner=sluice"'), undefined);
  assert.equal(parseOwnership('"external-dns/owner=sluice"'), undefined);
  assert.equal(parseOwnership('"heritage=external-dns,heritage=evil,external-dns/owner=sluice"'), undefined);
  assert.equal(parseOwnership(""), undefined);
});

// ---- incremental updates ----

/** The merge by definition, from scratch (the one-shot algorithm DnsRecords must agree with). */
function reference(inputs: readonly DnsInput[], ownerId: string): DnsRecord[] {
  const norm = (n: string) => n.trim().toLowerCase().replace(/\.$/, "");
  const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  const data = new Map<string, { name: string; type: DnsRecord["type"]; targets: Set<string>; resources: Set<string> }>();
  const entry = (m: typeof data, name: string, type: DnsRecord["type"]) => {
    let e = m.get(`${name} ${type}`);
    if (!e) m.set(`${name} ${type}`, (e = { name, type, targets: new Set(), resources: new Set() }));
    return e;
  };
  for (const input of inputs) {
    for (const host of input.hostnames) {
      const name = norm(host.name);
      if (name === "" || name === "*") continue;
      for (const a of input.addresses) {
        const type = a.type === "Hostname" ? "ALIAS" : isIPv4(a.value) ? "A" : isIPv6(a.value) ? "AAAA" : undefined;
        if (!type) continue;
        const e = entry(data, name, type);
        e.targets.add(type === "ALIAS" ? norm(a.value) : a.value);
        e.resources.add(host.resource);
      }
    }
  }
  const txt = new Map<string, { name: string; type: DnsRecord["type"]; targets: Set<string>; resources: Set<string> }>();
  for (const r of data.values()) {
    const t = entry(txt, txtRecordName(r.name, r.type as "A"), "TXT");
    for (const x of r.resources) t.resources.add(x);
  }
  for (const t of txt.values()) t.targets.add(ownershipValue(ownerId, [...t.resources].sort(cmp)[0]));
  return [...data.values(), ...txt.values()]
    .map((e) => ({ name: e.name, type: e.type, targets: [...e.targets].sort(cmp), resources: [...e.resources].sort(cmp) }))
    .sort((a, b) => cmp(a.name, b.name) || cmp(a.type, b.type));
}

function rng(seed: number): () => number {
  let x = seed >>> 0;
  return () => ((x = (Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0) / 2 ** 32);
}

test("DnsRecords: random input sets, updated incrementally, equal a merge from scratch", () => {
  const names = ["a.example.com", "A.example.com.", "b.example.com", "*.example.com", "*", "", "aaa-b.example.com", "a-b.example.com", "c.example.org"];
  const addresses: DnsInput["addresses"] = [
    { type: "IPAddress", value: "10.0.0.1" }, { type: "IPAddress", value: "10.0.0.2" }, { type: "IPAddress", value: "2001:db8::1" },
    { type: "IPAddress", value: "not-an-ip" }, { type: "Hostname", value: NLB }, { type: "Hostname", value: "LB.example.net." },
  ];
  for (const seed of [1, 2, 3, 4, 5]) {
    const r = rng(seed);
    const pick = <T>(xs: readonly T[], p: number) => xs.filter(() => r() < p);
    const input = (gw: number): DnsInput => ({
      gateway: `ns/gw-${gw}`,
      addresses: pick(addresses, 0.35),
      hostnames: pick(names, 0.3).map((name) => ({ name, resource: `httproute/ns/r${Math.floor(r() * 4)}` })),
    });
    const records = new DnsRecords("owner");
    const current: DnsInput[] = [input(0), input(1), input(2)];
    for (let step = 0; step < 200; step++) {
      const x = r();
      if (x < 0.5 && current.length) current[Math.floor(r() * current.length)] = input(step);
      else if (x < 0.7) current.push(input(step));
      else if (x < 0.9 && current.length) current.splice(Math.floor(r() * current.length), 1);
      // else: the same inputs again
      assert.deepEqual(records.update(current), reference(current, "owner"), `seed ${seed}, step ${step}`);
    }
  }
});

test("DnsRecords: an unchanged input set gives equal records and repeated inputs count once", () => {
  const input: DnsInput = { gateway: "a/x", addresses: [{ type: "IPAddress", value: "10.0.0.1" }], hostnames: [{ name: "m.example.com", resource: "gateway/a/x" }] };
  const records = new DnsRecords("o");
  const first = records.update([input]);
  const again = records.update([input, input]);
  assert.deepEqual(again, first);
  assert.notEqual(again, first, "each update returns its own array");
  assert.deepEqual(records.update([]), []);
  assert.deepEqual(records.update([input]), first);
});
