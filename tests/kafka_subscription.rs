//! Pattern subscriptions and consumer lag, against a real Kafka-API broker.
#![cfg(feature = "kafka")]

#[path = "common/kafka.rs"]
mod kafka;
#[path = "common/run.rs"]
mod run;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka::{brokers, create_topic, produce, read_all, unique, Record};
use run::stop_when;
use seawall::kafka::{KafkaConfig, KafkaDeadLetters, KafkaSource};
use seawall::{handler_fn, HandlerError, Message, PipelineConfig};

fn records(topic: &str, count: u32) -> impl Iterator<Item = Record> + '_ {
    (0..count).map(move |i| Record {
        key: Some(format!("k{}", i % 10)),
        payload: i.to_string(),
        headers: vec![("idempotency-key".into(), format!("{topic}-{i}"))],
    })
}

/// Every handled message as (topic, payload).
type Seen = Arc<Mutex<Vec<(String, String)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pattern_consumes_every_matching_topic_but_not_its_own_dead_letters() {
    let base = unique("pattern");
    let (a, b) = (format!("{base}-a"), format!("{base}-b"));
    create_topic(&a, 2).await;
    create_topic(&b, 2).await;
    produce(&a, records(&a, 300)).await;
    produce(&b, records(&b, 300)).await;
    let mut kafka = KafkaConfig::new(brokers(), unique("pattern-group"), &[]);
    kafka.topics = vec![format!("^{base}-.*")];
    // New topics (the dead-letter topic created below) are seen at the next refresh.
    kafka
        .properties
        .set("topic.metadata.refresh.interval.ms", "500");
    let seen = Seen::default();
    let record = Arc::clone(&seen);
    let poison = format!("{a}-7");
    let handler = handler_fn(move |m: Message| {
        let id = m.headers().get("idempotency-key").map(|v| v.to_vec());
        let is_poison = id.as_deref() == Some(poison.as_bytes());
        let topic = m.origin().source.to_string();
        let payload = String::from_utf8_lossy(m.payload()).into_owned();
        if !is_poison {
            record.lock().unwrap().push((topic, payload));
        }
        async move {
            match is_poison {
                true => Err(HandlerError::permanent("poison")),
                false => Ok(()),
            }
        }
    });
    let source = KafkaSource::connect(kafka.clone()).expect("source");
    let lag = source.lag();
    let sink = KafkaDeadLetters::connect(&kafka).await.expect("sink");
    let run = run::spawn(source, sink, handler, PipelineConfig::default());
    let handle = run.handle.clone();
    for _ in 0..600 {
        if handle.stats().processed + handle.stats().dead_lettered >= 600 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The pattern matches `<a>.dlq` too, created by the dead letter: once the consumer
    // owns it (it shows in the lag), its record must not come back into the pipeline.
    let dead_letters = format!("{a}.dlq");
    let mut owned = false;
    for _ in 0..600 {
        owned = lag.get().iter().any(|(p, _)| *p.topic == *dead_letters);
        if owned {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(owned, "the pattern subscription picked up {dead_letters}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stats = stop_when(run, |_| true).await;
    assert_eq!(
        (stats.received, stats.processed, stats.dead_lettered),
        (600, 599, 1),
        "the dead letter did not come back"
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.iter().filter(|(t, _)| *t == a).count(), 299);
    assert_eq!(seen.iter().filter(|(t, _)| *t == b).count(), 300);
    assert!(
        seen.iter().all(|(t, _)| !t.ends_with(".dlq")),
        "the dead-letter topic was consumed"
    );
    let letters = read_all(&format!("{a}.dlq"), 1);
    assert_eq!(
        letters.len(),
        1,
        "the dead-letter topic was created at first use"
    );
    assert_eq!(letters[0].payload, "7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_shows_the_backlog_and_falls_to_zero_once_it_is_worked_off() {
    let topic = unique("lag");
    create_topic(&topic, 1).await;
    produce(&topic, records(&topic, 200)).await;
    let kafka = KafkaConfig::new(brokers(), unique("lag-group"), &[&topic]);
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let wait = Arc::clone(&gate);
    let handler = handler_fn(move |_m: Message| {
        let wait = Arc::clone(&wait);
        async move {
            let _permit = wait.acquire().await.map_err(HandlerError::transient)?;
            Ok(())
        }
    });
    let source = KafkaSource::connect(kafka.clone()).expect("source");
    let lag = source.lag();
    let sink = KafkaDeadLetters::connect(&kafka).await.expect("sink");
    let config = PipelineConfig {
        handler_timeout: Duration::from_secs(120),
        ..PipelineConfig::default()
    };
    let run = run::spawn(source, sink, handler, config);
    let backlog = poll_lag(&lag, |l| l > 0).await;
    assert!(
        backlog.is_some_and(|l| l <= 200),
        "lag while nothing completes: {backlog:?}"
    );
    gate.add_permits(10_000);
    let drained = poll_lag(&lag, |l| l == 0).await;
    assert_eq!(drained, Some(0), "lag once everything completed");
    let stats = stop_when(run, |s| s.processed >= 200).await;
    assert_eq!(stats.processed, 200);
}

/// The lag of the topic's one partition once `wanted` holds (lag is measured every few
/// seconds), or the last value seen after 40 s.
async fn poll_lag(lag: &seawall::kafka::Lag, wanted: impl Fn(i64) -> bool) -> Option<i64> {
    let mut last = None;
    for _ in 0..400 {
        last = lag.get().first().map(|(_, l)| *l);
        if last.is_some_and(&wanted) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}
