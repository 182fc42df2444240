//! What viewers read: events (filtered, paged by cursor), the live stream, hosts and their
//! sandboxes.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use tokio::sync::broadcast;

use super::{authorize, ApiError, App};
use crate::auth::Role;
use crate::hub::{render, LiveEvent};
use crate::metrics::Refusal;
use crate::store::{Cursor, Filter, Order, StoredEvent};
use cordon_proto::event::{Severity, What};

/// A host that has not polled for this long is shown as offline.
const ONLINE_WITHIN: Duration = Duration::from_secs(90);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventParams {
    host: Option<String>,
    sandbox: Option<String>,
    profile: Option<String>,
    /// One kind, or several separated by commas.
    kind: Option<String>,
    /// Events of this severity or higher (`info`, `low`, `medium`, `high`, `critical`).
    severity: Option<String>,
    /// One session's events (its UUID).
    session: Option<String>,
    /// RFC 3339 time, or an age (`1h`: an hour ago).
    since: Option<String>,
    until: Option<String>,
    /// Free text in the path, domain, address, syscall or program.
    q: Option<String>,
    /// `desc` (newest first, the default), `asc`, or `severity` (most severe first, newest
    /// first among equals).
    order: Option<String>,
    limit: Option<usize>,
    /// The `next` of the previous page.
    cursor: Option<String>,
    /// `json` (the default: `{"events": [...], "next": ...}`), `jsonl` (an event per line)
    /// or `csv` (a row per event, `Event::TABLE_COLUMNS` after `host`); for the last two the
    /// next page's cursor is in the `X-Next-Cursor` header.
    format: Option<String>,
    /// For a histogram only, instead of the four above: about how many buckets (default 60,
    /// at most 500), each as wide as the first of [`BUCKET_WIDTHS`] that covers the range in
    /// that many.
    buckets: Option<usize>,
}

impl EventParams {
    fn filter(self) -> Result<Filter, ApiError> {
        let order = match self.order.as_deref() {
            None | Some("desc") => Order::NewestFirst,
            Some("asc") => Order::OldestFirst,
            Some("severity") => Order::Severity,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "order: {other:?} is none of desc, asc, severity"
                )))
            }
        };
        let cursor = match self.cursor {
            None => None,
            Some(c) => Some(parse_cursor(&c, order).ok_or_else(|| {
                ApiError::bad_request("cursor: not one this collector handed out for this order")
            })?),
        };
        // (A NUL cannot be in a stored column: see `ingest::clean`.)
        let nonempty = |v: Option<String>| {
            v.filter(|s| !s.is_empty())
                .map(|s| crate::ingest::clean(&s))
        };
        Ok(Filter {
            host: nonempty(self.host),
            sandbox: nonempty(self.sandbox),
            profile: nonempty(self.profile),
            kinds: kinds(self.kind)?,
            severity_at_least: severity(self.severity)?.map(|s| s as i64),
            session: session(self.session)?,
            since_ns: self
                .since
                .as_deref()
                .map(|t| parse_time("since", t))
                .transpose()?,
            until_ns: self
                .until
                .as_deref()
                .map(|t| parse_time("until", t))
                .transpose()?,
            text: nonempty(self.q),
            cursor,
            order,
            limit: self.limit.unwrap_or(100).clamp(1, 1000),
        })
    }
}

/// A comma-separated list of kinds, each one the event schema names.
fn kinds(text: Option<String>) -> Result<Vec<String>, ApiError> {
    let mut out: Vec<String> = Vec::new();
    for kind in text.iter().flat_map(|t| t.split(',')).map(str::trim) {
        if kind.is_empty() || out.iter().any(|k| k == kind) {
            continue;
        }
        if !What::KINDS.contains(&kind) {
            return Err(ApiError::bad_request(format!(
                "kind: {kind:?} is not one of {}",
                What::KINDS.join(", ")
            )));
        }
        out.push(kind.to_string());
    }
    Ok(out)
}

/// The least severity asked for, if any.
fn severity(text: Option<String>) -> Result<Option<Severity>, ApiError> {
    text.filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<Severity>()
                .map_err(|e| ApiError::bad_request(format!("severity: {e}")))
        })
        .transpose()
}

/// A session's id, as the agents write it.
fn session(text: Option<String>) -> Result<Option<String>, ApiError> {
    text.filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<uuid::Uuid>()
                .map(|u| u.to_string())
                .map_err(|_| ApiError::bad_request(format!("session: {t:?} is not a UUID")))
        })
        .transpose()
}

