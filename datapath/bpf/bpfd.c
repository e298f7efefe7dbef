// SPDX-License-Identifier: Apache-2.0
/* sluice-bpfd: the small libbpf co-process behind datapath.ts.
 *
 * It loads lb.bpf.o with every map pinned by name under a pin directory (reusing pinned maps
 * when they exist, which is how a restarted agent adopts the live state), attaches the tc
 * programs (optionally inside a named network namespace), and serves map reads and writes.
 *
 * Protocol on stdin/stdout, little-endian:
 *   request  = u32 len, then len bytes: u8 cmd, payload
 *   response = u32 len, then len bytes: i32 status (0 or -errno), u32 index, payload
 * For CMD_APPLY, index is the sub-op that failed (or the count applied) and, on failure, the
 * payload is "<elements done>\n<message>". Other errors carry a message as payload.
 * The process exits on EOF: the attached programs and pinned maps stay. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "lb.h"

enum {
	CMD_APPLY = 1,
	CMD_DUMP = 2,
	CMD_MAGLEV_DUMP = 3,
	CMD_CT_COUNT = 4,
	CMD_ATTACH = 5,
	CMD_DETACH = 6,
	CMD_TEST_RUN = 7,
};

enum {
	OP_UPSERT = 1,	 /* u8 map, u32 n, n keys, n values */
	OP_DELETE = 2,	 /* u8 map, u32 n, n keys (missing keys are fine) */
	OP_FE_UPSERT = 3, /* u32 n, n fe keys, n fe values; creates zeroed counters if absent */
	OP_FE_DELETE = 4, /* u32 n, n fe keys; frontend and its counters */
	OP_MAGLEV_SET = 5, /* u32 svc, u32 m, m u32: new inner map, filled, swapped in */
	OP_MAGLEV_DEL = 6, /* u32 n, n svc ids */
};

enum { M_FE, M_STATS, M_VIP, M_BE, M_MAGLEV, M_CT, M_FRAG, M_CONFIG, M_VERSION, M_COUNT };
static const char *map_names[M_COUNT] = {
	"sl_lb4_fe", "sl_lb4_stats", "sl_lb4_vip", "sl_lb4_be", "sl_lb4_maglev",
	"sl_ct4", "sl_frag4", "sl_config", "sl_version",
};

#define TC_HANDLE 0x51
#define TC_PRIORITY 1

static struct bpf_object *obj;
static int map_fd[M_COUNT];
static __u32 key_size[M_COUNT], value_size[M_COUNT];
static int prog_in, prog_eg;
static __u32 maglev_m;
static int ncpus;

static char msg[1024];
static int fail(int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return err < 0 ? err : -err;
}

/* ------------------------------------------------------------------------------------------- */
/* Framing. */

