//! Graceful shutdown: running handlers finish within the deadline, the rest is abandoned
//! for redelivery, and nothing unfinished is completed.

mod common;

use std::time::Duration;

use common::{keyed, quick_config, start};
use seawall::{HandlerError, Message, Position};
use tokio::time::Instant;

#[tokio::test]
async fn running_handlers_finish_and_waiting_messages_are_abandoned() {
    let handler = seawall::handler_fn(|_m: Message| async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(())
    });
    let mut config = quick_config();
    config.max_in_flight = 2;
    let harness = start(config, handler);
    for seq in 0..10 {
        harness.publish(keyed(&format!("k{seq}"), seq)).await;
    }
    while harness.handle.stats().in_flight < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    harness.handle.shutdown();
    let (stats, harness) = harness.finish().await;
    assert_eq!(stats.processed, 2);
    assert_eq!(harness.ledger.completed_count(), 2);
    assert_eq!(
        harness.ledger.abandoned().len(),
        8,
        "the rest stays for redelivery"
    );
}

#[tokio::test]
async fn a_stuck_handler_is_abandoned_at_the_deadline() {
    let handler = seawall::handler_fn(|_m: Message| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(())
    });
    let mut config = quick_config();
    config.shutdown_deadline = Duration::from_millis(150);
    let harness = start(config, handler);
    harness.publish(keyed("k", 0)).await;
    while harness.handle.stats().in_flight < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let began = Instant::now();
    harness.handle.shutdown();
    let (stats, harness) = harness.finish().await;
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
    assert_eq!(stats.processed, 0);
    assert_eq!(harness.ledger.completed_count(), 0);
    let abandoned = harness.ledger.abandoned();
    assert_eq!(abandoned.len(), 1);
    assert!(matches!(
        abandoned[0].origin().position,
        Position::Offset { offset: 0, .. }
    ));
}

#[tokio::test]
async fn a_message_waiting_to_retry_is_abandoned_not_dead_lettered() {
    let handler = seawall::handler_fn(|_m: Message| async { Err(HandlerError::transient("503")) });
    let mut config = quick_config();
    config.retry.initial_backoff = Duration::from_secs(30);
    config.retry.max_backoff = Duration::from_secs(30);
    config.breaker.enabled = false;
    let harness = start(config, handler);
    harness.publish(keyed("k", 0)).await;
    while harness.handle.stats().retries < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let began = Instant::now();
    harness.handle.shutdown();
    let (stats, harness) = harness.finish().await;
    assert!(began.elapsed() < Duration::from_secs(5));
    assert_eq!(stats.dead_lettered, 0);
    assert!(harness.letters.is_empty());
    assert_eq!(harness.ledger.abandoned().len(), 1);
}
