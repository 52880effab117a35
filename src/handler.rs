//! The application's side of the pipeline: the `Handler` trait and its error.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use crate::message::Message;

/// A boxed error from application code.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Handles one message. Called once per attempt, never concurrently for two messages with
/// the same ordering key.
///
/// Implementations may use `async fn`:
///
/// ```
/// use seawall::{Handler, HandlerError, Message};
///
/// struct Audit;
///
/// impl Handler for Audit {
///     async fn handle(&self, message: &Message) -> Result<(), HandlerError> {
///         if message.payload().is_empty() {
///             return Err(HandlerError::permanent("empty payload"));
///         }
///         Ok(())
///     }
/// }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Handles the message: `Ok` completes it, a transient error retries it, a permanent
    /// error dead-letters it. A panic counts as a failed attempt.
    fn handle(&self, message: &Message) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// A handler made from a closure; see [`handler_fn`].
#[derive(Clone)]
pub struct HandlerFn<F> {
    f: F,
}

/// Turns a closure taking the message by value into a [`Handler`].
///
/// The message is a cheap clone (payload and headers are shared), so the returned future
/// may own it.
///
/// ```
/// let handler = seawall::handler_fn(|message: seawall::Message| async move {
///     println!("{} bytes", message.payload().len());
///     Ok(())
/// });
/// # let _ = handler;
/// ```
pub fn handler_fn<F, Fut>(f: F) -> HandlerFn<F>
where
    F: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    HandlerFn { f }
}

impl<F, Fut> Handler for HandlerFn<F>
where
    F: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    fn handle(&self, message: &Message) -> impl Future<Output = Result<(), HandlerError>> + Send {
        (self.f)(message.clone())
    }
}

impl<H: Handler> Handler for std::sync::Arc<H> {
    fn handle(&self, message: &Message) -> impl Future<Output = Result<(), HandlerError>> + Send {
        (**self).handle(message)
    }
}

/// Whether a failure may go away by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureClass {
    /// Retry later: the downstream is slow, down or overloaded.
    Transient,
    /// Retrying cannot help: the message itself is bad.
    Permanent,
}

/// Why a handler failed, and whether trying again can help.
pub struct HandlerError {
    class: FailureClass,
    source: BoxError,
    retry_after: Option<Duration>,
    contract_violation: bool,
}

impl HandlerError {
    /// A failure worth retrying (timeouts, 5xx, connection errors).
    pub fn transient(err: impl Into<BoxError>) -> Self {
        Self {
            class: FailureClass::Transient,
            source: err.into(),
            retry_after: None,
            contract_violation: false,
        }
    }

    /// A failure retrying cannot fix; the message is dead-lettered at once.
    pub fn permanent(err: impl Into<BoxError>) -> Self {
        Self {
            class: FailureClass::Permanent,
            source: err.into(),
            retry_after: None,
            contract_violation: false,
        }
    }

    /// The message does not match its contract (schema): dead-lettered at once with kind
    /// `contract`, never retried.
    pub fn contract(err: impl Into<BoxError>) -> Self {
        Self {
            contract_violation: true,
            ..Self::permanent(err)
        }
    }

    /// Asks for the next attempt no sooner than `delay` (an HTTP `Retry-After`, say).
    pub fn with_retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    /// Transient or permanent.
    pub fn class(&self) -> FailureClass {
        self.class
    }

    /// True for a transient failure.
    pub fn is_transient(&self) -> bool {
        self.class == FailureClass::Transient
    }

    /// True when the message broke its contract (see [`HandlerError::contract`]).
    pub fn is_contract_violation(&self) -> bool {
        self.contract_violation
    }

    /// The retry-after hint, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerError")
            .field("class", &self.class)
            .field("source", &self.source)
            .field("retry_after", &self.retry_after)
            .field("contract_violation", &self.contract_violation)
            .finish()
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.source, f)
    }
}

impl StdError for HandlerError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(self.source.as_ref())
    }
}
