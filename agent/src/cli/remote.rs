//! The commands that talk to cordond: `run` (for users who are not root), `status` and
//! `events`.

use std::ffi::OsString;
use std::io::Write as _;
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use nix::sys::signal::{SigSet, Signal};

use crate::api::client::Client;
use crate::api::{Request, RunEnd, RunRequest, RunSignal};
use crate::sandbox;

use super::{exit_like, exit_u8, fail, Output};

/// `cordon run` through cordond: the sandbox runs as the caller, with the caller's stdin,
/// stdout and stderr; Ctrl-C and other signals are passed on; the exit status comes back.
pub fn run(
    mut client: Client,
    profile: &str,
    workspace: Option<PathBuf>,
    command: &[OsString],
    quiet: bool,
    audit: bool,
) -> ExitCode {
    let setup = exit_u8(sandbox::EXIT_SETUP_FAILED);
    let request = match request(profile, workspace, command, quiet) {
        Ok(r) => RunRequest { audit, ..r },
        Err(e) => return fail(&e, setup),
    };
    // Blocked before the relay thread starts, so it is the one that takes them.
    let mut signals = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        signals.add(s);
    }
    let _ = signals.thread_block();
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    let stdio = [stdin.as_fd(), stdout.as_fd(), stderr.as_fd()];
    if let Err(e) = client.send(&Request::Run(request), &stdio) {
        return fail(&e.to_string(), setup);
    }
    if let Err(e) = client.reply() {
        return fail(&e.to_string(), setup);
    }
    if let Ok(stream) = client.stream().try_clone() {
        let _ = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || relay_signals(&signals, stream));
    }
    loop {
        match client.next_line() {
            Ok(Some(line)) => {
                if let Ok(end) = serde_json::from_slice::<RunEnd>(&line) {
                    return exit_like(end.exit);
                }
                if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&line) {
                    if let Some(error) = value["error"].as_str() {
                        return fail(error, setup);
                    }
                }
            }
            Ok(None) => {
                return fail(
                    "the sandbox's watcher ended without an exit status (see cordond's log)",
                    setup,
                )
            }
            Err(e) => return fail(&e.to_string(), setup),
        }
    }
}

fn relay_signals(signals: &SigSet, mut stream: std::os::unix::net::UnixStream) {
    while let Ok(signal) = signals.wait() {
        let Ok(mut line) = serde_json::to_vec(&RunSignal {
            signal: signal as i32,
        }) else {
            continue;
        };
        line.push(b'\n');
        if stream.write_all(&line).is_err() {
            return;
        }
    }
}

