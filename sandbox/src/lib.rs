//! Launching a command inside a sandbox built from a [`Policy`].
//!
//! The parent ([`prepare`], [`Launch::spawn`]) does everything that can fail without touching
//! the process: it plans the mounts, compiles the seccomp filters and builds the argument and
//! environment vectors. Then it forks into a new PID and mount namespace (and a network
//! namespace with only loopback when the profile allows no TCP port). The first process
//! there, the sandbox's **init** (PID 1), applies the restrictions in this order:
//!
//! 1. the file-system view: a new root holding only what the policy lists, a fresh `/proc`
//!    for the namespace ([`mounts`]), executable memfds refused;
//! 2. the Landlock ruleset is created, opening the granted paths inside that root ([`landlock`]);
//! 3. `no_new_privs`, then user, groups and capabilities ([`identity`]);
//! 4. the Landlock ruleset is enforced, then seccomp ([`seccomp`]).
//!
//! Then init starts the command, which inherits every restriction, enters a Landlock domain
//! of its own nested in init's, and execs; like `posix_spawn`, its process shares init's
//! memory until its exec, while init waits ([`sys::spawn_exec`]): copying Cordon's page
//! tables for a fork, and tearing them down at the exec, cost more than the rest of the
//! step. Init stays as its reaper: it relays signals to
//! the command, reaps orphans, and reports how the command ended. When init exits, the
//! kernel kills whatever is left in the namespace, so nothing started in a sandbox outlives
//! it. Init reports over a close-on-exec socket: what was enforced, that the command runs,
//! the step that failed, and the command's end. Nothing here forks from a multi-threaded
//! process: the one thread the preparation starts (an offline sandbox's network namespace,
//! made meanwhile) is joined before the fork.
//!
//! **The boundary.** The command and everything it starts can reach nothing of the
//! supervisor, by construction:
//! * init closes every descriptor it inherited but its status socket and the pidfd it
//!   watches its parent with (the caller's open files, the event ring, the audit socket, the
//!   resolver's sockets stay with `cordon run`, outside the sandbox's namespaces);
//! * init is not dumpable once it has dropped its privileges, and the command runs in a
//!   Landlock domain nested in init's: Landlock refuses a nested domain `ptrace` access to
//!   its parent domain, so `pidfd_getfd`, `/proc/1/{environ,mem,fd}` and signals to init
//!   all fail, and the sandbox's procfs (`hidepid=ptraceable`) does not even list init;
//! * `pidfd_getfd`, `kcmp`, `process_madvise`, `ptrace` and `process_vm_*` are in the
//!   default deny list besides.

pub mod cgroup;
pub mod identity;
pub mod landlock;
pub mod mounts;
pub mod repos;
pub mod seccomp;
pub mod sys;
pub mod view;

// The policy and the event type, by the names the modules here use for them.
use cordon_policy::{policy, profile};
use cordon_proto::event;

use std::ffi::{CString, OsStr, OsString};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::cgroup::{CgroupError, SandboxCgroup};
use crate::policy::Policy;
use crate::profile::{Compat, Mode};

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
    #[error("compat = \"strict\" refuses to run: {0}")]
    Unenforceable(String),
    #[error("cannot give the sandbox its cgroup: {0}")]
    Cgroup(#[from] CgroupError),
    #[error("cannot register the sandbox with the kernel's network and event programs: {0}")]
    Register(String),
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
    /// The mounts applied: the profile's, or under `mode = "audit"` the wider view of
    /// [`mounts::audit_fs`].
    plan: mounts::MountPlan,
    /// Under `mode = "audit"`, the profile's own mounts: what enforce mode would have built,
    /// to judge what the audited sandbox did against.
    profile_plan: Option<mounts::MountPlan>,
    filters: seccomp::Filters,
    argv: Vec<CString>,
    env: Vec<CString>,
    path_dirs: Vec<PathBuf>,
    cwd: PathBuf,
    /// Landlock ABI of the running kernel.
    pub kernel_abi: u32,
    /// Details for `-v` (listed paths that do not exist, ...).
    pub notes: Vec<String>,
    /// Rules that hold less than the profile says; always shown.
    pub warnings: Vec<String>,
    /// See [`Launch::keep_mounts_until_exit`].
    mounts_until_exit: bool,
    /// An offline sandbox's network namespace, being made on a thread meanwhile (see
    /// [`sys::network_namespace_ahead`]); taken by the launch.
    network: std::sync::Mutex<Option<std::thread::JoinHandle<std::io::Result<OwnedFd>>>>,
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
    // An offline sandbox's network namespace is made on another processor while this one
    // prepares the rest; without a thread for it, the fork makes it.
    let network = if policy.offline() {
        sys::network_namespace_ahead().ok()
    } else {
        None
    };
    // The caller's terminal, the one device of /dev/pts the command already holds open:
    // shown, so `tty` and programs that reopen it (ssh-askpass, editors) find it.
    let with_terminal;
    let policy = match caller_terminal() {
        Some(tty) => {
            let mut p = policy.clone();
            p.filesystem.rules.push(crate::policy::PathRule {
                path: tty,
                access: crate::policy::Access {
                    read: true,
                    write: true,
                    exec: false,
                },
            });
            with_terminal = p;
            &with_terminal
        }
        None => policy,
    };
    let kernel_abi = sys::landlock_abi();
    let mut notes = Vec::new();
    let mut warnings = Vec::new();
    // Cordon always asks for what ABI 6 offers; a profile may ask for more, never less.
    let required = policy.landlock_abi.max(landlock::TARGET as u32);
    if kernel_abi < required {
        match policy.compat {
            Compat::Strict => {
                return Err(LaunchError::LandlockTooOld {
                    required,
                    running: kernel_abi,
                })
            }
            Compat::BestEffort => warnings.push(format!(
                "compat = \"best-effort\": the kernel offers Landlock ABI {kernel_abi}, the profile needs {required}; rights the kernel lacks are not enforced"
            )),
        }
    }

    // Protected paths the sandbox could create are made empty first, as the sandbox's user.
    let (missing, problems) = mounts::placeholders(&policy.filesystem, Path::new("/"));
    let mut unmade = problems;
    if !missing.is_empty() {
        match make_placeholders(&missing, policy) {
            Ok(made) => warnings.extend(made.iter().map(|p| {
                if policy.filesystem.rules.iter().any(|r| &r.path == p) {
                    format!("created an empty {} so that its rule holds for what the sandbox puts there", p.display())
                } else {
                    format!(
                        "created an empty {} so that the sandbox cannot create it",
                        p.display()
                    )
                }
            })),
            Err(e) => unmade.push(e),
        }
    }
    let audit = policy.mode == Mode::Audit;
    // What response rules watch is covered where the view hides it (an audited sandbox's
    // view hides /run, /dev and /tmp too); the profile's own view, which an audit judges
    // against, is as the profile says.
    let watched = watched_paths(policy);
    let (plan, profile_plan) = if audit {
        let wide = mounts::audit_fs(&policy.filesystem, Path::new("/"), &mounts::unix_sockets());
        let profile_plan = mounts::plan(&policy.filesystem, Path::new("/"), &[]);
        (
            mounts::plan(&wide, Path::new("/"), &watched),
            Some(profile_plan),
        )
    } else {
        (
            mounts::plan(&policy.filesystem, Path::new("/"), &watched),
            None,
        )
    };
    if audit {
        warnings.push(
            "mode = \"audit\": what the profile does not allow is let through and reported, except writes outside the trees it writes, its deny, read_only and git metadata entries, and the syscalls that could end the audit".into(),
        );
    }
    notes.extend(plan.notes.iter().cloned());
    warnings.extend(plan.warnings.iter().cloned());
    unmade.extend(plan.unenforceable.iter().cloned());
    unmade.dedup();
    if !unmade.is_empty() {
        match policy.compat {
            Compat::Strict => return Err(LaunchError::Unenforceable(unmade.join("; "))),
            Compat::BestEffort => warnings.extend(
                unmade
                    .iter()
                    .map(|u| format!("compat = \"best-effort\": not enforced: {u}")),
            ),
        }
    }
    let limits = crate::cgroup::Limits {
        processes: policy.process.max_processes,
        memory: policy.process.max_memory,
    };
    if !limits.needs().is_empty() {
        let root = crate::cgroup::host_mount()?;
        for crate::cgroup::Placement {
            controller,
            field,
            at,
        } in limits.placement(&root)?
        {
            if at.is_some() {
                continue;
            }
            let why = format!(
                "{field} needs the `{controller}` cgroup controller, which neither cgroup v2 (in {}) nor cgroup v1 offers on this host",
                root.display()
            );
            match policy.compat {
                Compat::Strict => return Err(LaunchError::Unenforceable(why)),
                Compat::BestEffort => {
                    warnings.push(format!("compat = \"best-effort\": not enforced: {why}"))
                }
            }
        }
    }
    let filters = if audit {
        seccomp::compile(&policy.syscalls.split_for_audit().0)?
    } else {
        seccomp::compile(&policy.syscalls)?
    };

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
    let tmp = Path::new(crate::policy::SANDBOX_TMP);
    let visible = |p: &Path| {
        plan.grants.iter().any(|g| {
            let through_tmp = p.starts_with(tmp) && !(g.path.starts_with(tmp) && g.path != tmp);
            !through_tmp && p.starts_with(&g.path)
        })
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
        mounts_until_exit: false,
        network: std::sync::Mutex::new(network),
        policy: policy.clone(),
        plan,
        profile_plan,
        filters,
        argv,
        env,
        path_dirs,
        cwd,
        kernel_abi,
        notes,
        warnings,
    })
}

