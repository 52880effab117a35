//! What a broker adapter gives the pipeline: deliveries, each with an ack that settles
//! exactly once.

use std::fmt;
use std::future::Future;

use crate::handler::BoxError;
use crate::message::Message;

/// The adapter's side of an ack: what "the broker may forget this message" means for one
/// broker (a tracker completion for Kafka, a `basic.ack` for RabbitMQ).
pub trait Settle: Send + 'static {
    /// The message is done (handled, skipped as a duplicate, or durably dead-lettered).
    fn complete(self: Box<Self>);
    /// The message was not finished (shutdown, revoked partition); the broker should
    /// deliver it again.
    fn abandon(self: Box<Self>);

    /// Whether the source no longer owns this message (its partition was revoked): the
    /// pipeline then drops it instead of running it, and abandons it.
    fn is_revoked(&self) -> bool {
        false
    }
}

/// Settles a delivery exactly once: [`Ack::complete`] or [`Ack::abandon`] consume it, and
/// dropping it unsettled abandons it.
pub struct Ack {
    inner: Option<Box<dyn Settle>>,
}

impl Ack {
    /// An ack that hands its outcome to `settle`.
    pub fn new(settle: impl Settle) -> Self {
        Self {
            inner: Some(Box::new(settle)),
        }
    }

    /// An ack with nothing to tell anyone (sources that need no acknowledgement).
    pub fn none() -> Self {
        Self { inner: None }
    }

    /// The message is done.
    pub fn complete(mut self) {
        if let Some(settle) = self.inner.take() {
            settle.complete();
        }
    }

    /// Whether the source no longer owns the message (see [`Settle::is_revoked`]).
    pub fn is_revoked(&self) -> bool {
        self.inner
            .as_ref()
            .is_some_and(|settle| settle.is_revoked())
    }

    /// The message is not done; let the broker redeliver it.
    pub fn abandon(mut self) {
        if let Some(settle) = self.inner.take() {
            settle.abandon();
        }
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if let Some(settle) = self.inner.take() {
            settle.abandon();
        }
    }
}

impl fmt::Debug for Ack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.inner.is_some() {
            "Ack(pending)"
        } else {
            "Ack(settled)"
        })
    }
}

/// One message handed over by a source, with its ack.
#[derive(Debug)]
pub struct Delivery {
    /// The message.
    pub message: Message,
    /// Settles it.
    pub ack: Ack,
}

impl Delivery {
    /// A delivery of `message` settled through `ack`.
    pub fn new(message: Message, ack: Ack) -> Self {
        Self { message, ack }
    }
}

/// Whether the pipeline wants more deliveries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intake {
    /// Deliver.
    Open,
    /// Hold back: the pipeline is full, the breaker is open, or the store is failing.
    Paused,
}

/// A source failure.
#[derive(Debug, thiserror::Error)]
#[error("source {source_name}: {cause}")]
pub struct SourceError {
    source_name: String,
    recoverable: bool,
    #[source]
    cause: BoxError,
}

impl SourceError {
    /// A failure the adapter is riding out (a reconnect in progress); the pipeline keeps
    /// going.
    pub fn recoverable(source_name: impl Into<String>, cause: impl Into<BoxError>) -> Self {
        Self {
            source_name: source_name.into(),
            recoverable: true,
            cause: cause.into(),
        }
    }

    /// A failure that ends the source; the pipeline shuts down gracefully.
    pub fn fatal(source_name: impl Into<String>, cause: impl Into<BoxError>) -> Self {
        Self {
            source_name: source_name.into(),
            recoverable: false,
            cause: cause.into(),
        }
    }

    /// Whether the pipeline can keep going.
    pub fn is_recoverable(&self) -> bool {
        self.recoverable
    }
}

/// A stream of deliveries from one broker subscription.
pub trait Source: Send + 'static {
    /// The next delivery; `None` when the source has ended. Must be cancel-safe: the
    /// pipeline may drop the future when something else happens first.
    fn next(&mut self) -> impl Future<Output = Option<Result<Delivery, SourceError>>> + Send;

    /// The pipeline's intake changed. Sources that must keep talking to the broker while
    /// nobody pulls (Kafka's poll interval) pause and resume fetching here; the default
    /// does nothing, since not being pulled is already backpressure.
    fn set_intake(&mut self, intake: Intake) {
        let _ = intake;
    }

    /// Called once after the pipeline stopped and released every completion it will
    /// release: send outstanding acknowledgements or commits, then disconnect.
    fn close(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }
}
