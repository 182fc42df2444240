//! `cargo xtask bench`: what Cordon costs, measured beside the alternatives in one run.
//!
//! * launch: `/bin/true` bare, under `cordon run --profile offline-tool`, and under
//!   bubblewrap with the same view of the file system (read-only binds of the same paths,
//!   a private /tmp, new namespaces) and the same seccomp programs;
//! * work: `find` over 70k files of /usr (syscall-heavy) bare and under each sandbox.
//!
//! Commands are interleaved round-robin so drift hits all of them alike. Medians and p90
//! go to stdout and to `bench/results/launch.json`.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

struct Subject {
    name: &'static str,
    argv: Vec<String>,
    /// Seccomp program files bubblewrap reads from inherited descriptors.
    seccomp: Vec<PathBuf>,
}

impl Subject {
    fn time_once(&self) -> Result<f64> {
        let files: Vec<File> = self
            .seccomp
            .iter()
            .map(File::open)
            .collect::<Result<_, _>>()?;
        let mut argv = self.argv.clone();
        for f in &files {
            // Let the child inherit the descriptor; bubblewrap reads it to EOF.
            nix::fcntl::fcntl(
                f,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
            )?;
            argv.splice(
                1..1,
                ["--add-seccomp-fd".to_string(), f.as_raw_fd().to_string()],
            );
        }
        let start = Instant::now();
        let status = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .with_context(|| format!("cannot run {}", self.name))?;
        let elapsed = start.elapsed().as_secs_f64() * 1000.0;
        if !status.success() {
            bail!("{} failed: {status} ({})", self.name, argv.join(" "));
        }
        Ok(elapsed)
    }
}

struct Stats {
    median: f64,
    p90: f64,
}

fn stats(mut samples: Vec<f64>) -> Stats {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Stats {
        median: at(0.5),
        p90: at(0.9),
    }
}

fn measure(subjects: &[Subject], warmup: usize, runs: usize) -> Result<Vec<Stats>> {
    for _ in 0..warmup {
        for s in subjects {
            s.time_once()?;
        }
    }
    let mut samples: Vec<Vec<f64>> = subjects.iter().map(|_| Vec::with_capacity(runs)).collect();
    for _ in 0..runs {
        for (s, out) in subjects.iter().zip(&mut samples) {
            out.push(s.time_once()?);
        }
    }
    Ok(samples.into_iter().map(stats).collect())
}

/// Writes one scenario's results to `bench/results/NAME.json`.
fn write_result(name: &str, results: &serde_json::Value) -> Result<()> {
    let out = crate::root().join("bench/results");
    std::fs::create_dir_all(&out)?;
    let mut f = File::create(out.join(format!("{name}.json")))?;
    writeln!(
        f,
        "{}",
        serde_json::to_string_pretty(
            &serde_json::json!({ "machine": machine(), "results": results })
        )?
    )?;
    println!("written to bench/results/{name}.json");
    Ok(())
}

