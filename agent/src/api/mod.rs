//! cordond's control API: JSON lines on a unix stream socket (`/run/cordon/cordon.sock`).
//!
//! A client sends one request line and reads reply lines. The first reply is
//! `{"ok":true,...}` or `{"ok":false,"error":"..."}`; `events` then streams one event per
//! line, and `run` (which also passes the caller's stdin, stdout and stderr as
//! `SCM_RIGHTS`) ends with `{"exit":{"code":N}}` or `{"exit":{"signal":N}}` written by the
//! sandbox's watcher.
//!
//! ```text
//! {"op":"ps"}
//! {"op":"status"}
//! {"op":"act","sandbox":"coding-agent-4242-0","action":"isolate"}
//! {"op":"events","follow":true,"sandbox":"coding-agent-4242-0","kind":"network_denied","since":"2026-11-26T10:00:00Z"}
//! {"op":"evidence","sandbox":"coding-agent-4242-0","memory":true}   (+ the archive's fd)
//! {"op":"run","profile":"coding-agent","cwd":"/home/dev/repo","argv":["bash"],"env":[["TERM","xterm"]]}
//! ```
//!
//! Who may do what is decided by the peer's credentials (`SO_PEERCRED`, `SO_PEERGROUPS`),
//! never by anything in the request: see [`peer`].

pub mod client;
pub mod peer;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::event::Action;

/// The longest request line accepted (a `run` carries the caller's environment).
pub const MAX_REQUEST: usize = 1 << 20;

/// Where cordond listens unless its configuration says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/cordon/cordon.sock";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// The sandboxes on this host.
    Ps(NoArgs),
    /// The daemon's health.
    Status(NoArgs),
    /// A responder's action on one sandbox.
    Act { sandbox: String, action: Action },
    /// Events from the journal, oldest first; with `follow`, then new ones as they come.
    Events {
        #[serde(default)]
        follow: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sandbox: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kind: Option<String>,
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            with = "crate::event::rfc3339_opt"
        )]
        since: Option<std::time::SystemTime>,
        /// Events of this severity or higher.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        severity: Option<crate::event::Severity>,
        /// One session's events.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session: Option<uuid::Uuid>,
    },
    /// Run a command in a sandbox as the caller.
    Run(RunRequest),
    /// Collect a sandbox's evidence into the file passed with the request (`SCM_RIGHTS`,
    /// opened for writing by the caller, with the caller's rights).
    Evidence {
        sandbox: String,
        /// An ELF core of each process's memory too.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        memory: bool,
    },
}

/// The arguments of a request that takes none (anything else in it is an error).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// A profile name, or a file (read with the caller's rights).
    pub profile: String,
    /// The agent's workspace; the caller's working directory when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<PathBuf>,
    /// The caller's working directory.
    pub cwd: PathBuf,
    pub argv: Vec<String>,
    /// The caller's environment; the profile decides what passes into the sandbox.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Do not print violations on the caller's stderr.
    #[serde(default)]
    pub quiet: bool,
    /// Run in `mode = "audit"`, whatever the profile says.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub audit: bool,
}

/// What a worker is told: the caller's request, who the caller is (from the kernel), and
/// the daemon's settings.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct WorkerJob {
    pub run: RunRequest,
    pub caller: Caller,
    pub profile_path: Vec<std::path::PathBuf>,
    pub spool: crate::export::spool::SpoolConfig,
    pub dns_upstream: Vec<std::net::SocketAddr>,
    pub audit: bool,
    /// The host's response rules (`cordon.toml`), added to the profile's.
    #[serde(default)]
    pub host_responses: Vec<cordon_policy::response::ResponseEntry>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub pid: u32,
}

/// The last line of a `run`: how the sandboxed command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    Code(u8),
    Signal(i32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunEnd {
    pub exit: ExitStatus,
}

/// What a client sends on a `run` connection after the request: a signal for the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSignal {
    pub signal: i32,
}

/// `{"ok":true, ...body}` as one line.
pub fn ok_line(body: serde_json::Value) -> Vec<u8> {
    let mut object = match body {
        serde_json::Value::Object(map) => map,
        serde_json::Value::Null => serde_json::Map::new(),
        other => {
            let mut map = serde_json::Map::new();
            map.insert("result".into(), other);
            map
        }
    };
    object.insert("ok".into(), serde_json::Value::Bool(true));
    line(&serde_json::Value::Object(object))
}

/// `{"ok":false,"error":"..."}` as one line.
pub fn error_line(message: &str) -> Vec<u8> {
    line(&serde_json::json!({"ok": false, "error": message}))
}

fn line(value: &serde_json::Value) -> Vec<u8> {
    let mut out = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    out.push(b'\n');
    out
}

/// Parses a request line, with the position of what is wrong.
pub fn parse_request(line: &[u8]) -> Result<Request, String> {
    serde_json::from_slice(line).map_err(|e| {
        // Errors inside the JSON carry their position already ("... at line 1 column 5").
        format!("bad request: {e}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_unknown_fields_are_refused() {
        let r = parse_request(br#"{"op":"act","sandbox":"a-1-0","action":"isolate"}"#).unwrap();
        assert_eq!(
            r,
            Request::Act {
                sandbox: "a-1-0".into(),
                action: Action::Isolate
            }
        );
        let e = parse_request(br#"{"op":"act","sandbox":"a","action":"nuke"}"#).unwrap_err();
        assert!(e.starts_with("bad request: unknown variant `nuke`"), "{e}");
        let e = parse_request(b"{\"op\": 1").unwrap_err();
        assert!(e.contains("line 1 column"), "{e}");
        assert!(parse_request(br#"{"op":"ps","extra":1}"#).is_err());
        assert!(parse_request(br#"{"op":"act","sandbox":"a","action":"kill","x":1}"#).is_err());
        assert_eq!(parse_request(br#"{"op":"ps"}"#), Ok(Request::Ps(NoArgs {})));
        assert!(parse_request(b"garbage").is_err());
        let events = parse_request(br#"{"op":"events","since":"2026-11-26T10:00:00Z"}"#).unwrap();
        assert!(matches!(
            events,
            Request::Events {
                since: Some(_),
                follow: false,
                ..
            }
        ));
    }

    #[test]
    fn replies_are_one_line_each() {
        let ok = ok_line(serde_json::json!({"n": 1}));
        assert_eq!(ok.iter().filter(|b| **b == b'\n').count(), 1);
        let v: serde_json::Value = serde_json::from_slice(&ok).unwrap();
        assert_eq!(v["ok"], true);
        assert_eq!(v["n"], 1);
        let v: serde_json::Value = serde_json::from_slice(&error_line("no\nway")).unwrap();
        assert_eq!(v["ok"], false);
        assert_eq!(v["error"], "no\nway");
    }
}
