//! The idempotency store's per-message cost: the dedup lookup, recording the attempt, and
//! settling, as the pipeline does for every message (no flush: flushes are grouped).

use std::time::SystemTime;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use seawall::store::SettledOutcome;
use seawall::{IdempotencyStore, MemoryStore, SledStore};

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

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut n = 0;
    bench_store(c, "sled", || {
        n += 1;
        SledStore::open(dir.path().join(n.to_string())).expect("sled store")
    });
    bench_store(c, "memory", MemoryStore::new);
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

criterion_group!(store, benches);
criterion_main!(store);
