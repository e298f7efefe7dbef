// Pure filter logic without sockets: path rewrites, redirect locations and CORS origin matching,
// checked against the Gateway API spec tables and the conformance suite's cases.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { Filter, RouteMatch } from "../../operator/translate/output.ts";
import { modifyHeaders, redirectLocation, replacePrefix, rewritePath, type HeaderMap, type RedirectInput } from "./rewrite.ts";
import { actualHeaders, isPreflight, originAllowed, preflightHeaders, type CorsFilter } from "./cors.ts";

type Redirect = Extract<Filter, { type: "RequestRedirect" }>;

const prefix = (value: string): RouteMatch => ({ path: { type: "PathPrefix", value }, headers: [], queryParams: [] });
const exact = (value: string): RouteMatch => ({ path: { type: "Exact", value }, headers: [], queryParams: [] });

describe("replacePrefix", () => {
  // The HTTPPathModifier table of the Gateway API spec (a trailing slash of the matched prefix is
  // dropped by the translator, so "/foo/" arrives here as "/foo").
  const table: [path: string, matched: string, replacement: string, expected: string][] = [
    ["/foo/bar", "/foo", "/xyz", "/xyz/bar"],
    ["/foo/bar", "/foo", "/xyz/", "/xyz/bar"],
    ["/foo", "/foo", "/xyz", "/xyz"],
    ["/foo/", "/foo", "/xyz", "/xyz/"],
    ["/foo/bar", "/foo", "", "/bar"],
    ["/foo/", "/foo", "", "/"],
    ["/foo", "/foo", "", "/"],
    ["/foo/", "/foo", "/", "/"],
    ["/foo", "/foo", "/", "/"],
    ["/foo/bar", "/", "/xyz", "/xyz/foo/bar"],
    ["/foo/bar", "/", "/xyz/", "/xyz/foo/bar"],
  ];
  for (const [path, matched, replacement, expected] of table) {
    it(`${path} with prefix ${matched} → ${JSON.stringify(replacement)} is ${expected}`, () => {
      assert.equal(replacePrefix(path, matched, replacement), expected);
    });
  }

  it("handles the conformance suite's rewrite and redirect cases", () => {
    // HTTPRouteRewritePath
    assert.equal(replacePrefix("/prefix/one/two", "/prefix/one", "/one"), "/one/two");
    assert.equal(replacePrefix("/strip-prefix/three", "/strip-prefix", "/"), "/three");
    assert.equal(replacePrefix("/strip-prefix", "/strip-prefix", "/"), "/");
    assert.equal(replacePrefix("/prefix/rewrite-path-and-modify-headers/one", "/prefix/rewrite-path-and-modify-headers", "/prefix"), "/prefix/one");
    // HTTPRouteRedirectPath
    assert.equal(replacePrefix("/original-prefix/lemon", "/original-prefix", "/replacement-prefix"), "/replacement-prefix/lemon");
    assert.equal(replacePrefix("/path-and-host", "/path-and-host", "/replacement-prefix"), "/replacement-prefix");
    // HTTPRouteBackendURLRewrite
    assert.equal(replacePrefix("/prefix/original", "/prefix", "/rewritten-prefix"), "/rewritten-prefix/original");
  });

  it("rewritePath replaces the full path, and a prefix only under a PathPrefix match", () => {
    assert.equal(rewritePath("/full/one/two", { type: "ReplaceFullPath", value: "/one" }, prefix("/full")), "/one");
    assert.equal(rewritePath("/a/b", { type: "ReplacePrefixMatch", value: "/z" }, prefix("/a")), "/z/b");
    assert.equal(rewritePath("/a/b", { type: "ReplacePrefixMatch", value: "/z" }, exact("/a/b")), "/a/b");
  });
});

describe("modifyHeaders", () => {
  it("sets, appends with a comma and removes, names case-insensitively", () => {
    const h: HeaderMap = { "x-header-set": "old", "x-header-add": "some-other-value", "x-header-remove": "x", keep: "k" };
    modifyHeaders(h, {
      set: [{ name: "X-Header-Set", value: "set-overwrites-values" }],
      add: [{ name: "X-Header-Add", value: "add-appends-values" }, { name: "X-New", value: "n" }],
      remove: ["X-Header-Remove"],
    });
    assert.deepEqual(h, { "x-header-set": "set-overwrites-values", "x-header-add": "some-other-value,add-appends-values", "x-new": "n", keep: "k" });
  });
});

