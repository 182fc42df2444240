//! `launch` and `work`: a command bare and under each sandbox, timed from spawn to exit.
//!
//! Subjects:
//! * bare;
//! * `cordon run --profile offline-tool` (for `work`, a profile extending it with the Rust
//!   toolchain readable), locally (`--no-daemon`); for `launch` also without its limits, and
//!   with one host-name egress rule (the host's network and the resolver, where
//!   `offline-tool` has a network namespace of its own);
//! * bubblewrap with the same view: read-only binds of /usr and /etc, the workspace
//!   writable, a private /tmp, new namespaces of every kind, and the same seccomp programs
//!   (exported by `cordon profile seccomp`);
//! * `firejail --quiet` with its default profile (its own choice of restrictions).
//!
//! Work tasks run in a workspace the benchmark prepares before the clock starts: a copy of
//! /usr/include committed to git, and a small crate. Each command runs through `bash -c`, the
//! same line for every subject. Firejail's default profile hides /root, where
//! this machine's Rust toolchain lives, so it cannot run the `cargo build`; the table says so.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::chart::{Chart, Group};
use super::{s, stats, Bins, Report, Stats};

struct Subject {
    name: &'static str,
    /// The command line in front of the measured command (empty: bare).
    prefix: Vec<String>,
    /// Seccomp programs bubblewrap reads from inherited descriptors.
    seccomp: Vec<PathBuf>,
}

impl Subject {
    fn time_once(&self, command: &[String]) -> Result<f64> {
        let files: Vec<File> = self
            .seccomp
            .iter()
            .map(File::open)
            .collect::<Result<_, _>>()?;
        let mut argv = self.prefix.clone();
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
        argv.extend(command.iter().cloned());
        let start = Instant::now();
        let out = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .with_context(|| format!("cannot run {}", self.name))?;
        let elapsed = start.elapsed().as_secs_f64() * 1000.0;
        if !out.status.success() {
            // The last line says why; the whole command line is in the JSON's task title.
            let stderr = String::from_utf8_lossy(&out.stderr);
            let why = stderr.trim().lines().last().unwrap_or("").to_string();
            bail!("{}: {why}", out.status);
        }
        Ok(elapsed)
    }
}

/// `cordon run` with `profile`, locally, in the workspace `ws`.
fn cordon(bins: &Bins, ws: &Path, name: &'static str, profile: &str) -> Subject {
    Subject {
        name,
        prefix: vec![
            s(&bins.cordon),
            "run".into(),
            "--no-daemon".into(),
            "--quiet".into(),
            "--profile".into(),
            profile.into(),
            "--workspace".into(),
            s(ws),
            "--".into(),
        ],
        seccomp: vec![],
    }
}

/// The subjects, for a workspace `ws` and a cordon profile.
fn subjects(bins: &Bins, ws: &Path, profile: &str, extra_ro: &[PathBuf]) -> Result<Vec<Subject>> {
    // The seccomp programs cordon installs for offline-tool, for bubblewrap to load.
    let out = ws.with_file_name("seccomp");
    let exported = Command::new(&bins.cordon)
        .args(["profile", "seccomp", "offline-tool", "--out"])
        .arg(&out)
        .output()
        .context("cannot run cordon")?;
    if !exported.status.success() {
        bail!(
            "cordon profile seccomp: {}",
            String::from_utf8_lossy(&exported.stderr)
        );
    }
    let seccomp = String::from_utf8_lossy(&exported.stdout)
        .lines()
        .map(PathBuf::from)
        .collect();
    let strings = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let mut bwrap = strings(&[
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
    ]);
    for path in extra_ro {
        bwrap.extend(["--ro-bind".into(), s(path), s(path)]);
    }
    bwrap.extend(["--bind".into(), s(ws), s(ws), "--chdir".into(), s(ws)]);
    Ok(vec![
        Subject {
            name: "bare",
            prefix: vec![],
            seccomp: vec![],
        },
        cordon(bins, ws, "cordon run", profile),
        Subject {
            name: "bwrap",
            prefix: bwrap,
            seccomp,
        },
        Subject {
            name: "firejail",
            prefix: strings(&["firejail", "--quiet"]),
            seccomp: vec![],
        },
    ])
}

