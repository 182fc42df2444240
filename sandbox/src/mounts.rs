//! The sandbox's private view of the file system.
//!
//! The child gets its own mount namespace whose root is a fresh tmpfs holding only what the
//! policy lists, each bound from the host at the same path with mount flags that match its
//! access (read-only and `noexec` unless written or executed; `nosuid` always; `nodev` except
//! under `/dev`). Anything not listed does not exist inside, which also covers what Landlock
//! alone cannot (connecting to a pathname unix socket, for one). `/tmp` is always a private
//! tmpfs (`noexec` unless the profile executes from it) and `/proc` a fresh procfs of the
//! sandbox's PID namespace. Denied paths inside visible trees are covered by an inaccessible
//! mount, `read_only` paths by a read-only bind of themselves, and the directories between a
//! writable root and either are pinned as mount points so they cannot be renamed away. So
//! are the directories of the private `/tmp` above a bind inside it (a workspace in the
//! host's `/tmp`): renamed, they would carry the bind away from its host path.
//!
//! [`plan`] is pure, runs in the parent and works on any host root, so tests can point it at
//! a temporary tree; [`apply`] runs in the child.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::policy::{Access, FsPolicy, PathRule, SANDBOX_TMP};
use crate::sys;

/// Whether a path is a directory or anything else (a file, a device, a socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

/// One step in building the sandbox's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountOp {
    /// The host's tree at `path`, bound at the same place.
    Bind {
        path: PathBuf,
        kind: Kind,
        access: Access,
    },
    /// The private `/tmp` of `size` bytes; `exec` leaves it without `noexec`.
    Tmpfs {
        path: PathBuf,
        exec: bool,
        size: u64,
    },
    /// A fresh procfs for the sandbox's PID namespace, read-only.
    Proc { path: PathBuf },
    /// A symlink the host has on the way to a listed path (`/bin -> usr/bin`).
    Symlink { path: PathBuf, target: PathBuf },
    /// A directory bound onto itself so it cannot be renamed while it holds a mask.
    Pin { path: PathBuf },
    /// A denied path, covered so it cannot be read, written or listed.
    Mask { path: PathBuf, kind: Kind },
}

impl MountOp {
    pub fn path(&self) -> &Path {
        match self {
            MountOp::Bind { path, .. }
            | MountOp::Tmpfs { path, .. }
            | MountOp::Proc { path }
            | MountOp::Symlink { path, .. }
            | MountOp::Pin { path }
            | MountOp::Mask { path, .. } => path,
        }
    }

    fn order(&self) -> u8 {
        match self {
            MountOp::Bind { .. } | MountOp::Tmpfs { .. } | MountOp::Proc { .. } => 0,
            MountOp::Symlink { .. } => 1,
            MountOp::Pin { .. } => 2,
            MountOp::Mask { .. } => 3,
        }
    }
}

/// A path the sandbox may use, and how: the Landlock rules are built from these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub path: PathBuf,
    pub kind: Kind,
    pub access: Access,
}

/// Everything the child needs to build its file-system view.
#[derive(Debug, Clone, Default)]
pub struct MountPlan {
    pub ops: Vec<MountOp>,
    pub grants: Vec<Grant>,
    /// Listed paths that were left out, and why (shown with `cordon run -v`).
    pub notes: Vec<String>,
    /// Rules that hold less than the profile says (always shown).
    pub warnings: Vec<String>,
    /// Rules that cannot be enforced at all; `compat = "strict"` refuses to start.
    pub unenforceable: Vec<String>,
    /// Hidden paths a response rule watches, covered like denied ones (see [`plan`]).
    pub watched: Vec<PathBuf>,
}

/// The sandbox's own shared memory (`/dev/shm`), and the most it may hold.
const SHM: &str = "/dev/shm";
const SHM_SIZE: u64 = 256 << 20;

/// Top-level trees an audited sandbox does not see from the host: `/proc` is its own, `/tmp`
/// private, and `/dev` and `/run` hold doors no read-only mount closes (devices; the host's
/// services' sockets: docker, systemd, D-Bus, cordond). The profile's own entries there are
/// bound as under enforce.
const AUDIT_LEAVES_OUT: &[&str] = &["proc", "dev", "run", "tmp"];

/// Cordon's own files (configuration and collector token, spool, journal, socket), hidden
/// from an audited sandbox like `deny` entries: it reads the host's tree, not these.
pub const CORDON_OWN: &[&str] = &[
    "/etc/cordon",
    "/var/lib/cordon",
    "/var/log/cordon",
    "/run/cordon",
];

/// The file system an audited sandbox gets (`mode = "audit"`): the host's tree read-only
/// (less [`AUDIT_LEAVES_OUT`]), so what the profile would not show can be read and run;
/// the trees the profile writes, writable; nothing `noexec`. What still refuses: the
/// profile's `deny`, `read_only` and git metadata entries, and Cordon's own files, stay
/// covered; and a write outside the trees the profile writes fails (`EROFS`): an audit
/// must not change the host, and the refused write is reported like any other denial.
///
/// A read-only mount does not stop a `connect` to a unix socket, and the host's services
/// listen on them (docker, LXD, databases): `sockets` (the host's pathname sockets, from
/// [`unix_sockets`]) outside what the profile lists are covered too.
pub fn audit_fs(fs: &FsPolicy, root: &Path, sockets: &[PathBuf]) -> FsPolicy {
    let rx = Access {
        read: true,
        write: false,
        exec: true,
    };
    let mut rules: Vec<PathRule> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| !AUDIT_LEAVES_OUT.contains(&n))
        })
        .map(|e| PathRule {
            path: Path::new("/").join(e.file_name()),
            access: rx,
        })
        .collect();
    rules.push(PathRule {
        path: PathBuf::from("/proc"),
        access: rx,
    });
    rules.push(PathRule {
        path: PathBuf::from(SANDBOX_TMP),
        access: Access { write: true, ..rx },
    });
    rules.extend(fs.rules.iter().map(|r| PathRule {
        path: r.path.clone(),
        access: Access {
            exec: true,
            ..r.access
        },
    }));
    let mut deny = fs.deny.clone();
    deny.extend(CORDON_OWN.iter().map(PathBuf::from));
    let hidden_anyway = |p: &Path| {
        AUDIT_LEAVES_OUT
            .iter()
            .any(|top| p.starts_with(Path::new("/").join(top)))
    };
    deny.extend(
        sockets
            .iter()
            .filter(|s| !hidden_anyway(s) && !fs.rules.iter().any(|r| s.starts_with(&r.path)))
            .cloned(),
    );
    FsPolicy {
        rules,
        deny,
        ..fs.clone()
    }
}

