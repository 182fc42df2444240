//! `cordon profile learn`: a profile that allows what an audited run needed and nothing
//! more, written the way a person would write it.
//!
//! The input is the events of a run in `mode = "audit"` under a base profile: every access,
//! connection, name, bind and syscall the base would have refused (and, from the same run,
//! what audit mode still refused because it would have changed the host: a write outside the
//! trees the base writes). The output extends the base and adds one rule per need:
//!
//! * paths are folded to what a person writes: an executable's directory, a directory when
//!   two or more of its files were needed for the same access, a parent when three or more
//!   of its directories were; never above a second-level directory (`/opt/tool`, `{home}/x`),
//!   and written with the placeholders `{workspace}`, `{home}` and `{tmp}`;
//! * connections by the host name they were resolved from, addresses only when no name was;
//! * every rule carries a comment saying what needed it.
//!
//! What no rule may allow is never learned: the base's `deny` entries, its `read_only`
//! entries and git metadata (protections, not oversights). Those are listed at the end as
//! comments.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::event::{DnsReason, Event, FileLayer, Protocol, What};
use crate::policy::Policy;

/// What a path is needed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    Read,
    Write,
    Exec,
}

impl Need {
    fn list(self) -> &'static str {
        match self {
            Need::Read => "read",
            Need::Write => "write",
            Need::Exec => "exec",
        }
    }
}

/// One learned rule and what needed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule<T> {
    pub value: T,
    /// Who needed it and for what, for the comment beside it.
    pub why: String,
}

