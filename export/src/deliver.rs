//! cordond's side of the collector protocol ([`cordon_proto::collector`]).
//!
//! * Event batches: `POST <url>/api/v1/events`, `Content-Type: application/json`,
//!   `Content-Encoding: gzip`, `Authorization: Bearer <token>`, with the body
//!   `{"v":1,"host":"<host_id>","events":[<event>, ...]}`. Any 2xx acknowledges the whole
//!   batch; the collector dedupes by event id, so a batch sent again after a lost answer is
//!   harmless. The answer names the events the collector set aside ([`IngestReply`]); a
//!   refusal says whether it is about what the batch holds ([`DeliverError::about_content`]).
//! * Commands: `POST <url>/api/v1/agent/poll?wait=S` with the host's sandboxes and the
//!   results of the commands it ran; the answer holds the commands queued for it.
//!
//! TLS (rustls, with the web PKI roots) when the URL is `https://`.

use std::io::Write as _;
use std::time::Duration;

use cordon_proto::collector::{
    ErrorCode, ErrorReply, IngestReply, Poll, PollReply, INGEST_PATH, POLL_PATH,
};

#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error("the collector answered {status}: {body}")]
    Status {
        status: u16,
        body: String,
        code: Option<ErrorCode>,
    },
    #[error("cannot reach the collector: {0}")]
    Transport(String),
    #[error("the collector did not answer in time: {0}")]
    Timeout(String),
    #[error("cannot compress the batch: {0}")]
    Compress(#[source] std::io::Error),
    #[error("the collector's answer is not one this cordond reads: {0}")]
    Answer(String),
}

pub struct Collector {
    agent: ureq::Agent,
    endpoint: String,
    poll_endpoint: String,
    token: Option<String>,
    host: String,
}

impl Collector {
    pub fn new(url: &str, token: Option<String>, host: &str) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            // A redirect would turn the POST into a GET whose 2xx acknowledges nothing.
            .redirects(0)
            .build();
        Self {
            agent,
            endpoint: format!("{}{INGEST_PATH}", url.trim_end_matches('/')),
            poll_endpoint: format!("{}{POLL_PATH}", url.trim_end_matches('/')),
            token,
            host: host.to_string(),
        }
    }

    /// Posts one batch of event lines (each one JSON object).
    pub fn post(&self, events: &[Vec<u8>]) -> Result<IngestReply, DeliverError> {
        let body = batch_body(&self.host, events).map_err(DeliverError::Compress)?;
        let mut request = self
            .agent
            .post(&self.endpoint)
            .set("Content-Type", "application/json")
            .set("Content-Encoding", "gzip")
            .set("X-Cordon-Host", &self.host);
        if let Some(token) = &self.token {
            request = request.set("Authorization", &format!("Bearer {token}"));
        }
        let response = request.send_bytes(&body).map_err(failed)?;
        let text = response
            .into_string()
            .map_err(|e| DeliverError::Transport(e.to_string()))?;
        // A 2xx stored the batch whatever its body says; one this cordond cannot read
        // (an older collector's) names nothing set aside.
        Ok(serde_json::from_str(&text).unwrap_or_default())
    }

    /// Reports the host's sandboxes and command results, and waits up to `wait` for
    /// commands.
    pub fn poll(&self, poll: &Poll, wait: Duration) -> Result<PollReply, DeliverError> {
        let mut request = self
            .agent
            .post(&format!("{}?wait={}", self.poll_endpoint, wait.as_secs()))
            .timeout(wait + Duration::from_secs(15))
            .set("Content-Type", "application/json");
        if let Some(token) = &self.token {
            request = request.set("Authorization", &format!("Bearer {token}"));
        }
        let body = serde_json::to_vec(poll).map_err(|e| DeliverError::Answer(e.to_string()))?;
        let response = request.send_bytes(&body).map_err(failed)?;
        let text = response
            .into_string()
            .map_err(|e| DeliverError::Transport(e.to_string()))?;
        serde_json::from_str(&text).map_err(|e| DeliverError::Answer(e.to_string()))
    }

    /// Uploads an evidence archive (see [`cordon_proto::collector::EVIDENCE_PATH`]).
    pub fn upload_evidence(
        &self,
        upload: &cordon_proto::collector::EvidenceUpload<'_>,
        archive: std::fs::File,
    ) -> Result<(), DeliverError> {
        use cordon_proto::collector as p;
        let url = self.endpoint.replace(INGEST_PATH, p::EVIDENCE_PATH);
        let mut request = self
            .agent
            .post(&url)
            .timeout(Duration::from_secs(600))
            .set("Content-Type", "application/gzip")
            .set(p::EVIDENCE_ID, &upload.id.to_string())
            .set(p::EVIDENCE_SANDBOX, upload.sandbox)
            .set(p::EVIDENCE_SHA256, upload.archive_sha256)
            .set(p::EVIDENCE_MANIFEST_SHA256, upload.manifest_sha256);
        if let Some(session) = upload.session {
            request = request.set(p::EVIDENCE_SESSION, &session.to_string());
        }
        if let Some(token) = &self.token {
            request = request.set("Authorization", &format!("Bearer {token}"));
        }
        request.send(archive).map_err(failed)?;
        Ok(())
    }
}