/// An RFC 3339 time or an age before now, in ns since the epoch.
pub fn parse_time(name: &str, text: &str) -> Result<i64, ApiError> {
    if let Ok(t) = humantime::parse_rfc3339_weak(text) {
        return Ok(crate::clock::ns(t));
    }
    match humantime::parse_duration(text) {
        Ok(age) => Ok(crate::clock::ns(
            SystemTime::now()
                .checked_sub(age)
                .unwrap_or(SystemTime::UNIX_EPOCH),
        )),
        Err(_) => Err(ApiError::bad_request(format!(
            "{name}: {text:?} is neither an RFC 3339 time nor an age like \"1h\""
        ))),
    }
}

/// `TIME.SEQ`, or `SEVERITY.TIME.SEQ` for [`Order::Severity`].
fn parse_cursor(text: &str, order: Order) -> Option<Cursor> {
    let parts: Vec<i64> = text
        .split('.')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    match (order, parts.as_slice()) {
        (Order::Severity, [severity, time_ns, seq]) => Some(Cursor {
            severity: Some(*severity),
            time_ns: *time_ns,
            seq: *seq,
        }),
        (Order::NewestFirst | Order::OldestFirst, [time_ns, seq]) => Some(Cursor {
            severity: None,
            time_ns: *time_ns,
            seq: *seq,
        }),
        _ => None,
    }
}

/// A page of events as a file to keep: its next page's cursor in `X-Next-Cursor`.
fn export(body: String, content_type: &'static str, next: Option<String>) -> Response {
    let mut response = ([(axum::http::header::CONTENT_TYPE, content_type)], body).into_response();
    if let Some(next) = next.and_then(|n| axum::http::HeaderValue::from_str(&n).ok()) {
        response.headers_mut().insert("x-next-cursor", next);
    }
    response
}

/// The events as CSV: `host`, then [`cordon_proto::event::Event::TABLE_COLUMNS`], every cell
/// spreadsheet-safe (see [`cordon_proto::event::spreadsheet_safe`]).
fn csv_of(page: &[StoredEvent]) -> Result<String, ApiError> {
    let mut out = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["host"];
    header.extend(cordon_proto::event::Event::TABLE_COLUMNS);
    let failed = |e: csv::Error| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot write CSV: {e}"),
        )
    };
    out.write_record(&header).map_err(failed)?;
    for stored in page {
        let row = match serde_json::from_str::<cordon_proto::event::Event>(&stored.body) {
            Ok(event) => event.table_row(),
            // Stored events were read as events when they came: none should land here.
            Err(_) => vec![String::new(); cordon_proto::event::Event::TABLE_COLUMNS.len()],
        };
        let mut record = vec![cordon_proto::event::spreadsheet_safe(stored.host.clone())];
        record.extend(row);
        out.write_record(&record).map_err(failed)?;
    }
    let bytes = out.into_inner().map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot write CSV: {e}"),
        )
    })?;
    String::from_utf8(bytes).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("CSV not UTF-8: {e}"),
        )
    })
}

/// `GET /api/v1/events`: `{"events": [...], "next": CURSOR|null}`; pass `next` back as
/// `cursor` for the following page. A page ends early, `next` set, once its events pass
/// `max_response_bytes`.
pub async fn events(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(params): Query<EventParams>,
) -> Result<Response, ApiError> {
    authorize(&app, &headers, Role::Viewer).await?;
    if params.buckets.is_some() {
        return Err(ApiError::bad_request(
            "buckets: for /api/v1/events/histogram only",
        ));
    }
    let format = params.format.clone();
    let filter = params.filter()?;
    let max_bytes = app.config.max_response_bytes;
    let page = app.store.events(&filter, max_bytes).await?;
    let full =
        page.len() == filter.limit || page.iter().map(|e| e.body.len()).sum::<usize>() >= max_bytes;
    let next_cursor = match page.last() {
        Some(last) if full && filter.order == Order::Severity => {
            Some(format!("{}.{}.{}", last.severity, last.time_ns, last.seq))
        }
        Some(last) if full => Some(format!("{}.{}", last.time_ns, last.seq)),
        _ => None,
    };
    match format.as_deref() {
        None | Some("json") => {}
        Some("jsonl") => {
            let body: String = page.iter().map(|e| render(e) + "\n").collect();
            return Ok(export(body, "application/x-ndjson", next_cursor));
        }
        Some("csv") => {
            return Ok(export(
                csv_of(&page)?,
                "text/csv; charset=utf-8",
                next_cursor,
            ))
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "format: {other:?} is none of json, jsonl, csv"
            )))
        }
    }
    // The way back: the first event's cursor, for the opposite order (time orders only).
    let prev_cursor = match page.first() {
        Some(first) if filter.order != Order::Severity => {
            Some(format!("{}.{}", first.time_ns, first.seq))
        }
        _ => None,
    };
    let quoted = |c: Option<String>| c.map_or_else(|| "null".into(), |c| format!("\"{c}\""));
    let mut body = String::from("{\"events\":[");
    for (i, event) in page.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&render(event));
    }
    body.push_str("],\"next\":");
    body.push_str(&quoted(next_cursor));
    body.push_str(",\"prev\":");
    body.push_str(&quoted(prev_cursor));
    body.push('}');
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// The widths a histogram's buckets may have, in seconds: ones a clock reads at a glance.
const BUCKET_WIDTHS: [i64; 22] = [
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
    172_800, 604_800, 1_209_600, 2_592_000,
];

