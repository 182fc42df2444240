//! The control API's server side: one thread per connection, rights from the peer's
//! credentials (see [`crate::api::peer`]). A bad request gets an error reply and the daemon
//! serves on.
//!
//! The socket is open to every local user, so none of them may starve the others, or root,
//! of it. Each connection is admitted or refused the moment it is accepted, from the kernel's
//! word on the peer alone ([`admit`]): a cap per uid, a general pool for everyone and a
//! reserve that only root and responders may use, so that whoever must contain a sandbox can
//! always get in; a refused client is told why at once. An admitted client has
//! [`REQUEST_DEADLINE`] in all to send its request and is cut off when it stops reading its
//! reply ([`REPLY_TIMEOUT`]). The accept loop never waits for room.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::json;

use super::Daemon;
use crate::api::peer::{Peer, Rights};
use crate::api::{self, Caller, Request, RunRequest, WorkerJob, MAX_REQUEST};
use crate::event::Actor;
use crate::export::journal;

/// Connections served at once for users who may not act. Each is a thread, mostly asleep:
/// 256 is far more than honest clients hold at once (a CLI call holds one for a moment) and
/// little for cordond to carry; past it, only root and responders get in.
const MAX_CONNECTIONS: usize = 256;
/// Connections beyond [`MAX_CONNECTIONS`] kept for root and responders (peers who may act):
/// when the general pool is full, they can still list, read and contain. 64 is two
/// responders' worth of [`MAX_PER_UID`].
const RESERVED_CONNECTIONS: usize = 64;
/// Connections one uid may hold at once (root outside a sandbox has no cap). An
/// `events --follow` holds its connection while it lasts and a `run` until its worker exits
/// (a root process and a thread of cordond's that the caller made), so this also caps the
/// sandboxes one user runs through cordond at once. A user or an agent runner needs far fewer;
/// an eighth of [`MAX_CONNECTIONS`] means one uid alone never fills the general pool.
const MAX_PER_UID: usize = 32;
/// How long a client has, in all, to send its request line (and its descriptors), however
/// the bytes trickle in. The CLI sends it at once; only a stuck or hostile client takes 10 s.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// How long one write of a reply (or of an event stream) may wait for the client to make
/// room: a client that stops reading is cut off after this, while one that reads, however
/// slowly, is not. 30 s leaves a reader that pauses (a pager, a busy pipe) time to catch up.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a refused connection stays open after its reply: its client may still be sending
/// its request, and closed first, it would read a broken pipe instead of why. The CLI sends
/// right after connecting; a second is plenty.
const REFUSED_LINGER: Duration = Duration::from_secs(1);
/// Refused connections kept open at once (see [`REFUSED_LINGER`]); past it, the oldest is
/// closed early, so a flood of refusals holds at most twice this many descriptors (lingering
/// and queued) while a client refused a moment ago still reads why.
const MAX_LINGERING: usize = 64;

/// Binds the socket (replacing a stale one), mode 0666: who may do what is decided per
/// request by the peer's credentials, not by who can open the file.
pub fn bind(path: &Path) -> Result<UnixListener, String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(format!(
                "{} is in use: is another cordond running?",
                path.display()
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("cannot remove the stale socket {}: {e}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).map_err(|e| format!("cannot bind {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))?;
    Ok(listener)
}

pub fn accept(daemon: &Arc<Daemon>, listener: &UnixListener) {
    let connections = Arc::new(Connections::default());
    let refused = Refused::start();
    for stream in listener.incoming() {
        if daemon.stopping() {
            return;
        }
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let (peer, rights, slot) = match admission(daemon, &connections, &stream) {
            Ok(admitted) => admitted,
            Err(why) => {
                refused.tell(stream, &why);
                continue;
            }
        };
        let daemon = Arc::clone(daemon);
        // When the thread cannot start, the closure is dropped, and with it the stream and
        // the slot.
        let spawned = std::thread::Builder::new()
            .name("api-conn".into())
            .spawn(move || serve(&daemon, stream, &peer, rights, slot));
        if let Err(e) = spawned {
            tracing::error!("cannot start a connection thread: {e}");
        }
    }
}

/// Who holds connections, for the cap per uid. A sandboxed process counts apart from its
/// user, so an agent cannot use up the connections of the user it runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Holder {
    uid: u32,
    sandboxed: bool,
}

