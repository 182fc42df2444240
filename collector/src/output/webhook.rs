//! The generic webhook (the events as a JSON array, signed) and Slack's incoming webhook (a
//! message people read).
//!
//! A webhook request carries `X-Cordon-Timestamp` (seconds since the epoch, when it was
//! sent) and `X-Cordon-Signature: sha256=<hex>`, the HMAC-SHA256 under the shared secret of
//! the timestamp, a `.`, and the body. The receiver recomputes it, compares in constant
//! time, and refuses a timestamp more than a few minutes old: a request someone captured
//! cannot be sent again later, since a new timestamp breaks the signature. Each event keeps
//! its `id`: a receiver that keeps what it has seen by id gets each event once, even when a
//! batch whose answer was lost comes again.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac as _};
use reqwest::header::HeaderName;
use sha2::Sha256;

use super::config::Secret;
use super::record::Record;
use super::request::{configured, Request};

pub const SIGNATURE: &str = "x-cordon-signature";
pub const TIMESTAMP: &str = "x-cordon-timestamp";

/// The longest summary of one event in a Slack message.
const SLACK_SUMMARY_CHARS: usize = 500;

pub fn webhook(
    url: &str,
    secret: &Secret,
    headers: &BTreeMap<String, String>,
    batch: &[Record],
) -> Request {
    let events: Vec<serde_json::Value> = batch.iter().map(Record::json_with_host).collect();
    let body = serde_json::to_vec(&events).unwrap_or_default();
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .to_string();
    let signature = sign(secret.0.as_bytes(), &timestamp, &body);
    let mut headers = configured(headers);
    headers.push((
        HeaderName::from_static(TIMESTAMP),
        super::request::value(&timestamp),
    ));
    headers.push((
        HeaderName::from_static(SIGNATURE),
        super::request::value(&format!("sha256={signature}")),
    ));
    Request {
        url: url.to_string(),
        content_type: "application/json",
        headers,
        body,
    }
}

/// The hex HMAC-SHA256 of `timestamp.body` under `secret`.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    // An HMAC takes a key of any length.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A Slack message: a line per event, most severe first, each with its severity, host,
/// sandbox, what happened, and a link to the sandbox's session in the console.
pub fn slack(url: &str, console_url: &str, batch: &[Record]) -> Request {
    let mut events: Vec<&Record> = batch.iter().collect();
    events.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.seq.cmp(&b.seq)));
    let mut text = String::new();
    if events.len() > 1 {
        let worst = events[0].severity;
        text.push_str(&format!(
            "{} Cordon: {} events, the worst {}\n",
            icon(worst),
            events.len(),
            worst.as_str().to_uppercase()
        ));
    }
    for e in &events {
        let link = format!(
            "{console_url}/#/host/{}/sandbox/{}",
            percent(&e.host),
            percent(&e.sandbox)
        );
        let mut summary: String = e.summary().chars().take(SLACK_SUMMARY_CHARS).collect();
        if summary.len() < e.summary().len() {
            summary.push('…');
        }
        let session = e
            .session
            .as_deref()
            .map(|s| format!(", session {}", escape(s)))
            .unwrap_or_default();
        text.push_str(&format!(
            "{} *{}* {} on host *{}*, sandbox `{}`{session}: {} <{}|Open in the console>\n",
            icon(e.severity),
            e.severity.as_str().to_uppercase(),
            escape(&e.kind),
            escape(&e.host),
            escape(&e.sandbox).replace('`', "'"),
            escape(&summary),
            link.replace('|', "%7C"),
        ));
    }
    let body = serde_json::to_vec(&serde_json::json!({
        "text": text.trim_end(),
        // Links to the console are for clicking, not for unfurling.
        "unfurl_links": false,
    }))
    .unwrap_or_default();
    Request {
        url: url.to_string(),
        content_type: "application/json",
        headers: Vec::new(),
        body,
    }
}

fn icon(severity: cordon_proto::event::Severity) -> &'static str {
    use cordon_proto::event::Severity;
    match severity {
        Severity::Critical => ":rotating_light:",
        Severity::High => ":red_circle:",
        Severity::Medium => ":large_orange_circle:",
        Severity::Low => ":large_yellow_circle:",
        Severity::Info => ":information_source:",
    }
}

/// Slack's mrkdwn takes `&`, `<` and `>` as markup: escaped, text an agent chose cannot
/// make a link or a mention.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A path segment, percent-encoded (as the console's `encodeURIComponent`).
fn percent(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
            )
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hmac_of_timestamp_dot_body() {
        // What a receiver computes: the HMAC of the whole "TIMESTAMP.BODY".
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"1700000000.[]");
        let whole: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(sign(b"Jefe", "1700000000", b"[]"), whole);
        assert_ne!(sign(b"Jefe", "1700000001", b"[]"), whole);
    }

    #[test]
    fn slack_text_cannot_make_links_or_mentions() {
        assert_eq!(
            escape("<!channel> & <http://x|y>"),
            "&lt;!channel&gt; &amp; &lt;http://x|y&gt;"
        );
        assert_eq!(percent("agent-1 0/x"), "agent-1%200%2Fx");
    }
}
