import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { normalizePath, normalizeTarget } from "./path.ts";

describe("normalizePath", () => {
  it("leaves normal paths alone (the same string)", () => {
    for (const p of ["/", "/a/b", "/a/b/", "/a.b/c..d/.e", "/v1/items-2_x~y"]) assert.equal(normalizePath(p), p);
  });

  it("removes dot segments (RFC 3986 §5.2.4)", () => {
    const cases: [string, string][] = [
      ["/a/b/c/./../../g", "/a/g"],
      ["/mid/content=5/../6", "/mid/6"],
      ["/public/../admin", "/admin"],
      ["/..", "/"],
      ["/../../x", "/x"],
      ["/a/.", "/a/"],
      ["/a/..", "/"],
      ["/a/b/..", "/a/"],
      ["/a/./b", "/a/b"],
    ];
    for (const [input, want] of cases) assert.equal(normalizePath(input), want, input);
  });

  it("decodes escaped unreserved characters, dots included, and keeps other escapes in upper case", () => {
    assert.equal(normalizePath("/%61dmin"), "/admin");
    assert.equal(normalizePath("/public/%2e%2E/admin"), "/admin");
    assert.equal(normalizePath("/a%7eb%2db%5Fc"), "/a~b-b_c");
    assert.equal(normalizePath("/a%20b/%c3%a9"), "/a%20b/%C3%A9");
    // Escaped slashes are data, not separators.
    assert.equal(normalizePath("/a%2fb/../c"), "/c");
    assert.equal(normalizePath("/repos/a%2Fb"), "/repos/a%2Fb");
  });

  it("merges repeated slashes and reads backslashes as slashes", () => {
    assert.equal(normalizePath("//v2//x///y"), "/v2/x/y");
    assert.equal(normalizePath("/public\\..\\admin"), "/admin");
  });

  it("normalizes a request target's path and leaves its query alone", () => {
    assert.equal(normalizeTarget("/a/../b?x=/../&y=%2e"), "/b?x=/../&y=%2e");
    const target = "/a/b?next=http://x//y&q=%41";
    assert.equal(normalizeTarget(target), target);
    assert.equal(normalizeTarget("/a/./b"), "/a/b");
  });
});
