//! The policy: one validated, fully resolved in-memory form of a profile.
//!
//! [`compile`] expands placeholders, checks every name (syscalls, capabilities, users,
//! environment variables) and turns the three filesystem lists into one rule per path.
//! Every enforcement layer (mounts, Landlock, seccomp, process setup) is built from a
//! [`Policy`] and nothing else; `cordon profile show` prints it as JSON.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use serde::Serialize;
use syscalls::Sysno;

use cordon_proto::event::{Event, Severity, What};

use crate::profile::{
    closest, Compat, Diagnostic, Diagnostics, Located, Mode, Profile, SyscallAction,
};

/// The most port ranges one destination rule may hold: the size of the eBPF programs'
/// per-destination array (`CORDON_MAX_PORT_RANGES` in `ebpf/cordon.h`; the `cordon` crate
/// checks at compile time that the two agree).
pub const MAX_PORT_RANGES: usize = 8;

/// The Landlock ABI a sandbox needs unless its profile asks for more: ABI 6 brings the
/// signal and abstract-unix-socket scoping every sandbox relies on.
pub const DEFAULT_LANDLOCK_ABI: u32 = 6;

/// Placeholders a path may use.
const PLACEHOLDERS: &[&str] = &["workspace", "home", "tmp", "uid"];

/// Where the sandbox's private `/tmp` (the `{tmp}` placeholder) lives inside the sandbox.
pub const SANDBOX_TMP: &str = "/tmp";

/// What the profile is resolved against.
#[derive(Debug, Clone)]
pub struct Context {
    /// The agent's working tree; absolute.
    pub workspace: PathBuf,
    /// The caller's home (normally `$HOME`), used when the profile does not set `user`.
    pub caller_home: Option<PathBuf>,
    pub caller_uid: u32,
    pub caller_gid: u32,
    /// The caller's supplementary groups.
    pub caller_groups: Vec<u32>,
}

impl Context {
    /// The context of the current process. Under `sudo`, the caller is the user who ran
    /// sudo (`SUDO_UID`), not root: `sudo cordon run` runs the agent as that user.
    pub fn current(workspace: PathBuf) -> Self {
        let sudo_uid = std::env::var("SUDO_UID").ok();
        if let Some(ctx) = Self::sudo_caller(&workspace, sudo_uid.as_deref()) {
            return ctx;
        }
        Self {
            workspace,
            caller_home: std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|h| h.is_absolute()),
            caller_uid: nix::unistd::getuid().as_raw(),
            caller_gid: nix::unistd::getgid().as_raw(),
            caller_groups: nix::unistd::getgroups()
                .unwrap_or_default()
                .into_iter()
                .map(|g| g.as_raw())
                .collect(),
        }
    }

    /// The context of a user cordond acts for (as the kernel named them on its socket).
    pub fn for_user(workspace: PathBuf, uid: u32, gid: u32, groups: Vec<u32>) -> Self {
        let home = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.dir);
        Self {
            workspace,
            caller_home: home,
            caller_uid: uid,
            caller_gid: gid,
            caller_groups: groups,
        }
    }

    /// The user who ran `sudo` (`sudo_uid`, their `SUDO_UID`), when this process is root.
    pub fn sudo_caller(workspace: &Path, sudo_uid: Option<&str>) -> Option<Self> {
        if !nix::unistd::geteuid().is_root() {
            return None;
        }
        let uid: u32 = sudo_uid?.parse().ok().filter(|u| *u != 0)?;
        let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok()??;
        let name = std::ffi::CString::new(user.name.as_str()).ok()?;
        let groups = nix::unistd::getgrouplist(&name, user.gid).unwrap_or_default();
        Some(Self {
            workspace: workspace.to_path_buf(),
            caller_home: Some(user.dir),
            caller_uid: uid,
            caller_gid: user.gid.as_raw(),
            caller_groups: groups.into_iter().map(|g| g.as_raw()).collect(),
        })
    }
}

/// A fully resolved sandbox policy.
#[derive(Debug, Clone, Serialize)]
pub struct Policy {
    pub name: String,
    pub description: String,
    /// Profile files merged into this policy, parents first.
    pub sources: Vec<PathBuf>,
    pub mode: Mode,
    pub compat: Compat,
    /// The lowest Landlock ABI the kernel must offer (under `strict`).
    pub landlock_abi: u32,
    pub workspace: PathBuf,
    pub identity: Identity,
    pub filesystem: FsPolicy,
    pub network: NetPolicy,
    pub syscalls: SyscallPolicy,
    pub process: ProcessPolicy,
    /// `[severity]`: the level a denial gets, by what it touched.
    pub severity: SeverityPolicy,
    /// What the sandbox's watcher does on its own when events match (`[[response]]`, and
    /// the host's own rules added at launch).
    pub responses: Vec<crate::response::ResponseRule>,
}

impl Policy {
    /// Whether the sandbox gets no network at all (a network namespace of its own). An
    /// audited sandbox always has the host's, to show what it would reach.
    pub fn offline(&self) -> bool {
        self.network.offline() && self.mode == Mode::Enforce
    }
}

/// Who the sandboxed process runs as.
#[derive(Debug, Clone, Serialize)]
pub struct Identity {
    /// The user named in the profile, if any; otherwise the caller's identity is kept.
    pub user: Option<String>,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (set when the identity changes).
    pub groups: Vec<u32>,
    pub home: PathBuf,
}

/// What a path grants. `write` and `exec` imply `read`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Access {
    pub read: bool,
    pub write: bool,
    pub exec: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PathRule {
    pub path: PathBuf,
    pub access: Access,
}

