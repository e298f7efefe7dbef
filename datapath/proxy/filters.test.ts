// HTTPRoute filters through real sockets: redirects, URL rewrites, request mirrors, CORS,
// backend-level filters and the 500s of rules that cannot forward.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import type net from "node:net";
import { randomUUID } from "node:crypto";
import { startEcho, type EchoHttpResponse, type EchoServer } from "../echo/echo.ts";
import { backendService, objectsOf, randomLoopback, send, startStack, type Reply, type Stack, httpGatewayYaml, deadPort, until } from "./testkit.ts";

const NS = "demo";
const HOST = "filters.example";

/** A mirror target that records what it received (method, path, Host, body). */
interface Seen {
  method: string;
  url: string;
  host: string;
  body: string;
  headers: http.IncomingHttpHeaders;
}
interface Recorder {
  port: number;
  seen: Seen[];
  /** Requests whose connection closed before an answer. */
  aborted: number;
  close(): Promise<void>;
}

async function startRecorder(address: string, behaviour: "answer" | "hang" = "answer"): Promise<Recorder> {
  const seen: Seen[] = [];
  const rec = { aborted: 0 };
  const server = http.createServer((req, res) => {
    res.on("close", () => void (res.writableFinished || rec.aborted++));
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      seen.push({ method: req.method ?? "", url: req.url ?? "", host: req.headers.host ?? "", body: Buffer.concat(chunks).toString(), headers: req.headers });
      // "hang" never answers: a stuck mirror must not hold up the client.
      if (behaviour === "answer") res.end("mirror");
    });
  });
  await new Promise<void>((r) => server.listen(0, address, r));
  return {
    port: (server.address() as net.AddressInfo).port,
    seen,
    get aborted() {
      return rec.aborted;
    },
    close: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}

const json = (r: Reply): EchoHttpResponse => JSON.parse(r.body) as EchoHttpResponse;

