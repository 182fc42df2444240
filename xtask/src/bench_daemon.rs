//! `cargo xtask bench`, cordond: events from the kernel to the collector's acknowledgment,
//! and the daemon's idle footprint.
//!
//! * pipeline: a sandbox run through cordond makes distinct denied calls (`keyctl(0, i, 0)`,
//!   so no two fold into one burst) at a fixed rate; a collector stand-in on 127.0.0.1 notes
//!   when each event arrives. Reported: events per second end to end, the latency from the
//!   event's kernel time to its arrival (p50, p99), and events lost.
//! * idle: cordond's resident size and CPU share over 10 s with nothing to do.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};

/// Arrival time of every event id.
type Arrivals = Arc<Mutex<HashMap<String, (SystemTime, SystemTime)>>>;

/// A minimal HTTP/1.1 server (keep-alive, Content-Length bodies) that takes cordond's
/// batches and notes each event's kernel time and arrival.
fn collector(arrivals: Arrivals) -> Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}", listener.local_addr()?);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let arrivals = Arc::clone(&arrivals);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                loop {
                    let mut length = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let l = line.trim_end();
                        if l.is_empty() {
                            break;
                        }
                        if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0u8; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let now = SystemTime::now();
                    let mut json = Vec::new();
                    let _ = flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut json);
                    if let Ok(batch) = serde_json::from_slice::<serde_json::Value>(&json) {
                        let mut a = arrivals.lock().unwrap_or_else(|e| e.into_inner());
                        for e in batch["events"].as_array().into_iter().flatten() {
                            let (Some(id), Some(time)) = (e["id"].as_str(), e["time"].as_str())
                            else {
                                continue;
                            };
                            if let Ok(t) = humantime_parse(time) {
                                a.entry(id.to_string()).or_insert((t, now));
                            }
                        }
                    }
                    let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
                    if reader.get_mut().write_all(reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(url)
}

fn humantime_parse(text: &str) -> Result<SystemTime> {
    Ok(humantime::parse_rfc3339(text)?)
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub(crate) fn proc_field(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// utime + stime of a process, in clock ticks.
pub(crate) fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Fields after the command: state is 0, utime 11, stime 12.
    get(11) + get(12)
}

pub fn run(cordon: &Path) -> Result<serde_json::Value> {
    let cordond = cordon.with_file_name("cordond");
    let helper = std::env::current_exe()?;
    let dir = tempfile::Builder::new()
        .prefix("cordon-bench-daemon-")
        .tempdir()?;
    let arrivals: Arrivals = Arc::default();
    let url = collector(Arc::clone(&arrivals))?;
    let socket = dir.path().join("cordon.sock");
    let config = dir.path().join("cordon.toml");
    std::fs::write(
        &config,
        format!(
            "host_id = \"bench\"\n[collector]\nurl = \"{url}\"\n[spool]\ndir = \"{d}/spool\"\n[journal]\npath = \"{d}/events.jsonl\"\n[api]\nsocket = \"{s}\"\n",
            d = dir.path().display(),
            s = socket.display()
        ),
    )?;
    let profile = dir.path().join("bench.toml");
    let helper_dir = helper.parent().context("helper dir")?;
    std::fs::write(
        &profile,
        format!(
            "[profile]\nname = \"bench\"\nextends = [\"offline-tool\"]\n[filesystem]\nread = [\"{h}\"]\nexec = [\"{h}\"]\n",
            h = helper_dir.display()
        ),
    )?;
    let mut daemon = Command::new(&cordond)
        .arg("--config")
        .arg(&config)
        .stderr(Stdio::null())
        .spawn()
        .context("starting cordond")?;
    let until = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        if Instant::now() > until {
            bail!("cordond did not open its socket");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = daemon.id();

    // Idle first: nothing runs yet.
    std::thread::sleep(Duration::from_secs(2));
    let ticks0 = cpu_ticks(pid);
    let idle = Duration::from_secs(10);
    std::thread::sleep(idle);
    let ticks = cpu_ticks(pid) - ticks0;
    // SAFETY: sysconf reads a constant of the system.
    let hz = unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) }.max(1) as f64;
    let idle_cpu_pct = ticks as f64 / hz / idle.as_secs_f64() * 100.0;
    let idle_rss_kib = proc_field(pid, "VmRSS:");
    println!(
        "\ncordond idle: RSS {idle_rss_kib} KiB, CPU {idle_cpu_pct:.2} % over {} s",
        idle.as_secs()
    );

    let mut pipeline = Vec::new();
    println!("events from the kernel to the collector's acknowledgment (distinct denials, paced)");
    for (n, rate) in [(100_000u64, 50_000u64), (200_000, 100_000)] {
        let before = arrivals.lock().map(|a| a.len()).unwrap_or(0);
        let start = SystemTime::now();
        let out = Command::new(cordon)
            .env("CORDON_SOCKET", &socket)
            .args(["run", "--quiet", "--profile"])
            .arg(&profile)
            .arg("--")
            .arg(&helper)
            .args(["helper", "deny-each", &n.to_string(), &rate.to_string()])
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            bail!(
                "the sandbox failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let peak_rss_kib = proc_field(pid, "VmHWM:");
        let deadline = Instant::now() + Duration::from_secs(60);
        while arrivals.lock().map(|a| a.len()).unwrap_or(0) < before + n as usize
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        let a = arrivals.lock().map(|a| a.clone()).unwrap_or_default();
        let mine: Vec<(SystemTime, SystemTime)> =
            a.values().filter(|(t, _)| *t >= start).copied().collect();
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
        // The sandbox's exec/fork/exit events arrive too; the denials are what was asked for.
        let lost = (n as usize + 3).saturating_sub(mine.len());
        println!(
            "  {n} at {rate}/s: {} events at the collector, {arrival_per_s:.0}/s while flowing ({per_s:.0}/s from the first made to the last acknowledged), latency p50 {:.0} ms, p99 {:.0} ms, missing {lost}; cordond peak RSS {peak_rss_kib} KiB",
            mine.len(),
            p50 * 1e3,
            p99 * 1e3
        );
        pipeline.push(serde_json::json!({
            "denials": n, "pace_per_s": rate, "arrived": mine.len(), "missing": lost,
            "events_per_s": per_s, "arrival_per_s": arrival_per_s, "latency_p50_ms": p50 * 1e3, "latency_p99_ms": p99 * 1e3,
            "cordond_peak_rss_kib": peak_rss_kib,
        }));
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = daemon.wait();
    Ok(serde_json::json!({
        "idle": { "rss_kib": idle_rss_kib, "cpu_percent": idle_cpu_pct, "seconds": idle.as_secs() },
        "pipeline": pipeline,
    }))
}
