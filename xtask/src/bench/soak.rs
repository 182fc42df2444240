//! `cargo xtask bench --only soak`: the collector (SQLite) taking a fleet's events while it
//! is attacked, beside the same ingest in quiet.
//!
//! * quiet: 100 hosts, each with a host token of its own, post gzip batches of 500 distinct
//!   events from 8 client threads, `CORDON_BENCH_SOAK_EVENTS` events in all (default 200000):
//!   events per second, p50/p99 of one batch's POST (answer read; a 503 is sent again after
//!   250 ms, as cordond would, and counted);
//! * under attack: the same ingest, on a collector of its own, while
//!   - 1000 connections send half a request header and then nothing (slowloris), from
//!     127.0.0.2 to 127.0.0.40 so that the per-client cap does not turn them all away; those
//!     the collector closes (`header_timeout`) are opened again, within a budget;
//!   - 500 live streams (`GET /api/v1/stream`) from 127.0.0.41 to 127.0.0.60: 450 read and
//!     drop what arrives (opened again when the collector ends them, by closing the
//!     connection or ending the answer), 50 never read past the headers;
//!   - 5 more hosts post hostile batches back to back: an event of an unknown kind among good
//!     ones, a 1 MiB path, a process named NUL, malformed JSON, a gzip bomb; each answer is
//!     held against the one the collector is meant to give.
//!
//! Both collectors are configured with room for the attack (`max_connections = 2000`, 600
//! streams, for one token too), so that it is admitted and what it costs is measured; what
//! the collector still refused is read from its `/metrics`. Everything stays on loopback; every
//! socket has timeouts, every loop a count, a budget, or the end of the ingest (and an hour at
//! most). The attackers are threads of this process, on the same cores as the collector and the
//! honest clients: the collector's own CPU share is reported beside the rates.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::ops::RangeInclusive;
use std::os::fd::AsRawFd as _;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn};
use nix::sys::time::{TimeVal, TimeValLike as _};

use super::chart::{Chart, Group};
use super::collector::{self, Server, BATCH, CLIENTS, HOSTS};
use super::{cpu_ticks, percentile, proc_field, ticks_per_second, Report};

/// Events of each run, unless `CORDON_BENCH_SOAK_EVENTS` says otherwise.
const EVENTS: usize = 200_000;
/// Room for the attack in both collectors' config.
const LIMITS: &str = "max_connections = 2000\nmax_streams = 600\nmax_streams_per_token = 600\n";

/// Idle connections held at once, from these last octets of 127.0.0.x.
const IDLE: usize = 1000;
const IDLE_FROM: RangeInclusive<u8> = 2..=40;
/// Connections the idle attackers may open in all, first ones included.
const IDLE_BUDGET: usize = 50 * IDLE;
/// What an idle connection sends: a request whose headers never end.
const HALF_REQUEST: &[u8] =
    b"POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n";

/// Live streams, the first `SLOW_STREAMS` of them never read; from 127.0.0.x, x in `STREAMS_FROM`.
const STREAMS: usize = 500;
const SLOW_STREAMS: usize = 50;
const STREAMS_FROM: RangeInclusive<u8> = 41..=60;
/// Times a reading stream is opened again after the collector ended it (or turned it away).
const STREAM_REOPENS: usize = 20;

/// How long a socket may wait to connect, to send, or for an answer's headers.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the attack may take to be in place before the ingest starts anyway.
const SETTLE: Duration = Duration::from_secs(60);
/// The longest the attack runs, whatever happens to the ingest.
const ATTACK_LIMIT: Duration = Duration::from_secs(3600);

pub fn run(collector: &Path) -> Result<Report> {
    let events: usize = std::env::var("CORDON_BENCH_SOAK_EVENTS")
        .ok()
        .map(|v| v.parse())
        .transpose()
        .context("CORDON_BENCH_SOAK_EVENTS: a number of events")?
        .unwrap_or(EVENTS);
    let dir = super::scratch("soak")?;
    println!(
        "soak (SQLite): {HOSTS} hosts, batches of {BATCH}, {CLIENTS} client threads, {events} events a run"
    );
    let started = Instant::now();
    let quiet = measure(collector, &dir.path().join("quiet"), events, false)?;
    let attacked = measure(collector, &dir.path().join("attack"), events, true)?;
    let attack = attacked
        .attack
        .as_ref()
        .context("the attacked run has no attack")?;
    print(&quiet, &attacked, attack);
    println!("  took {:.0} s", started.elapsed().as_secs_f64());
    Ok(Report {
        json: json(events, &quiet, &attacked, attack),
        chart: Some(Chart {
            title: format!("Collector ingest (SQLite), {HOSTS} hosts, quiet and under attack"),
            unit: "events/s".into(),
            groups: vec![Group {
                label: format!("{events} events"),
                bars: vec![
                    ("quiet".into(), quiet.events_per_s),
                    ("under attack".into(), attacked.events_per_s),
                ],
            }],
        }),
    })
}

