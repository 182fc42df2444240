/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * The layouts shared by Cordon's eBPF programs (cordon.bpf.c) and its loader (agent/src/ebpf).
 *
 * This header is the single source of truth: the agent's build script reads every
 * `#define CORDON_*` number below into Rust constants, and the Rust mirror of each struct
 * asserts at compile time that its size and field offsets equal the CORDON_*_SIZE and
 * CORDON_*_OFF_* numbers that the C side asserts too (the _Static_asserts at the end).
 * Change a struct here, and both compilers tell you what else must change.
 *
 * Every map is keyed by the sandbox's cgroup v2 id (the inode number of its directory), so
 * one set of programs, attached once to <cgroup2>/cordon, serves every sandbox.
 */
#ifndef CORDON_H
#define CORDON_H

#include <linux/types.h>

/* Map sizes. */
#define CORDON_MAX_SANDBOXES 4096
#define CORDON_MAX_DESTS 65536
#define CORDON_MAX_SYSCALL_RULES 16384
#define CORDON_MAX_DNS_SOCKETS 65536
/* Bytes of each sandbox's event ring buffer (a power of two, a multiple of the page size). */
#define CORDON_RING_BYTES 1048576

/* Port ranges one destination entry holds. */
#define CORDON_MAX_PORT_RANGES 8
/* Argument conditions one denied syscall holds. */
#define CORDON_MAX_ARG_CONDITIONS 4
#define CORDON_MAX_ARG_VALUES 4
#define CORDON_EXE_LEN 256

/* struct cordon_port_range.protos */
#define CORDON_PROTO_TCP 1
#define CORDON_PROTO_UDP 2

/* struct cordon_sandbox.flags */
#define CORDON_SANDBOX_ISOLATED 1
/* A responder killed the sandbox (for its watcher to report; the programs ignore it). */
#define CORDON_SANDBOX_KILLED 2
/*
 * The profile's mode is `audit`: what the profile does not allow is let through and
 * reported (records flagged CORDON_RECORD_NOT_ENFORCED), except what an isolation or the
 * seccomp filter still refuses; successful path calls are reported too, for user space to
 * judge against the profile.
 */
#define CORDON_SANDBOX_AUDIT 4

/* struct cordon_event.kind */
#define CORDON_EVENT_NET_DENIED 1
#define CORDON_EVENT_SYSCALL_DENIED 2
#define CORDON_EVENT_EXEC 3
#define CORDON_EVENT_FORK 4
#define CORDON_EVENT_EXIT 5
#define CORDON_EVENT_FILE_ERROR 6

/* struct cordon_net.reason: why a connection was refused. */
#define CORDON_NET_NOT_ALLOWED 1
#define CORDON_NET_ISOLATED 2
#define CORDON_NET_EXPIRED 3
/* A TCP bind of an audited sandbox (user space checks the port against the profile). */
#define CORDON_NET_BIND 4

/* The header's `flags`. */
/* What the record reports was let through (audit mode), not refused. */
#define CORDON_RECORD_NOT_ENFORCED 1
/* A path call that succeeded (audit mode): user space judges it against the profile. */
#define CORDON_RECORD_SUCCEEDED 2
/* struct cordon_file.dir_placed */
#define CORDON_DIR_START 1
#define CORDON_DIR_OBJECT 2

/* Distinct successful path calls an audited sandbox reports (older ones are forgotten). */
#define CORDON_AUDIT_SEEN 65536

/* struct cordon_syscall_condition.op */
#define CORDON_ARG_ANY_BIT 1
#define CORDON_ARG_ONE_OF 2
#define CORDON_ARG_NOT_IN 3

/*
 * One sandbox: the value of `sandboxes`, keyed by cgroup id (__u64). Written only by the
 * loader; the count of events the sandbox lost is in `lost` (cgroup id -> __u64), which the
 * programs add to atomically.
 */
