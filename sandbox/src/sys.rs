//! The raw system calls Cordon makes that `nix`, `landlock` and `seccompiler` do not wrap.
//!
//! Every `unsafe` block of the crate outside the fork itself lives here, each with the reason
//! it is sound. Returned descriptors become `OwnedFd` at once.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// The Landlock ABI version the running kernel offers; 0 when Landlock is unavailable.
pub fn landlock_abi() -> u32 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1 << 0;
    // SAFETY: with a NULL attribute pointer, size 0 and the VERSION flag the kernel reads no
    // memory and only returns the ABI version (or an error).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    u32::try_from(ret).unwrap_or(0)
}

/// An `O_PATH` descriptor for `path`, refusing any symlink on the way
/// (`openat2(RESOLVE_NO_SYMLINKS)`): the plan uses canonical paths, so a symlink met here
/// was put there after planning.
pub fn open_no_symlinks(path: &Path) -> io::Result<OwnedFd> {
    let path = cstring(path)?;
    // SAFETY: open_how is plain data for which all-zero is valid.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_NO_SYMLINKS;
    // SAFETY: `path` is a valid C string and `how` a valid open_how whose size we pass.
    let fd = check(unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    })?;
    // SAFETY: openat2 returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The `/proc/self/fd/N` path of a descriptor: mounting on it mounts on exactly the object
/// the descriptor names, whatever happened to its path since.
pub fn fd_path(fd: &OwnedFd) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// A detached copy of the mount tree at `path` (`open_tree(OPEN_TREE_CLONE | AT_RECURSIVE)`),
/// reached without following symlinks.
pub fn clone_mount_tree(path: &Path) -> io::Result<OwnedFd> {
    clone_mount_tree_at(&open_no_symlinks(path)?)
}

/// A detached copy of the mount tree at the object `at` names.
pub fn clone_mount_tree_at(at: &OwnedFd) -> io::Result<OwnedFd> {
    let flags = libc::OPEN_TREE_CLONE
        | libc::OPEN_TREE_CLOEXEC
        | libc::AT_RECURSIVE as libc::c_uint
        | libc::AT_EMPTY_PATH as libc::c_uint;
    let empty = c"";
    // SAFETY: `at` is an open descriptor and `empty` a valid C string; with AT_EMPTY_PATH
    // the tree at the descriptor itself is cloned.
    let fd = check(unsafe {
        libc::syscall(libc::SYS_open_tree, at.as_raw_fd(), empty.as_ptr(), flags)
    })?;
    // SAFETY: open_tree returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Sets and clears `MOUNT_ATTR_*` flags on every mount of a detached tree.
pub fn set_mount_attrs(tree: &OwnedFd, set: u64, clear: u64) -> io::Result<()> {
    let attr = libc::mount_attr {
        attr_set: set,
        attr_clr: clear,
        propagation: libc::MS_PRIVATE,
        userns_fd: 0,
    };
    let empty = c"";
    // SAFETY: `attr` is a valid mount_attr whose size we pass; `empty` is a valid C string;
    // the descriptor is open for the duration of the call.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    })?;
    Ok(())
}

/// Attaches a detached mount tree on the object `target` names.
pub fn attach_mount_tree(tree: &OwnedFd, target: &OwnedFd) -> io::Result<()> {
    let empty = c"";
    // SAFETY: `empty` is a valid C string; both descriptors are open.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            target.as_raw_fd(),
            empty.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH,
        )
    })?;
    Ok(())
}

/// Closes every descriptor but 0, 1, 2 and those in `keep`: what a sandbox's init does
/// first, so nothing the caller or the supervisor had open is left for the sandbox to take.
pub fn close_all_but(keep: &[std::os::fd::RawFd]) -> io::Result<()> {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter_map(|fd| u32::try_from(*fd).ok())
        .collect();
    keep.extend([0, 1, 2]);
    keep.sort_unstable();
    keep.dedup();
    let mut first = 0u32;
    for kept in keep.iter().copied().chain([u32::MAX]) {
        if kept > first {
            // SAFETY: close_range closes descriptors in a range; it touches no memory, and
            // the descriptors it closes are owned by nothing that runs after it in init
            // (init keeps only `keep`).
            check(unsafe { libc::syscall(libc::SYS_close_range, first, kept - 1, 0) })?;
        }
        first = kept.saturating_add(1);
    }
    Ok(())
}

/// The child of `parent` (as seen from this PID namespace) that is `ns_pid` in its own,
/// innermost PID namespace: from `/proc/PID/task/PID/children` and each child's `NSpid`.
pub fn child_by_ns_pid(parent: nix::unistd::Pid, ns_pid: i32) -> Option<nix::unistd::Pid> {
    let list = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).ok()?;
    list.split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
        .find(|child| {
            std::fs::read_to_string(format!("/proc/{child}/status")).is_ok_and(|status| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("NSpid:"))
                    .and_then(|ids| ids.split_whitespace().last())
                    .and_then(|id| id.parse::<i32>().ok())
                    == Some(ns_pid)
            })
        })
        .map(nix::unistd::Pid::from_raw)
}

/// Sets the process's securebits (`prctl(PR_SET_SECUREBITS)`); needs CAP_SETPCAP.
pub fn set_securebits(bits: libc::c_int) -> io::Result<()> {
    // SAFETY: PR_SET_SECUREBITS takes an integer argument and touches no memory.
    check(unsafe { libc::prctl(libc::PR_SET_SECUREBITS, bits as libc::c_ulong, 0, 0, 0) }.into())?;
    Ok(())
}

/// Namespaces a sandbox's first process is created in.
pub const SANDBOX_NAMESPACES: u64 = (libc::CLONE_NEWPID | libc::CLONE_NEWNS) as u64;
/// Added when the sandbox gets no network at all.
pub const NETWORK_NAMESPACE: u64 = libc::CLONE_NEWNET as u64;

/// `struct clone_args` of `clone3(2)`, up to the `cgroup` field (version 2, 88 bytes).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Forks into new namespaces and the cgroup whose directory `cgroup` is (`clone3` without
/// a new stack, so it returns twice like `fork`): `Ok(None)` in the child, `Ok(Some(pid))`
/// in the parent. With `CLONE_NEWPID` the child is PID 1 of its namespace.
///
/// The caller must be single-threaded: the child runs ordinary Rust code (allocations
/// included) until it execs, which is only sound when no other thread could have held a
/// lock at the moment of the fork.
pub fn fork_into_namespaces(flags: u64, cgroup: &OwnedFd) -> io::Result<Option<nix::unistd::Pid>> {
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    match thread_count() {
        Some(1) => {}
        Some(n) => {
            return Err(io::Error::other(format!(
                "refusing to fork a sandbox from a multi-threaded process ({n} threads)"
            )))
        }
        None => {
            return Err(io::Error::other(
                "refusing to fork a sandbox: cannot count this process's threads (/proc/self/task)",
            ))
        }
    }
    let args = CloneArgs {
        flags: flags | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: the process is single-threaded (checked above). With no stack given, clone3
    // duplicates the caller like fork: the child continues on a copy of this stack, and
    // `args` is only read by the kernel during the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match check(ret)? {
        0 => Ok(None),
        pid => Ok(Some(nix::unistd::Pid::from_raw(pid as i32))),
    }
}