static int read_full(void *buf, size_t n)
{
	char *p = buf;
	while (n > 0) {
		ssize_t r = read(0, p, n);
		if (r == 0)
			return -1;
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static void write_full(const void *buf, size_t n)
{
	const char *p = buf;
	while (n > 0) {
		ssize_t r = write(1, p, n);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			exit(1);
		}
		p += r;
		n -= (size_t)r;
	}
}

static void respond(int status, __u32 index, const void *payload, size_t n)
{
	__u32 len = (__u32)(8 + n);
	__s32 st = status;
	write_full(&len, 4);
	write_full(&st, 4);
	write_full(&index, 4);
	if (n)
		write_full(payload, n);
}

static void respond_err(int status, __u32 index)
{
	respond(status, index, msg, strlen(msg));
}

/* A growable output buffer for dumps. */
struct out {
	char *buf;
	size_t len, cap;
};

static void out_put(struct out *o, const void *p, size_t n)
{
	if (o->len + n > o->cap) {
		size_t cap = o->cap ? o->cap * 2 : 65536;
		while (cap < o->len + n)
			cap *= 2;
		o->buf = realloc(o->buf, cap);
		if (!o->buf)
			exit(2);
		o->cap = cap;
	}
	memcpy(o->buf + o->len, p, n);
	o->len += n;
}

/* A bounds-checked reader over a request. */
struct in {
	const char *p;
	size_t left;
};

static const void *in_take(struct in *in, size_t n)
{
	if (in->left < n)
		return NULL;
	const void *r = in->p;
	in->p += n;
	in->left -= n;
	return r;
}

static int in_u32(struct in *in, __u32 *v)
{
	const void *p = in_take(in, 4);
	if (!p)
		return -1;
	memcpy(v, p, 4);
	return 0;
}

static int in_u8(struct in *in, __u8 *v)
{
	const void *p = in_take(in, 1);
	if (!p)
		return -1;
	*v = *(const __u8 *)p;
	return 0;
}

/* ------------------------------------------------------------------------------------------- */
/* Map operations. */

static int upsert_batch(int m, const char *keys, const char *vals, __u32 n, __u32 *done)
{
	*done = 0;
	if (n == 0)
		return 0;
	LIBBPF_OPTS(bpf_map_batch_opts, bo, .elem_flags = BPF_ANY);
	__u32 count = n;
	int err = bpf_map_update_batch(map_fd[m], keys, vals, &count, &bo);
	if (err == 0) {
		*done = n;
		return 0;
	}
	if (errno == EINVAL || errno == ENOTSUP || errno == EOPNOTSUPP) {
		/* Batch not supported for this map type: one syscall per element. */
		for (__u32 i = 0; i < n; i++) {
			if (bpf_map_update_elem(map_fd[m], keys + (size_t)i * key_size[m],
						vals + (size_t)i * value_size[m], BPF_ANY) < 0)
				return fail(-errno, "%s: update of element %u failed: %s", map_names[m], i, strerror(errno));
			*done = i + 1;
		}
		return 0;
	}
	*done = count;
	return fail(-errno, "%s: batch update failed after %u of %u elements: %s", map_names[m], count, n,
		    strerror(errno));
}

static int delete_each(int m, const char *keys, __u32 n, __u32 *done)
{
	*done = 0;
	if (n > 1) {
		/* One syscall when every key exists; the kernel stops at the first missing one, and the
		 * per-key loop below finishes from there (missing keys are fine). For the Maglev
		 * map-of-maps this matters most: each syscall waits for an RCU grace period. */
		LIBBPF_OPTS(bpf_map_batch_opts, bo);
		__u32 count = n;
		if (bpf_map_delete_batch(map_fd[m], keys, &count, &bo) == 0) {
			*done = n;
			return 0;
		}
		if (errno != ENOENT || count > n)
			count = 0; /* not a missing key (e.g. no batch support): redo all, one by one */
		*done = count;
		keys += (size_t)count * key_size[m];
		n -= count;
		__u32 base = count, sub = 0;
		for (__u32 i = 0; i < n; i++) {
			if (bpf_map_delete_elem(map_fd[m], keys + (size_t)i * key_size[m]) < 0 && errno != ENOENT)
				return fail(-errno, "%s: delete of element %u failed: %s", map_names[m], base + i,
					    strerror(errno));
			sub = i + 1;
			*done = base + sub;
		}
		return 0;
	}
	for (__u32 i = 0; i < n; i++) {
		if (bpf_map_delete_elem(map_fd[m], keys + (size_t)i * key_size[m]) < 0 && errno != ENOENT)
			return fail(-errno, "%s: delete of element %u failed: %s", map_names[m], i, strerror(errno));
		*done = i + 1;
	}
	return 0;
}

/* An ARRAY map stores each value in round_up(value_size, 8) bytes, and its mmap shows that
 * layout: a u32 table has an 8-byte stride. */
#define MAGLEV_STRIDE 8

static size_t mmap_len(__u32 m)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	return ((size_t)m * MAGLEV_STRIDE + page - 1) / page * page;
}