function manifests(addr: string, ports: { v1: number; v2: number; mA: number; mB: number; dead: number; hang: number }): string {
  const svc = (name: string, port: number): string => backendService(NS, name, 8080, [{ address: addr, port, pod: `${name}-pod` }]);
  const redirect = (path: string, spec: string): string => `  - matches: [{path: {type: PathPrefix, value: ${path}}}]
    filters: [{type: RequestRedirect, requestRedirect: ${spec}}]
`;
  const route = (name: string): string => `---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ${name}, namespace: ${NS}}
spec:
  parentRefs: [{name: gw}]
  hostnames: [${HOST}]
  rules:
`;
  const mirror = (name: string, percent?: number): string =>
    `{type: RequestMirror, requestMirror: {backendRef: {name: ${name}, port: 8080}${percent === undefined ? "" : `, percent: ${percent}`}}}`;
  return `${httpGatewayYaml(NS)}---
${svc("v1", ports.v1)}---
${svc("v2", ports.v2)}---
${svc("mirror-a", ports.mA)}---
${svc("mirror-b", ports.mB)}---
${svc("dead", ports.dead)}---
${svc("hang", ports.hang)}${route("redirects")}${redirect("/scheme", "{scheme: https}")}${redirect("/host-and-status", "{hostname: example.org, statusCode: 301}")}${redirect("/port", "{port: 8083}")}${redirect("/full/path", "{path: {type: ReplaceFullPath, replaceFullPath: /full-path-replacement}}")}${redirect("/original-prefix", "{path: {type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix}}")}${redirect("/see-other", "{statusCode: 303}")}${redirect("/temporary", "{statusCode: 307}")}${redirect("/permanent", "{statusCode: 308}")}  - matches: [{path: {type: PathPrefix, value: /backend-redirect}}]
    backendRefs:
    - name: v1
      port: 8080
      filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /redirected-prefix}}}]
${route("rewrites")}  - matches: [{path: {type: PathPrefix, value: /rewrite-host}}]
    filters: [{type: URLRewrite, urlRewrite: {hostname: one.example.org}}]
    backendRefs: [{name: v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /full}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /one}}}]
    backendRefs: [{name: v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /prefix/one}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /one}}}]
    backendRefs: [{name: v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /strip-prefix}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]
    backendRefs: [{name: v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /backend-full}}]
    backendRefs:
    - name: v1
      port: 8080
      filters: [{type: URLRewrite, urlRewrite: {hostname: backend.example.org, path: {type: ReplaceFullPath, replaceFullPath: /rewritten-full}}}]
  - matches: [{path: {type: PathPrefix, value: /backend-prefix}}]
    backendRefs:
    - name: v1
      port: 8080
      filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /rewritten-prefix}}}]
${route("mirrors")}  - matches: [{path: {type: PathPrefix, value: /mirror-one}}]
    filters: [${mirror("mirror-a")}]
    backendRefs: [{name: v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /mirror-many}}]
    filters:
    - ${mirror("mirror-a")}
    - ${mirror("mirror-b")}
    - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Modified, value: "yes"}]}}
    backendRefs: [{name: v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /mirror-0}}]
    filters: [${mirror("mirror-a", 0)}]
    backendRefs: [{name: v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /mirror-100}}]
    filters: [${mirror("mirror-a", 100)}]
    backendRefs: [{name: v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /mirror-50}}]
    filters: [${mirror("mirror-a", 50)}]
    backendRefs: [{name: v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /mirror-fraction}}]
    filters: [{type: RequestMirror, requestMirror: {backendRef: {name: mirror-a, port: 8080}, fraction: {numerator: 1, denominator: 4}}}]
    backendRefs: [{name: v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /mirror-broken}}]
    filters: [${mirror("dead")}, ${mirror("hang")}]
    timeouts: {request: 300ms}
    backendRefs: [{name: v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /backend-mirror}}]
    backendRefs:
    - {name: v1, port: 8080, filters: [${mirror("mirror-b")}]}
${route("backends")}  - matches: [{path: {type: PathPrefix, value: /backend-headers}}]
    backendRefs:
    - name: v1
      port: 8080
      weight: 1
      filters:
      - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: Backend, value: v1-pod}]}}
      - {type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: X-Backend, value: v1}], add: [{name: X-Added, value: a1}], remove: [X-Drop]}}
    - name: v2
      port: 8080
      weight: 1
      filters:
      - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: Backend, value: v2-pod}]}}
      - {type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: X-Backend, value: v2}]}}
  - matches: [{path: {type: Exact, value: /omitted-no-forward}}]
  - matches: [{path: {type: Exact, value: /empty-no-forward}}]
    backendRefs: []
  - matches: [{path: {type: Exact, value: /missing-service}}]
    backendRefs: [{name: nonexistent, port: 8080}]
  - matches: [{path: {type: Exact, value: /zero-weights}}]
    backendRefs: [{name: v1, port: 8080, weight: 0}, {name: v2, port: 8080, weight: 0}]
  - matches: [{path: {type: Exact, value: /half-missing}}]
    backendRefs: [{name: v1, port: 8080, weight: 1}, {name: nonexistent, port: 8080, weight: 1}]
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: v2, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: cors, namespace: ${NS}}
spec:
  parentRefs: [{name: gw}]
  hostnames: [${HOST}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /cors-1}}]
    filters:
    - type: CORS
      cors:
        allowOrigins: ["https://www.foo.com", "https://*.bar.com"]
        allowMethods: [GET, OPTIONS]
        allowHeaders: [x-header-1, x-header-2]
        exposeHeaders: [x-header-3, x-header-4]
        allowCredentials: true
        maxAge: 3600
    backendRefs: [{name: v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /cors-2}}]
    filters: [{type: CORS, cors: {allowOrigins: ["https://www.foo.com"], allowMethods: ["*"]}}]
    backendRefs: [{name: v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /cors-wildcard-origin}}]
    filters: [{type: CORS, cors: {allowOrigins: ["*"], allowMethods: [PUT], allowCredentials: false}}]
    backendRefs: [{name: v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /cors-wildcard-methods-headers-unauth}}]
    filters: [{type: CORS, cors: {allowOrigins: ["*"], allowMethods: ["*"], allowHeaders: ["*"], allowCredentials: false}}]
    backendRefs: [{name: v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /cors-wildcard-methods-headers}}]
    filters: [{type: CORS, cors: {allowOrigins: ["*"], allowMethods: ["*"], allowHeaders: ["*"], allowCredentials: true}}]
    backendRefs: [{name: v1, port: 8080}]
`;
}

