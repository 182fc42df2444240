//! `cargo xtask install`: puts Cordon on this host the way ops run it.
//!
//! Builds in release mode, then installs (under `--destdir`, for packaging, when given):
//! * `cordon` and `cordond` into `PREFIX/bin`;
//! * the unit `/etc/systemd/system/cordond.service` (with `ExecStart` pointing at PREFIX);
//! * `/etc/cordon/cordon.toml` and the shipped profiles in `/etc/cordon/profiles/`, unless
//!   they exist (a reinstall never overwrites what ops changed);
//! * bash completions and man pages under `PREFIX/share`.
//!
//! Then, on a systemd host: `systemctl daemon-reload && systemctl enable --now cordond`.
//!
//! `--collector` installs the central collector instead: `cordon-collector`, its unit, its
//! config `/etc/cordon/collector.toml` (kept when it exists) and the `cordon-collector`
//! system user it runs as.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub struct Options {
    pub prefix: PathBuf,
    pub destdir: Option<PathBuf>,
    /// Install what `cargo build` (debug) made instead of building in release mode.
    pub debug: bool,
}

/// Builds `package`; returns the directory its binaries are in.
fn build(options: &Options, package: &str) -> Result<PathBuf> {
    let profile = if options.debug {
        crate::run(crate::cargo().args(["build", "-p", package]))?;
        "debug"
    } else {
        crate::run(crate::cargo().args(["build", "--release", "-p", package]))?;
        "release"
    };
    Ok(crate::target_dir().join(profile))
}

impl Options {
    /// `path` under `--destdir`, when given.
    fn under(&self, path: &Path) -> PathBuf {
        match &self.destdir {
            Some(d) => d.join(path.strip_prefix("/").unwrap_or(path)),
            None => path.to_path_buf(),
        }
    }

    /// A shipped unit with `ExecStart` at the installed binary.
    fn install_unit(&self, name: &str, binary: &str) -> Result<()> {
        let unit = std::fs::read_to_string(crate::root().join("dist").join(name))?;
        let installed = self.prefix.join("bin").join(binary);
        let unit = unit.replace(
            &format!("ExecStart=/usr/local/bin/{binary}"),
            &format!("ExecStart={}", installed.display()),
        );
        let unit_dir = self.under(Path::new("/etc/systemd/system"));
        std::fs::create_dir_all(&unit_dir)?;
        write_mode(&unit_dir.join(name), unit.as_bytes(), 0o644)
    }
}

/// `--collector`: the binary, its unit and config, and the system user it runs as.
pub fn collector(options: &Options) -> Result<()> {
    let built = build(options, "cordon-collector")?;
    let bin = options.under(&options.prefix.join("bin"));
    std::fs::create_dir_all(&bin).with_context(|| format!("creating {}", bin.display()))?;
    copy_mode(
        &built.join("cordon-collector"),
        &bin.join("cordon-collector"),
        0o755,
    )?;
    options.install_unit("cordon-collector.service", "cordon-collector")?;
    let etc = options.under(Path::new("/etc/cordon"));
    std::fs::create_dir_all(&etc)?;
    keep_or_copy(
        &crate::root().join("dist/collector.toml"),
        &etc.join("collector.toml"),
    )?;
    if options.destdir.is_none() && !user_exists("cordon-collector") {
        crate::run(std::process::Command::new("useradd").args([
            "--system",
            "--no-create-home",
            "--home-dir",
            "/var/lib/cordon-collector",
            "--shell",
            "/usr/sbin/nologin",
            "cordon-collector",
        ]))?;
    }
    eprintln!(
        "xtask: installed the collector; on a systemd host: systemctl daemon-reload && systemctl enable --now cordon-collector"
    );
    Ok(())
}

fn user_exists(name: &str) -> bool {
    std::fs::read_to_string("/etc/passwd")
        .map(|p| p.lines().any(|l| l.split(':').next() == Some(name)))
        .unwrap_or(false)
}

pub fn run(options: &Options) -> Result<()> {
    crate::setup::ensure(crate::setup::BUILD)?;
    let built = build(options, "cordon")?;
    let under = |path: &Path| options.under(path);
    let bin = under(&options.prefix.join("bin"));
    std::fs::create_dir_all(&bin).with_context(|| format!("creating {}", bin.display()))?;
    for name in ["cordon", "cordond"] {
        copy_mode(&built.join(name), &bin.join(name), 0o755)?;
    }

    options.install_unit("cordond.service", "cordond")?;

    let etc = under(Path::new("/etc/cordon"));
    let profiles = etc.join("profiles");
    std::fs::create_dir_all(&profiles)?;
    keep_or_copy(
        &crate::root().join("dist/cordon.toml"),
        &etc.join("cordon.toml"),
    )?;
    for entry in std::fs::read_dir(crate::root().join("profiles"))? {
        let path = entry?.path();
        if let Some(name) = path.file_name() {
            keep_or_copy(&path, &profiles.join(name))?;
        }
    }

    let share = under(&options.prefix.join("share"));
    let completions = share.join("bash-completion/completions");
    std::fs::create_dir_all(&completions)?;
    let script = std::process::Command::new(built.join("cordon"))
        .args(["completions", "bash"])
        .output()
        .context("running cordon completions")?;
    write_mode(&completions.join("cordon"), &script.stdout, 0o644)?;
    crate::run(
        std::process::Command::new(built.join("cordon"))
            .arg("man")
            .arg(share.join("man/man1")),
    )?;

    eprintln!(
        "xtask: installed under {}; on a systemd host: systemctl daemon-reload && systemctl enable --now cordond",
        options
            .destdir
            .as_deref()
            .unwrap_or(Path::new("/"))
            .display()
    );
    Ok(())
}

fn copy_mode(from: &Path, to: &Path, mode: u32) -> Result<()> {
    let bytes = std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    // Written beside and renamed: a running cordond keeps its old binary intact.
    let tmp = to.with_extension("new");
    write_mode(&tmp, &bytes, mode)?;
    std::fs::rename(&tmp, to).with_context(|| format!("installing {}", to.display()))
}

fn write_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))
}

fn keep_or_copy(from: &Path, to: &Path) -> Result<()> {
    if to.exists() {
        eprintln!("xtask: keeping {} (it exists)", to.display());
        return Ok(());
    }
    copy_mode(from, to, 0o644)
}
