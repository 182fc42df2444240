//! Landlock's denials, from the kernel's audit records (NETLINK_AUDIT, read-only multicast
//! group 1, which any number of listeners can join beside auditd).
//!
//! One denial is a group of records sharing a serial number, ended by an EOE record:
//!
//! ```text
//! 1423 audit(1795693789.766:122): domain=18aa8ea5d blockers=net.connect_tcp daddr=127.0.0.1 dest=1
//! 1424 audit(1795693789.766:122): domain=18aa8ea5d status=allocated mode=enforcing pid=1755 ...
//! 1300 audit(1795693789.766:122): arch=c000003e syscall=42 success=no exit=-13 ... ppid=1756 pid=1761 comm="python3" exe="/usr/bin/python3.11"
//! 1320 audit(1795693789.766:122):
//! ```
//!
//! The 1424 record names a Landlock domain once, with the pid of the process that created
//! it: a sandbox's init, or the command init started (which enters a domain of its own,
//! nested in init's). That is how the denials of one sandbox are told from the others.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use nix::sys::socket::{self, AddressFamily, NetlinkAddr, SockFlag, SockProtocol, SockType};

use crate::ebpf::abi::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::event::{LossReason, NetReason, Process, Protocol, What};
use crate::report::Reporter;

const AUDIT_GET: u16 = 1000;
const AUDIT_SET: u16 = 1001;
const AUDIT_SYSCALL: u16 = 1300;
const AUDIT_EOE: u16 = 1320;
const AUDIT_LANDLOCK_ACCESS: u16 = 1423;
const AUDIT_LANDLOCK_DOMAIN: u16 = 1424;
// `AUDIT_STATUS_*` of <linux/audit.h>: which fields of an AUDIT_SET apply. (4 is
// AUDIT_STATUS_PID: asking for the backlog with it unregistered the audit daemon, or failed
// with EACCES where one ran.)
const AUDIT_STATUS_ENABLED: u32 = 0x1;
const AUDIT_STATUS_BACKLOG_LIMIT: u32 = 0x10;
/// The kernel's queue of audit records waiting for a reader: big enough that a burst of
/// denials (or a sandbox flooding records from a Landlock domain of its own) is not dropped
/// at the default of 64.
const BACKLOG_LIMIT: u32 = 8192;
/// The read-only multicast group every audit record is copied to.
const AUDIT_NLGRP_READLOG: u32 = 1;
const NLMSG_HDRLEN: usize = 16;
/// How often a listener checks that it still gets the records.
const CHANNEL_CHECK: Duration = Duration::from_secs(1);

/// Datagrams (a record each) read in one step while the sandbox runs.
const DATAGRAMS_PER_STEP: usize = 1024;

/// Datagrams read in each round at a sandbox's end: all that are queued, unless other
/// processes' records keep coming faster than they are read.
const FINAL_DATAGRAMS: usize = 1 << 16;

/// At a sandbox's end, how many times the kernel is asked whether its queue still holds
/// records (each time after reading what came).
const FINAL_ROUNDS: usize = 4;
/// How long to wait for records between those rounds, in milliseconds.
const FINAL_WAIT_MS: u8 = 2;

/// `struct audit_status` of `<linux/audit.h>`, as far as Cordon uses it.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
struct AuditStatus {
    mask: u32,
    enabled: u32,
    failure: u32,
    pid: u32,
    rate_limit: u32,
    backlog_limit: u32,
    lost: u32,
    backlog: u32,
    feature_bitmap: u32,
    backlog_wait_time: u32,
    backlog_wait_time_actual: u32,
}

/// A listener on the audit multicast group, opened before the sandbox starts.
#[derive(Debug)]
pub struct AuditListener {
    socket: OwnedFd,
    asker: Asker,
}

/// Asks the kernel for its audit status (AUDIT_GET) on a thread of its own. The kernel
/// answers from a kernel thread it makes for each request, and the request's send waits
/// until that thread exists: 0.3 to 0.8 ms here. The thread that follows the sandbox hands
/// the question over and reads the answer when it needs it: the start of a run waits only
/// for an answer not in by the time its watcher starts, and neither its end nor the
/// relaying of signals waits for the kernel to make a thread.
#[derive(Debug)]
pub struct Asker {
    questions: mpsc::Sender<()>,
    answers: mpsc::Receiver<std::io::Result<AuditStatus>>,
    /// Whether the first answer comes after auditing was turned on (see [`Asker::spawn`]).
    enabled: bool,
    /// Questions whose answers are not read yet. Answers come in the order asked, so the
    /// counts of dropped records they carry never go back.
    pending: usize,
}

