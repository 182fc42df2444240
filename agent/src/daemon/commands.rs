//! Commands from the collector: cordond polls it (agents connect out; the collector never
//! connects in), acts on each command it is handed as it would for a responder on the
//! socket, records a `responder_action` event with `via: "collector"` and the issuer's name,
//! and reports the result on its next poll, which it sends at once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cordon_proto::collector::{CommandResult, Poll, PROTOCOL_VERSION};

use super::Daemon;
use crate::event::{ActionResult, Actor};
use crate::export::deliver::Collector;
use crate::export::pipeline::Backoff;

/// How long one poll waits at the collector for a command.
const WAIT: Duration = Duration::from_secs(10);

/// Where and as whom the collector is reached: URL, token, host id.
type Endpoint = (String, Option<String>, String);

/// The collector as configured now, and a client for it (kept while the configuration
/// says the same).
fn connect<'a>(
    daemon: &Daemon,
    client: &'a mut Option<(Endpoint, Collector)>,
) -> Result<Option<&'a Collector>, String> {
    let cfg = daemon.config();
    let Some(settings) = &cfg.collector else {
        *client = None;
        return Ok(None);
    };
    let token = cfg.collector_token().map_err(|e| e.to_string())?;
    let key = (settings.url.clone(), token, cfg.host_id.clone());
    if client.as_ref().is_none_or(|(k, _)| *k != key) {
        let collector = Collector::new(&key.0, key.1.clone(), &key.2);
        *client = Some((key, collector));
    }
    Ok(client.as_ref().map(|(_, c)| c))
}

/// Sends the evidence outbox to the collector, every few seconds, until the daemon stops:
/// on a thread of its own, so that a large archive holds up neither polling nor delivery.
pub fn upload_thread(daemon: &Daemon) {
    super::evidence::remove_parts(daemon);
    let mut client = None;
    let mut attempts = std::collections::HashMap::new();
    while !daemon.stopping() {
        match connect(daemon, &mut client) {
            Ok(Some(collector)) => {
                super::evidence::upload_pending(daemon, collector, &mut attempts)
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("cannot send evidence to the collector: {e}"),
        }
        for _ in 0..20 {
            if daemon.stopping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The poll loop, until the daemon stops.
pub fn poll_thread(daemon: &Arc<Daemon>) {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
    let mut client: Option<(Endpoint, Collector)> = None;
    let mut results: Vec<CommandResult> = Vec::new();
    // Results of commands carried out on threads of their own (evidence), for the next poll.
    let finished: Arc<Mutex<Vec<CommandResult>>> = Arc::default();
    while !daemon.stopping() {
        if let Ok(mut done) = finished.lock() {
            results.append(&mut done);
        }
        let collector = match connect(daemon, &mut client) {
            Ok(Some(c)) => c,
            Ok(None) => {
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
            Err(e) => {
                tracing::warn!("cannot poll the collector for commands: {e}");
                std::thread::sleep(backoff.next_delay());
                continue;
            }
        };
        let cfg = daemon.config();
        let poll = Poll {
            v: PROTOCOL_VERSION,
            host: cfg.host_id.clone(),
            sandboxes: crate::contain::list(daemon.kernel().ok().as_deref()).unwrap_or_default(),
            results: std::mem::take(&mut results),
        };
        match collector.poll(&poll, WAIT) {
            Ok(reply) => {
                backoff.reset();
                daemon.pipeline.stats.contact(true);
                for command in reply.commands {
                    if command.action == crate::event::Action::Evidence {
                        // Long, perhaps: collected meanwhile, its result sent when ready.
                        let (d, done) = (Arc::clone(daemon), Arc::clone(&finished));
                        std::thread::spawn(move || {
                            let result = carry_out(&d, command);
                            if let Ok(mut done) = done.lock() {
                                done.push(result);
                            }
                        });
                        continue;
                    }
                    results.push(carry_out(daemon, command));
                }
            }
            Err(e) => {
                // The results go again with the next poll.
                results = poll.results;
                daemon.pipeline.stats.contact(false);
                tracing::warn!("cannot poll the collector for commands: {e}");
                std::thread::sleep(backoff.next_delay());
            }
        }
    }
}

/// Does what a command says, as a responder on the socket would, and says how it went.
fn carry_out(daemon: &Daemon, command: cordon_proto::collector::Command) -> CommandResult {
    let actor = Actor {
        via: "collector".into(),
        uid: None,
        pid: None,
        name: Some(command.issued_by.clone()),
    };
    let outcome = daemon.act(&command.sandbox, command.action, actor);
    tracing::info!(
        "collector command {} ({:?} {} by {}): {}",
        command.id,
        command.action,
        command.sandbox,
        command.issued_by,
        outcome
            .as_ref()
            .map_or_else(|e| e.to_string(), |_| "done".into())
    );
    CommandResult {
        id: command.id,
        result: if outcome.is_ok() {
            ActionResult::Done
        } else {
            ActionResult::Failed
        },
        error: outcome.as_ref().err().map(|e| e.to_string()),
        took_ms: outcome.map_or(0, |d| d.as_millis() as u64),
    }
}
