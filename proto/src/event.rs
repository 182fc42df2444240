//! The one event type: whatever its source (the kernel's ring buffer, the DNS resolver,
//! Landlock's audit records, a responder's action), everything Cordon reports is an
//! [`Event`], and every event has the same JSON form, one object per line:
//!
//! ```json
//! {"v":1,"id":"019abc…","time":"2026-11-26T11:36:19.123456789Z","sandbox":"coding-agent-4242-0",
//!  "profile":"coding-agent","process":{"pid":7,"ppid":1,"comm":"curl","exe":"/usr/bin/curl","uid":1000},
//!  "kind":"network_denied","address":"10.0.0.1","port":443,"protocol":"tcp","reason":"not_allowed"}
//! ```
//!
//! `kind` says which of the [`What`] variants the remaining fields are. Ids are UUIDv7, so
//! they sort by time and are unique across hosts.

use std::net::IpAddr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// The version of the JSON form; bumped when a field changes meaning or goes away.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub v: u32,
    pub id: uuid::Uuid,
    #[serde(with = "rfc3339")]
    pub time: SystemTime,
    /// The sandbox's name: its cgroup's (`<profile>-<pid>-<n>`).
    pub sandbox: String,
    /// The session: one run of one sandbox, a UUIDv7 unique across hosts and PID reuse,
    /// carried by every event of the sandbox (its `session_started` event says what it is).
    /// Absent in events of older agents and in a host's own events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<uuid::Uuid>,
    pub profile: String,
    /// Who: the process the event is about, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<Process>,
    #[serde(flatten)]
    pub what: What,
    /// Set when this event stands for a burst of identical ones.
    #[serde(default, flatten, skip_serializing_if = "Option::is_none")]
    pub burst: Option<Burst>,
    /// How much it matters (see [`What::severity`]). Set on every event an agent makes;
    /// absent in events of older agents, whose severity is [`Event::severity`]'s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// `false` when what a denial event reports was let through rather than refused: a
    /// sandbox in `mode = "audit"` reports what enforce mode would have refused. Written
    /// only when `false`.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub enforced: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// How much an event matters, for filtering and sorting; ordered from `info` up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Activity: a session, an exec, an exit, a responder's action.
    Info,
    /// A refusal that is mostly noise: a path not in the view, a connection of an isolated
    /// sandbox, misses not examined.
    Low,
    /// A refusal of what the profile does not allow.
    Medium,
    /// An attempt at what the profile protects: a denied path, git metadata, a rebinding DNS
    /// answer, a syscall that reaches for the kernel or other processes; events lost.
    High,
    /// The watching itself was tampered with.
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Severity::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                format!("unknown severity {s:?}: one of info, low, medium, high, critical")
            })
    }
}

/// Syscalls whose denial is an attempt on the kernel or on other processes, not a tool's
/// feature probe.
const REACHING_SYSCALLS: &[&str] = &[
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_getfd",
    "kcmp",
    "bpf",
    "perf_event_open",
    "mount",
    "umount2",
    "fsopen",
    "fsmount",
    "move_mount",
    "open_tree",
    "pivot_root",
    "chroot",
    "unshare",
    "setns",
    "clone",
    "clone3",
    "keyctl",
    "add_key",
    "request_key",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "open_by_handle_at",
    "userfaultfd",
    "iopl",
    "ioperm",
    "reboot",
    "swapon",
    "swapoff",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    /// The executable, when known (from the process's last exec, or `/proc`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    pub uid: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Tcp,
    Udp,
    Other,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetReason {
    /// No rule of the profile allows this address, port and protocol.
    NotAllowed,
    /// The sandbox is isolated by a responder.
    Isolated,
    /// The address was allowed by a DNS answer whose time to live has passed.
    Expired,
}

/// An action a responder took on a sandbox: containment, or collecting its evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Isolate,
    Release,
    Freeze,
    Thaw,
    Kill,
    /// An archive of what the sandbox runs, holds and changed (`cordon evidence`); it
    /// changes nothing in the sandbox.
    Evidence,
    /// A response rule's alert: nothing is done to the sandbox; the event is for the people
    /// and systems watching.
    Alert,
}