impl Asker {
    /// Starts the thread, which asks at once for the status a listener counts dropped
    /// records from: after turning auditing on when it is off, if `enable` (see
    /// [`enable_logged`]). Started as soon as a launch can have threads (once init is
    /// forked), so that the answer is in by the time the watcher starts.
    pub fn spawn(enable: bool) -> std::io::Result<Self> {
        let (questions, asked) = mpsc::channel::<()>();
        let (answer, answers) = mpsc::channel();
        std::thread::Builder::new()
            .name("cordon-audit".into())
            .spawn(move || {
                let first = if enable {
                    enable_logged_status()
                } else {
                    status()
                };
                if answer.send(first).is_err() {
                    return;
                }
                for () in asked {
                    if answer.send(status()).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Self {
            questions,
            answers,
            enabled: enable,
            pending: 1,
        })
    }

    /// Asks, without waiting.
    fn ask(&mut self) {
        if self.questions.send(()).is_ok() {
            self.pending += 1;
        }
    }

    /// The oldest answer not read yet: `None` when none was asked for, or (unless `wait`)
    /// when it has not come yet. A wait is bounded (the thread's own wait for the kernel's
    /// answer is, but its send is not): an answer that comes later is read as the next.
    fn answer(&mut self, wait: bool) -> Option<std::io::Result<AuditStatus>> {
        if self.pending == 0 {
            return None;
        }
        let got = if wait {
            self.answers
                .recv_timeout(2 * ANSWER_WITHIN)
                .map_err(|e| match e {
                    mpsc::RecvTimeoutError::Timeout => None,
                    mpsc::RecvTimeoutError::Disconnected => Some(()),
                })
        } else {
            self.answers.try_recv().map_err(|e| match e {
                mpsc::TryRecvError::Empty => None,
                mpsc::TryRecvError::Disconnected => Some(()),
            })
        };
        match got {
            Ok(status) => {
                self.pending -= 1;
                Some(status)
            }
            Err(Some(())) => {
                self.pending = 0;
                Some(Err(std::io::Error::other(
                    "the thread asking the kernel for its audit status is gone",
                )))
            }
            Err(None) if wait => Some(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the kernel did not answer AUDIT_GET in time",
            ))),
            Err(None) => None,
        }
    }

    /// Asks and waits for the answer (after any asked before).
    fn status(&mut self) -> std::io::Result<AuditStatus> {
        self.ask();
        let mut last = None;
        while self.pending > 0 {
            match self.answer(true) {
                Some(Err(e)) if e.kind() == std::io::ErrorKind::TimedOut => return Err(e),
                Some(answer) => last = Some(answer),
                None => break,
            }
        }
        // Not asked: the question could not be handed over.
        last.unwrap_or_else(|| {
            Err(std::io::Error::other(
                "the thread asking the kernel for its audit status is gone",
            ))
        })
    }
}

fn netlink_socket() -> std::io::Result<OwnedFd> {
    Ok(socket::socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkAudit,
    )?)
}

/// How long the kernel's audit thread is given to answer a request.
const ANSWER_WITHIN: Duration = Duration::from_secs(1);

/// Sends one audit request and returns the status the kernel answers with (for AUDIT_GET).
fn request(kind: u16, status: &AuditStatus) -> std::io::Result<Option<AuditStatus>> {
    answer(ask(kind, status)?, kind)
}