/* A new inner table, filled: its fd in *out. Swapped in by the caller. */
static int maglev_fill(__u32 svc, __u32 m, const __u32 *table, int *out)
{
	if (m != maglev_m)
		return fail(-EINVAL, "service %u: Maglev table has %u entries, the maps use M=%u", svc, m, maglev_m);
	LIBBPF_OPTS(bpf_map_create_opts, co, .map_flags = BPF_F_MMAPABLE);
	int fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "sl_maglev_in", 4, 4, m, &co);
	if (fd < 0)
		return fail(-errno, "service %u: creating a Maglev table failed: %s", svc, strerror(errno));
	void *mem = mmap(NULL, mmap_len(m), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (mem == MAP_FAILED) {
		int e = errno;
		close(fd);
		return fail(-e, "service %u: mmap of a Maglev table failed: %s", svc, strerror(e));
	}
	__u32 *slots = mem;
	for (__u32 i = 0; i < m; i++)
		slots[(size_t)i * (MAGLEV_STRIDE / 4)] = table[i];
	munmap(mem, mmap_len(m));
	*out = fd;
	return 0;
}

/* Table swaps handled in one batch: an update of a map-of-maps waits for an RCU grace period
 * (about 10 ms on a small VM) per syscall, so one syscall per service made 1,000 swaps take 10 s. */
#define MAGLEV_RUN 1024

/* Swaps n filled tables into the outer map, in order; *done = how many are in. The old tables go
 * away with their last reference. */
static int maglev_swap(const __u32 *svcs, const __u32 *fds, __u32 n, __u32 *done)
{
	*done = 0;
	if (n == 0)
		return 0;
	LIBBPF_OPTS(bpf_map_batch_opts, bo, .elem_flags = BPF_ANY);
	__u32 count = n;
	if (bpf_map_update_batch(map_fd[M_MAGLEV], svcs, fds, &count, &bo) == 0) {
		*done = n;
		return 0;
	}
	if (errno != EINVAL && errno != ENOTSUP && errno != EOPNOTSUPP) {
		*done = count <= n ? count : 0;
		return fail(-errno, "service %u: swapping in the Maglev table failed: %s", svcs[*done], strerror(errno));
	}
	/* No batch support for map-of-maps on this kernel: one update each. */
	for (__u32 i = 0; i < n; i++) {
		if (bpf_map_update_elem(map_fd[M_MAGLEV], &svcs[i], &fds[i], BPF_ANY) < 0)
			return fail(-errno, "service %u: swapping in the Maglev table failed: %s", svcs[i], strerror(errno));
		*done = i + 1;
	}
	return 0;
}

static int fe_upsert(const char *keys, const char *vals, __u32 n, __u32 *done)
{
	int err = upsert_batch(M_FE, keys, vals, n, done);
	if (err)
		return err;
	size_t vs = (size_t)ncpus * sizeof(struct lb_fe_stats);
	void *zero = calloc(1, vs);
	if (!zero)
		return fail(-ENOMEM, "out of memory");
	for (__u32 i = 0; i < n; i++) {
		/* Keep the counters of a frontend that is only updated. */
		if (bpf_map_update_elem(map_fd[M_STATS], keys + (size_t)i * sizeof(struct lb4_fe_key), zero,
					BPF_NOEXIST) < 0 && errno != EEXIST) {
			int e = errno;
			free(zero);
			return fail(-e, "sl_lb4_stats: creating counters failed: %s", strerror(e));
		}
	}
	free(zero);
	return 0;
}