/// What admission makes of a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// Root outside any sandbox: never refused. Only root can make such a connection, and
    /// root could stop cordond anyway; a cap would only let others lock root out.
    Root,
    /// May act (a responder group): has the reserved pool too.
    Responder,
    /// Everyone else, sandboxed processes included.
    Other,
}

impl Standing {
    fn of(peer: &Peer, rights: Rights) -> Self {
        if peer.uid == 0 && !peer.in_sandbox() {
            Self::Root
        } else if rights.act {
            Self::Responder
        } else {
            Self::Other
        }
    }
}

/// Why a connection is not served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum Refusal {
    #[error(
        "too many connections from uid {uid} (at most {MAX_PER_UID}); each `events --follow` \
         and each `run` holds one while it lasts: end some and try again"
    )]
    PerUid { uid: u32 },
    #[error(
        "cordond is busy: {MAX_CONNECTIONS} connections are open, all it serves for users who \
         may not act (the rest are kept for root and responders); try again shortly"
    )]
    Busy,
    #[error(
        "cordond is full: {} connections are open, reserve included; try again shortly",
        MAX_CONNECTIONS + RESERVED_CONNECTIONS
    )]
    Full,
}

/// Whether one more connection of a peer is served, given the connections open in all
/// (`total`) and those of its holder (`held`).
fn admit(standing: Standing, uid: u32, total: usize, held: usize) -> Result<(), Refusal> {
    match standing {
        Standing::Root => Ok(()),
        _ if held >= MAX_PER_UID => Err(Refusal::PerUid { uid }),
        Standing::Other if total < MAX_CONNECTIONS => Ok(()),
        Standing::Other => Err(Refusal::Busy),
        Standing::Responder if total < MAX_CONNECTIONS + RESERVED_CONNECTIONS => Ok(()),
        Standing::Responder => Err(Refusal::Full),
    }
}

/// The connections being served, counted for [`admit`].
#[derive(Debug, Default)]
struct Connections {
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_holder: HashMap<Holder, usize>,
}

impl Connections {
    /// A slot for one more connection of `holder`, or why not.
    fn take(self: &Arc<Self>, holder: Holder, standing: Standing) -> Result<Slot, Refusal> {
        let mut counts = self.counts();
        let held = counts.by_holder.get(&holder).copied().unwrap_or(0);
        admit(standing, holder.uid, counts.total, held)?;
        counts.total += 1;
        *counts.by_holder.entry(holder).or_default() += 1;
        Ok(Slot {
            connections: Arc::clone(self),
            holder,
        })
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        // The counts are whole between two statements: a panic elsewhere leaves them right.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One admitted connection's place in the counts. Dropping it gives the place back, so no way
/// out of the thread that holds it (a reply, an error, a panic) leaks a count.
#[derive(Debug)]
struct Slot {
    connections: Arc<Connections>,
    holder: Holder,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.connections.counts();
        counts.total = counts.total.saturating_sub(1);
        if let Entry::Occupied(mut held) = counts.by_holder.entry(self.holder) {
            *held.get_mut() -= 1;
            if *held.get() == 0 {
                held.remove();
            }
        }
    }
}

/// Decides at once whether `stream` is served, from the kernel's word on the peer alone
/// (nothing is read from the client, so the accept loop never waits on it). `Err` is the
/// reply line that says why not.
fn admission(
    daemon: &Daemon,
    connections: &Arc<Connections>,
    stream: &UnixStream,
) -> Result<(Peer, Rights, Slot), Vec<u8>> {
    let peer = Peer::of(stream)
        .map_err(|e| api::error_line(&format!("cannot read your credentials: {e}")))?;
    let rights = daemon.groups().rights(&peer);
    let holder = Holder {
        uid: peer.uid,
        sandboxed: peer.in_sandbox(),
    };
    match connections.take(holder, Standing::of(&peer, rights)) {
        Ok(slot) => Ok((peer, rights, slot)),
        Err(refusal) => {
            tracing::debug!(
                uid = peer.uid,
                pid = peer.pid,
                "connection refused: {refusal}"
            );
            Err(api::error_line(&refusal.to_string()))
        }
    }
}

/// Refused connections: told why at once, closed a moment later (see [`REFUSED_LINGER`]) by a
/// thread of their own, so that the accept loop never waits.
struct Refused {
    /// `None` when that thread could not start: refused connections are closed at once.
    to_close: Option<mpsc::SyncSender<(UnixStream, Instant)>>,
}

impl Refused {
    fn start() -> Self {
        let (to_close, queued) = mpsc::sync_channel(MAX_LINGERING);
        let spawned = std::thread::Builder::new()
            .name("api-refused".into())
            .spawn(move || close_after_linger(&queued));
        match spawned {
            Ok(_) => Self {
                to_close: Some(to_close),
            },
            Err(e) => {
                tracing::warn!("cannot start the thread that closes refused connections: {e}");
                Self { to_close: None }
            }
        }
    }