/// The pseudo-terminal on the caller's stdin, stdout or stderr (`/dev/pts/N`), if any.
fn caller_terminal() -> Option<PathBuf> {
    use std::os::fd::AsFd as _;
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    let found = [stdin.as_fd(), stdout.as_fd(), stderr.as_fd()]
        .into_iter()
        .find_map(|fd| {
            let path = nix::unistd::ttyname(fd).ok()?;
            let n = path.strip_prefix("/dev/pts").ok()?.to_str()?;
            (!n.is_empty() && n.chars().all(|c| c.is_ascii_digit())).then_some(path)
        });
    found
}

/// Creates each missing protected path, with the file rights of the sandbox's user (so
/// it is theirs, and made only where they may write); returns the paths it made.
fn make_placeholders(
    missing: &[(PathBuf, mounts::Kind)],
    policy: &Policy,
) -> Result<Vec<PathBuf>, String> {
    let identity = &policy.identity;
    let (uid, gid, groups) = sys::set_fs_identity(identity.uid, identity.gid, &identity.groups)
        .map_err(|e| format!("cannot take the sandbox user's file rights: {e}"))?;
    let mut made = Vec::new();
    let mut result = Ok(());
    // With a capability that passes over file permissions, the sandbox could create what
    // its user cannot.
    let passes_permissions = policy.process.capabilities.iter().any(|c| {
        matches!(
            c.as_str(),
            "CAP_DAC_OVERRIDE" | "CAP_DAC_READ_SEARCH" | "CAP_FOWNER"
        )
    });
    for (path, kind) in missing {
        match sys::create_placeholder(path, *kind == mounts::Kind::Dir) {
            Ok(true) => made.push(path.clone()),
            Ok(false) => {}
            // Where the sandbox's user may not create it, neither may the sandbox.
            Err(e)
                if !passes_permissions
                    && matches!(
                        e.raw_os_error(),
                        Some(libc::EACCES | libc::EPERM | libc::EROFS)
                    ) => {}
            // A rule's directory (not a protection) that cannot be made, a symlink the
            // sandbox planted on the way, say: its rule does not hold there, and the mount
            // plan says so; nothing to refuse the launch for.
            Err(_) if policy.filesystem.rules.iter().any(|r| &r.path == path) => {}
            Err(e) => {
                result = Err(format!(
                    "{} does not exist and cannot be created empty to keep the sandbox from creating it: {e}",
                    path.display()
                ));
                break;
            }
        }
    }
    sys::set_fs_identity(uid, gid, &groups)
        .map_err(|e| format!("cannot give the sandbox user's file rights back: {e}"))?;
    result.map(|()| made)
}

/// The paths response rules watch that the sandbox's user can reach. A cover tells the
/// sandbox that a path is there, and whether it is a file: a profile handed to cordond by a
/// user must not learn that of a path its user could not look at (the rule still acts on
/// what is reported there). When the user's rights cannot be taken, none is covered.
fn watched_paths(policy: &Policy) -> Vec<PathBuf> {
    let paths: Vec<PathBuf> = policy
        .responses
        .iter()
        .filter_map(|r| r.path.clone())
        .collect();
    reachable_by(paths, &policy.identity)
}

