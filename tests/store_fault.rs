//! Issue 7, fault 7: the store's disk full or read-only while a pipeline runs. The
//! pipeline must pause (no intake, no handler call, nothing acked or dead-lettered), say
//! so, and resume by itself when the disk takes writes again: every message delivered
//! once, in order per key. A real RabbitMQ, a real sled store on a disk that fails.
//! Needs root, to mount the failing disks (see tests/common/disk.rs).
#![cfg(feature = "rabbitmq")]

#[path = "common/disk.rs"]
mod disk;
#[path = "common/rabbit.rs"]
mod rabbit;

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rabbit::{amqp_url, channel, declare, delete, publish, queue_len, unique, Out};
use seawall::rabbitmq::{RabbitConfig, RabbitDeadLetters, RabbitSource};
use seawall::{handler_fn, Message, Pipeline, PipelineConfig, PipelineHandle, SledStore};

const TOTAL: u32 = 3000;
const KEYS: u32 = 20;
const MAX_IN_FLIGHT: usize = 16;

/// What the handler saw: calls per message id, payload sequence per ordering key.
#[derive(Default)]
struct Seen {
    calls: HashMap<String, u32>,
    order: HashMap<String, Vec<u32>>,
}

impl Seen {
    fn delivered(seen: &Mutex<Seen>) -> u32 {
        seen.lock().unwrap().calls.values().sum()
    }
}

/// Messages on `queue` not yet acked (ready plus unacknowledged), asked of the broker.
fn unacked(queue: &str) -> u32 {
    let out = Command::new("rabbitmqctl")
        .args(["-q", "list_queues", "name", "messages"])
        .output()
        .expect("this test counts acks with rabbitmqctl; run it on the machine that runs RabbitMQ");
    let listing = String::from_utf8_lossy(&out.stdout);
    listing
        .lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            (fields.next() == Some(queue)).then(|| fields.next()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("queue {queue} not listed by rabbitmqctl: {listing}"))
}

