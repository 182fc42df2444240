// SPDX-License-Identifier: GPL-2.0-only
/*
 * Cordon's kernel side. Loaded once per host, attached once to <cgroup2>/cordon (every
 * sandbox's cgroup is a child of it, so every sandbox inherits these programs), and keyed by
 * the sandbox's cgroup id, so a new sandbox is a few map entries, not a program load.
 *
 *   connect4/6, sendmsg4/6   egress: DNS goes to the sandbox's resolver, everything else must
 *                            match the sandbox's destinations (address prefix, port, protocol)
 *   recvmsg4/6               DNS answers appear to come from the server the sandbox asked
 *   sock_create              only TCP and UDP sockets (no ICMP, SCTP, ... to tunnel through)
 *   cgroup_skb in/egress     an isolated sandbox passes no packet at all
 *   bind4/6                  a TCP bind of an audited sandbox becomes an event (Landlock
 *                            refuses the ports an enforced sandbox may not bind)
 *   raw tp sys_exit          a call the sandbox's seccomp filter denied becomes an event, and
 *                            so does a path call that failed the way the mounts refuse; in an
 *                            audited sandbox, also a call the profile denies that was let
 *                            through, and every distinct path call that succeeded
 *   raw tp sched_process_*   exec, fork and exit of the sandbox's processes become events
 *
 * A cgroup under cordon/ that is not registered in `sandboxes` gets no network: fail closed.
 * Events go to the sandbox's own ring buffer (the slot of `rings` its entry names), so one
 * noisy sandbox cannot push another one's events out; what does not fit is counted in `lost`.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/socket.h>
#include <asm/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>

#include "cordon.h"

#define AF_INET 2
#define AF_INET6 10
#define DNS_PORT 53
#define ALLOW 1
#define DENY 0

/* The few kernel structs read with CO-RE; field offsets come from the running kernel's BTF. */
struct task_struct {
	int pid;
	int tgid;
	int exit_code;
	struct task_struct *real_parent;
	struct fs_struct *fs;
	struct files_struct *files;
} __attribute__((preserve_access_index));

struct linux_binprm {
	const char *filename;
	struct file *file;
} __attribute__((preserve_access_index));

struct inode {
	unsigned long i_ino;
} __attribute__((preserve_access_index));

/* What placing a relative path reads: the cwd or the directory descriptor, up to the root. */
struct qstr {
	const unsigned char *name;
} __attribute__((preserve_access_index));

struct dentry {
	struct dentry *d_parent;
	struct qstr d_name;
	struct inode *d_inode;
} __attribute__((preserve_access_index));

struct vfsmount {
	struct dentry *mnt_root;
} __attribute__((preserve_access_index));

struct mount {
	struct mount *mnt_parent;
	struct dentry *mnt_mountpoint;
	struct vfsmount mnt;
} __attribute__((preserve_access_index));

struct path {
	struct vfsmount *mnt;
	struct dentry *dentry;
} __attribute__((preserve_access_index));

struct fs_struct {
	struct path root;
	struct path pwd;
} __attribute__((preserve_access_index));

struct file {
	struct path f_path;
} __attribute__((preserve_access_index));

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
} __attribute__((preserve_access_index));

struct files_struct {
	struct fdtable *fdt;
} __attribute__((preserve_access_index));


struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, CORDON_MAX_SANDBOXES);
	__type(key, __u64);
	__type(value, struct cordon_sandbox);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sandboxes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, CORDON_MAX_DESTS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct cordon_dest4_key);
	__type(value, struct cordon_dest);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dests4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, CORDON_MAX_DESTS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct cordon_dest6_key);
	__type(value, struct cordon_dest);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dests6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, CORDON_MAX_SYSCALL_RULES);
	__type(key, struct cordon_syscall_key);
	__type(value, struct cordon_syscall_rule);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} syscalls SEC(".maps");

/* Socket cookie -> the DNS server a redirected socket was sent to. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, CORDON_MAX_DNS_SOCKETS);
	__type(key, __u64);
	__type(value, struct cordon_dns_origin);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dns_origins SEC(".maps");

/* cgroup id -> what the kernel side counts for the sandbox: lost records, unexamined misses. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, CORDON_MAX_SANDBOXES);
	__type(key, __u64);
	__type(value, struct cordon_counts);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lost SEC(".maps");

/*
 * A pool of BPF_MAP_TYPE_RINGBUFs, by slot; a sandbox's entry names the one it holds. Every
 * change to a map of maps waits for an RCU grace period (over 10 ms), so rings are created
 * once and passed from sandbox to sandbox rather than made and removed for each. Created by
 * the loader before the programs load (a map of maps needs an inner map as template), and
 * adopted here by its pin.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, CORDON_MAX_SANDBOXES);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rings SEC(".maps");

/*
 * Slot of `rings` -> the cgroup id of the sandbox holding it. Only user space reads and writes
 * it: a sandbox claims a free slot by inserting its key (BPF_NOEXIST), so two launches never
 * take the same ring.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, CORDON_MAX_SANDBOXES);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ring_owners SEC(".maps");

/*
 * Whether any sandbox is audited (key 0; set by the loader when it registers one): until
 * then, a call that succeeded costs the tracepoint one array read, whatever the cgroup.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} audit_on SEC(".maps");

/*
 * A successful path call an audited sandbox already reported: its cgroup, call and access
 * flags, and what it reached: for an open or an exec, the object itself (dentry, mount and
 * inode: the same file however it was named); otherwise the directory it started from and
 * a hash of the path as written.
 */
struct audit_key {
	__u64 cgroup_id;
	__u64 dir;
	__u64 path_hash;
	__u64 ino;
	__s32 nr;
	__u32 flags;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, CORDON_AUDIT_SEEN);
	__type(key, struct audit_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} audit_seen SEC(".maps");

