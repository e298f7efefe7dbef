// What the L4 maps should hold for a translator output, keyed by natural identities (service ids
// from the translator, backends by address:port/protocol). Pure: ids are allocated later
// (ids.ts), so the same config always yields the same desired state.
import { isIPv6 } from "node:net";
import type { DatapathConfig, GatewayDatapath, L4Backend, L4Service } from "../../operator/translate/output.ts";
import { buildMaglevTable, maglevHashKey, SUPPORTED_MAGLEV_TABLE_SIZES } from "../../operator/translate/maglev.ts";
import { FRONTEND_L7_PROXY, type FrontendKey, type L4Protocol } from "../bpf/state.ts";

export interface DesiredBackend {
  key: string;
  address: string;
  port: number;
  protocol: L4Protocol;
  snatAddress?: string;
}

export interface DesiredFrontend extends FrontendKey {
  flags: number;
}

export interface DesiredService {
  /** L4Service.id, or `l7 <proxy address:port>` for the frontends steered to the local proxy. */
  key: string;
  frontends: DesiredFrontend[];
  /** Backend keys; `table` holds indices into this list. */
  backends: string[];
  /** maglevSize entries, each an index into `backends`. */
  table: Uint32Array;
}

export interface DesiredState {
  /** Only services with at least one usable backend (a frontend without a table forwards nowhere); sorted by key. */
  services: DesiredService[];
  /** Every backend of every service, terminating ones included (their established flows keep them); sorted by key. */
  backends: DesiredBackend[];
  /** Addresses with at least one frontend, sorted. */
  vips: string[];
  /** What could not be honoured (frontend conflicts, ports out of range); the rest is still served. */
  problems: string[];
}

export interface DesiredOptions {
  /** Maglev table size M of the maps; tables of another size from the translator are rebuilt. */
  maglevSize: number;
  /** Frontends are served on port+offset (standalone: the same offset as the proxy's listeners). */
  portOffset?: number;
  /**
   * Where the local proxy serves an L7 listener on `address:port` (after the offset); undefined
   * (the default) = no L7 frontends, e.g. in standalone mode where the proxy listens on the
   * addresses itself.
   */
  l7Proxy?: (address: string, port: number) => { address: string; port: number } | undefined;
  /** SNAT source for a backend address (the reply would otherwise bypass this node); default none. */
  snatFor?: (address: string) => string | undefined;
  /** Drop packets to frontend addresses on unknown ports (default true). */
  dropUnknownPorts?: boolean;
  /** Whether the maps take IPv6 entries (default false: the datapath is IPv4 first); IPv6 frontends and backends are otherwise left out and reported. */
  ipv6?: boolean;
}

export function endpointKey(address: string, port: number, protocol: L4Protocol): string {
  return `${isIPv6(address) ? `[${address}]` : address}:${port}/${protocol}`;
}

export const frontendKeyOf = (f: FrontendKey): string => endpointKey(f.address, f.port, f.protocol);

