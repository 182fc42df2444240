//! Which failed file calls were the sandbox's mounts refusing, and by which rule.
//!
//! Landlock reports its own refusals (as audit records). The mounts refuse before Landlock
//! is asked, and say nothing: a denied path inside a visible tree is covered (`EACCES`), a
//! tree the profile only reads is bound read-only (`EROFS`), one it does not execute from
//! is `noexec` (`EACCES` from `execve`), and what the profile does not list is not there
//! (`ENOENT`). The kernel program reports every path call of a sandbox that failed with one
//! of those; this tells the ones Cordon's view caused from a program's own misses (a file
//! that does not exist on the host either, a permission the host's files refuse).
//!
//! Pure: it works from the mount plan and a way to ask whether the host has a path.

use std::path::{Component, Path, PathBuf};

use crate::event::FileLayer;
use crate::policy::{Access, FsPolicy};

use super::mounts::{MountOp, MountPlan};

/// The sandbox's view as the mounts make it.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// What is mounted, and with which access: binds of the host's trees, the private
    /// `/tmp`, `/proc`.
    mounts: Vec<Mount>,
    /// Denied paths inside visible trees, covered by an inaccessible mount.
    masks: Vec<PathBuf>,
    /// Covered hidden paths a response rule watches (`mounts::plan`): refused, but
    /// reported as what hid them.
    watched: Vec<PathBuf>,
    /// The profile's denied paths, as listed.
    deny: Vec<PathBuf>,
    /// What Landlock grants, by path (a path gets what its ancestors' rules grant together).
    grants: Vec<(PathBuf, Access)>,
}

#[derive(Debug, Clone)]
struct Mount {
    path: PathBuf,
    access: Access,
    /// A file system of the sandbox's own (`/tmp`): the host's files there are not seen.
    private: bool,
    /// A bind of the host's tree at its own path: the sandbox sees what the host has there.
    host: bool,
}

/// Which rule of the view refused an access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub layer: FileLayer,
    /// The profile's path the rule is for; `None` for the sandbox's root and for paths not in
    /// the view.
    pub rule: Option<PathBuf>,
}

const EACCES: i32 = libc::EACCES;
const EROFS: i32 = libc::EROFS;
const ENOENT: i32 = libc::ENOENT;

impl View {
    pub fn new(plan: &MountPlan, fs: &FsPolicy) -> Self {
        let mut view = View {
            deny: fs.deny.clone(),
            watched: plan.watched.clone(),
            grants: plan
                .grants
                .iter()
                .map(|g| (g.path.clone(), g.access))
                .collect(),
            ..View::default()
        };
        for op in &plan.ops {
            match op {
                MountOp::Bind { path, access, .. } => view.mounts.push(Mount {
                    path: path.clone(),
                    access: *access,
                    private: false,
                    host: true,
                }),
                MountOp::Tmpfs { path, exec, .. } => view.mounts.push(Mount {
                    path: path.clone(),
                    access: Access {
                        read: true,
                        write: true,
                        exec: *exec,
                    },
                    private: true,
                    host: false,
                }),
                // The sandbox's own processes; the host's are not its to look for.
                MountOp::Proc { path } => view.mounts.push(Mount {
                    path: path.clone(),
                    access: Access {
                        read: true,
                        write: false,
                        exec: false,
                    },
                    private: false,
                    host: false,
                }),
                MountOp::Mask { path, .. } => view.masks.push(path.clone()),
                MountOp::Symlink { .. } | MountOp::Pin { .. } => {}
            }
        }
        view
    }

