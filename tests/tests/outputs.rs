//! The collector's outputs against real receivers: a local HTTP server for the webhook
//! (checking its HMAC), Slack, Splunk's HEC and Elasticsearch's `_bulk` (checking their
//! documented request shapes); Debian's rsyslog over TCP and TLS; an OTLP/HTTP receiver in
//! Python decoding with the OpenTelemetry project's own protobuf messages (PyPI's
//! `opentelemetry-proto`). Each receiver goes away and comes back, and the collector
//! restarts: every event its filter lets through arrives once, and no other.

mod common;

use std::collections::HashSet;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use common::collector::{batch, file_event, free_port, Collector, Db};
use common::{require_root, wait_until};
use cordon_testkit::http::{Answer, HttpStandIn, Request};
use hmac::{Hmac, Mac as _};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

/// A receiver the test can take away and bring back on the same port.
trait Receiver {
    fn stop(&mut self);
    fn start(&mut self);
    /// The numbers of the events received so far (the `N` of `/etc/fN`), in order of
    /// arrival, repeats kept; each delivery checked for its documented shape on the way.
    fn received(&self) -> Vec<u64>;
}

/// The number in an event's path `/etc/fN`.
fn number_in(text: &str) -> Vec<u64> {
    text.match_indices("/etc/f")
        .filter_map(|(i, _)| {
            let digits: String = text[i + 6..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .collect()
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339(SystemTime::now()).to_string()
}

fn event(n: u64) -> Value {
    file_event(
        &format!("019abc00-0000-7000-8000-{n:012x}"),
        "agent-1-0",
        &format!("/etc/f{n}"),
        &now_rfc3339(),
    )
}

/// An event the outputs' filter (`severity = "medium"`) leaves out: a path not in the
/// profile's view is rated low.
fn low_event(n: u64) -> Value {
    let mut e = event(n);
    e["layer"] = json!("not_in_view");
    e
}

/// The output named `out`'s state, from the API.
fn output_state(c: &Collector, viewer: &str) -> Value {
    let (status, reply) = c.get(Some(viewer), "/api/v1/outputs");
    assert_eq!(status, 200, "{reply}");
    reply["outputs"]
        .as_array()
        .and_then(|a| a.iter().find(|o| o["name"] == "out"))
        .cloned()
        .unwrap_or_else(|| panic!("no output named out in {reply}"))
}

/// The scenario every output goes through: events before, while and after its receiver is
/// away, and after the collector restarts; each matching one arrives once.
fn every_event_arrives_once(db: Db, output: &str, receiver: &mut dyn Receiver) {
    let mut c = Collector::start(
        db,
        &format!("[[output]]\nname = \"out\"\nseverity = \"medium\"\nsandbox = \"agent-*\"\nmax_backoff = \"1s\"\n{output}"),
    );
    let host = c.token("web-1", "host", Some("web-1"));
    let viewer = c.token("alice", "viewer", None);
    wait_until("the output to read its cursor", WAIT, || {
        (!output_state(&c, &viewer)["cursor"].is_null()).then_some(())
    });
    let send = |c: &Collector, events: Vec<Value>| {
        let (status, reply) = c.post_raw(
            Some(&host),
            "/api/v1/events",
            &batch("web-1", &events),
            false,
        );
        assert_eq!(status, 200, "{reply}");
    };
    let arrived = |receiver: &dyn Receiver, n: usize| {
        wait_until(&format!("{n} events at the receiver"), WAIT, || {
            (receiver.received().len() >= n).then_some(())
        });
    };
    // Sent while the receiver is there; the low one and another sandbox's are not.
    let mut other = event(901);
    other["sandbox"] = json!("build-2-0");
    other["profile"] = json!("build");
    send(
        &c,
        vec![event(1), low_event(900), event(2), other, event(3)],
    );
    arrived(receiver, 3);

    // Away: the output fails, and tries again.
    receiver.stop();
    send(&c, (4..=8).map(event).collect());
    wait_until("the output to fail", WAIT, || {
        let s = output_state(&c, &viewer);
        (s["failures"].as_u64() > Some(0) && s["lag"].as_i64() > Some(0)).then_some(s)
    });
    receiver.start();
    arrived(receiver, 8);

    // The collector restarts: its cursor was kept, nothing goes twice.
    c.stop();
    c.run();
    send(&c, (9..=10).map(event).collect());
    // The last event is sent after everything before it: once it is there, any repeat of
    // an earlier one would be too.
    send(&c, vec![event(11)]);
    arrived(receiver, 11);
    let got = receiver.received();
    let mut sorted = got.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (1..=11).collect::<Vec<_>>(),
        "each matching event once, in {got:?}"
    );

    let state = wait_until("the output to catch up", WAIT, || {
        let s = output_state(&c, &viewer);
        (s["lag"] == 0).then_some(s)
    });
    assert!(state["last_success"].is_string(), "{state}");
    assert!(state["last_error"].is_null(), "{state}");
    assert!(
        !state["destination"]
            .as_str()
            .unwrap_or("/")
            .contains("/hook"),
        "{state}"
    );
    let (status, metrics) = c.get_text(Some(&viewer), "/metrics");
    assert_eq!(status, 200);
    for line in [
        "cordon_collector_output_lag_events{output=\"out\",",
        "cordon_collector_output_events_sent_total{output=\"out\",",
        "cordon_collector_output_failures_total{output=\"out\",",
        "cordon_collector_output_last_success_timestamp_seconds{output=\"out\",",
        // The host sent batches but never polled, as a cordond does.
        "cordon_collector_hosts{state=\"online\"} 0",
        "cordon_collector_hosts{state=\"offline\"} 1",
        "cordon_collector_commands{state=\"queued\"} 0",
    ] {
        assert!(metrics.contains(line), "no {line} in\n{metrics}");
    }
    let lag = metrics
        .lines()
        .find(|l| l.starts_with("cordon_collector_output_lag_events{output=\"out\""))
        .unwrap_or_default();
    assert!(lag.ends_with(" 0"), "{lag}");
}

// --- A local HTTP server ---

/// An HTTP receiver on a loopback port: it keeps every request and answers each with
/// `answer`. Stopped, the port refuses connections (and open ones are closed).
struct HttpReceiver {
    server: HttpStandIn,
    requests: Arc<Mutex<Vec<Request>>>,
    /// The event numbers in a request, its shape checked (panics name what is wrong).
    numbers: fn(&Request) -> Vec<u64>,
}

impl HttpReceiver {
    fn new(answer: Answer, numbers: fn(&Request) -> Vec<u64>) -> Self {
        let requests: Arc<Mutex<Vec<Request>>> = Arc::default();
        let kept = Arc::clone(&requests);
        let server = HttpStandIn::start(Arc::new(move |request: &Request| {
            let reply = answer(request);
            kept.lock().expect("requests").push(request.clone());
            reply
        }))
        .expect("the receiver listens");
        Self {
            server,
            requests,
            numbers,
        }
    }

    fn url(&self) -> String {
        self.server.url()
    }
}

impl Receiver for HttpReceiver {
    fn start(&mut self) {
        self.server.restart().expect("the port again");
    }

    fn stop(&mut self) {
        self.server.stop();
    }

    fn received(&self) -> Vec<u64> {
        let requests = self.requests.lock().expect("requests").clone();
        requests.iter().flat_map(|r| (self.numbers)(r)).collect()
    }
}

fn ok() -> Answer {
    Arc::new(|_| (200, "{}".into()))
}

// --- Webhook ---

const SECRET: &str = "a shared secret of the test";

fn webhook_numbers(r: &Request) -> Vec<u64> {
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/hook"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let timestamp = r.header("x-cordon-timestamp").expect("a timestamp");
    let sent: u64 = timestamp.parse().expect("seconds");
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert!(now.abs_diff(sent) < 300, "an old timestamp: {sent}");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).expect("hmac");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(&r.body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        r.header("x-cordon-signature"),
        Some(format!("sha256={expected}").as_str()),
        "the signature is the HMAC of timestamp.body"
    );
    let events: Vec<Value> = serde_json::from_slice(&r.body).expect("a JSON array");
    events
        .iter()
        .map(|e| {
            assert_eq!(e["host"], "web-1", "{e}");
            assert_eq!(e["kind"], "file_denied", "{e}");
            assert_eq!(e["severity"], "medium", "{e}");
            assert!(e["id"].is_string(), "{e}");
            number_in(e["path"].as_str().expect("path"))[0]
        })
        .collect()
}

on_both_stores!(a_webhook_gets_each_event_once_signed);
fn a_webhook_gets_each_event_once_signed(db: Db) {
    let dir = tempfile::tempdir().expect("dir");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, format!("{SECRET}\n")).expect("secret");
    let mut r = HttpReceiver::new(ok(), webhook_numbers);
    let config = format!(
        "type = \"webhook\"\nurl = \"{}/hook\"\nsecret_file = \"{}\"\n",
        r.url(),
        secret.display()
    );
    every_event_arrives_once(db, &config, &mut r);
}