/// The pathname unix sockets bound on the host (`/proc/net/unix` of this network
/// namespace; abstract ones, `@...`, are Landlock's to scope).
pub fn unix_sockets() -> Vec<PathBuf> {
    let table = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    let mut out: Vec<PathBuf> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            // Num RefCount Protocol Flags Type St Inode Path: the path is what follows
            // the seventh field, spaces and all.
            let mut rest = line.trim_start();
            for _ in 0..7 {
                let end = rest.find(char::is_whitespace)?;
                rest = rest[end..].trim_start();
            }
            rest.starts_with('/').then(|| PathBuf::from(rest))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Works out the mounts for a policy against the host tree at `root` (`/` in production).
///
/// `watched` are the paths response rules watch. One the view hides would fail as a missing
/// file does, and the kernel examines only so many misses a second (the rest are counted
/// `unexamined`): a sandbox could spend that budget on misses of its own, then read the
/// path unseen by the rule. Each is covered instead, as a denied path in a visible tree
/// is: a read there is refused (`EACCES`), and every refusal is reported.
pub fn plan(fs: &FsPolicy, root: &Path, watched: &[PathBuf]) -> MountPlan {
    let host = Host::new(root);
    let mut plan = MountPlan::default();
    let tmp = PathBuf::from(SANDBOX_TMP);
    let proc = PathBuf::from("/proc");

    // Denied and read-only paths as they are now: (as listed, canonical, kind, symlinked).
    let resolve_all = |paths: &[PathBuf], what: &str, plan: &mut MountPlan| {
        let mut out: Vec<(PathBuf, PathBuf, Kind, bool)> = Vec::new();
        for listed in paths {
            match host.resolve(listed) {
                Some((canonical, links)) => {
                    let kind = host.kind(&canonical);
                    out.push((listed.clone(), canonical, kind, !links.is_empty()));
                }
                None => plan
                    .notes
                    .push(format!("{what} {}: does not exist", listed.display())),
            }
        }
        out
    };
    let mut denied = resolve_all(&fs.deny, "deny", &mut plan);
    // A denied path inside another one is already covered.
    let outer: Vec<PathBuf> = denied.iter().map(|d| d.1.clone()).collect();
    denied.retain(|d| !outer.iter().any(|o| o != &d.1 && d.1.starts_with(o)));
    // The metadata of every protected repository stays read-only, like `read_only` paths.
    let mut read_only_paths = fs.read_only.clone();
    for repo in &fs.repositories {
        match super::repos::protected(root, repo, &fs.home) {
            Ok(found) => read_only_paths.extend(
                found
                    .into_iter()
                    .map(|p| p.path)
                    .filter(|p| !fs.read_only.contains(p)),
            ),
            Err(e) => plan.unenforceable.push(format!(
                "the git metadata of {} cannot be protected: {e}",
                repo.display()
            )),
        }
    }
    let read_only = resolve_all(&read_only_paths, "read_only", &mut plan);

    let mut binds: BTreeMap<PathBuf, (Kind, Access)> = BTreeMap::new();
    let mut links: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut tmp_access = None;
    let mut proc_access = None;
    for rule in &fs.rules {
        if rule.path == tmp {
            tmp_access = Some(rule.access);
            continue;
        }
        if rule.path == proc {
            proc_access = Some(rule.access);
            continue;
        }
        let Some((canonical, symlinks)) = host.resolve(&rule.path) else {
            // Inside a tree the sandbox writes, it may make the path: the rule would then
            // not hold. A directory written with its `/` is made at launch instead.
            let writable = fs.rules.iter().any(|w| {
                w.access.write
                    && w.path != tmp
                    && w.path != rule.path
                    && rule.path.starts_with(&w.path)
            });
            if writable && fs.dirs.contains(&rule.path) {
                // Made at launch unless something on the way (a symlink the sandbox left)
                // stopped it.
                plan.warnings.push(format!(
                    "{} could not be made (is something on the way a symlink?): its rule does not hold",
                    rule.path.display()
                ));
            } else if writable {
                plan.warnings.push(format!(
                    "{} does not exist, so its rule does not hold for what the sandbox makes there; write it as \"{}/\" to have it made at launch (a directory)",
                    rule.path.display(),
                    rule.path.display()
                ));
            } else {
                plan.notes
                    .push(format!("{}: does not exist, skipped", rule.path.display()));
            }
            continue;
        };
        if let Some((d, ..)) = denied.iter().find(|(_, c, ..)| canonical.starts_with(c)) {
            plan.notes.push(format!(
                "{}: inside denied {}, skipped",
                rule.path.display(),
                d.display()
            ));
            continue;
        }
        // A symlink on the way that lies in a tree the sandbox writes is the sandbox's to
        // point anywhere (a run before this one could have): the rule is not followed there.
        let planted = symlinks.iter().find_map(|(link, _)| {
            fs.rules
                .iter()
                .find(|w| w.access.write && w.path != tmp && link.starts_with(&w.path))
                .map(|w| (link, &w.path))
        });
        if let Some((link, writable)) = planted {
            plan.warnings.push(format!(
                "{} goes through the symlink {} inside the writable {}, which the sandbox could have pointed anywhere: the rule is not applied",
                rule.path.display(),
                link.display(),
                writable.display()
            ));
            continue;
        }
        let kind = host.kind(&canonical);
        let entry = binds.entry(canonical).or_insert((kind, Access::default()));
        entry.1.read |= rule.access.read;
        entry.1.write |= rule.access.write;
        entry.1.exec |= rule.access.exec;
        links.extend(symlinks);
    }

    // A bind inside another gets what the outer one grants too, as Landlock's rules add up:
    // `exec` on `{workspace}/target` inside a written workspace stays writable.
    let outer: Vec<(PathBuf, Access)> = binds.iter().map(|(p, (_, a))| (p.clone(), *a)).collect();
    for (path, (_, access)) in binds.iter_mut() {
        for (_, a) in outer
            .iter()
            .filter(|(o, _)| o != path && path.starts_with(o))
        {
            access.read |= a.read;
            access.write |= a.write;
            access.exec |= a.exec;
        }
    }
    let tmp_exec = tmp_access.is_some_and(|a| a.exec);
    plan.ops.push(MountOp::Tmpfs {
        path: tmp.clone(),
        exec: tmp_exec,
        size: fs.tmp_size,
    });
    if let Some(access) = tmp_access {
        plan.grants.push(Grant {
            path: tmp.clone(),
            kind: Kind::Dir,
            access,
        });
    }
    // POSIX shared memory and semaphores live in /dev/shm (Python's multiprocessing, a
    // browser): a tmpfs of the sandbox's own, never the host's, which every process of the
    // host shares. It is scratch space like /tmp and granted as /tmp is (never exec), so a
    // profile that writes no /tmp gets no writable /dev/shm either. A profile naming the
    // host's /dev/shm gets that bind instead.
    let shm = Path::new(SHM);
    if !binds
        .keys()
        .any(|b| b.starts_with(shm) || shm.starts_with(b))
    {
        plan.ops.push(MountOp::Tmpfs {
            path: shm.to_path_buf(),
            exec: false,
            size: fs.tmp_size.min(SHM_SIZE),
        });
        if let Some(access) = tmp_access {
            plan.grants.push(Grant {
                path: shm.to_path_buf(),
                kind: Kind::Dir,
                access: Access {
                    exec: false,
                    ..access
                },
            });
        }
    }
    // A bind of a tree holding /proc (`read = ["/"]`) would show the host's procfs, every
    // host process in it: /proc is always a fresh procfs of the sandbox's own.
    if proc_access.is_none() {
        proc_access = binds
            .iter()
            .filter(|(b, _)| proc.starts_with(b))
            .map(|(_, (_, a))| *a)
            .next();
    }
    if let Some(access) = proc_access {
        plan.ops.push(MountOp::Proc { path: proc.clone() });
        plan.grants.push(Grant {
            path: proc.clone(),
            kind: Kind::Dir,
            access: Access {
                write: false,
                ..access
            },
        });
    }
    let private_roots: Vec<PathBuf> = plan
        .ops
        .iter()
        .filter_map(|op| match op {
            MountOp::Tmpfs { path, .. } => Some(path.clone()),
            _ => None,
        })
        .collect();
    for (path, (kind, access)) in &binds {
        // A bind inside the private /tmp or /dev/shm sits on directories of the sandbox's
        // own tree, which it may rename, moving the bind along: the host's path would then
        // show in the sandbox whatever it put there (a link, say), and the view would judge
        // its misses wrongly. Those directories (up to one of the host's, if it is bound)
        // are pinned.
        if let Some(root) = private_roots.iter().find(|r| path.starts_with(r)) {
            let mut dir = path.parent();
            while let Some(d) = dir.filter(|d| {
                d != root && d.starts_with(root) && !binds.keys().any(|b| d.starts_with(b))
            }) {
                plan.ops.push(MountOp::Pin {
                    path: d.to_path_buf(),
                });
                dir = d.parent();
            }
        }
        plan.ops.push(MountOp::Bind {
            path: path.clone(),
            kind: *kind,
            access: *access,
        });
        plan.grants.push(Grant {
            path: path.clone(),
            kind: *kind,
            access: *access,
        });
    }
    // The deepest bind a path is visible through (the private /tmp and /proc hold no host files).
    let visible_via = |p: &Path| -> Option<(PathBuf, Access)> {
        binds
            .iter()
            .filter(|(b, _)| p.starts_with(b))
            .max_by_key(|(b, _)| b.components().count())
            .map(|(b, (_, a))| (b.clone(), *a))
    };
    let hidden_by_private_mount = |p: &Path| p.starts_with(&tmp) || p.starts_with(&proc);
    links.sort();
    links.dedup();
    for (path, target) in links {
        if visible_via(&path).is_none() && !hidden_by_private_mount(&path) {
            plan.ops.push(MountOp::Symlink { path, target });
        }
    }

    // Denied and read-only paths inside writable trees: pin the directories in between so
    // they cannot be renamed away, and refuse paths reached through a symlink there, which
    // the sandbox could swap.
    let protect = |listed: &Path,
                   canonical: &Path,
                   symlinked: bool,
                   what: &str,
                   plan: &mut MountPlan|
     -> bool {
        let Some((via, access)) = visible_via(canonical) else {
            if !hidden_by_private_mount(canonical) {
                plan.notes.push(format!(
                    "{what} {}: not visible in the sandbox anyway",
                    listed.display()
                ));
            }
            return false;
        };
        if access.write {
            if symlinked {
                plan.unenforceable.push(format!(
                    "{what} {} goes through a symlink inside the writable {}, which the sandbox could replace",
                    listed.display(),
                    via.display()
                ));
                return false;
            }
            let mut ancestor = canonical.parent();
            while let Some(dir) = ancestor {
                if dir == via || !dir.starts_with(&via) {
                    break;
                }
                plan.ops.push(MountOp::Pin {
                    path: dir.to_path_buf(),
                });
                ancestor = dir.parent();
            }
        }
        true
    };
    for (listed, canonical, kind, symlinked) in &denied {
        if protect(listed, canonical, *symlinked, "deny", &mut plan) {
            plan.ops.push(MountOp::Mask {
                path: canonical.clone(),
                kind: *kind,
            });
        }
    }
    for (listed, canonical, kind, symlinked) in &read_only {
        if denied.iter().any(|d| canonical.starts_with(&d.1)) {
            continue;
        }
        let parent = visible_via(canonical).map(|(_, a)| a);
        if protect(listed, canonical, *symlinked, "read_only", &mut plan) {
            let access = Access {
                read: true,
                write: false,
                exec: parent.is_some_and(|a| a.exec),
            };
            plan.ops.push(MountOp::Bind {
                path: canonical.clone(),
                kind: *kind,
                access,
            });
        }
    }
    cover_watched(&mut plan, &host, fs, watched, &|p: &Path| {
        visible_via(p).is_some()
    });

    // A protected path that does not exist cannot be covered; inside a writable tree the
    // sandbox could create it. `placeholders` has them made first, so this is what could
    // not be made.
    for (what, paths) in [("deny", &fs.deny), ("read_only", &read_only_paths)] {
        for listed in paths {
            if host.resolve(listed).is_some() {
                continue;
            }
            let writable_root = binds
                .iter()
                .filter(|(b, (_, a))| a.write && listed.starts_with(b))
                .max_by_key(|(b, _)| b.components().count());
            if let Some((root, _)) = writable_root {
                plan.warnings.push(format!(
                    "{what} {} does not exist yet, so it cannot be protected; the sandbox may create it inside the writable {}",
                    listed.display(),
                    root.display()
                ));
            }
        }
    }

    plan.ops.sort_by(|a, b| {
        let depth = |op: &MountOp| op.path().components().count();
        depth(a)
            .cmp(&depth(b))
            .then(a.order().cmp(&b.order()))
            .then(a.path().cmp(b.path()))
    });
    plan.ops.dedup();
    plan
}

/// Covers the hidden paths response rules watch (see [`plan`]); `visible` says whether the
/// sandbox sees a host path through a bind.
fn cover_watched(
    plan: &mut MountPlan,
    host: &Host,
    fs: &FsPolicy,
    watched: &[PathBuf],
    visible: &dyn Fn(&Path) -> bool,
) {
    let (tmp, shm, proc) = (Path::new(SANDBOX_TMP), Path::new(SHM), Path::new("/proc"));
    let mut resolved: Vec<(PathBuf, Vec<(PathBuf, PathBuf)>)> = Vec::new();
    for listed in watched {
        // Nothing on the host to hide: a miss there is the program's own.
        let Some((canonical, links)) = host.resolve(listed) else {
            continue;
        };
        // A link on the way that the sandbox could have made (in a tree it writes, or its
        // /tmp): a run before this one could point it at any host path, and learn from the
        // cover whether that exists.
        let planted = links.iter().find(|(link, _)| {
            link.starts_with(tmp)
                || link.starts_with(shm)
                || fs
                    .rules
                    .iter()
                    .any(|w| w.access.write && link.starts_with(&w.path))
        });
        if let Some((link, _)) = planted {
            plan.warnings.push(format!(
                "the response rule on {} goes through the symlink {}, which the sandbox could have pointed anywhere: it is not covered, and a read there is not seen past the kernel's budget for missing files",
                listed.display(),
                link.display()
            ));
            continue;
        }
        resolved.push((canonical, links));
    }
    // Outer paths first, where they lead: one inside another is covered with it (a mount
    // point inside a read-only cover could not be made).
    resolved.sort_by_key(|(canonical, _)| canonical.components().count());
    let masked = |plan: &MountPlan, p: &Path| {
        plan.ops
            .iter()
            .any(|op| matches!(op, MountOp::Mask { path, .. } if p.starts_with(path)))
    };
    for (canonical, _) in &resolved {
        // Visible, it is refused (not missing) already; /proc is the sandbox's own.
        if visible(canonical) || canonical.starts_with(proc) || masked(plan, canonical) {
            continue;
        }
        // A path with the view's mounts below it (`{home}` holding the workspace) cannot be
        // covered without covering them.
        if plan
            .ops
            .iter()
            .any(|op| op.path().starts_with(canonical) && !matches!(op, MountOp::Mask { .. }))
        {
            plan.notes.push(format!(
                "the response rule on {}: the sandbox sees paths below it, so it is not covered; a read of a hidden path there is not seen past the kernel's budget for missing files",
                canonical.display()
            ));
            continue;
        }
        // Under the private /tmp or /dev/shm, which the sandbox writes: the directories on
        // the way are pinned, so it cannot rename the cover away.
        if let Some(root) = [tmp, shm].into_iter().find(|p| canonical.starts_with(p)) {
            let mut dir = canonical.parent();
            while let Some(d) = dir.filter(|d| *d != root) {
                plan.ops.push(MountOp::Pin {
                    path: d.to_path_buf(),
                });
                dir = d.parent();
            }
        }
        plan.ops.push(MountOp::Mask {
            path: canonical.clone(),
            kind: host.kind(canonical),
        });
        plan.watched.push(canonical.clone());
    }
    // The host's links on the way (`~/.ssh -> dotfiles/ssh`) are made in the view, so the
    // path as the rule names it leads where the host's does: to a cover, or to what is
    // refused there. Not one inside a cover, which its name leads into all the same.
    for (path, target) in resolved.into_iter().flat_map(|(_, links)| links) {
        if !visible(&path) && !masked(plan, &path) {
            plan.ops.push(MountOp::Symlink { path, target });
        }
    }
}

/// Protected paths (denied, read-only, repositories' metadata) that do not exist inside a
/// tree the sandbox may write: the sandbox could create them, so they are created empty on
/// the host before it starts and covered like the others. Directories for repositories'
/// metadata and entries written with a trailing `/`, files otherwise. The second list says
/// what cannot be protected at all.
pub fn placeholders(fs: &FsPolicy, root: &Path) -> (Vec<(PathBuf, Kind)>, Vec<String>) {
    let tmp = Path::new(SANDBOX_TMP);
    let writable = |p: &Path| {
        fs.rules
            .iter()
            .any(|r| r.access.write && r.path != tmp && p.starts_with(&r.path))
            && !fs.deny.iter().any(|d| d != p && p.starts_with(d))
    };
    let exists =
        |p: &Path| std::fs::symlink_metadata(root.join(p.strip_prefix("/").unwrap_or(p))).is_ok();
    let mut out: Vec<(PathBuf, Kind)> = Vec::new();
    let mut problems = Vec::new();
    let mut add = |path: PathBuf, kind: Kind| {
        if writable(&path) && !out.iter().any(|(p, _)| *p == path) {
            out.push((path, kind));
        }
    };
    // Only a path the sandbox could create is looked up: most of the protected paths
    // (the host's secrets under /etc and the home) lie outside every tree it writes.
    for path in fs.deny.iter().chain(&fs.read_only) {
        if writable(path) && !exists(path) {
            let kind = if fs.dirs.contains(path) {
                Kind::Dir
            } else {
                Kind::File
            };
            add(path.clone(), kind);
        }
    }
    // A rule's directory the sandbox would make itself (`{workspace}/.venv/bin/`): made now,
    // so the rule's mount is there for what the sandbox puts in it. Only inside a tree the
    // rule does not itself make writable.
    for rule in &fs.rules {
        let below_writable = fs.rules.iter().any(|w| {
            w.access.write && w.path != tmp && w.path != rule.path && rule.path.starts_with(&w.path)
        });
        if fs.dirs.contains(&rule.path) && below_writable && !exists(&rule.path) {
            add(rule.path.clone(), Kind::Dir);
        }
    }
    for repo in &fs.repositories {
        match super::repos::protected(root, repo, &fs.home) {
            Ok(found) => found.into_iter().filter(|p| p.create).for_each(|p| {
                let kind = if p.dir { Kind::Dir } else { Kind::File };
                add(p.path, kind)
            }),
            Err(e) => problems.push(format!(
                "the git metadata of {} cannot be protected: {e}",
                repo.display()
            )),
        }
    }
    (out, problems)
}

/// Looks at the host tree below `root`, resolving symlinks as if `root` were `/`.
///
/// What each path is gets looked up once: the rules of a profile share their leading
/// directories (`/etc`, the home), and a launch should not `lstat` them again for each.
struct Host<'a> {
    root: &'a Path,
    seen: std::cell::RefCell<std::collections::HashMap<PathBuf, Option<Entry>>>,
}

