//! Response rules at work (`[[response]]`, see [`cordon_policy::response`]): the sandbox's
//! event writer hands every event to the [`Responder`], which counts the events each rule
//! matches and, once a rule's count is reached within its window, acts on the sandbox
//! itself, on the host, in milliseconds and whether or not the collector is reachable. Each
//! action is recorded like a responder's, the rule named as the actor (`via: "rule"`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use cordon_policy::response::{ResponseAction, ResponseRule};

use crate::ebpf::Kernel;
use crate::event::{Action, ActionResult, Actor, Event, Severity, What};

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
        let mut done = Vec::new();
        for (rule, seen) in &mut self.rules {
            if !rule.matches(event) {
                continue;
            }
            seen.push_back(now);
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
            done.push(act(rule, event, self.kernel.as_deref()));
        }
        done
    }
}

/// Does what `rule` says to the sandbox of `event`, and records it.
fn act(rule: &ResponseRule, event: &Event, kernel: Option<&Kernel>) -> Event {
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
        "{}: response rule {:?} went off: {}",
        event.sandbox,
        rule.name,
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
