//! The collector's configuration file (`/etc/cordon/collector.toml`). Every field has a
//! default, so an empty file (or none, with `--config` not given) is a working collector on
//! loopback with its SQLite database under `/var/lib/cordon-collector`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub const DEFAULT_PATH: &str = "/etc/cordon/collector.toml";

/// The most `max_event_bytes` may be (1 MiB).
pub const MAX_EVENT_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where the HTTP(S) API and the console listen.
    pub listen: SocketAddr,
    /// `sqlite://PATH` (the default) or `postgres://USER@HOST/DB`.
    pub database_url: String,
    /// Events older than this (by their own time) are deleted.
    pub retention: Duration,
    /// The most events one batch may carry.
    pub max_batch_events: usize,
    /// The most bytes a request body may have, compressed and once decompressed.
    pub max_body_bytes: usize,
    /// How long a command waits for its host before it expires.
    pub command_ttl: Duration,
    /// The most bytes of one event as stored: longer text is cut, with a marker.
    pub max_event_bytes: usize,
    /// The most bytes of one page of events: the page ends early, its `next` goes on.
    pub max_response_bytes: usize,
    /// How far ahead of the collector's clock an event's time may be; later ones are stored
    /// at the time they arrived (the host's time kept beside it).
    pub clock_skew: Duration,
    /// SQLite's `synchronous`: `full` (the default), `normal` or `extra`.
    pub sqlite_synchronous: Synchronous,
    /// Open connections in total, and from one client address.
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    /// How long a client may take to send a request's headers, its body, and how long a
    /// connection may sit idle between requests.
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    /// Live streams in total, and for one token.
    pub max_streams: usize,
    pub max_streams_per_token: usize,
    /// Certificate chain and key (PEM): HTTPS when set.
    pub tls: Option<Tls>,
    /// Serve plain HTTP on an address other than loopback (tokens then cross the network
    /// in clear text: only behind a TLS-terminating proxy).
    pub plain_http: bool,
    /// Where stored events are sent on to (`[[output]]`): see [`crate::output`].
    pub outputs: Vec<crate::output::Output>,
    /// Patterns across hosts and what to do on them (`[[fleet_rule]]`): see [`crate::fleet`].
    pub fleet_rules: Vec<crate::fleet::FleetRule>,
}

pub use crate::store::Synchronous;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    listen: Option<SocketAddr>,
    database_url: Option<String>,
    retention: Option<String>,
    max_batch_events: Option<usize>,
    max_body_bytes: Option<usize>,
    command_ttl: Option<String>,
    max_event_bytes: Option<usize>,
    max_response_bytes: Option<usize>,
    clock_skew: Option<String>,
    sqlite_synchronous: Option<Synchronous>,
    max_connections: Option<usize>,
    max_connections_per_client: Option<usize>,
    header_timeout: Option<String>,
    body_timeout: Option<String>,
    idle_timeout: Option<String>,
    max_streams: Option<usize>,
    max_streams_per_token: Option<usize>,
    tls: Option<Tls>,
    plain_http: Option<bool>,
    #[serde(default)]
    output: Vec<toml::Spanned<crate::output::config::OutputTable>>,
    #[serde(default)]
    fleet_rule: Vec<toml::Spanned<crate::fleet::FleetRuleTable>>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8086)),
            database_url: "sqlite:///var/lib/cordon-collector/collector.db".into(),
            retention: Duration::from_secs(30 * 24 * 3600),
            max_batch_events: 10_000,
            max_body_bytes: 16 << 20,
            command_ttl: Duration::from_secs(300),
            max_event_bytes: 64 << 10,
            max_response_bytes: 8 << 20,
            clock_skew: Duration::from_secs(300),
            sqlite_synchronous: Synchronous::Full,
            max_connections: 1024,
            max_connections_per_client: 64,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_streams: 256,
            max_streams_per_token: 8,
            tls: None,
            plain_http: false,
            outputs: Vec::new(),
            fleet_rules: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