/// What an evidence collection gathered: the SHA-256 of the archive's manifest (which lists
/// every other entry's) recorded here shows whether the archive was altered since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceRecord {
    pub manifest_sha256: String,
    pub archive_sha256: String,
    pub bytes: u64,
    pub files: usize,
    pub processes: usize,
    /// `frozen` or `running`, as the sandbox was found and left.
    pub state: String,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum What {
    /// A connect or datagram the network policy refused.
    NetworkDenied {
        address: IpAddr,
        port: u16,
        protocol: Protocol,
        reason: NetReason,
        /// The name this address was resolved from in this sandbox, when it was.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        domain: Option<String>,
    },
    /// A DNS query the sandbox's resolver refused (the sandbox got REFUSED): a name no rule
    /// allows, an answer pointing into the host or its networks, or not a host name at all.
    DnsDenied {
        domain: String,
        query_type: String,
        #[serde(default)]
        reason: DnsReason,
        /// For `rebind`: the answered address that was refused.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<IpAddr>,
    },
    /// A syscall the sandbox's seccomp filter denied.
    SyscallDenied {
        nr: i64,
        syscall: String,
        args: Vec<u64>,
        errno: i32,
    },
    /// A file access the sandbox denied; `access` is Landlock's name for it (`fs.read_file`,
    /// `fs.execute`, `fs.make_reg`, ...; `fs.stat` for a look at a covered path). For a file
    /// Landlock would not let be created or removed, `path` is its directory; otherwise it is
    /// the path as the process asked for it.
    FileDenied {
        path: String,
        access: String,
        /// Which layer refused it: `landlock`, or the sandbox's mounts: `deny` (a denied
        /// path, covered or left out), `read_only`, `noexec`, `not_in_view` (a host path the
        /// profile does not list), `unplaced` (a refusal whose path could not be placed).
        /// Absent in events of older agents.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        layer: Option<FileLayer>,
        /// The profile's path whose rule refused it (the denied or read-only entry, the
        /// mount without exec).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rule: Option<String>,
        /// Where `path` led, when that is elsewhere: absolute, `..` and symlinks followed
        /// (a relative name, a workspace link into the home).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<String>,
    },
    /// Another Landlock denial (`scope.signal`, `net.bind_tcp`, ...), with the record's fields.
    OtherDenied {
        blockers: String,
        detail: String,
    },
    Exec {
        filename: String,
    },
    Fork {
        child_pid: u32,
    },
    /// A process ended: with an exit code, or killed by a signal.
    Exit {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<i32>,
    },
    /// Events that could not be recorded: the sandbox's ring buffer was full, or the spool
    /// on disk was (while the collector was away).
    EventsLost {
        count: u64,
        #[serde(default)]
        reason: LossReason,
    },
    /// A responder's action took effect.
    Contained {
        action: Action,
    },
    /// A responder asked for an action: who, what, and how it went.
    ResponderAction {
        action: Action,
        actor: Actor,
        result: ActionResult,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        took_ms: u64,
        /// For [`Action::Evidence`]: what the archive holds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        evidence: Option<EvidenceRecord>,
        /// For a response rule that acted on events lost before it could see them (failing
        /// closed: one of them may have been what it watches for): why they were lost.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unseen: Option<LossReason>,
    },
    /// A session began: the sandbox runs its command. The first event of every session.
    SessionStarted {
        /// Who asked for it: the user `cordon run` ran for (the sandbox's user), by uid and
        /// by name when the host knows one.
        uid: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
        /// The command line, as given.
        command: Vec<String>,
        /// SHA-256 of the profile as resolved (`cordon profile show`'s JSON): two sessions
        /// with the same hash ran under the same rules.
        profile_sha256: String,
        workspace: String,
    },
}

/// Why the sandbox's resolver refused a query.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DnsReason {
    /// No egress rule names it.
    #[default]
    NotAllowed,
    /// The answer points at a loopback, link-local, private, unspecified or multicast
    /// address, or one of the host's own, that no `cidr` rule names (DNS rebinding).
    Rebind,
    /// The name is not a host name (letters, digits, `-` and `_` in labels of at most 63).
    BadName,
}

/// The layer of the sandbox that refused a file access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileLayer {
    /// Landlock (its audit records).
    Landlock,
    /// A path the profile denies: covered by an inaccessible mount, or left out of the view.
    Deny,
    /// A read-only mount: a `read_only` entry, git metadata, a tree the profile only reads.
    ReadOnly,
    /// A mount without exec: a tree the profile does not execute from.
    Noexec,
    /// A host path the profile does not list, so the sandbox's view lacks it.
    NotInView,
    /// A refusal the watcher could not place: a path longer than the kernel's record holds,
    /// or a relative one whose directory could not be read. Reported rather than dropped.
    Unplaced,
}