async fn wait_until(what: &str, within: Duration, done: impl Fn() -> bool) -> Duration {
    let began = Instant::now();
    while !done() {
        assert!(began.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    began.elapsed()
}

struct Running {
    queue: String,
    handle: PipelineHandle,
    task: tokio::task::JoinHandle<Result<seawall::StatsSnapshot, seawall::Error>>,
    seen: Arc<Mutex<Seen>>,
}

async fn start(store_dir: &std::path::Path) -> Running {
    let queue = unique("storefault");
    let (_conn, ch) = channel().await;
    declare(&ch, &queue).await;
    publish(
        &ch,
        &queue,
        (0..TOTAL).map(|i| Out {
            key: format!("k{}", i % KEYS),
            id: Some(format!("m-{i}")),
            payload: i.to_string(),
        }),
    )
    .await;
    let mut rabbit = RabbitConfig::new(amqp_url(), &queue);
    rabbit.prefetch = 64;
    let mut config = PipelineConfig::default();
    config.ordering.key = rabbit.ordering_rule();
    config.idempotency.key = rabbit.idempotency_rule();
    config.max_in_flight = MAX_IN_FLIGHT;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let record = Arc::clone(&seen);
    let handler = handler_fn(move |m: Message| {
        let record = Arc::clone(&record);
        async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            let id = String::from_utf8_lossy(m.message_id().unwrap()).into_owned();
            let key = String::from_utf8_lossy(m.headers().get("ordering-key").unwrap());
            let seq = String::from_utf8_lossy(m.payload()).parse().unwrap();
            let mut seen = record.lock().unwrap();
            *seen.calls.entry(id).or_default() += 1;
            seen.order.entry(key.into_owned()).or_default().push(seq);
            Ok(())
        }
    });
    let pipeline = Pipeline::builder()
        .source(RabbitSource::connect(rabbit.clone()).await.unwrap())
        .dead_letter(RabbitDeadLetters::connect(&rabbit).await.unwrap())
        .handler(handler)
        .store(SledStore::open(store_dir).unwrap())
        .config(config)
        .build()
        .unwrap();
    Running {
        queue,
        handle: pipeline.handle(),
        task: tokio::spawn(pipeline.run()),
        seen,
    }
}

/// Runs the pipeline into the fault `inject` causes, checks it pauses, lets `clear`
/// repair the disk, and checks that everything is then delivered exactly once.
async fn rides_out(
    store_dir: &std::path::Path,
    inject: impl FnOnce(),
    clear: impl FnOnce() -> Duration,
) {
    let run = start(store_dir).await;
    let delivered = || Seen::delivered(&run.seen);
    wait_until("first deliveries", Duration::from_secs(60), || {
        delivered() >= 800
    })
    .await;

    tokio::task::block_in_place(inject);
    let injected = Instant::now();
    let detect = wait_until("the pipeline notices", Duration::from_secs(30), || {
        !run.handle.store_writable()
    })
    .await;
    let at_pause = delivered();
    // Handlers already running may finish; nothing else starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (held_from, acked_from) = (delivered(), TOTAL - unacked(&run.queue));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (held_to, acked_to) = (delivered(), TOTAL - unacked(&run.queue));
    assert!(!run.handle.store_writable(), "still paused");
    assert!(
        held_from - at_pause <= MAX_IN_FLIGHT as u32,
        "after the pause only what was in flight finishes: {at_pause} -> {held_from}"
    );
    assert_eq!(held_from, held_to, "no delivery while paused");
    assert_eq!(acked_from, acked_to, "no ack while paused");
    assert_eq!(run.handle.stats().dead_lettered, 0, "nothing dead-lettered");
    assert!(held_to < TOTAL, "the fault came before the end");

    let paused_for = injected.elapsed();
    let repair_took = tokio::task::block_in_place(clear);
    let repaired = Instant::now();
    let resume = wait_until("resumes by itself", Duration::from_secs(30), || {
        run.handle.store_writable()
    })
    .await;
    wait_until("every message delivered", Duration::from_secs(120), || {
        delivered() >= TOTAL
    })
    .await;
    wait_until("every message acked", Duration::from_secs(30), || {
        unacked(&run.queue) == 0
    })
    .await;
    eprintln!(
        "store fault: noticed {detect:?} after injection; {at_pause} of {TOTAL} delivered at \
         the pause, {held_to} after it (held {:?}); {} messages held; repair took \
         {repair_took:?}; writable {resume:?} after it; all delivered and acked {:?} after it",
        paused_for,
        TOTAL - held_to,
        repaired.elapsed(),
    );
    run.handle.shutdown();
    let stats = run.task.await.unwrap().unwrap();
    check_exactly_once(&run.seen.lock().unwrap());
    assert_eq!(stats.dead_lettered, 0);
    let (_conn, ch) = channel().await;
    assert_eq!(queue_len(&ch, &format!("{}.dlq", run.queue)).await, 0);
    delete(&ch, &[&run.queue, &format!("{}.dlq", run.queue)]).await;
}

fn check_exactly_once(seen: &Seen) {
    assert_eq!(seen.calls.len() as u32, TOTAL, "every message delivered");
    let twice: Vec<_> = seen.calls.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    for (key, seqs) in &seen.order {
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "order of {key}: {seqs:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_pauses_the_pipeline_until_space_is_freed() {
    let disk = disk::tmpfs(16 * 1024);
    let store = disk.dir.join("store");
    let filler = Arc::new(Mutex::new(None));
    let fill = Arc::clone(&filler);
    rides_out(
        &store,
        || *fill.lock().unwrap() = Some(disk::fill(&disk.dir)),
        || {
            let began = Instant::now();
            let path = filler.lock().unwrap().take().unwrap();
            std::fs::remove_file(path).unwrap();
            began.elapsed()
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_disk_pauses_the_pipeline_until_it_is_remounted() {
    let disk = disk::ext4(64);
    let store = disk.dir.join("store");
    rides_out(
        &store,
        || disk.make_read_only(),
        || disk.remount_writable(Duration::from_secs(30)),
    )
    .await;
}

/// The store alone: a write the database took but could not make durable before the
/// disk filled is not lost when the store reopens to get past sled's sticky error.
#[test]
fn a_write_made_before_the_disk_filled_survives_the_reopen() {
    use seawall::store::SettledOutcome;
    use seawall::IdempotencyStore;
    let disk = disk::tmpfs(8 * 1024);
    let dir = disk.dir.join("store");
    let now = std::time::SystemTime::now();
    let epoch = std::time::SystemTime::UNIX_EPOCH;
    let store = SledStore::open(&dir).unwrap();
    store
        .settle(b"before", SettledOutcome::Processed, now)
        .unwrap();
    store.flush().unwrap();

    let filler = disk::fill(&disk.dir);
    // Small writes land in a page the disk already gave; enough of them need new pages.
    // sled takes them into memory until its log write fails.
    let mut taken = Vec::new();
    let mut failure = None;
    for i in 0..2000 {
        let key = format!("during-{i:04}-{}", "x".repeat(100));
        match store.settle(key.as_bytes(), SettledOutcome::Processed, now) {
            Ok(()) => taken.push(key),
            Err(err) => {
                failure = Some(err);
                break;
            }
        }
        if i % 100 == 99 {
            if let Err(err) = store.flush() {
                failure = Some(err);
                break;
            }
        }
    }
    let err = failure.expect("writes to a full disk fail");
    assert!(err.is_storage_unavailable(), "{err}");
    let err = store
        .recover()
        .expect_err("no recovery while the disk is full");
    assert!(err.is_storage_unavailable(), "{err}");

    std::fs::remove_file(filler).unwrap();
    store.recover().expect("recovers once space is free");
    store.flush().unwrap();
    eprintln!("{} writes taken before the disk refused", taken.len());
    assert!(store.lookup(b"before", epoch).unwrap().settled.is_some());
    for key in &taken {
        assert!(
            store
                .lookup(key.as_bytes(), epoch)
                .unwrap()
                .settled
                .is_some(),
            "{key}"
        );
    }
    drop(store);
    let reopened = SledStore::open(&dir).unwrap();
    for key in &taken {
        let state = reopened.lookup(key.as_bytes(), epoch).unwrap();
        assert!(state.settled.is_some(), "{key} durable");
    }
}