/// `GET /api/v1/events/histogram`: how many events match (the filters of `GET
/// /api/v1/events`) in each bucket of time, by severity:
/// `{"since","until","bucket_seconds","total","buckets":[{"start","count","severity":{..}}]}`.
/// Every bucket of the range is there, the empty ones with a count of 0. The buckets start
/// on a multiple of their width (UTC), so `since` may be a little before the one asked for.
pub async fn histogram(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(params): Query<EventParams>,
) -> Result<Response, ApiError> {
    authorize(&app, &headers, Role::Viewer).await?;
    if params.order.is_some()
        || params.limit.is_some()
        || params.cursor.is_some()
        || params.format.is_some()
    {
        return Err(ApiError::bad_request(
            "order, limit, cursor, format: not for a histogram (every bucket is counted)",
        ));
    }
    let until = match params.until.as_deref() {
        Some(t) => parse_time("until", t)?,
        None => crate::clock::now_ns(),
    };
    // The last day unless asked otherwise.
    let since = parse_time("since", params.since.as_deref().unwrap_or("1day"))?;
    if since >= until {
        return Err(ApiError::bad_request("since: not before until"));
    }
    let buckets = params.buckets.unwrap_or(60).clamp(1, 500) as i64;
    let wanted = ceil_div(until - since, buckets);
    let width = BUCKET_WIDTHS
        .iter()
        .map(|s| s * 1_000_000_000)
        .find(|w| *w >= wanted)
        .unwrap_or_else(|| ceil_div(wanted, 86_400_000_000_000) * 86_400_000_000_000);
    let start = since - since.rem_euclid(width);
    let count = ceil_div(until - start, width);
    let mut filter = params.filter()?;
    filter.since_ns = Some(start);
    filter.until_ns = Some(start + count * width);
    let rows = app.store.histogram(&filter, start, width).await?;
    let rfc3339 = |ns: i64| {
        let at = SystemTime::UNIX_EPOCH + Duration::from_nanos(u64::try_from(ns).unwrap_or(0));
        humantime::format_rfc3339_seconds(at).to_string()
    };
    let mut out: Vec<serde_json::Value> = (0..count)
        .map(|i| {
            serde_json::json!({
                "start": rfc3339(start + i * width),
                "count": 0,
                "severity": {},
            })
        })
        .collect();
    let mut total = 0;
    for row in rows {
        let Some(bucket) = usize::try_from(row.index).ok().and_then(|i| out.get_mut(i)) else {
            continue;
        };
        let level = usize::try_from(row.severity)
            .ok()
            .and_then(|s| Severity::ALL.get(s))
            .map_or("info", |s| s.as_str());
        bucket["count"] = (bucket["count"].as_i64().unwrap_or(0) + row.count).into();
        bucket["severity"][level] = row.count.into();
        total += row.count;
    }
    Ok(Json(serde_json::json!({
        "since": rfc3339(start),
        "until": rfc3339(start + count * width),
        "bucket_seconds": width / 1_000_000_000,
        "total": total,
        "buckets": out,
    }))
    .into_response())
}

/// `a / b` rounded up, for positive `a` and `b`.
fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamParams {
    host: Option<String>,
    sandbox: Option<String>,
    kind: Option<String>,
    /// Events of this severity or higher.
    severity: Option<String>,
}

