//! A cordond for one test (temporary config, socket, spool and journal; binaries copied where
//! any user can run them), and a collector stand-in that stores what it receives by event id.

use std::collections::HashMap;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{cordon_bin, probe_bin};

/// The user the tests run sandboxes as: not root, in no group cordond's config names.
pub const NOBODY: u32 = 65534;
/// Its primary group (`nogroup` on Debian).
pub const NOGROUP: u32 = 65534;

/// What the stand-in received.
#[derive(Default)]
struct Received {
    /// Every event, by id (a retried batch lands on the same keys).
    events: HashMap<String, serde_json::Value>,
    /// Events received in all, duplicates included.
    total: usize,
    /// The host and token of each batch.
    hosts: Vec<String>,
    tokens: Vec<String>,
}

/// An HTTP server on 127.0.0.1 that takes cordond's batches (gzip JSON) and keeps every event
/// by id. While `down`, it answers 503 and keeps nothing, like a collector in an outage.
pub struct CollectorStandIn {
    pub url: String,
    received: Arc<Mutex<Received>>,
    down: Arc<AtomicBool>,
    posts: Arc<AtomicUsize>,
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CollectorStandIn {
    pub fn start() -> Self {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("collector binds"));
        let port = server.server_addr().to_ip().expect("an IP address").port();
        let received = Arc::new(Mutex::new(Received::default()));
        let down = Arc::new(AtomicBool::new(false));
        let posts = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (server, received, down, posts) = (
                Arc::clone(&server),
                Arc::clone(&received),
                Arc::clone(&down),
                Arc::clone(&posts),
            );
            std::thread::spawn(move || {
                for mut request in server.incoming_requests() {
                    posts.fetch_add(1, Ordering::SeqCst);
                    if down.load(Ordering::SeqCst) {
                        let _ = request.respond(tiny_http::Response::empty(503));
                        continue;
                    }
                    let header = |name: &'static str| {
                        request
                            .headers()
                            .iter()
                            .find(|h| h.field.equiv(name))
                            .map(|h| h.value.as_str().to_string())
                    };
                    let gzip = header("Content-Encoding").as_deref() == Some("gzip");
                    let token = header("Authorization").unwrap_or_default();
                    let path_ok = request.url() == "/api/v1/events";
                    let mut raw = Vec::new();
                    let _ = request.as_reader().read_to_end(&mut raw);
                    let mut body = Vec::new();
                    let decoded = if gzip {
                        flate2::read::GzDecoder::new(&raw[..])
                            .read_to_end(&mut body)
                            .is_ok()
                    } else {
                        body = raw;
                        true
                    };
                    let batch: Option<serde_json::Value> = decoded
                        .then(|| serde_json::from_slice(&body).ok())
                        .flatten();
                    let Some(batch) = batch.filter(|_| path_ok) else {
                        let _ = request.respond(tiny_http::Response::empty(400));
                        continue;
                    };
                    {
                        let mut r = received.lock().expect("lock");
                        r.hosts
                            .push(batch["host"].as_str().unwrap_or("").to_string());
                        r.tokens.push(token);
                        for event in batch["events"].as_array().cloned().unwrap_or_default() {
                            r.total += 1;
                            let id = event["id"].as_str().unwrap_or("").to_string();
                            r.events.insert(id, event);
                        }
                    }
                    let _ = request.respond(tiny_http::Response::from_string("{\"ok\":true}"));
                }
            })
        };
        Self {
            url: format!("http://127.0.0.1:{port}"),
            received,
            down,
            posts,
            server,
            thread: Some(thread),
        }
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Every distinct event received.
    pub fn events(&self) -> Vec<serde_json::Value> {
        let r = self.received.lock().expect("lock");
        r.events.values().cloned().collect()
    }

    /// Events received in all, duplicates included.
    pub fn total(&self) -> usize {
        self.received.lock().expect("lock").total
    }

    pub fn posts(&self) -> usize {
        self.posts.load(Ordering::SeqCst)
    }

    pub fn tokens(&self) -> Vec<String> {
        self.received.lock().expect("lock").tokens.clone()
    }

    pub fn hosts(&self) -> Vec<String> {
        self.received.lock().expect("lock").hosts.clone()
    }
}

