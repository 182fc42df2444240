//! Response rules at work (`[[response]]`, see [`cordon_policy::response`]): the sandbox's
//! event writer hands every event to the [`Responder`], which counts the events each rule
//! matches and, once a rule's count is reached within its window, acts on the sandbox
//! itself, on the host, in milliseconds and whether or not the collector is reachable. Each
//! action is recorded like a responder's, the rule named as the actor (`via: "rule"`).
//!
//! **Lost events fail closed.** A sandbox can flood its own event ring (or the audit queue)
//! to hide one denial among the records the kernel has no room for. A rule cannot tell what
//! it did not see, so it takes every lost record it could have matched as a match: a
//! `freeze` rule on `/etc/shadow` freezes a sandbox that lost denials, whatever they were.
//! The action's record says so (`unseen`: why they were lost).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use cordon_policy::response::{ResponseAction, ResponseRule};

use crate::ebpf::Kernel;
use crate::event::{Action, ActionResult, Actor, Event, LossReason, Severity, What};

/// The rules of one sandbox and what each has counted.
pub struct Responder {
    rules: Vec<(ResponseRule, VecDeque<Instant>)>,
    kernel: Option<Arc<Kernel>>,
}

impl Responder {
    /// `None` when there is no rule to apply.
    pub fn new(rules: &[ResponseRule], kernel: Option<Arc<Kernel>>) -> Option<Self> {
        (!rules.is_empty()).then(|| Self {
            rules: rules.iter().map(|r| (r.clone(), VecDeque::new())).collect(),
            kernel,
        })
    }

    /// Whether a rule on a path matches `event` itself (losses aside): a path a rule
    /// watches. Rules without a path (`severity = "low"`, a kind) watch no path in
    /// particular, and their matches are gathered into bursts as any event is.
    pub fn watches(&self, event: &Event) -> bool {
        self.rules
            .iter()
            .any(|(rule, _)| rule.path.is_some() && rule.matches(event))
    }

    /// Counts `event` for each rule it matches; returns the events that record what the
    /// rules that went off did.
    pub fn event(&mut self, event: &Event, now: Instant) -> Vec<Event> {
        // What the rules themselves did is not counted again.
        if matches!(
            event.what,
            What::ResponderAction { .. } | What::Contained { .. }
        ) {
            return Vec::new();
        }
        let lost = unseen(&event.what);
        let mut done = Vec::new();
        for (rule, seen) in &mut self.rules {
            let itself = u64::from(rule.matches(event));
            // Lost records the rule could have matched count, each; the loss's own event
            // (which a rule on `severity = "high"` matches) does not count them once only.
            let among_lost = lost
                .filter(|_| could_be_among_lost(rule))
                .map_or(0, |(count, _)| count);
            let matched = itself.max(among_lost);
            if matched == 0 {
                continue;
            }
            for _ in 0..matched.min(u64::from(rule.count)) {
                seen.push_back(now);
            }
            while seen
                .front()
                .is_some_and(|t| now.duration_since(*t) > rule.within)
            {
                seen.pop_front();
            }
            if seen.len() < rule.count as usize {
                continue;
            }
            // Counting starts again: a thawed sandbox that does it again is stopped again.
            seen.clear();
            let unseen = lost.filter(|_| among_lost > itself).map(|(_, why)| why);
            done.push(act(rule, event, unseen, self.kernel.as_deref()));
        }
        done
    }
}

/// For an event that says records were lost before any rule could see them: at least how
/// many, and why. `None` for the losses that come after the rules (the spool's), for the
/// host's audit queue (below), and for the calls on missing paths left unexamined: a
/// compiler probes thousands a second, so failing closed on them would stop honest work.
/// That leaves a gap, said in the README: a read of a path the view hides fails as a miss,
/// and past the kernel's budget for examining misses (256 at once, then 1000 a second) it
/// is counted `unexamined`, not reported; a rule on that path does not see it.
fn unseen(what: &What) -> Option<(u64, LossReason)> {
    let What::EventsLost { count, reason } = what else {
        return None;
    };
    match reason {
        // The sandbox's own ring: only its own records fill it.
        LossReason::RingFull => Some((*count, *reason)),
        // Counted in times the channel was cut (by someone outside, as root), not in
        // records: any number went missing.
        LossReason::RingTampered | LossReason::AuditDetached => Some((u64::MAX, *reason)),
        // The audit queue and its listeners' sockets are the host's: one sandbox's flood
        // overruns every listener. Failing closed on it would let one sandbox freeze or kill
        // the others; a Landlock denial lost in such a flood is left to the rules on
        // `events_lost` that ops may write.
        LossReason::AuditOverrun => None,
        LossReason::SpoolFull | LossReason::Unexamined => None,
    }
}

