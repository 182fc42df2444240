//! Bursts: a process that repeats one violation in a tight loop would otherwise bury every
//! other event. The first occurrence passes at once; repeats within the window (same process,
//! same kind, same details) are counted and leave as one event whose `count`, `first_seen`
//! and `last_seen` cover the repeats. Summing `count` (1 for an event without one) over the
//! events gives every occurrence exactly once.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use crate::event::{Burst, Event, FileLayer, What};

pub struct Bursts {
    window: Duration,
    open: HashMap<String, Open>,
    /// Open windows, oldest first, so closing them costs nothing per event.
    order: VecDeque<(Instant, String)>,
}

struct Open {
    opened: Instant,
    repeats: Option<(Event, u64, SystemTime, SystemTime)>,
}

impl Bursts {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            open: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Takes an event; returns what is to be written now, in order: bursts whose window
    /// has closed, then the event itself unless it is a repeat. `watched`: a response rule on
    /// a path matches the event, so it is gathered only with its own repeats, never into the
    /// sandbox's one burst of hidden paths (where its path would not show).
    pub fn push(&mut self, event: Event, now: Instant, watched: bool) -> Vec<Event> {
        if !event.what.is_violation() || event.burst.is_some() {
            return vec![event];
        }
        let key = key_of(&event, watched);
        let mut out = Vec::new();
        if self
            .open
            .get(&key)
            .is_some_and(|open| now.duration_since(open.opened) >= self.window)
        {
            // Its window closed and nobody collected it yet: out before the new one.
            out = self.due(now);
        }
        match self.open.get_mut(&key) {
            Some(open) => {
                let time = event.time;
                match &mut open.repeats {
                    Some((_, count, _, last)) => {
                        *count += 1;
                        *last = time;
                    }
                    None => open.repeats = Some((event, 1, time, time)),
                }
            }
            None => {
                self.order.push_back((now, key.clone()));
                self.open.insert(
                    key,
                    Open {
                        opened: now,
                        repeats: None,
                    },
                );
                out.push(event);
            }
        }
        out
    }

    /// The bursts whose window has closed, as events.
    pub fn due(&mut self, now: Instant) -> Vec<Event> {
        let mut out = Vec::new();
        while let Some((opened, _)) = self.order.front() {
            if now.duration_since(*opened) < self.window {
                break;
            }
            let Some((_, key)) = self.order.pop_front() else {
                break;
            };
            if let Some(open) = self.open.remove(&key) {
                out.extend(open.repeats.map(summary));
            }
        }
        out.sort_by_key(|e| e.id);
        out
    }

    /// Every burst still open, as events (at the end).
    pub fn flush(&mut self) -> Vec<Event> {
        self.order.clear();
        let mut out: Vec<Event> = self
            .open
            .drain()
            .filter_map(|(_, open)| open.repeats.map(summary))
            .collect();
        out.sort_by_key(|e| e.id);
        out
    }
}

fn summary((event, count, first, last): (Event, u64, SystemTime, SystemTime)) -> Event {
    let mut event = event;
    // The first repeat's event, with its id and time, stands for all of them.
    event.burst = Some(Burst {
        count,
        first_seen: first,
        last_seen: last,
    });
    event
}