/// A profile's worth of needs.
#[derive(Debug, Default)]
pub struct Learned {
    pub paths: BTreeMap<Need, Vec<Rule<String>>>,
    /// Destinations: (host or cidr, ports, protocol).
    pub egress: Vec<Rule<Egress>>,
    pub bind_ports: Vec<Rule<u16>>,
    pub syscalls: Vec<Rule<String>>,
    /// What was seen and not learned, and why.
    pub not_learned: Vec<String>,
    /// Events the audit lost: the profile may be short of what the command needs.
    pub lost: u64,
    /// The command the audited session ran, when its events say.
    pub command: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Egress {
    /// `host = "..."` or `cidr = "..."`.
    pub host: Option<String>,
    pub cidr: Option<String>,
    pub ports: BTreeSet<u16>,
    pub tcp: bool,
    pub udp: bool,
}

/// Learns from `events` (an audited run under `base`).
pub fn learn(events: &[Event], base: &Policy) -> Learned {
    let mut learned = Learned::default();
    let names = Names::of(base);
    // (need, path) -> the first reason, whether the path is a directory, and the other
    // paths that needed it.
    let mut needs: BTreeMap<(Need, PathBuf), (String, bool, BTreeSet<PathBuf>)> = BTreeMap::new();
    let mut dests: BTreeMap<(Option<String>, Option<String>), (Egress, String)> = BTreeMap::new();
    for event in events {
        let who = event
            .process
            .as_ref()
            .map_or_else(|| "the sandbox".to_string(), |p| p.comm.clone());
        match &event.what {
            What::SessionStarted { command, .. } => learned.command = Some(command.clone()),
            // Missing paths let go above the rate are not the audit's records.
            What::EventsLost {
                reason: crate::event::LossReason::Unexamined,
                ..
            } => {}
            What::EventsLost { count, .. } => learned.lost += count,
            What::FileDenied {
                path,
                access,
                layer,
                rule,
                target,
            } => {
                // Where the access led (a workspace symlink into the home) is what needs a rule.
                let path = target.as_ref().unwrap_or(path);
                let Some(path) = absolute(path, base) else {
                    learned
                        .not_learned
                        .push(format!("{who}: {access} of {path}: a relative path"));
                    continue;
                };
                if let Some(why) = protected(&path, *layer, rule.as_deref(), base) {
                    learned
                        .not_learned
                        .push(format!("{who}: {access} of {}: {why}", path.display()));
                    continue;
                }
                if path.to_string_lossy().contains(['{', '}']) {
                    // A profile's paths have no way to write a brace that is not a placeholder.
                    learned.not_learned.push(format!(
                        "{who}: {access} of {}: a path with a brace, which a profile cannot name",
                        path.display()
                    ));
                    continue;
                }
                // A file opened to create it that exists (O_APPEND | O_CREAT): a write of the
                // file, not of its directory.
                let access = if access == "fs.make_reg" && path.is_file() {
                    "fs.write_file"
                } else {
                    access.as_str()
                };
                let (need, at, dir) = need_of(access, &path);
                let shown = names.show(&path);
                if terminals(&at) {
                    learned.not_learned.push(format!(
                        "{who}: {access} of {shown}: the user's other terminals are not the sandbox's"
                    ));
                    continue;
                }
                if supervisors(&at) {
                    learned
                        .not_learned
                        .push(format!("{who}: {access} of {shown}: {SUPERVISORS}"));
                    continue;
                }
                if need == Need::Write && system_tree(&at) {
                    learned.not_learned.push(format!(
                        "{who}: {access} of {shown}: the host's system files are not the sandbox's to change"
                    ));
                    continue;
                }
                if dir && !names.narrow_enough(&at) {
                    learned.not_learned.push(format!(
                        "{who}: {access} of {shown}: it needs {} on {}, wider than a rule learn writes; grant it by hand if it is meant",
                        need.list(),
                        names.show(&at)
                    ));
                    continue;
                }
                let first = format!("{who}: {access} of {shown}");
                let entry = needs
                    .entry((need, at))
                    .or_insert_with(|| (first, dir, BTreeSet::new()));
                // Every file that needed the rule, for the count in its comment.
                entry.2.insert(path);
            }
            What::NetworkDenied {
                address,
                port,
                protocol,
                domain,
                ..
            } => {
                let (host, cidr) = match domain {
                    Some(d) => (Some(d.clone()), None),
                    None => (None, Some(cidr_of(*address))),
                };
                let key = (host.clone(), cidr.clone());
                let (dest, why) = dests.entry(key).or_insert_with(|| {
                    (
                        Egress {
                            host,
                            cidr,
                            ports: BTreeSet::new(),
                            tcp: false,
                            udp: false,
                        },
                        format!("{who} connected to {address}:{port}"),
                    )
                });
                dest.ports.insert(*port);
                // A connection says more than the lookup before it.
                if dest.ports.len() == 1 && why.contains(" looked up ") {
                    *why = format!("{who} connected to {address}:{port}");
                }
                match protocol {
                    Protocol::Udp => dest.udp = true,
                    _ => dest.tcp = true,
                }
            }
            What::DnsDenied {
                domain, reason, ..
            } => match reason {
                DnsReason::NotAllowed => {
                    dests
                        .entry((Some(domain.clone()), None))
                        .or_insert_with(|| {
                            (
                                Egress {
                                    host: Some(domain.clone()),
                                    cidr: None,
                                    ports: BTreeSet::new(),
                                    tcp: false,
                                    udp: false,
                                },
                                format!("{who} looked up {domain}"),
                            )
                        });
                }
                DnsReason::Rebind => learned.not_learned.push(format!(
                    "{who}: {domain} answered into the host or its networks: allow it with a `cidr` rule if that is meant"
                )),
                DnsReason::BadName => learned
                    .not_learned
                    .push(format!("{who}: {domain}: not a host name")),
            },
            What::OtherDenied { blockers, detail } if blockers == "net.bind_tcp" => {
                match detail
                    .split_whitespace()
                    .find_map(|f| f.strip_prefix("src="))
                    .and_then(|p| p.parse::<u16>().ok())
                {
                    Some(port) => {
                        if !learned.bind_ports.iter().any(|r| r.value == port) {
                            let what = if port == 0 {
                                " (0: a port the kernel picks)"
                            } else {
                                ""
                            };
                            learned.bind_ports.push(Rule {
                                value: port,
                                why: format!("{who} bound {detail}{what}"),
                            });
                        }
                    }
                    None => learned.not_learned.push(format!("{who}: {blockers} {detail}")),
                }
            }
            What::OtherDenied { blockers, detail } => learned
                .not_learned
                .push(format!("{who}: {blockers} {detail}: not a rule a profile holds")),
            // Refused even under audit (it could end the audit or change the host for good):
            // never learned.
            What::SyscallDenied { syscall, .. }
                if event.enforced
                    || crate::policy::AUDIT_STILL_DENIES.contains(&syscall.as_str()) =>
            {
                learned.not_learned.push(format!(
                    "{who}: called {syscall}, which the base denies and an audit still refused"
                ));
            }
            What::SyscallDenied { syscall, .. }
                if !learned.syscalls.iter().any(|r| &r.value == syscall) =>
            {
                learned.syscalls.push(Rule {
                    value: syscall.clone(),
                    why: format!("{who} called {syscall} (lifts the base's denial)"),
                });
            }
            _ => {}
        }
    }
    learned.paths = fold(needs, &names);
    learned.egress = dests
        .into_values()
        .map(|(mut dest, why)| {
            let why = if dest.ports.is_empty() {
                // Looked up, never connected to: a rule needs ports; HTTPS is the usual one.
                dest.ports.insert(443);
                dest.tcp = true;
                format!("{why} but did not connect: port 443 assumed")
            } else {
                why
            };
            Rule { value: dest, why }
        })
        .collect();
    learned
}

/// `path` as an absolute path (the sandbox's, which is the host's for what it names). A
/// relative one is taken from the workspace (where they are asked from far more often than
/// anywhere else) only when it stays inside it; otherwise it is not placed.
fn absolute(path: &str, base: &Policy) -> Option<PathBuf> {
    let p = Path::new(path);
    if p.is_absolute() {
        return Some(crate::sandbox::view::normalize(p));
    }
    let placed = crate::sandbox::view::normalize(&base.workspace.join(p));
    placed.starts_with(&base.workspace).then_some(placed)
}

/// The host's system trees: a write there is never a rule to learn or to suggest.
fn system_tree(path: &Path) -> bool {
    [
        "/usr", "/etc", "/lib", "/lib32", "/lib64", "/bin", "/sbin", "/boot", "/sys", "/proc",
        "/dev",
    ]
    .iter()
    .any(|t| path.starts_with(t))
}

/// What the sandbox's supervisor runs on: the host's cgroups (every sandbox's processes and
/// limits, and where a process could be moved out of its own) and Cordon's eBPF pins. No
/// rule is offered for them, not even to read.
fn supervisors(path: &Path) -> bool {
    path.starts_with("/sys/fs/cgroup") || path.starts_with("/sys/fs/bpf")
}

/// Why [`supervisors`] stay out of every sandbox.
const SUPERVISORS: &str =
    "the host's cgroups and eBPF pins are its supervisor's, not the sandbox's";

/// The terminals of the user (`/dev/pts`): the sandbox's own is in its view already; a rule
/// for the others would let it read and type into them.
fn terminals(path: &Path) -> bool {
    path.starts_with("/dev/pts") || path.starts_with("/dev/ptmx")
}

/// Why a denied access must stay denied, when it must.
fn protected(
    path: &Path,
    layer: Option<FileLayer>,
    rule: Option<&str>,
    base: &Policy,
) -> Option<&'static str> {
    let fs = &base.filesystem;
    if layer == Some(FileLayer::Deny) || fs.deny.iter().any(|d| path.starts_with(d)) {
        return Some("under a `deny` entry of the profile");
    }
    let metadata = |p: &Path| {
        fs.repositories
            .iter()
            .any(|r| p.starts_with(r.join(".git")))
    };
    let read_only = |p: &Path| fs.read_only.iter().any(|r| p.starts_with(r));
    if read_only(path) || rule.map(Path::new).is_some_and(read_only) {
        return Some("a `read_only` entry of the profile");
    }
    if metadata(path) || rule.map(Path::new).is_some_and(metadata) {
        return Some("git metadata the profile keeps read-only");
    }
    if layer == Some(FileLayer::Unplaced) {
        return Some("a path the watcher could not place");
    }
    None
}

