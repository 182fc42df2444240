//! The control API's server side: one thread per connection, rights from the peer's
//! credentials (see [`crate::api::peer`]). A bad request gets an error reply and the daemon
//! serves on.

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::Daemon;
use crate::api::peer::{Peer, Rights};
use crate::api::{self, Caller, Request, RunRequest, WorkerJob, MAX_REQUEST};
use crate::event::Actor;
use crate::export::journal;

/// Connections served at once; more wait in the listen queue.
const MAX_CONNECTIONS: usize = 128;
/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

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
    let active = Arc::new(AtomicUsize::new(0));
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
        while active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            std::thread::sleep(Duration::from_millis(10));
        }
        active.fetch_add(1, Ordering::SeqCst);
        let (daemon, active) = (Arc::clone(daemon), Arc::clone(&active));
        let spawned = std::thread::Builder::new()
            .name("api-conn".into())
            .spawn(move || {
                serve(&daemon, stream);
                active.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start a connection thread: {e}");
        }
    }
}

fn send(stream: &mut UnixStream, line: &[u8]) -> bool {
    stream.write_all(line).is_ok()
}

fn serve(daemon: &Daemon, mut stream: UnixStream) {
    let peer = match Peer::of(&stream) {
        Ok(p) => p,
        Err(e) => {
            send(
                &mut stream,
                &api::error_line(&format!("cannot read your credentials: {e}")),
            );
            return;
        }
    };
    let rights = daemon.groups().rights(&peer);
    if rights == Rights::default() {
        let why = if peer.in_sandbox() {
            "permission denied: processes inside a sandbox may not use cordond"
        } else {
            "permission denied: you are not in a group cordond's configuration names"
        };
        // The request is read first, and dropped: a client still writing it when the
        // connection closed would see EPIPE, not why it was refused.
        let _ = stream.set_read_timeout(Some(REQUEST_TIMEOUT));
        let _ = read_request(&stream);
        send(&mut stream, &api::error_line(why));
        return;
    }
    let _ = stream.set_read_timeout(Some(REQUEST_TIMEOUT));
    let (line, fds) = match read_request(&stream) {
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
    let denied = |what: &str| {
        api::error_line(&format!(
            "permission denied: uid {} may not {what}",
            peer.uid
        ))
    };
    match request {
        Request::Ps(_) if rights.view => {
            let reply = match crate::contain::list() {
                Ok(list) => api::ok_line(json!({ "sandboxes": list })),
                Err(e) => api::error_line(&e),
            };
            send(&mut stream, &reply);
        }
        Request::Status(_) if rights.view => {
            send(&mut stream, &api::ok_line(status(daemon)));
        }
        Request::Act { sandbox, action } if rights.act => {
            let reply = act(daemon, &peer, &sandbox, action);
            send(&mut stream, &reply);
        }
        Request::Events {
            follow,
            sandbox,
            kind,
            since,
        } if rights.view => {
            let filter = journal::Filter {
                sandbox,
                kind,
                since,
            };
            events(daemon, stream, &filter, follow);
        }
        Request::Run(run) if rights.run => {
            if let Err(message) = start_run(daemon, &peer, run, fds, &stream) {
                send(&mut stream, &api::error_line(&message));
            }
        }
        Request::Ps(_) | Request::Status(_) | Request::Events { .. } => {
            send(&mut stream, &denied("read sandboxes or events"));
        }
        Request::Act { action, .. } => {
            send(
                &mut stream,
                &denied(&format!("{action:?} sandboxes").to_lowercase()),
            );
        }
        Request::Run(_) => {
            send(&mut stream, &denied("run sandboxes"));
        }
    }
}

/// Reads the request line (and descriptors passed with it).
fn read_request(stream: &UnixStream) -> Result<(Vec<u8>, Vec<OwnedFd>), String> {
    let mut line = Vec::new();
    let mut fds = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let (n, mut got) = crate::sys::recv_with_fds(stream.as_fd(), &mut buf)
            .map_err(|e| format!("cannot read the request: {e}"))?;
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

fn act(daemon: &Daemon, peer: &Peer, sandbox: &str, action: crate::event::Action) -> Vec<u8> {
    let actor = Actor {
        via: "socket".into(),
        uid: Some(peer.uid),
        pid: Some(peer.pid),
        name: nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(peer.uid))
            .ok()
            .flatten()
            .map(|u| u.name),
    };
    let result = daemon.act(sandbox, action, actor);
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
    let sandboxes = crate::contain::list().map(|l| l.len()).unwrap_or(0);
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
            "ebpf": match &daemon.kernel { Ok(_) => "loaded".to_string(), Err(e) => format!("not loaded: {e}") },
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
/// session of its own, so it outlives cordond.
fn start_run(
    daemon: &Daemon,
    peer: &Peer,
    run: RunRequest,
    fds: Vec<OwnedFd>,
    stream: &UnixStream,
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
            crate::contain::list().map(|l| l.len() as u64).unwrap_or(0),
        )],
    );
    metric(
        "cordon_ebpf_loaded",
        "gauge",
        "Whether Cordon's eBPF programs are loaded (1) or not (0).",
        &[(String::new(), u64::from(daemon.kernel.is_ok()))],
    );
    out
}
