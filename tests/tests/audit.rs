//! `mode = "audit"` (`cordon run --audit`): the sandbox is built the same way, but what
//! enforce mode refuses is let through and reported with `enforced: false`: files, network,
//! DNS, syscalls. Each case runs twice: enforced (refused and reported, no `enforced` field)
//! and audited (done, and reported as let through). What audit mode still refuses for the
//! host's safety is refused, and reported as enforced.

mod common;

use common::dns::TestDns;
use common::{of_kind, require_root, Fixture};

/// The one event of `kind` in `events` that matches `pick`; fails when there is none.
fn find<'a>(
    events: &'a [serde_json::Value],
    kind: &str,
    pick: impl Fn(&serde_json::Value) -> bool,
) -> &'a serde_json::Value {
    let found: Vec<_> = of_kind(events, kind)
        .into_iter()
        .filter(|e| pick(e))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one such {kind} event: {events:#?}"
    );
    found[0]
}

/// A directory of the host outside every profile's view, and outside `/tmp` (which is the
/// sandbox's own in either mode): where the user's other files are.
fn host_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("cordon-e2e-audit-")
        .tempdir_in("/var/tmp")
        .expect("a directory in /var/tmp")
}

fn audited(e: &serde_json::Value) -> bool {
    e["enforced"] == false
}

fn enforced(e: &serde_json::Value) -> bool {
    // Written only when false: an enforced event does not carry the field.
    e.get("enforced").is_none()
}

#[test]
fn a_file_outside_the_view_is_read_in_audit_and_reported() {
    if !require_root("a_file_outside_the_view_is_read_in_audit_and_reported") {
        return;
    }
    // coding-agent does not show the host's other files: under enforce they are not there.
    let f = Fixture::new("coding-agent", "");
    let host = host_dir();
    let notes = host.path().join("notes.txt").to_string_lossy().into_owned();
    std::fs::write(&notes, "notes").expect("notes");
    let (answer, events) = f.probe_events(&[], &["read", &notes]);
    assert_eq!(answer, "err ENOENT", "the twin: enforced, it is not there");
    let e = find(&events, "file_denied", |e| e["path"] == notes.as_str());
    assert!(enforced(e), "{e}");

    let (answer, events) = f.probe_events(&["--audit"], &["read", &notes]);
    assert_eq!(answer, "ok", "audited, it reads");
    let e = find(&events, "file_denied", |e| e["path"] == notes.as_str());
    assert!(audited(e), "{e}");
    assert_eq!(e["access"], "fs.read_file");
    assert_eq!(e["layer"], "not_in_view");
    assert_eq!(e["process"]["comm"], "probe");
    assert!(e["session"].is_string(), "{e}");
}

#[test]
fn a_binary_in_a_tree_without_exec_runs_in_audit_and_is_reported() {
    if !require_root("a_binary_in_a_tree_without_exec_runs_in_audit_and_is_reported") {
        return;
    }
    let f = Fixture::new("coding-agent", common::NOEXEC_WORKSPACE);
    let dropped = f.path("dropped");
    std::fs::copy("/usr/bin/true", &dropped).expect("copy");
    let (answer, _) = f.probe_events(&[], &["exec", &dropped]);
    assert_eq!(
        answer, "err EACCES",
        "the twin: enforced, noexec refuses it"
    );

    let (answer, events) = f.probe_events(&["--audit"], &["run", &dropped]);
    assert_eq!(answer, "ok", "audited, it runs");
    let e = find(&events, "file_denied", |e| e["path"] == dropped.as_str());
    assert!(audited(e), "{e}");
    assert_eq!(e["access"], "fs.execute");
    assert_eq!(e["layer"], "noexec");
    assert_eq!(e["rule"], f.workspace.to_string_lossy().as_ref());
    assert_eq!(
        of_kind(&events, "exec")
            .iter()
            .filter(|x| x["filename"] == dropped.as_str())
            .count(),
        1,
        "the exec itself is reported as ever"
    );
}

