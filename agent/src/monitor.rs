//! Watching one sandbox while it runs: its kernel events (the eBPF ring buffer), its
//! Landlock denials (the audit records), its lost-event count and its containment state,
//! read on the thread that follows the sandbox (a [`crate::sandbox::Watcher`]), and its DNS
//! resolver on threads of its own; all turned into [`Event`]s and written out by one writer
//! thread, so that a slow output never holds the reads.
//!
//! Threads start only after the sandbox is forked (a fork copies one thread, so forking from a
//! multi-threaded process is unsafe), and the sockets and ring buffer the watchers use exist
//! before it, so nothing the sandbox does is missed.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::IpAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::ebpf::{abi, Kernel};
use crate::event::{Action, Event, NetReason, Process, Protocol, What};
use crate::export::burst::Bursts;
use crate::export::spool::{SpoolConfig, SpoolWriter};
use crate::report::{Reporter, Stop, Worker};

/// Where events go.
#[derive(Debug, Default)]
pub struct Sink {
    /// Every event as a JSON line, appended to this file.
    pub json: Option<PathBuf>,
    /// Violations on stderr, a readable line per distinct one: as they happen, or listed
    /// when the command ends if stderr is a terminal (see [`Terminal`]).
    pub stderr: bool,
    /// Every event into a file of cordond's spool, for the journal and the collector.
    pub spool: Option<SpoolConfig>,
    /// Under each violation on stderr, the rule that would allow it.
    pub advice: Option<crate::learn::Advice>,
}

/// How long repeats of one violation are gathered into one event.
const BURST_WINDOW: Duration = Duration::from_secs(1);

/// The writer thread's outputs.
struct Outputs {
    sink: Sink,
    json: Option<std::io::BufWriter<std::fs::File>>,
    spool: Option<SpoolWriter>,
    /// The sandbox and profile, for the spool's own `events_lost` event.
    names: Option<(String, String)>,
    written: u64,
    terminal: Option<Terminal>,
}

/// Paths outside the view an audit shows on stderr before it only counts them.
const AUDIT_SHOWN: u64 = 10;

/// Distinct denials a summary at exit lists (the most severe first) before it only counts
/// them.
const SUMMARY_SHOWN: usize = 20;

/// Distinct denials told apart before any more are only counted (a program making endless
/// distinct ones must not grow `cordon run` without bound).
const DISTINCT_KEPT: usize = 10_000;

/// What stderr shows of the events: each distinct violation once (its repeats are counted),
/// as it happens when stderr is a file or a pipe; at the end when stderr is a terminal,
/// which the command owns then (a line drawn over an editor or an agent's full-screen
/// interface garbles both). Every event is in the event stream either way.
struct Terminal {
    /// stderr is a terminal: lines wait for the end.
    at_exit: bool,
    /// The distinct violations seen, and the lines kept for the end.
    seen: std::collections::HashSet<String>,
    kept: Vec<(crate::event::Severity, String)>,
    /// Violations like one already shown (or kept).
    repeats: u64,
    /// Paths outside the profile's view an audited sandbox used: the first few are shown,
    /// then counted.
    audited_outside: u64,
    advice: Option<crate::learn::Advice>,
}

impl Terminal {
    fn new(advice: Option<crate::learn::Advice>) -> Self {
        Self {
            advice,
            at_exit: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            seen: Default::default(),
            kept: Vec::new(),
            repeats: 0,
            audited_outside: 0,
        }
    }

    fn event(&mut self, event: &Event) {
        // Unexamined misses are accounting, not an alarm: a build probing for files it does
        // not need would otherwise print them all day. They are in the events.
        if matches!(
            event.what,
            What::EventsLost {
                reason: crate::event::LossReason::Unexamined,
                ..
            }
        ) {
            return;
        }
        // A responder's action is not said here, nor the connections it refuses: the
        // terminal is the sandboxed command's too, and a hostile one must not learn it was
        // frozen or cut off. Both are recorded.
        let isolated = matches!(
            event.what,
            What::NetworkDenied {
                reason: NetReason::Isolated,
                ..
            }
        );
        let shown = !isolated
            && (event.what.is_violation() || matches!(event.what, What::EventsLost { .. }));
        if !shown {
            return;
        }
        let outside = !event.enforced
            && matches!(
                event.what,
                What::FileDenied {
                    layer: Some(crate::event::FileLayer::NotInView),
                    ..
                }
            );
        if outside {
            self.audited_outside += 1;
            if self.audited_outside > AUDIT_SHOWN {
                return;
            }
        }
        // The same violation by another process, or again: a repeat (a syscall's by its name,
        // whatever its arguments). A burst's summary is news of its own.
        let what = match &event.what {
            What::SyscallDenied { syscall, .. } => syscall.clone(),
            other => serde_json::to_string(other).unwrap_or_default(),
        };
        let key = format!(
            "{}:{}:{}:{what}",
            event.enforced,
            event.burst.is_some(),
            event.what.kind()
        );
        if self.seen.contains(&key) || self.seen.len() >= DISTINCT_KEPT {
            self.repeats += 1;
            return;
        }
        self.seen.insert(key);
        let mut line = format!("cordon: {}", event.summary());
        if let Some(rule) = self.advice.as_ref().and_then(|a| a.rule_for(event)) {
            line.push_str(&format!(
                "\ncordon:   {}",
                crate::event::terminal_safe(&rule)
            ));
        }
        if !self.at_exit {
            eprintln!("{line}");
        } else {
            self.kept.push((event.severity(), line));
        }
    }

    /// The end: the summary (stderr a terminal), what was not shown, and where it all is
    /// (`all_at`: the events file, `cordon events`).
    fn finish(&self, all_at: Option<String>) {
        let at = all_at.map(|a| format!("; all are {a}")).unwrap_or_default();
        if self.at_exit && !self.kept.is_empty() {
            let distinct = self.kept.len() as u64;
            eprintln!(
                "cordon: {} denials while the command ran ({distinct} distinct){at}; the most severe first:",
                distinct + self.repeats
            );
            // The most severe first, so a flood of small ones cannot push the one that
            // matters out of the list.
            let mut kept: Vec<&(crate::event::Severity, String)> = self.kept.iter().collect();
            kept.sort_by_key(|(level, _)| std::cmp::Reverse(*level));
            for (_, line) in kept.iter().take(SUMMARY_SHOWN) {
                eprintln!("{line}");
            }
            if kept.len() > SUMMARY_SHOWN {
                eprintln!(
                    "cordon: ... and {} more distinct",
                    kept.len() - SUMMARY_SHOWN
                );
            }
        } else if self.repeats > 0 {
            eprintln!(
                "cordon: {} repeats of the lines above were not shown{at}",
                self.repeats
            );
        }
        if self.audited_outside > AUDIT_SHOWN {
            eprintln!(
                "cordon: audit: {} paths outside the profile's view were used ({} not shown){at}",
                self.audited_outside,
                self.audited_outside - AUDIT_SHOWN
            );
        }
    }
}

