//! The RabbitMQ replayer against a real broker: replay in key order with the original
//! properties, a missing destination, and the canary check against a running pipeline.
#![cfg(feature = "rabbitmq")]

#[path = "common/rabbit.rs"]
mod rabbit;
#[path = "common/rabbit_dlq.rs"]
mod rabbit_dlq;
#[path = "common/run.rs"]
mod run;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rabbit::{
    amqp_url, channel, declare, delete, drain, header_text, publish, queue_len, unique, Out,
};
use rabbit_dlq::*;
use seawall::dlq::{
    plan_replay, run_replay, CanaryOutcome, DlqRecord, PlanOptions, ReplayEnd, ReplayLedger,
    ReplaySettings, ReplaySummary,
};
use seawall::rabbitmq::{RabbitConfig, RabbitDeadLetterQueue, RabbitDeadLetters, RabbitSource};
use seawall::{handler_fn, header, HandlerError, Message, PipelineConfig};

fn ledger() -> (tempfile::TempDir, ReplayLedger) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = ReplayLedger::open(dir.path().join("ledger")).unwrap();
    (dir, ledger)
}

fn settings(batch_size: usize, canary: Option<usize>) -> ReplaySettings {
    ReplaySettings {
        batch_size,
        canary,
        canary_wait: Duration::from_secs(20),
        ..ReplaySettings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_lands_in_the_original_queue_in_key_order_with_its_properties() {
    let queue = unique("dlq-replay");
    let (_conn, ch) = channel().await;
    declare(&ch, &queue).await;
    let config = dead_letter(&queue, 30, 3).await;
    let dlq_name = config.dead_letter_queue();
    let mut dlq = read(&config).await;
    let all = ids(&dlq);
    let k2 = Bytes::from_static(b"k2");
    let (kept, selected): (Vec<DlqRecord>, Vec<DlqRecord>) = dlq
        .records()
        .iter()
        .cloned()
        .partition(|r| r.order_key() == Some(&k2));
    let (_dir, mut ledger) = ledger();
    let plan = plan_replay(&selected, &ledger, &PlanOptions::default());
    assert_eq!(plan.sends.len(), 20);
    let mut replayer = dlq.replayer().await.expect("replayer");
    let summary = run_replay(
        &plan.sends,
        &mut replayer,
        &mut ledger,
        &settings(7, None),
        &mut |_| {},
        std::future::pending(),
    )
    .await
    .expect("replay");
    assert_eq!((summary.sent, summary.end), (20, ReplayEnd::Done));
    assert_eq!(
        ids(&dlq),
        ids_of(&kept),
        "replayed ones removed, the rest in order"
    );
    dlq.close().await;

    let replayed = drain(&ch, &queue).await;
    let sent: Vec<String> = replayed
        .iter()
        .map(|m| String::from_utf8_lossy(&m.delivery.data).into_owned())
        .collect();
    assert_eq!(
        sent,
        payloads(&selected),
        "in the dead-letter order, so per key too"
    );
    for (message, record) in replayed.iter().zip(&selected) {
        assert_replayed(message, record, &queue);
    }

    let dlq = read(&config).await;
    assert_eq!(ids(&dlq), ids_of(&kept), "the unselected remain, in order");
    assert!(ids_of(&kept).iter().all(|id| all.contains(id)));
    dlq.close().await;
    delete(&ch, &[&queue, &dlq_name]).await;
    let _ = ch
        .exchange_delete(dlq_name.as_str().into(), Default::default())
        .await;
}

/// A replayed message carries exactly the replay's headers (typed where unchanged) and
/// the dead letter's AMQP properties.
fn assert_replayed(message: &lapin::message::BasicGetMessage, record: &DlqRecord, queue: &str) {
    let properties = &message.delivery.properties;
    let i = &record
        .message_id
        .as_ref()
        .map(|id| String::from_utf8_lossy(id))
        .unwrap()[2..];
    assert_eq!(message.delivery.routing_key.as_str(), queue);
    assert_eq!(
        header_text(message, header::REPLAY_OF),
        Some(record.id.clone())
    );
    assert_eq!(
        header_text(message, header::REPLAY_COUNT).as_deref(),
        Some("1")
    );
    assert_eq!(
        header_text(message, "x-count").as_deref(),
        Some("LongInt(7)")
    );
    assert_eq!(
        header_text(message, "ordering-key").as_deref(),
        Some(format!("k{}", i.parse::<u32>().unwrap() % 3).as_str())
    );
    let names: Vec<&str> = properties
        .headers()
        .as_ref()
        .unwrap()
        .inner()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "ordering-key",
            header::REPLAY_COUNT,
            header::REPLAY_OF,
            "x-count"
        ]
    );
    assert_eq!(
        properties.message_id().as_ref().map(|s| s.as_str()),
        Some(format!("m-{i}").as_str())
    );
    assert_eq!(
        properties.correlation_id().as_ref().map(|s| s.as_str()),
        Some(format!("c-{i}").as_str())
    );
    assert_eq!(
        properties.content_type().as_ref().map(|s| s.as_str()),
        Some("application/json")
    );
    assert_eq!(properties.timestamp(), &Some(1_700_000_000));
    assert_eq!(properties.delivery_mode(), &Some(2));
}

