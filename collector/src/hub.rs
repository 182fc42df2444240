//! What the collector's parts tell each other while it runs: each batch of events as it is
//! stored (for the live streams, the outputs waiting for more, and nothing else), and which
//! hosts wait in a poll for a command. The API, the outputs and the fleet rules all hold the
//! one [`Hub`]; it knows none of them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{broadcast, Notify};

use crate::store::StoredEvent;

pub struct Hub {
    /// Each batch's new events as they are stored: one message a batch, so the cost of a
    /// batch does not grow with the number of streams.
    live: broadcast::Sender<Arc<Vec<LiveEvent>>>,
    /// Hosts waiting in a poll, woken when a command for them is queued.
    waiting: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            // Batches kept for streams that are a little behind; a stream further behind is
            // ended (it reconnects and is replayed from the store). Bounded memory: at most
            // this many batches are held.
            live: broadcast::channel(64).0,
            waiting: Mutex::new(HashMap::new()),
        }
    }
}

impl Hub {
    /// Tells whoever follows the store that these events were just stored.
    pub fn stored(&self, events: &[StoredEvent]) {
        if events.is_empty() {
            return;
        }
        // No receiver is not an error: nobody is watching.
        let _ = self
            .live
            .send(Arc::new(events.iter().map(LiveEvent::of).collect()));
    }

    /// The batches stored from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Vec<LiveEvent>>> {
        self.live.subscribe()
    }

    /// The bell a host's poll waits on.
    pub fn bell(&self, host: &str) -> Arc<Notify> {
        let mut waiting = self
            .waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(waiting.entry(host.to_string()).or_default())
    }
}

/// A stored event as the live streams send it: rendered once, whatever the number of
/// streams, and shared by all of them.
pub struct LiveEvent {
    pub seq: i64,
    pub host: String,
    pub sandbox: String,
    pub kind: String,
    pub severity: i64,
    /// The whole Server-Sent Event: `id: SEQ`, `data: JSON`, a blank line.
    pub frame: Bytes,
}

impl LiveEvent {
    pub fn of(event: &StoredEvent) -> Self {
        Self {
            seq: event.seq,
            host: event.host.clone(),
            sandbox: event.sandbox.clone(),
            kind: event.kind.clone(),
            severity: event.severity,
            frame: Bytes::from(format!("id: {}\ndata: {}\n\n", event.seq, render(event))),
        }
    }
}

/// An event as the API shows it: its own JSON with `seq` and `host` in front.
pub fn render(event: &StoredEvent) -> String {
    let host = serde_json::to_string(&event.host).unwrap_or_else(|_| "\"\"".into());
    match event.body.strip_prefix('{') {
        Some(rest) if rest.starts_with('}') => format!("{{\"seq\":{},\"host\":{host}}}", event.seq),
        Some(rest) => format!("{{\"seq\":{},\"host\":{host},{rest}", event.seq),
        None => format!("{{\"seq\":{},\"host\":{host}}}", event.seq),
    }
}
