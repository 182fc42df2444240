//! The real `cordon-collector` for tests, on SQLite or on a real PostgreSQL server that the
//! test starts (and stops) itself, and a small HTTP client for its API.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::cordon_bin;

/// One test per store: `NAME::sqlite` and `NAME::postgres`. The SQLite one needs no root
/// unless the test runs a cordond too (`on_both_stores!(NAME, root)`); the PostgreSQL one
/// runs its server as the `postgres` user, which takes root.
#[macro_export]
macro_rules! on_both_stores {
    ($name:ident) => {
        mod $name {
            #[test]
            fn sqlite() {
                super::$name(super::Db::Sqlite);
            }
            #[test]
            fn postgres() {
                if super::require_root(concat!(stringify!($name), "::postgres")) {
                    super::$name(super::Db::Postgres);
                }
            }
        }
    };
    ($name:ident, root) => {
        mod $name {
            #[test]
            fn sqlite() {
                if super::require_root(concat!(stringify!($name), "::sqlite")) {
                    super::$name(super::Db::Sqlite);
                }
            }
            #[test]
            fn postgres() {
                if super::require_root(concat!(stringify!($name), "::postgres")) {
                    super::$name(super::Db::Postgres);
                }
            }
        }
    };
}

/// Which store the collector runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

pub use cordon_testkit::Postgres;

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    cordon_testkit::free_port().expect("a free port")
}

/// A running `cordon-collector`.
pub struct Collector {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub url: String,
    pub db: Db,
    child: Option<Child>,
    _postgres: Option<Postgres>,
    /// Where its stderr goes, when not to the test's own.
    log: Option<PathBuf>,
}

pub fn collector_bin() -> PathBuf {
    cordon_bin().with_file_name("cordon-collector")
}

impl Collector {
    /// A collector on `db`, with `extra` appended to its config.
    pub fn start(db: Db, extra: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("cordon-collector-")
            .tempdir_in("/var/tmp")
            .expect("temp dir");
        // No fsync: durability buys a test nothing.
        let postgres = (db == Db::Postgres)
            .then(|| Postgres::start(&["fsync=off"]).expect("PostgreSQL starts"));
        let database_url = match &postgres {
            Some(pg) => pg.url(),
            None => format!("sqlite://{}/store/collector.db", dir.path().display()),
        };
        let port = free_port();
        let config = dir.path().join("collector.toml");
        std::fs::write(
            &config,
            format!("listen = \"127.0.0.1:{port}\"\ndatabase_url = \"{database_url}\"\n{extra}\n"),
        )
        .expect("config");
        let mut c = Self {
            dir,
            config,
            url: format!("http://127.0.0.1:{port}"),
            db,
            child: None,
            _postgres: postgres,
            log: None,
        };
        c.run();
        c
    }

    /// A collector on SQLite whose log the test reads ([`Collector::log`]).
    pub fn start_logged(extra: &str) -> Self {
        let mut c = Self::start(Db::Sqlite, extra);
        c.stop();
        c.log = Some(c.dir.path().join("collector.log"));
        c.run();
        c
    }

    /// What the collector logged (see [`Collector::start_logged`]).
    pub fn log(&self) -> String {
        let path = self
            .log
            .as_ref()
            .expect("a collector started with start_logged");
        std::fs::read_to_string(path).expect("the collector's log")
    }

