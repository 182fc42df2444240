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

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub struct Options {
    pub prefix: PathBuf,
    pub destdir: Option<PathBuf>,
    /// Install what `cargo build` (debug) made instead of building in release mode.
    pub debug: bool,
}

pub fn run(options: &Options) -> Result<()> {
    crate::setup::ensure(crate::setup::BUILD)?;
    let profile = if options.debug {
        crate::run(crate::cargo().args(["build", "-p", "cordon"]))?;
        "debug"
    } else {
        crate::run(crate::cargo().args(["build", "--release", "-p", "cordon"]))?;
        "release"
    };
    let built = crate::target_dir().join(profile);
    let under = |path: &Path| -> PathBuf {
        match &options.destdir {
            Some(d) => d.join(path.strip_prefix("/").unwrap_or(path)),
            None => path.to_path_buf(),
        }
    };
    let bin = under(&options.prefix.join("bin"));
    std::fs::create_dir_all(&bin).with_context(|| format!("creating {}", bin.display()))?;
    for name in ["cordon", "cordond"] {
        copy_mode(&built.join(name), &bin.join(name), 0o755)?;
    }

    let unit = std::fs::read_to_string(crate::root().join("dist/cordond.service"))?;
    let cordond = options.prefix.join("bin/cordond");
    let unit = unit.replace(
        "ExecStart=/usr/local/bin/cordond",
        &format!("ExecStart={}", cordond.display()),
    );
    let unit_dir = under(Path::new("/etc/systemd/system"));
    std::fs::create_dir_all(&unit_dir)?;
    write_mode(&unit_dir.join("cordond.service"), unit.as_bytes(), 0o644)?;

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
