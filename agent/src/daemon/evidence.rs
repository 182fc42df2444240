//! Evidence collected by cordond: for a responder on the socket (`cordon evidence`, the
//! archive written into the file the caller opened and passed) and for one at the collector
//! (a command). Each archive also waits in the spool's `evidence/` outbox until the collector
//! has it, when one is configured: stored there, listed per session, downloadable.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::Daemon;
use crate::event::{Action, ActionResult, Actor, EvidenceRecord, What};
use crate::evidence::{self, EvidenceError, Summary, Upload};
use crate::export::deliver::Collector;

fn outbox(daemon: &Daemon) -> PathBuf {
    daemon.config().spool_dir.join("evidence")
}

/// Collects the evidence of `sandbox`, copies it to `out` when given, queues it for the
/// collector when one is configured, and records the collection as a `responder_action`.
pub fn collect(
    daemon: &Daemon,
    sandbox: &str,
    options: evidence::Options,
    actor: Actor,
    out: Option<&mut dyn Write>,
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
            },
        );
    }
    result.map(|s| (started.elapsed(), s))
}

fn collect_into_outbox(
    daemon: &Daemon,
    sandbox: &str,
    options: evidence::Options,
    out: Option<&mut dyn Write>,
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
    let kept_here = out.is_some();
    let written = (|| {
        let mut file = std::fs::File::options()
            .create_new(true)
            .write(true)
            .read(true)
            .open(&part)?;
        let summary = evidence::collect(sandbox, &cfg.host_id, options, Some(&journal), &mut file)?;
        if let Some(out) = out {
            use std::io::Seek as _;
            file.rewind()?;
            std::io::copy(&mut file, out)?;
            out.flush()?;
        }
        Ok::<_, EvidenceError>(summary)
    })();
    let summary = match written {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
    };
    // What waits for the collector is bounded like the spool: past it, an archive is kept
    // only where it was written (or, asked for by the collector, nowhere: that is an error).
    let waiting: u64 = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    let room = waiting <= cfg.spool_max_bytes;
    if cfg.collector.is_some() && !room {
        let _ = std::fs::remove_file(&part);
        let full = format!(
            "the evidence outbox {} holds {waiting} bytes, over the spool's {}: not queued for the collector",
            dir.display(),
            cfg.spool_max_bytes
        );
        if !kept_here {
            return Err(EvidenceError::Write(std::io::Error::other(full)));
        }
        tracing::warn!("{full}");
        return Ok(summary);
    }
    if cfg.collector.is_some() {
        let upload = Upload {
            id,
            sandbox: sandbox.into(),
            summary: summary.clone(),
        };
        std::fs::rename(&part, dir.join(format!("{id}.tar.gz")))?;
        std::fs::write(
            dir.join(format!("{id}.json")),
            serde_json::to_vec(&upload).unwrap_or_default(),
        )?;
    } else {
        let _ = std::fs::remove_file(&part);
    }
    Ok(summary)
}

/// Sends what waits in the outbox, oldest first; what fails waits for the next call.
pub fn upload_pending(daemon: &Daemon, collector: &Collector) {
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
        if let Err(e) = upload_one(&meta, collector) {
            tracing::warn!("evidence {} waits for the collector: {e}", meta.display());
            return;
        }
    }
}

fn upload_one(meta: &Path, collector: &Collector) -> Result<(), String> {
    let upload: Upload = serde_json::from_slice(&std::fs::read(meta).map_err(|e| e.to_string())?)
        .map_err(|e| format!("unreadable: {e}"))?;
    let archive = meta.with_extension("tar.gz");
    let file = std::fs::File::open(&archive).map_err(|e| e.to_string())?;
    match collector.upload_evidence(&upload, file) {
        Ok(()) => {}
        // Refused for what it is (too large for the collector: an archive with memory
        // cores): it stays with whoever collected it, and waits here no longer.
        Err(crate::export::deliver::DeliverError::Status {
            status: 400 | 413,
            body,
            ..
        }) => {
            tracing::warn!(
                "the collector refused the evidence of {} ({} bytes): {body}; it is kept only where it was collected to",
                upload.sandbox,
                upload.summary.bytes
            );
        }
        Err(e) => return Err(e.to_string()),
    }
    let _ = std::fs::remove_file(&archive);
    let _ = std::fs::remove_file(meta);
    Ok(())
}
