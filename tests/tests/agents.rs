//! The agents people run, installed from their registries inside the sandbox under their
//! shipped profiles, answer `--version` and `--help` with no denial at all (README:
//! "Profiles for the agents people run"). No API key is needed for that. Each
//! install happens once per run (hundreds of MB): the npm agents share one `npm install`.

mod common;

use std::path::Path;

use common::{cordon_bin, read_events, repo, require_root, Fixture};

/// Runs `script` under `sh` in `workspace` with the shipped profile `profile`; returns
/// whether it succeeded, its stdout (and stderr, for messages) and the run's events.
fn run(
    f: &Fixture,
    profile: &str,
    workspace: &Path,
    script: &str,
) -> (bool, String, String, Vec<serde_json::Value>) {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let events = f.dir.path().join(format!("agent-{n}.jsonl"));
    let out = std::process::Command::new(cordon_bin())
        .arg("--profile-path")
        .arg(repo().join("profiles"))
        .args(["run", "-q", "--profile", profile, "--workspace"])
        .arg(workspace)
        .arg("--events")
        .arg(&events)
        .args(["--", "/bin/sh", "-c", script])
        .env("HOME", &f.home)
        .env_remove("SUDO_UID")
        .env_remove("OPENAI_API_KEY")
        .env_remove("ANTHROPIC_API_KEY")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("cordon runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.success(), stdout, stderr, read_events(&events))
}

/// The denials of a run.
fn denials(events: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    events
        .iter()
        .filter(|e| e["kind"].as_str().is_some_and(|k| k.ends_with("_denied")))
        .collect()
}

#[test]
fn codex_and_claude_code_install_from_npm_and_answer_with_no_denial() {
    if !require_root("codex_and_claude_code_install_from_npm_and_answer_with_no_denial") {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    let ws = f.workspace.clone();
    let (ok, _, stderr, events) = run(
        &f,
        "codex",
        &ws,
        "set -e; npm init -y >/dev/null; npm install --no-audit --no-fund -s @openai/codex @anthropic-ai/claude-code",
    );
    assert!(ok, "npm install: {stderr}");
    assert_eq!(denials(&events), Vec::<&serde_json::Value>::new());
    for (profile, bin, version) in [
        ("codex", "codex", "codex-cli "),
        ("claude-code", "claude", "(Claude Code)"),
    ] {
        let (ok, out, stderr, events) = run(
            &f,
            profile,
            &ws,
            &format!("set -e; ./node_modules/.bin/{bin} --version; ./node_modules/.bin/{bin} --help >/dev/null"),
        );
        assert!(ok, "{bin}: {out}{stderr}");
        assert!(out.contains(version), "{bin}: {out}");
        assert_eq!(denials(&events), Vec::<&serde_json::Value>::new(), "{bin}");
        eprintln!("{profile}: {}", out.lines().next().unwrap_or_default());
    }
    // The twin: the same profile keeps the host's state of the agent out of reach.
    std::fs::create_dir_all(f.home.join(".codex")).expect("host state");
    let (ok, _, _, _) = run(&f, "codex", &ws, "echo x > ~/.codex/config.toml");
    assert!(!ok, "the host's ~/.codex was written");
    assert!(!f.home.join(".codex/config.toml").exists());
}

#[test]
fn aider_installs_from_pypi_and_answers_with_no_denial() {
    if !require_root("aider_installs_from_pypi_and_answers_with_no_denial") {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    let ws = f.workspace.clone();
    let (ok, _, stderr, events) = run(
        &f,
        "aider",
        &ws,
        "set -e; /usr/bin/python3 -m venv .venv; .venv/bin/pip install -q aider-chat",
    );
    assert!(ok, "pip install: {stderr}");
    assert_eq!(denials(&events), Vec::<&serde_json::Value>::new());
    let (ok, out, stderr, events) = run(
        &f,
        "aider",
        &ws,
        "set -e; .venv/bin/aider --version; .venv/bin/aider --help >/dev/null",
    );
    assert!(ok, "{out}{stderr}");
    assert!(out.starts_with("aider "), "{out}");
    assert_eq!(denials(&events), Vec::<&serde_json::Value>::new());
    eprintln!("aider: {}", out.lines().next().unwrap_or_default());
}