/// A task's results: per subject, its times (one a round, in round order) and their stats,
/// or why it could not run.
struct Task {
    title: String,
    runs: usize,
    results: Vec<(&'static str, Result<Timed, String>)>,
}

/// A subject's times, one a round, and their stats.
struct Timed {
    times: Vec<f64>,
    stats: Stats,
}

/// One subject against another, round by round: the median of the differences of the two
/// times of each round, and its bootstrap 95% interval. Each round runs every subject back
/// to back, so what drifts on the machine between rounds (another tenant, the page cache)
/// cancels out; the medians of two subjects, each taken over all rounds, keep it.
#[derive(Debug, PartialEq)]
struct Paired {
    median: f64,
    low: f64,
    high: f64,
}

/// `a` against `b`, both in round order (see [`Paired`]); `None` with fewer rounds than an
/// interval means anything with (each end of a bootstrap interval of a few rounds' median is
/// one of their few differences). The resampling is drawn from a fixed generator, so a run's
/// report can be repeated from its times.
fn paired(a: &[f64], b: &[f64]) -> Option<Paired> {
    const RESAMPLES: usize = 2000;
    const FEWEST_ROUNDS: usize = 10;
    debug_assert_eq!(a.len(), b.len(), "the times of one round each");
    let differences: Vec<f64> = a.iter().zip(b).map(|(a, b)| a - b).collect();
    if differences.len() < FEWEST_ROUNDS {
        return None;
    }
    // The mean of the two middle values for an even count.
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        let n = values.len();
        (values[(n - 1) / 2] + values[n / 2]) / 2.0
    };
    let mut state = 0x5EED;
    let mut medians: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let mut resample: Vec<f64> = (0..differences.len())
                .map(|_| differences[(splitmix64(&mut state) % differences.len() as u64) as usize])
                .collect();
            median(&mut resample)
        })
        .collect();
    medians.sort_by(f64::total_cmp);
    Some(Paired {
        median: median(&mut differences.clone()),
        low: super::percentile(&medians, 0.025),
        high: super::percentile(&medians, 0.975),
    })
}

/// The next number of splitmix64 from `state`.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The order of `n` subjects in round `round`: a shuffle (Fisher-Yates) drawn from a fixed
/// generator (splitmix64 seeded by the round), so a run can be repeated and, over its rounds,
/// each subject comes first, and directly follows each other one, about as often.
fn order(n: usize, round: usize) -> Vec<usize> {
    let mut state = (round as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    let mut out: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (splitmix64(&mut state) % (i as u64 + 1)) as usize;
        out.swap(i, j);
    }
    out
}

/// Times `command` under every subject, once a round in a changing order (see [`order`]),
/// after `warmup` rounds. A subject that
/// fails the task is reported with its error and left out of the rounds that follow.
fn measure(
    title: &str,
    subjects: &[Subject],
    command: &[String],
    warmup: usize,
    runs: usize,
) -> Task {
    let mut failed: Vec<Option<String>> = subjects.iter().map(|_| None).collect();
    for (subject, failed) in subjects.iter().zip(&mut failed) {
        if let Some(program) = subject.prefix.first() {
            if let Err(e) = read_back(program) {
                *failed = Some(format!("cannot drop {program} from the page cache: {e}"));
            }
        }
    }
    let mut samples: Vec<Vec<f64>> = subjects.iter().map(|_| Vec::new()).collect();
    for round in 0..warmup + runs {
        // Each round in an order of its own, so each subject follows each other one about as
        // often: what a run leaves to the kernel slows the next (firejail's namespaces, torn
        // down after it exits, took cordon's next launch from 6.3 to 7.0 ms here). An order
        // that only turned each round kept each subject behind the same one.
        for i in order(subjects.len(), round) {
            let subject = &subjects[i];
            if failed[i].is_some() {
                continue;
            }
            match subject.time_once(command) {
                Ok(ms) if round >= warmup => samples[i].push(ms),
                Ok(_) => {}
                Err(e) => failed[i] = Some(e.to_string()),
            }
        }
    }
    let results = subjects
        .iter()
        .zip(samples)
        .zip(failed)
        .map(|((subject, samples), failed)| {
            // A subject that failed is left out of every later round: one that did not has a
            // time in each, so its times line up round by round with every other's.
            let result = match failed {
                Some(e) => Err(e),
                None => Ok(Timed {
                    stats: stats(samples.clone()),
                    times: samples,
                }),
            };
            (subject.name, result)
        })
        .collect();
    Task {
        title: title.to_string(),
        runs,
        results,
    }
}

