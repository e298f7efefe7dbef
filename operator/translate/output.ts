// What translate(snapshot) produces. Everything here is plain data: the sinks apply it, the
// datapath consumes it, and `sluice render` prints it.
import type { KindName } from "../api/kinds.ts";
import type { Service } from "../api/objects.ts";

export interface TranslateResult {
  /** Computed status for every object Sluice is responsible for, keyed `Kind/namespace/name`. */
  statuses: Map<string, ObjectStatus>;
  /** The desired generated Service of each Gateway. */
  services: Service[];
  dns: DnsRecord[];
  datapath: DatapathConfig;
  /** Problems a user should see that no status can carry (e.g. a parentRef to an unknown Gateway). */
  warnings: string[];
}

export interface ObjectStatus {
  kind: KindName;
  namespace?: string;
  name: string;
  status: Record<string, unknown>;
}

// ---- DNS ----

export interface DnsRecord {
  /** Fully qualified, without the trailing dot; may start with `*.`. */
  name: string;
  type: "A" | "AAAA" | "ALIAS" | "TXT";
  /** IPs for A/AAAA, the load balancer's hostname for ALIAS, quoted values for TXT. */
  targets: string[];
  /** What asked for this name: `gateway/ns/name`, `httproute/ns/name`, ... */
  resources: string[];
}

// ---- datapath ----

export interface DatapathConfig {
  gateways: GatewayDatapath[];
  /** Backend clusters, shared by every Gateway that routes to them, sorted by id. */
  clusters: Cluster[];
  /** Certificate material the proxy needs (listener and backend client certificates), sorted by id. */
  certificates: TlsCertificate[];
  /** CA bundles for frontend client-certificate validation, sorted by id. */
  caBundles: CaBundle[];
}

/** A validated `kubernetes.io/tls` Secret; `id` is its `namespace/name`. */
export interface TlsCertificate {
  id: string;
  cert: string;
  key: string;
}

/** A validated CA ConfigMap (`ca.crt`); `id` is its `namespace/name`. */
export interface CaBundle {
  id: string;
  pem: string;
}

export interface GatewayDatapath {
  /** `namespace/name` of the Gateway. */
  gateway: string;
  /** Hash of everything below plus the clusters it uses; what the datapath acknowledges. */
  configHash: string;
  /** Addresses the Gateway's listeners are served on (IPs only). */
  addresses: string[];
  /** L7 ports, served by the proxy (HTTP, HTTPS, TLS). */
  ports: L7Port[];
  /** L4 services (TCP and UDP listeners), forwarded entirely in eBPF. */
  l4: L4Service[];
  /**
   * The Gateway's load balancer puts a PROXY protocol header before every connection (its
   * Service asks the AWS NLB for it): the proxy reads the client's address from it. Absent = no.
   */
  proxyProtocol?: true;
}

export type L7Protocol = "HTTP" | "HTTPS" | "TLS";

export interface L7Port {
  port: number;
  /** Listeners on this port, most specific hostname first: a request is served by the first whose hostname matches (listener isolation). */
  listeners: L7Listener[];
}

export interface L7Listener {
  /** `namespace/gateway/listener` */
  id: string;
  name: string;
  protocol: L7Protocol;
  /** undefined = any host. */
  hostname?: string;
  tls?: ListenerTLS;
  /** HTTP and HTTPS listeners: hosts, most specific first. */
  virtualHosts: VirtualHost[];
  /** TLS listeners: SNI routes, most specific hostname first. */
  tlsRoutes: TLSRouteEntry[];
}

export interface ListenerTLS {
  mode: "Terminate" | "Passthrough";
  /** Secret keys (`namespace/name`) of the usable certificates, in spec order. */
  certificates: string[];
  /** Frontend client-certificate validation, when configured. */
  clientValidation?: { caCertificates: string[]; mode: "AllowValidOnly" | "AllowInsecureFallback" };
}

export interface VirtualHost {
  /** Exact host, `*.suffix`, or `*` for any. */
  hostname: string;
  /** In precedence order: the first entry whose match holds serves the request. */
  routes: RouteEntry[];
}

export interface RouteRef {
  kind: "HTTPRoute" | "GRPCRoute" | "TLSRoute" | "TCPRoute" | "UDPRoute";
  namespace: string;
  name: string;
}

export interface StringMatch {
  type: "Exact" | "RegularExpression";
  name: string;
  value: string;
}

