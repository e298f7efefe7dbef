// Which backends need SNAT. A backend on a directly attached network (or this host) answers
// through this node anyway; one reached via a gateway (another node, another subnet) would answer
// the client directly and the client would drop the reply, so its flows are SNATed to the address
// the kernel would use towards it (the route's preferred source).
import { execFile } from "node:child_process";
import { isIP } from "node:net";

/** SNAT source for a backend address, or undefined for none. */
export type SnatResolver = (address: string) => Promise<string | undefined>;

export const noSnat: SnatResolver = async () => undefined;

interface RouteGet {
  dst?: string;
  gateway?: string;
  prefsrc?: string;
  type?: string;
}

/** Reads one `ip -j route get` answer: the prefsrc when the route goes via a gateway. */
export function snatFromRoute(json: string): string | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    return undefined;
  }
  const r = (Array.isArray(parsed) ? parsed[0] : undefined) as RouteGet | undefined;
  if (!r || typeof r !== "object" || !r.gateway || !r.prefsrc || isIP(r.prefsrc) === 0) return undefined;
  return r.prefsrc;
}

export interface RouteSnatOptions {
  /** Network namespace to ask in (`ip -n NAME`), default the agent's own. */
  netns?: string;
  /** How long an answer is reused (routes change rarely). */
  ttlMs?: number;
  /** Called when `ip` fails: the backend then gets no SNAT. */
  onError?: (address: string, message: string) => void;
}

/** A resolver backed by the kernel's routing table (`ip -j route get ADDR`), cached per address. */
export function routeSnat(opts: RouteSnatOptions = {}): SnatResolver {
  const ttl = opts.ttlMs ?? 30_000;
  const cache = new Map<string, { at: number; value: Promise<string | undefined> }>();
  return (address) => {
    if (isIP(address) === 0) return Promise.resolve(undefined);
    const hit = cache.get(address);
    if (hit && Date.now() - hit.at < ttl) return hit.value;
    const args = [...(opts.netns ? ["-n", opts.netns] : []), "-j", "route", "get", address];
    const value = new Promise<string | undefined>((resolve) => {
      execFile("ip", args, { timeout: 5000 }, (err, stdout, stderr) => {
        if (err) {
          opts.onError?.(address, (stderr || err.message).trim());
          cache.delete(address);
          return resolve(undefined);
        }
        resolve(snatFromRoute(stdout));
      });
    });
    cache.set(address, { at: Date.now(), value });
    return value;
  };
}
