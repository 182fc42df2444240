//! Outputs: stored events sent on to where responders already look (`[[output]]` in
//! `collector.toml`).
//!
//! Each output is a task of its own ([`run`]) that reads the events stored after its
//! cursor (a row of `output_cursors`, by the output's name), keeps those its filter lets
//! through, sends them in batches, and moves its cursor past them only once the receiver
//! acknowledged (the store has the new position within a second, and as the collector
//! stops; after a crash the last second's events go again). While the receiver fails it tries again, waiting twice as long each time
//! (with jitter, up to `max_backoff`); nothing is dropped, and an output that was down
//! catches up from its cursor. A batch sent again (its acknowledgement lost, or after a
//! crash) carries the same event ids, and receivers that can (Elasticsearch's `_id`, a webhook's own
//! check) keep it once.
//!
//! * [`config`]: the `[[output]]` tables;
//! * [`record`]: a stored event as the outputs see it;
//! * [`http`]: the HTTP receivers ([`webhook`] and Slack, [`otlp`], [`splunk`],
//!   [`elastic`]); [`syslog`]: RFC 5424 over TCP or TLS.

pub mod config;
pub mod elastic;
pub mod http;
pub mod otlp;
pub mod record;
pub mod request;
pub mod splunk;
pub mod syslog;
pub mod webhook;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use config::{Output, Type};
use record::Record;

use crate::clock::now_ns;
use crate::hub::Hub;
use crate::store::{OutputQuery, Store};

/// The most bytes of event bodies read for one batch.
const BATCH_BYTES: usize = 4 << 20;
/// The first wait after a failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// How often an output that is caught up looks at the store when no batch woke it (events
/// stored by another collector on the same database).
const IDLE_CHECK: Duration = Duration::from_secs(1);
/// How long an acknowledged position may wait before it is written to the store: a write a
/// batch would take the store's one writer (and a sync to disk) from ingest as often as
/// batches come. The collector writes it when it stops; after a crash, what was sent in
/// the last second goes again (receivers that keep events by id keep them once).
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// Why a batch was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("cannot reach {destination}: {message}")]
    Unreachable {
        destination: String,
        message: String,
    },
    #[error("{destination} answered {status}: {body}")]
    Refused {
        destination: String,
        status: u16,
        body: String,
    },
    #[error("{destination} answered what is not its protocol: {message}")]
    Garbled {
        destination: String,
        message: String,
    },
    #[error("TLS to {destination}: {message}")]
    Tls {
        destination: String,
        message: String,
    },
}

/// What the receiver did with a batch it acknowledged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Events it refused for good (a document Elasticsearch cannot map, a record an OTLP
    /// receiver rejected): sending them again would not change its mind. Counted, logged,
    /// and passed.
    pub rejected: u64,
}

/// An output's state, for `/metrics` and `GET /api/v1/outputs`.
#[derive(Debug)]
pub struct State {
    pub output: Output,
    /// Events the receiver took.
    pub sent: AtomicU64,
    /// Events the receiver refused for good.
    pub rejected: AtomicU64,
    /// Tries that failed.
    pub failures: AtomicU64,
    /// Every event at or below this seq was delivered or filtered out (-1: not read yet).
    pub cursor: AtomicI64,
    /// When the receiver last acknowledged a batch (0: never since the collector started).
    pub last_success_ns: AtomicI64,
    /// The last failure and when, cleared by a success.
    pub last_error: Mutex<Option<(i64, String)>>,
}

impl State {
    fn new(output: Output) -> Self {
        Self {
            output,
            sent: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            cursor: AtomicI64::new(-1),
            last_success_ns: AtomicI64::new(0),
            last_error: Mutex::new(None),
        }
    }

    pub fn last_error(&self) -> Option<(i64, String)> {
        self.last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn failed(&self, error: &str) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        *self
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((now_ns(), error.into()));
    }

