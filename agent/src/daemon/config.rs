//! `/etc/cordon/cordon.toml`: what cordond is told by ops. Every field has a default, so an
//! empty file (or none at all) gives a working daemon that reports to no collector; a bad
//! file stops the start with `FILE:LINE:COL: reason`.
//!
//! ```toml
//! host_id = "build-7"                      # default: /etc/machine-id, else the host name
//!
//! [collector]
//! url = "https://collector.example:8443"   # no url: events stay in the local journal
//! token_file = "/etc/cordon/collector.token"
//!
//! [spool]
//! dir = "/var/lib/cordon/spool"            # undelivered events, on disk
//! max_bytes = "256M"                       # past this, new events are counted as dropped
//!
//! [journal]
//! path = "/var/log/cordon/events.jsonl"    # what `cordon events` reads; rotated
//! max_bytes = "64M"                        # per file
//! keep = 4                                 # rotated files kept beside it
//!
//! [profiles]
//! path = ["/etc/cordon/profiles"]          # then the built-in profiles
//!
//! [audit]
//! enabled = true                           # turn kernel auditing on for Landlock's records
//!
//! [api]
//! socket = "/run/cordon/cordon.sock"
//! viewer_groups = ["cordon-viewers"]       # may list and read
//! responder_groups = ["cordon-responders"] # may also kill, freeze, thaw, isolate, release
//! run_groups = []                          # may run sandboxes; empty: every local user
//!
//! [metrics]
//! listen = "127.0.0.1:9464"                # Prometheus text format; off when absent
//!
//! [[response]]                             # for every sandbox, beside its profile's own
//! when = { kind = "syscall_denied", syscall = "ptrace" }
//! action = "kill"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use crate::profile::{Diagnostic, Loc, Source};

