//! The handler: one HTTP request per attempt, its outcome classified.

use std::fmt;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, HeaderValue, LOCATION, RETRY_AFTER};
use reqwest::{Client, Method, Url};

use super::classify::{classify, classify_failure, Response, EXCERPT_BYTES};
use super::config::{parse_header, read_ca_file, redact_url, HttpConfig};
use super::error::HttpError;
use super::request::HeaderPlan;
use crate::handler::{Handler, HandlerError};
use crate::message::Message;

/// At most this much of a response body is read. Reading it to the end lets the
/// connection go back to the pool; a longer body closes the connection instead.
const DRAIN_LIMIT: usize = 64 * 1024;

/// Delivers each message as one HTTP request, reusing keep-alive connections.
///
/// 2xx completes the message; 408, 425, 429, 5xx, timeouts and connection failures are
/// retried (with the server's `Retry-After` on 429 and 503); other responses dead-letter
/// it. See `docs/http.md`.
#[derive(Clone)]
pub struct HttpHandler {
    client: Client,
    method: Method,
    url: Url,
    /// `METHOD url-without-user-info`, the prefix of every error.
    target: String,
    headers: HeaderPlan,
    max_retry_after: Duration,
}

impl HttpHandler {
    /// Validates `config` and builds the client (connection pool, TLS roots).
    pub fn new(config: HttpConfig) -> Result<Self, HttpError> {
        config.validate()?;
        let url = config.parsed_url()?;
        let method = config.parsed_method()?;
        let mut fixed = HeaderMap::new();
        for (name, value) in &config.headers {
            let (name, value) = parse_header(name, value)?;
            fixed.insert(name, value);
        }
        let content_type = match &config.content_type {
            Some(ct) => Some(HeaderValue::from_str(ct).map_err(|_| {
                crate::error::ConfigError::new("http.content_type", "not a valid header value")
            })?),
            None => None,
        };
        let client = build_client(&config)?;
        Ok(Self {
            client,
            target: format!("{method} {}", redact_url(url.as_str())),
            method,
            url,
            headers: HeaderPlan {
                fixed,
                prefix: config.header_prefix.clone(),
                content_type,
            },
            max_retry_after: config.max_retry_after,
        })
    }

    /// Sends `message` and classifies the outcome.
    async fn deliver(&self, message: &Message) -> Result<(), HandlerError> {
        let response = self
            .client
            .request(self.method.clone(), self.url.clone())
            .headers(self.headers.headers_for(message))
            .body(message.payload().clone())
            .send()
            .await
            .map_err(|err| classify_failure(&self.target, err))?;
        let status = response.status();
        let retry_after = response.headers().get(RETRY_AFTER).cloned();
        let location = response.headers().get(LOCATION).cloned();
        let body = read_head(response).await;
        let parts = Response {
            status,
            retry_after: retry_after.as_ref().map(HeaderValue::as_bytes),
            location: location.as_ref().map(HeaderValue::as_bytes),
            body: &body,
        };
        classify(
            &self.target,
            &parts,
            SystemTime::now(),
            self.max_retry_after,
        )
    }
}

/// The client: no redirects, the configured timeouts and pool, extra roots if any.
fn build_client(config: &HttpConfig) -> Result<Client, HttpError> {
    let mut builder = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(config.timeout)
        .connect_timeout(config.connect_timeout)
        .pool_max_idle_per_host(config.max_idle_per_host)
        .user_agent(concat!("seawall/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = config.tls.as_ref().and_then(|tls| tls.ca_file.as_ref()) {
        // Merged with the platform's roots, which stay trusted.
        builder = builder.tls_certs_merge(read_ca_file(path)?);
    }
    builder
        .build()
        .map_err(|err| HttpError::Client(err.without_url()))
}

/// The first [`EXCERPT_BYTES`] of the body, reading on (and discarding) up to
/// [`DRAIN_LIMIT`] so the connection can be reused. A failure while reading keeps what
/// arrived: the status has already decided the outcome.
async fn read_head(mut response: reqwest::Response) -> Vec<u8> {
    let mut head = Vec::new();
    let mut read = 0usize;
    while read < DRAIN_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = EXCERPT_BYTES.saturating_sub(head.len());
                head.extend_from_slice(&chunk[..chunk.len().min(room)]);
                read += chunk.len();
            }
            Ok(None) | Err(_) => break,
        }
    }
    head
}

impl Handler for HttpHandler {
    async fn handle(&self, message: &Message) -> Result<(), HandlerError> {
        self.deliver(message).await
    }
}

impl fmt::Debug for HttpHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Static header names only: their values may be secrets.
        let names: Vec<&str> = self.headers.fixed.keys().map(|k| k.as_str()).collect();
        f.debug_struct("HttpHandler")
            .field("target", &self.target)
            .field("static_headers", &names)
            .field("header_prefix", &self.headers.prefix)
            .field("content_type", &self.headers.content_type)
            .field("max_retry_after", &self.max_retry_after)
            .finish_non_exhaustive()
    }
}