describe("redirectLocation (HTTPRouteRedirectPortAndScheme)", () => {
  const input = (scheme: string, listenerPort: number, over: Partial<RedirectInput> = {}): RedirectInput => ({
    scheme, host: "gw.local", listenerPort, path: "/p", query: "", match: prefix("/"), portOffset: 0, ...over,
  });
  const redirect = (scheme?: string, port?: number): Redirect => {
    const f: Redirect = { type: "RequestRedirect", statusCode: 302, hostname: "example.org" };
    if (scheme !== undefined) f.scheme = scheme;
    if (port !== undefined) f.port = port;
    return f;
  };
  // [listener scheme, listener port, filter scheme, filter port, expected scheme://host[:port]]
  const table: [string, number, string | undefined, number | undefined, string][] = [
    // Gateway same-namespace, HTTP :80
    ["http", 80, undefined, undefined, "http://example.org"],
    ["http", 80, undefined, 80, "http://example.org"],
    ["http", 80, undefined, 8080, "http://example.org:8080"],
    ["http", 80, "https", undefined, "https://example.org"],
    ["http", 80, "https", 443, "https://example.org"],
    ["http", 80, "https", 8443, "https://example.org:8443"],
    // HTTP listener on 8080: without scheme or port the listener port is kept
    ["http", 8080, undefined, undefined, "http://example.org:8080"],
    ["http", 8080, undefined, 80, "http://example.org"],
    ["http", 8080, "https", undefined, "https://example.org"],
    // HTTPS listener on 443
    ["https", 443, undefined, undefined, "https://example.org"],
    ["https", 443, undefined, 443, "https://example.org"],
    ["https", 443, undefined, 8443, "https://example.org:8443"],
    ["https", 443, "http", undefined, "http://example.org"],
    ["https", 443, "http", 80, "http://example.org"],
    ["https", 443, "http", 8080, "http://example.org:8080"],
  ];
  for (const [ls, lp, fs, fp, expected] of table) {
    it(`${ls}:${lp} with scheme ${fs ?? "nil"} and port ${fp ?? "nil"} → ${expected}`, () => {
      assert.equal(redirectLocation(redirect(fs, fp), input(ls, lp)), `${expected}/p`);
    });
  }

  it("keeps the request host, path and query when the filter does not change them", () => {
    const f: Redirect = { type: "RequestRedirect", statusCode: 301 };
    assert.equal(redirectLocation(f, input("http", 80, { query: "?a=1&b=2" })), "http://gw.local/p?a=1&b=2");
  });

  it("rewrites the path by prefix or in full", () => {
    const f: Redirect = { type: "RequestRedirect", statusCode: 302, path: { type: "ReplacePrefixMatch", value: "/replacement-prefix" } };
    assert.equal(redirectLocation(f, input("http", 80, { path: "/original-prefix/lemon", match: prefix("/original-prefix") })), "http://gw.local/replacement-prefix/lemon");
    const full: Redirect = { type: "RequestRedirect", statusCode: 302, path: { type: "ReplaceFullPath", value: "/full-path-replacement" } };
    assert.equal(redirectLocation(full, input("http", 80, { path: "/full/path/original", match: prefix("/full") })), "http://gw.local/full-path-replacement");
  });

  it("in standalone mode shows every port with the offset added", () => {
    assert.equal(redirectLocation(redirect(undefined, undefined), input("http", 80, { portOffset: 20000 })), "http://example.org:20080/p");
    assert.equal(redirectLocation(redirect("https", undefined), input("http", 80, { portOffset: 20000 })), "https://example.org:20443/p");
    assert.equal(redirectLocation(redirect(undefined, 8083), input("http", 80, { portOffset: 20000 })), "http://example.org:28083/p");
  });

  it("brackets IPv6 hosts", () => {
    const f: Redirect = { type: "RequestRedirect", statusCode: 302, port: 8080 };
    assert.equal(redirectLocation(f, input("http", 80, { host: "::1" })), "http://[::1]:8080/p");
    assert.equal(redirectLocation(f, input("http", 80, { host: "[::1]" })), "http://[::1]:8080/p");
  });
});