/// Sends one audit request; the socket it returns gets the answer (see [`answer`]).
fn ask(kind: u16, status: &AuditStatus) -> std::io::Result<OwnedFd> {
    let sock = netlink_socket()?;
    socket::bind(sock.as_raw_fd(), &NetlinkAddr::new(0, 0))?;
    // The kernel answers from a thread of its own: a wait for it is bounded, so that a
    // stalled audit subsystem cannot hold the end of a run.
    socket::setsockopt(
        &sock,
        socket::sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::new(ANSWER_WITHIN.as_secs() as i64, 0),
    )?;
    let size = std::mem::size_of::<AuditStatus>();
    let mut msg = Vec::with_capacity(NLMSG_HDRLEN + size);
    msg.extend_from_slice(&((NLMSG_HDRLEN + size) as u32).to_ne_bytes());
    msg.extend_from_slice(&kind.to_ne_bytes());
    msg.extend_from_slice(&(libc::NLM_F_REQUEST as u16 | libc::NLM_F_ACK as u16).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(status.as_bytes());
    socket::send(sock.as_raw_fd(), &msg, socket::MsgFlags::empty())?;
    Ok(sock)
}

/// The kernel's answer to the request [`ask`] sent on `sock`: the status for AUDIT_GET.
fn answer(sock: OwnedFd, kind: u16) -> std::io::Result<Option<AuditStatus>> {
    let mut buf = [0u8; 8192];
    for _ in 0..4 {
        let len = socket::recv(sock.as_raw_fd(), &mut buf, socket::MsgFlags::empty())?;
        for (msg_type, body) in messages(&buf[..len]) {
            if msg_type == libc::NLMSG_ERROR as u16 {
                let errno = i32::from_ne_bytes(
                    body.get(..4)
                        .and_then(|b| b.try_into().ok())
                        .unwrap_or_default(),
                );
                if errno != 0 {
                    return Err(std::io::Error::from_raw_os_error(-errno));
                }
                if kind != AUDIT_GET {
                    return Ok(None);
                }
            } else if msg_type == AUDIT_GET {
                if let Some(status) = AuditStatus::read_from_prefix(body)
                    .ok()
                    .map(|(status, _)| status)
                {
                    return Ok(Some(status));
                }
            }
        }
    }
    Ok(None)
}

/// Turns kernel auditing on when it is off (Landlock only logs denials when it is on), and
/// raises the queue of records waiting for a reader to [`BACKLOG_LIMIT`] when it is below;
/// says what happened in the log. A failure leaves file denials unreported (they are still
/// enforced), so it is a warning, not an error.
pub fn enable_logged() {
    let _ = enable_logged_status();
}

/// [`enable_logged`], returning the status the kernel reported.
fn enable_logged_status() -> std::io::Result<AuditStatus> {
    let enabled = status().and_then(|s| enable_from(&s).map(|was_off| (s, was_off)));
    match enabled {
        Ok((status, was_off)) => {
            if was_off {
                tracing::info!(
                    "kernel auditing was off; turned it on for Landlock's denial records"
                );
            }
            Ok(status)
        }
        Err(e) => {
            tracing::warn!("cannot turn kernel auditing on: {e}");
            Err(e)
        }
    }
}

/// [`enable_logged`]'s work, given the status the kernel last reported; whether auditing was
/// off.
fn enable_from(status: &AuditStatus) -> std::io::Result<bool> {
    let changes = changes_for(status);
    for set in &changes {
        request(AUDIT_SET, set)?;
    }
    Ok(changes.iter().any(|c| c.mask & AUDIT_STATUS_ENABLED != 0))
}

/// The AUDIT_SETs that give `status` a queue of [`BACKLOG_LIMIT`] and auditing on. None
/// when the configuration is locked (`enabled = 2`, `auditctl -e 2`): the kernel refuses
/// every change until reboot, and auditing is on.
fn changes_for(status: &AuditStatus) -> Vec<AuditStatus> {
    const AUDIT_LOCKED: u32 = 2;
    if status.enabled == AUDIT_LOCKED {
        return Vec::new();
    }
    let mut changes = Vec::new();
    if status.backlog_limit < BACKLOG_LIMIT {
        changes.push(AuditStatus {
            mask: AUDIT_STATUS_BACKLOG_LIMIT,
            backlog_limit: BACKLOG_LIMIT,
            ..AuditStatus::default()
        });
    }
    if status.enabled == 0 {
        changes.push(AuditStatus {
            mask: AUDIT_STATUS_ENABLED,
            enabled: 1,
            ..AuditStatus::default()
        });
    }
    changes
}

/// The kernel's audit status (AUDIT_GET).
fn status() -> std::io::Result<AuditStatus> {
    request(AUDIT_GET, &AuditStatus::default())?
        .ok_or_else(|| std::io::Error::other("the kernel did not answer AUDIT_GET"))
}

impl AuditListener {
    /// Joins the audit multicast group (needs CAP_AUDIT_READ); `asker` asks the kernel
    /// for its status (see [`Asker::spawn`]).
    pub fn open(asker: Asker) -> std::io::Result<Self> {
        let socket = netlink_socket()?;
        socket::bind(
            socket.as_raw_fd(),
            &NetlinkAddr::new(0, AUDIT_NLGRP_READLOG),
        )?;
        // A burst of denials must not be dropped by a small socket buffer.
        let _ = socket::setsockopt(&socket, socket::sockopt::RcvBuf, &(4 << 20));
        Ok(Self { socket, asker })
    }

    /// Checks that this listener still gets every audit record: a member of the read-only
    /// group, with kernel auditing on; rejoins the group and turns auditing back on when
    /// not, and says so with `events_lost` (`audit_detached`). Records the kernel dropped
    /// since the last check (its `lost` counter, host-wide: a burst, or a flood from a
    /// sandbox's own Landlock domain, fills the queue) are reported as `audit_overrun`.
    /// Returns how many records the kernel's queue held when asked, if it answered.
    fn check_channel(
        &self,
        now: std::io::Result<AuditStatus>,
        lost: &mut Option<u32>,
        reporter: &Reporter,
    ) -> Option<u32> {
        let mut intact = true;
        match crate::sys::netlink_groups(self.socket.as_fd()) {
            Ok(groups) if groups & (1 << (AUDIT_NLGRP_READLOG - 1)) != 0 => {}
            Ok(_) => {
                intact = false;
                tracing::error!("the audit listener was taken off the audit group; rejoining");
                if let Err(e) = crate::sys::netlink_join(self.socket.as_fd(), AUDIT_NLGRP_READLOG) {
                    tracing::error!("cannot rejoin the audit group: {e}");
                }
            }
            Err(e) => tracing::warn!("cannot check the audit listener: {e}"),
        }
        match &now {
            Ok(current) => match enable_from(current) {
                Ok(true) => {
                    intact = false;
                    tracing::error!(
                        "kernel auditing was turned off while a sandbox ran; turned it on again"
                    );
                }
                Ok(false) => {}
                Err(e) => tracing::warn!("cannot turn kernel auditing back on: {e}"),
            },
            Err(e) => tracing::warn!("cannot check that kernel auditing is on: {e}"),
        }
        if !intact {
            reporter.report(
                None,
                What::EventsLost {
                    count: 1,
                    reason: LossReason::AuditDetached,
                },
            );
        }
        count_lost(now.ok().as_ref(), lost, reporter)
    }

    /// Starts reporting the Landlock denials of the sandbox whose domains the processes
    /// `creators` created (its init and its command); see [`Watching`].
    pub fn watching(mut self, creators: Vec<u32>, reporter: &Reporter) -> Watching {
        // Drops are counted from the status the asker had as it started. Unless it turned
        // auditing on first, the channel is checked with it now (and auditing turned on if
        // it is off), before the command starts; without an answer, with a new one.
        let mut lost = None;
        match self.asker.answer(true) {
            Some(Ok(status)) if self.asker.enabled => lost = Some(status.lost),
            Some(Ok(status)) => {
                self.check_channel(Ok(status), &mut lost, reporter);
            }
            _ => {
                let now = self.asker.status();
                self.check_channel(now, &mut lost, reporter);
            }
        }
        Watching {
            listener: self,
            sandbox: Sandbox {
                creators,
                domains: HashSet::new(),
                pending: HashMap::new(),
            },
            buf: vec![0u8; 65536],
            lost,
            checked: std::time::Instant::now(),
        }
    }

    /// Reads the records the socket holds, without waiting: every one, or `most` datagrams.
    fn read_queued(&self, buf: &mut [u8], sandbox: &mut Sandbox, reporter: &Reporter, most: usize) {
        for _ in 0..most {
            match socket::recv(self.socket.as_raw_fd(), buf, socket::MsgFlags::MSG_DONTWAIT) {
                Ok(len) => {
                    for (kind, body) in messages(&buf[..len]) {
                        let text = String::from_utf8_lossy(body);
                        sandbox.record(kind, text.trim_end_matches('\0'), reporter);
                    }
                }
                // The socket's buffer overflowed: records were dropped by the kernel.
                Err(nix::errno::Errno::ENOBUFS) => reporter.report(
                    None,
                    What::EventsLost {
                        count: 1,
                        reason: LossReason::AuditOverrun,
                    },
                ),
                Err(_) => return,
            }
        }
    }
}

/// An audit listener reporting one sandbox's denials, step by step on the thread that
/// follows the sandbox: [`Watching::step`] when its socket is readable (and now and then),
/// [`Watching::ask`] and [`Watching::finish`] at the sandbox's end. The kernel's status is
/// asked for by the listener's [`Asker`], and read when it has come.
pub struct Watching {
    listener: AuditListener,
    sandbox: Sandbox,
    buf: Vec<u8>,
    /// The kernel's count of dropped records at the last look.
    lost: Option<u32>,
    checked: std::time::Instant,
}

impl Watching {
    /// The socket the records come on.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.listener.socket.as_fd()
    }

    /// A process of the sandbox whose Landlock domain names its denials (its command,
    /// known once started).
    pub fn add_creator(&mut self, pid: u32) {
        if !self.sandbox.creators.contains(&pid) {
            self.sandbox.creators.push(pid);
        }
    }

    /// Reads the records queued on the socket, without waiting; every [`CHANNEL_CHECK`],
    /// checks that they still come (with the kernel's status, asked for at one step and
    /// read at a later one).
    pub fn step(&mut self, reporter: &Reporter) {
        if self.checked.elapsed() >= CHANNEL_CHECK {
            self.checked = std::time::Instant::now();
            if self.listener.asker.pending == 0 {
                self.listener.asker.ask();
            } else {
                // The last question is a whole check late: the listener's group is
                // checked without the kernel's status, and that is warned about.
                let late = std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the kernel has not answered the last AUDIT_GET",
                );
                self.listener
                    .check_channel(Err(late), &mut self.lost, reporter);
            }
        }
        while let Some(now) = self.listener.asker.answer(false) {
            self.listener.check_channel(now, &mut self.lost, reporter);
        }
        // A bounded number: a flood of records must not keep the thread from the rest.
        self.listener.read_queued(
            &mut self.buf,
            &mut self.sandbox,
            reporter,
            DATAGRAMS_PER_STEP,
        );
        self.sandbox.flush_stale(reporter);
    }

    /// Asks the kernel for the status the last check reads, without waiting: the caller
    /// does the rest of the end meanwhile.
    pub fn ask(&mut self) {
        self.listener.asker.ask();
    }

    /// Reads the sandbox's last records, once the sandbox has ended. What the kernel dropped
    /// until the end counts too. And the sandbox's last records may still be in the kernel's
    /// queue, which its audit thread sends on: read again after each answer, until one says
    /// the queue was empty (the thread sends a record to this group as it takes it off the
    /// queue). Other processes' records may keep the queue busy: a few rounds at most.
    pub fn finish(mut self, reporter: &Reporter) {
        if self.listener.asker.pending == 0 {
            self.ask();
        }
        for round in 1..=FINAL_ROUNDS {
            // The channel is checked (and mended) once, with the answer to the last
            // question asked (and any asked before it); the later rounds only ask.
            let queued = if round == 1 {
                let mut queued = None;
                while let Some(now) = self.listener.asker.answer(true) {
                    let late = now
                        .as_ref()
                        .is_err_and(|e| e.kind() == std::io::ErrorKind::TimedOut);
                    queued = self.listener.check_channel(now, &mut self.lost, reporter);
                    if late {
                        break;
                    }
                }
                queued
            } else {
                let now = self.listener.asker.status();
                count_lost(now.ok().as_ref(), &mut self.lost, reporter)
            };
            self.listener
                .read_queued(&mut self.buf, &mut self.sandbox, reporter, FINAL_DATAGRAMS);
            match queued {
                None | Some(0) => break,
                // Time for the audit thread to send on what it holds.
                Some(n) if round < FINAL_ROUNDS => {
                    let _ = nix::poll::poll(
                        &mut [nix::poll::PollFd::new(
                            self.listener.socket.as_fd(),
                            nix::poll::PollFlags::POLLIN,
                        )],
                        nix::poll::PollTimeout::from(FINAL_WAIT_MS),
                    );
                    tracing::debug!("the kernel's audit queue held {n} records at the end");
                }
                Some(n) => tracing::warn!(
                    "the kernel's audit queue still held {n} records (any process's) at the sandbox's end: denials of its last moment may be unreported"
                ),
            }
        }
        self.sandbox.flush_all(reporter);
    }
}

