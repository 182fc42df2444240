//! The agent-collector protocol. Agents are behind NAT: cordond always connects out, the
//! collector never connects in. Every request carries `Authorization: Bearer <host token>`,
//! and the token names the host.
//!
//! * `POST /api/v1/events` ([`INGEST_PATH`]): a [`Batch`], gzip-compressed JSON
//!   (`Content-Encoding: gzip`). Any 2xx acknowledges the whole batch, answered with an
//!   [`IngestReply`]: the collector keeps each event id once per host, so a batch sent again
//!   after a lost answer is harmless, and an event it cannot take is set aside and named in
//!   the reply (`rejected`) while the rest is stored. A 4xx whose [`ErrorReply::code`] is one
//!   of [`ErrorCode::is_about_content`]'s refuses the batch for what it holds: the sender
//!   splits it to find the event at fault. Any other refusal (401, 403, 429, 5xx, a version
//!   the collector does not read) is about the sender or the collector, not the events, and
//!   is worth trying again later.
//! * `POST /api/v1/agent/poll?wait=SECONDS` ([`POLL_PATH`]): a [`Poll`] with the host's
//!   sandboxes and the results of the commands it ran; the answer, a [`PollReply`], comes as
//!   soon as a command is waiting for the host, or after `wait` seconds with none.

use serde::{Deserialize, Serialize};

use crate::event::{Action, ActionResult, Event};

/// Path of the ingest endpoint below the collector's URL.
pub const INGEST_PATH: &str = "/api/v1/events";
/// Path of the command endpoint below the collector's URL.
pub const POLL_PATH: &str = "/api/v1/agent/poll";

/// Where a host uploads a sandbox's evidence archive (`cordon evidence`): `POST`, the
/// gzipped tar archive as the body, described by the headers below; the collector checks
/// the body's SHA-256 against [`EVIDENCE_SHA256`] and stores it once per [`EVIDENCE_ID`].
pub const EVIDENCE_PATH: &str = "/api/v1/evidence";
/// The archive's id (a UUIDv7 the host chose): uploading it again is harmless.
pub const EVIDENCE_ID: &str = "x-cordon-evidence-id";
pub const EVIDENCE_SANDBOX: &str = "x-cordon-sandbox";
pub const EVIDENCE_SESSION: &str = "x-cordon-session";
pub const EVIDENCE_SHA256: &str = "x-cordon-archive-sha256";
pub const EVIDENCE_MANIFEST_SHA256: &str = "x-cordon-manifest-sha256";
/// The largest archive a collector takes: a host does not queue a larger one (it stays
/// where it was written).
pub const EVIDENCE_MAX_BYTES: u64 = 256 << 20;
/// What the headers of an evidence upload say of its archive.
#[derive(Debug, Clone, PartialEq)]
pub struct EvidenceUpload<'a> {
    pub id: uuid::Uuid,
    pub sandbox: &'a str,
    pub session: Option<uuid::Uuid>,
    pub archive_sha256: &'a str,
    pub manifest_sha256: &'a str,
}

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

/// The collector's answer to a batch it took.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IngestReply {
    /// Events stored now.
    pub stored: usize,
    /// Events the host had sent before (same id): not stored twice.
    pub duplicates: usize,
    /// Events set aside (kept apart, counted, shown to viewers), each with why.
    #[serde(default)]
    pub rejected: Vec<Rejected>,
    /// Events whose text was cut to the collector's size limit (stored, marked).
    #[serde(default)]
    pub truncated: usize,
}

/// An event of a batch the collector set aside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    /// Its place in the batch, from 0.
    pub index: usize,
    /// Its id, when it has a readable one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub reason: RejectReason,
    /// What exactly was wrong, for people.
    pub detail: String,
}

/// Why the collector set an event aside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// Not an event of the schema (a missing field, an unknown kind, a wrong type).
    Malformed,
    /// An event of a schema version this collector does not read.
    SchemaVersion,
    /// Still over the size limit once its long text was cut (too many fields).
    TooBig,
}

impl RejectReason {
    pub const ALL: [RejectReason; 3] = [Self::Malformed, Self::SchemaVersion, Self::TooBig];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::SchemaVersion => "schema_version",
            Self::TooBig => "too_big",
        }
    }
}

/// Every error the collector answers: `{"error": "...", "code": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<ErrorCode>,
}

/// What a refusal of a batch was about, for a sender deciding what to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not a batch (not JSON, not gzip).
    MalformedBatch,
    /// The body is over the collector's limit.
    BodyTooLarge,
    /// More events than the collector takes at once.
    TooManyEvents,
    /// A batch version this collector does not read.
    BatchVersion,
    /// Anything else.
    #[serde(other)]
    Other,
}

impl ErrorCode {
    /// Whether the refusal is about what the batch holds, so that a smaller batch (in the
    /// end, one event alone) would be answered differently.
    pub fn is_about_content(self) -> bool {
        matches!(
            self,
            Self::MalformedBatch | Self::BodyTooLarge | Self::TooManyEvents
        )
    }
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
    /// The session running in it (every event of the sandbox carries it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<uuid::Uuid>,
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
