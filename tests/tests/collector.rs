//! The collector on its own, on SQLite and on a real PostgreSQL: ingest (idempotent, all or
//! nothing, bad input refused), queries and the live stream, roles, and the command queue as
//! a host sees it. Every test runs once per store.

mod common;

use std::time::{Duration, Instant};

use common::collector::{batch, file_event, Collector, Db};
use common::require_root;
use serde_json::json;

fn id(n: u64) -> String {
    format!("019abc00-0000-7000-8000-{n:012x}")
}

fn count(c: &Collector, token: &str) -> usize {
    c.all_events(token, "").len()
}

on_both_stores!(ingest_keeps_each_event_once_and_refuses_bad_input_whole);
fn ingest_keeps_each_event_once_and_refuses_bad_input_whole(db: Db) {
    let c = Collector::start(
        db,
        "max_batch_events = 50\nmax_body_bytes = 65536\nmax_event_bytes = 8192",
    );
    let host = c.token("web-1", "host", Some("web-1"));
    let viewer = c.token("alice", "viewer", None);
    let events: Vec<_> = (0..20)
        .map(|i| {
            file_event(
                &id(i),
                "agent-1-0",
                &format!("/etc/f{i}"),
                "2026-11-26T10:00:00Z",
            )
        })
        .collect();
    let body = batch("web-1", &events);

    let (status, reply) = c.post_raw(Some(&host), "/api/v1/events", &body, true);
    assert_eq!(
        (status, reply["stored"].as_u64()),
        (200, Some(20)),
        "{reply}"
    );
    // The same batch again (an answer lost on the way back): nothing new.
    let (status, reply) = c.post_raw(Some(&host), "/api/v1/events", &body, true);
    assert_eq!(
        (status, reply["duplicates"].as_u64()),
        (200, Some(20)),
        "{reply}"
    );
    // Half old, half new, uncompressed.
    let mixed: Vec<_> = (10..30)
        .map(|i| file_event(&id(i), "agent-1-0", "/etc/x", "2026-11-26T10:00:01Z"))
        .collect();
    let (status, reply) = c.post_raw(
        Some(&host),
        "/api/v1/events",
        &batch("web-1", &mixed),
        false,
    );
    assert_eq!(
        (status, reply["stored"].as_u64()),
        (200, Some(10)),
        "{reply}"
    );
    assert_eq!(count(&c, &viewer), 30);

    // Each of these is refused with a 4xx that says why, and stores nothing.
    let fresh = |n: u64| {
        file_event(
            &id(1000 + n),
            "agent-1-0",
            "/etc/new",
            "2026-11-26T10:00:02Z",
        )
    };
    let too_many: Vec<_> = (0..51).map(|i| fresh(100 + i)).collect();
    let huge = vec![file_event(
        &id(2000),
        "agent-1-0",
        &"x".repeat(70_000),
        "2026-11-26T10:00:02Z",
    )];
    // What, with which token, the body, gzip or not, the status, what the error says.
    type Case<'a> = (&'a str, Option<&'a str>, Vec<u8>, bool, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "no token",
            None,
            batch("web-1", &[fresh(0)]),
            true,
            401,
            "no bearer token",
        ),
        (
            "unknown token",
            Some("cdn_nope"),
            batch("web-1", &[fresh(0)]),
            true,
            401,
            "unknown or revoked",
        ),
        (
            "a viewer's token",
            Some(&viewer),
            batch("web-1", &[fresh(0)]),
            true,
            403,
            "needs host",
        ),
        (
            "another host's name",
            Some(&host),
            batch("web-2", &[fresh(0)]),
            true,
            403,
            "not \"web-2\"",
        ),
        (
            "malformed JSON",
            Some(&host),
            b"{\"v\":1,\"host\":\"web-1\",\"events\":[{".to_vec(),
            true,
            400,
            "malformed batch",
        ),
        (
            "not gzip",
            Some(&host),
            b"\x1f\x8bnot gzip".to_vec(),
            false,
            400,
            "malformed batch",
        ),
        (
            "a new batch version",
            Some(&host),
            json!({"v": 2, "host": "web-1", "events": [fresh(0)]})
                .to_string()
                .into_bytes(),
            true,
            400,
            "batch version 2",
        ),
        (
            "too many events",
            Some(&host),
            batch("web-1", &too_many),
            true,
            413,
            "at most 50",
        ),
        (
            "a body over the limit",
            Some(&host),
            batch("web-1", &huge),
            false,
            413,
            "over 65536 bytes",
        ),
        (
            "a gzip bomb",
            Some(&host),
            batch("web-1", &huge),
            true,
            413,
            "over 65536 bytes",
        ),
    ];
    for (what, token, body, gzip, want, says) in cases {
        let (status, reply) = c.post_raw(token, "/api/v1/events", &body, gzip);
        assert_eq!(status, want, "{what}: {reply}");
        let error = reply["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(says),
            "{what}: {error:?} does not say {says:?}"
        );
    }
    assert_eq!(
        count(&c, &viewer),
        30,
        "a refused batch left something behind"
    );

    // A revoked token stops at once.
    let out = c.cli(&["token", "revoke", "web-1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, _) = c.post_raw(
        Some(&host),
        "/api/v1/events",
        &batch("web-1", &[fresh(3)]),
        true,
    );
    assert_eq!(status, 401);
    assert_eq!(count(&c, &viewer), 30);
}

