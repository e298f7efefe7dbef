/* Shared between the tc programs (lb.bpf.c) and the map daemon (bpfd.c): map value layouts.
 * The TypeScript side (maps.ts) encodes the same layouts byte for byte; change all three together.
 * IPv4 maps are named *lb4* / *ct4*; IPv6 twins (lb6, ct6) get 16-byte address fields and the
 * same value shapes, so nothing here assumes an address fits in the service or backend id. */
#ifndef SLUICE_LB_H
#define SLUICE_LB_H

#include <linux/types.h>

/* Frontend flags (mirror state.ts). */
#define FRONTEND_L7_PROXY 1u

/* Conntrack entry flags. */
#define CT_ESTABLISHED 0x1 /* a reply was seen */
#define CT_CLOSING 0x2     /* FIN or RST seen */
#define CT_SNAT 0x4        /* the source was rewritten too (backend on another node) */

#define CT_DIR_FWD 0 /* client -> frontend, keyed by the original tuple */
#define CT_DIR_REV 1 /* backend -> client (or snat address), keyed by the reply as it arrives */

/* Source ports used for SNAT: above Linux's default ephemeral range (32768-60999), so they do not
 * collide with the node's own sockets on the SNAT address. */
#define SNAT_PORT_MIN 61000
#define SNAT_PORT_RANGE 4536 /* 61000..65535 */
#define SNAT_PORT_TRIES 16

/* Map sizes when the caller does not set them (the daemon resizes before load). */
#define DEFAULT_MAX_SERVICES 65536
#define DEFAULT_MAX_BACKENDS 65536
#define DEFAULT_CT_SIZE 262144
#define DEFAULT_MAGLEV_M 16381
#define FRAG_MAP_SIZE 8192
#define VERSION_MAX 252

struct lb4_fe_key {
	__be32 addr;
	__be16 port;
	__u8 proto; /* IPPROTO_TCP / IPPROTO_UDP */
	__u8 pad;
};

struct lb_fe_val {
	__u32 svc_id;
	__u32 flags; /* FRONTEND_* */
};

struct lb_fe_stats {
	__u64 packets;
	__u64 bytes;
};

struct lb4_backend {
	__be32 addr;
	__be32 snat_addr; /* 0 = no SNAT */
	__be16 port;
	__u8 proto;
	__u8 flags;
};

struct lb_config {
	__u32 maglev_m;
	__u32 tcp_established_s;
	__u32 tcp_closing_s;
	__u32 tcp_syn_s;
	__u32 udp_s;
	__u32 pad[3];
};

struct lb_version {
	__u32 len;
	char data[VERSION_MAX];
};

struct ct4_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 dir; /* CT_DIR_* */
	__u16 pad;
};

/* Forward entry: addr/port = backend, addr2/port2 = SNAT source (CT_SNAT).
 * Reverse entry: addr/port = frontend (becomes the source), addr2/port2 = the client (becomes
 * the destination again when CT_SNAT). Both store addresses, not ids, so an established flow
 * survives backend and Maglev changes. */
struct ct4_val {
	__be32 addr;
	__be32 addr2;
	__be16 port;
	__be16 port2;
	__u32 svc_id;
	__u64 expires; /* bpf_ktime_get_ns() deadline */
	__u32 backend_id;
	__u8 flags; /* CT_* */
	__u8 pad[3];
};

/* Non-first IPv4 fragments carry no ports: the first fragment records its address rewrite. */
struct frag4_key {
	__be32 saddr;
	__be32 daddr;
	__be16 id;
	__u8 proto;
	__u8 pad;
};

struct frag4_val {
	__be32 saddr;
	__be32 daddr;
};

#endif