    /// Why the call on `path` (absolute, as the sandbox sees it) failed with `errno`, when
    /// the view refused it; `None` when the failure was not Cordon's doing. `access` is the
    /// Landlock name of what was tried; `on_host` says whether the host has a path.
    pub fn refusal(
        &self,
        path: &Path,
        errno: i32,
        access: &str,
        on_host: impl Fn(&Path) -> bool,
    ) -> Option<Refusal> {
        // `..` after a process's cwd or descriptor in /proc leaves what the link names: the
        // words say nothing. The caller reads the link (see `monitor::file_denied`).
        if through_proc_link(path) {
            return None;
        }
        let path = normalize(path);
        if let Some(mask) = longest(self.masks.iter(), &path) {
            // A covered path refuses everything; a missing one below it was never there,
            // unless the cover hides a watched path (a profile that keeps
            // CAP_DAC_READ_SEARCH looks into it, and finds it empty).
            if errno == ENOENT {
                return (self.watched.contains(mask) && on_host(&path)).then(|| self.hidden(&path));
            }
            if self.watched.contains(mask) {
                return Some(self.hidden(&path));
            }
            return Some(Refusal {
                layer: FileLayer::Deny,
                rule: Some(mask.clone()),
            });
        }
        let mount = longest(self.mounts.iter().map(|m| &m.path), &path)
            .and_then(|p| self.mounts.iter().rev().find(|m| &m.path == p));
        match errno {
            EROFS => match mount {
                None => Some(Refusal {
                    layer: FileLayer::ReadOnly,
                    rule: None,
                }),
                Some(m) if !m.access.write => Some(Refusal {
                    layer: FileLayer::ReadOnly,
                    rule: Some(m.path.clone()),
                }),
                // Written to a writable bind of a host file system that is itself read-only.
                Some(_) => None,
            },
            // Landlock refuses what a mount allows; only `noexec` refuses before it.
            EACCES if access == "fs.execute" => match mount {
                Some(m) if !m.access.exec => Some(Refusal {
                    layer: FileLayer::Noexec,
                    rule: Some(m.path.clone()),
                }),
                _ => None,
            },
            // Missing in a bind of the host's tree: missing on the host too. Missing where
            // the view has nothing, or a file system of its own: hidden, if the host has it.
            ENOENT if mount.is_none_or(|m| m.private) && on_host(&path) => Some(self.hidden(&path)),
            _ => None,
        }
    }

    /// Why a path the view does not show is hidden: a denied path's rule, else its absence.
    fn hidden(&self, path: &Path) -> Refusal {
        match longest(self.deny.iter(), path) {
            Some(rule) => Refusal {
                layer: FileLayer::Deny,
                rule: Some(rule.clone()),
            },
            None => Refusal {
                layer: FileLayer::NotInView,
                rule: None,
            },
        }
    }

    /// Whether the sandbox sees `path` (absolute, without `.` or `..`) as the host has it:
    /// under a bind of the host's tree, and under no cover. A name missing there that the
    /// host lacks too, reached on the host without a link, is a program's own miss.
    pub fn shows_host_tree(&self, path: &Path) -> bool {
        if longest(self.masks.iter(), path).is_some() {
            return false;
        }
        longest(self.mounts.iter().map(|m| &m.path), path)
            .and_then(|p| self.mounts.iter().rev().find(|m| &m.path == p))
            .is_some_and(|m| m.host)
    }

    /// Whether `path` is in a tree of the sandbox's own (its private `/tmp`, `/dev/shm`):
    /// what is there, the host does not have at the same path.
    pub fn in_private_tree(&self, path: &Path) -> bool {
        let path = normalize(path);
        longest(self.mounts.iter().map(|m| &m.path), &path)
            .and_then(|p| self.mounts.iter().rev().find(|m| &m.path == p))
            .is_some_and(|m| m.private)
    }
}

impl View {
    /// Under `mode = "audit"`, with the profile's view: which rule would have refused
    /// `access` (Landlock's name) to `path`, which the audited sandbox was let do. `path` is
    /// absolute and resolved (the object the kernel reached, symlinks followed).
    pub fn would_refuse(&self, path: &Path, access: &str) -> Option<Refusal> {
        let path = normalize(path);
        if let Some(mask) = longest(self.masks.iter(), &path) {
            return Some(Refusal {
                layer: FileLayer::Deny,
                rule: Some(mask.clone()),
            });
        }
        let need = need_of(access);
        let mount = longest(self.mounts.iter().map(|m| &m.path), &path)
            .and_then(|p| self.mounts.iter().rev().find(|m| &m.path == p));
        let Some(mount) = mount else {
            return Some(self.hidden(&path));
        };
        if need.write && !mount.access.write {
            return Some(Refusal {
                layer: FileLayer::ReadOnly,
                rule: Some(mount.path.clone()),
            });
        }
        if need.exec && !mount.access.exec {
            return Some(Refusal {
                layer: FileLayer::Noexec,
                rule: Some(mount.path.clone()),
            });
        }
        let granted = self
            .grants
            .iter()
            .filter(|(p, _)| path.starts_with(p))
            .fold(Access::default(), |a, (_, g)| Access {
                read: a.read || g.read || g.write || g.exec,
                write: a.write || g.write,
                exec: a.exec || g.exec,
            });
        let enough = (!need.read || granted.read)
            && (!need.write || granted.write)
            && (!need.exec || granted.exec);
        (!enough).then_some(Refusal {
            layer: FileLayer::Landlock,
            rule: None,
        })
    }
}

