//! The boundary between a sandboxed command and its supervisor: the sandbox's init, `cordon
//! run`, and the channels its events travel on. Each test is the attack, run inside a
//! sandbox, with a twin that runs the same attack where nothing confines it and shows that
//! it works there, so no test passes because the attack itself is broken.

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{of_kind, probe_bin, require_root, wait_until, Fixture};

/// The `probe` run directly, with no sandbox: the attacker's twin.
fn unconfined(args: &[&str]) -> String {
    let out = Command::new(probe_bin())
        .args(args)
        .output()
        .expect("probe runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// An unconfined process of the same user for a twin to act on (`configure` adds to its
/// command); killed when dropped.
struct Target(Child);

impl Target {
    fn start(configure: impl FnOnce(&mut Command)) -> Self {
        let mut cmd = Command::new(probe_bin());
        cmd.args(["sleep", "5"]);
        configure(&mut cmd);
        Target(cmd.spawn().expect("a target process"))
    }

    fn pid(&self) -> String {
        self.0.id().to_string()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The only child of `pid`, once it has one.
fn child_of(pid: u32) -> u32 {
    wait_until(&format!("a child of {pid}"), Duration::from_secs(5), || {
        let list = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
        let mut children = list.split_whitespace();
        match (children.next(), children.next()) {
            (Some(c), None) => c.parse().ok(),
            _ => None,
        }
    })
}

/// Opens `path` as descriptor 7 of the command `cmd` will start (the caller's open file that
/// no rule of the profile names).
fn with_fd7(cmd: &mut Command, path: &std::path::Path) {
    let file = std::fs::File::open(path).expect("open the secret");
    let raw = file.as_raw_fd();
    // SAFETY: between fork and exec the closure calls only dup2, which is async-signal-safe;
    // `file` stays open in the parent until the child has been spawned.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(raw, 7) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // Kept open until the process exits: the child needs it only until its exec.
    std::mem::forget(file);
}

/// A sandbox running `probe ARGS`, started in the background.
struct Background {
    child: Child,
    /// Its `--events` file, when it has one.
    events: Option<std::path::PathBuf>,
}

impl Background {
    fn start(f: &Fixture, options: &[&str], args: &[&str]) -> Self {
        let mut argv = vec![probe_bin().to_string_lossy().into_owned()];
        argv.extend(args.iter().map(|a| a.to_string()));
        let child = f
            .command_with(options, &argv)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cordon runs");
        Background {
            child,
            events: None,
        }
    }

    /// [`Background::start`] with `--events`; waits until its init runs, and returns it
    /// with `cordon run`'s pid.
    fn watched(f: &Fixture, args: &[&str]) -> (Self, String) {
        let events = f.dir.path().join("events.jsonl");
        let option = events.to_string_lossy().into_owned();
        let mut sandbox = Self::start(f, &["--events", &option], args);
        sandbox.events = Some(events);
        let _ = sandbox.init_pid();
        let cordon = sandbox.cordon_pid().to_string();
        (sandbox, cordon)
    }

    /// [`Background::finish`], with every event of a [`Background::watched`] run.
    fn finish_events(mut self) -> (String, Vec<serde_json::Value>) {
        let events = self.events.take().expect("a watched sandbox");
        let (answer, _) = self.finish();
        (answer, common::read_events(&events))
    }

    fn cordon_pid(&self) -> u32 {
        self.child.id()
    }

    /// The sandbox's init, from the host.
    fn init_pid(&self) -> u32 {
        child_of(self.cordon_pid())
    }

    /// Waits until a response rule has frozen the sandbox and reported it, and thaws it to
    /// let it end. The thaw waits for the report: the rule's own check that the kernel froze
    /// the sandbox would otherwise race the thaw, and could find it thawed again.
    fn wait_frozen_then_thaw(&self) {
        let cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", self.init_pid()))
            .expect("init's cgroup");
        let cgroup = std::path::Path::new(&common::cgroup2_mount()).join(
            cgroup
                .lines()
                .find_map(|l| l.strip_prefix("0::/"))
                .expect("a cgroup v2 path"),
        );
        let events = self.events.as_ref().expect("a watched sandbox");
        wait_until("the freeze reported", Duration::from_secs(10), || {
            // The writer may be part way through a line: only whole lines are read.
            common::daemon::read_jsonl(events)
                .iter()
                .any(|e| e["kind"] == "responder_action" && e["action"] == "freeze")
                .then_some(())
        });
        std::fs::write(cgroup.join("cgroup.freeze"), "0").expect("thaw");
    }

    /// The probe's answer and `cordon run`'s stderr, once it has ended.
    fn finish(self) -> (String, String) {
        let out = self.child.wait_with_output().expect("wait");
        let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !answer.is_empty(),
            "the probe said nothing; status {}, stderr: {err}",
            out.status
        );
        (answer, err)
    }
}

#[test]
fn the_command_cannot_copy_a_descriptor_of_init() {
    if !require_root("the_command_cannot_copy_a_descriptor_of_init") {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    let secret = f.dir.path().join("caller-secret.txt");
    std::fs::write(&secret, "the caller's secret").expect("secret");

    // The twin: a process holding the file as descriptor 7; an unconfined process of the
    // same user copies it with pidfd_getfd and reads it.
    let holder = Target::start(|cmd| with_fd7(cmd, &secret));
    assert_eq!(
        unconfined(&["pidfd-getfd", &holder.pid(), "7"]),
        "value the caller's secret"
    );
    drop(holder);

    // The attack: `cordon run` started with the file as descriptor 7; inside, the command
    // tries every descriptor of init (PID 1), under the default deny list and with
    // pidfd_getfd taken out of it, so that Landlock and init's own state must hold alone.
    for extra in ["", "[syscalls]\nallow = [\"pidfd_getfd\", \"kcmp\"]\n"] {
        let f = Fixture::new("coding-agent", extra);
        let mut argv = vec![probe_bin().to_string_lossy().into_owned()];
        argv.extend(["pidfd-getfd", "1", "7"].map(String::from));
        let mut cmd = f.command(&argv);
        with_fd7(&mut cmd, &secret);
        let out = cmd.output().expect("cordon runs");
        let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(answer, "err EPERM", "profile extra {extra:?}");
        assert_eq!(
            f.probe(&["steal-all", "1"]),
            "err EPERM",
            "no descriptor of init can be taken (extra {extra:?})"
        );
        // Nor did the command inherit the caller's descriptor.
        let mut argv = vec![probe_bin().to_string_lossy().into_owned()];
        argv.push("fds".into());
        let mut cmd = f.command(&argv);
        with_fd7(&mut cmd, &secret);
        let out = cmd.output().expect("cordon runs");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "value none");
    }
}

#[test]
fn init_holds_nothing_but_its_status_socket_and_its_parent() {
    if !require_root("init_holds_nothing_but_its_status_socket_and_its_parent") {
        return;
    }
    // A sandbox with network rules, so `cordon run` holds the event ring, the audit socket
    // and the resolver's sockets while the command runs.
    let f = Fixture::new(
        "coding-agent",
        "[network]\negress = [{ host = \"example.test\", ports = [443] }]\n",
    );
    let secret = f.dir.path().join("caller-secret.txt");
    std::fs::write(&secret, "the caller's secret").expect("secret");
    let mut argv = vec![probe_bin().to_string_lossy().into_owned()];
    argv.extend(["sleep", "2"].map(String::from));
    let mut cmd = f.command(&argv);
    with_fd7(&mut cmd, &secret);
    let mut run = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cordon runs");
    let cordon = run.id();
    let init = child_of(cordon);
    let command = child_of(init);
    let mounts = std::fs::read_link(format!("/proc/{command}/ns/mnt"))
        .expect("the command's mount namespace")
        .to_string_lossy()
        .into_owned();
    let fds = |pid: u32| -> Vec<String> {
        let mut links: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("fd dir")
            .flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .map(|l| l.to_string_lossy().into_owned())
            .collect();
        links.sort();
        links
    };
    let supervisor = fds(cordon);
    let init_fds = fds(init);
    let _ = run.wait();
    // The twin: the supervisor does hold the channels (a ring buffer map, sockets) and the
    // caller's file.
    assert!(
        supervisor.iter().any(|l| l.contains("bpf-map")),
        "{supervisor:?}"
    );
    assert!(
        supervisor
            .iter()
            .filter(|l| l.starts_with("socket:"))
            .count()
            >= 2,
        "{supervisor:?}"
    );
    assert!(
        supervisor.iter().any(|l| l.ends_with("caller-secret.txt")),
        "{supervisor:?}"
    );
    // And the sandbox's mount namespace, which it holds so that the kernel tears the mounts
    // down after `cordon run` has exited, not in init's exit. Init does not hold it.
    assert!(supervisor.contains(&mounts), "{mounts} in {supervisor:?}");
    // Init: stdin, stdout, stderr, its status socket and the pidfd of its parent. Nothing
    // else: not the caller's file, no map, no audit or resolver socket.
    assert_eq!(init_fds.len(), 5, "{init_fds:?}");
    assert_eq!(
        init_fds
            .iter()
            .filter(|l| l.starts_with("socket:") || l.contains("pidfd"))
            .count(),
        2,
        "{init_fds:?}"
    );
    assert!(!init_fds
        .iter()
        .any(|l| l.contains("bpf") || l.contains("secret")));
}

#[test]
fn the_command_cannot_read_inits_environment_or_command_line() {
    if !require_root("the_command_cannot_read_inits_environment_or_command_line") {
        return;
    }
    // The twin: the environment and command line of a process of the same user, unconfined.
    let holder = Target::start(|cmd| {
        cmd.env("GITHUB_TOKEN", "ghp_twin_secret");
    });
    let environ = unconfined(&["cat", &format!("/proc/{}/environ", holder.pid())]);
    assert!(
        environ.contains("GITHUB_TOKEN=ghp_twin_secret"),
        "{environ}"
    );
    drop(holder);

    let f = Fixture::new("coding-agent", "");
    let run = |args: &[&str]| -> String {
        let mut argv = vec![probe_bin().to_string_lossy().into_owned()];
        argv.extend(args.iter().map(|a| a.to_string()));
        let out = f
            .command(&argv)
            .env("GITHUB_TOKEN", "ghp_caller_secret")
            .output()
            .expect("cordon runs");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // Init is not listed in the sandbox's /proc at all; the command sees itself.
    for path in [
        "/proc/1/environ",
        "/proc/1/cmdline",
        "/proc/1/status",
        "/proc/1/maps",
    ] {
        assert_eq!(run(&["cat", path]), "err ENOENT", "{path}");
    }
    let me = run(&["cat", "/proc/self/cmdline"]);
    assert!(me.contains("cat /proc/self/cmdline"), "{me}");
    let environ = run(&["cat", "/proc/self/environ"]);
    assert!(!environ.contains("ghp_caller_secret"), "{environ}");
}

#[test]
fn the_command_cannot_signal_init() {
    if !require_root("the_command_cannot_signal_init") {
        return;
    }
    // The twin: an unconfined process signals a process of its own user.
    let holder = Target::start(|_| {});
    assert_eq!(unconfined(&["signal0", &holder.pid()]), "ok");
    drop(holder);

    let f = Fixture::new("coding-agent", "");
    let (answer, events) = f.probe_events(&[], &["kill", "1"]);
    assert_eq!(answer, "err EPERM");
    let denied = of_kind(&events, "other_denied");
    assert!(
        denied.iter().any(|e| e["blockers"]
            .as_str()
            .unwrap_or("")
            .contains("scope.signal")),
        "the refused signal is reported: {events:?}"
    );
}

#[test]
fn a_steered_event_ring_is_detected_and_reported() {
    if !require_root("a_steered_event_ring_is_detected_and_reported") {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    // The command waits, then makes 20 denied calls while the attacker stalls the ring.
    let (sandbox, cordon) = Background::watched(&f, &["sleep-ms", "700", "deny-each", "20"]);
    // The attack, from outside (as root, unconfined: inside, no descriptor of the
    // supervisor can be had, see above): for 1.5 s, keep the consumer position a page
    // ahead of the producer's, where the kernel refuses every new record.
    let steered = unconfined(&["ring-stall", &cordon, "1500"]);
    assert_eq!(steered, "value steered 1", "the attack itself works");
    let (answer, all) = sandbox.finish_events();
    assert_eq!(answer, "value 20");
    let lost = of_kind(&all, "events_lost");
    assert!(
        lost.iter().any(|e| e["reason"] == "ring_tampered"),
        "a steered ring is reported: {all:?}"
    );
    // Nothing went silently: each denial is an event, or counted as lost.
    let seen = common::occurrences(&of_kind(&all, "syscall_denied"));
    let counted: u64 = lost
        .iter()
        .filter(|e| e["reason"] == "ring_full")
        .map(|e| e["count"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        seen + counted >= 20,
        "{seen} seen, {counted} counted: {all:?}"
    );
}

/// Stops `cordon run` (pid `cordon`, the sandbox's event reader) until the sandbox has made
/// the file `mark`: what the sandbox does meanwhile, the reader sees only afterwards, as on a
/// loaded host or with a slow reader.
fn stopped_until(sandbox: &Background, cordon: &str, mark: &std::path::Path) {
    // Not before the command runs: init starts it only once `cordon run` says so.
    let _ = child_of(sandbox.init_pid());
    let reader = nix::unistd::Pid::from_raw(cordon.parse().expect("a pid"));
    nix::sys::signal::kill(reader, nix::sys::signal::Signal::SIGSTOP).expect("stop the reader");
    wait_until("the sandbox's step", Duration::from_secs(30), || {
        mark.exists().then_some(())
    });
    nix::sys::signal::kill(reader, nix::sys::signal::Signal::SIGCONT).expect("resume it");
}

#[test]
fn a_denial_hidden_in_a_full_ring_still_sets_off_the_rule_that_watches_for_it() {
    if !require_root("a_denial_hidden_in_a_full_ring_still_sets_off_the_rule_that_watches_for_it") {
        return;
    }
    let f = Fixture::new(
        "coding-agent",
        "[[response]]\nname = \"secret read\"\nwhen = { kind = \"file_denied\", path = \"/etc/shadow\" }\naction = \"freeze\"\n",
    );
    let mark = f.workspace.join("read");
    // The attack: 40 000 denied calls (the 1 MiB ring holds about 10 000 records), then the
    // read of the secret the rule watches for, hoping its record finds no room. Made
    // certain here by stopping `cordon run` (its reader) until the read is done, as a
    // loaded host or a slow reader would.
    let (sandbox, cordon) = Background::watched(
        &f,
        &[
            "sleep-ms",
            "300",
            "flood-then-read",
            "40000",
            "/etc/shadow",
            &mark.to_string_lossy(),
            "5000",
        ],
    );
    stopped_until(&sandbox, &cordon, &mark);
    // The rule cannot know the read was among the records lost: it freezes the sandbox.
    sandbox.wait_frozen_then_thaw();
    let (answer, all) = sandbox.finish_events();
    assert_eq!(answer, "err EACCES", "the secret stays hidden");
    // The twin of the attack: it worked, the denial itself went unreported...
    assert!(
        !of_kind(&all, "file_denied")
            .iter()
            .any(|e| e["path"] == "/etc/shadow"),
        "the denial was to be lost in the flood: {:?}",
        of_kind(&all, "file_denied")
    );
    assert!(
        of_kind(&all, "events_lost")
            .iter()
            .any(|e| e["reason"] == "ring_full"),
        "the loss is reported"
    );
    // ...and the rule went off on what it could not see, saying so.
    let acted = of_kind(&all, "responder_action");
    assert!(
        acted.iter().any(|e| e["action"] == "freeze"
            && e["actor"]["name"] == "secret read"
            && e["unseen"] == "ring_full"
            && e["result"] == "done"),
        "{acted:?}"
    );
}

#[test]
fn a_read_of_a_watched_hidden_path_is_named_though_other_hidden_paths_came_first() {
    if !require_root(
        "a_read_of_a_watched_hidden_path_is_named_though_other_hidden_paths_came_first",
    ) {
        return;
    }
    // The attack: misses of hidden paths first, so that the watched read falls into the one
    // event that gathers a sandbox's hidden paths, and is told only as its count.
    let f = Fixture::new(
        "coding-agent",
        "[[response]]\nname = \"plans read\"\nwhen = { kind = \"file_denied\", path = \"{home}/plans/**\" }\naction = \"alert\"\n",
    );
    std::fs::create_dir_all(f.home.join("plans")).expect("plans");
    std::fs::write(f.home.join("plans/q3"), "not for agents").expect("plan");
    let notes: Vec<String> = (0..2).map(|i| f.home_path(&format!("notes-{i}"))).collect();
    for n in &notes {
        std::fs::write(n, "hidden").expect("notes");
    }
    let plan = f.home_path("plans/q3");
    let (answer, all) = f.probe_events(
        &[],
        &["read-each-then-sleep", "0", &notes[0], &notes[1], &plan],
    );
    assert_eq!(
        answer, "value ENOENT ENOENT EACCES",
        "the plan is covered, not missing"
    );
    let denied = of_kind(&all, "file_denied");
    let read = denied
        .iter()
        .find(|e| e["path"] == plan.as_str())
        .unwrap_or_else(|| panic!("the plan's read is an event of its own: {denied:?}"));
    assert_eq!(read["layer"], "not_in_view", "{read}");
    assert!(
        read["count"].is_null(),
        "not gathered with the notes: {read}"
    );
    // The twin: the two notes, watched by no rule, are one event and a count.
    assert_eq!(
        common::occurrences(
            &denied
                .iter()
                .copied()
                .filter(|e| e["path"] != plan.as_str())
                .collect::<Vec<_>>()
        ),
        2,
        "{denied:?}"
    );
    assert!(
        of_kind(&all, "responder_action")
            .iter()
            .any(|e| e["actor"]["name"] == "plans read"),
        "{all:?}"
    );
}

#[test]
fn a_burst_of_missing_files_does_not_hide_a_read_of_a_hidden_path_a_rule_watches() {
    if !require_root(
        "a_burst_of_missing_files_does_not_hide_a_read_of_a_hidden_path_a_rule_watches",
    ) {
        return;
    }
    // Outside /tmp too (the fixture's home is under it, where the sandbox has a /tmp of its
    // own), reached through a link of the host's.
    let vault = tempfile::Builder::new()
        .prefix("cordon-e2e-vault-")
        .tempdir_in("/var/tmp")
        .expect("vault dir");
    std::fs::create_dir(vault.path().join("real")).expect("real");
    std::fs::write(vault.path().join("real/token"), "not a real token").expect("token");
    std::os::unix::fs::symlink("real", vault.path().join("keys")).expect("link");
    let token = vault
        .path()
        .join("keys/token")
        .to_string_lossy()
        .into_owned();
    let f = Fixture::new(
        "coding-agent",
        &format!(
            "[[response]]\nname = \"key read\"\nwhen = {{ kind = \"file_denied\", path = \"{{home}}/.ssh/**\" }}\naction = \"freeze\"\n\n[[response]]\nname = \"vault read\"\nwhen = {{ kind = \"file_denied\", path = \"{}/keys/**\" }}\naction = \"alert\"\n",
            vault.path().display()
        ),
    );
    let key = f.home_path(".ssh/id_ed25519");
    // Hidden by the view too, but watched by no rule: the twin.
    let notes: Vec<String> = (0..3).map(|i| f.home_path(&format!("notes-{i}"))).collect();
    for n in &notes {
        std::fs::write(n, "hidden").expect("notes");
    }
    // The attack: spend the kernel's budget for examining missing files (256 at once, then
    // 1000 a second) on misses of its own, then read the hidden key, which would fail as
    // a missing file does and be counted, not examined.
    let mut args = vec![
        "sleep-ms",
        "300",
        "misses",
        "20000",
        "read-each-then-sleep",
        "5000",
    ];
    args.extend(notes.iter().map(String::as_str));
    args.push(&key);
    args.push(&token);
    let (sandbox, _) = Background::watched(&f, &args);
    // The key is covered, not missing: its read is refused, reported, and the rule acts.
    sandbox.wait_frozen_then_thaw();
    let (answer, all) = sandbox.finish_events();
    assert_eq!(
        answer, "value ENOENT ENOENT ENOENT EACCES EACCES",
        "the notes are missing to the sandbox; the key and the token are refused"
    );
    let denied = of_kind(&all, "file_denied");
    let key_read = denied
        .iter()
        .find(|e| e["path"] == key.as_str())
        .unwrap_or_else(|| panic!("the read of the key is reported: {denied:?}"));
    assert_eq!(key_read["layer"], "deny", "{key_read}");
    assert_eq!(key_read["rule"], f.home_path(".ssh").as_str(), "{key_read}");
    assert!(
        denied.iter().any(|e| e["path"] == token.as_str()),
        "the read of the token is reported: {denied:?}"
    );
    let acted = of_kind(&all, "responder_action");
    assert!(
        acted.iter().any(|e| e["action"] == "freeze"
            && e["actor"]["name"] == "key read"
            && e["unseen"].is_null()
            && e["result"] == "done"),
        "{acted:?}"
    );
    assert!(
        acted
            .iter()
            .any(|e| e["action"] == "alert" && e["actor"]["name"] == "vault read"),
        "{acted:?}"
    );
    // The twin: the same burst hid reads of hidden paths no rule watches (one of them may
    // find the budget's next slot, a millisecond apart; all three cannot).
    let seen = notes
        .iter()
        .filter(|n| denied.iter().any(|e| e["path"] == n.as_str()))
        .count();
    assert!(seen < notes.len(), "the burst hid nothing: {denied:?}");
    assert!(
        of_kind(&all, "events_lost")
            .iter()
            .any(|e| e["reason"] == "unexamined"),
        "the misses past the budget are counted"
    );
}

#[test]
fn a_link_swapped_after_a_denied_read_does_not_hide_it_from_a_rule() {
    if !require_root("a_link_swapped_after_a_denied_read_does_not_hide_it_from_a_rule") {
        return;
    }
    let f = Fixture::new(
        "coding-agent",
        "[[response]]\nname = \"secret read\"\nwhen = { kind = \"file_denied\", path = \"/etc/shadow\" }\naction = \"freeze\"\n",
    );
    let link = f.workspace.join("x");
    std::os::unix::fs::symlink("/etc/shadow", &link).expect("symlink");
    let mark = f.workspace.join("swapped");
    // The attack: read the secret through a link, then swap the link for a harmless one
    // before the watcher looks where the read went. Made certain here by stopping `cordon
    // run` (its reader) until the swap is done.
    let (sandbox, cordon) = Background::watched(
        &f,
        &[
            "sleep-ms",
            "300",
            "read-then-swap",
            &link.to_string_lossy(),
            "/etc/hostname",
            &mark.to_string_lossy(),
            "5000",
        ],
    );
    stopped_until(&sandbox, &cordon, &mark);
    assert_eq!(
        std::fs::read_link(&link).expect("the link"),
        std::path::Path::new("/etc/hostname"),
        "the attack itself works: the link now leads elsewhere"
    );
    sandbox.wait_frozen_then_thaw();
    let (answer, all) = sandbox.finish_events();
    assert_eq!(answer, "err EACCES", "the secret stays hidden");
    let denied = of_kind(&all, "file_denied");
    assert!(
        denied
            .iter()
            .any(|e| e["path"] == link.to_string_lossy().as_ref() && e["layer"] == "unplaced"),
        "the read is reported, as going where it can no longer be seen: {denied:?}"
    );
    assert!(
        of_kind(&all, "responder_action")
            .iter()
            .any(|e| e["action"] == "freeze" && e["actor"]["name"] == "secret read"),
        "{all:?}"
    );
}

#[test]
fn an_audit_listener_taken_off_its_group_is_reported_and_rejoined() {
    if !require_root("an_audit_listener_taken_off_its_group_is_reported_and_rejoined") {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    // A file denial 2.5 s in (Landlock refuses to list /dev, which the profile does not
    // grant): after the attack, and after the listener has noticed it.
    let (sandbox, cordon) = Background::watched(&f, &["sleep-ms", "2500", "list", "/dev"]);
    // Once the listener has joined the group (`cordon run` opens it while init builds the
    // sandbox, so it may not be there yet when init is).
    let dropped = wait_until("the listener to drop", Duration::from_secs(2), || {
        let out = unconfined(&["audit-drop", &cordon]);
        out.starts_with("value dropped").then_some(out)
    });
    assert!(
        dropped.starts_with("value dropped"),
        "the attack works: {dropped}"
    );
    let (answer, all) = sandbox.finish_events();
    assert_eq!(answer, "err EACCES");
    assert!(
        of_kind(&all, "events_lost")
            .iter()
            .any(|e| e["reason"] == "audit_detached"),
        "the cut is reported: {all:?}"
    );
    assert!(
        of_kind(&all, "file_denied")
            .iter()
            .any(|e| e["path"] == "/dev"),
        "denials after it are reported again: {all:?}"
    );
}

#[test]
fn the_resolvers_socket_is_no_way_past_egress() {
    if !require_root("the_resolvers_socket_is_no_way_past_egress") {
        return;
    }
    let listener = std::net::UdpSocket::bind("127.0.0.1:0").expect("listener");
    listener
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let target = listener.local_addr().expect("addr").to_string();
    // Egress by name, so the sandbox gets a resolver whose sockets `cordon run` holds.
    let f = Fixture::new(
        "coding-agent",
        "[network]\negress = [{ host = \"example.test\", ports = [443] }]\n",
    );

    // Inside: no socket of the supervisor can be had, and its own datagram is refused.
    let sandbox = Background::start(&f, &[], &["udp-via", "1", &target]);
    let (answer, _) = sandbox.finish();
    assert_eq!(answer, "err EPERM");
    let (answer, events) = f.probe_events(&[], &["udp-send", &target]);
    assert_eq!(answer, "err EPERM");
    assert!(!of_kind(&events, "network_denied").is_empty(), "{events:?}");

    // The twin: from outside, the resolver's socket held by `cordon run` reaches the host
    // listener, past every rule of the sandbox.
    let sandbox = Background::start(&f, &[], &["sleep", "2"]);
    let cordon = sandbox.cordon_pid().to_string();
    let _ = sandbox.init_pid();
    let sent = unconfined(&["udp-via", &cordon, &target]);
    assert!(sent.starts_with("value sent"), "{sent}");
    let mut buf = [0u8; 16];
    let (n, _) = listener.recv_from(&mut buf).expect("the datagram arrived");
    assert_eq!(&buf[..n], b"probe");
    let _ = sandbox.finish();
}

#[test]
fn only_the_usual_socket_families_can_be_created() {
    if !require_root("only_the_usual_socket_families_can_be_created") {
        return;
    }
    const AF_VSOCK: &str = "40";
    // The twin: unconfined, a vsock socket (on a VM, CID 2 is the hypervisor's host).
    assert_eq!(unconfined(&["socket-family", AF_VSOCK]), "ok");
    // Inside, even a sandbox with no network at all: refused and reported.
    let f = Fixture::new("offline-tool", "");
    let (answer, events) = f.probe_events(&[], &["socket-family", AF_VSOCK]);
    assert_eq!(answer, "err EPERM");
    let denied = common::only(&events, "syscall_denied");
    assert_eq!(denied["syscall"], "socket");
    // The usual ones still work, and a profile may name more.
    assert_eq!(f.probe(&["socket-family", "1"]), "ok", "unix");
    assert_eq!(f.probe(&["socket-family", "10"]), "ok", "inet6");
    let f = Fixture::new("offline-tool", "[network]\nsocket_families = [\"vsock\"]\n");
    assert_eq!(f.probe(&["socket-family", AF_VSOCK]), "ok");
}

#[test]
fn proc_is_the_sandboxs_own_even_under_a_tree_that_holds_the_hosts() {
    if !require_root("proc_is_the_sandboxs_own_even_under_a_tree_that_holds_the_hosts") {
        return;
    }
    // The twin: the host's /proc lists every host process.
    let host: u64 = unconfined(&["proc-count"])
        .trim_start_matches("value ")
        .parse()
        .expect("a count");
    assert!(host > 10, "{host}");
    let f = Fixture::new("base", "[filesystem]\nread = [\"/\"]\n");
    let inside = f.probe(&["proc-count"]);
    // The probe alone: init is hidden from it, nothing of the host is there.
    assert_eq!(inside, "value 1");
}

#[test]
fn the_private_tmp_has_a_size() {
    if !require_root("the_private_tmp_has_a_size") {
        return;
    }
    let f = Fixture::new("coding-agent", "[filesystem]\ntmp_size = \"16M\"\n");
    // A few KiB go to the file system's own bookkeeping.
    let answer = f.probe(&["fill", "/tmp"]);
    assert!(
        answer == "value 15 MiB" || answer == "value 16 MiB",
        "{answer}"
    );
}

#[test]
fn the_command_cannot_change_inits_limits_or_scheduling() {
    if !require_root("the_command_cannot_change_inits_limits_or_scheduling") {
        return;
    }
    let script = |pid: &str| {
        format!(
            "import resource, os\n\
             for name, call in [('prlimit', lambda: resource.prlimit({pid}, resource.RLIMIT_NOFILE, (3, 3))),\n\
                                ('affinity', lambda: os.sched_setaffinity({pid}, {{0}})),\n\
                                ('priority', lambda: os.setpriority(os.PRIO_PROCESS, {pid}, 19))]:\n\
             \x20   try:\n\
             \x20       call(); print(name, 'changed')\n\
             \x20   except OSError as e:\n\
             \x20       print(name, 'refused', e.errno)\n"
        )
    };
    // The twin: a process of the same user changes another's limits and scheduling.
    let holder = Target::start(|_| {});
    let out = Command::new("python3")
        .args(["-c", &script(&holder.pid())])
        .output()
        .expect("python3");
    let said = String::from_utf8_lossy(&out.stdout);
    drop(holder);
    assert_eq!(said.matches("changed").count(), 3, "{said}");

    let f = Fixture::new("coding-agent", "");
    let events = f.dir.path().join("events.jsonl");
    let out = f
        .command_with(
            &["--events", &events.to_string_lossy()],
            &["python3", "-c", &script("1")],
        )
        .output()
        .expect("cordon runs");
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(said.matches("refused 1").count(), 3, "{said}");
    let all = common::read_events(&events);
    let denied: Vec<&str> = of_kind(&all, "syscall_denied")
        .iter()
        .filter_map(|e| e["syscall"].as_str())
        .collect();
    for syscall in ["prlimit64", "sched_setaffinity", "setpriority"] {
        assert!(denied.contains(&syscall), "{syscall}: {all:?}");
    }
}

/// `setpriority(PRIO_USER)` reaches every process of the user in the sandbox's PID
/// namespace, init among them, without naming it (`PRIO_PGRP` likewise its group, and
/// `ioprio_set` by user or group): the command could starve its own supervision.
#[test]
fn the_command_cannot_renice_init_through_its_user_or_group() {
    if !require_root("the_command_cannot_renice_init_through_its_user_or_group") {
        return;
    }
    // The twin: a group renices a process it never names. (Not by user: as root, that
    // would renice every process of root on the host.)
    let holder = Target::start(|c| {
        std::os::unix::process::CommandExt::process_group(c, 0);
    });
    let out = Command::new("python3")
        .args([
            "-c",
            &format!(
                "import os; os.setpriority(os.PRIO_PGRP, {pid}, 19); print(os.getpriority(os.PRIO_PROCESS, {pid}))",
                pid = holder.pid()
            ),
        ])
        .output()
        .expect("python3");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "19", "{out:?}");
    drop(holder);

    let script = "import os, ctypes\n\
        libc = ctypes.CDLL(None, use_errno=True)\n\
        def ioprio(which):\n\
        \x20   if libc.syscall(251, which, 0, (2 << 13) | 7) == 0: return 'changed'\n\
        \x20   return 'refused %d' % ctypes.get_errno()\n\
        for name, call in [('user', lambda: os.setpriority(os.PRIO_USER, 0, 19)),\n\
        \x20                  ('group', lambda: os.setpriority(os.PRIO_PGRP, 0, 19))]:\n\
        \x20   try:\n\
        \x20       call(); print(name, 'changed')\n\
        \x20   except OSError as e:\n\
        \x20       print(name, 'refused', e.errno)\n\
        print('io-user', ioprio(3)); print('io-group', ioprio(2))\n\
        os.setpriority(os.PRIO_PROCESS, 0, 5); print('itself', os.getpriority(os.PRIO_PROCESS, 0))\n";
    let f = Fixture::new("coding-agent", "");
    let events = f.dir.path().join("events.jsonl");
    let out = f
        .command_with(
            &["--events", &events.to_string_lossy()],
            &["python3", "-c", script],
        )
        .output()
        .expect("cordon runs");
    let said: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(
        said,
        [
            "user refused 1",
            "group refused 1",
            "io-user refused 1",
            "io-group refused 1",
            "itself 5"
        ],
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = common::read_events(&events);
    let denied: Vec<&str> = of_kind(&all, "syscall_denied")
        .iter()
        .filter_map(|e| e["syscall"].as_str())
        .collect();
    assert_eq!(
        denied.iter().filter(|s| **s == "setpriority").count(),
        2,
        "{all:?}"
    );
    assert_eq!(
        denied.iter().filter(|s| **s == "ioprio_set").count(),
        2,
        "{all:?}"
    );
}

#[test]
fn a_command_that_leaves_an_orphan_at_once_still_runs_watched() {
    if !require_root("a_command_that_leaves_an_orphan_at_once_still_runs_watched") {
        return;
    }
    // `(... &)`: the subshell exits at once and its child becomes init's, beside the command
    // init waits to report; the command is found by its pid, not as init's only child, and
    // its domain's denials (the orphan's too) are reported.
    let f = Fixture::new("coding-agent", "");
    let probe = probe_bin().to_string_lossy().into_owned();
    for _ in 0..5 {
        let events = f.dir.path().join("orphan.jsonl");
        let _ = std::fs::remove_file(&events);
        let out = f
            .command_with(
                &["--events", &events.to_string_lossy()],
                &[
                    "/bin/sh",
                    "-c",
                    &format!("({probe} list /dev &); exec {probe} sleep-ms 300 fds"),
                ],
            )
            .output()
            .expect("cordon runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let all = common::read_events(&events);
        let denied = of_kind(&all, "file_denied");
        assert!(
            denied.iter().any(|e| e["path"] == "/dev"),
            "the orphan's denial is reported: {all:?}"
        );
    }
}
