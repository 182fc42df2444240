//! The `cordon` command line: profile authoring (`profile check|show|diff|test`), `run`, and the
//! responders' commands (`ps`, `kill`, `freeze`, `thaw`, `isolate`, `release`).

mod contain;
mod evidence;
mod learn;
mod remote;
mod worker;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::api::client::{socket_path, Client};
use crate::api::ExitStatus;
use crate::event::Action;
use crate::expect;
use crate::policy::{self, Context, Policy};
use crate::profile::{self, SearchPath};
use crate::sandbox::{self, Exit};
use crate::session::{self, Notice, SessionError};
use cordon_policy::diff as policy_diff;

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

// Each subcommand's arguments are built when it is the one run (or its help is asked for),
// not all of them at every start: `cordon run` is on every launch's path.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
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
        /// Audit instead of enforcing (`mode = "audit"`): what the profile does not allow
        /// is let through and reported, to learn what the command needs.
        #[arg(long)]
        audit: bool,
        /// The command and its arguments.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<OsString>,
    },
    /// List the sandboxes running on this host.
    Ps,
    /// cordond's health: kernel features, collector link, spool depth, events dropped.
    Status,
    /// Events from cordond's journal, oldest first (newest first with --reverse).
    Events {
        /// Keep printing new events as they come.
        #[arg(long, short)]
        follow: bool,
        /// Only this sandbox's events.
        #[arg(long, value_name = "NAME")]
        sandbox: Option<String>,
        /// Only events of these kinds, comma-separated (network_denied, file_denied, exec, ...).
        #[arg(long, value_name = "KIND[,KIND]")]
        kind: Option<String>,
        /// Only events since this time: RFC 3339 (2026-11-26T10:00:00Z) or an age (10m, 2h).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Only events of this severity or higher (info, low, medium, high, critical).
        #[arg(long, value_name = "LEVEL")]
        severity: Option<crate::event::Severity>,
        /// The most severe first (oldest first among equals); not with --follow.
        #[arg(long)]
        by_severity: bool,
        /// Only this session's events (its id, as `cordon ps` shows it).
        #[arg(long, value_name = "ID")]
        session: Option<uuid::Uuid>,
        /// As CSV, a row per event (for a spreadsheet or a SIEM's import).
        #[arg(long, conflicts_with = "json")]
        csv: bool,
        /// Newest first; not with --follow.
        #[arg(long, short)]
        reverse: bool,
        /// Only events before this time (RFC 3339 or an age): with --reverse and --limit,
        /// the page older than the last event shown.
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// At most N events, the first in the order asked for.
        #[arg(long, short = 'n', value_name = "N")]
        limit: Option<usize>,
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
    /// Collect a sandbox's evidence into one archive: its processes (argv, exe and its
    /// SHA-256, cwd, credentials, open files and sockets, memory maps), the files it changed,
    /// its events and its profile, with a manifest of SHA-256 sums. It stays as it is
    /// (frozen or running) and is not told.
    Evidence {
        #[arg(required_unless_present = "verify", conflicts_with = "verify")]
        sandbox: Option<String>,
        /// Where to write it (default: evidence-SANDBOX-TIME.tar.gz here); never over a file.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// An ELF core of each process's memory too.
        #[arg(long)]
        memory: bool,
        /// Check an archive against its manifest instead.
        #[arg(long, value_name = "FILE")]
        verify: Option<PathBuf>,
    },
    /// Run one sandbox for cordond (which starts this; see `daemon::server`).
    #[command(name = "__worker", hide = true)]
    Worker,
}