    fn succeeded(&self, sent: usize, delivered: Delivered) {
        self.sent.fetch_add(
            sent as u64 - delivered.rejected.min(sent as u64),
            Ordering::Relaxed,
        );
        self.rejected
            .fetch_add(delivered.rejected, Ordering::Relaxed);
        self.last_success_ns.store(now_ns(), Ordering::Relaxed);
        *self
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
}

/// The states of the configured outputs, in the order of the configuration.
pub fn states(outputs: &[Output]) -> Vec<Arc<State>> {
    outputs
        .iter()
        .map(|o| Arc::new(State::new(o.clone())))
        .collect()
}

/// Starts one task per output.
pub fn spawn_all(store: &Store, hub: &Arc<Hub>, outputs: &[Arc<State>]) {
    for state in outputs {
        tokio::spawn(run(store.clone(), Arc::clone(hub), Arc::clone(state)));
    }
}

/// Where a receiver is sent to, made once per output.
pub enum Sink {
    Http(http::HttpSink),
    Syslog(syslog::SyslogSink),
}

impl Sink {
    fn new(output: &Output) -> Result<Self, String> {
        match output.kind {
            Type::Syslog => Ok(Self::Syslog(syslog::SyslogSink::new(output)?)),
            _ => Ok(Self::Http(http::HttpSink::new(output)?)),
        }
    }

    async fn send(&mut self, batch: &[Record]) -> Result<Delivered, SendError> {
        match self {
            Self::Http(h) => h.send(batch).await,
            Self::Syslog(s) => s.send(batch).await,
        }
    }
}

/// One output, for as long as the collector runs: read after the cursor, filter, send,
/// advance.
pub async fn run(store: Store, hub: Arc<Hub>, state: Arc<State>) {
    let output = &state.output;
    let mut sink = match Sink::new(output) {
        Ok(s) => s,
        Err(e) => {
            // Checked when the configuration was read; here only if the system changed
            // under it (a CA file deleted since).
            tracing::error!("output {}: {e}; it sends nothing", output.name);
            state.failed(&e);
            return;
        }
    };
    let query = OutputQuery {
        kinds: output.filter.kinds.clone(),
        severity_at_least: output.filter.severity.map_or(0, |s| s as i64),
        hosts: output.filter.hosts.clone(),
        profiles: output.filter.profiles.clone(),
    };
    let mut wake = hub.subscribe();
    let mut backoff = Backoff::new(output.max_backoff);
    let mut cursor = loop {
        match store.output_cursor(&output.name).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!("output {}: cannot read its cursor: {e}", output.name);
                tokio::time::sleep(backoff.next()).await;
            }
        }
    };
    state.cursor.store(cursor, Ordering::Relaxed);
    // The position in the store, and when it was written.
    let mut saved = (cursor, tokio::time::Instant::now());
    tracing::info!(
        "output {} ({}) sends to {} from after event {cursor}",
        output.name,
        output.kind.as_str(),
        output.destination()
    );
    loop {
        let (head, page) = match next_page(&store, &query, output, cursor).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("output {}: cannot read events: {e}", output.name);
                tokio::time::sleep(backoff.next()).await;
                continue;
            }
        };
        if saved.0 < cursor && saved.1.elapsed() >= SAVE_EVERY {
            save(&store, &output.name, cursor).await;
            saved = (cursor, tokio::time::Instant::now());
        }
        if head <= cursor {
            // Caught up: wait for a batch to be stored (or look again in a while, or until
            // the position is due to be saved).
            let wait = if saved.0 < cursor {
                SAVE_EVERY.saturating_sub(saved.1.elapsed())
            } else {
                IDLE_CHECK
            };
            tokio::select! {
                _ = wake.recv() => {}
                () = tokio::time::sleep(wait) => {}
            }
            continue;
        }
        let full = page.len() >= output.batch_max;
        let upto = if full {
            page.last().map_or(head, |e| e.seq)
        } else {
            head
        };
        let batch: Vec<Record> = page
            .into_iter()
            .filter(|e| output.filter.sandbox_matches(&e.sandbox))
            .map(Record::new)
            .collect();
        if !batch.is_empty() {
            backoff.reset();
            loop {
                match sink.send(&batch).await {
                    Ok(delivered) => {
                        if delivered.rejected > 0 {
                            tracing::warn!(
                                "output {}: the receiver refused {} of {} events for good",
                                output.name,
                                delivered.rejected,
                                batch.len()
                            );
                        }
                        state.succeeded(batch.len(), delivered);
                        break;
                    }
                    Err(e) => {
                        let wait = backoff.next();
                        let message = e.to_string();
                        if state.failures.load(Ordering::Relaxed) == 0 || wait >= output.max_backoff
                        {
                            tracing::warn!(
                                "output {}: {message}; trying again in {:.1}s",
                                output.name,
                                wait.as_secs_f64()
                            );
                        } else {
                            tracing::debug!("output {}: {message}", output.name);
                        }
                        state.failed(&message);
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        }
        // The receiver has the batch: the cursor goes past it (in the store within
        // SAVE_EVERY).
        cursor = upto;
        state.cursor.store(cursor, Ordering::Relaxed);
    }
}

/// Writes an output's position to the store, trying again while the store fails.
async fn save(store: &Store, name: &str, cursor: i64) {
    let mut backoff = Backoff::new(Duration::from_secs(5));
    for _ in 0..5 {
        match store.advance_output(name, cursor).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!("output {name}: cannot save its position: {e}");
                tokio::time::sleep(backoff.next()).await;
            }
        }
    }
}

