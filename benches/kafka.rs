//! Kafka throughput, against the broker at `KAFKA_BROKERS` (default 127.0.0.1:9092):
//!
//! (a) a plain rdkafka consumer committing every 1,000 messages, and (b) Seawall with a
//! no-op handler, idempotency (sled) and per-key ordering on, each consuming the same
//! 200,000 small messages from one topic in the same run, and (b') the same as (b) with
//! idempotency off, to show what the store's part costs; (c) a 10 ms handler on a single
//! partition with 1,000 keys and `max_in_flight` 1,000, against the partition-serial rate
//! (100 msg/s) and the bound `max_in_flight / latency` (100,000 msg/s). Each of (a), (b)
//! and (b') also reports the CPU time this process used per message, which varies less
//! from run to run than the rate on a machine whose cores the broker shares.
//!
//! Run: `eval "$(scripts/brokers.sh)"; cargo bench --bench kafka`

#[path = "common/deliveries.rs"]
mod deliveries;

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message as _, Offset, TopicPartitionList};
use seawall::kafka::{KafkaConfig, KafkaDeadLetters, KafkaSource};
use seawall::{handler_fn, Message, Pipeline, PipelineConfig, SledStore};

/// The allocator the `seawall` binary runs with (feature `mimalloc`, on by default), so
/// the figures are the worker's; `--no-default-features --features kafka` measures
/// glibc's malloc.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

fn name(what: &str) -> String {
    format!("seawall-bench-{what}-{}", std::process::id())
}

/// `batch`: records per produce batch. The slow run uses 1: the pipeline pauses the
/// partition there, and tansu 0.6 answers a fetch from inside a batch with the next batch.
async fn fill(topic: &str, partitions: i32, count: u32, keys: u32, batch: u32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .expect("admin");
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    admin
        .create_topics([&new], &AdminOptions::new())
        .await
        .expect("create topic");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("linger.ms", "20")
        .set("batch.num.messages", batch.to_string())
        .create()
        .expect("producer");
    let mut pending = Vec::new();
    for i in 0..count {
        let (key, id) = (format!("k{}", i % keys), format!("{topic}-{i}"));
        let headers = OwnedHeaders::new().insert(Header {
            key: "idempotency-key",
            value: Some(id.as_str()),
        });
        let record = FutureRecord::to(topic)
            .key(&key)
            .payload("{\"n\":1}")
            .headers(headers);
        pending.push(
            producer
                .send_result(record)
                .map_err(|(e, _)| e)
                .expect("queue"),
        );
        if pending.len() == 10_000 {
            deliveries::await_all(&mut pending).await;
        }
    }
    deliveries::await_all(&mut pending).await;
}

/// CPU time this process has used (user and system, every thread): on a machine whose
/// cores the broker shares, the cost per message varies less from run to run than the
/// rate does.
fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; zeroed is a valid rusage.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// How long a run took and the CPU time it used.
#[derive(Clone, Copy)]
struct Took {
    wall: Duration,
    cpu: Duration,
}

impl Took {
    fn rate(&self, count: u32) -> f64 {
        f64::from(count) / self.wall.as_secs_f64()
    }

    fn cpu_per_message(&self, count: u32) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / f64::from(count)
    }
}

fn plain(topic: &str, count: u32) -> Took {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", name("plain-group"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let (start, cpu) = (Instant::now(), cpu_time());
    let mut seen = 0;
    let mut offsets = TopicPartitionList::new();
    while seen < count {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            seen += 1;
            let _ = offsets.set_partition_offset(
                m.topic(),
                m.partition(),
                Offset::Offset(m.offset() + 1),
            );
            if offsets.count() == 0 {
                offsets
                    .add_partition_offset(m.topic(), m.partition(), Offset::Offset(m.offset() + 1))
                    .expect("offset");
            }
            if seen % 1000 == 0 {
                consumer
                    .commit(&offsets, CommitMode::Async)
                    .expect("commit");
            }
        }
    }
    Took {
        wall: start.elapsed(),
        cpu: cpu_time() - cpu,
    }
}

/// `run` names the consumer group, so each run reads the topic from the start.
async fn seawall(
    topic: &str,
    run: &str,
    count: u32,
    config: PipelineConfig,
    delay: Option<Duration>,
) -> Took {
    let kafka = KafkaConfig::new(brokers(), name(&format!("{topic}-{run}")), &[topic]);
    let dir = tempfile::tempdir().expect("temp dir");
    let pipeline = Pipeline::builder()
        .source(KafkaSource::connect(kafka.clone()).expect("source"))
        .dead_letter(KafkaDeadLetters::connect(&kafka).await.expect("sink"))
        .handler(handler_fn(move |_m: Message| async move {
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            Ok(())
        }))
        .store(SledStore::open(dir.path()).expect("store"))
        .config(config)
        .build()
        .expect("pipeline");
    let handle = pipeline.handle();
    let run = tokio::spawn(pipeline.run());
    // Timed from the first message, so the group join is not counted.
    while handle.stats().received == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let (start, cpu) = (Instant::now(), cpu_time());
    while handle.stats().processed < u64::from(count) {
        if start.elapsed() > Duration::from_secs(300) {
            println!("kafka bench: gave up after 300 s with {:?}", handle.stats());
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let took = Took {
        wall: start.elapsed(),
        cpu: cpu_time() - cpu,
    };
    handle.shutdown();
    run.await.expect("task").expect("run");
    took
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let count = 200_000;
        let topic = name("volume");
        fill(&topic, 4, count, 1000, 10_000).await;
        let plain = plain(&topic, count);
        // Room for the whole run, so intake never pauses the partitions: a resumed fetch
        // starts inside a batch, which tansu 0.6 answers with the next batch (losing the
        // rest of the one asked for). On Apache Kafka the default works as it is.
        let roomy = PipelineConfig {
            max_buffered: count as usize + 1,
            ..PipelineConfig::default()
        };
        let ours = seawall(&topic, "checked", count, roomy.clone(), None).await;
        // The same without idempotency: what the store's work costs, next to the rest.
        let mut unchecked = roomy;
        unchecked.idempotency.enabled = false;
        let bare = seawall(&topic, "unchecked", count, unchecked, None).await;
        let line = |name: &str, took: Took| {
            println!(
                "kafka/{name}: {count} messages in {:.2?}: {:.0} msg/s, {:.1} µs CPU per message ({:.0}% of the plain consumer's rate)",
                took.wall,
                took.rate(count),
                took.cpu_per_message(count),
                100.0 * took.rate(count) / plain.rate(count)
            )
        };
        line("plain_rdkafka", plain);
        line("seawall", ours);
        line("seawall_without_idempotency", bare);
        println!("kafka/ratio: {:.0}% of the plain consumer (target 80%)", 100.0 * ours.rate(count) / plain.rate(count));

        let slow = 20_000;
        let topic = name("slow");
        fill(&topic, 1, slow, 1000, 10_000).await;
        let config = PipelineConfig {
            max_in_flight: 1000,
            max_buffered: slow as usize + 1,
            ..PipelineConfig::default()
        };
        let took = seawall(&topic, "slow", slow, config, Some(Duration::from_millis(10))).await;
        let r = took.rate(slow);
        println!(
            "kafka/slow_handler: {slow} messages, 1 partition, 1000 keys, 10 ms handler: {r:.0} msg/s = {:.0}x the partition-serial 100 msg/s, {:.0}% of the 100,000 msg/s bound",
            r / 100.0,
            r / 1000.0
        );
    });
}
