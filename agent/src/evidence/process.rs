//! One process of the sandbox as `/proc` shows it: what it runs, as whom, what it holds open.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;

use serde::Serialize;
use sha2::{Digest as _, Sha256};

/// The most of an executable hashed: past it, its size is said and no hash (a sparse file
/// of terabytes costs the sandbox nothing and the collection hours).
const MAX_HASHED: u64 = 1 << 30;
/// The most descriptors of one process described.
const MAX_FDS: usize = 4096;

/// Whether `pid` is (still) a process of the sandbox `name`: its cgroup, as `/proc` says
/// now, is the sandbox's or one below it.
pub fn in_cgroup(pid: u32, name: &str) -> bool {
    let sandbox = format!("/{}/{name}", crate::cgroup::PARENT);
    std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|text| {
        text.lines().any(|l| {
            l.strip_prefix("0::")
                .is_some_and(|p| p == sandbox || p.starts_with(&format!("{sandbox}/")))
        })
    })
}

/// Every process in the cgroup at `dir` and the cgroups below it.
pub fn pids_of(dir: &Path) -> Vec<u32> {
    let mut pids = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        if let Ok(procs) = std::fs::read_to_string(d.join("cgroup.procs")) {
            pids.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
        if let Ok(entries) = std::fs::read_dir(&d) {
            dirs.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

#[derive(Debug, Serialize)]
pub struct Process {
    pub pid: u32,
    pub ppid: Option<u32>,
    pub argv: Vec<String>,
    pub exe: Option<String>,
    /// SHA-256 of the file the process runs, read through `/proc/PID/exe` (the file itself,
    /// even when its name was unlinked or replaced since).
    pub exe_sha256: Option<String>,
    /// Its size, as `/proc/PID/exe` says.
    pub exe_size: Option<u64>,
    pub cwd: Option<String>,
    pub root: Option<String>,
    /// The lines of `/proc/PID/status` that say who it is and what it may do: Uid, Gid,
    /// Groups, capability sets, NoNewPrivs, Seccomp.
    pub credentials: BTreeMap<String, String>,
    pub threads: usize,
    pub fds: Vec<Fd>,
}

#[derive(Debug, Serialize)]
pub struct Fd {
    pub fd: u32,
    /// Where it points (`/path`, `socket:[1234]`, `pipe:[5678]`, `anon_inode:[eventfd]`).
    pub target: String,
    /// Its flags and position (`/proc/PID/fdinfo/N`), first lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flags: Option<String>,
    /// The socket behind it, from the process's network namespace's tables.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket: Option<Socket>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Socket {
    /// tcp, tcp6, udp, udp6, unix.
    pub protocol: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// TCP's state (`ESTABLISHED`, `LISTEN`, ...), or a unix socket's path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

const CREDENTIALS: [&str; 10] = [
    "Uid",
    "Gid",
    "Groups",
    "CapInh",
    "CapPrm",
    "CapEff",
    "CapBnd",
    "CapAmb",
    "NoNewPrivs",
    "Seccomp",
];

/// Reads what `/proc` says of `pid`; an error when the process is gone.
pub fn describe(pid: u32, budget: &mut super::Budget) -> std::io::Result<Process> {
    let proc = format!("/proc/{pid}");
    let status = std::fs::read_to_string(format!("{proc}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(|v| v.trim().to_string())
    };
    let credentials = CREDENTIALS
        .iter()
        .filter_map(|name| Some((name.to_string(), field(name)?)))
        .collect();
    let argv = std::fs::read(format!("{proc}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let link = |name: &str| {
        std::fs::read_link(format!("{proc}/{name}"))
            .ok()
            .map(|p| p.display().to_string())
    };
    let sockets = sockets(pid);
    let mut more_fds = false;
    let mut fds: Vec<Fd> = std::fs::read_dir(format!("{proc}/fd"))
        .map(|entries| {
            entries
                .flatten()
                .enumerate()
                .filter_map(|(i, e)| {
                    if i >= MAX_FDS {
                        more_fds = true;
                        return None;
                    }
                    let fd: u32 = e.file_name().to_str()?.parse().ok()?;
                    let target = std::fs::read_link(e.path()).ok()?.display().to_string();
                    let socket = target
                        .strip_prefix("socket:[")
                        .and_then(|s| s.strip_suffix(']'))
                        .and_then(|inode| inode.parse::<u64>().ok())
                        .and_then(|inode| sockets.get(&inode).cloned());
                    let flags = std::fs::read_to_string(format!("{proc}/fdinfo/{fd}"))
                        .ok()
                        .map(|i| i.lines().take(3).collect::<Vec<_>>().join("; "));
                    Some(Fd {
                        fd,
                        target,
                        flags,
                        socket,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    fds.sort_by_key(|f| f.fd);
    if more_fds {
        budget.gap(format!(
            "process {pid}: more than {MAX_FDS} descriptors; the rest not described"
        ));
    }
    let exe_size = std::fs::metadata(format!("{proc}/exe"))
        .ok()
        .map(|m| m.len());
    let exe_sha256 = match exe_size {
        Some(size) if size > MAX_HASHED => {
            budget.gap(format!(
                "process {pid}: its executable is {size} bytes, not hashed (over {MAX_HASHED})"
            ));
            None
        }
        _ if budget.out_of_time() => None,
        _ => sha256_of(&format!("{proc}/exe")),
    };
    Ok(Process {
        pid,
        ppid: field("PPid").and_then(|p| p.parse().ok()),
        argv,
        exe: link("exe"),
        exe_sha256,
        exe_size,
        cwd: link("cwd"),
        root: link("root"),
        credentials,
        threads: std::fs::read_dir(format!("{proc}/task")).map_or(0, |t| t.count()),
        fds,
    })
}

fn sha256_of(path: &str) -> Option<String> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match file.read(&mut buf).ok()? {
            0 => break,
            n => hash.update(&buf[..n]),
        }
    }
    Some(super::hex(&hash.finalize()))
}

/// The sockets of `pid`'s network namespace, by inode.
fn sockets(pid: u32) -> BTreeMap<u64, Socket> {
    let mut out = BTreeMap::new();
    for protocol in ["tcp", "tcp6", "udp", "udp6"] {
        let Ok(table) = std::fs::read_to_string(format!("/proc/{pid}/net/{protocol}")) else {
            continue;
        };
        for line in table.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(remote), Some(state), Some(inode)) =
                (cols.get(1), cols.get(2), cols.get(3), cols.get(9))
            else {
                continue;
            };
            let Ok(inode) = inode.parse::<u64>() else {
                continue;
            };
            out.insert(
                inode,
                Socket {
                    protocol,
                    local: endpoint(local),
                    remote: endpoint(remote),
                    state: protocol
                        .starts_with("tcp")
                        .then(|| tcp_state(state).to_string()),
                },
            );
        }
    }
    if let Ok(table) = std::fs::read_to_string(format!("/proc/{pid}/net/unix")) {
        for line in table.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let Some(Ok(inode)) = cols.get(6).map(|i| i.parse::<u64>()) else {
                continue;
            };
            out.insert(
                inode,
                Socket {
                    protocol: "unix",
                    local: cols.get(7).map(|p| p.to_string()),
                    remote: None,
                    state: None,
                },
            );
        }
    }
    out
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6), as the kernel writes them
/// (each 32-bit word in host order), to `127.0.0.1:8080` / `[::1]:8080`.
pub fn endpoint(text: &str) -> Option<String> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<u32> = (0..addr.len() / 8)
        .map(|i| u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect::<Option<_>>()?;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    match bytes.len() {
        4 => Some(format!(
            "{}:{port}",
            std::net::Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?)
        )),
        16 => Some(format!(
            "[{}]:{port}",
            std::net::Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)
        )),
        _ => None,
    }
}

fn tcp_state(hex: &str) -> &'static str {
    match u8::from_str_radix(hex, 16).unwrap_or(0) {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_socket_addresses_read_as_people_write_them() {
        // As /proc/net/tcp writes 127.0.0.1:8080 on a little-endian machine.
        if cfg!(target_endian = "little") {
            assert_eq!(endpoint("0100007F:1F90").as_deref(), Some("127.0.0.1:8080"));
            assert_eq!(
                endpoint("00000000000000000000000001000000:0050").as_deref(),
                Some("[::1]:80")
            );
        }
        assert_eq!(endpoint("zz:1"), None);
        assert_eq!(tcp_state("0A"), "LISTEN");
    }

    #[test]
    fn this_process_describes_itself() {
        let mut budget = crate::evidence::Budget::new(crate::evidence::DEADLINE);
        let me = describe(std::process::id(), &mut budget).expect("own /proc");
        assert!(me.exe_sha256.as_ref().is_some_and(|h| h.len() == 64));
        assert!(me.credentials.contains_key("Uid"));
        assert!(me.fds.iter().any(|f| f.fd <= 2));
        assert!(me.threads >= 1);
    }
}
