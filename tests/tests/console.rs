//! The responders' console in a real headless Chromium (Debian's `chromium`, driven over
//! WebDriver by `chromedriver`): sign in, host -> sandbox (its timeline shows the violation),
//! isolate with a confirmation, and the host's real cordond cuts the sandbox's network.

mod common;

use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::collector::{free_port, Collector, Db};
use common::require_root;
use fantoccini::{Client, ClientBuilder, Locator};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver on a free loopback port, stopped on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Self {
        for tool in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(tool).is_file(),
                "{tool} is missing: `cargo xtask setup` installs Debian's chromium and chromium-driver"
            );
        }
        let port = free_port();
        // A process group of its own, so that the browsers it starts go with it.
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let until = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < until, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port }
    }

    /// A headless browser with a profile of its own that talks to nothing but localhost.
    async fn browser(&self, profile: &std::path::Path) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }),
        );
        ClientBuilder::rustls()
            .expect("TLS roots")
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a Chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.child.wait();
    }
}

#[test]
fn a_responder_clicks_from_host_to_sandbox_and_isolates_it() {
    if !require_root("a_responder_clicks_from_host_to_sandbox_and_isolates_it") {
        return;
    }
    let c = Collector::start(Db::Sqlite, "");
    let responder = c.token("bob", "responder", None);
    let mut d = c.host("web-7");
    d.start();
    // An audited sandbox that commits three seccomp violations (refused even in audit),
    // reads a file of the host its profile does not show (let through, and reported), then
    // waits.
    let probe = d.bin.join("probe");
    let elsewhere = tempfile::Builder::new()
        .prefix("cordon-e2e-console-")
        .tempdir_in("/var/tmp")
        .expect("a host directory");
    let notes = elsewhere.path().join("notes.txt");
    std::fs::write(&notes, "notes").expect("notes");
    let script = format!(
        "{p} deny-each 3; {p} read {n}; exec sleep 600",
        p = probe.display(),
        n = notes.display()
    );
    let _sandbox = common::daemon::KillOnDrop(
        d.cordon(
            0,
            0,
            &[
                "run",
                "--quiet",
                "--audit",
                "-p",
                "test-agent",
                "--",
                "/bin/sh",
                "-c",
                &script,
            ],
        )
        .stdout(Stdio::null())
        .spawn()
        .expect("cordon run"),
    );
    let sandbox_of = |network: &str| -> Option<String> {
        let (_, hosts) = c.get(Some(&responder), "/api/v1/hosts");
        hosts["hosts"][0]["sandboxes"]
            .as_array()?
            .iter()
            .find_map(|s| {
                (s["network"] == network)
                    .then(|| s["name"].as_str().unwrap_or_default().to_string())
            })
    };
    let until = Instant::now() + Duration::from_secs(30);
    let name = loop {
        let violations = c.all_events(&responder, "host=web-7&kind=syscall_denied");
        if let (Some(name), false) = (
            sandbox_of("none").or_else(|| sandbox_of("policy")),
            violations.is_empty(),
        ) {
            break name;
        }
        assert!(
            Instant::now() < until,
            "the host never reported its sandbox and violations"
        );
        std::thread::sleep(Duration::from_millis(200));
    };

    let driver = Driver::start();
    let profile = tempfile::tempdir().expect("browser profile");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let url = c.url.clone();
    let sandbox = name.clone();
    let secret = responder.clone();
    runtime.block_on(async move {
        let b = driver.browser(profile.path()).await;
        let wait = |css: String| {
            let b = b.clone();
            async move {
                b.wait()
                    .at_most(Duration::from_secs(45))
                    .for_element(Locator::Css(&css))
                    .await
                    .unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
            }
        };
        b.goto(&url).await.expect("the console loads");
        wait("#token".into())
            .await
            .send_keys(&secret)
            .await
            .expect("type the token");
        wait("#sign-in-form button".into())
            .await
            .click()
            .await
            .expect("sign in");
        // At sign-in, the violations stored before are there at once, with their date.
        let feed = wait("#feed-rows tr[data-kind='syscall_denied']".into())
            .await
            .text()
            .await
            .expect("feed row");
        assert!(feed.contains("syscall keyctl denied"), "{feed}");
        assert!(feed.contains("20"), "a date with its year: {feed}");
        // Hosts -> the host.
        let host = wait("a[data-host='web-7']".into()).await;
        let who = wait("#who".into()).await.text().await.expect("who");
        assert_eq!(who, "bob (responder)");
        host.click().await.expect("open the host");
        // The host's running sandboxes, each with its session -> the sandbox.
        let session = wait("td[data-session]".into())
            .await
            .text()
            .await
            .expect("session");
        assert_eq!(session.len(), 36, "a UUID: {session:?}");
        wait(format!("a[data-sandbox='{sandbox}']"))
            .await
            .click()
            .await
            .expect("open the sandbox");
        // Its timeline shows the violations, with who.
        let row = wait("tr[data-kind='syscall_denied']".into()).await;
        let text = row.text().await.expect("row text");
        assert!(
            text.contains("syscall keyctl denied") && text.contains("probe"),
            "{text}"
        );
        // What the audit let through reads as such, not as refused.
        let row = wait("tr[data-kind='file_denied']".into()).await;
        let text = row.text().await.expect("row text");
        assert!(
            text.contains(&format!(
                "audit, let through: fs.read_file of {}",
                notes.display()
            )),
            "{text}"
        );
        let class = row.attr("class").await.expect("class").unwrap_or_default();
        assert!(class.contains("audited"), "{class}");
        // The whole timeline can be taken away: what the CSV button hands the browser.
        wait("#timeline-export button[data-export='csv']".into()).await;
        let saved = b
            .execute_async(
                "const [host, sandbox, done] = arguments;\n\
                 const make = URL.createObjectURL;\n\
                 URL.createObjectURL = (blob) => { blob.text().then(done); return make(blob); };\n\
                 download(host, sandbox, 'csv').catch((e) => done('failed: ' + e.message));",
                vec![serde_json::json!("web-7"), serde_json::json!(sandbox)],
            )
            .await
            .expect("the download runs");
        let csv = saved.as_str().unwrap_or_default();
        assert!(csv.starts_with("host,time,sandbox,"), "{csv}");
        assert!(
            csv.contains(",syscall_denied,") && csv.contains(",file_denied,"),
            "{csv}"
        );
        // The most severe first, on request: the refused keyctl calls lead.
        wait("a[data-order='severity']".into())
            .await
            .click()
            .await
            .expect("order by severity");
        wait("#timeline-order [data-current='severity']".into()).await;
        let first = wait("#view table tbody tr".into()).await;
        let level = first.attr("data-severity").await.expect("attr");
        assert_eq!(level.as_deref(), Some("high"), "{:?}", first.text().await);
        b.back().await.expect("back to time order");
        // The time order's page, not elements of the one it replaces.
        wait("#timeline-order [data-current='time']".into()).await;
        let tree = wait(".tree li".into()).await.text().await.expect("tree");
        assert!(tree.contains("violations"), "{tree}");
        // Who ran what, and no stray "null" where something is absent.
        let facts = wait("#session".into()).await.text().await.expect("session");
        assert!(
            facts.contains("deny-each 3") && facts.contains("root") && facts.contains("sha256"),
            "{facts}"
        );
        let page = wait("#view".into()).await.text().await.expect("view");
        assert!(!page.contains("null"), "{page}");
        // Isolate, with a confirmation first.
        wait("button[data-action='isolate']".into())
            .await
            .click()
            .await
            .expect("isolate");
        let question = wait("#confirm-text".into())
            .await
            .text()
            .await
            .expect("question");
        assert!(
            question.contains(&sandbox) && question.contains("web-7"),
            "{question}"
        );
        wait("#confirm-yes".into())
            .await
            .click()
            .await
            .expect("confirm");
        let until = Instant::now() + Duration::from_secs(15);
        loop {
            let status = wait("#command-status".into())
                .await
                .text()
                .await
                .expect("status");
            if status.contains("done") {
                break;
            }
            assert!(
                !status.contains("failed") && !status.contains("refused"),
                "{status}"
            );
            assert!(
                Instant::now() < until,
                "the command did not finish: {status}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // The page shows the sandbox isolated once the host has reported it.
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let state = wait("#sandbox-state".into())
                .await
                .text()
                .await
                .unwrap_or_default();
            if state.contains("isolated") {
                break;
            }
            assert!(
                Instant::now() < until,
                "the console never showed the sandbox isolated: {state}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
            b.refresh().await.expect("reload");
        }
        b.close().await.expect("close the browser");
    });
    // And the host really did it: cordond reports the sandbox isolated.
    assert_eq!(sandbox_of("isolated").as_deref(), Some(name.as_str()));
    // Its record of who asked comes on its own way (the event path), so it is waited for.
    let actions = common::wait_until("the responder action", Duration::from_secs(20), || {
        let found = c.all_events(&responder, &format!("sandbox={name}&kind=responder_action"));
        (!found.is_empty()).then_some(found)
    });
    assert_eq!(actions.len(), 1, "{actions:?}");
    assert_eq!(actions[0]["actor"]["name"], "bob");
}
