//! The life of one sandbox, for `cordon run` and cordond's worker alike: the eBPF programs
//! loaded (or adopted), the sandbox prepared, entered into the eBPF maps before its first
//! process exists, forked, watched (events, DNS, Landlock's audit records), waited for, and
//! taken out of the maps again; what killed runs left behind is swept meanwhile.
//!
//! It prints nothing: what it has to say goes to the caller's [`Notice`] handler, and how it
//! failed is a [`SessionError`] with the exit code to end with.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::BufRead as _;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::api::RunSignal;
use crate::ebpf::Kernel;
use crate::monitor::{Monitor, Sink, Watch};
use crate::network::resolver::{Answering, Resolver};
use crate::policy::Policy;
use crate::profile;
use crate::sandbox::{self, Exit, LaunchError};

/// How a session runs, besides its policy and command.
#[derive(Debug, Default)]
pub struct Options {
    /// A JSON-lines file to append the sandbox's events to.
    pub events: Option<PathBuf>,
    /// cordond's spool, for its journal and the collector.
    pub spool: Option<crate::export::spool::SpoolConfig>,
    /// No denial lines on stderr.
    pub quiet: bool,
    /// DNS servers the sandbox's resolver asks (default: `/etc/resolv.conf`'s).
    pub dns_upstream: Vec<std::net::SocketAddr>,
    /// The connection of the client cordond runs this sandbox for: signals come in on it
    /// (and its end kills the sandbox).
    pub control: Option<UnixStream>,
    /// Turn kernel auditing on when it is off (for Landlock's denial records).
    pub enable_audit: bool,
    /// The caller exits once the session has ended (`cordon run`): the sandbox's mounts are
    /// torn down then, not on the way to its end (see `sandbox::Launch::keep_mounts_until_exit`).
    pub exits_after: bool,
}

/// What a session tells its caller on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Something the user should know: the sandbox runs, with less than asked for.
    Warning(String),
    /// Detail, for `-v`.
    Note(String),
}