#[derive(Debug, Subcommand)]
#[command(defer = true)]
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
    /// What B allows or keeps that A does not (`+`) and the reverse (`-`), on the resolved
    /// policies; exit 0 when they are the same, 1 when they differ, 2 on error.
    Diff {
        #[arg(value_name = "A")]
        a: String,
        #[arg(value_name = "B")]
        b: String,
        /// The workspace both are resolved against (default: the current directory).
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
    /// Write a profile that allows what a command needed beyond BASE: runs it under BASE in
    /// audit mode (`-- CMD`), or reads the events of such a run (`--from`).
    Learn {
        /// The profile to start from: the learned one extends it.
        #[arg(long, short, value_name = "BASE")]
        profile: String,
        /// The workspace (`{workspace}`); defaults to the current directory.
        #[arg(long, short, value_name = "DIR")]
        workspace: Option<PathBuf>,
        /// The learned profile's name (default: BASE-learned).
        #[arg(long)]
        name: Option<String>,
        /// Write the profile to FILE instead of stdout.
        #[arg(long, short, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Learn from a saved run's events (JSON lines; `-` for stdin) instead of running.
        #[arg(long, value_name = "EVENTS")]
        from: Option<PathBuf>,
        /// The session to learn from, when the events hold several.
        #[arg(long, value_name = "ID")]
        session: Option<uuid::Uuid>,
        /// The command to audit, and its arguments.
        #[arg(last = true, value_name = "CMD")]
        command: Vec<OsString>,
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
    // A command whose reader went away (`cordon ps | head`) ends quietly, as Unix tools do,
    // instead of panicking on the failed write. Not `run`: it answers for the sandbox until
    // the command ends, and its own writes are few and handled.
    if !matches!(cli.command, Command::Run { .. } | Command::Worker) {
        // SAFETY: restores the default action of one signal before any thread writes; no
        // handler of ours is installed.
        let _ = unsafe {
            nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGPIPE,
                nix::sys::signal::SigHandler::SigDfl,
            )
        };
    }
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
        Command::Profile(ProfileCommand::Diff { a, b, workspace }) => {
            diff_profiles(&search, &a, &b, workspace, out)
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
        Command::Profile(ProfileCommand::Learn {
            profile,
            workspace,
            name,
            out,
            from,
            session,
            command,
        }) => learn::learn(
            &search,
            learn::Learn {
                base: profile,
                workspace,
                name,
                out,
                from,
                session,
                command,
                verbose: cli.verbose,
            },
        ),
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
            audit,
            command,
        } => {
            let local = no_daemon || events.is_some() || !dns_upstream.is_empty();
            if !local {
                match daemon(socket) {
                    Ok(Some(client)) => {
                        return remote::run(client, &profile, workspace, &command, quiet, audit)
                    }
                    Ok(None) => {}
                    Err(e) => return fail(&e, exit_u8(sandbox::EXIT_SETUP_FAILED)),
                }
            }
            let options = session::Options {
                events,
                quiet,
                dns_upstream,
                enable_audit: true,
                exits_after: true,
                ..session::Options::default()
            };
            let mut policy = match resolve(&search, &profile, workspace) {
                Ok(p) => p,
                Err(msg) => return fail(&msg, exit_u8(sandbox::EXIT_SETUP_FAILED)),
            };
            if audit {
                policy.mode = profile::Mode::Audit;
            }
            // The host's response rules hold here too, as cordond's configuration says.
            let config = std::path::Path::new(crate::daemon::config::DEFAULT_PATH);
            match crate::daemon::config::Config::load(config)
                .map_err(|e| e.to_string())
                .and_then(|c| crate::daemon::config::host_rules(&c.responses, &policy))
            {
                Ok(rules) => policy.responses.extend(rules),
                Err(e) => {
                    return fail(
                        &format!("the host's response rules: {e}"),
                        exit_u8(sandbox::EXIT_SETUP_FAILED),
                    )
                }
            }
            let ended = session::run(
                &policy,
                &command,
                std::env::vars_os(),
                options,
                &mut say(cli.verbose),
            );
            exit_like(run_status(ended))
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
            severity,
            by_severity,
            session,
            csv,
            reverse,
            until,
            limit,
        } => {
            let since = match since
                .as_deref()
                .map(|t| parse_time("--since", t))
                .transpose()
            {
                Ok(s) => s,
                Err(e) => return fail(&e, 2),
            };
            let until = match until
                .as_deref()
                .map(|t| parse_time("--until", t))
                .transpose()
            {
                Ok(s) => s,
                Err(e) => return fail(&e, 2),
            };
            if let Some(Err(e)) = kind.as_deref().map(crate::export::journal::check_kinds) {
                return fail(&e, 2);
            }
            match daemon_required(socket) {
                Ok(client) => remote::events(
                    client,
                    remote::EventsQuery {
                        follow,
                        sandbox,
                        kind,
                        since,
                        severity,
                        by_severity,
                        socket: socket_path(socket),
                        session,
                        csv,
                        reverse,
                        until,
                        limit,
                    },
                    out,
                ),
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
        Command::Evidence {
            verify: Some(file), ..
        } => evidence::verify(&file, &|| daemon(socket).ok().flatten(), out),
        Command::Evidence {
            sandbox,
            out: file,
            memory,
            ..
        } => match daemon(socket) {
            Ok(client) => {
                evidence::collect(client, &sandbox.unwrap_or_default(), file, memory, out)
            }
            Err(e) => fail(&e, 1),
        },
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
fn parse_time(flag: &str, text: &str) -> Result<std::time::SystemTime, String> {
    if let Ok(t) = humantime::parse_rfc3339_weak(text) {
        return Ok(t);
    }
    humantime::parse_duration(text)
        .ok()
        .and_then(|age| std::time::SystemTime::now().checked_sub(age))
        .ok_or_else(|| {
            format!("{flag} `{text}` is neither a time (2026-11-26T10:00:00Z) nor an age (10m, 2h)")
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
    dirs.push(PathBuf::from(profile::SYSTEM_PROFILE_DIR));
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

/// Checks each file and prints every error and warning as `FILE:LINE:COL: message`.
fn check(search: &SearchPath, files: &[String]) -> ExitCode {
    let mut failed = false;
    for file in files {
        let checked = workspace_dir(None).and_then(|ws| {
            policy::check(search, file, &Context::current(ws)).map_err(|e| e.to_string())
        });
        let checked = match checked {
            Ok(checked) => checked,
            Err(msg) => {
                eprintln!("{msg}");
                failed = true;
                continue;
            }
        };
        for problem in checked.errors.iter().chain(&checked.warnings) {
            eprintln!("{problem}");
        }
        match checked.policy {
            Some(policy) => println!(
                "{file}: ok ({} paths, {} denied syscalls{})",
                policy.filesystem.rules.len(),
                policy.syscalls.deny.len(),
                match checked.warnings.len() {
                    0 => String::new(),
                    1 => ", 1 warning".to_string(),
                    n => format!(", {n} warnings"),
                }
            ),
            None => failed = true,
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `profile diff`: `+` lines are B's, `-` lines A's, grouped by section.
fn diff_profiles(
    search: &SearchPath,
    a: &str,
    b: &str,
    workspace: Option<PathBuf>,
    out: Output,
) -> ExitCode {
    let resolved = workspace_dir(workspace).and_then(|ws| {
        let ctx = Context::current(ws);
        let load = |spec: &str| {
            let profile = search.load(spec).map_err(|e| e.to_string())?;
            policy::compile(&profile, &ctx).map_err(|e| e.to_string())
        };
        Ok((load(a)?, load(b)?))
    });
    let (pa, pb) = match resolved {
        Ok(both) => both,
        Err(msg) => return fail(&msg, 2),
    };
    let sections = policy_diff::diff(&pa, &pb);
    if out.json {
        let sources = |p: &Policy| -> Vec<String> {
            p.sources.iter().map(|s| s.display().to_string()).collect()
        };
        let printed = print_json(&serde_json::json!({
            "a": { "name": pa.name, "sources": sources(&pa) },
            "b": { "name": pb.name, "sources": sources(&pb) },
            "identical": sections.is_empty(),
            "sections": sections,
        }));
        if printed != ExitCode::SUCCESS {
            return ExitCode::from(2);
        }
    } else if !sections.is_empty() {
        let origin = |p: &Policy| {
            p.sources
                .last()
                .map_or_else(String::new, |s| format!(" ({})", s.display()))
        };
        println!("--- {}{}", pa.name, origin(&pa));
        println!("+++ {}{}", pb.name, origin(&pb));
        for section in &sections {
            println!("[{}]", section.section);
            for line in &section.removed {
                println!("- {line}");
            }
            for line in &section.added {
                println!("+ {line}");
            }
        }
    }
    if sections.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
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

/// How a sandbox run through [`session::run`] ended, as this process's exit status.
fn run_status(ended: Result<Exit, SessionError>) -> ExitStatus {
    match ended {
        Ok(Exit::Code(c)) => ExitStatus::Code(exit_u8(c)),
        Ok(Exit::Signal(signo)) => ExitStatus::Signal(signo),
        Err(e) => {
            eprintln!("cordon: {e}");
            ExitStatus::Code(exit_u8(e.exit_code()))
        }
    }
}

/// Shows what a session has to say: warnings always, notes with `-v`.
fn say(verbose: u8) -> impl FnMut(Notice) {
    move |notice| match notice {
        Notice::Warning(w) => eprintln!("cordon: warning: {w}"),
        Notice::Note(n) if verbose > 0 => eprintln!("cordon: note: {n}"),
        Notice::Note(_) => {}
    }
}

/// This process's exit code for how the sandbox ended: the same code, or death by the
/// same signal. Its caller is told before the kernel unmaps this process's memory, which
/// another process unmaps after (`sys::unmap_after_exit`): that was most of the exit.
fn exit_like(status: ExitStatus) -> ExitCode {
    if let Err(e) = sandbox::sys::unmap_after_exit() {
        // The exit is only slower: this process unmaps its memory itself.
        tracing::debug!("cannot leave the unmapping of this process's memory behind: {e}");
    }
    match status {
        ExitStatus::Code(c) => ExitCode::from(c),
        ExitStatus::Signal(signo) => match nix::sys::signal::Signal::try_from(signo) {
            Ok(signal) => die_like(signal),
            Err(_) => ExitCode::from(exit_u8(128 + signo)),
        },
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
