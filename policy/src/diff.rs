//! What one policy allows or holds that another does not (`cordon profile diff A B`).
//!
//! Each policy is described as lines, one per thing it grants or keeps (`read /usr`,
//! `egress pypi.org:443 tcp+udp`, `deny ptrace`, `max_memory 8589934592`), grouped by section;
//! the difference is the lines of one that the other lacks. Both policies should be compiled
//! against the same [`crate::policy::Context`], so that placeholders expand alike.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::policy::{ArgCondition, Destination, Policy};

/// The sections, in the order they are shown.
pub const SECTIONS: &[&str] = &["profile", "filesystem", "network", "syscalls", "process"];

/// How one section differs: lines only `b` has (`added`), lines only `a` has (`removed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SectionDiff {
    pub section: &'static str,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

/// The sections in which `b` differs from `a`; empty when they grant and keep the same.
pub fn diff(a: &Policy, b: &Policy) -> Vec<SectionDiff> {
    let (a, b) = (lines(a), lines(b));
    SECTIONS
        .iter()
        .filter_map(|section| {
            let of = |all: &BTreeSet<(&'static str, String)>| -> BTreeSet<String> {
                all.iter()
                    .filter(|(s, _)| s == section)
                    .map(|(_, l)| l.clone())
                    .collect()
            };
            let (before, after) = (of(&a), of(&b));
            let added: Vec<String> = after.difference(&before).cloned().collect();
            let removed: Vec<String> = before.difference(&after).cloned().collect();
            (!added.is_empty() || !removed.is_empty()).then_some(SectionDiff {
                section,
                added,
                removed,
            })
        })
        .collect()
}

/// A policy as `(section, line)` pairs: everything it grants or keeps that a diff shows.
pub fn lines(p: &Policy) -> BTreeSet<(&'static str, String)> {
    let mut out = BTreeSet::new();
    let mut add = |section: &'static str, line: String| {
        out.insert((section, line));
    };
    add("profile", format!("mode {}", word(&p.mode)));
    add("profile", format!("compat {}", word(&p.compat)));
    add("profile", format!("landlock_abi {}", p.landlock_abi));
    match &p.identity.user {
        Some(user) => add("process", format!("user {user}")),
        None => add("process", "user (the caller)".to_string()),
    }

    let fs = &p.filesystem;
    for rule in &fs.rules {
        let path = rule.path.display();
        for (right, has) in [
            ("read", rule.access.read),
            ("write", rule.access.write),
            ("exec", rule.access.exec),
        ] {
            if has {
                add("filesystem", format!("{right} {path}"));
            }
        }
    }
    for path in &fs.deny {
        add("filesystem", format!("deny {}", path.display()));
    }
    for path in &fs.read_only {
        add("filesystem", format!("read_only {}", path.display()));
    }
    for path in &fs.repositories {
        add("filesystem", format!("repository {}", path.display()));
    }
    add("filesystem", format!("tmp_size {}", fs.tmp_size));

    let net = &p.network;
    for port in &net.connect_tcp {
        add("network", format!("connect_port {port}"));
    }
    for port in &net.bind_tcp {
        add("network", format!("bind_port {port}"));
    }
    for rule in &net.egress {
        let to = match &rule.to {
            Destination::Host(host) => host.clone(),
            Destination::Cidr(net) => net.to_string(),
        };
        let proto = match (rule.tcp, rule.udp) {
            (true, true) => "tcp+udp",
            (true, false) => "tcp",
            (false, true) => "udp",
            (false, false) => "none",
        };
        for port in &rule.ports {
            add("network", format!("egress {to} port {port} {proto}"));
        }
    }
    for family in &net.socket_families {
        add("network", format!("socket_family {family}"));
    }

    add("syscalls", format!("action {}", word(&p.syscalls.action)));
    for rule in &p.syscalls.deny {
        match &rule.when {
            None => add("syscalls", format!("deny {}", rule.name)),
            Some(when) => add(
                "syscalls",
                format!("deny {} {}", rule.name, condition(when)),
            ),
        }
    }

    let pr = &p.process;
    for name in &pr.env_keep {
        add("process", format!("env {name}"));
    }
    for (name, value) in &pr.set_env {
        add("process", format!("set_env {name}={value}"));
    }
    for cap in &pr.capabilities {
        add("process", format!("capability {cap}"));
    }
    add(
        "process",
        match pr.max_processes {
            Some(n) => format!("max_processes {n}"),
            None => "max_processes (no limit)".to_string(),
        },
    );
    add(
        "process",
        match pr.max_memory {
            Some(n) => format!("max_memory {n}"),
            None => "max_memory (no limit)".to_string(),
        },
    );
    out
}