/// Why a session did not run its command to the end.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Cordon's eBPF programs are needed and cannot be loaded.
    #[error("{0}")]
    Kernel(String),
    /// The sandbox could not be made, or its command not started.
    #[error(transparent)]
    Launch(#[from] LaunchError),
    /// The sandbox ran but could not be watched: it was ended, since unwatched is not how it
    /// was asked to run.
    #[error("cannot watch the sandbox: {0}")]
    Unwatched(String),
    /// cordond's worker could not follow its caller's connection: the sandbox was ended.
    #[error("cannot follow the caller's connection: {0}")]
    CallerGone(#[source] std::io::Error),
    /// The sandbox's end could not be read, or its command could not be executed.
    #[error(transparent)]
    Wait(LaunchError),
}

impl SessionError {
    /// The exit code to end with.
    pub fn exit_code(&self) -> i32 {
        match self {
            // The command's exec failing is told once the sandbox has ended.
            Self::Launch(e) | Self::Wait(e) => e.exit_code(),
            Self::Kernel(_) | Self::Unwatched(_) | Self::CallerGone(_) => {
                sandbox::EXIT_SETUP_FAILED
            }
        }
    }
}

/// Runs `command` in a sandbox under `policy`, watches it, and returns how it ended.
pub fn run<I>(
    policy: &Policy,
    command: &[OsString],
    env: I,
    options: Options,
    say: &mut dyn FnMut(Notice),
) -> Result<Exit, SessionError>
where
    I: IntoIterator<Item = (OsString, OsString)>,
{
    let session = uuid::Uuid::now_v7();
    let started_at = std::time::SystemTime::now();
    let mut launch = sandbox::prepare(policy, command, env)?;
    if options.exits_after {
        launch.keep_mounts_until_exit();
    }
    // The profile as resolved (its hash in `session_started`, itself on the cgroup), made
    // while init builds the sandbox, like the rest of what the closure below does.
    let mut resolved = String::new();
    for warning in &launch.warnings {
        say(Notice::Warning(warning.clone()));
    }
    for note in &launch.notes {
        say(Notice::Note(note.clone()));
    }
    // The eBPF side, and what watches the sandbox, are set up while init builds the
    // sandbox: the command starts after, watched from its first instruction (and a short
    // command does not end before its watcher has begun).
    let (starting, (kernel, registered)) = launch.start(|cgroup, _init| {
        resolved = serde_json::to_string(policy).unwrap_or_default();
        let launch_record =
            crate::evidence::LaunchRecord::new(session, started_at, policy, resolved.clone())
                .encode();
        if let Err(e) = cgroup.set_session(session) {
            say(Notice::Warning(format!(
                "{e}; `cordon ps` will not show the session"
            )));
        }
        if let Err(e) = cgroup.set_owner(policy.identity.uid) {
            say(Notice::Warning(format!(
                "{e}; its user will not see it in `cordon ps`"
            )));
        }
        if let Err(e) = cgroup.set_launch_record(&launch_record) {
            say(Notice::Warning(format!(
                "{e}; its evidence will lack the profile and the changed files"
            )));
        }
        let Some(kernel) = open_kernel(policy, say)? else {
            return Ok((None, None));
        };
        // First, as its answer takes the longest: the audit status the listener counts
        // dropped records from (a thread, which a launch may start once init is forked).
        let asker = crate::audit::Asker::spawn(options.enable_audit);
        let registered =
            register(&kernel, policy, cgroup, asker, say).map_err(LaunchError::Register)?;
        Ok::<_, SessionError>((Some(kernel), Some(registered)))
    })?;
    let started = started(session, started_at, policy, &resolved, command);
    // Known from the registering: what the end takes out.
    let syscalls = registered
        .as_ref()
        .map(|r| r.syscalls.clone())
        .unwrap_or_default();
    let take_out = |kernel: &Kernel, cgroup_id| unregister(kernel, cgroup_id, &syscalls);
    let monitor = match (&kernel, registered) {
        (Some(kernel), Some(registered)) => {
            let cgroup_id = registered.cgroup_id;
            match start_monitor(
                kernel,
                policy,
                registered,
                starting.pid().as_raw() as u32,
                (launch.view(), launch.profile_view()),
                started,
                &options,
            ) {
                Ok(m) => Some(m),
                Err(e) => {
                    if let Err(e) = take_out(kernel, cgroup_id) {
                        say(Notice::Warning(e));
                    }
                    starting.abandon();
                    return Err(SessionError::Unwatched(e));
                }
            }
        }
        _ => None,
    };
    let running = match starting.go() {
        Ok(running) => running,
        Err(e) => {
            if let (Some(monitor), Some(kernel)) = (monitor, &kernel) {
                let cgroup_id = monitor.cgroup_id();
                monitor.abandon();
                if let Err(e) = take_out(kernel, cgroup_id) {
                    say(Notice::Warning(e));
                }
            }
            return Err(e.into());
        }
    };
    if let Some(e) = &running.enforcement {
        if e.status != sandbox::landlock::Status::Fully {
            say(Notice::Warning(format!(
                "compat = \"best-effort\": Landlock is {} enforced on this kernel (ABI {})",
                e.status, launch.kernel_abi
            )));
        }
    }
    // What runs killed before they could clean up left behind, swept while the command
    // runs (not before it starts, where the thread's start would delay it, nor at its end,
    // where the sweep would take a processor from the last reads).
    let sweeper = kernel.as_ref().and_then(|kernel| {
        let kernel = Arc::clone(kernel);
        match crate::report::Worker::spawn("cordon-sweep", move || sweep(&kernel)) {
            Ok(worker) => Some(worker),
            Err(e) => {
                say(Notice::Warning(format!(
                    "cannot sweep ended sandboxes: no thread for it ({e})"
                )));
                None
            }
        }
    });
    let mut monitor = monitor;
    if let Some(monitor) = monitor.as_mut() {
        if let Some(command) = running.command {
            monitor.add_creator(command.as_raw() as u32);
        }
        monitor.open_writer();
    }
    // Once the sandbox has ended: its last events read, its entries and ring given back;
    // then, once init is reaped, its events written.
    let say_at_end: &mut dyn FnMut(Notice) = &mut *say;
    let kernel_at_end = kernel.as_deref();
    let ended = move |monitor: Option<Monitor>| {
        let say = say_at_end;
        let mut finishing = None;
        if let (Some(monitor), Some(kernel)) = (monitor, kernel_at_end) {
            let cgroup_id = monitor.cgroup_id();
            let mut unregistered = Ok(());
            finishing = Some(monitor.finish(|| {
                unregistered = take_out(kernel, cgroup_id);
            }));
            if let Err(e) = unregistered {
                say(Notice::Warning(e));
            }
        }
        move || {
            if let Some(Err(e)) = finishing.map(crate::monitor::Finishing::wait) {
                say(Notice::Warning(format!(
                    "cannot write the sandbox's events: {e}"
                )));
            }
        }
    };
    if let Some(control) = options.control {
        if let Err(e) = relay(control, &running) {
            end_unwatched(running, monitor, ended);
            return Err(SessionError::CallerGone(e));
        }
    }
    // The watchers run on this thread, beside the signals and init's reports.
    let exit = running.follow(monitor, ended).map_err(SessionError::Wait);
    match sweeper.map(crate::report::Worker::wait) {
        Some(Some(Err(e))) => say(Notice::Warning(format!(
            "cannot sweep ended sandboxes: {e}"
        ))),
        Some(None) => say(Notice::Warning(
            "the sweep of ended sandboxes panicked".into(),
        )),
        Some(Some(Ok(_))) | None => {}
    }
    exit
}

/// The eBPF programs, loaded or adopted. Without them a profile that allows some network
/// cannot be enforced (refused under `strict`), and no kernel event is reported.
fn open_kernel(
    policy: &Policy,
    say: &mut dyn FnMut(Notice),
) -> Result<Option<Arc<Kernel>>, SessionError> {
    match Kernel::open() {
        Ok(kernel) => Ok(Some(Arc::new(kernel))),
        // An audit lets through what it reports: with nothing to report it, nothing runs.
        Err(e) if policy.mode == profile::Mode::Audit => Err(SessionError::Kernel(format!(
            "mode = \"audit\" needs Cordon's eBPF programs to report what it lets through, and they cannot be loaded: {e}"
        ))),
        Err(e) if !policy.offline() && policy.compat == profile::Compat::Strict => {
            Err(SessionError::Kernel(format!(
                "compat = \"strict\" refuses to run: the profile's network rules need Cordon's eBPF programs, which cannot be loaded: {e}"
            )))
        }
        Err(e) => {
            let lost = if policy.offline() {
                "no kernel events will be reported"
            } else {
                "compat = \"best-effort\": only Landlock's TCP port rules apply (any address, UDP open), and no kernel events will be reported"
            };
            say(Notice::Warning(format!(
                "cannot load Cordon's eBPF programs ({e}); {lost}"
            )));
            Ok(None)
        }
    }
}

/// Removes what ended sandboxes left behind: the empty cgroups of killed runs, then the map
/// entries of every cgroup that is gone (their ring buffers go back to the pool).
fn sweep(kernel: &Kernel) -> Result<usize, String> {
    let registered = kernel.registered().map_err(|e| e.to_string())?;
    let parent = crate::cgroup::sandboxes_dir().map_err(|e| e.to_string())?;
    let mut live = Vec::new();
    for entry in std::fs::read_dir(&parent)
        .map_err(|e| e.to_string())?
        .flatten()
    {
        // The parent's own control files are not sandboxes (`file_type` costs no call).
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        if orphaned(&path) && std::fs::remove_dir(&path).is_ok() {
            continue;
        }
        if let Ok(meta) = entry.metadata() {
            live.push(std::os::linux::fs::MetadataExt::st_ino(&meta));
        }
    }
    // The cgroup v1 cgroups of killed runs (limits on a hybrid host): empty once their
    // processes are gone, so removing them fails while anything is left.
    for controller in ["pids", "memory"] {
        let Ok(Some(mount)) = crate::cgroup::host_v1_mount(controller) else {
            continue;
        };
        let Ok(entries) = std::fs::read_dir(mount.join(crate::cgroup::PARENT)) else {
            continue;
        };
        for entry in entries.flatten() {
            if run_ended(&entry.path()) {
                let _ = std::fs::remove_dir(entry.path());
            }
        }
    }
    kernel.sweep(&registered, &live).map_err(|e| e.to_string())
}

/// Whether the `cordon run` that named a sandbox cgroup `<profile>-<pid>-<n>` is gone.
fn run_ended(cgroup: &std::path::Path) -> bool {
    let name = cgroup
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut parts = name.rsplit('-');
    let (Some(_n), Some(pid)) = (parts.next(), parts.next()) else {
        return false;
    };
    pid.parse::<u32>()
        .is_ok_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
}

/// An empty sandbox cgroup (`<profile>-<pid>-<n>`) whose `cordon run` is no longer alive.
fn orphaned(cgroup: &std::path::Path) -> bool {
    run_ended(cgroup)
        && std::fs::read_to_string(cgroup.join("cgroup.events"))
            .is_ok_and(|e| e.lines().any(|l| l == "populated 0"))
}

/// What registering a sandbox set up before it was forked.
struct Registered {
    cgroup_id: u64,
    name: String,
    cgroup_events: PathBuf,
    ring: crate::ebpf::Ring,
    resolver: Option<Resolver>,
    audit: Option<crate::audit::AuditListener>,
    /// The numbers of the syscalls it has rules for.
    syscalls: Vec<u32>,
}

/// A listener for Landlock's denial records (`asker` turns kernel auditing on if it was
/// off). Without it, file denials are not reported (the sandbox still enforces them).
fn landlock_audit(
    asker: std::io::Result<crate::audit::Asker>,
) -> std::io::Result<crate::audit::AuditListener> {
    crate::audit::AuditListener::open(asker?)
}

/// Enters the sandbox into the eBPF maps, with its resolver's ports when it has network.
fn register(
    kernel: &Kernel,
    policy: &Policy,
    cgroup: &crate::cgroup::SandboxCgroup,
    asker: std::io::Result<crate::audit::Asker>,
    say: &mut dyn FnMut(Notice),
) -> Result<Registered, String> {
    let cgroup_id = cgroup.id().map_err(|e| e.to_string())?;
    let resolver = if policy.offline() {
        None
    } else {
        Some(Resolver::bind().map_err(|e| format!("cannot open the sandbox's DNS resolver: {e}"))?)
    };
    let (dns_port4, dns_port6) = resolver.as_ref().map_or((0, 0), Resolver::ports);
    let audit = match landlock_audit(asker) {
        Ok(listener) => Some(listener),
        Err(e) => {
            say(Notice::Warning(format!(
                "cannot read audit records ({e}); file denials will not be reported"
            )));
            None
        }
    };
    let audited = policy.mode == profile::Mode::Audit;
    let entry = crate::ebpf::abi::Sandbox {
        flags: if audited {
            crate::ebpf::abi::CORDON_SANDBOX_AUDIT as u32
        } else {
            0
        },
        dns_port4,
        dns_port6,
        ring: 0,
    };
    let mut dests = crate::network::static_dests(&policy.network);
    if audited {
        dests.extend(crate::network::inside_dests(
            &policy.network,
            &crate::network::resolver::host_addresses(),
        ));
    }
    let syscalls = crate::ebpf::syscalls::rules(&policy.syscalls, audited);
    match kernel.register(cgroup_id, entry, &dests, &syscalls) {
        Ok(ring) => Ok(Registered {
            cgroup_id,
            name: cgroup.name(),
            cgroup_events: cgroup.path().join("cgroup.events"),
            ring,
            resolver,
            audit,
            syscalls: syscalls.iter().map(|(nr, _)| *nr).collect(),
        }),
        Err(e) => {
            let _ = kernel.unregister(cgroup_id, None);
            Err(e.to_string())
        }
    }
}

fn start_monitor(
    kernel: &Arc<Kernel>,
    policy: &Policy,
    registered: Registered,
    init: u32,
    (view, profile_view): (sandbox::view::View, Option<sandbox::view::View>),
    started: Started,
    options: &Options,
) -> Result<Monitor, String> {
    let sink = Sink {
        json: options.events.clone(),
        stderr: !options.quiet,
        spool: options.spool.clone(),
        advice: (!options.quiet).then(|| crate::learn::Advice::of(policy)),
    };
    let (reporter, writer) = Monitor::reporter(
        &registered.name,
        &policy.name,
        Some(started.session),
        policy.severity.clone(),
        sink,
        crate::responder::Responder::new(&policy.responses, Some(Arc::clone(kernel))),
    )
    .map_err(|e| format!("cannot open the event log: {e}"))?;
    // The session's first event. A launch that fails before its command runs writes none
    // (see `Monitor::abandon`).
    reporter.report_at(started.at, None, started.what);
    let stop = crate::report::Stop::new().map_err(|e| e.to_string())?;
    let names = Arc::new(Mutex::new(HashMap::new()));
    let mut threads = Vec::new();
    if let Some(resolver) = registered.resolver {
        let upstreams = if options.dns_upstream.is_empty() {
            let conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            crate::network::resolver::upstreams_from(&conf)
        } else {
            options.dns_upstream.clone()
        };
        let answering = Answering {
            kernel: Arc::clone(kernel),
            cgroup_id: registered.cgroup_id,
            cgroup: registered
                .cgroup_events
                .parent()
                .map(std::path::Path::to_path_buf)
                .unwrap_or_default(),
            refused: Mutex::new(HashMap::new()),
            policy: policy.network.clone(),
            upstreams,
            names: Arc::clone(&names),
            reporter: reporter.clone(),
            host_addresses: crate::network::resolver::host_addresses(),
            audited: policy.mode == profile::Mode::Audit,
        };
        threads = resolver
            .serve(answering, Arc::clone(&stop))
            .map_err(|e| format!("cannot start the DNS resolver: {e}"))?;
    }
    let watch = Watch {
        kernel: Arc::clone(kernel),
        cgroup_id: registered.cgroup_id,
        cgroup_events: registered.cgroup_events,
        ring: registered.ring,
        names,
        audit: registered.audit.map(|a| (a, vec![init])),
        view,
        judge: profile_view.map(|v| crate::monitor::Judge::new(v, policy.network.bind_tcp.clone())),
        init,
    };
    Ok(Monitor::start(watch, reporter, writer, stop, threads))
}

/// A session: its id, when it began, and its first event.
struct Started {
    session: uuid::Uuid,
    at: std::time::SystemTime,
    what: crate::event::What,
}

/// The session's first event: who runs what, under which rules, where.
fn started(
    session: uuid::Uuid,
    at: std::time::SystemTime,
    policy: &Policy,
    resolved: &str,
    command: &[OsString],
) -> Started {
    use sha2::Digest as _;
    let uid = policy.identity.uid;
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name);
    let what = crate::event::What::SessionStarted {
        uid,
        user,
        command: command_line(command),
        profile_sha256: format!("{:x}", sha2::Sha256::digest(resolved.as_bytes())),
        workspace: policy.workspace.to_string_lossy().into_owned(),
    };
    Started { session, at, what }
}