#[derive(Debug, Clone, Serialize)]
pub struct FsPolicy {
    /// One rule per path, sorted so parents come before their children.
    pub rules: Vec<PathRule>,
    /// Paths hidden from the sandbox even inside allowed trees.
    pub deny: Vec<PathBuf>,
    /// Paths kept read-only even inside writable trees.
    pub read_only: Vec<PathBuf>,
    /// Paths written with a trailing `/`: directories. A denied or read-only one is created
    /// as such when it does not exist, and so is a `read`/`write`/`exec` one inside a tree
    /// the sandbox writes, so its rule holds for what the sandbox makes there
    /// (`{workspace}/.venv/bin/`; see `sandbox::mounts::placeholders`).
    pub dirs: Vec<PathBuf>,
    /// Work trees of git repositories whose metadata stays read-only (`sandbox::repos`).
    pub repositories: Vec<PathBuf>,
    /// The sandbox user's home: what `~/` means in the git config files those read.
    pub home: PathBuf,
    /// Bytes the private `/tmp` may hold.
    pub tmp_size: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct NetPolicy {
    /// TCP ports the sandbox may connect to at all (Landlock's layer): `connect_ports` and the
    /// TCP ports of every egress rule. Which addresses is the eBPF layer's job.
    pub connect_tcp: Vec<u16>,
    /// TCP ports the sandbox may bind; every other bind is denied.
    pub bind_tcp: Vec<u16>,
    /// Where the sandbox may connect (eBPF); `connect_ports` appear here as rules for any
    /// address. Everything else is denied.
    pub egress: Vec<EgressRule>,
    /// Socket families the sandbox may create (seccomp refuses every other one).
    pub socket_families: Vec<String>,
}

impl NetPolicy {
    /// A sandbox with no egress and no bind port gets no network at all (a network
    /// namespace of its own, whose loopback serves binds of a port the kernel picks).
    pub fn offline(&self) -> bool {
        self.egress.is_empty() && self.bind_tcp.iter().all(|p| *p == 0)
    }
}

/// One allowed destination: a host name (or `*.` pattern) or an address prefix, some ports,
/// some protocols.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EgressRule {
    pub to: Destination,
    pub ports: Vec<u16>,
    pub tcp: bool,
    pub udp: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Destination {
    /// `pypi.org`, or `*.githubusercontent.com` for any name below it (not itself).
    Host(String),
    Cidr(ipnet::IpNet),
}

impl Destination {
    /// Whether a DNS name (any case, with or without the final dot) is this host rule's.
    pub fn matches_name(&self, name: &str) -> bool {
        let Destination::Host(pattern) = self else {
            return false;
        };
        crate::response::host_matches(pattern, name)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SyscallPolicy {
    pub action: SyscallAction,
    /// Denied syscalls, sorted by number. A syscall may have several rules: it is denied
    /// when any of them matches.
    pub deny: Vec<SyscallRule>,
}

/// Syscalls that `mode = "audit"` still refuses when the profile denies them: each could
/// end the audit itself. Reporting rests on the sandbox's eBPF programs, its cgroup, its
/// namespaces and its supervisor being out of reach: `bpf` and `perf_event_open` reach the
/// programs; `ptrace`, `process_vm_*` and `pidfd_getfd` other processes (init, which holds
/// the sandbox together); the mount family, `chroot`, `unshare`, `setns` and `clone` with
/// namespace flags the view and the namespaces; modules, `kexec`, `iopl`/`ioperm`, `reboot`
/// and swap the kernel; `open_by_handle_at` files by handle, past the view. The keyring
/// calls (`keyctl`, `add_key`, `request_key`) change the kernel's keyrings, which outlive
/// the sandbox and hold the user's credentials (Kerberos tickets): an audit must not change
/// the host. io_uring's calls too: its reads and opens never pass the syscall tracepoints an
/// audit sees them at. Everything else the profile denies (`personality`, `mbind`, ...) is
/// let through and reported.
pub const AUDIT_STILL_DENIES: &[&str] = &[
    "bpf",
    "perf_event_open",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_getfd",
    "mount",
    "umount2",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    "pivot_root",
    "chroot",
    "unshare",
    "setns",
    "clone",
    "clone3",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "iopl",
    "ioperm",
    "reboot",
    "swapon",
    "swapoff",
    "open_by_handle_at",
    "keyctl",
    "add_key",
    "request_key",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
];

impl SyscallPolicy {
    /// Under `mode = "audit"`: the rules the seccomp filter still holds
    /// ([`AUDIT_STILL_DENIES`]), and the ones only reported.
    pub fn split_for_audit(&self) -> (SyscallPolicy, Vec<SyscallRule>) {
        let (kept, audited) = self
            .deny
            .iter()
            .cloned()
            .partition(SyscallRule::kept_in_audit);
        (
            SyscallPolicy {
                action: self.action,
                deny: kept,
            },
            audited,
        )
    }
}

impl SyscallRule {
    /// Whether `mode = "audit"` still refuses this rule: its syscall is one of
    /// [`AUDIT_STILL_DENIES`], or the rule names the arguments it refuses (`ioctl` with
    /// `TIOCSTI`, `socket` of MPTCP, `clone` with namespace flags): a rule that narrow
    /// exists for one dangerous use, which an audit must not let through either (typing
    /// into the user's terminal is not a need to learn).
    pub fn kept_in_audit(&self) -> bool {
        self.when.is_some() || AUDIT_STILL_DENIES.contains(&self.name.as_str())
    }
}

/// One denied syscall, optionally only when its arguments match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyscallRule {
    pub name: String,
    pub nr: i32,
    /// `None`: always denied.
    pub when: Option<ArgCondition>,
}

/// An argument check seccomp can evaluate (plain integers only, never pointers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ArgCondition {
    /// Denied when `arg & mask != 0`: any of these flag bits is set.
    AnyBit { arg: u8, mask: u64 },
    /// Denied when the low 32 bits of `arg` equal one of `values`.
    OneOf { arg: u8, values: &'static [u64] },
    /// Denied unless the low 32 bits of `arg` are a number below 64 whose bit `allowed` has
    /// set (`1 << arg`). Only for an `int` argument (a socket's family), which the kernel
    /// reads as its low 32 bits too: on a 64-bit argument the high bits would go unchecked.
    NotIn { arg: u8, allowed: u64 },
}

#[derive(Debug, Clone, Serialize)]
pub struct ProcessPolicy {
    /// Variables passed through from the caller; every other one is scrubbed.
    pub env_keep: Vec<String>,
    pub set_env: BTreeMap<String, String>,
    /// Capabilities kept, as `CAP_*` names; empty means none.
    pub capabilities: Vec<String>,
    /// cgroup `pids.max` of the sandbox.
    pub max_processes: Option<u32>,
    /// cgroup `memory.max` of the sandbox, in bytes.
    pub max_memory: Option<u64>,
}

/// Namespace flags a sandboxed process may never ask `clone`/`unshare` for.
const NEW_NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWUSER
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWTIME) as u64;

/// The MPTCP protocol number (`socket(AF_INET, SOCK_STREAM, IPPROTO_MPTCP)`).
const IPPROTO_MPTCP: u64 = 262;

/// `ioctl`s that push input into a terminal: a classic sandbox escape through a shared tty.
#[expect(
    clippy::unnecessary_cast,
    reason = "the ioctl numbers' type differs between libcs"
)]
const TTY_INJECTION_IOCTLS: &[u64] = &[libc::TIOCSTI as u64, libc::TIOCLINUX as u64];

/// A syscall preset: names, each denied always (`None`) or when its arguments match.
pub type Preset = &'static [(&'static str, Option<ArgCondition>)];

/// The `default` preset: syscalls that reach past a sandbox, load code into the kernel, or
/// change the machine. `clone3` is answered with ENOSYS separately (see `sandbox::seccomp`).
const DEFAULT_PRESET: Preset = &[
    ("ptrace", None),
    ("process_vm_readv", None),
    ("process_vm_writev", None),
    // Reach into another process: copy its descriptors, compare them, advise on its memory.
    ("pidfd_getfd", None),
    ("kcmp", None),
    ("process_madvise", None),
    ("mount", None),
    ("umount2", None),
    ("pivot_root", None),
    ("move_mount", None),
    ("open_tree", None),
    ("fsopen", None),
    ("fsconfig", None),
    ("fsmount", None),
    ("fspick", None),
    ("mount_setattr", None),
    ("bpf", None),
    ("kexec_load", None),
    ("kexec_file_load", None),
    ("init_module", None),
    ("finit_module", None),
    ("delete_module", None),
    ("keyctl", None),
    ("add_key", None),
    ("request_key", None),
    ("perf_event_open", None),
    ("setns", None),
    ("reboot", None),
    ("swapon", None),
    ("swapoff", None),
    ("acct", None),
    ("syslog", None),
    ("quotactl", None),
    ("open_by_handle_at", None),
    ("name_to_handle_at", None),
    ("iopl", None),
    ("ioperm", None),
    ("uselib", None),
    ("userfaultfd", None),
    ("settimeofday", None),
    ("clock_settime", None),
    ("clock_adjtime", None),
    ("vhangup", None),
    ("lookup_dcookie", None),
    // io_uring operations bypass seccomp entirely, and its kernel surface is large.
    ("io_uring_setup", None),
    ("io_uring_enter", None),
    ("io_uring_register", None),
    // MPTCP sockets are not covered by Landlock's TCP rules.
    (
        "socket",
        Some(ArgCondition::OneOf {
            arg: 2,
            values: &[IPPROTO_MPTCP],
        }),
    ),
    (
        "unshare",
        Some(ArgCondition::AnyBit {
            arg: 0,
            mask: NEW_NAMESPACE_FLAGS,
        }),
    ),
    (
        "clone",
        Some(ArgCondition::AnyBit {
            arg: 0,
            mask: NEW_NAMESPACE_FLAGS,
        }),
    ),
    (
        "ioctl",
        Some(ArgCondition::OneOf {
            arg: 1,
            values: TTY_INJECTION_IOCTLS,
        }),
    ),
    // The sandbox's init (PID 1 inside) shares the command's uid: without these, the command
    // could change its limits or scheduling (and so end or starve its own supervision).
    ("prlimit64", INIT_AS_ARG0),
    ("sched_setaffinity", INIT_AS_ARG0),
    ("sched_setscheduler", INIT_AS_ARG0),
    ("sched_setparam", INIT_AS_ARG0),
    ("sched_setattr", INIT_AS_ARG0),
    ("setpriority", INIT_AS_ARG1),
    ("ioprio_set", INIT_AS_ARG1),
    // ...nor through its group or its user (every process of the uid in the sandbox's PID
    // namespace, init among them): only a process named by its pid (`nice`, `renice -p`).
    (
        "setpriority",
        Some(ArgCondition::NotIn {
            arg: 0,
            allowed: 1 << libc::PRIO_PROCESS,
        }),
    ),
    (
        "ioprio_set",
        Some(ArgCondition::NotIn {
            arg: 0,
            allowed: 1 << IOPRIO_WHO_PROCESS,
        }),
    ),
];

