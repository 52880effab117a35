//! Helpers for the RabbitMQ dead-letter queue tests: dead letters written by Seawall's own
//! sink, and reading a dead-letter queue back.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::BasicProperties;
use seawall::dlq::DlqRecord;
use seawall::rabbitmq::{AmqpMeta, RabbitConfig, RabbitDeadLetterQueue, RabbitDeadLetters};
use seawall::{DeadLetter, DeadLetterInfo, DeadLetterKind, DeadLetterSink, Message, Position};

use super::rabbit::amqp_url;

pub const TIMEOUT: Duration = Duration::from_secs(30);

/// A dead letter of message `i` of `queue` as the pipeline hands it to the sink: from
/// RabbitMQ, routing key and ordering header `k<i % keys>`, message id `m-<i>`, content
/// type, correlation id and a typed header.
pub fn letter(queue: &str, i: u32, keys: u32) -> DeadLetter {
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
pub async fn dead_letter(queue: &str, n: u32, keys: u32) -> RabbitConfig {
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

pub fn ids(dlq: &RabbitDeadLetterQueue) -> Vec<String> {
    dlq.records().iter().map(|r| r.id.clone()).collect()
}

pub fn payloads(records: &[DlqRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
        .collect()
}

pub async fn read(config: &RabbitConfig) -> RabbitDeadLetterQueue {
    RabbitDeadLetterQueue::open(config, &config.dead_letter_queue(), TIMEOUT)
        .await
        .expect("dead-letter queue")
}
