//! Evidence collected by cordond: for a responder on the socket (`cordon evidence`, the
//! archive written into the file the caller opened and passed) and for one at the collector
//! (a command, collected on a thread of its own so that polling, and the kill that may
//! follow, go on meanwhile). Each archive also waits in the spool's `evidence/` outbox until
//! the collector has it, when one is configured: stored there, listed per session,
//! downloadable. The outbox is bounded like the spool, and sent by a thread of its own.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cordon_proto::collector::EVIDENCE_MAX_BYTES;

use super::Daemon;
use crate::event::{Action, ActionResult, Actor, EvidenceRecord, What};
use crate::evidence::{self, EvidenceError, Summary, Upload};
use crate::export::deliver::{Collector, DeliverError};

/// How many times an archive is offered to a collector that refuses it before it is left
/// where it lies (`*.refused`), so that it does not hold up the ones after it.
const MAX_ATTEMPTS: u32 = 5;

fn outbox(daemon: &Daemon) -> PathBuf {
    daemon.config().spool_dir.join("evidence")
}

/// Where the caller wants the archive: the file (opened by the caller) and its path.
pub type Output<'a> = (&'a mut std::fs::File, Option<PathBuf>);

/// Collects the evidence of `sandbox`, copies it to `out` when given, queues it for the
/// collector when one is configured, and records the collection as a `responder_action`.
pub fn collect(
    daemon: &Daemon,
    sandbox: &str,
    options: evidence::Options,
    actor: Actor,
    out: Option<Output<'_>>,
) -> Result<(Duration, Summary), EvidenceError> {
    let started = Instant::now();
    let session = crate::contain::session_of(sandbox);
    let result = collect_into_outbox(daemon, sandbox, options, out);
    let took_ms = started.elapsed().as_millis() as u64;
    if !matches!(result, Err(EvidenceError::BadName)) {
        daemon.record_in(
            sandbox,
            session,
            What::ResponderAction {
                action: Action::Evidence,
                actor,
                result: if result.is_ok() {
                    ActionResult::Done
                } else {
                    ActionResult::Failed
                },
                error: result.as_ref().err().map(|e| e.to_string()),
                took_ms,
                evidence: result.as_ref().ok().map(|s| EvidenceRecord {
                    manifest_sha256: s.manifest_sha256.clone(),
                    archive_sha256: s.archive_sha256.clone(),
                    bytes: s.bytes,
                    files: s.files,
                    processes: s.processes,
                    state: s.state.clone(),
                }),
                unseen: None,
            },
        );
    }
    result.map(|s| (started.elapsed(), s))
}

fn collect_into_outbox(
    daemon: &Daemon,
    sandbox: &str,
    options: evidence::Options,
    out: Option<Output<'_>>,
) -> Result<Summary, EvidenceError> {
    let cfg = daemon.config();
    let dir = outbox(daemon);
    std::fs::create_dir_all(&dir)?;
    let id = uuid::Uuid::now_v7();
    let part = dir.join(format!("{id}.part"));
    let journal = evidence::Journal {
        path: cfg.journal_path.clone(),
        keep: cfg.journal_keep,
    };
    let for_caller = out.is_some();
    let mut file = std::fs::File::options()
        .create_new(true)
        .write(true)
        .read(true)
        .open(&part)?;
    let out_path = out.as_ref().and_then(|(_, p)| p.clone());
    let collected = evidence::collect(
        sandbox,
        &cfg.host_id,
        options,
        Some(&journal),
        (&mut file, out_path.as_deref()),
    );
    let summary = match collected {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
    };
    // The caller's copy; whether it can be written or not, the collector's goes on.
    let copied = out.map(|(out, _)| {
        use std::io::Seek as _;
        file.rewind()
            .and_then(|()| std::io::copy(&mut file, out))
            .and_then(|_| out.flush())
    });
    let queued = queue(daemon, &dir, &part, id, sandbox, &summary);
    if !matches!(queued, Ok(true)) {
        let _ = std::fs::remove_file(&part);
    }
    if let Some(Err(e)) = copied {
        return Err(EvidenceError::Write(e));
    }
    // Asked for by the collector: an archive that cannot reach it is an error.
    match queued {
        Err(why) if !for_caller => Err(EvidenceError::Write(std::io::Error::other(why))),
        Err(why) => {
            tracing::warn!("{why}");
            Ok(summary)
        }
        Ok(_) => Ok(summary),
    }
}

