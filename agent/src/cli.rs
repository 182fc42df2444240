//! The `cordon` command line: profile authoring (`profile check|show|test`), `run`, and the
//! responders' commands (`ps`, `kill`, `freeze`, `thaw`, `isolate`, `release`).

mod contain;
mod remote;
mod worker;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::api::client::{socket_path, Client};
use crate::api::ExitStatus;
use crate::ebpf::Kernel;
use crate::event::Action;
use crate::expect;
use crate::monitor::{Monitor, Sink, Watch};
use crate::network::resolver::{Answering, Resolver};
use crate::policy::{self, Context, Policy};
use crate::profile::{self, SearchPath};
use crate::sandbox::{self, Exit};

/// Directory searched for profiles after `--profile-path` and `CORDON_PROFILE_PATH`.
pub const SYSTEM_PROFILE_DIR: &str = "/etc/cordon/profiles";

#[derive(Debug, Parser)]
#[command(
    name = "cordon",
    version,
    about = "Run AI agents in kernel-enforced sandboxes"
)]
pub struct Cli {
    /// Extra directories to look up profiles by name in (before CORDON_PROFILE_PATH,
    /// /etc/cordon/profiles and the built-in profiles).
    #[arg(long = "profile-path", global = true, value_name = "DIR")]
    profile_path: Vec<PathBuf>,
    /// Say more (repeat for debug output).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// cordond's socket (default: $CORDON_SOCKET, else /run/cordon/cordon.sock).
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Print JSON instead of tables (ps, status, events, kill, ...).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write, check and test sandbox profiles.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Run a command inside a sandbox.
    Run {
        /// Profile name or file.
        #[arg(long, short)]
        profile: String,
        /// The agent's workspace (`{workspace}`); defaults to the current directory.
        #[arg(long, short, value_name = "DIR")]
        workspace: Option<PathBuf>,
        /// Append every event of the sandbox (violations, exec, fork, exit) to FILE as JSON lines.
        #[arg(long, value_name = "FILE")]
        events: Option<PathBuf>,
        /// Do not print violations on stderr.
        #[arg(long, short)]
        quiet: bool,
        /// DNS servers the sandbox's resolver forwards allowed names to (default: the
        /// nameservers of /etc/resolv.conf).
        #[arg(long = "dns-upstream", value_name = "ADDR:PORT")]
        dns_upstream: Vec<std::net::SocketAddr>,
        /// Run here, not through cordond (needs root; implied by --events).
        #[arg(long)]
        no_daemon: bool,
        /// The command and its arguments.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<OsString>,
    },
    /// List the sandboxes running on this host.
    Ps,
    /// cordond's health: kernel features, collector link, spool depth, events dropped.
    Status,
    /// Events from cordond's journal, oldest first.
    Events {
        /// Keep printing new events as they come.
        #[arg(long, short)]
        follow: bool,
        /// Only this sandbox's events.
        #[arg(long, value_name = "NAME")]
        sandbox: Option<String>,
        /// Only events of this kind (network_denied, file_denied, exec, ...).
        #[arg(long, value_name = "KIND")]
        kind: Option<String>,
        /// Only events since this time: RFC 3339 (2026-11-26T10:00:00Z) or an age (10m, 2h).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Write man pages for cordon and its subcommands into DIR.
    #[command(name = "man", hide = true)]
    Man {
        #[arg(value_name = "DIR")]
        out: PathBuf,
    },
    /// Kill every process of a sandbox (cgroup.kill).
    Kill { sandbox: String },
    /// Stop every process of a sandbox where it is, keeping its state (cgroup.freeze).
    Freeze { sandbox: String },
    /// Let a frozen sandbox run again.
    Thaw { sandbox: String },
    /// Cut a sandbox off the network: new connections fail, open ones pass no packet.
    Isolate { sandbox: String },
    /// Undo `isolate`.
    Release { sandbox: String },
    /// Run one sandbox for cordond (which starts this; see `daemon::server`).
    #[command(name = "__worker", hide = true)]
    Worker,
}

#[derive(Debug, Subcommand)]
enum ProfileCommand {
    /// Check profile files; prints `FILE:LINE:COL: message` for each error.
    Check {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<String>,
    },
    /// Print the fully resolved policy (extends and placeholders applied) as JSON.
    Show {
        #[arg(value_name = "NAME|FILE")]
        profile: String,
        #[arg(long, short, value_name = "DIR")]
        workspace: Option<PathBuf>,
    },
    /// Write the profile's seccomp programs (`filter0.bpf`, `filter1.bpf`: the kernel's
    /// `struct sock_filter` arrays, in install order) for another sandbox tool to load.
    Seccomp {
        #[arg(value_name = "NAME|FILE")]
        profile: String,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Run a profile's expectations (`NAME.expect.toml`): commands that must work or be denied.
    Test {
        #[arg(value_name = "NAME|FILE")]
        profile: String,
        /// The expectations file; by default `NAME.expect.toml` beside the profile.
        #[arg(long, value_name = "FILE")]
        expect: Option<PathBuf>,
    },
}

/// How results are printed.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let search = search_path(&cli.profile_path);
    let out = Output { json: cli.json };
    let socket = cli.socket.as_deref();
    match cli.command {
        Command::Profile(ProfileCommand::Check { files }) => check(&search, &files),
        Command::Profile(ProfileCommand::Show { profile, workspace }) => {
            match resolve(&search, &profile, workspace) {
                Ok(policy) => print_json(&policy),
                Err(msg) => fail(&msg, 1),
            }
        }
        Command::Profile(ProfileCommand::Seccomp { profile, out }) => {
            match export_seccomp(&search, &profile, &out) {
                Ok(written) => {
                    for path in written {
                        println!("{}", path.display());
                    }
                    ExitCode::SUCCESS
                }
                Err(msg) => fail(&msg, 1),
            }
        }
        Command::Profile(ProfileCommand::Test { profile, expect }) => {
            test_profile(&search, &cli.profile_path, &profile, expect)
        }
        Command::Run {
            profile,
            workspace,
            events,
            quiet,
            dns_upstream,
            no_daemon,
            command,
        } => {
            let local = no_daemon || events.is_some() || !dns_upstream.is_empty();
            if !local {
                match daemon(socket) {
                    Ok(Some(client)) => {
                        return remote::run(client, &profile, workspace, &command, quiet)
                    }
                    Ok(None) => {}
                    Err(e) => return fail(&e, exit_u8(sandbox::EXIT_SETUP_FAILED)),
                }
            }
            let options = RunOptions {
                events,
                spool: None,
                quiet,
                dns_upstream,
                verbose: cli.verbose,
                control: None,
                enable_audit: true,
            };
            let policy = match resolve(&search, &profile, workspace) {
                Ok(p) => p,
                Err(msg) => return fail(&msg, exit_u8(sandbox::EXIT_SETUP_FAILED)),
            };
            exit_like(launch(&policy, &command, std::env::vars_os(), options))
        }
        Command::Ps => match daemon(socket) {
            Ok(client) => contain::ps(client, out),
            Err(e) => fail(&e, 1),
        },
        Command::Status => match daemon_required(socket) {
            Ok(client) => remote::status(client, out),
            Err(e) => fail(&e, 1),
        },
        Command::Events {
            follow,
            sandbox,
            kind,
            since,
        } => {
            let since = match since.as_deref().map(parse_since).transpose() {
                Ok(s) => s,
                Err(e) => return fail(&e, 2),
            };
            match daemon_required(socket) {
                Ok(client) => remote::events(client, follow, sandbox, kind, since, out),
                Err(e) => fail(&e, 1),
            }
        }
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(shell, &mut Cli::command(), "cordon", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Man { out } => match write_man_pages(&out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(
                &format!("cannot write man pages to {}: {e}", out.display()),
                1,
            ),
        },
        Command::Worker => worker::main(),
        Command::Kill { sandbox } => act(socket, &sandbox, Action::Kill, out),
        Command::Freeze { sandbox } => act(socket, &sandbox, Action::Freeze, out),
        Command::Thaw { sandbox } => act(socket, &sandbox, Action::Thaw, out),
        Command::Isolate { sandbox } => act(socket, &sandbox, Action::Isolate, out),
        Command::Release { sandbox } => act(socket, &sandbox, Action::Release, out),
    }
}

fn act(socket: Option<&std::path::Path>, sandbox: &str, action: Action, out: Output) -> ExitCode {
    match daemon(socket) {
        Ok(client) => contain::act(client, sandbox, action, out),
        Err(e) => fail(&e, 1),
    }
}

/// cordond's client when it runs. Without it: `None` for root (who acts on the kernel
/// directly), an error for anyone else. A socket named explicitly must answer.
fn daemon(explicit: Option<&std::path::Path>) -> Result<Option<Client>, String> {
    let named = explicit.is_some() || std::env::var_os("CORDON_SOCKET").is_some();
    let path = socket_path(explicit);
    match Client::connect(&path) {
        Ok(client) => Ok(Some(client)),
        Err(e) if named => Err(e.to_string()),
        Err(_) if nix::unistd::geteuid().is_root() => Ok(None),
        Err(e) => Err(format!("{e}; without cordond this needs root")),
    }
}

fn daemon_required(explicit: Option<&std::path::Path>) -> Result<Client, String> {
    Client::connect(&socket_path(explicit)).map_err(|e| format!("{e} (is cordond running?)"))
}

/// `--since`: RFC 3339, or an age like `10m`.
fn parse_since(text: &str) -> Result<std::time::SystemTime, String> {
    if let Ok(t) = humantime::parse_rfc3339_weak(text) {
        return Ok(t);
    }
    humantime::parse_duration(text)
        .ok()
        .and_then(|age| std::time::SystemTime::now().checked_sub(age))
        .ok_or_else(|| {
            format!(
                "--since `{text}` is neither a time (2026-11-26T10:00:00Z) nor an age (10m, 2h)"
            )
        })
}

fn write_man_pages(dir: &std::path::Path) -> std::io::Result<()> {
    use clap::CommandFactory as _;
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(Cli::command(), dir)
}

pub(crate) fn print_json<T: serde::Serialize>(value: &T) -> ExitCode {
    match serde_json::to_string_pretty(value) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&format!("cannot print JSON: {e}"), 1),
    }
}