impl Outputs {
    fn open(mut sink: Sink) -> std::io::Result<Self> {
        let json = match &sink.json {
            Some(path) => Some(std::io::BufWriter::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            )),
            None => None,
        };
        let spool = match &sink.spool {
            Some(config) => Some(SpoolWriter::create(config.clone())?),
            None => None,
        };
        Ok(Self {
            terminal: sink.stderr.then(|| Terminal::new(sink.advice.take())),
            sink,
            json,
            spool,
            names: None,
            written: 0,
        })
    }

    fn write(&mut self, event: &Event) -> std::io::Result<()> {
        if self.names.is_none() {
            self.names = Some((event.sandbox.clone(), event.profile.clone()));
        }
        let line = serde_json::to_vec(event)?;
        if let Some(out) = self.json.as_mut() {
            out.write_all(&line)?;
            out.write_all(b"\n")?;
            // A line per event reaches the file at once: readers follow it live.
            out.flush()?;
        }
        if let Some(spool) = self.spool.as_mut() {
            spool.write_line(&line)?;
        }
        if let Some(terminal) = self.terminal.as_mut() {
            terminal.event(event);
        }
        self.written += 1;
        Ok(())
    }

    /// Writes the count of events the full spool dropped, once there is room (or `force`).
    fn report_drops(&mut self, force: bool) -> std::io::Result<()> {
        let Some(count) = self.spool.as_mut().and_then(|s| s.take_dropped(force)) else {
            return Ok(());
        };
        let (sandbox, profile) = self.names.clone().unwrap_or_default();
        let event = Event::new(
            &sandbox,
            &profile,
            SystemTime::now(),
            None,
            What::EventsLost {
                count,
                reason: crate::event::LossReason::SpoolFull,
            },
        );
        if self.sink.stderr {
            eprintln!("cordon: {}", event.summary());
        }
        if let Some(spool) = self.spool.as_mut() {
            spool.append(&serde_json::to_vec(&event)?)?;
        }
        Ok(())
    }

    fn finish(mut self) -> std::io::Result<u64> {
        if let Some(terminal) = &self.terminal {
            let all_at = match (&self.sink.json, &self.sink.spool, &self.names) {
                (Some(file), _, _) => Some(format!("in {}", file.display())),
                (None, Some(_), Some((sandbox, _))) => Some(format!(
                    "in cordond's journal (`cordon events --sandbox {sandbox}`, for viewers)"
                )),
                _ => None,
            };
            terminal.finish(all_at);
        }
        self.report_drops(true)?;
        if let Some(spool) = &self.spool {
            spool.sync()?;
        }
        Ok(self.written)
    }
}

/// What the monitor watches.
pub struct Watch {
    pub kernel: Arc<Kernel>,
    pub cgroup_id: u64,
    /// The sandbox's `cgroup.events`, for freeze and thaw.
    pub cgroup_events: PathBuf,
    pub ring: crate::ebpf::Ring,
    /// Shared with the resolver: the name each allowed address was answered for.
    pub names: Arc<Mutex<HashMap<IpAddr, String>>>,
    /// Landlock's audit records, and the pids of the sandbox's init and command (whose
    /// domains they name).
    pub audit: Option<(crate::audit::AuditListener, Vec<u32>)>,
    /// What the sandbox's mounts show, to name the rule behind a failed file call.
    pub view: crate::sandbox::view::View,
    /// Under `mode = "audit"`: what the profile allows, to judge what the sandbox was let do.
    pub judge: Option<Judge>,
    /// The sandbox's init (host pid). Its file calls build the sandbox (the staging paths
    /// it makes miss first): Cordon's doing, not the command's, so not examined.
    pub init: u32,
}

/// What an audited sandbox is judged against: the profile's own view and ports. Each path
/// and access is reported once (the kernel already keeps repeats of a call away).
pub struct Judge {
    view: crate::sandbox::view::View,
    bind_tcp: Vec<u16>,
    seen: std::collections::HashSet<(PathBuf, &'static str)>,
}

impl Judge {
    pub fn new(view: crate::sandbox::view::View, bind_tcp: Vec<u16>) -> Self {
        Self {
            view,
            bind_tcp,
            seen: Default::default(),
        }
    }