/// The command line as `session_started` carries it: each argument up to 256 bytes and all
/// of them up to 1 KiB, cut visibly (`…`), so a long script or a pasted blob neither makes
/// the event too large for a collector nor copies all of itself into every log.
fn command_line(command: &[OsString]) -> Vec<String> {
    const ARG: usize = 256;
    const ALL: usize = 1024;
    let mut left = ALL;
    let mut out = Vec::new();
    for (i, arg) in command.iter().enumerate() {
        if left == 0 {
            out.push(format!("…[{} more arguments]", command.len() - i));
            break;
        }
        let arg = arg.to_string_lossy();
        let room = ARG.min(left);
        if arg.len() <= room {
            left -= arg.len();
            out.push(arg.into_owned());
        } else {
            let mut end = room;
            while !arg.is_char_boundary(end) {
                end -= 1;
            }
            left -= end;
            out.push(format!("{}…", &arg[..end]));
        }
    }
    out
}

/// Ends a sandbox that runs but cannot be followed. `ended` gets `monitor` as in
/// [`sandbox::Running::follow`].
fn end_unwatched<W: sandbox::Watcher, Then: FnOnce()>(
    running: sandbox::Running,
    monitor: Option<W>,
    ended: impl FnOnce(Option<W>) -> Then,
) {
    if let Some(cgroup) = running.cgroup() {
        let _ = cgroup.kill();
    }
    let _ = running.follow(monitor, ended);
}