on_both_stores!(a_bad_event_is_set_aside_and_the_rest_of_its_batch_stored);
fn a_bad_event_is_set_aside_and_the_rest_of_its_batch_stored(db: Db) {
    let c = Collector::start(db, "max_event_bytes = 8192");
    let host = c.token("web-1", "host", Some("web-1"));
    let other = c.token("web-2", "host", Some("web-2"));
    let viewer = c.token("alice", "viewer", None);
    let now = humantime::format_rfc3339(std::time::SystemTime::now()).to_string();
    let event = |n: u64, path: &str| file_event(&id(n), "agent-1-0", path, &now);
    let mut newer = event(2, "/etc/x");
    newer["v"] = json!(2);
    let mut unknown = event(3, "/etc/x");
    unknown["kind"] = json!("teleport");
    // The attack that stopped a host's reporting: a process named `\u0000` (six characters).
    let mut named = event(5, "/etc/passwd");
    named["process"]["comm"] = json!("\\u0000");
    let mut future = event(7, "/etc/later");
    future["time"] = json!("2099-01-01T00:00:00Z");
    let long = format!("/{}", "y".repeat(20_000));
    let events = vec![
        event(1, "/etc/first"),
        newer,
        unknown,
        event(4, "/etc/a\0b"),
        named,
        event(6, &long),
        future,
        event(8, "/etc/last"),
    ];
    let (status, reply) = c.post_raw(
        Some(&host),
        "/api/v1/events",
        &batch("web-1", &events),
        true,
    );
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["stored"], 6, "{reply}");
    assert_eq!(reply["truncated"], 1, "{reply}");
    let rejected: Vec<_> = reply["rejected"]
        .as_array()
        .expect("rejected")
        .iter()
        .map(|r| {
            (
                r["index"].as_u64(),
                r["reason"].as_str().map(str::to_string),
            )
        })
        .collect();
    assert_eq!(
        rejected,
        vec![
            (Some(1), Some("schema_version".to_string())),
            (Some(2), Some("malformed".to_string()))
        ],
        "{reply}"
    );
    let stored = c.all_events(&viewer, "");
    let by_id = |n: u64| {
        stored
            .iter()
            .find(|e| e["id"] == id(n))
            .unwrap_or_else(|| panic!("event {n} is not stored: {stored:?}"))
    };
    assert_eq!(
        by_id(4)["path"],
        "/etc/a\0b",
        "a NUL is text like any other"
    );
    assert_eq!(by_id(5)["process"]["comm"], "\\u0000");
    let cut = by_id(6)["path"].as_str().expect("path");
    assert!(
        cut.starts_with("/yyyy") && cut.ends_with("bytes cut]") && cut.len() < 8192,
        "{cut}"
    );
    // A time far ahead is stored as the time it arrived; the host's is kept.
    assert_eq!(by_id(7)["host_time"], "2099-01-01T00:00:00.000000000Z");
    let stored_at =
        humantime::parse_rfc3339(by_id(7)["time"].as_str().expect("time")).expect("time");
    assert!(stored_at < std::time::SystemTime::now() + Duration::from_secs(60));
    // It does not sort first forever: an event that comes later sorts before it.
    std::thread::sleep(Duration::from_millis(20));
    let later = file_event(
        &id(9),
        "agent-1-0",
        "/etc/later-still",
        &humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
    );
    let (status, reply) = c.post_raw(
        Some(&host),
        "/api/v1/events",
        &batch("web-1", &[later]),
        true,
    );
    assert_eq!(
        (status, reply["stored"].as_u64()),
        (200, Some(1)),
        "{reply}"
    );
    assert_eq!(
        c.all_events(&viewer, "")[0]["id"],
        id(9),
        "the far-future event sorts first"
    );
    // The search finds the NUL-named and the cut events too.
    assert_eq!(c.all_events(&viewer, "q=yyyy").len(), 1);

    // Set aside, and shown: in the hosts view, per host, and in the metrics.
    let (_, hosts) = c.get(Some(&viewer), "/api/v1/hosts");
    assert_eq!(hosts["hosts"][0]["rejected"], 2, "{hosts}");
    let (status, aside) = c.get(Some(&viewer), "/api/v1/hosts/web-1/rejected");
    assert_eq!(status, 200, "{aside}");
    assert_eq!(aside["rejected"][0]["reason"], "malformed", "{aside}");
    assert!(
        aside["rejected"][0]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("teleport"),
        "{aside}"
    );
    assert!(
        aside["rejected"][0]["excerpt"]
            .as_str()
            .unwrap_or_default()
            .contains("teleport"),
        "{aside}"
    );
    let (status, metrics) = c.get_text(Some(&viewer), "/metrics");
    assert_eq!(status, 200, "{metrics}");
    for line in [
        "cordon_collector_events_rejected_total{reason=\"malformed\"} 1",
        "cordon_collector_events_rejected_total{reason=\"schema_version\"} 1",
        "cordon_collector_events_stored_total 7",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in\n{metrics}"
        );
    }
    assert_eq!(c.get_text(None, "/metrics").0, 401, "metrics need a token");

    // Ids are one host's own: another host's event of the same id is its own event, and the
    // first host's batch sent again is all duplicates.
    let (status, reply) = c.post_raw(
        Some(&other),
        "/api/v1/events",
        &batch("web-2", &[event(1, "/etc/first")]),
        true,
    );
    assert_eq!(
        (status, reply["stored"].as_u64()),
        (200, Some(1)),
        "{reply}"
    );
    let (status, reply) = c.post_raw(
        Some(&host),
        "/api/v1/events",
        &batch("web-1", &events),
        true,
    );
    assert_eq!(
        (status, reply["duplicates"].as_u64()),
        (200, Some(6)),
        "{reply}"
    );
    assert_eq!(count(&c, &viewer), 8);
    // Its set-aside events are not kept twice.
    let (_, hosts) = c.get(Some(&viewer), "/api/v1/hosts");
    let web1 = hosts["hosts"]
        .as_array()
        .and_then(|h| h.iter().find(|h| h["name"] == "web-1"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(web1["rejected"], 2, "{hosts}");
}

on_both_stores!(queries_filter_page_and_stream_live);
fn queries_filter_page_and_stream_live(db: Db) {
    let c = Collector::start(db, "");
    let h1 = c.token("web-1", "host", Some("web-1"));
    let h2 = c.token("web-2", "host", Some("web-2"));
    let viewer = c.token("alice", "viewer", None);
    let now = std::time::SystemTime::now();
    let at =
        |ago_s: u64| humantime::format_rfc3339_nanos(now - Duration::from_secs(ago_s)).to_string();
    // web-1: 250 file denials of agent-1-0 over the last 250 s, two of them old (2 h ago);
    // web-2: a DNS denial.
    let mut events: Vec<_> = (0..250)
        .map(|i| {
            file_event(
                &id(i),
                "agent-1-0",
                &format!("/srv/data/file-{i}"),
                &at(250 - i),
            )
        })
        .collect();
    events[0]["time"] = json!(at(7200));
    events[1]["time"] = json!(at(7200));
    assert_eq!(
        c.post_raw(Some(&h1), "/api/v1/events", &batch("web-1", &events), true)
            .0,
        200
    );
    let dns = json!({"v": 1, "id": id(999), "time": at(1), "sandbox": "bot-2-0", "profile": "bot",
        "kind": "dns_denied", "domain": "Exfil.Example.COM", "query_type": "A"});
    assert_eq!(
        c.post_raw(Some(&h2), "/api/v1/events", &batch("web-2", &[dns]), true)
            .0,
        200
    );

    assert_eq!(c.all_events(&viewer, "host=web-1").len(), 250);
    assert_eq!(
        c.all_events(&viewer, "sandbox=agent-1-0&since=1h").len(),
        248
    );
    assert_eq!(c.all_events(&viewer, "until=1h").len(), 2);
    assert_eq!(c.all_events(&viewer, "kind=dns_denied,exec").len(), 1);
    assert_eq!(c.all_events(&viewer, "profile=bot").len(), 1);
    // Free text, case-insensitive, in paths and domains; LIKE's wildcards are plain text.
    let found = c.all_events(&viewer, "q=exfil.example");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["host"], "web-2");
    assert_eq!(found[0]["domain"], "Exfil.Example.COM");
    assert_eq!(c.all_events(&viewer, "q=file-24").len(), 11); // 24, 240..249
    assert_eq!(c.all_events(&viewer, "q=file-2%25").len(), 0);

    // Pages of 7 cover everything once, newest first, then oldest first.
    for order in ["desc", "asc"] {
        let mut seen = Vec::new();
        let mut cursor = String::new();
        loop {
            let (status, page) = c.get(
                Some(&viewer),
                &format!("/api/v1/events?host=web-1&limit=7&order={order}{cursor}"),
            );
            assert_eq!(status, 200, "{page}");
            for e in page["events"].as_array().expect("events") {
                seen.push(e["id"].as_str().expect("id").to_string());
            }
            match page["next"].as_str() {
                Some(next) => cursor = format!("&cursor={next}"),
                None => break,
            }
        }
        assert_eq!(seen.len(), 250, "{order}");
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 250, "{order}: a page repeated an event");
        let mut by_time = seen.clone();
        by_time.sort_by_key(|i| u64::from_str_radix(&i[24..], 16).expect("hex"));
        if order == "desc" {
            by_time.reverse();
        }
        // ids 0 and 1 share a time; the rest are in time order.
        assert_eq!(&seen[2..248], &by_time[2..248], "{order}");
    }
    // And back: a page's `prev` with the opposite order gives the events just before it
    // in its own order (the console's "newer" from a page of older events).
    let ids = |page: &serde_json::Value| -> Vec<String> {
        page["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| e["id"].as_str().expect("id").to_string())
            .collect()
    };
    let (_, first) = c.get(Some(&viewer), "/api/v1/events?host=web-1&limit=7");
    let next = first["next"].as_str().expect("next");
    let (_, second) = c.get(
        Some(&viewer),
        &format!("/api/v1/events?host=web-1&limit=7&cursor={next}"),
    );
    let prev = second["prev"].as_str().expect("prev");
    let (_, back) = c.get(
        Some(&viewer),
        &format!("/api/v1/events?host=web-1&limit=7&order=asc&cursor={prev}"),
    );
    let mut back = ids(&back);
    back.reverse();
    assert_eq!(back, ids(&first));
    let (_, none) = c.get(Some(&viewer), "/api/v1/events?host=nowhere");
    assert_eq!((&none["next"], &none["prev"]), (&json!(null), &json!(null)));
    for bad in [
        "since=yesterday",
        "order=sideways",
        "cursor=abc",
        "colour=red",
        "kind=exec,teleport",
    ] {
        let (status, reply) = c.get(Some(&viewer), &format!("/api/v1/events?{bad}"));
        assert_eq!(status, 400, "{bad}: {reply}");
    }

    // The live stream: only what matches, as it arrives.
    // Subscribed once it answers: nothing stored after this is missed.
    let live = c.stream(&viewer, "host=web-1&kind=file_denied");
    let fresh = [
        json!({"v": 1, "id": id(5000), "time": at(0), "sandbox": "agent-1-0", "profile": "agent",
            "kind": "exec", "filename": "/bin/sh"}),
        file_event(&id(5001), "agent-1-0", "/etc/shadow", &at(0)),
    ];
    assert_eq!(
        c.post_raw(Some(&h1), "/api/v1/events", &batch("web-1", &fresh), true)
            .0,
        200
    );
    let other = file_event(&id(5002), "bot-2-0", "/etc/shadow", &at(0));
    assert_eq!(
        c.post_raw(Some(&h2), "/api/v1/events", &batch("web-2", &[other]), true)
            .0,
        200
    );
    let got = live
        .recv_timeout(Duration::from_secs(5))
        .expect("a streamed event");
    assert_eq!(got["id"], id(5001));
    assert_eq!(got["host"], "web-1");
    assert!(
        live.recv_timeout(Duration::from_millis(500)).is_err(),
        "the stream let through what does not match"
    );

    // By severity (as the agent said, or as the kind says for an agent that did not) and by
    // session, in queries and in the stream.
    let session = "01a22560-8279-74c5-8720-e9eee9070ef7";
    let urgent = c.stream(&viewer, "severity=critical");
    let ptrace = json!({"v": 1, "id": id(6000), "time": at(0), "sandbox": "bot-2-0",
        "profile": "bot", "session": session, "kind": "syscall_denied", "nr": 101,
        "syscall": "ptrace", "args": [0, 0, 0, 0, 0, 0], "errno": 1});
    let tampered = json!({"v": 1, "id": id(6001), "time": at(0), "sandbox": "bot-2-0",
        "profile": "bot", "session": session, "severity": "critical", "kind": "events_lost",
        "count": 1, "reason": "ring_tampered"});
    assert_eq!(
        c.post_raw(
            Some(&h2),
            "/api/v1/events",
            &batch("web-2", &[ptrace, tampered]),
            true
        )
        .0,
        200
    );
    let got = urgent
        .recv_timeout(Duration::from_secs(5))
        .expect("a streamed event");
    assert_eq!(got["id"], id(6001), "only the critical one");
    assert!(urgent.recv_timeout(Duration::from_millis(500)).is_err());
    let high = c.all_events(&viewer, "severity=high");
    let ids: Vec<&str> = high.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(
        ids,
        [id(6001), id(6000)],
        "newest first; the file denials are medium"
    );
    assert_eq!(c.all_events(&viewer, "severity=critical").len(), 1);
    let of_session = c.all_events(&viewer, &format!("session={session}"));
    assert_eq!(of_session.len(), 2);
    assert!(of_session.iter().all(|e| e["session"] == session));
    // Sorted by severity, most severe first (newest first among equals), paged the same
    // way: a page of one at a time goes through every event once, in that order.
    let all = c.all_events(&viewer, "order=severity");
    let ranks: Vec<u8> = all
        .iter()
        .map(|e| match e["severity"].as_str() {
            Some("critical") => 4,
            Some("high") => 3,
            Some("medium") => 2,
            Some("low") => 1,
            _ => 0,
        })
        .collect();
    assert!(ranks.windows(2).all(|w| w[0] >= w[1]), "{ranks:?}");
    assert_eq!(all[0]["id"], id(6001));
    let one_by_one = {
        let mut out = Vec::new();
        let mut cursor = String::new();
        loop {
            let (status, page) = c.get(
                Some(&viewer),
                &format!("/api/v1/events?order=severity&limit=1{cursor}"),
            );
            assert_eq!(status, 200, "{page}");
            out.extend(page["events"].as_array().expect("events").iter().cloned());
            match page["next"].as_str() {
                Some(next) => cursor = format!("&cursor={next}"),
                None => break out,
            }
        }
    };
    assert_eq!(
        one_by_one.iter().map(|e| &e["id"]).collect::<Vec<_>>(),
        all.iter().map(|e| &e["id"]).collect::<Vec<_>>()
    );
    // The session's timeline as CSV and as JSON lines, a page at a time.
    let (status, csv, next) = c.get_with_header(
        Some(&viewer),
        &format!("/api/v1/events?session={session}&format=csv&order=asc&limit=1"),
        "x-next-cursor",
    );
    assert_eq!(status, 200, "{csv}");
    let rows: Vec<&str> = csv.lines().collect();
    assert!(
        rows[0].starts_with("host,time,sandbox,session,severity,kind,enforced,"),
        "{csv}"
    );
    assert_eq!(rows.len(), 2, "a header and one event: {csv}");
    assert!(
        rows[1].starts_with("web-2,") && rows[1].contains(",syscall_denied,"),
        "{csv}"
    );
    let next = next.expect("a next page");
    let (_, rest, _) = c.get_with_header(
        Some(&viewer),
        &format!("/api/v1/events?session={session}&format=jsonl&order=asc&cursor={next}"),
        "x-next-cursor",
    );
    let lines: Vec<serde_json::Value> = rest
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 1, "{rest}");
    assert_eq!(lines[0]["kind"], "events_lost");
    // What an agent chose cannot become a formula in the spreadsheet that opens the export.
    let formula = file_event(&id(6002), "bot-3-0", "=HYPERLINK(\"http://x\")", &at(0));
    assert_eq!(
        c.post_raw(
            Some(&h2),
            "/api/v1/events",
            &batch("web-2", &[formula]),
            true
        )
        .0,
        200
    );
    let (_, csv, _) = c.get_with_header(
        Some(&viewer),
        "/api/v1/events?sandbox=bot-3-0&format=csv",
        "x-next-cursor",
    );
    assert!(csv.contains(",\"'=HYPERLINK("), "{csv}");
    assert!(
        !csv.contains(",=HYPERLINK(") && !csv.contains(",\"=HYPERLINK("),
        "{csv}"
    );
    for bad in [
        "severity=hihg",
        "session=not-a-uuid",
        "order=loudest",
        "format=xml",
    ] {
        let (status, reply) = c.get(Some(&viewer), &format!("/api/v1/events?{bad}"));
        assert_eq!(status, 400, "{bad}: {reply}");
        assert!(
            reply["error"]
                .as_str()
                .is_some_and(|e| e.contains(bad.split('=').next().unwrap_or(""))),
            "{reply}"
        );
    }
}

