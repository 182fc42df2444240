//! `cargo xtask helper ...`: the loops the benchmarks time, run bare or inside a sandbox, so
//! both execute the same code. Each prints what it measured on its last line.
//!
//! * `connect ADDR N`: N TCP connects (and closes); elapsed nanoseconds;
//! * `udp-connect ADDR N`: N `connect()`s of one UDP socket (the hook's own cost); elapsed ns;
//! * `deny-loop N RATE`: N denied `unshare(CLONE_NEWUSER)` calls, paced at RATE/s (0: flat out);
//! * `deny-each N RATE`: N distinct denied calls (`keyctl(0, i, 0)`), paced;
//! * `dns SERVER N NAME`: N lookups, one at a time; median and p99 round trip in ns.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

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
                pace(i, rate, start);
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
                pace(i, rate, start);
            }
        }
        // N lookups of NAME (type A) from SERVER, one at a time: prints the median and the
        // 99th percentile of the round trips in nanoseconds.
        "dns" => {
            let n: usize = arg(2).parse()?;
            let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
            socket.set_read_timeout(Some(Duration::from_secs(5)))?;
            socket.connect(arg(1))?;
            let mut times = Vec::with_capacity(n);
            let mut answer = [0u8; 512];
            for i in 0..n {
                let query = dns_query(i as u16, arg(3));
                let sent = Instant::now();
                socket.send(&query)?;
                let len = socket.recv(&mut answer)?;
                times.push(sent.elapsed().as_nanos() as f64);
                // The same id, an answer (QR), no error, one answer record.
                if len < 12 || answer[..2] != query[..2] || answer[2] & 0x80 == 0 {
                    bail!("not an answer to query {i}");
                }
                if answer[3] & 0x0f != 0 || answer[6..8] != [0, 1] {
                    bail!(
                        "query {i} was answered with rcode {} and {} records",
                        answer[3] & 0x0f,
                        answer[7]
                    );
                }
            }
            times.sort_by(f64::total_cmp);
            println!(
                "{} {}",
                super::percentile(&times, 0.5),
                super::percentile(&times, 0.99)
            );
            return Ok(());
        }
        other => bail!("unknown helper {other:?}"),
    }
    println!("{}", start.elapsed().as_nanos());
    Ok(())
}

/// Every 100 calls, sleeps until call `i` is due at `rate` per second since `start`
/// (0: no pacing).
fn pace(i: u64, rate: u64, start: Instant) {
    if rate > 0 && i % 100 == 99 {
        let due = Duration::from_nanos((i + 1) * 1_000_000_000 / rate);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
    }
}

/// A DNS query for the A record of `name`, with recursion desired.
pub fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}