static __always_inline int auditing(void)
{
	__u32 zero = 0;
	__u32 *on = bpf_map_lookup_elem(&audit_on, &zero);
	return on && *on;
}

/* Counts a record the sandbox's ring had no room for. */
static __always_inline void count_lost(__u64 cgroup_id)
{
	struct cordon_counts *counts = bpf_map_lookup_elem(&lost, &cgroup_id);
	if (counts)
		__sync_fetch_and_add(&counts->lost, 1);
}

/* Fills the fields every record starts with (struct cordon_event's, or a record of its own kind's). */
static __always_inline void fill_header(struct cordon_event *e, __u64 cgroup_id, __u32 kind)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	e->time_ns = bpf_ktime_get_ns();
	e->cgroup_id = cgroup_id;
	e->kind = kind;
	e->pid = pid_tgid >> 32;
	e->tid = (__u32)pid_tgid;
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->flags = 0;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
}

/* A record of the sandbox's ring with its header filled; NULL (counted as lost) when full. */
static __always_inline struct cordon_event *reserve(const struct cordon_sandbox *sb,
						     __u64 cgroup_id, __u32 kind)
{
	__u32 slot = sb->ring;
	void *ring = bpf_map_lookup_elem(&rings, &slot);
	struct cordon_event *e = ring ? bpf_ringbuf_reserve(ring, sizeof(*e), 0) : NULL;
	if (!e) {
		count_lost(cgroup_id);
		return NULL;
	}
	fill_header(e, cgroup_id, kind);
	return e;
}

/*
 * Submits a record. A denial wakes the watcher at once (response rules act on it; a plain
 * submit would wake no one while quiet records wait). A quiet record, a process's start,
 * exec or end, waits for the watcher's next read (50 ms at most) instead: waking it for
 * each cost every process a sandboxed shell starts about a tenth of a millisecond on this
 * kind of VM, where each wake-up of another processor is an interrupt. A ring a quarter
 * full wakes it all the same.
 */
static __always_inline void submit(const struct cordon_sandbox *sb, struct cordon_event *e,
				   int quiet)
{
	__u64 flags = BPF_RB_FORCE_WAKEUP;
	if (quiet) {
		__u32 slot = sb->ring;
		void *ring = bpf_map_lookup_elem(&rings, &slot);
		if (ring && bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA) < CORDON_RING_BYTES / 4)
			flags = BPF_RB_NO_WAKEUP;
	}
	bpf_ringbuf_submit(e, flags);
}

/* Whether `port`/`proto` is in one of the entry's ranges. */
static __always_inline int port_allowed(const struct cordon_dest *d, __u16 port, __u8 proto)
{
#pragma unroll
	for (int i = 0; i < CORDON_MAX_PORT_RANGES; i++) {
		if (i >= d->nranges)
			break;
		const struct cordon_port_range *r = &d->ranges[i];
		if ((r->protos & proto) && port >= r->lo && port <= r->hi)
			return 1;
	}
	return 0;
}

static __always_inline __u8 proto_of(__u32 protocol)
{
	return protocol == IPPROTO_TCP ? CORDON_PROTO_TCP :
	       protocol == IPPROTO_UDP ? CORDON_PROTO_UDP : 0;
}

static __always_inline void deny_event(const struct cordon_sandbox *sb, __u64 cgroup_id,
				       __u16 family,
				       const void *addr, __u32 addr_len, __u16 port, __u8 proto,
				       __u8 reason, __u32 flags)
{
	struct cordon_event *e = reserve(sb, cgroup_id, CORDON_EVENT_NET_DENIED);
	if (!e)
		return;
	e->flags = flags;
	__builtin_memset(&e->net, 0, sizeof(e->net));
	e->net.family = family;
	e->net.port = port;
	e->net.proto = proto;
	e->net.reason = reason;
	if (addr_len == 4)
		__builtin_memcpy(e->net.addr, addr, 4);
	else
		__builtin_memcpy(e->net.addr, addr, 16);
	submit(sb, e, 0);
}

/* The LPM lookup and the port check; the reason a connection is refused, or 0. */
static __always_inline __u8 check_dest(const struct cordon_dest *d, __u16 port, __u8 proto)
{
	if (!d)
		return CORDON_NET_NOT_ALLOWED;
	if (d->expires_ns && d->expires_ns < bpf_ktime_get_ns())
		return CORDON_NET_EXPIRED;
	return port_allowed(d, port, proto) ? 0 : CORDON_NET_NOT_ALLOWED;
}

static __always_inline int egress4(struct bpf_sock_addr *ctx)
{
	__u64 cgroup_id = bpf_get_current_cgroup_id();
	struct cordon_sandbox *sb = bpf_map_lookup_elem(&sandboxes, &cgroup_id);
	if (!sb)
		return DENY;
	__u32 ip = ctx->user_ip4;
	__u16 port = bpf_ntohs((__u16)ctx->user_port);
	__u8 proto = proto_of(ctx->protocol);
	if (sb->flags & CORDON_SANDBOX_ISOLATED) {
		deny_event(sb, cgroup_id, AF_INET, &ip, 4, port, proto, CORDON_NET_ISOLATED, 0);
		return DENY;
	}
	if (port == DNS_PORT && proto == CORDON_PROTO_UDP && sb->dns_port4) {
		__u64 cookie = bpf_get_socket_cookie(ctx);
		struct cordon_dns_origin origin = {};
		__builtin_memcpy(origin.addr, &ip, 4);
		origin.port = (__u16)ctx->user_port;
		origin.family = AF_INET;
		bpf_map_update_elem(&dns_origins, &cookie, &origin, BPF_ANY);
		ctx->user_ip4 = bpf_htonl(0x7f000001);
		ctx->user_port = bpf_htons(sb->dns_port4);
		return ALLOW;
	}
	struct cordon_dest4_key key = {
		.prefixlen = 64 + 32,
		.cgroup_lo = (__u32)cgroup_id,
		.cgroup_hi = cgroup_id >> 32,
	};
	__builtin_memcpy(key.addr, &ip, 4);
	struct cordon_dest *d = bpf_map_lookup_elem(&dests4, &key);
	__u8 reason = check_dest(d, port, proto);
	if (!reason)
		return ALLOW;
	/*
	 * Audited: let through and reported, except into the host and its networks (an
	 * isolation, above, holds whatever the mode).
	 */
	if ((sb->flags & CORDON_SANDBOX_AUDIT) && !(d && (d->flags & CORDON_DEST_INSIDE))) {
		deny_event(sb, cgroup_id, AF_INET, &ip, 4, port, proto, reason,
			   CORDON_RECORD_NOT_ENFORCED);
		return ALLOW;
	}
	deny_event(sb, cgroup_id, AF_INET, &ip, 4, port, proto, reason, 0);
	return DENY;
}