/// `ioprio_set`'s "who" for one process (`linux/ioprio.h`; libc does not name it).
const IOPRIO_WHO_PROCESS: u64 = 1;

/// A call naming process 1 (the sandbox's init) in its first or second argument.
const INIT_AS_ARG0: Option<ArgCondition> = Some(ArgCondition::OneOf {
    arg: 0,
    values: &[1],
});
const INIT_AS_ARG1: Option<ArgCondition> = Some(ArgCondition::OneOf {
    arg: 1,
    values: &[1],
});

/// The presets a profile's `[syscalls] preset` may name.
pub const PRESETS: &[(&str, Preset)] = &[("default", DEFAULT_PRESET), ("none", &[])];

/// What `cordon profile check` has to say about one profile.
#[derive(Debug)]
pub struct Checked {
    /// The policy, when the profile has no error.
    pub policy: Option<Policy>,
    /// Every error, in the order a reader meets them.
    pub errors: Vec<Diagnostic>,
    /// What does not stop the profile but should be read: an entry taken out of a list that
    /// protects (`widen = true`), `key = []` over inherited entries.
    pub warnings: Vec<Diagnostic>,
}

/// Loads and compiles the profile `spec` names, going on past every error to report them all.
/// Fails only when a file cannot be found or read.
pub fn check(
    search: &crate::profile::SearchPath,
    spec: &str,
    ctx: &Context,
) -> Result<Checked, crate::profile::ProfileError> {
    let loaded = search.load_all(spec)?;
    let mut errs = Errors(loaded.errors);
    let policy = compile_into(&loaded.profile, ctx, &mut errs);
    let errors = Diagnostics::sorted(errs.0).0;
    Ok(Checked {
        policy: errors.is_empty().then_some(policy),
        errors,
        warnings: Diagnostics::sorted(loaded.profile.warnings).0,
    })
}

/// Errors found so far; compiling goes on past each to find them all.
#[derive(Default)]
struct Errors(Vec<Diagnostic>);

impl Errors {
    /// The value, or `None` with its error kept.
    fn keep<T>(&mut self, result: Result<T, Diagnostic>) -> Option<T> {
        result.map_err(|e| self.0.push(e)).ok()
    }
}

/// Resolves a merged profile against a context into a policy, or says where it is wrong
/// (every error, not only the first).
pub fn compile(profile: &Profile, ctx: &Context) -> Result<Policy, Diagnostics> {
    let mut errs = Errors::default();
    let policy = compile_into(profile, ctx, &mut errs);
    if errs.0.is_empty() {
        Ok(policy)
    } else {
        Err(Diagnostics::sorted(errs.0))
    }
}

/// [`compile`], with each error kept in `errs` and the entry it is about left out.
fn compile_into(profile: &Profile, ctx: &Context, errs: &mut Errors) -> Policy {
    let identity = errs
        .keep(resolve_identity(profile, ctx))
        .unwrap_or_else(|| caller_identity(ctx));
    let vars = Vars {
        workspace: ctx.workspace.clone(),
        home: identity.home.clone(),
        uid: identity.uid,
    };

    let mut access: BTreeMap<PathBuf, Access> = BTreeMap::new();
    for item in &profile.read {
        if let Some(path) = errs.keep(vars.path(item)) {
            access.entry(path).or_default().read = true;
        }
    }
    for item in &profile.write {
        if let Some(path) = errs.keep(vars.path(item)) {
            let a = access.entry(path).or_default();
            a.read = true;
            a.write = true;
        }
    }
    for item in &profile.exec {
        if let Some(path) = errs.keep(vars.path(item)) {
            let a = access.entry(path).or_default();
            a.read = true;
            a.exec = true;
        }
    }
    let mut rules: Vec<PathRule> = access
        .into_iter()
        .map(|(path, access)| PathRule { path, access })
        .collect();
    rules.sort_by(|a, b| {
        depth(&a.path)
            .cmp(&depth(&b.path))
            .then(a.path.cmp(&b.path))
    });
    let mut deny = Vec::new();
    let mut dirs = Vec::new();
    let listed = [
        &profile.deny,
        &profile.read_only,
        &profile.read,
        &profile.write,
        &profile.exec,
    ];
    for item in listed.into_iter().flatten() {
        // The entry's own error, if any, is reported with its list.
        match vars.path(item) {
            Ok(path) if item.value.ends_with('/') && !dirs.contains(&path) => dirs.push(path),
            _ => {}
        }
    }
    let mut repositories = Vec::new();
    for item in &profile.repositories {
        let Some(path) = errs.keep(vars.path(item)) else {
            continue;
        };
        if !repositories.contains(&path) {
            repositories.push(path);
        }
    }
    for item in &profile.deny {
        let Some(path) = errs.keep(vars.path(item)) else {
            continue;
        };
        if path == Path::new("/") {
            errs.0.push(
                item.loc
                    .error("deny = \"/\" would hide everything; list what to allow instead"),
            );
            continue;
        }
        if !deny.contains(&path) {
            deny.push(path);
        }
    }
    let mut read_only = Vec::new();
    for item in &profile.read_only {
        let Some(path) = errs.keep(vars.path(item)) else {
            continue;
        };
        if !read_only.contains(&path) {
            read_only.push(path);
        }
    }

    let home = identity.home.clone();
    let network = network(profile, errs);
    let mut syscalls = syscalls(profile, errs);
    // The family check belongs to `socket` like the preset's own check of it; a profile
    // that allows `socket` outright takes both out.
    let socket_allowed = profile.syscall_allow.iter().any(|a| a.value == "socket");
    if let (false, Some(rule)) = (socket_allowed, socket_family_rule(&network)) {
        syscalls.deny.push(rule);
        syscalls.deny.sort_by_key(|r| r.nr);
    }
    let tmp_size = match &profile.tmp_size {
        Some(size) => errs
            .keep(memory_size("tmp_size", size))
            .unwrap_or(DEFAULT_TMP_SIZE),
        None => DEFAULT_TMP_SIZE,
    };
    let landlock_abi = errs
        .keep(landlock_abi(profile))
        .unwrap_or(DEFAULT_LANDLOCK_ABI);
    let process = process(profile, errs);
    let severity = severity(profile, &vars, errs);
    let responses = responses(&profile.responses, &vars, errs);

    Policy {
        name: profile.name.clone(),
        description: profile.description.clone(),
        sources: profile.sources.clone(),
        mode: profile.mode,
        compat: profile.compat,
        landlock_abi,
        workspace: ctx.workspace.clone(),
        identity,
        filesystem: FsPolicy {
            rules,
            deny,
            read_only,
            dirs,
            repositories,
            home: home.clone(),
            tmp_size,
        },
        network,
        syscalls,
        process,
        severity,
        responses,
    }
}

/// Compiles `[[response]]` entries written outside a profile (cordond's `cordon.toml`)
/// against a sandbox's placeholders: the host's own rules, added to every sandbox's.
pub fn compile_responses(
    entries: &[Located<crate::response::ResponseEntry>],
    workspace: &Path,
    home: &Path,
    uid: u32,
) -> Result<Vec<crate::response::ResponseRule>, Diagnostics> {
    let vars = Vars {
        workspace: workspace.to_path_buf(),
        home: home.to_path_buf(),
        uid,
    };
    let mut errs = Errors::default();
    let rules = responses(entries, &vars, &mut errs);
    if errs.0.is_empty() {
        Ok(rules)
    } else {
        Err(Diagnostics::sorted(errs.0))
    }
}

fn responses(
    entries: &[Located<crate::response::ResponseEntry>],
    vars: &Vars,
    errs: &mut Errors,
) -> Vec<crate::response::ResponseRule> {
    let mut out = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let at = |value: &str| Located {
            value: value.to_string(),
            loc: entry.loc.clone(),
        };
        let compiled = crate::response::ResponseRule::compile(
            &entry.value,
            index,
            &|template| vars.path(&at(template)).map_err(|d| d.message),
            &|host| host_pattern(&at(host)).map_err(|d| d.message),
            &|name| {
                sysno(&at(name))
                    .map(|nr| nr.name().to_string())
                    .map_err(|d| d.message)
            },
        );
        match compiled {
            Ok(rule) => out.push(rule),
            Err(message) => errs
                .0
                .push(entry.loc.error(format!("[[response]]: {message}"))),
        }
    }
    out
}