/// What an access (Landlock's name) needs: read, write (making, removing, changing), exec.
fn need_of(access: &str) -> Access {
    match access {
        "fs.execute" => Access {
            read: true,
            write: false,
            exec: true,
        },
        "fs.read_file" | "fs.read_dir" | "fs.stat" => Access {
            read: true,
            write: false,
            exec: false,
        },
        _ => Access {
            read: true,
            write: true,
            exec: false,
        },
    }
}

/// The longest of `paths` that `path` is at or below.
fn longest<'a>(paths: impl Iterator<Item = &'a PathBuf>, path: &Path) -> Option<&'a PathBuf> {
    paths
        .filter(|p| path.starts_with(p))
        .max_by_key(|p| p.components().count())
}

/// `path` with `.` and `..` taken out lexically (as the kernel would, symlinks aside), and
/// a process's root in `/proc` (`/proc/self/root/etc`, `/proc/7/task/7/root/etc`) taken for
/// what it is inside the sandbox: the sandbox's root, every process's (its PID namespace
/// shows only its own).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => {
                out.push(n);
                if is_proc_root(&out) {
                    out = PathBuf::from("/");
                }
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Whether `path` goes through a process's cwd or one of its descriptors in `/proc`.
pub fn through_proc_link(path: &Path) -> bool {
    let names: Vec<&str> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => n.to_str(),
            _ => None,
        })
        .collect();
    names.windows(3).any(|w| {
        w[0] == "proc"
            && (w[1] == "self" || w[1] == "thread-self" || w[1].parse::<u32>().is_ok())
            && (w[2] == "cwd" || w[2] == "fd")
    }) || names
        .windows(2)
        .any(|w| w[0] == "task" && w[1].parse::<u32>().is_ok())
        && names.iter().any(|n| *n == "cwd" || *n == "fd")
}

/// Whether `path` is a process's root directory in `/proc`.
fn is_proc_root(path: &Path) -> bool {
    let names: Vec<&str> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => n.to_str(),
            _ => None,
        })
        .collect();
    let process = |n: &str| n == "self" || n == "thread-self" || n.parse::<u32>().is_ok();
    let thread = |n: &str| n.parse::<u32>().is_ok();
    match names.as_slice() {
        ["proc", p, "root"] => process(p),
        ["proc", p, "task", t, "root"] => process(p) && thread(t),
        _ => false,
    }
}