struct cordon_sandbox {
	__u32 flags;
	/* The sandbox's DNS resolver on 127.0.0.1 and [::1] (host byte order); 0: none. */
	__u16 dns_port4;
	__u16 dns_port6;
	/* The slot of `rings` whose ring buffer the sandbox's events go to. */
	__u32 ring;
};
#define CORDON_SANDBOX_SIZE 12

/*
 * Value of `lost`: what the kernel side counts for a sandbox, apart from its entry (which
 * responders rewrite whole).
 */
struct cordon_counts {
	/* Records the sandbox's ring had no room for. */
	__u64 lost;
	/*
	 * Missing-path records are rate-limited (a refusal never is): the time (ns) the next one
	 * is due (a GCRA), and how many were let go unexamined above the rate.
	 */
	__u64 miss_due_ns;
	__u64 unexamined;
};
#define CORDON_COUNTS_SIZE 24
#define CORDON_SANDBOX_OFF_DNS_PORT4 4
#define CORDON_SANDBOX_OFF_RING 8

/* Ports [lo, hi] for the protocols in `protos`. */
struct cordon_port_range {
	__u16 lo;
	__u16 hi;
	__u8 protos;
	__u8 pad[3];
};
#define CORDON_PORT_RANGE_SIZE 8

/*
 * Keys of the LPM tries `dests4` and `dests6`: the cgroup id, then the address, so a prefix
 * length of 64 + n matches the first n bits of the address within one sandbox.
 */
struct cordon_dest4_key {
	__u32 prefixlen;
	__u32 cgroup_lo;
	__u32 cgroup_hi;
	__u8 addr[4];
};
#define CORDON_DEST4_KEY_SIZE 16

struct cordon_dest6_key {
	__u32 prefixlen;
	__u32 cgroup_lo;
	__u32 cgroup_hi;
	__u8 addr[16];
};
#define CORDON_DEST6_KEY_SIZE 28

/* struct cordon_dest.flags */
/*
 * The host or its networks (loopback, private, link-local, the host's own addresses): an
 * audited sandbox is refused there too, unless a port of the entry allows it.
 */
#define CORDON_DEST_INSIDE 1

/* Where a sandbox may connect: the ports of the longest matching prefix. */
struct cordon_dest {
	/* CLOCK_MONOTONIC nanoseconds after which the entry is void (a DNS answer's TTL); 0: never. */
	__u64 expires_ns;
	__u32 nranges;
	__u32 flags; /* CORDON_DEST_* */
	struct cordon_port_range ranges[CORDON_MAX_PORT_RANGES];
};
#define CORDON_DEST_SIZE 80
#define CORDON_DEST_OFF_RANGES 16

/* Key of `syscalls`: a denied syscall of one sandbox. */
struct cordon_syscall_key {
	__u64 cgroup_id;
	__u32 nr;
	__u32 pad;
};
#define CORDON_SYSCALL_KEY_SIZE 16

/*
 * Denied when (op ANY_BIT) arg & mask != 0, (op ONE_OF) (__u32)arg is one of values, or
 * (op NOT_IN) arg is not a number below 64 whose bit mask has set.
 */
struct cordon_syscall_condition {
	__u32 op;
	__u32 arg;
	__u64 mask;
	__u32 nvalues;
	__u32 pad;
	__u64 values[CORDON_MAX_ARG_VALUES];
};
#define CORDON_SYSCALL_CONDITION_SIZE 56

/*
 * Value of `syscalls`: what seccomp answers, and when: denied when any condition matches;
 * no condition: always denied.
 */
struct cordon_syscall_rule {
	/*
	 * The errno seccomp returns (the call's return value is -errno); 0 for a rule of an
	 * audited sandbox that its filter does not hold: the call is reported, not refused.
	 */
	__s32 errno_value;
	__u32 nconditions;
	struct cordon_syscall_condition conditions[CORDON_MAX_ARG_CONDITIONS];
};
#define CORDON_SYSCALL_RULE_SIZE 232