/// The table of both runs, then what the attack met.
fn print(quiet: &Measured, attacked: &Measured, attack: &Attacked) {
    println!(
        "\n  {:<14} {:>10} {:>14} {:>14} {:>14} {:>14} {:>12}",
        "run",
        "events/s",
        "p50 batch ms",
        "p99 batch ms",
        "RSS peak MiB",
        "collector CPU",
        "batches 503"
    );
    for (name, r) in [("quiet", quiet), ("under attack", attacked)] {
        println!(
            "  {name:<14} {:>10.0} {:>14.1} {:>14.1} {:>14.1} {:>13.0}% {:>12}",
            r.events_per_s,
            r.p50_ms,
            r.p99_ms,
            r.rss_peak_kib as f64 / 1024.0,
            r.cpu_percent,
            r.busy
        );
    }
    let idle = &attack.idle;
    println!(
        "  idle connections: {} held at the start, {:.0} on average and {} at the fewest during the ingest; {} closed by the collector and opened again, {} refused (503), {} failed to connect; the collector's connections gauge at most {} ({} of its /metrics reads unanswered)",
        attack.idle_ready, attack.gauges.idle_mean, attack.gauges.idle_min, idle.closed, idle.refused, idle.failed,
        attack.gauges.connections_max, attack.gauges.unanswered
    );
    let streams = &attack.streams;
    println!(
        "  streams: {} open at the start ({} reading, {} never reading), the collector's gauge {}..{} during the ingest; {} admitted in all, {} refused, {} not connected and {} not answered within 5 s; {} reading ones ended by the collector ({} with `event: lost`), {} MiB read",
        attack.streams_ready,
        attack.streams_ready.saturating_sub(SLOW_STREAMS),
        SLOW_STREAMS,
        attack.gauges.streams_min,
        attack.gauges.streams_max,
        streams.admitted,
        streams.refused,
        streams.unconnected,
        streams.unanswered,
        streams.ended,
        streams.lost,
        streams.bytes >> 20
    );
    let hostile = &attack.hostile;
    println!(
        "  hostile batches answered: {} ({} not as expected{})",
        hostile
            .answers
            .iter()
            .map(|((kind, status), n)| format!("{kind} {status}: {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        hostile.unexpected,
        hostile
            .first_unexpected
            .as_deref()
            .map(|u| format!("; the first: {u}"))
            .unwrap_or_default()
    );
    println!(
        "  /metrics after the attack: refused {}; events rejected {}",
        counters(&attacked.metrics, "cordon_collector_refused_total"),
        counters(&attacked.metrics, "cordon_collector_events_rejected_total")
    );
    for (name, r) in [("quiet", quiet), ("under attack", attacked)] {
        println!(
            "  collector ({name}): RSS {:.1} MiB once it ended; stderr {} lines, {} of them events set aside{}",
            r.rss_end_kib as f64 / 1024.0,
            r.log.lines,
            r.log.set_aside,
            r.log
                .other
                .iter()
                .map(|l| format!("\n    {l}"))
                .collect::<String>()
        );
    }
}

/// The results for `bench/results/soak.json`.
fn json(
    events: usize,
    quiet: &Measured,
    attacked: &Measured,
    attack: &Attacked,
) -> serde_json::Value {
    let idle = &attack.idle;
    let streams = &attack.streams;
    let hostile = &attack.hostile;
    let json_of = |r: &Measured| {
        serde_json::json!({
            "events": events, "seconds": r.seconds, "events_per_s": r.events_per_s,
            "batch_ms": { "p50": r.p50_ms, "p99": r.p99_ms }, "busy_503": r.busy, "collector_cpu_percent": r.cpu_percent,
            "rss_peak_kib": r.rss_peak_kib, "rss_end_kib": r.rss_end_kib,
            "stderr_lines": r.log.lines,
        })
    };
    serde_json::json!({
        "store": "sqlite", "hosts": HOSTS, "batch": BATCH, "clients": CLIENTS,
        "quiet": json_of(quiet),
        "under_attack": json_of(attacked),
        "attack": {
            "idle": { "wanted": IDLE, "held_at_start": attack.idle_ready,
                "held_mean": attack.gauges.idle_mean, "held_min": attack.gauges.idle_min,
                "collector_connections_max": attack.gauges.connections_max,
                "opened": idle.opened, "closed_by_collector": idle.closed,
                "refused": idle.refused, "failed": idle.failed },
            "streams": { "wanted": STREAMS, "slow": SLOW_STREAMS, "open_at_start": attack.streams_ready,
                "gauge_min": attack.gauges.streams_min, "gauge_max": attack.gauges.streams_max,
                "admitted": streams.admitted, "refused": streams.refused,
                "unconnected": streams.unconnected, "unanswered": streams.unanswered,
                "ended_by_collector": streams.ended, "lost": streams.lost, "bytes_read": streams.bytes },
            "hostile": {
                "answers": hostile.answers.iter()
                    .map(|((kind, status), n)| serde_json::json!({ "kind": kind, "status": status, "count": n }))
                    .collect::<Vec<_>>(),
                "unexpected": hostile.unexpected,
            },
            "refused_total": by_reason(&attacked.metrics, "cordon_collector_refused_total"),
            "events_rejected_total": by_reason(&attacked.metrics, "cordon_collector_events_rejected_total"),
        },
    })
}

/// One run's numbers.
struct Measured {
    seconds: f64,
    events_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// POSTs of honest batches answered 503 and sent again.
    busy: usize,
    /// The collector's CPU while the ingest ran, in percent of one core.
    cpu_percent: f64,
    rss_peak_kib: u64,
    /// Once the ingest (and the attack) ended.
    rss_end_kib: u64,
    /// The collector's `/metrics` once the ingest (and the attack) ended.
    metrics: String,
    log: Log,
    attack: Option<Attacked>,
}

/// Starts a collector in `dir`, then ingests `events`, attacked or not.
fn measure(collector_bin: &Path, dir: &Path, events: usize, attack: bool) -> Result<Measured> {
    std::fs::create_dir_all(dir)?;
    let log = dir.join("collector.log");
    let server = collector::start_with(
        collector_bin,
        dir,
        &format!("sqlite://{}/collector.db", dir.display()),
        LIMITS,
        Stdio::from(File::create(&log)?),
    )?;
    let tokens = collector::host_tokens(collector_bin, &server)?;
    let viewer = collector::token(
        collector_bin,
        server.config(),
        &["--name", "soak", "--role", "viewer"],
    )?;
    let attack = if attack {
        Some(Attack::start(collector_bin, &server, &viewer)?)
    } else {
        None
    };
    let ticks = cpu_ticks(server.child.id());
    let ingested = collector::ingest_timed(&server, &tokens, 0, events, false)?;
    let cpu_percent =
        (cpu_ticks(server.child.id()) - ticks) as f64 / ticks_per_second() / ingested.seconds
            * 100.0;
    let attack = attack.map(Attack::stop).transpose()?;
    let metrics = ureq::get(&format!("{}/metrics", server.url()))
        .set("Authorization", &format!("Bearer {viewer}"))
        .timeout(SOCKET_TIMEOUT)
        .call()
        .map_err(|e| anyhow::anyhow!("/metrics: {e}"))?
        .into_string()?;
    let rss_peak_kib = proc_field(server.child.id(), "VmHWM:");
    let rss_end_kib = proc_field(server.child.id(), "VmRSS:");
    drop(server);
    let events_per_s = events as f64 / ingested.seconds;
    println!(
        "  {}: {events} events in {:.1} s: {events_per_s:.0} events/s",
        if attack.is_some() {
            "under attack"
        } else {
            "quiet"
        },
        ingested.seconds
    );
    Ok(Measured {
        seconds: ingested.seconds,
        events_per_s,
        p50_ms: percentile(&ingested.batch_ms, 0.5),
        p99_ms: percentile(&ingested.batch_ms, 0.99),
        busy: ingested.busy,
        cpu_percent,
        rss_peak_kib,
        rss_end_kib,
        metrics,
        log: Log::read(&log)?,
        attack,
    })
}

/// The attack, running: threads that stop when it is stopped or dropped.
struct Attack {
    stop: Stop,
    idle: JoinHandle<Idle>,
    readers: Vec<JoinHandle<()>>,
    streams: Arc<StreamCount>,
    /// The streams that never read past their headers, held open.
    slow: Vec<TcpStream>,
    hostile: JoinHandle<Result<Hostile>>,
    sampler: JoinHandle<Gauges>,
    idle_ready: usize,
    streams_ready: usize,
}

/// What the attack met.
struct Attacked {
    idle: Idle,
    idle_ready: usize,
    streams: StreamTotals,
    streams_ready: usize,
    hostile: Hostile,
    gauges: Gauges,
}

/// When the attack's threads end: once told to, or at a deadline in any case.
struct Until {
    stopped: AtomicBool,
    deadline: Instant,
}

impl Until {
    fn ended(&self) -> bool {
        self.stopped.load(Ordering::Relaxed) || Instant::now() >= self.deadline
    }
}

/// Tells the attack's threads to end when dropped: they do on every way out.
struct Stop(Arc<Until>);

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.stopped.store(true, Ordering::Relaxed);
    }
}

