//! What the collector makes of a host's batch before it is stored: each event read on its
//! own, so that one the collector cannot take is set aside (and named in the reply) while the
//! rest of the batch is stored.
//!
//! * Text is text, whatever its characters: a NUL (which PostgreSQL's `text` cannot hold) stays
//!   escaped in the event's JSON and becomes U+FFFD only in the columns queries filter on.
//! * An event over `max_event_bytes` has its longest strings cut, each with a marker saying
//!   how many bytes went; one still over the limit (thousands of fields) is set aside.
//! * An event dated beyond the collector's clock plus `clock_skew` is stored at the time it
//!   arrived, with the host's time kept as `host_time`.

use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::value::RawValue;

use cordon_proto::collector::{RejectReason, Rejected};
use cordon_proto::event::{Event, SCHEMA_VERSION};

use crate::clock::ns;

/// The most bytes of a set-aside event kept for people to look at.
const EXCERPT_BYTES: usize = 4096;

/// A batch as it arrives: its events not yet read. Fields a newer cordond may add are
/// ignored: refusing them would make every batch of that cordond look malformed.
#[derive(Debug, Deserialize)]
pub struct RawBatch<'a> {
    pub v: u32,
    pub host: String,
    #[serde(borrow)]
    pub events: Vec<&'a RawValue>,
}

/// An event ready for the store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub id: String,
    pub sandbox: String,
    pub profile: String,
    pub kind: &'static str,
    /// The event's time, clamped to the time it arrived plus the allowed skew.
    pub time_ns: i64,
    /// Lowercased text that free-text search looks in.
    pub subject: String,
    /// The event's JSON.
    pub body: String,
    /// 0 (info) to 4 (critical).
    pub severity: i64,
    pub session: Option<String>,
}

/// An event set aside: why, and the start of what was sent.
#[derive(Debug, Clone, PartialEq)]
pub struct SetAside {
    pub rejected: Rejected,
    pub excerpt: String,
}

/// What became of a batch's events.
#[derive(Debug, Default)]
pub struct Admitted {
    pub events: Vec<NewEvent>,
    pub set_aside: Vec<SetAside>,
    /// Events whose text was cut to fit.
    pub truncated: usize,
}

/// The limits an event is held to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_event_bytes: usize,
    pub clock_skew: Duration,
}

/// Reads each event of `events`, received at `received`.
pub fn admit(events: &[&RawValue], received: SystemTime, limits: Limits) -> Admitted {
    let latest = ns(received)
        .saturating_add(i64::try_from(limits.clock_skew.as_nanos()).unwrap_or(i64::MAX));
    let mut out = Admitted::default();
    for (index, raw) in events.iter().enumerate() {
        let text = raw.get();
        let set_aside = |reason: RejectReason, detail: String, id: Option<String>| SetAside {
            rejected: Rejected {
                index,
                id,
                reason,
                detail,
            },
            excerpt: excerpt(text),
        };
        let (event, cut) = match read_event(text, limits.max_event_bytes) {
            Ok(read) => read,
            Err((reason, detail)) => {
                out.set_aside.push(set_aside(reason, detail, id_of(text)));
                continue;
            }
        };
        if event.v != SCHEMA_VERSION {
            out.set_aside.push(set_aside(
                RejectReason::SchemaVersion,
                format!(
                    "schema version {}; this collector reads {SCHEMA_VERSION}",
                    event.v
                ),
                Some(event.id.to_string()),
            ));
            continue;
        }
        out.truncated += usize::from(cut);
        out.events.push(new_event(event, ns(received), latest));
    }
    out
}

/// Room for the marker that ends a cut string (`…[N bytes cut]`).
const MARKER: usize = 32;
/// A cut string keeps at least this much of its start.
const MIN_KEEP: usize = 64;
/// The most bytes of `detail` kept for people (it may quote what was sent).
const DETAIL_BYTES: usize = 256;

