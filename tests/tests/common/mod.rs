#![allow(
    dead_code,
    reason = "each test file uses a different part of the helpers"
)]
//! Helpers for the end-to-end tests: a throwaway home and workspace, a profile written for
//! the test, and a way to run the real `cordon` binary with the `probe` inside.
//!
//! These tests need root and the real kernel. Without root they print why and skip; under
//! CI (`CI` set) a skip is a failure.

pub mod collector;
pub mod daemon;
pub mod dns;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A fixture's extra section that takes `coding-agent`'s exec of the workspace away: for the
/// tests of a tree the profile does not run from.
#[allow(dead_code)]
pub const NOEXEC_WORKSPACE: &str = "[filesystem]\nexec = { remove = [\"{workspace}\"] }\n";

#[allow(unused_imports)] // not every test binary needs root
pub use cordon_testkit::require_root;

/// The repository's root directory.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `cordon` binary under test: `CORDON_BIN`, else next to this test's target directory.
pub fn cordon_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("CORDON_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    let bin = dir.join("cordon");
    assert!(
        bin.is_file(),
        "{} not found: build it first (`cargo build -p cordon`; `cargo xtask test` does)",
        bin.display()
    );
    bin
}

/// The `probe` helper binary.
pub fn probe_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_probe"))
}

/// A home, a workspace and a profile for one test.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub home: PathBuf,
    pub workspace: PathBuf,
    profile: PathBuf,
}

impl Fixture {
    /// A fixture whose profile extends `parent` (a shipped profile) with `extra` TOML sections
    /// and makes the probe visible and executable. The home has an ssh key and a git config.
    pub fn new(parent: &str, extra: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("cordon-e2e-")
            .tempdir()
            .expect("temp dir");
        let home = dir.path().join("home");
        let workspace = dir.path().join("workspace");
        std::fs::create_dir_all(home.join(".ssh")).expect("home");
        std::fs::write(
            home.join(".ssh/id_ed25519"),
            "-----BEGIN OPENSSH PRIVATE KEY----- not real",
        )
        .expect("key");
        std::fs::write(
            home.join(".gitconfig"),
            "[user]\n\tname = e2e\n\temail = e2e@example.invalid\n",
        )
        .expect("gitconfig");
        std::fs::create_dir_all(&workspace).expect("workspace");
        let probe_dir = probe_bin().parent().expect("probe dir").to_path_buf();
        // The probe's directory comes in through a profile of its own, so `extra` can use any section.
        let probe_access = format!(
            "[profile]\nname = \"probe-access\"\n\n[filesystem]\nread = [\"{probe}\"]\nexec = [\"{probe}\"]\n",
            probe = probe_dir.display()
        );
        std::fs::write(dir.path().join("probe-access.toml"), probe_access).expect("probe profile");
        let profile = dir.path().join("test.toml");
        let text = format!(
            "[profile]\nname = \"test\"\nextends = [\"{parent}\", \"probe-access\"]\n\n{extra}\n"
        );
        std::fs::write(&profile, text).expect("profile");
        Fixture {
            dir,
            home,
            workspace,
            profile,
        }
    }

    /// `cordon run` with this fixture's profile, workspace and home.
    pub fn command<S: AsRef<OsStr>>(&self, argv: &[S]) -> Command {
        self.command_with(&[] as &[&str], argv)
    }

    /// `cordon run` with extra options of `run` (`--events FILE`, ...) before the command.
    pub fn command_with<O: AsRef<OsStr>, S: AsRef<OsStr>>(
        &self,
        options: &[O],
        argv: &[S],
    ) -> Command {
        let mut cmd = Command::new(cordon_bin());
        cmd.arg("--profile-path")
            .arg(repo().join("profiles"))
            .args(["run", "--profile"])
            .arg(&self.profile)
            .arg("--workspace")
            .arg(&self.workspace)
            .args(options)
            .arg("--")
            .args(argv)
            .env("HOME", &self.home)
            // Under sudo the sandbox would run as the sudo caller; these tests run it as root.
            .env_remove("SUDO_UID")
            .env_remove("SUDO_GID")
            .env_remove("SUDO_USER")
            .stdin(Stdio::null());
        cmd
    }

    pub fn run<S: AsRef<OsStr>>(&self, argv: &[S]) -> Output {
        self.command(argv).output().expect("cordon runs")
    }

    /// Runs the probe in the sandbox and returns its one-line answer (`ok`, `err EACCES`, ...).
    pub fn probe(&self, args: &[&str]) -> String {
        self.probe_with(&[] as &[&str], args)
    }

