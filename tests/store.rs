//! The sled store: persistence, expiry, parked keys, and errors that name the path.

mod common;

use std::time::{Duration, SystemTime};

use common::{keyed, quick_config, start, start_with_store, Recorder};
use seawall::store::{ParkRecord, SettledOutcome, StoreErrorKind};
use seawall::{Error, IdempotencyStore, MemoryStore, SledStore};

#[test]
fn records_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    {
        let store = SledStore::open(dir.path()).unwrap();
        store.settle(b"a", SettledOutcome::Processed, now).unwrap();
        store.begin_attempt(b"b", now).unwrap(); // and the process "dies" here
        store
            .park(
                b"key",
                &ParkRecord {
                    blocked_by: "a".into(),
                    since: now,
                },
            )
            .unwrap();
        store.flush().unwrap();
    }
    let store = SledStore::open(dir.path()).unwrap();
    let settled = store
        .lookup(b"a", SystemTime::UNIX_EPOCH)
        .unwrap()
        .settled
        .unwrap();
    assert_eq!(settled.outcome, SettledOutcome::Processed);
    let state = store.lookup(b"b", SystemTime::UNIX_EPOCH).unwrap();
    assert_eq!(
        state.attempts.crashes, 1,
        "the attempt before the reopen never returned"
    );
    assert!(state.settled.is_none());
    assert_eq!(store.parked(b"key").unwrap().unwrap().blocked_by, "a");
    assert_eq!(store.stats().unwrap().parked, 1);
}

#[test]
fn lookups_find_every_record_held_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let keys: Vec<String> = (0..20_000).map(|i| format!("order-{i}")).collect();
    {
        let store = SledStore::open(dir.path()).unwrap();
        for key in &keys {
            store
                .settle(key.as_bytes(), SettledOutcome::Processed, now)
                .unwrap();
        }
        store.flush().unwrap();
    }
    let store = SledStore::open(dir.path()).unwrap();
    // The key filter is filled at open: it answers for new keys without the runs, and
    // must not hide a key held.
    for key in &keys {
        assert!(store
            .lookup(key.as_bytes(), SystemTime::UNIX_EPOCH)
            .unwrap()
            .settled
            .is_some());
    }
    let new = store.lookup(b"never-seen", SystemTime::UNIX_EPOCH).unwrap();
    assert!(new.settled.is_none() && new.attempts.crashes == 0);
    drop(store);
    SledStore::open(dir.path()).expect("reopens once dropped: the merger let go of the lock");
}

#[test]
fn records_settled_over_many_flushes_are_merged_and_found_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let key = |i: u32| format!("order-{i}");
    let store = SledStore::open(dir.path()).unwrap();
    for i in 0..20_000 {
        store
            .settle(key(i).as_bytes(), SettledOutcome::Processed, now)
            .unwrap();
        if i % 100 == 99 {
            store.flush().unwrap(); // 200 flushes, a run each
        }
    }
    // Background merges fold sixteen runs of a size class into one: the 200 runs of 100
    // records become 12 of 1,600 and 8 of 100.
    let started = std::time::Instant::now();
    while store.record_runs() > 20 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(store.record_runs() <= 20, "{} runs", store.record_runs());
    let found = |store: &SledStore| {
        (0..20_000).all(|i| {
            let state = store
                .lookup(key(i).as_bytes(), SystemTime::UNIX_EPOCH)
                .unwrap();
            state.settled.is_some()
        })
    };
    assert!(found(&store));
    assert_eq!(store.stats().unwrap().settled, 20_000);
    drop(store);
    let store = SledStore::open(dir.path()).unwrap();
    assert!(found(&store), "every record found after reopening");
    assert_eq!(store.stats().unwrap().settled, 20_000);
    let new = store
        .lookup(b"order-20000", SystemTime::UNIX_EPOCH)
        .unwrap();
    assert!(new.settled.is_none());
}

/// Stores written before record runs kept one sled entry per key in the `records` tree;
/// opening one moves them into a run.
#[test]
fn records_an_older_store_kept_one_per_key_are_moved_and_found() {
    let dir = tempfile::tempdir().unwrap();
    let at_ms: u64 = 1_700_000_000_000;
    {
        let db = sled::open(dir.path()).unwrap();
        let records = db.open_tree("records").unwrap();
        for i in 0..500u32 {
            let mut value = vec![b'p'];
            value.extend_from_slice(&at_ms.to_be_bytes());
            records.insert(format!("old-{i}"), value).unwrap();
        }
        records.insert("garbage", &b"??"[..]).unwrap();
        db.flush().unwrap();
    }
    let store = SledStore::open(dir.path()).unwrap();
    for i in 0..500u32 {
        let state = store
            .lookup(format!("old-{i}").as_bytes(), SystemTime::UNIX_EPOCH)
            .unwrap();
        let settled = state.settled.expect("moved record found");
        assert_eq!(settled.outcome, SettledOutcome::Processed);
        assert_eq!(
            settled.at,
            SystemTime::UNIX_EPOCH + Duration::from_millis(at_ms)
        );
    }
    assert_eq!(
        store.stats().unwrap().settled,
        500,
        "the unreadable one is dropped"
    );
    drop(store);
    let db = sled::open(dir.path()).unwrap();
    assert!(
        db.open_tree("records").unwrap().is_empty(),
        "moved, not copied"
    );
}