/// Leaves the archive at `part` in the outbox for the collector, when one is configured and
/// there is room (the outbox is bounded like the spool; the collector takes at most
/// [`EVIDENCE_MAX_BYTES`]). `Ok(false)`: no collector, nothing queued.
fn queue(
    daemon: &Daemon,
    dir: &Path,
    part: &Path,
    id: uuid::Uuid,
    sandbox: &str,
    summary: &Summary,
) -> Result<bool, String> {
    let cfg = daemon.config();
    if cfg.collector.is_none() {
        return Ok(false);
    }
    if summary.bytes > EVIDENCE_MAX_BYTES {
        return Err(format!(
            "the archive is {} bytes, over the {EVIDENCE_MAX_BYTES} a collector takes: not queued for it",
            summary.bytes
        ));
    }
    let waiting: u64 = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    if waiting > cfg.spool_max_bytes {
        return Err(format!(
            "the evidence outbox {} holds {waiting} bytes, over the spool's {}: not queued for the collector",
            dir.display(),
            cfg.spool_max_bytes
        ));
    }
    let upload = Upload {
        id,
        sandbox: sandbox.into(),
        summary: summary.clone(),
    };
    std::fs::rename(part, dir.join(format!("{id}.tar.gz"))).map_err(|e| e.to_string())?;
    std::fs::write(
        dir.join(format!("{id}.json")),
        serde_json::to_vec(&upload).unwrap_or_default(),
    )
    .map_err(|e| e.to_string())?;
    Ok(true)
}

/// Archives half-written when cordond last stopped (killed while collecting): removed.
pub fn remove_parts(daemon: &Daemon) {
    let Ok(entries) = std::fs::read_dir(outbox(daemon)) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.path().extension().is_some_and(|x| x == "part") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Sends what waits in the outbox, oldest first. One the collector cannot take now waits
/// for the next call without holding up the others; one it keeps refusing is set aside.
pub fn upload_pending(
    daemon: &Daemon,
    collector: &Collector,
    attempts: &mut HashMap<PathBuf, u32>,
) {
    let dir = outbox(daemon);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    let mut pending: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    pending.sort();
    for meta in pending {
        if daemon.stopping() {
            return;
        }
        match upload_one(&meta, collector) {
            Ok(()) => {
                attempts.remove(&meta);
            }
            // Not reachable, or not ready for it: tried again, however long that takes.
            Err(Retry::Later(e)) => {
                tracing::warn!("evidence {} waits for the collector: {e}", meta.display());
            }
            Err(Retry::Refused(e)) => {
                let tried = attempts.entry(meta.clone()).or_insert(0);
                *tried += 1;
                tracing::warn!(
                    "evidence {} waits for the collector (attempt {tried}): {e}",
                    meta.display()
                );
                if *tried >= MAX_ATTEMPTS {
                    tracing::error!(
                        "evidence {} refused {MAX_ATTEMPTS} times: set aside as .refused",
                        meta.display()
                    );
                    let _ = std::fs::rename(&meta, meta.with_extension("refused"));
                    attempts.remove(&meta);
                }
            }
        }
    }
}

/// Why an upload did not go through.
enum Retry {
    /// The collector is not reachable, or not ready for it (its session's events are still
    /// on their way: 425, 5xx).
    Later(String),
    /// Refused for another reason: tried a few times, then set aside.
    Refused(String),
}

fn upload_one(meta: &Path, collector: &Collector) -> Result<(), Retry> {
    let refused = |e: String| Retry::Refused(e);
    let upload: Upload =
        serde_json::from_slice(&std::fs::read(meta).map_err(|e| refused(e.to_string()))?)
            .map_err(|e| refused(format!("unreadable: {e}")))?;
    let archive = meta.with_extension("tar.gz");
    let file = std::fs::File::open(&archive).map_err(|e| refused(e.to_string()))?;
    match collector.upload_evidence(&upload.headers(), file) {
        Ok(()) => {}
        // Refused for what it is: it stays with whoever collected it, and waits here no longer.
        Err(DeliverError::Status {
            status: 400 | 409 | 413,
            body,
            ..
        }) => {
            tracing::warn!(
                "the collector refused the evidence of {} ({} bytes): {body}; it is kept only where it was collected to",
                upload.sandbox,
                upload.summary.bytes
            );
        }
        Err(DeliverError::Status {
            status: 404, body, ..
        }) => return Err(Retry::Refused(body)),
        Err(e) => return Err(Retry::Later(e.to_string())),
    }
    let _ = std::fs::remove_file(&archive);
    let _ = std::fs::remove_file(meta);
    Ok(())
}
