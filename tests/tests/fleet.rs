//! Fleet-wide rules (`[[fleet_rule]]` in collector.toml): a pattern no one host sees (the
//! same name refused on three hosts within a minute) makes the collector act on every
//! sandbox that took part, through the command queue a responder's commands go through, or
//! by storing an alert; the same on fewer hosts, or on other names, does nothing.

mod common;

use std::time::Duration;

use common::collector::{batch, Collector, Db};
use common::wait_until;

const RULES: &str = "[[fleet_rule]]\nname = \"one name across the fleet\"\nwhen = { kind = \"dns_denied\" }\nsame = \"domain\"\nhosts = 3\nwithin = \"1m\"\naction = \"isolate\"\n\n[[fleet_rule]]\nname = \"keys\"\nwhen = { kind = \"file_denied\", path = \"/home/dev/.ssh/**\" }\nsame = \"path\"\nhosts = 2\nwithin = \"1m\"\naction = \"alert\"\n";

/// A refused DNS query of `domain` by `sandbox`, now.
fn refused(id: &str, sandbox: &str, domain: &str) -> serde_json::Value {
    serde_json::json!({
        "v": 1, "id": id, "time": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        "sandbox": sandbox, "profile": "agent",
        "process": {"pid": 7, "ppid": 1, "comm": "curl", "uid": 1000},
        "kind": "dns_denied", "domain": domain, "query_type": "A"
    })
}

fn send(c: &Collector, host: &str, token: &str, events: &[serde_json::Value]) {
    let (status, reply) = c.post_raw(Some(token), "/api/v1/events", &batch(host, events), true);
    assert!((200..300).contains(&status), "{status} {reply}");
}

fn commands(c: &Collector, token: &str, host: &str) -> Vec<serde_json::Value> {
    let (_, listed) = c.get(Some(token), &format!("/api/v1/commands?host={host}"));
    listed["commands"].as_array().cloned().unwrap_or_default()
}

fn a_pattern_across_hosts_contains_every_sandbox_that_took_part(db: Db) {
    let c = Collector::start(db, RULES);
    let responder = c.token("bob", "responder", None);
    let hosts: Vec<(String, String)> = (1..=4)
        .map(|i| {
            let host = format!("web-{i}");
            let token = c.token(&host, "host", Some(&host));
            (host, token)
        })
        .collect();
    // Two hosts refused the name, and a third another name: no pattern yet.
    send(
        &c,
        &hosts[0].0,
        &hosts[0].1,
        &[refused(
            "01a2263e-175e-73e4-b000-000000000001",
            "agent-1-0",
            "exfil.example",
        )],
    );
    send(
        &c,
        &hosts[1].0,
        &hosts[1].1,
        &[refused(
            "01a2263e-175e-73e4-b000-000000000002",
            "agent-2-0",
            "exfil.example",
        )],
    );
    send(
        &c,
        &hosts[3].0,
        &hosts[3].1,
        &[refused(
            "01a2263e-175e-73e4-b000-000000000004",
            "agent-4-0",
            "other.example",
        )],
    );
    std::thread::sleep(Duration::from_secs(2));
    for (host, _) in &hosts {
        assert!(commands(&c, &responder, host).is_empty(), "{host}");
    }
    // A third host: every sandbox of the pattern is isolated, through the queue, the rule
    // the issuer; the host of the other name is left alone.
    send(
        &c,
        &hosts[2].0,
        &hosts[2].1,
        &[refused(
            "01a2263e-175e-73e4-b000-000000000003",
            "agent-3-0",
            "exfil.example",
        )],
    );
    for (i, (host, _)) in hosts.iter().take(3).enumerate() {
        let queued = wait_until(
            &format!("the command for {host}"),
            Duration::from_secs(20),
            || commands(&c, &responder, host).first().cloned(),
        );
        assert_eq!(queued["action"], "isolate", "{queued}");
        assert_eq!(queued["sandbox"], format!("agent-{}-0", i + 1));
        assert_eq!(queued["issued_by"], "fleet rule one name across the fleet");
    }
    std::thread::sleep(Duration::from_secs(1));
    assert!(commands(&c, &responder, &hosts[3].0).is_empty());
    assert_eq!(
        commands(&c, &responder, &hosts[0].0).len(),
        1,
        "acted on once"
    );

    // An alert: stored as each sandbox's event, for the console and the outputs.
    let key = |id: &str, sandbox: &str| {
        let mut e = common::collector::file_event(
            id,
            sandbox,
            "/home/dev/.ssh/id_ed25519",
            &humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        );
        e["layer"] = "deny".into();
        e
    };
    send(
        &c,
        &hosts[0].0,
        &hosts[0].1,
        &[key("01a2263e-175e-73e4-b000-000000000011", "agent-1-0")],
    );
    send(
        &c,
        &hosts[1].0,
        &hosts[1].1,
        &[key("01a2263e-175e-73e4-b000-000000000012", "agent-2-0")],
    );
    let viewer = c.token("alice", "viewer", None);
    let alerts = wait_until("the alerts", Duration::from_secs(20), || {
        let found = c.all_events(&viewer, "kind=responder_action");
        (found.len() == 2).then_some(found)
    });
    for alert in &alerts {
        assert_eq!(alert["action"], "alert", "{alert}");
        assert_eq!(alert["actor"]["via"], "fleet_rule");
        assert_eq!(alert["severity"], "high");
    }
    assert!(
        commands(&c, &responder, &hosts[0].0).len() == 1,
        "an alert queues nothing"
    );
}

mod across_hosts {
    #[test]
    fn sqlite() {
        if super::common::require_root("across_hosts::sqlite") {
            super::a_pattern_across_hosts_contains_every_sandbox_that_took_part(super::Db::Sqlite);
        }
    }
    #[test]
    fn postgres() {
        if super::common::require_root("across_hosts::postgres") {
            super::a_pattern_across_hosts_contains_every_sandbox_that_took_part(
                super::Db::Postgres,
            );
        }
    }
}

#[test]
fn a_mistaken_fleet_rule_stops_the_collector_at_its_line() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\n\n{}",
            RULES.replace("\"domain\"", "\"domian\"")
        ),
    )
    .expect("config");
    let out = std::process::Command::new(common::collector::collector_bin())
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .expect("cordon-collector check");
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("collector.toml:3:1"), "{said}");
    assert!(said.contains("same = \"domian\": one of domain"), "{said}");
}
