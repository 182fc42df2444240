//! The process inside: environment, identity, capabilities, signals, exit status, terminal.

mod common;

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use common::{cgroup2_mount, probe_bin, require_root, Fixture};

#[test]
fn secrets_in_the_callers_environment_never_reach_the_sandbox() {
    if !require_root("secrets_in_the_callers_environment_never_reach_the_sandbox") {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    let out = f
        .command(&["/usr/bin/env"])
        .env("OPENAI_API_KEY", "sk-secret")
        .env("AWS_SECRET_ACCESS_KEY", "aws-secret")
        .env("LANG", "C.UTF-8")
        .output()
        .expect("run");
    let env = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(!env.contains("secret"), "{env}");
    assert!(
        env.lines().any(|l| l == "LANG=C.UTF-8"),
        "kept variables pass: {env}"
    );
    assert!(
        env.lines().any(|l| l == "PIP_NO_INPUT=1"),
        "set_env applies: {env}"
    );
}

#[test]
fn root_holds_no_capabilities_inside_unless_the_profile_lists_them() {
    if !require_root("root_holds_no_capabilities_inside_unless_the_profile_lists_them") {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    let caps = f.probe(&["caps"]);
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert!(
            caps.contains(&format!("{set}=0000000000000000")),
            "{set}: {caps}"
        );
    }
    assert_eq!(
        f.probe(&["ids"]),
        "value uid=0 gid=0 groups=[]".replace("[]", &groups_of_root())
    );

    // CAP_NET_BIND_SERVICE (bit 10) kept: it is in every set and binding port 80 works.
    let f = Fixture::new(
        "coding-agent",
        "[process]\ncapabilities = [\"CAP_NET_BIND_SERVICE\"]\n[network]\nbind_ports = [80]",
    );
    let caps = f.probe(&["caps"]);
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert!(
            caps.contains(&format!("{set}=0000000000000400")),
            "{set}: {caps}"
        );
    }
}

fn groups_of_root() -> String {
    // The caller's supplementary groups are kept when no user is named.
    let groups: Vec<nix::unistd::Gid> = nix::unistd::getgroups().unwrap_or_default();
    format!("{groups:?}")
}

#[test]
fn user_in_the_profile_runs_the_command_as_that_user() {
    if !require_root("user_in_the_profile_runs_the_command_as_that_user") {
        return;
    }
    let nobody = nix::unistd::User::from_name("nobody")
        .expect("lookup")
        .expect("nobody exists");
    let f = Fixture::new("coding-agent", "[process]\nuser = \"nobody\"");
    let ids = f.probe(&["ids"]);
    assert!(
        ids.starts_with(&format!("value uid={} gid={}", nobody.uid, nobody.gid)),
        "{ids}"
    );
    let caps = f.probe(&["caps"]);
    assert!(caps.contains("CapEff=0000000000000000"), "{caps}");
}

