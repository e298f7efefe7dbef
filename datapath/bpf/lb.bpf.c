// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Sluice L4 load balancer: tc (cls_bpf, direct action) programs for ingress and egress.
 *
 * Ingress: reply traffic that matches a reverse conntrack entry is reverse-NATed (source back to
 * the frontend, destination back to the client when SNAT was used). Otherwise a packet to a
 * frontend (daddr, dport, proto) keeps its conntrack backend or gets one from the service's
 * Maglev table, and is DNATed (and SNATed when the backend's reply would bypass this node).
 * Packets to a known VIP on an unknown port/protocol are dropped.
 * Egress: only reverse NAT, for replies generated on this node (the L7 proxy behind an
 * L7 frontend, which is reached by DNAT to a local address).
 *
 * Headers are copied with bpf_skb_load_bytes rather than read through direct packet pointers:
 * helpers that rewrite the packet invalidate those pointers, and copies keep the verifier simple
 * for variable IHL. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "lb.h"

#define IP_MF 0x2000
#define IP_OFFSET 0x1fff
#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10
#define NS_PER_S 1000000000ULL
#define MAGLEV_EMPTY 0xffffffffu

/* ------------------------------------------------------------------------------------------- */
/* Maps. Pinned by name under the daemon's pin directory, so they outlive any one loader. */

struct maglev_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, DEFAULT_MAGLEV_M); /* the daemon sets M before load */
	__uint(map_flags, BPF_F_MMAPABLE);     /* userspace fills a new table with one memcpy */
	__type(key, __u32);
	__type(value, __u32);
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, DEFAULT_MAX_SERVICES);
	__type(key, __u32); /* service id */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct maglev_inner);
} sl_lb4_maglev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DEFAULT_MAX_SERVICES);
	__type(key, struct lb4_fe_key);
	__type(value, struct lb_fe_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_lb4_fe SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, DEFAULT_MAX_SERVICES);
	__type(key, struct lb4_fe_key);
	__type(value, struct lb_fe_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_lb4_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DEFAULT_MAX_SERVICES);
	__type(key, __be32);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_lb4_vip SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DEFAULT_MAX_BACKENDS);
	__type(key, __u32); /* backend id */
	__type(value, struct lb4_backend);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_lb4_be SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, DEFAULT_CT_SIZE);
	__type(key, struct ct4_key);
	__type(value, struct ct4_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_ct4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FRAG_MAP_SIZE);
	__type(key, struct frag4_key);
	__type(value, struct frag4_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_frag4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_version);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_version SEC(".maps");

/* ------------------------------------------------------------------------------------------- */
/* Parsing. */

enum { FRAG_NONE = 0, FRAG_FIRST = 1, FRAG_LATER = 2 };
enum { PARSE_OK = 0, PARSE_PASS = 1, PARSE_BAD = 2 };

struct pkt4 {
	__u32 l3;
	__u32 l4;
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__be16 id;
	__u8 proto;
	__u8 tcp_flags;
	__u8 frag;
	__u8 has_l4; /* ports were read: TCP or UDP, not a later fragment */
};

static __always_inline int parse4(struct __sk_buff *skb, struct pkt4 *p)
{
	struct ethhdr eth;
	struct iphdr ip;

	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)) < 0)
		return PARSE_PASS;
	if (eth.h_proto != bpf_htons(ETH_P_IP))
		return PARSE_PASS; /* IPv6 maps (lb6/ct6) are designed in but not built yet */
	p->l3 = ETH_HLEN;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) < 0)
		return PARSE_PASS; /* shorter than an IPv4 header: nothing to look up, the stack drops it */
	p->saddr = ip.saddr;
	p->daddr = ip.daddr;
	p->proto = ip.protocol;
	p->id = ip.id;
	if (ip.version != 4 || ip.ihl < 5)
		return PARSE_BAD;
	__u32 hlen = ip.ihl * 4;
	__u32 tot = bpf_ntohs(ip.tot_len);
	if (tot < hlen || ETH_HLEN + tot > skb->len)
		return PARSE_BAD;
	p->l4 = ETH_HLEN + hlen;

	__u16 frag_off = bpf_ntohs(ip.frag_off);
	if (frag_off & IP_OFFSET)
		p->frag = FRAG_LATER;
	else if (frag_off & IP_MF)
		p->frag = FRAG_FIRST;
	if (p->frag == FRAG_LATER)
		return PARSE_OK;

	if (ip.protocol == IPPROTO_TCP) {
		__u8 hdr[14];
		if (tot < hlen + 20 || bpf_skb_load_bytes(skb, p->l4, hdr, sizeof(hdr)) < 0)
			return PARSE_BAD;
		__builtin_memcpy(&p->sport, &hdr[0], 2);
		__builtin_memcpy(&p->dport, &hdr[2], 2);
		p->tcp_flags = hdr[13];
		p->has_l4 = 1;
	} else if (ip.protocol == IPPROTO_UDP) {
		__be16 ports[2];
		if (tot < hlen + 8 || bpf_skb_load_bytes(skb, p->l4, ports, sizeof(ports)) < 0)
			return PARSE_BAD;
		p->sport = ports[0];
		p->dport = ports[1];
		p->has_l4 = 1;
	}
	return PARSE_OK;
}