static void cmd_apply(struct in *in)
{
	__u32 nops;
	if (in_u32(in, &nops) < 0) {
		fail(-EINVAL, "apply: truncated request");
		return respond_err(-EINVAL, 0);
	}
	for (__u32 i = 0; i < nops; i++) {
		__u8 kind = 0, m = 0;
		__u32 n = 0, done = 0;
		int err = 0;
		if (in_u8(in, &kind) < 0)
			goto truncated;
		switch (kind) {
		case OP_UPSERT:
		case OP_DELETE: {
			if (in_u8(in, &m) < 0 || m >= M_COUNT || in_u32(in, &n) < 0)
				goto truncated;
			const char *keys = in_take(in, (size_t)n * key_size[m]);
			if (!keys)
				goto truncated;
			if (kind == OP_DELETE) {
				err = delete_each(m, keys, n, &done);
				break;
			}
			const char *vals = in_take(in, (size_t)n * value_size[m]);
			if (!vals)
				goto truncated;
			err = upsert_batch(m, keys, vals, n, &done);
			break;
		}
		case OP_FE_UPSERT: {
			if (in_u32(in, &n) < 0)
				goto truncated;
			const char *keys = in_take(in, (size_t)n * sizeof(struct lb4_fe_key));
			const char *vals = in_take(in, (size_t)n * sizeof(struct lb_fe_val));
			if (!keys || !vals)
				goto truncated;
			err = fe_upsert(keys, vals, n, &done);
			break;
		}
		case OP_FE_DELETE: {
			if (in_u32(in, &n) < 0)
				goto truncated;
			const char *keys = in_take(in, (size_t)n * sizeof(struct lb4_fe_key));
			if (!keys)
				goto truncated;
			err = delete_each(M_FE, keys, n, &done);
			if (!err)
				err = delete_each(M_STATS, keys, n, &done);
			break;
		}
		case OP_MAGLEV_SET: {
			/* This op and the MAGLEV_SET ops right after it: every table is built first, then
			 * all are swapped in by one batch. A failure reports the op it happened at; the ops
			 * before it are in, as with one op at a time. */
			static __u32 svcs[MAGLEV_RUN], fds[MAGLEV_RUN];
			__u32 first = i, k = 0;
			bool bad_request = false;
			for (;;) {
				__u32 svc, mm;
				const __u32 *table = NULL;
				if (in_u32(in, &svc) < 0 || in_u32(in, &mm) < 0 || !(table = in_take(in, (size_t)mm * 4))) {
					bad_request = true;
					break;
				}
				/* The bytes may be unaligned in the request buffer. */
				__u32 *copy = malloc((size_t)mm * 4 + 4);
				if (!copy) {
					err = fail(-ENOMEM, "out of memory");
					break;
				}
				memcpy(copy, table, (size_t)mm * 4);
				int fd = -1;
				err = maglev_fill(svc, mm, copy, &fd);
				free(copy);
				if (err)
					break;
				svcs[k] = svc;
				fds[k] = (__u32)fd;
				k++;
				if (k == MAGLEV_RUN || i + 1 >= nops || in->left == 0 || *(const __u8 *)in->p != OP_MAGLEV_SET)
					break;
				in_take(in, 1);
				i++;
			}
			__u32 in_place = 0;
			int serr = maglev_swap(svcs, fds, k, &in_place);
			for (__u32 j = 0; j < k; j++)
				close((int)fds[j]);
			if (serr) {
				err = serr;
				i = first + in_place;
			}
			if (bad_request && !err)
				goto truncated;
			break;
		}
		case OP_MAGLEV_DEL: {
			if (in_u32(in, &n) < 0)
				goto truncated;
			const char *keys = in_take(in, (size_t)n * 4);
			if (!keys)
				goto truncated;
			err = delete_each(M_MAGLEV, keys, n, &done);
			break;
		}
		default:
			fail(-EINVAL, "apply: unknown op kind %u", kind);
			return respond_err(-EINVAL, i);
		}
		if (err) {
			char text[1100];
			snprintf(text, sizeof(text), "%u\n%s", done, msg);
			return respond(err, i, text, strlen(text));
		}
	}
	return respond(0, nops, NULL, 0);
truncated:
	fail(-EINVAL, "apply: truncated or malformed request");
	respond_err(-EINVAL, 0);
}