/// Whether a record the kernel lost (from the event ring or Landlock's audit records) could
/// have been one `rule` matches: every rule but those on what Cordon itself makes in user
/// space (the resolver's refusals, losses, actions, sessions).
fn could_be_among_lost(rule: &ResponseRule) -> bool {
    const MADE_HERE: [&str; 5] = [
        "dns_denied",
        "events_lost",
        "contained",
        "responder_action",
        "session_started",
    ];
    !rule.kind.as_deref().is_some_and(|k| MADE_HERE.contains(&k))
}

/// Does what `rule` says to the sandbox of `event`, and records it.
fn act(
    rule: &ResponseRule,
    event: &Event,
    unseen: Option<LossReason>,
    kernel: Option<&Kernel>,
) -> Event {
    let started = Instant::now();
    let action = match rule.action {
        ResponseAction::Freeze => Action::Freeze,
        ResponseAction::Isolate => Action::Isolate,
        ResponseAction::Kill => Action::Kill,
        ResponseAction::Alert => Action::Alert,
    };
    let result = match action {
        Action::Alert => Ok(()),
        _ => crate::contain::act(kernel, &event.sandbox, action).map(|_| ()),
    };
    tracing::info!(
        "{}: response rule {:?} went off{}: {}",
        event.sandbox,
        rule.name,
        unseen.map_or_else(String::new, |r| format!(
            " on events lost unseen ({})",
            r.as_str()
        )),
        match &result {
            Ok(()) => crate::contain::done(action).to_string(),
            Err(e) => format!("{} failed: {e}", action.as_str()),
        }
    );
    let mut recorded = Event::new(
        &event.sandbox,
        &event.profile,
        SystemTime::now(),
        None,
        What::ResponderAction {
            action,
            actor: Actor {
                via: "rule".into(),
                uid: None,
                pid: None,
                name: Some(rule.name.clone()),
            },
            result: if result.is_ok() {
                ActionResult::Done
            } else {
                ActionResult::Failed
            },
            error: result.err().map(|e| e.to_string()),
            took_ms: started.elapsed().as_millis() as u64,
            evidence: None,
            unseen,
        },
    );
    recorded.session = event.session;
    // A rule that went off is what the people watching want to see first.
    recorded.severity = Some(Severity::High.max(event.severity()));
    recorded
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn alert_after(count: u32, within: Duration) -> Responder {
        let rule = ResponseRule {
            name: "probing".into(),
            kind: Some("dns_denied".into()),
            path: None,
            host: None,
            syscall: None,
            severity: None,
            action: ResponseAction::Alert,
            count,
            within,
        };
        Responder::new(&[rule], None).expect("a responder")
    }

    fn refused(name: &str) -> Event {
        Event::new(
            "a-1-0",
            "a",
            SystemTime::now(),
            None,
            What::DnsDenied {
                domain: name.into(),
                query_type: "A".into(),
                reason: Default::default(),
                address: None,
            },
        )
    }

    #[test]
    fn a_rule_goes_off_at_its_count_within_its_window_and_counts_again() {
        let mut r = alert_after(3, Duration::from_secs(10));
        let t = Instant::now();
        assert!(r.event(&refused("a.test"), t).is_empty());
        assert!(r.event(&refused("b.test"), t).is_empty());
        let done = r.event(&refused("c.test"), t + Duration::from_secs(1));
        assert_eq!(done.len(), 1);
        let What::ResponderAction {
            action,
            actor,
            result,
            ..
        } = &done[0].what
        else {
            panic!("{:?}", done[0]);
        };
        assert_eq!((*action, *result), (Action::Alert, ActionResult::Done));
        assert_eq!(
            (actor.via.as_str(), actor.name.as_deref()),
            ("rule", Some("probing"))
        );
        assert_eq!(done[0].severity, Some(Severity::High));
        // Counting starts again.
        assert!(r
            .event(&refused("d.test"), t + Duration::from_secs(2))
            .is_empty());
    }

    fn lost(count: u64, reason: LossReason) -> Event {
        Event::new(
            "a-1-0",
            "a",
            SystemTime::now(),
            None,
            What::EventsLost { count, reason },
        )
    }

    fn rule_on(kind: Option<&str>, count: u32) -> ResponseRule {
        ResponseRule {
            name: "shadow".into(),
            kind: kind.map(Into::into),
            path: Some("/etc/shadow".into()),
            host: None,
            syscall: None,
            severity: None,
            action: ResponseAction::Alert,
            count,
            within: Duration::from_secs(10),
        }
    }

    #[test]
    fn records_lost_unseen_count_as_matches_of_every_rule_they_could_have_matched() {
        let t = Instant::now();
        let mut r = Responder::new(&[rule_on(Some("file_denied"), 1)], None).unwrap();
        let done = r.event(&lost(1, LossReason::RingFull), t);
        assert_eq!(done.len(), 1, "a lost record may have been the denial");
        let What::ResponderAction { unseen, actor, .. } = &done[0].what else {
            panic!("{:?}", done[0]);
        };
        assert_eq!(*unseen, Some(LossReason::RingFull), "the record says why");
        assert_eq!(actor.name.as_deref(), Some("shadow"));
        // A rule counting three: two lost records are two of them, not three.
        let mut r = Responder::new(&[rule_on(None, 3)], None).unwrap();
        assert!(r.event(&lost(2, LossReason::RingFull), t).is_empty());
        assert_eq!(r.event(&lost(1, LossReason::RingFull), t).len(), 1);
        // A rule the loss's own event matches (it is `high`) counts the records, not it.
        let mut on_high = rule_on(None, 3);
        on_high.path = None;
        on_high.severity = Some(Severity::High);
        let mut r = Responder::new(&[on_high], None).unwrap();
        let done = r.event(&lost(3, LossReason::RingFull), t);
        assert_eq!(done.len(), 1, "three lost, three counted");
        assert!(matches!(
            &done[0].what,
            What::ResponderAction {
                unseen: Some(LossReason::RingFull),
                ..
            }
        ));
        // A cut channel lost any number.
        for reason in [LossReason::RingTampered, LossReason::AuditDetached] {
            let mut r = Responder::new(&[rule_on(None, 10_000)], None).unwrap();
            assert_eq!(r.event(&lost(1, reason), t).len(), 1, "{reason:?}");
        }
    }

    #[test]
    fn losses_no_rule_could_have_seen_and_rules_on_what_cordon_makes_do_not_go_off() {
        let t = Instant::now();
        let mut r = Responder::new(&[rule_on(Some("file_denied"), 1)], None).unwrap();
        // The spool's losses come after the rules; unexamined misses are a compiler's daily
        // work; the audit queue overruns for every sandbox when one floods it.
        assert!(r.event(&lost(50, LossReason::SpoolFull), t).is_empty());
        assert!(r.event(&lost(50, LossReason::Unexamined), t).is_empty());
        assert!(r.event(&lost(50, LossReason::AuditOverrun), t).is_empty());
        // The resolver's refusals never go through the kernel's ring.
        let mut r = alert_after(1, Duration::from_secs(10));
        assert!(r.event(&lost(50, LossReason::RingFull), t).is_empty());
        // A rule on losses themselves matches them as any event, not as unseen.
        let mut r = Responder::new(&[rule_on(Some("events_lost"), 1)], None).unwrap();
        let mut on_losses = rule_on(Some("events_lost"), 1);
        on_losses.path = None;
        let mut r2 = Responder::new(&[on_losses], None).unwrap();
        assert!(r.event(&lost(5, LossReason::RingFull), t).is_empty());
        let done = r2.event(&lost(5, LossReason::RingFull), t);
        assert!(matches!(
            &done[0].what,
            What::ResponderAction { unseen: None, .. }
        ));
    }

    #[test]
    fn only_a_rule_on_a_path_watches_the_events_it_matches() {
        let hidden = |path: &str| {
            Event::new(
                "a-1-0",
                "a",
                SystemTime::now(),
                None,
                What::FileDenied {
                    path: path.into(),
                    access: "fs.read_file".into(),
                    layer: Some(crate::event::FileLayer::NotInView),
                    rule: None,
                    target: None,
                },
            )
        };
        let on_path = Responder::new(&[rule_on(Some("file_denied"), 1)], None).unwrap();
        assert!(on_path.watches(&hidden("/etc/shadow")));
        assert!(!on_path.watches(&hidden("/home/u/.config/x")));
        // A rule on every file denial matches both, but watches no path in particular.
        let mut everything = rule_on(Some("file_denied"), 1);
        everything.path = None;
        let broad = Responder::new(&[everything], None).unwrap();
        assert!(!broad.watches(&hidden("/etc/shadow")));
    }

    #[test]
    fn events_older_than_the_window_do_not_count() {
        let mut r = alert_after(2, Duration::from_secs(1));
        let t = Instant::now();
        assert!(r.event(&refused("a.test"), t).is_empty());
        assert!(r
            .event(&refused("b.test"), t + Duration::from_secs(5))
            .is_empty());
        assert_eq!(
            r.event(&refused("c.test"), t + Duration::from_millis(5500))
                .len(),
            1
        );
    }
}