on_both_stores!(each_role_may_do_its_part_only);
fn each_role_may_do_its_part_only(db: Db) {
    let c = Collector::start(db, "");
    let host = c.token("web-1", "host", Some("web-1"));
    let viewer = c.token("alice", "viewer", None);
    let responder = c.token("bob", "responder", None);
    let admin = c.token("root", "admin", None);
    let poll = json!({"v": 1, "host": "web-1", "sandboxes": [{"name": "agent-1-0",
        "profile": "agent", "procs": 1, "state": "running", "network": "policy"}]});
    assert_eq!(c.post(Some(&host), "/api/v1/agent/poll", &poll).0, 200);
    let command = json!({"host": "web-1", "sandbox": "agent-1-0", "action": "isolate"});

    let (status, reply) = c.post(Some(&viewer), "/api/v1/commands", &command);
    assert_eq!(status, 403, "{reply}");
    assert_eq!(c.post(Some(&host), "/api/v1/commands", &command).0, 403);
    assert_eq!(
        c.get(Some(&host), "/api/v1/events").0,
        403,
        "a host token reads nothing"
    );
    assert_eq!(c.get(Some(&viewer), "/api/v1/hosts").0, 200);
    assert_eq!(c.get(None, "/api/v1/hosts").0, 401);
    assert_eq!(
        c.post(
            Some(&responder),
            "/api/v1/tokens",
            &json!({"name": "eve", "role": "admin"})
        )
        .0,
        403
    );
    assert_eq!(c.get(Some(&responder), "/api/v1/tokens").0, 403);
    let (status, reply) = c.post(Some(&responder), "/api/v1/commands", &command);
    assert_eq!(status, 201, "{reply}");
    assert_eq!(reply["status"], "queued");
    assert_eq!(reply["issued_by"], "bob");
    assert_eq!(
        c.post(
            Some(&admin),
            "/api/v1/commands",
            &json!({"host": "nowhere", "sandbox": "a-1-0", "action": "kill"})
        )
        .0,
        404
    );
    assert_eq!(
        c.post(
            Some(&admin),
            "/api/v1/commands",
            &json!({"host": "web-1", "sandbox": "../x", "action": "kill"})
        )
        .0,
        400
    );
    assert_eq!(
        c.post(
            Some(&admin),
            "/api/v1/commands",
            &json!({"host": "web-1", "sandbox": "a-1-0", "action": "nuke"})
        )
        .0,
        400
    );
    // An alert is a response rule's, not a command a host could carry out.
    let (status, refused) = c.post(
        Some(&admin),
        "/api/v1/commands",
        &json!({"host": "web-1", "sandbox": "a-1-0", "action": "alert"}),
    );
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("response rule")),
        "{refused}"
    );

    // Admins issue and revoke tokens over the API too; the secret is shown once.
    let (status, issued) = c.post(
        Some(&admin),
        "/api/v1/tokens",
        &json!({"name": "carol", "role": "viewer"}),
    );
    assert_eq!(status, 201, "{issued}");
    let carol = issued["token"].as_str().expect("token").to_string();
    assert_eq!(c.get(Some(&carol), "/api/v1/whoami").1["name"], "carol");
    let (_, list) = c.get(Some(&admin), "/api/v1/tokens");
    assert!(
        !list.to_string().contains(&carol),
        "a listing shows a secret"
    );
    let carol_id = issued["info"]["id"].as_str().expect("id");
    // Revoking ends what the token holds open, too: her live stream closes.
    let carol_stream = c.stream(&carol, "");
    assert_eq!(
        c.delete(Some(&admin), &format!("/api/v1/tokens/{carol_id}"))
            .0,
        200
    );
    assert_eq!(c.get(Some(&carol), "/api/v1/whoami").0, 401);
    match carol_stream.recv_timeout(Duration::from_secs(15)) {
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {}
        other => panic!("the revoked token's stream is still open: {other:?}"),
    }
    assert_eq!(
        c.post(
            Some(&admin),
            "/api/v1/tokens",
            &json!({"name": "h", "role": "host"})
        )
        .0,
        400
    );
}