/// What `lstat` found at a path.
#[derive(Debug, Clone, Copy)]
enum Entry {
    Symlink,
    Dir,
    Other,
}

impl<'a> Host<'a> {
    fn new(root: &'a Path) -> Self {
        Self {
            root,
            seen: Default::default(),
        }
    }

    fn real(&self, path: &Path) -> PathBuf {
        self.root.join(path.strip_prefix("/").unwrap_or(path))
    }

    /// What is at `path` (not following a final symlink); `None` if nothing is.
    fn entry(&self, path: &Path) -> Option<Entry> {
        if let Some(found) = self.seen.borrow().get(path) {
            return *found;
        }
        let found = std::fs::symlink_metadata(self.real(path)).ok().map(|meta| {
            let kind = meta.file_type();
            if kind.is_symlink() {
                Entry::Symlink
            } else if kind.is_dir() {
                Entry::Dir
            } else {
                Entry::Other
            }
        });
        self.seen.borrow_mut().insert(path.to_path_buf(), found);
        found
    }

    fn kind(&self, path: &Path) -> Kind {
        let dir = match self.entry(path) {
            Some(Entry::Dir) => true,
            Some(Entry::Symlink) => self.real(path).is_dir(),
            Some(Entry::Other) | None => false,
        };
        if dir {
            Kind::Dir
        } else {
            Kind::File
        }
    }

