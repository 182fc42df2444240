//! cordond: the per-host service.
//!
//! It loads (or adopts) the eBPF programs once, serves the control API on a unix socket
//! ([`server`]), moves the events every sandbox's watcher spools into the local journal and
//! on to the collector ([`crate::export::pipeline`]), and starts sandboxes for users who are
//! not root (each in a `cordon __worker` of its own, which outlives cordond: stopping or
//! restarting the daemon leaves running sandboxes enforced and watched, and the new daemon
//! picks their spool files up where the old one left them).
//!
//! Signals: SIGHUP reloads the configuration (bad config: the old one stays, and the error is
//! logged and shown in the service status); SIGTERM and SIGINT stop it.

mod commands;
pub mod config;
pub mod evidence;
pub mod notify;
mod server;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use nix::sys::signal::{SigSet, Signal};

use crate::api::peer::Groups;
use crate::ebpf::Kernel;
use crate::event::{Event, What};
use crate::export::pipeline::{self, Destination, Pipeline};
use crate::export::spool::{SpoolConfig, SpoolWriter};
use config::Config;

/// The configuration as the daemon holds it: replaced whole on reload.
pub type SharedConfig = Arc<LiveConfig>;

/// The configuration of the moment, read (and, on reload, replaced) through its lock.
pub struct LiveConfig(RwLock<Arc<Config>>);

impl std::ops::Deref for LiveConfig {
    type Target = RwLock<Arc<Config>>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// The pipeline's threads read the configuration as it is at each step.
impl pipeline::Settings for LiveConfig {
    fn journal(&self) -> (PathBuf, u64, u32) {
        let cfg = self
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (
            cfg.journal_path.clone(),
            cfg.journal_max_bytes,
            cfg.journal_keep,
        )
    }

    fn collector(&self) -> Option<Destination> {
        let cfg = Arc::clone(
            &self
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let collector = cfg.collector.as_ref()?;
        Some(Destination {
            url: collector.url.clone(),
            token: cfg.collector_token().map_err(|e| e.to_string()),
            host_id: cfg.host_id.clone(),
            batch_max_events: collector.batch_max_events,
        })
    }

    fn delivers(&self) -> bool {
        let cfg = self
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cfg.collector.is_some()
    }
}

#[derive(Debug, Parser)]
#[command(name = "cordond", version, about = "Cordon's per-host service")]
struct Args {
    /// The configuration file.
    #[arg(long, short, default_value = config::DEFAULT_PATH, value_name = "FILE")]
    config: PathBuf,
    /// Check the configuration and exit.
    #[arg(long)]
    check: bool,
}

/// What every part of the daemon shares.
pub struct Daemon {
    pub config: SharedConfig,
    groups: RwLock<Groups>,
    pub pipeline: Arc<Pipeline>,
    /// The daemon's own events (responder actions).
    own: Mutex<Option<SpoolWriter>>,
    /// Cordon's eBPF programs, opened at start (see [`Daemon::kernel`]).
    kernel: Mutex<Result<Arc<Kernel>, String>>,
    started: Instant,
    started_at: SystemTime,
    /// `cordon`, beside this executable: what sandboxes are run with.
    cordon: PathBuf,
    stopping: std::sync::atomic::AtomicBool,
}

impl Daemon {
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .map(|c| Arc::clone(&c))
            .unwrap_or_else(|e| Arc::clone(&e.into_inner()))
    }

    fn groups(&self) -> Groups {
        // A panic while reloading leaves the groups as they were: still the right ones.
        match self.groups.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Records an event of the daemon's own (it reaches the journal and the collector like
    /// every other).
    pub fn record(&self, sandbox: &str, what: What) {
        self.record_in(sandbox, crate::contain::session_of(sandbox), what);
    }

    /// [`Daemon::record`] for the session `session` of the sandbox.
    pub(crate) fn record_in(&self, sandbox: &str, session: Option<uuid::Uuid>, what: What) {
        let mut event = Event::new(
            sandbox,
            crate::contain::profile_of(sandbox),
            SystemTime::now(),
            None,
            what,
        );
        event.session = session;
        tracing::info!("{}: {}", sandbox, event.summary());
        let Ok(line) = serde_json::to_vec(&event) else {
            return;
        };
        let Ok(mut own) = self.own.lock() else { return };
        if own.is_none() {
            let cfg = self.config();
            match SpoolWriter::create(spool_config(&cfg)) {
                Ok(w) => *own = Some(w),
                Err(e) => {
                    tracing::error!("cannot open a spool file for cordond's events: {e}");
                    return;
                }
            }
        }
        if let Some(writer) = own.as_mut() {
            match writer.write_line(&line) {
                Ok(true) => {}
                Ok(false) => tracing::error!(
                    "the spool is full: cordond's own event ({}) was dropped",
                    event.what.kind()
                ),
                Err(e) => tracing::error!("cannot spool an event: {e}"),
            }
        }
    }
}

impl Daemon {
    /// Acts on a sandbox for `actor` and records the action as a `responder_action` event.
    /// Cordon's eBPF programs, opened once and reused; opened again when another build's
    /// `cordon run` replaced the pinned maps since (writing to the old ones would miss).
    pub fn kernel(&self) -> Result<Arc<Kernel>, String> {
        let mut kernel = self
            .kernel
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Ok(k) = &*kernel {
            if !k.is_current() {
                tracing::info!("Cordon's eBPF maps were replaced; opening the new ones");
                *kernel = Kernel::open().map(Arc::new).map_err(|e| e.to_string());
            }
        }
        kernel.clone()
    }