/// `GET /api/v1/stream`: Server-Sent Events, one `event` per stored event (its `id` is the
/// event's `seq`; a client that reconnects with `Last-Event-ID` gets what it missed, a page
/// of [`REPLAY_PAGE`] at a time: past one page, the stream ends after `event: replay` with the
/// id to reconnect from). A client too slow to keep up is sent `event: lost` and the stream ends (it
/// may reconnect with `Last-Event-ID`): the collector never waits for it. At most
/// `max_streams` streams, `max_streams_per_token` per token (429 past either). The stream
/// ends at once when its token is revoked.
pub async fn stream(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(params): Query<StreamParams>,
) -> Result<Response, ApiError> {
    let token = authorize(&app, &headers, Role::Viewer).await?;
    let kinds = kinds(params.kind)?;
    let least = severity(params.severity)?.map_or(0, |s| s as i64);
    let slot = app.open_stream(&token.id)?;
    let (host, sandbox) = (params.host, params.sandbox);
    let wanted = move |host_: &str, sandbox_: &str, kind: &str, severity: i64| -> bool {
        host.as_ref().is_none_or(|h| h == host_)
            && sandbox.as_ref().is_none_or(|s| s == sandbox_)
            && (kinds.is_empty() || kinds.iter().any(|k| k == kind))
            && severity >= least
    };
    // Subscribe first, then replay: nothing falls between the two.
    let live = app.hub.subscribe();
    let revoked = app.revocations.subscribe();
    // Revoked between the check above and the subscription: seen now.
    if !app.store.token_is_live(&token.id).await? {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unknown or revoked token",
        ));
    }
    let last_seen: Option<i64> = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let missed = match last_seen {
        Some(seq) => {
            app.store
                .events_after(seq, REPLAY_PAGE, STREAM_BACKLOG_BYTES / 2)
                .await?
        }
        None => Vec::new(),
    };
    let replay_full = missed.len() == REPLAY_PAGE
        || missed.iter().map(|e| e.body.len()).sum::<usize>() >= STREAM_BACKLOG_BYTES / 2;
    // What the connection has not written yet, in events and bytes; past either, the client
    // is too slow. The stream's place under the limits goes with the connection's answer.
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(STREAM_BACKLOG + 1);
    let backlog = Arc::new(AtomicUsize::new(0));
    let feed = Feed {
        tx,
        backlog: Arc::clone(&backlog),
    };
    let body = tokio_stream::StreamExt::map(
        tokio_stream::wrappers::ReceiverStream::new(rx),
        move |frame| {
            let _slot = &slot;
            backlog.fetch_sub(frame.len(), Ordering::Relaxed);
            Ok::<_, Infallible>(frame)
        },
    );
    let answer = |body| {
        (
            [
                (axum::http::header::CONTENT_TYPE, "text/event-stream"),
                (axum::http::header::CACHE_CONTROL, "no-cache"),
            ],
            axum::body::Body::from_stream(body),
        )
            .into_response()
    };
    let mut replayed = std::collections::HashSet::with_capacity(missed.len());
    for event in &missed {
        replayed.insert(event.seq);
        if wanted(&event.host, &event.sandbox, &event.kind, event.severity) {
            // Cannot fail: the replay is at most half the backlog.
            feed.send(LiveEvent::of(event).frame);
        }
    }
    if replay_full {
        // More was missed than one page: this answer ends here, with the id to go on from
        // (even when no event of the page was wanted), and the client reconnects.
        let last = missed.last().map_or(0, |e| e.seq);
        feed.last_word(format!(
            "event: replay\nid: {last}\ndata: {{\"more\":true}}\n\n"
        ));
        return Ok(answer(body));
    }
    tokio::spawn(pump(
        Arc::clone(&app),
        feed,
        live,
        revoked,
        token.id,
        replayed,
        wanted,
    ));
    Ok(answer(body))
}