    /// The denial enforce mode would have made of `access` to `resolved`, the first time.
    fn file(&mut self, asked: &str, resolved: PathBuf, access: &'static str) -> Option<What> {
        let refusal = self.view.would_refuse(&resolved, access)?;
        if !self.seen.insert((resolved.clone(), access)) {
            return None;
        }
        let target = (std::path::Path::new(asked) != resolved)
            .then(|| resolved.to_string_lossy().into_owned());
        Some(What::FileDenied {
            path: asked.to_owned(),
            access: access.into(),
            layer: Some(refusal.layer),
            rule: refusal.rule.map(|r| r.to_string_lossy().into_owned()),
            target,
        })
    }
}

pub struct Monitor {
    /// The reader of the sandbox's event ring, and what it has seen.
    kernel: KernelWatch,
    /// The listener for Landlock's audit records.
    audit: Option<crate::audit::Watching>,
    /// Tells the resolver's threads to finish.
    stop: Arc<Stop>,
    /// The sandbox's DNS resolver's threads.
    resolver: Vec<JoinHandle<()>>,
    writer: Writer,
    reporter: Reporter,
    /// A step panicked: nothing is read any more, and the sandbox was killed.
    failed: bool,
}

/// The thread that writes the events out. It is started with the reporter, before the
/// command (a launch without it would run unwatched), and writes once its gate is opened,
/// when the command runs: what was reported before is kept in the channel, and a launch that
/// fails before its command runs writes nothing.
pub struct Writer {
    thread: Worker<std::io::Result<u64>>,
    gate: Option<mpsc::SyncSender<()>>,
}

impl Writer {
    fn open(&mut self) {
        if let Some(gate) = self.gate.take() {
            let _ = gate.send(());
        }
    }
}

impl Monitor {
    /// A reporter for a sandbox and the writer thread behind it.
    pub fn reporter(
        sandbox: &str,
        profile: &str,
        session: Option<uuid::Uuid>,
        severity: crate::policy::SeverityPolicy,
        sink: Sink,
        mut responder: Option<crate::responder::Responder>,
    ) -> std::io::Result<(Reporter, Writer)> {
        let (tx, rx) = mpsc::channel::<Event>();
        let mut outputs = Outputs::open(sink)?;
        let (gate, opened) = mpsc::sync_channel::<()>(1);
        let thread = Worker::spawn("cordon-events", move || {
            // Nothing is written before the command runs: a launch that fails before
            // writes no event (see `Writer`).
            if opened.recv().is_err() {
                return Ok(0);
            }
            let mut bursts = Bursts::new(BURST_WINDOW);
            let mut checked = Instant::now();
            loop {
                match rx.recv_timeout(Duration::from_millis(200)) {
                    Ok(event) => {
                        // Response rules see every event as it comes, repeats too,
                        // before repeats are gathered into one.
                        let responses = responder
                            .as_mut()
                            .map(|r| r.event(&event, Instant::now()))
                            .unwrap_or_default();
                        let watched = responder.as_ref().is_some_and(|r| r.watches(&event));
                        for event in bursts.push(event, Instant::now(), watched) {
                            outputs.write(&event)?;
                        }
                        for response in responses {
                            outputs.write(&response)?;
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
                // Closed bursts and the spool's drop count, a few times a second.
                if checked.elapsed() >= Duration::from_millis(100) {
                    checked = Instant::now();
                    for event in bursts.due(checked) {
                        outputs.write(&event)?;
                    }
                    outputs.report_drops(false)?;
                }
            }
            for event in bursts.flush() {
                outputs.write(&event)?;
            }
            outputs.finish()
        })?;
        let reporter = Reporter::new(sandbox, profile, session, severity, tx);
        Ok((
            reporter,
            Writer {
                thread,
                gate: Some(gate),
            },
        ))
    }

    /// Watches `watch`, on the thread that follows the sandbox (see [`crate::sandbox::Watcher`]);
    /// `resolver` are threads already serving the sandbox, which `stop` ends.
    pub fn start(
        mut watch: Watch,
        reporter: Reporter,
        writer: Writer,
        stop: Arc<Stop>,
        resolver: Vec<JoinHandle<()>>,
    ) -> Self {
        let audit = watch
            .audit
            .take()
            .map(|(listener, creators)| listener.watching(creators, &reporter));
        Self {
            kernel: KernelWatch::new(watch),
            audit,
            stop,
            resolver,
            writer,
            reporter,
            failed: false,
        }
    }

    /// Lets the writer write, once the command runs.
    pub fn open_writer(&mut self) {
        self.writer.open();
    }

    /// The command's pid, once init has started it: the Landlock domain it creates names
    /// the command's denials in the audit records.
    pub fn add_creator(&mut self, pid: u32) {
        if let Some(audit) = self.audit.as_mut() {
            audit.add_creator(pid);
        }
    }

    /// Stops watching a sandbox whose command never started (nothing is written): the
    /// resolver's threads end, and the writer with them.
    pub fn abandon(mut self) {
        self.stop.stop();
        for t in self.resolver.drain(..) {
            let _ = t.join();
        }
        drop(self.reporter);
        // Its gate dropped closed: it ends without writing.
        drop(self.writer.gate);
        let _ = self.writer.thread.wait();
    }

    /// The sandbox's cgroup's id (its key in the eBPF maps).
    pub fn cgroup_id(&self) -> u64 {
        self.kernel.watch.cgroup_id
    }

    /// Stops watching once every event the sandbox produced is read. `ring_read` is called
    /// as soon as the last record of the sandbox's ring is (to give the sandbox's entries
    /// and ring back), while the kernel answers the audit listener's last check of its
    /// channel (asked first, so that its answer is not waited for in turn). The events are
    /// still being written when it returns: see [`Finishing::wait`].
    pub fn finish(mut self, ring_read: impl FnOnce()) -> Finishing {
        self.stop.stop();
        if self.failed {
            self.audit = None;
        }
        if let Some(audit) = self.audit.as_mut() {
            audit.ask();
        }
        if !self.failed {
            self.kernel.step(&self.reporter, true);
        }
        ring_read();
        if let Some(audit) = self.audit.take() {
            audit.finish(&self.reporter);
        }
        // The writer finishes once every reporter is gone (the resolver's go as its
        // threads end).
        drop(self.reporter);
        self.writer.open();
        Finishing {
            writer: self.writer.thread,
            resolver: self.resolver,
            failed: self.failed,
        }
    }
}

/// A watcher whose last events are read, while they are written out.
pub struct Finishing {
    writer: Worker<std::io::Result<u64>>,
    resolver: Vec<JoinHandle<()>>,
    failed: bool,
}

impl Finishing {
    /// Waits until every event is written; returns how many were.
    pub fn wait(self) -> std::io::Result<u64> {
        // A resolver thread that panicked answered no further: what came after is lost.
        let mut panicked = false;
        for t in self.resolver {
            panicked |= t.join().is_err();
        }
        let written = self
            .writer
            .wait()
            .unwrap_or_else(|| Err(std::io::Error::other("the event writer panicked")))?;
        if self.failed {
            return Err(std::io::Error::other(
                "the sandbox's watcher panicked, so the sandbox was killed: its events after that are lost",
            ));
        }
        if panicked {
            return Err(std::io::Error::other(
                "the DNS resolver panicked: the sandbox's later events may be lost",
            ));
        }
        Ok(written)
    }
}

/// Records read from the ring in one step while the sandbox runs.
const RECORDS_PER_STEP: usize = 4096;

/// The longest time between two reads of the lost-event counts and the containment state
/// while the sandbox runs (records read are followed by one at once).
const CHECK_EVERY: Duration = Duration::from_millis(50);

impl crate::sandbox::Watcher for Monitor {
    fn fds(&self) -> Vec<std::os::fd::BorrowedFd<'_>> {
        if self.failed {
            return Vec::new();
        }
        let mut fds = vec![self.kernel.watch.ring.as_fd()];
        fds.extend(self.audit.as_ref().map(crate::audit::Watching::fd));
        fds
    }

    fn timeout_ms(&self) -> u16 {
        CHECK_EVERY.as_millis() as u16
    }

    /// A step that panics (a bug) stops the watching, and the sandbox with it: it was not
    /// asked to run unwatched. The thread goes on following it to its end.
    fn step(&mut self) {
        if self.failed {
            return;
        }
        let stepped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.kernel.step(&self.reporter, false);
            if let Some(audit) = self.audit.as_mut() {
                audit.step(&self.reporter);
            }
        }));
        if stepped.is_err() {
            self.failed = true;
            let kill = self
                .kernel
                .watch
                .cgroup_events
                .with_file_name("cgroup.kill");
            tracing::error!("the sandbox's watcher panicked: the sandbox is killed");
            if let Err(e) = std::fs::write(&kill, "1") {
                tracing::error!("cannot kill the sandbox through {}: {e}", kill.display());
            }
        }
    }
}