/// What the command's process does between its clone and its exec (see [`spawn_exec`]),
/// prepared in full beforehand: that process shares its parent's memory until it execs, so
/// it may allocate nothing and change nothing its parent owns.
pub struct ExecPlan<'a> {
    /// Where the program is looked for, in order (`execvp`'s search, done in advance).
    pub candidates: &'a [CString],
    pub argv: &'a [CString],
    pub env: &'a [CString],
    /// The `tasks` files of cgroup v1 cgroups the process joins first (writing `0` moves
    /// the writer alone, and the files were opened by root, whose right the kernel checks).
    pub join: &'a [std::os::fd::BorrowedFd<'a>],
    /// The Landlock ruleset the process enters, and `landlock_restrict_self`'s flags.
    pub landlock: Option<(std::os::fd::BorrowedFd<'a>, u32)>,
    /// The signal mask the program starts with.
    pub mask: libc::sigset_t,
    /// The exit code of the process when `step` failed with `errno`.
    pub exit_code: fn(step: ExecStep, errno: i32) -> i32,
}

/// The step of [`ExecPlan`] that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecStep {
    Join,
    Landlock,
    Exec,
}

impl ExecStep {
    /// What `Shared::failed_step` stores for the step (0 is "nothing failed").
    fn index(self) -> i32 {
        match self {
            ExecStep::Join => 1,
            ExecStep::Landlock => 2,
            ExecStep::Exec => 3,
        }
    }

    /// The step `Shared::failed_step` names; any other value than a step's is the exec.
    fn from_index(index: i32) -> Option<ExecStep> {
        match index {
            0 => None,
            1 => Some(ExecStep::Join),
            2 => Some(ExecStep::Landlock),
            _ => Some(ExecStep::Exec),
        }
    }
}

/// What the child of [`spawn_exec`] reads and writes: pointers into the parent's [`ExecPlan`]
/// and the parent's stack, alive until the child has exec'd or exited (`CLONE_VFORK`).
struct Shared {
    candidates: Vec<*const libc::c_char>,
    argv: Vec<*const libc::c_char>,
    env: Vec<*const libc::c_char>,
    join: Vec<libc::c_int>,
    landlock: Option<(libc::c_int, u32)>,
    mask: libc::sigset_t,
    exit_code: fn(ExecStep, i32) -> i32,
    /// 0 while nothing failed, else the failed step's [`ExecStep::index`].
    failed_step: std::sync::atomic::AtomicI32,
    failed_errno: std::sync::atomic::AtomicI32,
}

/// The bytes of the child's stack: it runs a handful of raw calls.
const EXEC_STACK_BYTES: usize = 64 * 1024;

/// Starts a process that follows `plan` up to its `execve`, the way `posix_spawn` does:
/// `clone(CLONE_VM | CLONE_VFORK)`, so the process shares this one's memory (its page tables
/// are neither copied at the clone nor torn down at the exec, which cost more than a
/// millisecond for Cordon's process) and this one waits until it has exec'd or exited.
/// Returns its pid and, if it exited before its exec, which step failed and with which errno.
///
/// The child takes no lock and allocates nothing, so the caller's other threads, if any, do
/// not matter. It shares the calling thread's thread-local storage (its `errno` included),
/// which is sound only because that thread is suspended until the exec. A signal that
/// reaches it before its exec runs the caller's handler on the child's stack (init's
/// handlers do nothing).
pub fn spawn_exec(plan: &ExecPlan<'_>) -> io::Result<(nix::unistd::Pid, Option<(ExecStep, i32)>)> {
    use std::sync::atomic::{AtomicI32, Ordering};
    let pointers = |strings: &[CString]| -> Vec<*const libc::c_char> {
        strings
            .iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect()
    };
    let shared = Shared {
        candidates: plan.candidates.iter().map(|c| c.as_ptr()).collect(),
        argv: pointers(plan.argv),
        env: pointers(plan.env),
        join: plan.join.iter().map(|fd| fd.as_raw_fd()).collect(),
        landlock: plan.landlock.map(|(fd, flags)| (fd.as_raw_fd(), flags)),
        mask: plan.mask,
        exit_code: plan.exit_code,
        failed_step: AtomicI32::new(0),
        failed_errno: AtomicI32::new(0),
    };
    let mut stack = vec![0u8; EXEC_STACK_BYTES];
    // The stack grows down from its end, 16-byte aligned as the ABI wants at a call.
    let top = (stack.as_mut_ptr() as usize + EXEC_STACK_BYTES) & !15;

    extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `arg` is the `Shared` of `spawn_exec`, whose frame is suspended (CLONE_VFORK)
        // until this process has exec'd or exited; it is only read here, but for the
        // atomics.
        let shared = unsafe { &*(arg as *const Shared) };
        let errno = || {
            io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EINVAL)
        };
        let fail = |step: ExecStep, errno: i32| -> ! {
            shared.failed_errno.store(errno, Ordering::Relaxed);
            shared.failed_step.store(step.index(), Ordering::Release);
            // SAFETY: ends this process only (it is not a thread of its parent's).
            unsafe { libc::_exit((shared.exit_code)(step, errno)) }
        };
        // SAFETY: plain system calls on this process's own signal state (its handlers are
        // its own: no CLONE_SIGHAND), with pointers to valid memory. An ignored SIGPIPE
        // would survive the exec.
        unsafe {
            let mut default: libc::sigaction = std::mem::zeroed();
            default.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(libc::SIGPIPE, &default, std::ptr::null_mut());
            libc::sigprocmask(libc::SIG_SETMASK, &shared.mask, std::ptr::null_mut());
        }
        for &tasks in &shared.join {
            // SAFETY: writes one byte of a static string to a descriptor of this process's
            // copy of the parent's.
            if unsafe { libc::write(tasks, b"0".as_ptr().cast(), 1) } != 1 {
                fail(ExecStep::Join, errno());
            }
        }
        if let Some((fd, flags)) = shared.landlock {
            // SAFETY: landlock_restrict_self reads no memory; `fd` is the parent's ruleset,
            // open in this process's copy of its descriptors.
            if unsafe { libc::syscall(libc::SYS_landlock_restrict_self, fd, flags) } != 0 {
                fail(ExecStep::Landlock, errno());
            }
        }
        let mut last = libc::ENOENT;
        for &candidate in &shared.candidates {
            // SAFETY: NUL-terminated strings and NULL-terminated arrays of them, owned by
            // the suspended parent.
            unsafe { libc::execve(candidate, shared.argv.as_ptr(), shared.env.as_ptr()) };
            // Like execvp: remember a permission error, keep looking past missing files.
            let err = errno();
            if err == libc::EACCES || last != libc::EACCES {
                last = err;
            }
        }
        fail(ExecStep::Exec, last)
    }

    // SAFETY: `child` runs on `stack`, which nothing else uses, and returns never (it execs
    // or exits). With CLONE_VFORK this call returns only once the child no longer uses this
    // process's memory, so `shared` and `stack` outlive its use of them. Without
    // CLONE_SIGHAND and CLONE_FILES, its handlers and descriptors are copies.
    let pid = unsafe {
        libc::clone(
            child,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            &shared as *const Shared as *mut libc::c_void,
        )
    };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    drop(stack);
    let failed = ExecStep::from_index(shared.failed_step.load(Ordering::Acquire));
    let errno = shared.failed_errno.load(Ordering::Relaxed);
    Ok((
        nix::unistd::Pid::from_raw(pid),
        failed.map(|step| (step, errno)),
    ))
}