impl Drop for CollectorStandIn {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A cordond with everything in a temporary directory readable by every user.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    /// `cordon`, `cordond` and `probe`, copied where any user may run them.
    pub bin: PathBuf,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub journal: PathBuf,
    pub spool: PathBuf,
    pub workspace: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    /// A directory and a config for cordond; `extra` is appended to the config (sections
    /// `[collector]`, `[api]`, ... of its own).
    pub fn new(extra: &str) -> Self {
        // Not under /tmp: sandboxes get a /tmp of their own, and the socket must be where a
        // sandboxed process could try to reach it.
        let dir = tempfile::Builder::new()
            .prefix("cordon-daemon-")
            .tempdir_in("/var/tmp")
            .expect("temp dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("bin dir");
        let cordon = cordon_bin();
        for (from, name) in [
            (cordon.clone(), "cordon"),
            (cordon.with_file_name("cordond"), "cordond"),
            (probe_bin(), "probe"),
        ] {
            std::fs::copy(&from, bin.join(name))
                .unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
        }
        let workspace = dir.path().join("workspace");
        std::fs::create_dir(&workspace).expect("workspace");
        nix::unistd::chown(
            &workspace,
            Some(nix::unistd::Uid::from_raw(NOBODY)),
            Some(nix::unistd::Gid::from_raw(NOGROUP)),
        )
        .expect("chown workspace");
        let profiles = dir.path().join("profiles");
        std::fs::create_dir(&profiles).expect("profiles");
        // The shipped offline-tool profile, plus the copied binaries.
        std::fs::write(
            profiles.join("test-agent.toml"),
            format!(
                "[profile]\nname = \"test-agent\"\nextends = [\"offline-tool\"]\n\n[filesystem]\nread = [\"{b}\"]\nexec = [\"{b}\"]\n",
                b = bin.display()
            ),
        )
        .expect("profile");
        let socket = dir.path().join("cordon.sock");
        let journal = dir.path().join("journal/events.jsonl");
        let spool = dir.path().join("spool");
        let config = dir.path().join("cordon.toml");
        std::fs::write(
            &config,
            format!(
                "host_id = \"e2e-host\"\n\n[spool]\ndir = \"{}\"\n\n[journal]\npath = \"{}\"\n\n[profiles]\npath = [\"{}\"]\n\n{extra}\n",
                spool.display(),
                journal.display(),
                profiles.display()
            ),
        )
        .expect("config");
        let mut daemon = Self {
            bin,
            config,
            socket,
            journal,
            spool,
            workspace,
            dir,
            child: None,
        };
        // The socket path goes into [api] unless the test's own section sets it.
        if !extra.contains("[api]") {
            daemon.append_config(&format!(
                "[api]\nsocket = \"{}\"\n",
                daemon.socket.display()
            ));
        }
        daemon
    }

    pub fn append_config(&mut self, text: &str) {
        let mut config = std::fs::read_to_string(&self.config).expect("config");
        config.push_str(text);
        std::fs::write(&self.config, config).expect("config");
    }

    /// Starts cordond and waits until its socket answers.
    pub fn start(&mut self) {
        self.start_with(Command::new(self.bin.join("cordond")));
    }

    /// Starts `command` (cordond, maybe with a NOTIFY_SOCKET) and waits for the socket.
    pub fn start_with(&mut self, mut command: Command) {
        assert!(self.child.is_none(), "cordond already runs");
        let child = command
            .arg("--config")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cordond starts");
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(&self.socket).is_err() {
            assert!(Instant::now() < until, "cordond did not open its socket");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("cordond runs").id()
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("cordond runs");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        child.wait().expect("wait for cordond")
    }

    /// `cordon ARGS` as `uid` (root when 0), talking to this daemon.
    pub fn cordon(&self, uid: u32, gid: u32, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.bin.join("cordon"));
        cmd.args(args)
            .env("CORDON_SOCKET", &self.socket)
            .current_dir(&self.workspace)
            .stdin(Stdio::null());
        if uid != 0 {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    /// `cordon run -p test-agent -- probe ARGS` as nobody, through this daemon.
    pub fn run_probe(&self, args: &[&str]) -> Output {
        let probe = self.bin.join("probe");
        let mut argv = vec![
            "run",
            "-p",
            "test-agent",
            "--",
            probe.to_str().expect("utf-8"),
        ];
        argv.extend_from_slice(args);
        self.cordon(NOBODY, NOGROUP, &argv)
            .output()
            .expect("cordon run")
    }

    /// The journal's events.
    pub fn journal_events(&self) -> Vec<serde_json::Value> {
        read_jsonl(&self.journal)
    }

    /// Waits until `done` holds, polling; fails with `what` after `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, done: impl Fn() -> bool) {
        let until = Instant::now() + timeout;
        while !done() {
            assert!(Instant::now() < until, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The complete lines of a JSON-lines file (one being written may end in half a line).
pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    complete
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("a JSON line ({e}): {l}")))
        .collect()
}
