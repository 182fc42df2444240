//! `cargo xtask bench`, kernel side: what the eBPF programs and the event path cost.
//!
//! * connect: loopback `connect()` round trips bare (no programs) and inside a sandbox whose
//!   egress rule allows the listener (connect4 + the cgroup_skb programs on every packet);
//! * events: a sandbox making a denied syscall in a tight loop, and paced at 50k/s: events
//!   delivered to user space per second, and events lost (counted by the kernel);
//! * memory: the resident size of the `cordon run` that holds a sandbox's maps and threads.
//!
//! The helper that loops is this binary (`cargo xtask helper ...`), so bare and sandboxed
//! runs execute the same code. Results go to stdout and `bench/results/kernel.json`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// `cargo xtask helper connect ADDR N` / `helper deny-loop N RATE`: prints elapsed nanoseconds.
pub fn helper(args: &[String]) -> Result<()> {
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let start = Instant::now();
    match arg(0) {
        "connect" => {
            let n: u64 = arg(2).parse()?;
            for _ in 0..n {
                drop(std::net::TcpStream::connect(arg(1))?);
            }
        }
        // connect() on one UDP socket: no handshake, so what is left is the syscall and the
        // hooks on it (the eBPF connect4 program in a sandbox).
        "udp-connect" => {
            let n: u64 = arg(2).parse()?;
            let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
            for _ in 0..n {
                socket.connect(arg(1))?;
            }
        }
        "deny-loop" => {
            let n: u64 = arg(1).parse()?;
            let rate: u64 = arg(2).parse()?;
            for i in 0..n {
                // SAFETY: unshare takes a flags integer and touches no memory; the sandbox's
                // seccomp filter refuses it, which is the point.
                unsafe { nix::libc::unshare(nix::libc::CLONE_NEWUSER) };
                if rate > 0 && i % 100 == 99 {
                    let due = Duration::from_nanos((i + 1) * 1_000_000_000 / rate);
                    if let Some(wait) = due.checked_sub(start.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
            }
        }
        // Distinct denied calls (keyctl(0, i, 0)): no two fold into one burst.
        "deny-each" => {
            let n: u64 = arg(1).parse()?;
            let rate: u64 = arg(2).parse()?;
            for i in 0..n {
                // SAFETY: keyctl with integer arguments touches no memory of ours; the
                // sandbox's seccomp filter refuses it, which is the point.
                unsafe { nix::libc::syscall(nix::libc::SYS_keyctl, 0, i, 0) };
                if rate > 0 && i % 100 == 99 {
                    let due = Duration::from_nanos((i + 1) * 1_000_000_000 / rate);
                    if let Some(wait) = due.checked_sub(start.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
            }
        }
        other => bail!("unknown helper {other:?}"),
    }
    println!("{}", start.elapsed().as_nanos());
    Ok(())
}

struct Bench {
    cordon: PathBuf,
    helper: PathBuf,
    profile: PathBuf,
    dir: tempfile::TempDir,
}

impl Bench {
    fn sandboxed(&self, args: &[&str], events: Option<&Path>) -> Command {
        let mut cmd = Command::new(&self.cordon);
        cmd.args(["run", "--quiet", "--profile"]).arg(&self.profile);
        if let Some(events) = events {
            cmd.arg("--events").arg(events);
        }
        cmd.arg("--").arg(&self.helper).arg("helper").args(args);
        cmd.stdin(Stdio::null());
        cmd
    }
}

fn nanos(cmd: &mut Command) -> Result<u64> {
    let out = cmd.output().context("cannot run the helper")?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("the helper printed no time")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Counts `syscall_denied` events and the sum of `events_lost` in an events file.
fn count(events: &Path) -> Result<(u64, u64)> {
    let text = std::fs::read_to_string(events)?;
    let mut delivered = 0;
    let mut lost = 0;
    for line in text.lines() {
        let e: serde_json::Value = serde_json::from_str(line)?;
        match e["kind"].as_str() {
            // A burst of repeats is one event with a count.
            Some("syscall_denied") => delivered += e["count"].as_u64().unwrap_or(1),
            Some("events_lost") => lost += e["count"].as_u64().unwrap_or(0),
            _ => {}
        }
    }
    Ok((delivered, lost))
}

pub fn run(cordon: &Path) -> Result<serde_json::Value> {
    let helper = std::env::current_exe()?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || for _ in listener.incoming() {});
    let dir = tempfile::Builder::new()
        .prefix("cordon-bench-kernel-")
        .tempdir()?;
    let profile = dir.path().join("bench.toml");
    let helper_dir = helper.parent().context("helper dir")?.display().to_string();
    std::fs::write(
        &profile,
        format!(
            "[profile]\nname = \"bench\"\nextends = [\"base\"]\n[filesystem]\nread = [\"{helper_dir}\"]\nexec = [\"{helper_dir}\"]\n\
             [network]\negress = [{{ cidr = \"127.0.0.1/32\", ports = [{port}] }}]\n",
            port = addr.port()
        ),
    )?;
    let b = Bench {
        cordon: cordon.to_path_buf(),
        helper,
        profile,
        dir,
    };

    // connect(): per-call time bare and sandboxed, median of 5 runs of 20k connects each.
    let n = 20_000u64;
    let addr_s = addr.to_string();
    let n_s = n.to_string();
    let mut bare = Vec::new();
    let mut boxed = Vec::new();
    for _ in 0..5 {
        bare.push(
            nanos(Command::new(&b.helper).args(["helper", "connect", &addr_s, &n_s]))? as f64
                / n as f64
                / 1000.0,
        );
        boxed.push(
            nanos(&mut b.sandboxed(&["connect", &addr_s, &n_s], None))? as f64 / n as f64 / 1000.0,
        );
    }
    let (bare_us, boxed_us) = (median(bare), median(boxed));
    println!("\nTCP connect() + accept + close on loopback ({n} per run, median of 5 runs)");
    println!(
        "  bare {bare_us:.2} µs, in a sandbox {boxed_us:.2} µs: {:+.2} µs per connect",
        boxed_us - bare_us
    );
    let udp_n = 200_000u64;
    let udp_s = udp_n.to_string();
    let mut udp_bare = Vec::new();
    let mut udp_boxed = Vec::new();
    for _ in 0..5 {
        let per = |ns: u64| ns as f64 / udp_n as f64 / 1000.0;
        udp_bare.push(per(nanos(Command::new(&b.helper).args([
            "helper",
            "udp-connect",
            &addr_s,
            &udp_s,
        ]))?));
        udp_boxed.push(per(nanos(
            &mut b.sandboxed(&["udp-connect", &addr_s, &udp_s], None),
        )?));
    }
    let (udp_bare_us, udp_boxed_us) = (median(udp_bare), median(udp_boxed));
    println!("UDP connect() ({udp_n} per run, median of 5 runs): the hook's own cost");
    println!(
        "  bare {udp_bare_us:.3} µs, in a sandbox {udp_boxed_us:.3} µs: {:+.3} µs per connect",
        udp_boxed_us - udp_bare_us
    );

    // The event path: as fast as the loop goes, then paced at 50k/s.
    let mut event_results = Vec::new();
    println!("\ndenied syscalls reported as events (unshare(CLONE_NEWUSER) in a loop)");
    for (n, rate) in [(500_000u64, 0u64), (100_000, 50_000)] {
        let events = b.dir.path().join(format!("events-{rate}.jsonl"));
        let start = Instant::now();
        let loop_ns = nanos(&mut b.sandboxed(
            &["deny-loop", &n.to_string(), &rate.to_string()],
            Some(&events),
        ))?;
        let wall = start.elapsed();
        let (delivered, lost) = count(&events)?;
        let produced_per_s = n as f64 / (loop_ns as f64 / 1e9);
        let delivered_per_s = delivered as f64 / (loop_ns as f64 / 1e9);
        let pace = if rate == 0 {
            "unpaced".to_string()
        } else {
            format!("paced at {rate}/s")
        };
        println!(
            "  {pace}: {n} denials at {produced_per_s:.0}/s; delivered {delivered} ({delivered_per_s:.0}/s of the loop's time), lost {lost}; cordon run took {:.2} s",
            wall.as_secs_f64()
        );
        event_results.push(serde_json::json!({
            "denials": n, "pace_per_s": rate, "produced_per_s": produced_per_s,
            "delivered": delivered, "delivered_per_s": delivered_per_s, "lost": lost,
            "accounted": delivered + lost >= n, "cordon_run_s": wall.as_secs_f64(),
        }));
    }

    // Memory of the process holding a sandbox's maps, resolver and event threads.
    let mut child = b
        .sandboxed(
            &["deny-loop", "20000", "10000"],
            Some(&b.dir.path().join("rss.jsonl")),
        )
        .stdout(Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(1000));
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    child.wait()?;
    println!("\nRSS of `cordon run` while its sandbox runs: {rss_kib} KiB");

    Ok(serde_json::json!({
        "tcp_connect": { "runs": 5, "connects_per_run": n, "bare_us": bare_us, "sandboxed_us": boxed_us, "overhead_us": boxed_us - bare_us },
        "udp_connect": { "runs": 5, "connects_per_run": udp_n, "bare_us": udp_bare_us, "sandboxed_us": udp_boxed_us, "overhead_us": udp_boxed_us - udp_bare_us },
        "events": event_results,
        "cordon_run_rss_kib": rss_kib,
    }))
}
