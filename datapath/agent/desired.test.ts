// Desired state from translator output: frontends, tables, L7 steering, conflicts, SNAT.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { FRONTEND_L7_PROXY } from "../bpf/state.ts";
import type { GatewayDatapath, L4Service } from "../../operator/translate/output.ts";
import { desiredState } from "./desired.ts";
import { routeSnat, snatFromRoute } from "./snat.ts";
import { datapathOf, l4Service, l4Yaml } from "./testkit.ts";

const yaml = l4Yaml({
  tcp: { port: 9000, backends: [{ name: "a", weight: 80, endpoints: [{ address: "10.0.0.1", port: 8080 }] }, { name: "b", weight: 20, endpoints: [{ address: "10.0.0.2", port: 8080 }] }] },
  udp: { port: 9001, backends: [{ name: "u", endpoints: [{ address: "10.0.0.3", port: 53 }, { address: "10.0.0.4", port: 53 }] }] },
});

function l4(id: string, protocol: "TCP" | "UDP", addresses: string[], port: number, backends: Parameters<typeof l4Service>[4], m = 251): L4Service {
  return l4Service(id, protocol, addresses, port, backends, m);
}

const gw = (name: string, l4s: L4Service[], ports: number[] = [], addresses = ["127.0.0.9"]): GatewayDatapath => ({
  gateway: name,
  configHash: name,
  addresses,
  ports: ports.map((port) => ({ port, listeners: [] })),
  l4: l4s,
});