// --- Slack ---

fn slack_numbers(r: &Request) -> Vec<u64> {
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/services/T0/B0/x")
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    let message: Value = serde_json::from_slice(&r.body).expect("JSON");
    let text = message["text"].as_str().expect("Slack's text field");
    let mut numbers = Vec::new();
    for line in text.lines().filter(|l| l.contains("/etc/f")) {
        for part in [
            "*MEDIUM* file_denied on host *web-1*, sandbox `agent-1-0`",
            "cat (pid 7)",
            "<https://console.example/#/host/web-1/sandbox/agent-1-0|Open in the console>",
        ] {
            assert!(line.contains(part), "no {part:?} in {line:?}");
        }
        numbers.extend(number_in(line));
    }
    numbers
}

on_both_stores!(slack_gets_a_readable_line_per_event_once);
fn slack_gets_a_readable_line_per_event_once(db: Db) {
    let mut r = HttpReceiver::new(Arc::new(|_| (200, "ok".into())), slack_numbers);
    let config = format!(
        "type = \"slack\"\nurl = \"{}/services/T0/B0/x\"\nconsole_url = \"https://console.example\"\n",
        r.url()
    );
    every_event_arrives_once(db, &config, &mut r);
}

// --- Splunk HEC ---

fn hec_numbers(r: &Request) -> Vec<u64> {
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/services/collector/event")
    );
    assert_eq!(
        r.header("authorization"),
        Some("Splunk 11111111-2222-3333-4444-555555555555")
    );
    // HEC's batch: event objects one after another.
    serde_json::Deserializer::from_slice(&r.body)
        .into_iter::<Value>()
        .map(|e| {
            let e = e.expect("an event object");
            assert!(e["time"].as_f64().is_some_and(|t| t > 1.7e9), "{e}");
            assert_eq!(e["host"], "web-1", "{e}");
            assert_eq!(e["sourcetype"], "cordon:event", "{e}");
            assert_eq!(e["source"], "cordon", "{e}");
            assert_eq!(e["index"], "security", "{e}");
            assert_eq!(e["event"]["kind"], "file_denied", "{e}");
            number_in(e["event"]["path"].as_str().expect("path"))[0]
        })
        .collect()
}