static __always_inline int egress6(struct bpf_sock_addr *ctx)
{
	__u64 cgroup_id = bpf_get_current_cgroup_id();
	struct cordon_sandbox *sb = bpf_map_lookup_elem(&sandboxes, &cgroup_id);
	if (!sb)
		return DENY;
	__u32 ip[4] = { ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3] };
	__u16 port = bpf_ntohs((__u16)ctx->user_port);
	__u8 proto = proto_of(ctx->protocol);
	if (sb->flags & CORDON_SANDBOX_ISOLATED) {
		deny_event(sb, cgroup_id, AF_INET6, ip, 16, port, proto, CORDON_NET_ISOLATED, 0);
		return DENY;
	}
	if (port == DNS_PORT && proto == CORDON_PROTO_UDP && sb->dns_port6) {
		__u64 cookie = bpf_get_socket_cookie(ctx);
		struct cordon_dns_origin origin = {};
		__builtin_memcpy(origin.addr, ip, 16);
		origin.port = (__u16)ctx->user_port;
		origin.family = AF_INET6;
		bpf_map_update_elem(&dns_origins, &cookie, &origin, BPF_ANY);
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = 0;
		ctx->user_ip6[3] = bpf_htonl(1);
		ctx->user_port = bpf_htons(sb->dns_port6);
		return ALLOW;
	}
	struct cordon_dest6_key key = {
		.prefixlen = 64 + 128,
		.cgroup_lo = (__u32)cgroup_id,
		.cgroup_hi = cgroup_id >> 32,
	};
	__builtin_memcpy(key.addr, ip, 16);
	struct cordon_dest *d = bpf_map_lookup_elem(&dests6, &key);
	__u8 reason = check_dest(d, port, proto);
	if (!reason)
		return ALLOW;
	/*
	 * Audited: let through and reported, except into the host and its networks (an
	 * isolation, above, holds whatever the mode).
	 */
	if ((sb->flags & CORDON_SANDBOX_AUDIT) && !(d && (d->flags & CORDON_DEST_INSIDE))) {
		deny_event(sb, cgroup_id, AF_INET6, ip, 16, port, proto, reason,
			   CORDON_RECORD_NOT_ENFORCED);
		return ALLOW;
	}
	deny_event(sb, cgroup_id, AF_INET6, ip, 16, port, proto, reason, 0);
	return DENY;
}

SEC("cgroup/connect4")
int cordon_connect4(struct bpf_sock_addr *ctx)
{
	return egress4(ctx);
}

SEC("cgroup/sendmsg4")
int cordon_sendmsg4(struct bpf_sock_addr *ctx)
{
	return egress4(ctx);
}

SEC("cgroup/connect6")
int cordon_connect6(struct bpf_sock_addr *ctx)
{
	return egress6(ctx);
}

SEC("cgroup/sendmsg6")
int cordon_sendmsg6(struct bpf_sock_addr *ctx)
{
	return egress6(ctx);
}

/* A reply from the sandbox's resolver shows the address the socket originally asked. */
static __always_inline int restore_dns_source(struct bpf_sock_addr *ctx, __u16 family)
{
	__u64 cgroup_id = bpf_get_current_cgroup_id();
	struct cordon_sandbox *sb = bpf_map_lookup_elem(&sandboxes, &cgroup_id);
	if (!sb)
		return ALLOW;
	__u16 resolver = family == AF_INET ? sb->dns_port4 : sb->dns_port6;
	if (!resolver || bpf_ntohs((__u16)ctx->user_port) != resolver)
		return ALLOW;
	/* Only a datagram from the resolver itself, on loopback, is shown as the server's. */
	if (family == AF_INET && ctx->user_ip4 != bpf_htonl(0x7f000001))
		return ALLOW;
	if (family == AF_INET6 && (ctx->user_ip6[0] || ctx->user_ip6[1] || ctx->user_ip6[2] ||
				   ctx->user_ip6[3] != bpf_htonl(1)))
		return ALLOW;
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct cordon_dns_origin *origin = bpf_map_lookup_elem(&dns_origins, &cookie);
	if (!origin || origin->family != family)
		return ALLOW;
	if (family == AF_INET) {
		__u32 ip;
		__builtin_memcpy(&ip, origin->addr, 4);
		ctx->user_ip4 = ip;
	} else {
		__u32 ip[4];
		__builtin_memcpy(ip, origin->addr, 16);
		ctx->user_ip6[0] = ip[0];
		ctx->user_ip6[1] = ip[1];
		ctx->user_ip6[2] = ip[2];
		ctx->user_ip6[3] = ip[3];
	}
	ctx->user_port = origin->port;
	return ALLOW;
}

SEC("cgroup/recvmsg4")
int cordon_recvmsg4(struct bpf_sock_addr *ctx)
{
	return restore_dns_source(ctx, AF_INET);
}