/// Same process, same kind, same details; any paths not in the profile's view are one key
/// for the whole sandbox (a program probing for absent config files is one burst), except
/// one a response rule on a path watches.
fn key_of(event: &Event, watched: bool) -> String {
    // An audit's paths are each reported once already, and each is a rule to learn.
    let outside = matches!(
        event.what,
        What::FileDenied {
            layer: Some(FileLayer::NotInView),
            ..
        }
    );
    if outside && event.enforced && !watched {
        return "not_in_view".into();
    }
    let pid = event.process.as_ref().map_or(0, |p| p.pid);
    let what = serde_json::to_string(&event.what).unwrap_or_default();
    format!("{pid}:{}:{what}", event.enforced)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Process;

    fn denied(pid: u32, nr: i64) -> Event {
        Event::new(
            "s",
            "p",
            SystemTime::now(),
            Some(Process {
                pid,
                ppid: 1,
                comm: "c".into(),
                exe: None,
                uid: 0,
            }),
            What::SyscallDenied {
                nr,
                syscall: "x".into(),
                args: vec![],
                errno: 1,
            },
        )
    }

    #[test]
    fn repeats_become_one_event_and_every_occurrence_is_counted_once() {
        let mut b = Bursts::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(b.push(denied(1, 10), t0, false).len(), 1);
        for _ in 0..999 {
            assert!(b.push(denied(1, 10), t0, false).is_empty());
        }
        // Another process, or another syscall, is another burst.
        assert_eq!(b.push(denied(2, 10), t0, false).len(), 1);
        assert_eq!(b.push(denied(1, 11), t0, false).len(), 1);
        assert!(b.due(t0 + Duration::from_millis(500)).is_empty());
        let due = b.due(t0 + Duration::from_secs(1));
        assert_eq!(due.len(), 1);
        let burst = due[0].burst.as_ref().unwrap();
        assert_eq!(burst.count, 999);
        assert!(burst.first_seen <= burst.last_seen);
        // After the window, the next one passes at once again.
        assert_eq!(
            b.push(denied(1, 10), t0 + Duration::from_secs(2), false)
                .len(),
            1
        );
        assert!(b
            .push(denied(1, 10), t0 + Duration::from_secs(2), false)
            .is_empty());
        assert_eq!(b.flush().len(), 1);
        // A window that closed without a call to `due` comes out before the next event.
        let t3 = t0 + Duration::from_secs(3);
        assert_eq!(b.push(denied(1, 10), t3, false).len(), 1);
        assert!(b.push(denied(1, 10), t3, false).is_empty());
        let out = b.push(denied(1, 10), t3 + Duration::from_secs(1), false);
        assert_eq!(out.len(), 2, "the burst, then the event");
        assert_eq!(out[0].burst.as_ref().map(|b| b.count), Some(1));
        assert!(out[1].burst.is_none());
        let json = serde_json::to_value(&due[0]).unwrap();
        assert_eq!(json["count"], 999);
        assert!(json["first_seen"].is_string() && json["last_seen"].is_string());
    }

    fn hidden(path: &str) -> Event {
        let mut e = denied(1, 0);
        e.what = What::FileDenied {
            path: path.into(),
            access: "fs.read_file".into(),
            layer: Some(FileLayer::NotInView),
            rule: None,
            target: None,
        };
        e
    }

    #[test]
    fn hidden_paths_are_one_burst_but_one_a_rule_watches_is_its_own_event() {
        let mut b = Bursts::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(b.push(hidden("/home/u/.config/a"), t0, false).len(), 1);
        // Another hidden path within the window: gathered into the sandbox's one burst.
        assert!(b.push(hidden("/home/u/.config/b"), t0, false).is_empty());
        // A hidden path a response rule watches comes out under its own name at once, and
        // only its own repeats are gathered.
        let out = b.push(hidden("/home/u/.aws/credentials"), t0, true);
        assert_eq!(out.len(), 1);
        assert!(
            matches!(&out[0].what, What::FileDenied { path, .. } if path == "/home/u/.aws/credentials")
        );
        assert!(b
            .push(hidden("/home/u/.aws/credentials"), t0, true)
            .is_empty());
        let bursts = b.flush();
        assert_eq!(bursts.len(), 2, "{bursts:?}");
        let counts: u64 = bursts
            .iter()
            .map(|e| e.burst.as_ref().map_or(1, |b| b.count))
            .sum();
        assert_eq!(counts, 2, "each repeat counted once");
    }

    #[test]
    fn activity_is_never_aggregated() {
        let mut b = Bursts::new(Duration::from_secs(1));
        let t0 = Instant::now();
        for _ in 0..3 {
            let e = Event::new(
                "s",
                "p",
                SystemTime::now(),
                None,
                What::Fork { child_pid: 5 },
            );
            assert_eq!(b.push(e, t0, false).len(), 1);
        }
    }
}