export function desiredState(input: DatapathConfig | readonly GatewayDatapath[], opts: DesiredOptions): DesiredState {
  if (!SUPPORTED_MAGLEV_TABLE_SIZES.includes(opts.maglevSize)) {
    throw new RangeError(`unsupported Maglev table size ${opts.maglevSize}; expected one of ${SUPPORTED_MAGLEV_TABLE_SIZES.join(", ")}`);
  }
  const gateways = [...("gateways" in input ? input.gateways : input)].sort((a, b) => cmp(a.gateway, b.gateway));
  const offset = opts.portOffset ?? 0;
  const problems: string[] = [];
  const backends = new Map<string, DesiredBackend>();
  const services = new Map<string, DesiredService>();
  // Frontend key → who claimed it first (gateways in name order, L4 before L7 within one).
  const claimed = new Map<string, string>();
  const vips = new Set<string>();

  const addBackend = (address: string, port: number, protocol: L4Protocol): string => {
    const key = endpointKey(address, port, protocol);
    if (!backends.has(key)) {
      const b: DesiredBackend = { key, address, port, protocol };
      const snat = opts.snatFor?.(address);
      if (snat) b.snatAddress = snat;
      backends.set(key, b);
    }
    return key;
  };
  const claim = (f: FrontendKey, owner: string): boolean => {
    const port = f.port + offset;
    const shown = endpointKey(f.address, port, f.protocol);
    if (!Number.isInteger(port) || port < 1 || port > 0xffff) {
      problems.push(`${owner}: frontend ${endpointKey(f.address, f.port, f.protocol)} plus port offset ${offset} is out of range`);
      return false;
    }
    const prev = claimed.get(shown);
    if (prev !== undefined && prev !== owner) {
      problems.push(`${owner}: frontend ${shown} is already served for ${prev}; not served`);
      return false;
    }
    claimed.set(shown, owner);
    return true;
  };

  const v6ok = opts.ipv6 ?? false;
  const skipV6 = (owner: string, what: string, address: string): boolean => {
    if (v6ok || !isIPv6(address)) return false;
    problems.push(`${owner}: ${what} ${address} is IPv6, which the datapath does not handle yet; left out`);
    return true;
  };

  for (const gw of gateways) {
    for (const svc0 of [...gw.l4].sort((a, b) => cmp(a.id, b.id))) {
      const svc = v6ok || !svc0.backends.some((b) => isIPv6(b.address)) ? svc0 : withoutV6Backends(svc0, problems);
      const frontends: DesiredFrontend[] = [];
      for (const f of svc.frontends) {
        if (f.protocol !== svc.protocol || skipV6(svc.id, "frontend address", f.address) || !claim(f, svc.id)) continue;
        frontends.push({ address: f.address, port: f.port + offset, protocol: f.protocol, flags: 0 });
        vips.add(f.address);
      }
      const keys = svc.backends.map((b) => addBackend(b.address, b.port, b.protocol));
      const table = tableFor(svc, opts.maglevSize, problems);
      // No active backend: no table and no frontend; the VIP still drops the traffic.
      if (table.length === 0 || frontends.length === 0) continue;
      services.set(svc.id, { key: svc.id, frontends, backends: keys, table });
    }
    if (!opts.l7Proxy) continue;
    for (const p of gw.ports) {
      for (const address of gw.addresses) {
        const owner = `${gw.gateway} port ${p.port}`;
        const f: FrontendKey = { address, port: p.port, protocol: "TCP" };
        const target = opts.l7Proxy(address, p.port + offset);
        if (!target || skipV6(owner, "frontend address", address) || skipV6(owner, "proxy address", target.address) || !claim(f, owner)) continue;
        const bkey = addBackend(target.address, target.port, "TCP");
        const skey = `l7 ${bkey}`;
        let svc = services.get(skey);
        if (!svc) {
          svc = { key: skey, frontends: [], backends: [bkey], table: new Uint32Array(opts.maglevSize) };
          services.set(skey, svc);
        }
        svc.frontends.push({ address, port: p.port + offset, protocol: "TCP", flags: FRONTEND_L7_PROXY });
        vips.add(address);
      }
    }
  }
  // L7 proxy backends never get SNAT: the proxy is on this node.
  for (const s of services.values()) {
    if (!s.key.startsWith("l7 ")) continue;
    const b = backends.get(s.backends[0] as string);
    if (b) delete b.snatAddress;
  }
  return {
    services: [...services.values()].sort((a, b) => cmp(a.key, b.key)),
    backends: [...backends.values()].sort((a, b) => cmp(a.key, b.key)),
    vips: opts.dropUnknownPorts === false ? [] : [...vips].sort(),
    problems,
  };
}

/** The service without its IPv6 backends (the table is rebuilt without them). */
function withoutV6Backends(svc: L4Service, problems: string[]): L4Service {
  const dropped = svc.backends.filter((b) => isIPv6(b.address));
  problems.push(`${svc.id}: IPv6 backend${dropped.length === 1 ? "" : "s"} ${dropped.map((b) => b.address).join(", ")} left out: the datapath does not handle IPv6 yet`);
  // An empty table with active backends left is rebuilt from them.
  return { ...svc, backends: svc.backends.filter((b) => !isIPv6(b.address)), maglev: new Uint32Array(0) };
}

/** The service's Maglev table at the maps' size, as indices into svc.backends. */
function tableFor(svc: L4Service, m: number, problems: string[]): Uint32Array {
  if (svc.maglev.length === m && maxIndex(svc.maglev) < svc.backends.length) return svc.maglev;
  if (svc.maglev.length === 0 && !svc.backends.some((b) => b.state === "active")) return svc.maglev;
  if (svc.maglev.length !== 0 && svc.maglev.length !== m && !SUPPORTED_MAGLEV_TABLE_SIZES.includes(svc.maglev.length)) {
    problems.push(`${svc.id}: Maglev table of ${svc.maglev.length} entries is not a supported size; rebuilt with ${m}`);
  }
  try {
    return buildMaglevTable(svc.backends.map((b: L4Backend) => ({ hashKey: maglevHashKey(b.address, b.port, b.protocol), weight: b.state === "active" ? b.weight : 0 })), m);
  } catch (err) {
    problems.push(`${svc.id}: cannot build its Maglev table: ${(err as Error).message}`);
    return new Uint32Array(0);
  }
}

// Tables are reused by the translator while unchanged: scan each one once.
const maxIndexOf = new WeakMap<Uint32Array, number>();

function maxIndex(t: Uint32Array): number {
  let max = maxIndexOf.get(t);
  if (max === undefined) {
    max = 0;
    for (let i = 0; i < t.length; i++) if ((t[i] as number) > max) max = t[i] as number;
    maxIndexOf.set(t, max);
  }
  return max;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
