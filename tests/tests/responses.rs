//! Response rules (`[[response]]` in a profile or in cordon.toml): the sandbox's own
//! watcher freezes, kills, isolates or alerts as soon as the events a rule names appear,
//! with no person and no collector (here, a collector that does not answer). Each rule's
//! attack runs beside its twin without the rule, where the same attack goes on.

mod common;

use std::io::BufRead as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::daemon::{Daemon, KillOnDrop, NOBODY, NOGROUP};
use common::{require_root, wait_until};

/// A cordond whose collector never answers, with `rules` in its own configuration and a
/// profile `guarded` that extends the test profile with `profile_rules`.
fn daemon(host_rules: &str, profile_rules: &str) -> Daemon {
    let dead = common::collector::free_port();
    let mut d = Daemon::new(&format!(
        "[collector]\nurl = \"http://127.0.0.1:{dead}\"\n\n{host_rules}"
    ));
    std::fs::write(
        d.dir.path().join("profiles/guarded.toml"),
        format!("[profile]\nname = \"guarded\"\nextends = [\"test-agent\"]\n\n{profile_rules}"),
    )
    .expect("profile");
    d.start();
    d
}

/// Runs `script` under `profile` as nobody; returns the process, its stdout lines as they
/// come, and stderr for messages.
fn start(
    d: &Daemon,
    profile: &str,
    script: &str,
) -> (KillOnDrop, std::sync::mpsc::Receiver<(Instant, String)>) {
    let mut run = KillOnDrop(
        d.cordon(
            NOBODY,
            NOGROUP,
            &["run", "-q", "-p", profile, "--", "/bin/sh", "-c", script],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cordon run"),
    );
    let stdout = run.0.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send((Instant::now(), line)).is_err() {
                return;
            }
        }
    });
    (run, rx)
}

fn state_of(d: &Daemon, profile: &str) -> Option<String> {
    let out = d
        .cordon(0, 0, &["ps", "--json"])
        .output()
        .expect("cordon ps");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ps JSON");
    list.as_array()?
        .iter()
        .find(|s| s["profile"] == profile && s["uid"] == NOBODY)
        .and_then(|s| s["state"].as_str().map(String::from))
}

/// Reads a secret the profile hides, then keeps saying it is still there.
const READS_SECRET: &str =
    "cat /etc/shadow 2>/dev/null; echo read; while true; do echo still here; sleep 0.05; done";

const FREEZE_ON_SHADOW: &str = "[[response]]\nname = \"secret read\"\nwhen = { kind = \"file_denied\", path = \"/etc/shadow\" }\naction = \"freeze\"\n";

#[test]
fn a_rule_freezes_the_sandbox_that_reaches_for_a_secret_with_the_collector_down() {
    if !require_root("a_rule_freezes_the_sandbox_that_reaches_for_a_secret_with_the_collector_down")
    {
        return;
    }
    let d = daemon("", FREEZE_ON_SHADOW);

    // The twin: without the rule, the agent goes on after the refused read.
    let (mut twin, lines) = start(&d, "test-agent", READS_SECRET);
    let mut seen = 0;
    while seen < 5 {
        let (_, line) = lines.recv_timeout(Duration::from_secs(20)).expect("a line");
        seen += usize::from(line == "still here");
    }
    assert_eq!(state_of(&d, "test-agent").as_deref(), Some("running"));
    let _ = twin.0.kill();

    // With the rule: frozen as soon as the read is refused.
    // (It may be frozen before it says anything at all.)
    let (_run, lines) = start(&d, "guarded", READS_SECRET);
    wait_until("the sandbox frozen", Duration::from_secs(10), || {
        (state_of(&d, "guarded").as_deref() == Some("frozen")).then_some(())
    });
    // Frozen, it says nothing more (a line or two may have been on the way).
    while lines.recv_timeout(Duration::from_millis(300)).is_ok() {}
    assert!(
        lines.recv_timeout(Duration::from_secs(1)).is_err(),
        "the frozen agent still runs"
    );

    // Recorded like a responder's action, the rule as the actor, soon after the denial.
    let events = wait_until(
        "the rule's action in the journal",
        Duration::from_secs(20),
        || {
            let events = d.journal_events();
            events
                .iter()
                .any(|e| e["kind"] == "responder_action" && e["actor"]["via"] == "rule")
                .then_some(events)
        },
    );
    let denial = events
        .iter()
        .find(|e| {
            e["kind"] == "file_denied" && e["path"] == "/etc/shadow" && e["profile"] == "guarded"
        })
        .expect("the denial");
    let action = events
        .iter()
        .find(|e| e["kind"] == "responder_action" && e["actor"]["via"] == "rule")
        .unwrap();
    assert_eq!(action["action"], "freeze");
    assert_eq!(action["result"], "done", "{action}");
    assert_eq!(action["actor"]["name"], "secret read");
    assert_eq!(action["session"], denial["session"]);
    assert_eq!(action["severity"], "high");
    let time = |e: &serde_json::Value| {
        humantime::parse_rfc3339(e["time"].as_str().expect("time")).expect("RFC 3339")
    };
    let took = time(action)
        .duration_since(time(denial))
        .unwrap_or_default();
    // The bench measures it (`cargo xtask bench --only response`); here, loosely.
    assert!(
        took < Duration::from_secs(1),
        "frozen {took:?} after the denial"
    );
}