/* ------------------------------------------------------------------------------------------- */
/* Rewriting with incremental checksums. The address change goes into the L4 checksum as a
 * pseudo-header change, which is also right for CHECKSUM_PARTIAL skbs (veth, lo, local
 * senders); the port change is skipped by the helper for those, as it should be. */

static __always_inline __u32 l4_csum_off(const struct pkt4 *p)
{
	return p->l4 + (p->proto == IPPROTO_TCP ? 16 : 6);
}

static __always_inline int set_addr(struct __sk_buff *skb, const struct pkt4 *p, __u32 field,
				    __be32 from, __be32 to)
{
	if (from == to)
		return 0;
	if (p->has_l4) {
		__u64 flags = BPF_F_PSEUDO_HDR | sizeof(to);
		if (p->proto == IPPROTO_UDP)
			flags |= BPF_F_MARK_MANGLED_0; /* a zero UDP checksum means "none": keep it */
		if (bpf_l4_csum_replace(skb, l4_csum_off(p), from, to, flags) < 0)
			return -1;
	}
	if (bpf_l3_csum_replace(skb, p->l3 + 10, from, to, sizeof(to)) < 0)
		return -1;
	return bpf_skb_store_bytes(skb, p->l3 + field, &to, sizeof(to), 0);
}

static __always_inline int set_port(struct __sk_buff *skb, const struct pkt4 *p, __u32 field,
				    __be16 from, __be16 to)
{
	if (from == to || !p->has_l4)
		return 0;
	__u64 flags = sizeof(to);
	if (p->proto == IPPROTO_UDP)
		flags |= BPF_F_MARK_MANGLED_0;
	if (bpf_l4_csum_replace(skb, l4_csum_off(p), from, to, flags) < 0)
		return -1;
	return bpf_skb_store_bytes(skb, p->l4 + field, &to, sizeof(to), 0);
}

#define IP_SADDR_OFF 12
#define IP_DADDR_OFF 16

/* First fragments record their address rewrite so later fragments (no ports) follow it. */
static __always_inline void record_frag(const struct pkt4 *p, __be32 saddr, __be32 daddr)
{
	if (p->frag != FRAG_FIRST)
		return;
	struct frag4_key k = {.saddr = p->saddr, .daddr = p->daddr, .id = p->id, .proto = p->proto};
	struct frag4_val v = {.saddr = saddr, .daddr = daddr};
	bpf_map_update_elem(&sl_frag4, &k, &v, BPF_ANY);
}

static __always_inline int handle_later_frag(struct __sk_buff *skb, const struct pkt4 *p)
{
	struct frag4_key k = {.saddr = p->saddr, .daddr = p->daddr, .id = p->id, .proto = p->proto};
	struct frag4_val *v = bpf_map_lookup_elem(&sl_frag4, &k);
	if (!v)
		return TC_ACT_OK; /* not ours (or its first fragment was never seen): untouched */
	__be32 saddr = v->saddr, daddr = v->daddr;
	if (set_addr(skb, p, IP_SADDR_OFF, p->saddr, saddr) < 0 ||
	    set_addr(skb, p, IP_DADDR_OFF, p->daddr, daddr) < 0)
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

/* ------------------------------------------------------------------------------------------- */
/* Conntrack. */

static __always_inline __u64 ct_timeout(const struct lb_config *cfg, __u8 proto, __u8 flags)
{
	__u32 s;
	if (proto != IPPROTO_TCP)
		s = cfg && cfg->udp_s ? cfg->udp_s : 60;
	else if (flags & CT_CLOSING)
		s = cfg && cfg->tcp_closing_s ? cfg->tcp_closing_s : 10;
	else if (flags & CT_ESTABLISHED)
		s = cfg && cfg->tcp_established_s ? cfg->tcp_established_s : 21600;
	else
		s = cfg && cfg->tcp_syn_s ? cfg->tcp_syn_s : 60;
	return (__u64)s * NS_PER_S;
}

static __always_inline __u8 ct_flags_for(const struct pkt4 *p, __u8 flags)
{
	if (p->proto == IPPROTO_TCP && (p->tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST)))
		flags |= CT_CLOSING;
	return flags;
}

