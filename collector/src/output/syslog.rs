//! Syslog: RFC 5424 messages over TCP, framed by octet counting (RFC 6587, `LEN SP MSG`),
//! or over TLS (RFC 5425, the same framing), the server's certificate checked against the
//! output's CA file.
//!
//! A message: `<PRI>1 TIME HOST APP PID KIND [cordon@32473 id=".." sandbox=".." ..] TEXT`,
//! where PRI is the facility's and the event's severity's (critical `crit`, high `err`,
//! medium `warning`, low `notice`, info `info`), HOST the host the event happened on, and
//! TEXT the event's JSON or a CEF record (`format`). (32473 is the private enterprise
//! number RFC 5612 sets aside for examples; Cordon has none of its own.)
//!
//! Syslog has no acknowledgement: a batch counts as delivered once the kernel took it. The
//! connection is checked before each batch (a receiver that went away while it was idle
//! shows as the end of its stream, and the batch goes on a new connection), which leaves
//! the batch written in the moment the receiver goes away: it may be lost with it.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::config::{Output, Receiver, SyslogFormat};
use super::record::Record;
use super::{Delivered, SendError};

/// The structured data's name: `cordon` at RFC 5612's example enterprise number.
const SD_ID: &str = "cordon@32473";

trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Stream for T {}

pub struct SyslogSink {
    output: Output,
    address: String,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    format: SyslogFormat,
    facility: u8,
    app_name: String,
    connection: Option<Box<dyn Stream>>,
}

