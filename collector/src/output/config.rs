//! `[[output]]` tables of `collector.toml`: read with the place of every key, checked
//! against what each type takes, and turned into [`Output`]s. Files named (secrets, CA
//! certificates) are read here, so `cordon-collector check` finds a missing one.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use cordon_proto::event::{Severity, What};
use serde::Deserialize;
use toml::Spanned;

/// One `[[output]]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputTable {
    name: Spanned<String>,
    #[serde(rename = "type")]
    kind: Spanned<String>,
    // The filter.
    kinds: Option<Spanned<Vec<String>>>,
    severity: Option<Spanned<String>>,
    hosts: Option<Vec<String>>,
    profiles: Option<Vec<String>>,
    sandbox: Option<Spanned<String>>,
    // Delivery.
    batch_max: Option<Spanned<usize>>,
    timeout: Option<Spanned<String>>,
    max_backoff: Option<Spanned<String>>,
    // The receiver: which of these a type takes is in `Type::settings`.
    url: Option<Spanned<String>>,
    secret_file: Option<Spanned<PathBuf>>,
    token_file: Option<Spanned<PathBuf>>,
    headers: Option<Spanned<BTreeMap<String, String>>>,
    ca_file: Option<Spanned<PathBuf>>,
    console_url: Option<Spanned<String>>,
    address: Option<Spanned<String>>,
    tls: Option<Spanned<bool>>,
    server_name: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
    facility: Option<Spanned<String>>,
    app_name: Option<Spanned<String>>,
    index: Option<Spanned<String>>,
    sourcetype: Option<Spanned<String>>,
    source: Option<Spanned<String>>,
}

/// What kind of receiver an output sends to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Type {
    Webhook,
    Slack,
    Syslog,
    Otlp,
    SplunkHec,
    Elasticsearch,
}

impl Type {
    pub const ALL: [Type; 6] = [
        Type::Webhook,
        Type::Slack,
        Type::Syslog,
        Type::Otlp,
        Type::SplunkHec,
        Type::Elasticsearch,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Type::Webhook => "webhook",
            Type::Slack => "slack",
            Type::Syslog => "syslog",
            Type::Otlp => "otlp",
            Type::SplunkHec => "splunk_hec",
            Type::Elasticsearch => "elasticsearch",
        }
    }

    /// The receiver's settings this type takes, the required ones first (marked).
    fn settings(self) -> &'static [(&'static str, bool)] {
        match self {
            Type::Webhook => &[
                ("url", true),
                ("secret_file", true),
                ("headers", false),
                ("ca_file", false),
            ],
            Type::Slack => &[("url", true), ("console_url", true), ("ca_file", false)],
            Type::Syslog => &[
                ("address", true),
                ("tls", false),
                ("ca_file", false),
                ("server_name", false),
                ("format", false),
                ("facility", false),
                ("app_name", false),
            ],
            Type::Otlp => &[("url", true), ("headers", false), ("ca_file", false)],
            Type::SplunkHec => &[
                ("url", true),
                ("token_file", true),
                ("index", false),
                ("sourcetype", false),
                ("source", false),
                ("ca_file", false),
            ],
            Type::Elasticsearch => &[
                ("url", true),
                ("index", false),
                ("token_file", false),
                ("headers", false),
                ("ca_file", false),
            ],
        }
    }

    /// Events a batch carries at most, unless `batch_max` says otherwise: a Slack message
    /// is read by people, so it stays short.
    fn default_batch(self) -> usize {
        match self {
            Type::Slack => 20,
            _ => 500,
        }
    }
}

/// What an output sends: every field may be left out (all events).
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct Filter {
    pub kinds: Vec<String>,
    /// Events of this severity or higher.
    pub severity: Option<Severity>,
    pub hosts: Vec<String>,
    pub profiles: Vec<String>,
    /// A glob (`*` any run of characters, `?` one) the sandbox's name must match.
    pub sandbox: Option<String>,
}

impl Filter {
    pub fn sandbox_matches(&self, sandbox: &str) -> bool {
        self.sandbox.as_deref().is_none_or(|g| glob(g, sandbox))
    }
}