impl FileLayer {
    pub fn as_str(self) -> &'static str {
        match self {
            FileLayer::Landlock => "landlock",
            FileLayer::Deny => "deny",
            FileLayer::ReadOnly => "read_only",
            FileLayer::Noexec => "noexec",
            FileLayer::NotInView => "not_in_view",
            FileLayer::Unplaced => "unplaced",
        }
    }
}

/// Why events were lost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossReason {
    #[default]
    RingFull,
    SpoolFull,
    /// The sandbox's ring buffer was steered by a process other than its reader: records
    /// may have been skipped unseen (`count` is how many times, not how many records).
    RingTampered,
    /// The listener for Landlock's audit records was taken off the audit group, or kernel
    /// auditing was turned off: denials may have gone unrecorded (`count` as above).
    AuditDetached,
    /// Audit records were dropped: the kernel's queue (its `lost` counter, host-wide, so
    /// perhaps records of other processes) or the listener's socket overflowed in a burst.
    AuditOverrun,
    /// Calls on missing paths beyond the kernel's rate (1000/s, bursts of 256) were not
    /// examined: a denied path outside the view among them went unreported. Refusals
    /// (`EACCES`, `EROFS`) are never skipped.
    Unexamined,
}

impl LossReason {
    /// The `reason` string of the JSON form.
    pub fn as_str(self) -> &'static str {
        match self {
            LossReason::RingFull => "ring_full",
            LossReason::SpoolFull => "spool_full",
            LossReason::RingTampered => "ring_tampered",
            LossReason::AuditDetached => "audit_detached",
            LossReason::AuditOverrun => "audit_overrun",
            LossReason::Unexamined => "unexamined",
        }
    }
}

/// Who asked for a responder action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// `socket`: a local user through cordond's socket; `collector`: a responder through the
    /// central collector.
    pub via: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// A user name, or the collector's name for the responder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionResult {
    Done,
    Failed,
}

/// Repeats of one violation within a short window, reported as one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Burst {
    /// How many times it happened (the event's own `time` is the first).
    pub count: u64,
    #[serde(with = "rfc3339")]
    pub first_seen: SystemTime,
    #[serde(with = "rfc3339")]
    pub last_seen: SystemTime,
}

impl What {
    /// Every `kind` of the JSON form.
    pub const KINDS: [&'static str; 12] = [
        "network_denied",
        "dns_denied",
        "syscall_denied",
        "file_denied",
        "other_denied",
        "exec",
        "fork",
        "exit",
        "events_lost",
        "contained",
        "responder_action",
        "session_started",
    ];
    /// The kinds that are violations (see [`What::is_violation`]).
    pub const VIOLATIONS: [&'static str; 5] = [
        "network_denied",
        "dns_denied",
        "syscall_denied",
        "file_denied",
        "other_denied",
    ];

    /// What the event is about, in a word: the path, the address and name, the domain, the
    /// syscall, the program run (empty for the others).
    pub fn subject(&self) -> String {
        match self {
            What::NetworkDenied {
                address,
                port,
                domain,
                ..
            } => match domain {
                Some(d) => format!("{address}:{port} {d}"),
                None => format!("{address}:{port}"),
            },
            What::DnsDenied { domain, .. } => domain.clone(),
            What::SyscallDenied { syscall, .. } => syscall.clone(),
            What::FileDenied { path, .. } => path.clone(),
            What::OtherDenied { blockers, detail } => format!("{blockers} {detail}"),
            What::Exec { filename } => filename.clone(),
            _ => String::new(),
        }
    }