on_both_stores!(a_command_for_a_sandbox_the_host_never_reported_is_refused);
fn a_command_for_a_sandbox_the_host_never_reported_is_refused(db: Db) {
    let c = Collector::start(db, "");
    let host = c.token("web-1", "host", Some("web-1"));
    let responder = c.token("bob", "responder", None);
    let viewer = c.token("alice", "viewer", None);
    let poll = json!({"v": 1, "host": "web-1", "sandboxes": [{"name": "agent-4242-0",
        "profile": "agent", "procs": 1, "state": "running", "network": "policy"}]});
    assert_eq!(c.post(Some(&host), "/api/v1/agent/poll", &poll).0, 200);
    // A sandbox that ended (its events are there, the host runs it no more), and what a
    // mistyped `cordon isolate` on the host leaves: a refused action naming a sandbox that
    // never was.
    let now = humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string();
    let ended = file_event(&id(1), "agent-4100-0", "/etc/shadow", &now);
    let typo = json!({"v": 1, "id": id(2), "time": now, "sandbox": "agent-4243-0",
        "profile": "", "kind": "responder_action", "action": "isolate",
        "actor": {"via": "socket", "uid": 0}, "result": "failed",
        "error": "no such sandbox (see `cordon ps`)", "took_ms": 0});
    assert_eq!(
        c.post_raw(
            Some(&host),
            "/api/v1/events",
            &batch("web-1", &[ended, typo]),
            true
        )
        .0,
        200
    );
    let command = |sandbox: &str| {
        c.post(
            Some(&responder),
            "/api/v1/commands",
            &json!({"host": "web-1", "sandbox": sandbox, "action": "isolate"}),
        )
    };
    // One digit off: refused, with the one meant.
    let (status, reply) = command("agent-4243-0");
    assert_eq!(status, 404, "{reply}");
    let error = reply["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("no sandbox \"agent-4243-0\"")
            && error.contains("did you mean \"agent-4242-0\"?"),
        "{error}"
    );
    // Nothing like any: refused, with what the host runs.
    let (status, reply) = command("db");
    assert_eq!(status, 404, "{reply}");
    assert!(
        reply["error"]
            .as_str()
            .is_some_and(|e| e.ends_with("; it runs agent-4242-0")),
        "{reply}"
    );
    // Running, or named by the host's events: queued.
    assert_eq!(command("agent-4242-0").0, 201);
    assert_eq!(command("agent-4100-0").0, 201);
    // The console lists the sandbox that ended and not the one that never was.
    let (status, listed) = c.get(Some(&viewer), "/api/v1/hosts/web-1/sandboxes");
    assert_eq!(status, 200, "{listed}");
    let seen: Vec<&str> = listed["seen"]
        .as_array()
        .expect("seen")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(seen, ["agent-4100-0"], "{listed}");
    // A sandbox's own commands.
    let (_, mine) = c.get(
        Some(&viewer),
        "/api/v1/commands?host=web-1&sandbox=agent-4100-0",
    );
    let mine = mine["commands"].as_array().expect("commands");
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["sandbox"], "agent-4100-0");
}

