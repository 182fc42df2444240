//! Response rules: what a sandbox's own watcher does when a pattern of events appears
//! (freeze it, cut its network, kill it, or only raise an alert), without waiting for a
//! person or the collector. Written in a profile as `[[response]]` entries, and host-wide in
//! cordond's `cordon.toml` in the same form:
//!
//! ```toml
//! [[response]]
//! name = "ssh keys"
//! when = { kind = "file_denied", path = "{home}/.ssh/**" }
//! action = "freeze"
//!
//! [[response]]
//! when = { kind = "dns_denied" }
//! count = 20
//! within = "10s"
//! action = "isolate"
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use cordon_proto::event::{Event, Severity, What};

use crate::profile::diag::closest;

/// One `[[response]]` entry as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseEntry {
    /// What the recorded action names as its actor (default: `response N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub when: When,
    /// `freeze`, `isolate`, `kill` or `alert`.
    pub action: String,
    /// How many matching events set it off (default 1)...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// ...within how long (`"10s"`; default a minute when `count` is above 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<String>,
}

/// Which events an entry counts: every condition given holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct When {
    /// A kind of event (`file_denied`, `dns_denied`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// A file denial at or below this path (`"{home}/.ssh"`, or `"{home}/.ssh/**"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A refused name, or a connection to what it resolved to (`"*.example.com"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// A refused syscall (`ptrace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syscall: Option<String>,
    /// Events of this severity or higher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
}

/// What a rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseAction {
    Freeze,
    Isolate,
    Kill,
    /// Nothing to the sandbox: a `high` event that says the rule matched, for the people
    /// and systems watching the collector.
    Alert,
}

impl ResponseAction {
    const ALL: [(&'static str, ResponseAction); 4] = [
        ("freeze", ResponseAction::Freeze),
        ("isolate", ResponseAction::Isolate),
        ("kill", ResponseAction::Kill),
        ("alert", ResponseAction::Alert),
    ];
}

/// A compiled rule: placeholders expanded, every part checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResponseRule {
    pub name: String,
    pub kind: Option<String>,
    /// At or below this path.
    pub path: Option<PathBuf>,
    /// A host pattern (see [`host_matches`]).
    pub host: Option<String>,
    pub syscall: Option<String>,
    pub severity: Option<Severity>,
    pub action: ResponseAction,
    pub count: u32,
    #[serde(serialize_with = "millis")]
    pub within: Duration,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// The most events a rule may count (each is an instant the watcher keeps).
pub const MAX_COUNT: u32 = 10_000;

impl ResponseRule {
    /// Checks and compiles entry number `index` (from 0); `path` expands a path template
    /// (placeholders) into a clean absolute path, and `host` checks a host pattern.
    pub fn compile(
        entry: &ResponseEntry,
        index: usize,
        path: &dyn Fn(&str) -> Result<PathBuf, String>,
        host: &dyn Fn(&str) -> Result<String, String>,
        syscall: &dyn Fn(&str) -> Result<String, String>,
    ) -> Result<Self, String> {
        let when = &entry.when;
        if when == &When::default() {
            return Err(
                "`when` names nothing: give a kind, path, host, syscall or severity".into(),
            );
        }
        let kind = match &when.kind {
            Some(kind) if What::KINDS.contains(&kind.as_str()) => Some(kind.clone()),
            Some(kind) => {
                let hint = closest(kind, What::KINDS)
                    .map(|m| format!("; did you mean `{m}`?"))
                    .unwrap_or_default();
                return Err(format!(
                    "`{kind}` is not a kind of event ({}){hint}",
                    What::KINDS.join(", ")
                ));
            }
            None => None,
        };
        // A part that only one kind of event has implies that kind; another kind is a
        // rule that can never match.
        let implied = [
            (when.path.is_some(), "path", &["file_denied"][..]),
            (
                when.host.is_some(),
                "host",
                &["dns_denied", "network_denied"][..],
            ),
            (when.syscall.is_some(), "syscall", &["syscall_denied"][..]),
        ];
        for (given, part, kinds) in implied {
            if let (true, Some(kind)) = (given, &kind) {
                if !kinds.contains(&kind.as_str()) {
                    return Err(format!(
                        "`{part}` matches only {} events, never `{kind}`",
                        kinds.join(" or ")
                    ));
                }
            }
        }
        let path = match &when.path {
            Some(template) => {
                let template = template.strip_suffix("/**").unwrap_or(template);
                if template.contains('*') {
                    return Err(format!(
                        "path `{template}`: only a trailing `/**` is understood (a path matches what is at or below it)"
                    ));
                }
                Some(path(template)?)
            }
            None => None,
        };
        let action = ResponseAction::ALL
            .iter()
            .find(|(name, _)| *name == entry.action)
            .map(|(_, a)| *a)
            .ok_or_else(|| {
                let hint = closest(&entry.action, ResponseAction::ALL.iter().map(|(n, _)| *n))
                    .map(|m| format!("; did you mean `{m}`?"))
                    .unwrap_or_default();
                format!(
                    "`{}` is not a response: freeze, isolate, kill or alert{hint}",
                    entry.action
                )
            })?;
        let count = entry.count.unwrap_or(1);
        if !(1..=MAX_COUNT).contains(&count) {
            return Err(format!("count = {count}: from 1 to {MAX_COUNT}"));
        }
        let within = match &entry.within {
            Some(text) => match humantime::parse_duration(text) {
                Ok(d) if !d.is_zero() && d <= Duration::from_secs(86_400) => d,
                _ => {
                    return Err(format!(
                        "within = \"{text}\": a duration up to a day, like \"10s\""
                    ))
                }
            },
            None => Duration::from_secs(60),
        };
        Ok(Self {
            name: entry
                .name
                .clone()
                .unwrap_or_else(|| format!("response {}", index + 1)),
            kind,
            path,
            host: when.host.as_deref().map(host).transpose()?,
            syscall: when.syscall.as_deref().map(syscall).transpose()?,
            severity: when.severity,
            action,
            count,
            within,
        })
    }

