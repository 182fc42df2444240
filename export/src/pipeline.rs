//! cordond's event pipeline: two threads read the spool files (see [`super::spool`]).
//!
//! * The journal thread appends every new line to the local journal, in order, and deletes a
//!   spool file once its writer is gone and nothing in it is waiting (journal, and the
//!   collector when one is configured).
//! * The delivery thread sends batches to the collector, oldest first, and moves its cursor
//!   only after the collector acknowledged; on failure it retries the same batch with
//!   exponential backoff and jitter. A refusal of what the batch holds (not a batch, too
//!   large) is not retried as is: the batch is halved until the event at fault is alone, and
//!   that one is set aside in `<spool>/refused/events.jsonl` (it is in the journal too) and counted,
//!   so that one bad event never holds back the ones behind it. Events the collector itself
//!   set aside while storing the rest are counted as `rejected`.
//!
//! Each thread keeps a cursor (a byte offset) per spool file; both are saved to
//! `<spool>/cursors.json` (written to a temporary file and renamed) after every step, so a
//! SIGKILL of cordond at any point repeats at most the last step: delivery is at least once,
//! and the collector dedupes by event id.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::deliver::Collector;
use super::journal::Journal;
use super::spool;
/// What the pipeline's threads read of cordond's configuration, again before each step
/// (cordond may reload it meanwhile).
pub trait Settings: Send + Sync {
    /// The journal: its path, the most bytes of one file, how many files are kept.
    fn journal(&self) -> (PathBuf, u64, u32);
    /// Where events are delivered, when a collector is configured (its token read now).
    fn collector(&self) -> Option<Destination>;
    /// Whether a collector is configured (cheap: nothing is read).
    fn delivers(&self) -> bool;
}

/// A collector to deliver to.
#[derive(Debug, Clone)]
pub struct Destination {
    pub url: String,
    /// The host token, or why it cannot be read.
    pub token: Result<Option<String>, String>,
    pub host_id: String,
    pub batch_max_events: usize,
}

const CURSORS_FILE: &str = "cursors.json";
/// Where events the collector refused alone are kept (below the spool directory, apart
/// from its files), up to [`REFUSED_MAX_BYTES`].
pub const REFUSED_FILE: &str = "refused/events.jsonl";
const REFUSED_MAX_BYTES: u64 = 16 << 20;
/// Most lines the journal thread moves from one file in one step.
const JOURNAL_STEP: usize = 20_000;
/// Largest batch body before compression.
const BATCH_BYTES: usize = 4 << 20;
/// Events refused alone in a row that are set aside; past this, they wait (see
/// [`delivery_thread`]).
const MAX_LONE_REFUSALS: u32 = 8;

/// What the pipeline reads of an event line.
#[derive(Deserialize)]
struct Head<'a> {
    v: u32,
    #[serde(borrow)]
    #[allow(dead_code, reason = "required: a line without an id is not an event")]
    id: Cow<'a, str>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    #[allow(dead_code, reason = "required: a line without a time is not an event")]
    time: Cow<'a, str>,
    /// A burst's repeats, or what `events_lost` lost.
    count: Option<u64>,
    #[serde(borrow, default)]
    reason: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Cursors {
    #[serde(default)]
    journaled: BTreeMap<String, u64>,
    #[serde(default)]
    delivered: BTreeMap<String, u64>,
}

/// Counters for `cordon status` and the metrics endpoint.
#[derive(Debug, Default)]
pub struct Stats {
    pub journaled: AtomicU64,
    pub delivered: AtomicU64,
    /// Lines in the spool that are not events (a writer cut off mid-line): skipped.
    pub invalid: AtomicU64,
    /// Events counted as lost by `events_lost` events, by reason.
    pub lost_ring: AtomicU64,
    pub lost_spool: AtomicU64,
    /// Events the collector set aside while it stored the rest of their batch.
    pub rejected: AtomicU64,
    /// Events the collector refused even alone: set aside here.
    pub refused: AtomicU64,
    pub by_kind: Mutex<BTreeMap<String, u64>>,
    pub last_delivery: Mutex<Option<SystemTime>>,
    pub last_error: Mutex<Option<String>>,
    /// Whether the last exchange with the collector (a batch or a poll for commands)
    /// succeeded: `None` before the first.
    pub collector_up: Mutex<Option<bool>>,
}

impl Stats {
    /// Notes how the last exchange with the collector went.
    pub fn contact(&self, ok: bool) {
        if let Ok(mut up) = self.collector_up.lock() {
            *up = Some(ok);
        }
    }
}