SEC("cgroup/recvmsg6")
int cordon_recvmsg6(struct bpf_sock_addr *ctx)
{
	return restore_dns_source(ctx, AF_INET6);
}

/*
 * A TCP bind of an audited sandbox: reported for user space to check against the ports the
 * profile binds (in enforce mode Landlock refuses the others, and says so itself).
 */
static __always_inline int audit_bind(struct bpf_sock_addr *ctx, __u16 family)
{
	if (ctx->protocol != IPPROTO_TCP)
		return ALLOW;
	__u64 cgroup_id = bpf_get_current_cgroup_id();
	struct cordon_sandbox *sb = bpf_map_lookup_elem(&sandboxes, &cgroup_id);
	if (!sb || !(sb->flags & CORDON_SANDBOX_AUDIT))
		return ALLOW;
	__u16 port = bpf_ntohs((__u16)ctx->user_port);
	if (family == AF_INET) {
		__u32 ip = ctx->user_ip4;
		deny_event(sb, cgroup_id, AF_INET, &ip, 4, port, CORDON_PROTO_TCP, CORDON_NET_BIND,
			   CORDON_RECORD_NOT_ENFORCED);
	} else {
		__u32 ip[4] = { ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2],
				ctx->user_ip6[3] };
		deny_event(sb, cgroup_id, AF_INET6, ip, 16, port, CORDON_PROTO_TCP,
			   CORDON_NET_BIND, CORDON_RECORD_NOT_ENFORCED);
	}
	return ALLOW;
}

SEC("cgroup/bind4")
int cordon_bind4(struct bpf_sock_addr *ctx)
{
	return audit_bind(ctx, AF_INET);
}

SEC("cgroup/bind6")
int cordon_bind6(struct bpf_sock_addr *ctx)
{
	return audit_bind(ctx, AF_INET6);
}

SEC("cgroup/sock_create")
int cordon_sock_create(struct bpf_sock *sk)
{
	if (sk->family != AF_INET && sk->family != AF_INET6)
		return ALLOW;
	return proto_of(sk->protocol) ? ALLOW : DENY;
}

static __always_inline int pass_unless_isolated(struct __sk_buff *skb)
{
	__u64 cgroup_id = bpf_skb_cgroup_id(skb);
	struct cordon_sandbox *sb = bpf_map_lookup_elem(&sandboxes, &cgroup_id);
	if (!sb)
		return DENY;
	return (sb->flags & CORDON_SANDBOX_ISOLATED) ? DENY : ALLOW;
}

SEC("cgroup_skb/egress")
int cordon_skb_egress(struct __sk_buff *skb)
{
	return pass_unless_isolated(skb);
}

SEC("cgroup_skb/ingress")
int cordon_skb_ingress(struct __sk_buff *skb)
{
	return pass_unless_isolated(skb);
}

static __always_inline int condition_matches(const struct cordon_syscall_condition *c,
					     const __u64 *args)
{
	if (c->arg >= 6)
		return 0;
	__u64 arg = args[c->arg & 7];
	if (c->op == CORDON_ARG_ANY_BIT)
		return (arg & c->mask) != 0;
	if (c->op == CORDON_ARG_NOT_IN)
		return (__u32)arg >= 64 || !(c->mask & (1ULL << ((__u32)arg & 63)));
	if (c->op == CORDON_ARG_ONE_OF) {
#pragma unroll
		for (int i = 0; i < CORDON_MAX_ARG_VALUES; i++) {
			if (i < c->nvalues && (__u32)arg == (__u32)c->values[i])
				return 1;
		}
	}
	return 0;
}

#define EACCES 13
#define EROFS 30
#define ENOENT 2
#define AT_FDCWD -100

/*
 * Where a path call (x86_64 numbers) keeps the path it failed on: the argument holding it,
 * and the one holding the directory it is relative to (-1: the cwd). For a call that names
 * two paths, the one written (a rename's or link's new name). Calls that only look (stat,
 * access, readlink) count when refused, not when the path is missing: programs probe for
 * files all the time, and a missing one they asked to open is signal enough.
 */
static __always_inline int path_arg(__u32 nr, long ret, int *dirfd)
{
	*dirfd = -1;
	switch (nr) {
	case 2:   /* open */
	case 85:  /* creat */
	case 59:  /* execve */
	case 83:  /* mkdir */
	case 84:  /* rmdir */
	case 87:  /* unlink */
	case 133: /* mknod */
	case 76:  /* truncate */
	case 90:  /* chmod */
	case 92:  /* chown */
	case 94:  /* lchown */
	case 80:  /* chdir */
	case 188: /* setxattr */
	case 189: /* lsetxattr */
	case 197: /* removexattr */
	case 198: /* lremovexattr */
	case 132: /* utime */
	case 235: /* utimes */
		return 0;
	case 82: /* rename */
	case 86: /* link */
	case 88: /* symlink */
		return 1;
	case 257: /* openat */
	case 437: /* openat2 */
	case 322: /* execveat */
	case 258: /* mkdirat */
	case 263: /* unlinkat */
	case 259: /* mknodat */
	case 268: /* fchmodat */
	case 452: /* fchmodat2 */
	case 260: /* fchownat */
	case 280: /* utimensat (a NULL path is a descriptor's: not read) */
	case 261: /* futimesat */
		*dirfd = 0;
		return 1;
	case 266: /* symlinkat: target, newdirfd, linkpath */
		*dirfd = 1;
		return 2;
	case 264: /* renameat */
	case 316: /* renameat2 */
	case 265: /* linkat */
		*dirfd = 2;
		return 3;
	}
	/* A look that finds nothing is a miss; one that finds a read-only mount (access(W_OK)) is no write. */
	if (ret != -EACCES)
		return -1;
	switch (nr) {
	case 4:   /* stat */
	case 6:   /* lstat */
	case 21:  /* access */
	case 89:  /* readlink */
	case 137: /* statfs */
	case 161: /* chroot */
	case 191: /* getxattr */
	case 192: /* lgetxattr */
	case 194: /* listxattr */
	case 195: /* llistxattr */
		return 0;
	case 262: /* newfstatat */
	case 332: /* statx */
	case 269: /* faccessat */
	case 439: /* faccessat2 */
	case 267: /* readlinkat */
		*dirfd = 0;
		return 1;
	}
	return -1;
}