#[test]
fn expired_records_are_ignored_and_swept() {
    let store = SledStore::temporary().unwrap();
    let old = SystemTime::now() - Duration::from_secs(8 * 24 * 3600);
    let fresh = SystemTime::now();
    store
        .settle(b"old", SettledOutcome::Processed, old)
        .unwrap();
    store
        .settle(b"fresh", SettledOutcome::Processed, fresh)
        .unwrap();
    let window_start = SystemTime::now() - Duration::from_secs(7 * 24 * 3600);
    assert!(store
        .lookup(b"old", window_start)
        .unwrap()
        .settled
        .is_none());
    assert!(store
        .lookup(b"fresh", window_start)
        .unwrap()
        .settled
        .is_some());
    assert_eq!(store.sweep(window_start).unwrap(), 1);
    assert_eq!(store.stats().unwrap().settled, 1);
}

#[test]
fn attempts_that_returned_or_settled_are_not_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    {
        let store = SledStore::open(dir.path()).unwrap();
        store.begin_attempt(b"failed", now).unwrap();
        store.end_attempt(b"failed").unwrap();
        store.begin_attempt(b"done", now).unwrap();
        store
            .settle(b"done", SettledOutcome::Processed, now)
            .unwrap();
        let long = vec![b'k'; 3000];
        store.begin_attempt(&long, now).unwrap();
        store.flush().unwrap();
    }
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.lookup(b"failed", now).unwrap().attempts.crashes, 0);
    assert_eq!(store.lookup(b"done", now).unwrap().attempts.crashes, 0);
    assert_eq!(
        store
            .lookup(&vec![b'k'; 3000], now)
            .unwrap()
            .attempts
            .crashes,
        1,
        "long keys too"
    );
    assert_eq!(store.stats().unwrap().crashed, 1);
}

#[test]
fn crashes_accumulate_over_runs_until_settled() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    for run in 1..=3 {
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(
            store.lookup(b"poison", now).unwrap().attempts.crashes,
            run - 1
        );
        store.begin_attempt(b"poison", now).unwrap();
    }
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.lookup(b"poison", now).unwrap().attempts.crashes, 3);
    store
        .settle(b"poison", SettledOutcome::DeadLettered, now)
        .unwrap();
    assert_eq!(store.lookup(b"poison", now).unwrap().attempts.crashes, 0);
}

#[test]
fn an_unopenable_store_names_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, b"x").unwrap();
    let err = SledStore::open(&file).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Open);
    assert!(err.to_string().contains("not-a-directory"), "{err}");
    assert!(!Error::from(err).is_recoverable());
}

#[tokio::test]
async fn the_pipeline_dedups_across_restarts_with_sled() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::new(|_, _, _| Ok(()));
    {
        let store = std::sync::Arc::new(SledStore::open(dir.path()).unwrap());
        let harness = start_with_store(quick_config(), recorder.clone(), store);
        for seq in 0..10 {
            harness.publish(keyed("k", seq)).await;
        }
        harness.finish().await;
    }
    let store = std::sync::Arc::new(SledStore::open(dir.path()).unwrap());
    let harness = start_with_store(quick_config(), recorder.clone(), store);
    for seq in 5..15 {
        harness.publish(keyed("k", seq)).await;
    }
    let (stats, _) = harness.finish().await;
    assert_eq!((stats.duplicates, stats.processed), (5, 5));
    assert_eq!(recorder.calls().len(), 15);
}

#[tokio::test]
async fn a_failing_store_pauses_completion_until_it_recovers() {
    let recorder = Recorder::new(|_, _, _| Ok(()));
    let store = std::sync::Arc::new(MemoryStore::new());
    let harness = start_with_store(quick_config(), recorder.clone(), store.clone());
    harness.publish(keyed("k", 0)).await;
    while harness.ledger.completed_count() < 1 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    store.set_failing(true);
    for seq in 1..20 {
        harness.publish(keyed(&format!("k{seq}"), seq)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        harness.ledger.completed_count(),
        1,
        "nothing completes while the store fails"
    );
    store.set_failing(false);
    let (stats, harness) = harness.finish().await;
    assert_eq!(harness.ledger.completed_count(), 20);
    assert_eq!(stats.processed, 20);
    assert!(recorder.calls().len() >= 19);
}

#[tokio::test]
async fn the_memory_store_drives_the_same_pipeline() {
    let recorder = Recorder::new(|_, _, _| Ok(()));
    let harness = start(quick_config(), recorder.clone());
    harness.publish(keyed("k", 1)).await;
    let (_, harness) = harness.finish().await;
    assert!(harness
        .store
        .lookup(b"k-1", SystemTime::UNIX_EPOCH)
        .unwrap()
        .settled
        .is_some());
}
