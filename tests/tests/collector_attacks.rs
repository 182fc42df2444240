//! The collector under hostile clients: nobody can hold it, fill it or outlast a revocation.
//! Each attack runs against the real `cordon-collector` on loopback (attackers from
//! 127.0.0.2 and up, honest clients from 127.0.0.1), with its twin: the honest client is
//! served while the attack lasts. On SQLite, and needing no root: any user's `cargo test`
//! runs them.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::collector::{batch, file_event, Collector, Db};
use serde_json::json;

fn id(n: u64) -> String {
    format!("019abc00-0000-7000-8000-{n:012x}")
}

/// A TCP connection to the collector from the loopback address `from`.
fn connect_from(c: &Collector, from: Ipv4Addr) -> TcpStream {
    use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
    use std::os::fd::AsRawFd as _;
    let to: SocketAddr = c.url.trim_start_matches("http://").parse().expect("addr");
    let SocketAddr::V4(to) = to else {
        panic!("the collector listens on IPv4 loopback")
    };
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("socket");
    bind(
        fd.as_raw_fd(),
        &SockaddrIn::from(std::net::SocketAddrV4::new(from, 0)),
    )
    .expect("bind");
    connect(fd.as_raw_fd(), &SockaddrIn::from(to)).expect("connect");
    let stream = TcpStream::from(fd);
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    stream
}

/// Whether the collector has closed `stream` (answered or not): reads until EOF or error.
fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<String> {
    stream.set_read_timeout(Some(within)).expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Some(String::from_utf8_lossy(&got).into_owned()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(String::from_utf8_lossy(&got).into_owned())
            }
            Err(_) => return None,
        }
    }
}

/// Whether the collector still holds `stream` open (nothing to read yet, no EOF).
fn is_open(stream: &mut TcpStream) -> bool {
    stream.set_nonblocking(true).expect("nonblocking");
    let read = stream.read(&mut [0u8; 64]);
    stream.set_nonblocking(false).expect("blocking");
    matches!(read, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// A value of the collector's `/metrics`.
fn metric(c: &Collector, token: &str, line: &str) -> f64 {
    let (status, text) = c.get_text(Some(token), "/metrics");
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line} in\n{text}"))
}

#[test]
fn a_slowloris_is_capped_and_cut_off_while_honest_clients_are_served() {
    let c = Collector::start(
        Db::Sqlite,
        "header_timeout = \"2s\"\nbody_timeout = \"2s\"\nmax_connections_per_client = 20\nmax_connections = 70",
    );
    let host = c.token("web-1", "host", Some("web-1"));
    let viewer = c.token("alice", "viewer", None);
    let attacker = Ipv4Addr::new(127, 0, 0, 2);

    // 40 half-sent requests from one address: 20 are held, the rest turned away at once.
    let mut held = Vec::new();
    let mut turned_away = 0;
    for _ in 0..40 {
        let mut s = connect_from(&c, attacker);
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .expect("write");
        held.push(s);
    }
    let started = Instant::now();
    let mut trickling = Vec::new();
    for mut s in held {
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Ok(n) if n > 0 => {
                let answer = String::from_utf8_lossy(&buf[..n]);
                assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
                assert!(answer.contains("\"error\""), "{answer}");
                turned_away += 1;
            }
            _ => trickling.push(s),
        }
    }
    assert_eq!((trickling.len(), turned_away), (20, 20));

    // While they trickle a header byte every 300 ms, the honest client is served.
    let honest = Instant::now();
    assert_eq!(c.get(None, "/healthz").0, 200);
    let (status, reply) = c.post_raw(
        Some(&host),
        "/api/v1/events",
        &batch(
            "web-1",
            &[file_event(
                &id(1),
                "agent-1-0",
                "/etc/x",
                "2026-11-29T00:00:00Z",
            )],
        ),
        true,
    );
    assert_eq!(
        (status, reply["stored"].as_u64()),
        (200, Some(1)),
        "{reply}"
    );
    assert!(honest.elapsed() < Duration::from_secs(2));

    // The trickling ones are cut off by the header deadline, however they trickle.
    let mut cut = 0;
    let until = started + Duration::from_secs(10);
    while !trickling.is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(300));
        trickling.retain_mut(|s| {
            let alive = s.write_all(b"X").is_ok() && is_open(s);
            if !alive {
                cut += 1;
            }
            alive
        });
    }
    assert_eq!(
        cut,
        20,
        "{} half-sent requests outlived the header timeout",
        trickling.len()
    );
    let cut_at = started.elapsed();
    assert!(
        cut_at >= Duration::from_secs(1),
        "cut off too early: {cut_at:?}"
    );

    // A body trickled a byte at a time gets 408 once the body deadline passes.
    let mut s = connect_from(&c, attacker);
    write!(
        s,
        "POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {host}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
    )
    .expect("write");
    let body_started = Instant::now();
    let answer = loop {
        std::thread::sleep(Duration::from_millis(200));
        let _ = s.write_all(b" ");
        s.set_nonblocking(true).expect("nonblocking");
        let mut buf = [0u8; 4096];
        let read = s.read(&mut buf);
        s.set_nonblocking(false).expect("blocking");
        if let Ok(n) = read {
            break String::from_utf8_lossy(&buf[..n]).into_owned();
        }
        assert!(
            body_started.elapsed() < Duration::from_secs(10),
            "a trickled body was waited for"
        );
    };
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive within 2s"), "{answer}");

    // The total cap: more addresses than it allows get 503 too, and it is all counted.
    let mut many = Vec::new();
    for i in 0..80u8 {
        let mut s = connect_from(&c, Ipv4Addr::new(127, 0, 0, 10 + i % 8));
        let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n");
        many.push(s);
    }
    let busy = many
        .iter_mut()
        .filter_map(|s| closed_within(s, Duration::from_millis(300)))
        .filter(|answer| answer.starts_with("HTTP/1.1 503"))
        .count();
    assert!(busy >= 10, "{busy} of 80 over a cap of 70 were turned away");
    drop(many);
    let until = Instant::now() + Duration::from_secs(10);
    while c.get(None, "/healthz").0 != 200 {
        assert!(Instant::now() < until, "the collector did not recover");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        metric(
            &c,
            &viewer,
            "cordon_collector_refused_total{reason=\"client_connections\"}"
        ) >= 20.0
    );
    assert!(
        metric(
            &c,
            &viewer,
            "cordon_collector_refused_total{reason=\"connections\"}"
        ) >= 10.0
    );
    assert!(
        metric(
            &c,
            &viewer,
            "cordon_collector_refused_total{reason=\"timeout\"}"
        ) >= 1.0
    );
}