    /// Writes `why` without waiting (a new socket's buffer is empty, so the line fits) and
    /// hands the connection over to be closed; with the queue full, it is closed now.
    fn tell(&self, mut stream: UnixStream, why: &[u8]) {
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let _ = stream.write_all(why);
        if let Some(to_close) = &self.to_close {
            let _ = to_close.try_send((stream, Instant::now() + REFUSED_LINGER));
        }
    }
}

/// Keeps each refused connection open until its time is up, at most [`MAX_LINGERING`] at once
/// (the oldest goes first); ends when the accept loop does.
fn close_after_linger(queued: &mpsc::Receiver<(UnixStream, Instant)>) {
    let mut open: VecDeque<(UnixStream, Instant)> = VecDeque::new();
    loop {
        let next = match open.front() {
            None => queued
                .recv()
                .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            Some((_, until)) => {
                queued.recv_timeout(until.saturating_duration_since(Instant::now()))
            }
        };
        match next {
            Ok(refused) => {
                if open.len() >= MAX_LINGERING {
                    open.pop_front();
                }
                open.push_back(refused);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        while open.front().is_some_and(|(_, until)| *until <= now) {
            open.pop_front();
        }
    }
}

fn send(stream: &mut UnixStream, line: &[u8]) -> bool {
    stream.write_all(line).is_ok()
}

/// Serves one admitted connection; `slot` is given back when this returns, or, for a `run`,
/// when its worker exits.
fn serve(daemon: &Daemon, mut stream: UnixStream, peer: &Peer, rights: Rights, slot: Slot) {
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let _ = stream.set_write_timeout(Some(REPLY_TIMEOUT));
    if rights == Rights::default() {
        let why = if peer.in_sandbox() {
            "permission denied: processes inside a sandbox may not use cordond"
        } else {
            "permission denied: you are not in a group cordond's configuration names"
        };
        // The request is read first, and dropped: a client still writing it when the
        // connection closed would see EPIPE, not why it was refused.
        let _ = read_request(&stream, deadline);
        send(&mut stream, &api::error_line(why));
        return;
    }
    let (line, fds) = match read_request(&stream, deadline) {
        Ok(r) => r,
        Err(message) => {
            send(&mut stream, &api::error_line(&message));
            return;
        }
    };
    let _ = stream.set_read_timeout(None);
    let request = match api::parse_request(&line) {
        Ok(r) => r,
        Err(message) => {
            send(&mut stream, &api::error_line(&message));
            return;
        }
    };
    let groups = daemon.groups();
    let denied = |what: &str, act: bool| {
        api::error_line(&format!(
            "permission denied: uid {} may not {what}; {}",
            peer.uid,
            groups.who_may(act)
        ))
    };
    match request {
        // Everyone who may run sandboxes sees their own; viewers see all.
        Request::Ps(_) if rights.view || rights.run => {
            let reply = match crate::contain::list(daemon.kernel().ok().as_deref()) {
                Ok(mut list) => {
                    if !rights.view {
                        list.retain(|s| s.uid == Some(peer.uid));
                    }
                    api::ok_line(json!({ "sandboxes": list }))
                }
                Err(e) => api::error_line(&e),
            };
            send(&mut stream, &reply);
        }
        Request::Status(_) if rights.view => {
            send(&mut stream, &api::ok_line(status(daemon)));
        }
        Request::Act {
            action: crate::event::Action::Evidence,
            ..
        } => {
            send(
                &mut stream,
                &api::error_line("evidence is asked for with the `evidence` request, which passes the file to write it to"),
            );
        }
        Request::Act { sandbox, action } if rights.act => {
            let reply = act(daemon, peer, &sandbox, action);
            send(&mut stream, &reply);
        }
        Request::Evidence { sandbox, memory } if rights.act => {
            let reply = collect_evidence(daemon, peer, &sandbox, memory, fds);
            send(&mut stream, &reply);
        }
        // Who may run sandboxes may kill their own.
        Request::Act { sandbox, action }
            if rights.run && action == crate::event::Action::Kill && owns(peer.uid, &sandbox) =>
        {
            let reply = act(daemon, peer, &sandbox, action);
            send(&mut stream, &reply);
        }
        Request::Events {
            follow,
            sandbox,
            kind,
            since,
            severity,
            session,
        } if rights.view => {
            if let Some(Err(message)) = kind.as_deref().map(journal::check_kinds) {
                send(&mut stream, &api::error_line(&message));
                return;
            }
            let filter = journal::Filter {
                sandbox,
                kind,
                since,
                severity,
                session,
            };
            events(daemon, stream, &filter, follow);
        }
        Request::Run(run) if rights.run => {
            if let Err(message) = start_run(daemon, peer, run, fds, &stream, slot) {
                send(&mut stream, &api::error_line(&message));
            }
        }
        Request::Ps(_) | Request::Status(_) | Request::Events { .. } => {
            send(&mut stream, &denied("read sandboxes or events", false));
        }
        Request::Act { action, .. } => {
            send(
                &mut stream,
                &denied(&format!("{action:?} sandboxes").to_lowercase(), true),
            );
        }
        Request::Evidence { .. } => {
            send(
                &mut stream,
                &denied("collect the evidence of sandboxes", true),
            );
        }
        Request::Run(_) => {
            send(
                &mut stream,
                &api::error_line(&format!(
                    "permission denied: uid {} may not run sandboxes; members of the run groups ([api] run_groups in cordon.toml) may",
                    peer.uid
                )),
            );
        }
    }
}

/// Whether the sandbox named `name` runs as `uid` (its processes are theirs).
fn owns(uid: u32, name: &str) -> bool {
    crate::contain::list(None)
        .unwrap_or_default()
        .iter()
        .any(|s| s.name == name && s.uid == Some(uid))
}

/// Reads the request line (and descriptors passed with it), which must be all there by
/// `deadline`: each read waits only for the time left, so trickling bytes buys nothing.
fn read_request(stream: &UnixStream, deadline: Instant) -> Result<(Vec<u8>, Vec<OwnedFd>), String> {
    let late = || {
        format!(
            "no complete request within {}s of connecting: send it whole, at once",
            REQUEST_DEADLINE.as_secs()
        )
    };
    let mut line = Vec::new();
    let mut fds = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(late());
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| format!("cannot read the request: {e}"))?;
        let (n, mut got) = match crate::sys::recv_with_fds(stream.as_fd(), &mut buf) {
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(late())
            }
            Err(e) => return Err(format!("cannot read the request: {e}")),
        };
        fds.append(&mut got);
        if fds.len() > 3 {
            return Err(
                "at most 3 descriptors (stdin, stdout, stderr) may come with a request".into(),
            );
        }
        if n == 0 {
            return Err("the request ended without a newline".into());
        }
        line.extend_from_slice(&buf[..n]);
        if let Some(end) = line.iter().position(|b| *b == b'\n') {
            line.truncate(end);
            return Ok((line, fds));
        }
        if line.len() > MAX_REQUEST {
            return Err(format!("request larger than {MAX_REQUEST} bytes"));
        }
    }
}

