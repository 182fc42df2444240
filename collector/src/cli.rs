//! `cordon-collector`: serve, check the configuration, and manage tokens.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};

use crate::api::{self, App};
use crate::auth::{self, Role};
use crate::config::{self, Config};
use crate::store::Store;

#[derive(Debug, Parser)]
#[command(
    name = "cordon-collector",
    version,
    about = "Cordon's central collector and console"
)]
struct Args {
    /// The configuration file (the defaults when the default file does not exist).
    #[arg(long, short, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Serve the API and the console (what it does with no command).
    Serve,
    /// Check the configuration and the database, then exit.
    Check,
    /// Issue, list and revoke API tokens.
    #[command(subcommand)]
    Token(TokenCmd),
}

#[derive(Debug, Subcommand)]
enum TokenCmd {
    /// Issue a token; it is printed once and only its hash is kept.
    Issue {
        /// Who or what holds it (a person's name, or the host's name for a host token).
        #[arg(long)]
        name: String,
        /// host, viewer, responder or admin.
        #[arg(long)]
        role: Role,
        /// For a host token: the host it speaks for (its cordond's `host_id`).
        #[arg(long)]
        host: Option<String>,
    },
    /// List tokens (without their secrets).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id or name: it stops working at once.
    Revoke { which: String },
}

pub fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cordon-collector: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    let config = match &args.config {
        Some(path) => Config::load(path, true)?,
        None => Config::load(std::path::Path::new(config::DEFAULT_PATH), false)?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match args.command.unwrap_or(Cmd::Serve) {
            Cmd::Serve => serve(config).await,
            Cmd::Check => {
                Store::open(&config.database_url, config.sqlite_synchronous).await?;
                println!("configuration and database are fine");
                Ok(())
            }
            Cmd::Token(cmd) => token(config, cmd).await,
        }
    })
}

async fn token(config: Config, cmd: TokenCmd) -> Result<()> {
    let store = Store::open(&config.database_url, config.sqlite_synchronous).await?;
    match cmd {
        TokenCmd::Issue { name, role, host } => {
            let (info, secret) = auth::issue(&name, role, host.as_deref())?;
            store.insert_token(&info, &auth::hash(&secret)).await?;
            eprintln!(
                "issued the {role} token {} ({}); it is shown only now:",
                info.name, info.id
            );
            println!("{secret}");
        }
        TokenCmd::List { json } => {
            let tokens = store.tokens().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&tokens)?);
            } else {
                println!(
                    "{:<14} {:<24} {:<10} {:<20} STATE",
                    "ID", "NAME", "ROLE", "HOST"
                );
                for t in tokens {
                    println!(
                        "{:<14} {:<24} {:<10} {:<20} {}",
                        t.id,
                        t.name,
                        t.role,
                        t.host.as_deref().unwrap_or("-"),
                        if t.revoked_ns.is_some() {
                            "revoked"
                        } else {
                            "live"
                        }
                    );
                }
            }
        }
        TokenCmd::Revoke { which } => {
            // An id, or the name of exactly one live token.
            let live: Vec<_> = store
                .tokens()
                .await?
                .into_iter()
                .filter(|t| t.revoked_ns.is_none() && (t.id == which || t.name == which))
                .collect();
            let id = match &live[..] {
                [] => anyhow::bail!("no live token is named or numbered {which}"),
                [one] => one.id.clone(),
                several => anyhow::bail!(
                    "{} live tokens are named {which}: revoke one by its id ({})",
                    several.len(),
                    several
                        .iter()
                        .map(|t| t.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            let t = store.revoke_token(&id).await?;
            println!("revoked {} ({}, {})", t.id, t.name, t.role);
        }
    }
    Ok(())
}

async fn serve(config: Config) -> Result<()> {
    let store = Store::open(&config.database_url, config.sqlite_synchronous)
        .await
        .with_context(|| format!("cannot open the database {}", redact(&config.database_url)))?;
    let tls = match &config.tls {
        Some(tls) => Some(crate::serve::tls_acceptor(&tls.cert, &tls.key)?),
        None => None,
    };
    let app = App::new(store, config.clone());
    tokio::spawn(maintain(Arc::clone(&app)));
    tokio::spawn(api::watch_revocations(Arc::clone(&app)));
    crate::output::spawn_all(&app.store, &app.hub, &app.outputs);
    crate::fleet::spawn(
        &app.store,
        &app.hub,
        crate::fleet::Settings {
            rules: app.config.fleet_rules.clone(),
            command_ttl: app.config.command_ttl,
            limits: crate::ingest::Limits {
                max_event_bytes: app.config.max_event_bytes,
                clock_skew: app.config.clock_skew,
            },
        },
    );
    let router = api::router(Arc::clone(&app));
    let shutdown = async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
        tracing::info!("stopping");
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!("listening on {scheme}://{}", listener.local_addr()?);
    crate::serve::serve(Arc::clone(&app), listener, router, tls, shutdown).await;
    crate::output::save_all(&app.store, &app.outputs).await;
    Ok(())
}

/// Retention and command expiry, in the background.
async fn maintain(app: Arc<App>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    let mut last_retention: Option<tokio::time::Instant> = None;
    loop {
        tick.tick().await;
        if let Err(e) = app.store.expire_commands().await {
            tracing::warn!("cannot expire commands: {e}");
        }
        if last_retention.is_none_or(|t| t.elapsed() > Duration::from_secs(600)) {
            last_retention = Some(tokio::time::Instant::now());
            let before = SystemTime::now()
                .checked_sub(app.config.retention)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            match app.store.expire_events(before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!("deleted {n} events past the retention"),
                Err(e) => tracing::warn!("cannot delete old events: {e}"),
            }
        }
    }
}

/// A database URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let auth = &url[scheme + 3..at];
            match auth.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