/// `*` any run of characters, `?` any one; nothing else is special.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// A secret read from a file: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How a syslog message's text is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SyslogFormat {
    /// The event's JSON (with its host).
    Json,
    /// ArcSight's Common Event Format.
    Cef,
}

/// Where an output's events go, by type.
#[derive(Debug, Clone, PartialEq)]
pub enum Receiver {
    Webhook {
        url: String,
        secret: Secret,
        headers: BTreeMap<String, String>,
    },
    Slack {
        url: Secret,
        console_url: String,
    },
    Syslog {
        /// `HOST:PORT`
        address: String,
        /// The CA certificate(s) to check the server's against, when over TLS.
        tls: Option<PathBuf>,
        server_name: String,
        format: SyslogFormat,
        /// The RFC 5424 facility number (0 to 23).
        facility: u8,
        app_name: String,
    },
    Otlp {
        /// The logs endpoint: the configured URL with `/v1/logs`.
        url: String,
        headers: BTreeMap<String, String>,
    },
    SplunkHec {
        /// The event endpoint: the configured URL with `/services/collector/event`.
        url: String,
        token: Secret,
        index: Option<String>,
        sourcetype: String,
        source: String,
    },
    Elasticsearch {
        /// The `_bulk` endpoint: the configured URL with `/_bulk`.
        url: String,
        index: String,
        api_key: Option<Secret>,
        headers: BTreeMap<String, String>,
    },
}

/// One output, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub name: String,
    pub kind: Type,
    pub filter: Filter,
    pub receiver: Receiver,
    /// A CA certificate (PEM) to trust besides the system's, for HTTPS receivers.
    pub ca_file: Option<PathBuf>,
    pub batch_max: usize,
    pub timeout: Duration,
    /// The longest wait between two tries while the receiver fails.
    pub max_backoff: Duration,
}

impl Output {
    /// Where it sends, without a secret a URL may carry (a Slack webhook's path, a
    /// password): for people and metrics.
    pub fn destination(&self) -> String {
        let origin = |url: &str| match reqwest::Url::parse(url) {
            Ok(u) => format!(
                "{}://{}{}",
                u.scheme(),
                u.host_str().unwrap_or_default(),
                u.port().map(|p| format!(":{p}")).unwrap_or_default()
            ),
            Err(_) => "?".into(),
        };
        match &self.receiver {
            Receiver::Webhook { url, .. }
            | Receiver::Otlp { url, .. }
            | Receiver::SplunkHec { url, .. }
            | Receiver::Elasticsearch { url, .. } => origin(url),
            Receiver::Slack { url, .. } => origin(&url.0),
            Receiver::Syslog { address, tls, .. } => format!(
                "{}://{address}",
                if tls.is_some() {
                    "syslog+tls"
                } else {
                    "syslog"
                }
            ),
        }
    }
}

/// A mistake in an `[[output]]` table: the byte offset it is at, and what it is.
pub type Mistake = (usize, String);

/// Checks the `[[output]]` tables; `read` reads a file a table names (a secret or a CA).
pub fn outputs(
    tables: Vec<Spanned<OutputTable>>,
    read: &dyn Fn(&std::path::Path) -> std::io::Result<String>,
) -> Result<Vec<Output>, Mistake> {
    let mut out: Vec<Output> = Vec::new();
    for table in tables {
        let at = table.span().start;
        let t = table.into_inner();
        let output = output(t, at, read)?;
        out.push(output);
    }
    Ok(out)
}