/* Refreshes an entry pair: both directions share flags and deadline. */
static __always_inline void ct_touch(struct ct4_val *a, struct ct4_val *b, const struct lb_config *cfg,
				     __u8 proto, __u8 flags, __u64 now)
{
	__u64 exp = now + ct_timeout(cfg, proto, flags);
	a->flags = flags;
	a->expires = exp;
	if (b) {
		b->flags = flags;
		b->expires = exp;
	}
}

/* Whether an entry pair needs writing: its flags change, or less than half its lifetime is left.
 * Skipping the write otherwise keeps busy flows from bouncing the entry's cache line between
 * CPUs on every packet. */
static __always_inline int ct_stale(const struct ct4_val *v, const struct lb_config *cfg, __u8 proto,
				    __u8 flags, __u64 now)
{
	return flags != v->flags || v->expires < now + ct_timeout(cfg, proto, flags) / 2;
}

/* The reverse key of a forward entry: the reply as it arrives at this node. */
static __always_inline void rev_key_of(struct ct4_key *rk, const struct pkt4 *p, const struct ct4_val *fwd)
{
	rk->saddr = fwd->addr;
	rk->sport = fwd->port;
	rk->daddr = (fwd->flags & CT_SNAT) ? fwd->addr2 : p->saddr;
	rk->dport = (fwd->flags & CT_SNAT) ? fwd->port2 : p->sport;
	rk->proto = p->proto;
	rk->dir = CT_DIR_REV;
	rk->pad = 0;
}

static __always_inline __u32 rol32(__u32 w, unsigned int s)
{
	return (w << s) | (w >> (32 - s));
}

/* Linux's jhash_3words. */
static __always_inline __u32 jhash3(__u32 a, __u32 b, __u32 c, __u32 initval)
{
	a += 0xdeadbeef + (3 << 2) + initval;
	b += 0xdeadbeef + (3 << 2) + initval;
	c += 0xdeadbeef + (3 << 2) + initval;
	c ^= b; c -= rol32(b, 14);
	a ^= c; a -= rol32(c, 11);
	b ^= a; b -= rol32(a, 25);
	c ^= b; c -= rol32(b, 16);
	a ^= c; a -= rol32(c, 4);
	b ^= a; b -= rol32(a, 14);
	c ^= b; c -= rol32(b, 24);
	return c;
}

/* Reverse NAT of a reply. Returns -1 when the packet is not a tracked reply. */
static __always_inline int reverse_nat(struct __sk_buff *skb, const struct pkt4 *p,
				       const struct lb_config *cfg, __u64 now)
{
	struct ct4_key rk = {.saddr = p->saddr, .daddr = p->daddr, .sport = p->sport,
			     .dport = p->dport, .proto = p->proto, .dir = CT_DIR_REV};
	struct ct4_val *rv = bpf_map_lookup_elem(&sl_ct4, &rk);
	if (!rv)
		return -1;
	if (rv->expires < now) {
		bpf_map_delete_elem(&sl_ct4, &rk);
		return -1;
	}
	__be32 faddr = rv->addr, caddr = rv->addr2;
	__be16 fport = rv->port, cport = rv->port2;
	__u8 snat = rv->flags & CT_SNAT;

	/* The forward entry is keyed by the client's original tuple. */
	struct ct4_key fk = {.saddr = snat ? caddr : p->daddr, .daddr = faddr,
			     .sport = snat ? cport : p->dport, .dport = fport,
			     .proto = p->proto, .dir = CT_DIR_FWD};
	__u8 nf = ct_flags_for(p, rv->flags | CT_ESTABLISHED);
	if (ct_stale(rv, cfg, p->proto, nf, now)) {
		struct ct4_val *fv = bpf_map_lookup_elem(&sl_ct4, &fk);
		ct_touch(rv, fv, cfg, p->proto, nf, now);
		if (!fv) {
			/* The LRU evicted the forward half: rebuild it, so the client's next packet keeps
			 * this backend instead of being balanced anew. */
			struct ct4_val nv = {.addr = p->saddr, .port = p->sport, .svc_id = rv->svc_id,
					     .expires = rv->expires, .backend_id = rv->backend_id, .flags = nf};
			if (snat) {
				nv.addr2 = p->daddr;
				nv.port2 = p->dport;
			}
			bpf_map_update_elem(&sl_ct4, &fk, &nv, BPF_NOEXIST);
		}
	}

	__be32 new_daddr = snat ? caddr : p->daddr;
	if (set_addr(skb, p, IP_SADDR_OFF, p->saddr, faddr) < 0 ||
	    set_port(skb, p, 0, p->sport, fport) < 0)
		return TC_ACT_SHOT;
	if (snat && (set_addr(skb, p, IP_DADDR_OFF, p->daddr, caddr) < 0 ||
		     set_port(skb, p, 2, p->dport, cport) < 0))
		return TC_ACT_SHOT;
	record_frag(p, faddr, new_daddr);
	return TC_ACT_OK;
}