/// The descriptor [`close_at_exit`] was last given (its number; -1 for none).
static CLOSED_AT_EXIT: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// Keeps `fd` open until this process exits, so that what closing it makes the kernel do
/// (tear a sandbox's mount namespace down) comes after this process's caller has been told
/// it is done, and, with [`unmap_after_exit`], in another process. One at a time: given
/// another, it closes the one before.
pub fn close_at_exit(fd: OwnedFd) {
    use std::os::fd::IntoRawFd as _;
    let previous = CLOSED_AT_EXIT.swap(fd.into_raw_fd(), std::sync::atomic::Ordering::AcqRel);
    if previous >= 0 {
        // SAFETY: the number came from `into_raw_fd` above, in an earlier call, and the swap
        // gave it to this call alone.
        drop(unsafe { OwnedFd::from_raw_fd(previous) });
    }
}

/// A system call made without libc, so without `errno`: the process [`unmap_after_exit`]
/// starts shares the thread-local storage of the thread that started it, which may still
/// run. Returns the kernel's result (a negative errno on failure).
///
/// # Safety
/// As the system call `number` itself with these arguments.
unsafe fn raw_syscall(number: libc::c_long, args: [usize; 5]) -> isize {
    let ret: isize;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the x86-64 system call convention; the kernel clobbers rcx and r11 only.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") number as isize => ret,
            in("rdi") args[0],
            in("rsi") args[1],
            in("rdx") args[2],
            in("r10") args[3],
            in("r8") args[4],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: the arm64 system call convention: number in x8, result in x0.
    unsafe {
        std::arch::asm!(
            "svc 0",
            inlateout("x0") args[0] as isize => ret,
            in("x1") args[1],
            in("x2") args[2],
            in("x3") args[3],
            in("x4") args[4],
            in("x8") number,
            options(nostack),
        );
    }
    ret
}

/// The bytes of the stack of [`unmap_after_exit`]'s process: it makes a few raw calls.
const HOLDER_STACK_BYTES: usize = 16 * 1024;