/// Reports the records the kernel dropped since `lost` (its count then), from its status
/// `now`; returns how many records its queue held, if it answered.
fn count_lost(
    now: Option<&AuditStatus>,
    lost: &mut Option<u32>,
    reporter: &Reporter,
) -> Option<u32> {
    let now = now?;
    if let Some(before) = lost.replace(now.lost) {
        if now.lost > before {
            reporter.report(
                None,
                What::EventsLost {
                    count: u64::from(now.lost - before),
                    reason: LossReason::AuditOverrun,
                },
            );
        }
    }
    Some(now.backlog)
}

/// The messages in one netlink datagram, as (type, body).
fn messages(buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + NLMSG_HDRLEN <= buf.len() {
        let len = u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap_or_default()) as usize;
        let kind = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().unwrap_or_default());
        if len < NLMSG_HDRLEN {
            break;
        }
        out.push((kind, &buf[at + NLMSG_HDRLEN..(at + len).min(buf.len())]));
        at += (len + 3) & !3;
    }
    out
}

/// The records of one audit event, gathered until its EOE.
#[derive(Default)]
struct Pending {
    access: Vec<HashMap<String, String>>,
    syscall: Option<HashMap<String, String>>,
    time: Option<SystemTime>,
    seen: Option<std::time::Instant>,
}