on_both_stores!(a_histogram_counts_in_the_database_bucket_by_bucket);
fn a_histogram_counts_in_the_database_bucket_by_bucket(db: Db) {
    let c = Collector::start(db, "");
    let h1 = c.token("web-1", "host", Some("web-1"));
    let viewer = c.token("alice", "viewer", None);
    // From a whole hour: 3 denials in its first minute, none in the second, 5 in the
    // third (one of them a deny rule's, high), 2 of another sandbox in the fourth, and an
    // exec (info) in the first.
    let hour = 1_767_225_600; // 2026-01-01T00:00:00Z
    let at = |s: u64| {
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(hour + s))
            .to_string()
    };
    let mut events = Vec::new();
    for (n, (second, sandbox)) in [
        (5, "agent-1-0"),
        (30, "agent-1-0"),
        (59, "agent-1-0"),
        (120, "agent-1-0"),
        (121, "agent-1-0"),
        (150, "agent-1-0"),
        (170, "agent-1-0"),
        (179, "agent-1-0"),
        (185, "bot-2-0"),
        (200, "bot-2-0"),
    ]
    .into_iter()
    .enumerate()
    {
        events.push(file_event(
            &id(n as u64),
            sandbox,
            &format!("/srv/{n}"),
            &at(second),
        ));
    }
    events[5]["layer"] = json!("deny");
    events.push(
        json!({"v": 1, "id": id(99), "time": at(10), "sandbox": "agent-1-0",
        "profile": "agent", "kind": "exec", "filename": "/bin/sh"}),
    );
    assert_eq!(
        c.post_raw(Some(&h1), "/api/v1/events", &batch("web-1", &events), true)
            .0,
        200
    );
    // The histogram of `query` from `from` to `to` seconds into the hour, in about `buckets`.
    let histogram = |query: &str, from: u64, to: u64, buckets: u32| {
        let query = format!(
            "{query}&since={}&until={}&buckets={buckets}",
            at(from),
            at(to)
        );
        let (status, reply) = c.get(Some(&viewer), &format!("/api/v1/events/histogram?{query}"));
        assert_eq!(status, 200, "{query}: {reply}");
        reply
    };
    let counts = |h: &serde_json::Value| -> Vec<i64> {
        h["buckets"]
            .as_array()
            .expect("buckets")
            .iter()
            .map(|b| b["count"].as_i64().expect("count"))
            .collect()
    };
    let violations = "kind=network_denied,dns_denied,syscall_denied,file_denied,other_denied";
    // Four minutes in four buckets of a minute each.
    let h = histogram(violations, 0, 240, 4);
    assert_eq!(h["bucket_seconds"], 60, "{h}");
    assert_eq!(h["since"], at(0));
    assert_eq!(h["until"], at(240));
    assert_eq!(h["total"], 10);
    assert_eq!(counts(&h), [3, 0, 5, 2]);
    assert_eq!(h["buckets"][1]["start"], at(60));
    assert_eq!(h["buckets"][2]["severity"], json!({"medium": 4, "high": 1}));
    assert_eq!(h["buckets"][1]["severity"], json!({}));
    // The filters of the events: one sandbox, a least severity, every kind.
    let one = |query: &str| counts(&histogram(query, 0, 240, 4));
    assert_eq!(one("sandbox=bot-2-0"), [0, 0, 0, 2]);
    assert_eq!(one("severity=high"), [0, 0, 1, 0]);
    assert_eq!(one("host=web-1"), [4, 0, 5, 2]);
    assert_eq!(one("host=web-2"), [0, 0, 0, 0]);
    // A range not on the buckets' edges: they start on a multiple of their width.
    let h = histogram(violations, 100, 200, 3);
    assert_eq!(h["bucket_seconds"], 60, "{h}");
    assert_eq!(h["since"], at(60));
    assert_eq!(h["until"], at(240));
    assert_eq!(h["total"], 7, "the second at 200 is in [180, 240)");
    for bad in [
        "buckets=x",
        "since=yesterday",
        "severity=loud",
        "order=asc",
        "cursor=1.2",
    ] {
        let (status, reply) = c.get(Some(&viewer), &format!("/api/v1/events/histogram?{bad}"));
        assert_eq!(status, 400, "{bad}: {reply}");
    }
    let (status, _) = c.get(
        Some(&viewer),
        &format!("/api/v1/events/histogram?since={}&until={}", at(10), at(0)),
    );
    assert_eq!(status, 400);
    assert_eq!(c.get(None, "/api/v1/events/histogram").0, 401);
    assert_eq!(c.get(Some(&viewer), "/api/v1/events?buckets=4").0, 400);
}