static __always_inline int is_vip(__be32 addr)
{
	return bpf_map_lookup_elem(&sl_lb4_vip, &addr) != 0;
}

/* A new flow: Maglev picks the backend, then the forward and reverse entries are created (the
 * reverse one first, so a reply can never miss it). Returns 0 and fills *out, or -1 to drop. */
static __always_inline int ct_create(const struct pkt4 *p, const struct lb_fe_val *fe,
				     const struct lb_config *cfg, __u64 now, struct ct4_val *out)
{
	__u32 svc = fe->svc_id;
	void *table = bpf_map_lookup_elem(&sl_lb4_maglev, &svc);
	if (!table)
		return -1;
	__u32 m = cfg && cfg->maglev_m ? cfg->maglev_m : DEFAULT_MAGLEV_M;
	__u32 hash = jhash3(p->saddr, p->daddr, ((__u32)p->sport << 16) | p->dport, p->proto);
	__u32 slot = hash % m;
	__u32 *bid = bpf_map_lookup_elem(table, &slot);
	if (!bid || *bid == MAGLEV_EMPTY)
		return -1;
	__u32 backend_id = *bid;
	struct lb4_backend *be = bpf_map_lookup_elem(&sl_lb4_be, &backend_id);
	if (!be)
		return -1;

	__u8 flags = ct_flags_for(p, 0);
	__u64 exp = now + ct_timeout(cfg, p->proto, flags);
	struct ct4_val fwd = {.addr = be->addr, .port = be->port, .svc_id = svc,
			      .expires = exp, .backend_id = backend_id, .flags = flags};
	struct ct4_val rev = {.addr = p->daddr, .port = p->dport, .svc_id = svc,
			      .expires = exp, .backend_id = backend_id, .flags = flags};
	struct ct4_key rk = {.saddr = be->addr, .sport = be->port, .proto = p->proto, .dir = CT_DIR_REV};

	/* Hairpin: a backend balanced to itself would answer itself locally, bypassing reverse NAT;
	 * SNAT to the VIP makes its reply come back here (Cilium uses a link-local address). */
	__be32 snat = be->addr == p->saddr ? p->daddr : be->snat_addr;
	if (snat && !(fe->flags & FRONTEND_L7_PROXY)) {
		/* Replies must come back here: source becomes the SNAT address and a free port. */
		fwd.flags |= CT_SNAT;
		rev.flags |= CT_SNAT;
		fwd.addr2 = snat;
		rev.addr2 = p->saddr;
		rev.port2 = p->sport;
		rk.daddr = snat;
		int done = 0;
		for (__u32 i = 0; i < SNAT_PORT_TRIES; i++) {
			__be16 port = bpf_htons(SNAT_PORT_MIN + (hash + i * 7919) % SNAT_PORT_RANGE);
			rk.dport = port;
			struct ct4_val *old = bpf_map_lookup_elem(&sl_ct4, &rk);
			if (old) {
				if (old->expires >= now)
					continue;
				bpf_map_delete_elem(&sl_ct4, &rk);
			}
			if (bpf_map_update_elem(&sl_ct4, &rk, &rev, BPF_NOEXIST) == 0) {
				fwd.port2 = port;
				done = 1;
				break;
			}
		}
		if (!done)
			return -1;
	} else {
		rk.daddr = p->saddr;
		rk.dport = p->sport;
		if (bpf_map_update_elem(&sl_ct4, &rk, &rev, BPF_ANY) < 0)
			return -1;
	}
	struct ct4_key fk = {.saddr = p->saddr, .daddr = p->daddr, .sport = p->sport,
			     .dport = p->dport, .proto = p->proto, .dir = CT_DIR_FWD};
	if (bpf_map_update_elem(&sl_ct4, &fk, &fwd, BPF_ANY) < 0) {
		bpf_map_delete_elem(&sl_ct4, &rk);
		return -1;
	}
	*out = fwd;
	return 0;
}

