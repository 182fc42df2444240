//! Landlock: which paths the sandbox may read, write or execute, which TCP ports it may
//! connect to or bind, and scoping of signals and abstract unix sockets to the sandbox.
//!
//! Every access right the kernel knows up to [`TARGET`] is handled, so anything not granted
//! is denied. Under `compat = "strict"` the ruleset is a hard requirement: a kernel that
//! cannot enforce all of it makes the launch fail. Under `best-effort` the caller learns
//! exactly what was enforced from the returned [`Enforcement`].

use landlock::{
    Access as _, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort, PathBeneath,
    PathFd, RestrictionStatus, Ruleset, RulesetAttr, RulesetCreated, RulesetCreatedAttr,
    RulesetStatus, Scope, ABI,
};
use serde::{Deserialize, Serialize};

use crate::mounts::{Grant, Kind};
use crate::policy::{Access, NetPolicy};
use crate::profile::Compat;

/// The Landlock ABI whose rights Cordon asks for: file rights up to ioctl on devices (5),
/// TCP bind/connect (4), signal and abstract-unix scoping (6).
pub const TARGET: ABI = ABI::V6;
const _: () = assert!(TARGET as u32 == crate::policy::DEFAULT_LANDLOCK_ABI);

#[derive(Debug, thiserror::Error)]
pub enum LandlockError {
    #[error("cannot build the Landlock ruleset: {0}")]
    Ruleset(#[from] landlock::RulesetError),
    #[error("cannot open {path} for a Landlock rule: {source}")]
    Open {
        path: std::path::PathBuf,
        source: landlock::PathFdError,
    },
    #[error("the kernel enforces the Landlock ruleset only {status}; compat = \"strict\" refuses to run")]
    NotFullyEnforced { status: Status },
}

/// How much of the ruleset the kernel enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Fully,
    Partially,
    Not,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Fully => "fully",
            Status::Partially => "partially",
            Status::Not => "not",
        })
    }
}

/// What the kernel actually enforced, reported back to the parent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enforcement {
    pub status: Status,
    pub no_new_privs: bool,
}

fn fs_rights(access: Access, kind: Kind) -> BitFlags<AccessFs> {
    let mut rights = BitFlags::<AccessFs>::empty();
    if access.read {
        rights |= AccessFs::ReadFile | AccessFs::ReadDir;
    }
    if access.write {
        rights |= AccessFs::from_all(TARGET) & !AccessFs::Execute;
    }
    if access.exec {
        rights |= AccessFs::Execute | AccessFs::ReadFile | AccessFs::ReadDir;
    }
    if kind == Kind::File {
        rights &= AccessFs::from_file(TARGET);
    }
    rights
}

fn level(compat: Compat) -> CompatLevel {
    match compat {
        Compat::Strict => CompatLevel::HardRequirement,
        Compat::BestEffort => CompatLevel::BestEffort,
    }
}

/// Creates the ruleset and adds one rule per grant and port. Paths are opened now, so this
/// runs after the sandbox's root is in place and before privileges are dropped.
///
/// `net: None` leaves TCP ports unhandled (`mode = "audit"`: the eBPF programs report what
/// the profile's ports would refuse).
pub fn prepare(
    grants: &[Grant],
    net: Option<&NetPolicy>,
    compat: Compat,
) -> Result<RulesetCreated, LandlockError> {
    let mut ruleset = Ruleset::default()
        .set_compatibility(level(compat))
        .handle_access(AccessFs::from_all(TARGET))?;
    if net.is_some() {
        ruleset = ruleset.handle_access(AccessNet::from_all(TARGET))?;
    }
    let mut ruleset = ruleset.scope(Scope::from_all(TARGET))?.create()?;
    for grant in grants {
        let fd = PathFd::new(&grant.path).map_err(|source| LandlockError::Open {
            path: grant.path.clone(),
            source,
        })?;
        ruleset = ruleset.add_rule(PathBeneath::new(fd, fs_rights(grant.access, grant.kind)))?;
    }
    if let Some(net) = net {
        for port in &net.connect_tcp {
            ruleset = ruleset.add_rule(NetPort::new(*port, AccessNet::ConnectTcp))?;
        }
        for port in &net.bind_tcp {
            ruleset = ruleset.add_rule(NetPort::new(*port, AccessNet::BindTcp))?;
        }
    }
    Ok(ruleset)
}

/// The Landlock ABI that logs denials to audit, with `log_new_exec`.
const LOG_NEW_EXEC_ABI: u32 = 7;

/// The flags of `landlock_restrict_self` for a ruleset entered as [`enforce`] enters it
/// (the command's own domain, entered by a raw call in a process that may not allocate).
pub fn restrict_flags() -> u32 {
    const LOG_NEW_EXEC_ON: u32 = 1 << 1;
    if crate::sys::landlock_abi() >= LOG_NEW_EXEC_ABI {
        LOG_NEW_EXEC_ON
    } else {
        0
    }
}

/// Restricts the calling process (and everything it will exec) to the ruleset.
pub fn enforce(ruleset: RulesetCreated, compat: Compat) -> Result<Enforcement, LandlockError> {
    // Denials are logged to audit only until the first exec by default; the sandboxed
    // command is exec'd after this, so ask for its denials too (ABI 7; older kernels have
    // no Landlock audit records to ask for).
    let ruleset = if crate::sys::landlock_abi() >= LOG_NEW_EXEC_ABI {
        ruleset.log_new_exec(true)?
    } else {
        ruleset
    };
    let RestrictionStatus {
        ruleset: status,
        no_new_privs,
        ..
    } = ruleset.restrict_self()?;
    let status = match status {
        RulesetStatus::FullyEnforced => Status::Fully,
        RulesetStatus::PartiallyEnforced => Status::Partially,
        RulesetStatus::NotEnforced => Status::Not,
    };
    if compat == Compat::Strict && status != Status::Fully {
        return Err(LandlockError::NotFullyEnforced { status });
    }
    Ok(Enforcement {
        status,
        no_new_privs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_grants_everything_but_execute() {
        let rw = fs_rights(
            Access {
                read: true,
                write: true,
                exec: false,
            },
            Kind::Dir,
        );
        assert!(rw.contains(AccessFs::MakeReg | AccessFs::RemoveFile | AccessFs::Truncate));
        assert!(!rw.contains(AccessFs::Execute));
    }

    #[test]
    fn exec_grants_execute_and_read_only() {
        let rx = fs_rights(
            Access {
                read: true,
                write: false,
                exec: true,
            },
            Kind::Dir,
        );
        assert_eq!(
            rx,
            AccessFs::Execute | AccessFs::ReadFile | AccessFs::ReadDir
        );
    }

    #[test]
    fn files_get_only_file_rights() {
        let rw = fs_rights(
            Access {
                read: true,
                write: true,
                exec: false,
            },
            Kind::File,
        );
        assert!(!rw.contains(AccessFs::ReadDir) && !rw.contains(AccessFs::MakeDir));
        assert!(rw.contains(AccessFs::WriteFile | AccessFs::ReadFile));
    }
}