#[test]
fn streams_are_bounded_and_a_slow_one_is_ended_not_waited_for() {
    let c = Collector::start(
        Db::Sqlite,
        "max_streams = 4\nmax_streams_per_token = 2\nidle_timeout = \"3s\"",
    );
    let host = c.token("web-1", "host", Some("web-1"));
    let alice = c.token("alice", "viewer", None);
    let bob = c.token("bob", "viewer", None);
    let carol = c.token("carol", "viewer", None);
    let dave = c.token("dave", "viewer", None);

    // Alice's two streams are admitted, her third is refused; so is a fifth in all.
    let honest = c.stream(&alice, "");
    let _second = c.stream(&alice, "kind=exec");
    let (status, reply) = c.get(Some(&alice), "/api/v1/stream");
    assert_eq!(status, 429, "{reply}");
    assert!(
        reply["error"]
            .as_str()
            .unwrap_or_default()
            .contains("max_streams_per_token"),
        "{reply}"
    );
    // Bob opens a stream and never reads from it.
    let mut slow = connect_from(&c, Ipv4Addr::new(127, 0, 0, 2));
    write!(
        slow,
        "GET /api/v1/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {bob}\r\n\r\n"
    )
    .expect("write");
    let _carols = c.stream(&carol, "");
    let until = Instant::now() + Duration::from_secs(10);
    while metric(&c, &dave, "cordon_collector_streams") < 4.0 {
        assert!(Instant::now() < until, "bob's stream did not open");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, reply) = c.get(Some(&dave), "/api/v1/stream");
    assert_eq!(status, 429, "{reply}");
    assert!(
        reply["error"]
            .as_str()
            .unwrap_or_default()
            .contains("(max_streams)"),
        "{reply}"
    );

    // Enough events to fill what Bob's connection holds unread: his stream is ended (and
    // its place given back), the honest stream gets every event.
    let path = "/p".repeat(500);
    let mut sent = 0;
    for b in 0..12u64 {
        let events: Vec<_> = (0..1000)
            .map(|i| {
                file_event(
                    &id(b * 1000 + i),
                    "agent-1-0",
                    &path,
                    "2026-11-29T00:00:00Z",
                )
            })
            .collect();
        let (status, reply) = c.post_raw(
            Some(&host),
            "/api/v1/events",
            &batch("web-1", &events),
            true,
        );
        assert_eq!(status, 200, "{reply}");
        sent += events.len();
    }
    let mut got = 0;
    while got < sent {
        let e = honest
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("the honest stream stalled after {got} of {sent}"));
        assert_eq!(e["host"], "web-1", "{e}");
        got += 1;
    }
    let until = Instant::now() + Duration::from_secs(20);
    while metric(
        &c,
        &dave,
        "cordon_collector_refused_total{reason=\"slow_stream\"}",
    ) < 1.0
    {
        assert!(Instant::now() < until, "the slow stream was not ended");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Its connection, which never reads, is closed once nothing moved on it for idle_timeout,
    // and its place under the limits is free again: Dave may stream now.
    let until = Instant::now() + Duration::from_secs(20);
    while metric(&c, &dave, "cordon_collector_streams") > 3.0 {
        assert!(
            Instant::now() < until,
            "the ended stream still holds its place"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let dave_stream = c.stream(&dave, "");
    let (status, reply) = c.post_raw(
        Some(&host),
        "/api/v1/events",
        &batch(
            "web-1",
            &[file_event(
                &id(99_999),
                "agent-1-0",
                "/last",
                "2026-11-29T00:00:01Z",
            )],
        ),
        true,
    );
    assert_eq!(status, 200, "{reply}");
    let last = dave_stream
        .recv_timeout(Duration::from_secs(10))
        .expect("dave's stream");
    assert_eq!(last["path"], "/last");
    assert!(
        closed_within(&mut slow, Duration::from_secs(15)).is_some(),
        "the unread stream's connection is still open"
    );
}

#[test]
fn a_stream_gets_every_event_of_batches_stored_at_once() {
    let c = Collector::start(Db::Sqlite, "");
    let viewer = c.token("alice", "viewer", None);
    // Subscribed once it answers: nothing stored after this is missed.
    let live = c.stream(&viewer, "");
    // Eight hosts post at once: their batches commit and reach the streams in any order.
    let posters: Vec<_> = (0..8u64)
        .map(|h| {
            let name = format!("web-{h}");
            let token = c.token(&name, "host", Some(&name));
            let url = c.url.clone();
            std::thread::spawn(move || {
                for b in 0..20u64 {
                    let events: Vec<_> = (0..100)
                        .map(|i| {
                            file_event(
                                &id(h * 1_000_000 + b * 1000 + i),
                                "agent-1-0",
                                "/x",
                                "2026-11-29T00:00:00Z",
                            )
                        })
                        .collect();
                    let answer = ureq::post(&format!("{url}/api/v1/events"))
                        .set("Authorization", &format!("Bearer {token}"))
                        .send_bytes(&batch(&name, &events));
                    assert!(answer.is_ok(), "{answer:?}");
                }
            })
        })
        .collect();
    for p in posters {
        p.join().expect("poster");
    }
    let mut got = 0;
    while got < 16_000 {
        match live.recv_timeout(Duration::from_secs(10)) {
            Ok(_) => got += 1,
            Err(_) => panic!("the stream got {got} of 16000 events"),
        }
    }
}

#[test]
fn revocation_ends_a_waiting_poll_and_an_open_stream_at_once() {
    let c = Collector::start(Db::Sqlite, "");
    let host = c.token("web-1", "host", Some("web-1"));
    let viewer = c.token("alice", "viewer", None);
    let responder = c.token("bob", "responder", None);
    let poll = json!({"v": 1, "host": "web-1", "results": [], "sandboxes": [{"name": "agent-1-0",
        "profile": "agent", "procs": 1, "state": "running", "network": "policy"}]});
    assert_eq!(
        c.post(Some(&host), "/api/v1/agent/poll?wait=0", &poll).0,
        200
    );

    // A poll waits for commands; the stream waits for events.
    let (url, token) = (c.url.clone(), host.clone());
    let body = poll.to_string();
    let waiting = std::thread::spawn(move || {
        let started = Instant::now();
        let answer = ureq::post(&format!("{url}/api/v1/agent/poll?wait=50"))
            .set("Authorization", &format!("Bearer {token}"))
            .set("Content-Type", "application/json")
            .timeout(Duration::from_secs(70))
            .send_string(&body);
        let status = match answer {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(s, _)) => s,
            Err(e) => panic!("poll: {e}"),
        };
        (status, started.elapsed())
    });
    let stream = c.stream(&viewer, "");
    std::thread::sleep(Duration::from_millis(500));

    // Revoked by the CLI (another process, writing the store): the poll ends with 401 within
    // seconds, and a command queued after the revocation is not handed to it.
    let out = c.cli(&["token", "revoke", "web-1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, reply) = c.post(
        Some(&responder),
        "/api/v1/commands",
        &json!({"host": "web-1", "sandbox": "agent-1-0", "action": "kill"}),
    );
    assert_eq!(status, 201, "{reply}");
    let command = reply["id"].as_str().expect("id").to_string();
    let (status, took) = waiting.join().expect("poll thread");
    assert_eq!(status, 401, "the revoked host's poll");
    assert!(
        took < Duration::from_secs(5),
        "the poll ended {took:?} after it began"
    );
    let (_, row) = c.get(Some(&viewer), &format!("/api/v1/commands/{command}"));
    assert_eq!(row["status"], "queued", "{row}");

    // The viewer's token revoked through the API: its stream ends at once.
    let admin = c.token("root", "admin", None);
    let (_, whoami) = c.get(Some(&viewer), "/api/v1/whoami");
    let id = whoami["id"].as_str().expect("id").to_string();
    let revoked_at = Instant::now();
    assert_eq!(
        c.delete(Some(&admin), &format!("/api/v1/tokens/{id}")).0,
        200
    );
    loop {
        match stream.recv_timeout(Duration::from_secs(5)) {
            Ok(_) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                panic!("the stream of a revoked token is still open")
            }
        }
    }
    assert!(revoked_at.elapsed() < Duration::from_secs(3));
}

#[test]
fn big_events_are_cut_at_ingest_and_a_page_stops_at_its_byte_limit() {
    let c = Collector::start(Db::Sqlite, "max_response_bytes = 300000");
    let host = c.token("web-1", "host", Some("web-1"));
    let viewer = c.token("alice", "viewer", None);
    // Forty events of a 3 MiB path each, in batches under the body limit.
    let path = format!("/{}", "z".repeat(3 << 20));
    for b in 0..10u64 {
        let events: Vec<_> = (0..4)
            .map(|i| file_event(&id(b * 4 + i), "agent-1-0", &path, "2026-11-29T00:00:00Z"))
            .collect();
        let (status, reply) = c.post_raw(
            Some(&host),
            "/api/v1/events",
            &batch("web-1", &events),
            true,
        );
        assert_eq!(status, 200, "{reply}");
        assert_eq!(
            (reply["stored"].as_u64(), reply["truncated"].as_u64()),
            (Some(4), Some(4)),
            "{reply}"
        );
    }
    // What the console's sandbox page asks for: a thousand at once.
    let (status, page) = c.get(Some(&viewer), "/api/v1/events?limit=1000&sandbox=agent-1-0");
    assert_eq!(status, 200);
    let events = page["events"].as_array().expect("events");
    let bytes = page.to_string().len();
    assert!(bytes < 300_000 + 70_000, "a page of {bytes} bytes");
    assert!(
        (1..40).contains(&events.len()),
        "{} events in one page",
        events.len()
    );
    let path = events[0]["path"].as_str().expect("path");
    assert!(
        path.len() <= 65_536 && path.ends_with("bytes cut]"),
        "{}",
        path.len()
    );
    // The rest is there, page after page.
    assert_eq!(c.all_events(&viewer, "sandbox=agent-1-0").len(), 40);

    // 16 MB of padding in fields no event has (54 KB gzipped): read once and dropped, while
    // the collector goes on answering (cutting it field by field once cost hours of CPU).
    let mut padded = file_event(&id(1000), "agent-1-0", "/padded", "2026-11-29T00:00:00Z");
    padded["padding"] = json!(vec!["p".repeat(80); 190_000]);
    let started = Instant::now();
    let (url, token) = (c.url.clone(), host.clone());
    let body = batch("web-1", &[padded]);
    let posting = std::thread::spawn(move || {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&body).expect("gzip");
        ureq::post(&format!("{url}/api/v1/events"))
            .set("Authorization", &format!("Bearer {token}"))
            .set("Content-Encoding", "gzip")
            .send_bytes(&gz.finish().expect("gzip"))
            .map(|r| r.into_string().unwrap_or_default())
            .map_err(|e| e.to_string())
    });
    assert_eq!(c.get(None, "/healthz").0, 200);
    let reply = posting.join().expect("post");
    assert!(
        reply.as_ref().is_ok_and(|r| r.contains("\"stored\":1")),
        "{reply:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn every_error_is_json() {
    let c = Collector::start(Db::Sqlite, "");
    let viewer = c.token("alice", "viewer", None);
    for (method, path, want) in [
        ("DELETE", "/api/v1/events", 405),
        ("GET", "/api/v1/events?limit=many", 400),
        ("GET", "/api/v1/events?next=1.2", 400),
        ("GET", "/api/v1/nothing", 404),
        ("PUT", "/api/v1/hosts", 405),
        ("GET", "/api/v1/hosts/web%00-1/rejected", 400),
        ("GET", "/api/v1/events?host=a%00b", 400),
    ] {
        let answer = ureq::request(method, &format!("{}{path}", c.url))
            .set("Authorization", &format!("Bearer {viewer}"))
            .call();
        let Err(ureq::Error::Status(status, response)) = answer else {
            panic!("{method} {path}: not refused");
        };
        assert_eq!(status, want, "{method} {path}");
        assert_eq!(
            response.header("content-type"),
            Some("application/json"),
            "{method} {path}"
        );
        let body: serde_json::Value =
            serde_json::from_str(&response.into_string().expect("body")).expect("JSON");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{method} {path}: {body}"
        );
    }
    // A head over 64 KiB is refused by the HTTP layer before any of it is kept.
    let mut s = connect_from(&c, Ipv4Addr::LOCALHOST);
    let _ = write!(
        s,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(100 << 10)
    );
    let answer = closed_within(&mut s, Duration::from_secs(10)).expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}

