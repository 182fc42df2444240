//! `outputs`: the latency each output adds. The collector (SQLite, as shipped) takes 10 000
//! events a second (a batch of 100 every 10 ms, for 10 s) with one output configured, run
//! by run for each type, sending to a receiver of this benchmark's own on loopback that
//! answers at once (HTTP for the webhook, Slack, OTLP, HEC and `_bulk`; TCP for syslog).
//! (Slack's output sends 100 events a message here rather than its default 20: a Slack
//! channel is for the few alerts people read, and Slack takes about one message a second.)
//! Measured per batch: from the collector's answer to the host (stored) to the last of the
//! batch's events at the receiver. What the receiver does with them (a SIEM's own
//! indexing) is not included.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use cordon_testkit::http::{HttpStandIn, Request};

use super::chart::{Chart, Group};
use super::collector::{start_with, token};
use super::{percentile, Report};

const PER_BATCH: usize = 100;
const INTERVAL: Duration = Duration::from_millis(10);
const SECONDS: usize = 10;

/// When each batch's events arrived at the receiver: batch number to (count, last arrival).
type Arrivals = Arc<Mutex<HashMap<u64, (usize, Instant)>>>;

pub fn run(collector: &Path) -> Result<Report> {
    let mut json = serde_json::Map::new();
    let mut bars = Vec::new();
    for kind in [
        "webhook",
        "slack",
        "syslog",
        "otlp",
        "splunk_hec",
        "elasticsearch",
    ] {
        let dir = super::scratch("outputs")?;
        let arrivals: Arrivals = Arc::default();
        let receiver = Receiver::start(kind, &arrivals)?;
        let port = receiver.port();
        std::fs::write(dir.path().join("secret"), "bench")?;
        let url = format!("http://127.0.0.1:{port}");
        let settings = match kind {
            "webhook" => format!("url = \"{url}/hook\"\nsecret_file = \"secret\""),
            // Slack's default of 20 events a message is for the few alerts people read:
            // 100 here, an ingest batch.
            "slack" => format!(
                "url = \"{url}/services/x\"\nconsole_url = \"https://console.example\"\nbatch_max = 100"
            ),
            "syslog" => format!("address = \"127.0.0.1:{port}\""),
            "splunk_hec" => format!("url = \"{url}\"\ntoken_file = \"secret\""),
            _ => format!("url = \"{url}\""),
        };
        let database = format!("sqlite://{}/collector.db", dir.path().display());
        let server = start_with(
            collector,
            dir.path(),
            &database,
            &format!("[[output]]\nname = \"bench\"\ntype = \"{kind}\"\n{settings}\n"),
            Stdio::inherit(),
        )?;
        let host = token(
            collector,
            server.config(),
            &["--name", "bench-1", "--role", "host", "--host", "bench-1"],
        )?;
        // The output reads its cursor (the newest event) at start: let it.
        std::thread::sleep(Duration::from_millis(500));
        let batches = (SECONDS * 1000 / INTERVAL.as_millis() as usize) as u64;
        let mut acked = HashMap::new();
        let start = Instant::now();
        for b in 0..batches {
            let due = start + INTERVAL * b as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let body = batch(b);
            let answer = ureq::post(&format!("{}/api/v1/events", server.url()))
                .set("Authorization", &format!("Bearer {host}"))
                .set("Content-Type", "application/json")
                .send_bytes(body.as_bytes());
            if let Err(e) = answer {
                bail!("{kind}: batch {b}: {e}");
            }
            acked.insert(b, Instant::now());
        }
        let rate = (batches as usize * PER_BATCH) as f64 / start.elapsed().as_secs_f64();
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let done = arrivals
                .lock()
                .map_or(0, |a| a.values().filter(|(n, _)| *n >= PER_BATCH).count());
            if done as u64 >= batches {
                break;
            }
            if Instant::now() > until {
                bail!("{kind}: only {done} of {batches} batches arrived within a minute");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(server);
        drop(receiver);
        let arrivals = arrivals.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        let mut samples: Vec<f64> = acked
            .iter()
            .filter_map(|(b, acked)| {
                let (_, last) = arrivals.get(b)?;
                Some(last.saturating_duration_since(*acked).as_secs_f64() * 1e3)
            })
            .collect();
        samples.sort_by(f64::total_cmp);
        let (median, p90, p99) = (
            percentile(&samples, 0.5),
            percentile(&samples, 0.9),
            percentile(&samples, 0.99),
        );
        println!(
            "{kind:>13}: {rate:.0} events/s, stored to at the receiver: median {median:.2} ms, p90 {p90:.2} ms, p99 {p99:.2} ms"
        );
        json.insert(
            kind.into(),
            serde_json::json!({ "events_per_second": rate, "added_ms": { "median": median, "p90": p90, "p99": p99 } }),
        );
        bars.push((kind, median, p90, p99));
    }
    Ok(Report {
        json: serde_json::Value::Object(json),
        chart: Some(Chart {
            title: "Outputs: stored to at the receiver, 10 000 events/s".into(),
            unit: "ms".into(),
            groups: bars
                .into_iter()
                .map(|(kind, median, p90, p99)| Group {
                    label: kind.into(),
                    bars: vec![
                        ("median".into(), median),
                        ("p90".into(), p90),
                        ("p99".into(), p99),
                    ],
                })
                .collect(),
        }),
    })
}

/// Batch `b`: its events' paths say which batch they are of (`/bench/b<N>/e<I>`).
fn batch(b: u64) -> String {
    let time = humantime::format_rfc3339_micros(std::time::SystemTime::now());
    let events: Vec<String> = (0..PER_BATCH)
        .map(|i| {
            format!(
                "{{\"v\":1,\"id\":\"{:08x}-0000-7000-8000-{:012x}\",\"time\":\"{time}\",\"sandbox\":\"agent-1-0\",\"profile\":\"agent\",\"process\":{{\"pid\":7,\"ppid\":1,\"comm\":\"cat\",\"uid\":1000}},\"kind\":\"file_denied\",\"path\":\"/bench/b{b}/e{i}\",\"access\":\"fs.read_file\"}}",
                b, i
            )
        })
        .collect();
    format!(
        "{{\"v\":1,\"host\":\"bench-1\",\"events\":[{}]}}",
        events.join(",")
    )
}

/// Counts the events of each batch in what arrived (`/bench/b<N>/` markers).
fn count(arrivals: &Arrivals, data: &[u8]) {
    let now = Instant::now();
    let text = String::from_utf8_lossy(data);
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for (i, _) in text.match_indices("/bench/b") {
        let digits: String = text[i + 8..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if let Ok(b) = digits.parse() {
            *seen.entry(b).or_default() += 1;
        }
    }
    if let Ok(mut a) = arrivals.lock() {
        for (b, n) in seen {
            let entry = a.entry(b).or_insert((0, now));
            entry.0 += n;
            entry.1 = now;
        }
    }
}

/// The receiver of one output type: HTTP for all but syslog, answered at once as the real
/// receiver would; octet-counted frames over TCP for syslog.
enum Receiver {
    Http(HttpStandIn),
    Syslog {
        port: u16,
        stop: Arc<AtomicBool>,
        thread: Option<std::thread::JoinHandle<()>>,
    },
}

impl Receiver {
    fn start(kind: &'static str, arrivals: &Arrivals) -> Result<Self> {
        let arrivals = Arc::clone(arrivals);
        if kind != "syslog" {
            let reply = match kind {
                "splunk_hec" => r#"{"text":"Success","code":0}"#,
                "elasticsearch" => r#"{"took":1,"errors":false,"items":[]}"#,
                "otlp" => "",
                _ => "ok",
            };
            let answer = move |request: &Request| {
                count(&arrivals, &request.body);
                (200, reply.to_string())
            };
            return Ok(Self::Http(HttpStandIn::start(Arc::new(answer))?));
        }
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let arrivals = Arc::clone(&arrivals);
                    std::thread::spawn(move || frames(stream, &arrivals));
                }
            })
        };
        Ok(Self::Syslog {
            port,
            stop,
            thread: Some(thread),
        })
    }

    fn port(&self) -> u16 {
        match self {
            Self::Http(server) => server.port(),
            Self::Syslog { port, .. } => *port,
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Self::Syslog { port, stop, thread } = self {
            stop.store(true, Ordering::Relaxed);
            // Wakes the accept loop to see it.
            let _ = TcpStream::connect(("127.0.0.1", *port));
            if let Some(t) = thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// Octet-counted syslog frames.
fn frames(stream: TcpStream, arrivals: &Arrivals) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    loop {
        let mut length = Vec::new();
        if reader.read_until(b' ', &mut length)? == 0 {
            return Ok(());
        }
        let n: usize = String::from_utf8_lossy(&length).trim().parse().unwrap_or(0);
        let mut frame = vec![0; n];
        reader.read_exact(&mut frame)?;
        count(arrivals, &frame);
    }
}
