//! Fleet-wide rules (`[[fleet_rule]]` in `collector.toml`): a pattern no one host sees, such
//! as the same name refused on five hosts within a minute. The collector follows what it
//! stores and, when a rule's pattern appears, acts on every sandbox that took part: it
//! queues commands through the same queue a responder's go through (freeze, isolate, kill;
//! each host records the action with the rule as its issuer), or, for `alert`, stores a
//! `responder_action` event for each, which the console and the outputs show.
//!
//! ```toml
//! [[fleet_rule]]
//! name = "one name refused across the fleet"
//! when = { kind = "dns_denied" }       # as a profile's [[response]] `when` (no placeholders)
//! same = "domain"                      # what the hosts have in common: domain, path, syscall,
//!                                      # address or kind
//! hosts = 5                            # on this many hosts...
//! within = "1m"                        # ...within this long
//! action = "isolate"                   # freeze, isolate, kill or alert
//! ```

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use cordon_policy::response::{ResponseAction, ResponseEntry, ResponseRule, When};
use cordon_proto::event::{Action, ActionResult, Actor, Event, What};

use crate::hub::Hub;
use crate::ingest::Limits;
use crate::store::{self, CommandRow, Store, StoredEvent};

/// One `[[fleet_rule]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetRuleTable {
    name: String,
    when: When,
    same: String,
    hosts: usize,
    within: String,
    action: String,
}

/// What the hosts of a pattern have in common.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Same {
    Domain,
    Path,
    Syscall,
    Address,
    Kind,
}

const SAME: [(&str, Same); 5] = [
    ("domain", Same::Domain),
    ("path", Same::Path),
    ("syscall", Same::Syscall),
    ("address", Same::Address),
    ("kind", Same::Kind),
];

/// A checked rule.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetRule {
    pub name: String,
    /// Which events count (its own action and count unused: the fleet's are below).
    matches: ResponseRule,
    same: Same,
    hosts: usize,
    within: Duration,
    action: ResponseAction,
}

/// The most distinct values one rule keeps counting at a time (one per domain, path...).
const MAX_KEYS: usize = 10_000;

impl FleetRule {
    /// Checks a table; the error says what is wrong in it.
    pub fn compile(table: &FleetRuleTable) -> Result<Self, String> {
        if table.name.trim().is_empty() || table.name.len() > 100 {
            return Err(
                "name: 1 to 100 characters (it is the issuer of what the rule does)".into(),
            );
        }
        let entry = ResponseEntry {
            name: Some(table.name.clone()),
            when: table.when.clone(),
            action: table.action.clone(),
            count: None,
            within: None,
        };
        let matches = ResponseRule::compile(
            &entry,
            0,
            // A fleet has no one home or workspace: host paths only.
            &|path| {
                if path.contains('{') || !path.starts_with('/') || path.contains("/../") {
                    Err(format!(
                        "path `{path}`: a fleet rule names absolute paths, without placeholders"
                    ))
                } else {
                    Ok(std::path::PathBuf::from(path))
                }
            },
            &|host| {
                let name = host.trim_end_matches('.').to_ascii_lowercase();
                let bare = name.strip_prefix("*.").unwrap_or(&name);
                if bare.is_empty()
                    || !bare
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                {
                    Err(format!("`{host}` is not a host name (or `*.` and one)"))
                } else {
                    Ok(name)
                }
            },
            &|syscall| {
                if syscall
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                {
                    Ok(syscall.to_string())
                } else {
                    Err(format!("`{syscall}` is not a syscall's name"))
                }
            },
        )?;
        let same = SAME
            .iter()
            .find(|(n, _)| *n == table.same)
            .map(|(_, s)| *s)
            .ok_or_else(|| {
                format!(
                    "same = {:?}: one of {}",
                    table.same,
                    SAME.map(|(n, _)| n).join(", ")
                )
            })?;
        if !(2..=10_000).contains(&table.hosts) {
            return Err(format!("hosts = {}: from 2 to 10000", table.hosts));
        }
        let within = match humantime::parse_duration(&table.within) {
            Ok(d) if !d.is_zero() && d <= Duration::from_secs(86_400) => d,
            _ => {
                return Err(format!(
                    "within = {:?}: a duration up to a day, like \"1m\"",
                    table.within
                ))
            }
        };
        Ok(Self {
            name: table.name.clone(),
            action: matches.action,
            matches,
            same,
            hosts: table.hosts,
            within,
        })
    }

    /// What `event` has in common with the others this rule counts, if it counts.
    fn key(&self, event: &Event) -> Option<String> {
        if !self.matches.matches(event) {
            return None;
        }
        match (&event.what, self.same) {
            (What::DnsDenied { domain, .. }, Same::Domain) => Some(domain.to_ascii_lowercase()),
            (What::NetworkDenied { domain, .. }, Same::Domain) => domain.clone(),
            (What::NetworkDenied { address, .. }, Same::Address) => Some(address.to_string()),
            (What::FileDenied { path, target, .. }, Same::Path) => {
                Some(target.clone().unwrap_or_else(|| path.clone()))
            }
            (What::SyscallDenied { syscall, .. }, Same::Syscall) => Some(syscall.clone()),
            (what, Same::Kind) => Some(what.kind().to_string()),
            _ => None,
        }
    }
}