/// The event in `text`, its long strings cut when it is over `max_bytes`; whether any was.
/// Linear in the size of `text`: read as the event type first (fields it does not know are
/// dropped there), then its own strings cut, in one pass, to one common length that fits.
fn read_event(text: &str, max_bytes: usize) -> Result<(Event, bool), (RejectReason, String)> {
    let malformed = |e: serde_json::Error| (RejectReason::Malformed, short(&e.to_string()));
    let mut event: Event = serde_json::from_str(text).map_err(malformed)?;
    // An older agent's event is rated by its kind, and says so like the others (before the
    // size is measured: the field counts).
    let unrated = event.severity.is_none();
    event.severity = Some(event.severity());
    if (text.len() + if unrated { 32 } else { 0 }) <= max_bytes || json_len(&event) <= max_bytes {
        return Ok((event, false));
    }
    let mut value = serde_json::to_value(&event).map_err(malformed)?;
    // A few rounds at most: escapes make a string longer in JSON than in memory.
    let mut size = json_len(&value);
    for _ in 0..4 {
        let mut strings = Vec::new();
        strings_of(&mut value, &mut strings);
        let lens: Vec<usize> = strings.iter().map(|s| s.len()).collect();
        // What cutting every string to `keep` saves; the largest `keep` that saves enough.
        let saved = |keep: usize| -> usize {
            lens.iter()
                .filter(|len| **len > keep + MARKER)
                .map(|len| len - keep - MARKER)
                .sum()
        };
        let over = size.saturating_sub(max_bytes);
        let (mut low, mut high) = (MIN_KEEP, lens.iter().copied().max().unwrap_or(0));
        if saved(low) < over {
            break;
        }
        while low < high {
            let mid = (low + high).div_ceil(2);
            if saved(mid) >= over {
                low = mid;
            } else {
                high = mid - 1;
            }
        }
        for s in strings {
            if s.len() > low + MARKER {
                let cut = floor_char_boundary(s, low);
                let marker = format!("…[{} bytes cut]", s.len() - cut);
                s.truncate(cut);
                s.push_str(&marker);
            }
        }
        size = json_len(&value);
        if size <= max_bytes {
            return Ok((serde_json::from_value(value).map_err(malformed)?, true));
        }
    }
    Err((
        RejectReason::TooBig,
        format!(
            "{} bytes, over the limit of {max_bytes} even with its text cut",
            text.len()
        ),
    ))
}

/// The length of `value` as JSON.
fn json_len<T: serde::Serialize>(value: &T) -> usize {
    serde_json::to_string(value).map_or(usize::MAX, |s| s.len())
}

/// Every string in `value` (keys aside).
fn strings_of<'a>(value: &'a mut serde_json::Value, out: &mut Vec<&'a mut String>) {
    use serde_json::Value;
    match value {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter_mut().for_each(|v| strings_of(v, out)),
        Value::Object(map) => map.values_mut().for_each(|v| strings_of(v, out)),
        _ => {}
    }
}

/// `text` cut to [`DETAIL_BYTES`].
fn short(text: &str) -> String {
    if text.len() <= DETAIL_BYTES {
        return text.to_string();
    }
    format!("{}…", &text[..floor_char_boundary(text, DETAIL_BYTES)])
}

fn floor_char_boundary(s: &str, at: usize) -> usize {
    (0..=at.min(s.len()))
        .rev()
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(0)
}

/// The `id` of what may not be an event, if it has a readable one.
fn id_of(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Id {
        id: Option<serde_json::Value>,
    }
    let id = serde_json::from_str::<Id>(text).ok()?.id?;
    let id = id.as_str()?;
    Some(clean(&id.chars().take(64).collect::<String>()))
}

fn excerpt(text: &str) -> String {
    clean(&text[..floor_char_boundary(text, EXCERPT_BYTES)])
}