/* Dumps a map as n, keys and values; per-CPU values are summed as u64 pairs. */
static void cmd_dump(struct in *in)
{
	__u8 m;
	if (in_u8(in, &m) < 0 || m >= M_COUNT || m == M_MAGLEV) {
		fail(-EINVAL, "dump: bad map index");
		return respond_err(-EINVAL, 0);
	}
	int percpu = m == M_STATS;
	size_t vs = percpu ? (size_t)ncpus * value_size[m] : value_size[m];
	char *key = calloc(1, key_size[m]), *next = calloc(1, key_size[m]), *val = calloc(1, vs);
	struct out keys = {0}, vals = {0};
	__u32 n = 0;
	void *prev = NULL;
	while (bpf_map_get_next_key(map_fd[m], prev, next) == 0) {
		memcpy(key, next, key_size[m]);
		prev = key;
		if (bpf_map_lookup_elem(map_fd[m], key, val) < 0)
			continue; /* deleted meanwhile */
		out_put(&keys, key, key_size[m]);
		if (percpu) {
			__u64 sum[2] = {0, 0};
			for (int c = 0; c < ncpus; c++) {
				struct lb_fe_stats s;
				memcpy(&s, val + (size_t)c * value_size[m], sizeof(s));
				sum[0] += s.packets;
				sum[1] += s.bytes;
			}
			out_put(&vals, sum, sizeof(sum));
		} else {
			out_put(&vals, val, value_size[m]);
		}
		n++;
	}
	struct out all = {0};
	out_put(&all, &n, 4);
	if (keys.len)
		out_put(&all, keys.buf, keys.len);
	if (vals.len)
		out_put(&all, vals.buf, vals.len);
	respond(0, 0, all.buf, all.len);
	free(all.buf);
	free(keys.buf);
	free(vals.buf);
	free(key);
	free(next);
	free(val);
}

static void cmd_maglev_dump(void)
{
	struct out o = {0};
	__u32 n = 0, key, next, id;
	out_put(&o, &n, 4);
	void *prev = NULL;
	while (bpf_map_get_next_key(map_fd[M_MAGLEV], prev, &next) == 0) {
		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(map_fd[M_MAGLEV], &key, &id) < 0)
			continue;
		int fd = bpf_map_get_fd_by_id(id);
		if (fd < 0)
			continue;
		void *mem = mmap(NULL, mmap_len(maglev_m), PROT_READ, MAP_SHARED, fd, 0);
		if (mem != MAP_FAILED) {
			out_put(&o, &key, 4);
			out_put(&o, &maglev_m, 4);
			const __u32 *slots = mem;
			for (__u32 i = 0; i < maglev_m; i++)
				out_put(&o, &slots[(size_t)i * (MAGLEV_STRIDE / 4)], 4);
			munmap(mem, mmap_len(maglev_m));
			n++;
		}
		close(fd);
	}
	memcpy(o.buf, &n, 4);
	respond(0, 0, o.buf, o.len);
	free(o.buf);
}

/* Live entries only: an expired entry stays in the LRU until it is reused or evicted, but it no
 * longer steers any packet. bpf_ktime_get_ns() is CLOCK_MONOTONIC. Payload: live, then all. */
static void cmd_ct_count(void)
{
	struct ct4_key key, next;
	struct ct4_val val;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	__u64 now = (__u64)ts.tv_sec * 1000000000ULL + (__u64)ts.tv_nsec;
	__u32 n[2] = {0, 0};
	void *prev = NULL;
	while (bpf_map_get_next_key(map_fd[M_CT], prev, &next) == 0) {
		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(map_fd[M_CT], &key, &val) < 0)
			continue;
		n[1]++;
		if (val.expires >= now)
			n[0]++;
	}
	respond(0, 0, n, sizeof(n));
}

/* ------------------------------------------------------------------------------------------- */
/* Attaching. */

static int enter_netns(const char *netns, int *orig)
{
	*orig = -1;
	if (!netns || !*netns)
		return 0;
	char path[512];
	if (strchr(netns, '/'))
		snprintf(path, sizeof(path), "%s", netns);
	else
		snprintf(path, sizeof(path), "/var/run/netns/%s", netns);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(-errno, "network namespace %s: %s", netns, strerror(errno));
	*orig = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (*orig < 0 || setns(fd, CLONE_NEWNET) < 0) {
		int e = errno;
		close(fd);
		return fail(-e, "entering network namespace %s: %s", netns, strerror(e));
	}
	close(fd);
	return 0;
}