export interface RouteMatch {
  path: { type: "Exact" | "PathPrefix" | "RegularExpression"; value: string };
  method?: string;
  headers: StringMatch[];
  queryParams: StringMatch[];
}

export interface HeaderModifier {
  set: { name: string; value: string }[];
  add: { name: string; value: string }[];
  remove: string[];
}

export type Filter =
  | { type: "RequestHeaderModifier"; modifier: HeaderModifier }
  | { type: "ResponseHeaderModifier"; modifier: HeaderModifier }
  | {
      type: "RequestRedirect";
      scheme?: string;
      hostname?: string;
      port?: number;
      path?: { type: "ReplaceFullPath"; value: string } | { type: "ReplacePrefixMatch"; value: string };
      statusCode: number;
    }
  | {
      type: "URLRewrite";
      hostname?: string;
      path?: { type: "ReplaceFullPath"; value: string } | { type: "ReplacePrefixMatch"; value: string };
    }
  | { type: "RequestMirror"; backend: WeightedBackend; percent: number }
  | {
      type: "CORS";
      allowOrigins: string[];
      allowMethods: string[];
      allowHeaders: string[];
      exposeHeaders: string[];
      allowCredentials: boolean;
      maxAge?: number;
    };

export interface WeightedBackend {
  weight: number;
  /** Cluster id; absent when the backendRef is unusable (its share of traffic answers 500). */
  cluster?: string;
  /** Why the backendRef is unusable. */
  invalid?: string;
  /** Backend-level filters (only for the backend actually chosen). */
  filters: Filter[];
}

export interface RouteEntry {
  /** Stable id: `Kind/namespace/name/rule/match`. */
  id: string;
  route: RouteRef;
  ruleIndex: number;
  ruleName?: string;
  matchIndex: number;
  match: RouteMatch;
  /** GRPCRoute entries: answered with gRPC statuses, forwarded over HTTP/2. */
  grpc: boolean;
  filters: Filter[];
  /** Empty with no `direct` means "no backendRefs": answered 500. */
  backends: WeightedBackend[];
  /** A fixed answer instead of forwarding (500 for a rule with no usable backend). */
  direct?: { status: number; reason: string };
  timeouts?: { requestMs?: number; backendRequestMs?: number };
  retry?: { attempts: number; codes: number[]; backoffMs?: number };
}

export interface TLSRouteEntry {
  route: RouteRef;
  /** Effective SNI hostnames (listener ∩ route); `*` = any. */
  hostnames: string[];
  backends: WeightedBackend[];
}

export type ClusterProtocol = "http1" | "h2c" | "h2" | "websocket" | "tcp";

export interface ClusterEndpoint {
  address: string;
  port: number;
  /** false while terminating: kept for established connections, never picked for new ones. */
  ready: boolean;
  zone?: string;
  /** Pod (or other) name from the EndpointSlice targetRef. */
  target?: string;
}

export interface Cluster {
  /** `namespace/service:port` (+ `|tls` variants when a BackendTLSPolicy applies). */
  id: string;
  service: { namespace: string; name: string; port: number };
  protocol: ClusterProtocol;
  endpoints: ClusterEndpoint[];
  /** ExternalName services: a DNS name to resolve instead of endpoints. */
  externalName?: string;
  tls?: BackendTLS;
}

export interface BackendTLS {
  sni: string;
  /** PEM bundles from the policy's CA ConfigMaps, or "System" for the well-known roots. */
  caCertificates: string[] | "System";
  subjectAltNames: { type: "Hostname" | "URI"; value: string }[];
  /** Gateway's backend client certificate Secret (`namespace/name`). */
  clientCertificate?: string;
  /** The BackendTLSPolicy that applies (`namespace/name`). */
  policy: string;
}

// ---- L4 (eBPF) ----

export interface L4Frontend {
  address: string;
  port: number;
  protocol: "TCP" | "UDP";
}

export interface L4Backend {
  address: string;
  port: number;
  protocol: "TCP" | "UDP";
  weight: number;
  /** `active` backends take new flows; `terminating` ones only keep their established flows. */
  state: "active" | "terminating";
}

export interface L4Service {
  /** `namespace/gateway/listener` */
  id: string;
  protocol: "TCP" | "UDP";
  frontends: L4Frontend[];
  /** The route that receives traffic (the oldest of those attached). */
  route?: RouteRef;
  /** Sorted by Maglev hash key, so every node builds the same table. */
  backends: L4Backend[];
  /** Maglev lookup table: M entries, each an index into `backends`. Empty when there is no active backend. */
  maglev: Uint32Array;
}
