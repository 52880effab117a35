//! Each pipeline stage's failure paths, on the in-memory transport.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{keyed, quick_config, start, Recorder};
use seawall::{
    header, DeadLetterInfo, DeadLetterKind, DeadLetterPolicy, HandlerError, IdempotencyStore,
    Message,
};

#[tokio::test]
async fn every_message_is_handled_once_in_order_per_key() {
    let recorder = Recorder::new(|_, _, _| Ok(()));
    let harness = start(quick_config(), recorder.clone());
    for seq in 0..50 {
        for key in ["a", "b", "c"] {
            harness.publish(keyed(key, seq)).await;
        }
    }
    let (stats, harness) = harness.finish().await;
    assert_eq!(stats.processed, 150);
    for key in ["a", "b", "c"] {
        let expected: Vec<String> = (0..50).map(|s| s.to_string()).collect();
        assert_eq!(recorder.for_key(key), expected, "order of {key}");
    }
    assert_eq!(harness.ledger.completed_count(), 150);
    let committed: i64 = harness.ledger.commit_points().iter().map(|(_, o)| o).sum();
    assert_eq!(
        committed, 150,
        "commit points reach the end of every partition"
    );
}

#[tokio::test]
async fn duplicates_are_skipped_without_calling_the_handler() {
    let recorder = Recorder::new(|_, _, _| Ok(()));
    let harness = start(quick_config(), recorder.clone());
    for seq in 0..20 {
        harness.publish(keyed("k", seq)).await;
        harness.publish(keyed("k", seq)).await;
    }
    let (stats, harness) = harness.finish().await;
    assert_eq!(recorder.calls().len(), 20);
    assert_eq!((stats.processed, stats.duplicates), (20, 20));
    assert_eq!(
        harness.ledger.completed_count(),
        40,
        "duplicates are completed too"
    );
}

#[tokio::test]
async fn unordered_duplicates_in_flight_together_still_run_once() {
    let recorder = Recorder::new(|_, _, _| Ok(()));
    let harness = start(quick_config(), recorder.clone());
    for _ in 0..5 {
        harness
            .publish(Message::new("x").with_header("idempotency-key", "same"))
            .await;
    }
    let (stats, _) = harness.finish().await;
    assert_eq!(recorder.calls().len(), 1);
    assert_eq!(stats.duplicates, 4);
}

#[tokio::test]
async fn permanent_errors_dead_letter_at_once_with_every_header() {
    let recorder = Recorder::new(|_, payload, _| match payload {
        "1" => Err(HandlerError::permanent("customer 42 does not exist")),
        _ => Ok(()),
    });
    let harness = start(quick_config(), recorder.clone());
    for seq in 0..3 {
        harness
            .publish(keyed("k", seq).with_header("traceparent", "00-t"))
            .await;
    }
    let (stats, harness) = harness.finish().await;
    assert_eq!((stats.processed, stats.dead_lettered), (2, 1));
    assert_eq!(
        recorder.for_key("k"),
        ["0", "1", "2"],
        "continue policy lets the key go on"
    );
    let letters = harness.letters.letters();
    let letter = &letters[0];
    assert_eq!(letter.message.payload(), "1");
    assert_eq!(letter.key().map(|k| &k[..]), Some(&b"k"[..]));
    let headers = letter.headers();
    assert_eq!(
        headers.get("traceparent").map(|v| &v[..]),
        Some(&b"00-t"[..])
    );
    let info = DeadLetterInfo::from_headers(&headers).expect("decodable headers");
    assert_eq!(info.kind, DeadLetterKind::Permanent);
    assert_eq!(info.error, "customer 42 does not exist");
    assert_eq!(info.attempts, 1);
    assert_eq!(&*info.source, "orders");
    assert_eq!(info.idempotency_key.as_deref(), Some(&b"k-1"[..]));
    assert_eq!(info.ordering_key.as_deref(), Some(&b"k"[..]));
    for name in [
        header::PARTITION,
        header::OFFSET,
        header::FIRST_FAILED_AT,
        header::FAILED_AT,
    ] {
        assert!(headers.get(name).is_some(), "{name} present");
    }
    assert_eq!(
        harness.ledger.completed_count(),
        3,
        "dead-lettered message is completed"
    );
}

#[tokio::test]
async fn transient_failures_retry_in_order_while_other_keys_flow() {
    let recorder = Recorder::new(|key, payload, attempt| match (key, payload) {
        ("slow", "0") if attempt < 4 => Err(HandlerError::transient("503")),
        _ => Ok(()),
    });
    let harness = start(quick_config(), recorder.clone());
    for seq in 0..5 {
        harness.publish(keyed("slow", seq)).await;
        harness.publish(keyed("fast", seq)).await;
    }
    let (stats, _) = harness.finish().await;
    assert_eq!(stats.processed, 10);
    assert_eq!(stats.retries, 3);
    assert_eq!(
        recorder.for_key("slow"),
        ["0", "0", "0", "0", "1", "2", "3", "4"]
    );
    let calls = recorder.calls();
    let first_fast_done = calls
        .iter()
        .position(|(k, p, _)| k == "fast" && p == "4")
        .unwrap();
    let slow_ok = calls
        .iter()
        .position(|(k, p, a)| k == "slow" && p == "0" && *a == 4)
        .unwrap();
    assert!(
        first_fast_done < slow_ok,
        "the other key did not wait for the retrying one"
    );
}

