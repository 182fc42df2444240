//! A stored event as the outputs see it: its columns, its JSON, and the typed event when
//! the JSON is one (it is, unless an older agent wrote something the schema has since
//! dropped: such an event still goes out, described by its kind).

use cordon_proto::event::{Event, Process, Severity};
use serde_json::{Map, Value};

use crate::store::StoredEvent;

#[derive(Debug, Clone)]
pub struct Record {
    pub seq: i64,
    pub id: String,
    pub host: String,
    pub sandbox: String,
    pub kind: String,
    /// The event's time as stored (see [`crate::ingest`]), in nanoseconds since the epoch.
    pub time_ns: i64,
    pub severity: Severity,
    pub session: Option<String>,
    /// The event's JSON as its host sent it.
    pub json: Map<String, Value>,
    pub event: Option<Event>,
}

impl Record {
    pub fn new(stored: StoredEvent) -> Self {
        let json = match serde_json::from_str::<Value>(&stored.body) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        let event = serde_json::from_value::<Event>(Value::Object(json.clone())).ok();
        let severity = usize::try_from(stored.severity)
            .ok()
            .and_then(|i| Severity::ALL.get(i).copied())
            .unwrap_or(Severity::Info);
        Self {
            seq: stored.seq,
            id: json
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            host: stored.host,
            sandbox: stored.sandbox,
            kind: stored.kind,
            time_ns: stored.time_ns,
            severity,
            session: stored.session,
            json,
            event,
        }
    }

    pub fn profile(&self) -> &str {
        self.json
            .get("profile")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    pub fn process(&self) -> Option<&Process> {
        self.event.as_ref().and_then(|e| e.process.as_ref())
    }

    /// Whether what a denial reports was refused (`false`: an audited sandbox let it
    /// through).
    pub fn enforced(&self) -> bool {
        self.event.as_ref().is_none_or(|e| e.enforced)
    }

    /// What happened, in one line for a person (control characters escaped).
    pub fn summary(&self) -> String {
        match &self.event {
            Some(e) => e.summary(),
            None => format!("{} event", self.kind),
        }
    }

    /// The event's JSON with the host it came from and its severity: what the webhook
    /// and syslog's JSON carry.
    pub fn json_with_host(&self) -> Value {
        let mut map = self.json.clone();
        map.insert("host".into(), Value::String(self.host.clone()));
        map.insert(
            "severity".into(),
            Value::String(self.severity.as_str().into()),
        );
        Value::Object(map)
    }

    /// The time as RFC 3339 with nanoseconds, in UTC.
    pub fn rfc3339(&self) -> String {
        let t = std::time::UNIX_EPOCH
            + std::time::Duration::from_nanos(u64::try_from(self.time_ns).unwrap_or(0));
        humantime::format_rfc3339_nanos(t).to_string()
    }

    /// The value of a field of the event's JSON (`what` fields are at its top).
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.json.get(name)
    }

    pub fn text(&self, name: &str) -> Option<&str> {
        self.field(name).and_then(Value::as_str)
    }

    /// Whether this is a refusal (a violation), as opposed to activity.
    pub fn is_violation(&self) -> bool {
        self.kind.ends_with("_denied")
    }
}
