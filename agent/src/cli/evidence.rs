//! `cordon evidence SANDBOX [--out FILE] [--memory]` and `cordon evidence --verify FILE`.
//!
//! The archive file is created here, with the caller's rights (never over an existing
//! file), and handed to cordond, which collects into it and records the collection; as root
//! without cordond, it is collected here.

use std::os::fd::{AsFd as _, AsRawFd as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::api::client::Client;
use crate::api::Request;
use crate::daemon::config::{self, Config};
use crate::evidence::{self, Summary};

use super::Output;

pub fn collect(
    daemon: Option<Client>,
    sandbox: &str,
    out_path: Option<PathBuf>,
    memory: bool,
    out: Output,
) -> ExitCode {
    let path = out_path.unwrap_or_else(|| default_name(sandbox));
    let file = match std::fs::File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) => return super::fail(&format!("{}: {e}", path.display()), 1),
    };
    let result = match daemon {
        Some(client) => through_cordond(client, sandbox, memory, &file),
        None => here(sandbox, memory, file),
    };
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            // Nothing half-written is left behind to be mistaken for evidence.
            let _ = std::fs::remove_file(&path);
            return super::fail(&e, 1);
        }
    };
    if out.json {
        return super::print_json(&serde_json::json!({ "file": path, "evidence": summary }));
    }
    println!(
        "{}: evidence of {} ({}, {} processes, {} files, {} bytes)\nmanifest sha256 {}",
        path.display(),
        summary.sandbox,
        summary.state,
        summary.processes,
        summary.files,
        summary.bytes,
        summary.manifest_sha256
    );
    ExitCode::SUCCESS
}

fn through_cordond(
    mut client: Client,
    sandbox: &str,
    memory: bool,
    file: &std::fs::File,
) -> Result<Summary, String> {
    let request = Request::Evidence {
        sandbox: sandbox.to_string(),
        memory,
    };
    client
        .send(&request, &[file.as_fd()])
        .map_err(|e| e.to_string())?;
    let reply = client.reply().map_err(|e| e.to_string())?;
    serde_json::from_value(reply["evidence"].clone())
        .map_err(|e| format!("cordond sent an unreadable answer: {e}"))
}

/// As root without cordond: the journal and host id of cordond's configuration, when there
/// is one.
fn here(sandbox: &str, memory: bool, mut file: std::fs::File) -> Result<Summary, String> {
    let cfg = Config::load(Path::new(config::DEFAULT_PATH)).ok();
    let journal = cfg.as_ref().map(|c| evidence::Journal {
        path: c.journal_path.clone(),
        keep: c.journal_keep,
    });
    let host = cfg.map_or_else(config::default_host_id, |c| c.host_id);
    let path = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok();
    evidence::collect(
        sandbox,
        &host,
        evidence::Options { memory },
        journal.as_ref(),
        (&mut file, path.as_deref()),
    )
    .map_err(|e| format!("{sandbox}: {e}"))
}

/// `evidence-SANDBOX-20261129T081500Z.tar.gz` in the current directory.
fn default_name(sandbox: &str) -> PathBuf {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let stamp: String = now.chars().filter(|c| !matches!(c, '-' | ':')).collect();
    PathBuf::from(format!("evidence-{sandbox}-{stamp}.tar.gz"))
}

/// `--verify FILE`: every entry against the manifest, and the manifest against the one the
/// collection recorded (its `responder_action` event in cordond's journal): an archive
/// consistent in itself could have been made up whole.
pub fn verify(path: &Path, daemon: &dyn Fn() -> Option<Client>, out: Output) -> ExitCode {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => return super::fail(&format!("{}: {e}", path.display()), 1),
    };
    let (manifest, sha256) = match evidence::verify(&mut file) {
        Ok(v) => v,
        Err(e) => return super::fail(&format!("{}: NOT intact: {e}", path.display()), 2),
    };
    // The collection's event reaches the journal a moment after the archive is written.
    let mut recorded = None;
    for attempt in 0..6 {
        recorded = daemon().map(|client| find_recorded(client, &manifest, &sha256));
        if !matches!(recorded, Some(Ok(None))) {
            break;
        }
        if attempt < 5 {
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }
    if out.json {
        let printed = super::print_json(&serde_json::json!({
            "file": path, "intact": true, "manifest_sha256": sha256,
            "recorded": recorded.as_ref().and_then(|r| r.as_ref().ok()).and_then(Option::as_ref),
            "manifest": manifest,
        }));
        return if matches!(recorded, Some(Ok(None))) {
            ExitCode::from(2)
        } else {
            printed
        };
    }
    println!(
        "{}: intact: {} entries match the manifest of {} ({}, collected {})\nmanifest sha256 {sha256}",
        path.display(),
        manifest.files.len(),
        manifest.sandbox,
        manifest.host,
        humantime::format_rfc3339_seconds(manifest.collected_at),
    );
    match recorded {
        Some(Ok(Some(event))) => {
            println!("recorded: {}", event.summary());
            ExitCode::SUCCESS
        }
        Some(Ok(None)) => super::fail(
            &format!(
                "{}: NOT recorded: no collection in this host's journal has this manifest (made up, or collected on another host: compare it with the collection's responder_action there or at the collector)",
                path.display()
            ),
            2,
        ),
        Some(Err(e)) => {
            eprintln!("cordon: could not look for the collection in the journal: {e}; compare the manifest's sha256 with its responder_action event");
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("cordon: cordond does not answer here: compare the manifest's sha256 with the collection's responder_action event");
            ExitCode::SUCCESS
        }
    }
}

/// The `responder_action` of the collection whose manifest is `sha256`, in the journal.
fn find_recorded(
    mut client: Client,
    manifest: &evidence::Manifest,
    sha256: &str,
) -> Result<Option<crate::event::Event>, String> {
    client
        .call(&Request::Events {
            follow: false,
            sandbox: Some(manifest.sandbox.clone()),
            kind: Some("responder_action".into()),
            since: None,
            severity: None,
            session: manifest.session,
        })
        .map_err(|e| e.to_string())?;
    let mut found = None;
    while let Some(line) = client.next_line().map_err(|e| e.to_string())? {
        let Ok(event) = serde_json::from_slice::<crate::event::Event>(&line) else {
            continue;
        };
        if let crate::event::What::ResponderAction {
            evidence: Some(e), ..
        } = &event.what
        {
            if e.manifest_sha256 == sha256 {
                found = Some(event);
            }
        }
    }
    Ok(found)
}