fn request(
    profile: &str,
    workspace: Option<PathBuf>,
    command: &[OsString],
    quiet: bool,
) -> Result<RunRequest, String> {
    let cwd =
        std::env::current_dir().map_err(|e| format!("cannot read the current directory: {e}"))?;
    let absolute = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            cwd.join(p)
        }
    };
    // A file is read by cordond with the caller's rights, from where the caller is.
    let profile = if profile.contains('/') || profile.ends_with(".toml") {
        absolute(Path::new(profile)).display().to_string()
    } else {
        profile.to_string()
    };
    let argv = command
        .iter()
        .map(|a| {
            a.to_str().map(str::to_string).ok_or_else(|| {
                format!("argument {a:?} is not UTF-8; through cordond, arguments must be")
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let env = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    Ok(RunRequest {
        profile,
        workspace: workspace.as_deref().map(absolute),
        cwd,
        argv,
        env,
        quiet,
        audit: false,
    })
}

/// `cordon status`.
pub fn status(mut client: Client, out: Output) -> ExitCode {
    let mut status = match client.call(&Request::Status(Default::default())) {
        Ok(s) => s,
        Err(e) => return fail(&e.to_string(), 1),
    };
    if let Some(map) = status.as_object_mut() {
        map.remove("ok");
    }
    if out.json {
        return super::print_json(&status);
    }
    let s = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    };
    println!(
        "cordond {} on {} (pid {}, up {} s)",
        s(&status["version"]),
        s(&status["host_id"]),
        s(&status["pid"]),
        s(&status["uptime_s"])
    );
    println!("config      {}", s(&status["config"]));
    let k = &status["kernel"];
    println!(
        "kernel      Landlock ABI {}, eBPF {}, cgroup v2 at {} (controllers: {}), audit {}",
        s(&k["landlock_abi"]),
        s(&k["ebpf"]),
        s(&k["cgroup2"]),
        k["controllers"]
            .as_array()
            .map(|a| a.iter().map(&s).collect::<Vec<_>>().join(" "))
            .unwrap_or_default(),
        if k["audit"] == true { "on" } else { "off" }
    );
    if let Some(stale) = k["stale_programs"]["Ok"]
        .as_array()
        .filter(|s| !s.is_empty())
    {
        println!(
            "            warning: {} stale copies of Cordon's eBPF programs are attached (they refuse \
             connections of sandboxes they do not know; the next `cordon run` detaches them)",
            stale.len()
        );
    }
    let c = &status["collector"];
    let count = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let undeliverable = match (count(&c["rejected"]), count(&c["refused"])) {
        (0, 0) => String::new(),
        (rejected, refused) => format!(
            ", {rejected} set aside by the collector, {refused} refused (kept in the spool's \
             refused/events.jsonl)"
        ),
    };
    println!(
        "collector   {} ({}), {} delivered{undeliverable}, last {}{}",
        s(&c["url"]),
        s(&c["state"]),
        s(&c["delivered"]),
        s(&c["last_delivery"]),
        c["last_error"]
            .as_str()
            .map(|e| format!(", last error: {e}"))
            .unwrap_or_default()
    );
    let sp = &status["spool"];
    println!(
        "spool       {} files, {} bytes of {} ({} undelivered, {} not journaled)",
        s(&sp["files"]),
        s(&sp["bytes"]),
        s(&sp["max_bytes"]),
        s(&sp["undelivered_bytes"]),
        s(&sp["unjournaled_bytes"])
    );
    let e = &status["events"];
    println!(
        "events      {} journaled, {} lost in the kernel, {} dropped (spool full), {} invalid",
        s(&e["journaled"]),
        s(&e["lost_in_kernel"]),
        s(&e["dropped_spool_full"]),
        s(&e["invalid_lines"])
    );
    println!("sandboxes   {}", s(&status["sandboxes"]));
    ExitCode::SUCCESS
}

/// `cordon events`: JSON lines with `--json`, one readable line each otherwise.
/// What `cordon events` asks for.
pub struct EventsQuery {
    pub follow: bool,
    pub sandbox: Option<String>,
    pub kind: Option<String>,
    pub since: Option<std::time::SystemTime>,
    pub severity: Option<crate::event::Severity>,
    /// The most severe first (everything is read first).
    pub by_severity: bool,
    /// cordond's socket, to follow again after a restart.
    pub socket: std::path::PathBuf,
    /// One session's events.
    pub session: Option<uuid::Uuid>,
    /// As CSV (`Event::TABLE_COLUMNS`) rather than lines to read.
    pub csv: bool,
    /// Newest first (everything is read first).
    pub reverse: bool,
    /// Only events before this time: with `reverse` and `limit`, the page older than the
    /// last one shown.
    pub until: Option<std::time::SystemTime>,
    /// At most this many events, the first in the order asked for.
    pub limit: Option<usize>,
}

/// How far back a `--follow` that lost cordond asks again (and remembers what it printed).
const FOLLOW_OVERLAP: std::time::Duration = std::time::Duration::from_secs(60);

pub fn events(mut client: Client, query: EventsQuery, out: Output) -> ExitCode {
    let EventsQuery {
        follow,
        sandbox,
        kind,
        since,
        severity,
        by_severity,
        socket,
        session,
        csv,
        reverse,
        until,
        limit,
    } = query;
    if (by_severity || reverse || until.is_some()) && follow {
        return fail(
            "--by-severity, --reverse and --until are about what there is: they do not go with --follow",
            2,
        );
    }
    let request = |since| Request::Events {
        follow,
        sandbox: sandbox.clone(),
        kind: kind.clone(),
        since,
        severity,
        session,
    };
    if let Err(e) = client.call(&request(since)) {
        return fail(&e.to_string(), 1);
    }
    let stdout = std::io::stdout();
    let table = std::cell::RefCell::new(csv.then(|| {
        let mut w = ::csv::Writer::from_writer(std::io::stdout());
        let _ = w.write_record(crate::event::Event::TABLE_COLUMNS);
        w
    }));
    let print = |line: &[u8]| -> std::io::Result<()> {
        if let Some(w) = table.borrow_mut().as_mut() {
            if let Ok(event) = serde_json::from_slice::<crate::event::Event>(line) {
                w.write_record(event.table_row())?;
            }
            return w.flush();
        }
        let mut lock = stdout.lock();
        if out.json {
            lock.write_all(line)?;
            lock.write_all(b"\n")?;
        } else {
            match serde_json::from_slice::<crate::event::Event>(line) {
                Ok(event) => writeln!(lock, "{}", readable(&event))?,
                Err(_) => {
                    lock.write_all(line)?;
                    lock.write_all(b"\n")?;
                }
            }
        }
        lock.flush()
    };
    // Sorted or reversed: every line first, then in the order asked for.
    let mut held: Vec<(
        crate::event::Severity,
        Option<std::time::SystemTime>,
        Vec<u8>,
    )> = Vec::new();
    let mut left = limit.unwrap_or(usize::MAX);
    // Following: the events printed in the last minute before the newest, by id. A
    // reconnection asks again from that minute back (cordond may journal a sandbox's events
    // late, from its spool, after a restart) and prints none of them twice.
    let mut recent: std::collections::HashMap<uuid::Uuid, std::time::SystemTime> =
        Default::default();
    let mut newest: Option<std::time::SystemTime> = None;
    loop {
        let line = match client.next_line() {
            Ok(Some(l)) => l,
            Ok(None) | Err(_) if follow => {
                // cordond went away (a restart, an upgrade): wait for it and go on from the
                // newest event printed.
                eprintln!("cordon: cordond went away; following again once it is back");
                let from = newest.map(|t| t - FOLLOW_OVERLAP).or(since);
                client = loop {
                    std::thread::sleep(std::time::Duration::from_secs(1));
                    if let Ok(mut c) = Client::connect(&socket) {
                        if c.call(&request(from)).is_ok() {
                            break c;
                        }
                    }
                };
                continue;
            }
            Ok(None) => break,
            Err(e) => return fail(&e.to_string(), 1),
        };
        if follow {
            if let Ok(event) = serde_json::from_slice::<crate::event::Event>(&line) {
                if recent.insert(event.id, event.time).is_some() {
                    continue;
                }
                let top = newest.map_or(event.time, |n| n.max(event.time));
                newest = Some(top);
                recent.retain(|_, t| *t + FOLLOW_OVERLAP >= top);
            }
        }
        let event = serde_json::from_slice::<crate::event::Event>(&line).ok();
        if let (Some(until), Some(event)) = (until, &event) {
            if event.time >= until {
                continue;
            }
        }
        if by_severity || reverse {
            let level = event
                .as_ref()
                .map_or(crate::event::Severity::Info, |e| e.severity());
            held.push((level, event.map(|e| e.time), line));
        } else if left == 0 {
            // Enough: what is left is not read.
            return ExitCode::SUCCESS;
        } else if print(&line).is_err() {
            // stdout closed (`| head`): done.
            return ExitCode::SUCCESS;
        } else {
            left -= 1;
        }
    }
    if reverse {
        // Newest first by the events' own time, not the journal's order: a sandbox's
        // violations are journaled when their burst closes, after events that came later,
        // and its watchers hand theirs over each at its own pace. Stable: among equal
        // times, the later written first.
        held.reverse();
        held.sort_by_key(|(_, time, _)| std::cmp::Reverse(*time));
    }
    if by_severity {
        // Stable: among equals, the order above (the journal's, or newest first).
        held.sort_by_key(|(level, _, _)| std::cmp::Reverse(*level));
    }
    for (_, _, line) in held.into_iter().take(left) {
        if print(&line).is_err() {
            break;
        }
    }
    ExitCode::SUCCESS
}

fn readable(event: &crate::event::Event) -> String {
    let time = humantime::format_rfc3339_millis(event.time);
    let repeat = event
        .burst
        .as_ref()
        .map(|b| {
            format!(
                " (x{} until {})",
                b.count,
                humantime::format_rfc3339_millis(b.last_seen)
            )
        })
        .unwrap_or_default();
    let line = format!(
        "{time} {:<32} {:<16} {}{repeat}",
        event.sandbox,
        event.what.kind(),
        event.summary()
    );
    crate::event::terminal_safe(&line)
}
