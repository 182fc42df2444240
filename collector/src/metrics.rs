//! The collector's own health, in the Prometheus text format (`GET /metrics`), named and
//! shaped like cordond's: counters end in `_total`, times are in seconds.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cordon_proto::collector::RejectReason;

/// Why the collector turned a client away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_connections` reached.
    Connections,
    /// `max_connections_per_client` reached by the client's address.
    ClientConnections,
    /// `max_streams` reached.
    Streams,
    /// `max_streams_per_token` reached by the token.
    TokenStreams,
    /// A stream whose client did not keep up, ended.
    SlowStream,
    /// 400
    BadRequest,
    /// 401
    Unauthorized,
    /// 403
    Forbidden,
    /// 408: a body that did not arrive in time.
    Timeout,
    /// 413
    TooLarge,
    /// Any other 4xx.
    Other,
}

impl Refusal {
    const ALL: [Refusal; 11] = [
        Self::Connections,
        Self::ClientConnections,
        Self::Streams,
        Self::TokenStreams,
        Self::SlowStream,
        Self::BadRequest,
        Self::Unauthorized,
        Self::Forbidden,
        Self::Timeout,
        Self::TooLarge,
        Self::Other,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Connections => "connections",
            Self::ClientConnections => "client_connections",
            Self::Streams => "streams",
            Self::TokenStreams => "token_streams",
            Self::SlowStream => "slow_stream",
            Self::BadRequest => "bad_request",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::Timeout => "timeout",
            Self::TooLarge => "too_large",
            Self::Other => "other",
        }
    }

    /// The refusal an error status stands for.
    pub fn of_status(status: u16) -> Self {
        match status {
            400 => Self::BadRequest,
            401 => Self::Unauthorized,
            403 => Self::Forbidden,
            408 => Self::Timeout,
            413 => Self::TooLarge,
            _ => Self::Other,
        }
    }
}

/// Upper bounds of the store-latency histogram, in seconds.
const BUCKETS: [f64; 9] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5];

#[derive(Debug, Default)]
pub struct Metrics {
    batches: AtomicU64,
    stored: AtomicU64,
    rejected: [AtomicU64; RejectReason::ALL.len()],
    refused: [AtomicU64; Refusal::ALL.len()],
    pub connections: AtomicU64,
    pub streams: AtomicU64,
    store_buckets: [AtomicU64; BUCKETS.len()],
    store_count: AtomicU64,
    store_micros: AtomicU64,
}

