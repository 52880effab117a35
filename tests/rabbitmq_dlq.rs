//! The RabbitMQ dead-letter queue reader against a real broker: reading neither loses nor
//! reorders, removal takes only what it names, foreign messages get ids, volume.
#![cfg(feature = "rabbitmq")]

#[path = "common/rabbit.rs"]
mod rabbit;
#[path = "common/rabbit_dlq.rs"]
mod rabbit_dlq;

use std::time::{Duration, Instant};

use lapin::types::{AMQPValue, FieldTable, LongString};
use rabbit::{amqp_url, channel, declare, delete, publish, queue_len, unique, Out};
use rabbit_dlq::*;
use seawall::rabbitmq::{RabbitConfig, RabbitDeadLetterQueue, RabbitErrorKind};

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

/// Publishes `n` messages to a fresh queue and reads it as a dead-letter queue, checking
/// the order; returns the queue (open) for more checks, its name and a channel.
async fn read_back_in_order(
    n: u32,
    timeout: Duration,
) -> (
    RabbitDeadLetterQueue,
    String,
    lapin::Channel,
    lapin::Connection,
) {
    let queue = unique("dlq-volume");
    let (conn, ch) = channel().await;
    declare(&ch, &queue).await;
    let messages = (0..n).map(|i| Out {
        key: format!("k{}", i % 100),
        id: Some(format!("m-{i}")),
        payload: i.to_string(),
    });
    publish(&ch, &queue, messages).await;
    let config = RabbitConfig::new(amqp_url(), "unused");
    let started = Instant::now();
    let dlq = RabbitDeadLetterQueue::open(&config, &queue, timeout)
        .await
        .unwrap();
    eprintln!("read {n} dead letters in {:?}", started.elapsed());
    let expected: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    assert_eq!(payloads(dlq.records()), expected);
    (dlq, queue, ch, conn)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_dead_letters_read_in_order() {
    let (dlq, queue, ch, _conn) = read_back_in_order(10_000, Duration::from_secs(120)).await;
    dlq.close().await;
    assert_eq!(queue_len(&ch, &queue).await, 10_000);
    delete(&ch, &[&queue]).await;
}

/// Over the largest prefetch AMQP allows (65,535) the reader consumes without a limit;
/// also the "fast on 100,000 entries" case for `list` on a RabbitMQ route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_dead_letters_read_in_order() {
    let timeout = Duration::from_secs(300);
    let (dlq, queue, ch, _conn) = read_back_in_order(100_000, timeout).await;
    dlq.close().await;
    let config = RabbitConfig::new(amqp_url(), "unused");
    let dlq = RabbitDeadLetterQueue::open(&config, &queue, timeout)
        .await
        .unwrap();
    let expected: Vec<String> = (0..100_000).map(|i| i.to_string()).collect();
    assert_eq!(
        payloads(dlq.records()),
        expected,
        "and again after the close"
    );
    dlq.close().await;
    delete(&ch, &[&queue]).await;
}

/// Quorum queues return unacknowledged messages too; whether in order is the broker's
/// business, so this documents what the broker in use does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_queue_keeps_its_order_across_reads() {
    let queue = unique("dlq-quorum");
    let (_conn, ch) = channel().await;
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    ch.queue_declare(
        queue.as_str().into(),
        lapin::options::QueueDeclareOptions::durable(),
        arguments,
    )
    .await
    .unwrap();
    let messages = (0..20).map(|i| Out {
        key: "k".into(),
        id: Some(format!("m-{i}")),
        payload: i.to_string(),
    });
    publish(&ch, &queue, messages).await;
    let config = RabbitConfig::new(amqp_url(), "unused");
    let expected: Vec<String> = (0..20).map(|i| i.to_string()).collect();
    for _ in 0..3 {
        let dlq = RabbitDeadLetterQueue::open(&config, &queue, TIMEOUT)
            .await
            .unwrap();
        assert_eq!(payloads(dlq.records()), expected);
        dlq.close().await;
    }
    delete(&ch, &[&queue]).await;
}
