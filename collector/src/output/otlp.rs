//! OpenTelemetry logs over OTLP/HTTP: `POST <url>/v1/logs`, an `ExportLogsServiceRequest`
//! in protobuf, built from the OpenTelemetry project's own generated messages
//! (`opentelemetry-proto`) and encoded with prost.
//!
//! The mapping to the log data model: one `ResourceLogs` per host (`service.name` =
//! `cordon`, `host.name`), one scope (`cordon-collector` and its version), a `LogRecord` per
//! event: its time (`time_unix_nano`), when the collector sent it
//! (`observed_time_unix_nano`), its severity as a number (info `INFO`, low `INFO2`, medium
//! `WARN`, high `ERROR`, critical `FATAL`) and in words (`severity_text`), its summary as
//! the body, `event_name` `cordon.<kind>`, and attributes by their semantic-convention names
//! where there is one (`log.record.uid` the event's id, `process.pid`,
//! `process.parent_pid`, `process.executable.name`/`.path`, `process.user.id`,
//! `file.path`, `server.address`/`server.port`/`network.transport`,
//! `dns.question.name`), `cordon.*` for the rest.

use std::collections::BTreeMap;

use cordon_proto::event::Severity;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;

use super::record::Record;
use super::request::{configured, excerpt, Request};
use super::{Delivered, SendError};

pub fn request(url: &str, headers: &BTreeMap<String, String>, batch: &[Record]) -> Request {
    Request {
        url: url.to_string(),
        content_type: "application/x-protobuf",
        headers: configured(headers),
        body: export(batch).encode_to_vec(),
    }
}

/// The batch as one export request.
pub fn export(batch: &[Record]) -> ExportLogsServiceRequest {
    let observed = u64::try_from(crate::clock::now_ns()).unwrap_or(0);
    let mut by_host: BTreeMap<&str, Vec<LogRecord>> = BTreeMap::new();
    for e in batch {
        by_host
            .entry(&e.host)
            .or_default()
            .push(record(e, observed));
    }
    ExportLogsServiceRequest {
        resource_logs: by_host
            .into_iter()
            .map(|(host, log_records)| ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", "cordon"), kv("host.name", host)],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "cordon-collector".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    log_records,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

fn record(e: &Record, observed: u64) -> LogRecord {
    let severity = match e.severity {
        Severity::Info => SeverityNumber::Info,
        Severity::Low => SeverityNumber::Info2,
        Severity::Medium => SeverityNumber::Warn,
        Severity::High => SeverityNumber::Error,
        Severity::Critical => SeverityNumber::Fatal,
    };
    let mut attributes = vec![
        kv("log.record.uid", &e.id),
        kv("cordon.kind", &e.kind),
        kv("cordon.sandbox", &e.sandbox),
        kv("cordon.profile", e.profile()),
        attr("cordon.enforced", any_value::Value::BoolValue(e.enforced())),
    ];
    if let Some(s) = &e.session {
        attributes.push(kv("cordon.session", s));
    }
    if let Some(p) = e.process() {
        attributes.push(int("process.pid", p.pid.into()));
        attributes.push(int("process.parent_pid", p.ppid.into()));
        attributes.push(kv("process.executable.name", &p.comm));
        if let Some(exe) = &p.exe {
            attributes.push(kv("process.executable.path", exe));
        }
        attributes.push(int("process.user.id", p.uid.into()));
    }
    let mut add = |key: &str, name: &str| {
        if let Some(v) = e.text(name) {
            attributes.push(kv(key, v));
        }
    };
    match e.kind.as_str() {
        "file_denied" => {
            add("file.path", "path");
            add("cordon.access", "access");
            add("cordon.layer", "layer");
            add("cordon.rule", "rule");
        }
        "network_denied" => {
            add("server.address", "address");
            add("cordon.domain", "domain");
            add("cordon.reason", "reason");
            if let Some(t) = e.text("protocol").filter(|p| *p != "other") {
                attributes.push(kv("network.transport", t));
            }
            if let Some(port) = e.field("port").and_then(serde_json::Value::as_i64) {
                attributes.push(int("server.port", port));
            }
        }
        "dns_denied" => {
            add("dns.question.name", "domain");
            add("cordon.query_type", "query_type");
            add("cordon.reason", "reason");
        }
        "syscall_denied" => add("cordon.syscall", "syscall"),
        "exec" => add("cordon.filename", "filename"),
        _ => {}
    }
    LogRecord {
        time_unix_nano: u64::try_from(e.time_ns).unwrap_or(0),
        observed_time_unix_nano: observed,
        severity_number: severity as i32,
        severity_text: e.severity.as_str().to_string(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(e.summary())),
        }),
        attributes,
        event_name: format!("cordon.{}", e.kind),
        ..Default::default()
    }
}

fn attr(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn kv(key: &str, value: &str) -> KeyValue {
    attr(key, any_value::Value::StringValue(value.into()))
}

fn int(key: &str, value: i64) -> KeyValue {
    attr(key, any_value::Value::IntValue(value))
}

/// A success may still say some records were rejected (`partial_success`): those are
/// counted and passed, as the specification says a client must not send them again.
pub fn answer(destination: &str, body: &[u8]) -> Result<Delivered, SendError> {
    let reply = ExportLogsServiceResponse::decode(body).map_err(|e| SendError::Garbled {
        destination: destination.into(),
        message: format!("{e}: {}", excerpt(body)),
    })?;
    let rejected = reply
        .partial_success
        .map_or(0, |p| u64::try_from(p.rejected_log_records).unwrap_or(0));
    Ok(Delivered { rejected })
}