/// The need an access is, the path that needs it, and whether that is a directory: a
/// file made or removed needs its directory written; a program runs from its directory.
fn need_of(access: &str, path: &Path) -> (Need, PathBuf, bool) {
    let parent = || path.parent().unwrap_or(Path::new("/")).to_path_buf();
    match access {
        "fs.execute" => (Need::Exec, parent(), true),
        "fs.read_dir" => (Need::Read, path.to_path_buf(), true),
        "fs.read_file" | "fs.stat" => (Need::Read, path.to_path_buf(), false),
        "fs.write_file" | "fs.truncate" => (Need::Write, path.to_path_buf(), false),
        _ => (Need::Write, parent(), true),
    }
}

/// The rule that would allow what one event reports, as a person adds it to the profile:
/// what the terminal says under a denial (`cordon run`), so a new user learns the profile's
/// language from the refusals themselves.
#[derive(Debug)]
pub struct Advice {
    names: Names,
    base: Policy,
}

impl Advice {
    pub fn of(base: &Policy) -> Self {
        Self {
            names: Names::of(base),
            base: base.clone(),
        }
    }

    /// `add "{workspace}/.venv/" to [filesystem] exec`, or why none is offered.
    pub fn rule_for(&self, event: &Event) -> Option<String> {
        match &event.what {
            What::FileDenied {
                path,
                access,
                layer,
                rule,
                target,
            } => {
                let path = absolute(target.as_ref().unwrap_or(path), &self.base)?;
                if let Some(why) = protected(&path, *layer, rule.as_deref(), &self.base) {
                    return Some(format!("refused on purpose: {why}"));
                }
                let (need, at, dir) = need_of(access, &path);
                let shown = self.names.show(&at);
                if terminals(&at) {
                    return Some(
                        "refused on purpose: the user's other terminals are not the sandbox's"
                            .into(),
                    );
                }
                if supervisors(&at) {
                    return Some(format!("refused on purpose: {SUPERVISORS}"));
                }
                if need == Need::Write && system_tree(&at) {
                    return Some(
                        "refused on purpose: the host's system files are not the sandbox's to change"
                            .into(),
                    );
                }
                if dir && !self.names.narrow_enough(&at) {
                    return Some(format!(
                        "it needs {} on {shown}, a wide rule: grant it by hand if it is meant",
                        need.list()
                    ));
                }
                let slash = if dir { "/" } else { "" };
                Some(format!(
                    "to allow it: add \"{shown}{slash}\" to [filesystem] {}",
                    need.list()
                ))
            }
            What::NetworkDenied {
                address,
                port,
                protocol,
                reason: crate::event::NetReason::NotAllowed,
                domain,
            } => {
                let to = match domain {
                    Some(d) => format!("host = {}", quoted(d)),
                    None => format!("cidr = {}", quoted(&cidr_of(*address))),
                };
                let proto = match protocol {
                    Protocol::Udp => "udp",
                    _ => "tcp",
                };
                Some(format!(
                    "to allow it: add {{ {to}, ports = [{port}], proto = \"{proto}\" }} to [network] egress"
                ))
            }
            What::DnsDenied {
                domain,
                reason: DnsReason::NotAllowed,
                ..
            } => Some(format!(
                "to allow it: add {{ host = {}, ports = [443] }} to [network] egress (with the ports it uses)",
                quoted(domain)
            )),
            What::SyscallDenied { syscall, .. } => {
                let narrow = self
                    .base
                    .syscalls
                    .deny
                    .iter()
                    .any(|r| &r.name == syscall && r.when.is_some());
                if narrow {
                    Some(format!(
                        "refused on purpose: the profile denies this use of {syscall} only (its arguments), which no program needs"
                    ))
                } else if crate::policy::AUDIT_STILL_DENIES.contains(&syscall.as_str()) {
                    Some("refused on purpose: it reaches for the kernel or other processes".into())
                } else {
                    Some(format!("to allow it: add {} to [syscalls] allow", quoted(syscall)))
                }
            }
            What::OtherDenied { blockers, detail } if blockers == "net.bind_tcp" => detail
                .split_whitespace()
                .find_map(|f| f.strip_prefix("src="))
                .map(|port| format!("to allow it: add {port} to [network] bind_ports")),
            _ => None,
        }
    }
}