struct Sandbox {
    /// The processes that created the sandbox's Landlock domains.
    creators: Vec<u32>,
    /// The Landlock domains created by this sandbox's init and command.
    domains: HashSet<String>,
    pending: HashMap<u64, Pending>,
}

impl Sandbox {
    fn record(&mut self, kind: u16, text: &str, reporter: &Reporter) {
        let Some((time, serial, rest)) = header(text) else {
            return;
        };
        match kind {
            AUDIT_LANDLOCK_ACCESS => {
                let p = self.pending.entry(serial).or_default();
                p.access.push(fields(rest));
                p.time = Some(time);
                p.seen.get_or_insert_with(std::time::Instant::now);
            }
            AUDIT_LANDLOCK_DOMAIN => {
                let f = fields(rest);
                let ours = f.get("status").map(String::as_str) == Some("allocated")
                    && f.get("pid")
                        .and_then(|p| p.parse::<u32>().ok())
                        .is_some_and(|p| self.creators.contains(&p));
                if let (true, Some(domain)) = (ours, f.get("domain")) {
                    self.domains.insert(domain.clone());
                }
            }
            AUDIT_SYSCALL => {
                if let Some(p) = self.pending.get_mut(&serial) {
                    p.syscall = Some(fields(rest));
                }
            }
            AUDIT_EOE => {
                if let Some(p) = self.pending.remove(&serial) {
                    self.report(p, reporter);
                }
            }
            _ => {}
        }
    }