    /// The `kind` string of the JSON form.
    pub fn kind(&self) -> &'static str {
        match self {
            What::NetworkDenied { .. } => "network_denied",
            What::DnsDenied { .. } => "dns_denied",
            What::SyscallDenied { .. } => "syscall_denied",
            What::FileDenied { .. } => "file_denied",
            What::OtherDenied { .. } => "other_denied",
            What::Exec { .. } => "exec",
            What::Fork { .. } => "fork",
            What::Exit { .. } => "exit",
            What::EventsLost { .. } => "events_lost",
            What::Contained { .. } => "contained",
            What::ResponderAction { .. } => "responder_action",
            What::SessionStarted { .. } => "session_started",
        }
    }

    /// How much an event of this kind, with these details, matters.
    pub fn severity(&self) -> Severity {
        match self {
            What::FileDenied { layer, rule, .. } => match layer {
                Some(FileLayer::Deny) => Severity::High,
                Some(FileLayer::ReadOnly)
                    if rule.as_deref().is_some_and(|r| r.ends_with("/.git")) =>
                {
                    Severity::High
                }
                Some(FileLayer::NotInView) => Severity::Low,
                _ => Severity::Medium,
            },
            What::SyscallDenied { syscall, .. } => {
                if REACHING_SYSCALLS.contains(&syscall.as_str()) {
                    Severity::High
                } else {
                    Severity::Medium
                }
            }
            What::NetworkDenied { reason, .. } => match reason {
                NetReason::Isolated => Severity::Low,
                NetReason::NotAllowed | NetReason::Expired => Severity::Medium,
            },
            What::DnsDenied { reason, .. } => match reason {
                DnsReason::Rebind => Severity::High,
                _ => Severity::Medium,
            },
            What::OtherDenied { .. } => Severity::Medium,
            What::EventsLost { reason, .. } => match reason {
                LossReason::RingTampered | LossReason::AuditDetached => Severity::Critical,
                LossReason::Unexamined => Severity::Low,
                _ => Severity::High,
            },
            What::ResponderAction {
                result: ActionResult::Failed,
                ..
            } => Severity::Medium,
            What::Exec { .. }
            | What::Fork { .. }
            | What::Exit { .. }
            | What::Contained { .. }
            | What::ResponderAction { .. }
            | What::SessionStarted { .. } => Severity::Info,
        }
    }

    /// Whether this is a violation (something the profile denied), rather than activity.
    pub fn is_violation(&self) -> bool {
        matches!(
            self,
            What::NetworkDenied { .. }
                | What::DnsDenied { .. }
                | What::SyscallDenied { .. }
                | What::FileDenied { .. }
                | What::OtherDenied { .. }
        )
    }
}

impl Action {
    /// The name of the JSON form (`isolate`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Isolate => "isolate",
            Action::Release => "release",
            Action::Freeze => "freeze",
            Action::Thaw => "thaw",
            Action::Kill => "kill",
            Action::Evidence => "evidence",
            Action::Alert => "alert",
        }
    }
}

impl std::str::FromStr for Action {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        [
            Action::Isolate,
            Action::Release,
            Action::Freeze,
            Action::Thaw,
            Action::Kill,
            Action::Evidence,
            Action::Alert,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
        .ok_or_else(|| format!("unknown action {s:?}"))
    }
}

impl Event {
    pub fn new(
        sandbox: &str,
        profile: &str,
        time: SystemTime,
        process: Option<Process>,
        what: What,
    ) -> Self {
        Self {
            v: SCHEMA_VERSION,
            id: new_id(time),
            time,
            sandbox: sandbox.to_owned(),
            session: None,
            profile: profile.to_owned(),
            process,
            severity: Some(what.severity()),
            what,
            burst: None,
            enforced: true,
        }
    }

    /// How much it matters: as the agent said, or as its kind says for events of agents
    /// that did not say.
    pub fn severity(&self) -> Severity {
        self.severity.unwrap_or_else(|| self.what.severity())
    }

    /// The columns of [`Event::table_row`], for exports as a table (CSV).
    pub const TABLE_COLUMNS: [&'static str; 12] = [
        "time", "sandbox", "session", "severity", "kind", "enforced", "pid", "comm", "exe", "uid",
        "subject", "summary",
    ];

    /// The event as a row of [`Event::TABLE_COLUMNS`]: what a spreadsheet or a SIEM import
    /// wants, the whole event being in the JSON form. Each cell is [`spreadsheet_safe`].
    pub fn table_row(&self) -> Vec<String> {
        self.raw_row().into_iter().map(spreadsheet_safe).collect()
    }

    fn raw_row(&self) -> Vec<String> {
        let process = self.process.as_ref();
        vec![
            humantime::format_rfc3339_nanos(self.time).to_string(),
            self.sandbox.clone(),
            self.session.map(|s| s.to_string()).unwrap_or_default(),
            self.severity().to_string(),
            self.what.kind().to_string(),
            self.enforced.to_string(),
            process.map(|p| p.pid.to_string()).unwrap_or_default(),
            process.map(|p| p.comm.clone()).unwrap_or_default(),
            process.and_then(|p| p.exe.clone()).unwrap_or_default(),
            process.map(|p| p.uid.to_string()).unwrap_or_default(),
            self.what.subject(),
            self.summary(),
        ]
    }