/// The `paths` that `identity`'s file rights reach (or that do not exist).
fn reachable_by(paths: Vec<PathBuf>, identity: &crate::policy::Identity) -> Vec<PathBuf> {
    if paths.is_empty() {
        return paths;
    }
    let Ok((uid, gid, groups)) = sys::set_fs_identity(identity.uid, identity.gid, &identity.groups)
    else {
        return Vec::new();
    };
    let reachable = paths
        .into_iter()
        .filter(|p| match std::fs::metadata(p) {
            Ok(_) => true,
            // Nothing there to cover (or to tell of).
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        })
        .collect();
    if sys::set_fs_identity(uid, gid, &groups).is_err() {
        // Rights not given back: the launch fails at its next step as root, and says why.
        return Vec::new();
    }
    reachable
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

/// A step of the sandbox setup, named in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    ParentDeath,
    Init,
    Network,
    Mounts,
    Memfd,
    Workspace,
    Landlock,
    NoNewPrivs,
    Identity,
    Seccomp,
    Report,
    Limits,
    Fork,
    Exec,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Stage::ParentDeath => "the parent-death signal",
            Stage::Init => "preparing the sandbox's init",
            Stage::Network => "the private network",
            Stage::Mounts => "the mounts",
            Stage::Memfd => "refusing executable memfds",
            Stage::Workspace => "entering the workspace",
            Stage::Landlock => "Landlock",
            Stage::NoNewPrivs => "no_new_privs",
            Stage::Identity => "the user and capabilities",
            Stage::Seccomp => "seccomp",
            Stage::Report => "reporting to the parent",
            Stage::Limits => "joining the cgroup v1 cgroups of the limits",
            Stage::Fork => "starting the command",
            Stage::Exec => "exec",
        };
        f.write_str(s)
    }
}

/// How the sandboxed command ended, as init saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

/// What init (or the command, when exec fails) tells the parent.
#[derive(Debug, Serialize, Deserialize)]
enum Message {
    Enforced(Enforcement),
    /// The command runs, as this pid in the sandbox's PID namespace.
    Running {
        command: i32,
    },
    Failed {
        stage: Stage,
        message: String,
        errno: Option<i32>,
    },
    Exited(Exit),
    /// Every process of the sandbox but init is gone (sent after `Exited` when the command
    /// left none behind): the parent may finish its side while init's own end, the
    /// namespaces' teardown, goes on.
    Ended,
}

fn failed(stage: Stage) -> impl Fn(&dyn std::fmt::Display) -> Message {
    move |e| Message::Failed {
        stage,
        message: e.to_string(),
        errno: None,
    }
}

/// Signals the parent and init relay to the command (plus SIGCHLD, to learn of its end).
const RELAYED: &[Signal] = &[
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

fn watched_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    for s in RELAYED {
        set.add(*s);
    }
    set
}

/// What the thread that follows a sandbox does beside relaying signals and reading init's
/// reports: read the sandbox's events as they come. Run on that thread, the watcher makes its
/// last reads at the end with nothing to hand from one thread to another (each wake of an
/// idle processor is 0.1 to 0.3 ms in a VM).
pub trait Watcher {
    /// Descriptors whose readiness ends a wait, beside init's reports and the signals.
    fn fds(&self) -> Vec<BorrowedFd<'_>>;
    /// The longest wait before [`Watcher::step`] is called anyway, in milliseconds (its
    /// periodic checks).
    fn timeout_ms(&self) -> u16;
    /// Reads what is ready, without waiting; called after every wait.
    fn step(&mut self);
}

/// A watcher that watches nothing (what [`Running::wait_and`] follows with).
impl Watcher for () {
    fn fds(&self) -> Vec<BorrowedFd<'_>> {
        Vec::new()
    }
    fn timeout_ms(&self) -> u16 {
        u16::MAX
    }
    fn step(&mut self) {}
}

/// A sandbox whose command is running.
#[derive(Debug)]
pub struct Running {
    /// The sandbox's init, as seen from the caller's PID namespace.
    pub pid: Pid,
    /// The command init started, as seen from the caller's PID namespace (it creates the
    /// Landlock domain the command's denials are logged under).
    pub command: Option<Pid>,
    /// The sandbox's cgroup; removed when the sandbox has ended.
    cgroup: Option<SandboxCgroup>,
    /// What Landlock enforces; always set once [`Launch::spawn`] returns.
    pub enforcement: Option<Enforcement>,
    status: BufReader<UnixStream>,
    program: String,
    old_mask: SigSet,
    /// The watched signals, blocked until the sandbox has ended, queue here.
    signals: nix::sys::signalfd::SignalFd,
    /// The sandbox's mount namespace, held so that init's exit does not tear it down
    /// ([`Launch::keep_mounts_until_exit`]).
    mounts: Option<OwnedFd>,
}

/// A sandbox whose init is building it, or has, and waits for the word to start the
/// command ([`Launch::start`]).
#[derive(Debug)]
pub struct Starting {
    /// Taken by [`Starting::go`]; what is left when it is dropped is ended (see `Drop`).
    running: Option<Running>,
    /// The `tasks` files of the v1 cgroups the command's process joins before its exec.
    v1_tasks: Vec<std::fs::File>,
}

impl Starting {
    /// The sandbox's init, as seen from the caller's PID namespace.
    pub fn pid(&self) -> Pid {
        self.running.as_ref().map_or(Pid::from_raw(0), |r| r.pid)
    }

    /// Tells init to start the command; returns once it runs, or the setup failed (init
    /// reaped, the cgroup removed).
    pub fn go(mut self) -> Result<Running, LaunchError> {
        let mut running = self
            .running
            .take()
            .ok_or_else(|| os("start the command")(std::io::ErrorKind::NotFound.into()))?;
        // The word carries the v1 cgroups' `tasks` files for the command to join. Init may have
        // failed and gone meanwhile: what it reported is read next.
        let tasks: Vec<BorrowedFd<'_>> = self.v1_tasks.iter().map(AsFd::as_fd).collect();
        if sys::send_with_fds(running.status.get_ref().as_fd(), b"\n", &tasks).is_err() {
            // Init, if alive, reads the end of the socket and stops: it is not to wait.
            let _ = running.status.get_ref().shutdown(std::net::Shutdown::Write);
        }
        drop(tasks);
        self.v1_tasks.clear();
        running.until_command_runs()?;
        Ok(running)
    }

    /// Ends the sandbox before its command starts: init killed and reaped, the cgroup
    /// removed.
    pub fn abandon(self) {
        drop(self);
    }
}

/// A sandbox dropped before its command started (a caller's early return, a panic) is
/// ended, as [`Starting::abandon`] ends it: init is not left unreaped, nor its cgroups.
impl Drop for Starting {
    fn drop(&mut self) {
        if let Some(mut running) = self.running.take() {
            running.reap();
        }
    }
}

impl Launch {
    /// The view the sandbox's mounts make, to tell their refusals from a program's misses.
    pub fn view(&self) -> view::View {
        if self.profile_plan.is_none() {
            return view::View::new(&self.plan, &self.policy.filesystem);
        }
        let mut fs = self.policy.filesystem.clone();
        fs.deny.extend(mounts::CORDON_OWN.iter().map(PathBuf::from));
        view::View::new(&self.plan, &fs)
    }

    /// Under `mode = "audit"`, the view enforce mode would have made: what the audited
    /// sandbox did is judged against it.
    pub fn profile_view(&self) -> Option<view::View> {
        let plan = self.profile_plan.as_ref()?;
        Some(view::View::new(plan, &self.policy.filesystem))
    }

