//! What hosts call: the ingest of event batches and the poll for commands.

use std::io::Read as _;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use cordon_proto::collector::{Batch, Poll, PollReply, PROTOCOL_VERSION};
use cordon_proto::event::SCHEMA_VERSION;

use super::{authorize_host, parse_json, ApiError, App};

/// The longest a poll may wait for a command.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// The most bytes of a poll (a host's sandboxes and results).
const MAX_POLL_BYTES: usize = 4 << 20;

/// `POST /api/v1/events`: a host's batch, stored whole or not at all.
pub async fn ingest(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let host = authorize_host(&app, &headers).await?;
    let limit = app.config.max_body_bytes;
    let raw = read_body(body, &headers, limit).await?;
    // PostgreSQL's text holds no NUL: refused here for both stores, rather than a batch that
    // one store takes and the other fails on forever.
    if raw.windows(6).any(|w| w == br"\u0000") {
        return Err(ApiError::bad_request(
            "event text may not hold NUL (\\u0000)",
        ));
    }
    let batch: Batch = serde_json::from_slice(&raw)
        .map_err(|e| ApiError::bad_request(format!("malformed batch: {e}")))?;
    if batch.v != PROTOCOL_VERSION {
        return Err(ApiError::bad_request(format!(
            "batch version {} is not supported (this collector reads {PROTOCOL_VERSION})",
            batch.v
        )));
    }
    if batch.host != host {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("this token speaks for host {host:?}, not {:?}", batch.host),
        ));
    }
    if batch.events.len() > app.config.max_batch_events {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the batch has {} events; at most {} are taken at once",
                batch.events.len(),
                app.config.max_batch_events
            ),
        ));
    }
    if let Some((i, e)) = batch
        .events
        .iter()
        .enumerate()
        .find(|(_, e)| e.v != SCHEMA_VERSION)
    {
        return Err(ApiError::bad_request(format!(
            "event {i} ({}) has schema version {}; this collector reads {SCHEMA_VERSION}",
            e.id, e.v
        )));
    }
    let stored = app.store.insert_events(&batch.host, &batch.events).await?;
    let duplicates = batch.events.len() - stored.len();
    let count = stored.len();
    for event in stored {
        // No receiver is not an error: nobody is watching.
        let _ = app.live.send(Arc::new(event));
    }
    Ok(Json(serde_json::json!({ "stored": count, "duplicates": duplicates })).into_response())
}

/// The body, decompressed when it says it is gzip, refused with 413 past `limit` bytes
/// either way (a small body can inflate to a huge one).
pub async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Vec<u8>, ApiError> {
    let too_big = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is over {limit} bytes"),
        )
    };
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_big())?;
    let encoding = headers
        .get(axum::http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity");
    match encoding {
        "identity" => Ok(bytes.to_vec()),
        "gzip" => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| ApiError::bad_request(format!("the gzip body is damaged: {e}")))?;
            if out.len() > limit {
                return Err(too_big());
            }
            Ok(out)
        }
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content encoding {other:?} is not supported (gzip or none)"),
        )),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollParams {
    /// Seconds to wait for a command before answering with none.
    #[serde(default)]
    wait: u64,
}

/// `POST /api/v1/agent/poll`: takes the host's report and results, then answers with the
/// commands queued for it, waiting up to `wait` seconds for one.
pub async fn poll(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(params): Query<PollParams>,
    body: Body,
) -> Result<Response, ApiError> {
    let host = authorize_host(&app, &headers).await?;
    let raw = read_body(body, &headers, MAX_POLL_BYTES).await?;
    let poll: Poll = parse_json(&raw)?;
    if poll.v != PROTOCOL_VERSION {
        return Err(ApiError::bad_request(format!(
            "poll version {} is not supported (this collector reads {PROTOCOL_VERSION})",
            poll.v
        )));
    }
    if poll.host != host {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("this token speaks for host {host:?}, not {:?}", poll.host),
        ));
    }
    for result in &poll.results {
        if !app.store.finish_command(&host, result).await? {
            tracing::warn!(
                "{host} reported command {} which was not waiting for a result",
                result.id
            );
        }
    }
    app.store.report_host(&host, &poll.sandboxes).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(params.wait).min(MAX_WAIT);
    let bell = app.bell(&host);
    loop {
        // Listen before looking, so a command queued in between still rings.
        let rung = bell.notified();
        tokio::pin!(rung);
        rung.as_mut().enable();
        let commands = app.store.deliver_commands(&host).await?;
        if !commands.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(Json(PollReply { commands }).into_response());
        }
        tokio::select! {
            () = rung => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}
