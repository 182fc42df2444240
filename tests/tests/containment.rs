//! Responders' actions on a running sandbox: isolate/release, freeze/thaw, kill. Each is a
//! `cordon` command naming the sandbox (its cgroup), and each is recorded as an event.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{
    cgroup2_mount, cordon_bin, of_kind, only, probe_bin, read_events, require_root, Fixture,
};

/// A running `cordon run`, its sandbox's name and the path of its event file.
struct Running {
    child: Child,
    name: String,
    events: std::path::PathBuf,
}

impl Running {
    fn start(f: &Fixture, args: &[&str]) -> Self {
        let events = f.dir.path().join("events.jsonl");
        let mut argv = vec![probe_bin().to_string_lossy().into_owned()];
        argv.extend(args.iter().map(|a| a.to_string()));
        let options = [
            "--events".to_string(),
            events.to_string_lossy().into_owned(),
        ];
        let child = f
            .command_with(&options, &argv)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cordon runs");
        // The sandbox's cgroup is named after the profile and the cordon process.
        let name = format!("test-{}-0", child.id());
        let cgroup = std::path::Path::new(&cgroup2_mount())
            .join("cordon")
            .join(&name);
        // Running: init and the command it starts once the sandbox is registered.
        let deadline = Instant::now() + Duration::from_secs(10);
        while procs(&cgroup) < 2 {
            assert!(
                Instant::now() < deadline,
                "the sandbox {name} never started"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Running {
            child,
            name,
            events,
        }
    }

    fn cgroup(&self) -> std::path::PathBuf {
        std::path::Path::new(&cgroup2_mount())
            .join("cordon")
            .join(&self.name)
    }

    /// The sandbox's CPU time so far (cgroup v2 cpu.stat, present without the cpu controller).
    fn cpu_usec(&self) -> u64 {
        let stat = std::fs::read_to_string(self.cgroup().join("cpu.stat")).expect("cpu.stat");
        stat.lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .and_then(|v| v.trim().parse().ok())
            .expect("usage_usec")
    }

    fn finish(mut self) -> Vec<serde_json::Value> {
        let _ = self.child.wait();
        read_events(&self.events)
    }
}

/// How many processes the cgroup holds.
fn procs(cgroup: &std::path::Path) -> usize {
    std::fs::read_to_string(cgroup.join("cgroup.procs"))
        .map(|p| p.lines().count())
        .unwrap_or(0)
}

fn populated(cgroup: &std::path::Path) -> bool {
    std::fs::read_to_string(cgroup.join("cgroup.events"))
        .is_ok_and(|e| e.lines().any(|l| l == "populated 1"))
}

/// `cordon ACTION NAME`, which must succeed. (How fast is the bench's to say.)
fn act(action: &str, name: &str) {
    let out = Command::new(cordon_bin())
        .args([action, name])
        .output()
        .expect("cordon");
    assert!(
        out.status.success(),
        "cordon {action} {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn contained(events: &[serde_json::Value]) -> Vec<String> {
    of_kind(events, "contained")
        .iter()
        .filter_map(|e| e["action"].as_str().map(String::from))
        .collect()
}

#[test]
fn isolate_cuts_an_open_tcp_stream() {
    if !require_root("isolate_cuts_an_open_tcp_stream") {
        return;
    }
    let listener = TcpListener::bind("127.0.0.2:0").expect("listen");
    let port = listener.local_addr().expect("addr").port();
    // The server streams 4 KiB every 5 ms to whoever connects, until the write fails.
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let chunk = [7u8; 4096];
                while std::io::Write::write_all(&mut stream, &chunk).is_ok() {
                    std::thread::sleep(Duration::from_millis(5));
                }
            });
        }
    });
    let f = Fixture::new(
        "base",
        &format!("[network]\negress = [{{ cidr = \"127.0.0.2/32\", ports = [{port}], proto = \"tcp\" }}]"),
    );
    let mut running = Running::start(&f, &["stream", &format!("127.0.0.2:{port}")]);
    let (tx, rx) = mpsc::channel();
    let stdout = running.child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let bytes = line
                .strip_prefix("bytes ")
                .and_then(|n| n.parse::<u64>().ok());
            if tx.send((line.clone(), bytes)).is_err() {
                return;
            }
        }
    });
    let latest = |rx: &mpsc::Receiver<(String, Option<u64>)>, wait: Duration| {
        let deadline = Instant::now() + wait;
        let mut last = None;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left) {
                Ok((_, Some(n))) => last = Some(n),
                Ok((line, None)) => return (last, Some(line)),
                Err(_) => break,
            }
        }
        (last, None)
    };
    let (flowing, _) = latest(&rx, Duration::from_millis(500));
    assert!(flowing.is_some_and(|n| n > 0), "the stream never flowed");
    act("isolate", &running.name);
    // Whatever was in flight when isolate returned may still arrive; then nothing.
    let (after, _) = latest(&rx, Duration::from_millis(300));
    let settled = after.or(flowing);
    let (later, end) = latest(&rx, Duration::from_millis(1500));
    assert!(
        later.is_none(),
        "bytes kept arriving after isolate: {settled:?} -> {later:?}"
    );
    // The stalled read gives up with a timeout: the connection was cut, not closed.
    let (_, end) = if end.is_some() {
        (None, end)
    } else {
        latest(&rx, Duration::from_secs(5))
    };
    assert_eq!(end.as_deref(), Some("err EAGAIN"));
    let events = running.finish();
    assert_eq!(contained(&events), ["isolate"], "{events:?}");
}

