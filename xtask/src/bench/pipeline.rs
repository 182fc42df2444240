//! `pipeline`: denials from the kernel to the user-space reader, and on to a collector.
//!
//! * kernel: a sandbox making a denied call in a tight loop, then paced at 50k/s, through
//!   `cordon run --events`: events delivered per second and events lost (counted by the
//!   kernel, never silent);
//! * cordond: a sandbox run through cordond makes distinct denied calls (`keyctl(0, i, 0)`,
//!   so no two fold into one burst) at a fixed rate; a collector stand-in on 127.0.0.1 notes
//!   when each event arrives. Reported: events per second end to end, the latency from the
//!   event's kernel time to its arrival (p50, p99), and events missing.
//!
//! The stand-in takes any batch at once, so what is measured is cordond (the real collector's
//! own ingest is the `collector` scenario).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use cordon_testkit::http::{HttpStandIn, Request};

use super::chart::{Chart, Group};
use super::{helper_output, percentile, proc_field, s, Bins, Report};

/// One event at the collector stand-in.
#[derive(Clone)]
struct Arrival {
    /// The event's time (when the kernel saw it).
    made: SystemTime,
    arrived: SystemTime,
    kind: String,
    /// Repeats a burst folds into one event, or events an `events_lost` counts.
    count: u64,
}

/// Every event, by id.
type Arrivals = Arc<Mutex<HashMap<String, Arrival>>>;

/// A collector stand-in that takes cordond's batches and notes each event's kernel time and
/// arrival.
fn collector(arrivals: Arrivals) -> Result<HttpStandIn> {
    let answer = move |request: &Request| {
        let now = SystemTime::now();
        let batch = request
            .decoded_body()
            .and_then(|json| serde_json::from_slice::<serde_json::Value>(&json).ok());
        if let Some(batch) = batch {
            let mut a = arrivals.lock().unwrap_or_else(|e| e.into_inner());
            for e in batch["events"].as_array().into_iter().flatten() {
                let (Some(id), Some(time)) = (e["id"].as_str(), e["time"].as_str()) else {
                    continue;
                };
                if let Ok(made) = humantime_parse(time) {
                    a.entry(id.to_string()).or_insert(Arrival {
                        made,
                        arrived: now,
                        kind: e["kind"].as_str().unwrap_or("").to_string(),
                        count: e["count"].as_u64().unwrap_or(1),
                    });
                }
            }
        }
        (200, "{}".to_string())
    };
    Ok(HttpStandIn::start(Arc::new(answer))?)
}

fn humantime_parse(text: &str) -> Result<SystemTime> {
    Ok(humantime::parse_rfc3339(text)?)
}

/// A cordond of the benchmark's own, stopped when dropped.
pub struct Cordond {
    pub child: Child,
    pub socket: PathBuf,
}

