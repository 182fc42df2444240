//! File rules: Landlock plus the private mount namespace, on the real kernel.

mod common;

use common::{require_root, Fixture};

/// A profile that can read the whole home: secrets must stay hidden inside it.
const HOME_READABLE: &str = "[filesystem]\nread = [\"{home}\"]";

#[test]
fn ssh_key_is_denied_while_the_rest_of_home_is_readable() {
    if !require_root("ssh_key_is_denied_while_the_rest_of_home_is_readable") {
        return;
    }
    let f = Fixture::new("coding-agent", HOME_READABLE);
    assert_eq!(f.probe(&["read", &f.home_path(".gitconfig")]), "ok");
    assert_eq!(
        f.probe(&["read", &f.home_path(".ssh/id_ed25519")]),
        "err EACCES"
    );
    assert_eq!(f.probe(&["list", &f.home_path(".ssh")]), "err EACCES");
    // The masked directory cannot be moved out of the way either.
    assert_eq!(
        f.probe(&["rename", &f.home_path(".ssh"), &f.home_path("x")]),
        "err EROFS"
    );
}

#[test]
fn writing_outside_the_write_list_is_denied() {
    if !require_root("writing_outside_the_write_list_is_denied") {
        return;
    }
    let f = Fixture::new("coding-agent", HOME_READABLE);
    assert_eq!(f.probe(&["write", &f.path("new.txt")]), "ok");
    assert_eq!(
        std::fs::read_to_string(f.workspace.join("new.txt")).unwrap_or_default(),
        "probe"
    );
    // Readable but not writable: the home, and system directories.
    assert_eq!(f.probe(&["write", &f.home_path("planted")]), "err EROFS");
    assert_eq!(f.probe(&["write", "/etc/cordon-e2e"]), "err EROFS");
    assert!(!f.home.join("planted").exists());
}

#[test]
fn landlock_denies_writes_even_where_the_mount_is_writable() {
    if !require_root("landlock_denies_writes_even_where_the_mount_is_writable") {
        return;
    }
    // /tmp is a writable private tmpfs in every sandbox; base does not grant it.
    let f = Fixture::new("base", "");
    assert_eq!(f.probe(&["write", "/tmp/x"]), "err EACCES");
    let f = Fixture::new("base", "[filesystem]\nwrite = [\"{tmp}\"]");
    assert_eq!(f.probe(&["write", "/tmp/x"]), "ok");
}

