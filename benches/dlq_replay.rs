//! Replaying 100,000 dead letters, against the broker at `KAFKA_BROKERS` (default
//! 127.0.0.1:9092), next to a plain producer in the same run.
//!
//! (a) a plain idempotent rdkafka producer (`acks=all`) writes 100,000 records shaped like
//! the replays (key, small JSON payload, the same headers) to the original topic, awaiting
//! delivery in batches of 1,000; (b) Seawall's replay reads the 100,000 dead letters back
//! from the dead-letter topic, plans them (key order, ledger, replay limit) and sends them
//! with its batch runner and `KafkaReplayer` (batches of 1,000, each confirmed and recorded
//! in the ledger), no rate limit. Reported: each phase's time, (b)'s send rate and its
//! ratio to (a)'s rate (target: at least 50%), and the whole replay's (read, plan, send).
//!
//! Run: `eval "$(scripts/brokers.sh)"; cargo bench --bench dlq_replay`

#[path = "common/deliveries.rs"]
mod deliveries;

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use seawall::dlq::{plan_replay, run_replay, PlanOptions, ReplayLedger, ReplaySettings};
use seawall::kafka::{read_dead_letters, KafkaConfig, KafkaReplayer};

const COUNT: usize = 100_000;
const KEYS: usize = 1_000;
const PARTITIONS: i32 = 3;

fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

async fn create(topics: &[&str]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .expect("admin");
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(1)))
        .collect();
    admin
        .create_topics(&new, &AdminOptions::new())
        .await
        .expect("create topics");
}

fn producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "20")
        .create()
        .expect("producer")
}

/// Record `i`: its key and headers. `dead_letter` adds what Seawall's sink writes.
fn headers(topic: &str, i: usize, dead_letter: bool) -> Vec<(String, String)> {
    let key = format!("k{}", i % KEYS);
    let mut headers = vec![
        ("idempotency-key".to_owned(), format!("order-{i}")),
        (
            "traceparent".to_owned(),
            format!("00-{i:032x}-{:016x}-01", i),
        ),
    ];
    if dead_letter {
        let partition = (i % PARTITIONS as usize).to_string();
        let offset = (i / PARTITIONS as usize).to_string();
        headers.extend([
            ("seawall.error-kind".to_owned(), "permanent".to_owned()),
            (
                "seawall.error".to_owned(),
                format!("HTTP 400: amount -{i} is negative"),
            ),
            ("seawall.attempts".to_owned(), "1".to_owned()),
            ("seawall.source".to_owned(), topic.to_owned()),
            ("seawall.partition".to_owned(), partition),
            ("seawall.offset".to_owned(), offset),
            (
                "seawall.failed-at".to_owned(),
                "2026-11-22T10:00:00Z".to_owned(),
            ),
            ("seawall.idempotency-key".to_owned(), format!("order-{i}")),
            ("seawall.ordering-key".to_owned(), key),
        ]);
    }
    headers
}

/// Produces COUNT records to `to`; returns the time from first send to last delivery.
async fn produce(to: &str, source: &str, dead_letter: bool) -> Duration {
    let producer = producer();
    let started = Instant::now();
    let mut pending = Vec::with_capacity(1_000);
    for i in 0..COUNT {
        let headers = headers(source, i, dead_letter);
        let owned = headers.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
            h.insert(Header {
                key: k,
                value: Some(v),
            })
        });
        let key = format!("k{}", i % KEYS);
        let payload = format!("{{\"order\":{i},\"amount\":-{i}}}");
        let record = FutureRecord::to(to)
            .key(&key)
            .payload(&payload)
            .headers(owned);
        pending.push(
            producer
                .send_result(record)
                .map_err(|(e, _)| e)
                .expect("queue"),
        );
        if pending.len() == 1_000 {
            deliveries::await_all(&mut pending).await;
        }
    }
    deliveries::await_all(&mut pending).await;
    started.elapsed()
}

fn rate(count: usize, took: Duration) -> f64 {
    count as f64 / took.as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let suffix = std::process::id();
    let (topic, dlq) = (
        format!("bench-replay-{suffix}"),
        format!("bench-replay-{suffix}.dlq"),
    );
    create(&[&topic, &dlq]).await;
    println!("filling {dlq} with {COUNT} dead letters over {KEYS} keys");
    produce(&dlq, &topic, true).await;

    let plain = produce(&topic, &topic, false).await;
    println!(
        "(a) plain producer:   {COUNT} in {:>6.2}s = {:>8.0} msg/s",
        plain.as_secs_f64(),
        rate(COUNT, plain)
    );

    let config = KafkaConfig::new(brokers(), format!("{topic}-g"), &[&topic]);
    let started = Instant::now();
    let records = tokio::task::spawn_blocking({
        let (config, dlq) = (config.clone(), dlq.clone());
        move || read_dead_letters(&config, &dlq, Duration::from_secs(300))
    })
    .await
    .expect("reader thread")
    .expect("read the dead letters");
    let read = started.elapsed();
    assert_eq!(records.len(), COUNT, "dead letters read back");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut ledger = ReplayLedger::open(dir.path().join("ledger")).expect("ledger");
    let planning = Instant::now();
    let plan = plan_replay(&records, &ledger, &PlanOptions::default());
    let planned = planning.elapsed();
    assert_eq!(plan.sends.len(), COUNT);
    let topics = std::collections::BTreeSet::from([dlq.clone()]);
    let mut backend = KafkaReplayer::new(&config, topics).expect("replayer");
    let summary = run_replay(
        &plan.sends,
        &mut backend,
        &mut ledger,
        &ReplaySettings::default(),
        &mut |_| {},
        std::future::pending(),
    )
    .await
    .expect("replay");
    assert_eq!(summary.sent, COUNT);
    let send = summary.elapsed;
    let whole = read + planned + send;
    println!(
        "(b) replay read:      {COUNT} in {:>6.2}s = {:>8.0} msg/s",
        read.as_secs_f64(),
        rate(COUNT, read)
    );
    println!(
        "    replay plan:      {COUNT} in {:>6.2}s",
        planned.as_secs_f64()
    );
    println!(
        "    replay send:      {COUNT} in {:>6.2}s = {:>8.0} msg/s",
        send.as_secs_f64(),
        rate(COUNT, send)
    );
    println!(
        "    replay in all:    {COUNT} in {:>6.2}s = {:>8.0} msg/s",
        whole.as_secs_f64(),
        rate(COUNT, whole)
    );
    println!(
        "replay send / plain producer = {:.0}% (target >= 50%); whole replay / plain = {:.0}%",
        100.0 * plain.as_secs_f64() / send.as_secs_f64(),
        100.0 * plain.as_secs_f64() / whole.as_secs_f64()
    );
}
