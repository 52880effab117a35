//! Breaker, backoff and timeout timing on tokio's paused clock.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{keyed, quick_config, start};
use seawall::{BreakerConfig, BreakerState, CallResult, CircuitBreaker, HandlerError, Message};
use tokio::time::Instant;

fn config() -> BreakerConfig {
    BreakerConfig {
        enabled: true,
        window: Duration::from_secs(10),
        min_calls: 4,
        failure_ratio: 0.5,
        cool_down: Duration::from_secs(5),
    }
}

async fn record(breaker: &Arc<CircuitBreaker>, result: CallResult) -> BreakerState {
    let permit = breaker.acquire().await;
    breaker.record(permit, result)
}

#[tokio::test(start_paused = true)]
async fn opens_at_the_failure_ratio_once_enough_calls_were_seen() {
    let breaker = CircuitBreaker::new(config());
    assert_eq!(
        record(&breaker, CallResult::Failure).await,
        BreakerState::Closed
    );
    assert_eq!(
        record(&breaker, CallResult::Failure).await,
        BreakerState::Closed
    );
    assert_eq!(
        record(&breaker, CallResult::Success).await,
        BreakerState::Closed
    );
    assert_eq!(
        record(&breaker, CallResult::Failure).await,
        BreakerState::Open
    );
}

#[tokio::test(start_paused = true)]
async fn old_failures_leave_the_rolling_window() {
    let breaker = CircuitBreaker::new(config());
    for _ in 0..3 {
        record(&breaker, CallResult::Failure).await;
    }
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(
        record(&breaker, CallResult::Failure).await,
        BreakerState::Closed
    );
}

