//! The Kafka adapter against a real Kafka-API broker: volume, order and commits,
//! duplicates, retries, dead-letter topics and parking.
#![cfg(feature = "kafka")]

#[path = "common/kafka.rs"]
mod kafka;
#[path = "common/run.rs"]
mod run;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka::{brokers, committed, create_topic, produce, read_all, unique, Record};
use run::{stop_when, Run};
use seawall::kafka::{KafkaConfig, KafkaDeadLetters, KafkaSource};
use seawall::{handler_fn, header, HandlerError, Message, PipelineConfig};

type Seen = Arc<Mutex<Vec<(String, u32)>>>;

async fn start<F>(kafka: &KafkaConfig, config: PipelineConfig, seen: &Seen, script: F) -> Run
where
    F: Fn(&str, u32, u32) -> Result<(), HandlerError> + Send + Sync + 'static,
{
    let (seen, script) = (Arc::clone(seen), Arc::new(script));
    let handler = handler_fn(move |m: Message| {
        let key = String::from_utf8_lossy(m.key().map(|k| &k[..]).unwrap_or(b"")).into_owned();
        let seq: u32 = std::str::from_utf8(m.payload()).unwrap().parse().unwrap();
        let result = script(&key, seq, m.attempt());
        if result.is_ok() {
            seen.lock().unwrap().push((key, seq));
        }
        async move { result }
    });
    let source = KafkaSource::connect(kafka.clone()).expect("source");
    let sink = KafkaDeadLetters::connect(kafka)
        .await
        .expect("dead-letter sink");
    run::spawn(source, sink, handler, config)
}

fn records(range: std::ops::Range<u32>, keys: u32) -> impl Iterator<Item = Record> {
    range.map(move |i| Record {
        key: Some(format!("k{}", i % keys)),
        payload: i.to_string(),
        headers: vec![("idempotency-key".into(), format!("m-{i}"))],
    })
}

fn per_key(seen: &Seen) -> HashMap<String, Vec<u32>> {
    let mut out: HashMap<String, Vec<u32>> = HashMap::new();
    for (key, seq) in seen.lock().unwrap().iter() {
        out.entry(key.clone()).or_default().push(*seq);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_messages_over_four_partitions_commit_to_the_end() {
    let topic = unique("volume");
    let group = unique("volume-group");
    create_topic(&topic, 4).await;
    let produced = produce(&topic, records(0..10_000, 200)).await;
    let kafka = KafkaConfig::new(brokers(), &group, &[&topic]);
    let seen = Seen::default();
    let run = start(&kafka, PipelineConfig::default(), &seen, |_, _, _| Ok(())).await;
    let stats = stop_when(run, |s| s.processed >= 10_000).await;
    assert_eq!(stats.processed, 10_000);
    let keys = per_key(&seen);
    assert_eq!(keys.len(), 200);
    for (key, seqs) in &keys {
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "order of {key}");
        assert_eq!(seqs.len(), 50);
    }
    let ends = kafka::end_list(&produced, 4);
    assert_eq!(
        committed(&group, &topic, 4),
        ends,
        "committed offsets equal the partition ends"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_messages_produced_twice_are_handled_once() {
    let topic = unique("dups");
    let group = unique("dups-group");
    create_topic(&topic, 2).await;
    produce(&topic, records(0..1000, 50)).await;
    produce(&topic, records(0..1000, 50)).await;
    let kafka = KafkaConfig::new(brokers(), &group, &[&topic]);
    let seen = Seen::default();
    let run = start(&kafka, PipelineConfig::default(), &seen, |_, _, _| Ok(())).await;
    let stats = stop_when(run, |s| s.processed + s.duplicates >= 2000).await;
    assert_eq!((stats.processed, stats.duplicates), (1000, 1000));
    assert_eq!(seen.lock().unwrap().len(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_retry_in_order_while_other_keys_flow() {
    let topic = unique("retry");
    let group = unique("retry-group");
    create_topic(&topic, 1).await;
    produce(&topic, records(0..200, 4)).await;
    let kafka = KafkaConfig::new(brokers(), &group, &[&topic]);
    let seen = Seen::default();
    // Retries a second apart, so the other keys' 150 messages have time to pass k1's
    // even on a loaded machine.
    let mut config = PipelineConfig::default();
    config.retry.initial_backoff = Duration::from_secs(1);
    config.retry.multiplier = 1.0;
    let run = start(&kafka, config, &seen, |key, seq, attempt| {
        match (key, seq) {
            ("k1", 1) if attempt < 4 => Err(HandlerError::transient("503")),
            _ => Ok(()),
        }
    })
    .await;
    let stats = stop_when(run, |s| s.processed >= 200).await;
    assert_eq!((stats.processed, stats.retries), (200, 3));
    let keys = per_key(&seen);
    assert_eq!(keys["k1"], (0..50).map(|i| i * 4 + 1).collect::<Vec<_>>());
    let order: Vec<_> = seen.lock().unwrap().clone();
    let k1_first = order
        .iter()
        .position(|(k, s)| k == "k1" && *s == 1)
        .unwrap();
    assert!(
        k1_first > 100,
        "other keys went on while k1 retried (k1's first at {k1_first})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_lands_in_the_dead_letter_topic_and_parks_its_key() {
    let topic = unique("poison");
    let group = unique("poison-group");
    create_topic(&topic, 2).await;
    produce(&topic, records(0..100, 5)).await;
    let kafka = KafkaConfig::new(brokers(), &group, &[&topic]);
    let config = PipelineConfig {
        on_dead_letter: seawall::DeadLetterPolicy::Park,
        ..PipelineConfig::default()
    };
    let seen = Seen::default();
    let run = start(&kafka, config, &seen, |key, seq, _| match (key, seq) {
        ("k3", 23) => Err(HandlerError::permanent("amount is negative")),
        _ => Ok(()),
    })
    .await;
    let stats = stop_when(run, |s| s.processed + s.dead_lettered >= 100).await;
    assert_eq!(
        (stats.processed, stats.dead_lettered, stats.parked),
        (84, 16, 15)
    );
    assert_eq!(per_key(&seen)["k3"], vec![3, 8, 13, 18]);
    let letters = read_all(&format!("{topic}.dlq"), 1);
    assert_eq!(letters.len(), 16);
    let poison = &letters[0];
    assert_eq!(
        (poison.key.as_deref(), poison.payload.as_str()),
        (Some("k3"), "23"),
        "original key kept"
    );
    assert_eq!(poison.header(header::ERROR_KIND), Some("permanent"));
    assert_eq!(poison.header(header::ERROR), Some("amount is negative"));
    assert_eq!(
        poison.header("idempotency-key"),
        Some("m-23"),
        "original headers kept"
    );
    for name in [
        header::ATTEMPTS,
        header::SOURCE,
        header::PARTITION,
        header::OFFSET,
        header::FIRST_FAILED_AT,
        header::FAILED_AT,
        header::IDEMPOTENCY_KEY,
        header::ORDERING_KEY,
    ] {
        assert!(poison.header(name).is_some(), "{name} on the dead letter");
    }
    let parked: Vec<&str> = letters[1..].iter().map(|l| l.payload.as_str()).collect();
    let expected: Vec<String> = (5..20).map(|i| (i * 5 + 3).to_string()).collect();
    assert_eq!(
        parked, expected,
        "parked behind the poison message, in order"
    );
    assert!(letters[1..]
        .iter()
        .all(|l| l.header(header::BLOCKED_BY) == Some("m-23")));
}