/// An enum as the profile spells it (`best-effort`, `errno`).
fn word<T: Serialize>(value: &T) -> String {
    match toml::Value::try_from(value) {
        Ok(toml::Value::String(s)) => s,
        _ => "?".to_string(),
    }
}

/// When an argument check denies the call.
fn condition(when: &ArgCondition) -> String {
    match when {
        ArgCondition::AnyBit { arg, mask } => format!("when arg{arg} has any of {mask:#x}"),
        ArgCondition::OneOf { arg, values } => {
            let values: Vec<String> = values.iter().map(|v| format!("{v:#x}")).collect();
            format!("when arg{arg} is {}", values.join(" or "))
        }
        ArgCondition::NotIn { arg, allowed } => {
            format!("unless arg{arg} is a bit of {allowed:#x}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(text: &str) -> Policy {
        crate::policy::tests::compile_text(text).unwrap()
    }

    fn section<'a>(d: &'a [SectionDiff], name: &str) -> &'a SectionDiff {
        d.iter()
            .find(|s| s.section == name)
            .unwrap_or_else(|| panic!("no {name} in {d:?}"))
    }

    #[test]
    fn a_policy_does_not_differ_from_itself() {
        let a = policy("[profile]\nname = \"p\"\nextends = [\"coding-agent\"]\n");
        assert_eq!(diff(&a, &a), []);
    }

    #[test]
    fn narrowing_coding_agent_shows_as_lines_it_lost_and_gained() {
        let a = policy("[profile]\nname = \"p\"\nextends = [\"coding-agent\"]\n");
        let b = policy(
            "[profile]\nname = \"p\"\nextends = [\"coding-agent\"]\n[filesystem]\nwrite = { remove = [\"{tmp}\"] }\ndeny = { remove = [\"{home}/.aws\"], add = [\"{workspace}/.env\"], widen = true }\n[network]\negress = { remove = [{ host = \"registry.npmjs.org\" }], add = [{ host = \"example.org\", ports = [443], proto = \"tcp\" }] }\n[syscalls]\nallow = [\"ptrace\"]\naction = \"kill\"\n[process]\nenv = { remove = [\"TERM\"] }\nmax_memory = \"1G\"\n",
        );
        let d = diff(&a, &b);
        let fs = section(&d, "filesystem");
        assert_eq!(fs.added, ["deny /work/ws/.env"]);
        // Written implies read: with `{tmp}` out of `write`, nothing grants /tmp at all.
        assert_eq!(
            fs.removed,
            ["deny /home/dev/.aws", "read /tmp", "write /tmp"]
        );
        let net = section(&d, "network");
        assert_eq!(net.added, ["egress example.org port 443 tcp"]);
        assert_eq!(net.removed, ["egress registry.npmjs.org port 443 tcp"]);
        // 443 is still a port to connect to (the other hosts'): no connect_port line changes.
        let sc = section(&d, "syscalls");
        assert_eq!(sc.added, ["action kill"]);
        assert_eq!(sc.removed, ["action errno", "deny ptrace"]);
        let pr = section(&d, "process");
        assert_eq!(pr.added, ["max_memory 1073741824"]);
        assert_eq!(pr.removed, ["env TERM", "max_memory 8589934592"]);
        assert!(d.iter().all(|s| s.section != "profile"));
        // The other way round, added and removed swap.
        let back = diff(&b, &a);
        assert_eq!(section(&back, "filesystem").added, fs.removed);
    }

    #[test]
    fn argument_checks_and_settings_are_lines_too() {
        let a = policy("[profile]\nname = \"p\"\n");
        let b = policy(
            "[profile]\nname = \"p\"\ncompat = \"best-effort\"\n[network]\nsocket_families = [\"vsock\"]\n",
        );
        let d = diff(&a, &b);
        assert_eq!(section(&d, "profile").added, ["compat best-effort"]);
        let net = section(&d, "network");
        assert_eq!(net.added, ["socket_family vsock"]);
        let sc = section(&d, "syscalls");
        assert_eq!(sc.added.len(), 1);
        assert!(
            sc.added[0].starts_with("deny socket unless arg0 is a bit of "),
            "{sc:?}"
        );
    }
}