/*
 * Reading a directory's names, one step per call of `dir_step` under bpf_loop (a plain
 * loop whose every step branches on kernel data is verified path by path, 2^steps of
 * them). Per CPU: a raw tracepoint program runs to its end on one CPU.
 */
struct dir_walk {
	struct dentry *dentry;
	struct vfsmount *vfsmnt;
	struct dentry *root_dentry;
	struct vfsmount *root_mnt;
	/*
	 * Field offsets, resolved by CO-RE in the program itself (aya applies no CO-RE
	 * relocation to a callback's code): vfsmount.mnt_root, mount.mnt (the vfsmount inside
	 * a mount), mount.mnt_parent, mount.mnt_mountpoint, dentry.d_parent, dentry.d_name.name.
	 */
	__u64 off_mnt_root, off_mnt, off_mnt_parent, off_mountpoint, off_d_parent, off_d_name;
	__u32 off;
	__u32 parts;
	__u32 done; /* the root was reached: the names are the whole directory */
	__u32 pad;
	char dir[CORDON_FILE_DIR_LEN];
};

/* The pointer at `base + off` in kernel memory; NULL when it cannot be read. */
static __always_inline void *kernel_ptr(void *base, __u64 off)
{
	void *p = NULL;
	bpf_probe_read_kernel(&p, sizeof(p), base + off);
	return p;
}

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dir_walk);
} dir_walks SEC(".maps");

/* A file error's record is built here, then copied to the ring at the size it has. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cordon_file_event);
} file_records SEC(".maps");

/* One step up: a mount crossed, or one name read. Returns 1 to stop. */
static long dir_step(__u64 index, void *ctx)
{
	__u32 zero = 0;
	struct dir_walk *w = bpf_map_lookup_elem(&dir_walks, &zero);
	if (!w)
		return 1;
	if (w->dentry == w->root_dentry && w->vfsmnt == w->root_mnt) {
		w->done = 1;
		return 1;
	}
	if (w->dentry == kernel_ptr(w->vfsmnt, w->off_mnt_root)) {
		void *m = (void *)w->vfsmnt - w->off_mnt;
		void *parent = kernel_ptr(m, w->off_mnt_parent);
		if (!parent || parent == m) {
			/* The top of the mount namespace. */
			w->done = 1;
			return 1;
		}
		w->dentry = kernel_ptr(m, w->off_mountpoint);
		w->vfsmnt = (struct vfsmount *)(parent + w->off_mnt);
		return 0;
	}
	__u32 off = w->off;
	if (off >= CORDON_FILE_DIR_LEN - CORDON_FILE_NAME_MAX)
		return 1;
	const unsigned char *name = kernel_ptr(w->dentry, w->off_d_name);
	long n = bpf_probe_read_kernel_str(&w->dir[off & (CORDON_FILE_DIR_LEN - CORDON_FILE_NAME_MAX - 1)],
					   CORDON_FILE_NAME_MAX, name);
	if (n <= 0)
		return 1;
	w->off = off + n;
	w->parts++;
	w->dentry = kernel_ptr(w->dentry, w->off_d_parent);
	return 0;
}

/*
 * The names of the directory `at` from the last up to the task's root, crossing mounts,
 * into f->dir ("lw\0tmp\0" for /tmp/lw): what d_path does, which raw tracepoints may not
 * call. Leaves dir_parts 0 when the directory is deeper or longer than the record holds.
 */
static __always_inline void read_dir(struct cordon_file *f, struct path *at, struct path *root)
{
	__u32 zero = 0;
	struct dir_walk *w = bpf_map_lookup_elem(&dir_walks, &zero);
	if (!w)
		return;
	w->dentry = BPF_CORE_READ(at, dentry);
	w->vfsmnt = BPF_CORE_READ(at, mnt);
	w->root_dentry = BPF_CORE_READ(root, dentry);
	w->root_mnt = BPF_CORE_READ(root, mnt);
	w->off_mnt_root = bpf_core_field_offset(struct vfsmount, mnt_root);
	w->off_mnt = bpf_core_field_offset(struct mount, mnt);
	w->off_mnt_parent = bpf_core_field_offset(struct mount, mnt_parent);
	w->off_mountpoint = bpf_core_field_offset(struct mount, mnt_mountpoint);
	w->off_d_parent = bpf_core_field_offset(struct dentry, d_parent);
	w->off_d_name = bpf_core_field_offset(struct dentry, d_name.name);
	w->off = 0;
	w->parts = 0;
	w->done = 0;
	bpf_loop(CORDON_FILE_DIR_DEPTH, dir_step, NULL, 0);
	if (!w->done)
		return;
	/* Only the names of this walk: the scratch holds older walks' past them. */
	__u32 len = w->off;
	if (len > sizeof(f->dir))
		return;
	if (len && bpf_probe_read_kernel(f->dir, len, w->dir))
		return;
	f->dir_parts = w->parts;
	f->dir_placed = CORDON_DIR_START;
}

/*
 * The file an open returned (`fd`) or an exec runs: its path as the kernel reached it, read
 * into f->dir (dir_placed 2), and its identity for the audit's repeats. Returns 0 when it
 * could not be read whole (user space then judges the path as written).
 */
