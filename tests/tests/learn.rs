//! `cordon profile learn`: a profile learned from an audited run lets the same run through
//! enforced, with no denial; and learning from a saved run's events.

mod common;

use common::{cordon_bin, of_kind, read_events, repo, require_root, Fixture};

/// `cordon profile learn` with the fixture's home, as the fixture's `cordon run` has it.
fn learn(f: &Fixture, args: &[&str]) -> std::process::Output {
    std::process::Command::new(cordon_bin())
        .arg("--profile-path")
        .arg(repo().join("profiles"))
        .args(["profile", "learn"])
        .args(args)
        .env("HOME", &f.home)
        .env_remove("SUDO_UID")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("cordon runs")
}

/// The kinds of events that are denials.
fn denials(events: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    events
        .iter()
        .filter(|e| e["kind"].as_str().is_some_and(|k| k.ends_with("_denied")))
        .collect()
}

#[test]
fn a_profile_learned_from_a_venv_install_and_its_tests_runs_them_enforced_with_no_denial() {
    if !require_root(
        "a_profile_learned_from_a_venv_install_and_its_tests_runs_them_enforced_with_no_denial",
    ) {
        return;
    }
    // coding-agent without PyPI and without running its workspace: what pip and the venv
    // need must be learned.
    let f = Fixture::new(
        "coding-agent",
        "[filesystem]\nexec = { remove = [\"{workspace}\"] }\n[network]\negress = { remove = [{ host = \"pypi.org\" }, { host = \"files.pythonhosted.org\" }] }\n",
    );
    std::fs::write(
        f.workspace.join("test_it.py"),
        "import iniconfig\n\ndef test_it():\n    assert iniconfig.__name__ == 'iniconfig'\n",
    )
    .expect("a test");
    let work = "/usr/bin/python3 -m venv .venv && .venv/bin/pip install -q pytest && .venv/bin/pytest -q -p no:cacheprovider test_it.py";
    let base = f.dir.path().join("test.toml");
    let learned = f.dir.path().join("learned.toml");
    let out = learn(
        &f,
        &[
            "--profile",
            &base.to_string_lossy(),
            "--workspace",
            &f.workspace.to_string_lossy(),
            "--out",
            &learned.to_string_lossy(),
            "--",
            "/bin/sh",
            "-c",
            work,
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "learn failed: {stderr}");
    let text = std::fs::read_to_string(&learned).expect("the learned profile");
    assert!(text.contains("extends = [\"test\"]"), "{text}");
    assert!(
        text.contains("host = \"pypi.org\""),
        "the index is learned by name: {text}"
    );
    assert!(
        text.contains("\"{workspace}/.venv/bin/\""),
        "the venv's programs run: {text}"
    );

    // The same run, from scratch, enforced under what was learned.
    std::fs::remove_dir_all(f.workspace.join(".venv")).expect("remove the venv");
    let events = f.dir.path().join("enforced.jsonl");
    let out = std::process::Command::new(cordon_bin())
        .arg("--profile-path")
        .arg(repo().join("profiles"))
        .args(["run", "--profile"])
        .arg(&learned)
        .arg("--workspace")
        .arg(&f.workspace)
        .arg("--events")
        .arg(&events)
        .args(["--", "/bin/sh", "-c", work])
        .env("HOME", &f.home)
        .env_remove("SUDO_UID")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("cordon runs");
    let events = read_events(&events);
    assert!(
        out.status.success(),
        "the enforced run failed: {}\n{:#?}",
        String::from_utf8_lossy(&out.stderr),
        denials(&events)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(denials(&events), Vec::<&serde_json::Value>::new());
}

#[test]
fn a_saved_runs_events_are_learned_from_and_bad_ones_are_refused_where_they_are() {
    if !require_root("a_saved_runs_events_are_learned_from_and_bad_ones_are_refused_where_they_are")
    {
        return;
    }
    let host = tempfile::Builder::new()
        .prefix("cordon-e2e-learn-")
        .tempdir_in("/var/tmp")
        .expect("a host directory");
    let notes = host.path().join("notes.txt");
    std::fs::write(&notes, "notes").expect("notes");
    let f = Fixture::new("coding-agent", "");
    let (answer, events) = f.probe_events(&["--audit"], &["read", &notes.to_string_lossy()]);
    assert_eq!(answer, "ok");
    let saved = f.dir.path().join("saved.jsonl");
    let lines: Vec<String> = events.iter().map(|e| e.to_string()).collect();
    std::fs::write(&saved, lines.join("\n")).expect("save the events");
    let base = f
        .dir
        .path()
        .join("test.toml")
        .to_string_lossy()
        .into_owned();

    let out = learn(
        &f,
        &["--profile", &base, "--from", &saved.to_string_lossy()],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!(
            "\"{}\", # probe: fs.read_file of {}",
            notes.display(),
            notes.display()
        )),
        "{text}"
    );

    // A session the events do not hold.
    let out = learn(
        &f,
        &[
            "--profile",
            &base,
            "--from",
            &saved.to_string_lossy(),
            "--session",
            "01a225ce-6ef9-700b-ba3d-5fd3a1edd370",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no events of session"));

    // A line that is not an event: refused with where it is.
    std::fs::write(&saved, format!("{}\nnot json\n", lines[0])).expect("write");
    let out = learn(
        &f,
        &["--profile", &base, "--from", &saved.to_string_lossy()],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:2: not an event", saved.display())),
        "{stderr}"
    );
    assert!(of_kind(&events, "session_started").len() == 1);
}
