//! `probe`: does one thing a sandboxed agent might try and prints what happened.
//!
//! Prints `ok`, `value <text>` (exit 0) or `err <ERRNO>` (exit 1), so the end-to-end tests
//! can assert the exact errno of a denial. Prefixes `fork`, `setsid` and `reexec` run the
//! rest of the command line in a child, a new session, or a fresh exec of the probe.

mod steal;

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::ExitCode;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

enum Outcome {
    Ok,
    Value(String),
    Err(Errno),
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = act(&args);
    match outcome {
        Outcome::Ok => println!("ok"),
        Outcome::Value(v) => println!("value {v}"),
        Outcome::Err(e) => {
            println!("err {e:?}");
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}

fn res<T>(r: Result<T, Errno>) -> Outcome {
    match r {
        Ok(_) => Outcome::Ok,
        Err(e) => Outcome::Err(e),
    }
}

fn io(r: std::io::Result<()>) -> Outcome {
    match r {
        Ok(()) => Outcome::Ok,
        Err(e) => Outcome::Err(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))),
    }
}

fn raw(ret: libc::c_long) -> Outcome {
    if ret < 0 {
        Outcome::Err(Errno::last())
    } else {
        Outcome::Ok
    }
}

/// A raw syscall with integer arguments only (no pointers the kernel could write through).
fn syscall(nr: libc::c_long, a: libc::c_long, b: libc::c_long, c: libc::c_long) -> Outcome {
    // SAFETY: every argument is a plain integer; the calls the probe makes with it read no
    // memory (null pointers are rejected by the kernel with EFAULT at worst).
    raw(unsafe { libc::syscall(nr, a, b, c) })
}

fn pid(s: &str) -> Pid {
    Pid::from_raw(s.parse().unwrap_or_else(|_| usage()))
}

fn usage() -> ! {
    eprintln!("usage: probe ACTION [ARGS] (see the source for the list)");
    std::process::exit(2)
}

/// Runs `child` in a forked child and returns the child's outcome as its own.
fn in_child(child: impl FnOnce() -> Outcome) -> Outcome {
    let (mut rd, wr) = std::io::pipe().unwrap_or_else(|_| usage());
    // SAFETY: the probe is single-threaded; the child only runs the action and exits.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            let code = match child() {
                Outcome::Ok => 0,
                Outcome::Value(_) => 0,
                Outcome::Err(e) => e as i32,
            };
            let mut wr = wr;
            let _ = wr.write_all(&code.to_le_bytes());
            // SAFETY: leaving the forked child without running the parent's exit handlers.
            unsafe { libc::_exit(0) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            drop(wr);
            let mut buf = [0u8; 4];
            let got = rd.read_exact(&mut buf);
            let _ = nix::sys::wait::waitpid(child, None);
            match got {
                Ok(()) if i32::from_le_bytes(buf) == 0 => Outcome::Ok,
                Ok(()) => Outcome::Err(Errno::from_raw(i32::from_le_bytes(buf))),
                Err(_) => Outcome::Err(Errno::ECHILD),
            }
        }
        Err(e) => Outcome::Err(e),
    }
}

fn dns_query(server: &str, name: &str) -> Outcome {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RData, Record, RecordType};
    let Ok(server) = server.parse::<std::net::SocketAddr>() else {
        usage()
    };
    let Ok(name) = Name::from_labels(name.split('.').map(str::as_bytes)) else {
        return Outcome::Err(Errno::EINVAL);
    };
    let mut query = Message::query();
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(name.clone(), RecordType::A));
    query.add_additional(Record::from_rdata(
        name,
        0,
        RData::TXT(hickory_proto::rr::rdata::TXT::new(vec!["smuggled".into()])),
    ));
    let Ok(bytes) = query.to_vec() else {
        return Outcome::Err(Errno::EINVAL);
    };
    let answer = (|| -> std::io::Result<Message> {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
        socket.set_read_timeout(Some(std::time::Duration::from_secs(3)))?;
        socket.send_to(&bytes, server)?;
        let mut buf = [0u8; 4096];
        let (len, _) = socket.recv_from(&mut buf)?;
        Message::from_vec(&buf[..len]).map_err(std::io::Error::other)
    })();
    match answer {
        Ok(m) => {
            let mut words = vec![m.metadata.response_code.to_string()];
            words.extend(m.answers.iter().map(|r| match &r.data {
                RData::A(a) => a.0.to_string(),
                other => other.record_type().to_string(),
            }));
            Outcome::Value(words.join(" "))
        }
        Err(e) => io(Err(e)),
    }
}

