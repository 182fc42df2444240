//! `cordon __worker`: runs one sandbox for cordond, for a caller who is usually not root.
//!
//! cordond starts it in a session of its own with the caller's stdin, stdout and stderr, the
//! caller's connection on fd 3 and the job (see `daemon::server::WorkerJob`) on fd 4. It
//! resolves the profile and the workspace with the caller's file rights (setfsuid), so a
//! caller cannot make it read what they could not; refuses profiles that would give the
//! caller more than they have (another user, capabilities); and then runs the sandbox as
//! `cordon run` does, with its events going to cordond's spool. It does not depend on cordond
//! once started: the sandbox stays watched if cordond stops.

use std::ffi::OsString;
use std::io::Write as _;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

use crate::api::{Caller, ExitStatus, RunEnd, WorkerJob};
use crate::policy::{Context, Policy};
use crate::profile::SearchPath;
use crate::sandbox;

use super::{exit_u8, run_status, say};
use crate::session;

pub fn main() -> ExitCode {
    let job = match read_job() {
        Ok(j) => j,
        Err(e) => {
            eprintln!("cordon: {e}");
            return ExitCode::from(exit_u8(sandbox::EXIT_SETUP_FAILED));
        }
    };
    let control = match crate::sys::inherited_fd(3) {
        Ok(fd) => UnixStream::from(fd),
        Err(e) => {
            eprintln!("cordon: __worker needs the caller's connection on fd 3: {e}");
            return ExitCode::from(exit_u8(sandbox::EXIT_SETUP_FAILED));
        }
    };
    let status = run(job, &control);
    let end = RunEnd { exit: status };
    if let Ok(mut line) = serde_json::to_vec(&end) {
        line.push(b'\n');
        let _ = (&control).write_all(&line);
    }
    ExitCode::SUCCESS
}

fn read_job() -> Result<WorkerJob, String> {
    let fd = crate::sys::inherited_fd(4)
        .map_err(|e| format!("__worker is started by cordond, with its job on fd 4 ({e})"))?;
    serde_json::from_reader(std::fs::File::from(fd))
        .map_err(|e| format!("cannot read the job cordond handed over: {e}"))
}

fn run(job: WorkerJob, control: &UnixStream) -> ExitStatus {
    let failed = |message: &str| {
        eprintln!("cordon: {message}");
        ExitStatus::Code(exit_u8(sandbox::EXIT_SETUP_FAILED))
    };
    let mut policy = match as_caller(&job.caller, || resolve(&job)) {
        Ok(Ok(p)) => p,
        Ok(Err(e)) | Err(e) => return failed(&e),
    };
    if job.run.audit {
        policy.mode = crate::profile::Mode::Audit;
    }
    match crate::daemon::config::host_rules(&job.host_responses, &policy) {
        Ok(rules) => policy.responses.extend(rules),
        Err(e) => return failed(&format!("the host's response rules: {e}")),
    }
    if let Err(e) = within_rights(&policy, &job.caller) {
        return failed(&e);
    }
    // The sandbox's mounts are made by root: every path the profile opens must be one the
    // caller could reach with the same access.
    if job.caller.uid != 0 {
        match as_caller(&job.caller, || reachable(&policy)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) | Err(e) => return failed(&e),
        }
    }
    let control = match control.try_clone() {
        Ok(c) => c,
        Err(e) => return failed(&format!("cannot follow the caller's connection: {e}")),
    };
    let options = session::Options {
        events: None,
        spool: Some(job.spool.clone()),
        quiet: job.run.quiet,
        dns_upstream: job.dns_upstream.clone(),
        control: Some(control),
        enable_audit: job.audit,
        // This process tells the caller how the sandbox ended before it exits, so its
        // mounts may go after that message; the message is not this process's exit.
        exits_after: false,
    };
    let command: Vec<OsString> = job.run.argv.iter().map(OsString::from).collect();
    let env = job
        .run
        .env
        .iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
    run_status(session::run(&policy, &command, env, options, &mut say(0)))
}