static __always_inline int read_object(struct cordon_file *f, struct file *file,
				       struct audit_key *key)
{
	if (!file)
		return 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct path root = BPF_CORE_READ(task, fs, root);
	struct path opened = BPF_CORE_READ(file, f_path);
	f->dir_parts = 0;
	f->dir_placed = 0;
	read_dir(f, &opened, &root);
	if (!f->dir_placed)
		return 0;
	f->dir_placed = CORDON_DIR_OBJECT;
	key->dir = (__u64)opened.dentry;
	key->path_hash = (__u64)opened.mnt;
	key->ino = BPF_CORE_READ(opened.dentry, d_inode, i_ino);
	return 1;
}

/* The open file at descriptor `fd` of the current task. */
static __always_inline struct file *fd_file(long fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	unsigned int max = BPF_CORE_READ(fdt, max_fds);
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *file = NULL;
	if (fd >= 0 && (unsigned long)fd < max)
		bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]);
	return file;
}

/*
 * Whether a missing-path record may go now: at most CORDON_MISS_BURST ahead of one per
 * CORDON_MISS_INTERVAL_NS (a program probing for thousands of absent files must not fill
 * the ring that carries the sandbox's denials). Counts the ones that may not. Updated
 * without a lock: CPUs racing on it may let a few more through, never fewer.
 */
static __always_inline int miss_allowed(__u64 cgroup_id)
{
	struct cordon_counts *c = bpf_map_lookup_elem(&lost, &cgroup_id);
	if (!c)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	__u64 due = c->miss_due_ns;
	if (due < now)
		due = now;
	if (due >= now + CORDON_MISS_BURST * CORDON_MISS_INTERVAL_NS) {
		__sync_fetch_and_add(&c->unexamined, 1);
		return 0;
	}
	c->miss_due_ns = due + CORDON_MISS_INTERVAL_NS;
	return 1;
}

/* FNV-1a over a path's 8-byte words, one word per call of `hash_step` under bpf_loop. */
struct path_hash {
	__u64 buf; /* the path's address (a per-CPU record), read with bpf_probe_read_kernel */
	__u64 hash;
	__u32 words;
};

static long hash_step(__u64 index, void *ctx)
{
	struct path_hash *h = ctx;
	if (index >= h->words)
		return 1;
	__u64 word = 0;
	bpf_probe_read_kernel(&word, sizeof(word),
			      (void *)(h->buf + ((index * 8) & (CORDON_FILE_PATH_MAX - 8))));
	h->hash = (h->hash ^ word) * 0x100000001b3ULL;
	return 0;
}

/*
 * Keys a successful call that reached no object the program can read (a mkdir, an unlink,
 * a rename; an open whose file could not be read) by its directory and its path as
 * written. A program opens the same files again and again (every process its libraries
 * and locale): each is judged once, not each time.
 */
static __always_inline void key_by_name(struct audit_key *key, __u64 dir, const char *path, long n)
{
	/* n counts the NUL: the name is n - 1 bytes, whole words then the rest of the last. */
	__u32 len = (__u32)(n - 1) & (CORDON_FILE_PATH_MAX - 1);
	struct path_hash h = { .buf = (__u64)path, .hash = 0xcbf29ce484222325ULL, .words = len / 8 };
	bpf_loop(CORDON_FILE_PATH_MAX / 8, hash_step, &h, 0);
	__u32 rest = len & 7;
	if (rest) {
		__u64 word = 0;
		bpf_probe_read_kernel(&word, sizeof(word),
				      path + ((len - rest) & (CORDON_FILE_PATH_MAX - 8)));
		word &= (1ULL << (rest * 8)) - 1;
		h.hash = (h.hash ^ word) * 0x100000001b3ULL;
	}
	key->dir = dir;
	key->path_hash = h.hash ^ len;
	key->ino = 0;
}

/* Open's flags that say what it asked for: O_ACCMODE, O_CREAT, O_TRUNC, O_DIRECTORY. */
#define ACCESS_FLAGS (3 | 0100 | 01000 | 0200000)

