//! Launching a command inside a sandbox built from a [`Policy`].
//!
//! The parent ([`prepare`], [`Launch::spawn`]) does everything that can fail without touching
//! the process: it plans the mounts, compiles the seccomp filters and builds the argument and
//! environment vectors. Then it forks; the child applies the restrictions in this order and
//! execs:
//!
//! 1. a private mount namespace whose root holds only what the policy lists ([`mounts`]);
//! 2. the Landlock ruleset is created, opening the granted paths inside that root ([`landlock`]);
//! 3. `no_new_privs`, then user, groups and capabilities ([`identity`]);
//! 4. the Landlock ruleset is enforced;
//! 5. seccomp, last ([`seccomp`]), then `execve`.
//!
//! The child reports what was enforced, or the step that failed, over a close-on-exec pipe:
//! end-of-file means `execve` succeeded. Nothing here runs in a multi-threaded process.

pub mod identity;
pub mod landlock;
pub mod mounts;
pub mod seccomp;

use std::ffi::{CString, OsStr, OsString};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};
use serde::{Deserialize, Serialize};

use crate::policy::Policy;
use crate::profile::Compat;
use crate::sys;

pub use self::landlock::Enforcement;

/// Exit code `cordon run` uses when the sandbox could not be set up (as `env` and container
/// runtimes do: 125 for the tool itself, 126 for "cannot execute", 127 for "not found").
pub const EXIT_SETUP_FAILED: i32 = 125;
pub const EXIT_CANNOT_EXECUTE: i32 = 126;
pub const EXIT_NOT_FOUND: i32 = 127;

/// Directory the child builds the sandbox root on, inside its own mount namespace.
const STAGING: &str = "/tmp";
/// `PATH` used to find the command when the sandbox's environment has none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("no command given")]
    NoCommand,
    #[error("argument or environment entry contains a NUL byte: {0:?}")]
    NulByte(OsString),
    #[error("the kernel offers Landlock ABI {running}, the profile needs {required}; compat = \"strict\" refuses to run (use compat = \"best-effort\" to run with less)")]
    LandlockTooOld { required: u32, running: u32 },
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
    #[error("cannot {what}: {source}")]
    Os {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("sandbox setup failed at {stage}: {message}")]
    Child { stage: String, message: String },
    #[error("cannot execute `{program}` in the sandbox: {message}")]
    Exec {
        program: String,
        message: String,
        exit_code: i32,
    },
}

impl LaunchError {
    /// The exit code `cordon run` ends with for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            LaunchError::Exec { exit_code, .. } => *exit_code,
            _ => EXIT_SETUP_FAILED,
        }
    }
}

fn os(what: &'static str) -> impl FnOnce(std::io::Error) -> LaunchError {
    move |source| LaunchError::Os { what, source }
}

/// A sandbox ready to start: everything computed, nothing applied.
#[derive(Debug)]
pub struct Launch {
    policy: Policy,
    plan: mounts::MountPlan,
    filters: seccomp::Filters,
    argv: Vec<CString>,
    env: Vec<CString>,
    path_dirs: Vec<PathBuf>,
    cwd: PathBuf,
    /// Landlock ABI of the running kernel.
    pub kernel_abi: u32,
    /// Things the caller should know (paths skipped, features missing under best-effort).
    pub notes: Vec<String>,
}

/// Prepares a launch of `argv` under `policy`, with the variables of `caller_env` that the
/// policy passes through.
pub fn prepare<I>(policy: &Policy, argv: &[OsString], caller_env: I) -> Result<Launch, LaunchError>
where
    I: IntoIterator<Item = (OsString, OsString)>,
{
    if argv.is_empty() {
        return Err(LaunchError::NoCommand);
    }
    let kernel_abi = sys::landlock_abi();
    let mut notes = Vec::new();
    if kernel_abi < policy.landlock_abi {
        match policy.compat {
            Compat::Strict => {
                return Err(LaunchError::LandlockTooOld {
                    required: policy.landlock_abi,
                    running: kernel_abi,
                })
            }
            Compat::BestEffort => notes.push(format!(
                "best-effort: the kernel offers Landlock ABI {kernel_abi}, the profile asks for {}; rights the kernel lacks are not enforced",
                policy.landlock_abi
            )),
        }
    }

    let plan = mounts::plan(&policy.filesystem, Path::new("/"));
    notes.extend(plan.notes.iter().cloned());
    let filters = seccomp::compile(&policy.syscalls)?;

    let env = sandbox_env(policy, caller_env);
    let path_dirs = env
        .iter()
        .find_map(|(k, v)| (k == "PATH").then(|| v.clone()))
        .unwrap_or_else(|| OsString::from(DEFAULT_PATH));
    let path_dirs = std::env::split_paths(&path_dirs)
        .filter(|p| p.is_absolute())
        .collect();
    let env = env
        .into_iter()
        .map(|(k, v)| {
            let mut entry = k;
            entry.push("=");
            entry.push(v);
            cstring(&entry)
        })
        .collect::<Result<_, _>>()?;
    let argv = argv.iter().map(|a| cstring(a)).collect::<Result<_, _>>()?;

    // The private /tmp holds none of the host's files, so a workspace below host /tmp is
    // visible only through a bind of its own.
    let visible = |p: &Path| {
        plan.grants
            .iter()
            .any(|g| g.path != Path::new(crate::policy::SANDBOX_TMP) && p.starts_with(&g.path))
    };
    let cwd = if visible(&policy.workspace) {
        policy.workspace.clone()
    } else {
        notes.push(format!(
            "the workspace {} is not visible under this profile; starting in /",
            policy.workspace.display()
        ));
        PathBuf::from("/")
    };

    Ok(Launch {
        policy: policy.clone(),
        plan,
        filters,
        argv,
        env,
        path_dirs,
        cwd,
        kernel_abi,
        notes,
    })
}