    /// One line for a person reading `cordon run`'s stderr. What a sandboxed process chose
    /// (its name, a path, a domain) may hold terminal escape sequences, so every control
    /// and bidirectional-formatting character is shown escaped (see [`terminal_safe`]).
    pub fn summary(&self) -> String {
        if !self.enforced {
            // The line says what enforce mode would have done; the prefix, that it did not.
            return terminal_safe(&format!("audit, let through: {}", self.raw_summary()));
        }
        terminal_safe(&self.raw_summary())
    }

    fn raw_summary(&self) -> String {
        let who = self
            .process
            .as_ref()
            .map(|p| format!("{} (pid {})", p.comm, p.pid))
            .unwrap_or_else(|| "the sandbox".into());
        match &self.what {
            What::NetworkDenied {
                address,
                port,
                protocol,
                reason,
                domain,
            } => {
                let name = domain
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default();
                let why = match reason {
                    NetReason::NotAllowed => "no egress rule allows it",
                    NetReason::Isolated => "the sandbox is isolated",
                    NetReason::Expired => "its DNS answer expired",
                };
                let proto = match protocol {
                    Protocol::Tcp => "tcp",
                    Protocol::Udp => "udp",
                    Protocol::Other => "other",
                };
                format!("{who}: connection to {address}:{port}/{proto}{name} denied: {why}")
            }
            What::DnsDenied {
                domain,
                query_type,
                reason,
                address,
            } => {
                let why = match (reason, address) {
                    (DnsReason::NotAllowed, _) => "no egress rule names it".to_string(),
                    (DnsReason::Rebind, Some(a)) => format!(
                        "its answer {a} points into the host or its networks, and no cidr rule names it"
                    ),
                    (DnsReason::Rebind, None) => "its answer points into the host or its networks".into(),
                    (DnsReason::BadName, _) => "not a host name".into(),
                };
                format!("{who}: DNS query for {domain} ({query_type}) refused: {why}")
            }
            // A call an audit let through has no errno of the filter's.
            What::SyscallDenied { syscall, errno, .. } if *errno == 0 => {
                format!("{who}: syscall {syscall} denied")
            }
            What::SyscallDenied { syscall, errno, .. } => {
                let err = nix::errno::Errno::from_raw(*errno);
                format!("{who}: syscall {syscall} denied ({err})")
            }
            What::FileDenied {
                path,
                access,
                layer,
                rule,
                target,
            } => {
                let path = match target {
                    Some(t) => format!("{path} (-> {t})"),
                    None => path.clone(),
                };
                let by = match (layer, rule) {
                    (Some(FileLayer::Landlock) | None, _) => String::new(),
                    (Some(FileLayer::Deny), Some(rule)) => {
                        format!(" (denied by the profile: {rule})")
                    }
                    (Some(FileLayer::ReadOnly), Some(rule)) => format!(" (read-only: {rule})"),
                    (Some(FileLayer::Noexec), Some(rule)) => format!(" (no exec in {rule})"),
                    (Some(FileLayer::NotInView), _) => " (not in the profile's view)".into(),
                    (Some(FileLayer::Unplaced), _) => {
                        " (refused; the path could not be placed in the profile)".into()
                    }
                    (Some(layer), None) => format!(" ({})", layer.as_str().replace('_', "-")),
                };
                match &self.burst {
                    // Summarised as one: the paths differ, the first is named.
                    Some(b) if *layer == Some(FileLayer::NotInView) => format!(
                        "{who}: {} more accesses to paths not in the profile's view denied (the first: {access} of {path})",
                        b.count
                    ),
                    _ => format!("{who}: {access} of {path} denied{by}"),
                }
            }
            What::OtherDenied { blockers, detail } => {
                format!("{who}: {blockers} denied ({detail})")
            }
            What::Exec { filename } => format!("{who}: exec {filename}"),
            What::Fork { child_pid } => format!("{who}: fork -> {child_pid}"),
            What::Exit { code, signal } => match (code, signal) {
                (_, Some(s)) => format!("{who}: killed by signal {s}"),
                (Some(c), None) => format!("{who}: exited with {c}"),
                (None, None) => format!("{who}: exited"),
            },
            What::EventsLost { count, reason } => match reason {
                LossReason::RingFull => {
                    format!("{count} events lost: the sandbox's ring buffer was full")
                }
                LossReason::SpoolFull => {
                    format!("{count} events lost: the spool on disk was full")
                }
                LossReason::RingTampered => {
                    "events may have been lost: another process moved the sandbox's event ring"
                        .to_string()
                }
                LossReason::AuditDetached => "events may have been lost: the audit listener was cut off (or auditing turned off); restored".to_string(),
                LossReason::AuditOverrun => format!(
                    "events may have been lost: {count} audit records were dropped (a burst overflowed the kernel's queue or the listener)"
                ),
                LossReason::Unexamined => format!(
                    "{count} calls on missing paths were not examined (over 1000/s): a denied path outside the view among them is not reported"
                ),
            },
            What::Contained { action } => format!("responder action took effect: {action:?}"),
            What::ResponderAction {
                action,
                actor,
                result,
                error,
                evidence,
                unseen,
                ..
            } => {
                let by = match (&actor.name, actor.uid) {
                    (Some(name), _) => name.clone(),
                    (None, Some(uid)) => format!("uid {uid}"),
                    (None, None) => "someone".into(),
                };
                let how = match result {
                    ActionResult::Done => "done".to_string(),
                    ActionResult::Failed => {
                        format!("failed: {}", error.as_deref().unwrap_or("unknown error"))
                    }
                };
                let archive = evidence.as_ref().map_or_else(String::new, |e| {
                    format!(" (manifest sha256 {})", e.manifest_sha256)
                });
                let unseen = unseen.map_or_else(String::new, |reason| {
                    format!(
                        " (on events lost unseen, {}: one may have been what it watches for)",
                        reason.as_str()
                    )
                });
                format!(
                    "{action:?} requested by {by} via {}: {how}{archive}{unseen}",
                    actor.via
                )
            }
            What::SessionStarted {
                uid, user, command, ..
            } => {
                let user = user.clone().unwrap_or_else(|| format!("uid {uid}"));
                format!("session started for {user}: {}", command.join(" "))
            }
        }
    }
}

