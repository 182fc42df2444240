//! Elasticsearch and OpenSearch: `POST /_bulk`, NDJSON of a `create` action and its
//! document per event. The document's `_id` is the event's id, so a batch sent again (its
//! answer lost) adds nothing: the copies already there answer 409, which counts as
//! delivered. `create` is also what a data stream takes, and the default index,
//! `logs-cordon-default`, is one by Elastic's `logs-*-*` template. Fields have their ECS
//! names where ECS has one (`@timestamp`, `event.*`, `host.name`, `process.*`, `user.id`,
//! `file.path`, `destination.*`, `dns.question.*`); Cordon's own are under `cordon.*`.

use std::collections::BTreeMap;

use reqwest::header::AUTHORIZATION;
use serde_json::{json, Map, Value};

use super::config::Secret;
use super::record::Record;
use super::request::{configured, excerpt, Request};
use super::{Delivered, SendError};

/// The ECS version the documents follow.
pub const ECS_VERSION: &str = "8.11.0";

pub fn request(
    url: &str,
    index: &str,
    api_key: Option<&Secret>,
    headers: &BTreeMap<String, String>,
    batch: &[Record],
) -> Request {
    let mut body = Vec::new();
    for e in batch {
        let action = json!({ "create": { "_index": index, "_id": e.id } });
        let _ = serde_json::to_writer(&mut body, &action);
        body.push(b'\n');
        let _ = serde_json::to_writer(&mut body, &document(e));
        body.push(b'\n');
    }
    let mut headers = configured(headers);
    if let Some(key) = api_key {
        headers.push((
            AUTHORIZATION,
            super::request::value(&format!("ApiKey {}", key.0)),
        ));
    }
    Request {
        url: url.to_string(),
        content_type: "application/x-ndjson",
        headers,
        body,
    }
}

/// The event as an ECS document.
pub fn document(e: &Record) -> Value {
    let (category, kind_type): (&str, &[&str]) = match e.kind.as_str() {
        "file_denied" => ("file", &["access", "denied"]),
        "network_denied" => ("network", &["connection", "denied"]),
        "dns_denied" => ("network", &["protocol", "denied"]),
        "syscall_denied" | "other_denied" => ("process", &["denied"]),
        "exec" | "fork" => ("process", &["start"]),
        "exit" => ("process", &["end"]),
        "session_started" => ("session", &["start"]),
        "contained" | "responder_action" => ("host", &["change"]),
        _ => ("host", &["info"]),
    };
    let mut event = json!({
        "kind": if e.is_violation() || e.severity >= cordon_proto::event::Severity::High { "alert" } else { "event" },
        "category": [category],
        "type": kind_type,
        "action": e.kind,
        "id": e.id,
        "severity": e.severity as u8,
        "module": "cordon",
        "dataset": "cordon.events",
    });
    if e.is_violation() {
        event["outcome"] = json!(if e.enforced() { "failure" } else { "success" });
    }
    let mut doc = json!({
        "@timestamp": e.rfc3339(),
        "message": e.summary(),
        "ecs": { "version": ECS_VERSION },
        "event": event,
        "host": { "name": e.host },
        "log": { "level": e.severity.as_str() },
    });
    let mut cordon = Map::new();
    cordon.insert("sandbox".into(), json!(e.sandbox));
    cordon.insert("profile".into(), json!(e.profile()));
    cordon.insert("severity".into(), json!(e.severity.as_str()));
    cordon.insert("enforced".into(), json!(e.enforced()));
    if let Some(s) = &e.session {
        cordon.insert("session".into(), json!(s));
    }
    if let Some(p) = e.process() {
        let mut process = json!({ "pid": p.pid, "parent": { "pid": p.ppid }, "name": p.comm });
        if let Some(exe) = &p.exe {
            process["executable"] = json!(exe);
        }
        doc["process"] = process;
        doc["user"] = json!({ "id": p.uid.to_string() });
    }
    match e.kind.as_str() {
        "file_denied" => {
            doc["file"] = json!({ "path": e.text("path") });
            for k in ["access", "layer", "rule", "target"] {
                if let Some(v) = e.field(k) {
                    cordon.insert(k.into(), v.clone());
                }
            }
        }
        "network_denied" => {
            let mut destination = json!({ "ip": e.field("address"), "port": e.field("port") });
            if let Some(d) = e.text("domain") {
                destination["domain"] = json!(d);
            }
            doc["destination"] = destination;
            if let Some(p) = e.text("protocol").filter(|p| *p != "other") {
                doc["network"] = json!({ "transport": p });
            }
            if let Some(r) = e.field("reason") {
                cordon.insert("reason".into(), r.clone());
            }
        }
        "dns_denied" => {
            doc["dns"] =
                json!({ "question": { "name": e.text("domain"), "type": e.text("query_type") } });
            for k in ["reason", "address"] {
                if let Some(v) = e.field(k) {
                    cordon.insert(k.into(), v.clone());
                }
            }
        }
        "syscall_denied" => {
            for k in ["syscall", "nr", "errno"] {
                if let Some(v) = e.field(k) {
                    cordon.insert(k.into(), v.clone());
                }
            }
        }
        "exec" => {
            if let Some(f) = e.text("filename") {
                doc["process"]["executable"] = json!(f);
            }
        }
        _ => {
            // The rest of what happened, as the host said it.
            for (k, v) in &e.json {
                if !matches!(
                    k.as_str(),
                    "v" | "id"
                        | "time"
                        | "sandbox"
                        | "session"
                        | "profile"
                        | "process"
                        | "kind"
                        | "severity"
                        | "enforced"
                ) {
                    cordon.insert(k.clone(), v.clone());
                }
            }
        }
    }
    doc["cordon"] = Value::Object(cordon);
    doc
}

