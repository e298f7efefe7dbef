// The ordered minimal list of map operations that turns the current state into the desired one.
// Pure. Every prefix of the list leaves the maps consistent for the datapath: nothing refers to an
// entry that does not exist yet or any more.
//   additions and changes: backends → Maglev tables → frontends → VIPs → conntrack timeouts
//   removals:              VIPs → frontends → Maglev tables → backends
//   then the version, last, so it only ever names a state the maps fully hold.
import { FRONTEND_L7_PROXY, type BackendEntry, type ConntrackTimeouts, type FrontendEntry, type LbState, type MapOp } from "../bpf/state.ts";
import { frontendKeyOf } from "./desired.ts";

/** LbState plus the conntrack timeouts, when known (the maps may not report them). */
export interface AgentState extends LbState {
  timeouts?: ConntrackTimeouts;
}

export function diff(current: AgentState, desired: AgentState): MapOp[] {
  const adds: MapOp[] = [];
  const removes: MapOp[] = [];

  const curBackends = new Map(current.backends.map((b) => [b.id, b]));
  const wantBackends = new Map(desired.backends.map((b) => [b.id, b]));
  for (const b of [...desired.backends].sort((x, y) => x.id - y.id)) {
    const c = curBackends.get(b.id);
    if (!c || !sameBackend(c, b)) adds.push({ op: "backend-upsert", backend: { ...b } });
  }
  for (const [sid, table] of [...desired.maglev].sort((x, y) => x[0] - y[0])) {
    const c = current.maglev.get(sid);
    if (!c || !sameTable(c, table)) adds.push({ op: "maglev-upsert", serviceId: sid, table });
  }
  const curFrontends = new Map(current.frontends.map((f) => [frontendKeyOf(f), f]));
  const wantFrontends = new Map(desired.frontends.map((f) => [frontendKeyOf(f), f]));
  for (const [k, f] of [...wantFrontends].sort(byKey)) {
    const c = curFrontends.get(k);
    if (!c || !sameFrontend(c, f)) adds.push({ op: "frontend-upsert", frontend: { ...f } });
  }
  const curVips = new Set(current.vips);
  const wantVips = new Set(desired.vips);
  for (const v of [...wantVips].sort()) if (!curVips.has(v)) adds.push({ op: "vip-upsert", address: v });
  if (desired.timeouts && !sameTimeouts(current.timeouts, desired.timeouts)) adds.push({ op: "config", timeouts: { ...desired.timeouts } });

  for (const v of [...curVips].sort()) if (!wantVips.has(v)) removes.push({ op: "vip-delete", address: v });
  for (const [k, f] of [...curFrontends].sort(byKey)) {
    if (!wantFrontends.has(k)) removes.push({ op: "frontend-delete", key: { address: f.address, port: f.port, protocol: f.protocol } });
  }
  for (const sid of [...current.maglev.keys()].sort((x, y) => x - y)) if (!desired.maglev.has(sid)) removes.push({ op: "maglev-delete", serviceId: sid });
  for (const id of [...curBackends.keys()].sort((x, y) => x - y)) if (!wantBackends.has(id)) removes.push({ op: "backend-delete", id });

  const ops = [...adds, ...removes];
  if (desired.version !== current.version) ops.push({ op: "version", version: desired.version });
  return ops;
}

function byKey<T>(a: [string, T], b: [string, T]): number {
  return a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0;
}

function sameBackend(a: BackendEntry, b: BackendEntry): boolean {
  return a.address === b.address && a.port === b.port && a.protocol === b.protocol && (a.snatAddress || undefined) === (b.snatAddress || undefined);
}

function sameFrontend(a: FrontendEntry, b: FrontendEntry): boolean {
  return a.serviceId === b.serviceId && a.flags === b.flags;
}

export function sameTable(a: Uint32Array, b: Uint32Array): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function sameTimeouts(a: ConntrackTimeouts | undefined, b: ConntrackTimeouts): boolean {
  return !!a && a.tcpEstablished === b.tcpEstablished && a.tcpClosing === b.tcpClosing && a.tcpSyn === b.tcpSyn && a.udp === b.udp;
}

/** The state after `ops` were applied to `state` (the agent's model of the maps between reads). */
export function applyOps(state: AgentState, ops: readonly MapOp[]): AgentState {
  const backends = new Map(state.backends.map((b) => [b.id, b]));
  const frontends = new Map(state.frontends.map((f) => [frontendKeyOf(f), f]));
  const maglev = new Map(state.maglev);
  const vips = new Set(state.vips);
  let { version, timeouts } = state;
  for (const o of ops) {
    switch (o.op) {
      case "backend-upsert": backends.set(o.backend.id, { ...o.backend }); break;
      case "backend-delete": backends.delete(o.id); break;
      case "maglev-upsert": maglev.set(o.serviceId, o.table); break;
      case "maglev-delete": maglev.delete(o.serviceId); break;
      case "frontend-upsert": frontends.set(frontendKeyOf(o.frontend), { ...o.frontend }); break;
      case "frontend-delete": frontends.delete(frontendKeyOf(o.key)); break;
      case "vip-upsert": vips.add(o.address); break;
      case "vip-delete": vips.delete(o.address); break;
      case "config": timeouts = { ...o.timeouts }; break;
      case "version": version = o.version; break;
    }
  }
  const out: AgentState = { backends: [...backends.values()], frontends: [...frontends.values()], maglev, vips: [...vips], version };
  if (timeouts) out.timeouts = timeouts;
  return out;
}

/** One line per op, for people: `+` adds, `~` changes an existing entry, `-` removes. */
export function formatOps(ops: readonly MapOp[], current?: LbState): string {
  const backendIds = new Set(current?.backends.map((b) => b.id));
  const frontendKeys = new Set(current?.frontends.map(frontendKeyOf));
  const lines = ops.map((o): string => {
    switch (o.op) {
      case "backend-upsert": {
        const b = o.backend;
        return `${backendIds.has(b.id) ? "~" : "+"} backend ${b.id} ${frontendKeyOf(b)}${b.snatAddress ? ` snat ${b.snatAddress}` : ""}`;
      }
      case "backend-delete": return `- backend ${o.id}`;
      case "maglev-upsert": {
        const distinct = new Set(o.table).size;
        return `${current && !current.maglev.has(o.serviceId) ? "+" : "~"} maglev svc ${o.serviceId} (${o.table.length} slots, ${distinct} backend${distinct === 1 ? "" : "s"})`;
      }
      case "maglev-delete": return `- maglev svc ${o.serviceId}`;
      case "frontend-upsert": {
        const f = o.frontend;
        return `${frontendKeys.has(frontendKeyOf(f)) ? "~" : "+"} frontend ${frontendKeyOf(f)} → svc ${f.serviceId}${f.flags & FRONTEND_L7_PROXY ? " (L7 proxy)" : ""}`;
      }
      case "frontend-delete": return `- frontend ${frontendKeyOf(o.key)}`;
      case "vip-upsert": return `+ vip ${o.address}`;
      case "vip-delete": return `- vip ${o.address}`;
      case "config": {
        const t = o.timeouts;
        return `~ conntrack timeouts tcp ${t.tcpEstablished}s, closing ${t.tcpClosing}s, syn ${t.tcpSyn}s, udp ${t.udp}s`;
      }
      case "version": return `~ version ${o.version}`;
    }
  });
  return lines.length ? `${lines.join("\n")}\n` : "";
}
