//! The profile file as written: serde types that mirror the TOML one to one.
//!
//! Everything here is raw. Values that a later step must point back at (paths, names,
//! syscalls) are kept `Spanned` so an error can name the line and column they came from.
//! Validation and placeholder expansion happen in [`crate::policy`].
//!
//! Every list a profile inherits can be written two ways: a plain list adds to what the
//! profiles it extends have ([`ListField::Add`]); a table edits it ([`ListEdit`]: `add`,
//! `remove`, `replace`, and `widen = true` where taking an entry out opens the sandbox).

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
    #[serde(default)]
    pub severity: SeveritySection,
    /// `[[response]]`: what the sandbox's watcher does on its own when events match.
    #[serde(default)]
    pub response: Vec<Spanned<crate::response::ResponseEntry>>,
}

/// `[severity]`: the level a denial gets, by what it touched, over the one its kind and
/// rule give (`cordon_proto::event::What::severity`). A child's entry replaces its parent's.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeveritySection {
    /// File denials at or below a path (`"{home}/.ssh" = "critical"`); the longest wins.
    #[serde(default)]
    pub paths: BTreeMap<String, Spanned<cordon_proto::event::Severity>>,
    /// Denials of a syscall (`ptrace = "critical"`).
    #[serde(default)]
    pub syscalls: BTreeMap<String, Spanned<cordon_proto::event::Severity>>,
    /// DNS refusals of a name, and connections to what it was resolved to (`"*.example.com"`).
    #[serde(default)]
    pub hosts: BTreeMap<String, Spanned<cordon_proto::event::Severity>>,
    /// Every denial of a kind that no entry above names (`dns_denied = "low"`).
    #[serde(default)]
    pub kinds: BTreeMap<String, Spanned<cordon_proto::event::Severity>>,
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
    pub read: Option<Spanned<ListField<String>>>,
    #[serde(default)]
    pub write: Option<Spanned<ListField<String>>>,
    #[serde(default)]
    pub exec: Option<Spanned<ListField<String>>>,
    #[serde(default)]
    pub deny: Option<Spanned<ListField<String>>>,
    /// Paths kept read-only inside writable trees (`{workspace}/.git/config`).
    #[serde(default)]
    pub read_only: Option<Spanned<ListField<String>>>,
    /// Git repositories (work trees) whose metadata stays read-only (`{workspace}`).
    #[serde(default)]
    pub repositories: Option<Spanned<ListField<String>>>,
    /// Size of the private `/tmp` (a tmpfs): bytes, or "512M", "2G".
    #[serde(default)]
    pub tmp_size: Option<Spanned<MemorySize>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    #[serde(default)]
    pub connect_ports: Option<Spanned<ListField<u16>>>,
    #[serde(default)]
    pub bind_ports: Option<Spanned<ListField<u16>>>,
    /// Where the sandbox may connect, by host name or address prefix.
    #[serde(default)]
    pub egress: Option<Spanned<ListField<EgressRule>>>,
    /// Socket families the sandbox may create beyond unix, inet, inet6 and netlink.
    #[serde(default)]
    pub socket_families: Option<Spanned<ListField<String>>>,
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
    pub deny: Option<Spanned<ListField<String>>>,
    #[serde(default)]
    pub allow: Option<Spanned<ListField<String>>>,
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
    pub env: Option<Spanned<ListField<String>>>,
    /// Variables set inside the sandbox, whatever the caller's environment says.
    /// A table of values, or of edits: `remove = ["A"]`, `replace = { A = "1" }`, `add = { .. }`.
    #[serde(default)]
    pub set_env: Option<Spanned<BTreeMap<String, Spanned<SetEnvEntry>>>>,
    /// Capabilities the sandboxed process keeps (none by default).
    #[serde(default)]
    pub capabilities: Option<Spanned<ListField<String>>>,
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

/// A list as a profile writes it.
#[derive(Debug)]
pub enum ListField<T> {
    /// `read = ["/opt"]`: added to what the extended profiles have.
    Add(Vec<Spanned<T>>),
    /// `read = { remove = ["/opt"] }`: an edit of what they have.
    Edit(ListEdit<T>),
}

/// `{ add = [..], remove = [..], replace = [..], widen = true }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListEdit<T> {
    /// Entries added after the removals.
    #[serde(default = "Vec::new")]
    pub add: Vec<Spanned<T>>,
    /// Inherited entries taken out; each must be one the extended profiles have.
    #[serde(default = "Option::default")]
    pub remove: Option<Vec<Spanned<T>>>,
    /// The whole list, whatever was inherited.
    #[serde(default = "Option::default")]
    pub replace: Option<Vec<Spanned<T>>>,
    /// Says that taking entries out of a list that protects (`deny`, `read_only`,
    /// `repositories`, `[syscalls] deny`) is meant, since it opens the sandbox.
    #[serde(default)]
    pub widen: Option<Spanned<bool>>,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ListField<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visit<T> {
            type Value = ListField<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list, or a table of `add`, `remove`, `replace` (and `widen`)")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<Self::Value, A::Error> {
                Deserialize::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
                    .map(ListField::Add)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                Deserialize::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(ListField::Edit)
            }
        }
        deserializer.deserialize_any(Visit(std::marker::PhantomData))
    }
}

/// One entry of `[process] set_env`: a variable's value, or an edit of the inherited ones.
#[derive(Debug)]
pub enum SetEnvEntry {
    /// `NAME = "value"`.
    Value(String),
    /// `remove = ["NAME"]`.
    Names(Vec<Spanned<String>>),
    /// `replace = { NAME = "value" }` or `add = { .. }`.
    Table(BTreeMap<String, Spanned<String>>),
}

impl<'de> Deserialize<'de> for SetEnvEntry {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = SetEnvEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string (the variable's value)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(SetEnvEntry::Value(v.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<Self::Value, A::Error> {
                Deserialize::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
                    .map(SetEnvEntry::Names)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                Deserialize::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(SetEnvEntry::Table)
            }
        }
        deserializer.deserialize_any(Visit)
    }
}
