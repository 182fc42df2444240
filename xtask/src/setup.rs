//! System packages: what each task needs from Debian, installed when we are root.

use std::process::Command;

use anyhow::{bail, Result};

/// What building Cordon needs: clang for the eBPF programs, libbpf's headers for them.
pub const BUILD: &[&str] = &["clang-16", "libbpf-dev"];
/// What the tests run inside sandboxes, and build with.
pub const TEST: &[&str] = &[
    "git",
    "make",
    "gcc",
    "libc6-dev",
    "python3",
    "python3-venv",
    "util-linux",
    "procps",
    // systemd-analyze checks the shipped unit; man finds the man page it names.
    "systemd",
    "man-db",
    // The collector's tests start a PostgreSQL server of their own, and click through its
    // console in a headless Chromium driven over WebDriver.
    "postgresql",
    "chromium",
    "chromium-driver",
    // The HTTPS test makes a certificate and checks it with a client of its own.
    "openssl",
    "curl",
    // The collector's outputs are tested against a real syslog receiver, over TCP and TLS.
    "rsyslog",
    "rsyslog-gnutls",
];

/// The Python packages the tests' receivers use, in a virtual environment of their own
/// under the target directory (`target/test-python`): the OpenTelemetry project's protobuf
/// messages, to decode what the collector's OTLP output sends.
pub const PYTHON: &[&str] = &["opentelemetry-proto==1.45.2"];

/// The tests' Python, with [`PYTHON`] installed.
pub fn python_env() -> std::path::PathBuf {
    crate::target_dir().join("test-python")
}

/// Makes [`python_env`] when it lacks one of [`PYTHON`] (with `python3 -m venv` and pip,
/// from PyPI).
pub fn ensure_python() -> Result<()> {
    let env = python_env();
    let python = env.join("bin/python3");
    let stamp = env.join("cordon-packages");
    let wanted = PYTHON.join("\n");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) && python.exists() {
        return Ok(());
    }
    eprintln!(
        "xtask: installing {} into {}",
        PYTHON.join(" "),
        env.display()
    );
    crate::run(
        Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&env),
    )?;
    crate::run(
        Command::new(&python)
            .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
            .args(PYTHON),
    )?;
    std::fs::write(&stamp, wanted)?;
    Ok(())
}
/// The peers the benchmarks measure against.
pub const BENCH: &[&str] = &["bubblewrap", "firejail", "git", "tar", "postgresql"];

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

/// Installs the missing `packages` with apt-get when root; otherwise says which are missing.
pub fn ensure(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    if !crate::is_root() {
        bail!("missing Debian packages: {list}\ninstall them with: sudo apt-get install -y {list}");
    }
    eprintln!("xtask: installing {list}");
    crate::run(Command::new("apt-get").args(["update", "-q"]))?;
    crate::run(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}