fn collect_evidence(
    daemon: &Daemon,
    peer: &Peer,
    sandbox: &str,
    memory: bool,
    fds: Vec<OwnedFd>,
) -> Vec<u8> {
    let Ok([out]) = <[OwnedFd; 1]>::try_from(fds) else {
        return api::error_line(
            "evidence: pass exactly one descriptor, the file to write the archive to",
        );
    };
    let mut out = std::fs::File::from(out);
    // A file the caller opened for writing: not a pipe nobody reads, which would hold this
    // connection (and the archive) forever.
    if !out.metadata().is_ok_and(|m| m.is_file()) {
        return api::error_line("evidence: the descriptor passed is not a regular file");
    }
    // Where it is, so that it is not where the sandbox could replace it.
    let path = std::fs::read_link(format!("/proc/self/fd/{}", out.as_raw_fd())).ok();
    match super::evidence::collect(
        daemon,
        sandbox,
        crate::evidence::Options { memory },
        socket_actor(peer),
        Some((&mut out, path)),
    ) {
        Ok((took, summary)) => api::ok_line(json!({
            "evidence": summary,
            "took_ms": took.as_millis() as u64,
        })),
        Err(e) => api::error_line(&format!("{sandbox}: {e}")),
    }
}

/// A local user through the socket, as the actor of an action.
fn socket_actor(peer: &Peer) -> Actor {
    Actor {
        via: "socket".into(),
        uid: Some(peer.uid),
        pid: Some(peer.pid),
        name: nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(peer.uid))
            .ok()
            .flatten()
            .map(|u| u.name),
    }
}