/// The policy, resolved the way `cordon run` resolves it, in the caller's context.
fn resolve(job: &WorkerJob) -> Result<Policy, String> {
    let workspace = job
        .run
        .workspace
        .clone()
        .unwrap_or_else(|| job.run.cwd.clone());
    if !workspace.is_absolute() {
        return Err(format!("workspace {} is not absolute", workspace.display()));
    }
    let caller = &job.caller;
    // Root under sudo runs the agent as the user who ran sudo, as a local `cordon run` does.
    let sudo_uid = job
        .run
        .env
        .iter()
        .find(|(k, _)| k == "SUDO_UID")
        .map(|(_, v)| v.as_str());
    let search = SearchPath::new(job.profile_path.clone());
    super::resolve_with(&search, &job.run.profile, Some(workspace), |workspace| {
        let sudo = (caller.uid == 0)
            .then(|| Context::sudo_caller(&workspace, sudo_uid))
            .flatten();
        sudo.unwrap_or_else(|| {
            Context::for_user(workspace, caller.uid, caller.gid, caller.groups.clone())
        })
    })
}

/// Runs `f` with file accesses checked as the caller's (this process is single-threaded
/// here, so no other thread reads files with these rights).
fn as_caller<T>(caller: &Caller, f: impl FnOnce() -> T) -> Result<T, String> {
    let (uid, gid, groups) = crate::sys::set_fs_identity(caller.uid, caller.gid, &caller.groups)
        .map_err(|e| format!("cannot take the caller's file rights: {e}"))?;
    let result = f();
    crate::sys::set_fs_identity(uid, gid, &groups)
        .map_err(|e| format!("cannot give the caller's file rights back: {e}"))?;
    Ok(result)
}

/// A sandbox never holds more than its caller: root may ask for anything; anyone else gets
/// their own identity and no capabilities.
fn within_rights(policy: &Policy, caller: &Caller) -> Result<(), String> {
    if caller.uid == 0 {
        return Ok(());
    }
    if policy.identity.uid != caller.uid {
        return Err(format!(
            "profile `{}` runs as user {} (uid {}); through cordond, uid {} may only run sandboxes as themselves",
            policy.name,
            policy.identity.user.as_deref().unwrap_or("?"),
            policy.identity.uid,
            caller.uid
        ));
    }
    if !policy.process.capabilities.is_empty() {
        return Err(format!(
            "profile `{}` keeps capabilities ({}); through cordond, only root may run it",
            policy.name,
            policy.process.capabilities.join(", ")
        ));
    }
    Ok(())
}

/// Checks, with the file rights in effect (the caller's, under [`as_caller`]), that each
/// path the policy grants can be accessed that way; a path that does not exist is not
/// mounted, so it grants nothing.
fn reachable(policy: &Policy) -> Result<(), String> {
    use nix::unistd::AccessFlags;
    for rule in &policy.filesystem.rules {
        let mut wanted = AccessFlags::empty();
        if rule.access.read {
            wanted |= AccessFlags::R_OK;
        }
        if rule.access.write {
            wanted |= AccessFlags::W_OK;
        }
        if rule.access.exec {
            wanted |= AccessFlags::X_OK;
        }
        // AT_EACCESS: checked against the fs ids set by `as_caller`, not the real ones.
        match nix::unistd::faccessat(
            nix::fcntl::AT_FDCWD,
            &rule.path,
            wanted,
            nix::fcntl::AtFlags::AT_EACCESS,
        ) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => {
                return Err(format!(
                    "profile `{}` grants {} to {}, which you cannot access that way yourself ({e}); through cordond a sandbox never reaches further than its caller",
                    policy.name,
                    access_words(&rule.access),
                    rule.path.display()
                ))
            }
        }
    }
    Ok(())
}

fn access_words(access: &crate::policy::Access) -> String {
    let mut words = Vec::new();
    if access.read {
        words.push("read");
    }
    if access.write {
        words.push("write");
    }
    if access.exec {
        words.push("exec");
    }
    words.join("+")
}