fn output(
    t: OutputTable,
    at: usize,
    read: &dyn Fn(&std::path::Path) -> std::io::Result<String>,
) -> Result<Output, Mistake> {
    let name = t.name.get_ref().trim().to_string();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err((
            t.name.span().start,
            format!(
                "output name {:?}: letters, digits, '-', '_' and '.' only (it names the \
                 output's cursor in the store and its metrics)",
                t.name.get_ref()
            ),
        ));
    }
    let kind = match Type::ALL
        .into_iter()
        .find(|k| k.as_str() == t.kind.get_ref())
    {
        Some(k) => k,
        None => {
            let names: Vec<&str> = Type::ALL.iter().map(|k| k.as_str()).collect();
            let near = names
                .iter()
                .map(|n| (strsim::damerau_levenshtein(t.kind.get_ref(), n), *n))
                .min()
                .filter(|(d, _)| *d <= 3)
                .map(|(_, n)| format!(" (did you mean {n:?}?)"))
                .unwrap_or_default();
            return Err((
                t.kind.span().start,
                format!(
                    "unknown output type {:?}{near}: one of {}",
                    t.kind.get_ref(),
                    names.join(", ")
                ),
            ));
        }
    };
    // Every receiver setting given must be one this type takes; the required ones must be
    // there.
    let given: [(&str, Option<usize>); 15] = [
        ("url", t.url.as_ref().map(|s| s.span().start)),
        (
            "secret_file",
            t.secret_file.as_ref().map(|s| s.span().start),
        ),
        ("token_file", t.token_file.as_ref().map(|s| s.span().start)),
        ("headers", t.headers.as_ref().map(|s| s.span().start)),
        ("ca_file", t.ca_file.as_ref().map(|s| s.span().start)),
        (
            "console_url",
            t.console_url.as_ref().map(|s| s.span().start),
        ),
        ("address", t.address.as_ref().map(|s| s.span().start)),
        ("tls", t.tls.as_ref().map(|s| s.span().start)),
        (
            "server_name",
            t.server_name.as_ref().map(|s| s.span().start),
        ),
        ("format", t.format.as_ref().map(|s| s.span().start)),
        ("facility", t.facility.as_ref().map(|s| s.span().start)),
        ("app_name", t.app_name.as_ref().map(|s| s.span().start)),
        ("index", t.index.as_ref().map(|s| s.span().start)),
        ("sourcetype", t.sourcetype.as_ref().map(|s| s.span().start)),
        ("source", t.source.as_ref().map(|s| s.span().start)),
    ];
    let takes = kind.settings();
    let list = || takes.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
    for (setting, span) in &given {
        if let Some(span) = span {
            if !takes.iter().any(|(n, _)| n == setting) {
                return Err((
                    *span,
                    format!(
                        "{setting} is not a setting of a {} output (its settings: {})",
                        kind.as_str(),
                        list()
                    ),
                ));
            }
        }
    }
    for (setting, required) in takes {
        let present = given.iter().any(|(n, s)| n == setting && s.is_some());
        if *required && !present {
            return Err((
                at,
                format!(
                    "output {name:?}: a {} output needs {setting}",
                    kind.as_str()
                ),
            ));
        }
    }
    let filter = filter(&t)?;
    let duration = |value: &Option<Spanned<String>>, key: &str, default: Duration| match value {
        None => Ok(default),
        Some(v) => match humantime::parse_duration(v.get_ref()) {
            Ok(d) if !d.is_zero() => Ok(d),
            Ok(_) => Err((v.span().start, format!("{key} must be above 0"))),
            Err(e) => Err((
                v.span().start,
                format!("{key}: {e} (write it like \"10s\" or \"1m\")"),
            )),
        },
    };
    let timeout = duration(&t.timeout, "timeout", Duration::from_secs(10))?;
    let max_backoff = duration(&t.max_backoff, "max_backoff", Duration::from_secs(60))?;
    let batch_max = match &t.batch_max {
        None => kind.default_batch(),
        Some(b) if (1..=10_000).contains(b.get_ref()) => *b.get_ref(),
        Some(b) => return Err((b.span().start, "batch_max must be 1 to 10000".into())),
    };
    let file = |value: &Spanned<PathBuf>, what: &str| -> Result<String, Mistake> {
        read(value.get_ref()).map_err(|e| {
            (
                value.span().start,
                format!("cannot read the {what} {}: {e}", value.get_ref().display()),
            )
        })
    };
    let secret =
        |value: &Option<Spanned<PathBuf>>, what: &str| -> Result<Option<Secret>, Mistake> {
            let Some(value) = value else { return Ok(None) };
            let text = file(value, what)?.trim().to_string();
            if text.is_empty() {
                return Err((
                    value.span().start,
                    format!("the {what} {} is empty", value.get_ref().display()),
                ));
            }
            Ok(Some(Secret(text)))
        };
    let ca_file = match &t.ca_file {
        Some(ca) => {
            let pem = file(ca, "CA certificate")?;
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                return Err((
                    ca.span().start,
                    format!(
                        "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                        ca.get_ref().display()
                    ),
                ));
            }
            Some(ca.get_ref().clone())
        }
        None => None,
    };
    let url = |value: &Option<Spanned<String>>, key: &str| -> Result<String, Mistake> {
        let Some(value) = value else {
            return Ok(String::new());
        };
        match reqwest::Url::parse(value.get_ref()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
                Ok(value.get_ref().clone())
            }
            Ok(_) => Err((
                value.span().start,
                format!("{key} must be an http:// or https:// URL"),
            )),
            Err(e) => Err((value.span().start, format!("{key}: {e}"))),
        }
    };
    // A base URL and the path the receiver's API puts after it.
    let endpoint = |key: &str, path: &str| -> Result<String, Mistake> {
        let base = url(&t.url, key)?;
        Ok(format!("{}{path}", base.trim_end_matches('/')))
    };
    let headers = t
        .headers
        .as_ref()
        .map(|h| h.get_ref().clone())
        .unwrap_or_default();
    if let Some(h) = &t.headers {
        for (k, v) in h.get_ref() {
            if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err()
                || reqwest::header::HeaderValue::from_str(v).is_err()
            {
                return Err((
                    h.span().start,
                    format!("headers: {k:?} is not a valid header"),
                ));
            }
        }
    }
    let text = |value: &Option<Spanned<String>>, default: &str| {
        value
            .as_ref()
            .map_or_else(|| default.to_string(), |v| v.get_ref().clone())
    };
    let receiver = match kind {
        Type::Webhook => Receiver::Webhook {
            url: url(&t.url, "url")?,
            secret: secret(&t.secret_file, "secret file")?.unwrap_or(Secret(String::new())),
            headers,
        },
        Type::Slack => {
            let console_url = url(&t.console_url, "console_url")?;
            Receiver::Slack {
                url: Secret(url(&t.url, "url")?),
                console_url: console_url.trim_end_matches('/').to_string(),
            }
        }
        Type::Syslog => {
            let address = t
                .address
                .as_ref()
                .map(|a| a.get_ref().clone())
                .unwrap_or_default();
            let (host, port) = address.rsplit_once(':').unwrap_or((&address, ""));
            if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
                return Err((
                    t.address.as_ref().map_or(at, |a| a.span().start),
                    format!("address {address:?}: write it HOST:PORT (6514 is syslog over TLS, 601 over TCP)"),
                ));
            }
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let tls = t.tls.as_ref().is_some_and(|t| *t.get_ref());
            if tls && ca_file.is_none() {
                return Err((
                    t.tls.as_ref().map_or(at, |t| t.span().start),
                    "tls = true needs ca_file: the CA certificate the server's is checked against"
                        .into(),
                ));
            }
            if !tls {
                if let Some(ca) = &t.ca_file {
                    return Err((ca.span().start, "ca_file is for tls = true".into()));
                }
            }
            let format = match t.format.as_ref().map(|f| f.get_ref().as_str()) {
                None | Some("json") => SyslogFormat::Json,
                Some("cef") => SyslogFormat::Cef,
                Some(other) => {
                    return Err((
                        t.format.as_ref().map_or(at, |f| f.span().start),
                        format!("format {other:?}: json or cef"),
                    ))
                }
            };
            let facility = match &t.facility {
                None => 4, // auth: security messages
                Some(f) => match FACILITIES.iter().position(|n| n == f.get_ref()) {
                    Some(i) => i as u8,
                    None => {
                        return Err((
                            f.span().start,
                            format!(
                                "facility {:?}: one of {}",
                                f.get_ref(),
                                FACILITIES.join(", ")
                            ),
                        ))
                    }
                },
            };
            let app_name = text(&t.app_name, "cordon");
            if app_name.is_empty()
                || app_name.len() > 48
                || !app_name.bytes().all(|b| (33..=126).contains(&b))
            {
                return Err((
                    t.app_name.as_ref().map_or(at, |a| a.span().start),
                    "app_name: 1 to 48 printable ASCII characters, no space (RFC 5424)".into(),
                ));
            }
            Receiver::Syslog {
                server_name: text(&t.server_name, &host),
                address,
                tls: tls.then(|| ca_file.clone()).flatten(),
                format,
                facility,
                app_name,
            }
        }
        Type::Otlp => Receiver::Otlp {
            url: endpoint("url", "/v1/logs")?,
            headers,
        },
        Type::SplunkHec => Receiver::SplunkHec {
            url: endpoint("url", "/services/collector/event")?,
            token: secret(&t.token_file, "token file")?.unwrap_or(Secret(String::new())),
            index: t.index.as_ref().map(|i| i.get_ref().clone()),
            sourcetype: text(&t.sourcetype, "cordon:event"),
            source: text(&t.source, "cordon"),
        },
        Type::Elasticsearch => {
            let index = text(&t.index, "logs-cordon-default");
            if index.is_empty()
                || index != index.to_lowercase()
                || index.starts_with(['-', '_', '+'])
                || index.contains(['\\', '/', '*', '?', '"', '<', '>', '|', ' ', ',', '#', ':'])
            {
                return Err((
                    t.index.as_ref().map_or(at, |i| i.span().start),
                    format!("index {index:?} is not a valid index or data stream name"),
                ));
            }
            Receiver::Elasticsearch {
                url: endpoint("url", "/_bulk")?,
                index,
                api_key: secret(&t.token_file, "token file")?,
                headers,
            }
        }
    };
    Ok(Output {
        name,
        kind,
        filter,
        receiver,
        ca_file,
        batch_max,
        timeout,
        max_backoff,
    })
}