#[test]
fn a_stream_that_missed_much_is_replayed_a_page_at_a_time() {
    use std::io::BufRead as _;
    let c = Collector::start(Db::Sqlite, "");
    let host = c.token("web-1", "host", Some("web-1"));
    let viewer = c.token("alice", "viewer", None);
    for b in 0..5u64 {
        let events: Vec<_> = (0..1000)
            .map(|i| file_event(&id(b * 1000 + i), "agent-1-0", "/x", "2026-11-29T00:00:00Z"))
            .collect();
        let (status, reply) = c.post_raw(
            Some(&host),
            "/api/v1/events",
            &batch("web-1", &events),
            true,
        );
        assert_eq!(status, 200, "{reply}");
    }
    // Reconnecting from the start, as a client that saw nothing would: each answer is one
    // page that ends with where to go on from, until the client has caught up.
    let mut last = "0".to_string();
    let mut seen = 0;
    let mut pages = 0;
    for _ in 0..10 {
        let response = ureq::get(&format!("{}/api/v1/stream?kind=exec", c.url))
            .set("Authorization", &format!("Bearer {viewer}"))
            .set("Last-Event-ID", &last)
            .timeout(Duration::from_secs(3))
            .call()
            .expect("stream");
        let mut ended_with_more = false;
        for line in std::io::BufReader::new(response.into_reader()).lines() {
            let Ok(line) = line else { break };
            if let Some(id) = line.strip_prefix("id:") {
                last = id.trim().to_string();
            }
            if line.starts_with("data:") && !line.contains("\"more\"") {
                seen += 1;
            }
            if line == "event: replay" || line == "event:replay" {
                ended_with_more = true;
            }
        }
        if !ended_with_more {
            // Caught up: this one stayed open for live events, until the client gave up.
            break;
        }
        pages += 1;
    }
    // Nothing was wanted (no exec events), and still each page told where to go on from.
    assert_eq!(seen, 0);
    assert_eq!((pages, last.as_str()), (2, "4096"));
}

