//! The collector's HTTP API and console. Who may call what:
//!
//! | endpoint | role |
//! |---|---|
//! | `POST /api/v1/events`, `POST /api/v1/agent/poll` ([`agents`]) | host |
//! | `GET /api/v1/events`, `/events/histogram`, `/stream`, `/hosts`, `/hosts/{host}/sandboxes`, `/hosts/{host}/rejected`, `/commands` ([`read`]) | viewer |
//! | `POST /api/v1/commands` ([`respond`]) | responder |
//! | `GET|POST /api/v1/tokens`, `DELETE /api/v1/tokens/{id}` | admin |
//! | `GET /api/v1/outputs` ([`outputs`]) | viewer |
//! | `GET /metrics` | viewer |
//! | `GET /`, `/console.js`, `/console.css` ([`console`]), `/healthz` | anyone |
//!
//! Every error is JSON, `{"error": "...", "code": "..."}` ([`ErrorReply`]), with a 4xx status
//! that says whose fault it is; [`json_errors`] makes it so for what axum itself refuses (an
//! unknown method, a malformed query) too.

mod agents;
pub use agents::read_body;
mod console;
mod evidence;
mod outputs;
mod read;
mod respond;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tokio::sync::broadcast;

use crate::hub::Hub;

use cordon_proto::collector::{ErrorCode, ErrorReply};

use crate::auth::{self, Role, TokenInfo};
use crate::config::Config;
use crate::metrics::{Metrics, Refusal};
use crate::store::Store;

/// What every request handler shares.
pub struct App {
    pub store: Store,
    pub config: Config,
    /// Each batch of events as it is stored, and the hosts waiting in a poll.
    pub hub: Arc<Hub>,
    /// The ids of tokens as they are revoked (here, or by `cordon-collector token revoke`,
    /// seen by [`watch_revocations`]): waiting polls and open streams end at once.
    pub revocations: broadcast::Sender<String>,
    pub metrics: Metrics,
    /// The outputs' states (`[[output]]`), in the configuration's order.
    pub outputs: Vec<Arc<crate::output::State>>,
    /// Batches being inflated, parsed and admitted at once (CPU and memory).
    pub work: tokio::sync::Semaphore,
    /// Open streams per token id.
    streams: Mutex<HashMap<String, usize>>,
}

impl App {
    pub fn new(store: Store, config: Config) -> Arc<Self> {
        let outputs = crate::output::states(&config.outputs);
        Arc::new(Self {
            store,
            config,
            hub: Arc::new(Hub::default()),
            revocations: broadcast::channel(256).0,
            metrics: Metrics::default(),
            outputs,
            work: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get() * 2),
            ),
            streams: Mutex::new(HashMap::new()),
        })
    }

    /// A place for one more stream of `token`, within both limits; given back on drop.
    pub fn open_stream(self: &Arc<Self>, token: &str) -> Result<StreamSlot, ApiError> {
        let mut streams = self
            .streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let total: usize = streams.values().sum();
        let refuse = |why: Refusal, message: String| {
            self.metrics.refused(why);
            Err(ApiError::new(StatusCode::TOO_MANY_REQUESTS, message))
        };
        if total >= self.config.max_streams {
            return refuse(
                Refusal::Streams,
                format!(
                    "the collector serves {} live streams already (max_streams)",
                    self.config.max_streams
                ),
            );
        }
        let mine = streams.entry(token.to_string()).or_default();
        if *mine >= self.config.max_streams_per_token {
            return refuse(
                Refusal::TokenStreams,
                format!("this token has {mine} live streams open already (max_streams_per_token)"),
            );
        }
        *mine += 1;
        self.metrics
            .streams
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(StreamSlot {
            app: Arc::clone(self),
            token: token.to_string(),
        })
    }
}

