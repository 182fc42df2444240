//! The profile file as written: serde types that mirror the TOML one to one.
//!
//! Everything here is raw. Values that a later step must point back at (paths, names,
//! syscalls) are kept `Spanned` so an error can name the line and column they came from.
//! Validation and placeholder expansion happen in [`crate::policy`].

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// One profile file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileFile {
    pub profile: ProfileSection,
    #[serde(default)]
    pub filesystem: FilesystemSection,
    #[serde(default)]
    pub network: NetworkSection,
    #[serde(default)]
    pub syscalls: SyscallsSection,
    #[serde(default)]
    pub process: ProcessSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSection {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Other profiles, by name, merged before this one.
    #[serde(default)]
    pub extends: Vec<Spanned<String>>,
    #[serde(default)]
    pub mode: Option<Mode>,
    #[serde(default)]
    pub compat: Option<Compat>,
    /// The lowest Landlock ABI this profile accepts. Under `compat = "strict"` a kernel
    /// below it refuses to start the sandbox.
    #[serde(default)]
    pub landlock_abi: Option<Spanned<u32>>,
}

/// How violations are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// What the profile does not allow is refused and reported.
    Enforce,
    /// The sandbox is built the same way, but what enforce mode would refuse is let through
    /// and reported (`enforced: false`), to learn what a program needs; a few refusals stay
    /// for the host's safety (see `Policy::audit_keeps`).
    Audit,
}

/// What to do when the kernel cannot enforce a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compat {
    /// Refuse to start.
    Strict,
    /// Start with what the kernel can enforce, and say exactly what is missing.
    BestEffort,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesystemSection {
    #[serde(default)]
    pub read: Vec<Spanned<String>>,
    #[serde(default)]
    pub write: Vec<Spanned<String>>,
    #[serde(default)]
    pub exec: Vec<Spanned<String>>,
    #[serde(default)]
    pub deny: Vec<Spanned<String>>,
    /// Paths kept read-only inside writable trees (`{workspace}/.git/config`).
    #[serde(default)]
    pub read_only: Vec<Spanned<String>>,
    /// Git repositories (work trees) whose metadata stays read-only (`{workspace}`).
    #[serde(default)]
    pub repositories: Vec<Spanned<String>>,
    /// Size of the private `/tmp` (a tmpfs): bytes, or "512M", "2G".
    #[serde(default)]
    pub tmp_size: Option<Spanned<MemorySize>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    #[serde(default)]
    pub connect_ports: Vec<Spanned<u16>>,
    #[serde(default)]
    pub bind_ports: Vec<Spanned<u16>>,
    /// Where the sandbox may connect, by host name or address prefix.
    #[serde(default)]
    pub egress: Vec<Spanned<EgressRule>>,
    /// Socket families the sandbox may create beyond unix, inet, inet6 and netlink.
    #[serde(default)]
    pub socket_families: Vec<Spanned<String>>,
}

/// `{ host = "pypi.org", ports = [443] }` or `{ cidr = "10.0.0.0/8", ports = [5432], proto = "tcp" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressRule {
    #[serde(default)]
    pub host: Option<Spanned<String>>,
    #[serde(default)]
    pub cidr: Option<Spanned<String>>,
    #[serde(default)]
    pub ports: Option<Vec<Spanned<u16>>>,
    #[serde(default)]
    pub proto: Option<Proto>,
}

/// The transport an egress rule allows; both when the rule does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Proto {
    Tcp,
    Udp,
    Any,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyscallsSection {
    #[serde(default)]
    pub preset: Option<Spanned<String>>,
    #[serde(default)]
    pub deny: Vec<Spanned<String>>,
    #[serde(default)]
    pub allow: Vec<Spanned<String>>,
    #[serde(default)]
    pub action: Option<SyscallAction>,
}

/// What a denied syscall gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyscallAction {
    /// The call fails with `EPERM`.
    Errno,
    /// The whole process is killed with `SIGSYS`.
    Kill,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessSection {
    /// Environment variables passed through; every other one is scrubbed.
    #[serde(default)]
    pub env: Vec<Spanned<String>>,
    /// Variables set inside the sandbox, whatever the caller's environment says.
    #[serde(default)]
    pub set_env: BTreeMap<String, Spanned<String>>,
    /// Capabilities the sandboxed process keeps (none by default).
    #[serde(default)]
    pub capabilities: Vec<Spanned<String>>,
    /// Run as this user instead of the caller.
    #[serde(default)]
    pub user: Option<Spanned<String>>,
    /// Most processes (and threads) the sandbox may have at once (cgroup `pids.max`).
    #[serde(default)]
    pub max_processes: Option<Spanned<i64>>,
    /// Most memory the sandbox may use (cgroup `memory.max`): bytes, or "512M", "2G".
    #[serde(default)]
    pub max_memory: Option<Spanned<MemorySize>>,
}

/// A memory size as written: a number of bytes or a string with a K/M/G/T suffix.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum MemorySize {
    Bytes(i64),
    Text(String),
}
