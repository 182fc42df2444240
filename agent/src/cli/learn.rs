//! `cordon profile learn`: runs a command under a base profile in audit mode (or reads the
//! events of such a run) and writes the profile that allows what it needed.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::event::Event;
use crate::profile::{Mode, SearchPath};
use crate::session;

use super::{fail, resolve, run_status, say, ExitStatus};

/// What `cordon profile learn` was asked.
pub(super) struct Learn {
    pub base: String,
    pub workspace: Option<PathBuf>,
    pub name: Option<String>,
    pub out: Option<PathBuf>,
    pub from: Option<PathBuf>,
    pub session: Option<uuid::Uuid>,
    pub command: Vec<OsString>,
    pub verbose: u8,
}

pub(super) fn learn(search: &SearchPath, ask: Learn) -> ExitCode {
    let policy = match resolve(search, &ask.base, ask.workspace.clone()) {
        Ok(p) => p,
        Err(e) => return fail(&e, 2),
    };
    let events = match (&ask.from, ask.command.is_empty()) {
        (Some(_), false) => {
            return fail("give either --from EVENTS or a command to run, not both", 2)
        }
        (None, true) => {
            return fail(
                "nothing to learn from: give a command (`cordon profile learn --profile BASE -- CMD`) or --from EVENTS",
                2,
            )
        }
        (Some(from), true) => match read_events(from) {
            Ok(events) => events,
            Err(e) => return fail(&e, 2),
        },
        (None, false) => match audit_run(&policy, &ask) {
            Ok(events) => events,
            Err(e) => return fail(&e, 2),
        },
    };
    let events = match only_session(events, ask.session) {
        Ok(events) => events,
        Err(e) => return fail(&e, 2),
    };
    // Saved events are placed against the workspace of their run (`{workspace}`), unless
    // --workspace says otherwise.
    let recorded = events.iter().find_map(|e| match &e.what {
        crate::event::What::SessionStarted { workspace, .. } => Some(PathBuf::from(workspace)),
        _ => None,
    });
    let policy = match recorded {
        Some(workspace) if ask.workspace.is_none() && workspace != policy.workspace => {
            match resolve(search, &ask.base, Some(workspace.clone())) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!(
                        "cordon: note: the run's workspace {} ({e}); its paths are placed against {}",
                        workspace.display(),
                        policy.workspace.display()
                    );
                    policy
                }
            }
        }
        _ => policy,
    };
    let learned = crate::learn::learn(&events, &policy);
    let name = ask
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-learned", policy.name));
    let text = learned.to_toml(&name, &policy.name);
    // A base given as a file is extended by its name, found beside it.
    let base_dir = (ask.base.contains('/') || ask.base.ends_with(".toml"))
        .then(|| {
            std::path::Path::new(&ask.base)
                .parent()
                .map(|d| std::path::absolute(d).unwrap_or_else(|_| d.to_path_buf()))
        })
        .flatten();
    let search = match &base_dir {
        Some(dir) => search.with_first(dir),
        None => search.with_first(std::path::Path::new("/nonexistent")),
    };
    // What is written must load: a learned profile that does not is Cordon's bug.
    if let Err(e) = check_loads(&search, &ask, &name, &text) {
        return fail(
            &format!("the learned profile does not load ({e}); this is a bug:\n{text}"),
            2,
        );
    }
    let written = match &ask.out {
        Some(path) => {
            std::fs::write(path, &text).map_err(|e| format!("cannot write {}: {e}", path.display()))
        }
        None => std::io::stdout()
            .write_all(text.as_bytes())
            .map_err(|e| format!("cannot write the profile: {e}")),
    };
    if let Err(e) = written {
        return fail(&e, 2);
    }
    if let Some(dir) = &base_dir {
        let out_dir = ask
            .out
            .as_ref()
            .and_then(|o| std::path::absolute(o).ok())
            .and_then(|o| o.parent().map(std::path::Path::to_path_buf));
        if out_dir.as_deref() != Some(dir.as_path()) {
            eprintln!(
                "cordon: note: the profile extends `{}` by name: keep it beside {} (or put both in a profile directory)",
                policy.name,
                dir.join(format!("{}.toml", policy.name)).display()
            );
        }
    }
    let rules: usize = learned.paths.values().map(Vec::len).sum::<usize>()
        + learned.egress.len()
        + learned.bind_ports.len()
        + learned.syscalls.len();
    if learned.is_empty() {
        eprintln!("cordon: the run needed nothing beyond `{}`", policy.name);
    } else {
        eprintln!(
            "cordon: learned {rules} rules beyond `{}` from {} events{}",
            policy.name,
            events.len(),
            ask.out
                .as_ref()
                .map(|p| format!("; written to {}", p.display()))
                .unwrap_or_default()
        );
    }
    if learned.lost > 0 {
        eprintln!(
            "cordon: warning: the audit lost {} events; run it again (or with less at once) before trusting the profile",
            learned.lost
        );
    }
    ExitCode::SUCCESS
}