/// A network namespace of the test's own, joined to the host by a veth pair: the host
/// side is 192.0.2.2, the far side 192.0.2.1 (TEST-NET-1: not one of the host's networks
/// Cordon keeps an audit out of). Removed on drop.
struct FarSide {
    name: String,
    veth: String,
}

impl FarSide {
    fn new() -> Self {
        let id = std::process::id();
        let far = FarSide {
            name: format!("cordon-e2e-{id}"),
            veth: format!("ce2e{id}"),
        };
        let peer = format!("{}p", far.veth);
        let ip = |args: &[&str]| {
            let out = std::process::Command::new("ip")
                .args(args)
                .output()
                .expect("ip runs");
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ip(&["netns", "add", &far.name]);
        ip(&[
            "link", "add", &far.veth, "type", "veth", "peer", "name", &peer,
        ]);
        ip(&["link", "set", &peer, "netns", &far.name]);
        ip(&["addr", "add", "192.0.2.2/30", "dev", &far.veth]);
        ip(&["link", "set", &far.veth, "up"]);
        for args in [
            vec!["addr", "add", "192.0.2.1/30", "dev", peer.as_str()],
            vec!["link", "set", peer.as_str(), "up"],
            vec!["link", "set", "lo", "up"],
        ] {
            let mut all = vec!["netns", "exec", far.name.as_str(), "ip"];
            all.extend(args);
            ip(&all);
        }
        far
    }

    /// A listener on the far side (bound by a thread that enters the namespace).
    fn listen(&self) -> std::net::TcpListener {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).expect("the namespace");
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            std::net::TcpListener::bind("192.0.2.1:0").expect("listen on the far side")
        })
        .join()
        .expect("the thread")
    }
}

impl Drop for FarSide {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.veth])
            .output();
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

#[test]
fn a_connection_no_rule_allows_is_made_in_audit_and_reported() {
    if !require_root("a_connection_no_rule_allows_is_made_in_audit_and_reported") {
        return;
    }
    let far = FarSide::new();
    let listener = far.listen();
    let to = listener.local_addr().expect("addr").to_string();
    let port = listener.local_addr().expect("addr").port();
    assert!(
        std::net::TcpStream::connect(&to).is_ok(),
        "the twin: unconfined, it connects"
    );
    // A rule for the port elsewhere: Landlock lets the port through, eBPF refuses the address.
    let f = Fixture::new(
        "base",
        &format!("[network]\negress = [{{ host = \"allowed.test\", ports = [{port}] }}]\n"),
    );
    let (answer, events) = f.probe_events(&[], &["connect", &to]);
    assert_eq!(answer, "err EPERM", "enforced, no rule allows it");
    assert!(enforced(
        find(&events, "network_denied", |e| e["port"] == port)
    ));

    let (answer, events) = f.probe_events(&["--audit"], &["connect", &to]);
    assert_eq!(answer, "ok", "audited, it connects");
    let e = find(&events, "network_denied", |e| e["port"] == port);
    assert!(audited(e), "{e}");
    assert_eq!(e["address"], "192.0.2.1");
    assert_eq!(e["reason"], "not_allowed");
}

#[test]
fn audit_keeps_the_sandbox_out_of_the_hosts_own_services() {
    if !require_root("audit_keeps_the_sandbox_out_of_the_hosts_own_services") {
        return;
    }
    // A service of the host on loopback (a database, a docker API on TCP, cloud metadata).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let to = listener.local_addr().expect("addr").to_string();
    let port = listener.local_addr().expect("addr").port();
    assert!(
        std::net::TcpStream::connect(&to).is_ok(),
        "the twin: unconfined, it connects"
    );
    // base is offline when enforced; audited, it has the host's network, not its services.
    let f = Fixture::new("base", "");
    let (answer, events) = f.probe_events(&["--audit"], &["connect", &to]);
    assert_eq!(answer, "err EPERM");
    let e = find(&events, "network_denied", |e| e["port"] == port);
    assert!(enforced(e), "{e}");

    // What the profile allows there, the audit allows too.
    let f = Fixture::new(
        "base",
        &format!("[network]\negress = [{{ cidr = \"127.0.0.0/8\", ports = [{port}], proto = \"tcp\" }}]\n"),
    );
    let (answer, _) = f.probe_events(&["--audit"], &["connect", &to]);
    assert_eq!(answer, "ok");
}