    /// The canonical path of `path`, and each symlink met on the way (as link, target).
    fn resolve(&self, path: &Path) -> Option<(PathBuf, Vec<(PathBuf, PathBuf)>)> {
        let mut links = Vec::new();
        let mut resolved = PathBuf::from("/");
        let mut pending: Vec<PathBuf> = path
            .components()
            .rev()
            .filter_map(|c| match c {
                Component::Normal(p) => Some(PathBuf::from(p)),
                _ => None,
            })
            .collect();
        let mut hops = 0;
        while let Some(part) = pending.pop() {
            if part == Path::new("..") {
                resolved.pop();
                continue;
            }
            if part == Path::new(".") {
                continue;
            }
            let candidate = resolved.join(&part);
            if !matches!(self.entry(&candidate)?, Entry::Symlink) {
                resolved = candidate;
                continue;
            }
            hops += 1;
            if hops > 40 {
                return None;
            }
            let target = std::fs::read_link(self.real(&candidate)).ok()?;
            links.push((candidate, target.clone()));
            if target.is_absolute() {
                resolved = PathBuf::from("/");
            }
            for c in target.components().rev() {
                match c {
                    Component::Normal(p) => pending.push(PathBuf::from(p)),
                    Component::ParentDir => pending.push(PathBuf::from("..")),
                    _ => {}
                }
            }
        }
        Some((resolved, links))
    }
}

/// A step of [`apply`] that failed, with the path it was working on.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("cannot make the mount namespace private: {0}")]
    Namespace(#[source] nix::Error),
    #[error("cannot take a copy of {path}: {source}")]
    Clone { path: PathBuf, source: io::Error },
    #[error("cannot prepare {path} in the sandbox root: {source}")]
    Prepare { path: PathBuf, source: io::Error },
    #[error("cannot mount {path}: {source}")]
    Mount { path: PathBuf, source: io::Error },
    #[error("cannot switch to the sandbox root ({step}): {source}")]
    Pivot {
        step: &'static str,
        source: nix::Error,
    },
}