/// Drops `program` (a path, or a name found in `PATH`) from the page cache, written back
/// first, so that the warm-up reads it back as an installed program is read. A freshly
/// linked `cordon` otherwise keeps the pages the linker wrote, which launched it 0.1 to
/// 0.4 ms faster here (paired runs, 600 pairs) than the same file read back from the disk.
fn read_back(program: &str) -> Result<()> {
    let path = if program.contains('/') {
        PathBuf::from(program)
    } else {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
            .with_context(|| format!("{program} is not in PATH"))?
    };
    let file = File::open(&path)?;
    file.sync_all()?;
    nix::fcntl::posix_fadvise(
        &file,
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    )?;
    Ok(())
}

fn report(tasks: &[Task], chart_title: &str) -> Report {
    let mut json = Vec::new();
    let mut groups = Vec::new();
    for task in tasks {
        println!("\n{} ({} runs each)", task.title, task.runs);
        println!(
            "  {:<24} {:>10} {:>10} {:>12} {:>8}",
            "", "median ms", "p90 ms", "overhead ms", "ratio"
        );
        let bare = match &task.results[0].1 {
            Ok(timed) => timed.stats.median,
            Err(_) => f64::NAN,
        };
        // Cordon against bubblewrap, round by round: the comparison the launch target makes.
        let bwrap = task
            .results
            .iter()
            .find(|(name, _)| *name == "bwrap")
            .and_then(|(_, result)| result.as_ref().ok());
        let mut bars = Vec::new();
        let mut against_bwrap = Vec::new();
        for (name, result) in &task.results {
            match result {
                Ok(timed) => {
                    let st = &timed.stats;
                    let vs_bwrap = bwrap
                        .filter(|_| name.starts_with("cordon"))
                        .and_then(|b| paired(&timed.times, &b.times));
                    if let Some(p) = &vs_bwrap {
                        against_bwrap.push(format!(
                            "  {name} − bwrap, round by round: {:+.2} ms [{:+.2}, {:+.2}], {} rounds",
                            p.median,
                            p.low,
                            p.high,
                            timed.times.len()
                        ));
                    }
                    println!(
                        "  {:<24} {:>10.2} {:>10.2} {:>12.2} {:>8.3}",
                        name,
                        st.median,
                        st.p90,
                        st.median - bare,
                        st.median / bare
                    );
                    bars.push((name.to_string(), st.median));
                    let mut entry = serde_json::json!({
                        "scenario": task.title, "subject": name, "runs": task.runs,
                        "median_ms": st.median, "p90_ms": st.p90,
                        "overhead_ms": st.median - bare, "ratio": st.median / bare,
                    });
                    if let Some(p) = vs_bwrap {
                        entry["vs_bwrap_ms"] = serde_json::json!({
                            "median": p.median, "ci95": [p.low, p.high],
                        });
                    }
                    json.push(entry);
                }
                Err(e) => {
                    println!("  {name:<24} could not run it: {e}");
                    json.push(serde_json::json!({
                        "scenario": task.title, "subject": name, "error": e,
                    }));
                }
            }
        }
        if !against_bwrap.is_empty() {
            println!("  (median of the differences, bootstrap 95% interval)");
            for line in against_bwrap {
                println!("{line}");
            }
        }
        groups.push(Group {
            label: task.title.clone(),
            bars,
        });
    }
    Report {
        json: serde_json::Value::Array(json),
        chart: Some(Chart {
            title: chart_title.into(),
            unit: "ms".into(),
            groups,
        }),
    }
}