    pub fn act(
        &self,
        sandbox: &str,
        action: crate::event::Action,
        actor: crate::event::Actor,
    ) -> Result<Duration, crate::contain::ContainError> {
        if action == crate::event::Action::Evidence {
            // From the collector: the archive goes to it, not to anyone here.
            return evidence::collect(self, sandbox, Default::default(), actor, None)
                .map(|(took, _)| took)
                .map_err(|e| match e {
                    crate::evidence::EvidenceError::BadName => {
                        crate::contain::ContainError::BadName
                    }
                    crate::evidence::EvidenceError::NoSuchSandbox => {
                        crate::contain::ContainError::NoSuchSandbox
                    }
                    other => crate::contain::ContainError::Kernel(other.to_string()),
                });
        }
        // Read first: a killed sandbox's cgroup is gone when the action is recorded.
        let session = crate::contain::session_of(sandbox);
        let started = Instant::now();
        let result = crate::contain::act(self.kernel().ok().as_deref(), sandbox, action);
        let took_ms = started.elapsed().as_millis() as u64;
        // A bad name is not an action on a sandbox: nothing to record. One on a sandbox
        // that is not there is (who tried what); the collector lists no sandbox for it.
        if !matches!(result, Err(crate::contain::ContainError::BadName)) {
            self.record_in(
                sandbox,
                session,
                What::ResponderAction {
                    action,
                    actor,
                    result: if result.is_ok() {
                        crate::event::ActionResult::Done
                    } else {
                        crate::event::ActionResult::Failed
                    },
                    error: result.as_ref().err().map(|e| e.to_string()),
                    took_ms,
                    evidence: None,
                    unseen: None,
                },
            );
        }
        result
    }
}

pub fn spool_config(cfg: &Config) -> SpoolConfig {
    SpoolConfig {
        dir: cfg.spool_dir.clone(),
        max_bytes: cfg.spool_max_bytes,
    }
}

pub fn main() -> ExitCode {
    let args = Args::parse();
    crate::cli::init_tracing(1);
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cordond: {e}");
            return ExitCode::from(1);
        }
    };
    if args.check {
        println!("{}: ok", args.config.display());
        return ExitCode::SUCCESS;
    }
    match serve(config, &args.config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cordond: {e}");
            notify::tell(&format!("STATUS=failed: {e}"));
            ExitCode::from(1)
        }
    }
}