/// The sandbox's event ring, read as records come; what the kernel counted as lost and the
/// containment state, checked along the way.
struct KernelWatch {
    watch: Watch,
    clock: Clock,
    /// The sandbox's cgroup's name (`<cgroup2>/cordon/<name>/cgroup.events`).
    own: String,
    exes: HashMap<u32, String>,
    lost: u64,
    unexamined: u64,
    isolated: bool,
    frozen: bool,
    killed: bool,
    /// When the counts and the containment state were last read.
    checked: Instant,
    /// The sandbox's `cgroup.events`, kept open: a check reads it again from its start in
    /// one call, where opening it took five.
    events: Option<std::fs::File>,
}

impl KernelWatch {
    fn new(watch: Watch) -> Self {
        let own = watch
            .cgroup_events
            .parent()
            .and_then(|d| d.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let events = std::fs::File::open(&watch.cgroup_events).ok();
        Self {
            watch,
            clock: Clock::now(),
            own,
            exes: HashMap::new(),
            lost: 0,
            unexamined: 0,
            isolated: false,
            frozen: false,
            killed: false,
            checked: Instant::now(),
            events,
        }
    }

    /// What the sandbox's `cgroup.events` says now.
    fn cgroup_events(&self) -> Option<String> {
        use std::os::unix::fs::FileExt as _;
        let Some(file) = &self.events else {
            return std::fs::read_to_string(&self.watch.cgroup_events).ok();
        };
        let mut buf = [0u8; 256];
        let len = file.read_at(&mut buf, 0).ok()?;
        Some(String::from_utf8_lossy(&buf[..len]).into_owned())
    }

    /// Reads the records the ring holds (every one at the `last` step, after the sandbox has
    /// ended); then the kernel's counts and the containment state.
    fn step(&mut self, reporter: &Reporter, last: bool) {
        let watch = &mut self.watch;
        let cgroup_id = watch.cgroup_id;
        let (own, clock, exes) = (&self.own, &self.clock, &mut self.exes);
        // While the sandbox runs, a step reads a bounded number: a flood of records must not
        // keep this thread from init's reports and the signals it relays.
        let most = if last { usize::MAX } else { RECORDS_PER_STEP };
        let read = watch.ring.drain(most, |record| {
            if let Some((time, process, whats)) = decode(
                record,
                cgroup_id,
                clock,
                exes,
                &watch.names,
                (&watch.view, watch.cgroup_events.parent()),
                (watch.judge.as_mut(), watch.init),
            ) {
                for (what, enforced) in whats {
                    if own_cgroup_probe(&what, own) {
                        continue;
                    }
                    reporter.report_enforced(time, process.clone(), what, enforced);
                }
            }
        });
        let tampered = watch.ring.take_tampered();
        if tampered > 0 {
            tracing::error!("the sandbox's event ring was moved by another process");
            reporter.report(
                None,
                What::EventsLost {
                    count: tampered,
                    reason: crate::event::LossReason::RingTampered,
                },
            );
        }
        // A responder's action shows in the records after it, which are followed by a check
        // at once; otherwise (a wake for an audit record, any process's) now and then.
        if read > 0 || last || self.checked.elapsed() >= CHECK_EVERY {
            self.checked = Instant::now();
            self.check(reporter);
        }
    }

    /// Reports what the kernel counted since the last look (records with no room, misses
    /// unexamined) and changes of the containment state.
    fn check(&mut self, reporter: &Reporter) {
        let watch = &self.watch;
        let counts = watch.kernel.counts(watch.cgroup_id).unwrap_or_default();
        for (now, seen, reason) in [
            (
                counts.lost,
                &mut self.lost,
                crate::event::LossReason::RingFull,
            ),
            (
                counts.unexamined,
                &mut self.unexamined,
                crate::event::LossReason::Unexamined,
            ),
        ] {
            if now > *seen {
                reporter.report(
                    None,
                    What::EventsLost {
                        count: now - *seen,
                        reason,
                    },
                );
                *seen = now;
            }
        }
        if let Ok(Some(sandbox)) = watch.kernel.sandbox(watch.cgroup_id) {
            let now = sandbox.flags & abi::CORDON_SANDBOX_ISOLATED as u32 != 0;
            if now != self.isolated {
                self.isolated = now;
                let action = if now {
                    Action::Isolate
                } else {
                    Action::Release
                };
                reporter.report(None, What::Contained { action });
            }
            if !self.killed && sandbox.flags & abi::CORDON_SANDBOX_KILLED as u32 != 0 {
                self.killed = true;
                reporter.report(
                    None,
                    What::Contained {
                        action: Action::Kill,
                    },
                );
            }
        }
        // A killed sandbox is thawed for its processes to die, and its empty cgroup reads
        // frozen again: neither is a responder's action. The kill was the last one.
        let read_frozen = !self.killed;
        if let Some(events) = read_frozen.then(|| self.cgroup_events()).flatten() {
            let now = events.lines().any(|l| l == "frozen 1");
            if now != self.frozen {
                self.frozen = now;
                let action = if now { Action::Freeze } else { Action::Thaw };
                reporter.report(None, What::Contained { action });
            }
        }
    }
}

/// Whether `what` is a program asking for its own cgroup's limits (Node, the JVM, Go and
/// Python size themselves by them) and not finding them, the cgroup file system being out of
/// the view: a read of a limit file (`memory.*`, `cpu.*`, `cpuset.*`, `pids.*`, `io.*`) of its
/// own cgroup, or of a hierarchy's root (where libuv looks when its own are not there). A
/// harmless probe of the sandbox's own settings, not a violation. Anything else there (a
/// write, `cgroup.procs`, another cgroup's files, a path with `..`) stays a violation.
fn own_cgroup_probe(what: &What, own: &str) -> bool {
    let What::FileDenied {
        path,
        access,
        layer: Some(crate::event::FileLayer::NotInView),
        ..
    } = what
    else {
        return false;
    };
    if access != "fs.read_file" {
        return false;
    }
    let Ok(rest) = std::path::Path::new(path).strip_prefix("/sys/fs/cgroup") else {
        return false;
    };
    let names: Vec<&std::ffi::OsStr> = rest.iter().collect();
    if names.iter().any(|n| *n == ".." || *n == ".") {
        return false;
    }
    let limit_file = |n: &std::ffi::OsStr| {
        let n = n.to_string_lossy();
        ["memory.", "cpu.", "cpuset.", "pids.", "io."]
            .iter()
            .any(|p| n.starts_with(p))
    };
    let Some((file, dirs)) = names.split_last() else {
        return false;
    };
    if !limit_file(file) {
        return false;
    }
    let own_cgroup = !own.is_empty()
        && dirs
            .windows(2)
            .any(|w| w[0] == "cordon" && w[1] == std::ffi::OsStr::new(own))
        && dirs.last() == Some(&std::ffi::OsStr::new(own));
    // `memory.max` of cgroup v2's root, or `memory/memory.limit_in_bytes` of a v1 hierarchy.
    let root_file = dirs.len() <= 1;
    own_cgroup || root_file
}

/// The denial a failed file call was, when the sandbox's view refused it: the path as the
/// process asked for it, the access, and the rule. A relative path is placed by the
/// directory it started from, which the kernel program read at the call (the cwd, or the
/// directory descriptor); when that was too deep for the record, by the thread's cwd or
/// descriptor in `/proc` (as the sandbox sees them) if the thread is still there.
///
/// A refusal (`EACCES`, `EROFS`) whose path cannot be placed, or that was longer than
/// PATH_MAX, or that is in the sandbox's private `/tmp` and gone before it could be looked at,
/// is reported as `unplaced` rather than dropped; a missing path that cannot be placed is
/// taken for a miss. A refusal that the path as written does not explain is looked
/// at once more through the host's symlinks (a link in the workspace to a covered directory,
/// `/proc/self/root/...`): the trees the sandbox sees are the host's, at the same paths.
fn file_denied(
    header: &abi::EventHeader,
    file: &abi::File,
    raw: &[u8],
    view: &crate::sandbox::view::View,
    cgroup: Option<&std::path::Path>,
    at: SystemTime,
) -> Option<What> {
    use crate::sandbox::view;
    use std::os::unix::ffi::OsStrExt as _;
    let errno = -file.ret;
    let refusal = errno != libc::ENOENT;
    let asked = String::from_utf8_lossy(raw).into_owned();
    let access = view::access_of(file.nr, file.flags);
    let unplaced = || {
        refusal.then(|| What::FileDenied {
            path: if file.truncated != 0 {
                format!("{asked}…")
            } else {
                asked.clone()
            },
            access: access.into(),
            layer: Some(crate::event::FileLayer::Unplaced),
            rule: None,
            target: None,
        })
    };
    if file.truncated != 0 {
        return unplaced();
    }
    let written = std::path::Path::new(std::ffi::OsStr::from_bytes(raw));
    let Some(absolute) = placed(header, file, written) else {
        return unplaced();
    };
    if !refusal && plainly_missing(view, &absolute) {
        return None;
    }
    let creating = access.starts_with("fs.make_");
    let on_host = |p: &std::path::Path| {
        std::fs::symlink_metadata(p).is_ok()
            // A file created where the view has nothing: refused if its directory is the host's.
            || (creating && p.parent().is_some_and(|d| std::fs::symlink_metadata(d).is_ok()))
    };
    // `path` where the sandbox sees it: through the root of the process that asked or, gone
    // already, of another of the sandbox's.
    let in_sandbox = |path: &std::path::Path| -> Option<OwnedFd> {
        if let Some(found) = in_root_of(header.pid, path) {
            return Some(found);
        }
        // The process that asked may be gone: another of the sandbox's sees the same.
        let others = cgroup
            .and_then(|c| std::fs::read_to_string(c.join("cgroup.procs")).ok())
            .unwrap_or_default();
        others
            .lines()
            .filter_map(|pid| pid.parse().ok())
            .find_map(|pid| in_root_of(pid, path))
    };
    // As written; then through the process's cwd or descriptor in /proc, read now; then
    // through the host's symlinks (a link the agent made in its workspace).
    // What is judged is the path cleaned as the view judges it (`..` resolved, a
    // `/proc/<pid>/root` prefix dropped): where the call led, which a response rule matches.
    let judged = |p: PathBuf| {
        view.refusal(&p, errno, access, on_host)
            .map(|f| (f, view::normalize(&p)))
    };
    let found = judged(absolute.clone())
        .or_else(|| {
            // `/proc/self/cwd/...`: the kernel program read the cwd at the call.
            let rest = absolute.strip_prefix("/proc/self/cwd").ok()?;
            judged(crate::sandbox::view::normalize(&file.dir()?.join(rest)))
        })
        .or_else(|| judged(proc_link(&absolute, header.pid)?))
        .or_else(|| {
            let through = host_path(&absolute, header.pid)?;
            (through != absolute).then_some(())?;
            judged(through)
        })
        .or_else(|| {
            // A link as the path's last name. In a directory of the host's (resolved above),
            // read on the host: it is the same link, and still there when the process that
            // asked, and its sandbox, are gone.
            let host = host_path(&absolute, header.pid)?;
            if view.in_private_tree(&host) {
                return None;
            }
            let link = std::fs::read_link(&host).ok()?;
            judged(crate::sandbox::view::normalize(&host.parent()?.join(link)))
        })
        .or_else(|| {
            // Else where the sandbox sees it: in a tree of its own (its private /tmp), or
            // reached through a link that leads there.
            let link = PathBuf::from(nix::fcntl::readlinkat(in_sandbox(&absolute)?, "").ok()?);
            let through = absolute.parent()?.join(link);
            judged(crate::sandbox::view::normalize(&through))
        });
    let Some((found, led)) = found else {
        // Placed and not explained by the view: the kernel's other checks refused it
        // (Landlock, which reports its own denials, or the file's mode). Reported unplaced,
        // since where it led can no longer be seen: a refusal in a tree of the sandbox's own
        // that is gone, or one whose last name was replaced since the call (a link swapped
        // for a harmless one before this look, to hide where the call went).
        let gone = view.in_private_tree(&absolute) && in_sandbox(&absolute).is_none();
        return (gone || changed_since(&absolute, header.pid, at, &in_sandbox))
            .then(unplaced)
            .flatten();
    };
    Some(What::FileDenied {
        // Where a relative name, `..` or a link led, beside the name as asked: what a
        // response rule or a person matches paths against.
        target: (led.as_os_str().as_bytes() != raw).then(|| led.to_string_lossy().into_owned()),
        path: asked,
        access: access.into(),
        layer: Some(found.layer),
        rule: found.rule.map(|r| r.to_string_lossy().into_owned()),
    })
}

/// How far behind the time of the call an inode's change time may read and still be later.
const CTIME_TICKS: Duration = Duration::from_millis(20);

/// Whether a miss (`ENOENT`) at `path` is plainly a program's own: written without `.` or
/// `..`, in a tree the sandbox sees as the host has it (see `View::shows_host_tree`), its
/// directory reached on the host without a link, and its name not there. Every way
/// [`file_denied`] looks further (the view, the host's links, the process's cwd, the path
/// as the sandbox sees it now, a change since the call) then finds nothing, so two calls
/// decide the commonest miss: git looks for a `.gitignore` in every directory, and each
/// such look had cost the watcher a dozen calls beside the program.
fn plainly_missing(view: &crate::sandbox::view::View, path: &std::path::Path) -> bool {
    use std::path::Component;
    if !path
        .components()
        .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        || !view.shows_host_tree(path)
    {
        return false;
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return false;
    };
    let Ok(dir) = crate::sys::open_no_symlinks(dir) else {
        return false;
    };
    matches!(
        nix::sys::stat::fstatat(&dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW),
        Err(nix::errno::Errno::ENOENT)
    )
}

/// Whether `path`'s last name, as the host or the sandbox sees it, was made or replaced
/// after `at` (its inode's change time): what it named at the call is not what is there.
fn changed_since(
    path: &std::path::Path,
    pid: u32,
    at: SystemTime,
    in_sandbox: &dyn Fn(&std::path::Path) -> Option<OwnedFd>,
) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let changed = |m: std::fs::Metadata| {
        let ctime = SystemTime::UNIX_EPOCH
            + Duration::new(
                m.ctime().max(0) as u64,
                m.ctime_nsec().clamp(0, 999_999_999) as u32,
            );
        // Inode times come from the kernel's coarse clock, a tick or two behind: within
        // that, only a link counts (what redirects a path), not a file or directory just
        // made, which Landlock may well have refused itself (and reported).
        if m.file_type().is_symlink() {
            ctime + CTIME_TICKS >= at
        } else {
            ctime >= at + CTIME_TICKS
        }
    };
    let on_host = host_path(path, pid).and_then(|p| std::fs::symlink_metadata(p).ok());
    let inside = in_sandbox(path).and_then(|fd| std::fs::File::from(fd).metadata().ok());
    on_host.is_some_and(changed) || inside.is_some_and(changed)
}