pub const DEFAULT_PATH: &str = "/etc/cordon/cordon.toml";
use crate::api::DEFAULT_SOCKET;

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was read from (`None`: defaults only).
    pub file: Option<PathBuf>,
    pub host_id: String,
    pub collector: Option<Collector>,
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
    pub journal_path: PathBuf,
    pub journal_max_bytes: u64,
    pub journal_keep: u32,
    pub profile_path: Vec<PathBuf>,
    pub audit: bool,
    pub api: Api,
    pub metrics: Option<SocketAddr>,
    /// DNS servers sandboxes' resolvers forward to (default: those of /etc/resolv.conf).
    pub dns_upstream: Vec<SocketAddr>,
    /// Response rules for every sandbox of the host, checked; compiled per sandbox (their
    /// placeholders are the sandbox's) by [`host_rules`].
    pub responses: Vec<cordon_policy::response::ResponseEntry>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Collector {
    /// The ingest endpoint's base URL (`http://` or `https://`).
    pub url: String,
    pub token_file: Option<PathBuf>,
    pub batch_max_events: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Api {
    pub socket: PathBuf,
    pub viewer_groups: Vec<String>,
    pub responder_groups: Vec<String>,
    pub run_groups: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(Diagnostic),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    host_id: Option<Spanned<String>>,
    #[serde(default)]
    collector: Option<CollectorFile>,
    #[serde(default)]
    spool: SpoolFile,
    #[serde(default)]
    journal: JournalFile,
    #[serde(default)]
    profiles: ProfilesFile,
    #[serde(default)]
    audit: AuditFile,
    #[serde(default)]
    api: ApiFile,
    #[serde(default)]
    metrics: MetricsFile,
    #[serde(default)]
    dns: DnsFile,
    /// Host-wide response rules, added to every sandbox's (`[[response]]`, as in profiles).
    #[serde(default)]
    response: Vec<Spanned<cordon_policy::response::ResponseEntry>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CollectorFile {
    url: Spanned<String>,
    token_file: Option<PathBuf>,
    batch_max_events: Option<Spanned<usize>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpoolFile {
    dir: Option<PathBuf>,
    max_bytes: Option<Spanned<Size>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct JournalFile {
    path: Option<PathBuf>,
    max_bytes: Option<Spanned<Size>>,
    keep: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfilesFile {
    path: Option<Vec<PathBuf>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditFile {
    enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiFile {
    socket: Option<Spanned<PathBuf>>,
    viewer_groups: Option<Vec<String>>,
    responder_groups: Option<Vec<String>>,
    run_groups: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsFile {
    listen: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DnsFile {
    upstream: Option<Vec<Spanned<String>>>,
}

/// A size: a number of bytes or `"256M"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Size {
    Bytes(u64),
    Text(String),
}

impl Config {
    /// Reads `path`; a missing file at the default path means the defaults.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(path, text),
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound && path == Path::new(DEFAULT_PATH) =>
            {
                let mut config = Self::parse(path, String::new())?;
                config.file = None;
                Ok(config)
            }
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    pub fn parse(path: &Path, text: String) -> Result<Self, ConfigError> {
        let source = Arc::new(Source {
            path: path.to_path_buf(),
            text,
        });
        let at = |span: std::ops::Range<usize>| Loc::new(Arc::clone(&source), span);
        let invalid = |span, message: String| ConfigError::Invalid(at(span).error(message));
        let file: File = toml::from_str(&source.text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            ConfigError::Invalid(at(span).error(crate::profile::with_suggestion(e.message())))
        })?;

        let host_id = match file.host_id {
            Some(id) => {
                let span = id.span();
                let id = id.into_inner();
                if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_control()) {
                    return Err(invalid(
                        span,
                        "host_id is 1 to 128 printable characters".into(),
                    ));
                }
                id
            }
            None => default_host_id(),
        };
        let collector = match file.collector {
            None => None,
            Some(c) => {
                let span = c.url.span();
                let url = c.url.into_inner();
                if !(url.starts_with("http://") || url.starts_with("https://"))
                    || url.len() <= "https://".len()
                {
                    return Err(invalid(
                        span,
                        format!("collector url `{url}` is not an http:// or https:// URL"),
                    ));
                }
                if url.starts_with("http://") && !is_loopback_url(&url) {
                    // The token and the commands would cross the network in clear text.
                    return Err(invalid(
                        span,
                        format!("collector url `{url}`: plain http:// only to this machine (127.0.0.1, localhost, [::1]); use https://"),
                    ));
                }
                let batch_max_events = match c.batch_max_events {
                    Some(n) if !(1..=10_000).contains(n.get_ref()) => {
                        return Err(invalid(
                            n.span(),
                            "batch_max_events is between 1 and 10000".into(),
                        ))
                    }
                    Some(n) => n.into_inner(),
                    None => 5000,
                };
                Some(Collector {
                    url: url.trim_end_matches('/').to_string(),
                    token_file: c.token_file,
                    batch_max_events,
                })
            }
        };
        let size = |value: Option<Spanned<Size>>, default: u64, min: u64, what: &str| {
            let Some(value) = value else {
                return Ok(default);
            };
            let span = value.span();
            let bytes = match value.into_inner() {
                Size::Bytes(n) => Some(n),
                Size::Text(t) => crate::policy::size_in_bytes(&t),
            };
            match bytes {
                Some(n) if n >= min => Ok(n),
                _ => Err(invalid(
                    span,
                    format!(
                        "{what} is a number of bytes or a size like \"256M\" (at least {} KiB)",
                        min >> 10
                    ),
                )),
            }
        };
        let spool_max_bytes = size(file.spool.max_bytes, 256 << 20, 64 << 10, "spool.max_bytes")?;
        let journal_max_bytes = size(
            file.journal.max_bytes,
            64 << 20,
            64 << 10,
            "journal.max_bytes",
        )?;
        let socket = match file.api.socket {
            Some(s) if !s.get_ref().is_absolute() => {
                return Err(invalid(s.span(), "api.socket is an absolute path".into()))
            }
            Some(s) => s.into_inner(),
            None => PathBuf::from(DEFAULT_SOCKET),
        };
        let metrics = match file.metrics.listen {
            None => None,
            Some(listen) => {
                let span = listen.span();
                match listen.get_ref().parse::<SocketAddr>() {
                    Ok(addr) => Some(addr),
                    Err(_) => {
                        return Err(invalid(
                            span,
                            format!(
                                "metrics.listen `{}` is not ADDRESS:PORT (like 127.0.0.1:9464)",
                                listen.get_ref()
                            ),
                        ))
                    }
                }
            }
        };
        // Checked now against placeholders of a made-up sandbox: a mistake stops the start
        // (or the reload), not a launch.
        let located: Vec<_> = file
            .response
            .iter()
            .map(|entry| crate::profile::Located {
                value: entry.get_ref().clone(),
                loc: at(entry.span()),
            })
            .collect();
        if let Err(errors) = crate::policy::compile_responses(
            &located,
            Path::new("/workspace"),
            Path::new("/home/user"),
            1000,
        ) {
            if let Some(first) = errors.0.into_iter().next() {
                return Err(ConfigError::Invalid(first));
            }
        }
        let mut dns_upstream = Vec::new();
        for upstream in file.dns.upstream.unwrap_or_default() {
            match upstream.get_ref().parse::<SocketAddr>() {
                Ok(addr) => dns_upstream.push(addr),
                Err(_) => {
                    return Err(invalid(
                        upstream.span(),
                        format!("dns.upstream `{}` is not ADDRESS:PORT", upstream.get_ref()),
                    ))
                }
            }
        }
        Ok(Self {
            file: Some(path.to_path_buf()),
            host_id,
            collector,
            spool_dir: file
                .spool
                .dir
                .unwrap_or_else(|| PathBuf::from("/var/lib/cordon/spool")),
            spool_max_bytes,
            journal_path: file
                .journal
                .path
                .unwrap_or_else(|| PathBuf::from("/var/log/cordon/events.jsonl")),
            journal_max_bytes,
            journal_keep: file.journal.keep.unwrap_or(4),
            profile_path: file
                .profiles
                .path
                .unwrap_or_else(|| vec![PathBuf::from(crate::profile::SYSTEM_PROFILE_DIR)]),
            audit: file.audit.enabled.unwrap_or(true),
            api: Api {
                socket,
                viewer_groups: file
                    .api
                    .viewer_groups
                    .unwrap_or_else(|| vec!["cordon-viewers".into()]),
                responder_groups: file
                    .api
                    .responder_groups
                    .unwrap_or_else(|| vec!["cordon-responders".into()]),
                run_groups: file.api.run_groups.unwrap_or_default(),
            },
            metrics,
            responses: located.into_iter().map(|l| l.value).collect(),
            dns_upstream,
        })
    }

    /// The collector's bearer token, read from its file (trailing whitespace removed).
    pub fn collector_token(&self) -> Result<Option<String>, ConfigError> {
        let Some(path) = self.collector.as_ref().and_then(|c| c.token_file.as_ref()) else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        Ok(Some(text.trim().to_string()))
    }
}

/// Whether an `http://` URL names this machine.
fn is_loopback_url(url: &str) -> bool {
    let rest = url.trim_start_matches("http://");
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `/etc/machine-id`, else the host name.
/// The host's response rules for the sandbox `policy` describes, added to its own.
pub fn host_rules(
    entries: &[cordon_policy::response::ResponseEntry],
    policy: &crate::policy::Policy,
) -> Result<Vec<cordon_policy::response::ResponseRule>, String> {
    let source = Arc::new(Source {
        path: PathBuf::from("cordon.toml [[response]]"),
        text: String::new(),
    });
    let located: Vec<_> = entries
        .iter()
        .map(|value| crate::profile::Located {
            value: value.clone(),
            loc: Loc::new(Arc::clone(&source), 0..0),
        })
        .collect();
    crate::policy::compile_responses(
        &located,
        &policy.workspace,
        &policy.identity.home,
        policy.identity.uid,
    )
    .map_err(|e| e.to_string())
}

pub fn default_host_id() -> String {
    std::fs::read_to_string("/etc/machine-id")
        .ok()
        .map(|id| id.trim().to_string())
        .filter(|id| !id.is_empty())
        .or_else(|| {
            nix::unistd::gethostname()
                .ok()
                .map(|h| h.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "unknown-host".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(Path::new("c.toml"), text.to_string()).map_err(|e| e.to_string())
    }

    #[test]
    fn an_empty_file_gives_working_defaults() {
        let c = parse("").unwrap();
        assert!(c.collector.is_none());
        assert_eq!(c.api.socket, PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(c.spool_max_bytes, 256 << 20);
        assert!(c.audit);
        assert!(!c.host_id.is_empty());
    }

    #[test]
    fn fields_are_read() {
        let c = parse(
            "host_id = \"h1\"\n[collector]\nurl = \"http://127.0.0.1:9/\"\ntoken_file = \"/t\"\n\
             [spool]\ndir = \"/s\"\nmax_bytes = \"1M\"\n[api]\nsocket = \"/x.sock\"\nviewer_groups = [\"v\"]\n\
             [metrics]\nlisten = \"127.0.0.1:9464\"\n",
        )
        .unwrap();
        assert_eq!(c.host_id, "h1");
        let collector = c.collector.unwrap();
        assert_eq!(collector.url, "http://127.0.0.1:9");
        assert_eq!(collector.token_file, Some(PathBuf::from("/t")));
        assert_eq!(c.spool_dir, PathBuf::from("/s"));
        assert_eq!(c.spool_max_bytes, 1 << 20);
        assert_eq!(c.api.viewer_groups, vec!["v".to_string()]);
        assert_eq!(c.metrics, Some("127.0.0.1:9464".parse().unwrap()));
    }

    #[test]
    fn the_shipped_config_is_the_defaults() {
        let shipped = Config::parse(
            Path::new("dist/cordon.toml"),
            include_str!("../../../dist/cordon.toml").to_string(),
        )
        .unwrap();
        let mut defaults = parse("").unwrap();
        defaults.file = shipped.file.clone();
        assert_eq!(shipped, defaults);
    }

    #[test]
    fn errors_say_where_and_why() {
        let e = parse("[spool]\nmax_bytes = \"lots\"\n").unwrap_err();
        assert_eq!(
            e,
            "c.toml:2:13: spool.max_bytes is a number of bytes or a size like \"256M\" (at least 64 KiB)"
        );
        let e = parse("[collector]\nurl = \"http://collector.example\"\n").unwrap_err();
        assert!(e.contains("plain http:// only to this machine"), "{e}");
        for local in [
            "http://localhost:80",
            "http://[::1]:9/x",
            "http://127.0.0.2",
        ] {
            assert!(
                parse(&format!("[collector]\nurl = \"{local}\"\n")).is_ok(),
                "{local}"
            );
        }
        let e = parse("[collector]\nurl = \"ftp://x\"\n").unwrap_err();
        assert!(e.starts_with("c.toml:2:7: collector url `ftp://x`"), "{e}");
        let e = parse("[api]\nsokcet = \"/x\"\n").unwrap_err();
        assert!(e.starts_with("c.toml:2:1: unknown field `sokcet`"), "{e}");
        assert!(e.contains("socket"), "{e}");
        let e = parse("[api]\nsocket = \"rel.sock\"\n").unwrap_err();
        assert!(
            e.starts_with("c.toml:2:10: api.socket is an absolute path"),
            "{e}"
        );
    }
}