on_both_stores!(a_command_reaches_its_host_once_and_expires_unanswered);
fn a_command_reaches_its_host_once_and_expires_unanswered(db: Db) {
    let c = Collector::start(db, "");
    let host = c.token("web-1", "host", Some("web-1"));
    let other = c.token("web-2", "host", Some("web-2"));
    let responder = c.token("bob", "responder", None);
    let poll = |token: &str, name: &str, results: serde_json::Value, wait: u64| {
        c.post(
            Some(token),
            &format!("/api/v1/agent/poll?wait={wait}"),
            &json!({"v": 1, "host": name, "sandboxes": [{"name": "agent-1-0", "profile": "agent",
                "procs": 1, "state": "running", "network": "policy"}], "results": results}),
        )
    };
    assert_eq!(poll(&host, "web-1", json!([]), 0).0, 200);
    assert_eq!(poll(&other, "web-2", json!([]), 0).0, 200);
    assert_eq!(
        poll(&host, "web-2", json!([]), 0).0,
        403,
        "a host speaks for another"
    );

    // A waiting poll gets the command as soon as it is queued.
    let waiting = std::thread::scope(|s| {
        let handle = s.spawn(|| {
            let started = Instant::now();
            (poll(&host, "web-1", json!([]), 20), started.elapsed())
        });
        std::thread::sleep(Duration::from_millis(500));
        let (status, cmd) = c.post(
            Some(&responder),
            "/api/v1/commands",
            &json!({"host": "web-1", "sandbox": "agent-1-0", "action": "freeze"}),
        );
        assert_eq!(status, 201, "{cmd}");
        handle.join().expect("poll")
    });
    let ((status, reply), took) = waiting;
    assert_eq!(status, 200, "{reply}");
    assert!(
        took < Duration::from_secs(5),
        "the poll waited {took:?} with a command queued"
    );
    let commands = reply["commands"].as_array().expect("commands");
    assert_eq!(commands.len(), 1);
    assert_eq!(commands[0]["action"], "freeze");
    assert_eq!(commands[0]["issued_by"], "bob");
    let cmd_id = commands[0]["id"].as_str().expect("id").to_string();
    let state = |id: &str| c.get(Some(&responder), &format!("/api/v1/commands/{id}")).1;
    assert_eq!(state(&cmd_id)["status"], "delivered");
    // Delivered once: the next poll (and the other host's) gets nothing.
    assert_eq!(poll(&host, "web-1", json!([]), 0).1["commands"], json!([]));
    assert_eq!(poll(&other, "web-2", json!([]), 0).1["commands"], json!([]));
    // Another host cannot answer for it; its own host can.
    let result = json!([{"id": cmd_id, "result": "done", "took_ms": 3}]);
    assert_eq!(poll(&other, "web-2", result.clone(), 0).0, 200);
    assert_eq!(state(&cmd_id)["status"], "delivered");
    assert_eq!(poll(&host, "web-1", result, 0).0, 200);
    let done = state(&cmd_id);
    assert_eq!(
        (done["status"].as_str(), done["took_ms"].as_i64()),
        (Some("done"), Some(3)),
        "{done}"
    );

    // A command nobody fetches in time expires, and is never handed out after.
    let (status, cmd) = c.post(
        Some(&responder),
        "/api/v1/commands",
        &json!({"host": "web-2", "sandbox": "agent-1-0", "action": "kill", "ttl": "1s"}),
    );
    assert_eq!(status, 201, "{cmd}");
    let late_id = cmd["id"].as_str().expect("id").to_string();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(poll(&other, "web-2", json!([]), 0).1["commands"], json!([]));
    let until = Instant::now() + Duration::from_secs(15);
    while state(&late_id)["status"] != "expired" {
        assert!(
            Instant::now() < until,
            "the command did not expire: {}",
            state(&late_id)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The host's sandboxes as it reported them.
    let (_, hosts) = c.get(Some(&responder), "/api/v1/hosts");
    let web1 = hosts["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .find(|h| h["name"] == "web-1")
        .expect("web-1")
        .clone();
    assert_eq!(web1["online"], true);
    assert_eq!(web1["sandboxes"][0]["name"], "agent-1-0");
    let (_, listed) = c.get(Some(&responder), "/api/v1/commands?host=web-1");
    assert_eq!(listed["commands"].as_array().expect("commands").len(), 1);
}

on_both_stores!(
    a_responder_at_the_collector_sees_a_hosts_violations_and_isolates_its_sandbox,
    root
);
fn a_responder_at_the_collector_sees_a_hosts_violations_and_isolates_its_sandbox(db: Db) {
    use std::io::BufRead as _;
    use std::process::Stdio;

    let c = Collector::start(db, "");
    let viewer = c.token("alice", "viewer", None);
    let responder = c.token("bob", "responder", None);
    let mut d = c.host("e2e-host");
    // A profile that may reach one loopback server, and nothing else.
    let port = d.net_agent();
    d.start();
    let live = c.stream(&viewer, "host=e2e-host&kind=network_denied");

    // One denied connection (an address no rule names, on the allowed port: Landlock lets
    // the port through, the eBPF program refuses the address and reports it), then an
    // allowed one every 50 ms, each answer on a line.
    let probe = d.bin.join("probe");
    let probe = probe.display();
    let script = format!(
        "{probe} connect 127.0.0.3:{port}; while true; do {probe} connect 127.0.0.2:{port}; sleep 0.05; done"
    );
    let mut sandbox = common::daemon::KillOnDrop(
        d.cordon(
            0,
            0,
            &[
                "run",
                "--quiet",
                "-p",
                "net-agent",
                "--",
                "/bin/sh",
                "-c",
                &script,
            ],
        )
        .stdout(Stdio::piped())
        .spawn()
        .expect("cordon run"),
    );
    let stdout = sandbox.0.stdout.take().expect("stdout");
    let (tx, answers) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send((Instant::now(), line)).is_err() {
                return;
            }
        }
    });
    let first = answers
        .recv_timeout(Duration::from_secs(20))
        .expect("the sandbox answers");
    assert_eq!(first.1, "err EPERM", "the denied connection");
    assert_eq!(
        answers
            .recv_timeout(Duration::from_secs(5))
            .expect("answer")
            .1,
        "ok"
    );

    // The violation reaches the query API and the live stream, with who and what.
    let streamed = live
        .recv_timeout(Duration::from_secs(20))
        .expect("the violation is streamed");
    assert_eq!(streamed["address"], "127.0.0.3");
    assert_eq!(streamed["port"], port);
    let name = streamed["sandbox"].as_str().expect("sandbox").to_string();
    assert!(name.starts_with("net-agent-"), "{name}");
    let stored = c.all_events(
        &viewer,
        &format!("host=e2e-host&sandbox={name}&kind=network_denied"),
    );
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["id"], streamed["id"]);
    assert_eq!(stored[0]["process"]["comm"], "probe");

    // The host reports the sandbox as running with its policy.
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, hosts) = c.get(Some(&viewer), "/api/v1/hosts");
        let listed = hosts["hosts"][0]["sandboxes"].as_array().is_some_and(|s| {
            s.iter()
                .any(|s| s["name"] == name.as_str() && s["network"] == "policy")
        });
        if listed {
            break;
        }
        assert!(
            Instant::now() < until,
            "the host never listed {name}: {hosts}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // A viewer may not act; a responder isolates, and the network is cut within 2 s.
    let isolate = json!({"host": "e2e-host", "sandbox": name, "action": "isolate"});
    assert_eq!(c.post(Some(&viewer), "/api/v1/commands", &isolate).0, 403);
    while answers.try_recv().is_ok() {}
    let issued = Instant::now();
    let (status, command) = c.post(Some(&responder), "/api/v1/commands", &isolate);
    assert_eq!(status, 201, "{command}");
    let cut = loop {
        let (at, line) = answers
            .recv_timeout(Duration::from_secs(5))
            .expect("the sandbox answers");
        if line == "err EPERM" {
            break at.duration_since(issued);
        }
        assert!(
            at.duration_since(issued) < Duration::from_secs(2),
            "still connected after 2 s"
        );
    };
    assert!(cut < Duration::from_secs(2), "isolation took {cut:?}");
    eprintln!("isolated from the collector in {cut:?}");
    // And it stays cut.
    for _ in 0..5 {
        let (_, line) = answers
            .recv_timeout(Duration::from_secs(5))
            .expect("the sandbox answers");
        assert_eq!(
            line, "err EPERM",
            "a connection got through after isolation"
        );
    }
    let id = command["id"].as_str().expect("id");
    let until = Instant::now() + Duration::from_secs(10);
    let done = loop {
        let (_, state) = c.get(Some(&responder), &format!("/api/v1/commands/{id}"));
        if state["status"] == "done" {
            break state;
        }
        assert!(
            Instant::now() < until,
            "the command was not acknowledged: {state}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let (delivered, finished) = (
        done["delivered_ns"].as_i64().expect("delivered_ns"),
        done["done_ns"].as_i64().expect("done_ns"),
    );
    assert!(finished >= delivered, "{done}");
    // The host recorded who asked, and the record reached the collector.
    let action = common::wait_until(
        "a responder_action at the collector",
        Duration::from_secs(20),
        || {
            c.all_events(&viewer, &format!("sandbox={name}&kind=responder_action"))
                .first()
                .cloned()
        },
    );
    assert_eq!(action["actor"]["via"], "collector");
    assert_eq!(action["actor"]["name"], "bob");
    assert_eq!(action["action"], "isolate");
    assert_eq!(action["result"], "done");

    // And kill ends it.
    let kill = json!({"host": "e2e-host", "sandbox": name, "action": "kill"});
    let (status, killed) = c.post(Some(&responder), "/api/v1/commands", &kill);
    assert_eq!(status, 201, "{killed}");
    let ended = common::wait_until("the sandbox to end", Duration::from_secs(10), || {
        sandbox.0.try_wait().expect("wait")
    });
    assert!(!ended.success(), "a killed sandbox exited well: {ended:?}");
    let id = killed["id"].as_str().expect("id");
    common::wait_until("kill to be acknowledged", Duration::from_secs(15), || {
        let (_, state) = c.get(Some(&responder), &format!("/api/v1/commands/{id}"));
        (state["status"] == "done").then_some(())
    });
}

#[test]
fn the_collector_unit_passes_systemd_analyze_verify() {
    if !require_root("the_collector_unit_passes_systemd_analyze_verify") {
        return;
    }
    // As `cargo xtask install --collector` writes it, with ExecStart at the binary under test.
    let dir = tempfile::tempdir().expect("temp dir");
    let unit = std::fs::read_to_string(common::repo().join("dist/cordon-collector.service"))
        .expect("unit");
    assert!(unit.contains("User=cordon-collector") && unit.contains("ProtectSystem=strict"));
    let unit = unit.replace(
        "ExecStart=/usr/local/bin/cordon-collector",
        &format!("ExecStart={}", common::collector::collector_bin().display()),
    );
    let path = dir.path().join("cordon-collector.service");
    std::fs::write(&path, unit).expect("unit");
    common::assert_unit_verifies(&path, None);
    // The default database is where the unit's StateDirectory is.
    let config =
        std::fs::read_to_string(common::repo().join("dist/collector.toml")).expect("config");
    assert!(
        config.contains("sqlite:///var/lib/cordon-collector/"),
        "{config}"
    );
}

on_both_stores!(events_past_the_retention_are_deleted);
fn events_past_the_retention_are_deleted(db: Db) {
    let mut c = Collector::start(db, "retention = \"1h\"");
    let host = c.token("web-1", "host", Some("web-1"));
    let viewer = c.token("alice", "viewer", None);
    let now = std::time::SystemTime::now();
    let at = |ago: u64| humantime::format_rfc3339(now - Duration::from_secs(ago)).to_string();
    let events = [
        file_event(&id(1), "agent-1-0", "/old", &at(7200)),
        file_event(&id(2), "agent-1-0", "/new", &at(60)),
    ];
    assert_eq!(
        c.post_raw(
            Some(&host),
            "/api/v1/events",
            &batch("web-1", &events),
            true
        )
        .0,
        200
    );
    assert_eq!(count(&c, &viewer), 2);
    // The retention runs at start and every 10 minutes after.
    c.stop();
    c.run();
    let left = c.all_events(&viewer, "");
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["path"], "/new");
}

