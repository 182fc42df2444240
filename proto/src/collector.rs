//! The agent-collector protocol. Agents are behind NAT: cordond always connects out, the
//! collector never connects in. Every request carries `Authorization: Bearer <host token>`,
//! and the token names the host.
//!
//! * `POST /api/v1/events` ([`INGEST_PATH`]): a [`Batch`], gzip-compressed JSON
//!   (`Content-Encoding: gzip`). Any 2xx acknowledges the whole batch; the collector keeps
//!   each event id once, so a batch sent again after a lost answer is harmless.
//! * `POST /api/v1/agent/poll?wait=SECONDS` ([`POLL_PATH`]): a [`Poll`] with the host's
//!   sandboxes and the results of the commands it ran; the answer, a [`PollReply`], comes as
//!   soon as a command is waiting for the host, or after `wait` seconds with none.

use serde::{Deserialize, Serialize};

use crate::event::{Action, ActionResult, Event};

/// Path of the ingest endpoint below the collector's URL.
pub const INGEST_PATH: &str = "/api/v1/events";
/// Path of the command endpoint below the collector's URL.
pub const POLL_PATH: &str = "/api/v1/agent/poll";
/// The version of the batch and poll forms.
pub const PROTOCOL_VERSION: u32 = 1;

/// A batch of events from one host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    pub v: u32,
    pub host: String,
    pub events: Vec<Event>,
}

/// One sandbox as a host reports it (`cordon ps` shows the same).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxInfo {
    pub name: String,
    pub profile: String,
    pub procs: usize,
    /// `running` or `frozen`.
    pub state: String,
    /// `policy` (the profile's egress rules), `isolated`, `none` (not registered: no
    /// network at all) or `unknown` (the eBPF maps cannot be read).
    pub network: String,
    /// The user its first process runs as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
}

/// What cordond sends when it asks for commands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Poll {
    pub v: u32,
    pub host: String,
    /// The host's sandboxes now.
    pub sandboxes: Vec<SandboxInfo>,
    /// Results of commands run since the last poll.
    #[serde(default)]
    pub results: Vec<CommandResult>,
}

/// The collector's answer to a [`Poll`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PollReply {
    pub commands: Vec<Command>,
}

/// A responder's command for one sandbox on the polling host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub id: String,
    pub sandbox: String,
    pub action: Action,
    /// The name of the collector token that issued it.
    pub issued_by: String,
}

/// How a command went on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandResult {
    pub id: String,
    pub result: ActionResult,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub took_ms: u64,
}