static __always_inline void file_error(const struct cordon_sandbox *sb, __u64 cgroup_id,
				       __u32 nr, long ret, const __u64 *args)
{
	int dirfd_arg;
	int arg = path_arg(nr, ret, &dirfd_arg);
	if (arg < 0)
		return;
	int succeeded = ret >= 0;
	/* A successful exec is reported by sched_process_exec (its path is gone from memory here). */
	if (succeeded && (nr == 59 || nr == 322))
		return;
	if (ret == -ENOENT && !miss_allowed(cgroup_id))
		return;
	__u32 zero = 0;
	struct cordon_file_event *e = bpf_map_lookup_elem(&file_records, &zero);
	if (!e)
		return;
	fill_header((struct cordon_event *)e, cgroup_id, CORDON_EVENT_FILE_ERROR);
	if (succeeded)
		e->flags = CORDON_RECORD_SUCCEEDED;
	struct cordon_file *f = &e->file;
	f->nr = nr;
	f->ret = ret;
	f->dirfd = dirfd_arg < 0 ? AT_FDCWD : (__s32)args[dirfd_arg & 7];
	f->flags = 0;
	f->dir_parts = 0;
	f->dir_placed = 0;
	f->truncated = 0;
	f->path_len = 0;
	if (nr == 2)
		f->flags = (__u32)args[1];
	else if (nr == 257)
		f->flags = (__u32)args[2];
	else if (nr == 263)
		f->flags = (__u32)args[2]; /* unlinkat: AT_REMOVEDIR */
	else if (nr == 85)
		f->flags = 01 | 0100 | 01000; /* creat: O_WRONLY | O_CREAT | O_TRUNC */
	else if (nr == 437) {
		__u64 how_flags = 0;
		bpf_probe_read_user(&how_flags, sizeof(how_flags), (void *)args[2]);
		f->flags = (__u32)how_flags;
	}
	long n = bpf_probe_read_user_str(f->path, sizeof(f->path), (void *)args[arg & 7]);
	/* No path (utimensat on a descriptor), an empty one, or one that cannot be read. */
	if (n <= 1)
		return;
	/* Longer than the kernel takes (it failed with ENAMETOOLONG, not here) or than is read. */
	f->truncated = n >= (long)sizeof(f->path);
	f->path_len = n;
	/*
	 * "/proc/self/cwd/..." is the cwd by another name: placed the same way. Compared as two
	 * words ("/proc/se", "lf/cwd/" in little-endian): byte by byte, the branches multiplied
	 * the verifier's paths past its limit.
	 */
	__u64 head = 0, tail = 0;
	__builtin_memcpy(&head, f->path, 8);
	__builtin_memcpy(&tail, f->path + 8, 8);
	int through_cwd = n > 15 && head == 0x65732f636f72702fULL &&
			  (tail & 0x00ffffffffffffffULL) == 0x2f6477632f666cULL;
	struct audit_key key = {
		.cgroup_id = cgroup_id,
		.nr = nr,
		.flags = f->flags & ACCESS_FLAGS,
	};
	/* An open that succeeded: what it opened, as the kernel reached it. */
	int opened = succeeded && (nr == 2 || nr == 257 || nr == 437 || nr == 85) &&
		     read_object(f, fd_file(ret), &key);
	__u64 dir_id = 0;
	if (!opened && (f->path[0] != '/' || through_cwd)) {
		struct task_struct *task = (struct task_struct *)bpf_get_current_task();
		struct fs_struct *fs = BPF_CORE_READ(task, fs);
		struct path root = BPF_CORE_READ(fs, root);
		struct path at = {};
		if (f->dirfd == AT_FDCWD || through_cwd) {
			at = BPF_CORE_READ(fs, pwd);
		} else if (f->dirfd >= 0) {
			struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
			unsigned int max = BPF_CORE_READ(fdt, max_fds);
			struct file **fds = BPF_CORE_READ(fdt, fd);
			struct file *file = NULL;
			if ((unsigned int)f->dirfd < max)
				bpf_probe_read_kernel(&file, sizeof(file), &fds[f->dirfd]);
			if (file)
				at = BPF_CORE_READ(file, f_path);
		}
		if (at.dentry)
			read_dir(f, &at, &root);
		dir_id = (__u64)at.dentry;
	}
	if (succeeded && !opened)
		key_by_name(&key, dir_id, f->path, n);
	if (succeeded && bpf_map_lookup_elem(&audit_seen, &key))
		return;
	/*
	 * A missing path is mostly a program's own miss (the watcher drops those): it waits
	 * for the watcher's next read (50 ms at most) instead of waking it, which cost
	 * syscall-heavy work a few percent. A refusal wakes it, and so does a ring a quarter
	 * full, so quiet records never crowd out the ones that matter.
	 */
	__u32 slot = sb->ring;
	void *ring = bpf_map_lookup_elem(&rings, &slot);
	if (!ring)
		return;
	__u64 flags = BPF_RB_FORCE_WAKEUP; /* plain submits wake no one while quiet records wait */
	if ((ret == -ENOENT || succeeded) && bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA) < CORDON_RING_BYTES / 4)
		flags = BPF_RB_NO_WAKEUP;
	__u64 size = sizeof(*e) - CORDON_FILE_PATH_MAX + (n & (CORDON_FILE_PATH_MAX - 1));
	if (n >= CORDON_FILE_PATH_MAX)
		size = sizeof(*e);
	if (bpf_ringbuf_output(ring, e, size, flags)) {
		count_lost(cgroup_id);
		return;
	}
	/* Noted once it is in the ring: a record lost is reported again next time. */
	__u8 one = 1;
	if (succeeded)
		bpf_map_update_elem(&audit_seen, &key, &one, BPF_ANY);
}

/*
 * A file an audited sandbox runs: a record of its own (a successful path call) with the
 * file as the object, for user space to judge. For an exec (nr execve) the file the kernel
 * runs (for a script, its interpreter) and the name the program gave (`name`, in kernel
 * memory), both judged; for a map made executable (nr mmap) the file mapped, which a
 * `noexec` mount refuses in enforce mode ("failed to map segment": a library of a tree the
 * profile does not run from).
 */
static __always_inline void audit_run(const struct cordon_sandbox *sb, __u64 cgroup_id,
				      __s32 nr, struct file *file, const char *name)
{
	__u32 zero = 0;
	struct cordon_file_event *e = bpf_map_lookup_elem(&file_records, &zero);
	if (!e)
		return;
	fill_header((struct cordon_event *)e, cgroup_id, CORDON_EVENT_FILE_ERROR);
	e->flags = CORDON_RECORD_SUCCEEDED;
	struct cordon_file *f = &e->file;
	f->nr = nr;
	f->ret = 0;
	f->dirfd = AT_FDCWD;
	f->flags = 0;
	f->truncated = 0;
	long n = 1;
	f->path[0] = 0;
	if (name) {
		n = bpf_probe_read_kernel_str(f->path, sizeof(f->path), name);
		if (n <= 1)
			return;
	}
	f->path_len = n;
	/*
	 * Keyed by the name and the file run: one interpreter runs many scripts, each judged.
	 * A relative name counts with the directory it was run from.
	 */
	struct audit_key key = { .cgroup_id = cgroup_id, .nr = nr };
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u64 cwd = f->path[0] == '/' ? 0 : (__u64)BPF_CORE_READ(task, fs, pwd.dentry);
	if (name)
		key_by_name(&key, cwd, f->path, n);
	struct audit_key object = {};
	if (read_object(f, file, &object)) {
		key.dir ^= object.dir;
		key.path_hash ^= object.path_hash;
		key.ino = object.ino;
	} else if (!name) {
		return; /* nothing to judge */
	}
	if (bpf_map_lookup_elem(&audit_seen, &key))
		return;
	__u32 slot = sb->ring;
	void *ring = bpf_map_lookup_elem(&rings, &slot);
	if (!ring)
		return;
	__u64 size = sizeof(*e) - CORDON_FILE_PATH_MAX + (n & (CORDON_FILE_PATH_MAX - 1));
	if (bpf_ringbuf_output(ring, e, size, BPF_RB_FORCE_WAKEUP)) {
		count_lost(cgroup_id);
		return;
	}
	__u8 one = 1;
	bpf_map_update_elem(&audit_seen, &key, &one, BPF_ANY);
}