fn workspace(name: &str) -> Result<(tempfile::TempDir, PathBuf)> {
    let dir = super::scratch(name)?;
    let ws = std::fs::canonicalize(dir.path())?.join("workspace");
    std::fs::create_dir_all(&ws)?;
    Ok((dir, ws))
}

fn sh(line: String) -> Vec<String> {
    vec!["/bin/bash".into(), "-c".into(), line]
}

/// `offline-tool` without its process and memory limits: on a hybrid host (cgroup v1 holding
/// `pids` and `memory`) the limits cost two more cgroups per launch, made and removed, which
/// bubblewrap (no limits) does not pay; this subject shows the rest apart.
const NO_LIMITS: &str = "[profile]\nname = \"offline-tool-no-limits\"\nextends = [\"base\"]\n\n[filesystem]\nread = [\"{workspace}\"]\nwrite = [\"{workspace}\", \"{tmp}\"]\nrepositories = [\"{workspace}\"]\n\n[syscalls]\ndeny = [\"io_uring_setup\", \"io_uring_enter\", \"io_uring_register\"]\n";

/// `offline-tool` with one host-name egress rule: the sandbox keeps the host's network and
/// gets the resolver that opens what the allowed names resolve to (its sockets, its thread
/// and the egress maps are set up at every launch). No name is looked up: the command is
/// `/bin/true`.
const EGRESS: &str = "[profile]\nname = \"offline-tool-egress\"\nextends = [\"offline-tool\"]\n\n[network]\negress = [{ host = \"pypi.org\", ports = [443] }]\n";

/// `/bin/true`, bare and under each sandbox: what starting a sandbox costs.
pub fn launch(bins: &Bins, runs: usize) -> Result<Report> {
    let (dir, ws) = workspace("launch")?;
    let no_limits = dir.path().join("offline-tool-no-limits.toml");
    std::fs::write(&no_limits, NO_LIMITS)?;
    let egress = dir.path().join("offline-tool-egress.toml");
    std::fs::write(&egress, EGRESS)?;
    let mut subjects = subjects(bins, &ws, "offline-tool", &[])?;
    subjects.insert(2, cordon(bins, &ws, "cordon, no limits", &s(&no_limits)));
    subjects.insert(3, cordon(bins, &ws, "cordon, egress by name", &s(&egress)));
    let task = measure(
        "launch: /bin/true",
        &subjects,
        &["/bin/true".to_string()],
        10,
        runs,
    );
    Ok(report(&[task], "Starting a sandbox: /bin/true, median"))
}