/// The levels `[severity]` gives denials, by what they touched.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SeverityPolicy {
    /// File denials at or below a path (the longest wins).
    pub paths: Vec<(PathBuf, Severity)>,
    pub syscalls: BTreeMap<String, Severity>,
    /// Host names or `*.` patterns: DNS refusals, and connections to what they resolved to.
    pub hosts: Vec<(Destination, Severity)>,
    /// Denials of a kind no entry above names.
    pub kinds: BTreeMap<String, Severity>,
}

impl SeverityPolicy {
    /// The level the profile gives `event`, when it gives one.
    pub fn of(&self, event: &Event) -> Option<Severity> {
        let host = |name: &str| {
            self.hosts
                .iter()
                .find(|(d, _)| d.matches_name(name))
                .map(|(_, s)| *s)
        };
        let specific = match &event.what {
            What::FileDenied { path, target, .. } => {
                let path = Path::new(target.as_deref().unwrap_or(path));
                self.paths
                    .iter()
                    .filter(|(p, _)| path.is_absolute() && path.starts_with(p))
                    .max_by_key(|(p, _)| p.components().count())
                    .map(|(_, s)| *s)
            }
            What::SyscallDenied { syscall, .. } => self.syscalls.get(syscall).copied(),
            What::DnsDenied { domain, .. } => host(domain),
            What::NetworkDenied {
                domain: Some(domain),
                ..
            } => host(domain),
            _ => None,
        };
        specific.or_else(|| self.kinds.get(event.what.kind()).copied())
    }
}

fn severity(profile: &Profile, vars: &Vars, errs: &mut Errors) -> SeverityPolicy {
    let named = |key: &str, level: &Located<Severity>| Located {
        value: key.to_string(),
        loc: level.loc.clone(),
    };
    let o = &profile.severity;
    let mut out = SeverityPolicy::default();
    for (key, level) in &o.paths {
        if let Some(path) = errs.keep(vars.path(&named(key, level))) {
            out.paths.push((path, level.value));
        }
    }
    for (key, level) in &o.syscalls {
        if let Some(nr) = errs.keep(sysno(&named(key, level))) {
            out.syscalls.insert(nr.name().to_string(), level.value);
        }
    }
    for (key, level) in &o.hosts {
        if let Some(pattern) = errs.keep(host_pattern(&named(key, level))) {
            out.hosts.push((Destination::Host(pattern), level.value));
        }
    }
    for (key, level) in &o.kinds {
        if What::VIOLATIONS.contains(&key.as_str()) || key == "events_lost" {
            out.kinds.insert(key.clone(), level.value);
        } else {
            let kinds = What::VIOLATIONS.iter().copied().chain(["events_lost"]);
            let hint = closest(key, kinds)
                .map(|m| format!("; did you mean `{m}`?"))
                .unwrap_or_default();
            errs.0.push(level.loc.error(format!(
                "`{key}` is not a kind of denial: {}, events_lost{hint}",
                What::VIOLATIONS.join(", ")
            )));
        }
    }
    out
}

fn depth(path: &Path) -> usize {
    path.components().count()
}

struct Vars {
    workspace: PathBuf,
    home: PathBuf,
    uid: u32,
}

impl Vars {
    /// Expands placeholders in a path template and checks the result is a clean absolute path.
    fn path(&self, item: &Located<String>) -> Result<PathBuf, Diagnostic> {
        let template = item.value.as_str();
        let mut out = String::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let Some(close) = after.find('}') else {
                return Err(item
                    .loc
                    .error(format!("unclosed `{{` in path `{template}`")));
            };
            let name = &after[..close];
            match name {
                "workspace" => out.push_str(&self.workspace.to_string_lossy()),
                "home" => out.push_str(&self.home.to_string_lossy()),
                "tmp" => out.push_str(SANDBOX_TMP),
                "uid" => out.push_str(&self.uid.to_string()),
                _ => {
                    let hint = closest(name, PLACEHOLDERS.iter().copied())
                        .map(|m| format!("; did you mean `{{{m}}}`?"))
                        .unwrap_or_default();
                    return Err(item.loc.error(format!(
                        "unknown placeholder `{{{name}}}` (known: {{workspace}}, {{home}}, {{tmp}}, {{uid}}){hint}"
                    )));
                }
            }
            rest = &after[close + 1..];
        }
        if rest.contains('}') {
            return Err(item.loc.error(format!("stray `}}` in path `{template}`")));
        }
        out.push_str(rest);
        let starts_absolute = template.starts_with('/')
            || ["{workspace}", "{home}", "{tmp}"]
                .iter()
                .any(|p| template.starts_with(p));
        if !starts_absolute {
            return Err(item.loc.error(format!(
                "path `{template}` is relative; start it with `/`, `{{workspace}}`, `{{home}}` or `{{tmp}}`"
            )));
        }
        normalize(Path::new(&out)).ok_or_else(|| {
            item.loc.error(format!(
                "path `{template}` expands to `{out}`, which is not a clean absolute path (no `..`)"
            ))
        })
    }
}

/// Drops `.` components and trailing slashes; refuses `..` and relative paths.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::from("/");
    let mut components = path.components();
    if components.next() != Some(Component::RootDir) {
        return None;
    }
    for c in components {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// The caller's own identity, kept when the profile does not name a user.
fn caller_identity(ctx: &Context) -> Identity {
    let home = match &ctx.caller_home {
        Some(home) => home.clone(),
        None => nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(ctx.caller_uid))
            .ok()
            .flatten()
            .map(|u| u.dir)
            .unwrap_or_else(|| PathBuf::from("/")),
    };
    Identity {
        user: None,
        uid: ctx.caller_uid,
        gid: ctx.caller_gid,
        groups: ctx.caller_groups.clone(),
        home,
    }
}

fn resolve_identity(profile: &Profile, ctx: &Context) -> Result<Identity, Diagnostic> {
    let Some(user) = &profile.user else {
        return Ok(caller_identity(ctx));
    };
    let found = nix::unistd::User::from_name(&user.value)
        .map_err(|e| {
            user.loc
                .error(format!("cannot look up user `{}`: {e}", user.value))
        })?
        .ok_or_else(|| {
            user.loc
                .error(format!("no such user `{}` on this host", user.value))
        })?;
    let name = std::ffi::CString::new(user.value.as_str())
        .map_err(|_| user.loc.error("user name contains a NUL byte"))?;
    let groups = nix::unistd::getgrouplist(&name, found.gid)
        .map_err(|e| {
            user.loc
                .error(format!("cannot list groups of `{}`: {e}", user.value))
        })?
        .into_iter()
        .map(|g| g.as_raw())
        .collect();
    Ok(Identity {
        user: Some(user.value.clone()),
        uid: found.uid.as_raw(),
        gid: found.gid.as_raw(),
        groups,
        home: found.dir,
    })
}

/// The ports of a list, sorted, each once; port 0 is an error.
/// `bind_ports`: like other ports, and 0 too, which is a port the kernel picks (an
/// ephemeral port: Landlock's rule for port 0 allows exactly those binds). Libraries bind
/// one on loopback to learn whether IPv6 works (urllib3, so pip).
fn bind_ports(items: &[Located<u16>], errs: &mut Errors) -> Vec<u16> {
    let zero = items.iter().any(|i| i.value == 0);
    let others: Vec<Located<u16>> = items.iter().filter(|i| i.value != 0).cloned().collect();
    let mut out = ports(&others, errs);
    if zero {
        out.insert(0, 0);
    }
    out
}

fn ports(items: &[Located<u16>], errs: &mut Errors) -> Vec<u16> {
    let mut out = Vec::new();
    for item in items {
        if item.value == 0 {
            errs.0
                .push(item.loc.error("port 0 is not a port a rule can allow"));
            continue;
        }
        out.push(item.value);
    }
    out.sort_unstable();
    out.dedup();
    out
}