/// Takes an ended sandbox out of the eBPF maps (its syscall rules by key) and gives its
/// ring buffer back to the pool.
fn unregister(kernel: &Kernel, cgroup_id: u64, syscalls: &[u32]) -> Result<(), String> {
    kernel
        .unregister(cgroup_id, Some(syscalls))
        .map_err(|e| e.to_string())
}

/// Follows the caller's connection while the sandbox runs: signals it sends go to the
/// sandbox's init; when it goes away (the caller died), the sandbox is killed.
fn relay(control: UnixStream, running: &sandbox::Running) -> std::io::Result<()> {
    let init = running.pid;
    let cgroup: Option<PathBuf> = running.cgroup().map(|c| c.path().to_path_buf());
    std::thread::Builder::new()
        .name("cordon-caller".into())
        .spawn(move || {
            let mut reader = std::io::BufReader::new(control);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if let Ok(RunSignal { signal }) = serde_json::from_slice(&line) {
                            if let Ok(signal) = nix::sys::signal::Signal::try_from(signal) {
                                let _ = nix::sys::signal::kill(init, signal);
                            }
                        }
                    }
                }
            }
            // The caller is gone: nobody is left to see the sandbox's output or wait for it.
            if let Some(path) = cgroup {
                if let Ok(cgroup) = crate::cgroup::SandboxCgroup::open(&path) {
                    let _ = cgroup.kill();
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_command_line_is_cut_visibly() {
        let short: Vec<OsString> = ["git", "status"].map(OsString::from).to_vec();
        assert_eq!(command_line(&short), ["git", "status"]);
        let long: Vec<OsString> = vec!["sh".into(), "-c".into(), "x".repeat(5000).into()];
        let cut = command_line(&long);
        assert_eq!(cut[..2], ["sh", "-c"]);
        assert_eq!(cut[2], format!("{}…", "x".repeat(256)));
        let many: Vec<OsString> = (0..100)
            .map(|i| OsString::from(format!("{i:0>200}")))
            .collect();
        let cut = command_line(&many);
        assert_eq!(cut.len(), 7, "five whole, one cut, one count: {cut:?}");
        assert_eq!(cut[6], "…[94 more arguments]");
        assert!(cut.iter().map(String::len).sum::<usize>() < 1100);
    }
}