/// Who took part in a pattern: a sandbox of a host, when, in which session.
#[derive(Debug, Clone)]
struct Seen {
    time_ns: i64,
    host: String,
    sandbox: String,
    profile: String,
    session: Option<uuid::Uuid>,
}

/// What one rule has counted, by what the hosts have in common.
#[derive(Default)]
struct Counts(HashMap<String, VecDeque<Seen>>);

impl Counts {
    /// Counts `seen` under `key`; returns everyone of the pattern when it is complete.
    fn add(&mut self, rule: &FleetRule, key: String, seen: Seen) -> Option<Vec<Seen>> {
        let window = i64::try_from(rule.within.as_nanos()).unwrap_or(i64::MAX);
        let now = seen.time_ns;
        if self.0.len() >= MAX_KEYS && !self.0.contains_key(&key) {
            // Forget what can no longer complete a pattern; if still full, the oldest value.
            self.0
                .retain(|_, q| q.back().is_some_and(|s| now - s.time_ns <= window));
            if self.0.len() >= MAX_KEYS {
                let oldest = self
                    .0
                    .iter()
                    .min_by_key(|(_, q)| q.back().map_or(i64::MIN, |s| s.time_ns))
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    self.0.remove(&oldest);
                }
            }
        }
        let queue = self.0.entry(key.clone()).or_default();
        queue.push_back(seen);
        while queue.front().is_some_and(|s| now - s.time_ns > window) {
            queue.pop_front();
        }
        let mut hosts: Vec<&str> = queue.iter().map(|s| s.host.as_str()).collect();
        hosts.sort_unstable();
        hosts.dedup();
        if hosts.len() < rule.hosts {
            return None;
        }
        // Complete: acted on once, counted again from nothing.
        self.0.remove(&key).map(Vec::from)
    }
}

/// Follows what is stored and applies the rules, until the collector stops.
pub fn spawn(store: &Store, hub: &Arc<Hub>, settings: Settings) {
    if settings.rules.is_empty() {
        return;
    }
    let fleet = Fleet {
        store: store.clone(),
        hub: Arc::clone(hub),
        command_ttl: settings.command_ttl,
        limits: settings.limits,
    };
    tokio::spawn(run(fleet, settings.rules));
}

/// What the fleet rules take from the collector's configuration.
pub struct Settings {
    pub rules: Vec<FleetRule>,
    /// How long a command the rules issue waits for its host.
    pub command_ttl: Duration,
    /// What an alert the rules store is held to, as a host's event would be.
    pub limits: Limits,
}

/// What the rules act through: the store, and the hub that tells hosts and streams.
struct Fleet {
    store: Store,
    hub: Arc<Hub>,
    command_ttl: Duration,
    limits: Limits,
}