impl Config {
    /// Reads `path`; a missing file is the defaults only when `must_exist` is false.
    pub fn load(path: &Path, must_exist: bool) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {
                Ok(Self::default())
            }
            Err(source) => Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let at = |span: Option<std::ops::Range<usize>>, message: String| {
            let (line, column) = line_col(text, span.map_or(0, |s| s.start));
            ConfigError::Invalid {
                path: path.to_owned(),
                line,
                column,
                message,
            }
        };
        let file: File = toml::from_str(text).map_err(|e| at(e.span(), e.message().into()))?;
        // Errors found after parsing point at the key's line.
        let key = |name: &str| text.find(&format!("{name} ")).or_else(|| text.find(name));
        let duration = |name: &str, value: Option<String>, default: Duration| match value {
            None => Ok(default),
            Some(v) => match humantime::parse_duration(&v) {
                Ok(d) if !d.is_zero() => Ok(d),
                Ok(_) => Err(at(
                    key(name).map(|s| s..s),
                    format!("{name} must be above 0"),
                )),
                Err(e) => Err(at(
                    key(name).map(|s| s..s),
                    format!("{name}: {e} (write it like \"30d\" or \"5m\")"),
                )),
            },
        };
        let defaults = Self::default();
        let database_url = file.database_url.unwrap_or(defaults.database_url);
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(at(
                key("database_url").map(|s| s..s),
                "database_url must start with sqlite:// or postgres://".into(),
            ));
        }
        let positive = |name: &str, value: Option<usize>, default: usize| match value {
            Some(0) => Err(at(
                key(name).map(|s| s..s),
                format!("{name} must be above 0"),
            )),
            Some(v) => Ok(v),
            None => Ok(default),
        };
        let listen = file.listen.unwrap_or(defaults.listen);
        let plain_http = file.plain_http.unwrap_or(false);
        if file.tls.is_none() && !listen.ip().is_loopback() && !plain_http {
            return Err(at(
                key("listen").map(|s| s..s),
                format!(
                    "listen = {listen} is reachable from other machines, and without [tls] every \
                     token would cross the network in clear text: add [tls], or set \
                     plain_http = true behind a TLS-terminating proxy"
                ),
            ));
        }
        // Files an output names are read now; a relative path is the config file's neighbour.
        let dir = path.parent().unwrap_or(Path::new("."));
        let outputs =
            crate::output::config::outputs(file.output, &|p| std::fs::read_to_string(dir.join(p)))
                .map_err(|(offset, message)| at(Some(offset..offset), message))?;
        let mut names = std::collections::HashSet::new();
        if let Some(twice) = outputs.iter().find(|o| !names.insert(o.name.as_str())) {
            return Err(at(
                text.rfind(&format!("\"{}\"", twice.name)).map(|s| s..s),
                format!(
                    "two outputs are named {:?}: each needs a name of its own (it names its \
                     cursor in the store)",
                    twice.name
                ),
            ));
        }
        let mut fleet_rules = Vec::new();
        for table in &file.fleet_rule {
            let rule = crate::fleet::FleetRule::compile(table.get_ref())
                .map_err(|e| at(Some(table.span()), format!("[[fleet_rule]]: {e}")))?;
            if fleet_rules
                .iter()
                .any(|r: &crate::fleet::FleetRule| r.name == rule.name)
            {
                return Err(at(
                    Some(table.span()),
                    format!("two fleet rules are named {:?}", rule.name),
                ));
            }
            fleet_rules.push(rule);
        }
        Ok(Self {
            outputs,
            fleet_rules,
            listen,
            plain_http,
            database_url,
            retention: duration("retention", file.retention, defaults.retention)?,
            max_batch_events: positive(
                "max_batch_events",
                file.max_batch_events,
                defaults.max_batch_events,
            )?,
            max_body_bytes: positive(
                "max_body_bytes",
                file.max_body_bytes,
                defaults.max_body_bytes,
            )?,
            command_ttl: duration("command_ttl", file.command_ttl, defaults.command_ttl)?,
            max_event_bytes: match positive(
                "max_event_bytes",
                file.max_event_bytes,
                defaults.max_event_bytes,
            )? {
                // A live stream holds at most 4 MiB unwritten, and replays half of it: an
                // event must fit in a replay.
                big if big > MAX_EVENT_BYTES => {
                    return Err(at(
                        key("max_event_bytes").map(|s| s..s),
                        format!("max_event_bytes must be at most {MAX_EVENT_BYTES}"),
                    ))
                }
                bytes => bytes,
            },
            max_response_bytes: positive(
                "max_response_bytes",
                file.max_response_bytes,
                defaults.max_response_bytes,
            )?,
            clock_skew: duration("clock_skew", file.clock_skew, defaults.clock_skew)?,
            sqlite_synchronous: file
                .sqlite_synchronous
                .unwrap_or(defaults.sqlite_synchronous),
            max_connections: positive(
                "max_connections",
                file.max_connections,
                defaults.max_connections,
            )?,
            max_connections_per_client: positive(
                "max_connections_per_client",
                file.max_connections_per_client,
                defaults.max_connections_per_client,
            )?,
            header_timeout: duration(
                "header_timeout",
                file.header_timeout,
                defaults.header_timeout,
            )?,
            body_timeout: duration("body_timeout", file.body_timeout, defaults.body_timeout)?,
            idle_timeout: match duration("idle_timeout", file.idle_timeout, defaults.idle_timeout)?
            {
                // Polls wait half of it and streams send a keep-alive at half of it.
                short if short < Duration::from_secs(2) => {
                    return Err(at(
                        key("idle_timeout").map(|s| s..s),
                        "idle_timeout must be at least 2s".into(),
                    ))
                }
                idle => idle,
            },
            max_streams: positive("max_streams", file.max_streams, defaults.max_streams)?,
            max_streams_per_token: positive(
                "max_streams_per_token",
                file.max_streams_per_token,
                defaults.max_streams_per_token,
            )?,
            tls: file.tls,
        })
    }
}

