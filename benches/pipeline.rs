//! Pipeline overhead and key-parallel throughput on the in-memory transport.
//!
//! - `pipeline/noop_sled`: a no-op handler, idempotency on (sled), per-key ordering on,
//!   durable group flush on. Criterion reports wall time per message. After it, the CPU
//!   time per message (user + system, all threads) is printed for a baseline (publish and
//!   ack straight off the memory source), the pipeline with the memory store, and the
//!   pipeline with sled; the pipeline's own cost is the difference to the baseline.
//! - `slow_handler`: a 20 ms handler, 1000 distinct keys, `max_in_flight` 1000: the rate
//!   reached against the bound `max_in_flight / latency` (50,000 msg/s), printed.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use seawall::{
    handler_fn, IdempotencyStore, MemoryDeadLetters, MemorySource, MemoryStore, Message, Pipeline,
    PipelineConfig, SledStore, Source,
};

const COUNT: u64 = 200_000;
const KEYS: u64 = 1000;

fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole rusage into the pointer it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn message(n: u64) -> Message {
    Message::new("{}")
        .with_key(format!("key-{}", n % KEYS))
        .with_header("idempotency-key", format!("m-{n}"))
}

/// The same messages published and acked straight off the memory source, without the
/// pipeline: what the pipeline's figures are measured against.
async fn baseline(count: u64) -> Duration {
    let (publisher, mut source) = MemorySource::new("bench", 8, 4096);
    let start = Instant::now();
    let consumer = tokio::spawn(async move {
        while let Some(Ok(delivery)) = source.next().await {
            delivery.ack.complete();
        }
    });
    for n in 0..count {
        publisher.publish(message(n)).await.expect("source alive");
    }
    drop(publisher);
    consumer.await.expect("consumer");
    start.elapsed()
}

/// Runs `count` messages through a fresh pipeline on `store`; returns the wall time from
/// the first publish to the last settlement.
async fn run<S: IdempotencyStore>(
    count: u64,
    config: PipelineConfig,
    delay: Option<Duration>,
    store: S,
) -> Duration {
    let (publisher, source) = MemorySource::new("bench", 8, 4096);
    let pipeline = Pipeline::builder()
        .source(source)
        .handler(handler_fn(move |_m: Message| async move {
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            Ok(())
        }))
        .store(store)
        .dead_letter(MemoryDeadLetters::new())
        .config(config)
        .build()
        .expect("valid config");
    let start = Instant::now();
    let running = tokio::spawn(pipeline.run());
    for n in 0..count {
        publisher.publish(message(n)).await.expect("source alive");
    }
    drop(publisher);
    let stats = running.await.expect("task").expect("run");
    assert_eq!(stats.processed, count);
    start.elapsed()
}

async fn run_sled(count: u64, config: PipelineConfig, delay: Option<Duration>) -> Duration {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SledStore::open(dir.path()).expect("sled store");
    run(count, config, delay, store).await
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Runs `work`, prints its rate and CPU per message, returns the CPU per message in µs.
fn report(name: &str, work: impl FnOnce() -> Duration) -> f64 {
    let before = cpu_time();
    let wall = work();
    let cpu = cpu_time() - before;
    let per_message = cpu.as_secs_f64() * 1e6 / COUNT as f64;
    println!(
        "{name}: {COUNT} messages in {wall:.2?}: {:.0} msg/s, CPU {per_message:.2} µs/message",
        COUNT as f64 / wall.as_secs_f64()
    );
    per_message
}

fn noop(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.bench_function("noop_sled", |b| {
        b.iter_custom(|iters| rt.block_on(run_sled(iters, PipelineConfig::default(), None)))
    });
    group.finish();
    let base = report("baseline (publish, memory source, ack)", || {
        rt.block_on(baseline(COUNT))
    });
    let memory = report("pipeline, memory store", || {
        rt.block_on(run(
            COUNT,
            PipelineConfig::default(),
            None,
            MemoryStore::new(),
        ))
    });
    let sled = report("pipeline, sled store", || {
        rt.block_on(run_sled(COUNT, PipelineConfig::default(), None))
    });
    println!(
        "pipeline CPU per message over the baseline: {:.2} µs with the memory store, {:.2} µs with sled",
        memory - base,
        sled - base
    );
}

fn slow_handler(_c: &mut Criterion) {
    let rt = runtime();
    let config = PipelineConfig {
        max_in_flight: 1000,
        max_buffered: 4000,
        ..PipelineConfig::default()
    };
    let latency = Duration::from_millis(20);
    let count = 60_000;
    let wall = rt.block_on(run_sled(count, config, Some(latency)));
    let rate = count as f64 / wall.as_secs_f64();
    let bound = 1000.0 / latency.as_secs_f64();
    println!(
        "slow_handler: {count} messages, 1000 keys, 20 ms handler, max_in_flight 1000: {rate:.0} msg/s = {:.0}% of the bound {bound:.0} msg/s",
        100.0 * rate / bound
    );
}

criterion_group!(pipeline, noop, slow_handler);
criterion_main!(pipeline);