impl DeliverError {
    /// Whether the collector refused the batch for what it holds, so that a smaller batch
    /// (in the end, one event alone) would be answered differently. Everything else (no
    /// answer, 401, 403, 429, 5xx, a version the collector does not read) is about the
    /// collector or this host's credentials: tried again later, nothing dropped.
    pub fn about_content(&self) -> bool {
        matches!(self, Self::Status { code: Some(code), .. } if code.is_about_content())
    }

    /// Whether a smaller batch might go through where this one did not: a refusal of its
    /// content, or of its size or time by anything on the way (a proxy's 413 without the
    /// collector's code, a 408, no answer in time). Only [`Self::about_content`] lets an
    /// event be set aside.
    pub fn about_size(&self) -> bool {
        self.about_content()
            || matches!(
                self,
                Self::Status {
                    status: 408 | 413,
                    ..
                } | Self::Timeout(_)
            )
    }
}

fn failed(error: ureq::Error) -> DeliverError {
    match error {
        ureq::Error::Status(status, response) => {
            let text = response.into_string().unwrap_or_default();
            let reply = serde_json::from_str::<ErrorReply>(&text).ok();
            let code = reply.as_ref().and_then(|r| r.code);
            let body = reply.map_or(text, |r| r.error).chars().take(300).collect();
            DeliverError::Status { status, body, code }
        }
        ureq::Error::Transport(t) => {
            let timed_out = std::error::Error::source(&t)
                .and_then(|e| e.downcast_ref::<std::io::Error>())
                .is_some_and(|e| {
                    matches!(
                        e.kind(),
                        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                    )
                });
            if timed_out {
                DeliverError::Timeout(t.to_string())
            } else {
                DeliverError::Transport(t.to_string())
            }
        }
    }
}

/// The gzip-compressed JSON body of a batch.
pub fn batch_body(host: &str, events: &[Vec<u8>]) -> std::io::Result<Vec<u8>> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(br#"{"v":1,"host":"#)?;
    serde_json::to_writer(&mut gz, host)?;
    gz.write_all(br#","events":["#)?;
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            gz.write_all(b",")?;
        }
        gz.write_all(event)?;
    }
    gz.write_all(b"]}")?;
    gz.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    #[test]
    fn only_a_coded_refusal_of_content_sets_an_event_aside() {
        let status = |status, code| DeliverError::Status {
            status,
            body: String::new(),
            code,
        };
        // The collector says the batch holds what it will not take: split, then set aside.
        for code in [
            ErrorCode::MalformedBatch,
            ErrorCode::BodyTooLarge,
            ErrorCode::TooManyEvents,
        ] {
            let e = status(413, Some(code));
            assert!(e.about_content() && e.about_size(), "{code:?}");
        }
        // Size or time refused on the way (a proxy, a timeout): split, never set aside.
        for e in [
            status(413, None),
            status(408, None),
            DeliverError::Timeout("read".into()),
        ] {
            assert!(e.about_size() && !e.about_content(), "{e}");
        }
        // Credentials, load, versions, outages: retried as they are.
        for e in [
            status(401, None),
            status(403, None),
            status(429, None),
            status(503, None),
            status(400, Some(ErrorCode::BatchVersion)),
            status(400, Some(ErrorCode::Other)),
            DeliverError::Transport("refused".into()),
        ] {
            assert!(!e.about_size() && !e.about_content(), "{e}");
        }
    }

    #[test]
    fn a_batch_is_gzipped_json_with_the_host_and_every_event() {
        let body = batch_body("h\"1", &[br#"{"a":1}"#.to_vec(), br#"{"b":2}"#.to_vec()]).unwrap();
        let mut text = String::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut text)
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["v"], 1);
        assert_eq!(v["host"], "h\"1");
        assert_eq!(v["events"][1]["b"], 2);
    }
}
