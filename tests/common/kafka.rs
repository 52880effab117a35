//! A Kafka-API broker for the tests: `KAFKA_BROKERS`, else a container started with
//! Docker, else a failure that says how to provide one. Tests never skip silently.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const HOW: &str = "the Kafka tests need a Kafka-API broker: set KAFKA_BROKERS \
(for example 127.0.0.1:9092 with `tansu broker` running, as scripts/test.sh does), \
or install Docker so the tests can start an apache/kafka container";

pub fn brokers() -> String {
    static BROKERS: OnceLock<String> = OnceLock::new();
    BROKERS
        .get_or_init(|| match std::env::var("KAFKA_BROKERS") {
            Ok(b) if !b.is_empty() => b,
            _ => docker_kafka().unwrap_or_else(|why| panic!("{HOW} ({why})")),
        })
        .clone()
}

fn docker_kafka() -> Result<String, String> {
    let port = 39092;
    let run = std::process::Command::new("docker")
        .args([
            "run",
            "-d",
            "--rm",
            "--label",
            "seawall-test",
            "-p",
            &format!("{port}:9092"),
        ])
        .args([
            "-e",
            &format!("KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://127.0.0.1:{port}"),
        ])
        .arg("apache/kafka:3.9.0")
        .output()
        .map_err(|e| format!("docker: {e}"))?;
    if !run.status.success() {
        return Err(format!(
            "docker run: {}",
            String::from_utf8_lossy(&run.stderr).trim()
        ));
    }
    let brokers = format!("127.0.0.1:{port}");
    for _ in 0..120 {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .map_err(|e| e.to_string())?;
        if consumer
            .fetch_metadata(None, Duration::from_secs(1))
            .is_ok()
        {
            return Ok(brokers);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Err("the container did not answer within 60s".into())
}

/// A topic or group name no other test uses.
pub fn unique(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let n = N.fetch_add(1, Ordering::SeqCst);
    format!("seawall-{name}-{}-{n}-{nanos}", std::process::id())
}

pub async fn create_topic(topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .expect(HOW);
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin.create_topics([&new], &options).await.expect(HOW);
    for result in results {
        result.unwrap_or_else(|(t, e)| panic!("creating {t}: {e}"));
    }
}

pub fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        // One record per batch: tansu 0.6 answers a fetch from an offset inside a batch
        // with the next batch, skipping the rest of the one asked for — and consumers that
        // restart from a commit or resume a paused partition fetch from such offsets.
        .set("batch.num.messages", "1")
        .create()
        .expect(HOW)
}

/// One record to produce.
pub struct Record {
    pub key: Option<String>,
    pub payload: String,
    pub headers: Vec<(String, String)>,
}

/// Produces `records` to the test broker; returns the end offset (last + 1) of every
/// partition written to, from the delivery reports (tansu's high watermarks lag).
pub async fn produce(topic: &str, records: impl IntoIterator<Item = Record>) -> BTreeMap<i32, i64> {
    produce_to(&brokers(), topic, records).await
}

pub async fn produce_to(
    bootstrap: &str,
    topic: &str,
    records: impl IntoIterator<Item = Record>,
) -> BTreeMap<i32, i64> {
    let producer = producer(bootstrap);
    let mut ends = BTreeMap::new();
    let mut pending = Vec::new();
    for record in records {
        let headers = record
            .headers
            .iter()
            .fold(OwnedHeaders::new(), |h, (k, v)| {
                h.insert(Header {
                    key: k,
                    value: Some(v.as_str()),
                })
            });
        let mut future = FutureRecord::to(topic)
            .payload(&record.payload)
            .headers(headers);
        if let Some(key) = &record.key {
            future = future.key(key);
        }
        pending.push(
            producer
                .send_result(future)
                .map_err(|(e, _)| e)
                .expect("queue"),
        );
        if pending.len() >= 1000 {
            for delivery in pending.drain(..) {
                note_end(&mut ends, delivery.await);
            }
        }
    }
    for delivery in pending {
        note_end(&mut ends, delivery.await);
    }
    ends
}

fn note_end(
    ends: &mut BTreeMap<i32, i64>,
    delivery: Result<
        rdkafka::producer::future_producer::OwnedDeliveryResult,
        futures::channel::oneshot::Canceled,
    >,
) {
    let delivered = delivery
        .expect("delivery")
        .map_err(|(e, _)| e)
        .expect("produced");
    let end = ends.entry(delivered.partition).or_insert(0);
    *end = (*end).max(delivered.offset + 1);
}

/// The ends as a vector over `partitions`.
pub fn end_list(ends: &BTreeMap<i32, i64>, partitions: i32) -> Vec<i64> {
    (0..partitions)
        .map(|p| ends.get(&p).copied().unwrap_or(0))
        .collect()
}

/// The group's committed offset per partition of `topic` (`-1` when none).
pub fn committed(group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    committed_at(&brokers(), group, topic, partitions)
}

pub fn committed_at(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .unwrap();
    (0..partitions)
        .map(
            |p| match committed.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => -1,
            },
        )
        .collect()
}

