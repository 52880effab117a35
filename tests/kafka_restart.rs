//! A Kafka consumer stopped gracefully and dropped mid-stream, then started again:
//! nothing lost, and what was completed is not handled again.
#![cfg(feature = "kafka")]

#[path = "common/kafka.rs"]
mod kafka;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kafka::{
    brokers, committed, create_topic, distinct, produce, records, unique, until, worker, Log,
};
use seawall::kafka::KafkaConfig;
use seawall::{IdempotencyStore, SledStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_graceful_and_abrupt_lose_nothing_and_skip_what_was_completed() {
    let topic = unique("restart");
    let group = unique("restart-group");
    create_topic(&topic, 4).await;
    let total = 4000;
    let ends = produce(&topic, records(total, 40)).await;
    let kafka = KafkaConfig::new(brokers(), &group, &[&topic]);
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    let log = Log::default();

    let first = worker("first", &kafka, Arc::clone(&store), &log).await;
    until(&log, 1000).await;
    first.handle.shutdown();
    first.task.await.unwrap().unwrap();

    let second = worker("second", &kafka, Arc::clone(&store), &log).await;
    until(&log, 2500).await;
    second.task.abort(); // dropped mid-stream: no final commit
    let _ = second.task.await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let completed: std::collections::HashSet<String> = (0..total)
        .map(|i| format!("m-{i}"))
        .filter(|id| {
            store
                .lookup(id.as_bytes(), SystemTime::UNIX_EPOCH)
                .unwrap()
                .settled
                .is_some()
        })
        .collect();
    let before_third = log.lock().unwrap().len();

    let third = worker("third", &kafka, Arc::clone(&store), &log).await;
    until(&log, total as usize).await;
    third.handle.shutdown();
    third.task.await.unwrap().unwrap();

    assert_eq!(distinct(&log), total as usize, "every message handled");
    let rerun: Vec<_> = log.lock().unwrap()[before_third..]
        .iter()
        .filter(|(_, _, _, id)| completed.contains(id))
        .map(|(_, _, _, id)| id.clone())
        .collect();
    assert!(
        rerun.is_empty(),
        "completed before the restart, handled again: {rerun:?}"
    );
    let ends = kafka::end_list(&ends, 4);
    assert_eq!(committed(&group, &topic, 4), ends);
}