/// Runs the command under the base in audit mode, here, and returns the run's events.
fn audit_run(policy: &crate::policy::Policy, ask: &Learn) -> Result<Vec<Event>, String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("learning from a run needs root (the run happens here); otherwise run `cordon run --audit -p BASE -- CMD`, then `cordon events --sandbox NAME --json > EVENTS` and `cordon profile learn --profile BASE --from EVENTS`".into());
    }
    let file = tempfile::Builder::new()
        .prefix("cordon-learn-")
        .suffix(".jsonl")
        .tempfile()
        .map_err(|e| format!("cannot make a file for the run's events: {e}"))?;
    let mut audited = policy.clone();
    audited.mode = Mode::Audit;
    let options = session::Options {
        events: Some(file.path().to_path_buf()),
        quiet: true,
        enable_audit: true,
        ..session::Options::default()
    };
    let ended = session::run(
        &audited,
        &ask.command,
        std::env::vars_os(),
        options,
        &mut say(ask.verbose),
    );
    match run_status(ended) {
        ExitStatus::Code(0) => {}
        ExitStatus::Code(c) => eprintln!(
            "cordon: warning: the command exited with {c}; what it needed up to there is learned"
        ),
        ExitStatus::Signal(s) => eprintln!(
            "cordon: warning: the command was killed by signal {s}; what it needed up to there is learned"
        ),
    }
    read_events(file.path())
}

/// Events as JSON lines (`cordon run --events`, `cordon events --json`), or a page of the
/// collector's `GET /api/v1/events?session=ID` (`{"events": [...]}`); `-` is stdin.
fn read_events(path: &std::path::Path) -> Result<Vec<Event>, String> {
    let text = if path == std::path::Path::new("-") {
        std::io::read_to_string(std::io::stdin()).map_err(|e| format!("cannot read stdin: {e}"))?
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?
    };
    #[derive(serde::Deserialize)]
    struct Page {
        events: Vec<Event>,
    }
    if text.trim_start().starts_with("{\"events\"") {
        return serde_json::from_str::<Page>(&text)
            .map(|page| page.events)
            .map_err(|e| {
                format!(
                    "{}: not a page of the collector's events: {e}",
                    path.display()
                )
            });
    }
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line)
                .map_err(|e| format!("{}:{}: not an event: {e}", path.display(), i + 1))
        })
        .collect()
}

/// The events of one session: the one asked for, or the only one there is.
fn only_session(events: Vec<Event>, session: Option<uuid::Uuid>) -> Result<Vec<Event>, String> {
    let sessions: std::collections::BTreeSet<uuid::Uuid> =
        events.iter().filter_map(|e| e.session).collect();
    let wanted = match session {
        Some(s) if !sessions.contains(&s) => {
            return Err(format!(
                "no events of session {s} (the events hold {} sessions)",
                sessions.len()
            ))
        }
        Some(s) => s,
        None if sessions.len() > 1 => {
            let listed: Vec<String> = sessions.iter().map(ToString::to_string).collect();
            return Err(format!(
                "the events hold {} sessions; pick one with --session ({})",
                sessions.len(),
                listed.join(", ")
            ));
        }
        None => return Ok(events),
    };
    Ok(events
        .into_iter()
        .filter(|e| e.session == Some(wanted))
        .collect())
}

/// Loads the learned text as a profile beside its base, to be sure it is one.
fn check_loads(search: &SearchPath, ask: &Learn, name: &str, text: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let file = dir.path().join(format!("{name}.toml"));
    std::fs::write(&file, text).map_err(|e| e.to_string())?;
    let profile = search
        .load(&file.to_string_lossy())
        .map_err(|e| e.to_string())?;
    let workspace = super::workspace_dir(ask.workspace.clone())?;
    crate::policy::compile(&profile, &crate::policy::Context::current(workspace))
        .map(drop)
        .map_err(|e| e.to_string())
}
