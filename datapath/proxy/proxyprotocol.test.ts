// PROXY protocol: the parser, then through sockets. A Gateway whose Service asks the NLB for it
// (here through infrastructure annotations) gets the client's address from the header; a socket
// whose Gateways did not ask never reads one.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import http2 from "node:http2";
import net from "node:net";
import tls from "node:tls";
import { startEcho, type EchoHttpResponse, type EchoServer } from "../echo/echo.ts";
import { parseProxyHeader } from "./proxyprotocol.ts";
import { backendService, GATEWAY_CLASS_YAML, makeCerts, objectsOf, randomLoopback, startStack, tlsSecret, type Stack, type TestCert } from "./testkit.ts";

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

function ipv6Bytes(a: string): Buffer {
  const [head, tail] = a.split("::");
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill("0"), ...t];
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), i * 2));
  return b;
}

/** A version 2 header: PROXY over TCP (or LOCAL), with a TLV after the addresses as AWS adds one. */
function v2(source: string, o: { local?: boolean; tlv?: boolean } = {}): Buffer {
  const six = source.includes(":");
  const addresses = six
    ? Buffer.concat([ipv6Bytes(source), ipv6Bytes("::1"), Buffer.from([0x30, 0x39, 0x01, 0xbb])])
    : Buffer.concat([Buffer.from(source.split(".").map(Number)), Buffer.from([10, 0, 0, 1]), Buffer.from([0x30, 0x39, 0x00, 0x50])]);
  const tlv = o.tlv ? Buffer.from([0xea, 0x00, 0x04, 0x01, 0x76, 0x70, 0x63]) : Buffer.alloc(0);
  const head = Buffer.from([o.local ? 0x20 : 0x21, six ? 0x21 : 0x11, 0, 0]);
  head.writeUInt16BE(addresses.length + tlv.length, 2);
  return Buffer.concat([V2_SIGNATURE, head, addresses, tlv]);
}

describe("parseProxyHeader", () => {
  it("reads version 2 headers: IPv4, IPv6, LOCAL, with TLVs", () => {
    const four = v2("203.0.113.9", { tlv: true });
    assert.deepEqual(parseProxyHeader(Buffer.concat([four, Buffer.from("GET /")])), { state: "ok", length: four.length, source: "203.0.113.9" });
    const six = v2("2001::9");
    assert.deepEqual(parseProxyHeader(six), { state: "ok", length: six.length, source: "2001::9" });
    const local = v2("203.0.113.9", { local: true });
    assert.deepEqual(parseProxyHeader(local), { state: "ok", length: local.length });
  });

  it("reads version 1 lines", () => {
    const line = "PROXY TCP4 198.51.100.7 10.0.0.1 40000 80\r\n";
    assert.deepEqual(parseProxyHeader(Buffer.from(`${line}GET / HTTP/1.1\r\n`)), { state: "ok", length: line.length, source: "198.51.100.7" });
    assert.deepEqual(parseProxyHeader(Buffer.from("PROXY TCP6 2001:db8::1 ::1 40000 443\r\n")), { state: "ok", length: 38, source: "2001:db8::1" });
    assert.deepEqual(parseProxyHeader(Buffer.from("PROXY UNKNOWN\r\n")), { state: "ok", length: 15 });
  });

  it("asks for more while every byte so far fits, byte by byte", () => {
    for (const whole of [v2("203.0.113.9", { tlv: true }), Buffer.from("PROXY TCP4 198.51.100.7 10.0.0.1 40000 80\r\n")]) {
      for (let n = 1; n < whole.length; n++) assert.deepEqual(parseProxyHeader(whole.subarray(0, n)), { state: "more" }, `${n} bytes`);
    }
  });

  it("tells what cannot start a header from what is a broken one", () => {
    for (const s of ["GET / HTTP/1.1\r\n", "\x16\x03\x01", "PRI * HTTP/2.0", "POST"]) assert.equal(parseProxyHeader(Buffer.from(s, "latin1")).state, "none", s);
    const broken = [
      "PROXY TCP4 300.1.1.1 10.0.0.1 1 2\r\n",
      "PROXY TCP4 198.51.100.7 10.0.0.1 1\r\n",
      "PROXY TCP4 198.51.100.7 10.0.0.1 1 99999\r\n",
      "PROXY TCP6 198.51.100.7 10.0.0.1 1 2\r\n",
      `PROXY TCP4 ${"1".repeat(120)}`,
    ];
    for (const s of broken) assert.equal(parseProxyHeader(Buffer.from(s)).state, "invalid", s);
    const badVersion = v2("203.0.113.9");
    badVersion[12] = 0x31;
    assert.equal(parseProxyHeader(badVersion).state, "invalid");
    const shortV4 = v2("203.0.113.9");
    shortV4.writeUInt16BE(4, 14);
    assert.equal(parseProxyHeader(shortV4).state, "invalid");
  });
});

const NS = "demo";

function gateway(name: string, port: number, proxyProtocol: boolean, tlsListener = false): string {
  const infra = proxyProtocol ? `\n  infrastructure:\n    annotations: {service.beta.kubernetes.io/aws-load-balancer-proxy-protocol: "*"}` : "";
  const https = tlsListener ? `\n  - {name: https, protocol: HTTPS, port: ${port + 363}, tls: {certificateRefs: [{name: pp}]}}` : "";
  return `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: ${name}, namespace: ${NS}}
spec:
  gatewayClassName: sluice${infra}
  listeners:
  - {name: http, protocol: HTTP, port: ${port}, hostname: ${name}.example}${https}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ${name}, namespace: ${NS}}
spec:
  parentRefs: [{name: ${name}}]
  hostnames: [${name}.example]
  rules: [{backendRefs: [{name: echo, port: 8080}]}]
`;
}