    /// Holds the sandbox's mount namespace from init's fork until this process exits
    /// ([`sys::close_at_exit`]), so that init's exit does not tear the sandbox's mounts down
    /// (its tmpfs and procfs, the binds, an RCU grace period) on the way to its end: for a
    /// process that exits once the sandbox has ended, whose caller is then told first
    /// (`cordon run`, with [`sys::unmap_after_exit`]). Until then the mounts outlive the
    /// sandbox: a filesystem bound in stays busy, and the tmpfs's pages stay charged to its
    /// memory cgroup (removed meanwhile, it lingers offline until they go). Without it they
    /// go with init.
    pub fn keep_mounts_until_exit(&mut self) {
        self.mounts_until_exit = true;
    }

    /// Forks into the sandbox's namespaces, sets the sandbox up there and starts the
    /// command. Returns once the command runs, or the setup failed.
    pub fn spawn(&self) -> Result<Running, LaunchError> {
        let (starting, ()) = self.start(|_, _| Ok::<_, LaunchError>(()))?;
        starting.go()
    }

    /// Forks into the sandbox's namespaces, where init builds the sandbox, and calls
    /// `register` with the sandbox's cgroup and init's pid meanwhile (to enter the cgroup
    /// into the eBPF maps, and to open what watches it). Init starts the command only once
    /// told to ([`Starting::go`]): until then the cgroup holds init alone, which runs no code
    /// but Cordon's, so whatever the caller does before watches the command from its first
    /// instruction. An error from `register` stops the launch.
    pub fn start<T, E: From<LaunchError>>(
        &self,
        register: impl FnOnce(&SandboxCgroup, Pid) -> Result<T, E>,
    ) -> Result<(Starting, T), E> {
        // Everything that can fail comes first, so a failure leaves the caller as it was.
        // A socket, not a pipe: init waits on it for the word to start the command, and for
        // the parent to learn the command's pid.
        let (read_end, write_end) =
            std::os::unix::net::UnixStream::pair().map_err(os("create the status socket"))?;
        // Inherited by init, which cannot see this process from inside its PID namespace.
        let parent = sys::pidfd_open(Pid::this()).map_err(os("open a pidfd for this process"))?;
        let cgroup = self.create_cgroup()?;
        // The network namespace made ahead, if it could be; else the fork makes one.
        let network = self
            .network
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .and_then(|made| made.join().ok())
            .and_then(Result::ok);
        sys::wait_single_threaded();
        let mut namespaces = sys::SANDBOX_NAMESPACES;
        if self.offline() && network.is_none() {
            namespaces |= sys::NETWORK_NAMESPACE;
        }
        // Blocked before the fork, so init cannot be ended by a signal before it relays them.
        let watched = watched_signals();
        let mut old_mask = SigSet::empty();
        let restore = |old: &SigSet| {
            let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(old), None);
        };
        if let Err(e) = nix::sys::signal::pthread_sigmask(
            SigmaskHow::SIG_BLOCK,
            Some(&watched),
            Some(&mut old_mask),
        ) {
            let _ = cgroup.remove();
            return Err(os("block signals")(e.into()).into());
        }
        // Where they are read while the sandbox runs (close-on-exec; init closes it).
        let signals = match nix::sys::signalfd::SignalFd::with_flags(
            &watched,
            nix::sys::signalfd::SfdFlags::SFD_CLOEXEC | nix::sys::signalfd::SfdFlags::SFD_NONBLOCK,
        ) {
            Ok(fd) => fd,
            Err(e) => {
                restore(&old_mask);
                let _ = cgroup.remove();
                return Err(os("wait for signals")(e.into()).into());
            }
        };
        let forked = match sys::fork_into_namespaces(namespaces, cgroup.fd()) {
            Ok(f) => f,
            Err(e) => {
                restore(&old_mask);
                let _ = cgroup.remove();
                return Err(os("fork the sandbox")(e).into());
            }
        };
        let Some(init) = forked else {
            drop(read_end);
            self.init(&parent, network.as_ref(), write_end, &old_mask)
        };
        drop(write_end);
        drop(parent);
        drop(network);
        let mounts = self
            .mounts_until_exit
            .then(
                || match std::fs::File::open(format!("/proc/{init}/ns/mnt")) {
                    Ok(namespace) => Some(OwnedFd::from(namespace)),
                    Err(e) => {
                        // Init's exit tears the namespace down, as without this.
                        tracing::debug!("cannot hold the sandbox's mount namespace: {e}");
                        None
                    }
                },
            )
            .flatten();
        // While init builds the sandbox: the cgroups of the limits only cgroup v1 offers here
        // are made (the command's process joins them before its exec), and the caller
        // registers the sandbox.
        let mut cgroup = cgroup;
        let mut v1_tasks = Vec::new();
        let registered = match cgroup.limit_in_v1() {
            Ok(tasks) => {
                v1_tasks = tasks;
                register(&cgroup, init)
            }
            Err(e) => Err(LaunchError::from(e).into()),
        };
        let mut running = Running {
            pid: init,
            command: None,
            cgroup: Some(cgroup),
            enforcement: None,
            status: BufReader::new(read_end),
            program: String::from_utf8_lossy(self.argv[0].as_bytes()).into_owned(),
            old_mask,
            signals,
            mounts,
        };
        let registered = match registered {
            Ok(r) => r,
            Err(e) => {
                running.reap();
                // Init gone before it could be held or registered: what it said of its own
                // failure explains that better.
                while let Some(message) = running.next_message() {
                    if let Message::Failed {
                        stage,
                        message,
                        errno,
                    } = message
                    {
                        return Err(running.failure(stage, message, errno).into());
                    }
                }
                return Err(e);
            }
        };
        Ok((
            Starting {
                running: Some(running),
                v1_tasks,
            },
            registered,
        ))
    }

    /// `<cgroup2>/cordon/<profile>-<pid>-<n>`: one per sandbox, named for operators.
    fn create_cgroup(&self) -> Result<SandboxCgroup, LaunchError> {
        static LAUNCHED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = LAUNCHED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let root = crate::cgroup::host_mount()?;
        let name = format!("{}-{}-{n}", self.policy.name, std::process::id());
        Ok(SandboxCgroup::create(&root, &name, &self.limits())?)
    }

    fn limits(&self) -> crate::cgroup::Limits {
        crate::cgroup::Limits {
            processes: self.policy.process.max_processes,
            memory: self.policy.process.max_memory,
        }
    }

    /// A profile that allows no TCP port gets no network at all: a namespace with loopback only.
    /// The ports Landlock holds the sandbox to; none under `mode = "audit"`, whose eBPF
    /// programs report what the profile's ports would refuse.
    fn landlock_net(&self) -> Option<&crate::policy::NetPolicy> {
        (self.policy.mode == Mode::Enforce).then_some(&self.policy.network)
    }

    fn offline(&self) -> bool {
        self.policy.offline()
    }

    /// The sandbox's init: sets everything up, starts the command, reaps. Never returns.
    fn init(
        &self,
        parent: &OwnedFd,
        network: Option<&OwnedFd>,
        status: UnixStream,
        mask: &SigSet,
    ) -> ! {
        let mut status = status;
        let code = match self.setup(parent, network, &mut status) {
            Ok(ruleset) => match self.start_command(mask, &mut status, ruleset) {
                Ok(command) => self.reap_until_exit(command, &mut status),
                Err(m) => send(&mut status, &m),
            },
            Err(m) => send(&mut status, &m),
        };
        // SAFETY: _exit ends the forked process without running the parent's atexit
        // handlers or flushing stdio buffers it shares with the parent.
        unsafe { libc::_exit(code) }
    }

    /// Builds the sandbox around init; returns the Landlock ruleset the command enters as a
    /// domain of its own.
    fn setup(
        &self,
        parent: &OwnedFd,
        network: Option<&OwnedFd>,
        status: &mut UnixStream,
    ) -> Result<::landlock::RulesetCreated, Message> {
        let die_with_parent = || -> nix::Result<()> {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            if sys::has_exited(parent) {
                return Err(nix::Error::ESRCH);
            }
            Ok(())
        };
        die_with_parent().map_err(|e| failed(Stage::ParentDeath)(&e))?;
        // The offline sandbox's network namespace, made ahead (its descriptor is closed next).
        if let Some(network) = network {
            sys::enter_network(network).map_err(|e| failed(Stage::Network)(&e))?;
        }
        // Nothing the caller or `cordon run` had open stays in the sandbox: not the caller's
        // files, not the event ring, the audit socket or the resolver's sockets.
        sys::close_all_but(&[parent.as_raw_fd(), status.as_raw_fd()])
            .map_err(|e| failed(Stage::Init)(&e))?;
        for signal in RELAYED.iter().chain([&Signal::SIGCHLD]) {
            sys::catch_for_sigwait(*signal).map_err(|e| failed(Stage::Init)(&e))?;
        }
        if self.offline() {
            sys::bring_up_loopback().map_err(|e| failed(Stage::Network)(&e))?;
        }
        refuse_executable_memfds().map_err(|e| failed(Stage::Memfd)(&e))?;
        mounts::apply(&self.plan, Path::new(STAGING)).map_err(|e| failed(Stage::Mounts)(&e))?;
        nix::unistd::chdir(&self.cwd)
            .map_err(|e| failed(Stage::Workspace)(&format!("{}: {e}", self.cwd.display())))?;
        let ruleset = landlock::prepare(&self.plan.grants, self.landlock_net(), self.policy.compat)
            .map_err(|e| failed(Stage::Landlock)(&e))?;
        nix::sys::prctl::set_no_new_privs().map_err(|e| failed(Stage::NoNewPrivs)(&e))?;
        identity::assume(&self.policy.identity, &self.policy.process.capabilities)
            .map_err(|e| failed(Stage::Identity)(&e))?;
        // Changing credentials clears the parent-death signal.
        die_with_parent().map_err(|e| failed(Stage::ParentDeath)(&e))?;
        // Not dumpable: no process without CAP_SYS_PTRACE may read init's memory or
        // descriptors, whatever its uid (changing credentials may have reset this).
        nix::sys::prctl::set_dumpable(false).map_err(|e| failed(Stage::Init)(&e))?;
        let command_ruleset = ruleset
            .try_clone()
            .map_err(|e| failed(Stage::Landlock)(&e))?;
        let enforcement = landlock::enforce(ruleset, self.policy.compat)
            .map_err(|e| failed(Stage::Landlock)(&e))?;
        seccomp::install(&self.filters).map_err(|e| failed(Stage::Seccomp)(&e))?;
        write_message(status, &Message::Enforced(enforcement))
            .map_err(|e| failed(Stage::Report)(&e))?;
        Ok(command_ruleset)
    }

    /// Starts the command once the parent says the sandbox is registered: it enters a
    /// Landlock domain of its own (nested in init's, so it cannot reach init), restores the
    /// caller's signal state and execs ([`sys::spawn_exec`]: it shares init's memory until
    /// then, as init waits). Returns once the parent has taken note of the command's pid.
    fn start_command(
        &self,
        mask: &SigSet,
        status: &mut UnixStream,
        ruleset: ::landlock::RulesetCreated,
    ) -> Result<Pid, Message> {
        // The word to go, with the `tasks` files of the v1 cgroups to join (see
        // `SandboxCgroup::limit_in_v1`): the command's process joins them before its exec,
        // so it and all it starts are held. Init does not: they are empty, and can go, as
        // soon as the command's last process has.
        let mut word = [0u8; 1];
        let v1_tasks = match sys::recv_with_fds(status.as_fd(), &mut word) {
            Ok((1, fds)) => fds,
            Ok(_) => return Err(failed(Stage::Report)(&"the parent went away")),
            Err(e) => return Err(failed(Stage::Report)(&e)),
        };
        let join: Vec<BorrowedFd<'_>> = v1_tasks.iter().map(AsFd::as_fd).collect();
        // None: no Landlock on this kernel, which only a `best-effort` profile gets past.
        let ruleset: Option<OwnedFd> = ruleset.into();
        let candidates = self.candidates();
        let plan = sys::ExecPlan {
            candidates: &candidates,
            argv: &self.argv,
            env: &self.env,
            join: &join,
            landlock: ruleset
                .as_ref()
                .map(|fd| (fd.as_fd(), landlock::restrict_flags())),
            mask: *mask.as_ref(),
            exit_code: exec_exit_code,
        };
        let (child, failure) = sys::spawn_exec(&plan).map_err(|e| failed(Stage::Fork)(&e))?;
        drop(join);
        drop(v1_tasks);
        drop(ruleset);
        let mut messages = vec![Message::Running {
            command: child.as_raw(),
        }];
        // The command's process is gone: its exit code is reaped and reported next.
        if let Some((step, errno)) = failure {
            messages.push(exec_failure(step, errno));
        }
        write_messages(status, &messages).map_err(|e| failed(Stage::Report)(&e))?;
        read_word(status)?;
        Ok(child)
    }

    /// Relays signals to the command and reaps every process until the command ends;
    /// returns init's exit code after reporting how the command ended.
    fn reap_until_exit(&self, command: Pid, status: &mut UnixStream) -> i32 {
        let watched = watched_signals();
        loop {
            loop {
                let exit = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(pid, code)) if pid == command => Exit::Code(code),
                    Ok(WaitStatus::Signaled(pid, signal, _)) if pid == command => {
                        Exit::Signal(signal as i32)
                    }
                    Ok(WaitStatus::StillAlive) | Err(_) => break,
                    Ok(_) => continue, // an orphan reaped
                };
                return send_exit(status, exit, alone());
            }
            let Ok((signo, _)) = sys::wait_signal(&watched) else {
                continue;
            };
            if let Ok(signal) = Signal::try_from(signo) {
                if signal != Signal::SIGCHLD {
                    let _ = nix::sys::signal::kill(command, signal);
                }
            }
        }
    }

    /// Where the command's program is looked for: itself when it has a `/`, else in each
    /// directory of `PATH`, like `execvp`.
    fn candidates(&self) -> Vec<CString> {
        let program = &self.argv[0];
        if program.as_bytes().contains(&b'/') {
            return vec![program.clone()];
        }
        self.path_dirs
            .iter()
            .filter_map(|dir| {
                let full = dir.join(OsStr::from_bytes(program.as_bytes()));
                CString::new(full.as_os_str().as_bytes()).ok()
            })
            .collect()
    }
}