describe("HTTPRoute filters over sockets", () => {
  const addr = randomLoopback();
  let v1: EchoServer;
  let v2: EchoServer;
  let mA: Recorder;
  let mB: Recorder;
  let hang: Recorder;
  let stack: Stack;
  const get = (path: string, o: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Reply> =>
    send({ address: addr, port: 80 + stack.portOffset, host: HOST, path, ...o });

  before(async () => {
    v1 = await startEcho({ mode: "http", host: addr, port: 0, identity: { pod: "v1-pod", namespace: NS } });
    v2 = await startEcho({ mode: "http", host: addr, port: 0, identity: { pod: "v2-pod", namespace: NS } });
    mA = await startRecorder(addr);
    mB = await startRecorder(addr);
    hang = await startRecorder(addr, "hang");
    const dead = await deadPort(addr);
    stack = await startStack(objectsOf(manifests(addr, { v1: v1.port, v2: v2.port, mA: mA.port, mB: mB.port, dead, hang: hang.port })), { address: addr });
    for (const name of ["redirects", "rewrites", "mirrors", "backends", "cors"]) {
      const st = JSON.stringify(stack.result.statuses.get(`HTTPRoute/${NS}/${name}`)?.status ?? {});
      assert.match(st, /"type":"Accepted","status":"True"/, `${name}: ${st}`);
      assert.doesNotMatch(st, /PartiallyInvalid/, `${name}: ${st}`);
    }
  });
  after(async () => {
    await stack.close();
    await Promise.all([v1.close(), v2.close(), mA.close(), mB.close(), hang.close()]);
  });

  describe("RequestRedirect", () => {
    const off = (): number => stack.portOffset;

    it("changes the scheme (to its well-known port), the host with status, or the port", async () => {
      const a = await get("/scheme?x=1");
      assert.equal(a.status, 302);
      assert.equal(a.headers.location, `https://${HOST}:${443 + off()}/scheme?x=1`);
      const b = await get("/host-and-status");
      assert.equal(b.status, 301);
      assert.equal(b.headers.location, `http://example.org:${80 + off()}/host-and-status`);
      const c = await get("/port");
      assert.equal(c.status, 302);
      assert.equal(c.headers.location, `http://${HOST}:${8083 + off()}/port`);
      assert.equal(c.body, "");
    });

    it("replaces the full path or the matched prefix", async () => {
      const a = await get("/full/path/original");
      assert.equal(a.headers.location, `http://${HOST}:${80 + off()}/full-path-replacement`);
      const b = await get("/original-prefix/lemon");
      assert.equal(b.headers.location, `http://${HOST}:${80 + off()}/replacement-prefix/lemon`);
    });

    it("answers 303, 307 and 308 with the path unchanged", async () => {
      const a = await get("/see-other", { method: "POST", body: "x" });
      assert.equal(a.status, 303);
      assert.equal(a.headers.location, `http://${HOST}:${80 + off()}/see-other`);
      assert.equal((await get("/temporary")).status, 307);
      const c = await get("/permanent/x");
      assert.equal(c.status, 308);
      assert.equal(c.headers.location, `http://${HOST}:${80 + off()}/permanent/x`);
    });

    it("works as a backendRef filter", async () => {
      const a = await get("/backend-redirect/original");
      assert.equal(a.status, 302);
      assert.equal(a.headers.location, `http://${HOST}:${80 + off()}/redirected-prefix/original`);
    });
  });

  describe("URLRewrite", () => {
    it("rewrites the Host the backend sees", async () => {
      const j = json(await get("/rewrite-host/x"));
      assert.equal(j.host, "one.example.org");
      assert.equal(j.path, "/rewrite-host/x");
      assert.equal(j.pod, "v1-pod");
    });

    it("replaces the full path, keeping the query", async () => {
      assert.equal(json(await get("/full/one/two?q=1")).path, "/one?q=1");
    });

    it("replaces the matched prefix", async () => {
      assert.equal(json(await get("/prefix/one/two")).path, "/one/two");
      assert.equal(json(await get("/strip-prefix/three")).path, "/three");
      assert.equal(json(await get("/strip-prefix")).path, "/");
    });

    it("works as a backendRef filter", async () => {
      const a = json(await get("/backend-full/original"));
      assert.equal(a.path, "/rewritten-full");
      assert.equal(a.host, "backend.example.org");
      assert.equal(json(await get("/backend-prefix/original")).path, "/rewritten-prefix/original");
    });
  });

  describe("RequestMirror", () => {
    const seenFor = (r: Recorder, id: string): Seen[] => r.seen.filter((s) => s.url.includes(id));

    it("mirrors a POST with its body; the answer comes from the main backend", async () => {
      const id = randomUUID();
      const r = await get(`/mirror-one?id=${id}`, { method: "POST", body: "hello mirror", headers: { "content-type": "text/plain" } });
      assert.equal(r.status, 200);
      assert.equal(json(r).pod, "v1-pod");
      assert.equal(json(r).body, "hello mirror");
      assert.ok(await until(() => seenFor(mA, id).length === 1));
      const m = seenFor(mA, id)[0] as Seen;
      assert.equal(m.method, "POST");
      assert.equal(m.url, `/mirror-one?id=${id}`);
      assert.equal(m.body, "hello mirror");
      assert.equal(m.host, HOST);
    });

    it("mirrors a chunked POST body too", async () => {
      const id = randomUUID();
      const body = await new Promise<string>((resolve, reject) => {
        const req = http.request({ host: addr, port: 80 + stack.portOffset, method: "POST", path: `/mirror-one?id=${id}`, headers: { host: HOST }, agent: false }, (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => resolve(Buffer.concat(chunks).toString()));
        });
        req.on("error", reject);
        req.write("part1-");
        setTimeout(() => req.end("part2"), 20);
      });
      assert.equal((JSON.parse(body) as EchoHttpResponse).body, "part1-part2");
      assert.ok(await until(() => seenFor(mA, id).length === 1));
      assert.equal(seenFor(mA, id)[0]?.body, "part1-part2");
    });

    it("forwards a body too large to keep for the mirror, and mirrors nothing", async () => {
      const id = randomUUID();
      const body = "m".repeat(1024 * 1024 + 4096);
      const r = await get(`/mirror-one?id=${id}`, { method: "POST", body });
      assert.equal(r.status, 200);
      // The echo shows the first 64 KiB; it answered only once all of it had arrived.
      assert.deepEqual(json(r).headers["Content-Length"], [String(body.length)]);
      assert.ok(body.startsWith(json(r).body ?? "-"));
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(seenFor(mA, id).length, 0);
    });

    it("mirrors to several backends, after the rule's header changes", async () => {
      const id = randomUUID();
      const r = await get(`/mirror-many?id=${id}`);
      assert.equal(json(r).pod, "v1-pod");
      assert.deepEqual(json(r).headers["X-Modified"], ["yes"]);
      assert.ok(await until(() => seenFor(mA, id).length === 1 && seenFor(mB, id).length === 1));
      assert.equal(seenFor(mB, id)[0]?.headers["x-modified"], "yes");
    });

    it("works as a backendRef filter", async () => {
      const id = randomUUID();
      assert.equal(json(await get(`/backend-mirror?id=${id}`)).pod, "v1-pod");
      assert.ok(await until(() => seenFor(mB, id).length === 1));
    });

    it("fires never at 0%, always at 100%, about half the time at 50% and a quarter at 1/4", async () => {
      const id = randomUUID();
      const n = 200;
      const batch = async (path: string): Promise<void> => {
        for (let i = 0; i < n; i += 50) {
          const rs = await Promise.all(Array.from({ length: 50 }, () => get(`${path}?id=${id}`)));
          for (const r of rs) assert.equal(json(r).pod, "v1-pod");
        }
      };
      await batch("/mirror-100");
      await batch("/mirror-0");
      await batch("/mirror-50");
      await batch("/mirror-fraction");
      const count = (p: string): number => seenFor(mA, id).filter((s) => s.url.startsWith(p)).length;
      assert.ok(await until(() => count("/mirror-100") === n), `100%: ${count("/mirror-100")}`);
      // Mirrors of the later batches were sent before the last answers came back; let stragglers land.
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(count("/mirror-0"), 0);
      // Binomial: mean n·p, 4 standard deviations either side keeps this deterministic in practice.
      const half = count("/mirror-50");
      assert.ok(half > 100 - 4 * Math.sqrt(50) && half < 100 + 4 * Math.sqrt(50), `50%: ${half}`);
      const quarter = count("/mirror-fraction");
      assert.ok(quarter > 50 - 4 * Math.sqrt(37.5) && quarter < 50 + 4 * Math.sqrt(37.5), `25%: ${quarter}`);
    });

    it("a refusing or hanging mirror never affects the client", async () => {
      const started = Date.now();
      for (let i = 0; i < 20; i++) {
        const r = await get(`/mirror-broken?i=${i}`, { method: "POST", body: "b" });
        assert.equal(r.status, 200);
        assert.equal(json(r).pod, "v1-pod");
      }
      assert.ok(Date.now() - started < 3000);
      assert.ok(await until(() => hang.seen.length === 20));
      // The rule's request timeout bounds the mirror too: the stuck requests are cancelled.
      assert.ok(await until(() => hang.aborted === 20), `aborted ${hang.aborted}`);
    });
  });

  describe("CORS", () => {
    const preflight = (path: string, origin: string, method: string, headers?: string): Promise<Reply> =>
      get(path, {
        method: "OPTIONS",
        headers: { origin, "access-control-request-method": method, ...(headers ? { "access-control-request-headers": headers } : {}) },
      });
    const list = (v: string | string[] | undefined): string[] => String(v ?? "").split(",").map((s) => s.trim()).sort();

    it("answers /cors-1 preflights itself with every allow header", async () => {
      for (const origin of ["https://www.foo.com", "https://www.bar.com", "https://xpto.www.bar.com"]) {
        const r = await preflight("/cors-1", origin, "GET", "x-header-1, x-header-2");
        assert.ok(r.status === 200 || r.status === 204, String(r.status));
        assert.doesNotMatch(r.body, /cors-1/);
        assert.equal(r.headers["access-control-allow-origin"], origin);
        assert.deepEqual(list(r.headers["access-control-allow-methods"]), ["GET", "OPTIONS"]);
        assert.deepEqual(list(r.headers["access-control-allow-headers"]), ["x-header-1", "x-header-2"]);
        assert.deepEqual(list(r.headers["access-control-expose-headers"]), ["x-header-3", "x-header-4"]);
        assert.equal(r.headers["access-control-max-age"], "3600");
        assert.equal(r.headers["access-control-allow-credentials"], "true");
      }
    });

    it("gives a disallowed origin no allow headers", async () => {
      const r = await preflight("/cors-1", "https://foobar.com", "GET");
      assert.ok([200, 204, 403].includes(r.status), String(r.status));
      assert.equal(r.headers["access-control-allow-origin"], undefined);
      const g = await get("/cors-1", { headers: { origin: "https://foobar.com" } });
      assert.equal(g.status, 200);
      assert.equal(json(g).pod, "v1-pod");
      assert.equal(g.headers["access-control-allow-origin"], undefined);
    });

    it("adds allow-origin to simple requests from allowed origins", async () => {
      for (const origin of ["https://www.foo.com", "https://www.bar.com"]) {
        const g = await get("/cors-1", { headers: { origin } });
        assert.equal(g.status, 200);
        assert.equal(json(g).pod, "v1-pod");
        assert.equal(g.headers["access-control-allow-origin"], origin);
        assert.equal(g.headers["access-control-allow-credentials"], "true");
      }
    });

    it("keeps a backend's Vary header when adding Origin to it", async () => {
      const g = await get("/cors-1", { headers: { origin: "https://www.foo.com", "x-echo-set-header": "Vary: Accept-Encoding" } });
      assert.deepEqual(list(g.headers.vary), ["Accept-Encoding", "Origin"]);
    });

    it("allows wildcard methods without credentials on /cors-2", async () => {
      const r = await preflight("/cors-2", "https://www.foo.com", "POST");
      assert.ok(["POST", "*"].includes(String(r.headers["access-control-allow-methods"])));
      assert.equal(r.headers["access-control-allow-origin"], "https://www.foo.com");
      assert.equal(r.headers["access-control-allow-credentials"], undefined);
    });

    it("allows any origin on /cors-wildcard-origin", async () => {
      for (const origin of ["https://foobar.com", "https://foobar.com:12345"]) {
        const r = await preflight("/cors-wildcard-origin", origin, "PUT");
        assert.ok([origin, "*"].includes(String(r.headers["access-control-allow-origin"])));
        assert.equal(r.headers["access-control-allow-methods"], "PUT");
        assert.equal(r.headers["access-control-allow-credentials"], undefined);
        const put = await get("/cors-wildcard-origin", { method: "PUT", headers: { origin }, body: "x" });
        assert.equal(put.status, 200);
        assert.ok([origin, "*"].includes(String(put.headers["access-control-allow-origin"])));
      }
    });

    it("echoes the origin, method and headers for wildcards with credentials", async () => {
      const origin = "https://other.foo.com";
      const r = await preflight("/cors-wildcard-methods-headers", origin, "PUT", "x-header-1, x-header-2");
      assert.equal(r.headers["access-control-allow-origin"], origin);
      assert.equal(r.headers["access-control-allow-methods"], "PUT");
      assert.deepEqual(list(r.headers["access-control-allow-headers"]), ["x-header-1", "x-header-2"]);
      assert.equal(r.headers["access-control-allow-credentials"], "true");
      const u = await preflight("/cors-wildcard-methods-headers-unauth", origin, "PUT", "x-header-1, x-header-2");
      assert.ok([origin, "*"].includes(String(u.headers["access-control-allow-origin"])));
      assert.ok(["PUT", "*"].includes(String(u.headers["access-control-allow-methods"])));
      assert.equal(u.headers["access-control-allow-credentials"], undefined);
      const g = await get("/cors-wildcard-methods-headers", { headers: { origin } });
      assert.equal(g.headers["access-control-allow-origin"], origin);
      assert.equal(g.headers["access-control-allow-credentials"], "true");
      const gu = await get("/cors-wildcard-methods-headers-unauth", { headers: { origin } });
      assert.ok([origin, "*"].includes(String(gu.headers["access-control-allow-origin"])));
      assert.equal(gu.headers["access-control-allow-credentials"], undefined);
    });
  });

  describe("backend-level header filters", () => {
    it("follow the backend actually chosen, on the request and the response", async () => {
      const pods = new Set<string>();
      for (let i = 0; i < 40; i++) {
        const r = await get("/backend-headers", { headers: { "x-echo-set-header": "X-Drop: d" } });
        const j = json(r);
        pods.add(j.pod);
        assert.deepEqual(j.headers.Backend, [j.pod]);
        assert.equal(r.headers["x-backend"], j.pod.replace("-pod", ""));
        if (j.pod === "v1-pod") {
          assert.equal(r.headers["x-added"], "a1");
          assert.equal(r.headers["x-drop"], undefined);
        } else assert.equal(r.headers["x-drop"], "d");
      }
      assert.deepEqual([...pods].sort(), ["v1-pod", "v2-pod"]);
    });
  });

  describe("rules that cannot forward", () => {
    it("answer 500 without backendRefs, for a missing Service and when every weight is 0", async () => {
      for (const p of ["/omitted-no-forward", "/empty-no-forward", "/missing-service", "/zero-weights"]) {
        assert.equal((await get(p)).status, 500, p);
      }
      assert.equal((await get("/forward")).status, 200);
    });

    it("answer 500 for the share of traffic of a missing backend", async () => {
      let ok = 0;
      let failed = 0;
      for (let i = 0; i < 60; i++) {
        const r = await get("/half-missing");
        if (r.status === 200) ok++;
        else if (r.status === 500) failed++;
      }
      assert.equal(ok + failed, 60);
      assert.ok(ok > 10 && failed > 10, `${ok} ok, ${failed} failed`);
    });
  });
});
