//! Splunk's HTTP Event Collector: `POST /services/collector/event` with
//! `Authorization: Splunk <token>`, the batch as event objects one after another, each with
//! its time (seconds, to the microsecond), host, source, sourcetype and index.

use reqwest::header::{HeaderName, AUTHORIZATION};
use serde_json::json;

use super::config::Secret;
use super::record::Record;
use super::request::{excerpt, Request};
use super::{Delivered, SendError};

pub fn request(
    url: &str,
    token: &Secret,
    index: Option<&str>,
    sourcetype: &str,
    source: &str,
    batch: &[Record],
) -> Request {
    let mut body = Vec::new();
    for e in batch {
        let mut event = json!({
            "time": (e.time_ns / 1_000) as f64 / 1e6,
            "host": e.host,
            "source": source,
            "sourcetype": sourcetype,
            "event": e.json_with_host(),
            // Indexed fields: searchable without reading the event.
            "fields": {
                "severity": e.severity.as_str(),
                "kind": e.kind,
                "sandbox": e.sandbox,
                "event_id": e.id,
            },
        });
        if let Some(index) = index {
            event["index"] = json!(index);
        }
        let _ = serde_json::to_writer(&mut body, &event);
        body.push(b'\n');
    }
    let auth: HeaderName = AUTHORIZATION;
    Request {
        url: url.to_string(),
        content_type: "application/json",
        headers: vec![(auth, super::request::value(&format!("Splunk {}", token.0)))],
        body,
    }
}

/// HEC answers `{"text":"Success","code":0}`; any other code is a failure.
pub fn answer(destination: &str, body: &[u8]) -> Result<Delivered, SendError> {
    let reply: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| SendError::Garbled {
            destination: destination.into(),
            message: format!("{e}: {}", excerpt(body)),
        })?;
    match reply["code"].as_i64() {
        Some(0) => Ok(Delivered::default()),
        _ => Err(SendError::Garbled {
            destination: destination.into(),
            message: format!("not a success: {}", excerpt(body)),
        }),
    }
}