/// What init reports when the command's process could not start its program.
fn exec_failure(step: sys::ExecStep, errno: i32) -> Message {
    let error = nix::Error::from_raw(errno);
    match step {
        sys::ExecStep::Join => Message::Failed {
            stage: Stage::Limits,
            message: error.desc().to_string(),
            errno: Some(errno),
        },
        sys::ExecStep::Landlock => Message::Failed {
            stage: Stage::Landlock,
            message: format!(
                "cannot enter the command's Landlock domain: {}",
                error.desc()
            ),
            errno: Some(errno),
        },
        sys::ExecStep::Exec => Message::Failed {
            stage: Stage::Exec,
            message: error.desc().to_string(),
            errno: Some(errno),
        },
    }
}

/// The exit code of a command's process that could not start its program (called in that
/// process before it exits: it allocates nothing).
fn exec_exit_code(step: sys::ExecStep, errno: i32) -> i32 {
    let stage = match step {
        sys::ExecStep::Join => Stage::Limits,
        sys::ExecStep::Landlock => Stage::Landlock,
        sys::ExecStep::Exec => Stage::Exec,
    };
    exit_code_of(stage, Some(errno))
}

/// Sets `vm.memfd_noexec = 2` for this PID namespace: memfds can never be executed, which
/// would otherwise run code that no file rule or `noexec` mount covers.
fn refuse_executable_memfds() -> std::io::Result<()> {
    let knob = Path::new("/proc/sys/vm/memfd_noexec");
    if !knob.exists() {
        // Before Linux 6.3. Such a kernel also lacks Landlock ABI 6, so only a
        // `best-effort` profile gets here, and `cordon run` has warned about it.
        return Ok(());
    }
    std::fs::write(knob, "2")
}