/// Syscall-heavy real work, bare and under each sandbox.
pub fn work(bins: &Bins, runs: usize) -> Result<Report> {
    let (dir, ws) = workspace("work")?;
    let q = |p: &Path| format!("'{}'", p.display());

    // A tree of ~5 000 headers, committed to git.
    let tree = ws.join("tree");
    crate::run(Command::new("cp").args(["-a", "/usr/include"]).arg(&tree))?;
    let git = |args: &[&str]| -> Result<()> {
        crate::run(
            Command::new("git")
                .arg("-C")
                .arg(&tree)
                .args(["-c", "user.name=bench", "-c", "user.email=bench@invalid"])
                .args(args),
        )
    };
    git(&["init", "-q"])?;
    git(&["add", "-A"])?;
    git(&["commit", "-q", "-m", "tree"])?;
    let files = walk_count(&tree)?;

    // A small crate: a library of 40 modules and a binary, no dependencies.
    let krate = ws.join("crate");
    std::fs::create_dir_all(krate.join("src"))?;
    std::fs::write(
        krate.join("Cargo.toml"),
        "[package]\nname = \"small\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )?;
    let mut lib = String::new();
    for m in 0..40 {
        lib.push_str(&format!(
            "pub mod m{m} {{\n    pub fn f(x: u64) -> u64 {{ (0..x).map(|i| i * {m} + 1).sum() }}\n    \
             pub struct S{m} {{ pub v: Vec<String> }}\n    impl S{m} {{ pub fn join(&self) -> String {{ self.v.join(\",\") }} }}\n}}\n"
        ));
    }
    std::fs::write(krate.join("src/lib.rs"), lib)?;
    std::fs::write(
        krate.join("src/main.rs"),
        "fn main() { println!(\"{}\", small::m3::f(10)); }\n",
    )?;
    let sysroot = PathBuf::from(
        String::from_utf8(
            Command::new("rustc")
                .args(["--print", "sysroot"])
                .output()
                .context("rustc")?
                .stdout,
        )?
        .trim(),
    );
    let cargo_home = ws.join("cargo-home");
    std::fs::create_dir_all(&cargo_home)?;

    // Cordon's profiles for this: offline-tool, and the toolchain readable; and the same
    // without offline-tool's limits, whose accounting (cgroup v1 `memory` and `pids` cgroups
    // on a hybrid host) bubblewrap does not pay: the rest of Cordon's cost shows apart.
    let work_profile = |name: &str, extends: &str| -> Result<PathBuf> {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                "[profile]\nname = \"{name}\"\nextends = [\"{extends}\"]\n[filesystem]\nread = [\"{r}\"]\nexec = [\"{r}\"]\n",
                r = sysroot.display()
            ),
        )?;
        Ok(path)
    };
    let profile = work_profile("bench-work", "offline-tool")?;
    // Found beside the profile that extends it.
    std::fs::write(dir.path().join("offline-tool-no-limits.toml"), NO_LIMITS)?;
    let no_limits = work_profile("bench-work-no-limits", "offline-tool-no-limits")?;
    let mut subjects = subjects(bins, &ws, &s(&profile), std::slice::from_ref(&sysroot))?;
    subjects.insert(2, cordon(bins, &ws, "cordon, no limits", &s(&no_limits)));

    let tasks = [
        (
            // What each sandbox lets it read differs (find reports the rest and exits 1 under
            // a sandbox); without pipefail the line's status is wc's, as typed in a shell.
            "find /usr -type f | wc -l".to_string(),
            sh("find /usr -type f | wc -l".into()),
        ),
        (
            format!("tar c of {files} files to a pipe"),
            // pipefail: tar failing must fail the task, not pass as wc's success.
            sh(format!("set -o pipefail; tar cf - -C {} . | wc -c", q(&tree))),
        ),
        (
            format!("git status ({files} files)"),
            // Debian's git, by its path: a `git` found first on PATH elsewhere (/usr/local)
            // may be one the sandbox does not run, and then each subject would time another.
            sh(format!("/usr/bin/git -C {} status --porcelain", q(&tree))),
        ),
        (
            "cargo build of a small crate (clean)".into(),
            sh(format!(
                "cd {k} && rm -rf target && CARGO_HOME={h} RUSTC={r}/bin/rustc PATH={r}/bin:/usr/bin:/bin {r}/bin/cargo build -q --offline",
                k = q(&krate),
                h = q(&cargo_home),
                r = sysroot.display()
            )),
        ),
    ];
    let mut measured = Vec::new();
    for (title, command) in &tasks {
        let runs = if title.starts_with("cargo") {
            runs.min(5)
        } else {
            runs
        };
        measured.push(measure(title, &subjects, command, 1, runs));
    }
    Ok(report(&measured, "Real work under each sandbox, median"))
}