#[test]
fn under_sudo_the_sandbox_runs_as_the_user_who_ran_sudo() {
    if !require_root("under_sudo_the_sandbox_runs_as_the_user_who_ran_sudo") {
        return;
    }
    let nobody = nix::unistd::User::from_name("nobody")
        .expect("lookup")
        .expect("nobody exists");
    let f = Fixture::new("coding-agent", "");
    use std::os::unix::fs::PermissionsExt;
    for dir in [f.dir.path(), f.workspace.as_path()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let out = f
        .command(&[common::probe_bin().to_string_lossy().as_ref(), "ids"])
        .env("SUDO_UID", nobody.uid.to_string())
        .env("SUDO_GID", nobody.gid.to_string())
        .output()
        .expect("run");
    let ids = String::from_utf8_lossy(&out.stdout);
    assert!(
        ids.starts_with(&format!("value uid={} gid={}", nobody.uid, nobody.gid)),
        "{ids}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn signals_to_processes_outside_the_sandbox_are_refused() {
    if !require_root("signals_to_processes_outside_the_sandbox_are_refused") {
        return;
    }
    let mut outside = std::process::Command::new("/bin/sleep")
        .arg("30")
        .spawn()
        .expect("sleep");
    let f = Fixture::new("coding-agent", "");
    // The sandbox has its own PID namespace: processes outside cannot even be named
    // (and Landlock's signal scoping would refuse them if they could).
    assert_eq!(f.probe(&["kill", &outside.id().to_string()]), "err ESRCH");
    // Nor can its own init (PID 1), whose Landlock domain encloses the command's.
    assert_eq!(
        f.probe(&["signal0", "1"]),
        "err EPERM",
        "init is the supervisor's"
    );
    assert!(
        outside.try_wait().expect("try_wait").is_none(),
        "the outside process must survive"
    );
    // Its own children are fair game.
    assert_eq!(f.probe(&["kill-child"]), "ok");
    let _ = outside.kill();
    let _ = outside.wait();
}

#[test]
fn abstract_unix_sockets_outside_the_sandbox_are_refused() {
    if !require_root("abstract_unix_sockets_outside_the_sandbox_are_refused") {
        return;
    }
    use std::os::linux::net::SocketAddrExt;
    let name = format!("cordon-e2e-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("addr");
    let _listener = std::os::unix::net::UnixListener::bind_addr(&addr).expect("bind");
    let f = Fixture::new("coding-agent", "");
    assert_eq!(f.probe(&["connect-abstract", &name]), "err EPERM");
}

#[test]
fn exit_codes_and_signals_pass_through() {
    if !require_root("exit_codes_and_signals_pass_through") {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    assert_eq!(f.run(&["/bin/sh", "-c", "exit 7"]).status.code(), Some(7));
    assert_eq!(
        f.run(&["/bin/sh", "-c", "kill -TERM $$"]).status.signal(),
        Some(libc::SIGTERM)
    );
    assert_eq!(f.run(&["/no/such/binary"]).status.code(), Some(127));
    assert_eq!(f.run(&["/usr/sbin/nologin"]).status.code(), Some(126));
}

/// A command that cannot be executed ends with 126, run after run: its failure is written
/// while init reports the command running, and the two reports once shared a line, which
/// read as a failed setup (125) in about one run of twenty.
#[test]
fn a_command_that_cannot_run_says_so_every_time() {
    if !require_root("a_command_that_cannot_run_says_so_every_time") {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    for run in 0..100 {
        let out = f.run(&["/usr/sbin/nologin"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(126), "run {run}: {stderr}");
        assert!(
            stderr.contains("cannot execute `/usr/sbin/nologin`"),
            "run {run}: says why: {stderr}"
        );
    }
    // A name found nowhere on PATH.
    let out = f.run(&["no-such-command-here"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(127), "{stderr}");
    assert!(
        stderr.contains("cannot execute `no-such-command-here`")
            && stderr.contains("No such file or directory"),
        "{stderr}"
    );
}

#[test]
fn sigterm_to_cordon_reaches_the_sandboxed_process() {
    if !require_root("sigterm_to_cordon_reaches_the_sandboxed_process") {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    let mut child = f
        .command(&[
            "/bin/sh",
            "-c",
            "trap 'echo got-term; exit 3' TERM; echo trapped; while :; do sleep 0.05; done",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // Once the shell says its trap is set.
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).expect("read");
    assert_eq!(first.trim(), "trapped");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("kill");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "sandbox did not end after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    let _ = stdout.read_to_string(&mut out);
    assert_eq!(status.code(), Some(3));
    assert!(out.contains("got-term"), "{out}");
}

#[test]
fn an_interactive_shell_works_on_a_terminal_and_cannot_inject_input() {
    if !require_root("an_interactive_shell_works_on_a_terminal_and_cannot_inject_input") {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let mut cmd = f.command(&["/bin/bash", "--norc", "--noprofile", "-i"]);
    let slave = pty.slave;
    cmd.stdin(slave.try_clone().expect("dup"))
        .stdout(slave.try_clone().expect("dup"))
        .stderr(slave.try_clone().expect("dup"))
        .env("TERM", "dumb")
        .env("PS1", "sandbox$ ");
    // SAFETY: runs in the forked child before exec; setsid and TIOCSCTTY are async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            nix::unistd::setsid()?;
            if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn");
    // Only the sandbox may hold the terminal's slave side, so reads see EIO when it is gone.
    drop(cmd);
    drop(slave);
    let mut master = std::fs::File::from(pty.master);
    let probe = probe_bin();
    let script = format!(
        "test -t 0 && echo IS-A-TTY; tty; ls /dev/pts >/dev/null 2>&1 || echo OTHERS-HIDDEN; {p} isatty; {p} tiocsti; stty size; {p} read {key}; {p} read {key}; echo AFTER-DENIALS; exit 5\n",
        key = f.home_path(".ssh/id_ed25519"),
        p = probe.display()
    );
    master.write_all(script.as_bytes()).expect("type");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        // Poll first, so a sandbox that never exits fails the test instead of hanging it.
        let mut fds = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&master),
            nix::poll::PollFlags::POLLIN,
        )];
        if nix::poll::poll(&mut fds, 200u16).unwrap_or(0) == 0 {
            continue;
        }
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break, // EIO once the last process on the terminal is gone
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&seen);
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(5), "{text}");
    assert!(text.contains("IS-A-TTY"), "{text}");
    // `tty` names the terminal (its device is in the view), and no other terminal is.
    assert!(text.contains("\n/dev/pts/"), "{text}");
    assert!(text.contains("OTHERS-HIDDEN"), "{text}");
    assert!(text.contains("value true"), "{text}");
    assert!(
        text.contains("err EPERM"),
        "TIOCSTI must be refused: {text}"
    );
    // The terminal is the command's: denials are not drawn over it, but listed at the end.
    let (during, after) = text
        .split_once("denials while the command ran")
        .unwrap_or_else(|| panic!("no summary at exit: {text}"));
    assert!(during.contains("AFTER-DENIALS"), "{text}");
    assert!(
        !during.contains("denied ("),
        "a denial line while it ran: {during}"
    );
    assert!(after.contains("fs.read_file of"), "{after}");
}

#[test]
fn strict_refuses_a_landlock_abi_above_the_kernel_and_best_effort_runs_with_a_warning() {
    if !require_root(
        "strict_refuses_a_landlock_abi_above_the_kernel_and_best_effort_runs_with_a_warning",
    ) {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    let run = |compat: &str| {
        let text = format!("[profile]\nname = \"future\"\nextends = [\"test\"]\nlandlock_abi = 99\ncompat = \"{compat}\"\n");
        std::fs::write(f.dir.path().join("future.toml"), text).expect("profile");
        std::process::Command::new(common::cordon_bin())
            .arg("--profile-path")
            .arg(common::repo().join("profiles"))
            .args(["run", "--profile"])
            .arg(f.dir.path().join("future.toml"))
            .arg("--workspace")
            .arg(&f.workspace)
            .args(["--", "/usr/bin/true"])
            .env("HOME", &f.home)
            .output()
            .expect("run")
    };
    let strict = run("strict");
    let err = String::from_utf8_lossy(&strict.stderr);
    assert_eq!(strict.status.code(), Some(125), "{err}");
    assert!(
        err.contains("the profile needs 99") && err.contains("strict"),
        "{err}"
    );
    let lenient = run("best-effort");
    assert!(
        lenient.status.success(),
        "{}",
        String::from_utf8_lossy(&lenient.stderr)
    );
}

#[test]
fn tcp_connect_and_bind_follow_the_port_lists() {
    if !require_root("tcp_connect_and_bind_follow_the_port_lists") {
        return;
    }
    let allowed = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let denied = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let allowed_port = allowed.local_addr().expect("addr").port();
    let denied_port = denied.local_addr().expect("addr").port();
    let f = Fixture::new(
        "coding-agent",
        &format!("[network]\nconnect_ports = [{allowed_port}]\nbind_ports = [18080]"),
    );
    assert_eq!(
        f.probe(&["connect", &format!("127.0.0.1:{allowed_port}")]),
        "ok"
    );
    assert_eq!(
        f.probe(&["connect", &format!("127.0.0.1:{denied_port}")]),
        "err EACCES"
    );
    assert_eq!(f.probe(&["bind", "127.0.0.1:18080"]), "ok");
    assert_eq!(f.probe(&["bind", "127.0.0.1:18081"]), "err EACCES");
}

#[test]
fn nothing_started_in_the_sandbox_outlives_it() {
    if !require_root("nothing_started_in_the_sandbox_outlives_it") {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    let marker = format!("{}.{}", 200 + std::process::id() % 100, std::process::id());
    // Two processes left behind, one in a session of its own, neither holding the output.
    let script = format!(
        "setsid sleep {marker} >/dev/null 2>&1 & (sleep {marker} >/dev/null 2>&1 &) ; echo started"
    );
    let left = || {
        let out = std::process::Command::new("pgrep")
            .args(["-f", &format!("sleep {marker}")])
            .output()
            .expect("pgrep");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Unconfined, both outlive the shell that started them.
    let out = std::process::Command::new("/bin/sh")
        .args(["-c", &script])
        .output()
        .expect("sh runs");
    assert!(String::from_utf8_lossy(&out.stdout).contains("started"));
    let outside = left();
    let _ = std::process::Command::new("pkill")
        .args(["-KILL", "-f", &format!("sleep {marker}")])
        .status();
    assert_eq!(outside.lines().count(), 2, "unconfined: {outside}");
    // Sandboxed, they are gone when `cordon run` returns: its end waits for the kernel to
    // have ended every process of the sandbox, not only the command.
    let out = f.run(&["/bin/sh", "-c", &script]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("started"));
    let inside = left();
    assert!(inside.is_empty(), "left behind: {inside}");
}

#[test]
fn the_sandbox_sees_only_its_own_processes() {
    if !require_root("the_sandbox_sees_only_its_own_processes") {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    let out = f.run(&["/bin/sh", "-c", "ls /proc | grep -c '^[0-9]'"]);
    let count: usize = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(usize::MAX);
    // init, sh, ls, grep.
    assert!(count <= 4, "the sandbox sees {count} processes");
}

/// The network namespace of an offline sandbox is made ahead of the fork, on a thread of
/// `cordon run`, and entered by init: the command must be in it, not in the host's (where
/// only the eBPF programs would stand between it and the host's network).
#[test]
fn an_offline_sandbox_is_in_a_network_namespace_of_its_own() {
    if !require_root("an_offline_sandbox_is_in_a_network_namespace_of_its_own") {
        return;
    }
    let host_ns = std::fs::read_link("/proc/self/ns/net").expect("host netns");
    let host_devs = std::fs::read_to_string("/proc/net/dev").expect("host devices");
    // The twin: this host has an interface besides loopback, so the check below can fail.
    assert!(
        host_devs
            .lines()
            .skip(2)
            .any(|l| !l.trim_start().starts_with("lo:")),
        "the host shows only loopback: {host_devs}"
    );
    let f = Fixture::new("offline-tool", "");
    let out = f.run(&[
        "/bin/sh",
        "-c",
        "readlink /proc/self/ns/net; tail -n +3 /proc/net/dev",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines = stdout.lines();
    let inside_ns = lines.next().unwrap_or_default();
    assert!(inside_ns.starts_with("net:["), "{stdout}");
    assert_ne!(
        inside_ns,
        host_ns.to_string_lossy(),
        "the host's network namespace"
    );
    let devices: Vec<&str> = lines
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(devices, ["lo"], "{stdout}");
}

#[test]
fn an_offline_sandbox_has_no_network_at_all() {
    if !require_root("an_offline_sandbox_has_no_network_at_all") {
        return;
    }
    let listener = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    listener
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let addr = listener.local_addr().expect("addr").to_string();
    // offline-tool allows no TCP port: it gets a network namespace with loopback only.
    let f = Fixture::new("offline-tool", "");
    f.probe(&["udp-send", &addr]);
    let mut buf = [0u8; 16];
    assert!(
        listener.recv_from(&mut buf).is_err(),
        "a datagram left the offline sandbox"
    );
    // Even DNS: an offline sandbox has no resolver, and the eBPF layer refuses the datagram
    // before the empty namespace would.
    assert_eq!(f.probe(&["udp-send", "192.0.2.1:53"]), "err EPERM");

    // The same datagram from a sandbox allowed to send it arrives: the check above can fail.
    let port = listener.local_addr().expect("addr").port();
    let g = Fixture::new(
        "coding-agent",
        &format!("[network]\negress = [{{ cidr = \"127.0.0.1/32\", ports = [{port}], proto = \"udp\" }}]"),
    );
    assert_eq!(g.probe(&["udp-send", &addr]), "ok");
    assert!(
        listener.recv_from(&mut buf).is_ok(),
        "the datagram from the online sandbox must arrive"
    );
}

#[test]
fn sigpipe_has_its_default_action_inside() {
    if !require_root("sigpipe_has_its_default_action_inside") {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    let out = f.run(&[
        "/bin/bash",
        "-c",
        "yes | head -1 >/dev/null; echo ${PIPESTATUS[0]}",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "141");
}

#[test]
fn every_sandbox_lives_in_its_own_cgroup_which_is_removed_afterwards() {
    if !require_root("every_sandbox_lives_in_its_own_cgroup_which_is_removed_afterwards") {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    let out = f.run(&["/bin/cat", "/proc/self/cgroup"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("0::"))
        .expect("a cgroup v2 line");
    let relative = line.trim_start_matches("0::");
    assert!(relative.starts_with("/cordon/test-"), "{line}");
    // Named for operators: the profile and the launching cordon's pid.
    let mount = common::cgroup2_mount();
    let dir = std::path::Path::new(&mount).join(relative.trim_start_matches('/'));
    assert!(!dir.exists(), "{} is left behind", dir.display());
}

#[test]
fn process_and_memory_limits_are_enforced_on_v2_or_v1() {
    if !require_root("process_and_memory_limits_are_enforced_on_v2_or_v1") {
        return;
    }
    let controllers =
        std::fs::read_to_string(std::path::Path::new(&cgroup2_mount()).join("cgroup.controllers"))
            .expect("cgroup.controllers");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let held = |controller: &str| {
        controllers.split_whitespace().any(|c| c == controller)
            || mountinfo.lines().any(|l| {
                l.split_once(" - ").is_some_and(|(_, after)| {
                    after.starts_with("cgroup ")
                        && after
                            .split(' ')
                            .nth(2)
                            .is_some_and(|o| o.split(',').any(|x| x == controller))
                })
            })
    };
    assert!(
        held("pids") && held("memory"),
        "this host offers neither cgroup v2 nor v1 pids and memory controllers"
    );
    // The twin: unconfined, 20 processes and 200 MiB are no trouble.
    let probe = common::probe_bin();
    let out = std::process::Command::new(&probe)
        .args(["spawn-many", "20"])
        .output()
        .expect("probe");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    let hog = "x = bytearray(200 << 20); print('allocated')";
    let out = std::process::Command::new("python3")
        .args(["-c", hog])
        .output()
        .expect("python3");
    assert!(out.status.success());

    let f = Fixture::new("base", "[process]\nmax_processes = 8\nmax_memory = \"64M\"");
    assert_eq!(f.probe(&["spawn-many", "4"]), "ok");
    assert_eq!(f.probe(&["spawn-many", "20"]), "err EAGAIN");
    let out = f.run(&[
        "python3",
        "-c",
        "x = bytearray(16 << 20); print('allocated')",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = f.run(&["python3", "-c", hog]);
    assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{out:?}");
    // No cgroup of these runs is left, in v2 or in the v1 hierarchies that held a limit.
    let v1_mounts: Vec<std::path::PathBuf> = mountinfo
        .lines()
        .filter_map(|l| {
            let (before, after) = l.split_once(" - ")?;
            let opts = after.strip_prefix("cgroup ")?.split(' ').nth(1)?;
            let point = before.split(' ').nth(4)?;
            opts.split(',')
                .any(|o| o == "pids" || o == "memory")
                .then(|| std::path::PathBuf::from(point))
        })
        .collect();
    for dir in v1_mounts
        .iter()
        .map(|m| m.join("cordon"))
        .chain([std::path::Path::new(&cgroup2_mount()).join("cordon")])
    {
        let left: Vec<String> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("test-"))
                    .collect()
            })
            .unwrap_or_default();
        assert!(left.is_empty(), "left in {}: {left:?}", dir.display());
    }
}