pub struct Pipeline {
    dir: PathBuf,
    cursors: Mutex<Cursors>,
    wake: Condvar,
    stop: AtomicBool,
    pub stats: Stats,
}

/// What `cordon status` says about the spool.
#[derive(Debug, Clone, Serialize)]
pub struct SpoolDepth {
    pub files: usize,
    pub bytes: u64,
    /// Bytes not yet journaled.
    pub unjournaled_bytes: u64,
    /// Bytes not yet acknowledged by the collector.
    pub undelivered_bytes: u64,
}

impl Pipeline {
    /// Opens the spool directory and the saved cursors.
    pub fn open(dir: &Path) -> std::io::Result<Arc<Self>> {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let cursors = match std::fs::read(dir.join(CURSORS_FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                // Starting over repeats events (deduped downstream); it never loses one.
                tracing::warn!(
                    "{}: unreadable cursors ({e}); reading the spool from its start",
                    dir.display()
                );
                Cursors::default()
            }),
            Err(_) => Cursors::default(),
        };
        Ok(Arc::new(Self {
            dir: dir.to_path_buf(),
            cursors: Mutex::new(cursors),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            stats: Stats::default(),
        }))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake.notify_all();
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Sleeps up to `timeout`, or until woken by new work or the stop.
    fn nap(&self, timeout: Duration) {
        if let Ok(guard) = self.cursors.lock() {
            if !self.stopped() {
                let _ = self.wake.wait_timeout(guard, timeout);
            }
        }
    }

    fn save(&self, cursors: &Cursors) {
        let path = self.dir.join(CURSORS_FILE);
        let tmp = self.dir.join(format!("{CURSORS_FILE}.tmp"));
        let result = serde_json::to_vec(cursors)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = result {
            tracing::error!("cannot save the spool cursors to {}: {e}", path.display());
        }
    }

    pub fn depth(&self, collector: bool) -> SpoolDepth {
        let files = spool::files(&self.dir).unwrap_or_default();
        let cursors = self.cursors.lock().map(|c| c.clone()).unwrap_or_default();
        let mut depth = SpoolDepth {
            files: files.len(),
            bytes: 0,
            unjournaled_bytes: 0,
            undelivered_bytes: 0,
        };
        for path in files {
            let len = path.metadata().map(|m| m.len()).unwrap_or(0);
            let name = file_name(&path);
            depth.bytes += len;
            let journaled = cursors.journaled.get(&name).copied().unwrap_or(0);
            depth.unjournaled_bytes += len.saturating_sub(journaled);
            if collector {
                let delivered = cursors.delivered.get(&name).copied().unwrap_or(0);
                depth.undelivered_bytes += len.saturating_sub(delivered);
            }
        }
        depth
    }