/// Regular files under `dir`, `.git` left out.
fn walk_count(dir: &Path) -> Result<usize> {
    let mut n = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() && entry.file_name() != ".git" {
            n += walk_count(&entry.path())?;
        } else if kind.is_file() {
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::{order, paired, splitmix64, Paired, NO_LIMITS};

    /// The profile without limits is `offline-tool` but for its `[process]` table: each of
    /// offline-tool's settings outside it (its name and description aside) is in the copy, so
    /// a rule added to offline-tool and not to the copy fails here instead of making the
    /// bench's two subjects differ in more than the limits.
    #[test]
    fn the_profile_without_limits_is_offline_tool_without_its_process_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../profiles/offline-tool.toml");
        let original = std::fs::read_to_string(path).expect(path);
        let mut table = String::new();
        let mut compared = 0;
        for line in original.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.starts_with('[') {
                table = line.to_string();
                continue;
            }
            let key = line.split('=').next().unwrap_or_default().trim();
            if table == "[process]" || (table == "[profile]" && key != "extends") {
                continue;
            }
            assert!(
                NO_LIMITS.lines().any(|l| l == line),
                "offline-tool's {table} `{line}` is not in the bench's profile without limits"
            );
            compared += 1;
        }
        assert!(compared >= 4, "only {compared} settings compared");
        assert!(!NO_LIMITS.contains("[process]"));
    }

    /// A shift that every round shows is the median and both ends of the interval, however
    /// much the rounds drift; noise that favours neither side gives an interval that holds
    /// zero; a small shift under larger noise is found, in an interval that leaves zero out;
    /// and the same times give the same answer.
    #[test]
    fn paired_rounds_find_a_shift_under_noise_and_none_where_there_is_none() {
        let rounds = 400;
        // Drift between rounds, alike for both subjects of a round: 10 to 16 ms.
        let b: Vec<f64> = (0..rounds).map(|i| 10.0 + (i % 7) as f64).collect();
        let shifted: Vec<f64> = b.iter().map(|t| t + 0.5).collect();
        assert_eq!(
            paired(&shifted, &b),
            Some(Paired {
                median: 0.5,
                low: 0.5,
                high: 0.5
            })
        );
        // Too few rounds for an interval: none is made up.
        assert_eq!(paired(&shifted[..9], &b[..9]), None);
        assert_eq!(paired(&[], &[]), None);
        // Noise of each run, up to ±2 ms, from a fixed generator.
        let mut state = 7;
        let mut noisy = |shift: f64| -> Vec<f64> {
            b.iter()
                .map(|t| t + shift + (splitmix64(&mut state) % 4001) as f64 / 1000.0 - 2.0)
                .collect()
        };
        let level = paired(&noisy(0.0), &noisy(0.0)).unwrap();
        assert!(level.low < 0.0 && 0.0 < level.high, "{level:?}");
        // A shift of 0.6 ms is about six standard errors of the median here.
        let (a, c) = (noisy(0.6), noisy(0.0));
        let above = paired(&a, &c).unwrap();
        assert!(
            0.0 < above.low && above.low < 0.6 && 0.6 < above.high,
            "{above:?}"
        );
        assert_eq!(paired(&a, &c), Some(above));
    }

    /// Every round's order holds each subject once; over the rounds each subject comes
    /// first, and directly follows each other one, about as often (the turning order it
    /// replaced kept one neighbour for each); and a run can be repeated.
    #[test]
    fn each_subject_comes_first_and_follows_every_other_about_as_often() {
        let (n, rounds) = (5, 2400);
        let mut first = vec![0usize; n];
        let mut follows = std::collections::HashMap::new();
        for round in 0..rounds {
            let o = order(n, round);
            let mut sorted = o.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..n).collect::<Vec<_>>(), "{o:?}");
            first[o[0]] += 1;
            for pair in o.windows(2) {
                *follows.entry((pair[0], pair[1])).or_insert(0usize) += 1;
            }
        }
        // Expected: 480 each; a fair shuffle stays well within a fifth of it.
        assert!(first.iter().all(|&c| (384..=576).contains(&c)), "{first:?}");
        assert_eq!(follows.len(), n * (n - 1));
        assert!(
            follows.values().all(|&c| (384..=576).contains(&c)),
            "{follows:?}"
        );
        assert_eq!(order(n, 7), order(n, 7));
        // The work bench's few rounds (a clean `cargo build`: 5 runs and a warm-up) do not all
        // start with the same subject.
        let starts: std::collections::HashSet<usize> = (0..6).map(|r| order(4, r)[0]).collect();
        assert!(starts.len() > 1, "{starts:?}");
    }
}
