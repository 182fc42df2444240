//! `response`: how soon a response rule acts. A sandbox under a profile with a `freeze`
//! rule on a refused read makes that read once; the time from the denial (the kernel's
//! time, in its event) to the rule's recorded action (written once the kernel reports the
//! sandbox frozen) is measured, run after run, through `cordon run --events`, with no
//! collector at all.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Result};

use super::chart::{Chart, Group};
use super::{percentile, s, Bins, Report};

const PROFILE: &str = "[profile]\nname = \"bench-response\"\nextends = [\"offline-tool\"]\n\n[[response]]\nname = \"secret\"\nwhen = { kind = \"file_denied\", path = \"/etc/shadow\" }\naction = \"freeze\"\n";

pub fn run(bins: &Bins, runs: usize) -> Result<Report> {
    let dir = tempfile::tempdir()?;
    let profile = dir.path().join("bench-response.toml");
    std::fs::write(&profile, PROFILE)?;
    let mut samples = Vec::new();
    for i in 0..runs {
        let events = dir.path().join(format!("events-{i}.jsonl"));
        let mut child = Command::new(&bins.cordon)
            .args([
                "run",
                "-q",
                "--events",
                &s(&events),
                "-p",
                &s(&profile),
                "--",
            ])
            .args(["/bin/sh", "-c", "cat /etc/shadow; sleep 30"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let (denied, acted, sandbox) = loop {
            if let Some(found) = times(&events) {
                break found;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("run {i}: the rule did not act within 10 s");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        samples.push(
            acted
                .duration_since(denied)
                .unwrap_or_default()
                .as_secs_f64()
                * 1e3,
        );
        Command::new(&bins.cordon)
            .args(["kill", &sandbox])
            .stdout(Stdio::null())
            .status()?;
        child.wait()?;
    }
    samples.sort_by(f64::total_cmp);
    let (median, p90, max) = (
        percentile(&samples, 0.5),
        percentile(&samples, 0.9),
        samples.last().copied().unwrap_or(0.0),
    );
    println!(
        "denial to frozen (the rule's recorded action), {runs} runs: median {median:.2} ms, p90 {p90:.2} ms, max {max:.2} ms"
    );
    Ok(Report {
        json: serde_json::json!({
            "runs": runs,
            "denial_to_frozen_ms": { "median": median, "p90": p90, "max": max },
        }),
        chart: Some(Chart {
            title: "A response rule: denial to frozen".into(),
            unit: "ms".into(),
            groups: vec![Group {
                label: format!("{runs} runs"),
                bars: vec![
                    ("median".into(), median),
                    ("p90".into(), p90),
                    ("max".into(), max),
                ],
            }],
        }),
    })
}

/// The denial's time, the rule's action's time and the sandbox, once both are written.
fn times(events: &std::path::Path) -> Option<(SystemTime, SystemTime, String)> {
    let text = std::fs::read_to_string(events).ok()?;
    let mut denied = None;
    let mut acted = None;
    let mut sandbox = None;
    for line in text.lines() {
        let Ok(e) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let time = || humantime::parse_rfc3339(e["time"].as_str()?).ok();
        if e["kind"] == "file_denied" && denied.is_none() {
            denied = time();
        }
        if e["kind"] == "responder_action" && e["actor"]["via"] == "rule" {
            acted = time();
            sandbox = e["sandbox"].as_str().map(String::from);
        }
    }
    Some((denied?, acted?, sandbox?))
}