/// `text` with every character that could steer a terminal shown as an escape instead:
/// control characters (C0, DEL, C1: `\u{1b}[2J` stays text) and the invisible
/// A table cell a spreadsheet would take for a formula (what an agent chose, a path or a
/// command, may start with `=`, `+`, `-` or `@`) gets a `'` in front: opening an export runs
/// nothing.
pub fn spreadsheet_safe(cell: String) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell
    }
}

/// bidirectional overrides that make a line read other than it is.
pub fn terminal_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let bidi = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if c.is_control() || bidi {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A UUIDv7 for an event at `time`. One context for the process keeps ids unique and
/// increasing even within a millisecond (with sub-millisecond precision in the counter).
fn new_id(time: SystemTime) -> uuid::Uuid {
    static CONTEXT: std::sync::LazyLock<std::sync::Mutex<uuid::ContextV7>> =
        std::sync::LazyLock::new(|| {
            std::sync::Mutex::new(uuid::ContextV7::new().with_additional_precision())
        });
    let since_epoch = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let (secs, nanos) = (since_epoch.as_secs(), since_epoch.subsec_nanos());
    match CONTEXT.lock() {
        Ok(context) => uuid::Uuid::new_v7(uuid::Timestamp::from_unix(&*context, secs, nanos)),
        // A panic while another thread held the context: still unique, just not ordered
        // within the millisecond.
        Err(_) => uuid::Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, secs, nanos)),
    }
}

/// RFC 3339 timestamps with nanoseconds, in UTC.
pub mod rfc3339_opt {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(time: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        match time {
            Some(t) => super::rfc3339::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SystemTime>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(text) => humantime::parse_rfc3339(&text)
                .map(Some)
                .map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

pub mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_nanos(*time))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_never_carries_terminal_controls_a_process_chose() {
        let event = Event::new(
            "s",
            "p",
            SystemTime::now(),
            Some(Process {
                pid: 7,
                ppid: 1,
                comm: "\u{1b}[2J\u{1b}[31mx".into(),
                exe: None,
                uid: 0,
            }),
            What::FileDenied {
                path: "/w/\u{202e}txt.exe\n\u{9b}31m".into(),
                access: "fs.read_file".into(),
                layer: None,
                rule: None,
                target: None,
            },
        );
        let line = event.summary();
        assert!(
            !line.chars().any(|c| c.is_control() || c == '\u{202e}'),
            "{line:?}"
        );
        assert!(line.contains("\\u{1b}[2J"), "{line}");
        assert!(line.contains("\\u{202e}txt.exe\\n"), "{line}");
    }

    #[test]
    fn an_event_round_trips_through_its_json_form() {
        let event = Event::new(
            "coding-agent-1-0",
            "coding-agent",
            SystemTime::now(),
            Some(Process {
                pid: 7,
                ppid: 1,
                comm: "curl".into(),
                exe: Some("/usr/bin/curl".into()),
                uid: 1000,
            }),
            What::NetworkDenied {
                address: "10.0.0.1".parse().unwrap(),
                port: 443,
                protocol: Protocol::Tcp,
                reason: NetReason::NotAllowed,
                domain: None,
            },
        );
        let json = serde_json::to_string(&event).unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["kind"], "network_denied");
        assert_eq!(value["address"], "10.0.0.1");
        assert_eq!(value["process"]["comm"], "curl");
        assert_eq!(value["v"], 1);
        assert!(value.get("domain").is_none());
        let back: Event = serde_json::from_str(&json).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn ids_sort_by_time() {
        let t = SystemTime::now();
        let a = Event::new("s", "p", t, None, What::Fork { child_pid: 1 });
        let b = Event::new(
            "s",
            "p",
            t + std::time::Duration::from_millis(2),
            None,
            What::Fork { child_pid: 2 },
        );
        assert!(a.id < b.id);
        assert_eq!(a.what.kind(), "fork");
    }
}

/// The JSON Schema of the event form, shipped in the repository (`schema/event.v1.json`).
pub const SCHEMA: &str = include_str!("../../schema/event.v1.json");

#[cfg(test)]
mod schema_tests {
    use super::*;

