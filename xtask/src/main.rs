//! `cargo xtask`: the project's developer tasks.
//!
//! * `setup` installs the Debian packages the tests and benchmarks need (as root), or names them.
//! * `test` runs every test: unit and CLI tests, then the root-only end-to-end tests one at a time.
//! * `demo` launches a command under a shipped profile and shows what is allowed and denied.
//! * `install` puts cordon, cordond, the systemd unit, the config and the profiles in place
//!   (`--collector`: the central collector instead).
//! * `bench` measures what Cordon costs beside bare runs, bubblewrap and firejail: launch,
//!   real work, network, the violation pipeline, footprint (and, alone, the collector).

mod bench;
mod demo;
mod install;
mod setup;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install (as root) or list the system packages the project needs.
    Setup,
    /// Run every test; the end-to-end tests need root.
    Test,
    /// Show a sandbox at work: a command under `coding-agent`, allowed and denied actions.
    Demo,
    /// Measure Cordon against bare runs, bubblewrap and firejail; results go to bench/results/.
    Bench {
        /// Runs per measurement.
        #[arg(long, default_value_t = 200)]
        runs: usize,
        /// Run one scenario alone: launch, work, network, pipeline, footprint or collector.
        #[arg(long, value_name = "SCENARIO")]
        only: Option<String>,
    },
    /// Install cordon, cordond, the systemd unit, the default config and the profiles.
    Install {
        /// Where the binaries and share/ go.
        #[arg(long, default_value = "/usr/local")]
        prefix: PathBuf,
        /// Install under this directory instead of / (for packaging, or to look first).
        #[arg(long)]
        destdir: Option<PathBuf>,
        /// Install the debug build (faster to build; for tests).
        #[arg(long)]
        debug: bool,
        /// Install the central collector instead (cordon-collector, its unit, its config and
        /// its system user), on the machine responders and hosts reach.
        #[arg(long)]
        collector: bool,
    },
    /// The loops the benchmarks time, bare or inside a sandbox (not for people).
    #[command(hide = true)]
    Helper {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.task {
        Task::Setup => {
            setup::ensure(&[setup::BUILD, setup::TEST, setup::BENCH].concat())?;
            setup::ensure_python()
        }
        Task::Test => test(),
        Task::Demo => demo::run(),
        Task::Bench { runs, only } => bench::run(runs, only.as_deref()),
        Task::Install {
            prefix,
            destdir,
            debug,
            collector,
        } => {
            let options = install::Options {
                prefix,
                destdir,
                debug,
            };
            if collector {
                install::collector(&options)
            } else {
                install::run(&options)
            }
        }
        Task::Helper { args } => bench::helper(&args),
    }
}

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Where cargo puts build output.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// Runs a command in the repository root, failing with its command line when it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    eprintln!("xtask: {shown}");
    let status = cmd
        .current_dir(root())
        .status()
        .with_context(|| format!("cannot start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed: {status}");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn test() -> Result<()> {
    setup::ensure(&[setup::BUILD, setup::TEST].concat())?;
    setup::ensure_python()?;
    run(cargo().args(["build", "--workspace", "--all-targets"]))?;
    run(cargo().args(["test", "--workspace", "--exclude", "cordon-e2e"]))?;
    if !is_root() {
        eprintln!("xtask: the end-to-end tests need root; they will print why they skip (run `sudo -E cargo xtask test`)");
    }
    let cordon = target_dir().join("debug/cordon");
    run(cargo()
        .args([
            "test",
            "-p",
            "cordon-e2e",
            "--no-fail-fast",
            "--",
            "--test-threads=1",
        ])
        .env("CORDON_BIN", cordon))
}
