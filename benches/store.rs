//! The idempotency store's per-message cost: the dedup lookup, recording the attempt, and
//! settling, as the pipeline does for every message, with a flush every 1,024 messages
//! (the pipeline's largest flush group, `durability.max_group`) so what settling defers
//! to the flush is counted; and the time to open a store holding 200,000 records.

use std::time::SystemTime;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use seawall::store::SettledOutcome;
use seawall::{IdempotencyStore, MemoryStore, SledStore};

/// Messages per flush, as the pipeline groups them at most.
const GROUP: u64 = 1024;

fn check_and_record<S: IdempotencyStore>(store: &S, key: &[u8]) {
    let now = SystemTime::now();
    let seen = store.lookup(key, SystemTime::UNIX_EPOCH).expect("lookup");
    assert!(seen.settled.is_none());
    store.begin_attempt(key, now).expect("attempt");
    store
        .settle(key, SettledOutcome::Processed, now)
        .expect("settle");
}

fn bench_store<S: IdempotencyStore>(c: &mut Criterion, name: &str, mut make: impl FnMut() -> S) {
    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Elements(1));
    let mut counter = 0u64;
    group.bench_function(format!("{name}/check_and_record"), |b| {
        let store = make();
        b.iter(|| {
            counter += 1;
            check_and_record(&store, format!("order-{counter}").as_bytes());
            if counter.is_multiple_of(GROUP) {
                store.flush().expect("flush");
            }
        })
    });
    group.bench_function(format!("{name}/duplicate_lookup"), |b| {
        b.iter_batched_ref(
            || {
                let store = make();
                check_and_record(&store, b"seen");
                store
            },
            |store| {
                store
                    .lookup(b"seen", SystemTime::UNIX_EPOCH)
                    .expect("lookup")
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// The parts of `check_and_record` one by one, on fresh keys: where a message's cost goes.
fn bench_parts<S: IdempotencyStore>(c: &mut Criterion, name: &str, store: S) {
    let mut group = c.benchmark_group("store-parts");
    group.throughput(Throughput::Elements(1));
    let mut counter = 0u64;
    group.bench_function(format!("{name}/lookup_miss"), |b| {
        b.iter(|| {
            counter += 1;
            store.lookup(format!("miss-{counter}").as_bytes(), SystemTime::UNIX_EPOCH)
        })
    });
    group.bench_function(format!("{name}/begin_and_end_attempt"), |b| {
        b.iter(|| {
            counter += 1;
            let key = format!("attempt-{counter}");
            store
                .begin_attempt(key.as_bytes(), SystemTime::now())
                .expect("begin");
            store.end_attempt(key.as_bytes()).expect("end");
        })
    });
    group.bench_function(format!("{name}/settle"), |b| {
        b.iter(|| {
            counter += 1;
            let key = format!("settle-{counter}");
            store
                .settle(key.as_bytes(), SettledOutcome::Processed, SystemTime::now())
                .expect("settle");
            if counter.is_multiple_of(GROUP) {
                store.flush().expect("flush");
            }
        })
    });
    group.finish();
}

/// sled itself, with the store's settings: the insert of a settled record (9 bytes) under
/// a new key, the floor under `settle` whatever the store around it does.
fn bench_sled_alone(c: &mut Criterion, dir: &std::path::Path) {
    let db = sled::Config::new()
        .path(dir.join("sled-alone"))
        .flush_every_ms(Some(500))
        .open()
        .expect("sled");
    let tree = db.open_tree("records").expect("tree");
    let record = [b'p', 0, 0, 1, 0x9a, 0x3c, 0x51, 0x07, 0x2e];
    let mut group = c.benchmark_group("sled-alone");
    group.throughput(Throughput::Elements(1));
    let mut counter = 0u64;
    group.bench_function("insert_new_key", |b| {
        b.iter(|| {
            counter += 1;
            tree.insert(format!("order-{counter}").as_bytes(), &record[..])
                .expect("insert")
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    bench_sled_alone(c, dir.path());
    let mut n = 0;
    bench_store(c, "sled", || {
        n += 1;
        SledStore::open(dir.path().join(n.to_string())).expect("sled store")
    });
    bench_store(c, "memory", MemoryStore::new);
    let parts = SledStore::open(dir.path().join("parts")).expect("sled store");
    bench_parts(c, "sled", parts);
    let mut group = c.benchmark_group("store");
    group.sample_size(20);
    group.bench_function("sled/flush_one_write", |b| {
        let store = SledStore::open(dir.path().join("flush")).expect("sled store");
        let mut counter = 0u64;
        b.iter(|| {
            counter += 1;
            check_and_record(&store, format!("flush-{counter}").as_bytes());
            store.flush().expect("flush");
        })
    });
    group.finish();
}

/// Opening reads every record run once to rebuild the key filters.
fn bench_open(c: &mut Criterion, dir: &std::path::Path) {
    let path = dir.join("open");
    {
        let store = SledStore::open(&path).expect("sled store");
        let now = SystemTime::now();
        for i in 0..200_000u64 {
            let key = format!("order-{i}");
            store
                .settle(key.as_bytes(), SettledOutcome::Processed, now)
                .expect("settle");
            if i.is_multiple_of(GROUP) {
                store.flush().expect("flush");
            }
        }
        store.flush().expect("flush");
    }
    let mut group = c.benchmark_group("store");
    group.sample_size(10);
    group.bench_function("sled/open_200k_records", |b| {
        b.iter(|| SledStore::open(&path).expect("reopen"))
    });
    group.finish();
}

fn bench_open_in_temp(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    bench_open(c, dir.path());
}

criterion_group!(store, benches, bench_open_in_temp);
criterion_main!(store);