static void leave_netns(int orig)
{
	if (orig < 0)
		return;
	if (setns(orig, CLONE_NEWNET) < 0) {
		fprintf(stderr, "sluice-bpfd: cannot return to the original network namespace: %s\n", strerror(errno));
		exit(3);
	}
	close(orig);
}

static int do_attach(const char *ifname, const char *netns, int detach)
{
	int orig, err = enter_netns(netns, &orig);
	if (err)
		return err;
	unsigned idx = if_nametoindex(ifname);
	if (idx == 0) {
		err = fail(-ENODEV, "no interface %s%s%s", ifname, netns && *netns ? " in netns " : "",
			   netns ? netns : "");
		goto out;
	}
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = (int)idx, .attach_point = BPF_TC_INGRESS | BPF_TC_EGRESS);
	if (!detach) {
		/* A flow SNATed at tc ingress has a local source address when the route lookup runs,
		 * which the kernel rejects as martian unless the input device accepts local sources.
		 * /proc/sys/net resolves in the netns we are in now. */
		char path[128];
		snprintf(path, sizeof(path), "/proc/sys/net/ipv4/conf/%s/accept_local", ifname);
		int fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0 || write(fd, "1\n", 2) != 2) {
			err = fail(-errno, "%s: setting accept_local (needed for SNAT) failed: %s", ifname, strerror(errno));
			if (fd >= 0)
				close(fd);
			goto out;
		}
		close(fd);
		err = bpf_tc_hook_create(&hook); /* the clsact qdisc */
		if (err && err != -EEXIST) {
			err = fail(err, "%s: creating the clsact qdisc failed: %s", ifname, strerror(-err));
			goto out;
		}
		err = 0;
	}
	for (int dir = 0; dir < 2; dir++) {
		hook.attach_point = dir == 0 ? BPF_TC_INGRESS : BPF_TC_EGRESS;
		if (detach) {
			LIBBPF_OPTS(bpf_tc_opts, to, .handle = TC_HANDLE, .priority = TC_PRIORITY);
			int e = bpf_tc_detach(&hook, &to);
			if (e && e != -ENOENT && e != -EINVAL) {
				err = fail(e, "%s: detaching failed: %s", ifname, strerror(-e));
				goto out;
			}
		} else {
			/* REPLACE swaps an older program for this one atomically. */
			LIBBPF_OPTS(bpf_tc_opts, to, .handle = TC_HANDLE, .priority = TC_PRIORITY,
				    .prog_fd = dir == 0 ? prog_in : prog_eg, .flags = BPF_TC_F_REPLACE);
			int e = bpf_tc_attach(&hook, &to);
			if (e) {
				err = fail(e, "%s: attaching the %s program failed: %s", ifname,
					   dir == 0 ? "ingress" : "egress", strerror(-e));
				goto out;
			}
		}
	}
out:
	leave_netns(orig);
	return err;
}

static void cmd_attach(struct in *in, int detach)
{
	/* Payload: ifname NUL netns NUL */
	const char *ifname = in->p;
	size_t l1 = strnlen(in->p, in->left);
	if (l1 == in->left || l1 == 0 || l1 >= IF_NAMESIZE) {
		fail(-EINVAL, "attach: bad interface name");
		return respond_err(-EINVAL, 0);
	}
	const char *netns = in->p + l1 + 1;
	size_t left = in->left - l1 - 1;
	if (strnlen(netns, left) == left) {
		fail(-EINVAL, "attach: bad netns name");
		return respond_err(-EINVAL, 0);
	}
	int err = do_attach(ifname, netns, detach);
	if (err)
		return respond_err(err, 0);
	respond(0, 0, NULL, 0);
}