    fn one_of_each() -> Vec<What> {
        vec![
            What::NetworkDenied {
                address: "10.0.0.1".parse().unwrap(),
                port: 443,
                protocol: Protocol::Tcp,
                reason: NetReason::NotAllowed,
                domain: Some("example.com".into()),
            },
            What::DnsDenied {
                domain: "rebind.test".into(),
                query_type: "A".into(),
                reason: DnsReason::Rebind,
                address: Some("127.0.0.1".parse().unwrap()),
            },
            What::SyscallDenied {
                nr: 272,
                syscall: "unshare".into(),
                args: vec![0x1000_0000, 0, 0, 0, 0, 0],
                errno: 1,
            },
            What::FileDenied {
                path: "/etc/shadow".into(),
                access: "fs.read_file".into(),
                layer: Some(FileLayer::Deny),
                rule: Some("/etc/shadow".into()),
                target: None,
            },
            What::OtherDenied {
                blockers: "scope.signal".into(),
                detail: "opid=1".into(),
            },
            What::Exec {
                filename: "/bin/sh".into(),
            },
            What::Fork { child_pid: 9 },
            What::Exit {
                code: Some(0),
                signal: None,
            },
            What::EventsLost {
                count: 3,
                reason: LossReason::SpoolFull,
            },
            What::Contained {
                action: Action::Kill,
            },
            What::ResponderAction {
                action: Action::Isolate,
                actor: Actor {
                    via: "socket".into(),
                    uid: Some(0),
                    pid: Some(1),
                    name: Some("root".into()),
                },
                result: ActionResult::Done,
                error: None,
                evidence: None,
                took_ms: 1,
                unseen: None,
            },
            What::SessionStarted {
                uid: 1000,
                user: Some("dev".into()),
                command: vec!["aider".into(), "--yes".into()],
                profile_sha256: "ab".repeat(32),
                workspace: "/home/dev/project".into(),
            },
        ]
    }

    #[test]
    fn severity_follows_what_was_tried() {
        let file = |layer, rule: &str| What::FileDenied {
            path: "/x".into(),
            access: "fs.read_file".into(),
            layer: Some(layer),
            rule: Some(rule.into()),
            target: None,
        };
        assert_eq!(
            file(FileLayer::Deny, "/root/.ssh").severity(),
            Severity::High
        );
        assert_eq!(
            file(FileLayer::ReadOnly, "/w/.git").severity(),
            Severity::High
        );
        assert_eq!(
            file(FileLayer::ReadOnly, "/usr").severity(),
            Severity::Medium
        );
        assert_eq!(file(FileLayer::NotInView, "/x").severity(), Severity::Low);
        let syscall = |name: &str| What::SyscallDenied {
            nr: 0,
            syscall: name.into(),
            args: vec![0; 6],
            errno: 1,
        };
        assert_eq!(syscall("ptrace").severity(), Severity::High);
        assert_eq!(syscall("io_uring_setup").severity(), Severity::Medium);
        let lost = |reason| What::EventsLost { count: 1, reason };
        assert_eq!(
            lost(LossReason::RingTampered).severity(),
            Severity::Critical
        );
        assert_eq!(lost(LossReason::Unexamined).severity(), Severity::Low);
        for what in one_of_each() {
            let event = Event::new("s-1-0", "s", SystemTime::now(), None, what);
            assert_eq!(event.severity, Some(event.what.severity()), "set by new()");
            let json = serde_json::to_value(&event).unwrap();
            assert_eq!(json["severity"], event.what.severity().as_str());
        }
        assert!(Severity::Info < Severity::Low && Severity::High < Severity::Critical);
        assert_eq!("high".parse::<Severity>(), Ok(Severity::High));
        assert!("hihg".parse::<Severity>().is_err());
    }

