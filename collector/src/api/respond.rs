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
    if new.action == Action::Alert {
        return Err(ApiError::bad_request(
            "action: alert is what a response rule raises, not a command to a host (isolate, release, freeze, thaw, kill or evidence)",
        ));
    }
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
    let Some(host) = app.store.host(&new.host).await? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no host {:?} has reported to this collector", new.host),
        ));
    };
    known_sandbox(&app, &host, &new.sandbox).await?;
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
    app.hub.bell(&command.host).notify_waiters();
    Ok((StatusCode::CREATED, Json(command)).into_response())
}

/// Refuses a command for a sandbox `host` has never reported: neither running at its last
/// poll nor named by its events of the last day (a typo would otherwise be queued, fail on
/// the host, and leave a sandbox that never was in the console). Says which one was meant.
async fn known_sandbox(app: &App, host: &store::HostRow, sandbox: &str) -> Result<(), ApiError> {
    let since = crate::clock::now_ns() - 86_400_000_000_000;
    let seen = app.store.sandboxes_seen(&host.name, since).await?;
    let mut names: Vec<&str> = host.sandboxes.iter().map(|s| s.name.as_str()).collect();
    for s in &seen {
        if !names.contains(&s.name.as_str()) {
            names.push(&s.name);
        }
    }
    if names.contains(&sandbox) {
        return Ok(());
    }
    let hint = match closest(sandbox, &names) {
        Some(name) => format!("; did you mean {name:?}?"),
        None if host.sandboxes.is_empty() => "; it runs none now".to_string(),
        None => {
            let running: Vec<&str> = host.sandboxes.iter().map(|s| s.name.as_str()).collect();
            format!("; it runs {}", running.join(", "))
        }
    };
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "host {:?} has reported no sandbox {sandbox:?}{hint}",
            host.name
        ),
    ))
}

/// The name among `names` that `word` is most likely a typo of.
fn closest<'a>(word: &str, names: &[&'a str]) -> Option<&'a str> {
    names
        .iter()
        .map(|n| (strsim::damerau_levenshtein(word, n), *n))
        .filter(|(d, n)| *d <= 2.max(n.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    host: Option<String>,
    sandbox: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/v1/commands?host=&sandbox=`: newest first.
pub async fn list(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(params): Query<ListParams>,
) -> Result<Response, ApiError> {
    authorize(&app, &headers, Role::Viewer).await?;
    let limit = params.limit.unwrap_or(100).clamp(1, 1000);
    let commands = app
        .store
        .commands(params.host.as_deref(), params.sandbox.as_deref(), limit)
        .await?;
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