static void cmd_test_run(struct in *in)
{
	__u8 which;
	if (in_u8(in, &which) < 0) {
		fail(-EINVAL, "test run: truncated request");
		return respond_err(-EINVAL, 0);
	}
	size_t cap = in->left + 256;
	void *out = calloc(1, cap);
	LIBBPF_OPTS(bpf_test_run_opts, to, .data_in = in->p, .data_size_in = (__u32)in->left, .data_out = out,
		    .data_size_out = (__u32)cap, .repeat = 1);
	int err = bpf_prog_test_run_opts(which ? prog_eg : prog_in, &to);
	if (err) {
		int e = errno;
		free(out);
		fail(-e, "BPF_PROG_TEST_RUN rejected the packet (%zu bytes): %s%s", in->left, strerror(e),
		     in->left < 34 ? " (the kernel's test run needs an Ethernet header, and for IPv4 frames "
				     "a 20-byte IPv4 header)" : "");
		return respond_err(-e, 0);
	}
	respond(0, to.retval, out, to.data_size_out);
	free(out);
}

/* ------------------------------------------------------------------------------------------- */
/* Loading. */

static int libbpf_log(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_DEBUG)
		return 0;
	return vfprintf(stderr, fmt, ap);
}

static int load(const char *path, const char *pin_dir, __u32 m, __u32 max_svc, __u32 max_be, __u32 ct_size,
		int *adopted)
{
	*adopted = 0;
	if (mkdir(pin_dir, 0700) < 0 && errno != EEXIST)
		return fail(-errno, "creating pin directory %s: %s", pin_dir, strerror(errno));
	LIBBPF_OPTS(bpf_object_open_opts, oo, .pin_root_path = pin_dir);
	obj = bpf_object__open_file(path, &oo);
	if (!obj)
		return fail(-errno, "opening %s: %s", path, strerror(errno));
	for (int i = 0; i < M_COUNT; i++) {
		struct bpf_map *map = bpf_object__find_map_by_name(obj, map_names[i]);
		if (!map)
			return fail(-ENOENT, "%s has no map %s", path, map_names[i]);
		char pin[600];
		snprintf(pin, sizeof(pin), "%s/%s", pin_dir, map_names[i]);
		int fd = bpf_obj_get(pin);
		if (fd >= 0) {
			/* Adopt: size the map as the pinned one so libbpf reuses it. */
			struct bpf_map_info info = {0};
			__u32 len = sizeof(info);
			if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0 && info.type != BPF_MAP_TYPE_ARRAY)
				bpf_map__set_max_entries(map, info.max_entries);
			close(fd);
			*adopted = 1;
			continue;
		}
		__u32 size = 0;
		switch (i) {
		case M_FE: case M_STATS: case M_VIP: case M_MAGLEV: size = max_svc; break;
		case M_BE: size = max_be; break;
		case M_CT: size = ct_size; break;
		}
		if (size)
			bpf_map__set_max_entries(map, size);
	}
	/* The inner-map template decides M for every table the outer map accepts. libbpf's own
	 * template cannot be resized (bpf_map__set_max_entries on it crashes in libbpf 1.1), so hand
	 * it one of ours. */
	LIBBPF_OPTS(bpf_map_create_opts, co, .map_flags = BPF_F_MMAPABLE);
	int tmpl = bpf_map_create(BPF_MAP_TYPE_ARRAY, "sl_maglev_tmpl", 4, 4, m, &co);
	if (tmpl < 0)
		return fail(-errno, "creating the Maglev template map (M=%u): %s", m, strerror(errno));
	int err = bpf_map__set_inner_map_fd(bpf_object__find_map_by_name(obj, "sl_lb4_maglev"), tmpl);
	if (err)
		return fail(err, "setting the Maglev template map: %s", strerror(-err));
	err = bpf_object__load(obj);
	close(tmpl);
	if (err)
		return fail(err, "loading %s failed (%s); if the pinned maps in %s come from an older layout, "
			    "remove them", path, strerror(-err), pin_dir);
	for (int i = 0; i < M_COUNT; i++) {
		struct bpf_map *map = bpf_object__find_map_by_name(obj, map_names[i]);
		map_fd[i] = bpf_map__fd(map);
		key_size[i] = bpf_map__key_size(map);
		value_size[i] = bpf_map__value_size(map);
	}
	struct bpf_program *pi = bpf_object__find_program_by_name(obj, "sluice_ingress");
	struct bpf_program *pe = bpf_object__find_program_by_name(obj, "sluice_egress");
	if (!pi || !pe)
		return fail(-ENOENT, "%s lacks its programs", path);
	prog_in = bpf_program__fd(pi);
	prog_eg = bpf_program__fd(pe);

	/* The Maglev size is fixed for the life of the pinned maps (the outer map's inner template). */
	__u32 zero = 0;
	struct lb_config cfg = {0};
	if (bpf_map_lookup_elem(map_fd[M_CONFIG], &zero, &cfg) < 0)
		return fail(-errno, "reading sl_config: %s", strerror(errno));
	if (cfg.maglev_m == 0) {
		cfg.maglev_m = m;
		if (bpf_map_update_elem(map_fd[M_CONFIG], &zero, &cfg, BPF_ANY) < 0)
			return fail(-errno, "writing sl_config: %s", strerror(errno));
	} else if (cfg.maglev_m != m) {
		return fail(-EINVAL, "the maps pinned in %s use Maglev size %u, not %u", pin_dir, cfg.maglev_m, m);
	}
	maglev_m = m;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 7) {
		fprintf(stderr, "usage: sluice-bpfd OBJECT PIN_DIR MAGLEV_M MAX_SERVICES MAX_BACKENDS CT_SIZE\n");
		return 2;
	}
	libbpf_set_print(libbpf_log);
	ncpus = libbpf_num_possible_cpus();
	int adopted = 0;
	int err = load(argv[1], argv[2], (__u32)strtoul(argv[3], NULL, 10), (__u32)strtoul(argv[4], NULL, 10),
		       (__u32)strtoul(argv[5], NULL, 10), (__u32)strtoul(argv[6], NULL, 10), &adopted);
	if (err) {
		respond_err(err, 0);
		return 1;
	}
	/* Ready: index = adopted, payload = sizes of the maps actually in use. */
	__u32 info[4] = {maglev_m, 0, 0, 0};
	struct bpf_map *fe = bpf_object__find_map_by_name(obj, "sl_lb4_fe");
	struct bpf_map *be = bpf_object__find_map_by_name(obj, "sl_lb4_be");
	struct bpf_map *ct = bpf_object__find_map_by_name(obj, "sl_ct4");
	info[1] = bpf_map__max_entries(fe);
	info[2] = bpf_map__max_entries(be);
	info[3] = bpf_map__max_entries(ct);
	respond(0, (__u32)adopted, info, sizeof(info));

	for (;;) {
		__u32 len;
		if (read_full(&len, 4) < 0)
			break;
		if (len == 0 || len > (1u << 28)) {
			fprintf(stderr, "sluice-bpfd: bad frame length %u\n", len);
			return 1;
		}
		char *buf = malloc(len);
		if (!buf || read_full(buf, len) < 0)
			break;
		struct in in = {.p = buf + 1, .left = len - 1};
		msg[0] = 0;
		switch ((__u8)buf[0]) {
		case CMD_APPLY: cmd_apply(&in); break;
		case CMD_DUMP: cmd_dump(&in); break;
		case CMD_MAGLEV_DUMP: cmd_maglev_dump(); break;
		case CMD_CT_COUNT: cmd_ct_count(); break;
		case CMD_ATTACH: cmd_attach(&in, 0); break;
		case CMD_DETACH: cmd_attach(&in, 1); break;
		case CMD_TEST_RUN: cmd_test_run(&in); break;
		default:
			fail(-EINVAL, "unknown command %u", (__u8)buf[0]);
			respond_err(-EINVAL, 0);
		}
		free(buf);
	}
	bpf_object__close(obj);
	return 0;
}
