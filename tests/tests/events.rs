//! Kernel-sourced events: every seccomp denial, the process tree, and lost events counted
//! rather than dropped in silence. One JSON form for all of them (proto/src/event.rs).

mod common;

use common::{occurrences, of_kind, only, require_root, Fixture};

/// The syscall each probe action makes that the `default` preset denies.
const DENIED: &[(&str, &str)] = &[
    ("mount", "mount"),
    ("bpf", "bpf"),
    ("unshare-user", "unshare"),
    ("unshare-net", "unshare"),
    ("clone-newuser", "clone"),
    ("keyctl", "keyctl"),
    ("ptrace-child", "ptrace"),
    ("mptcp", "socket"),
];

#[test]
fn every_seccomp_denial_arrives_as_an_event_with_who_and_what() {
    if !require_root("every_seccomp_denial_arrives_as_an_event_with_who_and_what") {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    for (action, syscall) in DENIED {
        let (answer, events) = f.probe_events(&[], &[action]);
        assert_eq!(answer, "err EPERM", "{action}");
        let denied = of_kind(&events, "syscall_denied");
        let ours: Vec<_> = denied.iter().filter(|e| e["syscall"] == *syscall).collect();
        assert_eq!(ours.len(), 1, "{action}: {events:?}");
        let e = ours[0];
        assert_eq!(e["errno"], libc::EPERM, "{action}");
        assert_eq!(e["process"]["comm"], "probe", "{action}");
        assert!(
            e["process"]["exe"]
                .as_str()
                .is_some_and(|x| x.ends_with("/probe")),
            "{action}"
        );
        assert!(
            e["process"]["ppid"].as_u64().is_some_and(|p| p > 0),
            "{action}"
        );
        assert_eq!(e["profile"], "test");
        assert_eq!(e["args"].as_array().map(Vec::len), Some(6), "{action}");
        assert!(e["sandbox"]
            .as_str()
            .is_some_and(|s| s.starts_with("test-")));
        assert!(e["id"].as_str().is_some_and(|id| id.len() == 36));
        // Only the denial the probe made: the sandbox's own setup is not reported as one.
        assert_eq!(denied.len(), 1, "{action}: {denied:?}");
    }
}

#[test]
fn the_arguments_reported_are_the_ones_the_rule_matched() {
    if !require_root("the_arguments_reported_are_the_ones_the_rule_matched") {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    let (_, events) = f.probe_events(&[], &["unshare-user"]);
    let denied = of_kind(&events, "syscall_denied");
    assert_eq!(denied[0]["args"][0], libc::CLONE_NEWUSER as u64);
    // A call the deny list allows fails or works on its own and is not reported.
    let (_, events) = f.probe_events(&[], &["read", "/nonexistent"]);
    assert!(of_kind(&events, "syscall_denied").is_empty(), "{events:?}");
}

#[test]
fn the_process_tree_is_reported_exec_fork_exit() {
    if !require_root("the_process_tree_is_reported_exec_fork_exit") {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    let (answer, events) = f.probe_events(&[], &["fork", "read", "/etc/hostname"]);
    assert_eq!(answer, "ok");
    let execs = of_kind(&events, "exec");
    assert!(
        execs.iter().any(|e| e["filename"]
            .as_str()
            .is_some_and(|f| f.ends_with("/probe"))),
        "{events:?}"
    );
    let probe_pid = execs[0]["process"]["pid"].as_u64().expect("pid");
    let forks: Vec<_> = of_kind(&events, "fork")
        .into_iter()
        .filter(|e| e["process"]["pid"] == probe_pid)
        .collect();
    assert_eq!(forks.len(), 1, "{events:?}");
    let child = forks[0]["child_pid"].as_u64().expect("child pid");
    let exits = of_kind(&events, "exit");
    let child_exit = exits
        .iter()
        .find(|e| e["process"]["pid"] == child)
        .expect("the child's exit");
    assert_eq!(child_exit["code"], 0);
    assert_eq!(child_exit["process"]["ppid"], probe_pid);
    assert!(exits
        .iter()
        .any(|e| e["process"]["pid"] == probe_pid && e["code"] == 0));
    // Times are in order: the fork before the child's exit.
    assert!(forks[0]["id"].as_str() < child_exit["id"].as_str());
    // The sandbox's init (which forked the probe) is Cordon's, not the command's: its own
    // end, after the sandbox has been reported ended, is never an event.
    let init = of_kind(&events, "fork")
        .into_iter()
        .find(|e| e["child_pid"] == probe_pid)
        .map(|e| e["process"]["pid"].clone())
        .expect("init's fork of the probe");
    assert!(
        !exits.iter().any(|e| e["process"]["pid"] == init),
        "{events:?}"
    );
}

#[test]
fn a_kill_action_is_reported_as_a_death_by_sigsys() {
    if !require_root("a_kill_action_is_reported_as_a_death_by_sigsys") {
        return;
    }
    let f = Fixture::new("coding-agent", "[syscalls]\naction = \"kill\"");
    let out = f
        .command_with(
            &["--events", &f.dir.path().join("k.jsonl").to_string_lossy()],
            &[common::probe_bin().to_string_lossy().as_ref(), "keyctl"],
        )
        .output()
        .expect("run");
    assert!(!out.status.success());
    let events = common::read_events(&f.dir.path().join("k.jsonl"));
    let exits = of_kind(&events, "exit");
    assert!(
        exits
            .iter()
            .any(|e| e["signal"] == libc::SIGSYS && e["process"]["comm"] == "probe"),
        "{events:?}"
    );
}

#[test]
fn events_the_kernel_could_not_deliver_are_counted_never_silent() {
    if !require_root("events_the_kernel_could_not_deliver_are_counted_never_silent") {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    // Far more denials than the ring buffer holds (1 MiB of 312-byte records), as fast as
    // the probe can make them: some may be lost, but every one is accounted for. The lost
    // count covers every kind, so the probe's own exec and exit may be in it too.
    let n = 200_000u64;
    let (answer, events) = f.probe_events(&["--quiet"], &["deny-loop", &n.to_string()]);
    assert_eq!(answer, format!("value {n}"));
    // Repeats of one denial leave as one event with a `count` (a burst).
    let denied = of_kind(&events, "syscall_denied");
    let delivered = occurrences(&denied);
    let lost = occurrences(&of_kind(&events, "events_lost"));
    let others = events.len() - denied.len() - of_kind(&events, "events_lost").len();
    assert!(
        (n..=n + 4).contains(&(delivered + lost)),
        "{n} denials, delivered {delivered}, lost {lost} (and {others} other events)"
    );
    assert!(delivered > 0);
    assert!(
        denied.len() < 100,
        "{} syscall_denied events for one tight loop: bursts were not aggregated",
        denied.len()
    );
}

#[test]
fn landlock_denials_arrive_as_events_from_its_audit_records() {
    if !require_root("landlock_denials_arrive_as_events_from_its_audit_records") {
        return;
    }
    // The Landlock-layer denials of the launcher tests: a write where the mount is writable
    // (files.rs) and a TCP connect to a port not listed (files.rs, process.rs).
    let f = Fixture::new("base", "");
    let (answer, events) = f.probe_events(&[], &["write", "/tmp/x"]);
    assert_eq!(answer, "err EACCES");
    let denied = of_kind(&events, "file_denied");
    // Landlock names the directory a file could not be created in.
    let ours: Vec<_> = denied.iter().filter(|e| e["path"] == "/tmp").collect();
    assert_eq!(ours.len(), 1, "{events:?}");
    assert_eq!(ours[0]["access"], "fs.make_reg");
    assert_eq!(ours[0]["process"]["comm"], "probe");
    assert!(ours[0]["process"]["exe"]
        .as_str()
        .is_some_and(|x| x.ends_with("/probe")));
    assert!(ours[0]["process"]["pid"].as_u64().is_some_and(|p| p > 1));
    assert!(ours[0]["process"]["ppid"].as_u64().is_some_and(|p| p > 1));

    let f = Fixture::new("coding-agent", "");
    let (answer, events) = f.probe_events(&[], &["connect", "127.0.0.1:1"]);
    assert_eq!(answer, "err EACCES");
    let denied = only(&events, "network_denied");
    assert_eq!(denied["address"], "127.0.0.1");
    assert_eq!(denied["port"], 1);
    assert_eq!(denied["process"]["comm"], "probe");
}

#[test]
fn a_ring_buffer_passed_on_carries_only_its_new_sandboxs_events() {
    if !require_root("a_ring_buffer_passed_on_carries_only_its_new_sandboxs_events") {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    // A floods its ring buffer and its `cordon run` is killed before reading it: A's ring is
    // left full of unread records, and held by A's cgroup until a later run sweeps it.
    let flood = f.dir.path().join("flood.jsonl");
    let mut a = f
        .command_with(
            &["--quiet", "--events", &flood.to_string_lossy()],
            &[
                &common::probe_bin().to_string_lossy(),
                "deny-loop",
                "100000000",
            ],
        )
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("cordon runs");
    std::thread::sleep(std::time::Duration::from_millis(500));
    a.kill().expect("kill cordon run");
    a.wait().expect("reap cordon run");
    // B ends by sweeping what A left, which puts A's ring back into the pool; C may get it.
    assert_eq!(f.probe(&["keyctl"]), "err EPERM");
    let n = 300;
    let (answer, events) = f.probe_events(&["--quiet"], &["deny-each", &n.to_string()]);
    assert_eq!(answer, format!("value {n}"));
    let denied = of_kind(&events, "syscall_denied");
    let mut seen: Vec<u64> = denied
        .iter()
        .map(|e| {
            assert_eq!(e["syscall"], "keyctl", "a record of another sandbox: {e}");
            e["args"][1].as_u64().expect("argument")
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..n).collect::<Vec<u64>>(),
        "every denial once, none else"
    );
    assert!(of_kind(&events, "events_lost").is_empty(), "{events:?}");
}

#[test]
fn every_event_of_a_run_carries_its_session_and_the_first_says_what_it_is() {
    if !require_root("every_event_of_a_run_carries_its_session_and_the_first_says_what_it_is") {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    let (answer, events) = f.probe_events(&[], &["read", "/etc/shadow"]);
    assert_eq!(answer, "err EACCES");
    let first = &events[0];
    assert_eq!(first["kind"], "session_started", "{events:#?}");
    let session: uuid::Uuid = first["session"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("a session id");
    assert_eq!(session.get_version_num(), 7, "a UUIDv7: {session}");
    for e in &events {
        assert_eq!(e["session"], session.to_string(), "every event: {e}");
    }
    assert!(
        of_kind(&events, "file_denied").len() == 1,
        "the denial is one of them: {events:#?}"
    );
    assert_eq!(first["uid"], 0);
    assert_eq!(first["user"], "root");
    assert_eq!(first["workspace"], f.workspace.to_string_lossy().as_ref());
    let command: Vec<&str> = first["command"]
        .as_array()
        .expect("the command line")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert!(command[0].ends_with("/probe"), "{command:?}");
    assert_eq!(command[1..], ["read", "/etc/shadow"]);
    let hash = first["profile_sha256"]
        .as_str()
        .expect("the profile's hash");
    assert!(
        hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit()),
        "{hash}"
    );

    // Another run of the same profile: another session, the same rules.
    let (_, again) = f.probe_events(&[], &["read", "/etc/hostname"]);
    assert_ne!(again[0]["session"], first["session"]);
    assert_eq!(again[0]["profile_sha256"], first["profile_sha256"]);
    // Another profile: other rules.
    let other = Fixture::new("offline-tool", "");
    let (_, elsewhere) = other.probe_events(&[], &["read", "/etc/hostname"]);
    assert_ne!(elsewhere[0]["profile_sha256"], first["profile_sha256"]);
}