impl Metrics {
    /// A batch stored: `events` new ones, in `took`.
    pub fn stored(&self, events: usize, took: Duration) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.stored.fetch_add(events as u64, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        for (bound, count) in BUCKETS.iter().zip(&self.store_buckets) {
            if secs <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.store_count.fetch_add(1, Ordering::Relaxed);
        self.store_micros.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    pub fn rejected(&self, reason: RejectReason) {
        if let Some(i) = RejectReason::ALL.iter().position(|r| *r == reason) {
            self.rejected[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn refused(&self, why: Refusal) {
        if let Some(i) = Refusal::ALL.iter().position(|r| *r == why) {
            self.refused[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The Prometheus text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let head = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        head(
            &mut out,
            "cordon_collector_batches_total",
            "counter",
            "Event batches taken from hosts.",
        );
        let _ = writeln!(
            out,
            "cordon_collector_batches_total {}",
            load(&self.batches)
        );
        head(
            &mut out,
            "cordon_collector_events_stored_total",
            "counter",
            "Events stored (duplicates not counted).",
        );
        let _ = writeln!(
            out,
            "cordon_collector_events_stored_total {}",
            load(&self.stored)
        );
        head(
            &mut out,
            "cordon_collector_events_rejected_total",
            "counter",
            "Events set aside while the rest of their batch was stored, by reason.",
        );
        for (reason, count) in RejectReason::ALL.iter().zip(&self.rejected) {
            let _ = writeln!(
                out,
                "cordon_collector_events_rejected_total{{reason=\"{}\"}} {}",
                reason.as_str(),
                load(count)
            );
        }
        head(
            &mut out,
            "cordon_collector_refused_total",
            "counter",
            "Requests and connections turned away, by reason.",
        );
        for (why, count) in Refusal::ALL.iter().zip(&self.refused) {
            let _ = writeln!(
                out,
                "cordon_collector_refused_total{{reason=\"{}\"}} {}",
                why.as_str(),
                load(count)
            );
        }
        head(
            &mut out,
            "cordon_collector_connections",
            "gauge",
            "Open client connections.",
        );
        let _ = writeln!(
            out,
            "cordon_collector_connections {}",
            load(&self.connections)
        );
        head(
            &mut out,
            "cordon_collector_streams",
            "gauge",
            "Open live streams.",
        );
        let _ = writeln!(out, "cordon_collector_streams {}", load(&self.streams));
        head(
            &mut out,
            "cordon_collector_store_insert_seconds",
            "histogram",
            "Time to store one batch.",
        );
        for (bound, count) in BUCKETS.iter().zip(&self.store_buckets) {
            let _ = writeln!(
                out,
                "cordon_collector_store_insert_seconds_bucket{{le=\"{bound}\"}} {}",
                load(count)
            );
        }
        let count = load(&self.store_count);
        let _ = writeln!(
            out,
            "cordon_collector_store_insert_seconds_bucket{{le=\"+Inf\"}} {count}\n\
             cordon_collector_store_insert_seconds_sum {}\n\
             cordon_collector_store_insert_seconds_count {count}",
            load(&self.store_micros) as f64 / 1e6
        );
        out
    }
}

/// A host is online when it polled within this (as `GET /api/v1/hosts` says): cordond
/// polls at least every `idle_timeout` / 2 (30 s by default).
pub const ONLINE: Duration = Duration::from_secs(90);

/// Everything `/metrics` says: the counters above, the fleet as the store has it (hosts
/// online, commands by state), and each output's state.
pub async fn render(
    metrics: &Metrics,
    store: &crate::store::Store,
    idle_timeout: Duration,
    outputs: &[std::sync::Arc<crate::output::State>],
) -> String {
    let mut out = metrics.render();
    let head = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    head(
        &mut out,
        "cordon_collector_build_info",
        "gauge",
        "The collector's version, as a label.",
    );
    let _ = writeln!(
        out,
        "cordon_collector_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    let online = ONLINE.max(idle_timeout * 3 / 2);
    let since = crate::clock::now_ns() - i64::try_from(online.as_nanos()).unwrap_or(i64::MAX);
    let fleet = store.fleet_counts(since).await;
    head(
        &mut out,
        "cordon_collector_store_up",
        "gauge",
        "Whether the store answered the queries below.",
    );
    let _ = writeln!(out, "cordon_collector_store_up {}", u8::from(fleet.is_ok()));
    let fleet = match fleet {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!("metrics: cannot count the fleet: {e}");
            return out;
        }
    };
    head(
        &mut out,
        "cordon_collector_hosts",
        "gauge",
        "Hosts known, by whether they polled in the last 90 s (or 1.5 idle_timeout, when longer).",
    );
    let _ = writeln!(
        out,
        "cordon_collector_hosts{{state=\"online\"}} {}\ncordon_collector_hosts{{state=\"offline\"}} {}",
        fleet.hosts_online,
        fleet.hosts - fleet.hosts_online
    );
    head(
        &mut out,
        "cordon_collector_commands",
        "gauge",
        "Responders' commands in the store, by state.",
    );
    for status in ["queued", "delivered", "done", "failed", "expired"] {
        let n = fleet
            .commands
            .iter()
            .find(|(s, _)| s == status)
            .map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "cordon_collector_commands{{state=\"{status}\"}} {n}");
    }
    head(
        &mut out,
        "cordon_collector_events_newest_seq",
        "gauge",
        "The sequence number of the newest event stored.",
    );
    let _ = writeln!(
        out,
        "cordon_collector_events_newest_seq {}",
        fleet.newest_seq
    );
    render_outputs(&mut out, outputs, fleet.newest_seq);
    out
}

/// Each output's lines, labelled with its name and type.
fn render_outputs(out: &mut String, outputs: &[std::sync::Arc<crate::output::State>], newest: i64) {
    if outputs.is_empty() {
        return;
    }
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let series: [(&str, &str, &str); 6] = [
        ("cordon_collector_output_events_sent_total", "counter", "Events the output's receiver took."),
        ("cordon_collector_output_events_rejected_total", "counter", "Events the output's receiver refused for good (counted and passed)."),
        ("cordon_collector_output_failures_total", "counter", "Tries to send a batch that failed (each is tried again)."),
        ("cordon_collector_output_lag_events", "gauge", "Stored events (by sequence number) past the output's cursor: how far behind it is, at most."),
        ("cordon_collector_output_cursor", "gauge", "The output's cursor: every event at or below this sequence number was delivered or filtered out."),
        ("cordon_collector_output_last_success_timestamp_seconds", "gauge", "When the output's receiver last took a batch (0: not since the collector started)."),
    ];
    for (name, kind, help) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for state in outputs {
            let cursor = state.cursor.load(Ordering::Relaxed);
            let value = match name {
                "cordon_collector_output_events_sent_total" => load(&state.sent).to_string(),
                "cordon_collector_output_events_rejected_total" => {
                    load(&state.rejected).to_string()
                }
                "cordon_collector_output_failures_total" => load(&state.failures).to_string(),
                "cordon_collector_output_lag_events" => (if cursor < 0 {
                    newest
                } else {
                    (newest - cursor).max(0)
                })
                .to_string(),
                "cordon_collector_output_cursor" => cursor.max(0).to_string(),
                _ => {
                    let ns = state.last_success_ns.load(Ordering::Relaxed);
                    format!("{}", ns as f64 / 1e9)
                }
            };
            let _ = writeln!(
                out,
                "{name}{{output=\"{}\",type=\"{}\"}} {value}",
                state.output.name,
                state.output.kind.as_str()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_land_in_their_lines_and_buckets_are_cumulative() {
        let m = Metrics::default();
        m.stored(3, Duration::from_millis(3));
        m.stored(2, Duration::from_secs(1));
        m.rejected(RejectReason::Malformed);
        m.refused(Refusal::of_status(413));
        let text = m.render();
        for line in [
            "cordon_collector_batches_total 2",
            "cordon_collector_events_stored_total 5",
            "cordon_collector_events_rejected_total{reason=\"malformed\"} 1",
            "cordon_collector_events_rejected_total{reason=\"too_big\"} 0",
            "cordon_collector_refused_total{reason=\"too_large\"} 1",
            "cordon_collector_store_insert_seconds_bucket{le=\"0.0025\"} 0",
            "cordon_collector_store_insert_seconds_bucket{le=\"0.005\"} 1",
            "cordon_collector_store_insert_seconds_bucket{le=\"2.5\"} 2",
            "cordon_collector_store_insert_seconds_count 2",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }
}
