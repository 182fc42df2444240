//! Who the sandboxed process is: its user, groups and capabilities.
//!
//! Runs in the child after the mounts (which need CAP_SYS_ADMIN) and before Landlock and
//! seccomp. Every capability not listed in the profile is removed from every set, the
//! bounding set included, so neither `execve` of a setuid binary (blocked anyway by
//! `no_new_privs`) nor of a root-owned program can bring one back.

use std::str::FromStr;

use caps::{CapSet, Capability, CapsHashSet};
use nix::unistd::{Gid, Uid};

use crate::policy::Identity;
use crate::sys;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("unknown capability `{0}`")]
    UnknownCapability(String),
    #[error("cannot change capabilities ({what}): {source}")]
    Caps {
        what: &'static str,
        source: caps::errors::CapsError,
    },
    #[error("cannot lock securebits: {0}")]
    Securebits(#[source] std::io::Error),
    #[error("cannot switch to uid {uid} gid {gid}: {source}")]
    Switch {
        uid: u32,
        gid: u32,
        source: nix::Error,
    },
}

/// Switches to `identity` keeping exactly `keep` capabilities (as `CAP_*` names).
pub fn assume(identity: &Identity, keep: &[String]) -> Result<(), IdentityError> {
    let keep: CapsHashSet = keep
        .iter()
        .map(|name| {
            Capability::from_str(name).map_err(|_| IdentityError::UnknownCapability(name.clone()))
        })
        .collect::<Result<_, _>>()?;
    let caps_err = |what| move |source| IdentityError::Caps { what, source };

    for cap in caps::all() {
        if !keep.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap)
                .map_err(caps_err("drop from the bounding set"))?;
        }
    }
    // Root gets no capabilities from execve just by being root; only the ambient ones below.
    sys::set_securebits(libc::SECBIT_NOROOT | libc::SECBIT_NOROOT_LOCKED)
        .map_err(IdentityError::Securebits)?;

    let switch = Uid::from_raw(identity.uid) != Uid::current()
        || Gid::from_raw(identity.gid) != Gid::current();
    if switch {
        let err = |source| IdentityError::Switch {
            uid: identity.uid,
            gid: identity.gid,
            source,
        };
        let groups: Vec<Gid> = identity.groups.iter().map(|g| Gid::from_raw(*g)).collect();
        nix::unistd::setgroups(&groups).map_err(err)?;
        nix::sys::prctl::set_keepcaps(true).map_err(err)?;
        let gid = Gid::from_raw(identity.gid);
        nix::unistd::setresgid(gid, gid, gid).map_err(err)?;
        let uid = Uid::from_raw(identity.uid);
        nix::unistd::setresuid(uid, uid, uid).map_err(err)?;
        nix::sys::prctl::set_keepcaps(false).map_err(err)?;
    }

    caps::clear(None, CapSet::Ambient).map_err(caps_err("clear the ambient set"))?;
    caps::set(None, CapSet::Effective, &keep).map_err(caps_err("set the effective set"))?;
    caps::set(None, CapSet::Permitted, &keep).map_err(caps_err("set the permitted set"))?;
    caps::set(None, CapSet::Inheritable, &keep).map_err(caps_err("set the inheritable set"))?;
    for cap in &keep {
        caps::raise(None, CapSet::Ambient, *cap)
            .map_err(caps_err("raise an ambient capability"))?;
    }
    Ok(())
}