/// The environment inside the sandbox: the caller's variables the policy keeps, then the
/// policy's own, sorted by name.
pub fn sandbox_env<I>(policy: &Policy, caller_env: I) -> Vec<(OsString, OsString)>
where
    I: IntoIterator<Item = (OsString, OsString)>,
{
    let mut env: std::collections::BTreeMap<OsString, OsString> = caller_env
        .into_iter()
        .filter(|(k, _)| {
            policy
                .process
                .env_keep
                .iter()
                .any(|keep| OsStr::new(keep) == k)
        })
        .collect();
    for (k, v) in &policy.process.set_env {
        env.insert(k.into(), v.into());
    }
    env.into_iter().collect()
}

fn cstring(s: &OsStr) -> Result<CString, LaunchError> {
    CString::new(s.as_bytes()).map_err(|_| LaunchError::NulByte(s.to_os_string()))
}

/// What the child tells the parent before `execve`.
#[derive(Debug, Serialize, Deserialize)]
enum ChildMessage {
    Enforced(Enforcement),
    Failed {
        stage: String,
        message: String,
        exit_code: i32,
    },
}

/// Signals the parent relays to the sandbox while it waits (plus SIGCHLD to learn the end).
const RELAYED: &[Signal] = &[
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// A sandboxed process that has been started.
#[derive(Debug)]
pub struct Running {
    pub pid: Pid,
    pub enforcement: Enforcement,
    old_mask: SigSet,
    watched: SigSet,
}

/// How the sandboxed process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(Signal),
}