#[test]
fn isolate_makes_new_connections_fail_and_release_restores_them() {
    if !require_root("isolate_makes_new_connections_fail_and_release_restores_them") {
        return;
    }
    let listener = TcpListener::bind("127.0.0.2:0").expect("listen");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || for _ in listener.incoming() {});
    let f = Fixture::new(
        "base",
        &format!(
            "[filesystem]\nwrite = [\"{{workspace}}\"]\n[network]\negress = [{{ cidr = \"127.0.0.2/32\", ports = [{port}], proto = \"tcp\" }}]"
        ),
    );
    let flag = f.path("go");
    let probe = probe_bin().to_string_lossy().into_owned();
    // Connects once, waits for the flag, connects again; then the same after a second flag.
    let script = format!(
        "{probe} connect 127.0.0.2:{port}; touch {flag}0; while [ ! -e {flag}1 ]; do sleep 0.02; done; {probe} connect 127.0.0.2:{port}; touch {flag}1done; while [ ! -e {flag}2 ]; do sleep 0.02; done; {probe} connect 127.0.0.2:{port}"
    );
    let events = f.dir.path().join("events.jsonl");
    let child = f
        .command_with(
            &["--events", &events.to_string_lossy()],
            &["/bin/sh", "-c", &script],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cordon runs");
    let name = format!("test-{}-0", child.id());
    let done = |step: &str| {
        let path = std::path::PathBuf::from(format!("{flag}{step}"));
        common::wait_until(
            &format!("the script's step {step}"),
            Duration::from_secs(10),
            || path.exists().then_some(()),
        );
    };
    done("0");
    act("isolate", &name);
    std::fs::write(format!("{flag}1"), "").expect("flag");
    done("1done");
    act("release", &name);
    std::fs::write(format!("{flag}2"), "").expect("flag");
    let out = child.wait_with_output().expect("wait");
    let answers: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(answers, ["ok", "err EPERM", "ok"]);
    let events = read_events(&events);
    assert_eq!(contained(&events), ["isolate", "release"], "{events:?}");
    let denied = only(&events, "network_denied");
    assert_eq!(denied["reason"], "isolated");
    // The terminal is the sandboxed command's too: it is not told it was cut off.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("isolate") && !stderr.contains("release"),
        "{stderr}"
    );
}

#[test]
fn freeze_stops_a_busy_loop_and_thaw_resumes_it() {
    if !require_root("freeze_stops_a_busy_loop_and_thaw_resumes_it") {
        return;
    }
    let f = Fixture::new("base", "");
    let running = Running::start(&f, &["spin", "4"]);
    act("freeze", &running.name);
    let frozen_at = running.cpu_usec();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(running.cpu_usec(), frozen_at, "CPU time grew while frozen");
    act("thaw", &running.name);
    common::wait_until("the loop to resume", Duration::from_secs(10), || {
        (running.cpu_usec() > frozen_at + 100_000).then_some(())
    });
    let events = running.finish();
    assert_eq!(contained(&events), ["freeze", "thaw"], "{events:?}");
}

#[test]
fn kill_leaves_no_process_of_the_sandbox() {
    if !require_root("kill_leaves_no_process_of_the_sandbox") {
        return;
    }
    let f = Fixture::new("base", "");
    // A process tree: the probe forks, and the child spins.
    let mut running = Running::start(&f, &["fork", "spin", "30"]);
    let cgroup = running.cgroup();
    act("kill", &running.name);
    assert!(
        !populated(&cgroup),
        "processes are left in {}",
        cgroup.display()
    );
    let status = running.child.wait().expect("wait");
    assert!(
        !status.success(),
        "cordon run reported success for a killed sandbox"
    );
    // cordon run removes the cgroup once its sandbox is gone.
    assert!(!cgroup.exists());
    let ps = Command::new(cordon_bin())
        .arg("ps")
        .output()
        .expect("cordon ps");
    assert!(!String::from_utf8_lossy(&ps.stdout).contains(&running.name));
}

#[test]
fn actions_on_a_sandbox_that_does_not_exist_fail_clearly() {
    if !require_root("actions_on_a_sandbox_that_does_not_exist_fail_clearly") {
        return;
    }
    for action in ["kill", "freeze", "thaw", "isolate", "release"] {
        let out = Command::new(cordon_bin())
            .args([action, "no-such-sandbox-0"])
            .output()
            .expect("cordon");
        assert_eq!(out.status.code(), Some(1), "{action}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("no such sandbox"),
            "{action}"
        );
    }
    let out = Command::new(cordon_bin())
        .args(["kill", "../../x"])
        .output()
        .expect("cordon");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a sandbox name"));
}

