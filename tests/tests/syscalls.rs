//! The seccomp deny list, on the real kernel.

mod common;

use common::{require_root, Fixture};

#[test]
fn dangerous_syscalls_fail_with_eperm() {
    if !require_root("dangerous_syscalls_fail_with_eperm") {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    for action in [
        "mount",
        "bpf",
        "unshare-user",
        "unshare-net",
        "clone-newuser",
        "finit-module",
        "keyctl",
        "ptrace-child",
    ] {
        assert_eq!(f.probe(&[action]), "err EPERM", "{action}");
    }
}

#[test]
fn the_same_calls_reach_the_kernel_without_the_deny_list() {
    if !require_root("the_same_calls_reach_the_kernel_without_the_deny_list") {
        return;
    }
    // With the preset off, the kernel itself answers: these errnos prove the filter above
    // is what said EPERM, not a missing capability.
    let f = Fixture::new("coding-agent", "[syscalls]\npreset = \"none\"");
    assert_eq!(f.probe(&["keyctl"]), "ok");
    assert_eq!(f.probe(&["unshare-user"]), "ok");
}

#[test]
fn ptrace_of_a_process_outside_is_denied() {
    if !require_root("ptrace_of_a_process_outside_is_denied") {
        return;
    }
    let mut outside = std::process::Command::new("/bin/sleep")
        .arg("30")
        .spawn()
        .expect("sleep");
    let pid = outside.id().to_string();
    let f = Fixture::new("coding-agent", "");
    assert_eq!(f.probe(&["ptrace", &pid]), "err EPERM");
    // Even with ptrace taken out of the deny list the process outside cannot be reached:
    // it is not in the sandbox's PID namespace.
    let f = Fixture::new("coding-agent", "[syscalls]\nallow = [\"ptrace\"]");
    assert_eq!(f.probe(&["ptrace", &pid]), "err ESRCH");
    let _ = outside.kill();
    let _ = outside.wait();
}

#[test]
fn clone3_is_answered_with_enosys_so_libc_falls_back_to_clone() {
    if !require_root("clone3_is_answered_with_enosys_so_libc_falls_back_to_clone") {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    assert_eq!(f.probe(&["clone3"]), "err ENOSYS");
    // Threads and processes are still created (glibc's fallback to clone).
    let out = f.run(&["/usr/bin/python3", "-c", "import threading, subprocess; t = threading.Thread(target=print); t.start(); t.join(); subprocess.run(['true'], check=True)"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn kill_action_kills_the_process_with_sigsys() {
    if !require_root("kill_action_kills_the_process_with_sigsys") {
        return;
    }
    let f = Fixture::new("coding-agent", "[syscalls]\naction = \"kill\"");
    let out = f.run(&[common::probe_bin().to_string_lossy().as_ref(), "bpf"]);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGSYS), "{:?}", out.status);
}

#[test]
fn profile_deny_entries_are_enforced() {
    if !require_root("profile_deny_entries_are_enforced") {
        return;
    }
    // coding-agent denies io_uring_setup on top of the preset.
    let f = Fixture::new("coding-agent", "");
    let out = f.run(&[
        "/usr/bin/python3",
        "-c",
        "import ctypes; r = ctypes.CDLL(None, use_errno=True).syscall(425, 1, ctypes.create_string_buffer(120)); print(ctypes.get_errno())",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        libc::EPERM.to_string()
    );
}

#[test]
fn every_denied_call_is_stopped_by_the_filter_itself() {
    if !require_root("every_denied_call_is_stopped_by_the_filter_itself") {
        return;
    }
    // Under the kill action, a call the filter matches ends the process with SIGSYS: this
    // tells the filter apart from a missing capability, which also says EPERM.
    let f = Fixture::new("coding-agent", "[syscalls]\naction = \"kill\"");
    let probe = common::probe_bin().to_string_lossy().into_owned();
    for action in [
        "mount",
        "bpf",
        "unshare-user",
        "clone-newuser",
        "finit-module",
        "keyctl",
        "ptrace-child",
        "mptcp",
    ] {
        let out = f.run(&[probe.as_str(), action]);
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGSYS),
            "{action}: {:?}",
            out.status
        );
    }
}

#[test]
fn mptcp_sockets_which_landlock_does_not_cover_are_refused() {
    if !require_root("mptcp_sockets_which_landlock_does_not_cover_are_refused") {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    assert_eq!(f.probe(&["mptcp"]), "err EPERM");
}

#[test]
fn executable_memfds_are_refused() {
    if !require_root("executable_memfds_are_refused") {
        return;
    }
    let f = Fixture::new("coding-agent", "");
    assert_eq!(f.probe(&["memfd-exec"]), "err EACCES");
}