/// Lets this process's parent learn of its exit before the kernel has unmapped its memory.
///
/// The kernel tears a process's memory down in its exit, before it tells the parent, unless
/// another process shares that memory: then the last of them to exit does it. So this
/// starts a process that shares it (`clone(CLONE_VM)`, named `cordon-exit`) and holds no
/// descriptor but a pidfd of this process and the one given to [`close_at_exit`]: it
/// blocks every signal, leaves the working directory for `/`, waits until this process has
/// exited, and exits. Unmapping is most of `cordon run`'s exit (a 9 MB process, 4.3 MB of
/// it Cordon's code, where bubblewrap's process is small), and its caller no longer waits
/// for it, nor for what closing that descriptor makes the kernel do.
///
/// This process's command line is blanked first: it is in the memory the two share, and
/// `ps` and `pgrep -f` would see it on the other one. Call it once, last, from the main
/// thread, just before this process exits. Once this process is gone the other is an
/// orphan for a moment, reaped by PID 1 or a subreaper (one that never reaps keeps it as a
/// zombie); as PID 1 of a namespace, where the kernel would end it with this process, this
/// starts none. Returns its pid, or `None` when it started none.
pub fn unmap_after_exit() -> io::Result<Option<nix::unistd::Pid>> {
    static CALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    extern "C" fn hold(arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `arg` points at the two descriptor numbers written at the bottom of this
        // process's own stack before the clone.
        let [pidfd, kept] = unsafe { *(arg as *const [libc::c_int; 2]) };
        // Closed: the ranges between the kept ones (-1, none, sorts last as a u32).
        let (low, high) = (
            (pidfd as u32).min(kept as u32),
            (pidfd as u32).max(kept as u32),
        );
        let ranges = [
            (0, low.checked_sub(1)),
            (low.saturating_add(1), high.checked_sub(1)),
            (high.saturating_add(1), Some(u32::MAX)),
        ];
        let mut exited = libc::pollfd {
            fd: pidfd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: raw calls (no libc: see `raw_syscall`) on this process's own descriptor
        // table (a copy: no CLONE_FILES), working directory (no CLONE_FS) and name, and a
        // poll of one `pollfd` on this stack. A failed one loses nothing: the memory is
        // then unmapped by whichever process exits last. `exit_group` ends this one alone.
        unsafe {
            for (first, last) in ranges {
                if let Some(last) = last.filter(|&last| last >= first) {
                    raw_syscall(
                        libc::SYS_close_range,
                        [first as usize, last as usize, 0, 0, 0],
                    );
                }
            }
            raw_syscall(libc::SYS_chdir, [c"/".as_ptr() as usize, 0, 0, 0, 0]);
            let name = c"cordon-exit".as_ptr() as usize;
            raw_syscall(libc::SYS_prctl, [libc::PR_SET_NAME as usize, name, 0, 0, 0]);
            let poll = [&mut exited as *mut libc::pollfd as usize, 1, 0, 0, 8];
            while raw_syscall(libc::SYS_ppoll, poll) == -(libc::EINTR as isize) {}
            raw_syscall(libc::SYS_exit_group, [0; 5]);
        }
        0
    }
    if nix::unistd::getpid().as_raw() == 1 || CALLED.swap(true, std::sync::atomic::Ordering::AcqRel)
    {
        return Ok(None);
    }
    blank_command_line();
    let pidfd = pidfd_open(nix::unistd::Pid::this())?;
    // Taken: this process's copy is closed below, the other's when it exits.
    let kept = CLOSED_AT_EXIT.swap(-1, std::sync::atomic::Ordering::AcqRel);
    // SAFETY: the number came from `close_at_exit`, and the swap gave it to this call alone.
    let kept = (kept >= 0).then(|| unsafe { OwnedFd::from_raw_fd(kept) });
    // SAFETY: a new private anonymous mapping, which nothing else uses. It is never unmapped:
    // the holder runs on it until it exits, and the memory goes with the last of the two.
    let stack = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            HOLDER_STACK_BYTES,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if stack == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let fds = stack.cast::<[libc::c_int; 2]>();
    // SAFETY: the mapping is fresh, writable and aligned for a page; its bottom is the
    // holder's argument, far below where its stack (growing down from the top) reaches.
    unsafe {
        fds.write([
            pidfd.as_raw_fd(),
            kept.as_ref().map_or(-1, |k| k.as_raw_fd()),
        ])
    };
    // Every signal blocked before the clone, glibc's own two included (which its
    // `sigprocmask` leaves out), so the holder never runs one of this process's handlers:
    // it inherits the mask.
    let all: u64 = !0;
    let mut old: u64 = 0;
    let mask = |set: *const u64, old: *mut u64| {
        // SAFETY: rt_sigprocmask reads and writes one 8-byte set each, both valid here.
        unsafe { libc::syscall(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK, set, old, 8) }
    };
    mask(&all, &mut old);
    // SAFETY: `hold` runs on `stack`, which nothing else uses, and reads no other memory of
    // this process but the two numbers written there.
    let pid = unsafe {
        libc::clone(
            hold,
            (stack as usize + HOLDER_STACK_BYTES) as *mut libc::c_void,
            libc::CLONE_VM | libc::SIGCHLD,
            fds.cast(),
        )
    };
    let cloned = io::Error::last_os_error();
    mask(&old, std::ptr::null_mut());
    if pid < 0 {
        return Err(cloned);
    }
    drop(kept);
    Ok(Some(nix::unistd::Pid::from_raw(pid)))
}

/// Overwrites this process's command line (the strings `/proc/<pid>/cmdline` reads, which
/// nothing reads again once the arguments are parsed) with `cordon-exit`: see
/// [`unmap_after_exit`].
fn blank_command_line() {
    // Where the strings are, from `/proc/self/stat` (its 48th and 49th fields).
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    // Fields after the name, which may hold spaces, start with the third.
    let Some((_, after_name)) = stat.rsplit_once(") ") else {
        return;
    };
    let mut fields = after_name.split_ascii_whitespace().skip(48 - 3);
    let (Some(Ok(start)), Some(Ok(end))) = (
        fields.next().map(str::parse::<usize>),
        fields.next().map(str::parse::<usize>),
    ) else {
        return;
    };
    let name = b"cordon-exit";
    if end <= start || end - start < name.len() {
        return;
    }
    // SAFETY: [start, end) is this process's argument area, on its initial stack, mapped and
    // writable for its life; Rust holds no reference into it (std reads the strings only
    // when asked for the arguments, which this process is done with).
    unsafe {
        std::ptr::write_bytes(start as *mut u8, 0, end - start);
        std::ptr::copy_nonoverlapping(name.as_ptr(), start as *mut u8, name.len());
    }
}

/// A new network namespace, made on a thread of its own while the launch goes on: making
/// one costs the kernel most of a millisecond (its loopback device, its sysctl tables), and
/// `clone3(CLONE_NEWNET)` made the fork wait for it. Init enters it with [`enter_network`].
/// Join the thread (and see [`wait_single_threaded`]) before forking.
pub fn network_namespace_ahead() -> io::Result<std::thread::JoinHandle<io::Result<OwnedFd>>> {
    std::thread::Builder::new()
        .name("cordon-netns".into())
        .spawn(|| {
            // This thread alone moves into the new namespace, and ends.
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
            let ns = std::fs::File::open("/proc/thread-self/ns/net")?;
            Ok(OwnedFd::from(ns))
        })
}

/// Moves this process into the network namespace `ns`.
pub fn enter_network(ns: &OwnedFd) -> io::Result<()> {
    nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
    Ok(())
}

/// Waits, up to a second, until this process has one thread: a joined thread is gone from
/// `/proc/self/task` only a moment after its join returns (the kernel wakes the joiner
/// before it unhashes the thread), longer if it is preempted meanwhile.
pub fn wait_single_threaded() {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    let mut rounds = 0u32;
    while thread_count() != Some(1) && std::time::Instant::now() < deadline {
        rounds += 1;
        if rounds < 100 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(std::time::Duration::from_micros(100));
        }
    }
}

/// Brings the loopback interface of the current network namespace up.
pub fn bring_up_loopback() -> io::Result<()> {
    #[repr(C)]
    struct IfReq {
        name: [u8; libc::IFNAMSIZ],
        flags: libc::c_short,
        _pad: [u8; 22],
    }
    const SIOCGIFFLAGS: libc::c_ulong = 0x8913;
    const SIOCSIFFLAGS: libc::c_ulong = 0x8914;
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: 0,
        _pad: [0; 22],
    };
    req.name[..2].copy_from_slice(b"lo");
    // SAFETY: `req` is a valid, writable ifreq-sized buffer naming "lo"; the kernel reads
    // the name and writes the flags.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), SIOCGIFFLAGS, &mut req) }.into())?;
    req.flags |= libc::IFF_UP as libc::c_short;
    // SAFETY: as above; the kernel reads the name and the new flags.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), SIOCSIFFLAGS, &req) }.into())?;
    Ok(())
}

/// A signal handler that does nothing: installed (with the signal blocked) so that PID 1
/// of a namespace, which the kernel spares every signal left at its default action, still
/// receives the signals it relays, through `sigwaitinfo`.
pub fn catch_for_sigwait(signal: nix::sys::signal::Signal) -> io::Result<()> {
    extern "C" fn noop(_: libc::c_int) {}
    let action = nix::sys::signal::SigAction::new(
        nix::sys::signal::SigHandler::Handler(noop),
        nix::sys::signal::SaFlags::SA_RESTART,
        nix::sys::signal::SigSet::empty(),
    );
    // SAFETY: the handler is an empty `extern "C"` function, trivially async-signal-safe.
    unsafe { nix::sys::signal::sigaction(signal, &action) }?;
    Ok(())
}