on_both_stores!(splunk_hec_gets_each_event_once);
fn splunk_hec_gets_each_event_once(db: Db) {
    let dir = tempfile::tempdir().expect("dir");
    let token = dir.path().join("hec.token");
    std::fs::write(&token, "11111111-2222-3333-4444-555555555555\n").expect("token");
    let mut r = HttpReceiver::new(
        Arc::new(|_| (200, r#"{"text":"Success","code":0}"#.into())),
        hec_numbers,
    );
    let config = format!(
        "type = \"splunk_hec\"\nurl = \"{}\"\ntoken_file = \"{}\"\nindex = \"security\"\n",
        r.url(),
        token.display()
    );
    every_event_arrives_once(db, &config, &mut r);
}

// --- Elasticsearch _bulk ---

/// `_bulk` as Elasticsearch answers it: a document is created once per `_id`, a `create`
/// of an id it has answers 409. The second request's answer is lost (500 after storing):
/// the batch comes again, and nothing is doubled.
fn bulk_answer() -> Answer {
    let stored = Arc::new(Mutex::new(HashSet::<String>::new()));
    let calls = Arc::new(Mutex::new(0));
    Arc::new(move |r: &Request| {
        let mut stored = stored.lock().expect("stored");
        let text = String::from_utf8_lossy(&r.body).to_string();
        let mut items = Vec::new();
        for action in text.lines().step_by(2) {
            let action: Value = serde_json::from_str(action).expect("an action line");
            let id = action["create"]["_id"].as_str().expect("_id").to_string();
            let status = if stored.insert(id.clone()) { 201 } else { 409 };
            items.push(
                json!({"create": {"_index": "logs-cordon-default", "_id": id, "status": status}}),
            );
        }
        let mut calls = calls.lock().expect("calls");
        *calls += 1;
        if *calls == 2 {
            return (500, r#"{"error":"the answer was lost"}"#.into());
        }
        let errors = items.iter().any(|i| i["create"]["status"] != 201);
        (
            200,
            json!({"took": 1, "errors": errors, "items": items}).to_string(),
        )
    })
}

fn bulk_numbers(r: &Request) -> Vec<u64> {
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/_bulk"));
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(r.header("authorization"), Some("ApiKey a2V5OnNlY3JldA=="));
    let text = String::from_utf8(r.body.clone()).expect("UTF-8");
    assert!(text.ends_with('\n'), "NDJSON ends with a newline");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    lines
        .chunks(2)
        .map(|pair| {
            let (action, doc) = (&pair[0], &pair[1]);
            assert_eq!(
                action["create"]["_index"], "logs-cordon-default",
                "{action}"
            );
            assert_eq!(
                action["create"]["_id"], doc["event"]["id"],
                "{action} {doc}"
            );
            assert!(
                doc["@timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
                "{doc}"
            );
            assert_eq!(doc["event"]["kind"], "alert", "{doc}");
            assert_eq!(doc["event"]["category"], json!(["file"]), "{doc}");
            assert_eq!(doc["event"]["action"], "file_denied", "{doc}");
            assert_eq!(doc["event"]["outcome"], "failure", "{doc}");
            assert_eq!(doc["host"]["name"], "web-1", "{doc}");
            assert_eq!(doc["process"]["pid"], 7, "{doc}");
            assert_eq!(doc["process"]["name"], "cat", "{doc}");
            assert_eq!(doc["user"]["id"], "1000", "{doc}");
            assert_eq!(doc["ecs"]["version"], "8.11.0", "{doc}");
            assert_eq!(doc["cordon"]["sandbox"], "agent-1-0", "{doc}");
            number_in(doc["file"]["path"].as_str().expect("file.path"))[0]
        })
        .collect()
}

/// What Elasticsearch kept: each id once, whatever came twice.
struct Bulk(HttpReceiver);

impl Receiver for Bulk {
    fn stop(&mut self) {
        self.0.stop();
    }
    fn start(&mut self) {
        self.0.start();
    }
    fn received(&self) -> Vec<u64> {
        let mut seen = HashSet::new();
        self.0
            .received()
            .into_iter()
            .filter(|n| seen.insert(*n))
            .collect()
    }
}

on_both_stores!(elasticsearch_keeps_each_event_once_by_its_id);
fn elasticsearch_keeps_each_event_once_by_its_id(db: Db) {
    let dir = tempfile::tempdir().expect("dir");
    let key = dir.path().join("es.key");
    std::fs::write(&key, "a2V5OnNlY3JldA==\n").expect("key");
    let mut r = Bulk(HttpReceiver::new(bulk_answer(), bulk_numbers));
    let config = format!(
        "type = \"elasticsearch\"\nurl = \"{}\"\ntoken_file = \"{}\"\n",
        r.0.url(),
        key.display()
    );
    every_event_arrives_once(db, &config, &mut r);
    // The batch whose answer was lost came again, and was kept once.
    assert!(
        r.0.received().len() > r.received().len(),
        "no batch was sent again"
    );
}

// --- rsyslog ---

/// Debian's rsyslogd with an imtcp listener (over TLS with the test's certificate when
/// given), writing what it parsed of each message, a line each, to a file.
struct Rsyslog {
    dir: PathBuf,
    port: u16,
    tls: bool,
    child: Option<Child>,
}

const RSYSLOG: &str = "/usr/sbin/rsyslogd";

/// Whether rsyslog is here; a printed skip outside CI, a failure in it.
fn have_rsyslog(test: &str) -> bool {
    if Path::new(RSYSLOG).exists() {
        return true;
    }
    cordon_testkit::skip(
        test,
        &format!("no {RSYSLOG} (apt-get install rsyslog rsyslog-gnutls; `cargo xtask setup` does)"),
    );
    false
}

impl Rsyslog {
    fn new(dir: &Path, tls: bool) -> Self {
        let port = free_port();
        let mut config = format!("global(workDirectory=\"{}\"", dir.display());
        if tls {
            config.push_str(&format!(
                " DefaultNetstreamDriver=\"gtls\" DefaultNetstreamDriverCAFile=\"{0}/ca.pem\" \
                 DefaultNetstreamDriverCertFile=\"{0}/server.pem\" DefaultNetstreamDriverKeyFile=\"{0}/server.key\"",
                dir.display()
            ));
        }
        config.push_str(")\n");
        if tls {
            config.push_str(
                "module(load=\"imtcp\" StreamDriver.Name=\"gtls\" StreamDriver.Mode=\"1\" StreamDriver.AuthMode=\"anon\")\n",
            );
        } else {
            config.push_str("module(load=\"imtcp\")\n");
        }
        config.push_str(&format!(
            "input(type=\"imtcp\" port=\"{port}\")\n\
             template(name=\"parsed\" type=\"list\") {{\n\
               property(name=\"protocol-version\") constant(value=\"|\")\n\
               property(name=\"hostname\") constant(value=\"|\")\n\
               property(name=\"app-name\") constant(value=\"|\")\n\
               property(name=\"procid\") constant(value=\"|\")\n\
               property(name=\"msgid\") constant(value=\"|\")\n\
               property(name=\"syslogfacility-text\") constant(value=\"|\")\n\
               property(name=\"syslogseverity-text\") constant(value=\"|\")\n\
               property(name=\"structured-data\") constant(value=\"|\")\n\
               property(name=\"msg\" droplastlf=\"on\") constant(value=\"\\n\")\n\
             }}\n\
             action(type=\"omfile\" file=\"{}/received.log\" template=\"parsed\")\n",
            dir.display()
        ));
        std::fs::write(dir.join("rsyslog.conf"), config).expect("config");
        let mut r = Self {
            dir: dir.to_path_buf(),
            port,
            tls,
            child: None,
        };
        r.start();
        r
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("received.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Receiver for Rsyslog {
    fn start(&mut self) {
        let child = Command::new(RSYSLOG)
            .arg("-n")
            .arg("-f")
            .arg(self.dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(self.dir.join("rsyslog.pid"))
            .stdin(Stdio::null())
            // Its complaints about connections closed without a TLS close (the readiness
            // probe's, a stopped collector's) are for its log, not the test's.
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.join("rsyslogd.log"))
                    .expect("log"),
            ))
            .spawn()
            .expect("rsyslogd starts");
        self.child = Some(child);
        wait_until("rsyslogd to listen", WAIT, || {
            TcpStream::connect(("127.0.0.1", self.port)).ok()
        });
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = child.wait();
        }
    }

    fn received(&self) -> Vec<u64> {
        let expected_format = if self.tls { "cef" } else { "json" };
        self.lines()
            .iter()
            .map(|line| {
                let f: Vec<&str> = line.splitn(9, '|').collect();
                assert_eq!(f.len(), 9, "{line}");
                assert_eq!(
                    (f[0], f[1], f[2], f[3], f[4], f[5], f[6]),
                    (
                        "1",
                        "web-1",
                        "cordon",
                        "7",
                        "file_denied",
                        "auth",
                        "warning"
                    ),
                    "RFC 5424's fields as rsyslog parsed them: {line}"
                );
                assert!(
                    f[7].starts_with("[cordon@32473 id=\"019abc00-")
                        && f[7].contains("sandbox=\"agent-1-0\"")
                        && f[7].contains("severity=\"medium\""),
                    "{line}"
                );
                let msg = f[8].trim();
                if expected_format == "json" {
                    let e: Value = serde_json::from_str(msg).expect("the JSON message");
                    assert_eq!(e["host"], "web-1", "{msg}");
                    number_in(e["path"].as_str().expect("path"))[0]
                } else {
                    assert!(
                        msg.starts_with("CEF:0|Cordon|Cordon|")
                            && msg.contains("|file_denied|File access denied|5|")
                            && msg.contains("dvchost=web-1")
                            && msg.contains("act=blocked")
                            && msg.contains("cs1=agent-1-0"),
                        "{msg}"
                    );
                    let path = msg.split("filePath=").nth(1).expect("filePath");
                    number_in(path)[0]
                }
            })
            .collect()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.stop();
    }
}

on_both_stores!(rsyslog_over_tcp_gets_each_event_once);
fn rsyslog_over_tcp_gets_each_event_once(db: Db) {
    if !require_root("rsyslog_over_tcp") || !have_rsyslog("rsyslog_over_tcp") {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let mut r = Rsyslog::new(dir.path(), false);
    let config = format!("type = \"syslog\"\naddress = \"127.0.0.1:{}\"\n", r.port);
    every_event_arrives_once(db, &config, &mut r);
}

/// A CA, and a certificate for `localhost` it signed.
fn certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"],
            &key[..],
            &[
                "-days",
                "1",
                "-subj",
                "/CN=cordon test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"],
            &key[..],
            &[
                "-subj",
                "/CN=localhost",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
}

on_both_stores!(rsyslog_over_tls_gets_each_event_once_as_cef);
fn rsyslog_over_tls_gets_each_event_once_as_cef(db: Db) {
    if !require_root("rsyslog_over_tls") || !have_rsyslog("rsyslog_over_tls") {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    certificates(dir.path());
    let mut r = Rsyslog::new(dir.path(), true);
    let config = format!(
        "type = \"syslog\"\naddress = \"127.0.0.1:{}\"\ntls = true\nserver_name = \"localhost\"\nca_file = \"{}/ca.pem\"\nformat = \"cef\"\n",
        r.port,
        dir.path().display()
    );
    every_event_arrives_once(db, &config, &mut r);
}

#[test]
fn a_syslog_output_refuses_a_server_its_ca_did_not_sign() {
    if !require_root("a_syslog_output_refuses_a_server_its_ca_did_not_sign")
        || !have_rsyslog("a_syslog_output_refuses_a_server_its_ca_did_not_sign")
    {
        return;
    }
    let server = tempfile::tempdir().expect("dir");
    certificates(server.path());
    let other = tempfile::tempdir().expect("dir");
    certificates(other.path());
    let r = Rsyslog::new(server.path(), true);
    let c = Collector::start(
        Db::Sqlite,
        &format!(
            "[[output]]\nname = \"out\"\ntype = \"syslog\"\naddress = \"127.0.0.1:{}\"\ntls = true\nserver_name = \"localhost\"\nca_file = \"{}/ca.pem\"\n",
            r.port,
            other.path().display()
        ),
    );
    let host = c.token("web-1", "host", Some("web-1"));
    let viewer = c.token("alice", "viewer", None);
    wait_until("the output to read its cursor", WAIT, || {
        (!output_state(&c, &viewer)["cursor"].is_null()).then_some(())
    });
    let (status, _) = c.post_raw(
        Some(&host),
        "/api/v1/events",
        &batch("web-1", &[event(1)]),
        false,
    );
    assert_eq!(status, 200);
    let state = wait_until("the output to fail", WAIT, || {
        let s = output_state(&c, &viewer);
        s["last_error"]["message"].as_str().map(str::to_string)
    });
    assert!(
        state.contains("TLS") && state.contains("invalid peer certificate"),
        "{state}"
    );
    assert!(r.lines().is_empty(), "{:?}", r.lines());
}

// --- OTLP ---

/// An OTLP/HTTP logs receiver in Python, decoding with the OpenTelemetry project's own
/// protobuf messages, writing each request as JSON (proto field names) to a file.
const OTLP_RECEIVER: &str = r#"
import json, sys
from http.server import HTTPServer, BaseHTTPRequestHandler
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest, ExportLogsServiceResponse)

port, out = int(sys.argv[1]), sys.argv[2]

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, status, body, kind):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path != "/v1/logs" or self.headers["Content-Type"] != "application/x-protobuf":
            return self.answer(400, b"not OTLP/HTTP protobuf logs", "text/plain")
        request = ExportLogsServiceRequest()
        request.ParseFromString(body)
        with open(out, "a") as f:
            f.write(json.dumps(MessageToDict(request, preserving_proto_field_name=True)) + "\n")
        self.answer(200, ExportLogsServiceResponse().SerializeToString(), "application/x-protobuf")

    def log_message(self, *args):
        pass

HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"#;

struct OtlpReceiver {
    python: PathBuf,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

/// The tests' Python with `opentelemetry-proto` (`cargo xtask setup` makes it).
fn test_python(test: &str) -> Option<PathBuf> {
    let python = common::cordon_bin()
        .parent()
        .and_then(Path::parent)
        .map(|target| target.join("test-python/bin/python3"))
        .filter(|p| p.exists());
    if python.is_none() {
        cordon_testkit::skip(
            test,
            "no target/test-python with opentelemetry-proto (`cargo xtask setup` makes it)",
        );
    }
    python
}

impl OtlpReceiver {
    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("otlp.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a decoded request"))
            .collect()
    }
}

impl Receiver for OtlpReceiver {
    fn start(&mut self) {
        std::fs::write(self.dir.join("receiver.py"), OTLP_RECEIVER).expect("script");
        let child = Command::new(&self.python)
            .arg(self.dir.join("receiver.py"))
            .arg(self.port.to_string())
            .arg(self.dir.join("otlp.jsonl"))
            .spawn()
            .expect("python starts");
        self.child = Some(child);
        wait_until("the OTLP receiver to listen", WAIT, || {
            TcpStream::connect(("127.0.0.1", self.port)).ok()
        });
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn received(&self) -> Vec<u64> {
        let mut numbers = Vec::new();
        for request in self.requests() {
            for resource in request["resource_logs"].as_array().expect("resource_logs") {
                let of_resource = attributes(&resource["resource"]["attributes"]);
                assert_eq!(
                    of_resource["service.name"],
                    json!({"string_value": "cordon"})
                );
                assert_eq!(of_resource["host.name"], json!({"string_value": "web-1"}));
                for scope in resource["scope_logs"].as_array().expect("scope_logs") {
                    assert_eq!(scope["scope"]["name"], "cordon-collector");
                    for record in scope["log_records"].as_array().expect("log_records") {
                        let a = attributes(&record["attributes"]);
                        let time: u64 = record["time_unix_nano"]
                            .as_str()
                            .and_then(|t| t.parse().ok())
                            .expect("time_unix_nano");
                        assert!(time > 1_700_000_000_000_000_000, "{record}");
                        assert_eq!(
                            record["severity_number"], "SEVERITY_NUMBER_WARN",
                            "{record}"
                        );
                        assert_eq!(record["severity_text"], "medium", "{record}");
                        assert_eq!(record["event_name"], "cordon.file_denied", "{record}");
                        assert!(
                            record["body"]["string_value"]
                                .as_str()
                                .is_some_and(|b| b.starts_with("cat (pid 7)")),
                            "{record}"
                        );
                        assert!(a["log.record.uid"]["string_value"].is_string(), "{record}");
                        assert_eq!(a["process.pid"], json!({"int_value": "7"}), "{record}");
                        assert_eq!(
                            a["process.executable.name"],
                            json!({"string_value": "cat"}),
                            "{record}"
                        );
                        assert_eq!(
                            a["cordon.sandbox"],
                            json!({"string_value": "agent-1-0"}),
                            "{record}"
                        );
                        let path = a["file.path"]["string_value"].as_str().expect("file.path");
                        numbers.extend(number_in(path));
                    }
                }
            }
        }
        numbers
    }
}

/// OTLP's attribute list as a map of key to value.
fn attributes(list: &Value) -> serde_json::Map<String, Value> {
    list.as_array()
        .expect("attributes")
        .iter()
        .map(|kv| {
            (
                kv["key"].as_str().expect("key").to_string(),
                kv["value"].clone(),
            )
        })
        .collect()
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.stop();
    }
}

on_both_stores!(an_otlp_receiver_decodes_each_event_once);
fn an_otlp_receiver_decodes_each_event_once(db: Db) {
    let Some(python) = test_python("an_otlp_receiver_decodes_each_event_once") else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let mut r = OtlpReceiver {
        python,
        dir: dir.path().to_path_buf(),
        port: free_port(),
        child: None,
    };
    r.start();
    let config = format!("type = \"otlp\"\nurl = \"http://127.0.0.1:{}\"\n", r.port);
    every_event_arrives_once(db, &config, &mut r);
}

#[test]
fn a_mistake_in_an_output_stops_the_collector_with_its_line() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        "[[output]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\nsecret_file = \"missing\"\n",
    )
    .expect("config");
    let out = Command::new(common::collector::collector_bin())
        .arg("--config")
        .arg(&config)
        .arg("check")
        .output()
        .expect("cordon-collector runs");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        said.contains(&format!(
            "{}:5:15: cannot read the secret file missing",
            config.display()
        )),
        "{said}"
    );
}
