//! The HTTP receivers: one client per output (rustls, the system's roots and the output's
//! `ca_file`), one POST per batch, the answer read to decide whether the batch was taken.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};

use super::config::{Output, Receiver};
use super::record::Record;
use super::request::{excerpt, Request};
use super::{elastic, otlp, splunk, webhook, Delivered, SendError};

/// The most bytes of an answer read (an error's text, a `_bulk` result).
const MAX_ANSWER: usize = 4 << 20;

pub struct HttpSink {
    client: reqwest::Client,
    output: Output,
}

impl HttpSink {
    pub fn new(output: &Output) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("cordon-collector/", env!("CARGO_PKG_VERSION")))
            .timeout(output.timeout)
            .connect_timeout(output.timeout.min(Duration::from_secs(10)))
            // A receiver's redirect is not followed: a batch goes where ops said, or fails.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = &output.ca_file {
            let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("{}: {e}", ca.display()))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder.build().map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Self {
            client,
            output: output.clone(),
        })
    }

    fn request(&self, batch: &[Record]) -> Request {
        match &self.output.receiver {
            Receiver::Webhook {
                url,
                secret,
                headers,
            } => webhook::webhook(url, secret, headers, batch),
            Receiver::Slack { url, console_url } => webhook::slack(&url.0, console_url, batch),
            Receiver::Otlp { url, headers } => otlp::request(url, headers, batch),
            Receiver::SplunkHec {
                url,
                token,
                index,
                sourcetype,
                source,
            } => splunk::request(url, token, index.as_deref(), sourcetype, source, batch),
            Receiver::Elasticsearch {
                url,
                index,
                api_key,
                headers,
            } => elastic::request(url, index, api_key.as_ref(), headers, batch),
            Receiver::Syslog { .. } => unreachable!("syslog is not sent over HTTP"),
        }
    }

    pub async fn send(&self, batch: &[Record]) -> Result<Delivered, SendError> {
        let destination = self.output.destination();
        let request = self.request(batch);
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(request.content_type));
        for (name, value) in request.headers {
            headers.insert(name, value);
        }
        let response = self
            .client
            .post(&request.url)
            .headers(headers)
            .body(request.body)
            .send()
            .await
            .map_err(|e| SendError::Unreachable {
                destination: destination.clone(),
                // The URL may hold a secret (a Slack webhook's path): never in a message.
                message: error_chain(&e.without_url()),
            })?;
        let status = response.status();
        let body = read_answer(response)
            .await
            .map_err(|e| SendError::Unreachable {
                destination: destination.clone(),
                message: error_chain(&e.without_url()),
            })?;
        if !status.is_success() {
            return Err(SendError::Refused {
                destination,
                status: status.as_u16(),
                body: excerpt(&body),
            });
        }
        match self.output.receiver {
            Receiver::Elasticsearch { .. } => elastic::answer(&destination, &body),
            Receiver::Otlp { .. } => otlp::answer(&destination, &body),
            Receiver::SplunkHec { .. } => splunk::answer(&destination, &body),
            _ => Ok(Delivered::default()),
        }
    }
}

async fn read_answer(mut response: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_ANSWER {
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error and its causes, in one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}
