//! Awaiting a producer's delivery reports, for the benches that fill topics.

use rdkafka::producer::DeliveryFuture;

/// Waits for every delivery in `pending` (emptying it); panics on a failed one, since a
/// bench with a lost record measures nothing.
pub async fn await_all(pending: &mut Vec<DeliveryFuture>) {
    for delivery in pending.drain(..) {
        delivery
            .await
            .expect("delivery")
            .map_err(|(e, _)| e)
            .expect("produced");
    }
}