#[test]
fn a_bind_the_profile_does_not_allow_is_made_in_audit_and_reported() {
    if !require_root("a_bind_the_profile_does_not_allow_is_made_in_audit_and_reported") {
        return;
    }
    let port = common::collector::free_port();
    let at = format!("127.0.0.1:{port}");
    let f = Fixture::new("coding-agent", "");
    let (answer, _) = f.probe_events(&[], &["bind", &at]);
    assert!(answer.starts_with("err"), "the twin: enforced, {answer}");

    let (answer, events) = f.probe_events(&["--audit"], &["bind", &at]);
    assert_eq!(answer, "ok", "audited, it binds");
    let e = find(&events, "other_denied", |e| e["blockers"] == "net.bind_tcp");
    assert!(audited(e), "{e}");
    assert_eq!(e["detail"], format!("saddr=127.0.0.1 src={port}"));
    assert_eq!(e["process"]["comm"], "probe");
}

#[test]
fn a_name_no_rule_allows_is_answered_in_audit_and_reported_once() {
    if !require_root("a_name_no_rule_allows_is_answered_in_audit_and_reported_once") {
        return;
    }
    let dns = TestDns::start(&[("denied.test", &["127.0.0.3"])]);
    // A rule for loopback datagrams, so the test server's answers are not rebinding.
    let f = Fixture::new(
        "base",
        "[network]\negress = [{ host = \"allowed.test\", ports = [443] }, { cidr = \"127.0.0.0/8\", ports = [9], proto = \"udp\" }]\n",
    );
    let (answer, _) = f.probe_events(&dns.option(), &["resolve", "denied.test"]);
    assert!(answer.starts_with("err"), "the twin: enforced, {answer}");
    assert!(!dns.asked().contains(&"denied.test".to_string()));

    let mut options = dns.option();
    options.push("--audit");
    let (answer, events) = f.probe_events(&options, &["resolve", "denied.test"]);
    assert_eq!(answer, "value 127.0.0.3", "audited, it is answered");
    let e = find(&events, "dns_denied", |e| e["domain"] == "denied.test");
    assert!(audited(e), "{e}");
    assert_eq!(e["reason"], "not_allowed");
    assert_eq!(e["process"]["comm"], "probe");
}

#[test]
fn a_denied_syscall_is_made_in_audit_and_reported() {
    if !require_root("a_denied_syscall_is_made_in_audit_and_reported") {
        return;
    }
    let f = Fixture::new("coding-agent", "[syscalls]\ndeny = [\"personality\"]\n");
    let (answer, events) = f.probe_events(&[], &["personality"]);
    assert_eq!(
        answer, "err EPERM",
        "the twin: enforced, seccomp refuses it"
    );
    let e = find(&events, "syscall_denied", |e| e["syscall"] == "personality");
    assert!(enforced(e), "{e}");

    let (answer, events) = f.probe_events(&["--audit"], &["personality"]);
    assert_eq!(answer, "ok", "audited, the kernel answers it");
    let e = find(&events, "syscall_denied", |e| e["syscall"] == "personality");
    assert!(audited(e), "{e}");
}