    /// One pass of the journal thread: moves what is new into `journal`; returns how many
    /// lines it moved.
    fn journal_step(&self, journal: &mut Journal) -> usize {
        let files = match spool::files(&self.dir) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!("cannot list the spool {}: {e}", self.dir.display());
                return 0;
            }
        };
        let mut moved = 0;
        for path in files {
            let name = file_name(&path);
            let from = self.cursor(|c| c.journaled.get(&name).copied());
            let (lines, end) = match spool::read_lines(&path, from, JOURNAL_STEP, 16 << 20) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("cannot read {}: {e}", path.display());
                    continue;
                }
            };
            if end == from {
                continue;
            }
            let valid = self.validate(lines, true);
            if let Err(e) = journal.append(&valid) {
                // Left where it was: the same lines are tried again on the next pass.
                tracing::error!("cannot write the journal: {e}");
                return moved;
            }
            moved += valid.len();
            self.stats
                .journaled
                .fetch_add(valid.len() as u64, Ordering::Relaxed);
            self.update(|c| {
                c.journaled.insert(name.clone(), end);
            });
        }
        if moved > 0 {
            self.wake.notify_all();
        }
        moved
    }

    /// Keeps the lines that are events; counts them by kind (once, on the journal's pass).
    /// Reads only the fields it needs: every line was written by `Event`'s serializer, and
    /// this is the hot path from the kernel to the collector.
    fn validate(&self, lines: Vec<Vec<u8>>, count: bool) -> Vec<Vec<u8>> {
        let mut valid = Vec::with_capacity(lines.len());
        for line in lines {
            match serde_json::from_slice::<Head<'_>>(&line) {
                Ok(head) if head.v == crate::event::SCHEMA_VERSION => {
                    if count {
                        self.count(&head);
                    }
                    valid.push(line);
                }
                Ok(head) => {
                    if count {
                        self.stats.invalid.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!("skipping an event of schema version {}", head.v);
                    }
                }
                Err(e) => {
                    if count {
                        self.stats.invalid.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!("skipping a spool line that is not an event: {e}");
                    }
                }
            }
        }
        valid
    }

    fn count(&self, head: &Head<'_>) {
        let n = head.count.unwrap_or(1);
        if head.kind == "events_lost" {
            let counter = match head.reason.as_deref() {
                Some("spool_full") => &self.stats.lost_spool,
                _ => &self.stats.lost_ring,
            };
            counter.fetch_add(n, Ordering::Relaxed);
        }
        if let Ok(mut by_kind) = self.stats.by_kind.lock() {
            match by_kind.get_mut(head.kind.as_ref()) {
                Some(total) => *total += n,
                None => {
                    by_kind.insert(head.kind.to_string(), n);
                }
            }
        }
    }

    /// Deletes spool files whose writer is gone and whose every line is journaled (and
    /// delivered, with a collector). A writer that died mid-line leaves half a line at the
    /// end: skipped, with a warning.
    fn clean(&self, collector: bool) {
        let Ok(files) = spool::files(&self.dir) else {
            return;
        };
        let names: BTreeSet<String> = files.iter().map(|p| file_name(p)).collect();
        for path in files {
            if !spool::writer_gone(&path) {
                continue;
            }
            let Ok(len) = path.metadata().map(|m| m.len()) else {
                continue;
            };
            let name = file_name(&path);
            let (journaled, delivered) = self.cursor(|c| {
                Some((
                    c.journaled.get(&name).copied().unwrap_or(0),
                    c.delivered.get(&name).copied().unwrap_or(0),
                ))
            });
            let tail_is_partial = |at: u64| {
                at < len
                    && spool::read_lines(&path, at, 1, usize::MAX).is_ok_and(|(l, _)| l.is_empty())
            };
            let journal_stuck = tail_is_partial(journaled);
            let delivery_stuck = collector && tail_is_partial(delivered);
            if journal_stuck || delivery_stuck {
                if journal_stuck {
                    tracing::warn!(
                        "{}: its writer died mid-line; skipping the partial line",
                        path.display()
                    );
                    self.stats.invalid.fetch_add(1, Ordering::Relaxed);
                }
                self.update(|c| {
                    if journal_stuck {
                        c.journaled.insert(name.clone(), len);
                    }
                    if delivery_stuck {
                        c.delivered.insert(name.clone(), len);
                    }
                });
                continue;
            }
            if journaled >= len && (!collector || delivered >= len) {
                match std::fs::remove_file(&path) {
                    Ok(()) => self.update(|c| {
                        c.journaled.remove(&name);
                        c.delivered.remove(&name);
                    }),
                    Err(e) => tracing::warn!("cannot remove {}: {e}", path.display()),
                }
            }
        }
        // Cursors of files that are gone (removed by hand) go too.
        let stale = self.cursor(|c| {
            Some(
                c.journaled
                    .keys()
                    .chain(c.delivered.keys())
                    .filter(|k| !names.contains(*k))
                    .cloned()
                    .collect::<Vec<_>>(),
            )
        });
        if !stale.is_empty() {
            self.update(|c| {
                for k in &stale {
                    c.journaled.remove(k);
                    c.delivered.remove(k);
                }
            });
        }
    }

    /// The next batch for the collector: lines, and where each file's cursor goes once the
    /// collector has them.
    fn next_batch(&self, max_events: usize) -> (Vec<Vec<u8>>, Vec<(String, u64)>) {
        let mut lines = Vec::new();
        let mut ends = Vec::new();
        let mut bytes = 0;
        for path in spool::files(&self.dir).unwrap_or_default() {
            if lines.len() >= max_events || bytes >= BATCH_BYTES {
                break;
            }
            let name = file_name(&path);
            let from = self.cursor(|c| c.delivered.get(&name).copied());
            let Ok((read, end)) =
                spool::read_lines(&path, from, max_events - lines.len(), BATCH_BYTES - bytes)
            else {
                continue;
            };
            if end == from {
                continue;
            }
            let valid = self.validate(read, false);
            bytes += valid.iter().map(|l| l.len() + 1).sum::<usize>();
            lines.extend(valid);
            ends.push((name, end));
        }
        (lines, ends)
    }

    fn cursor<T: Default>(&self, get: impl FnOnce(&Cursors) -> Option<T>) -> T {
        self.cursors
            .lock()
            .ok()
            .and_then(|c| get(&c))
            .unwrap_or_default()
    }

    fn update(&self, change: impl FnOnce(&mut Cursors)) {
        if let Ok(mut cursors) = self.cursors.lock() {
            change(&mut cursors);
            self.save(&cursors);
        }
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The journal thread, until the stop; then it drains what is left.
pub fn journal_thread(pipeline: &Pipeline, settings: &dyn Settings) {
    let mut open: Option<(PathBuf, u64, u32, Journal)> = None;
    loop {
        let wanted = settings.journal();
        let reopen = open
            .as_ref()
            .is_none_or(|(p, m, k, _)| (p, *m, *k) != (&wanted.0, wanted.1, wanted.2));
        if reopen {
            match Journal::open(&wanted.0, wanted.1, wanted.2) {
                Ok(j) => open = Some((wanted.0, wanted.1, wanted.2, j)),
                Err(e) => {
                    tracing::error!("cannot open the journal {}: {e}", wanted.0.display());
                    if pipeline.stopped() {
                        return;
                    }
                    pipeline.nap(Duration::from_secs(1));
                    continue;
                }
            }
        }
        let Some((_, _, _, journal)) = open.as_mut() else {
            continue;
        };
        let moved = pipeline.journal_step(journal);
        pipeline.clean(settings.delivers());
        if moved == 0 {
            if pipeline.stopped() {
                return;
            }
            pipeline.nap(Duration::from_millis(100));
        }
    }
}

/// The delivery thread, until the stop.
pub fn delivery_thread(pipeline: &Pipeline, settings: &dyn Settings) {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
    // Events in the next batch: halved while the collector refuses what a batch holds,
    // doubled back after each success.
    let mut size = usize::MAX;
    // Events refused alone since the last batch the collector took: past a few, the fault
    // is not in the events (a collector set below one event, a middlebox that mangles
    // bodies), and they are kept and retried, never set aside by the thousand.
    let mut lone_refusals = 0;
    let mut client: Option<(String, Option<String>, String, Collector)> = None;
    while !pipeline.stopped() {
        let Some(to) = settings.collector() else {
            client = None;
            pipeline.nap(Duration::from_millis(500));
            continue;
        };
        let token = match to.token {
            Ok(t) => t,
            Err(e) => {
                pipeline.fail(&e);
                pipeline.nap(backoff.next_delay());
                continue;
            }
        };
        let same = client
            .as_ref()
            .is_some_and(|(u, t, h, _)| *u == to.url && *t == token && *h == to.host_id);
        if !same {
            let collector = Collector::new(&to.url, token.clone(), &to.host_id);
            client = Some((to.url.clone(), token, to.host_id.clone(), collector));
        }
        let Some((_, _, _, collector)) = client.as_ref() else {
            continue;
        };
        let (lines, ends) = pipeline.next_batch(size.min(to.batch_max_events));
        if ends.is_empty() {
            pipeline.nap(Duration::from_millis(200));
            continue;
        }
        if lines.is_empty() {
            // Nothing but lines that are not events: move past them.
            pipeline.ack(&ends, 0);
            continue;
        }
        match collector.post(&lines) {
            Ok(reply) => {
                for rejected in &reply.rejected {
                    tracing::warn!(
                        "the collector set aside event {} of a batch ({:?}): {}: {}",
                        rejected.index,
                        rejected.id,
                        rejected.reason.as_str(),
                        rejected.detail
                    );
                }
                pipeline
                    .stats
                    .rejected
                    .fetch_add(reply.rejected.len() as u64, Ordering::Relaxed);
                pipeline.ack(&ends, lines.len().saturating_sub(reply.rejected.len()));
                size = size.saturating_mul(2);
                lone_refusals = 0;
                backoff.reset();
            }
            Err(e) if e.about_size() && lines.len() > 1 => {
                tracing::info!(
                    "the collector refused a batch of {} events ({e}); sending halves",
                    lines.len()
                );
                size = lines.len() / 2;
            }
            Err(e) if e.about_content() && lone_refusals < MAX_LONE_REFUSALS => {
                // This one event is refused alone: kept here, and the ones behind it go on.
                lone_refusals += 1;
                pipeline.set_aside(&lines[0], &e.to_string());
                pipeline.ack(&ends, 0);
            }
            Err(e) => {
                pipeline.fail(&e.to_string());
                pipeline.nap(backoff.next_delay());
            }
        }
    }
}

impl Pipeline {
    fn ack(&self, ends: &[(String, u64)], events: usize) {
        self.update(|c| {
            for (name, end) in ends {
                c.delivered.insert(name.clone(), *end);
            }
        });
        self.stats
            .delivered
            .fetch_add(events as u64, Ordering::Relaxed);
        if let Ok(mut t) = self.stats.last_delivery.lock() {
            *t = Some(SystemTime::now());
        }
        if let Ok(mut e) = self.stats.last_error.lock() {
            *e = None;
        }
        self.stats.contact(true);
    }

    /// Keeps an event the collector refused alone in [`REFUSED_FILE`] (while it is under
    /// [`REFUSED_MAX_BYTES`]; the journal has every event anyway), and counts it.
    fn set_aside(&self, line: &[u8], error: &str) {
        use std::io::Write as _;
        self.stats.refused.fetch_add(1, Ordering::Relaxed);
        let event = String::from_utf8_lossy(line);
        tracing::error!("the collector refuses an event even alone; set aside: {error}: {event}");
        let path = self.dir.join(REFUSED_FILE);
        if path.metadata().is_ok_and(|m| m.len() >= REFUSED_MAX_BYTES) {
            return;
        }
        let record = serde_json::json!({
            "refused": humantime::format_rfc3339(SystemTime::now()).to_string(),
            "error": error,
            "event": serde_json::from_slice::<serde_json::Value>(line)
                .unwrap_or_else(|_| serde_json::Value::String(event.into_owned())),
        });
        let written = std::fs::create_dir_all(self.dir.join("refused"))
            .and_then(|()| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
            })
            .and_then(|mut f| writeln!(f, "{record}"));
        if let Err(e) = written {
            tracing::error!("cannot write {}: {e}", path.display());
        }
    }

    fn fail(&self, error: &str) {
        tracing::warn!("delivery to the collector failed: {error}");
        if let Ok(mut e) = self.stats.last_error.lock() {
            *e = Some(error.to_string());
        }
        self.stats.contact(false);
    }
}