/// Puts `signal` back to its default action (an ignored SIGPIPE survives `execve`).
pub fn default_action(signal: nix::sys::signal::Signal) -> io::Result<()> {
    // SAFETY: installing SIG_DFL installs no code.
    unsafe { nix::sys::signal::signal(signal, nix::sys::signal::SigHandler::SigDfl) }?;
    Ok(())
}

/// A file of /proc, read whole. `fs::read_to_string` sizes its buffer by the file's length,
/// which /proc gives as 0: it reads 32 bytes, then twice as many, and so on (nine reads
/// for `/proc/self/status`); two reads of a page-sized buffer do.
pub fn read_proc(path: &Path) -> io::Result<String> {
    let mut text = String::with_capacity(8192);
    std::io::Read::read_to_string(&mut std::fs::File::open(path)?, &mut text)?;
    Ok(text)
}

/// This process's threads: the link count of `/proc/self/task` is 2 and one per thread
/// (one `statx`, where `/proc/self/status` has the kernel format 50 lines).
fn thread_count() -> Option<usize> {
    use std::os::unix::fs::MetadataExt as _;
    let links = std::fs::metadata("/proc/self/task").ok()?.nlink();
    usize::try_from(links.checked_sub(2)?).ok()
}

/// Waits for one of the (blocked) signals in `set`; returns its number and `si_code`.
pub fn wait_signal(set: &nix::sys::signal::SigSet) -> io::Result<(i32, i32)> {
    loop {
        // SAFETY: siginfo_t is plain data for which all-zero is a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` wraps a valid sigset_t and `info` is a valid, writable siginfo_t.
        let signo = unsafe { libc::sigwaitinfo(set.as_ref(), &mut info) };
        if signo >= 0 {
            return Ok((signo, info.si_code));
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// A pidfd for `pid` (`pidfd_open`): it becomes readable when the process exits, and it
/// keeps naming that process wherever the descriptor is inherited.
pub fn pidfd_open(pid: nix::unistd::Pid) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and touches no memory.
    let fd = check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) })?;
    // SAFETY: pidfd_open returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Whether the process behind a pidfd has exited (without waiting).