/// A live stream's place under the limits, given back when the stream ends.
pub struct StreamSlot {
    app: Arc<App>,
    token: String,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut streams = self
            .app
            .streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = streams.get_mut(&self.token) {
            *n -= 1;
            if *n == 0 {
                streams.remove(&self.token);
            }
        }
        self.app
            .metrics
            .streams
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Tells [`App::revocations`] of tokens revoked by another process (the CLI writes the
/// store directly), checking once a second: one query for the whole collector, whatever the
/// number of streams and polls. It compares the set of revoked tokens with the last one it
/// saw, so neither clocks nor a revocation that waited on a lock can hide one.
pub async fn watch_revocations(app: Arc<App>) {
    let mut known: Option<std::collections::HashSet<String>> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        match app.store.revoked_ids().await {
            Ok(now) => {
                if let Some(before) = &known {
                    for id in now.difference(before) {
                        let _ = app.revocations.send(id.clone());
                    }
                }
                known = Some(now);
            }
            Err(e) => tracing::warn!("cannot check for revoked tokens: {e}"),
        }
    }
}

pub fn router(app: Arc<App>) -> Router {
    let errors = axum::middleware::from_fn_with_state(Arc::clone(&app), json_errors);
    let trust = axum::middleware::from_fn_with_state(Arc::clone(&app), trust_tokens);
    Router::new()
        .route("/healthz", get(health))
        .route("/metrics", get(metrics))
        .route(
            cordon_proto::collector::INGEST_PATH,
            post(agents::ingest).get(read::events),
        )
        .route("/api/v1/events/histogram", get(read::histogram))
        .route(cordon_proto::collector::POLL_PATH, post(agents::poll))
        .route("/api/v1/stream", get(read::stream))
        .route("/api/v1/hosts", get(read::hosts))
        .route("/api/v1/hosts/{host}/sandboxes", get(read::sandboxes))
        .route("/api/v1/hosts/{host}/rejected", get(read::rejected))
        .route("/api/v1/commands", post(respond::issue).get(respond::list))
        .route("/api/v1/commands/{id}", get(respond::one))
        .route(
            cordon_proto::collector::EVIDENCE_PATH,
            post(evidence::upload).get(evidence::list),
        )
        .route("/api/v1/evidence/{id}", get(evidence::download))
        .route("/api/v1/outputs", get(outputs::list))
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/tokens", get(tokens).post(issue_token))
        .route("/api/v1/tokens/{id}", delete(revoke_token))
        .merge(console::routes())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(trust)
        .layer(errors)
        .with_state(app)
}

/// Makes every error answer JSON, including the ones axum writes itself (405, a query or
/// path it cannot read: plain text), and counts refusals for the metrics.
async fn json_errors(
    State(app): State<Arc<App>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS {
        app.metrics.refused(Refusal::of_status(status.as_u16()));
    }
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        text
    };
    let mut error = ApiError::new(status, message).into_response();
    // Headers axum set for the client (`Allow` on a 405) stay.
    for (name, value) in &parts.headers {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            error.headers_mut().insert(name, value.clone());
        }
    }
    error
}

/// An error answer: a status and a message for the caller.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    code: Option<ErrorCode>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            code: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// With a code a program can act on.
    pub fn code(mut self, code: ErrorCode) -> Self {
        self.code = Some(code);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorReply {
                error: self.message,
                code: self.code,
            }),
        )
            .into_response()
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!("{e}");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the store failed; try again",
        )
    }
}

/// The most bytes of a person's request (a command, a new token).
pub const SMALL_BODY: usize = 64 << 10;

/// The host a host token speaks for.
pub async fn authorize_host(app: &App, headers: &HeaderMap) -> Result<String, ApiError> {
    host_of(&authorize(app, headers, Role::Host).await?)
}

/// The host of a host token. The store refuses a host token without its host; this is the
/// second lock on that door.
pub fn host_of(token: &TokenInfo) -> Result<String, ApiError> {
    token
        .host
        .clone()
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "a host token without a host"))
}

