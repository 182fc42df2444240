//! `cargo xtask bench`: what Cordon costs, measured beside the tools people would otherwise
//! pick, on the same machine in one run.
//!
//! Scenarios (each runs alone with `--only NAME`; results go to `bench/results/NAME.json`
//! and `NAME.svg`):
//!
//! * `launch`: `/bin/true` bare, under `cordon run --profile offline-tool`, bubblewrap with
//!   the same binds and seccomp programs, and `firejail --quiet` ([`launch`]);
//! * `work`: syscall-heavy real work under each: `find`, `tar`, `git status`, `cargo build`
//!   ([`launch`] too: the same subjects);
//! * `network`: the cost of the eBPF egress programs per connect, and DNS through the
//!   sandbox's resolver against direct ([`network`]);
//! * `pipeline`: denials at a fixed rate, from the kernel to a collector ([`pipeline`]);
//! * `response`: how soon a response rule freezes a sandbox after the denial it names
//!   ([`response`]);
//! * `outputs`: the latency each collector output adds at 10 000 events/s ([`outputs`]);
//! * `footprint`: cordond, `cordon run` and the collector, idle and under load ([`footprint`]);
//! * `collector`: the collector's ingest and queries on SQLite and PostgreSQL ([`collector`];
//!   long, so only with `--only collector`);
//! * `soak`: the collector's ingest quiet and while it is attacked: idle connections, live
//!   streams, hostile batches ([`soak`]; only with `--only soak`).
//!
//! Commands compared with each other are interleaved round-robin, so drift hits all alike.
//! Nothing here asserts a time: the numbers are reported, and the README shows them.

mod chart;
mod collector;
mod footprint;
mod helper;
mod launch;
mod network;
mod outputs;
mod pipeline;
mod response;
mod soak;

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Result};

pub use helper::helper;

/// Every scenario, in the order a full run takes them.
const SCENARIOS: &[&str] = &[
    "launch",
    "work",
    "network",
    "pipeline",
    "response",
    "outputs",
    "footprint",
    "collector",
    "soak",
];

/// Scenarios that run the collector and nothing of the agent's.
const COLLECTOR_ONLY: &[&str] = &["collector", "soak", "outputs"];

/// Scenarios a run without `--only` skips (they take long).
const ONLY_ALONE: &[&str] = &["collector", "soak"];

pub fn run(runs: usize, only: Option<&str>) -> Result<()> {
    if let Some(name) = only {
        if !SCENARIOS.contains(&name) {
            bail!("no scenario {name:?} ({})", SCENARIOS.join(", "));
        }
    }
    crate::setup::ensure(&[crate::setup::BUILD, crate::setup::BENCH].concat())?;
    if !crate::is_root() {
        bail!("the benchmarks launch sandboxes: run them as root");
    }
    // The collector's own scenarios run the collector alone.
    let collector_only = only.is_some_and(|o| COLLECTOR_ONLY.contains(&o));
    let mut build = crate::cargo();
    build.args(["build", "-q", "--release", "-p", "cordon-collector"]);
    if !collector_only {
        build.args(["-p", "cordon"]);
    }
    crate::run(&mut build)?;
    let bins = Bins {
        cordon: crate::target_dir().join("release/cordon"),
        cordond: crate::target_dir().join("release/cordond"),
        collector: crate::target_dir().join("release/cordon-collector"),
        helper: std::env::current_exe()?,
    };
    println!("measured on {}", machine());
    for &name in SCENARIOS {
        let chosen = match only {
            Some(o) => o == name,
            None => !ONLY_ALONE.contains(&name),
        };
        if !chosen {
            continue;
        }
        println!("\n== {name}");
        let report = match name {
            "launch" => launch::launch(&bins, runs)?,
            "work" => launch::work(&bins, (runs / 20).max(5))?,
            "network" => network::run(&bins)?,
            "pipeline" => pipeline::run(&bins)?,
            "response" => response::run(&bins, (runs / 5).max(20))?,
            "outputs" => outputs::run(&bins.collector)?,
            "footprint" => footprint::run(&bins)?,
            "collector" => collector::run(&bins.collector)?,
            "soak" => soak::run(&bins.collector)?,
            _ => unreachable!("every scenario is matched"),
        };
        report.write(name)?;
    }
    Ok(())
}

/// The binaries the scenarios run.
pub struct Bins {
    pub cordon: PathBuf,
    pub cordond: PathBuf,
    pub collector: PathBuf,
    /// This binary: `cargo xtask helper ...` runs the loops that are timed.
    pub helper: PathBuf,
}

/// One scenario's results: the JSON for `bench/results/` and the chart of its headline
/// numbers (groups of labelled bars in one unit).
pub struct Report {
    pub json: serde_json::Value,
    pub chart: Option<chart::Chart>,
}

impl Report {
    fn write(&self, name: &str) -> Result<()> {
        let out = crate::root().join("bench/results");
        std::fs::create_dir_all(&out)?;
        let mut f = File::create(out.join(format!("{name}.json")))?;
        writeln!(
            f,
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "machine": machine(), "results": self.json })
            )?
        )?;
        print!("written to bench/results/{name}.json");
        if let Some(chart) = &self.chart {
            std::fs::write(out.join(format!("{name}.svg")), chart.svg())?;
            print!(" and {name}.svg");
        }
        println!();
        Ok(())
    }
}

/// Median and 90th percentile of a set of samples.
pub struct Stats {
    pub median: f64,
    pub p90: f64,
}

pub fn stats(mut samples: Vec<f64>) -> Stats {
    samples.sort_by(f64::total_cmp);
    Stats {
        median: percentile(&samples, 0.5),
        p90: percentile(&samples, 0.9),
    }
}

/// The value at quantile `p` of sorted samples (0 for none).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// A field of `/proc/PID/status` in KiB (`VmRSS:`, `VmHWM:`); 0 when the process is gone.
pub fn proc_field(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// utime + stime of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Fields after the command: state is 0, utime 11, stime 12.
    get(11) + get(12)
}

/// Clock ticks per second (for [`cpu_ticks`]).
pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant of the system.
    unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) }.max(1) as f64
}

/// The elapsed nanoseconds a helper printed on its last line.
pub fn helper_output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .trim()
        .to_string())
}

/// The machine the numbers were measured on, for the JSON and the README.
pub fn machine() -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| (kib + 512 * 1024) / (1024 * 1024));
    let date = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!(
        "Linux {}, {cpus} CPUs ({model}), {memory_gib} GiB, {date}",
        kernel.trim()
    )
}

/// A temporary directory for one scenario (removed when dropped), under /var/lib: firejail's
/// default profile hides /tmp, /var/tmp and /root from what it runs.
pub fn scratch(prefix: &str) -> Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new()
        .prefix(&format!("cordon-bench-{prefix}-"))
        .tempdir_in("/var/lib")?)
}

/// A path as a string, for argument vectors.
pub fn s(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}