    /// [`Fixture::probe`] with options of `cordon run` before the command.
    pub fn probe_with<O: AsRef<OsStr>>(&self, options: &[O], args: &[&str]) -> String {
        let mut argv = vec![probe_bin().to_string_lossy().into_owned()];
        argv.extend(args.iter().map(|a| a.to_string()));
        let out = self
            .command_with(options, &argv)
            .output()
            .expect("cordon runs");
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            !stdout.is_empty(),
            "probe {args:?} printed nothing; status {}, stderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Runs the probe with `--events` and returns its answer and every event of the run.
    pub fn probe_events(
        &self,
        options: &[&str],
        args: &[&str],
    ) -> (String, Vec<serde_json::Value>) {
        static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let events = self.dir.path().join(format!("events-{run}.jsonl"));
        let _ = std::fs::remove_file(&events);
        let mut all = vec![
            "--events".to_string(),
            events.to_string_lossy().into_owned(),
        ];
        all.extend(options.iter().map(|o| o.to_string()));
        let answer = self.probe_with(&all, args);
        (answer, read_events(&events))
    }

    pub fn path(&self, rel: &str) -> String {
        self.workspace.join(rel).to_string_lossy().into_owned()
    }

    pub fn home_path(&self, rel: &str) -> String {
        self.home.join(rel).to_string_lossy().into_owned()
    }
}

/// Where a file system of type `fstype` is mounted on this host, from /proc/self/mountinfo.
pub fn mount_point(fstype: &str) -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    info.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        (post.split(' ').next() == Some(fstype))
            .then(|| pre.split(' ').nth(4).map(PathBuf::from))?
    })
}

/// Where cgroup v2 is mounted on this host.
pub fn cgroup2_mount() -> String {
    mount_point("cgroup2")
        .expect("cgroup2 is mounted")
        .to_string_lossy()
        .into_owned()
}

/// Every event of a `--events` file (which `cordon run` must have written).
pub fn read_events(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("the events file {}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad event line {l:?}: {e}")))
        .collect()
}

/// The events of one kind.
pub fn of_kind<'a>(events: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

/// How many times the events happened: an event standing for a burst counts `count` times
/// (and `events_lost` counts what it says was lost).
pub fn occurrences(events: &[&serde_json::Value]) -> u64 {
    events
        .iter()
        .map(|e| e["count"].as_u64().unwrap_or(1))
        .sum()
}

/// The one event of a kind; fails when there are none or several.
pub fn only<'a>(events: &'a [serde_json::Value], kind: &str) -> &'a serde_json::Value {
    let found = of_kind(events, kind);
    assert_eq!(found.len(), 1, "expected one {kind} event: {events:?}");
    found[0]
}

/// `systemd-analyze verify UNIT` passes with nothing said about the unit (`man`: where the man
/// pages its `Documentation=` names are).
pub fn assert_unit_verifies(unit: &Path, man: Option<&Path>) {
    let mut command = Command::new("systemd-analyze");
    command.arg("verify").arg(unit);
    if let Some(man) = man {
        command.env("MANPATH", man);
    }
    let out = command
        .output()
        .expect("systemd-analyze (Debian's systemd package)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "systemd-analyze verify: {said}");
    let name = unit.file_name().and_then(OsStr::to_str).unwrap_or_default();
    assert!(!said.contains(name), "warnings about the unit: {said}");
}

/// Polls `f` until it gives a value; fails with `what` after `timeout`.
/// Waits until the sandbox `cordon run` (process `cordon_pid`, profile `profile`) started
/// runs its command: its cgroup holds init and the command. Returns the sandbox's name.
pub fn wait_for_sandbox(profile: &str, cordon_pid: u32) -> String {
    let name = format!("{profile}-{cordon_pid}-0");
    let procs = std::path::Path::new(&cgroup2_mount())
        .join("cordon")
        .join(&name)
        .join("cgroup.procs");
    wait_until(
        &format!("the sandbox {name} to run its command"),
        std::time::Duration::from_secs(10),
        || {
            let n = std::fs::read_to_string(&procs).map_or(0, |p| p.lines().count());
            (n >= 2).then_some(())
        },
    );
    name
}

pub fn wait_until<T>(
    what: &str,
    timeout: std::time::Duration,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let until = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < until,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The first bpffs mounted (where Cordon pins), covered by a fresh bpffs until this is
/// dropped: what Cordon sees when its pins are hidden while its programs stay attached.
pub struct CoveredBpffs(String);

impl CoveredBpffs {
    pub fn new() -> Self {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let bpffs = mountinfo
            .lines()
            .find_map(|l| {
                let (left, right) = l.split_once(" - ")?;
                let bpf = right.split(' ').next()? == "bpf";
                bpf.then(|| left.split(' ').nth(4).map(str::to_string))?
            })
            .expect("a bpffs is mounted (cordon mounts one when none is)");
        let covered = std::process::Command::new("mount")
            .args(["-t", "bpf", "bpf", &bpffs])
            .status()
            .expect("mount");
        assert!(covered.success(), "cannot cover {bpffs}");
        Self(bpffs)
    }
}

impl Drop for CoveredBpffs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}