describe("desiredState", () => {
  it("turns TCPRoute and UDPRoute listeners into frontends on port+offset with their Maglev tables", () => {
    const d = desiredState(datapathOf(yaml, ["127.0.0.9", "127.0.0.10"]), { maglevSize: 251, portOffset: 1000 });
    assert.deepEqual(d.problems, []);
    assert.deepEqual(d.services.map((s) => s.key), ["default/gw/tcp", "default/gw/udp"]);
    const [tcp, udp] = d.services;
    assert.ok(tcp && udp);
    assert.deepEqual(tcp.frontends, [
      { address: "127.0.0.9", port: 10000, protocol: "TCP", flags: 0 },
      { address: "127.0.0.10", port: 10000, protocol: "TCP", flags: 0 },
    ]);
    assert.deepEqual(udp.backends, ["10.0.0.3:53/UDP", "10.0.0.4:53/UDP"]);
    assert.equal(tcp.table.length, 251);
    // 80/20 over the table's slots (Maglev's spread is within a few slots).
    const share = tcp.table.filter((i) => tcp.backends[i] === "10.0.0.1:8080/TCP").length / 251;
    assert.ok(Math.abs(share - 0.8) < 0.03, `share ${share}`);
    assert.deepEqual(d.vips, ["127.0.0.10", "127.0.0.9"]);
    assert.deepEqual(d.backends.map((b) => b.key), ["10.0.0.1:8080/TCP", "10.0.0.2:8080/TCP", "10.0.0.3:53/UDP", "10.0.0.4:53/UDP"]);
  });

  it("rebuilds a table of another size with the same weights", () => {
    const big = datapathOf(yaml, ["127.0.0.9"], 16381);
    const d = desiredState(big, { maglevSize: 1021 });
    const tcp = d.services[0];
    assert.ok(tcp);
    assert.equal(tcp.table.length, 1021);
    const share = tcp.table.filter((i) => i === 0).length / 1021;
    assert.ok(Math.abs(share - 0.8) < 0.02, `share ${share}`);
  });

  it("steers L7 ports to the local proxy with one-backend tables, flagged and never SNATed", () => {
    const d = desiredState([gw("ns/web", [], [80, 443], ["10.9.0.1", "10.9.0.2"])], {
      maglevSize: 251,
      l7Proxy: (_a, port) => ({ address: "10.9.0.254", port: port + 10000 }),
      snatFor: () => "192.0.2.1",
    });
    assert.deepEqual(d.services.map((s) => s.key), ["l7 10.9.0.254:10080/TCP", "l7 10.9.0.254:10443/TCP"]);
    const s = d.services[0];
    assert.ok(s);
    assert.deepEqual(s.frontends.map((f) => [f.address, f.port, f.flags]), [["10.9.0.1", 80, FRONTEND_L7_PROXY], ["10.9.0.2", 80, FRONTEND_L7_PROXY]]);
    assert.ok(s.table.every((i) => i === 0));
    assert.equal(d.backends[0]?.snatAddress, undefined);
    // Without an l7Proxy option (standalone: the proxy listens on the addresses itself) no L7 frontends.
    assert.deepEqual(desiredState([gw("ns/web", [], [80])], { maglevSize: 251 }).services, []);
  });

  it("asks snatFor about every backend", () => {
    const d = desiredState(datapathOf(yaml, ["127.0.0.9"]), { maglevSize: 251, snatFor: (a) => (a === "10.0.0.2" ? "192.0.2.7" : undefined) });
    assert.deepEqual(d.backends.filter((b) => b.snatAddress).map((b) => [b.key, b.snatAddress]), [["10.0.0.2:8080/TCP", "192.0.2.7"]]);
  });

  it("serves a contested frontend once, for the first Gateway by name, and says so", () => {
    const a = l4("ns/a/tcp", "TCP", ["127.0.0.9"], 9000, [{ address: "10.0.0.1", port: 1, weight: 1 }]);
    const b = l4("ns/b/tcp", "TCP", ["127.0.0.9"], 9000, [{ address: "10.0.0.2", port: 1, weight: 1 }]);
    const d = desiredState([gw("ns/b", [b]), gw("ns/a", [a])], { maglevSize: 251 });
    assert.deepEqual(d.services.map((s) => s.key), ["ns/a/tcp"]);
    assert.match(d.problems.join("\n"), /ns\/b\/tcp: frontend 127\.0\.0\.9:9000\/TCP is already served for ns\/a\/tcp/);
  });

  it("keeps a service with no active backend out (no table, no frontend) but its address stays a VIP and its backends stay", () => {
    const s = l4("ns/a/udp", "UDP", ["127.0.0.9"], 53, [{ address: "10.0.0.1", port: 53, weight: 1, terminating: true }]);
    assert.equal(s.maglev.length, 0);
    const d = desiredState([gw("ns/a", [s])], { maglevSize: 251 });
    assert.deepEqual(d.services, []);
    assert.deepEqual(d.vips, ["127.0.0.9"]);
    assert.deepEqual(d.backends.map((b) => b.key), ["10.0.0.1:53/UDP"]);
    assert.deepEqual(desiredState([gw("ns/a", [s])], { maglevSize: 251, dropUnknownPorts: false }).vips, []);
  });

  it("reports frontends pushed out of range by the offset and rejects unsupported table sizes", () => {
    const s = l4("ns/a/tcp", "TCP", ["127.0.0.9"], 65000, [{ address: "10.0.0.1", port: 1, weight: 1 }]);
    const d = desiredState([gw("ns/a", [s])], { maglevSize: 251, portOffset: 1000 });
    assert.deepEqual(d.services, []);
    assert.match(d.problems.join(), /out of range/);
    assert.throws(() => desiredState([], { maglevSize: 1000 }), /unsupported Maglev table size 1000/);
  });

  it("brackets IPv6 addresses in keys when the maps take IPv6, and otherwise leaves IPv6 out with a reason", () => {
    const s = l4("ns/a/tcp", "TCP", ["fd00::1", "127.0.0.9"], 80, [{ address: "fd00::2", port: 8080, weight: 1 }, { address: "10.0.0.1", port: 8080, weight: 1 }]);
    const d = desiredState([gw("ns/a", [s], [], ["fd00::1"])], { maglevSize: 251, ipv6: true });
    assert.deepEqual(d.backends.map((b) => b.key), ["10.0.0.1:8080/TCP", "[fd00::2]:8080/TCP"]);
    const v4 = desiredState([gw("ns/a", [s], [], ["fd00::1"])], { maglevSize: 251 });
    assert.deepEqual(v4.backends.map((b) => b.key), ["10.0.0.1:8080/TCP"]);
    assert.deepEqual(v4.services[0]?.frontends.map((f) => f.address), ["127.0.0.9"]);
    assert.ok(v4.services[0]?.table.every((i) => i === 0), "the table is rebuilt over the IPv4 backend alone");
    assert.match(v4.problems.join("\n"), /ns\/a\/tcp: IPv6 backend fd00::2 left out/);
    assert.match(v4.problems.join("\n"), /frontend address fd00::1 is IPv6/);
  });
});

describe("SNAT from routes", () => {
  it("SNATs to the preferred source only when the route goes via a gateway", () => {
    assert.equal(snatFromRoute('[{"dst":"10.2.0.7","gateway":"10.1.0.2","dev":"eth0","prefsrc":"10.1.0.1","flags":[],"uid":0,"cache":[]}]'), "10.1.0.1");
    assert.equal(snatFromRoute('[{"dst":"10.1.0.7","dev":"eth0","prefsrc":"10.1.0.1","flags":[],"uid":0,"cache":[]}]'), undefined);
    assert.equal(snatFromRoute('[{"type":"local","dst":"127.0.0.1","dev":"lo","prefsrc":"127.0.0.1"}]'), undefined);
    assert.equal(snatFromRoute("not json"), undefined);
    assert.equal(snatFromRoute("[]"), undefined);
  });

  it("asks the kernel: a loopback backend needs no SNAT, a bad address none either", async () => {
    const snat = routeSnat();
    assert.equal(await snat("127.0.0.1"), undefined);
    assert.equal(await snat("not-an-ip"), undefined);
  });
});