/// A record read back: key, payload, headers.
pub struct Read {
    pub key: Option<String>,
    pub payload: String,
    pub headers: Vec<(String, String)>,
}

impl Read {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Every record of `topic`'s first `partitions` partitions, partition by partition,
/// reading each until it stays quiet for a second.
pub fn read_all(topic: &str, partitions: i32) -> Vec<Read> {
    read_all_at(&brokers(), topic, partitions)
}

pub fn read_all_at(bootstrap: &str, topic: &str, partitions: i32) -> Vec<Read> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut out = Vec::new();
    for p in 0..partitions {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
        consumer.assign(&list).unwrap();
        let mut quiet_since = Instant::now();
        while quiet_since.elapsed() < Duration::from_secs(1) {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (
                                    h.key.to_owned(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(Read {
                    key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    payload: String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                    headers,
                });
                quiet_since = Instant::now();
            }
        }
    }
    out
}

// Pipeline helpers shared by the Kafka test files.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use seawall::kafka::{KafkaConfig, KafkaDeadLetters, KafkaSource};
use seawall::{
    handler_fn, IdempotencyStore, Message, Pipeline, PipelineConfig, PipelineHandle, StatsSnapshot,
};

/// Every handler call: (worker, key, seq, idempotency key).
pub type Log = Arc<Mutex<Vec<(&'static str, String, u32, String)>>>;

pub struct Worker {
    pub handle: PipelineHandle,
    pub task: tokio::task::JoinHandle<Result<StatsSnapshot, seawall::Error>>,
}

pub async fn worker<S: IdempotencyStore>(
    name: &'static str,
    kafka: &KafkaConfig,
    store: S,
    log: &Log,
) -> Worker {
    let log = Arc::clone(log);
    let handler = handler_fn(move |m: Message| {
        let log = Arc::clone(&log);
        async move {
            tokio::time::sleep(Duration::from_micros(300)).await;
            let key = String::from_utf8_lossy(m.key().unwrap()).into_owned();
            let seq = std::str::from_utf8(m.payload()).unwrap().parse().unwrap();
            let id =
                String::from_utf8_lossy(m.headers().get("idempotency-key").unwrap()).into_owned();
            log.lock().unwrap().push((name, key, seq, id));
            Ok(())
        }
    });
    let pipeline = Pipeline::builder()
        .source(KafkaSource::connect(kafka.clone()).unwrap())
        .dead_letter(KafkaDeadLetters::connect(kafka).await.unwrap())
        .handler(handler)
        .store(store)
        .config(PipelineConfig::default())
        .build()
        .unwrap();
    Worker {
        handle: pipeline.handle(),
        task: tokio::spawn(pipeline.run()),
    }
}

pub fn records(count: u32, keys: u32) -> impl Iterator<Item = Record> {
    (0..count).map(move |i| Record {
        key: Some(format!("k{}", i % keys)),
        payload: i.to_string(),
        headers: vec![("idempotency-key".into(), format!("m-{i}"))],
    })
}

pub async fn until(log: &Log, count: usize) {
    for _ in 0..2400 {
        if distinct(log) >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub fn distinct(log: &Log) -> usize {
    let log = log.lock().unwrap();
    log.iter()
        .map(|(_, _, _, id)| id)
        .collect::<std::collections::HashSet<_>>()
        .len()
}

pub fn assert_order_per_key(log: &Log) {
    // Per consumer: after a rebalance the new owner may run again what the old one ran
    // after its last commit (at-least-once), but each runs a key's messages in order.
    let mut last: HashMap<(&str, String), u32> = HashMap::new();
    for (worker, key, seq, _) in log.lock().unwrap().iter() {
        if let Some(previous) = last.insert((*worker, key.clone()), *seq) {
            assert!(*seq > previous, "{worker} ran {key}/{seq} after {previous}");
        }
    }
}
