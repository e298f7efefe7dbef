// Request path normalization before routing, as Envoy Gateway does by default (Envoy's
// normalize_path and merge_slashes): routes are matched against, and backends receive, one
// spelling of a path. Without it `/public/../admin` would match a `/public` prefix and reach a
// backend that resolves it to /admin: a path-confusion bypass of path-based routing.
//
// Done: percent-decoding of unreserved characters (RFC 3986 §6.2.2.2) and upper-case hex in the
// remaining escapes; backslashes read as slashes (as browsers and some servers do); repeated
// slashes merged; dot segments removed (RFC 3986 §5.2.4). Escaped slashes (%2F, %5C) are kept
// as they are: they are data to APIs that use them (Envoy's default too).

// What a path that needs nothing contains none of; most requests stop at this test.
const NEEDS_WORK = /\/\.|\/\/|%|\\/;

/** A request target's path normalized, its query as it was; the target itself when nothing needs doing. */
export function normalizeTarget(target: string): string {
  // The test may fire on the query alone (an escaped value): the path is then found normal.
  if (!NEEDS_WORK.test(target)) return target;
  const qi = target.indexOf("?");
  if (qi < 0) return normalizePath(target);
  const path = target.slice(0, qi);
  const normal = normalizePath(path);
  return normal === path ? target : normal + target.slice(qi);
}

/** The normalized form of a path (no query), or the path itself when it is already normal. */
export function normalizePath(path: string): string {
  if (!NEEDS_WORK.test(path)) return path;
  let p = path.includes("%") ? decodeUnreserved(path) : path;
  p = p.replace(/\\/g, "/").replace(/\/{2,}/g, "/");
  return removeDotSegments(p);
}

function isUnreserved(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2e || c === 0x5f || c === 0x7e;
}

function decodeUnreserved(p: string): string {
  return p.replace(/%([0-9a-fA-F]{2})/g, (escape: string, hex: string) => {
    const c = parseInt(hex, 16);
    return isUnreserved(c) ? String.fromCharCode(c) : escape.toUpperCase();
  });
}

/** RFC 3986 §5.2.4, for an absolute path: `.` segments go, `..` takes the segment before it. */
function removeDotSegments(p: string): string {
  const segments = p.split("/");
  const out: string[] = [];
  // The first element is the empty string before the leading slash.
  for (let i = 1; i < segments.length; i++) {
    const s = segments[i] as string;
    const last = i === segments.length - 1;
    if (s === ".") {
      if (last) out.push("");
    } else if (s === "..") {
      out.pop();
      if (last) out.push("");
    } else out.push(s);
  }
  return `/${out.join("/")}`;
}