/*
 * seccomp answers a denied call before the sys_enter tracepoint, but sys_exit still fires
 * with the errno seccomp set: a sandboxed call that failed with the rule's errno, for a
 * syscall and arguments the rule denies, is exactly a seccomp denial.
 */
SEC("raw_tracepoint/sys_exit")
int cordon_sys_exit(struct bpf_raw_tracepoint_args *ctx)
{
	long ret = (long)ctx->args[1];
	if (ret >= 0 && !auditing())
		return 0;
	__u64 cgroup_id = bpf_get_current_cgroup_id();
	struct cordon_sandbox *sb = bpf_map_lookup_elem(&sandboxes, &cgroup_id);
	if (!sb)
		return 0;
	if (ret >= 0 && !(sb->flags & CORDON_SANDBOX_AUDIT))
		return 0;
	struct pt_regs regs;
	if (bpf_probe_read_kernel(&regs, sizeof(regs), (void *)ctx->args[0]))
		return 0;
	struct cordon_syscall_key key = { .cgroup_id = cgroup_id, .nr = (__u32)regs.orig_rax };
	__u64 args[8] = { regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9 };
	struct cordon_syscall_rule *rule = bpf_map_lookup_elem(&syscalls, &key);
	/* errno 0: a rule an audited sandbox's filter does not hold; reported whatever the result. */
	int audited = rule && rule->errno_value == 0;
	int matched = rule && (audited || ret == -(long)rule->errno_value);
	if (matched && rule->nconditions) {
		matched = 0;
#pragma unroll
		for (int i = 0; i < CORDON_MAX_ARG_CONDITIONS; i++) {
			if (i < rule->nconditions && condition_matches(&rule->conditions[i], args))
				matched = 1;
		}
	}
	if (!matched) {
		/* A file mapped executable (mmap with PROT_EXEC of a descriptor). */
		if (key.nr == 9 && ret >= 0 && (args[2] & 4) && (long)args[4] >= 0)
			audit_run(sb, cgroup_id, 9, fd_file((long)args[4]), NULL);
		else if (ret == -EACCES || ret == -EROFS || ret == -ENOENT || ret >= 0)
			file_error(sb, cgroup_id, key.nr, ret, args);
		return 0;
	}
	struct cordon_event *e = reserve(sb, cgroup_id, CORDON_EVENT_SYSCALL_DENIED);
	if (!e)
		return 0;
	if (audited)
		e->flags = CORDON_RECORD_NOT_ENFORCED;
	e->syscall.nr = (__s64)regs.orig_rax;
	e->syscall.ret = ret;
#pragma unroll
	for (int i = 0; i < 6; i++)
		e->syscall.args[i] = args[i];
	submit(sb, e, 0);
	return 0;
}

/* args: struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm */
SEC("raw_tracepoint/sched_process_exec")
int cordon_exec(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 cgroup_id = bpf_get_current_cgroup_id();
	struct cordon_sandbox *sb = bpf_map_lookup_elem(&sandboxes, &cgroup_id);
	if (!sb)
		return 0;
	struct cordon_event *e = reserve(sb, cgroup_id, CORDON_EVENT_EXEC);
	if (!e)
		return 0;
	struct linux_binprm *bprm = (struct linux_binprm *)ctx->args[2];
	const char *filename = BPF_CORE_READ(bprm, filename);
	if (bpf_probe_read_kernel_str(e->exec.filename, sizeof(e->exec.filename), filename) < 0)
		e->exec.filename[0] = 0;
	submit(sb, e, 1);
	if (sb->flags & CORDON_SANDBOX_AUDIT)
		audit_run(sb, cgroup_id, 59, BPF_CORE_READ(bprm, file), filename);
	return 0;
}

/* args: struct task_struct *parent, struct task_struct *child; runs in the parent. */
SEC("raw_tracepoint/sched_process_fork")
int cordon_fork(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *child = (struct task_struct *)ctx->args[1];
	int pid = BPF_CORE_READ(child, pid);
	int tgid = BPF_CORE_READ(child, tgid);
	if (pid != tgid)
		return 0; /* a new thread, not a new process */
	__u64 cgroup_id = bpf_get_current_cgroup_id();
	struct cordon_sandbox *sb = bpf_map_lookup_elem(&sandboxes, &cgroup_id);
	if (!sb)
		return 0;
	struct cordon_event *e = reserve(sb, cgroup_id, CORDON_EVENT_FORK);
	if (!e)
		return 0;
	e->fork.child_pid = tgid;
	submit(sb, e, 1);
	return 0;
}

/* args: struct task_struct *p, bool group_dead; runs in the exiting task. */
SEC("raw_tracepoint/sched_process_exit")
int cordon_exit(struct bpf_raw_tracepoint_args *ctx)
{
	if (!ctx->args[1])
		return 0; /* other threads of the process are still alive */
	__u64 cgroup_id = bpf_get_current_cgroup_id();
	struct cordon_sandbox *sb = bpf_map_lookup_elem(&sandboxes, &cgroup_id);
	if (!sb)
		return 0;
	struct cordon_event *e = reserve(sb, cgroup_id, CORDON_EVENT_EXIT);
	if (!e)
		return 0;
	struct task_struct *task = (struct task_struct *)ctx->args[0];
	e->exit.exit_code = BPF_CORE_READ(task, exit_code);
	submit(sb, e, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