impl Launch {
    /// Forks, sets up the sandbox in the child and execs the command there. Returns once the
    /// command runs (or the setup failed).
    pub fn spawn(&self) -> Result<Running, LaunchError> {
        let mut watched = SigSet::empty();
        watched.add(Signal::SIGCHLD);
        for s in RELAYED {
            watched.add(*s);
        }
        let mut old_mask = SigSet::empty();
        nix::sys::signal::pthread_sigmask(
            SigmaskHow::SIG_BLOCK,
            Some(&watched),
            Some(&mut old_mask),
        )
        .map_err(|e| os("block signals")(e.into()))?;
        let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| os("create the status pipe")(e.into()))?;
        let parent = Pid::this();
        match sys::fork_single_threaded().map_err(os("fork the sandbox"))? {
            ForkResult::Child => {
                drop(read_end);
                self.child(parent, write_end, &old_mask)
            }
            ForkResult::Parent { child } => {
                drop(write_end);
                let running = Running {
                    pid: child,
                    enforcement: Enforcement {
                        status: "unknown".into(),
                        no_new_privs: false,
                    },
                    old_mask,
                    watched,
                };
                self.await_exec(running, read_end)
            }
        }
    }

    fn await_exec(&self, mut running: Running, status: OwnedFd) -> Result<Running, LaunchError> {
        let reader = BufReader::new(std::fs::File::from(status));
        for line in reader.lines() {
            let line = line.map_err(os("read the sandbox status"))?;
            match serde_json::from_str::<ChildMessage>(&line) {
                Ok(ChildMessage::Enforced(e)) => running.enforcement = e,
                Ok(ChildMessage::Failed {
                    stage,
                    message,
                    exit_code,
                }) => {
                    let _ = waitpid(running.pid, None);
                    running.restore_mask();
                    let program = String::from_utf8_lossy(self.argv[0].as_bytes()).into_owned();
                    return Err(if stage == "exec" {
                        LaunchError::Exec {
                            program,
                            message,
                            exit_code,
                        }
                    } else {
                        LaunchError::Child { stage, message }
                    });
                }
                Err(e) => {
                    return Err(LaunchError::Child {
                        stage: "report".into(),
                        message: format!("unreadable status from the sandbox: {e}"),
                    })
                }
            }
        }
        Ok(running)
    }

    /// The child side: never returns.
    fn child(&self, parent: Pid, status: OwnedFd, mask: &SigSet) -> ! {
        let mut status = std::fs::File::from(status);
        let failure = match self.setup_and_exec(parent, mask, &mut status) {
            Ok(never) => match never {},
            Err(f) => f,
        };
        if let Ok(line) = serde_json::to_string(&failure) {
            let _ = writeln!(status, "{line}");
        }
        let code = match failure {
            ChildMessage::Failed { exit_code, .. } => exit_code,
            ChildMessage::Enforced(_) => EXIT_SETUP_FAILED,
        };
        // SAFETY: _exit ends the forked child without running the parent's atexit handlers
        // or flushing stdio buffers it shares with the parent.
        unsafe { libc::_exit(code) }
    }

    fn setup_and_exec(
        &self,
        parent: Pid,
        mask: &SigSet,
        status: &mut std::fs::File,
    ) -> Result<std::convert::Infallible, ChildMessage> {
        let fail = |stage: &str| {
            let stage = stage.to_string();
            move |e: &dyn std::fmt::Display| ChildMessage::Failed {
                stage,
                message: e.to_string(),
                exit_code: EXIT_SETUP_FAILED,
            }
        };
        let die_with_parent = || -> nix::Result<()> {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            if nix::unistd::getppid() != parent {
                return Err(nix::Error::ESRCH);
            }
            Ok(())
        };
        die_with_parent().map_err(|e| fail("parent-death signal")(&e))?;

        mounts::apply(&self.plan, Path::new(STAGING)).map_err(|e| fail("mounts")(&e))?;
        nix::unistd::chdir(&self.cwd).map_err(|e| fail("chdir to the workspace")(&e))?;
        let ruleset =
            landlock::prepare(&self.plan.grants, &self.policy.network, self.policy.compat)
                .map_err(|e| fail("landlock")(&e))?;
        nix::sys::prctl::set_no_new_privs().map_err(|e| fail("no_new_privs")(&e))?;
        identity::assume(&self.policy.identity, &self.policy.process.capabilities)
            .map_err(|e| fail("identity")(&e))?;
        // Changing credentials clears the parent-death signal.
        die_with_parent().map_err(|e| fail("parent-death signal")(&e))?;
        let enforcement =
            landlock::enforce(ruleset, self.policy.compat).map_err(|e| fail("landlock")(&e))?;
        sys::cloexec_from(3).map_err(|e| fail("close inherited descriptors")(&e))?;
        let report = serde_json::to_string(&ChildMessage::Enforced(enforcement))
            .map_err(|e| fail("report")(&e))?;
        writeln!(status, "{report}").map_err(|e| fail("report")(&e))?;
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(mask), None)
            .map_err(|e| fail("restore the signal mask")(&e))?;

        seccomp::install(&self.filters).map_err(|e| fail("seccomp")(&e))?;
        Err(self.exec())
    }

    /// `execve`s the command, searching `PATH` like `execvp` when it has no `/`.
    fn exec(&self) -> ChildMessage {
        let program = &self.argv[0];
        let candidates: Vec<CString> = if program.as_bytes().contains(&b'/') {
            vec![program.clone()]
        } else {
            self.path_dirs
                .iter()
                .filter_map(|dir| {
                    let full = dir.join(OsStr::from_bytes(program.as_bytes()));
                    CString::new(full.as_os_str().as_bytes()).ok()
                })
                .collect()
        };
        let mut last = nix::Error::ENOENT;
        for candidate in &candidates {
            let err = match nix::unistd::execve(candidate, &self.argv, &self.env) {
                Ok(never) => match never {},
                Err(e) => e,
            };
            // Like execvp: remember a permission error, keep looking past missing files.
            if err == nix::Error::EACCES || last != nix::Error::EACCES {
                last = err;
            }
        }
        ChildMessage::Failed {
            stage: "exec".into(),
            message: last.desc().to_string(),
            exit_code: if last == nix::Error::ENOENT {
                EXIT_NOT_FOUND
            } else {
                EXIT_CANNOT_EXECUTE
            },
        }
    }
}

impl Running {
    /// Waits for the sandboxed process to end, relaying signals sent to this process.
    ///
    /// SIGINT and SIGQUIT typed at a terminal already reach the whole foreground process
    /// group, the sandbox included, so only the ones sent by another process are relayed.
    pub fn wait(mut self) -> Result<Exit, LaunchError> {
        let result = loop {
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => break Ok(Exit::Code(code)),
                Ok(WaitStatus::Signaled(_, signal, _)) => break Ok(Exit::Signal(signal)),
                Ok(_) => {}
                Err(e) => break Err(os("wait for the sandbox")(e.into())),
            }
            let (signo, code) = match sys::wait_signal(&self.watched) {
                Ok(s) => s,
                Err(e) => break Err(os("wait for signals")(e)),
            };
            let Ok(signal) = Signal::try_from(signo) else {
                continue;
            };
            let from_terminal = code == libc::SI_KERNEL;
            let typed = matches!(signal, Signal::SIGINT | Signal::SIGQUIT) && from_terminal;
            if signal != Signal::SIGCHLD && !typed {
                let _ = nix::sys::signal::kill(self.pid, signal);
            }
        };
        self.restore_mask();
        result
    }

    fn restore_mask(&mut self) {
        let _ =
            nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&self.old_mask), None);
    }
}
