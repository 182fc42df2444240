//! Commands from the collector: cordond polls it (agents connect out; the collector never
//! connects in), acts on each command it is handed as it would for a responder on the
//! socket, records a `responder_action` event with `via: "collector"` and the issuer's name,
//! and reports the result on its next poll, which it sends at once.

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

/// The poll loop, until the daemon stops.
pub fn poll_thread(daemon: &Daemon) {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
    let mut client: Option<(Endpoint, Collector)> = None;
    let mut results: Vec<CommandResult> = Vec::new();
    while !daemon.stopping() {
        let cfg = daemon.config();
        let Some(settings) = &cfg.collector else {
            client = None;
            std::thread::sleep(Duration::from_millis(500));
            continue;
        };
        let token = match cfg.collector_token() {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("cannot poll the collector for commands: {e}");
                std::thread::sleep(backoff.next());
                continue;
            }
        };
        let key = (settings.url.clone(), token, cfg.host_id.clone());
        if client.as_ref().is_none_or(|(k, _)| *k != key) {
            let collector = Collector::new(&key.0, key.1.clone(), &key.2);
            client = Some((key, collector));
        }
        let Some((_, collector)) = client.as_ref() else {
            continue;
        };
        super::evidence::upload_pending(daemon, collector);
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
                    results.push(CommandResult {
                        id: command.id,
                        result: if outcome.is_ok() {
                            ActionResult::Done
                        } else {
                            ActionResult::Failed
                        },
                        error: outcome.as_ref().err().map(|e| e.to_string()),
                        took_ms: outcome.map_or(0, |d| d.as_millis() as u64),
                    });
                }
            }
            Err(e) => {
                // The results go again with the next poll.
                results = poll.results;
                daemon.pipeline.stats.contact(false);
                tracing::warn!("cannot poll the collector for commands: {e}");
                std::thread::sleep(backoff.next());
            }
        }
    }
}
