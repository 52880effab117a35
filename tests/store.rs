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
fn lookups_find_every_record_held_at_open_while_and_after_the_key_filter_loads() {
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
    // Right after open the filter is still loading; a second later it is complete and
    // answers for new keys without the tree. Both phases must find every record.
    let started = std::time::Instant::now();
    let mut rounds = 0;
    while started.elapsed() < Duration::from_secs(1) || rounds < 2 {
        for key in keys.iter().step_by(97) {
            let state = store
                .lookup(key.as_bytes(), SystemTime::UNIX_EPOCH)
                .unwrap();
            assert!(state.settled.is_some(), "{key} found (round {rounds})");
        }
        rounds += 1;
    }
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
    SledStore::open(dir.path()).expect("reopens once dropped: the loader let go of the lock");
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