pub fn init_tracing(verbose: u8) {
    // aya warns about the map of maps it is told to allow; that is not news to a user.
    let default = match verbose {
        0 => "warn,aya=error",
        1 => "info,aya=error",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CORDON_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .with_target(false)
        .try_init();
}

/// `--profile-path`, then `CORDON_PROFILE_PATH`, then the system directory.
fn search_path(extra: &[PathBuf]) -> SearchPath {
    let mut dirs = extra.to_vec();
    if let Some(env) = std::env::var_os("CORDON_PROFILE_PATH") {
        dirs.extend(std::env::split_paths(&env).filter(|p| !p.as_os_str().is_empty()));
    }
    dirs.push(PathBuf::from(SYSTEM_PROFILE_DIR));
    SearchPath::new(dirs)
}

fn fail(message: &str, code: u8) -> ExitCode {
    eprintln!("cordon: {message}");
    ExitCode::from(code)
}

fn workspace_dir(workspace: Option<PathBuf>) -> Result<PathBuf, String> {
    let dir = match workspace {
        Some(dir) => dir,
        None => std::env::current_dir()
            .map_err(|e| format!("cannot read the current directory: {e}"))?,
    };
    std::fs::canonicalize(&dir).map_err(|e| format!("workspace {}: {e}", dir.display()))
}

fn resolve(search: &SearchPath, spec: &str, workspace: Option<PathBuf>) -> Result<Policy, String> {
    resolve_with(search, spec, workspace, Context::current)
}

/// [`resolve`] in the context `context` makes of the canonical workspace.
fn resolve_with(
    search: &SearchPath,
    spec: &str,
    workspace: Option<PathBuf>,
    context: impl FnOnce(PathBuf) -> Context,
) -> Result<Policy, String> {
    let workspace = workspace_dir(workspace)?;
    let profile = search.load(spec).map_err(|e| e.to_string())?;
    policy::compile(&profile, &context(workspace)).map_err(|e| e.to_string())
}

fn check(search: &SearchPath, files: &[String]) -> ExitCode {
    let mut failed = false;
    for file in files {
        match resolve(search, file, None) {
            Ok(policy) => println!(
                "{file}: ok ({} paths, {} denied syscalls)",
                policy.filesystem.rules.len(),
                policy.syscalls.deny.len()
            ),
            Err(msg) => {
                eprintln!("{msg}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn test_profile(
    search: &SearchPath,
    profile_path: &[PathBuf],
    spec: &str,
    expect: Option<PathBuf>,
) -> ExitCode {
    let loaded = match search.load(spec) {
        Ok(p) => p,
        Err(e) => return fail(&e.to_string(), 2),
    };
    let file = match expectations_for(&loaded, expect) {
        Ok(f) => f,
        Err(msg) => return fail(&msg, 2),
    };
    let cordon = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return fail(&format!("cannot find the cordon binary: {e}"), 2),
    };
    let results = match expect::run(&cordon, spec, profile_path, &file) {
        Ok(r) => r,
        Err(e) => return fail(&e.to_string(), 2),
    };
    let failed = results.iter().filter(|r| !r.passed).count();
    for r in &results {
        if r.passed {
            println!("PASS {}", r.name);
        } else {
            println!("FAIL {}: {}", r.name, r.detail);
        }
    }
    println!(
        "{}: {} passed, {failed} failed",
        loaded.name,
        results.len() - failed
    );
    if failed > 0 || results.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The expectations of a loaded profile: `--expect`, else `NAME.expect.toml` beside the
/// profile's file, else the built-in ones.
fn expectations_for(
    profile: &profile::Profile,
    explicit: Option<PathBuf>,
) -> Result<expect::ExpectFile, String> {
    if let Some(path) = explicit {
        return expect::load(&path).map_err(|e| e.to_string());
    }
    let own = profile.sources.last().cloned().unwrap_or_default();
    if !own.starts_with("<builtin>") {
        let path = own.with_file_name(format!("{}.expect.toml", profile.name));
        if path.is_file() {
            return expect::load(&path).map_err(|e| e.to_string());
        }
        return Err(format!(
            "no expectations for `{}`: {} does not exist (or pass --expect FILE)",
            profile.name,
            path.display()
        ));
    }
    let (_, text) = expect::BUILTIN
        .iter()
        .find(|(n, _)| *n == profile.name)
        .ok_or_else(|| format!("no built-in expectations for `{}`", profile.name))?;
    expect::parse(
        &PathBuf::from(format!("<builtin>/{}.expect.toml", profile.name)),
        (*text).to_string(),
    )
    .map_err(|e| e.to_string())
}

fn export_seccomp(
    search: &SearchPath,
    spec: &str,
    out: &std::path::Path,
) -> Result<Vec<PathBuf>, String> {
    let policy = resolve(search, spec, None)?;
    let filters = sandbox::seccomp::compile(&policy.syscalls).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mut written = Vec::new();
    for (i, program) in filters.programs().iter().enumerate() {
        let path = out.join(format!("filter{i}.bpf"));
        std::fs::write(&path, program)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

struct RunOptions {
    events: Option<PathBuf>,
    spool: Option<crate::export::spool::SpoolConfig>,
    quiet: bool,
    dns_upstream: Vec<std::net::SocketAddr>,
    verbose: u8,
    /// The connection of the client cordond runs this sandbox for: signals come in on it
    /// (and its end kills the sandbox).
    control: Option<std::os::unix::net::UnixStream>,
    /// Turn kernel auditing on when it is off (for Landlock's denial records).
    enable_audit: bool,
}

/// Failing before the sandbox ran: the message, and the setup exit code.
fn setup_failed(message: &str, code: i32) -> ExitStatus {
    eprintln!("cordon: {message}");
    ExitStatus::Code(exit_u8(code))
}

/// Runs `command` in a sandbox under `policy`, watches it, and returns how it ended.
fn launch<I>(policy: &Policy, command: &[OsString], env: I, options: RunOptions) -> ExitStatus
where
    I: IntoIterator<Item = (OsString, OsString)>,
{
    let verbose = options.verbose;
    let kernel = match open_kernel(policy) {
        Ok(k) => k,
        Err(msg) => return setup_failed(&msg, sandbox::EXIT_SETUP_FAILED),
    };
    let launch = match sandbox::prepare(policy, command, env) {
        Ok(l) => l,
        Err(e) => return setup_failed(&e.to_string(), e.exit_code()),
    };
    for warning in &launch.warnings {
        eprintln!("cordon: warning: {warning}");
    }
    if verbose > 0 {
        for note in &launch.notes {
            eprintln!("cordon: note: {note}");
        }
    }
    let spawned = launch.spawn_with(|cgroup| match &kernel {
        Some(kernel) => register(kernel, policy, cgroup, options.enable_audit).map(Some),
        None => Ok(None),
    });
    let (running, registered) = match spawned {
        Ok(r) => r,
        Err(e) => return setup_failed(&e.to_string(), e.exit_code()),
    };
    let monitor = match (&kernel, registered) {
        (Some(kernel), Some(registered)) => {
            let creators = [Some(running.pid), running.command]
                .into_iter()
                .flatten()
                .map(|p| p.as_raw() as u32)
                .collect();
            let cgroup_id = registered.cgroup_id;
            match start_monitor(kernel, policy, registered, creators, &options) {
                Ok(m) => Some(m),
                Err(e) => {
                    eprintln!("cordon: cannot watch the sandbox: {e}");
                    return fail_running(running, || unregister(kernel, policy, cgroup_id));
                }
            }
        }
        _ => None,
    };
    // Once the sandbox has ended: its last events read, its entries and ring given back.
    let ended = || {
        if let (Some((monitor, cgroup_id)), Some(kernel)) = (monitor, &kernel) {
            if let Err(e) = monitor.finish() {
                eprintln!("cordon: cannot write the sandbox's events: {e}");
            }
            unregister(kernel, policy, cgroup_id);
        }
    };
    if let Some(control) = options.control {
        if let Err(e) = worker::relay(control, &running) {
            eprintln!("cordon: cannot follow the caller's connection: {e}");
            return fail_running(running, ended);
        }
    }
    if let Some(e) = &running.enforcement {
        if e.status != sandbox::landlock::Status::Fully {
            eprintln!(
                "cordon: warning: compat = \"best-effort\": Landlock is {} enforced on this kernel (ABI {})",
                e.status, launch.kernel_abi
            );
        }
    }
    // What runs killed before they could clean up left behind, swept while this one runs.
    let sweeper = kernel.as_ref().map(|kernel| {
        let kernel = Arc::clone(kernel);
        std::thread::spawn(move || sweep(&kernel))
    });
    let exit = running.wait_and(ended);
    match sweeper.map(std::thread::JoinHandle::join) {
        Some(Ok(Err(e))) => eprintln!("cordon: warning: cannot sweep ended sandboxes: {e}"),
        Some(Err(_)) => eprintln!("cordon: warning: the sweep of ended sandboxes panicked"),
        Some(Ok(Ok(_))) | None => {}
    }
    match exit {
        Ok(Exit::Code(c)) => ExitStatus::Code(exit_u8(c)),
        Ok(Exit::Signal(signo)) => ExitStatus::Signal(signo),
        Err(e) => setup_failed(&e.to_string(), sandbox::EXIT_SETUP_FAILED),
    }
}

/// This process's exit code for how the sandbox ended: the same code, or death by the
/// same signal.
fn exit_like(status: ExitStatus) -> ExitCode {
    match status {
        ExitStatus::Code(c) => ExitCode::from(c),
        ExitStatus::Signal(signo) => match nix::sys::signal::Signal::try_from(signo) {
            Ok(signal) => die_like(signal),
            Err(_) => ExitCode::from(exit_u8(128 + signo)),
        },
    }
}

/// The eBPF programs, loaded or adopted. Without them a profile that allows some network
/// cannot be enforced (refused under `strict`), and no kernel event is reported.
fn open_kernel(policy: &Policy) -> Result<Option<Arc<Kernel>>, String> {
    match Kernel::open() {
        Ok(kernel) => Ok(Some(Arc::new(kernel))),
        Err(e) if !policy.network.offline() && policy.compat == profile::Compat::Strict => Err(format!(
            "compat = \"strict\" refuses to run: the profile's network rules need Cordon's eBPF programs, which cannot be loaded: {e}"
        )),
        Err(e) => {
            let lost = if policy.network.offline() {
                "no kernel events will be reported"
            } else {
                "compat = \"best-effort\": only Landlock's TCP port rules apply (any address, UDP open), and no kernel events will be reported"
            };
            eprintln!("cordon: warning: cannot load Cordon's eBPF programs ({e}); {lost}");
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
    let empty = std::fs::read_to_string(cgroup.join("cgroup.events"))
        .is_ok_and(|e| e.lines().any(|l| l == "populated 0"));
    empty && run_ended(cgroup)
}

/// What registering a sandbox set up before it was forked.
struct Registered {
    cgroup_id: u64,
    name: String,
    cgroup_events: PathBuf,
    ring: crate::ebpf::Ring,
    resolver: Option<Resolver>,
    audit: Option<crate::audit::AuditListener>,
}

/// A listener for Landlock's denial records, with kernel auditing turned on if it was off.
/// Without it, file denials are not reported (the sandbox still enforces them).
fn landlock_audit(enable: bool) -> Option<crate::audit::AuditListener> {
    if enable {
        crate::audit::enable_logged();
    }
    match crate::audit::AuditListener::open() {
        Ok(listener) => Some(listener),
        Err(e) => {
            eprintln!("cordon: warning: cannot read audit records ({e}); file denials will not be reported");
            None
        }
    }
}

/// Enters the sandbox into the eBPF maps, with its resolver's ports when it has network.
fn register(
    kernel: &Kernel,
    policy: &Policy,
    cgroup: &crate::cgroup::SandboxCgroup,
    enable_audit: bool,
) -> Result<Registered, String> {
    let cgroup_id = cgroup.id().map_err(|e| e.to_string())?;
    let resolver = if policy.network.offline() {
        None
    } else {
        Some(Resolver::bind().map_err(|e| format!("cannot open the sandbox's DNS resolver: {e}"))?)
    };
    let (dns_port4, dns_port6) = resolver.as_ref().map_or((0, 0), Resolver::ports);
    let audit = landlock_audit(enable_audit);
    let entry = crate::ebpf::abi::Sandbox {
        flags: 0,
        dns_port4,
        dns_port6,
        ring: 0,
    };
    let dests = crate::network::static_dests(&policy.network);
    let syscalls = sandbox::seccomp::kernel_rules(&policy.syscalls);
    match kernel.register(cgroup_id, entry, &dests, &syscalls) {
        Ok(ring) => Ok(Registered {
            cgroup_id,
            name: cgroup.name(),
            cgroup_events: cgroup.path().join("cgroup.events"),
            ring,
            resolver,
            audit,
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
    creators: Vec<u32>,
    options: &RunOptions,
) -> Result<(Monitor, u64), String> {
    let sink = Sink {
        json: options.events.clone(),
        stderr: !options.quiet,
        spool: options.spool.clone(),
    };
    let (reporter, writer) = Monitor::reporter(&registered.name, &policy.name, sink)
        .map_err(|e| format!("cannot open the event log: {e}"))?;
    let stop = crate::monitor::Stop::new().map_err(|e| e.to_string())?;
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
            policy: policy.network.clone(),
            upstreams,
            names: Arc::clone(&names),
            reporter: reporter.clone(),
            host_addresses: crate::network::resolver::host_addresses(),
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
        audit: registered.audit.map(|a| (a, creators)),
    };
    let monitor =
        Monitor::start(watch, reporter, writer, stop, threads).map_err(|e| e.to_string())?;
    Ok((monitor, registered.cgroup_id))
}

/// Ends a sandbox that runs but cannot be watched: unwatched is not how it was asked to run.
/// `ended` runs as in [`sandbox::Running::wait_and`].
fn fail_running(running: sandbox::Running, ended: impl FnOnce()) -> ExitStatus {
    if let Some(cgroup) = running.cgroup() {
        let _ = cgroup.kill();
    }
    let _ = running.wait_and(ended);
    ExitStatus::Code(exit_u8(sandbox::EXIT_SETUP_FAILED))
}

/// Takes an ended sandbox out of the eBPF maps (its syscall rules by key) and gives its
/// ring buffer back to the pool.
fn unregister(kernel: &Kernel, policy: &Policy, cgroup_id: u64) {
    let nrs: Vec<u32> = sandbox::seccomp::kernel_rules(&policy.syscalls)
        .iter()
        .map(|(nr, _)| *nr)
        .collect();
    if let Err(e) = kernel.unregister(cgroup_id, Some(&nrs)) {
        eprintln!("cordon: warning: {e}");
    }
}

/// Ends this process with the same signal that ended the sandboxed one, so callers see
/// the same status; if the signal does not end us, falls back to 128 + signal.
fn die_like(signal: nix::sys::signal::Signal) -> ExitCode {
    use nix::sys::signal::{signal as set_handler, SigHandler};
    // SAFETY: restoring the default disposition installs no Rust code as a handler.
    let _ = unsafe { set_handler(signal, SigHandler::SigDfl) };
    let mut set = nix::sys::signal::SigSet::empty();
    set.add(signal);
    let _ = set.thread_unblock();
    let _ = nix::sys::signal::raise(signal);
    ExitCode::from(128u8.saturating_add(signal as u8))
}

fn exit_u8(code: i32) -> u8 {
    u8::try_from(code).unwrap_or(u8::MAX)
}
