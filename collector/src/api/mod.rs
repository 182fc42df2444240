//! The collector's HTTP API and console. Who may call what:
//!
//! | endpoint | role |
//! |---|---|
//! | `POST /api/v1/events`, `POST /api/v1/agent/poll` ([`agents`]) | host |
//! | `GET /api/v1/events`, `/stream`, `/hosts`, `/hosts/{host}/sandboxes`, `/commands` ([`read`]) | viewer |
//! | `POST /api/v1/commands` ([`respond`]) | responder |
//! | `GET|POST /api/v1/tokens`, `DELETE /api/v1/tokens/{id}` | admin |
//! | `GET /`, `/console.js`, `/console.css` ([`console`]), `/healthz` | anyone |
//!
//! Every error is JSON, `{"error": "..."}`, with a 4xx status that says whose fault it is.

mod agents;
pub use agents::read_body;
mod console;
mod read;
mod respond;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tokio::sync::{broadcast, Notify};

use crate::auth::{self, Role, TokenInfo};
use crate::config::Config;
use crate::store::{Store, StoredEvent};

/// What every request handler shares.
pub struct App {
    pub store: Store,
    pub config: Config,
    /// Events as they are stored, for the live streams.
    pub live: broadcast::Sender<Arc<StoredEvent>>,
    /// Hosts waiting in a poll, woken when a command for them is queued.
    waiting: Mutex<HashMap<String, Arc<Notify>>>,
}

impl App {
    pub fn new(store: Store, config: Config) -> Arc<Self> {
        Arc::new(Self {
            store,
            config,
            live: broadcast::channel(16_384).0,
            waiting: Mutex::new(HashMap::new()),
        })
    }

    /// The bell a host's poll waits on.
    fn bell(&self, host: &str) -> Arc<Notify> {
        let mut waiting = self
            .waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(waiting.entry(host.to_string()).or_default())
    }
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(health))
        .route(
            cordon_proto::collector::INGEST_PATH,
            post(agents::ingest).get(read::events),
        )
        .route(cordon_proto::collector::POLL_PATH, post(agents::poll))
        .route("/api/v1/stream", get(read::stream))
        .route("/api/v1/hosts", get(read::hosts))
        .route("/api/v1/hosts/{host}/sandboxes", get(read::sandboxes))
        .route("/api/v1/commands", post(respond::issue).get(respond::list))
        .route("/api/v1/commands/{id}", get(respond::one))
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/tokens", get(tokens).post(issue_token))
        .route("/api/v1/tokens/{id}", delete(revoke_token))
        .merge(console::routes())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(app)
}

/// An error answer: a status and a message for the caller.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
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
    let token = authorize(app, headers, Role::Host).await?;
    // The store refuses a host token without its host; this is the second lock on that door.
    token
        .host
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "a host token without a host"))
}

/// The caller's token, if it may act as `needed`: 401 without a live token, 403 with one
/// whose role is short of it.
pub async fn authorize(
    app: &App,
    headers: &HeaderMap,
    needed: Role,
) -> Result<TokenInfo, ApiError> {
    let secret = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "no bearer token"))?;
    let token = app
        .store
        .token_by_hash(&auth::hash(secret))
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unknown or revoked token"))?;
    if !token.role.allows(needed) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("a {} token may not do this (it needs {needed})", token.role),
        ));
    }
    Ok(token)
}

async fn health(State(app): State<Arc<App>>) -> Result<&'static str, ApiError> {
    app.store.ping().await?;
    Ok("ok\n")
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
    let new: NewToken = parse_json(&read_body(body, &headers, SMALL_BODY).await?)?;
    let (info, secret) = auth::issue(&new.name, new.role, new.host.as_deref())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    app.store.insert_token(&info, &auth::hash(&secret)).await?;
    tracing::info!(
        "{} issued the {} token {} ({})",
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
            tracing::info!("{} revoked the token {id}", admin.name);
            Ok(Json(serde_json::json!({ "revoked": revoked })).into_response())
        }
        Err(crate::store::StoreError::NoToken(_)) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no live token has the id {id}"),
        )),
        Err(e) => Err(e.into()),
    }
}

/// A JSON body, or a 400 that says where it is wrong.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("malformed request: {e}")))
}
