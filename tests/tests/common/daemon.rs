//! A cordond for one test (temporary config, socket, spool and journal; binaries copied where
//! any user can run them), and a collector stand-in that stores what it receives by event id.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cordon_testkit::http::{HttpStandIn, Request};

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

/// A collector that takes cordond's batches (gzip JSON) and keeps every event by id. While
/// `down`, it answers 503 and keeps nothing, like a collector in trouble; after `stop`,
/// connections are refused, like a collector that is gone, until `restart` listens on the
/// same port again.
pub struct CollectorStandIn {
    pub url: String,
    server: HttpStandIn,
    received: Arc<Mutex<Received>>,
    down: Arc<AtomicBool>,
    posts: Arc<AtomicUsize>,
}

impl CollectorStandIn {
    pub fn start() -> Self {
        let received = Arc::new(Mutex::new(Received::default()));
        let down = Arc::new(AtomicBool::new(false));
        let posts = Arc::new(AtomicUsize::new(0));
        let answer = {
            let (received, down, posts) =
                (Arc::clone(&received), Arc::clone(&down), Arc::clone(&posts));
            move |request: &Request| -> (u16, String) {
                posts.fetch_add(1, Ordering::SeqCst);
                if down.load(Ordering::SeqCst) {
                    return (503, "{}".into());
                }
                let batch = (request.method == "POST" && request.path == "/api/v1/events")
                    .then(|| request.decoded_body())
                    .flatten()
                    .and_then(|body| serde_json::from_slice::<serde_json::Value>(&body).ok());
                let Some(batch) = batch else {
                    return (400, "{}".into());
                };
                let mut r = received.lock().expect("lock");
                r.hosts
                    .push(batch["host"].as_str().unwrap_or("").to_string());
                r.tokens.push(
                    request
                        .header("authorization")
                        .unwrap_or_default()
                        .to_string(),
                );
                for event in batch["events"].as_array().cloned().unwrap_or_default() {
                    r.total += 1;
                    let id = event["id"].as_str().unwrap_or("").to_string();
                    r.events.insert(id, event);
                }
                (200, "{}".into())
            }
        };
        let server = HttpStandIn::start(Arc::new(answer)).expect("the collector stand-in listens");
        Self {
            url: server.url(),
            server,
            received,
            down,
            posts,
        }
    }

    /// Stops listening and closes every connection: connections are refused from now on.
    pub fn stop(&mut self) {
        self.server.stop();
    }

    /// Listens again on the same port, keeping what was received.
    pub fn restart(&mut self) {
        self.server
            .restart()
            .unwrap_or_else(|e| panic!("cannot listen on {} again: {e}", self.url));
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
        // The socket's directory is visible inside sandboxes, so that a sandboxed process
        // can try it: cordond itself must refuse it.
        let run = dir.path().join("run");
        std::fs::create_dir(&run).expect("run dir");
        // The shipped offline-tool profile, plus the copied binaries and the socket.
        std::fs::write(
            profiles.join("test-agent.toml"),
            format!(
                "[profile]\nname = \"test-agent\"\nextends = [\"offline-tool\"]\n\n[filesystem]\nread = [\"{b}\", \"{r}\"]\nexec = [\"{b}\"]\n",
                b = bin.display(),
                r = run.display()
            ),
        )
        .expect("profile");
        let socket = run.join("cordon.sock");
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

    /// Writes the profile `net-agent`: `test-agent` that may reach one loopback server (on
    /// 127.0.0.2, TCP, accepting and dropping every connection), and nothing else; returns
    /// the server's port.
    pub fn net_agent(&self) -> u16 {
        let server = std::net::TcpListener::bind("127.0.0.2:0").expect("listen");
        let port = server.local_addr().expect("addr").port();
        std::thread::spawn(move || for _ in server.incoming() {});
        std::fs::write(
            self.dir.path().join("profiles/net-agent.toml"),
            format!(
                "[profile]\nname = \"net-agent\"\nextends = [\"test-agent\"]\n\n[network]\negress = [{{ cidr = \"127.0.0.2/32\", ports = [{port}], proto = \"tcp\" }}]\n"
            ),
        )
        .expect("profile");
        port
    }

    /// `cordon run [--quiet] -p test-agent -- probe ARGS` as `uid`, through this daemon.
    pub fn probe_command(&self, uid: u32, gid: u32, quiet: bool, args: &[&str]) -> Command {
        let probe = self.bin.join("probe");
        let mut argv = vec!["run"];
        if quiet {
            argv.push("--quiet");
        }
        argv.extend(["-p", "test-agent", "--", probe.to_str().expect("utf-8")]);
        argv.extend_from_slice(args);
        self.cordon(uid, gid, &argv)
    }

    /// `cordon run -p test-agent -- probe ARGS` as nobody, through this daemon.
    pub fn run_probe(&self, args: &[&str]) -> Output {
        self.probe_command(NOBODY, NOGROUP, false, args)
            .output()
            .expect("cordon run")
    }

    /// The journal's events.
    pub fn journal_events(&self) -> Vec<serde_json::Value> {
        read_jsonl(&self.journal)
    }

    /// Waits until `done` holds, polling; fails with `what` after `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, done: impl Fn() -> bool) {
        super::wait_until(what, timeout, || done().then_some(()));
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

/// A child (a `cordon run`) that a failing test does not leave behind: killed on drop, and
/// its sandbox with it.
pub struct KillOnDrop(pub Child);

impl KillOnDrop {
    /// What the process wrote on its stderr (piped) until it closed it: all of it, once the
    /// process has ended.
    pub fn stderr_text(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut stderr) = self.0.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        }
        text
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