impl Attack {
    /// Opens the idle connections and the streams, starts the hostile hosts, and returns
    /// once the connections and streams are in place (or `SETTLE` has passed).
    fn start(collector_bin: &Path, server: &Server, viewer: &str) -> Result<Self> {
        let port = port(server)?;
        let hostile_tokens = (0..Payload::ALL.len())
            .map(|h| {
                let host = format!("hostile-{h}");
                collector::token(
                    collector_bin,
                    server.config(),
                    &["--name", &host, "--role", "host", "--host", &host],
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let bodies = Payload::ALL
            .iter()
            .enumerate()
            .map(|(h, payload)| payload.body(&format!("hostile-{h}")))
            .collect::<Result<Vec<_>>>()?;
        let until = Arc::new(Until {
            stopped: AtomicBool::new(false),
            deadline: Instant::now() + ATTACK_LIMIT,
        });
        let stop = Stop(Arc::clone(&until));
        let held = Arc::new(AtomicUsize::new(0));

        let idle = {
            let (until, held) = (Arc::clone(&until), Arc::clone(&held));
            std::thread::spawn(move || slowloris(port, &until, &held))
        };
        let streams = Arc::new(StreamCount::default());
        let mut slow = Vec::new();
        for i in 0..SLOW_STREAMS {
            // Its status is counted; the stream is kept only when admitted.
            if let Some(stream) = open_stream(stream_source(i), port, viewer, &streams) {
                slow.push(stream);
            }
        }
        let readers = (SLOW_STREAMS..STREAMS)
            .map(|i| {
                let (until, streams, viewer) =
                    (Arc::clone(&until), Arc::clone(&streams), viewer.to_string());
                std::thread::Builder::new()
                    .stack_size(128 << 10)
                    .spawn(move || read_stream(stream_source(i), port, &viewer, &until, &streams))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        let hostile = {
            let until = Arc::clone(&until);
            let url = format!("{}/api/v1/events", server.url());
            std::thread::spawn(move || hostile(&url, &hostile_tokens, &bodies, &until))
        };

        let settle = Instant::now() + SETTLE;
        let placed = || {
            held.load(Ordering::Relaxed) >= IDLE
                && streams.settled.load(Ordering::Relaxed) >= STREAMS - SLOW_STREAMS
        };
        while !placed() && Instant::now() < settle {
            std::thread::sleep(Duration::from_millis(50));
        }
        let idle_ready = held.load(Ordering::Relaxed);
        let streams_ready = slow.len() + streams.reading.load(Ordering::Relaxed);
        println!(
            "  attack in place: {idle_ready} idle connections, {streams_ready} streams, hostile batches flowing"
        );
        let sampler = {
            let (until, held) = (Arc::clone(&until), Arc::clone(&held));
            let url = format!("{}/metrics", server.url());
            let viewer = viewer.to_string();
            std::thread::spawn(move || sample(&url, &viewer, &until, &held))
        };
        Ok(Self {
            stop,
            idle,
            readers,
            streams,
            slow,
            hostile,
            sampler,
            idle_ready,
            streams_ready,
        })
    }

    fn stop(self) -> Result<Attacked> {
        let Self {
            stop,
            idle,
            readers,
            streams,
            slow,
            hostile,
            sampler,
            idle_ready,
            streams_ready,
        } = self;
        drop(stop);
        let joined = |what: &str| anyhow::anyhow!("the {what} thread panicked");
        let gauges = sampler.join().map_err(|_| joined("sampler"))?;
        let idle = idle.join().map_err(|_| joined("idle connections'"))?;
        for reader in readers {
            reader.join().map_err(|_| joined("stream reader"))?;
        }
        drop(slow);
        let hostile = hostile.join().map_err(|_| joined("hostile host"))??;
        Ok(Attacked {
            idle,
            idle_ready,
            streams: streams.totals(),
            streams_ready,
            hostile,
            gauges,
        })
    }
}

/// The collector's port, from its URL.
fn port(server: &Server) -> Result<u16> {
    server
        .url()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("no port in {}", server.url()))
}

/// A TCP connection to the collector's `port` on 127.0.0.1 from the address `from` (all of
/// 127.0.0.0/8 is this machine), so that it counts as that client.
fn connect_from(from: Ipv4Addr, port: u16) -> std::io::Result<TcpStream> {
    let fd = socket::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    socket::bind(
        fd.as_raw_fd(),
        &SockaddrIn::from(SocketAddrV4::new(from, 0)),
    )?;
    // Linux bounds a blocking connect by the send timeout (and then every send).
    let timeout = TimeVal::milliseconds(SOCKET_TIMEOUT.as_millis() as i64);
    socket::setsockopt(&fd, sockopt::SendTimeout, &timeout)?;
    socket::connect(
        fd.as_raw_fd(),
        &SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)),
    )?;
    let stream = TcpStream::from(fd);
    stream.set_read_timeout(Some(SOCKET_TIMEOUT))?;
    Ok(stream)
}

/// What the idle connections met.
#[derive(Debug, Default)]
struct Idle {
    opened: usize,
    /// Answered 503 at once: over a connection cap.
    refused: usize,
    /// Closed by the collector after a while (its `header_timeout`), or answered otherwise.
    closed: usize,
    /// Connects that failed or timed out.
    failed: usize,
}

/// Holds `IDLE` connections that send half a request header and then nothing, spread over
/// `IDLE_FROM`; those closed or refused are opened again, until `stop` or `IDLE_BUDGET`.
/// `held` says how many are open.
fn slowloris(port: u16, stop: &Until, held: &AtomicUsize) -> Idle {
    let sources: Vec<Ipv4Addr> = IDLE_FROM.map(|x| Ipv4Addr::new(127, 0, 0, x)).collect();
    let mut idle = Idle::default();
    let mut open: Vec<TcpStream> = Vec::with_capacity(IDLE);
    let mut answer = [0u8; 256];
    while !stop.ended() {
        while open.len() < IDLE && idle.opened < IDLE_BUDGET {
            let from = sources[idle.opened % sources.len()];
            idle.opened += 1;
            let opened = connect_from(from, port).and_then(|mut s| {
                s.write_all(HALF_REQUEST)?;
                s.set_nonblocking(true)?;
                Ok(s)
            });
            match opened {
                Ok(s) => open.push(s),
                Err(_) => {
                    idle.failed += 1;
                    // Try again on the next round, not at once.
                    break;
                }
            }
        }
        open.retain_mut(|s| match s.read(&mut answer) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => true,
            Ok(n) if answer[..n].starts_with(b"HTTP/1.1 503") => {
                idle.refused += 1;
                false
            }
            _ => {
                idle.closed += 1;
                false
            }
        });
        held.store(open.len(), Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(100));
    }
    idle
}

/// What the streams met, as they go.
#[derive(Debug, Default)]
struct StreamCount {
    /// Answered 200.
    admitted: AtomicUsize,
    /// Answered anything else.
    refused: AtomicUsize,
    /// No connection within `SOCKET_TIMEOUT`.
    unconnected: AtomicUsize,
    /// Connected, but no answer within `SOCKET_TIMEOUT`.
    unanswered: AtomicUsize,
    /// Reading streams the first try of which has been answered (or has failed).
    settled: AtomicUsize,
    /// Reading streams open now.
    reading: AtomicUsize,
    /// Reading streams the collector ended.
    ended: AtomicUsize,
    /// Of those, the ones told `event: lost` (too slow).
    lost: AtomicUsize,
    bytes: AtomicU64,
}

#[derive(Debug)]
struct StreamTotals {
    admitted: usize,
    refused: usize,
    unconnected: usize,
    unanswered: usize,
    ended: usize,
    lost: usize,
    bytes: u64,
}

impl StreamCount {
    fn totals(&self) -> StreamTotals {
        let get = |a: &AtomicUsize| a.load(Ordering::Relaxed);
        StreamTotals {
            admitted: get(&self.admitted),
            refused: get(&self.refused),
            unconnected: get(&self.unconnected),
            unanswered: get(&self.unanswered),
            ended: get(&self.ended),
            lost: get(&self.lost),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }
}

/// The source address of stream `i`, over `STREAMS_FROM`.
fn stream_source(i: usize) -> Ipv4Addr {
    let span = STREAMS_FROM.len();
    Ipv4Addr::new(127, 0, 0, STREAMS_FROM.start() + (i % span) as u8)
}

/// A live stream from `from`, once the collector has answered its headers with 200; its
/// answer counted in `count`.
fn open_stream(from: Ipv4Addr, port: u16, viewer: &str, count: &StreamCount) -> Option<TcpStream> {
    let Ok(mut s) = connect_from(from, port) else {
        count.unconnected.fetch_add(1, Ordering::Relaxed);
        return None;
    };
    let status = (|| -> std::io::Result<u16> {
        write!(
            s,
            "GET /api/v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {viewer}\r\nAccept: text/event-stream\r\n\r\n"
        )?;
        // The status line and headers; what follows them is the stream's to read.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 16 << 10 {
            if s.read(&mut byte)? == 0 {
                return Err(ErrorKind::UnexpectedEof.into());
            }
            head.push(byte[0]);
        }
        Ok(std::str::from_utf8(&head)
            .ok()
            .and_then(|h| h.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0))
    })();
    match status {
        Ok(200) => {
            count.admitted.fetch_add(1, Ordering::Relaxed);
            Some(s)
        }
        Ok(_) => {
            count.refused.fetch_add(1, Ordering::Relaxed);
            None
        }
        Err(_) => {
            count.unanswered.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// The end of a chunked body: the last chunk, empty.
const LAST_CHUNK: &[u8] = b"\r\n0\r\n\r\n";

/// A stream that reads and drops what arrives until `stop`; opened again, up to
/// `STREAM_REOPENS` times, when the collector ends it (closes the connection, or ends the
/// answer) or did not admit it.
fn read_stream(from: Ipv4Addr, port: u16, viewer: &str, stop: &Until, count: &StreamCount) {
    let mut buf = vec![0u8; 64 << 10];
    for attempt in 0..=STREAM_REOPENS {
        let stream = open_stream(from, port, viewer, count);
        if attempt == 0 {
            count.settled.fetch_add(1, Ordering::Relaxed);
        }
        let Some(mut stream) = stream else {
            // Turned away or not answered: again in a while.
            std::thread::sleep(Duration::from_secs(1));
            if stop.ended() {
                return;
            }
            continue;
        };
        if stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .is_err()
        {
            return;
        }
        count.reading.fetch_add(1, Ordering::Relaxed);
        // The last bytes read, to see the chunked body end (the connection may stay open).
        let mut tail = Vec::with_capacity(2 * LAST_CHUNK.len());
        let ended = loop {
            if stop.ended() {
                break false;
            }
            match stream.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => {
                    count.bytes.fetch_add(n as u64, Ordering::Relaxed);
                    if buf[..n].windows(11).any(|w| w == b"event: lost") {
                        count.lost.fetch_add(1, Ordering::Relaxed);
                    }
                    tail.extend_from_slice(&buf[n.saturating_sub(LAST_CHUNK.len())..n]);
                    tail.drain(..tail.len().saturating_sub(LAST_CHUNK.len()));
                    if tail == LAST_CHUNK {
                        break true;
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => break true,
            }
        };
        count.reading.fetch_sub(1, Ordering::Relaxed);
        if !ended {
            return;
        }
        count.ended.fetch_add(1, Ordering::Relaxed);
    }
}

/// A batch made to hurt, and the answer the collector owes it.
#[derive(Debug, Clone, Copy)]
enum Payload {
    /// Nine good events and one of a kind no schema has: stored, that one set aside.
    UnknownKind,
    /// A 1 MiB path: the event stored with its path cut.
    LongPath,
    /// A process named `\u0000`: text like any, stored.
    NulComm,
    /// Not JSON: 400 `malformed_batch`.
    MalformedJson,
    /// 1 GiB of JSON whitespace in 1 MiB of gzip: 413 `body_too_large`.
    GzipBomb,
}

impl Payload {
    const ALL: [Self; 5] = [
        Self::UnknownKind,
        Self::LongPath,
        Self::NulComm,
        Self::MalformedJson,
        Self::GzipBomb,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::UnknownKind => "unknown kind",
            Self::LongPath => "1 MiB path",
            Self::NulComm => "NUL comm",
            Self::MalformedJson => "malformed JSON",
            Self::GzipBomb => "gzip bomb",
        }
    }

    /// The gzip body, sent by `host`. Made once: sent again, its events are duplicates,
    /// and the answer is the same.
    fn body(self, host: &str) -> Result<Vec<u8>> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let batch = |events: Vec<serde_json::Value>| {
            serde_json::json!({ "v": 1, "host": host, "events": events }).to_string()
        };
        match self {
            Self::UnknownKind => {
                let mut events: Vec<_> = (0..10)
                    .map(|i| event(host, i, "python3", "/etc/shadow"))
                    .collect();
                events[4]["kind"] = "teleport".into();
                gz.write_all(batch(events).as_bytes())?;
            }
            Self::LongPath => {
                let path = format!("/home/dev/{}", "a".repeat(1 << 20));
                gz.write_all(batch(vec![event(host, 0, "python3", &path)]).as_bytes())?;
            }
            // serde_json writes the NUL as the six characters `\u0000`.
            Self::NulComm => {
                gz.write_all(batch(vec![event(host, 0, "\0", "/etc/shadow")]).as_bytes())?
            }
            Self::MalformedJson => {
                write!(
                    gz,
                    "{{\"v\":1,\"host\":\"{host}\",\"events\":[{{\"v\":1,\"id\":"
                )?;
            }
            Self::GzipBomb => {
                write!(gz, "{{\"v\":1,\"host\":\"{host}\",\"events\":[")?;
                let spaces = vec![b' '; 1 << 20];
                for _ in 0..1024 {
                    gz.write_all(&spaces)?;
                }
                gz.write_all(b"]}")?;
            }
        }
        Ok(gz.finish()?)
    }

    /// Whether `status` and `reply` are what the collector is meant to answer.
    fn expected(self, status: u16, reply: &serde_json::Value) -> bool {
        let rejected = reply["rejected"].as_array();
        match self {
            Self::UnknownKind => {
                status == 200
                    && rejected.is_some_and(|r| r.len() == 1 && r[0]["reason"] == "malformed")
            }
            Self::LongPath => status == 200 && reply["truncated"] == 1,
            Self::NulComm => {
                status == 200
                    && rejected.is_some_and(Vec::is_empty)
                    && reply["stored"].as_u64().unwrap_or(0)
                        + reply["duplicates"].as_u64().unwrap_or(0)
                        == 1
            }
            Self::MalformedJson => status == 400 && reply["code"] == "malformed_batch",
            Self::GzipBomb => status == 413 && reply["code"] == "body_too_large",
        }
    }
}

/// A file denial of `host`, the `n`th of its kind, now.
fn event(host: &str, n: u64, comm: &str, path: &str) -> serde_json::Value {
    serde_json::json!({
        "v": 1,
        "id": format!("01900000-0000-7000-8000-{n:012x}"),
        "time": humantime::format_rfc3339_nanos(SystemTime::now()).to_string(),
        "sandbox": format!("{host}-agent"),
        "profile": "agent",
        "process": { "pid": 4242, "ppid": 1, "comm": comm, "exe": "/usr/bin/python3.11", "uid": 1000 },
        "kind": "file_denied",
        "path": path,
        "access": "fs.read_file",
    })
}

/// What the hostile hosts were answered.
#[derive(Debug, Default)]
struct Hostile {
    /// By payload and status (0: no answer).
    answers: BTreeMap<(&'static str, u16), usize>,
    unexpected: usize,
    first_unexpected: Option<String>,
}

/// Posts each hostile batch in turn, each from its own host, until `stop`.
fn hostile(url: &str, tokens: &[String], bodies: &[Vec<u8>], stop: &Until) -> Result<Hostile> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build();
    let mut out = Hostile::default();
    for round in 0.. {
        if stop.ended() {
            break;
        }
        let h = round % Payload::ALL.len();
        let payload = Payload::ALL[h];
        let answer = agent
            .post(url)
            .set("Authorization", &format!("Bearer {}", tokens[h]))
            .set("Content-Type", "application/json")
            .set("Content-Encoding", "gzip")
            .send_bytes(&bodies[h]);
        let (status, text) = match answer {
            Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(status, r)) => (status, r.into_string().unwrap_or_default()),
            Err(ureq::Error::Transport(t)) => (0, t.to_string()),
        };
        *out.answers.entry((payload.name(), status)).or_default() += 1;
        let reply: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if !payload.expected(status, &reply) {
            out.unexpected += 1;
            out.first_unexpected.get_or_insert_with(|| {
                format!(
                    "{}: {status} {}",
                    payload.name(),
                    text.chars().take(200).collect::<String>()
                )
            });
        }
    }
    Ok(out)
}

/// The collector's gauges, and the attack's own, while the ingest ran.
#[derive(Debug, Default)]
struct Gauges {
    idle_min: usize,
    idle_mean: f64,
    /// The collector's `cordon_collector_connections` and `cordon_collector_streams`.
    connections_max: u64,
    streams_min: u64,
    streams_max: u64,
    /// Reads of `/metrics` that got no answer in time.
    unanswered: usize,
}

/// Reads the held idle connections and the collector's `/metrics` twice a second until `stop`.
fn sample(url: &str, viewer: &str, stop: &Until, held: &AtomicUsize) -> Gauges {
    let agent = ureq::AgentBuilder::new().timeout(SOCKET_TIMEOUT).build();
    let mut idle = Vec::new();
    let (mut connections, mut streams) = (Vec::new(), Vec::new());
    let mut unanswered = 0;
    while !stop.ended() {
        idle.push(held.load(Ordering::Relaxed));
        let text = agent
            .get(url)
            .set("Authorization", &format!("Bearer {viewer}"))
            .call()
            .ok()
            .and_then(|r| r.into_string().ok());
        match text {
            Some(text) => {
                let gauge = |name| labelled(&text, name).first().map_or(0, |(_, v)| *v as u64);
                connections.push(gauge("cordon_collector_connections"));
                streams.push(gauge("cordon_collector_streams"));
            }
            None => unanswered += 1,
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Gauges {
        idle_min: idle.iter().copied().min().unwrap_or(0),
        idle_mean: idle.iter().sum::<usize>() as f64 / idle.len().max(1) as f64,
        connections_max: connections.iter().copied().max().unwrap_or(0),
        streams_min: streams.iter().copied().min().unwrap_or(0),
        streams_max: streams.iter().copied().max().unwrap_or(0),
        unanswered,
    }
}

/// The lines of `name` in Prometheus text: each one's labels (`reason="x"`, or empty) and value.
fn labelled(text: &str, name: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (labels, value) = match rest.strip_prefix('{') {
                Some(r) => r.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            Some((labels.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// The counters of `name` by their `reason` label.
fn by_reason(text: &str, name: &str) -> BTreeMap<String, f64> {
    labelled(text, name)
        .into_iter()
        .map(|(labels, v)| {
            let reason = labels
                .strip_prefix("reason=\"")
                .and_then(|l| l.strip_suffix('"'))
                .unwrap_or(&labels);
            (reason.to_string(), v)
        })
        .collect()
}

/// The counters of `name` as `reason count, ...`, the zero ones left out.
fn counters(text: &str, name: &str) -> String {
    let nonzero: Vec<String> = by_reason(text, name)
        .into_iter()
        .filter(|(_, v)| *v > 0.0)
        .map(|(reason, v)| format!("{reason} {v}"))
        .collect();
    if nonzero.is_empty() {
        "none".into()
    } else {
        nonzero.join(", ")
    }
}

/// What the collector wrote to stderr (`RUST_LOG=warn`).
struct Log {
    lines: usize,
    /// Warnings of events set aside (one per event).
    set_aside: usize,
    /// The first few other lines, each once.
    other: Vec<String>,
}

impl Log {
    fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut log = Self {
            lines: 0,
            set_aside: 0,
            other: Vec::new(),
        };
        for line in text.lines() {
            log.lines += 1;
            if line.contains("set aside") {
                log.set_aside += 1;
            } else if log.other.len() < 8 {
                // Timestamps differ; the rest says whether it is the same line again.
                let line: String = line.chars().take(240).collect();
                let shape = line.split_once(' ').map_or(line.as_str(), |(_, r)| r);
                if !log.other.iter().any(|o| o.ends_with(shape)) {
                    log.other.push(line);
                }
            }
        }
        Ok(log)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_read_by_name_and_reason() {
        let text = "# TYPE cordon_collector_refused_total counter\n\
            cordon_collector_refused_total{reason=\"slow_stream\"} 50\n\
            cordon_collector_refused_total{reason=\"connections\"} 0\n\
            cordon_collector_streams 450\n\
            cordon_collector_streams_other 1\n";
        assert_eq!(
            labelled(text, "cordon_collector_streams"),
            [(String::new(), 450.0)]
        );
        assert_eq!(
            by_reason(text, "cordon_collector_refused_total")["slow_stream"],
            50.0
        );
        assert_eq!(
            counters(text, "cordon_collector_refused_total"),
            "slow_stream 50"
        );
        assert_eq!(counters(text, "cordon_collector_absent_total"), "none");
    }

    #[test]
    fn the_nul_comm_is_sent_as_six_characters() {
        let gz = Payload::NulComm.body("hostile-2").unwrap();
        let mut text = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut text)
            .unwrap();
        assert!(text.contains(r#""comm":"\u0000""#), "{text}");
    }
}
