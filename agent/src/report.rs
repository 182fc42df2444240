//! What every watcher of a sandbox holds: the [`Reporter`] it hands events to; the [`Stop`]
//! that tells the DNS resolver's threads to finish; and the [`Worker`] the event writer and
//! the sweep run as. The watchers (`monitor`, `audit`, the DNS resolver) depend on these and
//! not on each other.

use std::os::fd::AsFd as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::event::{Event, Process, What};

/// A thread whose work is waited for, not its end: [`Worker::wait`] returns as soon as the
/// thread's result is ready, while the thread exits unwatched. A thread's exit gives its stack
/// back to the kernel, which flushes the other processors' TLBs by interrupt: about 0.1 ms in
/// a VM, that the end of every `cordon run` would otherwise wait for.
pub struct Worker<T> {
    done: mpsc::Receiver<T>,
}

impl<T: Send + 'static> Worker<T> {
    /// Runs `work` on a thread of its own; its result is ready once it has returned (and
    /// dropped what it held).
    pub fn spawn(name: &str, work: impl FnOnce() -> T + Send + 'static) -> std::io::Result<Self> {
        let (tx, done) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let _ = tx.send(work());
            })?;
        Ok(Self { done })
    }

    /// The result; `None` if the work panicked before sending it.
    pub fn wait(self) -> Option<T> {
        self.done.recv().ok()
    }
}

/// Tells the threads that serve a sandbox (the DNS resolver's) to finish, at once: each
/// waits in [`Stop::wait`] on its own descriptor and the stop's pipe, and `stop()` closes the
/// pipe's write end, which wakes them all.
pub struct Stop {
    flag: AtomicBool,
    reader: std::io::PipeReader,
    writer: Mutex<Option<std::io::PipeWriter>>,
}

impl Stop {
    pub fn new() -> std::io::Result<Arc<Self>> {
        let (reader, writer) = std::io::pipe()?;
        Ok(Arc::new(Self {
            flag: AtomicBool::new(false),
            reader,
            writer: Mutex::new(Some(writer)),
        }))
    }

    pub fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
        if let Ok(mut writer) = self.writer.lock() {
            writer.take();
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Waits until `fd` is readable or the stop comes; returns whether `fd` is readable.
    pub fn wait(&self, fd: std::os::fd::BorrowedFd<'_>) -> bool {
        let mut fds = [
            nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN),
            nix::poll::PollFd::new(self.reader.as_fd(), nix::poll::PollFlags::POLLIN),
        ];
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE) {
            Ok(n) if n > 0 => fds[0].revents().is_some_and(|r| {
                r.intersects(nix::poll::PollFlags::POLLIN | nix::poll::PollFlags::POLLERR)
            }),
            _ => false,
        }
    }
}

/// Hands events of one sandbox to the writer.
#[derive(Clone)]
pub struct Reporter {
    sandbox: Arc<str>,
    profile: Arc<str>,
    session: Option<uuid::Uuid>,
    /// The profile's `[severity]`, over the level each event's kind gives it.
    severity: Arc<crate::policy::SeverityPolicy>,
    tx: mpsc::Sender<Event>,
}

impl Reporter {
    /// A reporter of `sandbox`'s events (profile `profile`, session `session`) into `tx`.
    pub(crate) fn new(
        sandbox: &str,
        profile: &str,
        session: Option<uuid::Uuid>,
        severity: crate::policy::SeverityPolicy,
        tx: mpsc::Sender<Event>,
    ) -> Self {
        Self {
            sandbox: Arc::from(sandbox),
            profile: Arc::from(profile),
            session,
            severity: Arc::new(severity),
            tx,
        }
    }

    pub fn report(&self, process: Option<Process>, what: What) {
        self.report_at(SystemTime::now(), process, what);
    }

    pub(crate) fn report_at(&self, time: SystemTime, process: Option<Process>, what: What) {
        self.report_enforced(time, process, what, true);
    }

    /// Reports a denial; `enforced: false` for what an audited sandbox was let do.
    pub(crate) fn report_enforced(
        &self,
        time: SystemTime,
        process: Option<Process>,
        what: What,
        enforced: bool,
    ) {
        // The writer only goes away after every reporter: a send cannot fail before that.
        let mut event = Event::new(&self.sandbox, &self.profile, time, process, what);
        event.session = self.session;
        event.enforced = enforced;
        if let Some(level) = self.severity.of(&event) {
            event.severity = Some(level);
        }
        let _ = self.tx.send(event);
    }
}