/// Builds the view described by `plan` and makes it the root. Runs in the sandbox's init,
/// as root, in a mount namespace of its own, before any other restriction. `staging` is an
/// existing directory to build the root on.
pub fn apply(plan: &MountPlan, staging: &Path) -> Result<(), MountError> {
    // Nothing mounted here may propagate back to the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(MountError::Namespace)?;

    // Copies of the host trees are taken before the staging tmpfs can hide any of them.
    let mut trees: Vec<Option<OwnedFd>> = Vec::with_capacity(plan.ops.len());
    for op in &plan.ops {
        trees.push(match op {
            MountOp::Bind { path, access, .. } => {
                let tree = sys::clone_mount_tree(path).map_err(|source| MountError::Clone {
                    path: path.clone(),
                    source,
                })?;
                sys::set_mount_attrs(&tree, bind_attrs(path, *access), 0).map_err(|source| {
                    MountError::Mount {
                        path: path.clone(),
                        source,
                    }
                })?;
                Some(tree)
            }
            _ => None,
        });
    }

    tmpfs(
        staging,
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        "mode=0755",
        Path::new("/"),
    )?;
    let mut made = Made::new(staging);
    for (op, tree) in plan.ops.iter().zip(&trees) {
        let at = inside(staging, op.path());
        let mount_err = |source: io::Error| MountError::Mount {
            path: op.path().to_path_buf(),
            source,
        };
        // Every mount lands on the object opened here without following symlinks, so a
        // path changed since planning fails the launch instead of moving the mount.
        let target = |kind: Kind, made: &mut Made| -> Result<OwnedFd, MountError> {
            mountpoint(made, &at, kind)?;
            sys::open_no_symlinks(&at).map_err(|source| MountError::Prepare {
                path: op.path().to_path_buf(),
                source,
            })
        };
        match op {
            MountOp::Bind { kind, .. } => {
                let target = target(*kind, &mut made)?;
                if let Some(tree) = tree {
                    sys::attach_mount_tree(tree, &target).map_err(mount_err)?;
                }
            }
            MountOp::Tmpfs { exec, size, .. } => {
                let target = target(Kind::Dir, &mut made)?;
                let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
                if !exec {
                    flags |= MsFlags::MS_NOEXEC;
                }
                let options = format!("mode=1777,size={size}");
                tmpfs(&sys::fd_path(&target), flags, &options, op.path())?;
            }
            MountOp::Proc { .. } => {
                let target = target(Kind::Dir, &mut made)?;
                let flags = MsFlags::MS_RDONLY
                    | MsFlags::MS_NOSUID
                    | MsFlags::MS_NODEV
                    | MsFlags::MS_NOEXEC;
                // `hidepid=ptraceable`: a process the caller may not ptrace is not listed (for
                // every caller, root too), so the command, in a Landlock domain nested in init's,
                // never sees init.
                mount(
                    Some("proc"),
                    &sys::fd_path(&target),
                    Some("proc"),
                    flags,
                    Some("hidepid=ptraceable"),
                )
                .map_err(|e| mount_err(e.into()))?;
            }
            MountOp::Symlink { target, .. } => {
                if std::fs::symlink_metadata(&at).is_err() {
                    if let Some(parent) = at.parent() {
                        made.dir(parent).map_err(|source| MountError::Prepare {
                            path: op.path().to_path_buf(),
                            source,
                        })?;
                    }
                    std::os::unix::fs::symlink(target, &at).map_err(|source| {
                        MountError::Prepare {
                            path: op.path().to_path_buf(),
                            source,
                        }
                    })?;
                }
            }
            MountOp::Pin { .. } => {
                let target = target(Kind::Dir, &mut made)?;
                let copy = sys::clone_mount_tree_at(&target).map_err(mount_err)?;
                sys::attach_mount_tree(&copy, &target).map_err(mount_err)?;
            }
            MountOp::Mask {
                kind: Kind::Dir, ..
            } => {
                let target = target(Kind::Dir, &mut made)?;
                let flags = MsFlags::MS_RDONLY
                    | MsFlags::MS_NOSUID
                    | MsFlags::MS_NODEV
                    | MsFlags::MS_NOEXEC;
                tmpfs(&sys::fd_path(&target), flags, "mode=000,size=4k", op.path())?;
            }
            MountOp::Mask {
                kind: Kind::File, ..
            } => {
                // /dev/null bound on a `nodev` mount: opening it fails with EACCES.
                let target = target(Kind::File, &mut made)?;
                let null = sys::clone_mount_tree(Path::new("/dev/null")).map_err(mount_err)?;
                let flags = libc::MOUNT_ATTR_RDONLY
                    | libc::MOUNT_ATTR_NOSUID
                    | libc::MOUNT_ATTR_NODEV
                    | libc::MOUNT_ATTR_NOEXEC;
                sys::set_mount_attrs(&null, flags, 0).map_err(mount_err)?;
                sys::attach_mount_tree(&null, &target).map_err(mount_err)?;
            }
        }
    }
    drop(trees);

    let pivot = |step| move |source| MountError::Pivot { step, source };
    nix::unistd::chdir(staging).map_err(pivot("chdir to the new root"))?;
    nix::unistd::pivot_root(".", ".").map_err(pivot("pivot_root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(pivot("detach the host root"))?;
    nix::unistd::chdir("/").map_err(pivot("chdir to /"))?;
    let ro_root = MsFlags::MS_REMOUNT
        | MsFlags::MS_BIND
        | MsFlags::MS_RDONLY
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV;
    mount(None::<&str>, "/", None::<&str>, ro_root, None::<&str>)
        .map_err(pivot("make the root read-only"))?;
    Ok(())
}

/// Mount attributes for a bound tree, from the access it grants.
fn bind_attrs(path: &Path, access: Access) -> u64 {
    let mut attrs = libc::MOUNT_ATTR_NOSUID;
    if !path.starts_with("/dev") {
        attrs |= libc::MOUNT_ATTR_NODEV;
    }
    if !access.write {
        attrs |= libc::MOUNT_ATTR_RDONLY;
    }
    if !access.exec {
        attrs |= libc::MOUNT_ATTR_NOEXEC;
    }
    attrs
}

fn inside(staging: &Path, path: &Path) -> PathBuf {
    staging.join(path.strip_prefix("/").unwrap_or(path))
}

/// The directories of the tree being built that are known to be there, from its root
/// down: the mount points of a launch share most of their parents (`/usr`, `/dev`, the
/// workspace's), and each is made (or found) once, where making every mount point's parents
/// anew took two calls for each (a `mkdir` that fails, a `stat`). What is known stays true
/// because the plan's operations go from the shallowest path to the deepest (see [`plan`]):
/// a mount never lands above a directory recorded before it.
struct Made(std::collections::HashSet<PathBuf>);

impl Made {
    fn new(root: &Path) -> Self {
        Self(std::collections::HashSet::from([root.to_path_buf()]))
    }

    /// Makes the directory `dir` and its missing parents, as `create_dir_all` does.
    fn dir(&mut self, dir: &Path) -> io::Result<()> {
        if self.0.contains(dir) {
            return Ok(());
        }
        if let Some(parent) = dir.parent() {
            self.dir(parent)?;
        }
        match std::fs::create_dir(dir) {
            Ok(()) => {}
            // There already: a directory of a tree bound here, say.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) => return Err(e),
        }
        self.0.insert(dir.to_path_buf());
        Ok(())
    }
}

fn mountpoint(made: &mut Made, at: &Path, kind: Kind) -> Result<(), MountError> {
    let prepare = |source| MountError::Prepare {
        path: at.to_path_buf(),
        source,
    };
    match kind {
        Kind::Dir => made.dir(at).map_err(prepare),
        Kind::File => {
            if let Some(parent) = at.parent() {
                made.dir(parent).map_err(prepare)?;
            }
            if at.exists() {
                return Ok(());
            }
            std::fs::File::create(at).map(drop).map_err(prepare)
        }
    }
}

/// Mounts a tmpfs at `at`; errors name `shown` (the sandbox path, not a /proc/self/fd link).
fn tmpfs(at: &Path, flags: MsFlags, options: &str, shown: &Path) -> Result<(), MountError> {
    mount(Some("tmpfs"), at, Some("tmpfs"), flags, Some(options)).map_err(|e| MountError::Mount {
        path: shown.to_path_buf(),
        source: e.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PathRule;

    const R: Access = Access {
        read: true,
        write: false,
        exec: false,
    };
    const RW: Access = Access {
        read: true,
        write: true,
        exec: false,
    };
    const RWX: Access = Access {
        read: true,
        write: true,
        exec: true,
    };
    const RX: Access = Access {
        read: true,
        write: false,
        exec: true,
    };
    const TMP: u64 = 64 << 20;

    fn host() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let p = t.path();
        for d in [
            "usr/bin",
            "usr/lib",
            "home/dev/.ssh",
            "home/dev/src",
            "ws/.git/hooks",
            "etc",
        ] {
            std::fs::create_dir_all(p.join(d)).unwrap();
        }
        std::fs::write(p.join("etc/shadow"), "x").unwrap();
        std::os::unix::fs::symlink("usr/bin", p.join("bin")).unwrap();
        t
    }

    fn fs(rules: &[(&str, Access)], deny: &[&str]) -> FsPolicy {
        FsPolicy {
            rules: rules
                .iter()
                .map(|(p, a)| PathRule {
                    path: PathBuf::from(p),
                    access: *a,
                })
                .collect(),
            deny: deny.iter().map(PathBuf::from).collect(),
            read_only: vec![],
            dirs: vec![],
            repositories: vec![],
            home: "/home/dev".into(),
            tmp_size: TMP,
        }
    }

    #[test]
    fn mount_points_parents_are_made_once_and_found_when_there() {
        let root = tempfile::tempdir().unwrap();
        let mut made = Made::new(root.path());
        let deep = root.path().join("usr/lib/x86_64");
        made.dir(&deep).unwrap();
        assert!(deep.is_dir());
        // Known now, with every parent: a second call makes nothing.
        for dir in ["usr", "usr/lib", "usr/lib/x86_64"] {
            assert!(made.0.contains(&root.path().join(dir)), "{dir}");
        }
        made.dir(&root.path().join("usr/lib")).unwrap();
        // A directory already there (a bound tree's) is found, not made.
        std::fs::create_dir_all(root.path().join("etc/ssl")).unwrap();
        made.dir(&root.path().join("etc/ssl")).unwrap();
        // A file where a directory is wanted fails, as create_dir_all does.
        std::fs::write(root.path().join("dev"), "").unwrap();
        assert!(made.dir(&root.path().join("dev/shm")).is_err());
        assert!(!made.0.contains(&root.path().join("dev")));
    }

    #[test]
    fn an_audited_sandbox_reads_the_hosts_tree_but_not_its_doors() {
        let h = host();
        for d in ["proc", "dev", "run/docker", "tmp"] {
            std::fs::create_dir_all(h.path().join(d)).unwrap();
        }
        let sockets = [
            PathBuf::from("/home/dev/docker.sock"),
            PathBuf::from("/ws/dev.sock"),
            PathBuf::from("/run/dbus/system_bus_socket"),
        ];
        let wide = audit_fs(
            &fs(&[("/ws", RW), ("/usr", R)], &["/home/dev/.ssh"]),
            h.path(),
            &sockets,
        );
        let access = |p: &str| {
            wide.rules
                .iter()
                .filter(|r| r.path == Path::new(p))
                .fold(Access::default(), |a, r| Access {
                    read: a.read || r.access.read,
                    write: a.write || r.access.write,
                    exec: a.exec || r.access.exec,
                })
        };
        assert_eq!(access("/home"), RX, "the host's trees: read and run");
        assert_eq!(access("/etc"), RX);
        assert_eq!(
            access("/ws"),
            RWX,
            "what the profile writes, without noexec"
        );
        assert_eq!(
            access("/run"),
            Access::default(),
            "services' sockets: not shown"
        );
        assert_eq!(
            access("/dev"),
            Access::default(),
            "devices: only the profile's"
        );
        assert_eq!(access("/tmp"), RWX, "the private /tmp");
        assert!(wide.deny.contains(&PathBuf::from("/home/dev/.ssh")));
        assert!(wide.deny.contains(&PathBuf::from("/etc/cordon")));
        assert!(
            wide.deny.contains(&sockets[0]),
            "a host socket outside the view is covered"
        );
        assert!(
            !wide.deny.contains(&sockets[1]) && !wide.deny.contains(&sockets[2]),
            "one the profile lists stays; one under /run is not there anyway"
        );
        // Applied: the secret is still covered inside the host's tree.
        let plan = plan(&wide, h.path(), &[]);
        assert!(plan.ops.contains(&MountOp::Mask {
            path: "/home/dev/.ssh".into(),
            kind: Kind::Dir,
        }));
    }

    #[test]
    fn a_missing_rule_path_inside_a_writable_tree_says_how_to_have_it_made() {
        let h = host();
        let plan = plan(
            &fs(&[("/ws", RW), ("/ws/.venv/bin", RX)], &[]),
            h.path(),
            &[],
        );
        assert!(
            plan.warnings
                .iter()
                .any(|w| w.contains("write it as \"/ws/.venv/bin/\"")),
            "{:?}",
            plan.warnings
        );
        // Outside a writable tree nothing can make it: a note for -v only.
        let outside = super::plan(&fs(&[("/opt/none", RX)], &[]), h.path(), &[]);
        assert!(outside.warnings.is_empty(), "{:?}", outside.warnings);
    }

    #[test]
    fn a_rule_through_a_symlink_the_sandbox_could_plant_is_not_applied() {
        let h = host();
        // A previous run pointed the workspace's .venv/bin at the home.
        std::fs::create_dir_all(h.path().join("ws/.venv")).unwrap();
        std::os::unix::fs::symlink("/home/dev", h.path().join("ws/.venv/bin")).unwrap();
        let plan = plan(
            &fs(&[("/ws", RW), ("/ws/.venv/bin", RX)], &[]),
            h.path(),
            &[],
        );
        assert!(
            !plan
                .ops
                .iter()
                .any(|o| matches!(o, MountOp::Bind { path, .. } if path == Path::new("/home/dev"))),
            "{:?}",
            plan.ops
        );
        assert!(
            plan.warnings
                .iter()
                .any(|w| w.contains("/ws/.venv/bin goes through the symlink")),
            "{:?}",
            plan.warnings
        );
    }

    #[test]
    fn symlinked_entries_bind_their_target_and_recreate_the_link() {
        let h = host();
        let plan = plan(&fs(&[("/bin", RX)], &[]), h.path(), &[]);
        assert!(plan.ops.contains(&MountOp::Bind {
            path: "/usr/bin".into(),
            kind: Kind::Dir,
            access: RX
        }));
        assert!(plan.ops.contains(&MountOp::Symlink {
            path: "/bin".into(),
            target: "usr/bin".into()
        }));
        assert_eq!(
            plan.grants,
            [Grant {
                path: "/usr/bin".into(),
                kind: Kind::Dir,
                access: RX
            }]
        );
    }

    #[test]
    fn deny_inside_a_writable_tree_is_masked_and_its_parents_pinned() {
        let h = host();
        let plan = plan(&fs(&[("/ws", RW)], &["/ws/.git/hooks"]), h.path(), &[]);
        let ws = plan
            .ops
            .iter()
            .position(|o| o.path() == Path::new("/ws"))
            .unwrap();
        let pin = plan
            .ops
            .iter()
            .position(|o| {
                *o == MountOp::Pin {
                    path: "/ws/.git".into(),
                }
            })
            .unwrap();
        let mask = plan
            .ops
            .iter()
            .position(|o| {
                *o == MountOp::Mask {
                    path: "/ws/.git/hooks".into(),
                    kind: Kind::Dir,
                }
            })
            .unwrap();
        assert!(ws < pin && pin < mask, "{:?}", plan.ops);
    }

    #[test]
    fn deny_wins_over_allow_below_it_and_files_are_masked_as_files() {
        let h = host();
        let plan = plan(
            &fs(
                &[("/home/dev", R), ("/home/dev/.ssh", R), ("/etc", R)],
                &["/home/dev/.ssh", "/etc/shadow"],
            ),
            h.path(),
            &[],
        );
        assert!(!plan
            .grants
            .iter()
            .any(|g| g.path == Path::new("/home/dev/.ssh")));
        assert!(plan.ops.contains(&MountOp::Mask {
            path: "/home/dev/.ssh".into(),
            kind: Kind::Dir
        }));
        assert!(plan.ops.contains(&MountOp::Mask {
            path: "/etc/shadow".into(),
            kind: Kind::File
        }));
        // A read-only tree needs no pins: nothing inside it can be renamed.
        assert!(!plan.ops.iter().any(|o| matches!(o, MountOp::Pin { .. })));
    }

    #[test]
    fn a_hidden_path_a_rule_watches_is_covered_and_a_visible_one_left() {
        let h = host();
        std::fs::create_dir_all(h.path().join("home/dev/ws")).unwrap();
        let plan = plan_watching(&h, &["/home/dev/.ssh", "/etc/shadow", "/ws/.git", "/nope"]);
        assert_eq!(
            masks(&plan),
            [
                &MountOp::Mask {
                    path: "/etc/shadow".into(),
                    kind: Kind::File
                },
                &MountOp::Mask {
                    path: "/home/dev/.ssh".into(),
                    kind: Kind::Dir
                },
            ],
            "the hidden ones; /ws/.git is visible (refused, not missing), /nope is nowhere"
        );
        assert_eq!(
            plan.watched,
            [
                PathBuf::from("/etc/shadow"),
                PathBuf::from("/home/dev/.ssh")
            ],
            "outer paths first"
        );

        // One inside another is covered with it (a mount inside a read-only cover could not
        // be made).
        let nested = plan_watching(&h, &["/home/dev/.ssh/id", "/home/dev/.ssh"]);
        assert_eq!(
            nested.watched,
            [PathBuf::from("/home/dev/.ssh")],
            "{:?}",
            nested.ops
        );

        // Through a host link (`~/.ssh -> dotfiles/ssh`): the link is made in the view, so
        // the path as the rule names it leads to the cover.
        std::fs::create_dir_all(h.path().join("home/dev/dotfiles/ssh")).unwrap();
        std::os::unix::fs::symlink("dotfiles/ssh", h.path().join("home/dev/.keys")).unwrap();
        let linked = plan_watching(&h, &["/home/dev/.keys"]);
        assert_eq!(linked.watched, [PathBuf::from("/home/dev/dotfiles/ssh")]);
        assert!(
            linked.ops.contains(&MountOp::Symlink {
                path: "/home/dev/.keys".into(),
                target: "dotfiles/ssh".into()
            }),
            "{:?}",
            linked.ops
        );

        // Ordered by where they lead: the link's rule first, the tree holding its target
        // next; one cover, and the link still made.
        let around_target = plan_watching(&h, &["/home/dev/.keys", "/home/dev/dotfiles"]);
        assert_eq!(around_target.watched, [PathBuf::from("/home/dev/dotfiles")]);
        assert!(
            around_target
                .ops
                .iter()
                .any(|o| matches!(o, MountOp::Symlink { path, .. } if path == Path::new("/home/dev/.keys"))),
            "{:?}",
            around_target.ops
        );
        // A link inside a cover (stow's `~/.ssh/config -> ../dotfiles/ssh/config`) is not
        // made: its name leads into the cover.
        std::fs::write(h.path().join("home/dev/dotfiles/ssh/config"), "").unwrap();
        std::os::unix::fs::symlink(
            "../dotfiles/ssh/config",
            h.path().join("home/dev/.ssh/config"),
        )
        .unwrap();
        let stowed = plan_watching(&h, &["/home/dev/.ssh/config", "/home/dev/.ssh"]);
        assert_eq!(
            stowed.watched,
            [
                PathBuf::from("/home/dev/.ssh"),
                PathBuf::from("/home/dev/dotfiles/ssh/config")
            ]
        );
        assert!(
            !stowed
                .ops
                .iter()
                .any(|o| matches!(o, MountOp::Symlink { .. })),
            "{:?}",
            stowed.ops
        );

        // Through a link in a tree the sandbox writes, which a run before could have pointed
        // at any host path (the cover would tell it whether that exists): not covered.
        std::os::unix::fs::symlink("/home/dev/src", h.path().join("ws/.env")).unwrap();
        let planted = plan_watching(&h, &["/ws/.env"]);
        assert!(planted.watched.is_empty(), "{:?}", planted.ops);
        assert!(
            planted
                .warnings
                .iter()
                .any(|w| w.contains("goes through the symlink /ws/.env")),
            "{:?}",
            planted.warnings
        );

        // A watched tree holding a tree the sandbox sees is not covered, and that is said.
        let around = super::plan(
            &fs(&[("/home/dev/ws", RW)], &[]),
            h.path(),
            &[PathBuf::from("/home/dev")],
        );
        assert!(masks(&around).is_empty(), "{:?}", around.ops);
        assert!(
            around
                .notes
                .iter()
                .any(|n| n.contains("response rule on /home/dev: the sandbox sees paths below it")),
            "{:?}",
            around.notes
        );
    }

    /// The plan of a sandbox that writes /ws, with rules on `watched`.
    fn plan_watching(h: &tempfile::TempDir, watched: &[&str]) -> MountPlan {
        let watched: Vec<PathBuf> = watched.iter().map(PathBuf::from).collect();
        plan(&fs(&[("/ws", RW)], &[]), h.path(), &watched)
    }

    fn masks(plan: &MountPlan) -> Vec<&MountOp> {
        plan.ops
            .iter()
            .filter(|o| matches!(o, MountOp::Mask { .. }))
            .collect()
    }

    #[test]
    fn missing_paths_are_noted_not_mounted() {
        let h = host();
        let plan = plan(&fs(&[("/nope", R)], &["/home/dev/.aws"]), h.path(), &[]);
        assert_eq!(
            plan.ops,
            [
                MountOp::Tmpfs {
                    path: "/tmp".into(),
                    exec: false,
                    size: TMP
                },
                MountOp::Tmpfs {
                    path: "/dev/shm".into(),
                    exec: false,
                    size: TMP.min(SHM_SIZE)
                }
            ]
        );
        assert_eq!(plan.notes.len(), 2, "{:?}", plan.notes);
    }

    #[test]
    fn private_tmp_is_always_there_but_only_granted_when_listed() {
        let h = host();
        let without = plan(&fs(&[], &[]), h.path(), &[]);
        assert!(
            without.ops.contains(&MountOp::Tmpfs {
                path: "/tmp".into(),
                exec: false,
                size: TMP
            }) && without.grants.is_empty()
        );
        let with = plan(&fs(&[("/tmp", RW)], &[]), h.path(), &[]);
        assert_eq!(
            with.grants,
            [
                Grant {
                    path: "/tmp".into(),
                    kind: Kind::Dir,
                    access: RW
                },
                // Shared memory is scratch space like /tmp, granted with it.
                Grant {
                    path: "/dev/shm".into(),
                    kind: Kind::Dir,
                    access: RW
                }
            ]
        );
    }

    /// A workspace (or home) in the host's /tmp is bound inside the sandbox's private /tmp,
    /// on directories of the sandbox's own tree: those are pinned, so that the sandbox cannot
    /// rename them and move the bind away from the path the host has it at. Directories of
    /// a bound host tree are the host's, and need no pin.
    #[test]
    fn binds_inside_the_private_tmp_have_the_directories_above_them_pinned() {
        let h = host();
        std::fs::create_dir_all(h.path().join("tmp/a/b/ws")).unwrap();
        std::fs::create_dir_all(h.path().join("tmp/h/w")).unwrap();
        let pins = |plan: &MountPlan| -> Vec<PathBuf> {
            plan.ops
                .iter()
                .filter_map(|op| match op {
                    MountOp::Pin { path } => Some(path.clone()),
                    _ => None,
                })
                .collect()
        };
        let ws = plan(
            &fs(&[("/tmp", RW), ("/tmp/a/b/ws", RW)], &[]),
            h.path(),
            &[],
        );
        assert_eq!(
            pins(&ws),
            [PathBuf::from("/tmp/a"), PathBuf::from("/tmp/a/b")]
        );
        let home = plan(&fs(&[("/tmp/h", RW), ("/tmp/h/w", RW)], &[]), h.path(), &[]);
        assert!(pins(&home).is_empty(), "{:?}", home.ops);
        let outside = plan(&fs(&[("/ws", RW)], &[]), h.path(), &[]);
        assert!(pins(&outside).is_empty(), "{:?}", outside.ops);
    }

    #[test]
    fn a_deny_inside_another_deny_is_dropped() {
        let h = host();
        std::fs::write(h.path().join("home/dev/.ssh/id"), "k").unwrap();
        let plan = plan(
            &fs(
                &[("/home/dev", R)],
                &["/home/dev/.ssh", "/home/dev/.ssh/id"],
            ),
            h.path(),
            &[],
        );
        assert_eq!(
            masks(&plan),
            [&MountOp::Mask {
                path: "/home/dev/.ssh".into(),
                kind: Kind::Dir
            }]
        );
    }

    #[test]
    fn read_only_paths_are_bound_read_only_and_pinned() {
        let h = host();
        std::fs::write(h.path().join("ws/.git/config"), "[core]").unwrap();
        let mut policy = fs(&[("/ws", RW)], &[]);
        policy.read_only = vec!["/ws/.git/config".into()];
        let plan = plan(&policy, h.path(), &[]);
        assert!(plan.ops.contains(&MountOp::Bind {
            path: "/ws/.git/config".into(),
            kind: Kind::File,
            access: R
        }));
        assert!(plan.ops.contains(&MountOp::Pin {
            path: "/ws/.git".into()
        }));
    }

    #[test]
    fn protected_paths_behind_a_symlink_in_a_writable_tree_are_unenforceable() {
        let h = host();
        std::fs::remove_dir(h.path().join("ws/.git/hooks")).unwrap();
        std::fs::create_dir(h.path().join("ws/.git/real")).unwrap();
        std::os::unix::fs::symlink("real", h.path().join("ws/.git/hooks")).unwrap();
        let plan = plan(&fs(&[("/ws", RW)], &["/ws/.git/hooks"]), h.path(), &[]);
        assert_eq!(plan.unenforceable.len(), 1, "{:?}", plan.unenforceable);
        assert!(masks(&plan).is_empty());
        // In a read-only tree the link cannot be swapped: its target is masked.
        let plan2 = super::plan(&fs(&[("/ws", R)], &["/ws/.git/hooks"]), h.path(), &[]);
        assert!(plan2.unenforceable.is_empty());
        assert!(plan2.ops.contains(&MountOp::Mask {
            path: "/ws/.git/real".into(),
            kind: Kind::Dir
        }));
    }

    #[test]
    fn missing_protected_paths_in_writable_trees_are_warned_about() {
        let h = host();
        let plan = plan(
            &fs(
                &[("/ws", RW), ("/home/dev", R)],
                &["/ws/.env", "/home/dev/.aws"],
            ),
            h.path(),
            &[],
        );
        assert_eq!(plan.warnings.len(), 1, "{:?}", plan.warnings);
        assert!(plan.warnings[0].contains("/ws/.env"));
    }

    #[test]
    fn missing_protected_paths_in_writable_trees_become_placeholders() {
        let h = host();
        let mut policy = fs(
            &[("/ws", RW), ("/home/dev", R)],
            &["/ws/.env", "/home/dev/.aws"],
        );
        // `read_only = ["{workspace}/conf/"]` (a directory) and one that exists.
        policy.read_only = vec!["/ws/conf".into(), "/ws/.git/hooks".into()];
        policy.dirs = vec!["/ws/conf".into()];
        policy.repositories = vec!["/ws".into(), "/home/dev/src".into()];
        let (made, problems) = placeholders(&policy, h.path());
        assert!(problems.is_empty(), "{problems:?}");
        // Not the home's: the sandbox cannot write there. Not what exists (.git/hooks).
        assert_eq!(
            made,
            [
                (PathBuf::from("/ws/.env"), Kind::File),
                ("/ws/conf".into(), Kind::Dir)
            ]
        );
        // A work tree with no .git gets one.
        std::fs::remove_dir_all(h.path().join("ws/.git")).unwrap();
        let (made, _) = placeholders(&policy, h.path());
        assert!(
            made.contains(&(PathBuf::from("/ws/.git"), Kind::Dir)),
            "{made:?}"
        );
    }

    #[test]
    fn a_repositorys_git_dir_is_bound_read_only() {
        let h = host();
        let mut policy = fs(&[("/ws", RW)], &[]);
        policy.repositories = vec!["/ws".into()];
        let plan = plan(&policy, h.path(), &[]);
        assert!(plan.ops.contains(&MountOp::Bind {
            path: "/ws/.git".into(),
            kind: Kind::Dir,
            access: R
        }));
    }

    #[test]
    fn a_tree_holding_proc_still_gets_a_fresh_procfs() {
        let h = host();
        std::fs::create_dir_all(h.path().join("proc")).unwrap();
        let plan = plan(&fs(&[("/", R)], &[]), h.path(), &[]);
        assert!(plan.ops.contains(&MountOp::Proc {
            path: "/proc".into()
        }));
    }

    #[test]
    fn proc_is_a_fresh_procfs_and_tmp_is_noexec_unless_executed() {
        let h = host();
        let plan = plan(&fs(&[("/proc", R), ("/tmp", RW)], &[]), h.path(), &[]);
        assert!(plan.ops.contains(&MountOp::Proc {
            path: "/proc".into()
        }));
        assert!(plan.ops.contains(&MountOp::Tmpfs {
            path: "/tmp".into(),
            exec: false,
            size: TMP
        }));
        let rwx = Access {
            read: true,
            write: true,
            exec: true,
        };
        let plan = super::plan(&fs(&[("/tmp", rwx)], &[]), h.path(), &[]);
        assert!(plan.ops.contains(&MountOp::Tmpfs {
            path: "/tmp".into(),
            exec: true,
            size: TMP
        }));
    }

    #[test]
    fn mount_flags_follow_access() {
        let ro = bind_attrs(Path::new("/usr"), R);
        assert_eq!(ro & libc::MOUNT_ATTR_RDONLY, libc::MOUNT_ATTR_RDONLY);
        assert_eq!(ro & libc::MOUNT_ATTR_NOEXEC, libc::MOUNT_ATTR_NOEXEC);
        let rx = bind_attrs(Path::new("/usr/bin"), RX);
        assert_eq!(rx & libc::MOUNT_ATTR_NOEXEC, 0);
        assert_eq!(
            bind_attrs(Path::new("/dev/null"), RW) & libc::MOUNT_ATTR_NODEV,
            0
        );
        assert_eq!(
            bind_attrs(Path::new("/ws"), RW) & libc::MOUNT_ATTR_RDONLY,
            0
        );
    }
}