fn network(profile: &Profile, errs: &mut Errors) -> NetPolicy {
    let any_address = ports(&profile.connect_ports, errs);
    let mut egress = Vec::new();
    if !any_address.is_empty() {
        let everywhere = [
            ipnet::IpNet::V4(ipnet::Ipv4Net::default()),
            ipnet::IpNet::V6(ipnet::Ipv6Net::default()),
        ];
        for net in everywhere {
            egress.push(EgressRule {
                to: Destination::Cidr(net),
                ports: any_address.clone(),
                tcp: true,
                udp: false,
            });
        }
    }
    for rule in &profile.egress {
        if let Some(rule) = egress_rule(rule, errs) {
            egress.push(rule);
        }
    }
    let mut connect_tcp: Vec<u16> = egress
        .iter()
        .filter(|r| r.tcp)
        .flat_map(|r| r.ports.iter().copied())
        .collect();
    connect_tcp.sort_unstable();
    connect_tcp.dedup();
    let mut socket_families: Vec<String> = ALWAYS_FAMILIES.iter().map(|f| f.to_string()).collect();
    for item in &profile.socket_families {
        let name = item.value.to_ascii_lowercase();
        if SOCKET_FAMILIES.iter().all(|(n, _)| *n != name) {
            let hint = closest(&name, SOCKET_FAMILIES.iter().map(|(n, _)| *n))
                .map(|m| format!("; did you mean `{m}`?"))
                .unwrap_or_default();
            errs.0.push(item.loc.error(format!(
                "unknown socket family `{}` (known: {}){hint}",
                item.value,
                SOCKET_FAMILIES
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
            continue;
        }
        if !socket_families.contains(&name) {
            socket_families.push(name);
        }
    }
    NetPolicy {
        connect_tcp,
        bind_tcp: bind_ports(&profile.bind_ports, errs),
        egress,
        socket_families,
    }
}

/// Socket families every sandbox may create: what ordinary programs need (glibc asks
/// netlink for the host's addresses when it resolves names).
const ALWAYS_FAMILIES: &[&str] = &["unix", "inet", "inet6", "netlink"];

/// Socket families by name (`AF_*` of `<sys/socket.h>`), for `[network] socket_families`.
const SOCKET_FAMILIES: &[(&str, i32)] = &[
    ("unix", libc::AF_UNIX),
    ("inet", libc::AF_INET),
    ("inet6", libc::AF_INET6),
    ("netlink", libc::AF_NETLINK),
    ("packet", libc::AF_PACKET),
    ("key", libc::AF_KEY),
    ("alg", libc::AF_ALG),
    ("vsock", libc::AF_VSOCK),
    ("can", libc::AF_CAN),
    ("bluetooth", libc::AF_BLUETOOTH),
    ("tipc", libc::AF_TIPC),
    ("rds", libc::AF_RDS),
    ("xdp", libc::AF_XDP),
    ("smc", 43),
    ("kcm", 41),
    ("qipcrtr", 42),
    ("mctp", 45),
    ("x25", libc::AF_X25),
    ("ax25", libc::AF_AX25),
    ("llc", libc::AF_LLC),
    ("pppox", libc::AF_PPPOX),
    ("rxrpc", libc::AF_RXRPC),
    ("appletalk", libc::AF_APPLETALK),
    ("ipx", libc::AF_IPX),
];

/// The seccomp rule that keeps `socket()` to the policy's families.
fn socket_family_rule(net: &NetPolicy) -> Option<SyscallRule> {
    let nr = Sysno::from_str("socket").ok()?;
    let allowed = net
        .socket_families
        .iter()
        .filter_map(|name| SOCKET_FAMILIES.iter().find(|(n, _)| n == name))
        .fold(0u64, |mask, (_, af)| mask | 1u64 << af);
    Some(SyscallRule {
        name: "socket".into(),
        nr: nr.id(),
        when: Some(ArgCondition::NotIn { arg: 0, allowed }),
    })
}

/// One egress rule, or `None` with what is wrong with its destination and its ports in `errs`.
fn egress_rule(rule: &crate::profile::Egress, errs: &mut Errors) -> Option<EgressRule> {
    let to = match (&rule.host, &rule.cidr) {
        (Some(host), None) => errs.keep(host_pattern(host)).map(Destination::Host),
        (None, Some(cidr)) => errs.keep(prefix(cidr)).map(Destination::Cidr),
        (Some(_), Some(_)) => errs.keep(Err(rule
            .loc
            .error("an egress rule names either a `host` or a `cidr`, not both"))),
        (None, None) => errs.keep(Err(rule
            .loc
            .error("an egress rule needs a `host` (\"pypi.org\", \"*.example.com\") or a `cidr` (\"10.0.0.0/8\")"))),
    };
    let found = errs.0.len();
    let ports = match &rule.ports {
        Some(list) if !list.is_empty() => ports(list, errs),
        _ => {
            errs.0.push(
                rule.loc
                    .error("an egress rule needs `ports`, for example ports = [443]"),
            );
            Vec::new()
        }
    };
    if ports.len() > MAX_PORT_RANGES {
        errs.0.push(rule.loc.error(format!(
            "an egress rule allows at most {} ports; split it into several rules",
            MAX_PORT_RANGES
        )));
    }
    if errs.0.len() > found {
        return None;
    }
    let to = to?;
    let proto = rule.proto.unwrap_or(crate::profile::Proto::Any);
    Some(EgressRule {
        to,
        ports,
        tcp: proto != crate::profile::Proto::Udp,
        udp: proto != crate::profile::Proto::Tcp,
    })
}

/// A host name or `*.` pattern, lower-cased, without a final dot.
fn host_pattern(host: &Located<String>) -> Result<String, Diagnostic> {
    let name = host.value.trim_end_matches('.').to_ascii_lowercase();
    let bare = name.strip_prefix("*.").unwrap_or(&name);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if bare.is_empty() || name.len() > 253 || !bare.split('.').all(label_ok) {
        return Err(host.loc.error(format!(
            "`{}` is not a host name; write a name (\"pypi.org\") or a pattern for the names below one (\"*.githubusercontent.com\")",
            host.value
        )));
    }
    if bare.parse::<std::net::IpAddr>().is_ok()
        || bare
            .split('.')
            .all(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(host.loc.error(format!(
            "`{}` is an address; write it as cidr = \"{}/32\"",
            host.value, bare
        )));
    }
    Ok(name)
}

/// An address prefix (`10.0.0.0/8`, `2001:db8::/32`) or a single address.
fn prefix(cidr: &Located<String>) -> Result<ipnet::IpNet, Diagnostic> {
    let text = cidr.value.trim();
    let net = match text.parse::<ipnet::IpNet>() {
        Ok(net) => net,
        Err(_) => match text.parse::<std::net::IpAddr>() {
            Ok(addr) => ipnet::IpNet::from(addr),
            Err(_) => {
                return Err(cidr.loc.error(format!(
                    "`{text}` is not an address prefix; write it like \"10.20.0.0/16\" or \"2001:db8::/32\""
                )))
            }
        },
    };
    if net.trunc() != net {
        return Err(cidr.loc.error(format!(
            "`{text}` has host bits set; did you mean `{}`?",
            net.trunc()
        )));
    }
    Ok(net)
}

fn landlock_abi(profile: &Profile) -> Result<u32, Diagnostic> {
    match &profile.landlock_abi {
        None => Ok(DEFAULT_LANDLOCK_ABI),
        Some(abi) if abi.value == 0 => Err(abi.loc.error("landlock_abi starts at 1")),
        Some(abi) => Ok(abi.value),
    }
}

fn sysno(item: &Located<String>) -> Result<Sysno, Diagnostic> {
    Sysno::from_str(&item.value).map_err(|_| {
        let names: Vec<&'static str> = Sysno::iter().map(|s| s.name()).collect();
        let hint = closest(&item.value, names)
            .map(|m| format!("; did you mean `{m}`?"))
            .unwrap_or_default();
        item.loc.error(format!(
            "unknown syscall `{}` on {}{hint}",
            item.value,
            std::env::consts::ARCH
        ))
    })
}

fn syscalls(profile: &Profile, errs: &mut Errors) -> SyscallPolicy {
    let preset_name = profile
        .syscall_preset
        .as_ref()
        .map_or("default", |p| p.value.as_str());
    let preset = PRESETS
        .iter()
        .find(|(name, _)| *name == preset_name)
        .map(|(_, rules)| *rules)
        .ok_or_else(|| {
            let Some(item) = profile.syscall_preset.as_ref() else {
                unreachable!("the default preset exists");
            };
            let hint = closest(preset_name, PRESETS.iter().map(|(n, _)| *n))
                .map(|m| format!("; did you mean `{m}`?"))
                .unwrap_or_default();
            item.loc.error(format!(
                "unknown syscall preset `{preset_name}` (known: default, none){hint}"
            ))
        });
    // An unknown preset is reported; the default one stands in so the rest is still checked.
    let preset = errs.keep(preset).unwrap_or(DEFAULT_PRESET);

    let mut deny: Vec<SyscallRule> = Vec::new();
    for (name, when) in preset {
        // A name this architecture lacks (e.g. `iopl` on arm64) is simply not there to deny.
        if let Ok(nr) = Sysno::from_str(name) {
            deny.push(SyscallRule {
                name: (*name).to_string(),
                nr: nr.id(),
                when: *when,
            });
        }
    }
    let mut clone3 = |item: &&Located<String>| {
        if item.value != "clone3" {
            return true;
        }
        errs.0.push(item.loc.error(
            "clone3 cannot be listed: it is always answered with ENOSYS, so libc falls back to clone, whose flags the filter can check",
        ));
        false
    };
    let listed: Vec<&Located<String>> = profile.syscall_deny.iter().filter(&mut clone3).collect();
    let allowed: Vec<&Located<String>> = profile.syscall_allow.iter().filter(&mut clone3).collect();
    for item in listed {
        let Some(nr) = errs.keep(sysno(item)) else {
            continue;
        };
        // An explicit deny is unconditional, replacing a preset's argument check.
        deny.retain(|r| r.nr != nr.id());
        deny.push(SyscallRule {
            name: nr.name().to_string(),
            nr: nr.id(),
            when: None,
        });
    }
    for item in allowed {
        if let Some(nr) = errs.keep(sysno(item)) {
            deny.retain(|r| r.nr != nr.id());
        }
    }
    deny.sort_by_key(|r| r.nr);
    SyscallPolicy {
        action: profile.syscall_action,
        deny,
    }
}

fn env_name(item: &Located<String>) -> Result<String, Diagnostic> {
    let name = &item.value;
    let valid = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(name.clone())
    } else {
        Err(item.loc.error(format!(
            "`{name}` is not an environment variable name (letters, digits and `_`, not starting with a digit)"
        )))
    }
}

fn process(profile: &Profile, errs: &mut Errors) -> ProcessPolicy {
    let mut env_keep = Vec::new();
    for item in &profile.env {
        env_keep.extend(errs.keep(env_name(item)));
    }
    let mut set_env = BTreeMap::new();
    for (key, value) in &profile.set_env {
        let Some(key) = errs.keep(env_name(&Located {
            value: key.clone(),
            loc: value.loc.clone(),
        })) else {
            continue;
        };
        if value.value.contains('\0') {
            errs.0
                .push(value.loc.error("environment value contains a NUL byte"));
            continue;
        }
        set_env.insert(key, value.value.clone());
    }
    let mut capabilities = Vec::new();
    for item in &profile.capabilities {
        let upper = item.value.to_ascii_uppercase();
        let full = if upper.starts_with("CAP_") {
            upper
        } else {
            format!("CAP_{upper}")
        };
        let cap = caps::Capability::from_str(&full).map_err(|_| {
            let names: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
            let hint = closest(&full, names.iter().map(String::as_str))
                .map(|m| format!("; did you mean `{m}`?"))
                .unwrap_or_default();
            item.loc
                .error(format!("unknown capability `{}`{hint}", item.value))
        });
        let Some(cap) = errs.keep(cap) else {
            continue;
        };
        let name = cap.to_string();
        if !capabilities.contains(&name) {
            capabilities.push(name);
        }
    }
    let max_processes = profile.max_processes.as_ref().and_then(|max| {
        errs.keep(
            u32::try_from(max.value)
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| max.loc.error("max_processes must be a positive number")),
        )
    });
    let max_memory = profile
        .max_memory
        .as_ref()
        .and_then(|m| errs.keep(memory_size("max_memory", m)));
    ProcessPolicy {
        env_keep,
        set_env,
        capabilities,
        max_processes,
        max_memory,
    }
}

/// The smallest `max_memory` or `tmp_size`: less cannot even start a shell.
const MIN_MEMORY: u64 = 1 << 20;

/// The private `/tmp`'s size when the profile does not say.
pub const DEFAULT_TMP_SIZE: u64 = 1 << 30;

/// `4096`, `"512K"`, `"512M"`, `"2G"`, `"1T"` (powers of 1024) in bytes; `field` names the
/// setting in errors.
fn memory_size(field: &str, item: &Located<crate::profile::MemorySize>) -> Result<u64, Diagnostic> {
    let bad = || {
        item.loc.error(format!(
            "{field} is a number of bytes or a size like \"512M\" or \"2G\" (at least {} MiB)",
            MIN_MEMORY >> 20
        ))
    };
    let bytes = match &item.value {
        crate::profile::MemorySize::Bytes(n) => u64::try_from(*n).map_err(|_| bad())?,
        crate::profile::MemorySize::Text(text) => size_in_bytes(text).ok_or_else(bad)?,
    };
    if bytes < MIN_MEMORY {
        return Err(bad());
    }
    Ok(bytes)
}

/// `"512"`, `"512K"`, `"512M"`, `"2G"`, `"1T"` (powers of 1024) in bytes; `None` when it is
/// not such a size or does not fit in 64 bits.
pub fn size_in_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::profile::SearchPath;

    /// `text` as a profile file compiled for a user `dev` (uid 1000) in `/work/ws`.
    pub(crate) fn compile_text(text: &str) -> Result<Policy, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().join("p.toml");
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
        let profile = SearchPath::new(vec![])
            .load(path.to_str().unwrap_or_default())
            .map_err(|e| e.to_string())?;
        let ctx = Context {
            workspace: PathBuf::from("/work/ws"),
            caller_home: Some(PathBuf::from("/home/dev")),
            caller_uid: 1000,
            caller_gid: 1000,
            caller_groups: vec![1000],
        };
        compile(&profile, &ctx).map_err(|e| e.to_string())
    }

    fn expect_err(text: &str, needle: &str) {
        match compile_text(text) {
            Ok(_) => panic!("expected an error containing {needle:?}"),
            Err(msg) => assert!(msg.contains(needle), "{msg}"),
        }
    }

    #[test]
    fn severity_overrides_name_paths_syscalls_hosts_and_kinds() {
        let p = compile_text(
            "[profile]\nname = \"p\"\n[severity]\npaths = { \"{home}/.ssh\" = \"critical\", \"{home}\" = \"low\" }\nsyscalls = { ptrace = \"critical\" }\nhosts = { \"*.example.com\" = \"info\" }\nkinds = { dns_denied = \"low\" }\n",
        )
        .unwrap();
        let at = |what: What| {
            let e = Event::new("s", "p", std::time::SystemTime::now(), None, what);
            p.severity.of(&e)
        };
        let file = |path: &str| What::FileDenied {
            path: path.into(),
            access: "fs.read_file".into(),
            layer: None,
            rule: None,
            target: None,
        };
        assert_eq!(
            at(file("/home/dev/.ssh/id")),
            Some(Severity::Critical),
            "the longest path wins"
        );
        assert_eq!(at(file("/home/dev/notes")), Some(Severity::Low));
        assert_eq!(at(file("/etc/passwd")), None, "unnamed: the kind's own");
        let dns = |domain: &str| What::DnsDenied {
            domain: domain.into(),
            query_type: "A".into(),
            reason: cordon_proto::event::DnsReason::NotAllowed,
            address: None,
        };
        assert_eq!(at(dns("api.example.com")), Some(Severity::Info));
        assert_eq!(at(dns("pypi.org")), Some(Severity::Low), "the kind's entry");
        let call = |name: &str| What::SyscallDenied {
            nr: 0,
            syscall: name.into(),
            args: vec![],
            errno: 1,
        };
        assert_eq!(at(call("ptrace")), Some(Severity::Critical));
        assert_eq!(at(call("keyctl")), None);
    }

    #[test]
    fn severity_overrides_that_name_nothing_are_errors_where_they_are() {
        expect_err(
            "[profile]\nname = \"p\"\n[severity]\nsyscalls = { ptrce = \"high\" }\n",
            "p.toml:4:22: unknown syscall `ptrce`",
        );
        expect_err(
            "[profile]\nname = \"p\"\n[severity]\nkinds = { dns_deny = \"low\" }\n",
            "did you mean `dns_denied`?",
        );
        expect_err(
            "[profile]\nname = \"p\"\n[severity]\nkinds = { file_denied = \"urgent\" }\n",
            "p.toml:4:",
        );
    }

    #[test]
    fn audit_keeps_only_the_calls_that_could_end_it() {
        let policy = compile_text(
            "[profile]\nname = \"t\"\n[syscalls]\npreset = \"default\"\ndeny = [\"personality\"]\n",
        )
        .unwrap();
        let (kept, audited) = policy.syscalls.split_for_audit();
        let names =
            |rules: &[SyscallRule]| rules.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
        let kept = names(&kept.deny);
        let audited = names(&audited);
        for still in ["bpf", "ptrace", "mount", "unshare", "init_module", "ioctl"] {
            assert!(kept.contains(&still.to_string()), "{still}: {kept:?}");
        }
        assert!(audited.contains(&"personality".to_string()), "{audited:?}");
        assert!(!kept.contains(&"personality".to_string()));
        assert_eq!(
            kept.len() + audited.len(),
            policy.syscalls.deny.len(),
            "every rule is one or the other"
        );
    }

    #[test]
    fn socket_families_are_the_usual_four_plus_those_named_and_checked_by_seccomp() {
        let p = compile_text("[profile]\nname = \"p\"\n").unwrap();
        assert_eq!(
            p.network.socket_families,
            ["unix", "inet", "inet6", "netlink"]
        );
        let socket = |p: &Policy| -> Vec<Option<ArgCondition>> {
            p.syscalls
                .deny
                .iter()
                .filter(|r| r.name == "socket")
                .map(|r| r.when)
                .collect()
        };
        let usual = (1u64 << libc::AF_UNIX)
            | (1 << libc::AF_INET)
            | (1 << libc::AF_INET6)
            | (1 << libc::AF_NETLINK);
        // The preset's MPTCP check stays beside the family check: denied when either matches.
        let rules = socket(&p);
        assert_eq!(rules.len(), 2, "{rules:?}");
        assert!(rules.contains(&Some(ArgCondition::NotIn {
            arg: 0,
            allowed: usual
        })));
        let p = compile_text(
            "[profile]\nname = \"p\"\n[network]\nsocket_families = [\"vsock\", \"VSOCK\"]\n",
        )
        .unwrap();
        assert_eq!(
            p.network.socket_families.last().map(String::as_str),
            Some("vsock")
        );
        assert_eq!(p.network.socket_families.len(), 5);
        assert!(socket(&p).contains(&Some(ArgCondition::NotIn {
            arg: 0,
            allowed: usual | 1 << libc::AF_VSOCK
        })));
        expect_err(
            "[profile]\nname = \"p\"\n[network]\nsocket_families = [\"vsok\"]\n",
            "unknown socket family `vsok`",
        );
        // Allowing `socket` takes every check of it out.
        let p =
            compile_text("[profile]\nname = \"p\"\n[syscalls]\nallow = [\"socket\"]\n").unwrap();
        assert!(socket(&p).is_empty());
    }

    #[test]
    fn tmp_size_has_a_default_and_takes_units() {
        let p = compile_text("[profile]\nname = \"p\"\n").unwrap();
        assert_eq!(p.filesystem.tmp_size, DEFAULT_TMP_SIZE);
        let p =
            compile_text("[profile]\nname = \"p\"\n[filesystem]\ntmp_size = \"64M\"\n").unwrap();
        assert_eq!(p.filesystem.tmp_size, 64 << 20);
        expect_err(
            "[profile]\nname = \"p\"\n[filesystem]\ntmp_size = \"lots\"\n",
            "tmp_size is a number of bytes",
        );
    }

    #[test]
    fn protected_entries_with_a_trailing_slash_are_directories() {
        let p = compile_text(
            "[profile]\nname = \"p\"\n[filesystem]\nwrite = [\"{workspace}\"]\ndeny = [\"{workspace}/.secrets/\", \"{workspace}/.env\"]\nrepositories = [\"{workspace}\"]\n",
        )
        .unwrap();
        assert_eq!(p.filesystem.dirs, [PathBuf::from("/work/ws/.secrets")]);
        assert_eq!(p.filesystem.deny.len(), 2);
        assert_eq!(p.filesystem.repositories, [PathBuf::from("/work/ws")]);
    }

    #[test]
    fn placeholders_expand_and_lists_merge_into_one_rule_per_path() {
        let p = compile_text(
            "[profile]\nname = \"p\"\n[filesystem]\nread = [\"/usr\", \"{workspace}\"]\nwrite = [\"{workspace}\", \"{tmp}\"]\nexec = [\"/usr/bin\"]\ndeny = [\"{home}/.ssh\", \"/run/user/{uid}\"]\n",
        )
        .unwrap();
        let rules: Vec<(String, Access)> = p
            .filesystem
            .rules
            .iter()
            .map(|r| (r.path.display().to_string(), r.access))
            .collect();
        let rw = Access {
            read: true,
            write: true,
            exec: false,
        };
        let ro = Access {
            read: true,
            write: false,
            exec: false,
        };
        let rx = Access {
            read: true,
            write: false,
            exec: true,
        };
        assert_eq!(
            rules,
            [
                ("/tmp".to_string(), rw),
                ("/usr".to_string(), ro),
                ("/usr/bin".to_string(), rx),
                ("/work/ws".to_string(), rw),
            ]
        );
        assert_eq!(
            p.filesystem.deny,
            [
                PathBuf::from("/home/dev/.ssh"),
                PathBuf::from("/run/user/1000")
            ]
        );
    }

    #[test]
    fn unknown_placeholder_is_located_with_a_suggestion() {
        expect_err(
            "[profile]\nname = \"p\"\n[filesystem]\nread = [\"{workspce}/src\"]\n",
            "p.toml:4:9: unknown placeholder `{workspce}`",
        );
        expect_err(
            "[profile]\nname = \"p\"\n[filesystem]\nread = [\"{workspce}/src\"]\n",
            "did you mean `{workspace}`?",
        );
    }

    #[test]
    fn relative_and_dotdot_paths_are_refused() {
        expect_err(
            "[profile]\nname = \"p\"\n[filesystem]\nread = [\"usr\"]\n",
            "p.toml:4:9: path `usr` is relative",
        );
        expect_err(
            "[profile]\nname = \"p\"\n[filesystem]\nwrite = [\"{workspace}/../etc\"]\n",
            "not a clean absolute path",
        );
    }

    #[test]
    fn unknown_syscall_is_located_with_a_suggestion() {
        expect_err(
            "[profile]\nname = \"p\"\n[syscalls]\ndeny = [\"ptrce\"]\n",
            "p.toml:4:9: unknown syscall `ptrce`",
        );
        expect_err(
            "[profile]\nname = \"p\"\n[syscalls]\ndeny = [\"ptrce\"]\n",
            "did you mean `ptrace`?",
        );
    }

    #[test]
    fn default_preset_denies_namespaces_by_flag_and_allow_takes_entries_out() {
        let p = compile_text("[profile]\nname = \"p\"\n[syscalls]\nallow = [\"ptrace\"]\ndeny = [\"io_uring_setup\"]\n").unwrap();
        let names: Vec<&str> = p.syscalls.deny.iter().map(|r| r.name.as_str()).collect();
        assert!(!names.contains(&"ptrace"));
        assert!(names.contains(&"io_uring_setup") && names.contains(&"bpf"));
        let unshare = p
            .syscalls
            .deny
            .iter()
            .find(|r| r.name == "unshare")
            .unwrap();
        assert!(
            matches!(unshare.when, Some(ArgCondition::AnyBit { arg: 0, mask }) if mask & libc::CLONE_NEWUSER as u64 != 0)
        );
    }

    #[test]
    fn clone3_cannot_be_listed() {
        expect_err(
            "[profile]\nname = \"p\"\n[syscalls]\ndeny = [\"clone3\"]\n",
            "p.toml:4:9: clone3 cannot be listed",
        );
        expect_err(
            "[profile]\nname = \"p\"\n[syscalls]\nallow = [\"clone3\"]\n",
            "p.toml:4:10: clone3 cannot be listed",
        );
    }

    #[test]
    fn the_default_preset_covers_io_uring_and_mptcp() {
        let p = compile_text("[profile]\nname = \"p\"\n").unwrap();
        let names: Vec<&str> = p.syscalls.deny.iter().map(|r| r.name.as_str()).collect();
        assert!(names.contains(&"io_uring_setup") && names.contains(&"io_uring_enter"));
        let socket = p.syscalls.deny.iter().find(|r| r.name == "socket").unwrap();
        assert_eq!(
            socket.when,
            Some(ArgCondition::OneOf {
                arg: 2,
                values: &[IPPROTO_MPTCP]
            })
        );
    }

    #[test]
    fn capabilities_and_env_names_are_checked() {
        let p = compile_text(
            "[profile]\nname = \"p\"\n[process]\ncapabilities = [\"net_bind_service\"]\n",
        )
        .unwrap();
        assert_eq!(p.process.capabilities, ["CAP_NET_BIND_SERVICE"]);
        expect_err(
            "[profile]\nname = \"p\"\n[process]\ncapabilities = [\"CAP_NET_BIND_SERVCE\"]\n",
            "did you mean `CAP_NET_BIND_SERVICE`?",
        );
        expect_err(
            "[profile]\nname = \"p\"\n[process]\nenv = [\"A=B\"]\n",
            "p.toml:4:8: `A=B` is not an environment variable name",
        );
    }

    #[test]
    fn unknown_user_and_bad_port_are_errors() {
        expect_err(
            "[profile]\nname = \"p\"\n[process]\nuser = \"no-such-user-here\"\n",
            "p.toml:4:8: no such user `no-such-user-here`",
        );
        expect_err(
            "[profile]\nname = \"p\"\n[network]\nconnect_ports = [0]\n",
            "p.toml:4:18: port 0",
        );
        expect_err(
            "[profile]\nname = \"p\"\n[network]\nconnect_ports = [70000]\n",
            "p.toml:4:18:",
        );
    }

    #[test]
    fn egress_rules_compile_and_bad_ones_say_where_and_why() {
        let p = compile_text(
            "[profile]\nname = \"p\"\n[network]\negress = [\n  { host = \"PyPI.org.\", ports = [443] },\n  { cidr = \"10.20.0.0/16\", ports = [5432], proto = \"tcp\" },\n]\nconnect_ports = [22]\n",
        )
        .unwrap();
        let rules = &p.network.egress;
        // connect_ports become rules for every address, IPv4 and IPv6, TCP only.
        assert_eq!(rules.len(), 4);
        assert!(rules
            .iter()
            .any(|r| r.to == Destination::Host("pypi.org".into()) && r.tcp && r.udp));
        assert!(rules.iter().any(
            |r| matches!(&r.to, Destination::Cidr(n) if n.to_string() == "10.20.0.0/16")
                && r.tcp
                && !r.udp
        ));
        assert!(rules.iter().any(
            |r| matches!(&r.to, Destination::Cidr(n) if n.to_string() == "0.0.0.0/0")
                && r.ports == [22]
        ));
        assert_eq!(p.network.connect_tcp, vec![22, 443, 5432]);
        assert!(!p.network.offline());

        let base = "[profile]\nname = \"p\"\n[network]\negress = [";
        expect_err(
            &format!("{base}{{ ports = [443] }}]\n"),
            "p.toml:4:11: an egress rule needs a `host`",
        );
        expect_err(
            &format!("{base}{{ host = \"a.b\" }}]\n"),
            "p.toml:4:11: an egress rule needs `ports`",
        );
        expect_err(
            &format!("{base}{{ host = \"a b\", ports = [1] }}]\n"),
            "p.toml:4:20: `a b` is not a host name",
        );
        expect_err(
            &format!("{base}{{ host = \"10.0.0.1\", ports = [1] }}]\n"),
            "is an address; write it as cidr",
        );
        expect_err(
            &format!("{base}{{ cidr = \"10.0.0.1/8\", ports = [1] }}]\n"),
            "did you mean `10.0.0.0/8`?",
        );
        expect_err(
            &format!("{base}{{ cidr = \"nope\", ports = [1] }}]\n"),
            "`nope` is not an address prefix",
        );
        expect_err(
            &format!("{base}{{ host = \"a.b\", cidr = \"10.0.0.0/8\", ports = [1] }}]\n"),
            "not both",
        );
        expect_err(
            &format!("{base}{{ host = \"a.b\", ports = [1], proto = \"icmp\" }}]\n"),
            "p.toml:4:",
        );
    }

    #[test]
    fn memory_and_process_limits_parse_with_units() {
        let p = compile_text(
            "[profile]\nname = \"p\"\n[process]\nmax_processes = 64\nmax_memory = \"512M\"\n",
        )
        .unwrap();
        assert_eq!(p.process.max_processes, Some(64));
        assert_eq!(p.process.max_memory, Some(512 << 20));
        let p =
            compile_text("[profile]\nname = \"p\"\n[process]\nmax_memory = 2147483648\n").unwrap();
        assert_eq!(p.process.max_memory, Some(2 << 30));
        expect_err(
            "[profile]\nname = \"p\"\n[process]\nmax_processes = 0\n",
            "p.toml:4:17: max_processes must be a positive number",
        );
        expect_err(
            "[profile]\nname = \"p\"\n[process]\nmax_memory = \"12 parsecs\"\n",
            "p.toml:4:14: max_memory is a number of bytes",
        );
        expect_err(
            "[profile]\nname = \"p\"\n[process]\nmax_memory = \"1K\"\n",
            "at least 1 MiB",
        );
    }

    #[test]
    fn defaults_are_the_secure_ones() {
        let p = compile_text("[profile]\nname = \"p\"\n").unwrap();
        assert_eq!(p.compat, Compat::Strict);
        assert_eq!(p.syscalls.action, SyscallAction::Errno);
        assert!(p.syscalls.deny.iter().any(|r| r.name == "bpf"));
        assert!(p.network.connect_tcp.is_empty() && p.filesystem.rules.is_empty());
        assert!(p.process.env_keep.is_empty() && p.process.capabilities.is_empty());
        assert_eq!(p.landlock_abi, DEFAULT_LANDLOCK_ABI);
    }

    #[test]
    fn compile_reports_every_error_not_only_the_first() {
        let msg = compile_text(
            "[profile]\nname = \"p\"\n[filesystem]\nread = [\"{workspce}\", \"usr\"]\n[network]\nconnect_ports = [0]\n[syscalls]\ndeny = [\"ptrce\"]\n[process]\nenv = [\"A=B\"]\nmax_processes = 0\n",
        )
        .err()
        .unwrap_or_default();
        let at: Vec<&str> = msg
            .lines()
            .map(|l| {
                l.rsplit_once("p.toml:")
                    .map_or("", |(_, r)| r.split(": ").next().unwrap_or(""))
            })
            .collect();
        assert_eq!(at, ["4:9", "4:23", "6:18", "8:9", "10:8", "11:17"], "{msg}");
    }

    #[test]
    fn a_child_of_coding_agent_can_take_its_network_away() {
        let p = compile_text(
            "[profile]\nname = \"p\"\nextends = [\"coding-agent\"]\n[network]\negress = { replace = [] }\n",
        )
        .unwrap();
        assert!(
            p.network.egress.is_empty() && p.network.connect_tcp.is_empty() && p.network.offline(),
            "{:?}",
            p.network
        );
        // `[]` alone keeps what was inherited (and `profile check` warns).
        let p = compile_text(
            "[profile]\nname = \"p\"\nextends = [\"coding-agent\"]\n[network]\negress = []\n",
        )
        .unwrap();
        assert!(p.network.egress.len() > 5, "{:?}", p.network.egress);
    }
}