#[test]
fn the_collector_serves_https_when_given_a_certificate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args([
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = common::collector::free_port();
    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndatabase_url = \"sqlite://{}/c.db\"\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            dir.path().display(),
            cert.display(),
            key.display()
        ),
    )
    .expect("config");
    let mut server = common::daemon::KillOnDrop(
        std::process::Command::new(common::collector::collector_bin())
            .arg("--config")
            .arg(&config)
            .spawn()
            .expect("collector"),
    );
    let curl = |extra: &[&str]| {
        std::process::Command::new("curl")
            .args(["-sS", "--max-time", "5"])
            .args(extra)
            .arg(format!("https://127.0.0.1:{port}/healthz"))
            .output()
            .expect("curl")
    };
    let until = Instant::now() + Duration::from_secs(20);
    let answer = loop {
        let out = curl(&["--cacert", cert.to_str().expect("utf-8")]);
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            server.0.try_wait().expect("wait").is_none(),
            "the collector exited"
        );
        assert!(
            Instant::now() < until,
            "no HTTPS answer: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(answer, "ok\n");
    // Without the certificate trusted, curl refuses it (60: the peer's certificate cannot
    // be authenticated): it really is TLS, with this certificate.
    assert_eq!(curl(&[]).status.code(), Some(60));
    // Plain HTTP on that port gets no HTTP answer: rustls answers with a TLS alert, which
    // curl refuses as HTTP/0.9 (1), or the connection ends (52: empty reply, 56: reset).
    let plain = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "5"])
        .arg(format!("http://127.0.0.1:{port}/healthz"))
        .output()
        .expect("curl");
    assert!(
        matches!(plain.status.code(), Some(1 | 52 | 56))
            && !String::from_utf8_lossy(&plain.stdout).contains("ok"),
        "plain HTTP: {:?} {} {}",
        plain.status,
        String::from_utf8_lossy(&plain.stderr),
        String::from_utf8_lossy(&plain.stdout)
    );
    assert!(
        server.0.try_wait().expect("wait").is_none(),
        "the collector exited"
    );
}

