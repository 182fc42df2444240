//! Containment on this host: listing the sandboxes and acting on one (kill, freeze, thaw,
//! isolate, release). The CLI calls this directly when run as root without cordond, and
//! cordond calls it for requests on its socket and commands from the collector.
//!
//! A sandbox is named by its cgroup (`coding-agent-4242-0`). Each action acts on the kernel
//! (cgroup.kill, cgroup.freeze, the `sandboxes` eBPF map) and returns once the kernel reports
//! it done; the `cordon run` watching the sandbox records a `contained` event for it.

use std::time::{Duration, Instant};

use crate::cgroup::{self, SandboxCgroup};
use crate::ebpf::Kernel;
use crate::event::Action;

/// How long an action may take before it is reported as failed.
const DEADLINE: Duration = Duration::from_secs(2);

pub use cordon_proto::collector::SandboxInfo;

/// Every sandbox on this host, by name.
/// `kernel`: Cordon's eBPF programs, when they are loaded (for each sandbox's network state).
pub fn list(kernel: Option<&Kernel>) -> Result<Vec<SandboxInfo>, String> {
    let dir = cgroup::sandboxes_dir().map_err(|e| e.to_string())?;
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let Ok(sandbox) = SandboxCgroup::open(&dir.join(&name)) else {
            continue;
        };
        let pids: Vec<u32> = std::fs::read_to_string(sandbox.path().join("cgroup.procs"))
            .map(|p| p.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default();
        let state = if sandbox.is_frozen().unwrap_or(false) {
            "frozen"
        } else {
            "running"
        };
        let network = match (kernel, sandbox.id()) {
            (Some(k), Ok(id)) => match k.sandbox(id) {
                Ok(Some(s)) if s.flags & crate::ebpf::abi::CORDON_SANDBOX_ISOLATED as u32 != 0 => {
                    "isolated"
                }
                Ok(Some(_)) => "policy",
                _ => "none",
            },
            _ => "unknown",
        };
        // Whose it is, as recorded at launch; else (an older cordon's) the owner of a process.
        let uid = sandbox.owner().or_else(|| {
            pids.first().and_then(|pid| {
                use std::os::unix::fs::MetadataExt as _;
                std::fs::metadata(format!("/proc/{pid}"))
                    .ok()
                    .map(|m| m.uid())
            })
        });
        out.push(SandboxInfo {
            profile: profile_of(&name).to_string(),
            name,
            procs: pids.len(),
            state: state.into(),
            network: network.into(),
            uid,
            session: sandbox.session(),
        });
    }
    Ok(out)
}

/// The profile part of a sandbox name (`coding-agent` of `coding-agent-4242-0`).
pub fn profile_of(name: &str) -> &str {
    let mut parts = name.rsplitn(3, '-');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(_), Some(profile)) => profile,
        _ => name,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ContainError {
    #[error("not a sandbox name (see `cordon ps`)")]
    BadName,
    #[error("no such sandbox (see `cordon ps`)")]
    NoSuchSandbox,
    #[error("{0}")]
    Kernel(String),
    #[error("not an action on the sandbox: evidence is collected with `cordon evidence`, and alerts are raised by response rules")]
    NotContainment,
    #[error("the kernel did not report the sandbox {what} within {deadline:?}")]
    Timeout {
        what: &'static str,
        deadline: Duration,
    },
}

/// The cgroup of the sandbox `name`: a name of `cordon ps`, never a path.
fn sandbox_named(name: &str) -> Result<SandboxCgroup, ContainError> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(ContainError::BadName);
    }
    let dir = cgroup::sandboxes_dir().map_err(|e| ContainError::Kernel(e.to_string()))?;
    SandboxCgroup::open(&dir.join(name)).map_err(|_| ContainError::NoSuchSandbox)
}

/// The session running in the sandbox `name`, when it has one named.
pub fn session_of(name: &str) -> Option<uuid::Uuid> {
    sandbox_named(name).ok()?.session()
}

/// Acts on the sandbox `name`; returns how long the kernel took.
pub fn act(kernel: Option<&Kernel>, name: &str, action: Action) -> Result<Duration, ContainError> {
    let sandbox = sandbox_named(name)?;
    let start = Instant::now();
    let kernel_err = |e: &dyn std::fmt::Display| ContainError::Kernel(e.to_string());
    let until = |what: &'static str, done: &dyn Fn() -> bool| -> Result<(), ContainError> {
        while !done() {
            if start.elapsed() > DEADLINE {
                return Err(ContainError::Timeout {
                    what,
                    deadline: DEADLINE,
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    };
    match action {
        Action::Kill => {
            // Recorded first, so the sandbox's watcher can say who ended it.
            if let (Some(kernel), Ok(id)) = (kernel, sandbox.id()) {
                let _ = kernel.mark_killed(id);
            }
            sandbox.kill().map_err(|e| kernel_err(&e))?;
            // `cordon run` removes the cgroup as soon as its sandbox is gone.
            until("empty", &|| {
                !sandbox.path().exists() || matches!(sandbox.is_populated(), Ok(false))
            })?;
        }
        Action::Freeze => {
            sandbox.freeze().map_err(|e| kernel_err(&e))?;
            until("frozen", &|| sandbox.is_frozen().unwrap_or(false))?;
        }
        Action::Thaw => {
            sandbox.thaw().map_err(|e| kernel_err(&e))?;
            until("thawed", &|| !sandbox.is_frozen().unwrap_or(true))?;
        }
        Action::Evidence | Action::Alert => return Err(ContainError::NotContainment),
        Action::Isolate | Action::Release => {
            let kernel = kernel.ok_or_else(|| {
                ContainError::Kernel("Cordon's eBPF programs are not loaded".into())
            })?;
            let id = sandbox.id().map_err(|e| kernel_err(&e))?;
            kernel
                .set_isolated(id, action == Action::Isolate)
                .map_err(|e| kernel_err(&e))?;
        }
    }
    Ok(start.elapsed())
}

/// The past participle of an action, for messages (`killed`, `isolated`).
pub fn done(action: Action) -> &'static str {
    match action {
        Action::Kill => "killed",
        Action::Freeze => "frozen",
        Action::Thaw => "thawed",
        Action::Isolate => "isolated",
        Action::Release => "released",
        Action::Evidence => "evidence collected",
        Action::Alert => "alerted",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_is_the_name_before_pid_and_counter() {
        assert_eq!(profile_of("coding-agent-4242-0"), "coding-agent");
        assert_eq!(profile_of("base-1-2"), "base");
        assert_eq!(profile_of("odd"), "odd");
    }
}