/// `path` as the process `pid` sees it, opened without following its last name: resolved in
/// the process's root, where its absolute links lead too (a link in the workspace to `/tmp`
/// is the sandbox's private `/tmp`, not the host's). `None` when there is nothing there, or
/// the process is gone.
fn in_root_of(pid: u32, path: &std::path::Path) -> Option<OwnedFd> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
    let root = nix::fcntl::open(
        format!("/proc/{pid}/root").as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ok()?;
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    nix::fcntl::openat2(&root, path, how).ok()
}

/// `path` as the host's `/proc` names it: the process's own entry (`self`, `thread-self`,
/// or its number inside the sandbox's PID namespace) is `/proc/<pid>` with its host pid.
fn host_proc(path: &std::path::Path, pid: u32) -> PathBuf {
    if !path.starts_with("/proc") {
        return path.to_path_buf();
    }
    let mut own = vec!["self".to_string(), "thread-self".to_string()];
    // Its number as the sandbox sees it: the last of `NSpid`.
    if let Some(ns) = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .and_then(|v| v.split_whitespace().last().map(str::to_string))
        })
    {
        own.push(ns);
    }
    for name in own {
        if let Ok(rest) = path.strip_prefix(format!("/proc/{name}")) {
            return std::path::Path::new(&format!("/proc/{pid}")).join(rest);
        }
    }
    path.to_path_buf()
}