#[test]
fn a_rule_on_a_path_is_not_evaded_by_a_relative_name_or_a_link() {
    if !require_root("a_rule_on_a_path_is_not_evaded_by_a_relative_name_or_a_link") {
        return;
    }
    let d = daemon("", FREEZE_ON_SHADOW);
    for (how, reach) in [
        ("a relative name", "cd /etc && cat shadow 2>/dev/null"),
        ("a name through ..", "cat /etc/ssl/../shadow 2>/dev/null"),
        (
            "a relative name through ..",
            "cd /etc/ssl && cat ../shadow 2>/dev/null",
        ),
        (
            "a name through its own root",
            "cat /proc/self/root/etc/shadow 2>/dev/null",
        ),
        (
            "a link of its own",
            "ln -s /etc/shadow /tmp/l; cat /tmp/l 2>/dev/null",
        ),
    ] {
        let script = format!("{reach}; while true; do echo still here; sleep 0.05; done");
        let (_run, lines) = start(&d, "guarded", &script);
        wait_until(
            &format!("frozen after {how}"),
            Duration::from_secs(10),
            || (state_of(&d, "guarded").as_deref() == Some("frozen")).then_some(()),
        );
        while lines.recv_timeout(Duration::from_millis(300)).is_ok() {}
        assert!(
            lines.recv_timeout(Duration::from_secs(1)).is_err(),
            "the agent runs on after {how}"
        );
    }
    // What it asked was not the rule's path: matched by where it led.
    let events = d.journal_events();
    let asked: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"] == "file_denied" && e["target"] == "/etc/shadow")
        .filter_map(|e| e["path"].as_str())
        .collect();
    for spelled in [
        "shadow",
        "/tmp/l",
        "/etc/ssl/../shadow",
        "../shadow",
        "/proc/self/root/etc/shadow",
    ] {
        assert!(asked.contains(&spelled), "{spelled}: {asked:?}");
    }
}

#[test]
fn a_rule_with_a_count_waits_for_it_and_a_host_rule_holds_for_every_profile() {
    if !require_root("a_rule_with_a_count_waits_for_it_and_a_host_rule_holds_for_every_profile") {
        return;
    }
    // Host-wide: three refused reads of the secret within ten seconds kill the sandbox,
    // whatever its profile says.
    let d = daemon(
        "[[response]]\nname = \"probing\"\nwhen = { path = \"/etc/shadow\" }\ncount = 3\nwithin = \"10s\"\naction = \"kill\"\n",
        "",
    );
    // Two reads: under the count, it runs on.
    let (mut twice, lines) = start(
        &d,
        "test-agent",
        "cat /etc/shadow; cat /etc/shadow; while true; do echo still here; sleep 0.05; done",
    );
    let mut seen = 0;
    while seen < 10 {
        let (_, line) = lines.recv_timeout(Duration::from_secs(20)).expect("a line");
        seen += usize::from(line == "still here");
    }
    let _ = twice.0.kill();

    // Three: killed.
    let (mut run, lines) = start(
        &d,
        "test-agent",
        "cat /etc/shadow; cat /etc/shadow; cat /etc/shadow; sleep 0.5; while true; do echo still here; sleep 0.05; done",
    );
    let status = wait_until("the sandbox killed", Duration::from_secs(20), || {
        run.0.try_wait().expect("wait")
    });
    assert!(!status.success(), "{status:?}");
    assert!(
        lines.try_iter().all(|(_, l)| l != "still here"),
        "the agent ran on after its third read"
    );
    let stderr = run.stderr_text();
    // Not told why.
    assert!(!stderr.contains("probing"), "{stderr}");
    let action = wait_until("the kill in the journal", Duration::from_secs(20), || {
        d.journal_events()
            .into_iter()
            .find(|e| e["kind"] == "responder_action" && e["actor"]["name"] == "probing")
    });
    assert_eq!(action["action"], "kill");
    assert_eq!(action["result"], "done", "{action}");
}

#[test]
fn a_mistaken_rule_stops_cordond_and_the_profile_at_the_line_that_is_wrong() {
    if !require_root("a_mistaken_rule_stops_cordond_and_the_profile_at_the_line_that_is_wrong") {
        return;
    }
    let d = Daemon::new("[[response]]\nwhen = { kind = \"file_denid\" }\naction = \"freeze\"\n");
    let out = std::process::Command::new(d.bin.join("cordond"))
        .args(["--check", "--config"])
        .arg(&d.config)
        .output()
        .expect("cordond --check");
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("cordon.toml:"), "{said}");
    assert!(said.contains("did you mean `file_denied`"), "{said}");

    let profile = d.dir.path().join("bad.toml");
    std::fs::write(
        &profile,
        "[profile]\nname = \"bad\"\nextends = [\"test-agent\"]\n\n[[response]]\nwhen = { path = \"{home}/.ssh/**\" }\naction = \"frezee\"\n",
    )
    .expect("profile");
    let out = d
        .cordon(0, 0, &["profile", "check", profile.to_str().unwrap()])
        .output()
        .expect("profile check");
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("bad.toml:5:"), "{said}");
    assert!(said.contains("did you mean `freeze`"), "{said}");
}
