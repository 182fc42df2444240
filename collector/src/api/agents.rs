//! What hosts call: the ingest of event batches and the poll for commands.

use std::io::Read as _;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use std::time::SystemTime;

use cordon_proto::collector::{ErrorCode, IngestReply, Poll, PollReply, PROTOCOL_VERSION};

use super::{authorize, authorize_host, parse_json, ApiError, App};
use crate::auth::Role;
use crate::config::Config;
use crate::ingest::{self, RawBatch};

/// The longest a poll may wait for a command.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// The most bytes of a poll (a host's sandboxes and results).
const MAX_POLL_BYTES: usize = 4 << 20;
/// The most command results one poll reports (each was a command delivered to the host).
const MAX_RESULTS: usize = 1000;

/// `POST /api/v1/events`: a host's batch. Each event is read on its own (see
/// [`crate::ingest`]): the ones the collector cannot take are set aside and named in the
/// reply, the rest stored in one transaction. The batch as a whole is refused only when it is
/// not a batch (with a [`ErrorCode`] that tells the host whether splitting it would help).
pub async fn ingest(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let host = authorize_host(&app, &headers).await?;
    let limit = app.config.max_body_bytes;
    let raw = read_raw(body, limit, app.config.body_timeout).await?;
    // Inflating, parsing and admitting a batch is CPU work of up to `max_body_bytes`: done
    // off the async threads (which keep serving everyone else), a few batches at a time; the
    // permit is held until the batch is stored, which bounds the memory of batches in flight
    // too.
    let _permit = app
        .work
        .acquire()
        .await
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "stopping"))?;
    let (config, who) = (app.config.clone(), host.clone());
    let admitted = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let raw = decode(&raw, &headers, limit)?;
        read_batch(&raw, &who, &config)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    if let Some(first) = admitted.set_aside.first() {
        // One line a batch, however many it set aside.
        tracing::warn!(
            "host {host:?}: {} event(s) of a batch set aside; the first, event {} ({:?}): {}: {:?}",
            admitted.set_aside.len(),
            first.rejected.index,
            first.rejected.id,
            first.rejected.reason.as_str(),
            first.rejected.detail
        );
    }
    for aside in &admitted.set_aside {
        app.metrics.rejected(aside.rejected.reason);
    }
    let started = std::time::Instant::now();
    let stored = app
        .store
        .insert_events(&host, &admitted.events, &admitted.set_aside)
        .await?;
    app.metrics.stored(stored.len(), started.elapsed());
    let reply = IngestReply {
        stored: stored.len(),
        duplicates: admitted.events.len() - stored.len(),
        rejected: admitted.set_aside.into_iter().map(|a| a.rejected).collect(),
        truncated: admitted.truncated,
    };
    app.hub.stored(&stored);
    Ok(Json(reply).into_response())
}

/// The batch in `raw` from `host`, its events admitted (see [`crate::ingest`]), or why the
/// batch as a whole is refused.
fn read_batch(raw: &[u8], host: &str, config: &Config) -> Result<ingest::Admitted, ApiError> {
    let batch: RawBatch = serde_json::from_slice(raw).map_err(|e| {
        ApiError::bad_request(format!("malformed batch: {e}")).code(ErrorCode::MalformedBatch)
    })?;
    if batch.v != PROTOCOL_VERSION {
        return Err(ApiError::bad_request(format!(
            "batch version {} is not supported (this collector reads {PROTOCOL_VERSION})",
            batch.v
        ))
        .code(ErrorCode::BatchVersion));
    }
    if batch.host != host {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("this token speaks for host {host:?}, not {:?}", batch.host),
        ));
    }
    if batch.events.len() > config.max_batch_events {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the batch has {} events; at most {} are taken at once",
                batch.events.len(),
                config.max_batch_events
            ),
        )
        .code(ErrorCode::TooManyEvents));
    }
    let limits = ingest::Limits {
        max_event_bytes: config.max_event_bytes,
        clock_skew: config.clock_skew,
    };
    Ok(ingest::admit(&batch.events, SystemTime::now(), limits))
}

/// The body, decompressed when it says it is gzip, refused with 413 past `limit` bytes
/// either way (a small body can inflate to a huge one). The whole body must arrive within
/// `timeout` (a client that trickles it is cut off).
pub async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<u8>, ApiError> {
    decode(&read_raw(body, limit, timeout).await?, headers, limit)
}

/// The body as sent, refused past `limit` bytes or `timeout`.
async fn read_raw(body: Body, limit: usize, timeout: Duration) -> Result<Bytes, ApiError> {
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(read) => read.map_err(|_| too_big(limit)),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {}",
                humantime::format_duration(timeout)
            ),
        )),
    }
}

fn too_big(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is over {limit} bytes"),
    )
    .code(ErrorCode::BodyTooLarge)
}

/// `bytes` decompressed when the headers say gzip, at most `limit` bytes of it.
fn decode(bytes: &[u8], headers: &HeaderMap, limit: usize) -> Result<Vec<u8>, ApiError> {
    let encoding = headers
        .get(axum::http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity");
    match encoding {
        "identity" => Ok(bytes.to_vec()),
        "gzip" => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(bytes)
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| {
                    ApiError::bad_request(format!("the gzip body is damaged: {e}"))
                        .code(ErrorCode::MalformedBatch)
                })?;
            if out.len() > limit {
                return Err(too_big(limit));
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
    let token = authorize(&app, &headers, Role::Host).await?;
    let host = super::host_of(&token)?;
    // Told at once when the token is revoked while the poll waits.
    let mut revoked = app.revocations.subscribe();
    let raw = read_body(body, &headers, MAX_POLL_BYTES, app.config.body_timeout).await?;
    // Revoked before the subscription above: seen now.
    if !app.store.token_is_live(&token.id).await? {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unknown or revoked token",
        ));
    }
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
    if poll.results.len() > MAX_RESULTS {
        tracing::warn!(
            "{host} reported {} command results at once; the first {MAX_RESULTS} are taken",
            poll.results.len()
        );
    }
    for result in poll.results.iter().take(MAX_RESULTS) {
        if !app.store.finish_command(&host, result).await? {
            tracing::warn!(
                "{host} reported command {:?} which was not waiting for a result",
                result.id
            );
        }
    }
    app.store.report_host(&host, &poll.sandboxes).await?;
    // Answered before the connection would count as idle.
    let longest = MAX_WAIT.min(
        app.config
            .idle_timeout
            .saturating_sub(Duration::from_secs(5)),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(params.wait).min(longest);
    let bell = app.hub.bell(&host);
    loop {
        // Listen before looking, so a command queued in between still rings.
        let rung = bell.notified();
        tokio::pin!(rung);
        rung.as_mut().enable();
        let commands = app.store.deliver_commands(&host, &token.id).await?;
        if !commands.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(Json(PollReply { commands }).into_response());
        }
        tokio::select! {
            () = rung => {}
            () = tokio::time::sleep_until(deadline) => {}
            gone = revoked.recv() => match gone {
                Ok(id) if id != token.id => {}
                // This token, or revocations missed: the store says which.
                _ if app.store.token_is_live(&token.id).await? => {}
                _ => return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "the token was revoked",
                )),
            },
        }
    }
}