/* Value of `dns_sockets`, keyed by socket cookie: where a redirected DNS socket meant to go. */
struct cordon_dns_origin {
	__u8 addr[16];
	__u16 port; /* network byte order, as in the sockaddr */
	__u16 family;
	__u32 pad;
};
#define CORDON_DNS_ORIGIN_SIZE 24

struct cordon_net {
	__u16 family; /* AF_INET or AF_INET6 */
	__u16 port;   /* host byte order */
	__u8 proto;   /* CORDON_PROTO_* */
	__u8 reason;  /* CORDON_NET_* */
	__u8 pad[2];
	__u8 addr[16];
};

struct cordon_syscall {
	__s64 nr;
	__s64 ret;
	__u64 args[6];
};

struct cordon_exec {
	char filename[CORDON_EXE_LEN];
};

struct cordon_fork {
	__u32 child_pid;
};

struct cordon_exit {
	/* The wait status: exit code << 8, or the terminating signal. */
	__u32 exit_code;
};

/* The fields every record of a sandbox's ring buffer starts with (struct cordon_event's). */
#define EVENT_HEADER                                                                                \
	__u64 time_ns; /* CLOCK_MONOTONIC */                                                        \
	__u64 cgroup_id;                                                                            \
	__u32 kind;                                                                                 \
	__u32 pid; /* thread group id */                                                           \
	__u32 tid;                                                                                  \
	__u32 ppid;                                                                                 \
	__u32 uid;                                                                                  \
	__u32 flags; /* CORDON_RECORD_* */                                                          \
	char comm[16];

/*
 * A call on a path that failed the way the sandbox's mounts refuse (EACCES, EROFS, ENOENT):
 * user space tells the ones Cordon's view caused (a mask, a read-only or noexec bind, a path
 * left out) from the program's own misses. Landlock's refusals come as audit records.
 * A record of its own kind (CORDON_EVENT_FILE_ERROR) and size: the fixed part, the
 * directory a relative path started from (read from the kernel at the call: the process may
 * be gone by the time user space reads the record), then the path, as long as the kernel
 * takes one (PATH_MAX). Only `offsetof(path) + path_len` bytes of it are in the ring.
 */
#define CORDON_FILE_PATH_MAX 4096
/* The directory's names from the last up ("lw\0tmp\0" for /tmp/lw), NUL-terminated each. */
#define CORDON_FILE_DIR_LEN 768
/* The longest name the directory's walk reads. */
#define CORDON_FILE_NAME_MAX 256
/* The most steps one directory is read to (names and mounts); deeper ones are not placed. */
#define CORDON_FILE_DIR_DEPTH 64
/* Missing-path records: one per millisecond on average, bursts of 256. */
#define CORDON_MISS_INTERVAL_NS 1000000
#define CORDON_MISS_BURST 256
struct cordon_file {
	__s32 nr;
	__s32 ret;
	__s32 dirfd; /* the directory a relative path starts from; AT_FDCWD (-100): the cwd */
	__u32 flags; /* open's flags; unlinkat's */
	/* How many names `dir` holds (0 for the root itself). */
	__u16 dir_parts;
	/*
	 * What `dir` holds: 1, the whole directory a relative path started from; 2, the whole
	 * path of the file a successful open or exec reached (audit); 0, nothing (an absolute
	 * path, or one deeper or longer than the record holds).
	 */
	__u8 dir_placed;
	/* 1 when the path was longer than PATH_MAX: `path` is its beginning. */
	__u8 truncated;
	/* The bytes of `path` in the record, its NUL included. */
	__u32 path_len;
	char dir[CORDON_FILE_DIR_LEN];
	char path[CORDON_FILE_PATH_MAX];
};

struct cordon_file_event {
	EVENT_HEADER
	struct cordon_file file;
};
#define CORDON_FILE_OFF_DIR 24
#define CORDON_FILE_OFF_PATH 792