static __always_inline int handle(struct __sk_buff *skb, int ingress)
{
	struct pkt4 p = {};
	int r = parse4(skb, &p);
	if (r == PARSE_PASS)
		return TC_ACT_OK;
	if (r == PARSE_BAD)
		/* Malformed: never creates state. Garbage aimed at a VIP is dropped, the rest left to
		 * the stack, which drops what it cannot parse itself. */
		return ingress && is_vip(p.daddr) ? TC_ACT_SHOT : TC_ACT_OK;
	if (p.frag == FRAG_LATER)
		return handle_later_frag(skb, &p);
	if (!p.has_l4)
		return ingress && is_vip(p.daddr) ? TC_ACT_SHOT : TC_ACT_OK;

	__u32 zero = 0;
	const struct lb_config *cfg = bpf_map_lookup_elem(&sl_config, &zero);
	__u64 now = bpf_ktime_get_ns();

	r = reverse_nat(skb, &p, cfg, now);
	if (r >= 0)
		return r;
	if (!ingress)
		return TC_ACT_OK;

	struct lb4_fe_key fk = {.addr = p.daddr, .port = p.dport, .proto = p.proto};
	struct lb_fe_val *fe = bpf_map_lookup_elem(&sl_lb4_fe, &fk);
	if (!fe)
		return is_vip(p.daddr) ? TC_ACT_SHOT : TC_ACT_OK;
	struct lb_fe_stats *st = bpf_map_lookup_elem(&sl_lb4_stats, &fk);
	if (st) {
		st->packets += 1;
		st->bytes += skb->len;
	}

	struct ct4_key ck = {.saddr = p.saddr, .daddr = p.daddr, .sport = p.sport,
			     .dport = p.dport, .proto = p.proto, .dir = CT_DIR_FWD};
	struct ct4_val flow;
	struct ct4_val *fv = bpf_map_lookup_elem(&sl_ct4, &ck);
	/* A SYN on a closing or expired tuple is a new connection reusing the port: balance it anew. */
	int is_syn = p.proto == IPPROTO_TCP && (p.tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;
	if (fv && (fv->expires < now || (is_syn && (fv->flags & CT_CLOSING))))
		fv = 0;
	if (fv) {
		__u8 nf = ct_flags_for(&p, fv->flags);
		if (ct_stale(fv, cfg, p.proto, nf, now)) {
			struct ct4_key rk;
			rev_key_of(&rk, &p, fv);
			struct ct4_val *rv = bpf_map_lookup_elem(&sl_ct4, &rk);
			ct_touch(fv, rv, cfg, p.proto, nf, now);
			if (!rv) {
				/* The LRU evicted the reverse half: rebuild it, or replies would miss it. */
				struct ct4_val nv = {.addr = p.daddr, .port = p.dport, .svc_id = fv->svc_id,
						     .expires = fv->expires, .backend_id = fv->backend_id, .flags = nf};
				if (nf & CT_SNAT) {
					nv.addr2 = p.saddr;
					nv.port2 = p.sport;
				}
				bpf_map_update_elem(&sl_ct4, &rk, &nv, BPF_NOEXIST);
			}
		}
		flow = *fv;
	} else if (ct_create(&p, fe, cfg, now, &flow) < 0) {
		return TC_ACT_SHOT; /* no usable backend, or no free SNAT port */
	}

	__be32 new_saddr = (flow.flags & CT_SNAT) ? flow.addr2 : p.saddr;
	if (set_addr(skb, &p, IP_DADDR_OFF, p.daddr, flow.addr) < 0 ||
	    set_port(skb, &p, 2, p.dport, flow.port) < 0)
		return TC_ACT_SHOT;
	if ((flow.flags & CT_SNAT) && (set_addr(skb, &p, IP_SADDR_OFF, p.saddr, flow.addr2) < 0 ||
				       set_port(skb, &p, 0, p.sport, flow.port2) < 0))
		return TC_ACT_SHOT;
	record_frag(&p, new_saddr, flow.addr);
	return TC_ACT_OK;
}

SEC("tc")
int sluice_ingress(struct __sk_buff *skb)
{
	return handle(skb, 1);
}

SEC("tc")
int sluice_egress(struct __sk_buff *skb)
{
	return handle(skb, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