/// RFC 5424's facilities, by number.
const FACILITIES: [&str; 24] = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];

fn filter(t: &OutputTable) -> Result<Filter, Mistake> {
    let kinds = match &t.kinds {
        None => Vec::new(),
        Some(kinds) => {
            for k in kinds.get_ref() {
                if !What::KINDS.contains(&k.as_str()) {
                    let near = What::KINDS
                        .iter()
                        .map(|n| (strsim::damerau_levenshtein(k, n), *n))
                        .min()
                        .filter(|(d, _)| *d <= 3)
                        .map(|(_, n)| format!(" (did you mean {n:?}?)"))
                        .unwrap_or_default();
                    return Err((
                        kinds.span().start,
                        format!("kinds: {k:?} is not a kind of event{near}"),
                    ));
                }
            }
            kinds.get_ref().clone()
        }
    };
    let severity = match &t.severity {
        None => None,
        Some(s) => Some(
            s.get_ref()
                .parse::<Severity>()
                .map_err(|e| (s.span().start, format!("severity: {e}")))?,
        ),
    };
    if let Some(g) = &t.sandbox {
        if g.get_ref().is_empty() {
            return Err((
                g.span().start,
                "sandbox: an empty glob matches nothing".into(),
            ));
        }
    }
    Ok(Filter {
        kinds,
        severity,
        hosts: t.hosts.clone().unwrap_or_default(),
        profiles: t.profiles.clone().unwrap_or_default(),
        sandbox: t.sandbox.as_ref().map(|s| s.get_ref().clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_the_whole_name() {
        assert!(glob("agent-*", "agent-1-0"));
        assert!(glob("*-1-?", "agent-1-0"));
        assert!(glob("*", ""));
        assert!(!glob("agent-*", "xagent-1"));
        assert!(!glob("a?c", "abbc"));
        assert!(glob("a*b*c", "aXbYbZc"));
    }

    fn parse(dir: &std::path::Path, text: &str) -> Result<crate::config::Config, String> {
        crate::config::Config::parse(&dir.join("collector.toml"), text).map_err(|e| {
            e.to_string().replace(
                &dir.join("collector.toml").display().to_string(),
                "collector.toml",
            )
        })
    }

    #[test]
    fn every_type_is_read_and_mistakes_say_where() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "s3cret\n").unwrap();
        std::fs::write(dir.path().join("ca.pem"), "-----BEGIN CERTIFICATE-----\n").unwrap();
        let c = parse(
            dir.path(),
            r#"
[[output]]
name = "hook"
type = "webhook"
url = "https://hooks.example/cordon"
secret_file = "secret"
kinds = ["file_denied"]
severity = "high"
sandbox = "agent-*"

[[output]]
name = "chat"
type = "slack"
url = "https://hooks.slack.com/services/T/B/X"
console_url = "https://cordon.example/"

[[output]]
name = "siem"
type = "syslog"
address = "logs.example:6514"
tls = true
ca_file = "ca.pem"
format = "cef"

[[output]]
name = "otel"
type = "otlp"
url = "http://127.0.0.1:4318"

[[output]]
name = "splunk"
type = "splunk_hec"
url = "https://splunk.example:8088/"
token_file = "secret"

[[output]]
name = "es"
type = "elasticsearch"
url = "https://es.example:9200"
"#,
        )
        .unwrap();
        assert_eq!(c.outputs.len(), 6);
        assert_eq!(c.outputs[0].filter.severity, Some(Severity::High));
        assert!(
            matches!(&c.outputs[0].receiver, Receiver::Webhook { secret, .. } if secret.0 == "s3cret")
        );
        assert_eq!(c.outputs[1].batch_max, 20);
        assert_eq!(c.outputs[1].destination(), "https://hooks.slack.com");
        assert!(
            matches!(&c.outputs[2].receiver, Receiver::Syslog { server_name, format: SyslogFormat::Cef, facility: 4, .. } if server_name == "logs.example")
        );
        assert!(
            matches!(&c.outputs[3].receiver, Receiver::Otlp { url, .. } if url == "http://127.0.0.1:4318/v1/logs")
        );
        assert!(
            matches!(&c.outputs[4].receiver, Receiver::SplunkHec { url, .. } if url == "https://splunk.example:8088/services/collector/event")
        );
        assert!(
            matches!(&c.outputs[5].receiver, Receiver::Elasticsearch { index, .. } if index == "logs-cordon-default")
        );
        assert!(!format!("{:?}", c.outputs[0]).contains("s3cret"));

        let d = dir.path();
        for (text, expected) in [
            ("[[output]]\nname = \"a\"\ntype = \"webhok\"\n", "collector.toml:3:8: unknown output type \"webhok\" (did you mean \"webhook\"?)"),
            ("[[output]]\nname = \"a\"\ntype = \"webhook\"\nurl = \"http://x\"\n", "collector.toml:1:1: output \"a\": a webhook output needs secret_file"),
            ("[[output]]\nname = \"a\"\ntype = \"otlp\"\nurl = \"http://x\"\naddress = \"x:1\"\n", "collector.toml:5:11: address is not a setting of a otlp output"),
            ("[[output]]\nname = \"a\"\ntype = \"otlp\"\nurl = \"http://x\"\nkinds = [\"file_denid\"]\n", "collector.toml:5:9: kinds: \"file_denid\" is not a kind of event (did you mean \"file_denied\"?)"),
            ("[[output]]\nname = \"a\"\ntype = \"syslog\"\naddress = \"x:1\"\ntls = true\n", "collector.toml:5:7: tls = true needs ca_file"),
            ("[[output]]\nname = \"a\"\ntype = \"webhook\"\nurl = \"http://x\"\nsecret_file = \"nope\"\n", "collector.toml:5:15: cannot read the secret file nope"),
            ("[[output]]\nname = \"a\"\ntype = \"otlp\"\nurl = \"ftp://x\"\n", "collector.toml:4:7: url must be an http:// or https:// URL"),
            ("[[output]]\nname = \"a\"\ntype = \"otlp\"\nurl = \"http://x\"\n[[output]]\nname = \"a\"\ntype = \"otlp\"\nurl = \"http://y\"\n", "collector.toml:6:8: two outputs are named \"a\""),
            ("[[output]]\nname = \"a\"\ntype = \"otlp\"\nurl = \"http://x\"\nbatch = 3\n", "collector.toml:5:1: unknown field `batch`"),
        ] {
            let e = parse(d, text).unwrap_err();
            assert!(e.starts_with(expected), "{e}\nis not\n{expected}");
        }
    }
}
