//! Errors of the HTTP handler: building it, and delivering one message.

use std::fmt;

use crate::error::ConfigError;

/// Why an [`HttpHandler`](super::HttpHandler) could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// A setting is invalid; the error names it.
    #[error("invalid HTTP handler configuration: {0}")]
    Config(#[from] ConfigError),
    /// The HTTP client could not be set up (TLS roots, say).
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// One failed delivery: the request (method and URL without user info) and what went
/// wrong. Never holds header values, which may be secrets. The source, when present, is
/// the client's error with its URL removed.
#[derive(Debug)]
pub(crate) struct DeliveryError {
    pub(crate) target: String,
    pub(crate) detail: String,
    pub(crate) source: Option<reqwest::Error>,
}

impl DeliveryError {
    pub(crate) fn new(target: &str, detail: impl Into<String>) -> Self {
        Self {
            target: target.to_owned(),
            detail: detail.into(),
            source: None,
        }
    }

    /// Wraps a client error; its URL (which may carry user info) is dropped.
    pub(crate) fn from_client(
        target: &str,
        detail: impl Into<String>,
        err: reqwest::Error,
    ) -> Self {
        Self {
            target: target.to_owned(),
            detail: detail.into(),
            source: Some(err.without_url()),
        }
    }
}

impl fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.target, self.detail)?;
        // Inline the client's own reason: dead-letter headers keep only the top message.
        if let Some(source) = &self.source {
            let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(source);
            let mut reason = source.to_string();
            while let Some(inner) = cause {
                reason = format!("{reason}: {inner}");
                cause = inner.source();
            }
            write!(f, " ({reason})")?;
        }
        Ok(())
    }
}

impl std::error::Error for DeliveryError {}
