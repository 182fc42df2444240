//! The collector's store: SQLite (one file, WAL) or PostgreSQL, through sqlx's `Any` driver.
//! Both run the same queries (`$N` placeholders, `ON CONFLICT`, `RETURNING` are common to
//! both) and migrations of the same numbers from `migrations/sqlite` and
//! `migrations/postgres`, which differ only in how the row counter is spelled.

use std::path::Path;
use std::str::FromStr as _;
use std::time::{Duration, SystemTime};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, ConnectOptions as _, Executor as _, Row as _};

use cordon_proto::collector::{Command, CommandResult, SandboxInfo};
use cordon_proto::event::{Action, ActionResult, What};

use crate::auth::{Role, TokenInfo};
use crate::ingest::{clean, NewEvent, SetAside};

/// Rows per `INSERT`: 9 values each, well under both databases' limit on parameters.
const INSERT_CHUNK: usize = 400;
/// Set-aside events without a readable id kept from one batch.
const ANONYMOUS_REJECTS: usize = 20;

/// How hard SQLite makes sure a commit is on disk before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Synchronous {
    /// Every commit is on disk before the host hears "stored": an acknowledged event
    /// survives a power failure. The default for a security record.
    Full,
    /// The WAL is synced at checkpoints only: faster, and a power failure may take the
    /// last commits (which their hosts were told were stored, and deleted).
    Normal,
    /// Full, and the directory too after each WAL reset.
    Extra,
}

impl Synchronous {
    pub fn pragma(self) -> &'static str {
        match self {
            Self::Full => "FULL",
            Self::Normal => "NORMAL",
            Self::Extra => "EXTRA",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot create {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error("no token is named or numbered {0}")]
    NoToken(String),
    #[error("the stored row is damaged: {0}")]
    Damaged(String),
}

#[derive(Clone)]
pub struct Store {
    /// Hosts' writes and polls, and token checks.
    pool: AnyPool,
    /// Viewers' queries of events, hosts and commands.
    reads: AnyPool,
    pub backend: Backend,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// One event as the query API returns it.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub seq: i64,
    pub host: String,
    pub sandbox: String,
    pub kind: String,
    /// The event's time as stored (clamped: see [`crate::ingest`]).
    pub time_ns: i64,
    /// The event's JSON.
    pub body: String,
    /// 0 (info) to 4 (critical).
    pub severity: i64,
    pub session: Option<String>,
}

/// Filters of the query API; every one is optional.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub host: Option<String>,
    pub sandbox: Option<String>,
    pub profile: Option<String>,
    pub kinds: Vec<String>,
    /// Events of this severity (0 info .. 4 critical) or higher.
    pub severity_at_least: Option<i64>,
    pub session: Option<String>,
    pub since_ns: Option<i64>,
    pub until_ns: Option<i64>,
    /// Free text, looked for (case-insensitively) in the path, domain, address, syscall or
    /// program of each event.
    pub text: Option<String>,
    /// Where the previous page ended (see [`Order`]).
    pub cursor: Option<Cursor>,
    pub order: Order,
    pub limit: usize,
}

/// The order a query's events come in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Order {
    #[default]
    NewestFirst,
    OldestFirst,
    /// Most severe first; newest first among equals.
    Severity,
}

/// The last event of a page, in its order: a page goes on after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// Only for [`Order::Severity`].
    pub severity: Option<i64>,
    pub time_ns: i64,
    pub seq: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct HostRow {
    pub name: String,
    pub first_seen_ns: i64,
    pub last_seen_ns: i64,
    pub polled_ns: Option<i64>,
    pub sandboxes: Vec<SandboxInfo>,
    /// Events of this host the collector set aside.
    pub rejected: i64,
}

/// An event the collector set aside.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RejectedRow {
    pub host: String,
    pub received_ns: i64,
    pub event_id: Option<String>,
    pub reason: String,
    pub detail: String,
    /// The start of what the host sent.
    pub excerpt: String,
}

/// How many events of one severity fell in one bucket of a histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// From 0, the first bucket.
    pub index: i64,
    /// 0 (info) to 4 (critical).
    pub severity: i64,
    pub count: i64,
}

/// A sandbox seen in a host's events.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SeenSandbox {
    pub name: String,
    pub profile: String,
    pub events: i64,
    pub violations: i64,
    pub last_ns: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CommandRow {
    pub id: String,
    pub host: String,
    pub sandbox: String,
    pub action: Action,
    pub issued_by: String,
    pub issued_ns: i64,
    pub expires_ns: i64,
    /// `queued`, `delivered`, `done`, `failed` or `expired`.
    pub status: String,
    pub delivered_ns: Option<i64>,
    pub done_ns: Option<i64>,
    pub error: Option<String>,
    pub took_ms: Option<i64>,
}

