//! `network`: what the eBPF egress programs and the sandbox's DNS resolver cost.
//!
//! * connect: `connect()` on one UDP socket (no handshake: the syscall and the connect4 hook
//!   alone), and TCP connect + accept + close on loopback (connect4 and the cgroup_skb
//!   programs on every packet), bare and inside a sandbox whose rule allows the listener;
//! * DNS: lookups of an allowed name, one at a time, straight to a DNS server on
//!   127.0.0.2:53 (a stand-in answering every A query), and from inside a sandbox, where the
//!   programs send them to Cordon's resolver, which checks the name, forwards it to the same
//!   server and enters the answer into the sandbox's allow map before passing it on.
//!
//! The loops are `cargo xtask helper ...` (see `helper.rs`), bare and sandboxed alike.

use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use super::chart::{Chart, Group};
use super::{helper_output, s, Bins, Report};

/// The allowed name the DNS runs look up.
const NAME: &str = "bench.cordon.test";
/// Where the stand-in DNS server listens (port 53 is what the programs redirect).
const DNS_SERVER: &str = "127.0.0.2:53";

/// Answers every query with one A record, 127.0.0.1, TTL 300.
fn dns_server() -> Result<()> {
    let socket = UdpSocket::bind(DNS_SERVER).context("binding the DNS stand-in to 127.0.0.2:53")?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((len, from)) = socket.recv_from(&mut buf) {
            if len < 12 {
                continue;
            }
            // The header and the question only (not the query's EDNS record).
            let mut end = 12;
            while end < len && buf[end] != 0 {
                end += 1 + usize::from(buf[end]);
            }
            let question_end = (end + 5).min(len);
            let mut reply = buf[..question_end].to_vec();
            reply[2] = 0x81; // QR, RD
            reply[3] = 0x80; // RA, no error
            reply[6..8].copy_from_slice(&[0, 1]); // one answer
            reply[8..12].copy_from_slice(&[0, 0, 0, 0]);
            // The name (a pointer to the question's), A, IN, TTL 300, 4 bytes: 127.0.0.1.
            reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 127, 0, 0, 1]);
            let _ = socket.send_to(&reply, from);
        }
    });
    Ok(())
}

fn sandboxed(bins: &Bins, profile: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(&bins.cordon);
    cmd.args(["run", "--quiet", "--dns-upstream", DNS_SERVER, "--profile"])
        .arg(profile)
        .arg("--")
        .arg(&bins.helper)
        .arg("helper")
        .args(args)
        .stdin(Stdio::null());
    cmd
}

fn bare(bins: &Bins, args: &[&str]) -> Command {
    let mut cmd = Command::new(&bins.helper);
    cmd.arg("helper").args(args).stdin(Stdio::null());
    cmd
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(bins: &Bins) -> Result<Report> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || for _ in listener.incoming() {});
    dns_server()?;
    let dir = super::scratch("network")?;
    let profile = dir.path().join("bench.toml");
    let helper_dir = s(bins.helper.parent().context("helper dir")?);
    std::fs::write(
        &profile,
        format!(
            "[profile]\nname = \"bench\"\nextends = [\"base\"]\n[filesystem]\nread = [\"{helper_dir}\"]\nexec = [\"{helper_dir}\"]\n\
             [network]\negress = [{{ cidr = \"127.0.0.1/32\", ports = [{port}] }}, {{ host = \"{NAME}\", ports = [443] }}]\n",
            port = addr.port()
        ),
    )?;
    let addr = addr.to_string();
    let mut json = serde_json::Map::new();
    let mut groups = Vec::new();

    // Per-connect time: the median of 5 runs of many connects, bare and sandboxed in turn.
    for (kind, helper, n) in [
        ("udp_connect", "udp-connect", 200_000u64),
        ("tcp_connect", "connect", 20_000),
    ] {
        let n_s = n.to_string();
        let args = [helper, addr.as_str(), n_s.as_str()];
        let per = |out: String| -> Result<f64> { Ok(out.parse::<f64>()? / n as f64 / 1000.0) };
        let (mut b, mut c) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            b.push(per(helper_output(&mut bare(bins, &args))?)?);
            c.push(per(helper_output(&mut sandboxed(bins, &profile, &args))?)?);
        }
        let (b, c) = (median(b), median(c));
        let what = if kind == "udp_connect" {
            "connect() of a UDP socket: the connect4 hook alone"
        } else {
            "TCP connect + accept + close on loopback"
        };
        println!("  {what} ({n} per run, median of 5 runs): bare {b:.3} µs, sandboxed {c:.3} µs: {:+.3} µs", c - b);
        json.insert(
            kind.into(),
            serde_json::json!({ "runs": 5, "per_run": n, "bare_us": b, "sandboxed_us": c, "overhead_us": c - b }),
        );
        groups.push(Group {
            label: what.into(),
            bars: vec![("bare".into(), b), ("cordon run".into(), c)],
        });
    }

    // DNS: p50 and p99 of single lookups, median over 5 runs of 2 000.
    let n = 2_000usize;
    let n_s = n.to_string();
    let args = ["dns", DNS_SERVER, n_s.as_str(), NAME];
    let parse = |out: String| -> Result<(f64, f64)> {
        let mut parts = out.split_whitespace().map(str::parse::<f64>);
        match (parts.next(), parts.next()) {
            (Some(Ok(p50)), Some(Ok(p99))) => Ok((p50 / 1000.0, p99 / 1000.0)),
            _ => anyhow::bail!("the dns helper printed {out:?}"),
        }
    };
    let (mut b50, mut b99, mut c50, mut c99) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..5 {
        let (p50, p99) = parse(helper_output(&mut bare(bins, &args))?)?;
        b50.push(p50);
        b99.push(p99);
        let (p50, p99) = parse(helper_output(&mut sandboxed(bins, &profile, &args))?)?;
        c50.push(p50);
        c99.push(p99);
    }
    let (b50, b99, c50, c99) = (median(b50), median(b99), median(c50), median(c99));
    println!(
        "  DNS lookup of an allowed name ({n} per run, median of 5 runs): direct p50 {b50:.1} µs, p99 {b99:.1} µs; through Cordon's resolver p50 {c50:.1} µs, p99 {c99:.1} µs: p50 {:+.1} µs",
        c50 - b50
    );
    json.insert(
        "dns".into(),
        serde_json::json!({ "runs": 5, "lookups_per_run": n, "direct_p50_us": b50, "direct_p99_us": b99,
            "resolver_p50_us": c50, "resolver_p99_us": c99, "p50_overhead_us": c50 - b50 }),
    );
    groups.push(Group {
        label: "DNS lookup of an allowed name, p50".into(),
        bars: vec![("direct".into(), b50), ("Cordon's resolver".into(), c50)],
    });
    Ok(Report {
        json: serde_json::Value::Object(json),
        chart: Some(Chart {
            title: "Network: per operation, bare and in a sandbox".into(),
            unit: "µs".into(),
            groups,
        }),
    })
}
