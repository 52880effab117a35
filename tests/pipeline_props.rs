//! The whole pipeline under random workloads: random keys, random transient failures and
//! permanent ones, random concurrency. Per-key order holds across retries and
//! dead-lettering, every message completes, and commit points reach the end.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::start;
use proptest::prelude::*;
use seawall::{HandlerError, Message, PipelineConfig};

#[derive(Clone, Debug)]
struct Spec {
    key: Option<u8>,
    transient_failures: u32,
    permanent: bool,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        proptest::option::weighted(0.85, 0u8..6),
        0u32..4,
        proptest::bool::weighted(0.1),
    )
        .prop_map(|(key, transient_failures, permanent)| Spec {
            key,
            transient_failures,
            permanent,
        })
}

/// One handler call: the message's key, its index, whether it succeeded.
type Call = (Option<u8>, usize, bool);

fn run_case(specs: Vec<Spec>, max_in_flight: usize) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async move {
        let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
        let log = Arc::clone(&calls);
        let busy: Arc<Mutex<Vec<u8>>> = Arc::default();
        let overlaps = Arc::new(Mutex::new(0u32));
        let (busy_keys, overlap_count) = (Arc::clone(&busy), Arc::clone(&overlaps));
        let script = Arc::new(specs.clone());
        let handler = seawall::handler_fn(move |m: Message| {
            let index: usize = std::str::from_utf8(m.payload()).unwrap().parse().unwrap();
            let spec = script[index].clone();
            let log = Arc::clone(&log);
            let (busy, overlaps) = (Arc::clone(&busy_keys), Arc::clone(&overlap_count));
            async move {
                if let Some(key) = spec.key {
                    let mut busy = busy.lock().unwrap();
                    if busy.contains(&key) {
                        *overlaps.lock().unwrap() += 1;
                    }
                    busy.push(key);
                }
                tokio::time::sleep(Duration::from_millis(u64::from(index as u32 % 7))).await;
                let ok = !spec.permanent && m.attempt() > spec.transient_failures;
                log.lock().unwrap().push((spec.key, index, ok));
                if let Some(key) = spec.key {
                    let mut busy = busy.lock().unwrap();
                    let at = busy.iter().position(|k| *k == key).unwrap();
                    busy.remove(at);
                }
                match () {
                    _ if spec.permanent => Err(HandlerError::permanent("bad")),
                    _ if !ok => Err(HandlerError::transient("503")),
                    _ => Ok(()),
                }
            }
        });
        let mut config = PipelineConfig {
            max_in_flight,
            max_buffered: max_in_flight.max(4),
            ..PipelineConfig::default()
        };
        config.breaker.enabled = false;
        let harness = start(config, handler);
        for (index, spec) in specs.iter().enumerate() {
            let mut message = Message::new(index.to_string())
                .with_header("idempotency-key", format!("id-{index}"));
            if let Some(key) = spec.key {
                message = message.with_key(vec![key]);
            }
            harness.publish(message).await;
        }
        let (stats, harness) = harness.finish().await;
        let calls = calls.lock().unwrap().clone();
        prop_assert_eq!(
            *overlaps.lock().unwrap(),
            0,
            "two messages of one key ran at once"
        );
        let mut last_per_key: HashMap<u8, usize> = HashMap::new();
        for (key, index, _) in &calls {
            if let Some(key) = key {
                let last = last_per_key.entry(*key).or_insert(*index);
                prop_assert!(
                    *index >= *last,
                    "key {} ran message {} after {}",
                    key,
                    index,
                    last
                );
                *last = *index;
            }
        }
        let permanents = specs.iter().filter(|s| s.permanent).count() as u64;
        prop_assert_eq!(stats.dead_lettered, permanents);
        prop_assert_eq!(stats.processed, specs.len() as u64 - permanents);
        prop_assert_eq!(harness.ledger.completed_count(), specs.len());
        let committed: i64 = harness.ledger.commit_points().iter().map(|(_, o)| o).sum();
        prop_assert_eq!(committed, specs.len() as i64);
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn order_holds_and_nothing_is_lost(specs in proptest::collection::vec(spec(), 1..80), max_in_flight in 1usize..8) {
        run_case(specs, max_in_flight)?;
    }
}