impl SyslogSink {
    pub fn new(output: &Output) -> Result<Self, String> {
        let Receiver::Syslog {
            address,
            tls,
            server_name,
            format,
            facility,
            app_name,
        } = &output.receiver
        else {
            return Err("not a syslog output".into());
        };
        let tls = match tls {
            None => None,
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                let certs = CertificateDer::pem_file_iter(ca)
                    .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                    .map_err(|e| format!("{}: {e}", ca.display()))?;
                for cert in certs {
                    roots
                        .add(cert)
                        .map_err(|e| format!("{}: {e}", ca.display()))?;
                }
                let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS: {e}"))?
                .with_root_certificates(roots)
                .with_no_client_auth();
                let name = ServerName::try_from(server_name.clone())
                    .map_err(|e| format!("server_name {server_name:?}: {e}"))?;
                Some((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
            }
        };
        Ok(Self {
            output: output.clone(),
            address: address.clone(),
            tls,
            format: *format,
            facility: *facility,
            app_name: app_name.clone(),
            connection: None,
        })
    }

    fn unreachable(&self, message: String) -> SendError {
        SendError::Unreachable {
            destination: self.output.destination(),
            message,
        }
    }

    async fn connect(&self) -> Result<Box<dyn Stream>, SendError> {
        let tcp = TcpStream::connect(&self.address)
            .await
            .map_err(|e| self.unreachable(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some((connector, name)) => {
                let tls =
                    connector
                        .connect(name.clone(), tcp)
                        .await
                        .map_err(|e| SendError::Tls {
                            destination: self.output.destination(),
                            message: e.to_string(),
                        })?;
                Ok(Box::new(tls))
            }
        }
    }

    /// Whether the open connection still is: the receiver sends nothing on it, so a
    /// readable end means it closed (or reset) it.
    async fn alive(connection: &mut Box<dyn Stream>) -> bool {
        let mut scrap = [0u8; 512];
        loop {
            let mut buf = tokio::io::ReadBuf::new(&mut scrap);
            // Polled once, not waited on: nothing to read is the connection being fine.
            let polled = std::future::poll_fn(|cx| {
                std::task::Poll::Ready(std::pin::Pin::new(&mut *connection).poll_read(cx, &mut buf))
            })
            .await;
            match polled {
                std::task::Poll::Pending => return true,
                std::task::Poll::Ready(Ok(())) if buf.filled().is_empty() => return false,
                std::task::Poll::Ready(Err(_)) => return false,
                // Something the receiver said (TLS session tickets): read past it.
                std::task::Poll::Ready(Ok(())) => continue,
            }
        }
    }

    pub async fn send(&mut self, batch: &[Record]) -> Result<Delivered, SendError> {
        let mut frames = Vec::new();
        for e in batch {
            let message = self.message(e);
            frames.extend_from_slice(format!("{} ", message.len()).as_bytes());
            frames.extend_from_slice(message.as_bytes());
        }
        if let Some(c) = self.connection.as_mut() {
            if !Self::alive(c).await {
                self.connection = None;
            }
        }
        let timeout = self.output.timeout;
        let result = tokio::time::timeout(timeout, async {
            if self.connection.is_none() {
                self.connection = Some(self.connect().await?);
            }
            let Some(c) = self.connection.as_mut() else {
                return Err(self.unreachable("not connected".into()));
            };
            let written = async {
                c.write_all(&frames).await?;
                c.flush().await
            }
            .await;
            written.map_err(|e| self.unreachable(e.to_string()))
        })
        .await;
        match result {
            Ok(Ok(())) => Ok(Delivered::default()),
            Ok(Err(e)) => {
                self.connection = None;
                Err(e)
            }
            Err(_) => {
                self.connection = None;
                Err(self.unreachable(format!("no progress in {timeout:?}")))
            }
        }
    }

    /// One RFC 5424 message.
    pub fn message(&self, e: &Record) -> String {
        let severity = match e.severity {
            cordon_proto::event::Severity::Critical => 2,
            cordon_proto::event::Severity::High => 3,
            cordon_proto::event::Severity::Medium => 4,
            cordon_proto::event::Severity::Low => 5,
            cordon_proto::event::Severity::Info => 6,
        };
        let pri = u32::from(self.facility) * 8 + severity;
        // TIME-SECFRAC has at most six digits.
        let time = humantime::format_rfc3339_micros(
            std::time::UNIX_EPOCH
                + std::time::Duration::from_nanos(u64::try_from(e.time_ns).unwrap_or(0)),
        );
        let pid = e
            .process()
            .map_or_else(|| "-".to_string(), |p| p.pid.to_string());
        let mut sd = format!("[{SD_ID} id=\"{}\"", sd_escape(&e.id));
        for (name, value) in [
            ("sandbox", Some(e.sandbox.as_str())),
            ("profile", Some(e.profile())),
            ("session", e.session.as_deref()),
            ("severity", Some(e.severity.as_str())),
        ] {
            if let Some(v) = value {
                sd.push_str(&format!(" {name}=\"{}\"", sd_escape(v)));
            }
        }
        sd.push(']');
        let text = match self.format {
            SyslogFormat::Json => e.json_with_host().to_string(),
            SyslogFormat::Cef => cef(e),
        };
        format!(
            "<{pri}>1 {time} {} {} {pid} {} {sd} {text}",
            header_field(&e.host, 255),
            self.app_name,
            header_field(&e.kind, 32),
        )
    }
}

/// A header field: printable ASCII without spaces, at most `max` long, `-` when empty.
fn header_field(text: &str, max: usize) -> String {
    let field: String = text
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .take(max)
        .collect();
    if field.is_empty() {
        "-".into()
    } else {
        field
    }
}

/// A structured-data parameter's value: `"`, `\` and `]` escaped.
fn sd_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The event as ArcSight's Common Event Format:
/// `CEF:0|Cordon|Cordon|VERSION|KIND|NAME|SEVERITY|EXTENSION`.
pub fn cef(e: &Record) -> String {
    let severity = match e.severity {
        cordon_proto::event::Severity::Info => 1,
        cordon_proto::event::Severity::Low => 3,
        cordon_proto::event::Severity::Medium => 5,
        cordon_proto::event::Severity::High => 8,
        cordon_proto::event::Severity::Critical => 10,
    };
    let name = match e.kind.as_str() {
        "file_denied" => "File access denied",
        "network_denied" => "Connection denied",
        "dns_denied" => "DNS query refused",
        "syscall_denied" => "System call denied",
        "other_denied" => "Access denied",
        "exec" => "Program run",
        "fork" => "Process started",
        "exit" => "Process ended",
        "events_lost" => "Events lost",
        "contained" => "Sandbox contained",
        "responder_action" => "Responder action",
        "session_started" => "Session started",
        _ => "Event",
    };
    let mut ext: Vec<(&str, String)> = vec![
        ("rt", (e.time_ns / 1_000_000).to_string()),
        ("dvchost", e.host.clone()),
        ("externalId", e.id.clone()),
        ("msg", e.summary()),
        ("cs1Label", "sandbox".into()),
        ("cs1", e.sandbox.clone()),
        ("cs2Label", "profile".into()),
        ("cs2", e.profile().into()),
    ];
    if let Some(s) = &e.session {
        ext.push(("cs3Label", "session".into()));
        ext.push(("cs3", s.clone()));
    }
    if e.is_violation() {
        ext.push((
            "act",
            if e.enforced() { "blocked" } else { "allowed" }.into(),
        ));
    }
    if let Some(p) = e.process() {
        ext.push(("spid", p.pid.to_string()));
        ext.push(("sproc", p.comm.clone()));
        ext.push(("suid", p.uid.to_string()));
    }
    let text = |k: &str| e.text(k).map(str::to_string);
    match e.kind.as_str() {
        "file_denied" => {
            if let Some(p) = text("path") {
                ext.push(("filePath", p));
            }
        }
        "network_denied" => {
            if let Some(a) = text("address") {
                ext.push(("dst", a));
            }
            if let Some(p) = e.field("port") {
                ext.push(("dpt", p.to_string()));
            }
            if let Some(p) = text("protocol") {
                ext.push(("proto", p.to_uppercase()));
            }
            if let Some(d) = text("domain") {
                ext.push(("dhost", d));
            }
        }
        "dns_denied" => {
            if let Some(d) = text("domain") {
                ext.push(("dhost", d));
            }
        }
        _ => {}
    }
    let extension: Vec<String> = ext
        .into_iter()
        .map(|(k, v)| format!("{k}={}", cef_value(&v)))
        .collect();
    format!(
        "CEF:0|Cordon|Cordon|{}|{}|{}|{severity}|{}",
        env!("CARGO_PKG_VERSION"),
        cef_header(&e.kind),
        cef_header(name),
        extension.join(" ")
    )
}

fn cef_header(text: &str) -> String {
    text.replace('\\', "\\\\").replace('|', "\\|")
}

fn cef_value(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('=', "\\=")
        .replace('\r', "\\r")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_keep_fields_apart() {
        assert_eq!(sd_escape(r#"a"b]c\"#), r#"a\"b\]c\\"#);
        assert_eq!(header_field("web 1", 255), "web_1");
        assert_eq!(header_field("", 255), "-");
        assert_eq!(cef_header("a|b\\"), "a\\|b\\\\");
        assert_eq!(cef_value("a=b\nc"), "a\\=b\\nc");
    }
}