/// `path` with a process's cwd or descriptor in `/proc` replaced by what it names (as the
/// sandbox sees it), `..` then taken out; `None` when it goes through none, or the process
/// is gone.
fn proc_link(path: &std::path::Path, pid: u32) -> Option<PathBuf> {
    if !crate::sandbox::view::through_proc_link(path) {
        return None;
    }
    let host = host_proc(path, pid);
    let rest = host.strip_prefix(format!("/proc/{pid}")).ok()?;
    let mut names = rest.components();
    let link = match names.next()?.as_os_str().to_str()? {
        "cwd" => std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?,
        "fd" => {
            let fd = names.next()?.as_os_str().to_str()?.to_string();
            std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?
        }
        _ => return None,
    };
    Some(crate::sandbox::view::normalize(&link.join(names.as_path())))
}

/// `path` with its directory's symlinks resolved on the host (the process's own entry in
/// `/proc` taken as such); `None` when the directory cannot be resolved.
fn host_path(path: &std::path::Path, pid: u32) -> Option<PathBuf> {
    let dir = host_proc(path.parent()?, pid);
    // A process's entries in `/proc` are links the kernel resolves by name, read as such.
    let resolved = if dir.starts_with("/proc") {
        std::fs::canonicalize(dir).ok()?
    } else {
        resolved_dir(&dir)?
    };
    Some(match path.file_name() {
        Some(name) => resolved.join(name),
        None => resolved,
    })
}