/// Writes every output's acknowledged position to the store: when the collector stops, so
/// that it goes on from there without sending anything twice.
pub async fn save_all(store: &Store, outputs: &[Arc<State>]) {
    for state in outputs {
        let cursor = state.cursor.load(Ordering::Relaxed);
        if cursor >= 0 {
            save(store, &state.output.name, cursor).await;
        }
    }
}

/// The newest seq, and the page of events after `cursor` (up to it) that the output's
/// query lets through.
async fn next_page(
    store: &Store,
    query: &OutputQuery,
    output: &Output,
    cursor: i64,
) -> Result<(i64, Vec<crate::store::StoredEvent>), crate::store::StoreError> {
    let head = store.newest_seq().await?;
    if head <= cursor {
        return Ok((head, Vec::new()));
    }
    let page = store
        .output_page(query, cursor, head, output.batch_max, BATCH_BYTES)
        .await?;
    // A page cut short by its bytes ends where it ends.
    let short_by_bytes = page.len() < output.batch_max
        && page.iter().map(|e| e.body.len()).sum::<usize>() >= BATCH_BYTES;
    if short_by_bytes {
        let last = page.last().map_or(head, |e| e.seq);
        return Ok((last, page));
    }
    Ok((head, page))
}

/// Waits that double from [`FIRST_BACKOFF`] up to a ceiling, each drawn at random from its
/// upper half, so that outputs (and collectors) that failed together do not retry together.
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(max: Duration) -> Self {
        Self {
            next: FIRST_BACKOFF.min(max),
            max,
        }
    }

    fn reset(&mut self) {
        self.next = FIRST_BACKOFF.min(self.max);
    }

    fn next(&mut self) -> Duration {
        let full = self.next;
        self.next = (self.next * 2).min(self.max);
        let mut byte = [0u8; 2];
        let r = getrandom::fill(&mut byte).map_or(0.5, |()| {
            f64::from(u16::from_le_bytes(byte)) / f64::from(u16::MAX)
        });
        full.mul_f64(0.5 + r / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_ceiling_with_jitter() {
        let mut b = Backoff::new(Duration::from_secs(2));
        let waits: Vec<Duration> = (0..6).map(|_| b.next()).collect();
        assert!(waits[0] >= Duration::from_millis(125) && waits[0] <= FIRST_BACKOFF);
        assert!(waits[1] >= Duration::from_millis(250) && waits[1] <= Duration::from_millis(500));
        for w in &waits[4..] {
            assert!(
                *w >= Duration::from_secs(1) && *w <= Duration::from_secs(2),
                "{w:?}"
            );
        }
        b.reset();
        assert!(b.next() <= FIRST_BACKOFF);
    }
}