fn serve(config: Config, path: &std::path::Path) -> Result<(), String> {
    // Blocked before any thread starts, so only the main thread's sigwait sees them.
    let mut signals = SigSet::empty();
    for s in [Signal::SIGHUP, Signal::SIGTERM, Signal::SIGINT] {
        signals.add(s);
    }
    signals
        .thread_block()
        .map_err(|e| format!("cannot block signals: {e}"))?;

    let kernel = Kernel::open().map(Arc::new).map_err(|e| e.to_string());
    match &kernel {
        Ok(_) => tracing::info!("eBPF programs loaded"),
        Err(e) => tracing::warn!(
            "cannot load Cordon's eBPF programs ({e}); sandboxes with network rules will be refused under strict"
        ),
    }
    if config.audit {
        crate::audit::enable_logged();
    }
    let pipeline = Pipeline::open(&config.spool_dir)
        .map_err(|e| format!("cannot open the spool {}: {e}", config.spool_dir.display()))?;
    let (groups, missing) = Groups::resolve(
        &config.api.viewer_groups,
        &config.api.responder_groups,
        &config.api.run_groups,
    );
    warn_missing(&missing);
    let listener = server::bind(&config.api.socket)?;
    let cordon = std::env::current_exe()
        .map(|exe| exe.with_file_name("cordon"))
        .map_err(|e| format!("cannot find the cordon binary: {e}"))?;
    let daemon = Arc::new(Daemon {
        config: Arc::new(LiveConfig(RwLock::new(Arc::new(config)))),
        groups: RwLock::new(groups),
        pipeline: Arc::clone(&pipeline),
        own: Mutex::new(None),
        kernel: Mutex::new(kernel),
        started: Instant::now(),
        started_at: SystemTime::now(),
        cordon,
        stopping: std::sync::atomic::AtomicBool::new(false),
    });

    let mut threads = Vec::new();
    let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(f)
            .map_err(|e| format!("cannot start the {name} thread: {e}"))
    };
    {
        let (p, c) = (Arc::clone(&pipeline), Arc::clone(&daemon.config));
        threads.push(spawn(
            "journal",
            Box::new(move || pipeline::journal_thread(&p, &*c)),
        )?);
    }
    {
        let (p, c) = (Arc::clone(&pipeline), Arc::clone(&daemon.config));
        threads.push(spawn(
            "delivery",
            Box::new(move || pipeline::delivery_thread(&p, &*c)),
        )?);
    }
    {
        let d = Arc::clone(&daemon);
        spawn("api", Box::new(move || server::accept(&d, &listener)))?;
    }
    {
        let d = Arc::clone(&daemon);
        spawn("commands", Box::new(move || commands::poll_thread(&d)))?;
    }
    {
        let d = Arc::clone(&daemon);
        spawn("evidence", Box::new(move || commands::upload_thread(&d)))?;
    }
    if let Some(interval) = notify::watchdog_interval() {
        let d = Arc::clone(&daemon);
        spawn(
            "watchdog",
            Box::new(move || {
                while !d.stopping() {
                    notify::tell("WATCHDOG=1");
                    std::thread::sleep(interval);
                }
            }),
        )?;
    }
    if let Some(addr) = daemon.config().metrics {
        let d = Arc::clone(&daemon);
        let metrics = server::metrics_listener(addr)?;
        spawn(
            "metrics",
            Box::new(move || server::serve_metrics(&d, &metrics)),
        )?;
    }

    let socket = daemon.config().api.socket.clone();
    tracing::info!("cordond ready on {}", socket.display());
    notify::tell(&format!(
        "READY=1\nSTATUS=serving on {}; {}",
        socket.display(),
        kernel_state(&daemon)
    ));

    loop {
        let signal = signals
            .wait()
            .map_err(|e| format!("cannot wait for signals: {e}"))?;
        match signal {
            Signal::SIGHUP => reload(&daemon, path),
            _ => break,
        }
    }

    tracing::info!("stopping; running sandboxes stay enforced and watched");
    notify::tell("STOPPING=1\nSTATUS=stopping");
    daemon
        .stopping
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = std::fs::remove_file(&socket);
    if let Ok(mut own) = daemon.own.lock() {
        if let Some(w) = own.take() {
            let _ = w.sync();
        }
    }
    pipeline.stop();
    let deadline = Instant::now() + Duration::from_secs(10);
    for t in threads {
        while !t.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if t.is_finished() {
            let _ = t.join();
        }
    }
    Ok(())
}

fn kernel_state(daemon: &Daemon) -> String {
    match daemon.kernel() {
        Ok(_) => "eBPF programs loaded".into(),
        Err(e) => format!("eBPF programs NOT loaded: {e}"),
    }
}

fn warn_missing(missing: &[String]) {
    for name in missing {
        tracing::warn!("group `{name}` does not exist on this host; it grants nothing");
    }
}

/// SIGHUP: a new configuration and group list; sandboxes are not touched. What needs a
/// restart (the socket path) is said.
fn reload(daemon: &Daemon, path: &std::path::Path) {
    notify::tell("RELOADING=1");
    match Config::load(path) {
        Ok(new) => {
            let old = daemon.config();
            if new.api.socket != old.api.socket {
                tracing::warn!("api.socket changed: the new path is used after a restart");
            }
            if new.metrics != old.metrics {
                tracing::warn!("metrics.listen changed: the new address is used after a restart");
            }
            let (groups, missing) = Groups::resolve(
                &new.api.viewer_groups,
                &new.api.responder_groups,
                &new.api.run_groups,
            );
            warn_missing(&missing);
            if let Ok(mut g) = daemon.groups.write() {
                *g = groups;
            }
            if let Ok(mut c) = daemon.config.write() {
                *c = Arc::new(new);
            }
            tracing::info!("configuration reloaded from {}", path.display());
            notify::tell(&format!(
                "READY=1\nSTATUS=reloaded; {}",
                kernel_state(daemon)
            ));
        }
        Err(e) => {
            tracing::error!("reload refused, the running configuration stays: {e}");
            notify::tell(&format!("READY=1\nSTATUS=reload refused: {e}"));
        }
    }
}
