//! What viewers read: events (filtered, paged by cursor), the live stream, hosts and their
//! sandboxes.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::{BroadcastStream, IntervalStream};
use tokio_stream::StreamExt as _;

use super::{authorize, ApiError, App};
use crate::auth::Role;
use crate::store::{self, Filter, StoredEvent};
use cordon_proto::event::What;

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
    /// RFC 3339 time, or an age (`1h`: an hour ago).
    since: Option<String>,
    until: Option<String>,
    /// Free text in the path, domain, address, syscall or program.
    q: Option<String>,
    /// `desc` (newest first, the default) or `asc`.
    order: Option<String>,
    limit: Option<usize>,
    /// The `next` of the previous page.
    cursor: Option<String>,
}

impl EventParams {
    fn filter(self) -> Result<Filter, ApiError> {
        let oldest_first = match self.order.as_deref() {
            None | Some("desc") => false,
            Some("asc") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "order: {other:?} is neither asc nor desc"
                )))
            }
        };
        let cursor = match self.cursor {
            None => None,
            Some(c) => Some(parse_cursor(&c).ok_or_else(|| {
                ApiError::bad_request("cursor: not one this collector handed out")
            })?),
        };
        let nonempty = |v: Option<String>| v.filter(|s| !s.is_empty());
        Ok(Filter {
            host: nonempty(self.host),
            sandbox: nonempty(self.sandbox),
            profile: nonempty(self.profile),
            kinds: kinds(self.kind)?,
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
            oldest_first,
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

/// An RFC 3339 time or an age before now, in ns since the epoch.
pub fn parse_time(name: &str, text: &str) -> Result<i64, ApiError> {
    if let Ok(t) = humantime::parse_rfc3339_weak(text) {
        return Ok(store::ns(t));
    }
    match humantime::parse_duration(text) {
        Ok(age) => Ok(store::ns(
            SystemTime::now()
                .checked_sub(age)
                .unwrap_or(SystemTime::UNIX_EPOCH),
        )),
        Err(_) => Err(ApiError::bad_request(format!(
            "{name}: {text:?} is neither an RFC 3339 time nor an age like \"1h\""
        ))),
    }
}

fn parse_cursor(text: &str) -> Option<(i64, i64)> {
    let (time, seq) = text.split_once('.')?;
    Some((time.parse().ok()?, seq.parse().ok()?))
}

/// An event as the API shows it: its own JSON with `seq` and `host` in front.
fn render(event: &StoredEvent) -> String {
    let host = serde_json::to_string(&event.host).unwrap_or_else(|_| "\"\"".into());
    match event.body.strip_prefix('{') {
        Some(rest) if rest.starts_with('}') => format!("{{\"seq\":{},\"host\":{host}}}", event.seq),
        Some(rest) => format!("{{\"seq\":{},\"host\":{host},{rest}", event.seq),
        None => format!("{{\"seq\":{},\"host\":{host}}}", event.seq),
    }
}

/// `GET /api/v1/events`: `{"events": [...], "next": CURSOR|null}`.
pub async fn events(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(params): Query<EventParams>,
) -> Result<Response, ApiError> {
    authorize(&app, &headers, Role::Viewer).await?;
    let filter = params.filter()?;
    let page = app.store.events(&filter).await?;
    let next = match page.last() {
        Some(last) if page.len() == filter.limit => format!("\"{}.{}\"", last.time_ns, last.seq),
        _ => "null".into(),
    };
    let mut body = String::from("{\"events\":[");
    for (i, event) in page.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&render(event));
    }
    body.push_str("],\"next\":");
    body.push_str(&next);
    body.push('}');
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamParams {
    host: Option<String>,
    sandbox: Option<String>,
    kind: Option<String>,
}

/// `GET /api/v1/stream`: Server-Sent Events, one `event` per stored event (its `id` is the
/// event's `seq`; a client that reconnects with `Last-Event-ID` gets what it missed, up to
/// 10000 events). A client too slow to keep up gets an `event: lost` with how many it missed.
/// The stream ends within seconds of its token's revocation.
pub async fn stream(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(params): Query<StreamParams>,
) -> Result<Response, ApiError> {
    let token = authorize(&app, &headers, Role::Viewer).await?;
    let kinds = kinds(params.kind)?;
    let (host, sandbox) = (params.host, params.sandbox);
    let wanted = move |e: &StoredEvent| -> bool {
        host.as_ref().is_none_or(|h| *h == e.host)
            && (sandbox.is_none() && kinds.is_empty() || {
                // sandbox and kind are inside the event's JSON.
                let v: serde_json::Value = serde_json::from_str(&e.body).unwrap_or_default();
                sandbox.as_ref().is_none_or(|s| v["sandbox"] == *s.as_str())
                    && (kinds.is_empty() || kinds.iter().any(|k| v["kind"] == *k.as_str()))
            })
    };
    // Subscribe first, then replay: nothing falls between the two.
    let live = BroadcastStream::new(app.live.subscribe());
    let last_seen: Option<i64> = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let missed = match last_seen {
        Some(seq) => app.store.events_after(seq, 10_000).await?,
        None => Vec::new(),
    };
    if missed.len() == 10_000 {
        tracing::info!("a stream resumed after {last_seen:?} is given the first 10000 it missed");
    }
    let replayed_to = missed.last().map(|e| e.seq).or(last_seen).unwrap_or(0);
    let wanted = Arc::new(wanted);
    let w = Arc::clone(&wanted);
    let replay = tokio_stream::iter(
        missed
            .into_iter()
            .filter(move |e| w(e))
            .map(|e| Ok(sse(&e))),
    );
    let live = live.filter_map(move |item| match item {
        Ok(e) if e.seq > replayed_to && wanted(&e) => Some(Ok::<_, Infallible>(sse(&e))),
        Ok(_) => None,
        Err(BroadcastStreamRecvError::Lagged(n)) => Some(Ok(SseEvent::default()
            .event("lost")
            .data(format!("{{\"missed\":{n}}}")))),
    });
    let revoked = watch_revocation(&app, token.id);
    let ticks = IntervalStream::new(tokio::time::interval(Duration::from_secs(1)))
        .map(move |_| Err(revoked.load(Ordering::Relaxed)));
    // Events pass; a tick ends the stream once the token is revoked.
    let events = replay
        .chain(live)
        .map(Ok)
        .merge(ticks)
        .take_while(|item| !matches!(item, Err(true)))
        .filter_map(Result::ok);
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// A flag set once the token `id` is revoked (or can no longer be checked: a stream fails
/// closed), checked every 5 s for as long as somebody holds the flag.
fn watch_revocation(app: &App, id: String) -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let weak = Arc::downgrade(&flag);
    let store = app.store.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let Some(flag) = weak.upgrade() else { return };
            if !matches!(store.token_is_live(&id).await, Ok(true)) {
                flag.store(true, Ordering::Relaxed);
                return;
            }
        }
    });
    flag
}

fn sse(event: &StoredEvent) -> SseEvent {
    SseEvent::default()
        .id(event.seq.to_string())
        .data(render(event))
}

/// `GET /api/v1/hosts`: every host, whether it polls, and its sandboxes as it last reported.
pub async fn hosts(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&app, &headers, Role::Viewer).await?;
    let now = store::now_ns();
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