/// The directory `dir` (a host path) with its symlinks resolved: opened, and named by the
/// kernel. Three calls, where `realpath` reads each component as a link: a watcher
/// examining a program's misses (git looks for a `.gitignore` in every directory) does it
/// hundreds of times a second, beside the program, on a machine's other processor.
fn resolved_dir(dir: &std::path::Path) -> Option<PathBuf> {
    use nix::fcntl::OFlag;
    use std::os::fd::AsRawFd as _;
    let fd = nix::fcntl::open(
        dir,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ok()?;
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()
}

/// Turns CLOCK_MONOTONIC (the kernel's event times) into wall-clock time.
struct Clock {
    wall: SystemTime,
    monotonic_ns: u64,
}

impl Clock {
    fn now() -> Self {
        Self {
            wall: SystemTime::now(),
            monotonic_ns: crate::network::monotonic_ns(),
        }
    }

    fn wall(&self, monotonic_ns: u64) -> SystemTime {
        if monotonic_ns >= self.monotonic_ns {
            self.wall + Duration::from_nanos(monotonic_ns - self.monotonic_ns)
        } else {
            self.wall - Duration::from_nanos(self.monotonic_ns - monotonic_ns)
        }
    }
}

/// A record read: when, who, and what it reports, each with whether it was enforced (an
/// audited sandbox's exec of a script may be two denials let through: the script and its
/// interpreter).
type Decoded = (SystemTime, Option<Process>, Vec<(What, bool)>);

fn decode(
    record: &[u8],
    cgroup_id: u64,
    clock: &Clock,
    exes: &mut HashMap<u32, String>,
    names: &Mutex<HashMap<IpAddr, String>>,
    (view, cgroup): (&crate::sandbox::view::View, Option<&std::path::Path>),
    (judge, init): (Option<&mut Judge>, u32),
) -> Option<Decoded> {
    use abi::FromBytes as _;
    let Some((header, payload)) = abi::split_event(record) else {
        // The programs and this mirror come from one header: a short record is a bug.
        tracing::warn!(
            "an event record of {} bytes is too short; dropped",
            record.len()
        );
        return None;
    };
    if header.cgroup_id != cgroup_id {
        // Written by the ring's previous holder just before it let the ring go.
        return None;
    }
    let pid = header.pid;
    let kind = header.kind as usize;
    let enforced = header.flags & abi::CORDON_RECORD_NOT_ENFORCED as u32 == 0;
    let what = match kind {
        abi::CORDON_EVENT_NET_DENIED => {
            let net = abi::Net::read_from_prefix(payload).ok()?.0;
            let address = if usize::from(net.family) == 10 {
                IpAddr::from(net.addr)
            } else {
                IpAddr::from([net.addr[0], net.addr[1], net.addr[2], net.addr[3]])
            };
            let protocol = match usize::from(net.proto) {
                abi::CORDON_PROTO_TCP => Protocol::Tcp,
                abi::CORDON_PROTO_UDP => Protocol::Udp,
                _ => Protocol::Other,
            };
            let reason = match usize::from(net.reason) {
                abi::CORDON_NET_ISOLATED => NetReason::Isolated,
                abi::CORDON_NET_EXPIRED => NetReason::Expired,
                abi::CORDON_NET_BIND => {
                    // Reported as Landlock reports the binds it refuses.
                    let judge = judge?;
                    if judge.bind_tcp.contains(&net.port) {
                        return None;
                    }
                    let what = What::OtherDenied {
                        blockers: "net.bind_tcp".into(),
                        detail: format!("saddr={address} src={}", net.port),
                    };
                    let process = process_of(&header, exes);
                    return Some((
                        clock.wall(header.time_ns),
                        Some(process),
                        vec![(what, enforced)],
                    ));
                }
                _ => NetReason::NotAllowed,
            };
            let domain = names.lock().ok().and_then(|n| n.get(&address).cloned());
            What::NetworkDenied {
                address,
                port: net.port,
                protocol,
                reason,
                domain,
            }
        }
        abi::CORDON_EVENT_SYSCALL_DENIED => {
            let call = abi::Syscall::read_from_prefix(payload).ok()?.0;
            let name = usize::try_from(call.nr)
                .ok()
                .and_then(syscalls::Sysno::new)
                .map_or_else(|| format!("syscall_{}", call.nr), |s| s.name().to_owned());
            What::SyscallDenied {
                nr: call.nr,
                syscall: name,
                args: call.args.to_vec(),
                // A call let through (audit) may have succeeded: no errno then.
                errno: i32::try_from(-call.ret).unwrap_or(0).max(0),
            }
        }
        abi::CORDON_EVENT_EXEC => {
            let exec = abi::Exec::read_from_prefix(payload).ok()?.0;
            let filename = abi::c_str(&exec.filename);
            exes.insert(pid, filename.clone());
            What::Exec { filename }
        }
        abi::CORDON_EVENT_FORK => {
            let fork = abi::Fork::read_from_prefix(payload).ok()?.0;
            if let Some(exe) = exes.get(&pid).cloned() {
                exes.insert(fork.child_pid, exe);
            }
            What::Fork {
                child_pid: fork.child_pid,
            }
        }
        // Init's own end, Cordon's process: it comes once the sandbox has been reported
        // ended, often after its events were read for the last time, so never reported.
        abi::CORDON_EVENT_EXIT if pid == init => return None,
        abi::CORDON_EVENT_EXIT => {
            let exit = abi::Exit::read_from_prefix(payload).ok()?.0;
            let status = exit.exit_code as i32;
            let signal = status & 0x7f;
            if signal != 0 {
                What::Exit {
                    code: None,
                    signal: Some(signal),
                }
            } else {
                What::Exit {
                    code: Some((status >> 8) & 0xff),
                    signal: None,
                }
            }
        }
        // Init building the sandbox (see `Watch::init`).
        abi::CORDON_EVENT_FILE_ERROR if pid == init => return None,
        abi::CORDON_EVENT_FILE_ERROR => {
            let file = abi::File::read_from_prefix(payload).ok()?.0;
            if header.flags & abi::CORDON_RECORD_SUCCEEDED as u32 != 0 {
                let judge = judge?;
                let whats = file_audited(&header, &file, file.path(payload), judge);
                if whats.is_empty() {
                    return None;
                }
                let process = process_of(&header, exes);
                let whats = whats.into_iter().map(|w| (w, false)).collect();
                return Some((clock.wall(header.time_ns), Some(process), whats));
            }
            file_denied(
                &header,
                &file,
                file.path(payload),
                view,
                cgroup,
                clock.wall(header.time_ns),
            )?
        }
        other => {
            tracing::warn!("an event record of unknown kind {other}; dropped");
            return None;
        }
    };
    let process = process_of(&header, exes);
    if matches!(what, What::Exit { .. }) {
        exes.remove(&pid);
    }
    Some((
        clock.wall(header.time_ns),
        Some(process),
        vec![(what, enforced)],
    ))
}

/// The process a record is about.
fn process_of(header: &abi::EventHeader, exes: &HashMap<u32, String>) -> Process {
    let pid = header.pid;
    let exe = exes.get(&pid).cloned().or_else(|| {
        std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    });
    Process {
        pid,
        ppid: header.ppid,
        comm: abi::c_str(&header.comm),
        exe,
        uid: header.uid,
    }
}

/// A path call an audited sandbox made that the profile would have refused: the path as the
/// process asked for it, judged where the kernel took it (symlinks followed).
fn file_audited(
    header: &abi::EventHeader,
    file: &abi::File,
    raw: &[u8],
    judge: &mut Judge,
) -> Vec<What> {
    use std::os::unix::ffi::OsStrExt as _;
    let access = crate::sandbox::view::access_of(file.nr, file.flags);
    // A look that found its path: enforce mode would have said it is not there, and
    // programs probe paths all the time. Only refusals of looks are denials.
    if access == "fs.stat" {
        return Vec::new();
    }
    let asked = String::from_utf8_lossy(raw).into_owned();
    let written = std::path::Path::new(std::ffi::OsStr::from_bytes(raw));
    // A file made or removed is the name itself, not what a symlink of that name points at.
    let follow = !(access.starts_with("fs.make_") || access.starts_with("fs.remove_"));
    let by_name = || -> Option<PathBuf> {
        if file.truncated != 0 {
            return None;
        }
        let absolute = match written.strip_prefix("/proc/self/cwd") {
            Ok(rest) => file.dir()?.join(rest),
            Err(_) => placed(header, file, written)?,
        };
        Some(resolved(&absolute, header.pid, follow))
    };
    let Some(object) = file.object() else {
        // Not read in the kernel (made, removed, renamed; deeper than the walk): by name.
        return by_name()
            .and_then(|path| judge.file(&asked, path, access))
            .into_iter()
            .collect();
    };
    // A map has no name: the file mapped is what it asked for.
    let asked = if raw.is_empty() {
        object.to_string_lossy().into_owned()
    } else {
        asked
    };
    // What the kernel opened or runs, whatever the name said (symlinks swapped since,
    // `/proc` links, `..`, RESOLVE_IN_ROOT).
    let mut out: Vec<What> = judge
        .file(&asked, object.clone(), access)
        .into_iter()
        .collect();
    // A script runs its interpreter (the object); the script itself needs exec too.
    if file.nr == 59 {
        if let Some(script) = by_name().filter(|s| *s != object) {
            out.extend(judge.file(&asked, script, access));
        }
    }
    out
}

/// `written` as an absolute path: a relative one joined to the directory it started from,
/// as the kernel read it at the call or, when that was too deep for the record, as the
/// thread's cwd or descriptor in `/proc` says now (`None`: the thread is gone).
fn placed(
    header: &abi::EventHeader,
    file: &abi::File,
    written: &std::path::Path,
) -> Option<PathBuf> {
    if written.is_absolute() {
        return Some(written.to_path_buf());
    }
    let base = file.dir().or_else(|| {
        let link = if file.dirfd == libc::AT_FDCWD {
            format!("/proc/{}/task/{}/cwd", header.pid, header.tid)
        } else {
            format!("/proc/{}/fd/{}", header.pid, file.dirfd)
        };
        std::fs::read_link(link).ok()
    })?;
    Some(base.join(written))
}

/// Where `path` (absolute, as an audited sandbox named it) leads: its directories' symlinks
/// followed on the host, whose tree the audited sandbox sees at the same paths; the last
/// name followed too when `follow` and it is a symlink there. The sandbox's own trees
/// (`/tmp`, `/proc`) are taken as written, a process's cwd or descriptor in `/proc` by its
/// link.
fn resolved(path: &std::path::Path, pid: u32, follow: bool) -> PathBuf {
    use crate::sandbox::view;
    if let Some(through) = proc_link(path, pid) {
        return through;
    }
    let path = view::normalize(path);
    if path.starts_with(crate::policy::SANDBOX_TMP) || path.starts_with("/proc") {
        return path;
    }
    follow
        .then(|| std::fs::canonicalize(&path).ok())
        .flatten()
        .or_else(|| {
            let dir = std::fs::canonicalize(path.parent()?).ok()?;
            Some(dir.join(path.file_name()?))
        })
        .unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn missing(path: &str) -> What {
        What::FileDenied {
            path: path.into(),
            access: "fs.read_file".into(),
            layer: Some(crate::event::FileLayer::NotInView),
            rule: None,
            target: None,
        }
    }

    #[test]
    fn a_program_asking_for_its_own_cgroups_limits_is_no_violation() {
        let own = "coding-agent-31178-0";
        for path in [
            "/sys/fs/cgroup/memory/cordon/coding-agent-31178-0/memory.limit_in_bytes",
            "/sys/fs/cgroup/unified/cordon/coding-agent-31178-0/memory.max",
            "/sys/fs/cgroup/cordon/coding-agent-31178-0/cpu.max",
        ] {
            assert!(own_cgroup_probe(&missing(path), own), "{path}");
        }
        for path in [
            // A hierarchy's root files, where libuv looks next.
            "/sys/fs/cgroup/memory/memory.soft_limit_in_bytes",
            "/sys/fs/cgroup/memory.max",
        ] {
            assert!(own_cgroup_probe(&missing(path), own), "{path}");
        }
        for path in [
            // Another sandbox's, the host's, or not the cgroup file system at all.
            "/sys/fs/cgroup/memory/cordon/coding-agent-1-0/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/user.slice/memory.limit_in_bytes",
            "/home/dev/cordon/coding-agent-31178-0/x",
            // Not a limit file, or a way out of the cgroup file system by `..`.
            "/sys/fs/cgroup/unified/cgroup.procs",
            "/sys/fs/cgroup/memory/cordon/coding-agent-31178-0/cgroup.procs",
            "/sys/fs/cgroup/memory/cordon/coding-agent-31178-0/../../../../home/x/memory.max",
        ] {
            assert!(!own_cgroup_probe(&missing(path), own), "{path}");
        }
        let written = What::FileDenied {
            path: "/sys/fs/cgroup/memory/cordon/coding-agent-31178-0/memory.max".into(),
            access: "fs.write_file".into(),
            layer: Some(crate::event::FileLayer::NotInView),
            rule: None,
            target: None,
        };
        assert!(!own_cgroup_probe(&written, own), "only reads");
        let refused = What::FileDenied {
            path: "/sys/fs/cgroup/memory/cordon/coding-agent-31178-0/memory.max".into(),
            access: "fs.read_file".into(),
            layer: Some(crate::event::FileLayer::Deny),
            rule: None,
            target: None,
        };
        assert!(!own_cgroup_probe(&refused, own), "only misses");
    }
}