use crate::clock::{now_ns, ns};

impl Store {
    /// Opens (creating when needed) the database at `url` and brings its schema up to date.
    pub async fn open(url: &str, synchronous: Synchronous) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let mut url = url.to_string();
        if backend == Backend::Sqlite {
            let path = url
                .trim_start_matches("sqlite:")
                .trim_start_matches("//")
                .split('?')
                .next()
                .unwrap_or_default()
                .to_string();
            if let Some(dir) = Path::new(&path)
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
            {
                std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
                    path: dir.display().to_string(),
                    source,
                })?;
            }
            if !url.contains('?') {
                url.push_str("?mode=rwc");
            }
        }
        let options = |connections: u32| {
            AnyPoolOptions::new()
                .max_connections(connections)
                .after_connect(move |conn, _| {
                    Box::pin(async move {
                        if backend == Backend::Sqlite {
                            // WAL lets readers go on while a batch is written. `synchronous`:
                            // see the configuration (FULL unless ops chose otherwise).
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute(
                                format!("PRAGMA synchronous = {}", synchronous.pragma()).as_str(),
                            )
                            .await?;
                            conn.execute("PRAGMA busy_timeout = 10000").await?;
                            // Index pages stay in memory (64 MiB a connection, mapped reads), and
                            // the WAL is folded into the database every 40 MB rather than 4 MB.
                            conn.execute("PRAGMA cache_size = -65536").await?;
                            conn.execute("PRAGMA mmap_size = 1073741824").await?;
                            conn.execute("PRAGMA wal_autocheckpoint = 10000").await?;
                        }
                        Ok(())
                    })
                })
        };
        // A batch's insert is one long statement: never log its text.
        let connect = sqlx::any::AnyConnectOptions::from_str(&url)?.disable_statement_logging();
        let sqlite = backend == Backend::Sqlite;
        let pool = options(if sqlite { 4 } else { 16 })
            .connect_with(connect.clone())
            .await?;
        match backend {
            Backend::Sqlite => sqlx::migrate!("migrations/sqlite").run(&pool).await?,
            Backend::Postgres => sqlx::migrate!("migrations/postgres").run(&pool).await?,
        }
        // People's queries have connections of their own, and only a few: a viewer's
        // searches wait for each other, never for (or in front of) ingest, polls and tokens.
        let reads = options(if sqlite { 2 } else { 4 })
            .connect_with(connect)
            .await?;
        Ok(Self {
            pool,
            reads,
            backend,
        })
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Stores a host's batch in one transaction: all of it or, on error, none. Events the
    /// host sent before (by id) are skipped; returns the ones that were new. The events set
    /// aside are kept in `rejected`, for people to look at.
    pub async fn insert_events(
        &self,
        host: &str,
        events: &[NewEvent],
        set_aside: &[SetAside],
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let received = now_ns();
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            // PostgreSQL hands out `seq` when a row is inserted, not when it is committed:
            // two batches stored at once could become visible out of order, and a reader
            // going on after the last seq it read (an output's cursor, a stream's replay)
            // would skip the one that committed late. Batches are stored one at a time, as
            // SQLite's single writer stores them anyway, so the order of seq is the order of
            // commits.
            sqlx::query("SELECT pg_advisory_xact_lock(7468734)")
                .execute(&mut *tx)
                .await?;
        }
        let mut stored = Vec::new();
        for chunk in events.chunks(INSERT_CHUNK) {
            let mut sql = String::from(
                "INSERT INTO events (id, host, sandbox, profile, kind, time_ns, received_ns, \
                 subject, body, severity, session) VALUES ",
            );
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push(',');
                }
                match self.backend {
                    // SQLite finds a named parameter by a linear scan: with thousands of `$N`
                    // in one statement that scan was half the collector's time. `?` is
                    // positional.
                    Backend::Sqlite => sql.push_str("(?,?,?,?,?,?,?,?,?,?,?)"),
                    Backend::Postgres => {
                        let b = i * 11;
                        sql.push('(');
                        for k in 1..=11 {
                            if k > 1 {
                                sql.push(',');
                            }
                            sql.push_str(&format!("${}", b + k));
                        }
                        sql.push(')');
                    }
                }
            }
            sql.push_str(" ON CONFLICT (host, id) DO NOTHING RETURNING seq, id");
            let mut query = sqlx::query::<Any>(&sql);
            for event in chunk {
                query = query
                    .bind(event.id.as_str())
                    .bind(host)
                    .bind(event.sandbox.as_str())
                    .bind(event.profile.as_str())
                    .bind(event.kind)
                    .bind(event.time_ns)
                    .bind(received)
                    .bind(event.subject.as_str())
                    .bind(event.body.as_str())
                    .bind(event.severity)
                    .bind(event.session.as_deref());
            }
            let new = query.fetch_all(&mut *tx).await?;
            let mut by_id = std::collections::HashMap::with_capacity(new.len());
            for row in &new {
                by_id.insert(row.try_get::<String, _>(1)?, row.try_get::<i64, _>(0)?);
            }
            for event in chunk {
                // `remove`: an id twice in one batch was stored once.
                if let Some(seq) = by_id.remove(&event.id) {
                    stored.push(StoredEvent {
                        seq,
                        host: host.to_string(),
                        sandbox: event.sandbox.clone(),
                        kind: event.kind.to_string(),
                        time_ns: event.time_ns,
                        body: event.body.clone(),
                        severity: event.severity,
                        session: event.session.clone(),
                    });
                }
            }
        }
        // Set-aside events with an id are kept once (a batch sent again adds none); of those
        // without one (not even an object), a few a batch: they are counted all the same.
        let without_id = set_aside.iter().filter(|a| a.rejected.id.is_none());
        let kept = set_aside
            .iter()
            .filter(|a| a.rejected.id.is_some())
            .chain(without_id.take(ANONYMOUS_REJECTS));
        for aside in kept {
            sqlx::query(
                "INSERT INTO rejected (host, received_ns, event_id, reason, detail, excerpt) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (host, event_id, reason) WHERE event_id IS NOT NULL DO NOTHING",
            )
            .bind(host)
            .bind(received)
            .bind(aside.rejected.id.clone())
            .bind(aside.rejected.reason.as_str())
            .bind(clean(&aside.rejected.detail))
            .bind(aside.excerpt.as_str())
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO hosts (name, first_seen_ns, last_seen_ns, sandboxes) VALUES ($1, $2, $2, '[]') \
             ON CONFLICT (name) DO UPDATE SET last_seen_ns = $2",
        )
        .bind(host)
        .bind(received)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        stored.sort_by_key(|e| e.seq);
        Ok(stored)
    }

    /// The events set aside from `host` (every host's when `None`), newest first.
    pub async fn rejected(
        &self,
        host: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RejectedRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT host, received_ns, event_id, reason, detail, excerpt FROM rejected \
             WHERE $1 IS NULL OR host = $1 ORDER BY seq DESC LIMIT $2",
        )
        .bind(host.map(str::to_string))
        .bind(limit as i64)
        .fetch_all(&self.reads)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RejectedRow {
                    host: r.try_get(0)?,
                    received_ns: r.try_get(1)?,
                    event_id: r.try_get(2)?,
                    reason: r.try_get(3)?,
                    detail: r.try_get(4)?,
                    excerpt: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// One page of events matching `filter`: up to `filter.limit` events, ending early
    /// once their bodies pass `max_bytes` (always at least one event, when there is one).
    pub async fn events(
        &self,
        filter: &Filter,
        max_bytes: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut sql = matching(EVENT_COLUMNS, filter);
        let (cmp, order) = if filter.order == Order::OldestFirst {
            (">", "ASC")
        } else {
            ("<", "DESC")
        };
        if let Some(cursor) = filter.cursor {
            let t = sql.bind(Value::Int(cursor.time_ns));
            let t2 = sql.bind(Value::Int(cursor.time_ns));
            let s = sql.bind(Value::Int(cursor.seq));
            let after_in_time =
                format!("(time_ns {cmp} {t} OR (time_ns = {t2} AND seq {cmp} {s}))");
            match (filter.order, cursor.severity) {
                (Order::Severity, Some(severity)) => {
                    let v = sql.bind(Value::Int(severity));
                    let v2 = sql.bind(Value::Int(severity));
                    sql.text.push_str(&format!(
                        " AND (severity < {v} OR (severity = {v2} AND {after_in_time}))"
                    ));
                }
                _ => sql.text.push_str(&format!(" AND {after_in_time}")),
            }
        }
        let limit = sql.bind(Value::Int(filter.limit as i64));
        let by_severity = if filter.order == Order::Severity {
            "severity DESC, "
        } else {
            ""
        };
        sql.text.push_str(&format!(
            " ORDER BY {by_severity}time_ns {order}, seq {order} LIMIT {limit}"
        ));
        page_of(sql.query().fetch(&self.reads), max_bytes).await
    }

    /// How many events match `filter` in each bucket of `width_ns` from `since_ns`, by
    /// severity: `(bucket, severity, count)`, buckets numbered from 0, the empty ones left
    /// out. Counted in the database; the filter's `since_ns` and `until_ns` bound the range.
    pub async fn histogram(
        &self,
        filter: &Filter,
        since_ns: i64,
        width_ns: i64,
    ) -> Result<Vec<Bucket>, StoreError> {
        let mut sql = matching("SELECT time_ns, severity FROM events", filter);
        let since = sql.bind(Value::Int(since_ns));
        let width = sql.bind(Value::Int(width_ns.max(1)));
        sql.text = format!(
            "SELECT (time_ns - {since}) / {width} AS bucket, severity, COUNT(*) \
             FROM ({}) AS matching GROUP BY bucket, severity ORDER BY bucket, severity",
            sql.text
        );
        let rows = sql.query().fetch_all(&self.reads).await?;
        rows.iter()
            .map(|r| {
                Ok(Bucket {
                    index: r.try_get(0)?,
                    severity: r.try_get(1)?,
                    count: r.try_get(2)?,
                })
            })
            .collect()
    }

    /// Events stored after `seq`, oldest first (for a stream that reconnects): up to
    /// `limit`, ending early once their bodies pass `max_bytes`.
    pub async fn events_after(
        &self,
        seq: i64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let sql = format!("{EVENT_COLUMNS} WHERE seq > $1 ORDER BY seq LIMIT $2");
        let query = sqlx::query::<Any>(&sql).bind(seq).bind(limit as i64);
        page_of(query.fetch(&self.reads), max_bytes).await
    }

    /// Deletes events older than `before`, 10 000 at a time (so that ingest is never kept
    /// waiting long for SQLite's one writer); returns how many went.
    pub async fn expire_events(&self, before: SystemTime) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let done = sqlx::query(
                "DELETE FROM events WHERE seq IN \
                 (SELECT seq FROM events WHERE time_ns < $1 LIMIT 10000)",
            )
            .bind(ns(before))
            .execute(&self.pool)
            .await?;
            total += done.rows_affected();
            if done.rows_affected() == 0 {
                break;
            }
        }
        // Set-aside events go by the time they arrived (their own may be anything).
        sqlx::query("DELETE FROM rejected WHERE received_ns < $1")
            .bind(ns(before))
            .execute(&self.pool)
            .await?;
        Ok(total)
    }

    /// Records a host's report of its sandboxes.
    pub async fn report_host(
        &self,
        host: &str,
        sandboxes: &[SandboxInfo],
    ) -> Result<(), StoreError> {
        let now = now_ns();
        let json =
            serde_json::to_string(sandboxes).map_err(|e| StoreError::Damaged(e.to_string()))?;
        sqlx::query(
            "INSERT INTO hosts (name, first_seen_ns, last_seen_ns, polled_ns, sandboxes) \
             VALUES ($1, $2, $2, $2, $3) ON CONFLICT (name) DO UPDATE \
             SET last_seen_ns = $2, polled_ns = $2, sandboxes = $3",
        )
        .bind(host)
        .bind(now)
        .bind(json)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn hosts(&self) -> Result<Vec<HostRow>, StoreError> {
        self.hosts_named(None).await
    }

    /// One host, if it has reported.
    pub async fn host(&self, name: &str) -> Result<Option<HostRow>, StoreError> {
        Ok(self.hosts_named(Some(name)).await?.pop())
    }

    async fn hosts_named(&self, name: Option<&str>) -> Result<Vec<HostRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, first_seen_ns, last_seen_ns, polled_ns, sandboxes, \
             (SELECT COUNT(*) FROM rejected WHERE rejected.host = hosts.name) FROM hosts \
             WHERE $1 IS NULL OR name = $1 ORDER BY name",
        )
        .bind(name.map(str::to_string))
        .fetch_all(&self.reads)
        .await?;
        rows.iter()
            .map(|r| {
                let name: String = r.try_get(0)?;
                let sandboxes: String = r.try_get(4)?;
                Ok(HostRow {
                    sandboxes: serde_json::from_str(&sandboxes).map_err(|e| {
                        StoreError::Damaged(format!("the sandboxes of host {name}: {e}"))
                    })?,
                    name,
                    first_seen_ns: r.try_get(1)?,
                    last_seen_ns: r.try_get(2)?,
                    polled_ns: r.try_get(3)?,
                    rejected: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// The sandboxes a host's events since `since_ns` name, newest first. A name that only a
    /// responder's action names (a mistyped `cordon isolate NAME`, refused on the host) is no
    /// sandbox.
    pub async fn sandboxes_seen(
        &self,
        host: &str,
        since_ns: i64,
    ) -> Result<Vec<SeenSandbox>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT sandbox, profile, COUNT(*), \
                 SUM(CASE WHEN kind IN ('{}') THEN 1 ELSE 0 END), MAX(time_ns) \
                 FROM events WHERE host = $1 AND time_ns >= $2 GROUP BY sandbox, profile \
                 HAVING SUM(CASE WHEN kind = 'responder_action' THEN 0 ELSE 1 END) > 0 \
                 ORDER BY MAX(time_ns) DESC LIMIT 500",
            What::VIOLATIONS.join("','")
        ))
        .bind(host)
        .bind(since_ns)
        .fetch_all(&self.reads)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SeenSandbox {
                    name: r.try_get(0)?,
                    profile: r.try_get(1)?,
                    events: r.try_get(2)?,
                    violations: r.try_get(3)?,
                    last_ns: r.try_get(4)?,
                })
            })
            .collect()
    }

    // Tokens.

    pub async fn insert_token(&self, token: &TokenInfo, hash: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO tokens (id, name, role, host, hash, created_ns) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&token.id)
        .bind(&token.name)
        .bind(token.role.as_str())
        .bind(token.host.clone())
        .bind(hash)
        .bind(token.created_ns)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The live token with this hash.
    pub async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenInfo>, StoreError> {
        let row = sqlx::query(
            "SELECT id, name, role, host, created_ns, revoked_ns FROM tokens \
             WHERE hash = $1 AND revoked_ns IS NULL",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(token_info).transpose()
    }

    pub async fn tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, role, host, created_ns, revoked_ns FROM tokens ORDER BY created_ns",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_info).collect()
    }

    /// Whether the token with this id is still live.
    pub async fn token_is_live(&self, id: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT id FROM tokens WHERE id = $1 AND revoked_ns IS NULL")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// The ids of every revoked token.
    pub async fn revoked_ids(&self) -> Result<std::collections::HashSet<String>, StoreError> {
        let rows = sqlx::query("SELECT id FROM tokens WHERE revoked_ns IS NOT NULL")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| Ok(row.try_get::<String, _>(0)?))
            .collect()
    }

    /// Revokes the live token with this id; returns it.
    pub async fn revoke_token(&self, id: &str) -> Result<TokenInfo, StoreError> {
        let row = sqlx::query(
            "UPDATE tokens SET revoked_ns = $1 WHERE id = $2 AND revoked_ns IS NULL \
             RETURNING id, name, role, host, created_ns, revoked_ns",
        )
        .bind(now_ns())
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => token_info(&row),
            None => Err(StoreError::NoToken(id.to_string())),
        }
    }

    // Commands.

    pub async fn queue_command(&self, c: &CommandRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO commands (id, host, sandbox, action, issued_by, issued_ns, expires_ns, status) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued')",
        )
        .bind(&c.id)
        .bind(&c.host)
        .bind(&c.sandbox)
        .bind(c.action.as_str())
        .bind(&c.issued_by)
        .bind(c.issued_ns)
        .bind(c.expires_ns)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Hands the host its queued commands that have not expired, marking them delivered,
    /// if the token `token_id` that asks is still live: checked in the same statement, so a
    /// poll whose token was revoked while it waited gets nothing.
    pub async fn deliver_commands(
        &self,
        host: &str,
        token_id: &str,
    ) -> Result<Vec<Command>, StoreError> {
        let now = now_ns();
        let rows = sqlx::query(
            "UPDATE commands SET status = 'delivered', delivered_ns = $1 \
             WHERE host = $2 AND status = 'queued' AND expires_ns > $1 \
             AND EXISTS (SELECT 1 FROM tokens WHERE id = $3 AND revoked_ns IS NULL) \
             RETURNING id, sandbox, action, issued_by, issued_ns",
        )
        .bind(now)
        .bind(host)
        .bind(token_id)
        .fetch_all(&self.pool)
        .await?;
        let mut commands = rows
            .iter()
            .map(|r| {
                let action: String = r.try_get(2)?;
                Ok((
                    r.try_get::<i64, _>(4)?,
                    Command {
                        id: r.try_get(0)?,
                        sandbox: r.try_get(1)?,
                        action: parse_action(&action)?,
                        issued_by: r.try_get(3)?,
                    },
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        commands.sort_by_key(|(issued, _)| *issued);
        Ok(commands.into_iter().map(|(_, c)| c).collect())
    }

    /// Records what the host reports of a command it was given.
    pub async fn finish_command(
        &self,
        host: &str,
        result: &CommandResult,
    ) -> Result<bool, StoreError> {
        let status = match result.result {
            ActionResult::Done => "done",
            ActionResult::Failed => "failed",
        };
        let done = sqlx::query(
            "UPDATE commands SET status = $1, done_ns = $2, error = $3, took_ms = $4 \
             WHERE id = $5 AND host = $6 AND delivered_ns IS NOT NULL \
             AND status IN ('delivered', 'expired')",
        )
        .bind(status)
        .bind(now_ns())
        .bind(result.error.as_deref().map(clean))
        .bind(i64::try_from(result.took_ms).unwrap_or(i64::MAX))
        .bind(clean(&result.id))
        .bind(host)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks the commands whose time has passed as expired.
    pub async fn expire_commands(&self) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE commands SET status = 'expired' \
             WHERE status IN ('queued', 'delivered') AND expires_ns <= $1",
        )
        .bind(now_ns())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    pub async fn command(&self, id: &str) -> Result<Option<CommandRow>, StoreError> {
        let row = sqlx::query(&format!("{COMMAND_COLUMNS} WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.reads)
            .await?;
        row.as_ref().map(command_row).transpose()
    }

    pub async fn commands(
        &self,
        host: Option<&str>,
        sandbox: Option<&str>,
        limit: usize,
    ) -> Result<Vec<CommandRow>, StoreError> {
        let mut sql = Sql::new(&format!("{COMMAND_COLUMNS} WHERE 1 = 1"));
        if let Some(host) = host {
            sql.and("host = ", Value::Text(host.to_string()));
        }
        if let Some(sandbox) = sandbox {
            sql.and("sandbox = ", Value::Text(sandbox.to_string()));
        }
        let l = sql.bind(Value::Int(limit as i64));
        sql.text
            .push_str(&format!(" ORDER BY issued_ns DESC LIMIT {l}"));
        let rows = sql.query().fetch_all(&self.reads).await?;
        rows.iter().map(command_row).collect()
    }
}

const COMMAND_COLUMNS: &str =
    "SELECT id, host, sandbox, action, issued_by, issued_ns, expires_ns, \
     status, delivered_ns, done_ns, error, took_ms FROM commands";

fn command_row(r: &AnyRow) -> Result<CommandRow, StoreError> {
    let action: String = r.try_get(3)?;
    Ok(CommandRow {
        id: r.try_get(0)?,
        host: r.try_get(1)?,
        sandbox: r.try_get(2)?,
        action: parse_action(&action)?,
        issued_by: r.try_get(4)?,
        issued_ns: r.try_get(5)?,
        expires_ns: r.try_get(6)?,
        status: r.try_get(7)?,
        delivered_ns: r.try_get(8)?,
        done_ns: r.try_get(9)?,
        error: r.try_get(10)?,
        took_ms: r.try_get(11)?,
    })
}

fn token_info(r: &AnyRow) -> Result<TokenInfo, StoreError> {
    let role: String = r.try_get(2)?;
    let id: String = r.try_get(0)?;
    let role = role
        .parse::<Role>()
        .map_err(|_| StoreError::Damaged(format!("token {id}: role {role:?}")))?;
    let host: Option<String> = r.try_get(3)?;
    // A host token without its host (or a person's with one) is refused, not guessed at.
    if (role == Role::Host) != host.is_some() {
        return Err(StoreError::Damaged(format!(
            "token {id}: role {role} with host {host:?}"
        )));
    }
    Ok(TokenInfo {
        id,
        name: r.try_get(1)?,
        role,
        host,
        created_ns: r.try_get(4)?,
        revoked_ns: r.try_get(5)?,
    })
}

/// The events of `rows` (of [`EVENT_COLUMNS`]) until their bodies pass `max_bytes` (at least
/// one, when there is one). Row by row, so a page of large events is cut off before it is
/// all in memory.
async fn page_of(
    mut rows: impl tokio_stream::Stream<Item = Result<AnyRow, sqlx::Error>> + Unpin,
    max_bytes: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut page = Vec::new();
    let mut bytes = 0;
    while let Some(row) = tokio_stream::StreamExt::next(&mut rows).await {
        let event = stored_event(&row?)?;
        bytes += event.body.len();
        page.push(event);
        if bytes >= max_bytes {
            break;
        }
    }
    Ok(page)
}

/// `SELECT <columns> FROM events WHERE` the conditions of `filter` but its cursor, order and
/// limit (the caller's to add).
fn matching(columns: &str, filter: &Filter) -> Sql {
    let mut sql = Sql::new(&format!("{columns} WHERE 1 = 1"));
    if let Some(host) = &filter.host {
        sql.and("host = ", Value::Text(host.clone()));
    }
    if let Some(sandbox) = &filter.sandbox {
        sql.and("sandbox = ", Value::Text(sandbox.clone()));
    }
    if let Some(profile) = &filter.profile {
        sql.and("profile = ", Value::Text(profile.clone()));
    }
    if !filter.kinds.is_empty() {
        sql.text.push_str(" AND kind IN (");
        for (i, kind) in filter.kinds.iter().enumerate() {
            if i > 0 {
                sql.text.push(',');
            }
            let p = sql.bind(Value::Text(kind.clone()));
            sql.text.push_str(&p);
        }
        sql.text.push(')');
    }
    if let Some(least) = filter.severity_at_least {
        sql.and("severity >= ", Value::Int(least));
    }
    if let Some(session) = &filter.session {
        sql.and("session = ", Value::Text(session.clone()));
    }
    if let Some(since) = filter.since_ns {
        sql.and("time_ns >= ", Value::Int(since));
    }
    if let Some(until) = filter.until_ns {
        sql.and("time_ns < ", Value::Int(until));
    }
    if let Some(text) = &filter.text {
        let pattern = format!("%{}%", like_escape(&text.to_lowercase()));
        let p = sql.bind(Value::Text(pattern));
        sql.text
            .push_str(&format!(" AND subject LIKE {p} ESCAPE '\\'"));
    }
    sql
}

const EVENT_COLUMNS: &str =
    "SELECT seq, host, sandbox, kind, time_ns, body, severity, session FROM events";

fn stored_event(r: &AnyRow) -> Result<StoredEvent, StoreError> {
    Ok(StoredEvent {
        seq: r.try_get(0)?,
        host: r.try_get(1)?,
        sandbox: r.try_get(2)?,
        kind: r.try_get(3)?,
        time_ns: r.try_get(4)?,
        body: r.try_get(5)?,
        severity: r.try_get(6)?,
        session: r.try_get(7)?,
    })
}

fn parse_action(name: &str) -> Result<Action, StoreError> {
    name.parse()
        .map_err(|e| StoreError::Damaged(format!("a stored command: {e}")))
}

fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A query's text with `$N` placeholders, and the values to bind to them.
enum Value {
    Int(i64),
    Text(String),
}

struct Sql {
    text: String,
    values: Vec<Value>,
}

impl Sql {
    fn new(text: &str) -> Self {
        Self {
            text: text.to_string(),
            values: Vec::new(),
        }
    }

    /// Adds a value; returns its placeholder.
    fn bind(&mut self, value: Value) -> String {
        self.values.push(value);
        format!("${}", self.values.len())
    }

    /// Adds ` AND <condition><placeholder>`.
    fn and(&mut self, condition: &str, value: Value) {
        let p = self.bind(value);
        self.text.push_str(" AND ");
        self.text.push_str(condition);
        self.text.push_str(&p);
    }

    fn query(&self) -> sqlx::query::Query<'_, Any, sqlx::any::AnyArguments<'_>> {
        let mut q = sqlx::query::<Any>(&self.text);
        for v in &self.values {
            q = match v {
                Value::Int(i) => q.bind(*i),
                Value::Text(t) => q.bind(t.as_str()),
            };
        }
        q
    }
}

/// How long until `expires_ns`, for a command's time to live.
pub fn expiry(ttl: Duration) -> i64 {
    now_ns().saturating_add(i64::try_from(ttl.as_nanos()).unwrap_or(i64::MAX))
}

/// An evidence archive a host uploaded, without the archive itself.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EvidenceRow {
    pub id: String,
    pub host: String,
    pub sandbox: String,
    pub session: Option<String>,
    pub received_ns: i64,
    pub bytes: i64,
    pub archive_sha256: String,
    pub manifest_sha256: String,
}

const EVIDENCE_COLUMNS: &str =
    "id, host, sandbox, session, received_ns, bytes, archive_sha256, manifest_sha256";

fn evidence_row(row: &AnyRow) -> Result<EvidenceRow, StoreError> {
    Ok(EvidenceRow {
        id: row.try_get(0)?,
        host: row.try_get(1)?,
        sandbox: row.try_get(2)?,
        session: row.try_get(3)?,
        received_ns: row.try_get(4)?,
        bytes: row.try_get(5)?,
        archive_sha256: row.try_get(6)?,
        manifest_sha256: row.try_get(7)?,
    })
}

// Evidence.
impl Store {
    /// Whether `host` reported events of `session` (an archive names a session of its own
    /// host's, never another's).
    pub async fn host_has_session(&self, host: &str, session: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 FROM events WHERE host = $1 AND session = $2 LIMIT 1")
            .bind(host)
            .bind(session)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// The host and SHA-256 of the archive stored under `id`, if any.
    pub async fn evidence_owner(&self, id: &str) -> Result<Option<(String, String)>, StoreError> {
        let row = sqlx::query("SELECT host, archive_sha256 FROM evidence WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    /// Stores an archive once per id: a second upload of the same id (its answer was lost)
    /// changes nothing. Returns whether it was new.
    pub async fn insert_evidence(
        &self,
        row: &EvidenceRow,
        archive: &[u8],
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO evidence (id, host, sandbox, session, received_ns, bytes, archive_sha256, manifest_sha256, archive) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&row.id)
        .bind(&row.host)
        .bind(&row.sandbox)
        .bind(&row.session)
        .bind(row.received_ns)
        .bind(row.bytes)
        .bind(&row.archive_sha256)
        .bind(&row.manifest_sha256)
        .bind(archive)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The archives of a session, or of a host (and sandbox), newest first.
    pub async fn list_evidence(
        &self,
        host: Option<&str>,
        sandbox: Option<&str>,
        session: Option<&str>,
    ) -> Result<Vec<EvidenceRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {EVIDENCE_COLUMNS} FROM evidence \
             WHERE ($1 IS NULL OR host = $1) AND ($2 IS NULL OR sandbox = $2) AND ($3 IS NULL OR session = $3) \
             ORDER BY received_ns DESC LIMIT 1000"
        ))
        .bind(host)
        .bind(sandbox)
        .bind(session)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(evidence_row).collect()
    }

    /// One archive with what it is.
    pub async fn evidence(&self, id: &str) -> Result<Option<(EvidenceRow, Vec<u8>)>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {EVIDENCE_COLUMNS}, archive FROM evidence WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((evidence_row(&r)?, r.try_get::<Vec<u8>, _>(8)?)))
            .transpose()
    }
}

/// A page of events for an output: what its filter lets through, oldest first.
#[derive(Debug, Clone, Default)]
pub struct OutputQuery {
    pub kinds: Vec<String>,
    pub severity_at_least: i64,
    pub hosts: Vec<String>,
    pub profiles: Vec<String>,
}

/// Fleet-wide counts for the metrics.
#[derive(Debug, Clone, Default)]
pub struct FleetCounts {
    /// The newest event's seq (0 with none stored).
    pub newest_seq: i64,
    pub hosts: i64,
    /// Hosts that polled since the time asked about.
    pub hosts_online: i64,
    /// Commands by status.
    pub commands: Vec<(String, i64)>,
}

// Outputs.
impl Store {
    /// The seq of the newest event stored (0 when there is none).
    pub async fn newest_seq(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COALESCE(MAX(seq), 0) FROM events")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>(0)?)
    }

    /// Where output `name` has got to; a new output starts at the newest event stored now
    /// (it sends what is stored from then on, not the store's whole history).
    pub async fn output_cursor(&self, name: &str) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT seq FROM output_cursors WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        if let Some(row) = row {
            return Ok(row.try_get(0)?);
        }
        let newest = self.newest_seq().await?;
        sqlx::query(
            "INSERT INTO output_cursors (name, seq, updated_ns) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(newest)
        .bind(now_ns())
        .execute(&self.pool)
        .await?;
        // Another collector on the same database may have put it there first.
        let row = sqlx::query("SELECT seq FROM output_cursors WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Moves output `name`'s cursor to `seq` (never back).
    pub async fn advance_output(&self, name: &str, seq: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE output_cursors SET seq = $1, updated_ns = $2 WHERE name = $3 AND seq < $1",
        )
        .bind(seq)
        .bind(now_ns())
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The events after `after` up to `upto` (seq) that `query` lets through, oldest first:
    /// up to `limit`, ending early once their bodies pass `max_bytes`.
    pub async fn output_page(
        &self,
        query: &OutputQuery,
        after: i64,
        upto: i64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut sql = Sql::new(&format!("{EVENT_COLUMNS} WHERE 1 = 1"));
        sql.and("seq > ", Value::Int(after));
        sql.and("seq <= ", Value::Int(upto));
        if query.severity_at_least > 0 {
            sql.and("severity >= ", Value::Int(query.severity_at_least));
        }
        for (column, values) in [
            ("kind", &query.kinds),
            ("host", &query.hosts),
            ("profile", &query.profiles),
        ] {
            if values.is_empty() {
                continue;
            }
            sql.text.push_str(&format!(" AND {column} IN ("));
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    sql.text.push(',');
                }
                let p = sql.bind(Value::Text(v.clone()));
                sql.text.push_str(&p);
            }
            sql.text.push(')');
        }
        let l = sql.bind(Value::Int(limit as i64));
        sql.text.push_str(&format!(" ORDER BY seq LIMIT {l}"));
        page_of(sql.query().fetch(&self.pool), max_bytes).await
    }

    /// Counts for the fleet's health: hosts that polled since `online_since_ns`, commands by
    /// status, the newest seq.
    pub async fn fleet_counts(&self, online_since_ns: i64) -> Result<FleetCounts, StoreError> {
        let hosts = sqlx::query(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN polled_ns >= $1 THEN 1 ELSE 0 END), 0) \
             FROM hosts",
        )
        .bind(online_since_ns)
        .fetch_one(&self.reads)
        .await?;
        let commands = sqlx::query("SELECT status, COUNT(*) FROM commands GROUP BY status")
            .fetch_all(&self.reads)
            .await?;
        Ok(FleetCounts {
            newest_seq: self.newest_seq().await?,
            hosts: hosts.try_get(0)?,
            hosts_online: hosts.try_get(1)?,
            commands: commands
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<_, StoreError>>()?,
        })
    }
}
