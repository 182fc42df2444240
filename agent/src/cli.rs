//! The `cordon` command line: profile authoring (`profile check|show|test`) and `run`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::expect;
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
        /// The command and its arguments.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<OsString>,
    },
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
    /// Run a profile's expectations (`NAME.expect.toml`): commands that must work or be denied.
    Test {
        #[arg(value_name = "NAME|FILE")]
        profile: String,
        /// The expectations file; by default `NAME.expect.toml` beside the profile.
        #[arg(long, value_name = "FILE")]
        expect: Option<PathBuf>,
    },
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let search = search_path(&cli.profile_path);
    match cli.command {
        Command::Profile(ProfileCommand::Check { files }) => check(&search, &files),
        Command::Profile(ProfileCommand::Show { profile, workspace }) => {
            match resolve(&search, &profile, workspace) {
                Ok(policy) => match serde_json::to_string_pretty(&policy) {
                    Ok(json) => {
                        println!("{json}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => fail(&format!("cannot print the policy: {e}"), 1),
                },
                Err(msg) => fail(&msg, 1),
            }
        }
        Command::Profile(ProfileCommand::Test { profile, expect }) => {
            test_profile(&search, &cli.profile_path, &profile, expect)
        }
        Command::Run {
            profile,
            workspace,
            command,
        } => run(&search, &profile, workspace, &command, cli.verbose),
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CORDON_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
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
    let workspace = workspace_dir(workspace)?;
    let profile = search.load(spec).map_err(|e| e.to_string())?;
    policy::compile(&profile, &Context::current(workspace)).map_err(|e| e.to_string())
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

fn run(
    search: &SearchPath,
    spec: &str,
    workspace: Option<PathBuf>,
    command: &[OsString],
    verbose: u8,
) -> ExitCode {
    let policy = match resolve(search, spec, workspace) {
        Ok(p) => p,
        Err(msg) => return fail(&msg, exit_u8(sandbox::EXIT_SETUP_FAILED)),
    };
    let launch = match sandbox::prepare(&policy, command, std::env::vars_os()) {
        Ok(l) => l,
        Err(e) => return fail(&e.to_string(), exit_u8(e.exit_code())),
    };
    for warning in &launch.warnings {
        eprintln!("cordon: warning: {warning}");
    }
    if verbose > 0 {
        for note in &launch.notes {
            eprintln!("cordon: note: {note}");
        }
    }
    let running = match launch.spawn() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cordon: {e}");
            return ExitCode::from(exit_u8(e.exit_code()));
        }
    };
    if let Some(e) = &running.enforcement {
        if e.status != sandbox::landlock::Status::Fully {
            eprintln!(
                "cordon: warning: compat = \"best-effort\": Landlock is {} enforced on this kernel (ABI {})",
                e.status, launch.kernel_abi
            );
        }
    }
    match running.wait() {
        Ok(Exit::Code(c)) => ExitCode::from(exit_u8(c)),
        Ok(Exit::Signal(signo)) => match nix::sys::signal::Signal::try_from(signo) {
            Ok(signal) => die_like(signal),
            Err(_) => ExitCode::from(exit_u8(128 + signo)),
        },
        Err(e) => fail(&e.to_string(), exit_u8(sandbox::EXIT_SETUP_FAILED)),
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