/// Exponential backoff with full jitter: a fleet of agents coming back after a collector
/// outage does not knock it over again all at once.
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            attempt: 0,
        }
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1 << self.attempt.min(16))
            .min(self.max);
        self.attempt += 1;
        // Half fixed, half random: never zero, never a synchronized herd.
        let half = ceiling / 2;
        half + half.mul_f64(jitter())
    }
}

/// A number in [0, 1) that differs between calls and processes.
fn jitter() -> f64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_bound_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        for attempt in 1..20 {
            let d = b.next_delay();
            assert!(d <= Duration::from_secs(2), "{d:?}");
            if attempt >= 5 {
                // 100 ms * 2^5 is past the bound: from here on, between half of it and it.
                assert!(d >= Duration::from_secs(1), "{d:?}");
            }
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    use crate::event::{Event, What};

    fn event_line(n: u32) -> Vec<u8> {
        serde_json::to_vec(&Event::new(
            "s-1-0",
            "s",
            SystemTime::now(),
            None,
            What::Fork { child_pid: n },
        ))
        .unwrap()
    }

    #[test]
    fn lines_move_to_the_journal_once_and_files_go_when_done() {
        let dir = tempfile::tempdir().unwrap();
        let spool_dir = dir.path().join("spool");
        let pipeline = Pipeline::open(&spool_dir).unwrap();
        let mut writer = spool::SpoolWriter::create(spool::SpoolConfig {
            dir: spool_dir.clone(),
            max_bytes: 1 << 20,
        })
        .unwrap();
        for n in 0..3 {
            writer.write_line(&event_line(n)).unwrap();
        }
        writer.append(b"not an event").unwrap();
        let journal_path = dir.path().join("events.jsonl");
        let mut journal = Journal::open(&journal_path, 1 << 20, 1).unwrap();
        assert_eq!(pipeline.journal_step(&mut journal), 3);
        assert_eq!(pipeline.journal_step(&mut journal), 0, "nothing twice");
        assert_eq!(pipeline.stats.invalid.load(Ordering::Relaxed), 1);
        // A collector is configured and has nothing yet: the file stays.
        drop(writer);
        pipeline.clean(true);
        assert_eq!(spool::files(&spool_dir).unwrap().len(), 1);
        let (lines, ends) = pipeline.next_batch(2);
        assert_eq!(lines.len(), 2);
        pipeline.ack(&ends, 2);
        let (lines, ends) = pipeline.next_batch(100);
        assert_eq!(
            lines.len(),
            1,
            "the rest, without the line that is not an event"
        );
        pipeline.ack(&ends, 1);
        pipeline.clean(true);
        assert!(spool::files(&spool_dir).unwrap().is_empty());
        let journaled = std::fs::read_to_string(&journal_path).unwrap();
        assert_eq!(journaled.lines().count(), 3);
        // The cursors survive a restart.
        let again = Pipeline::open(&spool_dir).unwrap();
        assert!(again.cursor(|c| Some(c.journaled.is_empty())));
    }
}