#[test]
fn binaries_outside_exec_cannot_run() {
    if !require_root("binaries_outside_exec_cannot_run") {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    // /usr/sbin is readable (under /usr) but not in exec.
    assert_eq!(f.probe(&["exec", "/usr/sbin/nologin"]), "err EACCES");
    assert_eq!(f.probe(&["run", "/usr/bin/true"]), "ok");
}

#[test]
fn a_file_written_into_the_workspace_cannot_be_executed_unless_exec_allows_it() {
    if !require_root("a_file_written_into_the_workspace_cannot_be_executed_unless_exec_allows_it") {
        return;
    }
    let f = Fixture::new("coding-agent", common::NOEXEC_WORKSPACE);
    std::fs::copy("/usr/bin/true", f.workspace.join("dropped")).expect("copy");
    assert_eq!(f.probe(&["exec", &f.path("dropped")]), "err EACCES");
    // Loading it through the dynamic loader fails too: the workspace is mounted noexec.
    let loader = f.probe(&["run", "/lib64/ld-linux-x86-64.so.2", &f.path("dropped")]);
    assert!(loader.starts_with("value exit"), "{loader}");

    let f = Fixture::new(
        "coding-agent",
        "[filesystem]\nexec = { remove = [\"{workspace}\"], add = [\"{workspace}/bin\"] }",
    );
    std::fs::create_dir_all(f.workspace.join("bin")).expect("bin");
    std::fs::copy("/usr/bin/true", f.workspace.join("bin/tool")).expect("copy");
    assert_eq!(f.probe(&["run", &f.path("bin/tool")]), "ok");
}

#[test]
fn git_metadata_under_a_writable_workspace_is_read_only() {
    if !require_root("git_metadata_under_a_writable_workspace_is_read_only") {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    std::fs::create_dir_all(f.workspace.join(".git/hooks")).expect("hooks");
    std::fs::write(f.workspace.join(".git/config"), "[core]\n").expect("config");
    assert_eq!(
        f.probe(&["write", &f.path(".git/hooks/pre-commit")]),
        "err EROFS"
    );
    assert_eq!(f.probe(&["write", &f.path(".git/config")]), "err EROFS");
    assert_eq!(f.probe(&["write", &f.path(".git/commondir")]), "err EROFS");
    assert_eq!(f.probe(&["read", &f.path(".git/config")]), "ok");
    // Renaming .git (to put another in its place) is refused: it is a mount point.
    assert_eq!(
        f.probe(&["rename", &f.path(".git"), &f.path("moved")]),
        "err EBUSY"
    );
    // The rest of the workspace stays writable.
    assert_eq!(f.probe(&["write", &f.path("notes.txt")]), "ok");
}

#[test]
fn a_unix_socket_outside_the_profile_cannot_be_connected() {
    if !require_root("a_unix_socket_outside_the_profile_cannot_be_connected") {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    let sock = f.dir.path().join("docker.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
    // Reachable from outside the sandbox, invisible inside it.
    assert!(std::os::unix::net::UnixStream::connect(&sock).is_ok());
    assert_eq!(
        f.probe(&["connect-unix", &sock.to_string_lossy()]),
        "err ENOENT"
    );
}

#[test]
fn the_sandbox_cannot_write_to_cgroups() {
    if !require_root("the_sandbox_cannot_write_to_cgroups") {
        return;
    }
    let f = Fixture::new("coding-agent", "[filesystem]\nread = [\"/sys\"]");
    let mount = common::cgroup2_mount();
    assert_eq!(f.probe(&["cgroup-escape", &mount]), "err EROFS");
}

#[test]
fn escaping_by_fork_setsid_or_reexec_keeps_every_restriction() {
    if !require_root("escaping_by_fork_setsid_or_reexec_keeps_every_restriction") {
        return;
    }
    let f = Fixture::new("coding-agent", HOME_READABLE);
    let key = f.home_path(".ssh/id_ed25519");
    for how in ["fork", "setsid", "reexec"] {
        assert_eq!(f.probe(&[how, "read", &key]), "err EACCES", "{how}");
        assert_eq!(f.probe(&[how, "unshare-user"]), "err EPERM", "{how}");
        assert_eq!(
            f.probe(&[how, "connect", "127.0.0.1:1"]),
            "err EACCES",
            "{how}"
        );
    }
}

#[test]
fn read_only_paths_inside_a_writable_workspace_cannot_be_changed() {
    if !require_root("read_only_paths_inside_a_writable_workspace_cannot_be_changed") {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    std::fs::create_dir_all(f.workspace.join(".git")).expect("git dir");
    std::fs::write(f.workspace.join(".git/config"), "[core]\n").expect("config");
    assert_eq!(f.probe(&["read", &f.path(".git/config")]), "ok");
    assert_eq!(f.probe(&["write", &f.path(".git/config")]), "err EROFS");
    // Replacing it (how `git config` writes) fails too: it is a mount point of its own.
    std::fs::write(
        f.workspace.join("new-config"),
        "[core]\n\thooksPath = /tmp\n",
    )
    .expect("new");
    assert_eq!(
        f.probe(&["rename", &f.path("new-config"), &f.path(".git/config")]),
        "err EXDEV"
    );
    assert_eq!(
        std::fs::read_to_string(f.workspace.join(".git/config")).unwrap_or_default(),
        "[core]\n"
    );
}

#[test]
fn nothing_written_to_the_private_tmp_can_be_executed() {
    if !require_root("nothing_written_to_the_private_tmp_can_be_executed") {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    let out = f.run(&[
        "/bin/sh",
        "-c",
        "cp /usr/bin/true /tmp/t && { /tmp/t; echo direct=$?; /lib64/ld-linux-x86-64.so.2 /tmp/t; echo loader=$?; }",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("direct=126"), "{stdout}");
    assert!(
        !stdout.contains("loader=0"),
        "the loader must not map it executable: {stdout}"
    );
}

#[test]
fn a_deny_path_reached_through_a_symlink_in_a_writable_tree_refuses_to_start() {
    if !require_root("a_deny_path_reached_through_a_symlink_in_a_writable_tree_refuses_to_start") {
        return;
    }
    let f = Fixture::new(
        "coding-agent",
        "[filesystem]\ndeny = [\"{workspace}/data/secret\"]\n",
    );
    std::fs::create_dir_all(f.workspace.join("real")).expect("real");
    std::fs::write(f.workspace.join("real/secret"), "s").expect("secret");
    std::os::unix::fs::symlink("real", f.workspace.join("data")).expect("link");
    let out = f.run(&["/usr/bin/true"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(err.contains("goes through a symlink"), "{err}");
}

#[test]
fn the_toolchains_credentials_stay_hidden_though_their_directories_are_read() {
    if !require_root("the_toolchains_credentials_stay_hidden_though_their_directories_are_read") {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    for (dir, file) in [
        (".config/git", "credentials"),
        (".cargo", "credentials.toml"),
        (".cargo", "credentials"),
    ] {
        std::fs::create_dir_all(f.home.join(dir)).expect("dir");
        std::fs::write(f.home.join(dir).join(file), "https://user:token@github.com")
            .expect("secret");
    }
    std::fs::write(f.home.join(".cargo/config.toml"), "[net]\n").expect("config");
    for secret in [
        ".config/git/credentials",
        ".cargo/credentials.toml",
        ".cargo/credentials",
    ] {
        let path = f.home_path(secret);
        assert!(
            std::fs::read(&path).is_ok(),
            "the twin: unconfined, {secret} reads"
        );
        assert_eq!(f.probe(&["read", &path]), "err EACCES", "{secret}");
    }
    // The directories they are in are still read: the toolchain needs them.
    assert_eq!(f.probe(&["read", &f.home_path(".cargo/config.toml")]), "ok");
}

#[test]
fn a_symlink_planted_where_a_rule_dir_is_made_changes_nothing_outside() {
    if !require_root("a_symlink_planted_where_a_rule_dir_is_made_changes_nothing_outside") {
        return;
    }
    let f = Fixture::new(
        "coding-agent",
        "[filesystem]\nexec = { remove = [\"{workspace}\"], add = [\"{workspace}/.venv/bin/\"] }\n",
    );
    // A run before this one left `.venv` pointing outside the workspace.
    let elsewhere = f.dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).expect("elsewhere");
    std::os::unix::fs::symlink(&elsewhere, f.workspace.join(".venv")).expect("symlink");
    let out = f.run(&["/bin/true"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("could not be made"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(&elsewhere).expect("elsewhere").count(),
        0,
        "nothing was made through the link"
    );
    // The twin: followed without care, the same mkdir lands outside.
    std::fs::create_dir_all(f.workspace.join(".venv/bin")).expect("mkdir -p");
    assert!(elsewhere.join("bin").is_dir());
}

/// The workspace in the host's /tmp is bound inside the sandbox's private /tmp, on
/// directories of the sandbox's own tree. Renamed, they would carry the workspace away and
/// leave its host path to whatever the sandbox put there (a link to a hidden tree, whose
/// misses the watcher would take for the program's own): they are pinned, and the rename
/// fails, while the sandbox may still rename what it made itself (the twin).
#[test]
fn the_directories_above_a_workspace_in_tmp_cannot_be_renamed() {
    if !require_root("the_directories_above_a_workspace_in_tmp_cannot_be_renamed") {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    let above = f.dir.path().to_string_lossy().into_owned();
    assert!(
        above.starts_with("/tmp/"),
        "the fixture is meant to be in /tmp: {above}"
    );
    let script = format!(
        "mkdir /tmp/mine && mv /tmp/mine /tmp/moved-mine && echo twin: moved; \
         mv {above} /tmp/moved-above 2>&1 && echo above: moved; ls {ws} > /dev/null && echo workspace: in place",
        ws = f.workspace.display()
    );
    let out = f
        .command(&["/bin/sh", "-c", &script])
        .output()
        .expect("cordon runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("twin: moved"), "{stdout}");
    assert!(!stdout.contains("above: moved"), "{stdout}");
    assert!(stdout.contains("Device or resource busy"), "{stdout}");
    assert!(stdout.contains("workspace: in place"), "{stdout}");
}