impl Drop for Cordond {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

/// Starts cordond with its config, spool, journal and socket under `dir`, reporting as
/// `host` to `url` (with the bearer token in `token_file`, if any).
pub fn start_cordond(
    bins: &Bins,
    dir: &Path,
    host: &str,
    url: &str,
    token_file: Option<&Path>,
) -> Result<Cordond> {
    let socket = dir.join("cordon.sock");
    let config = dir.join("cordon.toml");
    let token = token_file.map_or(String::new(), |t| {
        format!("token_file = \"{}\"\n", t.display())
    });
    std::fs::write(
        &config,
        format!(
            "host_id = \"{host}\"\n[collector]\nurl = \"{url}\"\n{token}[spool]\ndir = \"{d}/spool\"\n[journal]\npath = \"{d}/events.jsonl\"\n[api]\nsocket = \"{s}\"\n",
            d = dir.display(),
            s = socket.display()
        ),
    )?;
    let child = Command::new(&bins.cordond)
        .arg("--config")
        .arg(&config)
        .stderr(Stdio::null())
        .spawn()
        .context("starting cordond")?;
    let cordond = Cordond { child, socket };
    let until = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&cordond.socket).is_err() {
        if Instant::now() > until {
            bail!("cordond did not open its socket");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(cordond)
}

/// A profile extending `parent` that can run the helper.
pub fn helper_profile(bins: &Bins, dir: &Path, parent: &str) -> Result<PathBuf> {
    let profile = dir.join("bench.toml");
    let h = s(bins.helper.parent().context("helper dir")?);
    std::fs::write(
        &profile,
        format!("[profile]\nname = \"bench\"\nextends = [\"{parent}\"]\n[filesystem]\nread = [\"{h}\"]\nexec = [\"{h}\"]\n"),
    )?;
    Ok(profile)
}

/// Counts `syscall_denied` events (a burst counts its repeats) and the sum of `events_lost`.
fn count(events: &Path) -> Result<(u64, u64)> {
    let text = std::fs::read_to_string(events)?;
    let mut delivered = 0;
    let mut lost = 0;
    for line in text.lines() {
        let e: serde_json::Value = serde_json::from_str(line)?;
        match e["kind"].as_str() {
            Some("syscall_denied") => delivered += e["count"].as_u64().unwrap_or(1),
            Some("events_lost") => lost += e["count"].as_u64().unwrap_or(0),
            _ => {}
        }
    }
    Ok((delivered, lost))
}

pub fn run(bins: &Bins) -> Result<Report> {
    let dir = super::scratch("pipeline")?;
    let profile = helper_profile(bins, dir.path(), "offline-tool")?;
    let mut groups = Vec::new();

    // The kernel to `cordon run`: as fast as the loop goes, then paced at 50k/s.
    let mut kernel = Vec::new();
    println!(
        "  denied calls (unshare(CLONE_NEWUSER) in a loop) read from the kernel by `cordon run`"
    );
    let mut bars = Vec::new();
    for (n, rate) in [(500_000u64, 0u64), (100_000, 50_000)] {
        let events = dir.path().join(format!("events-{rate}.jsonl"));
        let start = Instant::now();
        let loop_ns: f64 = helper_output(
            Command::new(&bins.cordon)
                .args(["run", "--no-daemon", "--quiet", "--profile"])
                .arg(&profile)
                .arg("--events")
                .arg(&events)
                .arg("--")
                .arg(&bins.helper)
                .args(["helper", "deny-loop", &n.to_string(), &rate.to_string()])
                .stdin(Stdio::null()),
        )?
        .parse()?;
        let wall = start.elapsed();
        let (delivered, lost) = count(&events)?;
        let produced_per_s = n as f64 / (loop_ns / 1e9);
        let delivered_per_s = delivered as f64 / (loop_ns / 1e9);
        let pace = if rate == 0 {
            "flat out".to_string()
        } else {
            format!("paced at {rate}/s")
        };
        println!(
            "    {pace}: {n} denials at {produced_per_s:.0}/s; delivered {delivered} ({delivered_per_s:.0}/s), lost {lost} (counted); unaccounted {}",
            n.saturating_sub(delivered + lost)
        );
        bars.push((format!("kernel to cordon run, {pace}"), delivered_per_s));
        kernel.push(serde_json::json!({
            "denials": n, "pace_per_s": rate, "produced_per_s": produced_per_s,
            "delivered": delivered, "delivered_per_s": delivered_per_s, "lost": lost,
            "unaccounted": n.saturating_sub(delivered + lost), "cordon_run_s": wall.as_secs_f64(),
        }));
    }

    // The kernel to a collector, through cordond.
    let arrivals: Arrivals = Arc::default();
    let stand_in = collector(Arc::clone(&arrivals))?;
    let daemon = start_cordond(bins, dir.path(), "bench", &stand_in.url(), None)?;
    let pid = daemon.child.id();
    let mut pipeline = Vec::new();
    println!(
        "  distinct denials from the kernel to the collector's acknowledgment, through cordond"
    );
    for (n, rate) in [(100_000u64, 50_000u64), (200_000, 100_000)] {
        let start = SystemTime::now();
        helper_output(
            Command::new(&bins.cordon)
                .env("CORDON_SOCKET", &daemon.socket)
                .args(["run", "--quiet", "--profile"])
                .arg(&profile)
                .arg("--")
                .arg(&bins.helper)
                .args(["helper", "deny-each", &n.to_string(), &rate.to_string()])
                .stdin(Stdio::null()),
        )?;
        let peak_rss_kib = proc_field(pid, "VmHWM:");
        // Until every denial is in, or counted as lost, or a minute passes.
        let tally = |a: &HashMap<String, Arrival>, kind: &str| -> u64 {
            a.values()
                .filter(|e| e.made >= start && e.kind == kind)
                .map(|e| e.count)
                .sum()
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let done = arrivals.lock().map_or(true, |a| {
                tally(&a, "syscall_denied") + tally(&a, "events_lost") >= n
            });
            if done || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let a = arrivals.lock().map(|a| a.clone()).unwrap_or_default();
        let (denials, lost) = (tally(&a, "syscall_denied"), tally(&a, "events_lost"));
        let mine: Vec<(SystemTime, SystemTime)> = a
            .values()
            .filter(|e| e.made >= start)
            .map(|e| (e.made, e.arrived))
            .collect();
        let mut latencies: Vec<f64> = mine
            .iter()
            .map(|(t, arrived)| arrived.duration_since(*t).unwrap_or_default().as_secs_f64())
            .collect();
        latencies.sort_by(f64::total_cmp);
        let first = mine.iter().map(|(t, _)| *t).min().unwrap_or(start);
        let first_arrival = mine.iter().map(|(_, a)| *a).min().unwrap_or(start);
        let last = mine.iter().map(|(_, a)| *a).max().unwrap_or(start);
        let span = last.duration_since(first).unwrap_or_default().as_secs_f64();
        // From the first event made to the last acknowledged: the tail latency included.
        let per_s = mine.len() as f64 / span.max(1e-9);
        // While events flow: from the first acknowledged to the last.
        let flowing = last
            .duration_since(first_arrival)
            .unwrap_or_default()
            .as_secs_f64();
        let arrival_per_s = mine.len() as f64 / flowing.max(1e-9);
        let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
        // Lost events are counted by the kernel and reported; missing ones are neither.
        let missing = n.saturating_sub(denials + lost);
        println!(
            "    {n} at {rate}/s: {denials} denials at the collector ({} events in all), {arrival_per_s:.0}/s while flowing ({per_s:.0}/s from the first made to the last acknowledged), latency p50 {:.0} ms, p99 {:.0} ms, lost {lost} (counted), missing {missing}; cordond peak RSS {peak_rss_kib} KiB",
            mine.len(),
            p50 * 1e3,
            p99 * 1e3
        );
        bars.push((
            format!("kernel to collector via cordond, paced at {rate}/s"),
            arrival_per_s,
        ));
        pipeline.push(serde_json::json!({
            "denials": n, "pace_per_s": rate, "denials_arrived": denials, "events_arrived": mine.len(), "lost": lost, "missing": missing,
            "events_per_s": per_s, "arrival_per_s": arrival_per_s, "latency_p50_ms": p50 * 1e3, "latency_p99_ms": p99 * 1e3,
            "cordond_peak_rss_kib": peak_rss_kib,
        }));
    }
    groups.push(Group {
        label: "events delivered per second".into(),
        bars,
    });
    Ok(Report {
        json: serde_json::json!({ "kernel": kernel, "cordond": pipeline }),
        chart: Some(Chart {
            title: "Violation pipeline".into(),
            unit: "events/s".into(),
            groups,
        }),
    })
}
