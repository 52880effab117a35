//! The RabbitMQ dead-letter queue reader and replayer against a real broker: reading
//! neither loses nor reorders, removal, replay in key order with the original properties,
//! and the canary check against a running pipeline.
#![cfg(feature = "rabbitmq")]

#[path = "common/rabbit.rs"]
mod rabbit;
#[path = "common/run.rs"]
mod run;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::BasicProperties;
use rabbit::{
    amqp_url, channel, declare, delete, drain, header_text, publish, queue_len, unique, Out,
};
use seawall::dlq::{
    plan_replay, run_replay, CanaryOutcome, DlqRecord, PlanOptions, ReplayEnd, ReplayLedger,
    ReplaySettings,
};
use seawall::rabbitmq::{
    AmqpMeta, RabbitConfig, RabbitDeadLetterQueue, RabbitDeadLetters, RabbitErrorKind, RabbitSource,
};
use seawall::{
    handler_fn, header, DeadLetter, DeadLetterInfo, DeadLetterKind, DeadLetterSink, HandlerError,
    Message, PipelineConfig, Position,
};

const TIMEOUT: Duration = Duration::from_secs(30);

/// A dead letter of message `i` of `queue` as the pipeline hands it to the sink: from
/// RabbitMQ, routing key and ordering header `k<i % keys>`, message id `m-<i>`, content
/// type, correlation id and a typed header.
fn letter(queue: &str, i: u32, keys: u32) -> DeadLetter {
    let key = format!("k{}", i % keys);
    let mut table = FieldTable::default();
    table.insert(
        "ordering-key".into(),
        AMQPValue::LongString(LongString::from(key.clone())),
    );
    table.insert("x-count".into(), AMQPValue::LongInt(7));
    let properties = BasicProperties::default()
        .with_headers(table)
        .with_message_id(format!("m-{i}").into())
        .with_correlation_id(format!("c-{i}").into())
        .with_content_type("application/json".into())
        .with_timestamp(1_700_000_000)
        .with_delivery_mode(2);
    let meta = AmqpMeta {
        exchange: String::new(),
        routing_key: key.clone(),
        properties,
        redelivered: false,
    };
    let tag = u64::from(i) + 1;
    let message = Message::new(format!("{{\"n\":{i}}}"))
        .with_key(key.clone())
        .with_message_id(format!("m-{i}"))
        .with_origin(queue.to_owned(), Position::DeliveryTag(tag))
        .with_native(Arc::new(meta));
    let now = SystemTime::now();
    let info = DeadLetterInfo {
        kind: DeadLetterKind::Permanent,
        error: format!("amount {i} is negative"),
        attempts: 1,
        source: Arc::from(queue),
        position: Position::DeliveryTag(tag),
        first_failed_at: now,
        failed_at: now,
        idempotency_key: Some(Bytes::from(format!("m-{i}"))),
        ordering_key: Some(Bytes::from(key)),
        blocked_by: None,
    };
    DeadLetter { message, info }
}

/// Dead-letters messages `0..n` of `queue` through Seawall's sink, into `<queue>.dlq`.
async fn dead_letter(queue: &str, n: u32, keys: u32) -> RabbitConfig {
    let config = RabbitConfig::new(amqp_url(), queue);
    let sink = RabbitDeadLetters::connect(&config).await.expect("sink");
    for i in 0..n {
        sink.send(&letter(queue, i, keys))
            .await
            .expect("dead letter");
    }
    sink.close().await;
    config
}

fn ids(dlq: &RabbitDeadLetterQueue) -> Vec<String> {
    dlq.records().iter().map(|r| r.id.clone()).collect()
}

