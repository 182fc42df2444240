//! cordond end to end: sd_notify, sandboxes for a user who is not root, the control API's
//! rights and its limits against a flood of connections, and every event reaching a collector
//! exactly once (after dedupe by id) through a collector outage and a SIGKILL of cordond.

mod common;

use std::collections::HashSet;
use std::io::{BufRead as _, Read as _, Write as _};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::daemon::{CollectorStandIn, Daemon, NOBODY, NOGROUP};
use common::require_root;

fn json_of(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn notifications(socket: &UnixDatagram, until: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    while !seen.iter().any(|m: &String| m.contains(until)) {
        let n = socket
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no {until} from cordond ({e}); got {seen:?}"));
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    seen
}

#[test]
fn cordond_tells_its_service_manager_when_it_is_ready_reloaded_and_stopping() {
    if !require_root("cordond_tells_its_service_manager_when_it_is_ready_reloaded_and_stopping") {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut d = Daemon::new(&format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    let notify_path = d.dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("notify socket");
    let mut command = std::process::Command::new(d.bin.join("cordond"));
    command.env("NOTIFY_SOCKET", &notify_path);
    d.start_with(command);
    let ready = notifications(&notify, "READY=1");
    assert!(
        ready.iter().any(|m| m.contains("STATUS=serving on")),
        "{ready:?}"
    );

    let status = json_of(
        &d.cordon(0, 0, &["status", "--json"])
            .output()
            .expect("status"),
    );
    assert_eq!(status["host_id"], "e2e-host");
    assert_eq!(status["kernel"]["ebpf"], "loaded", "{status}");
    assert!(status["kernel"]["landlock_abi"].as_u64().unwrap_or(0) >= 1);
    assert_eq!(status["collector"]["state"], "none");

    // Prometheus metrics on localhost.
    let mut http = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics listen");
    http.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("request");
    let mut metrics = String::new();
    std::io::Read::read_to_string(&mut http, &mut metrics).expect("response");
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    for line in [
        "cordon_ebpf_loaded 1",
        "cordon_events_dropped_total{reason=\"spool_full\"} 0",
        "# TYPE cordon_events_total counter",
        "cordon_spool_bytes 0",
    ] {
        assert!(metrics.contains(line), "no `{line}` in {metrics}");
    }

    // A bad config on SIGHUP: refused, the old one stays, the daemon serves on.
    d.append_config("[spool]\nmax_bytes = \"lots\"\n");
    let pid = nix::unistd::Pid::from_raw(d.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
    let reload = notifications(&notify, "READY=1");
    assert!(
        reload.iter().any(|m| m.contains("RELOADING=1")),
        "{reload:?}"
    );
    assert!(
        reload.iter().any(|m| m.contains("STATUS=reload refused")),
        "{reload:?}"
    );
    assert!(d
        .cordon(0, 0, &["status"])
        .output()
        .expect("status")
        .status
        .success());

    let stopped = d.stop();
    assert!(stopped.success(), "{stopped:?}");
    let stopping = notifications(&notify, "STOPPING=1");
    assert!(!stopping.is_empty());
    assert!(!d.socket.exists(), "the socket is removed on stop");
}

#[test]
fn a_bad_config_stops_the_start_with_where_and_why() {
    if !require_root("a_bad_config_stops_the_start_with_where_and_why") {
        return;
    }
    let mut d = Daemon::new("");
    d.append_config("[collector]\nurl = \"ftp://collector\"\n");
    let out = std::process::Command::new(d.bin.join("cordond"))
        .arg("--config")
        .arg(&d.config)
        .output()
        .expect("cordond");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let at = format!("{}:", d.config.display());
    assert!(err.contains(&at), "{err}");
    assert!(err.contains("is not an http:// or https:// URL"), "{err}");
}

#[test]
fn a_user_who_is_not_root_runs_sandboxes_through_cordond_as_themselves() {
    if !require_root("a_user_who_is_not_root_runs_sandboxes_through_cordond_as_themselves") {
        return;
    }
    let mut d = Daemon::new("");
    d.start();
    let out = d
        .cordon(
            NOBODY,
            NOGROUP,
            &["run", "-p", "test-agent", "--", "/usr/bin/id", "-u"],
        )
        .output()
        .expect("cordon run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        NOBODY.to_string()
    );

    // The exit status comes back; violations are printed on the caller's stderr.
    let out = d.run_probe(&["deny-loop", "3"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "value 3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("syscall unshare denied"), "{stderr}");
    let out = d
        .cordon(
            NOBODY,
            NOGROUP,
            &["run", "-p", "test-agent", "--", "/bin/sh", "-c", "exit 7"],
        )
        .output()
        .expect("cordon run");
    assert_eq!(out.status.code(), Some(7));

    // A profile that would make the caller someone else is refused.
    std::fs::write(
        d.dir.path().join("profiles/as-root.toml"),
        "[profile]\nname = \"as-root\"\nextends = [\"test-agent\"]\n\n[process]\nuser = \"root\"\n",
    )
    .expect("profile");
    let out = d
        .cordon(
            NOBODY,
            NOGROUP,
            &["run", "-p", "as-root", "--", "/usr/bin/id"],
        )
        .output()
        .expect("cordon run");
    assert_eq!(out.status.code(), Some(125));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("may only run sandboxes as themselves"),
        "{stderr}"
    );

    // So is a profile that would show the caller what they cannot read themselves: root
    // makes the sandbox's mounts, the caller's rights decide what they may be.
    std::fs::write(
        d.dir.path().join("profiles/peek.toml"),
        "[profile]\nname = \"peek\"\nextends = [\"test-agent\"]\n\n[filesystem]\nread = [\"/root\"]\n",
    )
    .expect("profile");
    let out = d
        .cordon(
            NOBODY,
            NOGROUP,
            &["run", "-p", "peek", "--", "/bin/ls", "/root"],
        )
        .output()
        .expect("cordon run");
    assert_eq!(out.status.code(), Some(125));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("grants read to /root, which you cannot access that way yourself"),
        "{stderr}"
    );
    // A profile file the caller cannot read is not read for them either.
    let secret = d.dir.path().join("secret.toml");
    std::fs::write(&secret, "[profile]\nname = \"secret\"\n").expect("profile");
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    let out = d
        .cordon(
            NOBODY,
            NOGROUP,
            &[
                "run",
                "-p",
                secret.to_str().expect("utf-8"),
                "--",
                "/usr/bin/id",
            ],
        )
        .output()
        .expect("cordon run");
    assert_eq!(out.status.code(), Some(125));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Permission denied"), "{stderr}");

    // The violations are in the journal, with who.
    d.wait_for(
        "the denials in the journal",
        Duration::from_secs(10),
        || {
            d.journal_events()
                .iter()
                .any(|e| e["kind"] == "syscall_denied")
        },
    );
    let out = d
        .cordon(0, 0, &["events", "--json", "--kind", "syscall_denied"])
        .output()
        .expect("cordon events");
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert!(!events.is_empty());
    for e in &events {
        assert_eq!(e["kind"], "syscall_denied");
        assert_eq!(e["process"]["uid"], NOBODY, "{e}");
        assert!(
            e["sandbox"]
                .as_str()
                .unwrap_or("")
                .starts_with("test-agent-"),
            "{e}"
        );
    }

    // The listings below are compared with each other: the runs' last events (which reach
    // the journal through cordond's pipeline after `cordon run` has returned) are let in
    // first, until the journal stands still for a while.
    let seen = std::cell::Cell::new(usize::MAX);
    d.wait_for(
        "the journal to stand still",
        Duration::from_secs(10),
        || {
            std::thread::sleep(Duration::from_millis(200));
            let now = d.journal_events().len();
            seen.replace(now) == now
        },
    );

    // By severity, at least: unshare reaches for the kernel (high); an exit is only info.
    let at_least = |level: &str| -> Vec<serde_json::Value> {
        let out = d
            .cordon(0, 0, &["events", "--json", "--severity", level])
            .output()
            .expect("cordon events");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect()
    };
    let high = at_least("high");
    assert!(high.iter().any(|e| e["syscall"] == "unshare"), "{high:?}");
    assert!(
        high.iter()
            .all(|e| matches!(e["severity"].as_str(), Some("high" | "critical"))),
        "{high:?}"
    );
    assert!(!high.iter().any(|e| e["kind"] == "exit"));
    assert!(at_least("info").iter().any(|e| e["kind"] == "exit"));
    // Sorted by severity: the most severe first, everything still there.
    let out = d
        .cordon(0, 0, &["events", "--json", "--by-severity"])
        .output()
        .expect("cordon events");
    let sorted: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let rank = |e: &serde_json::Value| {
        ["info", "low", "medium", "high", "critical"]
            .iter()
            .position(|l| e["severity"] == *l)
            .unwrap_or(0)
    };
    assert_eq!(sorted.len(), at_least("info").len());
    assert!(
        sorted.windows(2).all(|w| rank(&w[0]) >= rank(&w[1])),
        "{sorted:?}"
    );
    assert_eq!(sorted[0]["severity"], "high");
    // Newest first, a page at a time: --reverse --limit, then --until the oldest shown.
    let page = |extra: &[&str]| -> Vec<serde_json::Value> {
        let mut args = vec!["events", "--json", "--reverse", "--limit", "2"];
        args.extend_from_slice(extra);
        let out = d.cordon(0, 0, &args).output().expect("cordon events");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect()
    };
    let all = at_least("info");
    let time = |e: &serde_json::Value| {
        humantime::parse_rfc3339(e["time"].as_str().expect("time")).expect("RFC 3339")
    };
    let first = page(&[]);
    assert_eq!(first.len(), 2);
    // Newest by time, which is not always the last written (a burst is written when it
    // closes).
    let newest = all.iter().map(time).max().expect("events");
    assert_eq!(time(&first[0]), newest, "{first:?}");
    assert!(time(&first[0]) >= time(&first[1]), "{first:#?}");
    let older = first[1]["time"].as_str().expect("time").to_string();
    let second = page(&["--until", &older]);
    assert!(!second.is_empty());
    assert!(
        second.iter().all(|e| time(e) < time(&first[1])),
        "{second:?} is not older than {first:?}"
    );
    // Not with --follow: what there is has no newest end while it is followed.
    let out = d
        .cordon(0, 0, &["events", "--reverse", "--follow"])
        .output()
        .expect("cordon events");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    // Several kinds at once; a mistyped one is an error that says what was meant.
    let out = d
        .cordon(0, 0, &["events", "--json", "--kind", "syscall_denied,exit"])
        .output()
        .expect("cordon events");
    let kinds: std::collections::BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("JSON line")["kind"].to_string()
        })
        .collect();
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        ["\"exit\"", "\"syscall_denied\""]
    );
    // One session's events, as CSV.
    let session = sorted
        .iter()
        .find_map(|e| e["session"].as_str())
        .expect("a session")
        .to_string();
    let out = d
        .cordon(0, 0, &["events", "--session", &session, "--csv"])
        .output()
        .expect("cordon events");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8_lossy(&out.stdout);
    let mut rows = csv.lines();
    assert!(
        rows.next()
            .is_some_and(|h| h.starts_with("time,sandbox,session,severity,kind,")),
        "{csv}"
    );
    let rows: Vec<&str> = rows.collect();
    assert!(!rows.is_empty(), "{csv}");
    assert!(rows.iter().all(|r| r.contains(&session)), "{csv}");
    let out = d
        .cordon(0, 0, &["events", "--kind", "syscall_deny"])
        .output()
        .expect("cordon events");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("did you mean `syscall_denied`?"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = d
        .cordon(0, 0, &["events", "--severity", "hihg"])
        .output()
        .expect("cordon events");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("one of info, low, medium, high, critical"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_event_reaches_the_collector_once_through_an_outage_and_a_sigkill() {
    if !require_root("every_event_reaches_the_collector_once_through_an_outage_and_a_sigkill") {
        return;
    }
    let mut collector = CollectorStandIn::start();
    let mut d = Daemon::new("");
    let token = d.dir.path().join("token");
    std::fs::write(&token, "s3cret\n").expect("token");
    d.append_config(&format!(
        "[collector]\nurl = \"{}\"\ntoken_file = \"{}\"\n",
        collector.url,
        token.display()
    ));
    d.start();

    // Before the outage: violations arrive, with the host and the token.
    let out = d.run_probe(&["deny-each", "50"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "value 50");
    d.wait_for(
        "50 denials at the collector",
        Duration::from_secs(20),
        || {
            collector
                .events()
                .iter()
                .filter(|e| e["kind"] == "syscall_denied")
                .count()
                >= 50
        },
    );
    assert!(collector.tokens().iter().all(|t| t == "Bearer s3cret"));
    assert!(collector.hosts().iter().all(|h| h == "e2e-host"));

    // The outage: first the collector answers 503, then it is gone altogether; 10 000 more
    // denials, and cordond is SIGKILLed while the sandbox makes them.
    collector.set_down(true);
    let before = collector.posts();
    d.run_probe(&["deny-each", "5"]);
    d.wait_for("a post answered 503", Duration::from_secs(10), || {
        collector.posts() > before
    });
    collector.stop();
    let run = d
        .probe_command(NOBODY, NOGROUP, true, &["deny-each", "10000"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("cordon run");
    std::thread::sleep(Duration::from_millis(300));
    d.kill();
    let out = run.wait_with_output().expect("cordon run ends");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "value 10000",
        "the sandbox ran on, and its exit came back, with cordond gone"
    );

    // Both back: everything arrives.
    collector.set_down(false);
    collector.restart();
    d.start();
    d.wait_for(
        "the journal to have all denials",
        Duration::from_secs(30),
        || {
            d.journal_events()
                .iter()
                .filter(|e| e["kind"] == "syscall_denied")
                .count()
                >= 10_050
        },
    );
    d.wait_for(
        "the collector to have the journal",
        Duration::from_secs(60),
        || {
            let have: HashSet<String> = collector
                .events()
                .iter()
                .map(|e| e["id"].as_str().unwrap_or("").to_string())
                .collect();
            d.journal_events()
                .iter()
                .all(|e| have.contains(e["id"].as_str().unwrap_or("")))
        },
    );
    let journal = d.journal_events();
    let journal_ids: HashSet<&str> = journal.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(
        journal_ids.len(),
        journal.len(),
        "the journal has no event twice"
    );
    let at_collector = collector.events();
    let collector_ids: HashSet<&str> = at_collector
        .iter()
        .filter_map(|e| e["id"].as_str())
        .collect();
    assert_eq!(
        journal_ids, collector_ids,
        "the collector has exactly the journal's events"
    );
    // Every denial of the run cordond was killed during is there, none lost in the kernel
    // or the spool: counted in that run's own sandbox (the earlier runs made keyctl(0, i, 0)
    // for small i too).
    let mut by_sandbox: std::collections::HashMap<&str, HashSet<u64>> = Default::default();
    for e in at_collector
        .iter()
        .filter(|e| e["kind"] == "syscall_denied" && e["syscall"] == "keyctl")
        .filter(|e| e["process"]["uid"] == NOBODY)
    {
        if let (Some(sandbox), Some(arg)) = (e["sandbox"].as_str(), e["args"][1].as_u64()) {
            by_sandbox.entry(sandbox).or_default().insert(arg);
        }
    }
    let largest = by_sandbox.values().map(HashSet::len).max().unwrap_or(0);
    assert_eq!(
        largest, 10_000,
        "every keyctl(0, i, 0) for i in 0..10000 of one run"
    );
    assert!(
        !at_collector.iter().any(|e| e["kind"] == "events_lost"),
        "nothing lost at this pace"
    );
}

#[test]
fn viewers_list_responders_act_and_sandboxed_processes_get_nothing() {
    if !require_root("viewers_list_responders_act_and_sandboxed_processes_get_nothing") {
        return;
    }
    let mut d = Daemon::new("");
    d.append_config("viewer_groups = [\"nogroup\"]\nresponder_groups = []\n");
    d.start();
    let mut sandbox = common::daemon::KillOnDrop(
        d.probe_command(0, 0, true, &["spin", "20"])
            .spawn()
            .expect("cordon run"),
    );
    let mut name = String::new();
    d.wait_for("the sandbox in ps", Duration::from_secs(10), || {
        let ps = d
            .cordon(NOBODY, NOGROUP, &["ps", "--json"])
            .output()
            .expect("ps");
        assert!(
            ps.status.success(),
            "a viewer may list: {}",
            String::from_utf8_lossy(&ps.stderr)
        );
        let list = json_of(&ps);
        list.as_array()
            .and_then(|l| l.iter().find(|s| s["profile"] == "test-agent"))
            .is_some()
    });
    let list = json_of(&d.cordon(0, 0, &["ps", "--json"]).output().expect("ps"));
    if let Some(s) = list
        .as_array()
        .and_then(|l| l.iter().find(|s| s["profile"] == "test-agent"))
    {
        name = s["name"].as_str().unwrap_or("").to_string();
    }
    assert!(!name.is_empty());

    // A viewer may not act.
    let out = d
        .cordon(NOBODY, NOGROUP, &["kill", &name])
        .output()
        .expect("kill");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("permission denied"), "{stderr}");
    // A user in no group lists only their own sandboxes (none here), reads no status, and
    // is told who may.
    let out = d.cordon(1, 1, &["ps", "--json"]).output().expect("ps");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !json_of(&out).to_string().contains(&name),
        "{}",
        json_of(&out)
    );
    let out = d.cordon(1, 1, &["status"]).output().expect("status");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("permission denied") && stderr.contains("members of nogroup may"),
        "{stderr}"
    );
    let out = d.cordon(1, 1, &["kill", &name]).output().expect("kill");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("permission denied"));

    // A process inside a sandbox gets nothing, even as root: the socket is visible in the
    // sandbox (the profile lists its directory), so it is cordond that refuses.
    let socket = d.socket.to_str().expect("utf-8").to_string();
    let inside = d
        .probe_command(0, 0, true, &["unix-request", &socket, "{\"op\":\"ps\"}"])
        .output()
        .expect("cordon run");
    let answer = String::from_utf8_lossy(&inside.stdout);
    assert!(
        answer.contains("permission denied: processes inside a sandbox may not use cordond"),
        "{answer}"
    );

    // Root acts, and the action is recorded with who asked.
    let out = d.cordon(0, 0, &["kill", &name]).output().expect("kill");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Ended by the kill, not by the end of its 20 s.
    let ended = common::wait_until("the killed sandbox to end", Duration::from_secs(5), || {
        sandbox.0.try_wait().expect("wait")
    });
    assert!(!ended.success(), "{ended:?}");
    d.wait_for(
        "the responder action in the journal",
        Duration::from_secs(10),
        || {
            d.journal_events().iter().any(|e| {
                e["kind"] == "responder_action"
                    && e["sandbox"] == name.as_str()
                    && e["action"] == "kill"
                    && e["result"] == "done"
                    && e["actor"]["uid"] == 0
                    && e["actor"]["via"] == "socket"
            })
        },
    );
}

#[test]
fn garbage_and_oversized_requests_get_an_error_and_cordond_serves_on() {
    if !require_root("garbage_and_oversized_requests_get_an_error_and_cordond_serves_on") {
        return;
    }
    let mut d = Daemon::new("");
    d.start();
    let ask = |payload: &[u8]| -> serde_json::Value {
        let mut s = UnixStream::connect(&d.socket).expect("connect");
        // The daemon may answer before reading all of an oversized request.
        let _ = s.write_all(payload);
        let mut line = String::new();
        std::io::BufReader::new(s)
            .read_line(&mut line)
            .expect("a reply");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("reply not JSON ({e}): {line}"))
    };
    let r = ask(b"garbage\n");
    assert_eq!(r["ok"], false);
    assert!(
        r["error"].as_str().unwrap_or("").starts_with("bad request"),
        "{r}"
    );
    let r = ask(b"{\"op\":\"ps\",\"sneaky\":true}\n");
    assert_eq!(r["ok"], false);
    assert!(r["error"].as_str().unwrap_or("").contains("sneaky"), "{r}");
    let r = ask(&vec![b'x'; 3 << 20]);
    assert_eq!(r["ok"], false);
    assert!(
        r["error"].as_str().unwrap_or("").contains("larger than"),
        "{r}"
    );
    let r = ask(b"{\"op\":\"act\",\"sandbox\":\"../../etc\",\"action\":\"kill\"}\n");
    assert_eq!(r["ok"], false);
    assert!(
        r["error"]
            .as_str()
            .unwrap_or("")
            .contains("not a sandbox name"),
        "{r}"
    );
    let r = ask(b"{\"op\":\"ps\"}\n");
    assert_eq!(r["ok"], true, "still serving: {r}");
}

#[test]
fn the_shipped_unit_passes_systemd_analyze_verify() {
    if !require_root("the_shipped_unit_passes_systemd_analyze_verify") {
        return;
    }
    // As `cargo xtask install` writes it, with ExecStart at the cordond under test and the
    // man page it names where `man` finds it.
    let d = Daemon::new("");
    let unit = std::fs::read_to_string(common::repo().join("dist/cordond.service")).expect("unit");
    assert!(unit.contains("Type=notify"), "{unit}");
    let unit = unit.replace(
        "ExecStart=/usr/local/bin/cordond",
        &format!("ExecStart={}", d.bin.join("cordond").display()),
    );
    let path = d.dir.path().join("cordond.service");
    std::fs::write(&path, unit).expect("unit");
    let man = d.dir.path().join("man");
    let out = d
        .cordon(0, 0, &["man", man.join("man1").to_str().expect("utf-8")])
        .output()
        .expect("cordon man");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    common::assert_unit_verifies(&path, Some(&man));
}

/// Connects `n` times to `socket` as `uid` and `gid`, with no supplementary groups.
///
/// The kernel takes a unix socket's peer credentials (`SO_PEERCRED`, `SO_PEERGROUPS`) from the
/// thread that connects, and the raw set*id syscalls change only the calling thread (glibc's
/// wrappers change every thread of the process). So a thread of this root test that becomes
/// `uid` connects as a process of that user would, and the test keeps the connections to
/// trickle on and to read what cordond answers each.
fn connect_as(socket: &std::path::Path, uid: u32, gid: u32, n: usize) -> Vec<UnixStream> {
    let socket = socket.to_path_buf();
    std::thread::spawn(move || {
        // SAFETY: raw setgroups (an empty list, no pointer read), setresgid and setresuid take
        // integers and change only this thread's credentials; the thread ends after connecting.
        let became = unsafe {
            libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) == 0
                && libc::syscall(libc::SYS_setresgid, gid, gid, gid) == 0
                && libc::syscall(libc::SYS_setresuid, uid, uid, uid) == 0
        };
        assert!(
            became,
            "cannot become uid {uid}: {}",
            std::io::Error::last_os_error()
        );
        (0..n)
            .map(|i| {
                UnixStream::connect(&socket)
                    .unwrap_or_else(|e| panic!("connection {i} as uid {uid}: {e}"))
            })
            .collect()
    })
    .join()
    .expect("the connecting thread")
}

/// What became of one trickling connection.
#[derive(Debug, Clone, Default)]
struct Fate {
    /// What cordond sent on it.
    reply: String,
    /// Bytes of the never-ending request sent on it.
    sent: usize,
    /// When cordond closed it.
    closed: Option<Instant>,
}

/// Connections that each send a request a byte a second and never end it (the attack that
/// held cordond's socket sent one every 5 s, under its 10 s per-read timeout), until cordond
/// closes them; a thread of its own, so that the test asks cordond things meanwhile.
struct Trickle {
    started: Instant,
    fates: Arc<Mutex<Vec<Fate>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Trickle {
    fn start(conns: Vec<UnixStream>) -> Self {
        for c in &conns {
            c.set_nonblocking(true).expect("nonblocking");
        }
        let started = Instant::now();
        let fates = Arc::new(Mutex::new(vec![Fate::default(); conns.len()]));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (fates, stop) = (Arc::clone(&fates), Arc::clone(&stop));
            std::thread::spawn(move || trickle(conns, &fates, &stop, started))
        };
        Self {
            started,
            fates,
            stop,
            thread: Some(thread),
        }
    }

    fn fates(&self) -> Vec<Fate> {
        self.fates.lock().expect("lock").clone()
    }

    /// Waits until `n` connections are closed (and no more), and returns what became of each.
    fn wait_closed(&self, n: usize, timeout: Duration) -> Vec<Fate> {
        let fates = common::wait_until(
            &format!("cordond to close {n} connections"),
            timeout,
            || {
                let fates = self.fates();
                (fates.iter().filter(|f| f.closed.is_some()).count() >= n).then_some(fates)
            },
        );
        let closed = fates.iter().filter(|f| f.closed.is_some()).count();
        assert_eq!(closed, n, "{fates:?}");
        fates
    }
}

impl Drop for Trickle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn trickle(
    mut conns: Vec<UnixStream>,
    fates: &Mutex<Vec<Fate>>,
    stop: &AtomicBool,
    started: Instant,
) {
    // Bounded: cordond must have closed every one long before.
    let until = started + Duration::from_secs(60);
    let mut next_byte = started;
    while !stop.load(Ordering::SeqCst) && Instant::now() < until {
        let send = Instant::now() >= next_byte;
        if send {
            next_byte += Duration::from_secs(1);
        }
        let mut fates = fates.lock().expect("lock");
        for (conn, fate) in conns.iter_mut().zip(fates.iter_mut()) {
            if fate.closed.is_some() {
                continue;
            }
            let mut buf = [0u8; 4096];
            loop {
                match conn.read(&mut buf) {
                    Ok(0) => fate.closed = Some(Instant::now()),
                    Ok(n) => {
                        fate.reply.push_str(&String::from_utf8_lossy(&buf[..n]));
                        continue;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    // ECONNRESET: closed with a byte of ours unread, after its reply.
                    Err(_) => fate.closed = Some(Instant::now()),
                }
                break;
            }
            if send && fate.closed.is_none() {
                // A failed write is seen as the close on the next read.
                if let Ok(n) = conn.write(b" ") {
                    fate.sent += n;
                }
            }
        }
        if fates.iter().all(|f| f.closed.is_some()) {
            return;
        }
        drop(fates);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `cordon ARGS` as `uid`, which must answer within 2 s; its output.
fn answered(d: &Daemon, uid: u32, gid: u32, args: &[&str]) -> std::process::Output {
    let asked = Instant::now();
    let out = d.cordon(uid, gid, args).output().expect("cordon");
    let took = asked.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "`cordon {}` as uid {uid} took {took:?}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn succeeded(out: &std::process::Output) -> bool {
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
    out.status.success()
}

#[test]
fn a_user_who_floods_the_socket_is_capped_and_cut_off_while_root_and_others_are_answered() {
    if !require_root(
        "a_user_who_floods_the_socket_is_capped_and_cut_off_while_root_and_others_are_answered",
    ) {
        return;
    }
    let mut d = Daemon::new("");
    d.append_config("viewer_groups = [\"daemon\"]\n");
    d.start();
    // A sandbox for root to contain while the attack lasts.
    let mut sandbox = common::daemon::KillOnDrop(
        d.probe_command(0, 0, true, &["sleep", "60"])
            .spawn()
            .expect("cordon run"),
    );
    let name = common::wait_until("the sandbox in ps", Duration::from_secs(10), || {
        let list = json_of(&d.cordon(0, 0, &["ps", "--json"]).output().expect("ps"));
        list.as_array()?
            .iter()
            .find(|s| s["profile"] == "test-agent")
            .and_then(|s| s["name"].as_str())
            .map(str::to_string)
    });

    // The attack: 200 connections from nobody, each trickling its request.
    let attack = Trickle::start(connect_as(&d.socket, NOBODY, NOGROUP, 200));
    // All but 32 are refused at once, with the reason; the rest are served, and trickle on.
    let fates = attack.wait_closed(168, Duration::from_secs(5));
    for (i, f) in fates.iter().enumerate() {
        match f.closed {
            Some(closed) => {
                assert!(
                    f.reply
                        .contains("too many connections from uid 65534 (at most 32)"),
                    "connection {i}: {f:?}"
                );
                assert!(closed - attack.started < Duration::from_secs(3), "{f:?}");
            }
            None => assert_eq!(f.reply, "", "connection {i} is being served"),
        }
    }

    // Meanwhile root lists, reads status and kills; a viewer lists; a user in no group is
    // told no; each at once.
    let ps = answered(&d, 0, 0, &["ps", "--json"]);
    assert!(succeeded(&ps));
    assert!(json_of(&ps).to_string().contains(&name), "{}", json_of(&ps));
    let status = answered(&d, 0, 0, &["status", "--json"]);
    assert!(succeeded(&status));
    assert_eq!(json_of(&status)["host_id"], "e2e-host");
    let viewer = answered(&d, 1, 1, &["ps", "--json"]);
    assert!(succeeded(&viewer), "uid 1 is in daemon, a viewer group");
    assert!(json_of(&viewer).to_string().contains(&name));
    let stranger = answered(&d, 2, 2, &["status"]);
    assert!(!stranger.status.success());
    let stderr = String::from_utf8_lossy(&stranger.stderr);
    assert!(
        stderr.contains("permission denied: uid 2 may not read sandboxes"),
        "{stderr}"
    );
    let kill = answered(&d, 0, 0, &["kill", &name]);
    assert!(succeeded(&kill));
    // All of that while the 32 still held their connections.
    let open = attack.fates().iter().filter(|f| f.closed.is_none()).count();
    assert_eq!(open, 32, "the attack was still on");
    let ended = common::wait_until("the killed sandbox to end", Duration::from_secs(5), || {
        sandbox.0.try_wait().expect("wait")
    });
    assert!(!ended.success(), "killed, not ended by itself: {ended:?}");

    // The 32 are cut off at the request's deadline, a byte a second notwithstanding.
    let fates = attack.wait_closed(200, Duration::from_secs(20));
    let cut: Vec<&Fate> = fates
        .iter()
        .filter(|f| !f.reply.contains("too many connections"))
        .collect();
    assert_eq!(cut.len(), 32);
    for f in cut {
        assert!(f.reply.contains("no complete request within 10s"), "{f:?}");
        let after = f.closed.expect("closed") - attack.started;
        assert!(
            after >= Duration::from_secs(9) && after < Duration::from_secs(15),
            "cut off after {after:?}"
        );
        assert!(f.sent >= 8, "it kept sending: {f:?}");
    }

    // Their places were given back: nobody gets 32 answers again.
    for mut conn in connect_as(&d.socket, NOBODY, NOGROUP, 32) {
        conn.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        conn.write_all(b"{\"op\":\"status\"}\n").expect("request");
        let mut line = String::new();
        std::io::BufReader::new(conn)
            .read_line(&mut line)
            .expect("a reply");
        assert!(
            line.contains("permission denied: uid 65534 may not read sandboxes"),
            "{line}"
        );
    }
}

#[test]
fn when_many_users_fill_the_socket_root_and_responders_still_get_in() {
    if !require_root("when_many_users_fill_the_socket_root_and_responders_still_get_in") {
        return;
    }
    let mut d = Daemon::new("");
    d.append_config("viewer_groups = [\"daemon\"]\nresponder_groups = [\"nogroup\"]\n");
    d.start();

    // Nine users, 32 trickling connections each: the first eight fill the general pool (256).
    let mut conns = Vec::new();
    for uid in 60_001..=60_009 {
        conns.extend(connect_as(&d.socket, uid, uid, 32));
    }
    let attack = Trickle::start(conns);
    let fates = attack.wait_closed(32, Duration::from_secs(5));
    for (i, f) in fates.iter().enumerate() {
        if i < 256 {
            assert!(f.closed.is_none(), "connection {i} is being served: {f:?}");
        } else {
            assert!(f.reply.contains("cordond is busy"), "connection {i}: {f:?}");
            assert!(
                f.reply
                    .contains("the rest are kept for root and responders"),
                "{f:?}"
            );
        }
    }

    // Root and a responder (nobody, in nogroup) get in, from the reserve.
    let ps = answered(&d, 0, 0, &["ps", "--json"]);
    assert!(succeeded(&ps));
    assert!(succeeded(&answered(&d, 0, 0, &["status", "--json"])));
    let responder = answered(&d, NOBODY, NOGROUP, &["ps", "--json"]);
    assert!(succeeded(&responder), "a responder lists from the reserve");
    assert!(json_of(&responder).is_array());
    // A viewer is told at once that cordond is busy, not left hanging.
    let viewer = answered(&d, 1, 1, &["ps"]);
    assert!(!viewer.status.success());
    let stderr = String::from_utf8_lossy(&viewer.stderr);
    assert!(stderr.contains("cordond is busy"), "{stderr}");
    let open = attack.fates().iter().filter(|f| f.closed.is_none()).count();
    assert_eq!(open, 256, "the attack was still on");

    // Once the deadline has cut the attack off, the viewer is served again.
    let fates = attack.wait_closed(288, Duration::from_secs(20));
    assert!(
        fates[..256]
            .iter()
            .all(|f| f.reply.contains("no complete request within 10s")),
        "{:?}",
        &fates[..4]
    );
    let viewer = answered(&d, 1, 1, &["ps", "--json"]);
    assert!(
        succeeded(&viewer),
        "the viewer is served once there is room"
    );
}

/// cordond keeps its handle on the eBPF maps, and must notice when another run replaced the
/// pinned set (here: the bpffs covered by another mount, so the next run loads a second set
/// and detaches the first): an isolate written to the old maps would miss the sandbox.
#[test]
fn cordond_isolates_through_the_maps_in_use_after_another_run_replaced_them() {
    if !require_root("cordond_isolates_through_the_maps_in_use_after_another_run_replaced_them") {
        return;
    }
    let server = std::net::TcpListener::bind("127.0.0.2:0").expect("listen");
    let port = server.local_addr().expect("addr").port();
    std::thread::spawn(move || for _ in server.incoming() {});
    let mut d = Daemon::new("");
    std::fs::write(
        d.dir.path().join("profiles/net-agent.toml"),
        format!(
            "[profile]\nname = \"net-agent\"\nextends = [\"test-agent\"]\n\n[network]\negress = [{{ cidr = \"127.0.0.2/32\", ports = [{port}], proto = \"tcp\" }}]\n"
        ),
    )
    .expect("profile");
    d.start();
    // cordond has opened the programs; now their pins are covered.
    let _cover = common::CoveredBpffs::new();

    let flag = d.workspace.join("go");
    let probe = d.bin.join("probe");
    let script = format!(
        "{p} connect 127.0.0.2:{port}; while [ ! -e {f} ]; do sleep 0.02; done; {p} connect 127.0.0.2:{port}",
        p = probe.display(),
        f = flag.display()
    );
    let mut sandbox = common::daemon::KillOnDrop(
        d.cordon(
            0,
            0,
            &[
                "run",
                "--quiet",
                "-p",
                "net-agent",
                "--",
                "/bin/sh",
                "-c",
                &script,
            ],
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("cordon run"),
    );
    let stdout = sandbox.0.stdout.take().expect("stdout");
    let mut lines = std::io::BufReader::new(stdout).lines();
    let first = lines.next().and_then(Result::ok);
    assert_eq!(first.as_deref(), Some("ok"), "the first connection");
    let list = json_of(&d.cordon(0, 0, &["ps", "--json"]).output().expect("ps"));
    let name = list
        .as_array()
        .and_then(|l| l.iter().find(|s| s["profile"] == "net-agent"))
        .and_then(|s| s["name"].as_str())
        .expect("the sandbox in ps")
        .to_string();
    let out = d
        .cordon(0, 0, &["isolate", &name])
        .output()
        .expect("isolate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&flag, "").expect("flag");
    let second = lines.next().and_then(Result::ok);
    assert_eq!(
        second.as_deref(),
        Some("err EPERM"),
        "the connection after the isolate"
    );
}

#[test]
fn events_follow_carries_on_across_a_restart_of_cordond() {
    if !require_root("events_follow_carries_on_across_a_restart_of_cordond") {
        return;
    }
    let mut d = Daemon::new("");
    d.start();
    let mut follower = d
        .cordon(
            0,
            0,
            &["events", "--follow", "--json", "--kind", "syscall_denied"],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cordon events --follow");
    let lines = {
        let stdout = follower.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx
                    .send(serde_json::from_str(&line).expect("JSON line"))
                    .is_err()
                {
                    break;
                }
            }
        });
        rx
    };
    let next = || {
        lines
            .recv_timeout(Duration::from_secs(20))
            .expect("the follower printed an event")
    };
    let _ = d.run_probe(&["deny-loop", "1"]);
    let first = next();
    d.stop();
    d.start();
    let _ = d.run_probe(&["deny-loop", "1"]);
    let second = next();
    let _ = follower.kill();
    let _ = follower.wait();
    assert_ne!(
        first["session"], second["session"],
        "the event after the restart, not the first again: {first} {second}"
    );
    let mut stderr = String::new();
    let _ =
        std::io::Read::read_to_string(&mut follower.stderr.take().expect("stderr"), &mut stderr);
    assert!(stderr.contains("following again"), "{stderr}");
}

#[test]
fn a_user_who_runs_sandboxes_lists_and_kills_their_own_and_no_one_elses() {
    if !require_root("a_user_who_runs_sandboxes_lists_and_kills_their_own_and_no_one_elses") {
        return;
    }
    let mut d = Daemon::new("");
    d.start();
    // nobody's sandbox, and root's.
    let mut own = common::daemon::KillOnDrop(
        d.probe_command(NOBODY, NOGROUP, true, &["spin", "30"])
            .spawn()
            .expect("cordon run"),
    );
    let _roots = common::daemon::KillOnDrop(
        d.probe_command(0, 0, true, &["spin", "30"])
            .spawn()
            .expect("cordon run"),
    );
    let listed = |uid: u32, gid: u32| -> Vec<serde_json::Value> {
        let out = d.cordon(uid, gid, &["ps", "--json"]).output().expect("ps");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        json_of(&out).as_array().cloned().unwrap_or_default()
    };
    d.wait_for("both sandboxes", Duration::from_secs(10), || {
        listed(0, 0).len() == 2
    });
    let mine = listed(NOBODY, NOGROUP);
    assert_eq!(mine.len(), 1, "only their own: {mine:?}");
    assert_eq!(mine[0]["uid"], NOBODY);
    let theirs: String = listed(0, 0)
        .iter()
        .find(|s| s["uid"] == 0)
        .and_then(|s| s["name"].as_str().map(str::to_string))
        .expect("root's sandbox");
    // Someone else's: refused, and told who may.
    let out = d
        .cordon(NOBODY, NOGROUP, &["kill", &theirs])
        .output()
        .expect("kill");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("may not kill sandboxes; members of cordon-responders may"),
        "{stderr}"
    );
    // Their own: killed.
    let name = mine[0]["name"].as_str().expect("name").to_string();
    let out = d
        .cordon(NOBODY, NOGROUP, &["kill", &name])
        .output()
        .expect("kill");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ended = common::wait_until("the killed sandbox to end", Duration::from_secs(5), || {
        own.0.try_wait().expect("wait")
    });
    assert!(!ended.success(), "{ended:?}");
}

/// cordond's `/metrics` on `port`.
fn scrape(port: u16) -> String {
    let mut http = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics listen");
    http.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("request");
    let mut text = String::new();
    http.read_to_string(&mut text).expect("response");
    text
}

/// A metric's value, by its line's name and labels.
fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn the_metrics_say_whether_the_collector_is_up_and_when_it_last_took_events() {
    if !require_root("the_metrics_say_whether_the_collector_is_up_and_when_it_last_took_events") {
        return;
    }
    let mut c = common::collector::Collector::start(common::collector::Db::Sqlite, "");
    let mut d = c.host("metrics-host");
    let port = common::collector::free_port();
    d.append_config(&format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    d.start();
    let text = scrape(port);
    assert!(
        text.contains(&format!(
            "cordon_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    // Events delivered: up, and the time of the delivery.
    let out = d.run_probe(&["read", "/etc/shadow"]);
    assert!(out.status.code().is_some(), "{out:?}");
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    common::wait_until("a delivery", Duration::from_secs(30), || {
        let text = scrape(port);
        (metric(&text, "cordon_collector_up") == Some(1)
            && metric(&text, "cordon_collector_last_delivery_timestamp_seconds")
                .is_some_and(|t| t + 60 >= before))
        .then_some(())
    });
    // The collector gone: down, within a poll.
    c.stop();
    common::wait_until("the collector seen down", Duration::from_secs(30), || {
        (metric(&scrape(port), "cordon_collector_up") == Some(0)).then_some(())
    });
    // Back: up again.
    c.run();
    common::wait_until("the collector seen up", Duration::from_secs(60), || {
        (metric(&scrape(port), "cordon_collector_up") == Some(1)).then_some(())
    });
}