/// `text` without NUL, which PostgreSQL's `text` cannot hold.
pub fn clean(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

fn new_event(mut event: Event, received_ns: i64, latest_ns: i64) -> NewEvent {
    let time_ns = ns(event.time);
    let host_time = (time_ns > latest_ns).then_some(event.time);
    if host_time.is_some() {
        event.time =
            SystemTime::UNIX_EPOCH + Duration::from_nanos(u64::try_from(received_ns).unwrap_or(0));
    }
    // Serializing the agent's own type cannot fail: it has no maps with other keys than
    // strings, and no floats.
    let mut body = serde_json::to_string(&event).unwrap_or_else(|_| "{}".into());
    if let Some(original) = host_time {
        let original = humantime::format_rfc3339_nanos(original).to_string();
        body = format!("{{\"host_time\":\"{original}\",{}", &body[1..]);
    }
    NewEvent {
        id: event.id.to_string(),
        sandbox: clean(&event.sandbox),
        profile: clean(&event.profile),
        kind: event.what.kind(),
        time_ns: ns(event.time),
        subject: clean(&subject(&event)),
        severity: event.severity() as i64,
        session: event.session.map(|s| s.to_string()),
        body,
    }
}

/// What free-text search looks in, lowercased (the same way for both stores; SQLite's
/// `LOWER` knows only ASCII).
fn subject(event: &Event) -> String {
    let mut s = event.what.subject();
    if let Some(p) = &event.process {
        s.push(' ');
        s.push_str(&p.comm);
        if let Some(exe) = &p.exe {
            s.push(' ');
            s.push_str(exe);
        }
    }
    s.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LIMITS: Limits = Limits {
        max_event_bytes: 2048,
        clock_skew: Duration::from_secs(300),
    };

    fn file_event(id: &str, path: &str, time: &str) -> serde_json::Value {
        json!({
            "v": SCHEMA_VERSION, "id": id, "time": time, "sandbox": "agent-1-0",
            "profile": "agent", "kind": "file_denied", "path": path,
            "access": "fs.read_file",
            "process": {"pid": 7, "ppid": 1, "comm": "cat", "uid": 1000}
        })
    }

    fn admit_all(events: &[serde_json::Value], now: SystemTime) -> Admitted {
        let texts: Vec<String> = events.iter().map(|e| e.to_string()).collect();
        let raw: Vec<Box<RawValue>> = texts
            .iter()
            .map(|t| RawValue::from_string(t.clone()).unwrap())
            .collect();
        let refs: Vec<&RawValue> = raw.iter().map(|r| &**r).collect();
        admit(&refs, now, LIMITS)
    }

    fn id(n: u8) -> String {
        format!("019abc00-0000-7000-8000-0000000000{n:02x}")
    }

    const NOW: &str = "2026-11-29T10:00:00Z";

    fn now() -> SystemTime {
        humantime::parse_rfc3339(NOW).unwrap()
    }

    #[test]
    fn a_bad_event_is_set_aside_and_the_rest_admitted() {
        let mut unknown = file_event(&id(2), "/x", NOW);
        unknown["kind"] = json!("teleport");
        let mut newer = file_event(&id(3), "/x", NOW);
        newer["v"] = json!(SCHEMA_VERSION + 1);
        let a = admit_all(
            &[
                file_event(&id(1), "/a", NOW),
                unknown,
                newer,
                json!("not an object"),
                file_event(&id(4), "/b", NOW),
            ],
            now(),
        );
        let ids: Vec<_> = a.events.iter().map(|e| e.id.clone()).collect();
        assert_eq!(ids, vec![id(1), id(4)]);
        let aside: Vec<_> = a
            .set_aside
            .iter()
            .map(|s| (s.rejected.index, s.rejected.reason, s.rejected.id.clone()))
            .collect();
        assert_eq!(
            aside,
            vec![
                (1, RejectReason::Malformed, Some(id(2))),
                (2, RejectReason::SchemaVersion, Some(id(3))),
                (3, RejectReason::Malformed, None),
            ]
        );
        assert!(a.set_aside[0].rejected.detail.contains("teleport"));
    }

    #[test]
    fn nul_and_its_spelling_are_text_kept_in_the_body_and_cleaned_in_columns() {
        let mut e = file_event(&id(1), "/etc/a\0b", NOW);
        e["process"]["comm"] = json!("\\u0000");
        e["sandbox"] = json!("agent\0-1-0");
        let a = admit_all(&[e], now());
        assert!(a.set_aside.is_empty());
        let stored = &a.events[0];
        assert_eq!(stored.sandbox, "agent\u{FFFD}-1-0");
        assert!(!stored.subject.contains('\0'));
        let body: serde_json::Value = serde_json::from_str(&stored.body).unwrap();
        assert_eq!(body["path"], "/etc/a\0b", "the body keeps the text as sent");
        assert_eq!(body["process"]["comm"], "\\u0000");
        assert!(!stored.body.contains('\0'), "a NUL stays escaped in JSON");
    }

    #[test]
    fn long_text_is_cut_with_a_marker_and_unknown_fields_dropped() {
        let long = format!("/{}", "x".repeat(100_000));
        let a = admit_all(&[file_event(&id(1), &long, NOW)], now());
        assert_eq!((a.events.len(), a.truncated), (1, 1));
        assert!(
            a.events[0].body.len() <= LIMITS.max_event_bytes,
            "{}",
            a.events[0].body.len()
        );
        let body: serde_json::Value = serde_json::from_str(&a.events[0].body).unwrap();
        let path = body["path"].as_str().unwrap();
        assert!(path.starts_with("/xxx"), "{path}");
        assert!(path.ends_with(" bytes cut]"), "{path}");
        // Multi-byte characters are cut between characters.
        let wide = "é".repeat(5000);
        let a = admit_all(&[file_event(&id(2), &wide, NOW)], now());
        assert_eq!(a.events.len(), 1);
        // Fields the event type does not have are dropped, not cut: thousands of them cost
        // one linear read (they once cost a pass each).
        let mut many = file_event(&id(3), "/x", NOW);
        for i in 0..100_000 {
            many[format!("extra{i}")] = json!("padding padding padding");
        }
        let started = std::time::Instant::now();
        let a = admit_all(&[many], now());
        assert_eq!((a.events.len(), a.truncated), (1, 0));
        assert!(!a.events[0].body.contains("extra"));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        // An event that cannot fit even with its text cut to a stub is set aside.
        let tiny = Limits {
            max_event_bytes: 200,
            ..LIMITS
        };
        let text = file_event(&id(4), &long, NOW).to_string();
        let raw = RawValue::from_string(text).unwrap();
        let a = admit(&[&*raw], now(), tiny);
        assert_eq!(a.set_aside[0].rejected.reason, RejectReason::TooBig);
        assert!(a.set_aside[0].excerpt.len() <= EXCERPT_BYTES);
    }

    #[test]
    fn a_time_far_ahead_is_clamped_and_the_hosts_kept() {
        let a = admit_all(
            &[
                file_event(&id(1), "/a", "2099-01-01T00:00:00Z"),
                file_event(&id(2), "/b", "2026-11-29T10:04:00Z"),
            ],
            now(),
        );
        assert_eq!(a.events[0].time_ns, ns(now()));
        let body: serde_json::Value = serde_json::from_str(&a.events[0].body).unwrap();
        let time = |v: &serde_json::Value| humantime::parse_rfc3339(v.as_str().unwrap()).unwrap();
        assert_eq!(
            time(&body["host_time"]),
            humantime::parse_rfc3339("2099-01-01T00:00:00Z").unwrap()
        );
        assert_eq!(time(&body["time"]), now());
        // Within the skew: as sent.
        let body: serde_json::Value = serde_json::from_str(&a.events[1].body).unwrap();
        assert_eq!(a.events[1].time_ns, ns(time(&body["time"])));
        assert_eq!(
            time(&body["time"]),
            humantime::parse_rfc3339("2026-11-29T10:04:00Z").unwrap()
        );
        assert!(body.get("host_time").is_none());
    }
}