#[test]
fn what_hosts_and_people_name_is_logged_escaped() {
    let c = Collector::start_logged("");
    let host = c.token("web-1", "host", Some("web-1"));
    let admin = c.token("root", "admin", None);
    // A host reports a command id that would forge a line of the collector's log.
    let forged = "x\n2026-11-29T00:00:00Z  INFO cordon_collector: FORGED";
    let (status, reply) = c.post(
        Some(&host),
        "/api/v1/agent/poll?wait=0",
        &json!({"v": 1, "host": "web-1", "sandboxes": [],
                "results": [{"id": forged, "result": "done", "took_ms": 1}]}),
    );
    assert_eq!(status, 200, "{reply}");
    // So does a person, through a token's name.
    let (status, reply) = c.post(
        Some(&admin),
        "/api/v1/tokens",
        &json!({"name": "eve\n2026-11-29T00:00:00Z  INFO cordon_collector: FORGED", "role": "viewer"}),
    );
    assert!(status == 201 || status == 400, "{status} {reply}");
    let log = c.log();
    assert!(log.contains("which was not waiting for a result"), "{log}");
    assert!(
        !log.lines().any(|l| l.starts_with("2026-11-29T00:00:00Z")),
        "a forged line:\n{log}"
    );
    assert!(log.contains("x\\n2026-11-29"), "the id, escaped:\n{log}");
}