async fn run(fleet: Fleet, rules: Vec<FleetRule>) {
    let mut counts: Vec<Counts> = rules.iter().map(|_| Counts::default()).collect();
    // From now on: what was stored before the collector started has been judged before.
    let mut after = loop {
        match fleet.store.newest_seq().await {
            Ok(seq) => break seq,
            Err(e) => {
                tracing::warn!("fleet rules wait for the store: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let page = match fleet.store.events_after(after, 1000, 16 << 20).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("fleet rules cannot read the store: {e}");
                continue;
            }
        };
        for stored in &page {
            after = after.max(stored.seq);
            let Some(event) = event_of(stored) else {
                continue;
            };
            for (rule, counts) in rules.iter().zip(counts.iter_mut()) {
                let Some(key) = rule.key(&event) else {
                    continue;
                };
                let seen = Seen {
                    time_ns: stored.time_ns,
                    host: stored.host.clone(),
                    sandbox: stored.sandbox.clone(),
                    profile: event.profile.clone(),
                    session: event.session,
                };
                if let Some(pattern) = counts.add(rule, key.clone(), seen) {
                    act(&fleet, rule, &key, pattern).await;
                }
            }
        }
    }
}

/// A stored event as the agents sent it; `None` for one this collector cannot read (an
/// agent newer than it).
fn event_of(stored: &StoredEvent) -> Option<Event> {
    serde_json::from_str(&stored.body).ok()
}

/// Acts on every sandbox of a complete pattern, once each.
async fn act(fleet: &Fleet, rule: &FleetRule, key: &str, pattern: Vec<Seen>) {
    let mut sandboxes: Vec<Seen> = Vec::new();
    for seen in pattern {
        if !sandboxes
            .iter()
            .any(|s| s.host == seen.host && s.sandbox == seen.sandbox)
        {
            sandboxes.push(seen);
        }
    }
    let hosts = {
        let mut h: Vec<&str> = sandboxes.iter().map(|s| s.host.as_str()).collect();
        h.dedup();
        h.len()
    };
    tracing::warn!(
        "fleet rule {:?}: {key:?} on {hosts} hosts within {}: {} {} sandboxes",
        rule.name,
        humantime::format_duration(rule.within),
        match rule.action {
            ResponseAction::Freeze => "freezing",
            ResponseAction::Isolate => "isolating",
            ResponseAction::Kill => "killing",
            ResponseAction::Alert => "alerting on",
        },
        sandboxes.len()
    );
    let issuer = format!("fleet rule {}", rule.name);
    for seen in &sandboxes {
        let action = match rule.action {
            ResponseAction::Freeze => Action::Freeze,
            ResponseAction::Isolate => Action::Isolate,
            ResponseAction::Kill => Action::Kill,
            ResponseAction::Alert => {
                alert(fleet, rule, key, seen).await;
                continue;
            }
        };
        let command = CommandRow {
            id: uuid::Uuid::now_v7().to_string(),
            host: seen.host.clone(),
            sandbox: seen.sandbox.clone(),
            action,
            issued_by: issuer.clone(),
            issued_ns: crate::clock::now_ns(),
            expires_ns: store::expiry(fleet.command_ttl),
            status: "queued".into(),
            delivered_ns: None,
            done_ns: None,
            error: None,
            took_ms: None,
        };
        match fleet.store.queue_command(&command).await {
            Ok(()) => fleet.hub.bell(&command.host).notify_waiters(),
            Err(e) => tracing::error!(
                "fleet rule {:?}: cannot queue {} of {} on {}: {e}",
                rule.name,
                action.as_str(),
                seen.sandbox,
                seen.host
            ),
        }
    }
}

/// Stores the rule's alert for one sandbox of the pattern, as that host's event.
async fn alert(fleet: &Fleet, rule: &FleetRule, key: &str, seen: &Seen) {
    let mut event = Event::new(
        &seen.sandbox,
        &seen.profile,
        SystemTime::now(),
        None,
        What::ResponderAction {
            action: Action::Alert,
            actor: Actor {
                via: "fleet_rule".into(),
                uid: None,
                pid: None,
                name: Some(format!("{} ({key})", rule.name)),
            },
            result: ActionResult::Done,
            error: None,
            took_ms: 0,
            evidence: None,
            unseen: None,
        },
    );
    event.session = seen.session;
    event.severity = Some(cordon_proto::event::Severity::High);
    let Ok(json) = serde_json::value::to_raw_value(&event) else {
        return;
    };
    let admitted = crate::ingest::admit(&[&json], SystemTime::now(), fleet.limits);
    match fleet
        .store
        .insert_events(&seen.host, &admitted.events, &admitted.set_aside)
        .await
    {
        Ok(stored) => fleet.hub.stored(&stored),
        Err(e) => tracing::error!("fleet rule {:?}: cannot store its alert: {e}", rule.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> Result<FleetRule, String> {
        FleetRule::compile(&toml::from_str::<FleetRuleTable>(text).map_err(|e| e.to_string())?)
    }

    fn seen(host: &str, t: i64) -> Seen {
        Seen {
            time_ns: t * 1_000_000_000,
            host: host.into(),
            sandbox: format!("agent-{host}-0"),
            profile: "agent".into(),
            session: None,
        }
    }

    const FIVE_HOSTS: &str = "name = \"n\"\nwhen = { kind = \"dns_denied\" }\nsame = \"domain\"\nhosts = 3\nwithin = \"1m\"\naction = \"isolate\"\n";

    #[test]
    fn a_pattern_is_complete_on_enough_distinct_hosts_within_the_window() {
        let r = rule(FIVE_HOSTS).unwrap();
        let mut c = Counts::default();
        assert!(c.add(&r, "x.test".into(), seen("a", 0)).is_none());
        // The same host again is not another host.
        assert!(c.add(&r, "x.test".into(), seen("a", 1)).is_none());
        assert!(c.add(&r, "x.test".into(), seen("b", 30)).is_none());
        // Another name is another pattern.
        assert!(c.add(&r, "y.test".into(), seen("c", 31)).is_none());
        // Past the window, the first host no longer counts.
        assert!(c.add(&r, "x.test".into(), seen("c", 62)).is_none());
        let done = c.add(&r, "x.test".into(), seen("d", 63)).expect("complete");
        let hosts: Vec<&str> = done.iter().map(|s| s.host.as_str()).collect();
        assert_eq!(hosts, ["b", "c", "d"]);
        // Counted again from nothing.
        assert!(c.add(&r, "x.test".into(), seen("e", 63)).is_none());
    }

    #[test]
    fn mistakes_are_named() {
        let bad = |from: &str, to: &str| rule(&FIVE_HOSTS.replace(from, to)).unwrap_err();
        assert!(bad("\"domain\"", "\"domian\"").contains("one of domain"));
        assert!(bad("hosts = 3", "hosts = 1").contains("from 2"));
        assert!(bad("\"1m\"", "\"soon\"").contains("within"));
        assert!(bad("\"isolate\"", "\"isolat\"").contains("did you mean `isolate`"));
        assert!(
            bad("kind = \"dns_denied\"", "path = \"{home}/.ssh\"").contains("without placeholders")
        );
    }
}
