//! Who is on the other end of the socket, and what they may do.
//!
//! The kernel tells: `SO_PEERCRED` (uid, gid, pid) and `SO_PEERGROUPS` (supplementary
//! groups), both taken when the peer connected. Root may do everything; members of a
//! responder group may list, read and act; members of a viewer group may list and read;
//! members of a run group (everyone, when none is configured) may run sandboxes as
//! themselves. A process inside a sandbox may do nothing at all, whoever it runs as.

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
    pub groups: Vec<u32>,
    /// Whether the connecting process runs inside a Cordon sandbox (see [`Peer::of`]).
    pub sandboxed: bool,
}

impl Peer {
    pub fn of(stream: &UnixStream) -> std::io::Result<Self> {
        let cred = nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials)
            .map_err(std::io::Error::from)?;
        let groups = crate::sys::peer_groups(stream.as_fd())?;
        let pid = u32::try_from(cred.pid()).unwrap_or(0);
        // Read through the pid, then checked against the pidfd: if the process that
        // connected is gone, the pid may be someone else's, and the answer is "sandboxed".
        let pidfd = crate::sys::peer_pidfd(stream.as_fd()).ok();
        let sandboxed = match std::fs::read_to_string(format!("/proc/{pid}/cgroup")) {
            Ok(text) if pid != 0 => {
                sandboxed(&text) || pidfd.as_ref().is_none_or(crate::sys::has_exited)
            }
            _ => true,
        };
        Ok(Self {
            uid: cred.uid(),
            gid: cred.gid(),
            pid,
            groups,
            sandboxed,
        })
    }

    fn member_of(&self, gids: &[u32]) -> bool {
        gids.contains(&self.gid) || self.groups.iter().any(|g| gids.contains(g))
    }

    /// Whether the peer runs inside a Cordon sandbox (its cgroup is under `cordon/`). When
    /// that cannot be read (the peer is gone, or hides in another namespace), the answer is
    /// yes: fail closed.
    pub fn in_sandbox(&self) -> bool {
        self.sandboxed
    }
}

/// From `/proc/PID/cgroup`: whether the cgroup v2 path is `/cordon` or below it.
fn sandboxed(proc_cgroup: &str) -> bool {
    proc_cgroup
        .lines()
        .filter_map(|l| l.strip_prefix("0::"))
        .any(|path| path == "/cordon" || path.starts_with("/cordon/"))
}

/// What a peer may do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rights {
    /// List sandboxes, read events and status.
    pub view: bool,
    /// Kill, freeze, thaw, isolate, release.
    pub act: bool,
    /// Run sandboxes as themselves.
    pub run: bool,
}

/// The configured group names, as group ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Groups {
    viewers: Vec<u32>,
    responders: Vec<u32>,
    /// `None`: every local user may run sandboxes.
    runners: Option<Vec<u32>>,
    /// The names as configured, to say who may when someone may not.
    viewer_names: Vec<String>,
    responder_names: Vec<String>,
}

impl Groups {
    /// Looks the names up (the viewer, responder and run groups cordond's configuration
    /// names); names that do not exist on this host are returned to be warned about (they
    /// grant nothing).
    pub fn resolve(
        viewer_groups: &[String],
        responder_groups: &[String],
        run_groups: &[String],
    ) -> (Self, Vec<String>) {
        let mut missing = Vec::new();
        let mut lookup = |names: &[String]| -> Vec<u32> {
            names
                .iter()
                .filter_map(|name| match nix::unistd::Group::from_name(name) {
                    Ok(Some(group)) => Some(group.gid.as_raw()),
                    _ => {
                        missing.push(name.clone());
                        None
                    }
                })
                .collect()
        };
        let viewers = lookup(viewer_groups);
        let responders = lookup(responder_groups);
        let runners = if run_groups.is_empty() {
            None
        } else {
            Some(lookup(run_groups))
        };
        (
            Self {
                viewers,
                responders,
                runners,
                viewer_names: viewer_groups.to_vec(),
                responder_names: responder_groups.to_vec(),
            },
            missing,
        )
    }

    /// Who may read (`act: false`) or act on (`act: true`) every sandbox: the groups that
    /// grant it, or what to configure when none does.
    pub fn who_may(&self, act: bool) -> String {
        let mut names = self.responder_names.clone();
        if !act {
            names.splice(0..0, self.viewer_names.iter().cloned());
        }
        if names.is_empty() {
            let key = if act {
                "responder_groups"
            } else {
                "viewer_groups"
            };
            return format!("only root may: no group grants it ([api] {key} in cordon.toml)");
        }
        format!("members of {} may", names.join(", "))
    }

    pub fn rights(&self, peer: &Peer) -> Rights {
        if peer.in_sandbox() {
            return Rights::default();
        }
        if peer.uid == 0 {
            return Rights {
                view: true,
                act: true,
                run: true,
            };
        }
        let responder = peer.member_of(&self.responders);
        let runner = self.runners.as_ref().is_none_or(|g| peer.member_of(g));
        Rights {
            view: responder || peer.member_of(&self.viewers),
            act: responder,
            run: runner,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sandboxed_cgroup_is_recognised() {
        assert!(sandboxed("12:pids:/\n0::/cordon/coding-agent-1-0\n"));
        assert!(sandboxed("0::/cordon\n"));
        assert!(!sandboxed("0::/system.slice/cordond.service\n"));
        assert!(!sandboxed("0::/cordonX/a\n"));
    }

    #[test]
    fn rights_follow_groups() {
        let groups = Groups {
            viewers: vec![100],
            responders: vec![200],
            runners: None,
            viewer_names: vec!["cordon-viewers".into()],
            responder_names: vec!["cordon-responders".into()],
        };
        assert_eq!(
            groups.who_may(false),
            "members of cordon-viewers, cordon-responders may"
        );
        assert_eq!(groups.who_may(true), "members of cordon-responders may");
        assert!(Groups::default()
            .who_may(true)
            .contains("[api] responder_groups"));
        let me = std::process::id();
        let peer = |gid, groups: Vec<u32>| Peer {
            uid: 1000,
            gid,
            pid: me,
            groups,
            sandboxed: false,
        };
        assert_eq!(
            groups.rights(&peer(1000, vec![100])),
            Rights {
                view: true,
                act: false,
                run: true
            }
        );
        assert_eq!(
            groups.rights(&peer(200, vec![])),
            Rights {
                view: true,
                act: true,
                run: true
            }
        );
        assert_eq!(
            groups.rights(&peer(1000, vec![])),
            Rights {
                view: false,
                act: false,
                run: true
            }
        );
        let sandboxed = Peer {
            uid: 0,
            gid: 0,
            pid: me,
            groups: vec![],
            sandboxed: true,
        };
        assert_eq!(
            groups.rights(&sandboxed),
            Rights::default(),
            "root in a sandbox: nothing"
        );
    }
}