    /// Events whose EOE never came (a denial outside a syscall) go out after a moment.
    fn flush_stale(&mut self, reporter: &Reporter) {
        let stale: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| {
                p.seen
                    .is_some_and(|s| s.elapsed() > Duration::from_millis(200))
            })
            .map(|(k, _)| *k)
            .collect();
        for serial in stale {
            if let Some(p) = self.pending.remove(&serial) {
                self.report(p, reporter);
            }
        }
    }

    fn flush_all(&mut self, reporter: &Reporter) {
        let all: Vec<u64> = self.pending.keys().copied().collect();
        for serial in all {
            if let Some(p) = self.pending.remove(&serial) {
                self.report(p, reporter);
            }
        }
    }

    fn report(&self, p: Pending, reporter: &Reporter) {
        let process = p.syscall.as_ref().and_then(|s| {
            Some(Process {
                pid: s.get("pid")?.parse().ok()?,
                ppid: s.get("ppid")?.parse().ok()?,
                comm: s.get("comm").cloned().unwrap_or_default(),
                exe: s.get("exe").cloned(),
                uid: s.get("uid").and_then(|u| u.parse().ok()).unwrap_or(0),
            })
        });
        let time = p.time.unwrap_or_else(SystemTime::now);
        for access in p.access {
            if !access
                .get("domain")
                .is_some_and(|d| self.domains.contains(d))
            {
                continue;
            }
            if let Some(what) = denial(&access) {
                reporter.report_at(time, process.clone(), what);
            }
        }
    }
}