/// The caller's token, if it may act as `needed`: 401 without a live token, 403 with one
/// whose role is short of it.
pub async fn authorize(
    app: &App,
    headers: &HeaderMap,
    needed: Role,
) -> Result<TokenInfo, ApiError> {
    let token = authenticate(app, headers).await?;
    if !token.role.allows(needed) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("a {} token may not do this (it needs {needed})", token.role),
        ));
    }
    Ok(token)
}

/// The caller's live token: 401 without one.
async fn authenticate(app: &App, headers: &HeaderMap) -> Result<TokenInfo, ApiError> {
    let secret = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "no bearer token"))?;
    app.store
        .token_by_hash(&auth::hash(secret))
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unknown or revoked token"))
}

/// What the server puts on each request: the connection it came on, which a live token
/// vouches for (see [`crate::serve`]).
pub trait Vouched: Send + Sync {
    /// Whether no request on it has shown a live token yet.
    fn is_anonymous(&self) -> bool;
    /// A request on it showed a live token.
    fn trust(&self);
}

/// Before every handler: a URL with a NUL (`%00`, which no name or id holds and PostgreSQL's
/// text cannot) is refused; the connection of a request that carries a live token stops
/// counting against its address (see [`crate::serve`]), checked once per connection.
async fn trust_tokens(
    State(app): State<Arc<App>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let url = request.uri().to_string();
    if url.contains("%00") || url.contains('\0') {
        return ApiError::bad_request("a NUL (%00) in the URL").into_response();
    }
    let connection = request
        .extensions()
        .get::<Arc<dyn Vouched>>()
        .filter(|c| c.is_anonymous())
        .cloned();
    if let Some(connection) = connection {
        if request
            .headers()
            .contains_key(axum::http::header::AUTHORIZATION)
            && authenticate(&app, request.headers()).await.is_ok()
        {
            connection.trust();
        }
    }
    next.run(request).await
}

async fn health(State(app): State<Arc<App>>) -> Result<&'static str, ApiError> {
    app.store.ping().await?;
    Ok("ok\n")
}

/// `GET /metrics`: the collector's health in the Prometheus text format.
async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&app, &headers, Role::Viewer).await?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        crate::metrics::render(
            &app.metrics,
            &app.store,
            app.config.idle_timeout,
            &app.outputs,
        )
        .await,
    )
        .into_response())
}

async fn whoami(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, ApiError> {
    let token = authorize(&app, &headers, Role::Viewer).await?;
    Ok(Json(token).into_response())
}

async fn tokens(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&app, &headers, Role::Admin).await?;
    Ok(Json(serde_json::json!({ "tokens": app.store.tokens().await? })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    role: Role,
    #[serde(default)]
    host: Option<String>,
}

async fn issue_token(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let admin = authorize(&app, &headers, Role::Admin).await?;
    let new: NewToken =
        parse_json(&read_body(body, &headers, SMALL_BODY, app.config.body_timeout).await?)?;
    let (info, secret) = auth::issue(&new.name, new.role, new.host.as_deref())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    app.store.insert_token(&info, &auth::hash(&secret)).await?;
    tracing::info!(
        "{:?} issued the {} token {:?} ({})",
        admin.name,
        info.role,
        info.name,
        info.id
    );
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "token": secret, "info": info })),
    )
        .into_response())
}

async fn revoke_token(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let admin = authorize(&app, &headers, Role::Admin).await?;
    match app.store.revoke_token(&id).await {
        Ok(revoked) => {
            tracing::info!("{:?} revoked the token {id:?}", admin.name);
            let _ = app.revocations.send(revoked.id.clone());
            Ok(Json(serde_json::json!({ "revoked": revoked })).into_response())
        }
        Err(crate::store::StoreError::NoToken(_)) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no live token has the id {id:?}"),
        )),
        Err(e) => Err(e.into()),
    }
}

/// A JSON body, or a 400 that says where it is wrong.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("malformed request: {e}")))
}
