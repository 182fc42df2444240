//! `cargo xtask bench --only collector`: the collector's ingest and queries, on SQLite and on
//! PostgreSQL (a server of the benchmark's own, on loopback).
//!
//! * ingest: 100 simulated hosts, each with a host token of its own, post gzip batches of 500
//!   distinct events from 8 client threads; events per second from the first post to the last
//!   acknowledgment (every event must be reported stored).
//! * query: the store is filled up to `CORDON_BENCH_EVENTS` events (default 10 million; each
//!   host's 10 sandboxes, times spread over the last day), then the last hour of one sandbox is
//!   asked for 50 times (HTTP included); p50 and p99.
//! * footprint: the collector's RSS idle and its peak under load.
//!
//! The batches are made before the clock starts; the client threads that send them share
//! the machine's cores with the collector (and PostgreSQL).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};

use super::{percentile, proc_field};

pub(super) const HOSTS: usize = 100;
const SANDBOXES: usize = 10;
pub(super) const BATCH: usize = 500;
pub(super) const CLIENTS: usize = 8;
/// Events of the throughput run.
const INGEST_EVENTS: usize = 500_000;
/// A batch answered 503 (a connection cap reached) is sent again after `BUSY_PAUSE`, up to
/// `BUSY_TRIES` times.
const BUSY_PAUSE: Duration = Duration::from_millis(250);
const BUSY_TRIES: usize = 40;

pub struct Server {
    pub child: Child,
    url: String,
    config: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    cordon_testkit::free_port().map_err(anyhow::Error::msg)
}

/// A PostgreSQL server of the benchmark's own, durable as shipped (fsync on): the numbers
/// are what a real deployment would see.
fn postgres() -> Result<cordon_testkit::Postgres> {
    cordon_testkit::Postgres::start(&["shared_buffers=1GB"]).map_err(anyhow::Error::msg)
}

impl Server {
    pub fn url(&self) -> &str {
        &self.url
    }

    pub(super) fn config(&self) -> &Path {
        &self.config
    }
}

pub fn start(collector: &Path, dir: &Path, database_url: &str) -> Result<Server> {
    start_with(collector, dir, database_url, "", Stdio::inherit())
}