/// What a 1423 record says was denied.
fn denial(access: &HashMap<String, String>) -> Option<What> {
    let blockers = access.get("blockers")?.clone();
    if blockers.starts_with("fs.") {
        return Some(What::FileDenied {
            path: access
                .get("path")
                .or_else(|| access.get("name"))
                .cloned()
                .unwrap_or_default(),
            access: blockers,
            layer: Some(crate::event::FileLayer::Landlock),
            rule: None,
            target: None,
        });
    }
    if blockers.starts_with("net.connect_tcp") {
        let address = access.get("daddr")?.parse().ok()?;
        let port = access.get("dest")?.parse().ok()?;
        return Some(What::NetworkDenied {
            address,
            port,
            protocol: Protocol::Tcp,
            reason: NetReason::NotAllowed,
            domain: None,
        });
    }
    let detail = access
        .iter()
        .filter(|(k, _)| *k != "domain" && *k != "blockers")
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ");
    Some(What::OtherDenied { blockers, detail })
}

/// `audit(1795693789.766:122): rest` -> (time, serial, rest).
fn header(text: &str) -> Option<(SystemTime, u64, &str)> {
    let inner = text.strip_prefix("audit(")?;
    let (stamp, rest) = inner.split_once("):")?;
    let (time, serial) = stamp.split_once(':')?;
    let (secs, millis) = time.split_once('.')?;
    let time = SystemTime::UNIX_EPOCH
        + Duration::from_secs(secs.parse().ok()?)
        + Duration::from_millis(millis.parse().ok()?);
    Some((time, serial.parse().ok()?, rest.trim_start()))
}

/// `key=value key="quoted value" key=2F746D70` -> map; hex-encoded values are decoded the
/// way the audit subsystem encodes strings with spaces or odd bytes.
fn fields(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = text.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().to_string();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.split_once('"') {
                Some((v, n)) => (v.to_string(), n),
                None => (quoted.to_string(), ""),
            }
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            let raw = &after[..end];
            let decoded = if matches!(key.as_str(), "path" | "name" | "exe" | "comm") {
                decode_hex(raw).unwrap_or_else(|| raw.to_string())
            } else {
                raw.to_string()
            };
            (decoded, &after[end..])
        };
        out.insert(key, value);
        rest = next.trim_start();
    }
    out
}