/// The workspace, home and private /tmp of the base, for placeholders and folding limits.
#[derive(Debug)]
struct Names {
    workspace: PathBuf,
    home: PathBuf,
    tmp: PathBuf,
    /// The trees the base writes.
    writable: Vec<PathBuf>,
}

impl Names {
    fn of(base: &Policy) -> Self {
        Self {
            workspace: base.workspace.clone(),
            home: base.identity.home.clone(),
            tmp: PathBuf::from(crate::policy::SANDBOX_TMP),
            writable: base
                .filesystem
                .rules
                .iter()
                .filter(|r| r.access.write)
                .map(|r| r.path.clone())
                .collect(),
        }
    }

    /// Whether the base writes `path`.
    fn written(&self, path: &Path) -> bool {
        self.writable.iter().any(|w| self.holds(w, path))
    }

    /// The path with its placeholder: `{workspace}/src`, `{home}/.npm`, `{tmp}`. The
    /// deepest of the three that holds it names it: a home or a workspace below the host's
    /// /tmp is that, not the sandbox's private /tmp.
    fn show(&self, path: &Path) -> String {
        let mut best: Option<(&str, &Path)> = None;
        for (root, name) in [
            (&self.workspace, "{workspace}"),
            (&self.tmp, "{tmp}"),
            (&self.home, "{home}"),
        ] {
            // A root of `/` (a home or a workspace there) would name every path.
            if root.parent().is_none() {
                continue;
            }
            let Ok(rest) = path.strip_prefix(root) else {
                continue;
            };
            if best.is_none_or(|(_, shortest)| {
                rest.components().count() < shortest.components().count()
            }) {
                best = Some((name, rest));
            }
        }
        match best {
            Some((name, rest)) if rest.as_os_str().is_empty() => name.to_string(),
            Some((name, rest)) => format!("{name}/{}", rest.display()),
            None => path.display().to_string(),
        }
    }

    /// Whether a rule on `rule` holds for `path`: below it, and for a rule on the private
    /// /tmp, in the private /tmp.
    fn holds(&self, rule: &Path, path: &Path) -> bool {
        path.starts_with(rule) && (rule != self.tmp || self.in_private_tmp(path))
    }

    /// Whether `path` is in the sandbox's private /tmp, whose names are made afresh each
    /// run: below /tmp, and not in a workspace or a home the host keeps below its /tmp
    /// (those the sandbox sees through binds of their own).
    fn in_private_tmp(&self, path: &Path) -> bool {
        let own_bind =
            |root: &Path| root.starts_with(&self.tmp) && root != self.tmp && path.starts_with(root);
        path.starts_with(&self.tmp) && !own_bind(&self.workspace) && !own_bind(&self.home)
    }

    /// Whether a rule may be as wide as the directory `dir` (a rule holds for all below it):
    /// not the root, a top-level directory, the home itself or anything above the home or
    /// the workspace. The workspace itself may be.
    fn narrow_enough(&self, dir: &Path) -> bool {
        let depth = dir.components().count(); // "/" counts as one
        dir == self.workspace
            || dir == self.tmp
            || (depth >= 3 && !self.home.starts_with(dir) && !self.workspace.starts_with(dir))
    }
}

/// Folds needed paths to the rules a person would write (see the module's documentation).
fn fold(
    needs: BTreeMap<(Need, PathBuf), (String, bool, BTreeSet<PathBuf>)>,
    names: &Names,
) -> BTreeMap<Need, Vec<Rule<String>>> {
    let mut by_need: BTreeMap<Need, BTreeMap<PathBuf, Found>> = BTreeMap::new();
    for ((need, path), (first, dir, paths)) in needs {
        // The private /tmp's names are made afresh each run: the rule is the whole of it.
        let (path, dir) = if names.in_private_tmp(&path) {
            (names.tmp.clone(), true)
        } else {
            (path, dir)
        };
        let found = by_need
            .entry(need)
            .or_default()
            .entry(path)
            .or_insert(Found {
                first,
                dir,
                files: 0,
            });
        found.files += paths.len();
    }
    let mut folded: BTreeMap<Need, BTreeMap<PathBuf, Found>> = BTreeMap::new();
    for (need, mut paths) in by_need {
        // Two files of one directory: the directory. Three directories of one: the parent.
        for threshold in [2usize, 3] {
            let mut children: BTreeMap<PathBuf, Vec<PathBuf>> = BTreeMap::new();
            for path in paths.keys() {
                if let Some(parent) = path.parent() {
                    children
                        .entry(parent.to_path_buf())
                        .or_default()
                        .push(path.clone());
                }
            }
            for (parent, kids) in children {
                if kids.len() < threshold || !names.narrow_enough(&parent) {
                    continue;
                }
                let taken: Vec<Found> = kids.iter().filter_map(|k| paths.remove(k)).collect();
                let files = taken.iter().map(|f| f.files).sum();
                let first = taken
                    .into_iter()
                    .next()
                    .map(|f| f.first)
                    .unwrap_or_default();
                paths.entry(parent).or_insert(Found {
                    first,
                    dir: true,
                    files,
                });
            }
        }
        folded.insert(need, paths);
    }
    // A path inside another rule of the same need adds nothing; nor does a read inside (or
    // of) a tree written or run: both read too.
    let rules_of = |needs: &[Need]| -> Vec<PathBuf> {
        needs
            .iter()
            .flat_map(|n| folded.get(n).into_iter().flat_map(|m| m.keys().cloned()))
            .collect()
    };
    let wider = rules_of(&[Need::Write, Need::Exec]);
    let mut out = BTreeMap::new();
    for (need, paths) in &folded {
        let same = rules_of(&[*need]);
        let rules = paths
            .iter()
            .filter(|(p, _)| !same.iter().any(|o| o != *p && names.holds(o, p)))
            .filter(|(p, _)| *need != Need::Read || !wider.iter().any(|o| names.holds(o, p)))
            .map(|(p, found)| {
                let mut why = found.first.clone();
                if found.files > 1 {
                    why.push_str(&format!(" (+{} more)", found.files - 1));
                }
                if *need == Need::Exec && names.written(p) {
                    why.push_str("; the sandbox writes here, so it may run what it writes");
                }
                Rule {
                    // A directory is written with its `/`: made at launch when the sandbox
                    // would make it, so the rule holds for it.
                    value: if found.dir {
                        format!("{}/", names.show(p))
                    } else {
                        names.show(p)
                    },
                    why,
                }
            })
            .collect();
        out.insert(*need, rules);
    }
    out
}