pub fn has_exited(pidfd: &OwnedFd) -> bool {
    use std::os::fd::AsFd;
    let mut fds = [nix::poll::PollFd::new(
        pidfd.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    matches!(nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO), Ok(n) if n > 0)
}

/// The supplementary groups of a unix socket's peer, as they were when it connected
/// (`SO_PEERGROUPS`, Linux 4.13).
pub fn peer_groups(socket: std::os::fd::BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    use std::os::fd::AsRawFd as _;
    let mut groups = vec![0u32; 64];
    loop {
        let mut len = (groups.len() * std::mem::size_of::<u32>()) as libc::socklen_t;
        // SAFETY: the kernel writes at most `len` bytes into `groups`, which has that many,
        // and stores the size it needs (or wrote) in `len`.
        let rc = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let needed = len as usize / std::mem::size_of::<u32>();
        if rc == 0 {
            groups.truncate(needed);
            return Ok(groups);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ERANGE) && needed > groups.len() {
            groups.resize(needed, 0);
            continue;
        }
        return Err(err);
    }
}

/// A pidfd for a unix socket's peer (`SO_PEERPIDFD`, Linux 6.5): it names the process that
/// connected, even after its pid is reused.
pub fn peer_pidfd(socket: std::os::fd::BorrowedFd<'_>) -> io::Result<OwnedFd> {
    use std::os::fd::AsRawFd as _;
    let mut fd: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the kernel writes one int into `fd`, whose size is in `len`.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERPIDFD,
            (&mut fd as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    check(rc.into())?;
    // SAFETY: the kernel just created this descriptor for us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sets the user and groups file accesses are checked against (`setfsuid`, `setfsgid`,
/// `setgroups` for this thread), leaving the real and effective ids alone; used to read files
/// with the rights of the user cordond acts for. Returns what to restore.
pub fn set_fs_identity(uid: u32, gid: u32, groups: &[u32]) -> io::Result<(u32, u32, Vec<u32>)> {
    let old_groups: Vec<u32> = nix::unistd::getgroups()
        .map_err(io::Error::from)?
        .into_iter()
        .map(|g| g.as_raw())
        .collect();
    // SAFETY: setgroups reads `groups.len()` gids from a live slice; the raw syscall changes
    // only this thread's credentials (the caller is single-threaded when it matters).
    check(unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) })?;
    // SAFETY: setfsgid and setfsuid take an integer and touch no memory; they return the
    // previous id, whether or not the change took effect.
    let old_gid = unsafe { libc::setfsgid(gid) } as u32;
    // SAFETY: as above.
    let old_uid = unsafe { libc::setfsuid(uid) } as u32;
    // They report no failure: ask again (an invalid id changes nothing and returns the
    // current one) and fail closed when the change did not happen.
    // SAFETY: as above.
    let now_gid = unsafe { libc::setfsgid(u32::MAX) } as u32;
    // SAFETY: as above.
    let now_uid = unsafe { libc::setfsuid(u32::MAX) } as u32;
    if now_uid != uid || now_gid != gid {
        return Err(io::Error::from_raw_os_error(libc::EPERM));
    }
    Ok((old_uid, old_gid, old_groups))
}

/// Receives bytes and any descriptors sent with them (`SCM_RIGHTS`) from a unix stream;
/// the descriptors come close-on-exec and owned.
pub fn recv_with_fds(
    socket: std::os::fd::BorrowedFd<'_>,
    buf: &mut [u8],
) -> io::Result<(usize, Vec<OwnedFd>)> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _};
    // Room for as many descriptors as one message can carry (SCM_MAX_FD): with less, the
    // kernel would install them and a cut-off control message would leak them.
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 253]);
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg = nix::sys::socket::recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(io::Error::from)?;
    let mut fds = Vec::new();
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(raw) = c {
            // SAFETY: the kernel just installed these descriptors in this process for us;
            // nothing else owns them.
            fds.extend(
                raw.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    Ok((msg.bytes, fds))
}

/// Sends `bytes` with `fds` attached (`SCM_RIGHTS`), or alone when there are none.
pub fn send_with_fds(
    socket: std::os::fd::BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[std::os::fd::BorrowedFd<'_>],
) -> io::Result<usize> {
    let raw: Vec<std::os::fd::RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let rights = [nix::sys::socket::ControlMessage::ScmRights(&raw)];
    let cmsgs: &[nix::sys::socket::ControlMessage<'_>] = if raw.is_empty() { &[] } else { &rights };
    nix::sys::socket::sendmsg::<()>(
        socket.as_raw_fd(),
        &[io::IoSlice::new(bytes)],
        cmsgs,
        nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(io::Error::from)
}

/// For `pre_exec`: puts each `(fd, target)` at descriptor number `target`, without
/// close-on-exec. Uses only async-signal-safe calls (the child of a fork may not allocate).
pub fn place_fds(fds: &[(std::os::fd::RawFd, std::os::fd::RawFd)]) -> io::Result<()> {
    let mut moved = [0; 8];
    if fds.len() > moved.len() {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // First out of the way (a source may sit on another one's target), then into place.
    for (i, (fd, _)) in fds.iter().enumerate() {
        // SAFETY: F_DUPFD_CLOEXEC duplicates a descriptor; it touches no memory.
        moved[i] = check(unsafe { libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 64) }.into())? as i32;
    }
    for (i, (_, target)) in fds.iter().enumerate() {
        // SAFETY: dup2 duplicates a descriptor; it touches no memory. The new descriptor
        // has close-on-exec cleared, which is the point.
        check(unsafe { libc::dup2(moved[i], *target) }.into())?;
    }
    Ok(())
}

/// Makes `command` start in a session of its own, with each `(fd, target)` at descriptor
/// number `target` (see [`place_fds`]).
pub fn detach_with_fds(
    command: &mut std::process::Command,
    fds: [(std::os::fd::RawFd, std::os::fd::RawFd); 2],
) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: between fork and exec the closure calls only setsid, fcntl and dup2, which
    // are async-signal-safe, and allocates nothing (`fds` is an array moved in).
    unsafe {
        command.pre_exec(move || {
            nix::unistd::setsid().map_err(io::Error::from)?;
            place_fds(&fds)
        });
    }
}

/// Creates `path` empty (a directory of mode 0700, or a file of mode 0600) with any missing
/// parent directories (0755), following no symlink on the way: what stands in for a protected path the
/// sandbox must not create. `Ok(false)` when something is there already.
pub fn create_placeholder(path: &Path, dir: bool) -> io::Result<bool> {
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    let parts: Vec<&std::ffi::OsStr> = path
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(p) => Some(p),
            _ => None,
        })
        .collect();
    let Some((last, parents)) = parts.split_last() else {
        return Ok(false);
    };
    let walk = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut at = nix::fcntl::open("/", walk, Mode::empty())?;
    for part in parents {
        at = match nix::fcntl::openat(&at, *part, walk, Mode::empty()) {
            Err(nix::errno::Errno::ENOENT) => {
                nix::sys::stat::mkdirat(&at, *part, Mode::from_bits_truncate(0o755))?;
                nix::fcntl::openat(&at, *part, walk, Mode::empty())?
            }
            other => other?,
        };
    }
    let made = if dir {
        nix::sys::stat::mkdirat(&at, *last, Mode::from_bits_truncate(0o700)).map(drop)
    } else {
        let flags =
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        nix::fcntl::openat(&at, *last, flags, Mode::from_bits_truncate(0o600)).map(drop)
    };
    match made {
        Ok(()) => Ok(true),
        Err(nix::errno::Errno::EEXIST) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The multicast groups (1 to 32) a netlink socket is a member of, as a bit mask
/// (`NETLINK_LIST_MEMBERSHIPS`; bit n-1 for group n).
pub fn netlink_groups(socket: std::os::fd::BorrowedFd<'_>) -> io::Result<u32> {
    use std::os::fd::AsRawFd as _;
    const NETLINK_LIST_MEMBERSHIPS: libc::c_int = 9;
    let mut groups = 0u32;
    let mut len = std::mem::size_of::<u32>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `groups`, a u32 that lives
    // through the call, and stores the length it wrote into `len`.
    let ret = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_NETLINK,
            NETLINK_LIST_MEMBERSHIPS,
            (&mut groups as *mut u32).cast(),
            &mut len,
        )
    };
    check(ret.into())?;
    Ok(groups)
}

/// Joins a netlink socket to multicast group `group` (`NETLINK_ADD_MEMBERSHIP`).
pub fn netlink_join(socket: std::os::fd::BorrowedFd<'_>, group: u32) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    const NETLINK_ADD_MEMBERSHIP: libc::c_int = 1;
    // SAFETY: the kernel reads a u32 from `group`, which lives through the call.
    let ret = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_NETLINK,
            NETLINK_ADD_MEMBERSHIP,
            (&group as *const u32).cast(),
            std::mem::size_of::<u32>() as libc::socklen_t,
        )
    };
    check(ret.into())?;
    Ok(())
}

/// Whether the peer of a stream socket has closed its end (without reading anything).
pub fn peer_closed(socket: std::os::fd::BorrowedFd<'_>) -> bool {
    use std::os::fd::AsRawFd as _;
    let mut byte = [0u8; 1];
    match nix::sys::socket::recv(
        socket.as_raw_fd(),
        &mut byte,
        nix::sys::socket::MsgFlags::MSG_PEEK | nix::sys::socket::MsgFlags::MSG_DONTWAIT,
    ) {
        Ok(0) => true,
        Ok(_) => false,
        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => false,
        Err(_) => true,
    }
}