    /// Starts the server and waits until it answers.
    pub fn run(&mut self) {
        assert!(self.child.is_none(), "the collector runs already");
        let child = Command::new(collector_bin())
            .arg("--config")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(match &self.log {
                Some(path) => Stdio::from(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .expect("log file"),
                ),
                None => Stdio::inherit(),
            })
            .env("NO_COLOR", "1")
            .spawn()
            .expect("cordon-collector starts");
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(30);
        while self.get(None, "/healthz").0 != 200 {
            assert!(Instant::now() < until, "the collector did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `cordon-collector ARGS` with this collector's config.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(collector_bin())
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .expect("cordon-collector runs")
    }

    /// Issues a token with the CLI; returns its secret.
    pub fn token(&self, name: &str, role: &str, host: Option<&str>) -> String {
        let mut args = vec!["token", "issue", "--name", name, "--role", role];
        if let Some(h) = host {
            args.extend(["--host", h]);
        }
        let out = self.cli(&args);
        assert!(
            out.status.success(),
            "token issue: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_string()
    }

    fn request(&self, method: &str, token: Option<&str>, path: &str) -> ureq::Request {
        let mut r =
            ureq::request(method, &format!("{}{path}", self.url)).timeout(Duration::from_secs(30));
        if let Some(t) = token {
            r = r.set("Authorization", &format!("Bearer {t}"));
        }
        r
    }

    /// GET: the status and the JSON body (`null` when it is not JSON).
    pub fn get(&self, token: Option<&str>, path: &str) -> (u16, serde_json::Value) {
        answer(self.request("GET", token, path).call())
    }

    /// GET: the status and the body as text.
    pub fn get_text(&self, token: Option<&str>, path: &str) -> (u16, String) {
        match self.request("GET", token, path).call() {
            Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(status, r)) => (status, r.into_string().unwrap_or_default()),
            Err(e) => panic!("GET {path}: {e}"),
        }
    }

    /// GET: the status, the body as text, and the value of `header` (if sent).
    pub fn get_with_header(
        &self,
        token: Option<&str>,
        path: &str,
        header: &str,
    ) -> (u16, String, Option<String>) {
        match self.request("GET", token, path).call() {
            Ok(r) => {
                let value = r.header(header).map(str::to_string);
                (r.status(), r.into_string().unwrap_or_default(), value)
            }
            Err(ureq::Error::Status(status, r)) => {
                (status, r.into_string().unwrap_or_default(), None)
            }
            Err(e) => panic!("GET {path}: {e}"),
        }
    }

    /// POST a JSON body.
    pub fn post(
        &self,
        token: Option<&str>,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        answer(
            self.request("POST", token, path)
                .set("Content-Type", "application/json")
                .send_bytes(body.to_string().as_bytes()),
        )
    }

    /// POST raw bytes, gzip-compressed when `gzip`.
    pub fn post_raw(
        &self,
        token: Option<&str>,
        path: &str,
        body: &[u8],
        gzip: bool,
    ) -> (u16, serde_json::Value) {
        let mut r = self
            .request("POST", token, path)
            .set("Content-Type", "application/json");
        let body = if gzip {
            r = r.set("Content-Encoding", "gzip");
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(body).expect("gzip");
            gz.finish().expect("gzip")
        } else {
            body.to_vec()
        };
        answer(r.send_bytes(&body))
    }

    pub fn delete(&self, token: Option<&str>, path: &str) -> (u16, serde_json::Value) {
        answer(self.request("DELETE", token, path).call())
    }

    /// Every event the query API has (all pages), newest first.
    pub fn all_events(&self, token: &str, query: &str) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        let mut cursor = String::new();
        loop {
            let (status, page) = self.get(
                Some(token),
                &format!("/api/v1/events?limit=1000&{query}{cursor}"),
            );
            assert_eq!(status, 200, "{page}");
            out.extend(page["events"].as_array().expect("events").iter().cloned());
            match page["next"].as_str() {
                Some(next) => cursor = format!("&cursor={next}"),
                None => return out,
            }
        }
    }

    /// The live stream: each event of `/api/v1/stream?QUERY` arrives on the receiver. The
    /// collector subscribes the stream before it answers: every event stored after this
    /// returns arrives.
    pub fn stream(&self, token: &str, query: &str) -> mpsc::Receiver<serde_json::Value> {
        let response = self
            .request("GET", Some(token), &format!("/api/v1/stream?{query}"))
            .timeout(Duration::from_secs(600))
            .call()
            .expect("stream opens");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(response.into_reader()).lines() {
                let Ok(line) = line else { return };
                if let Some(data) = line.strip_prefix("data:") {
                    // A line that is not JSON reaches the test as such, and fails it there.
                    let v = serde_json::from_str(data.trim()).unwrap_or_else(|e| {
                        serde_json::json!({ "malformed stream line": data, "error": e.to_string() })
                    });
                    if tx.send(v).is_err() {
                        return;
                    }
                }
            }
        });
        rx
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = child.wait();
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A cordond for host `name`, reporting to this collector with a host token of its own
    /// (not started).
    pub fn host(&self, name: &str) -> super::daemon::Daemon {
        let mut d = super::daemon::Daemon::new("");
        let token_file = d.dir.path().join("collector.token");
        std::fs::write(&token_file, self.token(name, "host", Some(name))).expect("token");
        let config = std::fs::read_to_string(&d.config).expect("config");
        let config = config.replacen(
            "host_id = \"e2e-host\"",
            &format!("host_id = \"{name}\""),
            1,
        );
        std::fs::write(&d.config, config).expect("config");
        d.append_config(&format!(
            "[collector]\nurl = \"{}\"\ntoken_file = \"{}\"\n",
            self.url,
            token_file.display()
        ));
        d
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn answer(result: Result<ureq::Response, ureq::Error>) -> (u16, serde_json::Value) {
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(ureq::Error::Transport(t)) => return (0, serde_json::Value::String(t.to_string())),
    };
    let status = response.status();
    let text = response.into_string().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

/// A synthetic event of the schema (for ingest tests): a file denial at `time`.
pub fn file_event(id: &str, sandbox: &str, path: &str, time: &str) -> serde_json::Value {
    serde_json::json!({
        "v": 1, "id": id, "time": time, "sandbox": sandbox,
        "profile": sandbox.rsplitn(3, '-').nth(2).unwrap_or(sandbox),
        "process": {"pid": 7, "ppid": 1, "comm": "cat", "uid": 1000},
        "kind": "file_denied", "path": path, "access": "fs.read_file"
    })
}

/// A batch body.
pub fn batch(host: &str, events: &[serde_json::Value]) -> Vec<u8> {
    serde_json::json!({"v": 1, "host": host, "events": events})
        .to_string()
        .into_bytes()
}