fn act(args: &[String]) -> Outcome {
    let Some((action, rest)) = args.split_first() else {
        usage()
    };
    let arg = |i: usize| rest.get(i).map(String::as_str).unwrap_or_else(|| usage());
    match action.as_str() {
        "read" => io(std::fs::read(arg(0)).map(drop)),
        "write" => io(std::fs::write(arg(0), b"probe")),
        "list" => io(std::fs::read_dir(arg(0)).map(drop)),
        // Changes to DIR, then reads PATH (relative to it, if it is).
        "read-in" => match std::env::set_current_dir(arg(0)) {
            Ok(()) => io(std::fs::read(arg(1)).map(drop)),
            Err(e) => io(Err(e)),
        },
        // Whether the path may be written, as `test -w` asks (access(2) with W_OK).
        "access-write" => {
            let path = std::ffi::CString::new(arg(0)).unwrap_or_else(|_| usage());
            // SAFETY: a valid NUL-terminated path; access only reads it.
            match unsafe { libc::access(path.as_ptr(), libc::W_OK) } {
                0 => Outcome::Ok,
                _ => Outcome::Err(Errno::last()),
            }
        }
        // Opens N missing files (relative to the cwd) as fast as it can, then does the rest.
        "misses" => {
            let n: usize = arg(0).parse().unwrap_or_else(|_| usage());
            for i in 0..n {
                let _ = std::fs::File::open(format!("missing-{i}"));
            }
            act(&rest[1..])
        }
        // Tries to read every path given; `value` counts the ones that could not be read.
        "read-each" => {
            let failed = rest.iter().filter(|p| std::fs::read(p).is_err()).count();
            Outcome::Value(format!("{failed} failed"))
        }
        // Reads each PATH, then sleeps MS; `value` is how each went (`ok`, or the
        // errno), in order.
        "read-each-then-sleep" => {
            let ms = arg(0).parse().unwrap_or_else(|_| usage());
            let went: Vec<String> = rest[1..]
                .iter()
                .map(|p| match std::fs::read(p) {
                    Ok(_) => "ok".to_string(),
                    Err(e) => format!("{:?}", Errno::from_raw(e.raw_os_error().unwrap_or(0))),
                })
                .collect();
            std::thread::sleep(std::time::Duration::from_millis(ms));
            Outcome::Value(went.join(" "))
        }
        "rename" => io(std::fs::rename(arg(0), arg(1))),
        "exec" => {
            let err = std::process::Command::new(arg(0)).args(&rest[1..]).exec();
            io(Err(err))
        }
        "run" => match std::process::Command::new(arg(0)).args(&rest[1..]).status() {
            Ok(s) if s.success() => Outcome::Ok,
            Ok(s) => Outcome::Value(format!("exit {s}")),
            Err(e) => io(Err(e)),
        },
        "connect" => io(std::net::TcpStream::connect(arg(0)).map(drop)),
        // Through the system resolver (getaddrinfo): `value` lists the addresses, sorted.
        "resolve" => {
            use std::net::ToSocketAddrs;
            match (arg(0), 0).to_socket_addrs() {
                Ok(addrs) => {
                    let mut ips: Vec<String> = addrs.map(|a| a.ip().to_string()).collect();
                    ips.sort();
                    ips.dedup();
                    Outcome::Value(ips.join(","))
                }
                // getaddrinfo's failures carry no errno.
                Err(e) => Outcome::Err(Errno::from_raw(e.raw_os_error().unwrap_or(libc::ENOENT))),
            }
        }
        // Reads a TCP stream, printing `bytes N` after each read, until it stalls for 3 s.
        "stream" => {
            let mut stream = match std::net::TcpStream::connect(arg(0)) {
                Ok(s) => s,
                Err(e) => return io(Err(e)),
            };
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(3)));
            let mut total = 0usize;
            let mut buf = [0u8; 65536];
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => return Outcome::Value(format!("closed {total}")),
                    Ok(n) => {
                        total += n;
                        println!("bytes {total}");
                        let _ = std::io::stdout().flush();
                    }
                    Err(e) => return io(Err(e)),
                }
            }
        }
        // Starts N children that wait; fails with the errno of the first fork that fails.
        "spawn-many" => {
            let n: usize = arg(0).parse().unwrap_or_else(|_| usage());
            let mut children = Vec::new();
            let mut outcome = Outcome::Ok;
            for _ in 0..n {
                match std::process::Command::new("/bin/sleep").arg("5").spawn() {
                    Ok(c) => children.push(c),
                    Err(e) => {
                        outcome = io(Err(e));
                        break;
                    }
                }
            }
            for mut c in children {
                let _ = c.kill();
                let _ = c.wait();
            }
            outcome
        }
        // Burns CPU for N seconds.
        "spin" => {
            let until = std::time::Instant::now()
                + std::time::Duration::from_secs(arg(0).parse().unwrap_or(1));
            let mut x = 0u64;
            while std::time::Instant::now() < until {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            Outcome::Ok
        }
        // Makes the same denied call N times (unshare(CLONE_NEWUSER)); `value` counts the EPERMs.
        "deny-loop" => {
            let n: u64 = arg(0).parse().unwrap_or_else(|_| usage());
            let mut denied = 0u64;
            for _ in 0..n {
                if let Outcome::Err(Errno::EPERM) =
                    syscall(libc::SYS_unshare, libc::CLONE_NEWUSER.into(), 0, 0)
                {
                    denied += 1;
                }
            }
            Outcome::Value(denied.to_string())
        }
        // N denied calls that differ in an argument (keyctl(0, i, 0)), paced so the ring
        // buffer keeps up: N distinct events; `value` counts the EPERMs.
        "deny-each" => {
            let n: i64 = arg(0).parse().unwrap_or_else(|_| usage());
            let mut denied = 0u64;
            for i in 0..n {
                if let Outcome::Err(Errno::EPERM) = syscall(libc::SYS_keyctl, 0, i, 0) {
                    denied += 1;
                }
                if i % 200 == 199 {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            }
            Outcome::Value(denied.to_string())
        }
        // N denied calls as fast as they go (keyctl, as above), then reads PATH, then makes
        // the file MARK and sleeps MS: a denial made where the ring buffer may have no room.
        // `value` is how the read went.
        "flood-then-read" => {
            let n: i64 = arg(0).parse().unwrap_or_else(|_| usage());
            for i in 0..n {
                let _ = syscall(libc::SYS_keyctl, 0, i, 0);
            }
            let read = io(std::fs::read(arg(1)).map(drop));
            if let Err(e) = std::fs::write(arg(2), b"") {
                return io(Err(e));
            }
            std::thread::sleep(std::time::Duration::from_millis(
                arg(3).parse().unwrap_or_else(|_| usage()),
            ));
            read
        }
        // Reads LINK (a link the caller made), then at once puts a link to DECOY in its place
        // (made aside, renamed over it), makes the file MARK and sleeps MS: the read's path
        // no longer leads where it went. `value` is how the read went.
        "read-then-swap" => {
            let read = io(std::fs::read(arg(0)).map(drop));
            let aside = format!("{}.swap", arg(0));
            let swapped = std::os::unix::fs::symlink(arg(1), &aside)
                .and_then(|()| std::fs::rename(&aside, arg(0)))
                .and_then(|()| std::fs::write(arg(2), b""));
            if let Err(e) = swapped {
                return io(Err(e));
            }
            std::thread::sleep(std::time::Duration::from_millis(
                arg(3).parse().unwrap_or_else(|_| usage()),
            ));
            read
        }
        // Connects to a unix socket, sends one line and prints the first line of the answer.
        "unix-request" => {
            use std::io::BufRead as _;
            let mut stream = match std::os::unix::net::UnixStream::connect(arg(0)) {
                Ok(s) => s,
                Err(e) => return io(Err(e)),
            };
            if let Err(e) = writeln!(stream, "{}", arg(1)) {
                return io(Err(e));
            }
            let mut line = String::new();
            match std::io::BufReader::new(stream).read_line(&mut line) {
                Ok(_) => Outcome::Value(line.trim_end().to_string()),
                Err(e) => io(Err(e)),
            }
        }
        // A datagram socket of another transport: UDP-Lite, or plain UDP.
        "udplite-socket" => syscall(
            libc::SYS_socket,
            libc::AF_INET.into(),
            libc::SOCK_DGRAM.into(),
            libc::IPPROTO_UDPLITE.into(),
        ),
        "udp-socket" => syscall(
            libc::SYS_socket,
            libc::AF_INET.into(),
            libc::SOCK_DGRAM.into(),
            libc::IPPROTO_UDP.into(),
        ),
        "udp-send" => io(std::net::UdpSocket::bind("0.0.0.0:0")
            .and_then(|s| s.send_to(b"probe", arg(0)))
            .map(drop)),
        "mptcp" => syscall(
            libc::SYS_socket,
            libc::AF_INET.into(),
            libc::SOCK_STREAM.into(),
            262, /* IPPROTO_MPTCP */
        ),
        "memfd-exec" => {
            // An executable copied into a memfd, then run through /proc/self/fd.
            let flags = nix::sys::memfd::MFdFlags::MFD_CLOEXEC;
            let fd = match nix::sys::memfd::memfd_create(c"probe", flags) {
                Ok(fd) => fd,
                Err(e) => return Outcome::Err(e),
            };
            let mut file = std::fs::File::from(fd);
            if let Err(e) = std::fs::read("/usr/bin/true").and_then(|b| file.write_all(&b)) {
                return io(Err(e));
            }
            let path =
                CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())).unwrap_or_default();
            match nix::unistd::execv(&path, &[c"true"]) {
                Ok(never) => match never {},
                Err(e) => Outcome::Err(e),
            }
        }
        "bind" => io(std::net::TcpListener::bind(arg(0)).map(drop)),
        "connect-unix" => io(std::os::unix::net::UnixStream::connect(arg(0)).map(drop)),
        "connect-abstract" => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(arg(0).as_bytes());
            io(addr
                .and_then(|a| std::os::unix::net::UnixStream::connect_addr(&a))
                .map(drop))
        }
        "ptrace" => res(nix::sys::ptrace::attach(pid(arg(0)))),
        "ptrace-child" => {
            // SAFETY: single-threaded; the child only sleeps until it is killed.
            match unsafe { nix::unistd::fork() } {
                Ok(nix::unistd::ForkResult::Child) => loop {
                    std::thread::sleep(std::time::Duration::from_secs(1));
                },
                Ok(nix::unistd::ForkResult::Parent { child }) => {
                    let r = nix::sys::ptrace::attach(child);
                    let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
                    let _ = nix::sys::wait::waitpid(child, None);
                    res(r)
                }
                Err(e) => Outcome::Err(e),
            }
        }
        "kill" => res(nix::sys::signal::kill(pid(arg(0)), Signal::SIGTERM)),
        // Signal 0: the permission and existence checks of kill(2), without a signal.
        "signal0" => res(nix::sys::signal::kill(pid(arg(0)), None)),
        "kill-child" => {
            let mut child = match std::process::Command::new("/bin/sleep").arg("30").spawn() {
                Ok(c) => c,
                Err(e) => return io(Err(e)),
            };
            let r = nix::sys::signal::kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let _ = child.wait();
            res(r)
        }
        "mount" => res(nix::mount::mount(
            Some("tmpfs"),
            "/tmp",
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )),
        "bpf" => syscall(
            libc::SYS_bpf,
            5, /* BPF_PROG_LOAD, with a null attr */
            0,
            0,
        ),
        "unshare-user" => res(nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER)),
        "unshare-net" => res(nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)),
        // Only ever expected to be denied: if allowed, the child would return here as a fork.
        "clone-newuser" => syscall(
            libc::SYS_clone,
            (libc::CLONE_NEWUSER | libc::SIGCHLD).into(),
            0,
            0,
        ),
        "clone3" => syscall(libc::SYS_clone3, 0, 0, 0),
        "finit-module" => syscall(libc::SYS_finit_module, -1, 0, 0),
        "keyctl" => syscall(libc::SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0),
        // Asks for the execution domain (0xffffffff changes nothing).
        "personality" => syscall(libc::SYS_personality, 0xffff_ffff, 0, 0),
        "tiocsti" => {
            let tty = match std::fs::File::open("/dev/tty") {
                Ok(f) => f,
                Err(e) => return io(Err(e)),
            };
            let c = b'x';
            // SAFETY: TIOCSTI reads one byte through the pointer, which points at `c`.
            raw(unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCSTI, &c) }.into())
        }
        "isatty" => Outcome::Value(
            nix::unistd::isatty(std::io::stdin())
                .unwrap_or(false)
                .to_string(),
        ),
        "env" => Outcome::Value(std::env::var(arg(0)).unwrap_or_else(|_| "<unset>".into())),
        "ids" => Outcome::Value(format!(
            "uid={} gid={} groups={:?}",
            nix::unistd::getuid(),
            nix::unistd::getgid(),
            nix::unistd::getgroups().unwrap_or_default()
        )),
        "caps" => {
            let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
            let caps: Vec<String> = status
                .lines()
                .filter(|l| l.starts_with("Cap"))
                .map(|l| l.replace(":\t", "="))
                .collect();
            Outcome::Value(caps.join(" "))
        }
        "cgroup-escape" => {
            // Write our pid into the root of the cgroup v2 hierarchy at the given mount.
            io(std::fs::write(
                format!("{}/cgroup.procs", arg(0)),
                std::process::id().to_string(),
            ))
        }
        "fork" => in_child(|| act(rest)),
        "setsid" => in_child(|| match nix::unistd::setsid() {
            Ok(_) => act(rest),
            Err(e) => Outcome::Err(e),
        }),
        "reexec" => {
            let me = CString::new("/proc/self/exe").unwrap_or_default();
            let mut argv = vec![CString::new("probe").unwrap_or_default()];
            argv.extend(
                rest.iter()
                    .map(|a| CString::new(a.as_str()).unwrap_or_default()),
            );
            match nix::unistd::execv(&me, &argv) {
                Ok(never) => match never {},
                Err(e) => Outcome::Err(e),
            }
        }
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_secs(arg(0).parse().unwrap_or(1)));
            Outcome::Ok
        }
        "sleep-ms" => {
            std::thread::sleep(std::time::Duration::from_millis(
                arg(0).parse().unwrap_or_else(|_| usage()),
            ));
            act(&rest[1..])
        }
        // What a process can read: `value` is the text, NULs shown as spaces.
        "cat" => match std::fs::read(arg(0)) {
            Ok(bytes) => Outcome::Value(
                String::from_utf8_lossy(&bytes)
                    .replace('\0', " ")
                    .trim()
                    .to_string(),
            ),
            Err(e) => io(Err(e)),
        },
        // This process's own descriptors above 2 (`value` lists them, `none` when none).
        "fds" => {
            let mut open: Vec<String> = std::fs::read_dir("/proc/self/fd")
                .map(|d| {
                    d.flatten()
                        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                        .filter(|n| *n > 2)
                        .filter_map(|n| {
                            let link = std::fs::read_link(format!("/proc/self/fd/{n}")).ok()?;
                            // The directory being listed is not one of them.
                            (!link.starts_with("/proc")).then(|| format!("{n}={}", link.display()))
                        })
                        .collect()
                })
                .unwrap_or_default();
            open.sort();
            Outcome::Value(if open.is_empty() {
                "none".into()
            } else {
                open.join(" ")
            })
        }
        // A socket of family N (`socket(N, SOCK_STREAM, 0)`; 40 is AF_VSOCK).
        "socket-family" => syscall(
            libc::SYS_socket,
            arg(0).parse().unwrap_or_else(|_| usage()),
            libc::SOCK_STREAM.into(),
            0,
        ),
        // Fills DIR with 1 MiB files until the file system refuses; `value` is how many
        // MiB fit (the files are removed again).
        "fill" => {
            let dir = std::path::Path::new(arg(0));
            let chunk = vec![0u8; 1 << 20];
            let mut written = 0u64;
            let failure = loop {
                let path = dir.join(format!("fill-{written}"));
                if let Err(e) = std::fs::write(&path, &chunk) {
                    let _ = std::fs::remove_file(&path);
                    break e;
                }
                written += 1;
                if written > 64 << 10 {
                    break std::io::Error::other("no limit met");
                }
            };
            for n in 0..written {
                let _ = std::fs::remove_file(dir.join(format!("fill-{n}")));
            }
            match failure.raw_os_error() {
                Some(libc::ENOSPC) => Outcome::Value(format!("{written} MiB")),
                _ => io(Err(failure)),
            }
        }
        // The processes /proc lists (`value`: how many).
        "proc-count" => match std::fs::read_dir("/proc") {
            Ok(d) => Outcome::Value(
                d.flatten()
                    .filter(|e| {
                        e.file_name()
                            .to_str()
                            .is_some_and(|n| n.parse::<u32>().is_ok())
                    })
                    .count()
                    .to_string(),
            ),
            Err(e) => io(Err(e)),
        },
        // `dns-query SERVER NAME`: a query of its own making (labels taken as given, with a
        // TXT record `smuggled` in the additional section); `value` is the answer's code
        // and addresses.
        "dns-query" => dns_query(arg(0), arg(1)),
        "pidfd-getfd" => steal::read_one(
            pid(arg(0)).as_raw(),
            arg(1).parse().unwrap_or_else(|_| usage()),
        ),
        "steal-all" => steal::list(pid(arg(0)).as_raw()),
        "ring-stall" => steal::ring_stall(
            pid(arg(0)).as_raw(),
            arg(1).parse().unwrap_or_else(|_| usage()),
        ),
        "audit-drop" => steal::audit_drop(pid(arg(0)).as_raw()),
        "udp-via" => steal::udp_via(pid(arg(0)).as_raw(), arg(1)),
        _ => usage(),
    }
}