fn decode_hex(raw: &str) -> Option<String> {
    if !raw.len().is_multiple_of(2) || raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..raw.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&raw[i..i + 2], 16).ok())
        .collect();
    Some(String::from_utf8_lossy(&bytes?).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_is_missing_is_changed_and_nothing_once_locked() {
        let status = |enabled, backlog_limit| AuditStatus {
            enabled,
            backlog_limit,
            ..AuditStatus::default()
        };
        let masks =
            |s: AuditStatus| -> Vec<u32> { changes_for(&s).iter().map(|c| c.mask).collect() };
        assert_eq!(
            masks(status(0, 64)),
            [AUDIT_STATUS_BACKLOG_LIMIT, AUDIT_STATUS_ENABLED]
        );
        assert_eq!(masks(status(1, 64)), [AUDIT_STATUS_BACKLOG_LIMIT]);
        assert!(masks(status(1, BACKLOG_LIMIT)).is_empty());
        assert!(
            masks(status(2, 64)).is_empty(),
            "locked: the kernel would refuse it, every launch and every second"
        );
        let backlog = changes_for(&status(1, 64))[0];
        assert_eq!(backlog.backlog_limit, BACKLOG_LIMIT);
        assert_eq!(backlog.pid, 0);
    }

    #[test]
    fn the_asker_answers_in_the_order_asked_and_counts_what_it_owes() {
        if !cordon_testkit::require_root(
            "the_asker_answers_in_the_order_asked_and_counts_what_it_owes",
        ) {
            return;
        }
        let mut asker = Asker::spawn(false).expect("the asker's thread");
        // The first answer is asked for as the thread starts.
        assert_eq!(asker.pending, 1);
        let first = asker
            .answer(true)
            .expect("an answer")
            .expect("the kernel's status");
        assert_eq!(asker.pending, 0);
        assert!(asker.answer(true).is_none(), "nothing more was asked");
        // Two questions, two answers, in order: the kernel's count of dropped records
        // never goes back.
        asker.ask();
        asker.ask();
        assert_eq!(asker.pending, 2);
        let second = asker.answer(true).expect("an answer").expect("status");
        let third = asker.answer(true).expect("an answer").expect("status");
        assert_eq!(asker.pending, 0);
        assert!(first.lost <= second.lost && second.lost <= third.lost);
        // Asked without waiting: read once it has come.
        asker.ask();
        let mut late = None;
        for _ in 0..2000 {
            late = asker.answer(false);
            if late.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(late.expect("the answer came").is_ok());
        // `status` asks and waits, after whatever was owed before.
        asker.ask();
        asker.status().expect("status");
        assert_eq!(asker.pending, 0);
    }

    #[test]
    fn turning_auditing_on_raises_the_backlog_and_touches_nothing_else() {
        if !cordon_testkit::require_root(
            "turning_auditing_on_raises_the_backlog_and_touches_nothing_else",
        ) {
            return;
        }
        let before = status().expect("AUDIT_GET");
        // From the kernel's default queue (an earlier run may have raised it), put back after.
        let set_backlog = |limit| {
            let set = AuditStatus {
                mask: AUDIT_STATUS_BACKLOG_LIMIT,
                backlog_limit: limit,
                ..AuditStatus::default()
            };
            request(AUDIT_SET, &set).expect("AUDIT_SET")
        };
        set_backlog(64);
        assert_eq!(status().expect("AUDIT_GET").backlog_limit, 64);
        let enabled = enable_logged_status();
        let after = status().expect("AUDIT_GET");
        set_backlog(before.backlog_limit);
        assert!(enabled.is_ok(), "auditing turned on: {enabled:?}");
        assert_ne!(after.enabled, 0);
        assert!(
            after.backlog_limit >= BACKLOG_LIMIT,
            "the queue is raised: {} records",
            after.backlog_limit
        );
        assert_eq!(after.pid, before.pid, "the audit daemon stays registered");
        assert_eq!(after.failure, before.failure);
        assert_eq!(after.rate_limit, before.rate_limit);
    }

    #[test]
    fn records_are_split_into_time_serial_and_fields() {
        let (time, serial, rest) =
            header("audit(1795693789.766:122): domain=18aa8ea5d blockers=net.connect_tcp daddr=127.0.0.1 dest=1").unwrap();
        assert_eq!(serial, 122);
        assert_eq!(
            time.duration_since(SystemTime::UNIX_EPOCH).unwrap(),
            Duration::from_millis(1_795_693_789_766)
        );
        let f = fields(rest);
        assert_eq!(f["blockers"], "net.connect_tcp");
        assert_eq!(f["daddr"], "127.0.0.1");
    }

    #[test]
    fn quoted_and_hex_encoded_values_are_decoded() {
        let f = fields("blockers=fs.read_file path=\"/etc/x\" dev=\"vda\" ino=12");
        assert_eq!(f["path"], "/etc/x");
        assert_eq!(f["ino"], "12");
        // A path with a space is hex-encoded by the kernel.
        let f = fields("blockers=fs.write_file path=2F746D702F612062 dev=\"tmpfs\"");
        assert_eq!(f["path"], "/tmp/a b");
    }

    #[test]
    fn denials_become_file_network_or_other_events() {
        let f = fields("domain=1 blockers=fs.read_dir path=\"/\" dev=\"tmpfs\" ino=1");
        assert!(
            matches!(denial(&f), Some(What::FileDenied { path, access, .. }) if path == "/" && access == "fs.read_dir")
        );
        let n = fields("domain=1 blockers=net.connect_tcp daddr=127.0.0.1 dest=1");
        assert!(matches!(
            denial(&n),
            Some(What::NetworkDenied { port: 1, .. })
        ));
        let s = fields("domain=1 blockers=scope.signal opid=1 ocomm=\"x\"");
        assert!(
            matches!(denial(&s), Some(What::OtherDenied { blockers, .. }) if blockers == "scope.signal")
        );
    }
}