/// 1-based line and column (in characters) of byte `offset` of `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(Path::new("collector.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn an_empty_file_is_the_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn the_shipped_file_is_the_defaults() {
        let text = include_str!("../../dist/collector.toml");
        assert_eq!(parse(text).unwrap(), Config::default());
    }

    #[test]
    fn every_field_is_read() {
        let c = parse(
            "listen = \"[::1]:9000\"\ndatabase_url = \"postgres://c@localhost/c\"\n\
             retention = \"7d\"\nmax_batch_events = 5\nmax_body_bytes = 1000\n\
             command_ttl = \"1m\"\nmax_event_bytes = 4096\nmax_response_bytes = 100000\n\
             clock_skew = \"1m\"\nsqlite_synchronous = \"normal\"\nmax_connections = 9\n\
             max_connections_per_client = 3\nheader_timeout = \"2s\"\nbody_timeout = \"3s\"\n\
             idle_timeout = \"4s\"\nmax_streams = 7\nmax_streams_per_token = 2\n[tls]\ncert = \"/c.pem\"\nkey = \"/k.pem\"\n",
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.retention, Duration::from_secs(7 * 86400));
        assert_eq!(c.max_batch_events, 5);
        assert_eq!(c.command_ttl, Duration::from_secs(60));
        assert_eq!((c.max_event_bytes, c.max_response_bytes), (4096, 100_000));
        assert_eq!(c.clock_skew, Duration::from_secs(60));
        assert_eq!(c.sqlite_synchronous, Synchronous::Normal);
        assert_eq!((c.max_connections, c.max_connections_per_client), (9, 3));
        assert_eq!(
            (c.header_timeout, c.body_timeout, c.idle_timeout),
            (
                Duration::from_secs(2),
                Duration::from_secs(3),
                Duration::from_secs(4)
            )
        );
        assert_eq!((c.max_streams, c.max_streams_per_token), (7, 2));
        assert_eq!(c.tls.unwrap().key, PathBuf::from("/k.pem"));
    }

    #[test]
    fn errors_say_where() {
        let e = parse("listen = \"127.0.0.1:1\"\nretension = \"1d\"\n").unwrap_err();
        assert!(
            e.starts_with("collector.toml:2:1: unknown field `retension`"),
            "{e}"
        );
        let e = parse("\nretention = \"soon\"\n").unwrap_err();
        assert!(e.starts_with("collector.toml:2:1: retention:"), "{e}");
        let e = parse("database_url = \"mysql://x\"").unwrap_err();
        assert!(e.contains("1:1: database_url must start with"), "{e}");
        let e = parse("listen = \"0.0.0.0:8086\"").unwrap_err();
        assert!(e.contains("1:1: listen = 0.0.0.0:8086 is reachable"), "{e}");
        assert!(parse("listen = \"0.0.0.0:8086\"\nplain_http = true").is_ok());
        let e = parse("max_batch_events = 0").unwrap_err();
        assert!(e.contains("must be above 0"), "{e}");
        let e = parse("idle_timeout = \"1s\"").unwrap_err();
        assert!(e.contains("1:1: idle_timeout must be at least 2s"), "{e}");
        let e = parse("sqlite_synchronous = \"off\"").unwrap_err();
        assert!(e.contains("unknown variant `off`"), "{e}");
    }
}