#[tokio::test]
async fn exhausted_retries_dead_letter_with_the_attempt_count() {
    let recorder = Recorder::new(|_, _, _| Err(HandlerError::transient("connection refused")));
    let mut config = quick_config();
    config.retry.max_attempts = 3;
    config.breaker.enabled = false;
    let harness = start(config, recorder.clone());
    harness.publish(keyed("k", 0)).await;
    let (stats, harness) = harness.finish().await;
    assert_eq!(recorder.calls().len(), 3);
    assert_eq!(stats.dead_lettered, 1);
    let info = DeadLetterInfo::from_headers(&harness.letters.letters()[0].headers()).unwrap();
    assert_eq!(info.kind, DeadLetterKind::Exhausted);
    assert_eq!(info.attempts, 3);
    assert!(info.error.contains("connection refused"), "{}", info.error);
}

#[tokio::test]
async fn a_panicking_handler_counts_as_a_failed_attempt() {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    let handler = seawall::handler_fn(move |message: Message| {
        let counter = Arc::clone(&counter);
        async move {
            if counter.fetch_add(1, Ordering::SeqCst) < 2 {
                panic!("bug in handler for {}", message.payload().len());
            }
            Ok(())
        }
    });
    let harness = start(quick_config(), handler);
    harness.publish(keyed("k", 0)).await;
    let (stats, _) = harness.finish().await;
    assert_eq!((stats.panics, stats.processed, stats.retries), (2, 1, 2));
}

#[tokio::test]
async fn oversize_messages_never_reach_the_handler() {
    let recorder = Recorder::new(|_, _, _| Ok(()));
    let mut config = quick_config();
    config.limits.max_payload_bytes = 8;
    config.limits.max_headers = 3;
    let harness = start(config, recorder.clone());
    harness
        .publish(Message::new("x".repeat(9)).with_key("k"))
        .await;
    let many = (0..4).fold(Message::new("ok").with_key("k"), |m, i| {
        m.with_header(format!("h{i}"), "v")
    });
    harness.publish(many).await;
    harness.publish(Message::new("fine").with_key("k")).await;
    let (stats, harness) = harness.finish().await;
    assert_eq!(recorder.calls().len(), 1);
    assert_eq!(stats.dead_lettered, 2);
    for letter in harness.letters.letters() {
        let info = DeadLetterInfo::from_headers(&letter.headers()).unwrap();
        assert_eq!(info.kind, DeadLetterKind::Oversize);
        assert_eq!(info.attempts, 0);
        assert!(info.error.contains("limits."), "{}", info.error);
    }
}

#[tokio::test]
async fn park_dead_letters_later_messages_of_the_key_until_released() {
    let recorder = Recorder::new(|_, payload, _| match payload {
        "1" => Err(HandlerError::permanent("poison")),
        _ => Ok(()),
    });
    let mut config = quick_config();
    config.on_dead_letter = DeadLetterPolicy::Park;
    let harness = start(config, recorder.clone());
    for seq in 0..4 {
        harness.publish(keyed("p", seq)).await;
    }
    harness.publish(keyed("other", 0)).await;
    // Wait until all five settled, then release and send one more.
    while harness.ledger.completed_count() < 5 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(recorder.for_key("p"), ["0", "1"]);
    let letters = harness.letters.letters();
    let kinds: Vec<_> = letters
        .iter()
        .map(|l| DeadLetterInfo::from_headers(&l.headers()).unwrap())
        .map(|i| {
            (
                i.kind,
                i.blocked_by,
                String::from_utf8_lossy(l_payload(&letters, &i.idempotency_key)).into_owned(),
            )
        })
        .collect();
    assert_eq!(kinds[0].0, DeadLetterKind::Permanent);
    assert_eq!(
        kinds[1],
        (DeadLetterKind::Parked, Some("p-1".into()), "2".into())
    );
    assert_eq!(
        kinds[2],
        (DeadLetterKind::Parked, Some("p-1".into()), "3".into())
    );
    assert_eq!(harness.handle.parked_keys().unwrap().len(), 1);
    assert!(harness.handle.release_key(b"p").unwrap());
    harness.publish(keyed("p", 4)).await;
    let (stats, harness) = harness.finish().await;
    assert_eq!(recorder.for_key("p"), ["0", "1", "4"]);
    assert_eq!(stats.parked, 2);
    assert!(harness.store.parked(b"p").unwrap().is_none());
}