/// Landlock's name for what a failed path call tried (x86_64 syscall numbers), from its
/// number and, for `open`, its flags.
pub fn access_of(nr: i32, flags: u32) -> &'static str {
    let flags = flags as i32;
    match nr {
        // execve, execveat; mmap of a file made executable (audit only: a `noexec` mount
        // refuses it).
        59 | 322 | 9 => "fs.execute",
        2 | 257 | 437 | 85 => {
            if flags & libc::O_CREAT != 0 {
                "fs.make_reg"
            } else if flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
                "fs.write_file"
            } else if flags & libc::O_DIRECTORY != 0 {
                "fs.read_dir"
            } else {
                "fs.read_file"
            }
        }
        83 | 258 => "fs.make_dir",
        84 => "fs.remove_dir",
        87 => "fs.remove_file",
        263 if flags & libc::AT_REMOVEDIR != 0 => "fs.remove_dir",
        263 => "fs.remove_file",
        133 | 259 | 82 | 264 | 316 | 86 | 265 => "fs.make_reg",
        88 | 266 => "fs.make_sym",
        76 => "fs.truncate",
        80 => "fs.read_dir",
        90 | 92 | 94 | 268 | 260 | 188 | 189 => "fs.write_file",
        _ => "fs.stat",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(write: bool, exec: bool) -> Access {
        Access {
            read: true,
            write,
            exec,
        }
    }

    fn mount(path: &str, access: Access, private: bool) -> Mount {
        Mount {
            path: path.into(),
            access,
            private,
            host: !private,
        }
    }

    fn view() -> View {
        View {
            mounts: vec![
                mount("/usr", rw(false, true), false),
                mount("/etc", rw(false, false), false),
                mount("/w", rw(true, false), false),
                mount("/w/.git", rw(false, false), false),
                mount("/tmp", rw(true, false), true),
            ],
            masks: vec!["/etc/shadow".into(), "/etc/ssh".into()],
            watched: vec![],
            deny: vec![
                "/root/.ssh".into(),
                "/etc/shadow".into(),
                "/etc/ssh".into(),
                "/tmp/h/.ssh".into(),
            ],
            grants: vec![
                ("/usr".into(), rw(false, true)),
                ("/etc".into(), rw(false, false)),
                ("/w".into(), rw(true, false)),
            ],
        }
    }

    #[test]
    fn audited_accesses_are_judged_against_the_profiles_view() {
        let v = view();
        let at = |p: &str, access| v.would_refuse(Path::new(p), access);
        assert_eq!(at("/usr/bin/git", "fs.execute"), None);
        assert_eq!(at("/w/src/main.rs", "fs.write_file"), None);
        assert_eq!(at("/etc/passwd", "fs.read_file"), None);
        assert_eq!(
            at("/opt/tool/bin/x", "fs.execute"),
            refusal(FileLayer::NotInView, None),
            "a tree the profile does not list"
        );
        assert_eq!(
            at("/root/.ssh/id", "fs.read_file"),
            refusal(FileLayer::Deny, Some("/root/.ssh")),
            "left out, and denied"
        );
        assert_eq!(
            at("/etc/ssh/sshd_config", "fs.read_file"),
            refusal(FileLayer::Deny, Some("/etc/ssh"))
        );
        assert_eq!(
            at("/etc/hosts", "fs.write_file"),
            refusal(FileLayer::ReadOnly, Some("/etc"))
        );
        assert_eq!(
            at("/w/.git/config", "fs.make_reg"),
            refusal(FileLayer::ReadOnly, Some("/w/.git"))
        );
        assert_eq!(
            at("/w/.venv/bin/pip", "fs.execute"),
            refusal(FileLayer::Noexec, Some("/w"))
        );
        assert_eq!(
            at("/tmp/x", "fs.read_file"),
            refusal(FileLayer::Landlock, None),
            "the private /tmp is there, but the profile grants nothing in it"
        );
    }

    /// What the sandbox sees as the host has it: below its binds, not below a cover, a
    /// tree of its own or its procfs, nor outside every mount.
    #[test]
    fn only_binds_of_the_hosts_tree_show_it_as_the_host_has_it() {
        let mut v = view();
        v.mounts.push(Mount {
            path: "/proc".into(),
            access: rw(false, false),
            private: false,
            host: false,
        });
        for shown in [
            "/w/src/.gitignore",
            "/usr/lib/x",
            "/w/.git/config",
            "/etc/hosts",
        ] {
            assert!(v.shows_host_tree(Path::new(shown)), "{shown}");
        }
        for hidden in [
            "/etc/shadow",
            "/etc/ssh/sshd_config",
            "/tmp/x",
            "/proc/1/cwd/x",
            "/root/.ssh/id_rsa",
            "/",
        ] {
            assert!(!v.shows_host_tree(Path::new(hidden)), "{hidden}");
        }
    }

    fn everywhere(_: &Path) -> bool {
        true
    }

    fn nowhere(_: &Path) -> bool {
        false
    }

    fn refusal(layer: FileLayer, rule: Option<&str>) -> Option<Refusal> {
        Some(Refusal {
            layer,
            rule: rule.map(PathBuf::from),
        })
    }

    #[test]
    fn a_watched_path_covered_is_reported_as_what_hid_it() {
        let mut v = view();
        for watched in ["/root/.ssh", "/root/.aws"] {
            v.masks.push(watched.into());
            v.watched.push(watched.into());
        }
        let at = |p: &str, errno| v.refusal(Path::new(p), errno, "fs.read_file", everywhere);
        assert_eq!(
            at("/root/.ssh/id_ed25519", EACCES),
            refusal(FileLayer::Deny, Some("/root/.ssh")),
            "hidden by the profile's deny entry, which says so"
        );
        assert_eq!(
            at("/root/.aws/credentials", EACCES),
            refusal(FileLayer::NotInView, None),
            "hidden by the view: not a deny rule of the profile's"
        );
        assert_eq!(
            at("/root/.aws/credentials", ENOENT),
            refusal(FileLayer::NotInView, None),
            "looked into with CAP_DAC_READ_SEARCH: empty, and hidden all the same"
        );
        assert_eq!(
            v.refusal(
                Path::new("/root/.aws/none"),
                ENOENT,
                "fs.read_file",
                nowhere
            ),
            None,
            "missing on the host too"
        );
    }

    #[test]
    fn covered_paths_are_the_deny_rule() {
        let v = view();
        let at = |p: &str, errno| v.refusal(Path::new(p), errno, "fs.read_file", everywhere);
        assert_eq!(
            at("/etc/shadow", EACCES),
            refusal(FileLayer::Deny, Some("/etc/shadow"))
        );
        assert_eq!(
            at("/etc/ssh/sshd_config", EACCES),
            refusal(FileLayer::Deny, Some("/etc/ssh"))
        );
        assert_eq!(
            at("/etc/../etc/./ssh/x", EACCES),
            refusal(FileLayer::Deny, Some("/etc/ssh")),
            "dots are taken out"
        );
        assert_eq!(at("/etc/sshd", EACCES), None, "a sibling is not below");
        for through in [
            "/proc/self/root/etc/shadow",
            "/proc/thread-self/root/etc/shadow",
            "/proc/42/root/etc/shadow",
            "/proc/42/task/43/root/etc/shadow",
            "/proc/self/root/proc/self/root/etc/shadow",
        ] {
            assert_eq!(
                at(through, EACCES),
                refusal(FileLayer::Deny, Some("/etc/shadow")),
                "{through}"
            );
        }
        assert_eq!(at("/proc/self/rootx/etc/shadow", EACCES), None);
        assert_eq!(
            at("/proc/self/cwd/../../etc/shadow", EACCES),
            None,
            "what a cwd's `..` names is the link's, not the words'"
        );
        assert_eq!(at("/proc/2/fd/3/shadow", EACCES), None);
    }

    #[test]
    fn read_only_mounts_name_the_tree() {
        let v = view();
        let at = |p: &str| v.refusal(Path::new(p), EROFS, "fs.make_reg", everywhere);
        assert_eq!(at("/usr/bin/x"), refusal(FileLayer::ReadOnly, Some("/usr")));
        assert_eq!(
            at("/w/.git/hooks/pre-commit"),
            refusal(FileLayer::ReadOnly, Some("/w/.git"))
        );
        assert_eq!(at("/x"), refusal(FileLayer::ReadOnly, None), "the root");
        assert_eq!(at("/w/file"), None, "a writable tree: the host's own doing");
    }

    #[test]
    fn exec_is_refused_by_noexec_mounts_only() {
        let v = view();
        let at = |p: &str, access| v.refusal(Path::new(p), EACCES, access, everywhere);
        assert_eq!(
            at("/w/dropped", "fs.execute"),
            refusal(FileLayer::Noexec, Some("/w"))
        );
        assert_eq!(at("/usr/bin/x", "fs.execute"), None, "an exec tree");
        assert_eq!(
            at("/w/file", "fs.read_file"),
            None,
            "Landlock reports those"
        );
    }

    #[test]
    fn missing_paths_count_when_the_host_has_them() {
        let v = view();
        assert_eq!(
            v.refusal(
                Path::new("/root/.ssh/id_ed25519"),
                ENOENT,
                "fs.read_file",
                everywhere
            ),
            refusal(FileLayer::Deny, Some("/root/.ssh"))
        );
        assert_eq!(
            v.refusal(
                Path::new("/root/.config/x"),
                ENOENT,
                "fs.read_file",
                everywhere
            ),
            refusal(FileLayer::NotInView, None)
        );
        assert_eq!(
            v.refusal(
                Path::new("/root/.config/x"),
                ENOENT,
                "fs.read_file",
                nowhere
            ),
            None,
            "not on the host either: the program's own miss"
        );
        assert_eq!(
            v.refusal(Path::new("/w/missing"), ENOENT, "fs.read_file", everywhere),
            None,
            "inside a mounted tree: missing on the host too"
        );
        assert_eq!(
            v.refusal(
                Path::new("/tmp/h/.ssh/key"),
                ENOENT,
                "fs.read_file",
                everywhere
            ),
            refusal(FileLayer::Deny, Some("/tmp/h/.ssh")),
            "the private /tmp hides the host's"
        );
        assert_eq!(
            v.refusal(Path::new("/tmp/mine"), ENOENT, "fs.read_file", nowhere),
            None
        );
    }

    #[test]
    fn accesses_follow_the_call_and_its_flags() {
        assert_eq!(access_of(59, 0), "fs.execute");
        assert_eq!(access_of(257, libc::O_RDONLY as u32), "fs.read_file");
        assert_eq!(access_of(257, libc::O_WRONLY as u32), "fs.write_file");
        assert_eq!(
            access_of(257, (libc::O_WRONLY | libc::O_CREAT) as u32),
            "fs.make_reg"
        );
        assert_eq!(access_of(263, libc::AT_REMOVEDIR as u32), "fs.remove_dir");
        assert_eq!(access_of(262, 0), "fs.stat");
    }
}
