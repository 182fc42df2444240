//! The `cordon` binary's profile commands, driven as a user would. No root needed.
#![allow(
    clippy::expect_used,
    reason = "test helpers: a failed setup step fails the test"
)]

use std::path::Path;
use std::process::{Command, Output};

fn cordon(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(args)
        .env_remove("CORDON_PROFILE_PATH")
        .output()
        .expect("cordon runs")
}

fn repo_profiles() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../profiles")
        .to_string_lossy()
        .into_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.to_string_lossy().into_owned()
}

/// `profile check` fails and prints exactly one `FILE:LINE:COL: message` line with `needle`.
fn check_fails(file: &str, line_col: &str, needle: &str) {
    let out = cordon(&["profile", "check", file]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{file} passed the check");
    let expected = format!("{file}:{line_col}: ");
    assert!(
        stderr.starts_with(&expected),
        "want {expected:?}, got {stderr:?}"
    );
    assert!(stderr.contains(needle), "want {needle:?} in {stderr:?}");
}

#[test]
fn shipped_profiles_pass_the_check() {
    let dir = repo_profiles();
    for name in ["base", "coding-agent", "offline-tool", "readonly-analyst"] {
        let file = format!("{dir}/{name}.toml");
        let out = cordon(&["profile", "check", &file]);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn check_points_at_each_kind_of_mistake() {
    let t = tempfile::tempdir().expect("tmp");
    let d = t.path();
    let head = "[profile]\nname = \"p\"\n";
    let f = write(
        d,
        "p.toml",
        &format!("{head}[filesystem]\nraed = [\"/usr\"]\n"),
    );
    check_fails(&f, "4:1", "unknown field `raed`, expected one of `read`, `write`, `exec`, `deny`, `read_only`, `repositories`, `tmp_size`; did you mean `read`?");
    let f = write(
        d,
        "p.toml",
        &format!("{head}[filesystem]\nread = [\"/usr\", \"{{workspce}}/src\"]\n"),
    );
    check_fails(&f, "4:17", "unknown placeholder `{workspce}`");
    let f = write(
        d,
        "p.toml",
        &format!("{head}[syscalls]\ndeny = [\"ptrace\", \"keyctll\"]\n"),
    );
    check_fails(
        &f,
        "4:19",
        "unknown syscall `keyctll` on x86_64; did you mean `keyctl`?",
    );
    let f = write(
        d,
        "p.toml",
        &format!("{head}[filesystem]\nwrite = [\"src\"]\n"),
    );
    check_fails(&f, "4:10", "path `src` is relative");
    let f = write(d, "p.toml", &format!("{head}mode = \"enfroce\"\n"));
    check_fails(&f, "3:8", "did you mean `enforce`?");
    let f = write(
        d,
        "p.toml",
        &format!("{head}[syscalls]\npreset = \"defualt\"\n"),
    );
    check_fails(&f, "4:10", "did you mean `default`?");
    let f = write(d, "p.toml", "[profile]\nname = \"p\"\nextends = [\"q\"]\n");
    write(d, "q.toml", "[profile]\nname = \"q\"\nextends = [\"p\"]\n");
    // The error points at the entry that closes the cycle, in the file that has it.
    let out = cordon(&["profile", "check", &f]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let q = f.replace("p.toml", "q.toml");
    assert_eq!(
        stderr.trim(),
        format!("{q}:3:12: extends cycle: p -> q -> p")
    );
}

#[test]
fn check_reports_every_bad_file_and_fails() {
    let t = tempfile::tempdir().expect("tmp");
    let good = write(
        t.path(),
        "good.toml",
        "[profile]\nname = \"good\"\nextends = [\"base\"]\n",
    );
    let bad = write(
        t.path(),
        "bad.toml",
        "[profile]\nname = \"bad\"\nbogus = 1\n",
    );
    let out = cordon(&["profile", "check", &good, &bad]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("good.toml: ok"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.toml:3:1: unknown field `bogus`"));
}

#[test]
fn show_prints_the_resolved_policy_as_json() {
    let t = tempfile::tempdir().expect("tmp");
    let ws = std::fs::canonicalize(t.path()).expect("canonical");
    let ws = ws.to_string_lossy();
    let out = cordon(&[
        "--profile-path",
        &repo_profiles(),
        "profile",
        "show",
        "coding-agent",
        "--workspace",
        &ws,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(
        !json.contains('{') || !json.contains("{workspace}"),
        "placeholders are expanded"
    );
    assert!(json.contains(&format!("\"path\": \"{ws}\"")), "{json}");
    assert!(json.contains("\"name\": \"coding-agent\""));
    assert!(
        json.contains("\"io_uring_setup\""),
        "the profile's own deny entry"
    );
    assert!(json.contains("\"ptrace\""), "the preset, through extends");
    assert!(
        json.contains("\"connect_tcp\": [\n      443\n    ]"),
        "{json}"
    );
}

#[test]
fn unknown_profile_names_say_where_they_were_looked_for() {
    let out = cordon(&["profile", "show", "no-such-profile"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("profile `no-such-profile` not found") && err.contains("built-in"),
        "{err}"
    );
}

#[test]
fn check_reports_every_error_of_a_file_then_its_warnings() {
    let t = tempfile::tempdir().expect("tmp");
    let f = write(
        t.path(),
        "n.toml",
        "[profile]\nname = \"n\"\nextends = [\"coding-agent\"]\nbogus = 1\n[filesystem]\nread = { remove = [\"/ect\"] }\ndeny = { remove = [\"{home}/.aws\"], widen = true }\n[network]\negress = []\n[syscalls]\ndeny = [\"ptrce\"]\n",
    );
    let out = cordon(&["profile", "check", &f]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    let expected = [
        format!("{f}:4:1: unknown field `bogus`"),
        format!("{f}:6:20: cannot remove `/ect` from `read`"),
        format!("{f}:11:9: unknown syscall `ptrce`"),
        format!("{f}:7:20: warning: this widens the sandbox: `{{home}}/.aws` is out of `deny` (<builtin>/base.toml:"),
        format!("{f}:9:10: warning: `egress = []` adds nothing: what is inherited ({{ host = \"github.com\""),
    ];
    assert_eq!(lines.len(), expected.len(), "{stderr}");
    for (line, want) in lines.iter().zip(&expected) {
        assert!(
            line.starts_with(want.as_str()),
            "want {want:?}, got {line:?}"
        );
    }
    assert!(lines[1].contains("did you mean `/etc`?"), "{stderr}");
}

#[test]
fn a_narrowed_profile_checks_with_its_warning_and_shows_without_the_network() {
    let t = tempfile::tempdir().expect("tmp");
    let f = write(
        t.path(),
        "n.toml",
        "[profile]\nname = \"n\"\nextends = [\"coding-agent\"]\n[filesystem]\ndeny = { remove = [\"{home}/.aws\"], widen = true }\n[network]\negress = { replace = [] }\n",
    );
    let out = cordon(&["profile", "check", &f]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("n.toml: ok (")
            && stderr.contains(": warning: this widens the sandbox"),
        "{stderr}"
    );
    let ws = std::fs::canonicalize(t.path()).expect("canonical");
    let out = cordon(&["profile", "show", &f, "--workspace", &ws.to_string_lossy()]);
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        json.contains("\"connect_tcp\": []") && json.contains("\"egress\": []"),
        "{json}"
    );
    assert!(!json.contains(".aws\""), "{json}");
}

#[test]
fn diff_shows_what_each_side_has_and_exits_like_diff() {
    let t = tempfile::tempdir().expect("tmp");
    let f = write(
        t.path(),
        "n.toml",
        "[profile]\nname = \"n\"\nextends = [\"coding-agent\"]\n[network]\negress = { remove = [{ host = \"registry.npmjs.org\" }] }\n[process]\nenv = { remove = [\"TERM\"] }\n",
    );
    let ws = std::fs::canonicalize(t.path()).expect("canonical");
    let ws = ws.to_string_lossy();
    let out = cordon(&["profile", "diff", "coding-agent", &f, "--workspace", &ws]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.starts_with("--- coding-agent (<builtin>/coding-agent.toml)\n+++ n ("),
        "{stdout}"
    );
    assert!(
        stdout.contains("[network]\n- egress registry.npmjs.org port 443 tcp\n"),
        "{stdout}"
    );
    assert!(stdout.contains("[process]\n- env TERM\n"), "{stdout}");
    assert!(!stdout.contains("\n+ "), "narrowing adds nothing: {stdout}");

    let out = cordon(&[
        "--json",
        "profile",
        "diff",
        &f,
        "coding-agent",
        "--workspace",
        &ws,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["identical"], false);
    let network = json["sections"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["section"] == "network"))
        .expect("a network section");
    assert!(
        network["added"].as_array().is_some_and(|a| a.len() == 1),
        "{json}"
    );

    let out = cordon(&[
        "profile",
        "diff",
        "coding-agent",
        "coding-agent",
        "--workspace",
        &ws,
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    let out = cordon(&["profile", "diff", "coding-agent", "no-such-profile"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_reader_that_goes_away_ends_the_command_quietly() {
    use std::os::unix::process::ExitStatusExt as _;
    for args in [
        &["profile", "show", "coding-agent"][..],
        &["profile", "diff", "base", "coding-agent"][..],
        &["completions", "bash"][..],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cordon"))
            .args(args)
            .env_remove("CORDON_PROFILE_PATH")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("cordon runs");
        // The reader is gone before the first write: `cordon ... | true`.
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(
            out.status.signal() == Some(libc::SIGPIPE) || out.status.code().is_some_and(|c| c <= 1),
            "{args:?}: {:?}",
            out.status
        );
    }
}