fn payloads(records: &[DlqRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
        .collect()
}

async fn read(config: &RabbitConfig) -> RabbitDeadLetterQueue {
    RabbitDeadLetterQueue::open(config, &config.dead_letter_queue(), TIMEOUT)
        .await
        .expect("dead-letter queue")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_neither_loses_nor_reorders_and_remove_takes_only_what_it_names() {
    let queue = unique("dlq-read");
    let config = dead_letter(&queue, 20, 3).await;
    let dlq_name = config.dead_letter_queue();
    let dlq = read(&config).await;
    let first = ids(&dlq);
    assert_eq!(first.len(), 20);
    let expected: Vec<String> = (0..20).map(|i| format!("{{\"n\":{i}}}")).collect();
    assert_eq!(payloads(dlq.records()), expected);
    for (i, record) in dlq.records().iter().enumerate() {
        assert!(
            record.id.starts_with(&format!("{dlq_name}/")),
            "{}",
            record.id
        );
        assert!(!record.id.contains('#'), "a stable id: {}", record.id);
        assert_eq!(record.failure.kind, "permanent");
        assert_eq!(
            record.failure.original_source.as_deref(),
            Some(queue.as_str())
        );
        assert_eq!(
            record.key.as_deref(),
            Some(format!("k{}", i % 3).as_bytes())
        );
        assert_eq!(
            record.message_id.as_deref(),
            Some(format!("m-{i}").as_bytes())
        );
        assert!(record.failure.failed_at.is_some());
    }
    dlq.close().await;

    let mut dlq = read(&config).await;
    assert_eq!(ids(&dlq), first, "the same ids in the same order");
    let gone = vec![first[2].clone(), first[7].clone(), first[15].clone()];
    dlq.remove(&gone).await.expect("remove");
    assert_eq!(dlq.records().len(), 17);
    let unknown = dlq.remove(&[format!("{dlq_name}/nope")]).await.unwrap_err();
    assert_eq!(unknown.kind(), RabbitErrorKind::UnknownId);
    dlq.close().await;

    let dlq = read(&config).await;
    let rest: Vec<String> = first
        .iter()
        .filter(|id| !gone.contains(id))
        .cloned()
        .collect();
    assert_eq!(ids(&dlq), rest, "the other 17 remain, in order");
    dlq.close().await;
    let (_conn, ch) = channel().await;
    assert_eq!(queue_len(&ch, &dlq_name).await, 17);
    delete(&ch, &[&dlq_name]).await;
    let _ = ch
        .exchange_delete(dlq_name.as_str().into(), Default::default())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_queue_reads_at_once_and_a_missing_one_is_named() {
    let queue = unique("dlq-empty");
    let (_conn, ch) = channel().await;
    declare(&ch, &queue).await;
    let config = RabbitConfig::new(amqp_url(), "unused");
    let started = Instant::now();
    let dlq = RabbitDeadLetterQueue::open(&config, &queue, TIMEOUT)
        .await
        .expect("empty queue");
    assert!(dlq.records().is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    dlq.close().await;
    delete(&ch, &[&queue]).await;

    let missing = unique("dlq-missing");
    let err = RabbitDeadLetterQueue::open(&config, &missing, TIMEOUT)
        .await
        .err()
        .expect("no such queue");
    assert_eq!(err.kind(), RabbitErrorKind::Topology);
    assert!(err.to_string().contains(&missing), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_messages_are_named_by_message_id_or_position() {
    let queue = unique("dlq-foreign");
    let (_conn, ch) = channel().await;
    declare(&ch, &queue).await;
    let out = |id: Option<&str>, payload: &str| Out {
        key: "k".into(),
        id: id.map(str::to_owned),
        payload: payload.into(),
    };
    publish(
        &ch,
        &queue,
        [out(Some("a"), "1"), out(None, "2"), out(Some("a"), "3")],
    )
    .await;
    let config = RabbitConfig::new(amqp_url(), "unused");
    let dlq = RabbitDeadLetterQueue::open(&config, &queue, TIMEOUT)
        .await
        .unwrap();
    let expected = [
        format!("{queue}/a"),
        format!("{queue}/#1"),
        format!("{queue}/a#2"),
    ];
    assert_eq!(ids(&dlq), expected);
    assert_eq!(dlq.records()[0].failure.kind, "unknown");
    dlq.close().await;
    assert_eq!(queue_len(&ch, &queue).await, 3);
    delete(&ch, &[&queue]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_dead_letters_read_in_order() {
    let queue = unique("dlq-volume");
    let (_conn, ch) = channel().await;
    declare(&ch, &queue).await;
    let messages = (0..10_000).map(|i| Out {
        key: format!("k{}", i % 100),
        id: Some(format!("m-{i}")),
        payload: i.to_string(),
    });
    publish(&ch, &queue, messages).await;
    let config = RabbitConfig::new(amqp_url(), "unused");
    let started = Instant::now();
    let dlq = RabbitDeadLetterQueue::open(&config, &queue, Duration::from_secs(120))
        .await
        .unwrap();
    let took = started.elapsed();
    eprintln!("read 10000 dead letters in {took:?}");
    let expected: Vec<String> = (0..10_000).map(|i| i.to_string()).collect();
    assert_eq!(payloads(dlq.records()), expected);
    dlq.close().await;
    assert_eq!(queue_len(&ch, &queue).await, 10_000);
    delete(&ch, &[&queue]).await;
}
