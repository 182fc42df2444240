//! Evidence archives (`cordon evidence`): uploaded by hosts, listed and downloaded by
//! responders. The collector checks that the body is what the host says it sent (its
//! SHA-256) and keeps it as it came; the manifest inside, whose hash the `responder_action`
//! event of the collection carries, is for whoever examines it (`cordon evidence --verify`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use sha2::Digest as _;

use cordon_proto::collector as p;

use super::{authorize, authorize_host, ApiError, App};
use crate::auth::{self, Role};
use crate::store::EvidenceRow;

/// The most an archive may be. Archives with memory cores may be larger: they stay on the
/// host, refused here with 413.
pub const MAX_BYTES: usize = p::EVIDENCE_MAX_BYTES as usize;

/// Uploads read at once (each up to [`MAX_BYTES`] in memory).
static UPLOADS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, ApiError> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::bad_request(format!("the header {name} is missing")))
}

fn is_sha256(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// `POST /api/v1/evidence`: a host's archive.
pub async fn upload(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let host = authorize_host(&app, &headers).await?;
    let id = header_text(&headers, p::EVIDENCE_ID)?;
    let id = uuid::Uuid::parse_str(id)
        .map_err(|_| ApiError::bad_request(format!("{}: not a UUID", p::EVIDENCE_ID)))?
        .to_string();
    let sandbox = header_text(&headers, p::EVIDENCE_SANDBOX)?.to_string();
    if !auth::valid_name(&sandbox) {
        return Err(ApiError::bad_request(format!(
            "{}: not a sandbox name",
            p::EVIDENCE_SANDBOX
        )));
    }
    let session = match headers.get(p::EVIDENCE_SESSION) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| uuid::Uuid::parse_str(s).ok())
                .ok_or_else(|| {
                    ApiError::bad_request(format!("{}: not a UUID", p::EVIDENCE_SESSION))
                })?
                .to_string(),
        ),
    };
    let (sha256, manifest) = (
        header_text(&headers, p::EVIDENCE_SHA256)?.to_string(),
        header_text(&headers, p::EVIDENCE_MANIFEST_SHA256)?.to_string(),
    );
    if !is_sha256(&sha256) || !is_sha256(&manifest) {
        return Err(ApiError::bad_request(
            "the SHA-256 headers hold 64 lowercase hex digits",
        ));
    }
    // An archive of a session of this host's, and an id of its own: a host cannot plant
    // evidence beside another host's sandbox, nor take another's id.
    if let Some(session) = &session {
        if !app.store.host_has_session(&host, session).await? {
            // Perhaps its events are still on their way: the host sends it again later.
            return Err(ApiError::new(
                StatusCode::TOO_EARLY,
                format!(
                    "{}: no session {session} of host {host:?} is known here (yet)",
                    p::EVIDENCE_SESSION
                ),
            ));
        }
    }
    if let Some((owner, stored)) = app.store.evidence_owner(&id).await? {
        if owner != host || stored != sha256 {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("{}: {id} is another archive's", p::EVIDENCE_ID),
            ));
        }
    }
    // A few archives in memory at a time, whatever the number of hosts sending.
    let _permit = UPLOADS
        .acquire()
        .await
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "stopping"))?;
    let archive = tokio::time::timeout(
        std::time::Duration::from_secs(600),
        axum::body::to_bytes(body, MAX_BYTES),
    )
    .await
    .map_err(|_| {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "the archive did not arrive in time",
        )
    })?
    .map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("an evidence archive is at most {MAX_BYTES} bytes here"),
        )
    })?;
    let got = format!("{:x}", sha2::Sha256::digest(&archive));
    if got != sha256 {
        return Err(ApiError::bad_request(format!(
            "the archive's SHA-256 is {got}, not {sha256} as {} says: damaged on the way",
            p::EVIDENCE_SHA256
        )));
    }
    let row = EvidenceRow {
        id,
        host,
        sandbox,
        session,
        received_ns: crate::clock::now_ns(),
        bytes: archive.len() as i64,
        archive_sha256: sha256,
        manifest_sha256: manifest,
    };
    let new = app.store.insert_evidence(&row, &archive).await?;
    if new {
        tracing::info!(
            "host {:?}: evidence of {} ({} bytes, manifest {})",
            row.host,
            row.sandbox,
            row.bytes,
            row.manifest_sha256
        );
    }
    Ok((
        if new {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(row),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    host: Option<String>,
    sandbox: Option<String>,
    session: Option<String>,
}

/// `GET /api/v1/evidence?session=ID` (or `host=`, `sandbox=`): the archives, newest first.
pub async fn list(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    authorize(&app, &headers, Role::Responder).await?;
    let rows = app
        .store
        .list_evidence(
            q.host.as_deref(),
            q.sandbox.as_deref(),
            q.session.as_deref(),
        )
        .await?;
    Ok(Json(serde_json::json!({ "evidence": rows })).into_response())
}

/// `GET /api/v1/evidence/{id}`: the archive as the host sent it.
pub async fn download(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&app, &headers, Role::Responder).await?;
    let Some((row, archive)) = app.store.evidence(&id).await? else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such evidence"));
    };
    let name = format!("evidence-{}-{}.tar.gz", row.sandbox, row.id);
    Ok((
        [
            (header::CONTENT_TYPE, "application/gzip".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
            (
                header::HeaderName::from_static("x-cordon-manifest-sha256"),
                row.manifest_sha256,
            ),
        ],
        archive,
    )
        .into_response())
}