fn l_payload<'a>(letters: &'a [seawall::DeadLetter], key: &Option<bytes::Bytes>) -> &'a [u8] {
    letters
        .iter()
        .find(|l| {
            DeadLetterInfo::from_headers(&l.headers())
                .unwrap()
                .idempotency_key
                == *key
        })
        .map(|l| &l.message.payload()[..])
        .unwrap()
}

#[tokio::test]
async fn a_failing_dead_letter_sink_holds_the_key_and_loses_nothing() {
    let recorder = Recorder::new(|_, payload, _| match payload {
        "0" => Err(HandlerError::permanent("poison")),
        _ => Ok(()),
    });
    let harness = start(quick_config(), recorder.clone());
    harness.letters.fail_next(3);
    harness.publish(keyed("k", 0)).await;
    harness.publish(keyed("k", 1)).await;
    let (stats, harness) = harness.finish().await;
    assert_eq!(harness.letters.len(), 1, "written once it worked");
    assert_eq!(recorder.for_key("k"), ["0", "1"]);
    assert_eq!(stats.dead_lettered, 1);
    assert_eq!(harness.ledger.completed_count(), 2);
}

#[tokio::test]
async fn a_dead_letter_too_large_for_its_route_goes_without_content_and_the_key_moves_on() {
    let recorder = Recorder::new(|_, payload, _| match payload.len() {
        0..=9 => Ok(()),
        _ => Err(HandlerError::permanent("poison")),
    });
    let harness = start(quick_config(), recorder.clone());
    harness.letters.refuse_payloads_over(9);
    let big = Message::new("x".repeat(20))
        .with_key("k")
        .with_header("h", "v");
    harness.publish(big).await;
    harness.publish(keyed("k", 1)).await;
    let (stats, harness) = harness.finish().await;
    let letters = harness.letters.letters();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert!(letter.message.payload().is_empty());
    assert!(letter.message.headers().get("h").is_none());
    let omitted = letter.message.headers().get(header::OMITTED).unwrap();
    let omitted = String::from_utf8_lossy(omitted);
    assert!(
        omitted.contains("payload (20 bytes) and 1 headers"),
        "{omitted}"
    );
    let info = DeadLetterInfo::from_headers(&letter.headers()).unwrap();
    assert_eq!(info.kind, DeadLetterKind::Permanent);
    assert_eq!(recorder.for_key("k").len(), 2, "the key moved on");
    assert_eq!(stats.dead_lettered, 1);
}

#[tokio::test]
async fn a_dead_lettered_message_redelivered_is_not_dead_lettered_twice_but_a_replay_runs() {
    let recorder = Recorder::new(|_, _, attempt| match attempt {
        1 => Err(HandlerError::permanent("poison")),
        _ => Ok(()),
    });
    let harness = start(quick_config(), recorder.clone());
    harness.publish(keyed("k", 0)).await;
    harness.publish(keyed("k", 0)).await;
    harness
        .publish(keyed("k", 0).with_header(header::REPLAY_OF, "dlq/0/0"))
        .await;
    let (stats, harness) = harness.finish().await;
    assert_eq!(
        harness.letters.len(),
        2,
        "the replay failed again (attempt 1 always fails)"
    );
    assert_eq!(stats.duplicates, 1);
    assert_eq!(recorder.calls().len(), 2);
}

#[tokio::test]
async fn handlers_see_the_keys_the_pipeline_derived() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let mut config = quick_config();
    config.ordering.key = seawall::KeyRule::new(["header:ordering-key".parse().unwrap()]);
    let handler = seawall::handler_fn(move |message: Message| {
        let record = Arc::clone(&record);
        async move {
            record.lock().unwrap().push((
                message.ordering_key().cloned(),
                message.idempotency_key().cloned(),
            ));
            Ok(())
        }
    });
    let harness = start(config, handler);
    harness
        .publish(keyed("routing", 1).with_header("ordering-key", "customer-7"))
        .await;
    harness.finish().await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [(Some("customer-7".into()), Some("routing-1".into()))]
    );
}

#[tokio::test]
async fn a_rate_limit_spaces_handler_calls() {
    let mut config = quick_config();
    config.rate_limit = Some(seawall::RateLimitConfig {
        per_second: 100.0,
        burst: 1,
    });
    let recorder = Recorder::new(|_, _, _| Ok(()));
    let harness = start(config, recorder.clone());
    let started = std::time::Instant::now();
    for seq in 0..21 {
        harness.publish(keyed(&format!("k{seq}"), seq)).await;
    }
    let (stats, _) = harness.finish().await;
    assert_eq!(stats.processed, 21);
    // 21 calls at 100 a second, no burst: the last one is due 200 ms after the first,
    // whatever the concurrency (21 different keys could all run at once).
    assert!(started.elapsed() >= Duration::from_millis(200));
}