pub fn run(runs: usize, only: Option<&str>) -> Result<()> {
    crate::setup::ensure(&[crate::setup::BUILD, crate::setup::BENCH].concat())?;
    if !crate::is_root() {
        bail!("the benchmarks launch sandboxes: run them as root");
    }
    crate::run(
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())).args([
            "build",
            "-q",
            "--release",
            "-p",
            "cordon",
        ]),
    )?;
    let cordon = crate::target_dir().join("release/cordon");
    match only {
        None | Some("launch") => {}
        Some("kernel") => return write_result("kernel", &crate::bench_kernel::run(&cordon)?),
        Some("daemon") => return write_result("daemon", &crate::bench_daemon::run(&cordon)?),
        Some("collector") => {
            crate::run(
                Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())).args([
                    "build",
                    "-q",
                    "--release",
                    "-p",
                    "cordon-collector",
                ]),
            )?;
            let collector = crate::target_dir().join("release/cordon-collector");
            return write_result("collector", &crate::bench_collector::run(&collector)?);
        }
        Some(other) => bail!("no scenario {other:?} (launch, kernel, daemon, collector)"),
    }
    let dir = tempfile::Builder::new().prefix("cordon-bench-").tempdir()?;
    let ws = std::fs::canonicalize(dir.path())?.join("workspace");
    std::fs::create_dir_all(&ws)?;

    // The same seccomp programs cordon installs for offline-tool, for bubblewrap to load.
    let exported = Command::new(&cordon)
        .args(["profile", "seccomp", "offline-tool", "--out"])
        .arg(dir.path())
        .output()
        .context("cannot run cordon")?;
    if !exported.status.success() {
        bail!(
            "cordon profile seccomp: {}",
            String::from_utf8_lossy(&exported.stderr)
        );
    }
    let seccomp: Vec<PathBuf> = String::from_utf8_lossy(&exported.stdout)
        .lines()
        .map(PathBuf::from)
        .collect();

    let s = |x: &Path| x.to_string_lossy().into_owned();
    let cordon_run = |cmd: &[&str]| -> Vec<String> {
        let mut v = vec![
            s(&cordon),
            "run".into(),
            "--profile".into(),
            "offline-tool".into(),
            "--workspace".into(),
            s(&ws),
            "--".into(),
        ];
        v.extend(cmd.iter().map(|c| c.to_string()));
        v
    };
    let bwrap = |cmd: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "bwrap",
            "--unshare-all",
            "--die-with-parent",
            "--ro-bind",
            "/usr",
            "/usr",
            "--symlink",
            "usr/bin",
            "/bin",
            "--symlink",
            "usr/lib",
            "/lib",
            "--symlink",
            "usr/lib64",
            "/lib64",
            "--ro-bind",
            "/etc",
            "/etc",
            "--ro-bind",
            "/sys/devices/system/cpu",
            "/sys/devices/system/cpu",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--tmpfs",
            "/tmp",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        v.extend(["--bind".into(), s(&ws), s(&ws), "--chdir".into(), s(&ws)]);
        v.extend(cmd.iter().map(|c| c.to_string()));
        v
    };
    let subjects = |cmd: &[&str]| {
        vec![
            Subject {
                name: "bare",
                argv: cmd.iter().map(|c| c.to_string()).collect(),
                seccomp: vec![],
            },
            Subject {
                name: "cordon run (offline-tool)",
                argv: cordon_run(cmd),
                seccomp: vec![],
            },
            Subject {
                name: "bwrap (same binds + seccomp)",
                argv: bwrap(cmd),
                seccomp: seccomp.clone(),
            },
        ]
    };

    let mut report = Vec::new();
    let launch = subjects(&["/bin/true"]);
    let launch_stats = measure(&launch, 10, runs)?;
    report.push(("launch: /bin/true", runs, launch, launch_stats));
    let work_runs = (runs / 10).max(5);
    let work = subjects(&[
        "/usr/bin/find",
        "/usr/lib",
        "/usr/bin",
        "/usr/include",
        "/usr/local",
        "-type",
        "f",
    ]);
    let work_stats = measure(&work, 2, work_runs)?;
    report.push((
        "work: find /usr/{lib,bin,include,local} -type f",
        work_runs,
        work,
        work_stats,
    ));

    let machine = machine();
    println!("\nmeasured on {machine}");
    let mut json = Vec::new();
    for (title, n, subjects, stats) in &report {
        println!("\n{title} ({n} runs each)");
        println!(
            "  {:<32} {:>10} {:>10} {:>12} {:>8}",
            "", "median ms", "p90 ms", "overhead ms", "ratio"
        );
        let bare = stats[0].median;
        for (sub, st) in subjects.iter().zip(stats) {
            println!(
                "  {:<32} {:>10.2} {:>10.2} {:>12.2} {:>8.3}",
                sub.name,
                st.median,
                st.p90,
                st.median - bare,
                st.median / bare
            );
            json.push(serde_json::json!({
                "scenario": title, "subject": sub.name, "runs": n,
                "median_ms": st.median, "p90_ms": st.p90,
                "overhead_ms": st.median - bare, "ratio": st.median / bare,
            }));
        }
    }
    let out = crate::root().join("bench/results");
    std::fs::create_dir_all(&out)?;
    let mut f = File::create(out.join("launch.json"))?;
    writeln!(
        f,
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({ "machine": machine, "results": json }))?
    )?;
    println!("\nwritten to bench/results/launch.json");

    if only == Some("launch") {
        return Ok(());
    }
    write_result("kernel", &crate::bench_kernel::run(&cordon)?)?;
    write_result("daemon", &crate::bench_daemon::run(&cordon)?)
}

fn machine() -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let date = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!("Linux {}, {cpus} CPUs, {date}", kernel.trim())
}