fn act(daemon: &Daemon, peer: &Peer, sandbox: &str, action: crate::event::Action) -> Vec<u8> {
    let result = daemon.act(sandbox, action, socket_actor(peer));
    match result {
        Ok(took) => api::ok_line(json!({
            "sandbox": sandbox,
            "action": action,
            "result": crate::contain::done(action),
            "took_ms": took.as_millis() as u64,
        })),
        Err(e) => api::error_line(&format!("{sandbox}: {e}")),
    }
}

fn events(daemon: &Daemon, mut stream: UnixStream, filter: &journal::Filter, follow: bool) {
    let cfg = daemon.config();
    if !send(&mut stream, &api::ok_line(json!({}))) {
        return;
    }
    let mut out = std::io::BufWriter::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let result = journal::read(
        &cfg.journal_path,
        cfg.journal_keep,
        filter,
        follow,
        |line| match line {
            Some(line) => {
                out.write_all(line).is_ok()
                    && out.write_all(b"\n").is_ok()
                    && (!follow || out.flush().is_ok())
            }
            None => {
                !daemon.stopping()
                    && out.flush().is_ok()
                    && !crate::sys::peer_closed(stream.as_fd())
            }
        },
    );
    let _ = out.flush();
    if let Err(e) = result {
        tracing::warn!("cannot read the journal: {e}");
    }
}

