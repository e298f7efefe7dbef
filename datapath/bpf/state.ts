// The L4 load balancer's state as the pinned BPF maps hold it, and the operations that change it.
// The agent (datapath/agent/) computes ordered minimal diffs as MapOps; the map layer
// (datapath/bpf/) writes them to the kernel. IPv4 first; addresses are strings so IPv6 maps can
// be added beside the v4 ones without changing this contract.

export type L4Protocol = "TCP" | "UDP";

export interface FrontendKey {
  address: string;
  port: number;
  protocol: L4Protocol;
}

/** Frontend flag: the service's single backend is the node's L7 proxy (no SNAT, local delivery). */
export const FRONTEND_L7_PROXY = 1;

export interface FrontendEntry extends FrontendKey {
  serviceId: number;
  flags: number;
}

export interface BackendEntry {
  /** Agent-allocated, stable across agent restarts (read back from the pinned maps). */
  id: number;
  address: string;
  port: number;
  protocol: L4Protocol;
  /** Source address to SNAT to when the reply would otherwise bypass this node (backend on another node). */
  snatAddress?: string;
}

export interface ConntrackTimeouts {
  /** Seconds an idle flow keeps its backend. */
  tcpEstablished: number;
  /** After FIN or RST. */
  tcpClosing: number;
  /** Half-open (SYN seen, no reply yet). */
  tcpSyn: number;
  udp: number;
}

export interface LbState {
  frontends: FrontendEntry[];
  backends: BackendEntry[];
  /** Service id → Maglev table (M backend ids). */
  maglev: Map<number, Uint32Array>;
  /** Addresses with at least one frontend: packets to them on an unknown port or protocol are dropped. */
  vips: string[];
  /** The desired-state version last applied (kept in a map, so it survives agent restarts). */
  version: string;
}

export type MapOp =
  | { op: "backend-upsert"; backend: BackendEntry }
  | { op: "backend-delete"; id: number }
  /** A new inner Maglev map is created and filled, then swapped into the outer map in one update. */
  | { op: "maglev-upsert"; serviceId: number; table: Uint32Array }
  | { op: "maglev-delete"; serviceId: number }
  | { op: "frontend-upsert"; frontend: FrontendEntry }
  | { op: "frontend-delete"; key: FrontendKey }
  | { op: "vip-upsert"; address: string }
  | { op: "vip-delete"; address: string }
  | { op: "config"; timeouts: ConntrackTimeouts }
  | { op: "version"; version: string };

export interface FrontendCounters extends FrontendKey {
  packets: bigint;
  bytes: bigint;
}

/** The kernel side: one implementation writes real pinned maps; tests may use an in-memory one. */
export interface LbMaps {
  /** Maglev table size M every inner map has. */
  readonly maglevSize: number;
  /** Applies the ops in order; rejects at the first that fails, saying which (ops before it stay applied). */
  apply(ops: readonly MapOp[]): Promise<void>;
  /** Everything the maps hold (adoption after a restart, dry-run diffs). */
  read(): Promise<LbState>;
  counters(): Promise<FrontendCounters[]>;
  /** Live conntrack entries (tests check that nothing leaks). */
  conntrackCount(): Promise<number>;
  close(): Promise<void>;
}
