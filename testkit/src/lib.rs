//! What Cordon's tests (`tests/`, and the crates' own that need the real kernel) and
//! benchmarks (`xtask bench`) share, so that it is written once: the check that a test may
//! run ([`require_root`], [`skip`]), a PostgreSQL server of their own ([`Postgres`]), and an HTTP
//! server that stands in for a collector or an output's receiver ([`http::HttpStandIn`]).

pub mod http;

/// Whether `test` may run: it needs root (real namespaces, Landlock, eBPF). Without root it
/// says why it skips, and under CI (`CI` set) a skip fails instead: there, every test runs.
pub fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    skip(test, "needs root (run `sudo cargo xtask test`)");
    false
}

/// Says that `test` skips, and `why`; under CI (`CI` set) fails instead: there, every test
/// runs. The caller returns after it.
pub fn skip(test: &str, why: &str) {
    let msg = format!("skipping {test}: {why}");
    assert!(
        std::env::var_os("CI").is_none(),
        "{msg}, and CI must not skip"
    );
    // Past the test harness's capture of `eprintln!`, which shows a passing test's output
    // only with --nocapture: a skip says so in every run.
    let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("{msg}\n").as_bytes());
}

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A PostgreSQL server of the caller's own: a fresh cluster in a temporary directory under
/// `/var/tmp`, on a free loopback port, run as the `postgres` user (it refuses root).
/// Stopped (immediate shutdown) and removed on drop.
pub struct Postgres {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Postgres {
    /// Starts one with these server settings (`-c NAME=VALUE` each, e.g. `fsync=off` for
    /// tests, where durability buys nothing), and waits until it takes connections.
    pub fn start(settings: &[&str]) -> Result<Self, String> {
        let bin = newest_bin()?;
        let user = nix::unistd::User::from_name("postgres")
            .map_err(|e| format!("cannot read the passwd database: {e}"))?
            .ok_or("no postgres user (Debian's postgresql package makes it)")?;
        let dir = tempfile::Builder::new()
            .prefix("cordon-pg-")
            .tempdir_in("/var/tmp")
            .map_err(|e| format!("cannot make a directory for PostgreSQL: {e}"))?;
        nix::unistd::chown(dir.path(), Some(user.uid), Some(user.gid))
            .map_err(|e| format!("cannot give {} to postgres: {e}", dir.path().display()))?;
        let data = dir.path().join("data");
        let as_postgres = |program: &str| {
            let mut c = Command::new(bin.join(program));
            c.uid(user.uid.as_raw())
                .gid(user.gid.as_raw())
                .current_dir(dir.path());
            c
        };
        let out = as_postgres("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "cordon", "--auth=trust", "-E", "UTF8"])
            .output()
            .map_err(|e| format!("cannot run initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!("initdb: {}", String::from_utf8_lossy(&out.stderr)));
        }
        let port = free_port()?;
        let mut server = as_postgres("postgres");
        server
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(dir.path())
            .args(["-c", "listen_addresses=127.0.0.1"]);
        for setting in settings {
            server.args(["-c", setting]);
        }
        let log = dir.path().join("postgres.log");
        let log_file = std::fs::File::create(&log)
            .map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let child = server
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("cannot start postgres: {e}"))?;
        let mut pg = Self {
            child,
            port,
            _dir: dir,
        };
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "cordon"])
                .output()
                .map_err(|e| format!("cannot run pg_isready: {e}"))?;
            if ready.status.success() {
                return Ok(pg);
            }
            if let Ok(Some(status)) = pg.child.try_wait() {
                let said = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("postgres exited ({status}): {}", said.trim()));
            }
            if Instant::now() > until {
                return Err("PostgreSQL did not start within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Its URL, for the collector's `database_url`.
    pub fn url(&self) -> String {
        format!("postgres://cordon@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGQUIT: PostgreSQL's immediate shutdown.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGQUIT,
        );
        let _ = self.child.wait();
    }
}

/// The `bin` directory of the newest PostgreSQL installed (Debian's `postgresql`), by
/// version number (15 is newer than 9).
fn newest_bin() -> Result<PathBuf, String> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| {
            "PostgreSQL is not installed: `cargo xtask setup` installs Debian's postgresql"
                .to_string()
        })?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("postgres").is_file())
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| "no PostgreSQL server under /usr/lib/postgresql".into())
}

/// A loopback port nobody listens on now.
pub fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}