fn ids_of(records: &[DlqRecord]) -> Vec<String> {
    records.iter().map(|r| r.id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_to_a_missing_queue_fails_naming_it_and_removes_nothing() {
    let queue = unique("dlq-gone");
    let config = dead_letter(&queue, 3, 1).await;
    let dlq_name = config.dead_letter_queue();
    let mut dlq = read(&config).await;
    let (_dir, mut ledger) = ledger();
    let plan = plan_replay(dlq.records(), &ledger, &PlanOptions::default());
    let mut replayer = dlq.replayer().await.expect("replayer");
    let err = run_replay(
        &plan.sends,
        &mut replayer,
        &mut ledger,
        &settings(10, None),
        &mut |_| {},
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains(&queue), "{err}");
    assert_eq!(dlq.records().len(), 3);
    dlq.close().await;
    let (_conn, ch) = channel().await;
    assert_eq!(queue_len(&ch, &dlq_name).await, 3);
    delete(&ch, &[&dlq_name]).await;
    let _ = ch
        .exchange_delete(dlq_name.as_str().into(), Default::default())
        .await;
}

/// A pipeline on `queue` whose handler fails permanently for payloads divisible by 5
/// while `broken` is set.
fn pipeline(
    rabbit: &RabbitConfig,
    source: RabbitSource,
    sink: RabbitDeadLetters,
    broken: &Arc<AtomicBool>,
) -> run::Run {
    let mut config = PipelineConfig::default();
    config.ordering.key = rabbit.ordering_rule();
    config.idempotency.key = rabbit.idempotency_rule();
    let broken = Arc::clone(broken);
    let handler = handler_fn(move |m: Message| {
        let n: u32 = String::from_utf8_lossy(m.payload()).parse().unwrap_or(1);
        let fail = n.is_multiple_of(5) && broken.load(Ordering::SeqCst);
        async move {
            if fail {
                Err(HandlerError::permanent(format!("order {n} is negative")))
            } else {
                Ok(())
            }
        }
    });
    run::spawn(source, sink, handler, config)
}

async fn wait_for(run: &run::Run, done: impl Fn(&seawall::StatsSnapshot) -> bool) {
    for _ in 0..400 {
        if done(&run.handle.stats()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the pipeline did not get there: {:?}", run.handle.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipelines_dead_letters_are_read_and_a_canary_that_fails_again_stops_the_replay() {
    let queue = unique("dlq-pipeline");
    let (_conn, ch) = channel().await;
    declare(&ch, &queue).await;
    let messages = (0..20).map(|i| Out {
        key: format!("k{}", i % 4),
        id: Some(format!("m-{i}")),
        payload: i.to_string(),
    });
    publish(&ch, &queue, messages).await;
    let rabbit = RabbitConfig::new(amqp_url(), &queue);
    let broken = Arc::new(AtomicBool::new(true));
    let source = RabbitSource::connect(rabbit.clone()).await.unwrap();
    let sink = RabbitDeadLetters::connect(&rabbit).await.unwrap();
    let run = pipeline(&rabbit, source, sink, &broken);
    wait_for(&run, |s| s.processed + s.dead_lettered >= 20).await;

    let mut dlq = read(&rabbit).await;
    // Different keys are handled concurrently: their dead letters come in any order.
    let mut failed = payloads(dlq.records());
    failed.sort_by_key(|p| p.parse::<u32>().unwrap());
    assert_eq!(failed, ["0", "5", "10", "15"]);
    let order = payloads(dlq.records());
    let first = ids(&dlq);
    for record in dlq.records() {
        assert_eq!(record.failure.kind, "permanent");
        assert_eq!(
            record.failure.original_source.as_deref(),
            Some(queue.as_str())
        );
        let dead_letter_id = record.id.strip_prefix(&format!("{queue}.dlq/")).unwrap();
        assert_eq!(dead_letter_id.split('-').count(), 3, "{}", record.id);
        assert!(record.failure.error.starts_with("order "));
    }

    // Still broken: the canary comes back dead-lettered and nothing after it is sent.
    let (_dir, mut ledger) = ledger();
    let summary = replay_with_a_canary(&mut dlq, &mut ledger).await;
    assert_eq!(summary.sent, 1);
    assert_eq!(
        summary.end,
        ReplayEnd::CanaryFailed(CanaryOutcome::FailedAgain(vec![first[0].clone()]))
    );
    // The new dead letter is held and listed after the others, with its replay count.
    let records = dlq.records();
    let expected: Vec<String> = order[1..].iter().chain(&order[..1]).cloned().collect();
    assert_eq!(payloads(records), expected);
    let again = &records[3];
    assert_ne!(again.id, first[0]);
    assert_eq!(again.failure.replay_count, 1);
    assert_eq!(
        again.headers.get_last(header::REPLAY_OF).map(|v| &v[..]),
        Some(first[0].as_bytes())
    );

    // Fixed: the canary passes and the rest follows.
    broken.store(false, Ordering::SeqCst);
    let summary = replay_with_a_canary(&mut dlq, &mut ledger).await;
    assert_eq!((summary.sent, summary.end), (4, ReplayEnd::Done));
    assert!(dlq.records().is_empty());
    dlq.close().await;
    let stats = run::stop_when(run, |s| s.processed >= 20).await;
    assert_eq!(stats.processed, 20);
    assert_eq!(queue_len(&ch, &format!("{queue}.dlq")).await, 0);
    delete(&ch, &[&queue, &format!("{queue}.dlq")]).await;
}

/// Replays every dead letter not in `ledger`, a canary of one first.
async fn replay_with_a_canary(
    dlq: &mut RabbitDeadLetterQueue,
    ledger: &mut ReplayLedger,
) -> ReplaySummary {
    let plan = plan_replay(dlq.records(), ledger, &PlanOptions::default());
    let mut replayer = dlq
        .replayer()
        .await
        .unwrap()
        .with_settle(Duration::from_secs(1));
    run_replay(
        &plan.sends,
        &mut replayer,
        ledger,
        &settings(10, Some(1)),
        &mut |_| {},
        std::future::pending(),
    )
    .await
    .unwrap()
}
