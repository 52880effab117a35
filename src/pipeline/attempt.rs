//! One handler call: with a timeout, and with panics caught.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;

use crate::breaker::CallResult;
use crate::handler::{FailureClass, Handler, HandlerError};
use crate::message::Message;

/// How an attempt failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The handler returned an error.
    Handler(HandlerError),
    /// The handler did not finish in time.
    Timeout(Duration),
    /// The handler panicked.
    Panic(String),
}

impl Failure {
    pub(crate) fn is_permanent(&self) -> bool {
        matches!(self, Failure::Handler(e) if e.class() == FailureClass::Permanent)
    }

    pub(crate) fn is_contract_violation(&self) -> bool {
        matches!(self, Failure::Handler(e) if e.is_contract_violation())
    }

    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            Failure::Handler(e) => e.retry_after(),
            Failure::Timeout(_) | Failure::Panic(_) => None,
        }
    }

    /// How the circuit breaker counts it: a permanent rejection means the downstream
    /// answered; a panic is our bug and says nothing about the downstream.
    pub(crate) fn call_result(&self) -> CallResult {
        match self {
            Failure::Handler(e) if e.class() == FailureClass::Permanent => CallResult::Success,
            Failure::Handler(_) | Failure::Timeout(_) => CallResult::Failure,
            Failure::Panic(_) => CallResult::Neutral,
        }
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            Failure::Handler(e) => e.to_string(),
            Failure::Timeout(limit) => {
                format!(
                    "handler timed out after {}",
                    humantime::format_duration(*limit)
                )
            }
            Failure::Panic(text) => format!("handler panicked: {text}"),
        }
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Calls the handler once.
pub(crate) async fn call<H: Handler>(
    handler: &H,
    message: &Message,
    limit: Duration,
) -> Result<(), Failure> {
    // AssertUnwindSafe: after a panic the handler's future is dropped, and the message is
    // only read by it, so no broken state escapes.
    let guarded = AssertUnwindSafe(handler.handle(message)).catch_unwind();
    match tokio::time::timeout(limit, guarded).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(err))) => Err(Failure::Handler(err)),
        Ok(Err(payload)) => Err(Failure::Panic(panic_text(payload.as_ref()))),
        Err(_) => Err(Failure::Timeout(limit)),
    }
}