/// [`start`], with more lines for its config file (`extra`) and its stderr sent to `stderr`.
pub(super) fn start_with(
    collector: &Path,
    dir: &Path,
    database_url: &str,
    extra: &str,
    stderr: Stdio,
) -> Result<Server> {
    let port = free_port()?;
    let config = dir.join("collector.toml");
    std::fs::write(
        &config,
        format!("listen = \"127.0.0.1:{port}\"\ndatabase_url = \"{database_url}\"\nretention = \"7d\"\n{extra}"),
    )?;
    let child = Command::new(collector)
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()?;
    let server = Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
        config,
    };
    let until = Instant::now() + Duration::from_secs(30);
    while ureq::get(&format!("{}/healthz", server.url))
        .call()
        .is_err()
    {
        if Instant::now() > until {
            bail!("the collector did not start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(server)
}

pub(super) fn token(collector: &Path, config: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(collector)
        .arg("--config")
        .arg(config)
        .args(["token", "issue"])
        .args(args)
        .output()?;
    if !out.status.success() {
        bail!("token issue: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

/// A gzip batch of `BATCH` events of `host`, numbered from `first`: times within the last
/// second (as events arrive), or spread over the last day (`spread`, to fill the store for
/// the query). Ids are UUIDv7 of the event's time, as cordond makes them.
fn batch(host: usize, first: u64, now: SystemTime, spread: bool) -> Result<Vec<u8>> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    write!(gz, "{{\"v\":1,\"host\":\"host-{host}\",\"events\":[")?;
    for i in 0..BATCH as u64 {
        let n = first + i;
        let ago = if spread {
            Duration::from_millis((n * 7919) % 86_400_000)
        } else {
            Duration::from_micros((BATCH as u64 - i) * 2)
        };
        let at = now - ago;
        let ms = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let time = humantime::format_rfc3339_nanos(at);
        let sandbox = (n as usize / HOSTS) % SANDBOXES;
        if i > 0 {
            gz.write_all(b",")?;
        }
        write!(
            gz,
            "{{\"v\":1,\"id\":\"{:08x}-{:04x}-7000-8000-{:012x}\",\"time\":\"{time}\",\"sandbox\":\"agent-{host}-{sandbox}\",\"profile\":\"agent\",\"process\":{{\"pid\":{},\"ppid\":1,\"comm\":\"python3\",\"exe\":\"/usr/bin/python3.11\",\"uid\":1000}},\"kind\":\"file_denied\",\"path\":\"/home/dev/.ssh/id_{n}\",\"access\":\"fs.read_file\"}}",
            ms >> 16,
            ms & 0xffff,
            n & 0xffff_ffff_ffff,
            1000 + sandbox
        )?;
    }
    gz.write_all(b"]}")?;
    Ok(gz.finish()?)
}

/// Posts `total` events (from event number `offset`) from `CLIENTS` threads (a batch answered
/// 503, a connection cap reached, is sent again after `BUSY_PAUSE`); returns the
/// seconds it took.
pub fn ingest(
    server: &Server,
    tokens: &Arc<Vec<String>>,
    offset: u64,
    total: usize,
    spread: bool,
) -> Result<f64> {
    Ok(ingest_timed(server, tokens, offset, total, spread)?.seconds)
}

/// What an [`ingest`] took.
pub(super) struct Ingested {
    /// From the first post to the last answer.
    pub seconds: f64,
    /// Each batch's POST, answer read, in milliseconds, sorted (503s and pauses included).
    pub batch_ms: Vec<f64>,
    /// POSTs answered 503 (a connection cap) and sent again.
    pub busy: usize,
}

/// [`ingest`], with the time of each batch's POST.
pub(super) fn ingest_timed(
    server: &Server,
    tokens: &Arc<Vec<String>>,
    offset: u64,
    total: usize,
    spread: bool,
) -> Result<Ingested> {
    let batches = total / BATCH;
    let next = Arc::new(AtomicUsize::new(0));
    let stored = Arc::new(AtomicU64::new(0));
    let busy = Arc::new(AtomicUsize::new(0));
    let now = SystemTime::now();
    // Made before the clock starts: what is timed is the collector, not the making of JSON.
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..batches)
            .map(|b| batch(b % HOSTS, offset + (b * BATCH) as u64, now, spread))
            .collect::<Result<_>>()?,
    );
    let started = Instant::now();
    let mut threads = Vec::new();
    for _ in 0..CLIENTS {
        let (next, stored, tokens) = (Arc::clone(&next), Arc::clone(&stored), Arc::clone(tokens));
        let (bodies, busy) = (Arc::clone(&bodies), Arc::clone(&busy));
        let url = format!("{}/api/v1/events", server.url);
        threads.push(std::thread::spawn(move || -> Result<Vec<f64>> {
            let agent = ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(120))
                .build();
            let mut batch_ms = Vec::new();
            loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                if b >= batches {
                    return Ok(batch_ms);
                }
                let host = b % HOSTS;
                let posted = Instant::now();
                let mut tries = 0;
                let reply = loop {
                    let sent = agent
                        .post(&url)
                        .set("Authorization", &format!("Bearer {}", tokens[host]))
                        .set("Content-Encoding", "gzip")
                        .send_bytes(&bodies[b]);
                    match sent {
                        // Turned away at a connection cap: again later, as cordond does.
                        Err(ureq::Error::Status(503, _)) if tries < BUSY_TRIES => {
                            tries += 1;
                            busy.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(BUSY_PAUSE);
                        }
                        sent => break sent.map_err(|e| anyhow::anyhow!("ingest: {e}"))?,
                    }
                }
                .into_string()?;
                batch_ms.push(posted.elapsed().as_secs_f64() * 1000.0);
                let reply: serde_json::Value = serde_json::from_str(&reply)?;
                stored.fetch_add(reply["stored"].as_u64().unwrap_or(0), Ordering::Relaxed);
            }
        }));
    }
    let mut batch_ms = Vec::with_capacity(batches);
    for t in threads {
        batch_ms.extend(
            t.join()
                .map_err(|_| anyhow::anyhow!("a client panicked"))??,
        );
    }
    let seconds = started.elapsed().as_secs_f64();
    let stored = stored.load(Ordering::Relaxed);
    if stored != (batches * BATCH) as u64 {
        bail!("{stored} of {} events were stored", batches * BATCH);
    }
    batch_ms.sort_by(f64::total_cmp);
    Ok(Ingested {
        seconds,
        batch_ms,
        busy: busy.load(Ordering::Relaxed),
    })
}

/// A host token for each of the `HOSTS` simulated hosts.
pub fn host_tokens(collector: &Path, server: &Server) -> Result<Arc<Vec<String>>> {
    Ok(Arc::new(
        (0..HOSTS)
            .map(|h| {
                let host = format!("host-{h}");
                token(
                    collector,
                    &server.config,
                    &["--name", &host, "--role", "host", "--host", &host],
                )
            })
            .collect::<Result<_>>()?,
    ))
}