#[test]
fn audit_still_refuses_what_would_end_it_or_change_the_host() {
    if !require_root("audit_still_refuses_what_would_end_it_or_change_the_host") {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    // Loading eBPF (which could blind the programs that report the audit).
    let (answer, events) = f.probe_events(&["--audit"], &["bpf"]);
    assert_eq!(answer, "err EPERM");
    let e = find(&events, "syscall_denied", |e| e["syscall"] == "bpf");
    assert!(enforced(e), "{e}");
    // Keyrings outlive the sandbox and hold the user's credentials.
    let (answer, events) = f.probe_events(&["--audit"], &["keyctl"]);
    assert_eq!(answer, "err EPERM");
    let e = find(&events, "syscall_denied", |e| e["syscall"] == "keyctl");
    assert!(enforced(e), "{e}");

    // Writing outside the trees the profile writes: the host's files stay as they are.
    let host = host_dir();
    let planted = host.path().join("planted").to_string_lossy().into_owned();
    let (answer, events) = f.probe_events(&["--audit"], &["write", &planted]);
    assert_eq!(answer, "err EROFS");
    assert!(!host.path().join("planted").exists());
    let e = find(&events, "file_denied", |e| e["path"] == planted.as_str());
    assert!(enforced(e), "{e}");

    // A denied secret stays covered, and the attempt is a denial like under enforce.
    let secrets = host_dir();
    let key = secrets.path().join("id_ed25519");
    std::fs::write(&key, "not real").expect("key");
    let f = Fixture::new(
        "coding-agent",
        &format!("[filesystem]\ndeny = [\"{}\"]\n", secrets.path().display()),
    );
    let key = key.to_string_lossy().into_owned();
    let (answer, events) = f.probe_events(&["--audit"], &["read", &key]);
    assert_eq!(answer, "err EACCES");
    let e = find(&events, "file_denied", |e| e["path"] == key.as_str());
    assert!(enforced(e), "{e}");
    assert_eq!(e["layer"], "deny");
    assert_eq!(e["rule"], secrets.path().to_string_lossy().as_ref());

    // The repository's metadata stays read-only: the host's git runs what it names.
    let (answer, _) = f.probe_events(&["--audit"], &["write", ".git/config"]);
    assert_eq!(answer, "err EROFS");
}

#[test]
fn audit_does_not_show_the_hosts_service_sockets() {
    if !require_root("audit_does_not_show_the_hosts_service_sockets") {
        return;
    }
    // A service's socket under /run (docker's, systemd's, cordond's live there): a read-only
    // mount does not stop a connect, so the audited sandbox does not see /run at all.
    let sock =
        std::path::PathBuf::from(format!("/run/cordon-e2e-audit-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&sock);
    let listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
    std::fs::set_permissions(&sock, std::os::unix::fs::PermissionsExt::from_mode(0o777))
        .expect("chmod");
    assert!(
        std::os::unix::net::UnixStream::connect(&sock).is_ok(),
        "the twin: unconfined, it connects"
    );
    let f = Fixture::new("coding-agent", "");
    let (answer, _) = f.probe_events(&["--audit"], &["connect-unix", &sock.to_string_lossy()]);
    drop(listener);
    let _ = std::fs::remove_file(&sock);
    assert_eq!(answer, "err ENOENT");
}

#[test]
fn an_audited_run_reports_each_path_once() {
    if !require_root("an_audited_run_reports_each_path_once") {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    let host = host_dir();
    let notes = host.path().join("notes.txt").to_string_lossy().into_owned();
    std::fs::write(&notes, "notes").expect("notes");
    let each: Vec<&str> = std::iter::repeat_n(notes.as_str(), 50).collect();
    let mut args = vec!["read-each"];
    args.extend(&each);
    let (_, events) = f.probe_events(&["--audit"], &args);
    let found: Vec<_> = of_kind(&events, "file_denied")
        .into_iter()
        .filter(|e| e["path"] == notes.as_str())
        .collect();
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        of_kind(&events, "events_lost").is_empty(),
        "{:?}",
        of_kind(&events, "events_lost")
    );
}

/// Runs `script` under `sh` in the fixture's sandbox, audited; returns its stdout and events.
fn audited_shell(f: &Fixture, script: &str) -> (String, Vec<serde_json::Value>) {
    let events = f.dir.path().join(format!(
        "shell-{}.jsonl",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .as_nanos()
    ));
    let out = f
        .command_with(
            &["--audit", "-q", "--events", &events.to_string_lossy()],
            &["/bin/sh", "-c", script],
        )
        .output()
        .expect("cordon runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (stdout, common::read_events(&events))
}

/// Whether some event says the audited sandbox was let read `secret`, however it named it.
fn reported_reading(events: &[serde_json::Value], secret: &str) -> bool {
    of_kind(events, "file_denied").iter().any(|e| {
        audited(e)
            && e["access"] == "fs.read_file"
            && (e["target"] == secret || e["path"] == secret)
    })
}

#[test]
fn a_read_outside_the_view_is_reported_however_the_path_names_it() {
    if !require_root("a_read_outside_the_view_is_reported_however_the_path_names_it") {
        return;
    }
    let host = host_dir();
    let secret_dir = host.path().join("a/b/c");
    std::fs::create_dir_all(&secret_dir).expect("dirs");
    let secret = host.path().join("secret.txt");
    std::fs::write(&secret, "SECRET").expect("secret");
    let secret = secret.to_string_lossy().into_owned();
    assert_eq!(
        std::fs::read_to_string(&secret).expect("the twin: unconfined, it reads"),
        "SECRET"
    );
    let f = Fixture::new("coding-agent", "");
    let w = f.workspace.to_string_lossy().into_owned();
    let tricks = [
        // A link in the sandbox's own /tmp, which the host's tree does not have.
        format!("ln -s {secret} /tmp/s && cat /tmp/s"),
        // `..` after a link: the kernel walks from where the link led.
        format!(
            "mkdir -p {w}/d1/d2/d3 && ln -s {} {w}/d1/d2/d3/lnk && cat {w}/d1/d2/d3/lnk/../../../secret.txt",
            secret_dir.display()
        ),
        // A link read once to an allowed file, then swapped for the secret.
        format!("echo ok > {w}/ok.txt && ln -s {w}/ok.txt {w}/l && cat {w}/l && rm {w}/l && ln -s {secret} {w}/l && cat {w}/l && rm {w}/l"),
        // Through a descriptor's entry in /proc, from a process gone by the time anyone looks.
        format!("cd {} && cat /proc/self/cwd/secret.txt", host.path().display()),
        format!("exec 7<{} && cat /proc/self/fd/7/secret.txt", host.path().display()),
    ];
    for trick in tricks {
        let (out, events) = audited_shell(&f, &trick);
        assert!(out.contains("SECRET"), "{trick}: the read happened: {out}");
        assert!(
            reported_reading(&events, &secret),
            "{trick}: no event reports reading {secret}: {:#?}",
            of_kind(&events, "file_denied")
        );
    }
}

#[test]
fn audit_covers_the_hosts_sockets_outside_run_too() {
    if !require_root("audit_covers_the_hosts_sockets_outside_run_too") {
        return;
    }
    // Services keep sockets elsewhere too (LXD under /var/snap, databases under /var/lib).
    let host = host_dir();
    let sock = host.path().join("service.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
    assert!(
        std::os::unix::net::UnixStream::connect(&sock).is_ok(),
        "the twin: unconfined, it connects"
    );
    let f = Fixture::new("coding-agent", "");
    let (answer, _) = f.probe_events(&["--audit"], &["connect-unix", &sock.to_string_lossy()]);
    drop(listener);
    // Covered by /dev/null, which is no socket.
    assert_eq!(answer, "err ECONNREFUSED", "covered like a denied file");
}

#[test]
fn a_library_mapped_from_a_tree_without_exec_is_reported_in_audit() {
    if !require_root("a_library_mapped_from_a_tree_without_exec_is_reported_in_audit") {
        return;
    }
    // A compiled extension in a venv: enforce mode's noexec mount refuses to map it.
    let f = Fixture::new("coding-agent", common::NOEXEC_WORKSPACE);
    let lib = f.path("libz.so");
    std::fs::copy("/usr/lib/x86_64-linux-gnu/libz.so.1", &lib).expect("copy a library");
    let load =
        format!("/usr/bin/python3 -c 'import ctypes; ctypes.CDLL(\"{lib}\"); print(\"loaded\")'");
    let out = f
        .command(&["/bin/sh", "-c", &load])
        .output()
        .expect("cordon runs");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("loaded"),
        "the twin: enforced, the map is refused"
    );
    let (out, events) = audited_shell(&f, &load);
    assert!(out.contains("loaded"), "audited, it loads: {out}");
    let e = find(&events, "file_denied", |e| e["path"] == lib.as_str());
    assert!(audited(e), "{e}");
    assert_eq!(e["access"], "fs.execute");
    assert_eq!(e["layer"], "noexec");
}