/* One record of a sandbox's ring buffer. */
struct cordon_event {
	EVENT_HEADER
	union {
		struct cordon_net net;
		struct cordon_syscall syscall;
		struct cordon_exec exec;
		struct cordon_fork fork;
		struct cordon_exit exit;
	};
};
#define CORDON_EVENT_SIZE 312
#define CORDON_EVENT_OFF_CGROUP_ID 8
#define CORDON_EVENT_OFF_KIND 16
#define CORDON_EVENT_OFF_PPID 28
#define CORDON_EVENT_OFF_COMM 40
#define CORDON_EVENT_OFF_PAYLOAD 56
#define CORDON_NET_OFF_ADDR 8
#define CORDON_SYSCALL_OFF_ARGS 16

#define CORDON_ASSERT_SIZE(type, size) _Static_assert(sizeof(type) == (size), #type " changed size")
#define CORDON_ASSERT_OFF(type, field, off)                                                        \
	_Static_assert(__builtin_offsetof(type, field) == (off), #type "." #field " moved")

CORDON_ASSERT_SIZE(struct cordon_sandbox, CORDON_SANDBOX_SIZE);
CORDON_ASSERT_OFF(struct cordon_sandbox, dns_port4, CORDON_SANDBOX_OFF_DNS_PORT4);
CORDON_ASSERT_OFF(struct cordon_sandbox, ring, CORDON_SANDBOX_OFF_RING);
CORDON_ASSERT_SIZE(struct cordon_counts, CORDON_COUNTS_SIZE);
CORDON_ASSERT_SIZE(struct cordon_port_range, CORDON_PORT_RANGE_SIZE);
CORDON_ASSERT_SIZE(struct cordon_dest4_key, CORDON_DEST4_KEY_SIZE);
CORDON_ASSERT_SIZE(struct cordon_dest6_key, CORDON_DEST6_KEY_SIZE);
CORDON_ASSERT_SIZE(struct cordon_dest, CORDON_DEST_SIZE);
CORDON_ASSERT_OFF(struct cordon_dest, ranges, CORDON_DEST_OFF_RANGES);
CORDON_ASSERT_SIZE(struct cordon_syscall_key, CORDON_SYSCALL_KEY_SIZE);
CORDON_ASSERT_SIZE(struct cordon_syscall_condition, CORDON_SYSCALL_CONDITION_SIZE);
CORDON_ASSERT_SIZE(struct cordon_syscall_rule, CORDON_SYSCALL_RULE_SIZE);
CORDON_ASSERT_SIZE(struct cordon_dns_origin, CORDON_DNS_ORIGIN_SIZE);
CORDON_ASSERT_SIZE(struct cordon_event, CORDON_EVENT_SIZE);
CORDON_ASSERT_OFF(struct cordon_event, cgroup_id, CORDON_EVENT_OFF_CGROUP_ID);
CORDON_ASSERT_OFF(struct cordon_event, kind, CORDON_EVENT_OFF_KIND);
CORDON_ASSERT_OFF(struct cordon_event, ppid, CORDON_EVENT_OFF_PPID);
CORDON_ASSERT_OFF(struct cordon_event, comm, CORDON_EVENT_OFF_COMM);
CORDON_ASSERT_OFF(struct cordon_event, net, CORDON_EVENT_OFF_PAYLOAD);
CORDON_ASSERT_OFF(struct cordon_net, addr, CORDON_NET_OFF_ADDR);
CORDON_ASSERT_OFF(struct cordon_syscall, args, CORDON_SYSCALL_OFF_ARGS);
CORDON_ASSERT_OFF(struct cordon_file, path, CORDON_FILE_OFF_PATH);
CORDON_ASSERT_OFF(struct cordon_file, dir, CORDON_FILE_OFF_DIR);
CORDON_ASSERT_OFF(struct cordon_file_event, file, CORDON_EVENT_OFF_PAYLOAD);

#endif /* CORDON_H */