    /// Checks what the schema says of one event: the kind is listed, the required fields
    /// (top level and the kind's) are there, no field is one the schema does not name, and
    /// a value the schema lists the choices of is one of them (an object's fields alike).
    #[test]
    fn every_kind_matches_the_shipped_schema() {
        let schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
        let kinds: Vec<&str> = schema["properties"]["kind"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        let all = one_of_each();
        assert_eq!(kinds.len(), all.len(), "one schema kind per variant");
        assert_eq!(kinds, What::KINDS, "What::KINDS is the schema's list");
        for what in &all {
            assert_eq!(
                What::VIOLATIONS.contains(&what.kind()),
                what.is_violation(),
                "{}",
                what.kind()
            );
        }
        for action in ["isolate", "release", "freeze", "thaw", "kill"] {
            let parsed: Action = action.parse().unwrap();
            assert_eq!(parsed.as_str(), action);
            assert_eq!(serde_json::to_value(parsed).unwrap(), action);
        }
        // Beside one of each kind: the optional parts the first ones leave out.
        let rule = |action, unseen, evidence| What::ResponderAction {
            action,
            actor: Actor {
                via: "rule".into(),
                uid: None,
                pid: None,
                name: Some("shadow".into()),
            },
            result: ActionResult::Done,
            error: None,
            took_ms: 0,
            evidence,
            unseen,
        };
        let archive = EvidenceRecord {
            manifest_sha256: "a".repeat(64),
            archive_sha256: "b".repeat(64),
            bytes: 1,
            files: 2,
            processes: 3,
            state: "frozen".into(),
        };
        let mut examples = all;
        examples.push(rule(Action::Freeze, Some(LossReason::RingFull), None));
        examples.push(rule(Action::Alert, Some(LossReason::AuditOverrun), None));
        examples.push(rule(Action::Evidence, None, Some(archive)));
        for what in examples {
            let mut event = Event::new("s-1-0", "s", SystemTime::now(), None, what);
            if event.what.is_violation() {
                event.burst = Some(Burst {
                    count: 2,
                    first_seen: event.time,
                    last_seen: event.time,
                });
            }
            let json = serde_json::to_value(&event).unwrap();
            let kind = json["kind"].as_str().unwrap();
            assert!(kinds.contains(&kind), "{kind} is not in the schema");
            let rule = schema["allOf"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["if"]["properties"]["kind"]["const"] == kind)
                .unwrap_or_else(|| panic!("no rule for {kind}"));
            let required = schema["required"]
                .as_array()
                .unwrap()
                .iter()
                .chain(rule["then"]["required"].as_array().unwrap());
            for field in required {
                let field = field.as_str().unwrap();
                assert!(!json[field].is_null(), "{kind} lacks {field}: {json}");
            }
            for (field, value) in json.as_object().unwrap() {
                let said = [
                    &schema["properties"][field],
                    &rule["then"]["properties"][field],
                ]
                .into_iter()
                .find(|s| !s.is_null());
                let said =
                    said.unwrap_or_else(|| panic!("{kind}: field {field} is not in the schema"));
                conforms(&format!("{kind}.{field}"), said, value);
            }
        }
    }

    /// `value` is one of the choices `said` lists, if it lists them; an object's fields
    /// are named and conform, the required ones there.
    fn conforms(at: &str, said: &serde_json::Value, value: &serde_json::Value) {
        if let Some(choices) = said["enum"].as_array() {
            assert!(
                choices.contains(value),
                "{at}: {value} is not one of {choices:?}"
            );
        }
        let Some(fields) = value.as_object() else {
            return;
        };
        for field in said["required"].as_array().into_iter().flatten() {
            let field = field.as_str().unwrap();
            assert!(fields.contains_key(field), "{at} lacks {field}");
        }
        if said["properties"].is_null() {
            return;
        }
        for (field, inner) in fields {
            let at = format!("{at}.{field}");
            let inner_said = &said["properties"][field];
            assert!(!inner_said.is_null(), "{at} is not in the schema");
            conforms(&at, inner_said, inner);
        }
    }
}
