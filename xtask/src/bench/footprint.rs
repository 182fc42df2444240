//! `footprint`: the memory and CPU Cordon's processes take, idle and under load.
//!
//! * cordond: resident size and CPU share over 10 s with nothing to do; then while a sandbox
//!   run through it makes 100k distinct denials at 20k/s, reported to a collector;
//! * `cordon run`: the resident size of the process holding a sandbox's maps and threads;
//! * the collector (SQLite): resident size and CPU idle over 10 s, then its peak and CPU
//!   share while cordond delivers the same run, and while 100 hosts post 200k events.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::chart::{Chart, Group};
use super::pipeline::{helper_profile, start_cordond};
use super::{cpu_ticks, helper_output, proc_field, ticks_per_second, Bins, Report};

/// A process's CPU share (percent of one core) and resident size while `during` runs.
fn watch<T>(pid: u32, during: impl FnOnce() -> Result<T>) -> Result<(T, f64, u64)> {
    let ticks = cpu_ticks(pid);
    let started = Instant::now();
    let value = during()?;
    let cpu =
        (cpu_ticks(pid) - ticks) as f64 / ticks_per_second() / started.elapsed().as_secs_f64()
            * 100.0;
    Ok((value, cpu, proc_field(pid, "VmRSS:")))
}

fn idle(pid: u32) -> Result<(f64, u64)> {
    std::thread::sleep(Duration::from_secs(2));
    let ((), cpu, rss) = watch(pid, || {
        std::thread::sleep(Duration::from_secs(10));
        Ok(())
    })?;
    Ok((cpu, rss))
}

pub fn run(bins: &Bins) -> Result<Report> {
    let dir = super::scratch("footprint")?;
    let collector_dir = dir.path().join("collector");
    std::fs::create_dir_all(&collector_dir)?;
    let server = super::collector::start(
        &bins.collector,
        &collector_dir,
        &format!("sqlite://{}/collector.db", collector_dir.display()),
    )?;
    let collector_pid = server.child.id();
    let (collector_idle_cpu, collector_idle_rss) = idle(collector_pid)?;
    println!("  collector idle: RSS {collector_idle_rss} KiB, CPU {collector_idle_cpu:.2} %");

    let tokens = super::collector::host_tokens(&bins.collector, &server)?;
    let daemon_dir = dir.path().join("cordond");
    std::fs::create_dir_all(&daemon_dir)?;
    // cordond reports as host-0, with that host's token.
    let token_file = daemon_dir.join("token");
    std::fs::write(&token_file, &tokens[0])?;
    let daemon = start_cordond(bins, &daemon_dir, "host-0", server.url(), Some(&token_file))?;
    let pid = daemon.child.id();
    let (idle_cpu, idle_rss) = idle(pid)?;
    println!("  cordond idle: RSS {idle_rss} KiB, CPU {idle_cpu:.2} %");

    // Load: 100k distinct denials at 20k/s through cordond to the collector.
    let profile = helper_profile(bins, dir.path(), "offline-tool")?;
    let mut run = Command::new(&bins.cordon);
    run.env("CORDON_SOCKET", &daemon.socket)
        .args(["run", "--quiet", "--profile"])
        .arg(&profile)
        .arg("--")
        .arg(&bins.helper)
        .args(["helper", "deny-each", "100000", "20000"])
        .stdin(Stdio::null());
    let collector_ticks = cpu_ticks(collector_pid);
    let started = Instant::now();
    let ((), load_cpu, _) = watch(pid, || helper_output(&mut run).map(drop))?;
    let collector_load_cpu = (cpu_ticks(collector_pid) - collector_ticks) as f64
        / ticks_per_second()
        / started.elapsed().as_secs_f64()
        * 100.0;
    let load_peak = proc_field(pid, "VmHWM:");
    println!("  cordond delivering 100k denials at 20k/s: CPU {load_cpu:.1} %, peak RSS {load_peak} KiB; the collector taking them: CPU {collector_load_cpu:.1} %");

    // `cordon run` itself, while its sandbox runs.
    let mut child = Command::new(&bins.cordon)
        .args(["run", "--no-daemon", "--quiet", "--profile"])
        .arg(&profile)
        .arg("--events")
        .arg(dir.path().join("rss.jsonl"))
        .arg("--")
        .arg(&bins.helper)
        .args(["helper", "deny-loop", "20000", "10000"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(1000));
    let run_rss = proc_field(child.id(), "VmRSS:");
    child.wait()?;
    println!("  cordon run while its sandbox runs: RSS {run_rss} KiB");

    // The collector under a fleet's load: 200k events from 100 hosts.
    let ingest_started = Instant::now();
    let ticks = cpu_ticks(collector_pid);
    let took = super::collector::ingest(&server, &tokens, 1_000_000, 200_000, false)?;
    let ingest_cpu = (cpu_ticks(collector_pid) - ticks) as f64
        / ticks_per_second()
        / ingest_started.elapsed().as_secs_f64()
        * 100.0;
    let collector_peak = proc_field(collector_pid, "VmHWM:");
    println!(
        "  collector taking 200k events from 100 hosts ({:.0}/s): CPU {ingest_cpu:.0} %, peak RSS {collector_peak} KiB",
        200_000.0 / took
    );

    let mib = |kib: u64| kib as f64 / 1024.0;
    Ok(Report {
        json: serde_json::json!({
            "cordond": { "idle_rss_kib": idle_rss, "idle_cpu_percent": idle_cpu,
                "load": "100k distinct denials at 20k/s to the collector",
                "load_cpu_percent": load_cpu, "load_peak_rss_kib": load_peak },
            "cordon_run_rss_kib": run_rss,
            "collector_sqlite": { "idle_rss_kib": collector_idle_rss, "idle_cpu_percent": collector_idle_cpu,
                "cordond_load_cpu_percent": collector_load_cpu,
                "ingest_200k_from_100_hosts": { "seconds": took, "cpu_percent": ingest_cpu },
                "peak_rss_kib": collector_peak },
        }),
        chart: Some(Chart {
            title: "Resident memory".into(),
            unit: "MiB".into(),
            groups: vec![
                Group {
                    label: "idle".into(),
                    bars: vec![
                        ("cordond".into(), mib(idle_rss)),
                        ("collector (SQLite)".into(), mib(collector_idle_rss)),
                    ],
                },
                Group {
                    label: "under load (peak)".into(),
                    bars: vec![
                        ("cordond".into(), mib(load_peak)),
                        ("collector (SQLite)".into(), mib(collector_peak)),
                        ("cordon run".into(), mib(run_rss)),
                    ],
                },
            ],
        }),
    })
}
