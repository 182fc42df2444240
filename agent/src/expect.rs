//! Expectations: a profile's own tests, run with `cordon profile test`.
//!
//! An expectations file (`NAME.expect.toml`, next to the profile) sets up a throwaway home
//! and workspace, optional loopback listeners, and lists commands that must work (`allow`),
//! fail for lack of permission (`deny`), or get the process killed (`killed`) inside the
//! sandbox. Each check runs through the real `cordon run`, so what passes here is what
//! an agent gets.
//!
//! ```toml
//! [fixture]
//! home = { ".ssh/id_ed25519" = "not a real key" }
//! workspace = { "README.md" = "hello" }
//! listen = [443]
//!
//! [[check]]
//! name = "cannot read ssh keys"
//! run = "cat {home}/.ssh/id_ed25519"
//! expect = "deny"
//! ```

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

use crate::profile::Loc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectFile {
    #[serde(default)]
    pub fixture: Fixture,
    #[serde(rename = "check", default)]
    pub checks: Vec<Check>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    /// Files created in the throwaway home, by relative path.
    #[serde(default)]
    pub home: BTreeMap<String, String>,
    /// Files created in the throwaway workspace, by relative path.
    #[serde(default)]
    pub workspace: BTreeMap<String, String>,
    /// Loopback TCP ports to listen on while the checks run.
    #[serde(default)]
    pub listen: Vec<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub name: String,
    /// A shell command (`/bin/sh -c`); `{workspace}`, `{home}`, `{tmp}`, `{uid}` are expanded.
    pub run: String,
    pub expect: Outcome,
    /// For `deny`: text the error must contain (default: any permission error).
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Exit status 0.
    Allow,
    /// Non-zero exit with a permission error on stderr.
    Deny,
    /// Killed with SIGSYS by the seccomp `kill` action.
    Killed,
}

/// Messages of the errors a denial produces: Landlock and DAC (EACCES), seccomp (EPERM),
/// read-only mounts (EROFS).
const PERMISSION_ERRORS: &[&str] = &[
    "Permission denied",
    "Operation not permitted",
    "Read-only file system",
];

#[derive(Debug, thiserror::Error)]
pub enum ExpectError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Invalid(#[from] crate::profile::Diagnostic),
    #[error("cannot set up the fixture ({what}): {source}")]
    Fixture {
        what: String,
        source: std::io::Error,
    },
    #[error("cannot start `cordon run`: {0}")]
    Spawn(#[source] std::io::Error),
}

/// Expectations of the built-in profiles, by profile name.
pub const BUILTIN: &[(&str, &str)] = &[
    ("base", include_str!("../../profiles/base.expect.toml")),
    ("codex", include_str!("../../profiles/codex.expect.toml")),
    (
        "claude-code",
        include_str!("../../profiles/claude-code.expect.toml"),
    ),
    ("aider", include_str!("../../profiles/aider.expect.toml")),
    (
        "coding-agent",
        include_str!("../../profiles/coding-agent.expect.toml"),
    ),
    (
        "offline-tool",
        include_str!("../../profiles/offline-tool.expect.toml"),
    ),
    (
        "readonly-analyst",
        include_str!("../../profiles/readonly-analyst.expect.toml"),
    ),
];

/// Reads and parses an expectations file.
pub fn load(path: &Path) -> Result<ExpectFile, ExpectError> {
    let text = std::fs::read_to_string(path).map_err(|source| ExpectError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, text)
}

/// Parses expectations; `path` names the text in error messages.
pub fn parse(path: &Path, text: String) -> Result<ExpectFile, ExpectError> {
    toml::from_str(&text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let message = crate::profile::with_suggestion(e.message());
        let source = std::sync::Arc::new(crate::profile::Source {
            path: path.to_path_buf(),
            text,
        });
        ExpectError::Invalid(Loc::new(source, span).error(message))
    })
}

/// The result of one check.
#[derive(Debug)]
pub struct CheckResult {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

/// Runs every check of `file` against `profile` (a name or path, as `cordon run` takes it)
/// using the `cordon` binary at `cordon`, with `profile_path` passed along.
pub fn run(
    cordon: &Path,
    profile: &str,
    profile_path: &[PathBuf],
    file: &ExpectFile,
) -> Result<Vec<CheckResult>, ExpectError> {
    let root = tempfile::Builder::new()
        .prefix("cordon-expect-")
        .tempdir()
        .map_err(|source| ExpectError::Fixture {
            what: "temporary directory".into(),
            source,
        })?;
    let home = root.path().join("home");
    let workspace = root.path().join("workspace");
    write_tree(&home, &file.fixture.home)?;
    write_tree(&workspace, &file.fixture.workspace)?;
    let mut listeners = Vec::new();
    for port in &file.fixture.listen {
        let listener =
            TcpListener::bind(("127.0.0.1", *port)).map_err(|source| ExpectError::Fixture {
                what: format!("listen on 127.0.0.1:{port}"),
                source,
            })?;
        listeners.push(listener);
    }
    let _accepting: Vec<_> = listeners
        .into_iter()
        .map(|l| std::thread::spawn(move || for _ in l.incoming() {}))
        .collect();

    let uid = nix::unistd::getuid().as_raw().to_string();
    let mut results = Vec::new();
    for check in &file.checks {
        let script = check
            .run
            .replace("{workspace}", &workspace.to_string_lossy())
            .replace("{home}", &home.to_string_lossy())
            .replace("{tmp}", crate::policy::SANDBOX_TMP)
            .replace("{uid}", &uid);
        let mut cmd = Command::new(cordon);
        for dir in profile_path {
            cmd.arg("--profile-path").arg(dir);
        }
        let output = cmd
            .args(["run", "--profile", profile, "--workspace"])
            .arg(&workspace)
            .args(["--", "/bin/sh", "-c", &script])
            .env("HOME", &home)
            .stdin(Stdio::null())
            .output()
            .map_err(ExpectError::Spawn)?;
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        let status = output.status;
        let (passed, why) = match check.expect {
            Outcome::Allow => (status.success(), "expected it to work"),
            Outcome::Deny => {
                let matches = match &check.error {
                    Some(text) => stderr.contains(text.as_str()),
                    None => PERMISSION_ERRORS.iter().any(|m| stderr.contains(m)),
                };
                let launched = status.code() != Some(crate::sandbox::EXIT_SETUP_FAILED);
                (
                    !status.success() && matches && launched,
                    "expected a permission error",
                )
            }
            Outcome::Killed => {
                // `sh -c` reports a child killed by a signal as 128 + signal.
                let sigsys = std::os::unix::process::ExitStatusExt::signal(&status)
                    == Some(libc::SIGSYS)
                    || status.code() == Some(128 + libc::SIGSYS);
                (sigsys, "expected the process to be killed with SIGSYS")
            }
        };
        results.push(CheckResult {
            name: check.name.clone(),
            passed,
            detail: if passed {
                String::new()
            } else {
                format!("{why}; got {status}, stderr: {stderr:?}")
            },
        });
    }
    Ok(results)
}

fn write_tree(dir: &Path, files: &BTreeMap<String, String>) -> Result<(), ExpectError> {
    let err = |what: &Path| {
        let what = what.display().to_string();
        move |source| ExpectError::Fixture { what, source }
    };
    std::fs::create_dir_all(dir).map_err(err(dir))?;
    for (rel, content) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(err(parent))?;
        }
        std::fs::write(&path, content).map_err(err(&path))?;
    }
    Ok(())
}
