//! `Measured`: a handler layer timing every call into the route's latency histogram.

use std::time::Instant;

use crate::{Handler, HandlerError, Message};

use super::RouteMetrics;

/// Wraps a handler and observes the duration of each of its calls into
/// `seawall_handler_duration_seconds` of a route. The outcome is passed through
/// untouched.
///
/// Every call is observed, however it ends: success, error, panic, or cancellation (the
/// pipeline drops the call's future when `handler_timeout` elapses). Leaving the slow
/// and broken calls out would hide exactly the latency an operator looks for.
///
/// ```
/// use seawall::admin::{Measured, Registry};
///
/// let registry = Registry::new();
/// let handler = Measured::new(
///     registry.route("orders"),
///     seawall::handler_fn(|_message: seawall::Message| async { Ok(()) }),
/// );
/// # let _ = handler;
/// ```
#[derive(Clone, Debug)]
pub struct Measured<H> {
    metrics: RouteMetrics,
    inner: H,
}

impl<H: Handler> Measured<H> {
    /// Times `inner`'s calls into `metrics`.
    pub fn new(metrics: RouteMetrics, inner: H) -> Self {
        Self { metrics, inner }
    }

    /// The wrapped handler.
    pub fn inner(&self) -> &H {
        &self.inner
    }
}

/// Observes on drop, so an unwinding panic or a dropped (timed-out) future still counts.
struct Timer<'a> {
    metrics: &'a RouteMetrics,
    started: Instant,
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        self.metrics.observe_handler_latency(self.started.elapsed());
    }
}

impl<H: Handler> Handler for Measured<H> {
    async fn handle(&self, message: &Message) -> Result<(), HandlerError> {
        let _timer = Timer {
            metrics: &self.metrics,
            started: Instant::now(),
        };
        self.inner.handle(message).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::admin::Registry;
    use crate::handler_fn;

    fn count(registry: &Registry) -> u64 {
        registry.route("r").latency().snapshot().count
    }

    #[tokio::test]
    async fn outcomes_pass_through_and_every_call_is_observed() {
        let registry = Registry::new();
        let measured = Measured::new(
            registry.route("r"),
            handler_fn(|m: Message| async move {
                match m.payload().as_ref() {
                    b"ok" => Ok(()),
                    b"transient" => Err(HandlerError::transient("later")),
                    _ => Err(HandlerError::permanent("never")),
                }
            }),
        );
        assert!(measured.handle(&Message::new("ok")).await.is_ok());
        let e = measured
            .handle(&Message::new("transient"))
            .await
            .unwrap_err();
        assert!(e.is_transient());
        let e = measured.handle(&Message::new("bad")).await.unwrap_err();
        assert!(!e.is_transient());
        assert_eq!(e.to_string(), "never");
        assert_eq!(count(&registry), 3);
    }

    #[tokio::test]
    async fn panics_and_cancelled_calls_are_observed() {
        let registry = Registry::new();
        let panicking = Measured::new(
            registry.route("r"),
            handler_fn(|_m: Message| async move {
                if true {
                    panic!("handler bug");
                }
                Ok(())
            }),
        );
        let joined = tokio::spawn(async move { panicking.handle(&Message::new("x")).await }).await;
        assert!(joined.unwrap_err().is_panic());
        assert_eq!(count(&registry), 1);

        let slow = Measured::new(
            registry.route("r"),
            handler_fn(|_m: Message| async move {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(())
            }),
        );
        let timed_out =
            tokio::time::timeout(Duration::from_millis(20), slow.handle(&Message::new("x"))).await;
        assert!(timed_out.is_err());
        let s = registry.route("r").latency().snapshot();
        assert_eq!(s.count, 2);
        assert!(s.sum_nanos >= 20_000_000, "the cancelled call ran ~20ms");
    }
}