/// The attack that stopped a host's reporting for good: an event the collector refuses
/// (here: larger, alone, than the collector takes) sat at the head of cordond's queue and was
/// sent again forever. Now cordond halves the batch until the event at fault is alone, sets
/// that one aside (kept in the spool's `refused/events.jsonl`, counted in `cordon status`), and the
/// events behind it flow. The twin: a process named `\u0000` (six characters), which made
/// the old collector refuse whole batches, is stored like any other.
#[test]
fn an_event_refused_even_alone_is_set_aside_and_the_ones_behind_it_delivered() {
    if !require_root("an_event_refused_even_alone_is_set_aside_and_the_ones_behind_it_delivered") {
        return;
    }
    // Small enough that batches of a few events are refused too, and must be split.
    let c = Collector::start(Db::Sqlite, "max_body_bytes = 2000");
    let viewer = c.token("alice", "viewer", None);
    let mut d = c.host("e2e-host");
    // A profile that may read three deep directories: their parents are in the sandbox's
    // view (the way to them), not readable, so listing one is a Landlock denial that names
    // it. One of them has a path that alone is over the collector's limit.
    let deep = d.dir.path().join("deep");
    let long: std::path::PathBuf = (0..10).map(|i| format!("{i}{}", "d".repeat(240))).collect();
    let leaves = [
        deep.join("before/1/2/3/4/5/6/leaf"),
        deep.join("long").join(&long).join("leaf"),
        deep.join("after/1/2/3/4/5/6/leaf"),
    ];
    for leaf in &leaves {
        std::fs::create_dir_all(leaf).expect("deep dirs");
    }
    std::fs::write(
        d.dir.path().join("profiles/deep-agent.toml"),
        format!(
            "[profile]\nname = \"deep-agent\"\nextends = [\"test-agent\"]\n\n[filesystem]\nread = {:?}\n",
            leaves.iter().map(|l| l.display().to_string()).collect::<Vec<_>>()
        ),
    )
    .expect("profile");
    // The probe again, under the name that poisoned batches.
    // (Not `join`: clippy reads the backslash as a Windows separator.)
    let named = std::path::PathBuf::from(format!("{}/\\u0000", d.bin.display()));
    std::fs::copy(d.bin.join("probe"), &named).expect("copy probe");
    d.start();
    let parents = |leaf: &std::path::Path| -> Vec<String> {
        leaf.ancestors()
            .skip(1)
            .take(6)
            .map(|p| p.display().to_string())
            .collect()
    };
    let (before, after) = (parents(&leaves[0]), parents(&leaves[2]));
    let refused_path = leaves[1].parent().expect("parent").display().to_string();
    let probe = d.bin.join("probe").display().to_string();
    let mut script: Vec<String> = before
        .iter()
        .map(|p| format!("'{}' list '{p}'", named.display()))
        .collect();
    script.push(format!("'{probe}' list '{refused_path}'"));
    script.extend(after.iter().map(|p| format!("'{probe}' list '{p}'")));
    let out = d
        .cordon(
            0,
            0,
            &[
                "run",
                "--quiet",
                "-p",
                "deep-agent",
                "--",
                "/bin/sh",
                "-c",
                &script.join("; "),
            ],
        )
        .output()
        .expect("cordon run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.matches("err EACCES").count(),
        13,
        "every listing is refused: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Every denial but the refused one reaches the collector, in spite of the one before.
    let wanted: Vec<String> = before.iter().chain(&after).cloned().collect();
    let until = Instant::now() + Duration::from_secs(60);
    let stored = loop {
        let stored = c.all_events(&viewer, "host=e2e-host&kind=file_denied");
        let paths: Vec<&str> = stored.iter().filter_map(|e| e["path"].as_str()).collect();
        if wanted.iter().all(|w| paths.contains(&w.as_str())) {
            break stored;
        }
        assert!(
            Instant::now() < until,
            "the denials behind the refused one did not arrive: {paths:?}; the collector has {:?}; the journal {:?}",
            c.all_events(&viewer, "").iter().map(|e| e["kind"].clone()).collect::<Vec<_>>(),
            common::daemon::read_jsonl(&d.journal).iter().map(|e| (e["kind"].clone(), e["path"].clone())).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let named_events = stored
        .iter()
        .filter(|e| e["process"]["comm"] == "\\u0000")
        .count();
    assert_eq!(
        named_events,
        6,
        "{:#?}",
        stored
            .iter()
            .filter(|e| e["process"]["comm"] == "\\u0000")
            .collect::<Vec<_>>()
    );
    assert!(
        !stored
            .iter()
            .any(|e| e["path"].as_str().is_some_and(|p| p.contains("dddd"))),
        "the refused event is not at the collector"
    );
    // Set aside on the host, whole, and counted.
    let refused =
        std::fs::read_to_string(d.spool.join("refused/events.jsonl")).unwrap_or_else(|e| {
            panic!(
                "refused/events.jsonl: {e}; the journal has {:?}",
                common::daemon::read_jsonl(&d.journal)
                    .iter()
                    .filter(|e| e["kind"] == "file_denied")
                    .map(|e| e["path"].as_str().map(str::len))
                    .collect::<Vec<_>>()
            )
        });
    let refused: Vec<serde_json::Value> = refused
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["event"]["path"], refused_path);
    assert!(
        refused[0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("413"),
        "{refused:?}"
    );
    let status = d
        .cordon(0, 0, &["status", "--json"])
        .output()
        .expect("status");
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    assert_eq!(status["collector"]["refused"], 1, "{status}");
    assert!(status["collector"]["last_error"].is_null(), "{status}");
}
