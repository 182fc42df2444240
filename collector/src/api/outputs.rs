//! `GET /api/v1/outputs`: each output's state, for the console and for people (viewer):
//! where it sends (without secrets), what it sends, how far it has got, and how it went.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::{authorize, ApiError, App};
use crate::auth::Role;
use crate::output::config::Filter;

#[derive(Serialize)]
struct OutputReply<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    kind: crate::output::Type,
    /// Scheme, host and port: a URL's path and credentials stay in the configuration.
    destination: String,
    filter: &'a Filter,
    /// Every event at or below this seq was delivered or filtered out; `null` until the
    /// output has read its cursor.
    cursor: Option<i64>,
    /// The newest event's seq.
    newest: i64,
    /// Stored events (by seq) past the cursor: how far behind the output is, at most.
    lag: i64,
    sent: u64,
    rejected: u64,
    failures: u64,
    /// When the receiver last took a batch (RFC 3339), since the collector started.
    last_success: Option<String>,
    /// The last failure since the last success.
    last_error: Option<ErrorReply>,
}

#[derive(Serialize)]
struct ErrorReply {
    time: String,
    message: String,
}

fn rfc3339(ns: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(u64::try_from(ns).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

pub async fn list(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&app, &headers, Role::Viewer).await?;
    let newest = app.store.newest_seq().await?;
    let outputs: Vec<OutputReply> = app
        .outputs
        .iter()
        .map(|s| {
            let cursor = s.cursor.load(Ordering::Relaxed);
            let cursor = (cursor >= 0).then_some(cursor);
            let last = s.last_success_ns.load(Ordering::Relaxed);
            OutputReply {
                name: &s.output.name,
                kind: s.output.kind,
                destination: s.output.destination(),
                filter: &s.output.filter,
                cursor,
                newest,
                lag: cursor.map_or(newest, |c| (newest - c).max(0)),
                sent: s.sent.load(Ordering::Relaxed),
                rejected: s.rejected.load(Ordering::Relaxed),
                failures: s.failures.load(Ordering::Relaxed),
                last_success: (last > 0).then(|| rfc3339(last)),
                last_error: s.last_error().map(|(ns, message)| ErrorReply {
                    time: rfc3339(ns),
                    message,
                }),
            }
        })
        .collect();
    Ok(Json(serde_json::json!({ "outputs": outputs })).into_response())
}