#[tokio::test(start_paused = true)]
async fn open_holds_callers_for_the_cool_down_then_lets_one_probe_through() {
    let breaker = CircuitBreaker::new(config());
    for _ in 0..4 {
        record(&breaker, CallResult::Failure).await;
    }
    let opened = Instant::now();
    let probe = breaker.acquire().await;
    assert_eq!(opened.elapsed(), Duration::from_secs(5));
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    // A second caller waits while the probe is out.
    let second = tokio::spawn({
        let breaker = Arc::clone(&breaker);
        async move {
            let permit = breaker.acquire().await;
            breaker.record(permit, CallResult::Success);
        }
    });
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!second.is_finished(), "held while half-open");
    assert_eq!(
        breaker.record(probe, CallResult::Success),
        BreakerState::Closed
    );
    second.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens_for_another_cool_down() {
    let breaker = CircuitBreaker::new(config());
    for _ in 0..4 {
        record(&breaker, CallResult::Failure).await;
    }
    let probe = breaker.acquire().await;
    assert_eq!(
        breaker.record(probe, CallResult::Failure),
        BreakerState::Open
    );
    let reopened = Instant::now();
    let probe = breaker.acquire().await;
    assert_eq!(reopened.elapsed(), Duration::from_secs(5));
    drop(probe);
    assert_eq!(
        breaker.state(),
        BreakerState::HalfOpen,
        "a dropped probe frees the slot"
    );
    let again = breaker.acquire().await;
    breaker.record(again, CallResult::Success);
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_down_downstream_opens_the_breaker_and_nothing_is_dead_lettered() {
    let down = Arc::new(AtomicBool::new(true));
    let states = Arc::new(Mutex::new(Vec::new()));
    let flag = Arc::clone(&down);
    let handler = seawall::handler_fn(move |_m: Message| {
        let down = flag.load(Ordering::SeqCst);
        async move {
            if down {
                Err(HandlerError::transient("503 service unavailable"))
            } else {
                Ok(())
            }
        }
    });
    let mut config = quick_config();
    config.retry.max_attempts = 3;
    config.breaker = BreakerConfig {
        min_calls: 5,
        cool_down: Duration::from_secs(2),
        ..config.breaker
    };
    let harness = start(config, handler);
    let mut changes = harness.handle.breaker_changes();
    let watcher = tokio::spawn({
        let states = Arc::clone(&states);
        async move {
            while changes.changed().await.is_ok() {
                let state = *changes.borrow_and_update();
                states.lock().unwrap().push(state);
            }
        }
    });
    for seq in 0..40 {
        harness.publish(keyed(&format!("k{}", seq % 8), seq)).await;
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_ne!(harness.handle.breaker_state(), BreakerState::Closed);
    for seq in 40..60 {
        harness.publish(keyed(&format!("k{}", seq % 8), seq)).await;
    }
    tokio::time::sleep(Duration::from_secs(30)).await;
    let stats = harness.handle.stats();
    assert_eq!(
        stats.dead_lettered, 0,
        "nothing dead-lettered because the downstream is down"
    );
    assert_eq!(
        stats.received, 40,
        "intake stopped while the breaker is not closed"
    );
    // Probes are few: one per cool-down, not a retry storm.
    let retries_during_outage = stats.retries;
    tokio::time::sleep(Duration::from_secs(60)).await;
    let more = harness.handle.stats().retries - retries_during_outage;
    assert!(
        more <= 31,
        "{more} retries in 60s of outage with a 2s cool-down"
    );
    down.store(false, Ordering::SeqCst);
    let (stats, harness) = harness.finish().await;
    assert_eq!(stats.processed, 60);
    assert_eq!(stats.dead_lettered, 0);
    assert!(harness.letters.is_empty());
    watcher.abort();
    let seen = states.lock().unwrap().clone();
    // A watch shows the latest state only, so a quick half-open → open may not be seen;
    // the half-open probe itself is covered by the breaker tests above.
    assert!(seen.contains(&BreakerState::Open), "{seen:?}");
    assert_eq!(seen.last(), Some(&BreakerState::Closed));
}

#[tokio::test(start_paused = true)]
async fn retries_back_off_and_honour_retry_after() {
    let times = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&times);
    let handler = seawall::handler_fn(move |m: Message| {
        log.lock().unwrap().push(Instant::now());
        async move {
            match m.attempt() {
                1 => Err(HandlerError::transient("429").with_retry_after(Duration::from_secs(7))),
                2 | 3 => Err(HandlerError::transient("503")),
                _ => Ok(()),
            }
        }
    });
    let mut config = quick_config();
    config.retry.initial_backoff = Duration::from_millis(400);
    config.retry.max_backoff = Duration::from_secs(60);
    config.breaker.enabled = false;
    let harness = start(config, handler);
    harness.publish(keyed("k", 0)).await;
    let (stats, _) = harness.finish().await;
    assert_eq!(stats.processed, 1);
    let times = times.lock().unwrap().clone();
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps[0] >= Duration::from_secs(7),
        "retry-after honoured: {gaps:?}"
    );
    // Full jitter: the nth retry waits at most initial * 2^(n-1).
    assert!(
        gaps[1] <= Duration::from_millis(800) + Duration::from_millis(5),
        "{gaps:?}"
    );
    assert!(
        gaps[2] <= Duration::from_millis(1600) + Duration::from_millis(5),
        "{gaps:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn max_elapsed_ends_retries() {
    let handler = seawall::handler_fn(|_m: Message| async { Err(HandlerError::transient("503")) });
    let mut config = quick_config();
    config.retry.max_attempts = 1000;
    config.retry.initial_backoff = Duration::from_secs(1);
    config.retry.max_backoff = Duration::from_secs(1);
    config.retry.max_elapsed = Duration::from_secs(30);
    config.breaker.enabled = false;
    let harness = start(config, handler);
    let began = Instant::now();
    harness.publish(keyed("k", 0)).await;
    let (stats, harness) = harness.finish().await;
    assert_eq!(stats.dead_lettered, 1);
    assert!(
        began.elapsed() <= Duration::from_secs(31),
        "{:?}",
        began.elapsed()
    );
    let letter = &harness.letters.letters()[0];
    let info = seawall::DeadLetterInfo::from_headers(&letter.headers()).unwrap();
    assert!(info.error.contains("retry.max_elapsed"), "{}", info.error);
}

#[tokio::test(start_paused = true)]
async fn a_handler_timeout_is_a_transient_failure_at_the_deadline() {
    let times = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&times);
    let handler = seawall::handler_fn(move |m: Message| {
        log.lock().unwrap().push(Instant::now());
        async move {
            if m.attempt() == 1 {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            Ok(())
        }
    });
    let mut config = quick_config();
    config.handler_timeout = Duration::from_millis(250);
    config.retry.initial_backoff = Duration::ZERO;
    let harness = start(config, handler);
    harness.publish(keyed("k", 0)).await;
    let (stats, _) = harness.finish().await;
    assert_eq!((stats.timeouts, stats.processed), (1, 1));
    let times = times.lock().unwrap().clone();
    let gap = times[1] - times[0];
    assert!(
        gap >= Duration::from_millis(250) && gap < Duration::from_millis(260),
        "{gap:?}"
    );
}

/// Under load the window is full of successes when the downstream goes down; the last
/// `min_calls` attempts failing opens the breaker at once, before messages in flight
/// spend their retry budgets on the outage.
#[tokio::test(start_paused = true)]
async fn a_sudden_outage_opens_it_after_a_window_full_of_successes() {
    let breaker = CircuitBreaker::new(config());
    for _ in 0..1_000 {
        record(&breaker, CallResult::Success).await;
    }
    // The last four attempts: three successes and a failure; then two of four failed.
    assert_eq!(
        record(&breaker, CallResult::Failure).await,
        BreakerState::Closed
    );
    assert_eq!(
        record(&breaker, CallResult::Failure).await,
        BreakerState::Open
    );
}