/// `_bulk` answers 200 whatever became of each document: `items` says. Created (201) or
/// already there (409, an event sent before) is delivered; 429 or a 5xx sends the batch
/// again; any other refusal (a document the index cannot take) is counted and passed.
pub fn answer(destination: &str, body: &[u8]) -> Result<Delivered, SendError> {
    let reply: Value = serde_json::from_slice(body).map_err(|e| SendError::Garbled {
        destination: destination.into(),
        message: format!("{e}: {}", excerpt(body)),
    })?;
    let Some(items) = reply["items"].as_array() else {
        return Err(SendError::Garbled {
            destination: destination.into(),
            message: format!("no items: {}", excerpt(body)),
        });
    };
    if reply["errors"].as_bool() == Some(false) {
        return Ok(Delivered::default());
    }
    let mut rejected = 0;
    for item in items {
        let result = item
            .as_object()
            .and_then(|o| o.values().next())
            .cloned()
            .unwrap_or_default();
        let status = result["status"].as_u64().unwrap_or(0);
        match status {
            200..=299 | 409 => {}
            429 | 500..=599 => {
                return Err(SendError::Refused {
                    destination: destination.into(),
                    status: status as u16,
                    body: excerpt(result["error"].to_string().as_bytes()),
                })
            }
            _ => {
                tracing::warn!(
                    "{destination} refused event {}: {}",
                    result["_id"],
                    excerpt(result["error"].to_string().as_bytes())
                );
                rejected += 1;
            }
        }
    }
    Ok(Delivered { rejected })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conflict_is_delivered_and_a_mapping_error_passed() {
        let body = br#"{"took":3,"errors":true,"items":[
            {"create":{"_id":"a","status":201}},
            {"create":{"_id":"b","status":409,"error":{"type":"version_conflict_engine_exception"}}},
            {"create":{"_id":"c","status":400,"error":{"type":"mapper_parsing_exception"}}}]}"#;
        assert_eq!(answer("es", body).unwrap(), Delivered { rejected: 1 });
        let busy = br#"{"errors":true,"items":[{"create":{"_id":"a","status":429}}]}"#;
        assert!(answer("es", busy).is_err());
        assert!(answer("es", b"<html>").is_err());
    }
}