/// A learned path: the first access that needed it, whether it is a directory, and how many
/// files needed it.
struct Found {
    first: String,
    dir: bool,
    files: usize,
}

/// The single address as a prefix.
fn cidr_of(address: std::net::IpAddr) -> String {
    match address {
        std::net::IpAddr::V4(a) => format!("{a}/32"),
        std::net::IpAddr::V6(a) => format!("{a}/128"),
    }
}

/// A TOML string (quoted and escaped).
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// One comment line: what a process chose may hold anything, so control characters, line
/// breaks and the characters that reorder text (bidirectional controls) are shown escaped.
fn comment(s: &str) -> String {
    let hidden = |c: char| {
        c.is_control()
            || matches!(
                c,
                '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{2028}' | '\u{2029}'
            )
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c)
    };
    s.chars()
        .flat_map(|c| {
            if hidden(c) {
                c.escape_unicode().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

impl Learned {
    /// Whether the audit found nothing the base would refuse.
    pub fn is_empty(&self) -> bool {
        self.paths.values().all(Vec::is_empty)
            && self.egress.is_empty()
            && self.bind_ports.is_empty()
            && self.syscalls.is_empty()
    }

    /// The learned profile, named `name`, extending the base profile `base`.
    pub fn to_toml(&self, name: &str, base: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# Learned by `cordon profile learn` from an audited run under `{}`.",
            comment(base)
        );
        if let Some(command) = &self.command {
            let _ = writeln!(out, "# The run: {}", comment(&command.join(" ")));
        }
        let _ = writeln!(
            out,
            "# Each rule allows what the run needed beyond the base, and says what needed it."
        );
        if self.lost > 0 {
            let _ = writeln!(
                out,
                "# WARNING: the audit lost {} events; this profile may be short of what the run needs.",
                self.lost
            );
        }
        let _ = writeln!(out, "[profile]");
        let _ = writeln!(out, "name = {}", quoted(name));
        let _ = writeln!(out, "extends = [{}]", quoted(base));
        let _ = writeln!(out, "mode = \"enforce\"");
        let lists: Vec<(Need, &Vec<Rule<String>>)> = self
            .paths
            .iter()
            .filter(|(_, rules)| !rules.is_empty())
            .map(|(n, r)| (*n, r))
            .collect();
        if !lists.is_empty() {
            let _ = writeln!(out, "\n[filesystem]");
            for (need, rules) in lists {
                let _ = writeln!(out, "{} = [", need.list());
                for rule in rules {
                    let _ = writeln!(out, "  {}, # {}", quoted(&rule.value), comment(&rule.why));
                }
                let _ = writeln!(out, "]");
            }
        }
        if !self.egress.is_empty() || !self.bind_ports.is_empty() {
            let _ = writeln!(out, "\n[network]");
        }
        if !self.egress.is_empty() {
            let _ = writeln!(out, "egress = [");
            for rule in &self.egress {
                let d = &rule.value;
                let to = match (&d.host, &d.cidr) {
                    (Some(h), _) => format!("host = {}", quoted(h)),
                    (None, Some(c)) => format!("cidr = {}", quoted(c)),
                    (None, None) => continue,
                };
                let ports: Vec<String> = d.ports.iter().map(u16::to_string).collect();
                let proto = match (d.tcp, d.udp) {
                    (true, false) => ", proto = \"tcp\"",
                    (false, true) => ", proto = \"udp\"",
                    _ => "",
                };
                let _ = writeln!(
                    out,
                    "  {{ {to}, ports = [{}]{proto} }}, # {}",
                    ports.join(", "),
                    comment(&rule.why)
                );
            }
            let _ = writeln!(out, "]");
        }
        if !self.bind_ports.is_empty() {
            let _ = writeln!(out, "bind_ports = [");
            for rule in &self.bind_ports {
                let _ = writeln!(out, "  {}, # {}", rule.value, comment(&rule.why));
            }
            let _ = writeln!(out, "]");
        }
        if !self.syscalls.is_empty() {
            let _ = writeln!(out, "\n[syscalls]");
            let _ = writeln!(out, "allow = [");
            for rule in &self.syscalls {
                let _ = writeln!(out, "  {}, # {}", quoted(&rule.value), comment(&rule.why));
            }
            let _ = writeln!(out, "]");
        }
        if !self.not_learned.is_empty() {
            let _ = writeln!(out, "\n# Seen and not learned:");
            let mut seen = BTreeSet::new();
            for line in &self.not_learned {
                if seen.insert(line) {
                    let _ = writeln!(out, "#   {}", comment(line));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{NetReason, Process};
    use crate::policy::Context;
    use crate::profile::SearchPath;

    /// The base: coding-agent without its port 443 to everywhere, in /work/ws for /home/dev.
    fn base() -> Policy {
        base_with_home("/home/dev")
    }

    fn base_with_home(home: &str) -> Policy {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.toml");
        std::fs::write(
            &path,
            "[profile]\nname = \"b\"\nextends = [\"coding-agent\"]\n[network]\nconnect_ports = { replace = [] }\n[filesystem]\nread_only = [\"{workspace}/Makefile\"]\n",
        )
        .unwrap();
        let profile = SearchPath::new(vec![])
            .load(path.to_str().unwrap())
            .unwrap();
        let ctx = Context {
            workspace: PathBuf::from("/work/ws"),
            caller_home: Some(PathBuf::from(home)),
            caller_uid: 1000,
            caller_gid: 1000,
            caller_groups: vec![1000],
        };
        crate::policy::compile(&profile, &ctx).unwrap()
    }

    fn event(comm: &str, what: What) -> Event {
        let process = Process {
            pid: 7,
            ppid: 1,
            comm: comm.into(),
            exe: None,
            uid: 1000,
        };
        let mut e = Event::new(
            "b-1-0",
            "b",
            std::time::SystemTime::now(),
            Some(process),
            what,
        );
        e.enforced = false;
        e
    }

    fn file(comm: &str, path: &str, access: &str, layer: FileLayer) -> Event {
        event(
            comm,
            What::FileDenied {
                path: path.into(),
                access: access.into(),
                layer: Some(layer),
                rule: None,
                target: None,
            },
        )
    }

    fn values(learned: &Learned, need: Need) -> Vec<String> {
        learned
            .paths
            .get(&need)
            .map(|rules| rules.iter().map(|r| r.value.clone()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn paths_fold_to_directories_with_placeholders() {
        let events = [
            file(
                "node",
                "/home/dev/.npm/_cacache/a",
                "fs.read_file",
                FileLayer::NotInView,
            ),
            file(
                "node",
                "/home/dev/.npm/_cacache/b",
                "fs.read_file",
                FileLayer::NotInView,
            ),
            file(
                "node",
                "/home/dev/.npmrc",
                "fs.read_file",
                FileLayer::NotInView,
            ),
            file(
                "sh",
                "/opt/tool/bin/tool",
                "fs.execute",
                FileLayer::NotInView,
            ),
            file(
                "sh",
                "/opt/tool/bin/helper",
                "fs.execute",
                FileLayer::NotInView,
            ),
            file(
                "sh",
                "/work/ws/.venv/bin/pip",
                "fs.execute",
                FileLayer::Noexec,
            ),
            file(
                "pip",
                "/home/dev/.cache/pip/x",
                "fs.make_reg",
                FileLayer::ReadOnly,
            ),
            file("cc", "/tmp/cc1234/a.out", "fs.execute", FileLayer::Noexec),
        ];
        let learned = learn(&events, &base());
        assert_eq!(
            values(&learned, Need::Read),
            ["{home}/.npm/_cacache/", "{home}/.npmrc"],
            "two files of a directory: the directory; one file: the file"
        );
        assert_eq!(
            values(&learned, Need::Exec),
            ["/opt/tool/bin/", "{tmp}/", "{workspace}/.venv/bin/"],
            "programs by their directory; the private /tmp whole"
        );
        assert_eq!(values(&learned, Need::Write), ["{home}/.cache/pip/"]);
        let text = learned.to_toml("b-learned", "b");
        assert!(text.contains("extends = [\"b\"]"), "{text}");
        assert!(
            text.contains("\"/opt/tool/bin/\", # sh: fs.execute of /opt/tool/bin/tool (+1 more)"),
            "{text}"
        );
    }

    #[test]
    fn folding_stops_at_the_second_level_and_the_home() {
        let events: Vec<Event> = ["a", "b", "c"]
            .iter()
            .flat_map(|d| {
                [
                    file(
                        "x",
                        &format!("/home/dev/.{d}/one"),
                        "fs.read_file",
                        FileLayer::NotInView,
                    ),
                    file(
                        "x",
                        &format!("/home/dev/.{d}/two"),
                        "fs.read_file",
                        FileLayer::NotInView,
                    ),
                ]
            })
            .chain([
                file("x", "/srv/a", "fs.read_file", FileLayer::NotInView),
                file("x", "/srv/b", "fs.read_file", FileLayer::NotInView),
            ])
            .collect();
        let learned = learn(&events, &base());
        assert_eq!(
            values(&learned, Need::Read),
            ["{home}/.a/", "{home}/.b/", "{home}/.c/", "/srv/a", "/srv/b"],
            "never the whole home, never a top-level directory"
        );
    }

    #[test]
    fn protections_of_the_base_are_never_learned() {
        let mut denied = file(
            "cat",
            "/home/dev/.ssh/id_ed25519",
            "fs.read_file",
            FileLayer::Deny,
        );
        denied.enforced = true;
        let events = [
            denied,
            file(
                "git",
                "/work/ws/.git/hooks/pre-commit",
                "fs.make_reg",
                FileLayer::ReadOnly,
            ),
            file(
                "make",
                "/work/ws/Makefile",
                "fs.write_file",
                FileLayer::ReadOnly,
            ),
        ];
        let learned = learn(&events, &base());
        assert!(learned.is_empty(), "{learned:?}");
        let text = learned.to_toml("b-learned", "b");
        assert!(text.contains("under a `deny` entry"), "{text}");
        assert!(text.contains("git metadata"), "{text}");
        assert!(text.contains("a `read_only` entry"), "{text}");
    }

    #[test]
    fn the_supervisors_cgroups_and_pins_are_noted_not_learned() {
        let events = [
            file(
                "cat",
                "/sys/fs/cgroup/pids/cordon/tasks",
                "fs.read_file",
                FileLayer::NotInView,
            ),
            file(
                "ls",
                "/sys/fs/bpf/cordon",
                "fs.read_dir",
                FileLayer::NotInView,
            ),
        ];
        noted_not_learned(
            &events,
            &[
                "cat: fs.read_file of /sys/fs/cgroup/pids/cordon/tasks: the host's cgroups and eBPF pins",
                "ls: fs.read_dir of /sys/fs/bpf/cordon: the host's cgroups and eBPF pins",
            ],
        );
    }

    /// `learn` writes no rule for `events`, and its profile's comments hold each of `noted`.
    fn noted_not_learned(events: &[Event], noted: &[&str]) {
        let learned = learn(events, &base());
        assert!(learned.is_empty(), "{:?}", learned.paths);
        let text = learned.to_toml("b-learned", "b");
        for noted in noted {
            assert!(text.contains(noted), "{noted}: {text}");
        }
    }

    #[test]
    fn what_would_open_a_wide_tree_is_noted_not_learned() {
        let events = [
            file("ls", "/", "fs.read_dir", FileLayer::NotInView),
            file("ls", "/home/dev", "fs.read_dir", FileLayer::NotInView),
            file("ls", "/opt", "fs.read_dir", FileLayer::NotInView),
            file(
                "sh",
                "/home/dev/.bashrc",
                "fs.make_reg",
                FileLayer::ReadOnly,
            ),
            file("sh", "/opt/run-me", "fs.execute", FileLayer::NotInView),
            file(
                "cat",
                "../../etc/passwd",
                "fs.read_file",
                FileLayer::NotInView,
            ),
        ];
        noted_not_learned(
            &events,
            &[
                "ls: fs.read_dir of /: it needs read on /, wider than a rule learn writes",
                "ls: fs.read_dir of {home}: it needs read on {home}",
                "sh: fs.make_reg of {home}/.bashrc: it needs write on {home}",
                "sh: fs.execute of /opt/run-me: it needs exec on /opt",
                "cat: fs.read_file of ../../etc/passwd: a relative path",
            ],
        );
    }

    #[test]
    fn syscalls_an_audit_still_refused_are_never_learned() {
        let call = |name: &str, enforced: bool| {
            let mut e = event(
                "x",
                What::SyscallDenied {
                    nr: 0,
                    syscall: name.into(),
                    args: vec![],
                    errno: 1,
                },
            );
            e.enforced = enforced;
            e
        };
        let events = [
            call("unshare", true),
            call("ptrace", false),
            call("personality", false),
        ];
        let learned = learn(&events, &base());
        let allowed: Vec<&str> = learned.syscalls.iter().map(|r| r.value.as_str()).collect();
        assert_eq!(allowed, ["personality"]);
        let text = learned.to_toml("b-learned", "b");
        assert!(
            text.contains("x: called unshare, which the base denies and an audit still refused"),
            "{text}"
        );
    }

    #[test]
    fn a_home_below_the_hosts_tmp_is_the_home_not_the_private_tmp() {
        // The sandbox's /tmp is its own: "{tmp}/u/home/.npmrc" would grant a path there,
        // and the host's file would stay out of view.
        let base = base_with_home("/tmp/u/home");
        let advice = Advice::of(&base);
        assert_eq!(
            advice
                .rule_for(&file(
                    "node",
                    "/tmp/u/home/.npmrc",
                    "fs.read_file",
                    FileLayer::NotInView
                ))
                .unwrap_or_default(),
            "to allow it: add \"{home}/.npmrc\" to [filesystem] read"
        );
        let events = [
            file(
                "node",
                "/tmp/u/home/.config/tool/a",
                "fs.read_file",
                FileLayer::NotInView,
            ),
            file(
                "node",
                "/tmp/u/home/.config/tool/b",
                "fs.read_file",
                FileLayer::NotInView,
            ),
            file("cc", "/tmp/cc1234/a.out", "fs.execute", FileLayer::Noexec),
        ];
        let learned = learn(&events, &base);
        assert_eq!(
            values(&learned, Need::Read),
            ["{home}/.config/tool/"],
            "not taken for a read inside the private /tmp, which the sandbox runs from"
        );
        assert_eq!(
            values(&learned, Need::Exec),
            ["{tmp}/"],
            "what is really in the private /tmp stays the whole of it"
        );
        // A home of `/` (no HOME, no passwd entry; containers) holds /tmp: still the
        // private /tmp.
        let root_home = base_with_home("/");
        let learned = learn(&events[2..], &root_home);
        assert_eq!(values(&learned, Need::Exec), ["{tmp}/"]);
        // ... and holds no other path either: no "{home}/opt/tool/".
        assert_eq!(
            Advice::of(&root_home)
                .rule_for(&file(
                    "sh",
                    "/opt/tool/bin/tool",
                    "fs.execute",
                    FileLayer::NotInView
                ))
                .unwrap_or_default(),
            "to allow it: add \"/opt/tool/bin/\" to [filesystem] exec"
        );
    }

    #[test]
    fn the_advice_under_a_denial_names_the_rule_that_would_allow_it() {
        let advice = Advice::of(&base());
        let say = |e: Event| advice.rule_for(&e).unwrap_or_default();
        assert_eq!(
            say(file(
                "sh",
                "/work/ws/.venv/bin/pip",
                "fs.execute",
                FileLayer::Noexec
            )),
            "to allow it: add \"{workspace}/.venv/bin/\" to [filesystem] exec"
        );
        assert_eq!(
            say(file(
                "node",
                "/home/dev/.npmrc",
                "fs.read_file",
                FileLayer::NotInView
            )),
            "to allow it: add \"{home}/.npmrc\" to [filesystem] read"
        );
        assert!(
            say(file("sh", "/usr/lib/x", "fs.make_reg", FileLayer::ReadOnly))
                .starts_with("refused on purpose: the host's system files")
        );
        // Not even a read of the supervisor's cgroups or pins is offered.
        for path in ["/sys/fs/cgroup/pids/cordon/tasks", "/sys/fs/bpf/cordon"] {
            assert_eq!(
                say(file("cat", path, "fs.read_file", FileLayer::NotInView)),
                "refused on purpose: the host's cgroups and eBPF pins are its supervisor's, not the sandbox's",
                "{path}"
            );
        }
        // What is beside them under /sys still is.
        assert!(say(file(
            "cat",
            "/sys/kernel/mm/transparent_hugepage/defrag",
            "fs.read_file",
            FileLayer::NotInView
        ))
        .starts_with("to allow it"));
        assert!(say(file(
            "cat",
            "/home/dev/.ssh/id",
            "fs.read_file",
            FileLayer::Deny
        ))
        .starts_with("refused on purpose: under a `deny` entry"));
        assert!(
            say(file("ls", "/", "fs.read_dir", FileLayer::NotInView)).contains("grant it by hand")
        );
        let dns = event(
            "curl",
            What::DnsDenied {
                domain: "api.example.com".into(),
                query_type: "A".into(),
                reason: DnsReason::NotAllowed,
                address: None,
            },
        );
        assert!(say(dns).starts_with(
            "to allow it: add { host = \"api.example.com\", ports = [443] } to [network] egress"
        ));
        let call = |name: &str| {
            event(
                "x",
                What::SyscallDenied {
                    nr: 0,
                    syscall: name.into(),
                    args: vec![],
                    errno: 1,
                },
            )
        };
        assert_eq!(
            say(call("personality")),
            "to allow it: add \"personality\" to [syscalls] allow"
        );
        assert!(say(call("ptrace")).starts_with("refused on purpose"));
    }

    #[test]
    fn text_that_reorders_a_comment_is_shown_escaped() {
        let events = [file(
            "x\u{202e}gpj.exe",
            "/opt/tool/a",
            "fs.read_file",
            FileLayer::NotInView,
        )];
        let text = learn(&events, &base()).to_toml("b-learned", "b");
        assert!(text.contains("x\\u{202e}gpj.exe"), "{text}");
        assert!(!text.contains('\u{202e}'), "{text}");
    }

    #[test]
    fn connections_are_learned_by_the_name_they_were_resolved_from() {
        let net = |address: &str, port, domain: Option<&str>| {
            event(
                "pip",
                What::NetworkDenied {
                    address: address.parse().unwrap(),
                    port,
                    protocol: Protocol::Tcp,
                    reason: NetReason::NotAllowed,
                    domain: domain.map(str::to_string),
                },
            )
        };
        let events = [
            event(
                "pip",
                What::DnsDenied {
                    domain: "pypi.org".into(),
                    query_type: "A".into(),
                    reason: DnsReason::NotAllowed,
                    address: None,
                },
            ),
            net("151.101.0.223", 443, Some("pypi.org")),
            net("151.101.0.224", 443, Some("pypi.org")),
            net("10.1.2.3", 5432, None),
            event(
                "curl",
                What::DnsDenied {
                    domain: "update.example".into(),
                    query_type: "A".into(),
                    reason: DnsReason::NotAllowed,
                    address: None,
                },
            ),
        ];
        let learned = learn(&events, &base());
        let text = learned.to_toml("b-learned", "b");
        assert!(
            text.contains("{ host = \"pypi.org\", ports = [443], proto = \"tcp\" }, # pip connected to 151.101.0.223:443"),
            "{text}"
        );
        assert!(
            text.contains("{ cidr = \"10.1.2.3/32\", ports = [5432], proto = \"tcp\" }"),
            "{text}"
        );
        assert!(
            text.contains("{ host = \"update.example\", ports = [443], proto = \"tcp\" }, # curl looked up update.example but did not connect: port 443 assumed"),
            "{text}"
        );
    }

    #[test]
    fn what_a_process_named_cannot_break_the_file() {
        let events = [file(
            "x\ny = 1",
            "/opt/a\"\n[profile]\nname = \"evil\"",
            "fs.read_file",
            FileLayer::NotInView,
        )];
        let learned = learn(&events, &base());
        let text = learned.to_toml("b-learned", "b");
        let parsed: toml::Value = toml::from_str(&text).expect("the learned text is TOML");
        assert_eq!(
            parsed["profile"]["name"].as_str(),
            Some("b-learned"),
            "{text}"
        );
        assert_eq!(
            parsed["filesystem"]["read"][0].as_str(),
            Some("/opt/a\"\n[profile]\nname = \"evil\""),
            "{text}"
        );
    }
}