describe("PROXY protocol through sockets", () => {
  const addr = randomLoopback();
  const OFFSET = 24000;
  let echo: EchoServer;
  let stack: Stack;
  let cert: TestCert;

  /** An HTTP/1.1 GET sent after `prefix` on a fresh connection: the raw answer ("" when closed unanswered) and what the echo saw. */
  const get = (port: number, host: string, prefix: Buffer | string): Promise<{ raw: string; echo?: EchoHttpResponse }> =>
    new Promise((resolve) => {
      const s = net.connect({ host: addr, port: port + OFFSET });
      let raw = "";
      s.on("data", (c: Buffer) => (raw += c.toString("latin1")));
      s.on("error", () => undefined);
      s.on("close", () => {
        const ok = raw.startsWith("HTTP/1.1 200 ");
        resolve(ok ? { raw, echo: JSON.parse(raw.slice(raw.indexOf("\r\n\r\n") + 4)) as EchoHttpResponse } : { raw });
      });
      s.write(Buffer.concat([Buffer.from(prefix), Buffer.from(`GET /pp HTTP/1.1\r\nhost: ${host}\r\nconnection: close\r\n\r\n`)]));
    });
  const forwardedFor = (r: { echo?: EchoHttpResponse }): string | undefined => r.echo?.headers["X-Forwarded-For"]?.[0];

  before(async () => {
    cert = makeCerts([{ cn: "pp", sans: ["DNS:pp.example"] }]).leaves[0] as TestCert;
    echo = await startEcho({ mode: "http", host: addr, port: 0, identity: { pod: "echo-pod", namespace: NS } });
    // Port 80: only "pp" (required). Port 81: "mixed-pp" and "mixed-plain" share it (optional). Port 82: "plain" (never read).
    stack = await startStack(objectsOf(`${GATEWAY_CLASS_YAML}---
${backendService(NS, "echo", 8080, [{ address: addr, port: echo.port, pod: "echo-pod" }])}---
${tlsSecret(NS, "pp", cert)}---
${gateway("pp", 80, true, true)}---
${gateway("mixed-pp", 81, true)}---
${gateway("mixed-plain", 81, false)}---
${gateway("plain", 82, false)}`), { address: addr, portOffset: OFFSET });
  });
  after(async () => {
    await stack.close();
    await echo.close();
  });

  it("takes the client's address from a version 2 or version 1 header", async () => {
    assert.equal(forwardedFor(await get(80, "pp.example", v2("203.0.113.9", { tlv: true }))), "203.0.113.9");
    assert.equal(forwardedFor(await get(80, "pp.example", "PROXY TCP4 198.51.100.7 10.0.0.1 40000 80\r\n")), "198.51.100.7");
    // LOCAL (a load balancer's health check): the connection's own address.
    assert.equal(forwardedFor(await get(80, "pp.example", v2("203.0.113.9", { local: true }))), "127.0.0.1");
  });

  it("closes a connection without a header, or with a broken one, where every Gateway expects it", async () => {
    assert.equal((await get(80, "pp.example", "")).raw, "");
    assert.equal((await get(80, "pp.example", "PROXY TCP4 bogus\r\n")).raw, "");
  });

  it("reads the header before HTTP/2 and TLS", async () => {
    const h2 = await new Promise<EchoHttpResponse>((resolve, reject) => {
      const session = http2.connect(`http://pp.example`, {
        createConnection: () => {
          const s = net.connect({ host: addr, port: 80 + OFFSET });
          s.write(v2("2001:db8::7"));
          return s;
        },
      });
      session.on("error", reject);
      const st = session.request({ ":path": "/pp", ":authority": "pp.example" });
      let body = "";
      st.on("data", (d: Buffer) => (body += d.toString()));
      st.on("end", () => {
        session.close();
        resolve(JSON.parse(body) as EchoHttpResponse);
      });
    });
    assert.equal(h2.headers["X-Forwarded-For"]?.[0], "2001:db8::7");
    const overTls = await new Promise<EchoHttpResponse>((resolve, reject) => {
      const raw = net.connect({ host: addr, port: 443 + OFFSET }, () => {
        raw.write(v2("203.0.113.44"));
        const t = tls.connect({ socket: raw, servername: "pp.example", rejectUnauthorized: false, ALPNProtocols: ["http/1.1"] }, () => {
          t.write("GET /pp HTTP/1.1\r\nhost: pp.example\r\nconnection: close\r\n\r\n");
        });
        let got = "";
        t.on("data", (c: Buffer) => (got += c.toString("latin1")));
        t.on("error", reject);
        t.on("close", () => resolve(JSON.parse(got.slice(got.indexOf("\r\n\r\n") + 4)) as EchoHttpResponse));
      });
    });
    assert.equal(overTls.headers["X-Forwarded-For"]?.[0], "203.0.113.44");
  });

  it("accepts connections with and without a header where only some Gateways expect it", async () => {
    assert.equal(forwardedFor(await get(81, "mixed-pp.example", v2("203.0.113.9"))), "203.0.113.9");
    assert.equal(forwardedFor(await get(81, "mixed-plain.example", "")), "127.0.0.1");
  });

  it("never reads a header where no Gateway asked for one: a client cannot claim another address", async () => {
    // Not a PROXY header there, but bytes that are no HTTP: 400.
    assert.match((await get(82, "plain.example", v2("203.0.113.9"))).raw, /^HTTP\/1\.1 400 /);
    assert.equal(forwardedFor(await get(82, "plain.example", "")), "127.0.0.1");
  });
});