/// Waits for the parent's one-byte word to go on.
fn read_word(status: &mut UnixStream) -> Result<(), Message> {
    let mut word = [0u8; 1];
    match std::io::Read::read(status, &mut word) {
        Ok(1) => Ok(()),
        Ok(_) => Err(failed(Stage::Report)(&"the parent went away")),
        Err(e) => Err(failed(Stage::Report)(&e)),
    }
}

/// One message, one line, in one write: a message never shares a line with another, and
/// `writeln!` would write the line and its newline apart.
fn write_message(status: &mut UnixStream, message: &Message) -> std::io::Result<()> {
    write_messages(status, std::slice::from_ref(message))
}

/// Messages, a line each, in one write.
fn write_messages(status: &mut UnixStream, messages: &[Message]) -> std::io::Result<()> {
    let mut lines = Vec::new();
    for message in messages {
        serde_json::to_writer(&mut lines, message).map_err(std::io::Error::other)?;
        lines.push(b'\n');
    }
    status.write_all(&lines)
}

fn exit_code_for(message: &Message) -> i32 {
    match message {
        Message::Failed { stage, errno, .. } => exit_code_of(*stage, *errno),
        _ => EXIT_SETUP_FAILED,
    }
}

/// As a shell's: 127 when the program was not found, 126 when it could not be executed.
fn exit_code_of(stage: Stage, errno: Option<i32>) -> i32 {
    match (stage, errno) {
        (Stage::Exec, Some(libc::ENOENT)) => EXIT_NOT_FOUND,
        (Stage::Exec, _) => EXIT_CANNOT_EXECUTE,
        _ => EXIT_SETUP_FAILED,
    }
}

/// Reports a failure and returns the exit code init ends with.
fn send(status: &mut UnixStream, message: &Message) -> i32 {
    let _ = write_message(status, message);
    exit_code_for(message)
}

/// Reports how the command ended and, when init is `alone`, that the sandbox has ended
/// (one write: the parent reads both at once).
fn send_exit(status: &mut UnixStream, exit: Exit, alone: bool) -> i32 {
    let mut messages = vec![Message::Exited(exit)];
    if alone {
        messages.push(Message::Ended);
    }
    let _ = write_messages(status, &messages);
    0
}

/// Whether init is the last process of its PID namespace: every child it had is reaped
/// (orphans come to init, so a process left anywhere in the namespace keeps one of init's
/// children alive). Processes the command left running are not killed here (init may lack
/// the right to signal them); init's exit ends them, and the parent waits for that.
fn alone() -> bool {
    loop {
        match waitpid(
            Pid::from_raw(-1),
            Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL),
        ) {
            Err(nix::Error::ECHILD) => return true,
            Err(nix::Error::EINTR) => {}
            Ok(WaitStatus::StillAlive) | Err(_) => return false,
            Ok(_) => {} // one more reaped
        }
    }
}

impl Running {
    /// Reads init's reports until the command runs: what Landlock enforces, then the
    /// command's pid (answered, so init may reap). On any failure init is killed and reaped.
    fn until_command_runs(&mut self) -> Result<(), LaunchError> {
        loop {
            match self.next_message() {
                Some(Message::Enforced(e)) => self.enforcement = Some(e),
                Some(Message::Running { command }) if self.enforcement.is_some() => {
                    // Init waits for this answer before it reaps anything, so the command
                    // is still its child (a zombie at worst) while its pid is looked up;
                    // orphans the command left may be init's children too by then, so it
                    // is found by the pid init knows it by.
                    // Without it the command's Landlock denials could not be told apart
                    // as this sandbox's: unwatched is not how it was asked to run.
                    self.command = sys::child_by_ns_pid(self.pid, command);
                    if self.command.is_none() {
                        self.reap();
                        return Err(LaunchError::Child {
                            stage: Stage::Fork.to_string(),
                            message: format!(
                                "cannot find the command among the children of the sandbox's init ({})",
                                self.pid
                            ),
                        });
                    }
                    if let Err(e) = self.status.get_mut().write_all(b"\n") {
                        self.reap();
                        return Err(os("answer the sandbox's init")(e));
                    }
                    return Ok(());
                }
                Some(Message::Failed {
                    stage,
                    message,
                    errno,
                }) => {
                    self.reap();
                    return Err(self.failure(stage, message, errno));
                }
                Some(Message::Running { .. } | Message::Exited(_) | Message::Ended) | None => {
                    self.reap();
                    return Err(LaunchError::Child {
                        stage: "setup".into(),
                        message: "the sandbox ended or started its command without reporting what it enforces".into(),
                    });
                }
            }
        }
    }