fn status(daemon: &Daemon) -> serde_json::Value {
    let cfg = daemon.config();
    let stats = &daemon.pipeline.stats;
    let depth = daemon.pipeline.depth(cfg.collector.is_some());
    let by_kind = stats.by_kind.lock().map(|m| m.clone()).unwrap_or_default();
    let last_error = stats.last_error.lock().ok().and_then(|e| e.clone());
    let last_delivery = stats
        .last_delivery
        .lock()
        .ok()
        .and_then(|t| *t)
        .map(|t| humantime::format_rfc3339_millis(t).to_string());
    let sandboxes = crate::contain::list(daemon.kernel().ok().as_deref())
        .map(|l| l.len())
        .unwrap_or(0);
    let cgroup2 = crate::cgroup::sandboxes_dir()
        .ok()
        .and_then(|d| d.parent().map(Path::to_path_buf));
    let controllers = cgroup2
        .as_deref()
        .and_then(|root| crate::cgroup::controllers(root).ok())
        .unwrap_or_default();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "host_id": cfg.host_id,
        "pid": std::process::id(),
        "config": cfg.file.as_ref().map(|f| f.display().to_string()),
        "started": humantime::format_rfc3339_seconds(daemon.started_at).to_string(),
        "uptime_s": daemon.started.elapsed().as_secs(),
        "kernel": {
            "landlock_abi": crate::sys::landlock_abi(),
            "ebpf": match daemon.kernel() { Ok(_) => "loaded".to_string(), Err(e) => format!("not loaded: {e}") },
            // Copies of Cordon's programs attached beside the set in use: they would refuse
            // the connections of sandboxes they do not know (the next `cordon run` detaches them).
            "stale_programs": daemon.kernel().ok().map(|k| k.stale_programs().map_err(|e| e.to_string())),
            "cgroup2": cgroup2.map(|p| p.display().to_string()),
            "controllers": controllers,
            "audit": cfg.audit,
        },
        "collector": {
            "url": cfg.collector.as_ref().map(|c| c.url.clone()),
            "state": match (&cfg.collector, &last_error) {
                (None, _) => "none",
                (Some(_), Some(_)) => "failing",
                (Some(_), None) if depth.undelivered_bytes == 0 => "up to date",
                (Some(_), None) => "sending",
            },
            "last_delivery": last_delivery,
            "last_error": last_error,
            "delivered": stats.delivered.load(Ordering::Relaxed),
            // Set aside by the collector while it stored the rest of their batch.
            "rejected": stats.rejected.load(Ordering::Relaxed),
            // Refused by the collector even alone: kept in the spool's refused/events.jsonl.
            "refused": stats.refused.load(Ordering::Relaxed),
        },
        "spool": {
            "dir": cfg.spool_dir.display().to_string(),
            "files": depth.files,
            "bytes": depth.bytes,
            "max_bytes": cfg.spool_max_bytes,
            "unjournaled_bytes": depth.unjournaled_bytes,
            "undelivered_bytes": depth.undelivered_bytes,
        },
        "events": {
            "journaled": stats.journaled.load(Ordering::Relaxed),
            "by_kind": by_kind,
            "lost_in_kernel": stats.lost_ring.load(Ordering::Relaxed),
            "dropped_spool_full": stats.lost_spool.load(Ordering::Relaxed),
            "invalid_lines": stats.invalid.load(Ordering::Relaxed),
        },
        "sandboxes": sandboxes,
    })
}

/// Starts `cordon __worker` for a `run`: it gets the caller's stdin, stdout and stderr, the
/// connection (fd 3, for signals in and the exit status out) and the job (fd 4). It is a
/// session of its own, so it outlives cordond. The run's `slot` is held until it exits.
fn start_run(
    daemon: &Daemon,
    peer: &Peer,
    run: RunRequest,
    fds: Vec<OwnedFd>,
    stream: &UnixStream,
    slot: Slot,
) -> Result<(), String> {
    let [stdin, stdout, stderr]: [OwnedFd; 3] = fds
        .try_into()
        .map_err(|_| "a run passes exactly 3 descriptors: stdin, stdout and stderr".to_string())?;
    if run.argv.is_empty() {
        return Err("a run needs a command".into());
    }
    let cfg = daemon.config();
    let job = WorkerJob {
        run,
        caller: Caller {
            uid: peer.uid,
            gid: peer.gid,
            groups: peer.groups.clone(),
            pid: peer.pid,
        },
        profile_path: cfg.profile_path.clone(),
        spool: super::spool_config(&cfg),
        dns_upstream: cfg.dns_upstream.clone(),
        audit: cfg.audit,
        host_responses: cfg.responses.clone(),
    };
    let mut file = tempfile::tempfile().map_err(|e| format!("cannot hand the job over: {e}"))?;
    serde_json::to_writer(&mut file, &job).map_err(|e| format!("cannot hand the job over: {e}"))?;
    use std::io::Seek as _;
    file.rewind()
        .map_err(|e| format!("cannot hand the job over: {e}"))?;
    let mut reply = stream
        .try_clone()
        .map_err(|e| format!("cannot answer: {e}"))?;
    if !send(&mut reply, &api::ok_line(json!({}))) {
        return Ok(());
    }
    // The worker shares this socket, and its timeouts, for as long as the sandbox runs: it
    // waits on it for signals and writes the exit status when the caller may be long idle.
    for cleared in [
        stream.set_read_timeout(None),
        stream.set_write_timeout(None),
    ] {
        cleared.map_err(|e| format!("cannot hand the connection over: {e}"))?;
    }
    let conn = stream.as_raw_fd();
    let job_fd = file.as_raw_fd();
    let mut command = std::process::Command::new(&daemon.cordon);
    command
        .arg("__worker")
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .stdin(std::process::Stdio::from(stdin))
        .stdout(std::process::Stdio::from(stdout))
        .stderr(std::process::Stdio::from(stderr));
    if let Some(log) = std::env::var_os("CORDON_LOG") {
        command.env("CORDON_LOG", log);
    }
    crate::sys::detach_with_fds(&mut command, [(conn, 3), (job_fd, 4)]);
    match command.spawn() {
        Ok(mut child) => {
            // Reaped here while cordond lives; after that, by init.
            let _ = std::thread::Builder::new()
                .name("worker-wait".into())
                .spawn(move || {
                    let _ = child.wait();
                    drop(slot);
                });
            Ok(())
        }
        Err(e) => Err(format!("cannot start {}: {e}", daemon.cordon.display())),
    }
}