describe("CORS", () => {
  const cors = (over: Partial<CorsFilter>): CorsFilter => ({
    type: "CORS", allowOrigins: [], allowMethods: [], allowHeaders: [], exposeHeaders: [], allowCredentials: false, ...over,
  });
  const cors1 = cors({
    allowOrigins: ["https://www.foo.com", "https://*.bar.com"],
    allowMethods: ["GET", "OPTIONS"],
    allowHeaders: ["x-header-1", "x-header-2"],
    exposeHeaders: ["x-header-3", "x-header-4"],
    allowCredentials: true,
    maxAge: 3600,
  });

  it("matches exact origins and wildcards covering one or more labels", () => {
    assert.ok(originAllowed(cors1, "https://www.foo.com"));
    assert.ok(originAllowed(cors1, "https://www.bar.com"));
    assert.ok(originAllowed(cors1, "https://xpto.www.bar.com"));
    for (const o of ["https://foobar.com", "https://bar.com", "https://.bar.com", "http://www.bar.com", "https://www.foo.com.evil", "https://foo.com", "null"]) {
      assert.ok(!originAllowed(cors1, o), o);
    }
  });

  it("a wildcard label never matches across a path, credentials or port", () => {
    for (const o of ["https://evil.com/x.bar.com", "https://evil.com#.bar.com", "https://user@x.bar.com", "https://evil.com:1.bar.com"]) {
      assert.ok(!originAllowed(cors1, o), o);
    }
  });

  it("`*` allows any origin, ports included", () => {
    const f = cors({ allowOrigins: ["*"], allowMethods: ["PUT"] });
    assert.ok(originAllowed(f, "https://foobar.com"));
    assert.ok(originAllowed(f, "https://foobar.com:12345"));
  });

  it("recognises preflights by OPTIONS, Origin and Access-Control-Request-Method", () => {
    assert.ok(isPreflight("OPTIONS", { origin: "https://a", "access-control-request-method": "GET" }));
    assert.ok(!isPreflight("OPTIONS", { origin: "https://a" }));
    assert.ok(!isPreflight("GET", { origin: "https://a", "access-control-request-method": "GET" }));
  });

  it("answers /cors-1 preflights with every allow header", () => {
    const h = preflightHeaders(cors1, { origin: "https://xpto.www.bar.com", "access-control-request-method": "GET", "access-control-request-headers": "x-header-1" });
    assert.deepEqual(h, {
      "access-control-allow-origin": "https://xpto.www.bar.com",
      "access-control-allow-credentials": "true",
      "access-control-allow-methods": "GET, OPTIONS",
      "access-control-allow-headers": "x-header-1, x-header-2",
      "access-control-expose-headers": "x-header-3, x-header-4",
      "access-control-max-age": "3600",
      vary: "Origin",
    });
    assert.deepEqual(preflightHeaders(cors1, { origin: "https://foobar.com", "access-control-request-method": "GET" }), {});
  });

  it("answers wildcard methods and headers with what was requested, and echoes the origin with credentials", () => {
    const withCreds = cors({ allowOrigins: ["*"], allowMethods: ["*"], allowHeaders: ["*"], allowCredentials: true });
    const h = preflightHeaders(withCreds, { origin: "https://other.foo.com", "access-control-request-method": "PUT", "access-control-request-headers": "x-header-1, x-header-2" });
    assert.equal(h["access-control-allow-origin"], "https://other.foo.com");
    assert.equal(h["access-control-allow-methods"], "PUT");
    assert.equal(h["access-control-allow-headers"], "x-header-1, x-header-2");
    assert.equal(h["access-control-allow-credentials"], "true");
    const unauth = preflightHeaders({ ...withCreds, allowCredentials: false }, { origin: "https://other.foo.com", "access-control-request-method": "PUT" });
    assert.equal(unauth["access-control-allow-origin"], "*");
    assert.equal(unauth["access-control-allow-credentials"], undefined);
    const cors2 = cors({ allowOrigins: ["https://www.foo.com"], allowMethods: ["*"] });
    const c2 = preflightHeaders(cors2, { origin: "https://www.foo.com", "access-control-request-method": "POST" });
    assert.equal(c2["access-control-allow-methods"], "POST");
    assert.equal(c2["access-control-allow-origin"], "https://www.foo.com");
    assert.equal(c2["access-control-allow-credentials"], undefined);
  });

  it("adds allow-origin and expose headers to actual responses", () => {
    assert.deepEqual(actualHeaders(cors1, "https://www.foo.com"), {
      "access-control-allow-origin": "https://www.foo.com",
      "access-control-allow-credentials": "true",
      "access-control-expose-headers": "x-header-3, x-header-4",
      vary: "Origin",
    });
  });
});
