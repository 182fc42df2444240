//! What each HTTP receiver's module builds for a batch (the request), and the helpers they
//! share; [`super::http`] sends it and reads the answer.

use reqwest::header::{HeaderName, HeaderValue};

/// A request for one batch.
pub struct Request {
    pub url: String,
    pub content_type: &'static str,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Vec<u8>,
}

/// The start of an answer, for a message: one line, at most 300 characters.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    line.trim().to_string()
}

/// Headers configured by ops (checked when the configuration was read).
pub fn configured(
    headers: &std::collections::BTreeMap<String, String>,
) -> Vec<(HeaderName, HeaderValue)> {
    headers
        .iter()
        .filter_map(|(k, v)| {
            Some((
                HeaderName::from_bytes(k.as_bytes()).ok()?,
                HeaderValue::from_str(v).ok()?,
            ))
        })
        .collect()
}

/// A header value from text that may not be one (a secret from a file): control
/// characters make it unusable, which the receiver then says.
pub fn value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}
