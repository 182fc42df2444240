//! The responders' commands on this host: `cordon ps` and `cordon kill|freeze|thaw|isolate|release`.
//!
//! A sandbox is named by its cgroup (`coding-agent-4242-0`, as `cordon ps` lists it). Each
//! action acts on the kernel directly (cgroup.kill, cgroup.freeze, the `sandboxes` eBPF map)
//! and returns once the kernel reports it done; the `cordon run` watching the sandbox
//! records a `contained` event for it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::cgroup::{self, SandboxCgroup};
use crate::ebpf::Kernel;
use crate::event::Action;

/// How long an action may take before it is reported as failed.
const DEADLINE: Duration = Duration::from_secs(2);

fn sandboxes_dir() -> Result<PathBuf, String> {
    cgroup::sandboxes_dir().map_err(|e| e.to_string())
}

/// `cordon ps`: every sandbox with its state and process count.
pub fn ps() -> ExitCode {
    let dir = match sandboxes_dir() {
        Ok(d) => d,
        Err(e) => return super::fail(&e, 1),
    };
    let kernel = Kernel::open().ok();
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
    println!("{:<40} {:>6} {:<8} NETWORK", "SANDBOX", "PROCS", "STATE");
    for name in names {
        let Ok(sandbox) = SandboxCgroup::open(&dir.join(&name)) else {
            continue;
        };
        let procs = std::fs::read_to_string(sandbox.path().join("cgroup.procs"))
            .map(|p| p.lines().count())
            .unwrap_or(0);
        let state = if sandbox.is_frozen().unwrap_or(false) {
            "frozen"
        } else {
            "running"
        };
        let network = match (&kernel, sandbox.id()) {
            (Some(k), Ok(id)) => match k.sandbox(id) {
                Ok(Some(s)) if s.flags & crate::ebpf::abi::CORDON_SANDBOX_ISOLATED as u32 != 0 => {
                    "isolated"
                }
                Ok(Some(_)) => "policy",
                _ => "none",
            },
            _ => "unknown",
        };
        println!("{name:<40} {procs:>6} {state:<8} {network}");
    }
    ExitCode::SUCCESS
}

/// `cordon kill|freeze|thaw|isolate|release SANDBOX`.
pub fn act(name: &str, action: Action) -> ExitCode {
    match try_act(name, action) {
        Ok(took) => {
            println!("{name}: {} ({} ms)", done(action), took.as_millis());
            ExitCode::SUCCESS
        }
        Err(e) => super::fail(&format!("{name}: {e}"), 1),
    }
}

fn done(action: Action) -> &'static str {
    match action {
        Action::Kill => "killed",
        Action::Freeze => "frozen",
        Action::Thaw => "thawed",
        Action::Isolate => "isolated",
        Action::Release => "released",
    }
}

fn try_act(name: &str, action: Action) -> Result<Duration, String> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err("not a sandbox name (see `cordon ps`)".into());
    }
    let path = sandboxes_dir()?.join(name);
    let sandbox =
        SandboxCgroup::open(&path).map_err(|_| "no such sandbox (see `cordon ps`)".to_string())?;
    let start = Instant::now();
    let until = |what: &str, done: &dyn Fn() -> bool| -> Result<(), String> {
        while !done() {
            if start.elapsed() > DEADLINE {
                return Err(format!(
                    "the kernel did not report the sandbox {what} within {DEADLINE:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    };
    match action {
        Action::Kill => {
            // Recorded first, so the sandbox's watcher can say who ended it.
            if let (Ok(kernel), Ok(id)) = (Kernel::open(), sandbox.id()) {
                let _ = kernel.mark_killed(id);
            }
            sandbox.kill().map_err(|e| e.to_string())?;
            // `cordon run` removes the cgroup as soon as its sandbox is gone.
            until("empty", &|| {
                !sandbox.path().exists() || matches!(sandbox.is_populated(), Ok(false))
            })?;
        }
        Action::Freeze => {
            sandbox.freeze().map_err(|e| e.to_string())?;
            until("frozen", &|| sandbox.is_frozen().unwrap_or(false))?;
        }
        Action::Thaw => {
            sandbox.thaw().map_err(|e| e.to_string())?;
            until("thawed", &|| !sandbox.is_frozen().unwrap_or(true))?;
        }
        Action::Isolate | Action::Release => {
            let kernel = Kernel::open().map_err(|e| e.to_string())?;
            let id = sandbox.id().map_err(|e| e.to_string())?;
            kernel
                .set_isolated(id, action == Action::Isolate)
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(start.elapsed())
}