/// Feeds a stream the live events it wants until its client is gone or too slow (then it
/// ends with `event: lost`), or its token is revoked.
async fn pump(
    app: Arc<App>,
    feed: Feed,
    mut live: broadcast::Receiver<Arc<Vec<LiveEvent>>>,
    mut revoked: broadcast::Receiver<String>,
    token: String,
    replayed: std::collections::HashSet<i64>,
    wanted: impl Fn(&str, &str, &str, i64) -> bool,
) {
    // A keep-alive well within the idle timeout, so a quiet stream is not taken for a dead one.
    let mut keep_alive =
        tokio::time::interval(Duration::from_secs(15).min(app.config.idle_timeout / 2));
    keep_alive.tick().await;
    let too_slow = loop {
        tokio::select! {
            batch = live.recv() => match batch {
                Ok(batch) => {
                    // Batches may come out of order (each is sent once its own transaction
                    // committed): only what the replay sent is skipped.
                    let mut fresh = batch.iter().filter(|e| {
                        !replayed.contains(&e.seq) && wanted(&e.host, &e.sandbox, &e.kind, e.severity)
                    });
                    if !fresh.all(|event| feed.send(event.frame.clone())) {
                        break true;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => break true,
                Err(broadcast::error::RecvError::Closed) => break false,
            },
            gone = revoked.recv() => match gone {
                Ok(id) if id != token => {}
                // This token, or revocations missed: the store says which.
                _ if matches!(app.store.token_is_live(&token).await, Ok(true)) => {}
                _ => break false,
            },
            _ = keep_alive.tick() => {
                if !feed.send(Bytes::from_static(b": keep-alive\n\n")) {
                    break true;
                }
            }
            () = feed.tx.closed() => break false,
        }
    };
    if too_slow {
        app.metrics.refused(Refusal::SlowStream);
        feed.last_word(LOST.into());
    }
}

/// The last word to a stream that fell behind: reconnect with the last id seen.
const LOST: &str = "event: lost\ndata: {\"reconnect\":true}\n\n";

/// The sending end of a stream: refuses a frame once the client has too much unread.
struct Feed {
    tx: tokio::sync::mpsc::Sender<Bytes>,
    /// Bytes sent and not yet taken by the connection.
    backlog: Arc<AtomicUsize>,
}

impl Feed {
    /// Queues `frame`; false when the client is too far behind (or gone). One place is
    /// always left for [`Feed::last_word`].
    fn send(&self, frame: Bytes) -> bool {
        if self.backlog.load(Ordering::Relaxed) + frame.len() > STREAM_BACKLOG_BYTES
            || self.tx.capacity() <= 1
        {
            return false;
        }
        self.backlog.fetch_add(frame.len(), Ordering::Relaxed);
        self.tx.try_send(frame).is_ok()
    }

    /// The frame a stream ends with, past every limit.
    fn last_word(&self, frame: String) {
        let frame = Bytes::from(frame);
        self.backlog.fetch_add(frame.len(), Ordering::Relaxed);
        let _ = self.tx.try_send(frame);
    }
}

/// Events a stream may have waiting to be written before its client counts as too slow.
const STREAM_BACKLOG: usize = 4096;
/// Bytes of events a stream may have waiting (events are up to `max_event_bytes` each).
const STREAM_BACKLOG_BYTES: usize = 4 << 20;
/// Missed events replayed at once to a stream that reconnects.
const REPLAY_PAGE: usize = STREAM_BACKLOG / 2;

/// `GET /api/v1/hosts`: every host, whether it polls, and its sandboxes as it last reported.
pub async fn hosts(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&app, &headers, Role::Viewer).await?;
    let now = crate::clock::now_ns();
    let within = i64::try_from(ONLINE_WITHIN.as_nanos()).unwrap_or(i64::MAX);
    let hosts: Vec<serde_json::Value> = app
        .store
        .hosts()
        .await?
        .into_iter()
        .map(|h| {
            let online = h.polled_ns.is_some_and(|p| now - p < within);
            let mut v = serde_json::to_value(&h).unwrap_or_default();
            v["online"] = online.into();
            v
        })
        .collect();
    Ok(Json(serde_json::json!({ "hosts": hosts })).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxParams {
    /// How far back to look for sandboxes in events (default a day).
    since: Option<String>,
}

/// `GET /api/v1/hosts/{host}/sandboxes`: `live` (as the host last reported) and `seen`
/// (named by its events since `since`).
pub async fn sandboxes(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(host): Path<String>,
    Query(params): Query<SandboxParams>,
) -> Result<Response, ApiError> {
    authorize(&app, &headers, Role::Viewer).await?;
    // The last day unless asked otherwise.
    let since = parse_time("since", params.since.as_deref().unwrap_or("1day"))?;
    let Some(row) = app
        .store
        .hosts()
        .await?
        .into_iter()
        .find(|h| h.name == host)
    else {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            format!("no host {host:?} has reported to this collector"),
        ));
    };
    let seen = app.store.sandboxes_seen(&host, since).await?;
    Ok(
        Json(serde_json::json!({ "host": host, "live": row.sandboxes, "seen": seen }))
            .into_response(),
    )
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectedParams {
    limit: Option<usize>,
}

/// `GET /api/v1/hosts/{host}/rejected`: the host's events the collector set aside, newest
/// first: when, why, and the start of what was sent.
pub async fn rejected(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(host): Path<String>,
    Query(params): Query<RejectedParams>,
) -> Result<Response, ApiError> {
    authorize(&app, &headers, Role::Viewer).await?;
    let limit = params.limit.unwrap_or(100).clamp(1, 1000);
    let rejected = app.store.rejected(Some(&host), limit).await?;
    Ok(Json(serde_json::json!({ "host": host, "rejected": rejected })).into_response())
}
