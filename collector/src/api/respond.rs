//! Responders' commands: queued here, fetched by the host's cordond on its next poll, acted
//! on there, and reported back.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use cordon_proto::event::Action;

use super::{authorize, parse_json, ApiError, App};
use crate::auth::{self, Role};
use crate::store::{self, CommandRow};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCommand {
    host: String,
    sandbox: String,
    action: Action,
    /// How long it may wait for the host (`"30s"`); the collector's `command_ttl` if not given.
    #[serde(default)]
    ttl: Option<String>,
}

/// `POST /api/v1/commands`
pub async fn issue(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let responder = authorize(&app, &headers, Role::Responder).await?;
    let new: NewCommand = parse_json(
        &super::read_body(body, &headers, super::SMALL_BODY, app.config.body_timeout).await?,
    )?;
    if !auth::valid_name(&new.host) {
        return Err(ApiError::bad_request("host: not a host name"));
    }
    if !auth::valid_name(&new.sandbox) {
        return Err(ApiError::bad_request("sandbox: not a sandbox name"));
    }
    let ttl = match &new.ttl {
        None => app.config.command_ttl,
        Some(text) => match humantime::parse_duration(text) {
            Ok(d) if !d.is_zero() && d <= std::time::Duration::from_secs(86_400) => d,
            _ => {
                return Err(ApiError::bad_request(
                    "ttl: a duration up to 1 day, like \"30s\"",
                ))
            }
        },
    };
    if app.store.host(&new.host).await?.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no host {:?} has reported to this collector", new.host),
        ));
    }
    let command = CommandRow {
        id: uuid::Uuid::now_v7().to_string(),
        host: new.host,
        sandbox: new.sandbox,
        action: new.action,
        issued_by: responder.name.clone(),
        issued_ns: crate::clock::now_ns(),
        expires_ns: store::expiry(ttl),
        status: "queued".into(),
        delivered_ns: None,
        done_ns: None,
        error: None,
        took_ms: None,
    };
    app.store.queue_command(&command).await?;
    tracing::info!(
        "{:?} queued {} of {} on {} ({})",
        responder.name,
        command.action.as_str(),
        command.sandbox,
        command.host,
        command.id
    );
    app.bell(&command.host).notify_waiters();
    Ok((StatusCode::CREATED, Json(command)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    host: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/v1/commands?host=`: newest first.
pub async fn list(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(params): Query<ListParams>,
) -> Result<Response, ApiError> {
    authorize(&app, &headers, Role::Viewer).await?;
    let limit = params.limit.unwrap_or(100).clamp(1, 1000);
    let commands = app.store.commands(params.host.as_deref(), limit).await?;
    Ok(Json(serde_json::json!({ "commands": commands })).into_response())
}

/// `GET /api/v1/commands/{id}`
pub async fn one(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&app, &headers, Role::Viewer).await?;
    match app.store.command(&id).await? {
        Some(c) => Ok(Json(c).into_response()),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "no such command")),
    }
}