fn one_store(
    collector: &Path,
    name: &str,
    database_url: &str,
    dir: &Path,
    fill_to: usize,
) -> Result<serde_json::Value> {
    let server = start(collector, dir, database_url)?;
    let pid = server.child.id();
    let tokens = host_tokens(collector, &server)?;
    let viewer = token(
        collector,
        &server.config,
        &["--name", "bench", "--role", "viewer"],
    )?;
    std::thread::sleep(Duration::from_secs(2));
    let idle_rss = proc_field(pid, "VmRSS:");

    let took = ingest(&server, &tokens, 0, INGEST_EVENTS, false)?;
    let rate = INGEST_EVENTS as f64 / took;
    let peak_rss = proc_field(pid, "VmHWM:");
    println!("  {name}: {INGEST_EVENTS} events from {HOSTS} hosts in {took:.1} s: {rate:.0} events/s; RSS idle {} MiB, peak {} MiB", idle_rss / 1024, peak_rss / 1024);

    // Fill up, in steps, then time the query.
    let mut stored = INGEST_EVENTS;
    let fill_started = Instant::now();
    while stored < fill_to {
        let step = (fill_to - stored).min(1_000_000);
        ingest(&server, &tokens, stored as u64, step, true)?;
        stored += step;
        println!(
            "  {name}: {stored} events stored ({:.0} s)",
            fill_started.elapsed().as_secs_f64()
        );
    }
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build();
    let mut times = Vec::new();
    let mut returned = 0usize;
    for q in 0..50 {
        let host = (q * 37) % HOSTS;
        let sandbox = q % SANDBOXES;
        let url = format!(
            "{}/api/v1/events?host=host-{host}&sandbox=agent-{host}-{sandbox}&since=1h&limit=1000",
            server.url
        );
        let started = Instant::now();
        let page = agent
            .get(&url)
            .set("Authorization", &format!("Bearer {viewer}"))
            .call()
            .map_err(|e| anyhow::anyhow!("query: {e}"))?
            .into_string()?;
        let page: serde_json::Value = serde_json::from_str(&page)?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        returned += page["events"].as_array().map_or(0, Vec::len);
    }
    times.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
    println!(
        "  {name}: the last hour of one sandbox among {stored} events: p50 {p50:.1} ms, p99 {p99:.1} ms ({} events per answer)",
        returned / 50
    );
    Ok(serde_json::json!({
        "store": name,
        "hosts": HOSTS,
        "ingest": { "events": INGEST_EVENTS, "batch": BATCH, "clients": CLIENTS, "seconds": took, "events_per_s": rate },
        "query_last_hour_one_sandbox": { "stored": stored, "p50_ms": p50, "p99_ms": p99, "events_per_answer": returned / 50 },
        "rss_kib": { "idle": idle_rss, "peak": proc_field(pid, "VmHWM:") },
    }))
}

pub fn run(collector: &Path) -> Result<super::Report> {
    let fill_to: usize = std::env::var("CORDON_BENCH_EVENTS")
        .ok()
        .map(|v| v.parse())
        .transpose()
        .context("CORDON_BENCH_EVENTS: a number of events")?
        .unwrap_or(10_000_000);
    let dir = tempfile::Builder::new()
        .prefix("cordon-bench-collector-")
        .tempdir_in("/var/tmp")?;
    println!("collector: {HOSTS} hosts, batches of {BATCH}, {CLIENTS} client threads");
    let sqlite_dir = dir.path().join("sqlite");
    std::fs::create_dir_all(&sqlite_dir)?;
    let sqlite = one_store(
        collector,
        "sqlite",
        &format!("sqlite://{}/collector.db", sqlite_dir.display()),
        &sqlite_dir,
        fill_to,
    )?;
    let pg = postgres()?;
    let pg_dir = dir.path().join("postgres");
    std::fs::create_dir_all(&pg_dir)?;
    let postgres = one_store(collector, "postgres", &pg.url(), &pg_dir, fill_to)?;
    let chart = super::chart::Chart {
        title: "Collector ingest: 100 hosts, gzip batches of 500, 8 clients".into(),
        unit: "events/s".into(),
        groups: vec![super::chart::Group {
            label: format!("{INGEST_EVENTS} events"),
            bars: [&sqlite, &postgres]
                .iter()
                .map(|r| {
                    (
                        r["store"].as_str().unwrap_or("").to_string(),
                        r["ingest"]["events_per_s"].as_f64().unwrap_or(0.0),
                    )
                })
                .collect(),
        }],
    };
    Ok(super::Report {
        json: serde_json::json!([sqlite, postgres]),
        chart: Some(chart),
    })
}