pub fn metrics_listener(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr} for metrics: {e}"))
}

/// A minimal HTTP endpoint with the Prometheus text format, for any path.
pub fn serve_metrics(daemon: &Daemon, listener: &TcpListener) {
    for stream in listener.incoming() {
        if daemon.stopping() {
            return;
        }
        let Ok(mut stream) = stream else { continue };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        // The request itself does not matter; read what came so the peer sees a clean close.
        let mut buf = [0u8; 4096];
        let _ = std::io::Read::read(&mut stream, &mut buf);
        let body = metrics_text(daemon);
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }
}

fn metrics_text(daemon: &Daemon) -> String {
    use std::fmt::Write as _;
    let cfg = daemon.config();
    let stats = &daemon.pipeline.stats;
    let depth = daemon.pipeline.depth(cfg.collector.is_some());
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let by_kind: Vec<(String, u64)> = stats
        .by_kind
        .lock()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (format!("{{kind=\"{k}\"}}"), *v))
                .collect()
        })
        .unwrap_or_default();
    metric(
        "cordon_events_total",
        "counter",
        "Events journaled, by kind.",
        &by_kind,
    );
    metric(
        "cordon_events_delivered_total",
        "counter",
        "Events the collector acknowledged.",
        &[(String::new(), stats.delivered.load(Ordering::Relaxed))],
    );
    metric(
        "cordon_events_undeliverable_total",
        "counter",
        "Events the collector would not store: set aside there while the rest of their batch \
         was stored (rejected), or refused even alone and kept in the spool (refused).",
        &[
            (
                "{reason=\"rejected\"}".into(),
                stats.rejected.load(Ordering::Relaxed),
            ),
            (
                "{reason=\"refused\"}".into(),
                stats.refused.load(Ordering::Relaxed),
            ),
        ],
    );
    metric(
        "cordon_events_dropped_total",
        "counter",
        "Events lost: the kernel ring buffer or the spool was full.",
        &[
            (
                "{reason=\"ring_full\"}".into(),
                stats.lost_ring.load(Ordering::Relaxed),
            ),
            (
                "{reason=\"spool_full\"}".into(),
                stats.lost_spool.load(Ordering::Relaxed),
            ),
        ],
    );
    metric(
        "cordon_spool_bytes",
        "gauge",
        "Bytes in the spool not yet acknowledged by the collector.",
        &[(String::new(), depth.undelivered_bytes)],
    );
    metric(
        "cordon_sandboxes",
        "gauge",
        "Sandboxes running on this host.",
        &[(
            String::new(),
            crate::contain::list(daemon.kernel().ok().as_deref())
                .map(|l| l.len() as u64)
                .unwrap_or(0),
        )],
    );
    metric(
        "cordon_build_info",
        "gauge",
        "This cordond's version (the value is always 1).",
        &[(format!("{{version=\"{}\"}}", env!("CARGO_PKG_VERSION")), 1)],
    );
    if cfg.collector.is_some() {
        let up = stats.collector_up.lock().ok().and_then(|u| *u);
        metric(
            "cordon_collector_up",
            "gauge",
            "Whether the last exchange with the collector (a batch or a poll) succeeded (1) or not (0).",
            &[(String::new(), u64::from(up == Some(true)))],
        );
        let last = stats
            .last_delivery
            .lock()
            .ok()
            .and_then(|t| *t)
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        metric(
            "cordon_collector_last_delivery_timestamp_seconds",
            "gauge",
            "When the collector last acknowledged a batch (Unix time; 0: never since the start).",
            &[(String::new(), last)],
        );
    }
    metric(
        "cordon_ebpf_loaded",
        "gauge",
        "Whether Cordon's eBPF programs are loaded (1) or not (0).",
        &[(String::new(), u64::from(daemon.kernel().is_ok()))],
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uid_gets_its_cap_and_then_a_refusal_that_names_it() {
        assert_eq!(admit(Standing::Other, 1000, 0, MAX_PER_UID - 1), Ok(()));
        let refused = admit(Standing::Other, 1000, 0, MAX_PER_UID).unwrap_err();
        assert_eq!(refused, Refusal::PerUid { uid: 1000 });
        assert!(refused
            .to_string()
            .starts_with("too many connections from uid 1000 (at most 32)"));
        assert_eq!(
            admit(Standing::Responder, 7, 0, MAX_PER_UID),
            Err(Refusal::PerUid { uid: 7 }),
            "responders have the cap per uid too"
        );
    }

    #[test]
    fn the_reserve_is_for_responders_and_root_is_never_refused() {
        let full = MAX_CONNECTIONS;
        assert_eq!(admit(Standing::Other, 1000, full - 1, 0), Ok(()));
        assert_eq!(admit(Standing::Other, 1000, full, 0), Err(Refusal::Busy));
        assert_eq!(admit(Standing::Responder, 7, full, 0), Ok(()));
        let reserve_full = MAX_CONNECTIONS + RESERVED_CONNECTIONS;
        assert_eq!(admit(Standing::Responder, 7, reserve_full - 1, 0), Ok(()));
        assert_eq!(
            admit(Standing::Responder, 7, reserve_full, 0),
            Err(Refusal::Full)
        );
        assert_eq!(admit(Standing::Root, 0, usize::MAX, usize::MAX), Ok(()));
    }

    #[test]
    fn sandboxed_root_is_not_root_and_responders_are_who_may_act() {
        let peer = |uid, sandboxed| Peer {
            uid,
            gid: uid,
            pid: 1,
            groups: vec![],
            sandboxed,
        };
        let all = Rights {
            view: true,
            act: true,
            run: true,
        };
        assert_eq!(Standing::of(&peer(0, false), all), Standing::Root);
        assert_eq!(
            Standing::of(&peer(0, true), Rights::default()),
            Standing::Other
        );
        assert_eq!(Standing::of(&peer(7, false), all), Standing::Responder);
        let viewer = Rights {
            view: true,
            act: false,
            run: true,
        };
        assert_eq!(Standing::of(&peer(8, false), viewer), Standing::Other);
    }

    #[test]
    fn a_dropped_slot_gives_its_place_back() {
        let connections = Arc::new(Connections::default());
        let nobody = Holder {
            uid: 65534,
            sandboxed: false,
        };
        let slots: Vec<Slot> = (0..MAX_PER_UID)
            .map(|_| connections.take(nobody, Standing::Other).expect("a slot"))
            .collect();
        assert_eq!(
            connections.take(nobody, Standing::Other).unwrap_err(),
            Refusal::PerUid { uid: 65534 }
        );
        let in_sandbox = Holder {
            uid: 65534,
            sandboxed: true,
        };
        let apart = connections
            .take(in_sandbox, Standing::Other)
            .expect("a sandbox counts apart from its user");
        drop(slots);
        drop(apart);
        let counts = connections.counts();
        assert_eq!(counts.total, 0);
        assert!(counts.by_holder.is_empty(), "{:?}", counts.by_holder);
    }
}