    fn next_message(&mut self) -> Option<Message> {
        let mut line = String::new();
        match self.status.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(
                serde_json::from_str(&line).unwrap_or_else(|e| Message::Failed {
                    stage: Stage::Report,
                    message: format!("unreadable status from the sandbox: {e}"),
                    errno: None,
                }),
            ),
        }
    }

    fn failure(&self, stage: Stage, message: String, errno: Option<i32>) -> LaunchError {
        if stage == Stage::Exec {
            let exit_code = exit_code_for(&Message::Failed {
                stage,
                message: message.clone(),
                errno,
            });
            LaunchError::Exec {
                program: self.program.clone(),
                message,
                exit_code,
            }
        } else {
            LaunchError::Child {
                stage: stage.to_string(),
                message,
            }
        }
    }

    /// The sandbox's cgroup: freeze, thaw or kill every process in it.
    pub fn cgroup(&self) -> Option<&SandboxCgroup> {
        self.cgroup.as_ref()
    }

    /// Kills and reaps init (and with it the whole sandbox), then restores the signal mask.
    fn reap(&mut self) {
        let _ = nix::sys::signal::kill(self.pid, Signal::SIGKILL);
        let _ = waitpid(self.pid, None);
        self.remove_cgroup();
        self.unblock_signals();
    }

    fn remove_cgroup(&mut self) {
        if let Some(cgroup) = self.cgroup.take() {
            if let Err(e) = cgroup.remove() {
                tracing::warn!("{e}");
            }
        }
    }

    /// Waits for the sandboxed command to end, relaying signals sent to this process.
    ///
    /// SIGINT and SIGQUIT typed at a terminal already reach the whole foreground process
    /// group, the command included, so only the ones sent by another process are relayed.
    pub fn wait(self) -> Result<Exit, LaunchError> {
        self.wait_and(|| {})
    }

    /// [`Running::wait`], calling `ended` once no process of the sandbox but its init is
    /// left (init, which runs only Cordon's code, then only exits) and before the cgroup is
    /// removed: while the cgroup exists, no other `cordon run` takes the sandbox for one that
    /// ended (see `Kernel::sweep`), so `ended` can still drain its events and give its
    /// entries back. When the command left no process behind, init says so and `ended` runs
    /// while the kernel tears init and the namespaces down; otherwise once init is gone.
    pub fn wait_and(self, ended: impl FnOnce()) -> Result<Exit, LaunchError> {
        self.follow(None::<()>, |_| {
            ended();
            || {}
        })
    }

    /// [`Running::wait_and`], with `watcher` run on this thread while the sandbox runs (see
    /// [`Watcher`]) and handed to `ended` at the end, for its last reads. What `ended`
    /// returns is called once init is reaped, before the cgroup is removed: the rest of the
    /// watcher's end, which needs nothing more of the sandbox (its events written out, on a
    /// thread of its own), goes on while the kernel tears init down.
    pub fn follow<W: Watcher, Then: FnOnce()>(
        mut self,
        mut watcher: Option<W>,
        ended: impl FnOnce(Option<W>) -> Then,
    ) -> Result<Exit, LaunchError> {
        let mut result = None;
        let followed = self.until_ended(&mut result, &mut watcher);
        if followed.is_err() {
            // Not followed any more: the sandbox is ended before its entries go, by its
            // cgroup, and by init's pid while init is an unreaped child (so the pid is its).
            if let Ok(WaitStatus::StillAlive) = waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
                let _ = nix::sys::signal::kill(self.pid, Signal::SIGKILL);
            }
            if let Some(cgroup) = &self.cgroup {
                let _ = cgroup.kill();
            }
        }
        // From here a signal has its usual effect on this process: the watchers' last reads
        // (a writer blocked on a stopped terminal, say) can still be interrupted.
        self.unblock_signals();
        let init_status = match followed {
            Ok(Some(status)) => {
                ended(watcher)();
                Ok(status)
            }
            Ok(None) => {
                // Init is alone: the command's processes, all the v1 cgroups ever held, are
                // gone, so those go now, while the kernel tears init down.
                if let Some(Err(e)) = self.cgroup.as_mut().map(SandboxCgroup::remove_v1) {
                    tracing::warn!("{e}");
                }
                let then = ended(watcher);
                let status = self.until_init_is_gone();
                then();
                status
            }
            Err(e) => {
                let _ = self.until_init_is_gone();
                ended(watcher)();
                Err(e)
            }
        };
        self.remove_cgroup();
        // Its mounts go when this process exits, not on the way to saying how the sandbox
        // ended: the sandbox has no process left.
        if let Some(mounts) = self.mounts.take() {
            sys::close_at_exit(mounts);
        }
        let init_status = init_status?;
        // Init is gone, so the socket holds everything it and the command said.
        while let Some(message) = self.next_message() {
            self.take_end(message, &mut result);
        }
        match (result, init_status) {
            (Some(r), _) => r,
            (None, WaitStatus::Signaled(_, signal, _)) => Ok(Exit::Signal(signal as i32)),
            (None, other) => Err(LaunchError::Child {
                stage: "supervision".into(),
                message: format!("the sandbox's init ended without reporting ({other:?})"),
            }),
        }
    }

    /// Drops the signals that came while the sandbox ran and were not relayed (they were
    /// the sandbox's to act on, and it has ended), then restores the caller's signal mask.
    fn unblock_signals(&mut self) {
        while let Ok(Some(_)) = self.signals.read_signal() {}
        self.restore_mask();
    }

    /// Reaps init once it has ended.
    fn until_init_is_gone(&mut self) -> Result<WaitStatus, LaunchError> {
        loop {
            match waitpid(self.pid, None) {
                Err(nix::Error::EINTR) => {}
                other => return other.map_err(|e| os("wait for the sandbox")(e.into())),
            }
        }
    }

    /// Relays signals to init until it says the sandbox has ended (returns `None`: init is
    /// still to be reaped) or it is gone (returns its status). How the command ended goes
    /// into `result` as it is read.
    fn until_ended<W: Watcher>(
        &mut self,
        result: &mut Option<Result<Exit, LaunchError>>,
        watcher: &mut Option<W>,
    ) -> Result<Option<WaitStatus>, LaunchError> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd as _;
        let mut said_all = false;
        loop {
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(status) => return Ok(Some(status)),
                Err(e) => return Err(os("wait for the sandbox")(e.into())),
            }
            // Whole lines only: init writes each message in one write.
            while !said_all && !self.status.buffer().is_empty() {
                match self.next_message() {
                    Some(Message::Ended) => return Ok(None),
                    Some(message) => self.take_end(message, result),
                    None => said_all = true,
                }
            }
            let (status_ready, signal_ready) = {
                let mut fds = vec![PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
                if !said_all {
                    fds.push(PollFd::new(
                        self.status.get_ref().as_fd(),
                        PollFlags::POLLIN,
                    ));
                }
                let own = fds.len();
                let mut timeout = PollTimeout::NONE;
                if let Some(w) = watcher.as_ref() {
                    fds.extend(
                        w.fds()
                            .into_iter()
                            .map(|fd| PollFd::new(fd, PollFlags::POLLIN)),
                    );
                    timeout = PollTimeout::from(w.timeout_ms());
                }
                match poll(&mut fds, timeout) {
                    Ok(_) | Err(nix::Error::EINTR) => {}
                    Err(e) => return Err(os("wait for the sandbox")(e.into())),
                }
                let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
                let ready_own = (fds[..own].get(1).is_some_and(ready), ready(&fds[0]));
                drop(fds);
                ready_own
            };
            if status_ready {
                match self.next_message() {
                    Some(Message::Ended) => return Ok(None),
                    Some(message) => self.take_end(message, result),
                    // Init is gone or going without saying so: reaped once its SIGCHLD
                    // comes (checked at the top of the loop).
                    None => said_all = true,
                }
            }
            if signal_ready {
                self.relay_signal();
            }
            // The watcher's reads come after a signal is relayed and init's report taken: a
            // flood of events (each step reads a bounded number) delays neither. Events the
            // end leaves unread are the watcher's to read in `ended`.
            if let Some(w) = watcher.as_mut() {
                w.step();
            }
        }
    }

    /// Relays the signal queued on the signalfd to init, if it is one to relay.
    fn relay_signal(&mut self) {
        let Ok(Some(info)) = self.signals.read_signal() else {
            return;
        };
        let Ok(signal) = Signal::try_from(info.ssi_signo as i32) else {
            return;
        };
        let typed =
            matches!(signal, Signal::SIGINT | Signal::SIGQUIT) && info.ssi_code == libc::SI_KERNEL;
        if signal != Signal::SIGCHLD && !typed {
            let _ = nix::sys::signal::kill(self.pid, signal);
        }
    }

    /// Keeps what a message after the command's start says of the end.
    fn take_end(&self, message: Message, result: &mut Option<Result<Exit, LaunchError>>) {
        match message {
            // Init's report that the command could not start (its exec failed, or its
            // Landlock domain) says more than the exit code init sends after it.
            Message::Exited(_) if matches!(result, Some(Err(_))) => {}
            Message::Exited(exit) => *result = Some(Ok(exit)),
            Message::Failed {
                stage,
                message,
                errno,
            } => *result = Some(Err(self.failure(stage, message, errno))),
            Message::Enforced(_) | Message::Running { .. } | Message::Ended => {}
        }
    }

    fn restore_mask(&mut self) {
        let _ =
            nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&self.old_mask), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::unistd::ForkResult;
    use std::os::unix::fs::PermissionsExt as _;

    /// `alone` reaps whatever child it finds, as init does; it runs here in a child of the
    /// test, so that it takes none of the other tests' children. The child forks, signals,
    /// waits and exits, and allocates nothing (the test process has other threads).
    #[test]
    fn init_is_alone_only_once_no_child_of_any_kind_is_left() {
        fn child() -> i32 {
            let wait_dead = |pid: Pid| {
                nix::sys::wait::waitid(
                    nix::sys::wait::Id::Pid(pid),
                    WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT | WaitPidFlag::__WALL,
                )
            };
            // SAFETY: the child only pauses until it is killed.
            let sleeper = match unsafe { nix::unistd::fork() } {
                Ok(ForkResult::Child) => loop {
                    nix::unistd::pause();
                },
                Ok(ForkResult::Parent { child }) => child,
                Err(_) => return 10,
            };
            // A failure kills the live child first, so that none outlives the test.
            let fail = |code, live: Pid| {
                let _ = nix::sys::signal::kill(live, Signal::SIGKILL);
                code
            };
            if alone() {
                return fail(11, sleeper); // a live child
            }
            let _ = nix::sys::signal::kill(sleeper, Signal::SIGKILL);
            if wait_dead(sleeper).is_err() || !alone() {
                return 12; // its zombie is reaped: nothing is left
            }
            // A child that sends no SIGCHLD when it ends (clone with exit signal 0), which
            // waitpid sees only with __WALL.
            // SAFETY: a clone without CLONE_VM, like fork: the child gets a copy of this
            // stack and only pauses until it is killed.
            let quiet = unsafe { libc::syscall(libc::SYS_clone, 0, 0, 0, 0, 0) };
            if quiet == 0 {
                loop {
                    nix::unistd::pause();
                }
            }
            if quiet < 0 {
                return 13;
            }
            let quiet = Pid::from_raw(quiet as i32);
            if alone() {
                return fail(14, quiet); // a live child without SIGCHLD
            }
            let _ = nix::sys::signal::kill(quiet, Signal::SIGKILL);
            if wait_dead(quiet).is_err() || !alone() {
                return 15;
            }
            0
        }
        // SAFETY: the child runs `child`, which only forks, signals, waits and exits.
        match unsafe { nix::unistd::fork() }.expect("fork") {
            ForkResult::Child => {
                let code = child();
                // SAFETY: ends the forked child without running the test harness's code.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => assert_eq!(
                waitpid(child, None).expect("wait"),
                WaitStatus::Exited(child, 0),
                "11/14: alone with a live child; 12/15: not alone once it was gone"
            ),
        }
    }

    #[test]
    fn a_watched_path_the_sandbox_user_cannot_reach_is_not_covered() {
        if !cordon_testkit::require_root(
            "a_watched_path_the_sandbox_user_cannot_reach_is_not_covered",
        ) {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("private");
        std::fs::create_dir(&private).unwrap();
        std::fs::write(private.join("secret"), "").unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        let open = dir.path().join("open");
        std::fs::write(&open, "").unwrap();
        let paths = vec![
            private.join("secret"),
            open.clone(),
            dir.path().join("none"),
        ];
        let identity = |uid| crate::policy::Identity {
            user: None,
            uid,
            gid: uid,
            groups: vec![],
            home: "/".into(),
        };
        assert_eq!(
            reachable_by(paths.clone(), &identity(65534)),
            [open, dir.path().join("none")],
            "nobody cannot look into a root-only directory"
        );
        assert_eq!(reachable_by(paths.clone(), &identity(0)), paths);
        assert!(
            std::fs::metadata(private.join("secret")).is_ok(),
            "root's rights are back"
        );
    }
}
