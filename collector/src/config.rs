//! The collector's configuration file (`/etc/cordon/collector.toml`). Every field has a
//! default, so an empty file (or none, with `--config` not given) is a working collector on
//! loopback with its SQLite database under `/var/lib/cordon-collector`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub const DEFAULT_PATH: &str = "/etc/cordon/collector.toml";

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
    /// Certificate chain and key (PEM): HTTPS when set.
    pub tls: Option<Tls>,
    /// Serve plain HTTP on an address other than loopback (tokens then cross the network
    /// in clear text: only behind a TLS-terminating proxy).
    pub plain_http: bool,
}

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
    tls: Option<Tls>,
    plain_http: Option<bool>,
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
            tls: None,
            plain_http: false,
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
        Ok(Self {
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
             command_ttl = \"1m\"\n[tls]\ncert = \"/c.pem\"\nkey = \"/k.pem\"\n",
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.retention, Duration::from_secs(7 * 86400));
        assert_eq!(c.max_batch_events, 5);
        assert_eq!(c.command_ttl, Duration::from_secs(60));
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
    }
}
