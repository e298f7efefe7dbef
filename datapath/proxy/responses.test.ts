// What the proxy relays of a backend's answer, against a raw backend that sends exact bytes:
// interim (1xx) answers, hop-by-hop headers, and answers that cannot be relayed safely.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import http2 from "node:http2";
import net from "node:net";
import { backendService, httpGatewayYaml, objectsOf, randomLoopback, startStack, type Stack } from "./testkit.ts";

const NS = "demo";

/** Raw answers by request path (`GET /<name>`). */
const ANSWERS: Record<string, string> = {
  early: "HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfinal",
  processing: "HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfinal",
  listed: "HTTP/1.1 200 OK\r\nconnection: keep-alive, x-hop\r\nx-hop: secret\r\nx-end: kept\r\ncontent-length: 2\r\n\r\nok",
  "bad-status": "HTTP/1.1 099 Odd\r\ncontent-length: 2\r\n\r\nok",
  "cl-and-te": "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
  // 40 KB of cookies: past undici's 16 KiB default, within Envoy's 60 KiB.
  "big-head": `HTTP/1.1 200 OK\r\n${Array.from({ length: 10 }, (_, i) => `set-cookie: c${i}=${"v".repeat(4000)}\r\n`).join("")}content-length: 2\r\n\r\nok`,
};

async function startRawBackend(address: string): Promise<{ port: number; close: () => void }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.on("error", () => undefined);
    let buf = "";
    s.on("data", (c: Buffer) => {
      buf += c.toString("latin1");
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      const path = /^GET \/([\w-]+)/.exec(buf)?.[1] ?? "";
      buf = buf.slice(end + 4);
      s.write(Buffer.from(ANSWERS[path] ?? "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n", "latin1"));
    });
  });
  await new Promise<void>((r) => server.listen(0, address, r));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

describe("backend answers", () => {
  const addr = randomLoopback();
  let backend: { port: number; close: () => void };
  let stack: Stack;
  const port = (): number => 80 + stack.portOffset;

  /** The bytes an HTTP/1.x client receives for one request on a connection of its own. */
  const rawGet = (path: string, version = "1.1"): Promise<string> =>
    new Promise((resolve) => {
      const s = net.connect({ host: addr, port: port() });
      let got = "";
      s.on("data", (c: Buffer) => (got += c.toString("latin1")));
      s.on("error", () => undefined);
      s.on("close", () => resolve(got));
      s.write(`GET /${path} HTTP/${version}\r\nhost: answers.example\r\nconnection: close\r\n\r\n`);
    });

  /** Every head an HTTP/2 client receives for one request, interim ones first, and the body. */
  const h2Get = async (path: string): Promise<{ heads: http2.IncomingHttpHeaders[]; body: string }> => {
    const c = http2.connect(`http://${addr}:${port()}`);
    c.on("error", () => undefined);
    try {
      const st = c.request({ ":path": `/${path}`, ":authority": "answers.example" });
      const heads: http2.IncomingHttpHeaders[] = [];
      st.on("headers", (h) => heads.push(h));
      st.on("response", (h) => heads.push(h));
      let body = "";
      st.on("data", (d: Buffer) => (body += d.toString()));
      await new Promise((r) => st.once("close", r));
      return { heads, body };
    } finally {
      c.close();
    }
  };

  before(async () => {
    backend = await startRawBackend(addr);
    stack = await startStack(objectsOf(`${httpGatewayYaml(NS)}---
${backendService(NS, "raw", 8080, [{ address: addr, port: backend.port, pod: "raw-pod" }])}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: raw, namespace: ${NS}}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: raw, port: 8080}]}]
`), { address: addr });
  });
  after(async () => {
    await stack.close();
    backend.close();
  });

  it("passes 103 Early Hints on before the response, over HTTP/1.1 and HTTP/2", async () => {
    const h1 = await rawGet("early");
    assert.match(h1, /^HTTP\/1\.1 103 Early Hints\r\nLink: <\/style\.css>; rel=preload\r\n\r\nHTTP\/1\.1 200 OK\r\n/i);
    assert.ok(h1.endsWith("\r\n\r\nfinal"), h1);
    const h2 = await h2Get("early");
    assert.deepEqual(h2.heads.map((h) => h[":status"]), [103, 200]);
    assert.equal(h2.heads[0]?.link, "</style.css>; rel=preload");
    assert.equal(h2.body, "final");
  });

  it("sends no interim answer to an HTTP/1.0 client, and drops other 1xx", async () => {
    assert.match(await rawGet("early", "1.0"), /^HTTP\/1\.1 200 OK\r\n/);
    const processing = await rawGet("processing");
    assert.match(processing, /^HTTP\/1\.1 200 OK\r\n/);
    assert.ok(processing.endsWith("\r\n\r\nfinal"), processing);
    assert.deepEqual((await h2Get("processing")).heads.map((h) => h[":status"]), [200]);
  });

  it("drops the headers a backend's Connection header names", async () => {
    const h1 = await rawGet("listed");
    assert.doesNotMatch(h1, /x-hop/i);
    assert.match(h1, /\r\nx-end: kept\r\n/);
    const h2 = await h2Get("listed");
    assert.equal(h2.heads[0]?.["x-hop"], undefined);
    assert.equal(h2.heads[0]?.["x-end"], "kept");
  });

  it("relays a large response head (40 KB of cookies), over HTTP/1.1 and HTTP/2", async () => {
    const h1 = await rawGet("big-head");
    assert.match(h1, /^HTTP\/1\.1 200 /, h1.slice(0, 200));
    assert.equal(h1.match(/\r\nset-cookie: /g)?.length, 10);
    const h2 = await h2Get("big-head");
    assert.equal(h2.heads[0]?.[":status"], 200);
    assert.equal((h2.heads[0]?.["set-cookie"] as string[] | undefined)?.length, 10);
  });

  it("answers 502 for what cannot be relayed safely: no valid status, Content-Length with Transfer-Encoding", async () => {
    for (const path of ["bad-status", "cl-and-te"]) {
      assert.match(await rawGet(path), /^HTTP\/1\.1 502 /, path);
      assert.deepEqual((await h2Get(path)).heads.map((h) => h[":status"]), [502], path);
    }
  });
});