/// Takes ownership of descriptor `fd`, handed down by the parent (cordond gives a worker
/// fds 3 and 4), and marks it close-on-exec.
pub fn inherited_fd(fd: std::os::fd::RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_GETFD only reads the descriptor's flags; it fails with EBADF when `fd` is
    // not open, and then nothing is taken.
    let flags = check(unsafe { libc::fcntl(fd, libc::F_GETFD) }.into())?;
    let cloexec = flags as libc::c_int | libc::FD_CLOEXEC;
    // SAFETY: F_SETFD sets a flag on the descriptor; it touches no memory.
    let set = unsafe { libc::fcntl(fd, libc::F_SETFD, cloexec) };
    check(set.into())?;
    // SAFETY: `fd` is open (checked above) and was handed to this process to own; nothing
    // else in this process uses it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    /// The kernel's own count, from `/proc/self/status`.
    fn threads_in_status() -> usize {
        let status = super::read_proc(std::path::Path::new("/proc/self/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap()
    }

    #[test]
    fn thread_count_follows_threads_as_they_start_and_end() {
        // Other tests run on threads of their own beside this one: compared at one moment
        // against the kernel's count, with one thread of this test held open.
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let (started, ready) = std::sync::mpsc::channel::<()>();
        let held = std::thread::spawn(move || {
            started.send(()).unwrap();
            let _ = wait.recv();
        });
        ready.recv().unwrap();
        // Read between two reads of the kernel's count that agree (the other tests' threads
        // come and go).
        let (agreed, counted) = (0..100)
            .find_map(|_| {
                let before = threads_in_status();
                let counted = super::thread_count();
                (threads_in_status() == before).then_some((before, counted))
            })
            .expect("the thread count held still for a moment in 100 tries");
        assert_eq!(counted, Some(agreed));
        assert!(agreed >= 2, "this thread and the held one: {agreed}");
        release.send(()).unwrap();
        held.join().unwrap();
    }

    #[test]
    fn landlock_abi_is_reported() {
        let abi = super::landlock_abi();
        // The project's machines (and so CI) run Linux 6.18 with Landlock ABI 7.
        if std::env::var_os("CI").is_some() {
            assert!(abi >= 7, "CI machines offer Landlock ABI 7, got {abi}");
        } else {
            assert!(abi <= 64, "implausible ABI {abi}");
        }
    }

    #[test]
    fn open_no_symlinks_refuses_a_symlink_anywhere_on_the_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        std::os::unix::fs::symlink("real", dir.path().join("link")).unwrap();
        let canonical = std::fs::canonicalize(dir.path()).unwrap();
        assert!(super::open_no_symlinks(&canonical.join("real")).is_ok());
        let err = super::open_no_symlinks(&canonical.join("link")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP));
    }

    fn exec_plan<'a>(
        candidates: &'a [std::ffi::CString],
        argv: &'a [std::ffi::CString],
    ) -> super::ExecPlan<'a> {
        // SAFETY: sigset_t is plain data; sigemptyset initializes it.
        let mut mask: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `mask` is a valid sigset_t.
        unsafe { libc::sigemptyset(&mut mask) };
        super::ExecPlan {
            candidates,
            argv,
            env: &[],
            join: &[],
            landlock: None,
            mask,
            exit_code: |step, errno| match step {
                super::ExecStep::Join => 80,
                super::ExecStep::Landlock => 90,
                super::ExecStep::Exec => 100 + errno,
            },
        }
    }

    fn exit_code(pid: nix::unistd::Pid) -> i32 {
        match nix::sys::wait::waitpid(pid, None).unwrap() {
            nix::sys::wait::WaitStatus::Exited(_, code) => code,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_spawned_program_runs_with_its_arguments_after_the_missing_candidates() {
        let candidates = [c"/no/such/dir/sh".to_owned(), c"/bin/sh".to_owned()];
        let argv = [c"sh".to_owned(), c"-c".to_owned(), c"exit 7".to_owned()];
        let (pid, failed) = super::spawn_exec(&exec_plan(&candidates, &argv)).unwrap();
        assert_eq!(failed, None);
        assert_eq!(exit_code(pid), 7);
    }

    #[test]
    fn the_spawned_process_joins_the_v1_cgroups_it_is_given_before_its_exec() {
        let test = "the_spawned_process_joins_the_v1_cgroups_it_is_given_before_its_exec";
        if !cordon_testkit::require_root(test) {
            return;
        }
        let Some(mount) = crate::cgroup::host_v1_mount("pids").unwrap() else {
            // Not a hybrid host: no v1 cgroup to join (CI's machines have one).
            cordon_testkit::skip(test, "no cgroup v1 pids hierarchy on this host");
            return;
        };
        // Removed however the test ends (a failed assertion would leave them otherwise).
        struct Made(Vec<std::path::PathBuf>);
        impl Drop for Made {
            fn drop(&mut self) {
                for dir in &self.0 {
                    let _ = std::fs::remove_dir(dir);
                }
            }
        }
        let dir = mount.join(format!("cordon-test-join-{}", std::process::id()));
        let second = mount.join(format!("cordon-test-join-{}-b", std::process::id()));
        let _made = Made(vec![dir.clone(), second.clone()]);
        std::fs::create_dir(&dir).unwrap();
        let line = format!("pids:/{}", dir.file_name().unwrap().to_string_lossy());
        // Exits 0 when the process's own cgroup is the one made here, 1 when it is not.
        let candidates = [c"/bin/sh".to_owned()];
        let script = format!("grep -qx '[0-9]*:{line}' /proc/self/cgroup");
        let argv = [
            c"sh".to_owned(),
            c"-c".to_owned(),
            std::ffi::CString::new(script).unwrap(),
        ];
        // Unjoined, the twin: the process stays in this one's cgroup.
        let (pid, failed) = super::spawn_exec(&exec_plan(&candidates, &argv)).unwrap();
        assert_eq!((failed, exit_code(pid)), (None, 1));
        let tasks = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("tasks"))
            .unwrap();
        let join = [std::os::fd::AsFd::as_fd(&tasks)];
        let plan = super::ExecPlan {
            join: &join,
            ..exec_plan(&candidates, &argv)
        };
        let (pid, failed) = super::spawn_exec(&plan).unwrap();
        assert_eq!((failed, exit_code(pid)), (None, 0));
        // Joined by the process alone: this one is where it was, so the cgroup is empty
        // again once the process is reaped.
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        assert!(!own.lines().any(|l| l.ends_with(&line)), "{own}");
        std::fs::remove_dir(&dir).unwrap();
        // A file it cannot write (after one it could) is the step that failed, before
        // anything of the program ran.
        let dir = second;
        std::fs::create_dir(&dir).unwrap();
        let tasks = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("tasks"))
            .unwrap();
        let read_only = std::fs::File::open("/dev/null").unwrap();
        let join = [
            std::os::fd::AsFd::as_fd(&tasks),
            std::os::fd::AsFd::as_fd(&read_only),
        ];
        let plan = super::ExecPlan {
            join: &join,
            ..exec_plan(&candidates, &argv)
        };
        let (pid, failed) = super::spawn_exec(&plan).unwrap();
        assert_eq!(failed, Some((super::ExecStep::Join, libc::EBADF)));
        assert_eq!(exit_code(pid), 80);
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn each_step_reads_back_as_the_step_stored() {
        use super::ExecStep;
        for step in [ExecStep::Join, ExecStep::Landlock, ExecStep::Exec] {
            assert_eq!(ExecStep::from_index(step.index()), Some(step));
        }
        assert_eq!(ExecStep::from_index(0), None);
    }

    #[test]
    fn a_program_that_cannot_start_is_reported_with_its_errno_and_exit_code() {
        let candidates = [c"/no/such/program".to_owned()];
        let argv = [c"program".to_owned()];
        let (pid, failed) = super::spawn_exec(&exec_plan(&candidates, &argv)).unwrap();
        assert_eq!(failed, Some((super::ExecStep::Exec, libc::ENOENT)));
        assert_eq!(exit_code(pid), 100 + libc::ENOENT);
        // A permission error is kept over a later missing file, as execvp does.
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("not-executable");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        let candidates = [
            std::ffi::CString::new(script.as_os_str().as_encoded_bytes()).unwrap(),
            c"/no/such/program".to_owned(),
        ];
        let (pid, failed) = super::spawn_exec(&exec_plan(&candidates, &argv)).unwrap();
        assert_eq!(failed, Some((super::ExecStep::Exec, libc::EACCES)));
        assert_eq!(exit_code(pid), 100 + libc::EACCES);
    }

    #[test]
    fn a_descriptor_left_to_close_at_exit_is_closed_when_the_next_is_given() {
        use std::io::Read as _;
        // Readable (at its end) once no write end is open, idle while one is.
        let readable = |pipe: &std::io::PipeReader| {
            let mut fds = [nix::poll::PollFd::new(
                std::os::fd::AsFd::as_fd(pipe),
                nix::poll::PollFlags::POLLIN,
            )];
            nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).unwrap() > 0
        };
        let (mut first_read, first) = std::io::pipe().unwrap();
        let (second_read, second) = std::io::pipe().unwrap();
        super::close_at_exit(first.into());
        assert!(!readable(&first_read), "closed while held");
        super::close_at_exit(second.into());
        assert_eq!(first_read.read(&mut [0u8; 1]).unwrap(), 0);
        assert!(!readable(&second_read), "the last one given is closed");
    }

    /// The state letter and name of a process, from `/proc/<pid>/stat`; `None` once it is gone.
    fn state_and_name(pid: i32) -> Option<(char, String)> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (name, rest) = stat.split_once(" (")?.1.rsplit_once(") ")?;
        Some((rest.chars().next()?, name.to_string()))
    }

    #[test]
    fn the_process_left_to_unmap_shares_the_memory_alone_and_goes_with_its_parent() {
        use std::io::{Read as _, Write as _};
        const KCMP_VM: libc::c_int = 1;
        const KCMP_FILES: libc::c_int = 2;
        let test = "the_process_left_to_unmap_shares_the_memory_alone_and_goes_with_its_parent";
        let (mut told, mut tell) = std::io::pipe().unwrap();
        let (mut wait, release) = std::io::pipe().unwrap();
        // SAFETY: the child calls no code that takes a lock another thread of the harness
        // may have held at the fork (glibc's allocator is reset for a forked child), and
        // ends with `_exit`.
        let child = match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                drop(release);
                // Kept open by the holder, as `cordon run`'s sandbox's mount namespace is.
                if let Ok(namespace) = std::fs::File::open("/proc/self/ns/mnt") {
                    super::close_at_exit(namespace.into());
                }
                let code = match super::unmap_after_exit() {
                    Ok(holder) => {
                        let pid = holder.map_or(0, nix::unistd::Pid::as_raw);
                        let _ = tell.write_all(&pid.to_ne_bytes());
                        // Until the test lets it go: the end of `release`.
                        let _ = wait.read(&mut [0u8; 1]);
                        0
                    }
                    Err(_) => 1,
                };
                // SAFETY: ends the forked child without the harness's atexit handlers.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => child,
        };
        drop((tell, wait));
        let mut pid = [0u8; 4];
        told.read_exact(&mut pid).unwrap();
        let holder = i32::from_ne_bytes(pid);
        assert_ne!(holder, 0, "no process was started");
        // SAFETY: kcmp compares two processes' kernel objects and touches no memory.
        let kcmp = |what: libc::c_int| unsafe {
            libc::syscall(libc::SYS_kcmp, child.as_raw(), holder, what, 0usize, 0usize)
        };
        if kcmp(KCMP_VM) < 0 {
            let e = std::io::Error::last_os_error();
            drop(release);
            let _ = exit_code(child);
            cordon_testkit::skip(test, &format!("kcmp is not available here: {e}"));
            return;
        }
        assert_eq!(
            kcmp(KCMP_VM),
            0,
            "the holder does not share its parent's memory"
        );
        assert_ne!(
            kcmp(KCMP_FILES),
            0,
            "the holder shares its parent's descriptors"
        );
        // Once it has set itself up: a pidfd (of its parent) and the descriptor left to
        // close at exit and nothing else, `/` as its directory, its name, every signal
        // blocked but the two that cannot be, and this process's command line gone from it.
        let fds = || -> Vec<String> {
            let Ok(dir) = std::fs::read_dir(format!("/proc/{holder}/fd")) else {
                return Vec::new();
            };
            let mut fds: Vec<String> = dir
                .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .map(|target| target.to_string_lossy().into_owned())
                .collect();
            fds.sort();
            fds
        };
        let cwd = || std::fs::read_link(format!("/proc/{holder}/cwd")).ok();
        let name = || state_and_name(holder).map(|(_, name)| name);
        let blocked = || {
            let status = std::fs::read_to_string(format!("/proc/{holder}/status")).ok()?;
            let line = status.lines().find_map(|l| l.strip_prefix("SigBlk:"))?;
            u64::from_str_radix(line.trim(), 16).ok()
        };
        let cmdline = || {
            let line = std::fs::read(format!("/proc/{holder}/cmdline")).ok()?;
            Some(
                String::from_utf8_lossy(&line)
                    .trim_end_matches('\0')
                    .to_string(),
            )
        };
        let namespace = std::fs::read_link("/proc/self/ns/mnt").unwrap();
        let expected = [
            "anon_inode:[pidfd]".to_string(),
            namespace.to_string_lossy().into(),
        ];
        let all_but_kill_and_stop: u64 = !((1 << (libc::SIGKILL - 1)) | (1 << (libc::SIGSTOP - 1)));
        let settled = || {
            fds() == expected
                && cwd().as_deref() == Some(std::path::Path::new("/"))
                && name().as_deref() == Some("cordon-exit")
                && blocked() == Some(all_but_kill_and_stop)
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !settled() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(fds(), expected);
        assert_eq!(cwd().as_deref(), Some(std::path::Path::new("/")));
        assert_eq!(name().as_deref(), Some("cordon-exit"));
        assert_eq!(blocked(), Some(all_but_kill_and_stop), "SigBlk");
        assert_eq!(cmdline().as_deref(), Some("cordon-exit"));
        // Alive for as long as its parent is.
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_ne!(state_and_name(holder).map(|(state, _)| state), Some('Z'));
        drop(release);
        assert_eq!(exit_code(child), 0);
        // Then it exits too (an orphan, left for PID 1 to reap).
        let exited = || match state_and_name(holder) {
            None => true,
            Some((state, name)) => state == 'Z' || name != "cordon-exit",
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !exited() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(
            exited(),
            "the holder outlived its parent: {:?}",
            state_and_name(holder)
        );
    }
}