    /// Whether `event` is one this rule counts.
    pub fn matches(&self, event: &Event) -> bool {
        if self.kind.as_deref().is_some_and(|k| k != event.what.kind()) {
            return false;
        }
        if self.severity.is_some_and(|least| event.severity() < least) {
            return false;
        }
        if let Some(below) = &self.path {
            let What::FileDenied {
                path,
                target,
                layer,
                ..
            } = &event.what
            else {
                return false;
            };
            // A refusal whose path could not be followed to where it led (a link swapped
            // since the call): it may have been this one, so it counts (failing closed).
            if *layer == Some(cordon_proto::event::FileLayer::Unplaced) {
                return true;
            }
            // What the kernel reached, and the name as asked: either under the rule's path.
            let under = |p: &str| {
                let p = Path::new(p);
                p.is_absolute() && p.starts_with(below)
            };
            if !(under(path) || target.as_deref().is_some_and(under)) {
                return false;
            }
        }
        if let Some(pattern) = &self.host {
            let domain = match &event.what {
                What::DnsDenied { domain, .. } => Some(domain),
                What::NetworkDenied { domain, .. } => domain.as_ref(),
                _ => None,
            };
            if !domain.is_some_and(|d| host_matches(pattern, d)) {
                return false;
            }
        }
        if let Some(name) = &self.syscall {
            let What::SyscallDenied { syscall, .. } = &event.what else {
                return false;
            };
            if syscall != name {
                return false;
            }
        }
        true
    }
}

/// Whether a DNS name (any case, with or without the final dot) is `pattern`'s: the name
/// itself, or with `*.` the names below it (not itself).
pub fn host_matches(pattern: &str, name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(parent) => {
            name.len() > parent.len() + 1
                && name.ends_with(parent)
                && name[..name.len() - parent.len()].ends_with('.')
        }
        None => name == pattern,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(text: &str) -> Result<ResponseRule, String> {
        let entry: ResponseEntry = toml::from_str(text).map_err(|e| e.to_string())?;
        ResponseRule::compile(
            &entry,
            0,
            &|p| Ok(PathBuf::from(p.replace("{home}", "/home/dev"))),
            &|h| Ok(h.to_string()),
            &|s| Ok(s.to_string()),
        )
    }

    fn file_denied(path: &str) -> Event {
        serde_json::from_value(serde_json::json!({
            "v": 1, "id": "01a2263e-175e-73e4-b000-b5d7de0f6653",
            "time": "2026-11-29T08:00:00Z", "sandbox": "a-1-0", "profile": "a",
            "kind": "file_denied", "path": path, "access": "fs.read_file",
            "layer": "deny", "rule": "/home/dev/.ssh"
        }))
        .expect("an event")
    }

    #[test]
    fn a_path_rule_matches_at_or_below_its_path_only() {
        let rule = compile(
            "when = { kind = \"file_denied\", path = \"{home}/.ssh/**\" }\naction = \"freeze\"",
        )
        .unwrap();
        assert_eq!(rule.action, ResponseAction::Freeze);
        assert_eq!(rule.name, "response 1");
        assert!(rule.matches(&file_denied("/home/dev/.ssh/id_ed25519")));
        assert!(rule.matches(&file_denied("/home/dev/.ssh")));
        assert!(!rule.matches(&file_denied("/home/dev/.sshx/key")));
        assert!(!rule.matches(&file_denied("relative/.ssh")));
    }

    #[test]
    fn mistakes_are_named() {
        let err = compile("when = { kind = \"file_denid\" }\naction = \"freeze\"").unwrap_err();
        assert!(err.contains("did you mean `file_denied`"), "{err}");
        let err = compile("when = { kind = \"exec\" }\naction = \"freez\"").unwrap_err();
        assert!(err.contains("did you mean `freeze`"), "{err}");
        let err = compile("when = {}\naction = \"kill\"").unwrap_err();
        assert!(err.contains("names nothing"), "{err}");
        let err = compile("when = { kind = \"dns_denied\", path = \"/x\" }\naction = \"kill\"")
            .unwrap_err();
        assert!(err.contains("never `dns_denied`"), "{err}");
        let err = compile("when = { path = \"/x/*.pem\" }\naction = \"kill\"").unwrap_err();
        assert!(err.contains("trailing `/**`"), "{err}");
        let err = compile("when = { kind = \"exec\" }\naction = \"kill\"\ncount = 0").unwrap_err();
        assert!(err.contains("count = 0"), "{err}");
        let err = compile("when = { kind = \"exec\" }\naction = \"kill\"\nwithin = \"soon\"")
            .unwrap_err();
        assert!(err.contains("within"), "{err}");
        assert!(compile("when = { kind = \"exec\" }\naction = \"kill\"\nextra = 1").is_err());
    }

    #[test]
    fn severity_and_host_conditions_hold_together() {
        let rule = compile(
            "when = { host = \"*.evil.test\", severity = \"medium\" }\naction = \"isolate\"\ncount = 3\nwithin = \"5s\"",
        )
        .unwrap();
        assert_eq!((rule.count, rule.within), (3, Duration::from_secs(5)));
        let dns: Event = serde_json::from_value(serde_json::json!({
            "v": 1, "id": "01a2263e-175e-73e4-b000-b5d7de0f6653",
            "time": "2026-11-29T08:00:00Z", "sandbox": "a-1-0", "profile": "a",
            "kind": "dns_denied", "domain": "x.evil.test", "query_type": "A"
        }))
        .expect("an event");
        assert!(rule.matches(&dns));
        assert!(!rule.matches(&file_denied("/home/dev/.ssh/id")));
    }
}