#[test]
fn sigkill_of_the_loader_leaves_every_sandbox_enforced() {
    if !require_root("sigkill_of_the_loader_leaves_every_sandbox_enforced") {
        return;
    }
    // Unpin the programs so that the next `cordon run` loads them afresh: that one is the loader.
    if let Some(bpffs) = common::mount_point("bpf") {
        for entry in std::fs::read_dir(bpffs.join("cordon"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry.path().is_dir() {
                std::fs::remove_dir_all(entry.path()).expect("unpin the programs");
            }
        }
    }
    let listener = TcpListener::bind("127.0.0.2:0").expect("listen");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || for _ in listener.incoming() {});
    let rules = format!(
        "[filesystem]\nwrite = [\"{{workspace}}\"]\n[network]\negress = [{{ cidr = \"127.0.0.2/32\", ports = [{port}], proto = \"tcp\" }}]"
    );
    let loader_fixture = Fixture::new("base", &rules);
    let mut loader = Running::start(&loader_fixture, &["sleep", "30"]);
    let pins = common::mount_point("bpf")
        .expect("cordon mounted bpffs")
        .join("cordon");
    assert!(std::fs::read_dir(&pins)
        .expect("pins")
        .flatten()
        .any(|e| e.path().join("links").is_dir()));

    let f = Fixture::new("base", &rules);
    let flag = f.path("go");
    let probe = probe_bin().to_string_lossy().into_owned();
    let script = format!(
        "while [ ! -e {flag} ]; do sleep 0.02; done; {probe} connect 127.0.0.3:{port}; {probe} connect 127.0.0.2:{port}; {probe} udp-send 127.0.0.2:{port}"
    );
    let other = f
        .command(&["/bin/sh", "-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .expect("cordon runs");
    common::wait_for_sandbox("test", other.id());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(loader.child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("SIGKILL the loader");
    let _ = loader.child.wait();
    std::fs::write(&flag, "").expect("flag");
    let out = other.wait_with_output().expect("wait");
    let answers: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(
        answers,
        ["err EPERM", "ok", "err EPERM"],
        "the policy must hold after the loader died"
    );
    // A sandbox started afterwards adopts the pinned programs and is held to its policy too.
    let g = Fixture::new("base", &rules);
    assert_eq!(
        g.probe(&["connect", &format!("127.0.0.3:{port}")]),
        "err EPERM"
    );
    assert_eq!(g.probe(&["connect", &format!("127.0.0.2:{port}")]), "ok");
    // ... and cleans up after the killed one: its sandbox died with it, its cgroup goes.
    assert!(
        !loader.cgroup().exists(),
        "{} was left behind",
        loader.cgroup().display()
    );
}

#[test]
fn ps_names_the_session_its_events_carry() {
    if !require_root("ps_names_the_session_its_events_carry") {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    let mut running = Running::start(&f, &["spin", "30"]);
    let ps = Command::new(cordon_bin())
        .args(["--json", "ps"])
        .output()
        .expect("cordon ps");
    let list: serde_json::Value = serde_json::from_slice(&ps.stdout).expect("ps --json");
    let listed = list
        .as_array()
        .and_then(|l| l.iter().find(|s| s["name"] == running.name.as_str()))
        .unwrap_or_else(|| panic!("{} not in {list}", running.name))
        .clone();
    let table = Command::new(cordon_bin())
        .arg("ps")
        .output()
        .expect("cordon ps");
    let session = listed["session"].as_str().expect("ps names the session");
    assert!(
        String::from_utf8_lossy(&table.stdout)
            .lines()
            .any(|l| l.starts_with(&running.name) && l.ends_with(session)),
        "the table shows it too: {}",
        String::from_utf8_lossy(&table.stdout)
    );
    act("kill", &running.name);
    let _ = running.child.wait();
    let events = read_events(&running.events);
    assert_eq!(only(&events, "session_started")["session"], session);
    let kill = only(&events, "contained");
    assert_eq!(kill["action"], "kill");
    assert_eq!(kill["session"], session, "the kill is the session's");
}

#[test]
fn killing_a_frozen_sandbox_reads_as_one_kill() {
    if !require_root("killing_a_frozen_sandbox_reads_as_one_kill") {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    let mut running = Running::start(&f, &["spin", "30"]);
    act("freeze", &running.name);
    // The freeze is seen before the kill (the watcher looks every 50 ms).
    common::wait_until("the freeze reported", Duration::from_secs(5), || {
        let events = read_events(&running.events);
        contained(&events)
            .contains(&"freeze".to_string())
            .then_some(())
    });
    act("kill", &running.name);
    let _ = running.child.wait();
    let events = read_events(&running.events);
    // The kernel thaws a killed cgroup for its processes to die, and the empty cgroup reads
    // frozen again: no responder did either.
    assert_eq!(contained(&events), ["freeze", "kill"], "{events:#?}");
}
