//! Dead-lettering: the record of a message that could not be handled, and the sink it
//! goes to.

mod headers;

use std::fmt;
use std::future::Future;
use std::str::FromStr;

use bytes::Bytes;

use crate::handler::BoxError;
use crate::message::{Headers, Message};

pub(crate) use headers::within_rfc3339;
pub use headers::{header, DeadLetterInfo, HeaderDecodeError};
#[cfg(feature = "rabbitmq")]
pub(crate) use headers::{is_failure_header, new_dead_letter_id};

/// Why a message was dead-lettered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeadLetterKind {
    /// The handler said retrying cannot help.
    Permanent,
    /// Transient failures outlasted the retry budget.
    Exhausted,
    /// Over a size limit; never reached the handler.
    Oversize,
    /// Did not match its contract; never retried.
    Contract,
    /// The process died while handling it, as often as the retry budget allows.
    CrashLoop,
    /// Its ordering key was parked behind an earlier dead-lettered message.
    Parked,
}

impl DeadLetterKind {
    /// Every kind.
    pub const ALL: [DeadLetterKind; 6] = [
        DeadLetterKind::Permanent,
        DeadLetterKind::Exhausted,
        DeadLetterKind::Oversize,
        DeadLetterKind::Contract,
        DeadLetterKind::CrashLoop,
        DeadLetterKind::Parked,
    ];

    /// The name written to `seawall.error-kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterKind::Permanent => "permanent",
            DeadLetterKind::Exhausted => "exhausted",
            DeadLetterKind::Oversize => "oversize",
            DeadLetterKind::Contract => "contract",
            DeadLetterKind::CrashLoop => "crash-loop",
            DeadLetterKind::Parked => "parked",
        }
    }
}

impl fmt::Display for DeadLetterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeadLetterKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown dead-letter kind `{s}`"))
    }
}

/// A message on its way to the dead-letter route, with why and how it failed.
#[derive(Clone, Debug)]
pub struct DeadLetter {
    /// The original message: key, payload and headers unchanged.
    pub message: Message,
    /// What the dead-letter copy says about the failure.
    pub info: DeadLetterInfo,
}

impl DeadLetter {
    /// The headers for the dead-letter copy: the original ones (less any `seawall.*`
    /// failure headers from an earlier dead-lettering) followed by the `seawall.*` ones.
    pub fn headers(&self) -> Headers {
        let mut headers = self.message.headers().clone();
        headers.retain(|name, _| !headers::is_failure_header(name));
        self.info.write_to(&mut headers);
        headers
    }

    /// The same dead letter without the original payload and headers, and a
    /// [`header::OMITTED`] header saying what was left out: for a message too large for
    /// its dead-letter route. The failure headers still name the original's source and
    /// position, where it can be read; replay refuses such a copy.
    pub fn without_content(&self) -> DeadLetter {
        let headers = self.message.headers();
        let header_bytes: usize = headers.iter().map(|(n, v)| n.len() + v.len()).sum();
        let note = format!(
            "payload ({} bytes) and {} headers ({header_bytes} bytes) left out: too large for the dead-letter route; the original is at its source position",
            self.message.payload().len(),
            headers.len(),
        );
        let message = self
            .message
            .clone()
            .with_payload(Bytes::new())
            .with_headers(Headers::default())
            .with_header(header::OMITTED, note);
        DeadLetter {
            message,
            info: self.info.clone(),
        }
    }

    /// The key the dead-letter copy keeps (the original key), so a partitioned
    /// dead-letter topic keeps per-key order.
    pub fn key(&self) -> Option<&Bytes> {
        self.message.key()
    }
}

/// A dead-letter write that did not go through.
#[derive(Debug, thiserror::Error)]
#[error("dead-letter write failed: {source}")]
pub struct SinkError {
    #[source]
    source: BoxError,
    too_large: bool,
}

impl SinkError {
    /// Wraps the cause; the pipeline retries the write.
    pub fn new(source: impl Into<BoxError>) -> Self {
        Self {
            source: source.into(),
            too_large: false,
        }
    }

    /// The dead letter is larger than the route (client or broker) accepts: retrying the
    /// same bytes cannot succeed, so the pipeline sends [`DeadLetter::without_content`].
    pub fn too_large(source: impl Into<BoxError>) -> Self {
        Self {
            source: source.into(),
            too_large: true,
        }
    }

    /// Whether the write was refused for its size.
    pub fn is_too_large(&self) -> bool {
        self.too_large
    }
}

/// Where dead letters go: a topic, a queue, or memory in tests.
///
/// `send` returns only after the write is durable (the broker confirmed it); the original
/// message is completed only after that. A failed send is retried by the pipeline.
pub trait DeadLetterSink: Send + Sync + 'static {
    /// Writes one dead letter durably.
    fn send(&self, letter: &DeadLetter) -> impl Future<Output = Result<(), SinkError>> + Send;
}

impl<D: DeadLetterSink> DeadLetterSink for std::sync::Arc<D> {
    fn send(&self, letter: &DeadLetter) -> impl Future<Output = Result<(), SinkError>> + Send {
        (**self).send(letter)
    }
}
