//! The responders' console in a real headless Chromium (Debian's `chromium`, driven over
//! WebDriver by `chromedriver`), against a real collector and a host's real cordond with a
//! real sandbox: a viewer signs in, sees the violations at once and over time, and no action;
//! the sandbox's session, its timeline paged both ways, filtered and searched; a responder
//! freezes, thaws, isolates, releases and kills it, the buttons following its state. The
//! screenshots of `docs/console/` are taken here, at a desktop's and a phone's width.

mod common;

use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::collector::{free_port, Collector, Db};
use common::require_root;
use fantoccini::elements::Element;
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
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
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

/// The console as a test sees it: waits for what it shows, clicks, reads.
struct Page {
    b: Client,
}

impl Page {
    async fn wait(&self, css: &str) -> Element {
        match self
            .b
            .wait()
            .at_most(Duration::from_secs(45))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(found) => found,
            Err(e) => {
                let shown = match self.b.find(Locator::Css("main")).await {
                    Ok(main) => main.text().await.unwrap_or_default(),
                    Err(_) => String::new(),
                };
                panic!("no {css} on the page ({e}); it shows:\n{shown}")
            }
        }
    }

    async fn text(&self, css: &str) -> String {
        self.wait(css).await.text().await.expect("text")
    }

    async fn click(&self, css: &str) {
        self.wait(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// How many elements match now.
    async fn count(&self, css: &str) -> usize {
        self.b
            .find_all(Locator::Css(css))
            .await
            .expect("find")
            .len()
    }

    /// The value `script` returns.
    async fn js(&self, script: &str) -> serde_json::Value {
        self.b.execute(script, vec![]).await.expect("script")
    }

    /// Clicks `css` and waits for the timeline that replaces the one shown.
    async fn turn(&self, css: &str) {
        self.mark_timeline().await;
        self.click(css).await;
        self.wait("#timeline-page:not([data-old])").await;
    }

    /// Chooses `value` in the timeline's filter `css` and waits for the timeline it shows.
    async fn choose(&self, css: &str, value: &str) {
        self.mark_timeline().await;
        self.wait(css)
            .await
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("choose {value:?} in {css}: {e}"));
        self.wait("#timeline-page:not([data-old])").await;
    }

    /// Marks the timeline shown now, to tell the next one from it.
    async fn mark_timeline(&self) {
        self.wait("#timeline-page").await;
        self.js("document.getElementById('timeline-page').setAttribute('data-old', '')")
            .await;
    }

    /// The `seq` of each row of the timeline, top to bottom.
    async fn rows(&self) -> Vec<i64> {
        let seqs = self
            .js("return [...document.querySelectorAll('#timeline-page tbody tr')].map((r) => Number(r.dataset.seq))")
            .await;
        serde_json::from_value(seqs).expect("seqs")
    }

    /// The action buttons shown, in order.
    async fn buttons(&self) -> Vec<String> {
        let names = self
            .js("return [...document.querySelectorAll('#controls button[data-action]')].map((b) => b.dataset.action)")
            .await;
        serde_json::from_value(names).expect("names")
    }

    /// A chart's buckets: `(count, bars)`, and the total its caption says.
    async fn chart(&self, css: &str) -> (Vec<(i64, usize)>, i64) {
        self.wait(css).await;
        let v = self
            .js(&format!(
                "const c = document.querySelector(\"{css}\");\n\
                 return {{ total: Number(c.dataset.total), buckets: [...c.querySelectorAll('g.bucket')]\n\
                 .map((g) => [Number(g.dataset.count), g.querySelectorAll('rect.bar').length]) }};"
            ))
            .await;
        (
            serde_json::from_value(v["buckets"].clone()).expect("buckets"),
            v["total"].as_i64().expect("total"),
        )
    }

    /// Shows the console `width` by `height` and reloads it, so that it is laid out for it.
    async fn resize(&self, width: u32, height: u32) {
        self.b
            .set_window_size(width, height)
            .await
            .expect("window size");
        self.b.refresh().await.expect("reload");
        self.js("window.scrollTo(0, 0)").await;
    }

    /// That nothing is wider than the window (no sideways scrolling on a phone).
    async fn fits(&self, what: &str) {
        let widths = self
            .js("return [document.documentElement.scrollWidth, window.innerWidth]")
            .await;
        let (page, window) = (widths[0].as_i64(), widths[1].as_i64());
        assert!(
            page <= window,
            "{what}: the page is {page:?} px wide in a window of {window:?}"
        );
    }

    /// Saves what the window shows as `docs/console/NAME.png`.
    async fn screenshot(&self, name: &str) {
        let png = self.b.screenshot().await.expect("screenshot");
        let dir = common::repo().join("docs/console");
        std::fs::create_dir_all(&dir).expect("docs/console");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("save the screenshot");
    }

    /// Asks for `action` on `sandbox`, confirms it, and waits until the host has done it.
    async fn act(&self, action: &str, sandbox: &str) -> String {
        self.click(&format!("#controls button[data-action='{action}']"))
            .await;
        let question = self.text("#confirm-text").await;
        assert!(
            question.contains(sandbox) && question.contains("web-7"),
            "{question}"
        );
        self.click("#confirm-yes").await;
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let status = self.text("#command-status").await;
            if status.contains("done") {
                return status;
            }
            assert!(
                !status.contains("failed")
                    && !status.contains("refused")
                    && !status.contains("expired"),
                "{action}: {status}"
            );
            assert!(Instant::now() < until, "{action} did not finish: {status}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the buttons are `expected`.
    async fn offers(&self, expected: &[&str]) {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let shown = self.buttons().await;
            if shown == expected {
                return;
            }
            assert!(
                Instant::now() < until,
                "the console offers {shown:?}, not {expected:?}: {}",
                self.text("#controls").await
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn sign_in(&self, url: &str, secret: &str) {
        self.b.goto(url).await.expect("the console loads");
        self.wait("#token")
            .await
            .send_keys(secret)
            .await
            .expect("type the token");
        self.click("#sign-in-form button").await;
    }
}

/// The violation kinds, as the API takes them.
const VIOLATIONS: &str = "kind=network_denied,dns_denied,syscall_denied,file_denied,other_denied";

#[test]
fn a_viewer_and_a_responder_work_from_the_console() {
    if !require_root("a_viewer_and_a_responder_work_from_the_console") {
        return;
    }
    // An output whose receiver is not there: the console says it fails, and why.
    let secret = tempfile::NamedTempFile::new().expect("secret");
    std::fs::write(secret.path(), "s3cret").expect("secret");
    let dead = free_port();
    let c = Collector::start(
        Db::Sqlite,
        &format!(
            "[[output]]\nname = \"siem\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{dead}/hook\"\nsecret_file = \"{}\"\n",
            secret.path().display()
        ),
    );
    let viewer = c.token("alice", "viewer", None);
    let responder = c.token("bob", "responder", None);
    let mut d = c.host("web-7");
    // A profile whose network is the policy's: one to isolate and release.
    d.net_agent();
    d.start();
    // An audited sandbox that makes three refused calls (refused even in audit), reads 140
    // files of the host its profile does not show (let through, and reported: more than a
    // page of the timeline), then waits.
    let elsewhere = tempfile::Builder::new()
        .prefix("cordon-e2e-console-")
        .tempdir_in("/var/tmp")
        .expect("a host directory");
    for i in 1..=140 {
        std::fs::write(elsewhere.path().join(format!("f-{i:03}")), "notes").expect("a file");
    }
    let script = format!(
        "{p} deny-each 3; {p} read-each {dir}/f-*; exec sleep 600",
        p = d.bin.join("probe").display(),
        dir = elsewhere.path().display()
    );
    let mut sandbox = common::daemon::KillOnDrop(
        d.cordon(
            0,
            0,
            &[
                "run",
                "--quiet",
                "--audit",
                "-p",
                "net-agent",
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
    let name = common::wait_until(
        "the sandbox and its violations at the collector",
        Duration::from_secs(60),
        || {
            // Which sandbox read the files (the host may run others, of other tests).
            let read = c.all_events(
                &viewer,
                &format!("kind=file_denied&q={}/f-", elsewhere.path().display()),
            );
            let name = read.first()?["sandbox"].as_str()?.to_string();
            let (_, hosts) = c.get(Some(&viewer), "/api/v1/hosts");
            hosts["hosts"][0]["sandboxes"]
                .as_array()?
                .iter()
                .find(|s| s["name"] == name.as_str())?;
            let files = c.all_events(&viewer, &format!("sandbox={name}&kind=file_denied&q=/f-"));
            let calls = c.all_events(&viewer, &format!("sandbox={name}&kind=syscall_denied"));
            let slept = c.all_events(&viewer, &format!("sandbox={name}&kind=exec&q=sleep"));
            (files.len() >= 140 && calls.len() == 3 && !slept.is_empty()).then_some(name)
        },
    );
    // A mistyped `cordon isolate` on the host: refused there, and no sandbox in the console.
    let typo = format!("{}9", &name[..name.len() - 1]);
    let out = d
        .cordon(0, 0, &["isolate", &typo])
        .output()
        .expect("cordon isolate");
    assert!(!out.status.success(), "isolating {typo} worked");
    common::wait_until(
        "the refused action at the collector",
        Duration::from_secs(20),
        || {
            let found = c.all_events(&viewer, &format!("sandbox={typo}&kind=responder_action"));
            (!found.is_empty()).then_some(())
        },
    );
    // Nor may a responder at the collector order one for it.
    let (status, refused) = c.post(
        Some(&responder),
        "/api/v1/commands",
        &serde_json::json!({"host": "web-7", "sandbox": typo, "action": "isolate"}),
    );
    assert_eq!(status, 404, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains(&format!("did you mean {name:?}?"))),
        "{refused}"
    );
    let violations = c
        .all_events(&viewer, &format!("sandbox={name}&{VIOLATIONS}"))
        .len() as i64;
    let page = |query: &str| -> Vec<i64> {
        let (status, page) = c.get(
            Some(&viewer),
            &format!("/api/v1/events?host=web-7&sandbox={name}&limit=100&{query}"),
        );
        assert_eq!(status, 200, "{page}");
        page["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| e["seq"].as_i64().expect("seq"))
            .collect()
    };
    let (_, first) = c.get(
        Some(&viewer),
        &format!("/api/v1/events?host=web-7&sandbox={name}&limit=100"),
    );
    let older = first["next"]
        .as_str()
        .expect("more than a page")
        .to_string();

    let driver = Driver::start();
    let profile = tempfile::tempdir().expect("browser profile");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let p = Page {
            b: driver.browser(profile.path()).await,
        };
        p.b.set_window_size(1440, 900).await.expect("window size");

        // A viewer: at sign-in, the violations stored before are there at once, with their
        // date and how severe each is, in words.
        p.sign_in(&c.url, &viewer).await;
        // (The newest 50: reads of the files, which the audit let through.)
        let feed = p.text("#feed-rows tr[data-kind='file_denied']").await;
        assert!(
            feed.contains("audit, let through: fs.read_file of"),
            "{feed}"
        );
        assert!(feed.contains("20"), "a date with its year: {feed}");
        assert_eq!(
            p.text("#feed-rows tr[data-kind='file_denied'] .sev").await,
            "low"
        );
        assert_eq!(p.text("#who").await, "alice (viewer)");
        // Every violation is in the chart, in the bucket of its time, as bars by severity.
        // (Other tests' sandboxes on this machine may add theirs.)
        let (buckets, total) = p.chart("#chart-all").await;
        assert!(total >= violations, "{total} of {violations}");
        assert_eq!(buckets.iter().map(|(n, _)| n).sum::<i64>(), total);
        assert!(
            buckets.iter().all(|(n, bars)| (*n == 0) == (*bars == 0)),
            "a bar for an empty bucket, or none for a full one: {buckets:?}"
        );
        assert!(buckets.len() >= 48, "{} buckets for a day", buckets.len());
        // The output, failing: said with the receiver's address and the error.
        let output = p.text("tr[data-output='siem']").await;
        assert!(
            output.contains("webhook") && output.contains(&format!("127.0.0.1:{dead}")),
            "{output}"
        );
        assert!(output.contains("failing"), "{output}");
        p.fits("hosts").await;
        p.screenshot("hosts-desktop").await;

        // The host: its chart, its sandboxes (not the mistyped one), each with its session.
        p.click("a[data-host='web-7']").await;
        let (buckets, total) = p.chart("#chart-host").await;
        assert!(total >= violations, "{total} of {violations}");
        assert_eq!(buckets.iter().map(|(n, _)| n).sum::<i64>(), total);
        let session = p.text("td[data-session]").await;
        assert_eq!(session.len(), 36, "a UUID: {session:?}");
        assert_eq!(p.count(&format!("a[data-sandbox='{typo}']")).await, 0);
        p.screenshot("host-desktop").await;
        p.click(&format!("a[data-sandbox='{name}']")).await;

        // The sandbox: who ran what under which rules, since when; its violations over the
        // session; no action for a viewer, and why.
        let facts = p.text(".session .facts").await;
        for fact in [
            "root",
            "deny-each 3",
            "net-agent",
            "sha256",
            "running",
            &session,
        ] {
            assert!(facts.contains(fact), "no {fact:?} in {facts}");
        }
        let (buckets, total) = p.chart("figure[id^='chart-session-']").await;
        assert_eq!(total, violations);
        assert_eq!(buckets.iter().map(|(n, _)| n).sum::<i64>(), violations);
        assert!(
            buckets.iter().all(|(n, bars)| (*n == 0) == (*bars == 0)),
            "{buckets:?}"
        );
        assert!(p.buttons().await.is_empty());
        assert!(p.text("#actions-note").await.contains("viewer"));
        let tree = p.text(".tree li").await;
        assert!(tree.contains("violations"), "{tree}");

        // The timeline, newest first, a page at a time, both ways.
        p.wait("#timeline-page").await;
        assert_eq!(p.rows().await, page(""));
        p.fits("sandbox").await;
        p.screenshot("sandbox-desktop").await;
        p.turn("#pager-top [data-page='forward']").await;
        assert_eq!(p.rows().await, page(&format!("cursor={older}")));
        p.turn("#pager-top [data-page='back']").await;
        assert_eq!(p.rows().await, page(""));
        p.js("document.getElementById('timeline').scrollIntoView()")
            .await;
        p.screenshot("timeline-desktop").await;
        // Back at the newest: nothing newer to go to.
        assert_eq!(p.count("#pager-top a[data-page='back']").await, 0);
        assert_eq!(p.count("#pager-top a[data-page='forward']").await, 1);

        // What an audit let through reads as such, not as refused.
        let row = p.wait("tr[data-kind='file_denied']").await;
        let text = row.text().await.expect("row text");
        assert!(
            text.contains(&format!(
                "audit, let through: fs.read_file of {}/f-",
                elsewhere.path().display()
            )),
            "{text}"
        );
        let class = row.attr("class").await.expect("class").unwrap_or_default();
        assert!(class.contains("audited"), "{class}");

        // Filters: a kind, a least severity, free text; each narrows the rows.
        p.choose("#filter-kind", "syscall_denied").await;
        assert_eq!(p.rows().await, page("kind=syscall_denied"));
        assert_eq!(
            p.count("#timeline-page tbody tr[data-kind='syscall_denied']")
                .await,
            3
        );
        p.choose("#filter-kind", "").await;
        p.choose("#filter-severity", "high").await;
        let high = page("severity=high");
        assert_eq!(p.rows().await, high);
        assert_eq!(
            p.count("#timeline-page tbody tr[data-severity='high']")
                .await,
            high.len()
        );
        p.turn("#filter-clear").await;
        p.wait("#filter-q")
            .await
            .send_keys("f-042")
            .await
            .expect("search");
        p.turn("#timeline-filters button[type='submit']").await;
        assert_eq!(p.rows().await, page("q=f-042"));
        assert_eq!(p.rows().await.len(), 1);
        assert!(p.text("#timeline-page tbody tr").await.contains("/f-042"));
        // The most severe first, on request: the refused keyctl calls lead.
        p.turn("#filter-clear").await;
        p.choose("#filter-order", "severity").await;
        assert_eq!(
            p.wait("#timeline-page tbody tr")
                .await
                .attr("data-severity")
                .await
                .expect("attr")
                .as_deref(),
            Some("high")
        );
        // No stray "null" where something is absent.
        let shown = p.text("#view").await;
        assert!(!shown.contains("null"), "{shown}");

        // The whole timeline can be taken away: what the CSV button hands the browser.
        let saved =
            p.b.execute_async(
                "const [host, sandbox, done] = arguments;\n\
                 const make = URL.createObjectURL;\n\
                 URL.createObjectURL = (blob) => { blob.text().then(done); return make(blob); };\n\
                 download(host, sandbox, 'csv').catch((e) => done('failed: ' + e.message));",
                vec![serde_json::json!("web-7"), serde_json::json!(name)],
            )
            .await
            .expect("the download runs");
        let csv = saved.as_str().unwrap_or_default();
        assert!(csv.starts_with("host,time,sandbox,"), "{csv}");
        assert!(
            csv.contains(",syscall_denied,") && csv.contains(",file_denied,"),
            "{csv}"
        );

        // At a phone's width: nothing sideways, tables as cards.
        p.b.goto(&format!("{}/#/host/web-7/sandbox/{name}", c.url))
            .await
            .expect("sandbox");
        p.resize(390, 844).await;
        p.wait("#timeline-page").await;
        p.fits("sandbox on a phone").await;
        p.screenshot("sandbox-phone").await;
        p.js("document.getElementById('timeline').scrollIntoView()")
            .await;
        p.screenshot("timeline-phone").await;
        p.b.goto(&format!("{}/#/", c.url)).await.expect("hosts");
        p.wait("#chart-all").await;
        p.js("window.scrollTo(0, 0)").await;
        p.fits("hosts on a phone").await;
        p.screenshot("hosts-phone").await;
        p.click("#sign-out").await;

        // A responder: the actions the sandbox's state allows, each confirmed, each followed
        // to its result, the buttons changing with the state.
        p.b.set_window_size(1440, 900).await.expect("window size");
        p.sign_in(&c.url, &responder).await;
        p.wait("#feed-rows").await;
        p.b.goto(&format!("{}/#/host/web-7/sandbox/{name}", c.url))
            .await
            .expect("sandbox");
        p.offers(&["isolate", "freeze", "evidence", "kill"]).await;
        // Cancelled: nothing is sent.
        p.click("#controls button[data-action='kill']").await;
        p.screenshot("confirm-desktop").await;
        p.click("#confirm-no").await;
        assert_eq!(p.text("#command-status").await, "");
        assert_eq!(
            c.get(Some(&viewer), "/api/v1/commands").1["commands"],
            serde_json::json!([])
        );

        let done = p.act("freeze", &name).await;
        assert!(
            done.contains("queued") && done.contains("ms on the host"),
            "{done}"
        );
        p.offers(&["isolate", "thaw", "evidence", "kill"]).await;
        assert!(p.text("#sandbox-state").await.contains("frozen"));
        // Evidence of the frozen sandbox: collected by its host, listed with its session,
        // downloadable; the sandbox stays frozen.
        p.act("evidence", &name).await;
        p.wait("[data-evidence] li").await;
        let listed = p.text("[data-evidence]").await;
        assert!(listed.contains("manifest"), "{listed}");
        let size = p
            .js("const id = document.querySelector('[data-evidence] li').dataset.id; \
                 return fetch('/api/v1/evidence/' + id, { headers: { Authorization: 'Bearer ' + sessionStorage.getItem('cordon-token') } }) \
                 .then((r) => r.blob()).then((b) => b.size)")
            .await;
        assert!(size.as_u64().unwrap_or(0) > 100, "the archive: {size:?}");
        assert!(p.text("#sandbox-state").await.contains("frozen"));
        p.offers(&["isolate", "thaw", "evidence", "kill"]).await;
        p.screenshot("responder-desktop").await;
        p.resize(390, 844).await;
        p.offers(&["isolate", "thaw", "evidence", "kill"]).await;
        p.fits("a responder's sandbox on a phone").await;
        p.screenshot("responder-phone").await;
        p.b.set_window_size(1440, 900).await.expect("window size");
        p.act("thaw", &name).await;
        p.offers(&["isolate", "freeze", "evidence", "kill"]).await;
        p.act("isolate", &name).await;
        p.offers(&["release", "freeze", "evidence", "kill"]).await;
        assert!(p.text("#sandbox-state").await.contains("isolated"));
        p.act("release", &name).await;
        p.offers(&["isolate", "freeze", "evidence", "kill"]).await;
        p.act("kill", &name).await;
        p.offers(&[]).await;
        assert!(p.text("#actions-note").await.contains("does not run"));
        assert!(p.text("#sandbox-state").await.contains("Not running"));
        assert_eq!(p.count("#commands tr[data-command]").await, 6);
        // Once it ended, its session says so.
        p.b.refresh().await.expect("reload");
        let facts = p.text(".session .facts").await;
        assert!(facts.contains("ended"), "{facts}");
        p.b.clone().close().await.expect("close the browser");
    });
    // And the host really did it all, recorded as bob's.
    let ended = common::wait_until("the sandbox to end", Duration::from_secs(10), || {
        sandbox.0.try_wait().expect("wait")
    });
    assert!(!ended.success(), "a killed sandbox exited well: {ended:?}");
    let actions = common::wait_until("the responder actions", Duration::from_secs(20), || {
        let found = c.all_events(&viewer, &format!("sandbox={name}&kind=responder_action"));
        (found.len() == 6).then_some(found)
    });
    for action in &actions {
        assert_eq!(action["actor"]["name"], "bob", "{action}");
        assert_eq!(action["result"], "done", "{action}");
    }
}
