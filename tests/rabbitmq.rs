//! The RabbitMQ adapter against a real broker: volume and order, duplicates, retries,
//! dead-letter exchange and parking.
#![cfg(feature = "rabbitmq")]

#[path = "common/rabbit.rs"]
mod rabbit;
#[path = "common/run.rs"]
mod run;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rabbit::{
    amqp_url, channel, declare, delete, drain, header_text, publish, queue_len, unique, Out,
};
use run::{stop_when, Run};
use seawall::rabbitmq::{RabbitConfig, RabbitDeadLetters, RabbitSource};
use seawall::{handler_fn, header, HandlerError, Message, PipelineConfig};

type Seen = Arc<Mutex<Vec<(String, String)>>>;

async fn start<F>(rabbit: &RabbitConfig, config: PipelineConfig, seen: &Seen, script: F) -> Run
where
    F: Fn(&str, &str, u32) -> Result<(), HandlerError> + Send + Sync + 'static,
{
    let mut config = config;
    config.ordering.key = rabbit.ordering_rule();
    config.idempotency.key = rabbit.idempotency_rule();
    config.retry.initial_backoff = Duration::from_millis(5);
    config.retry.max_backoff = Duration::from_millis(20);
    let seen = Arc::clone(seen);
    let script = Arc::new(script);
    let handler = handler_fn(move |m: Message| {
        let key = String::from_utf8_lossy(
            m.headers()
                .get("ordering-key")
                .map(|v| &v[..])
                .unwrap_or(b""),
        )
        .into_owned();
        let payload = String::from_utf8_lossy(m.payload()).into_owned();
        let result = script(&key, &payload, m.attempt());
        if result.is_ok() {
            seen.lock().unwrap().push((key, payload));
        }
        async move { result }
    });
    let source = RabbitSource::connect(rabbit.clone()).await.expect("source");
    let sink = RabbitDeadLetters::connect(rabbit)
        .await
        .expect("dead-letter sink");
    run::spawn(source, sink, handler, config)
}

fn order_per_key(seen: &Seen) -> HashMap<String, Vec<u32>> {
    let mut per_key: HashMap<String, Vec<u32>> = HashMap::new();
    for (key, payload) in seen.lock().unwrap().iter() {
        per_key
            .entry(key.clone())
            .or_default()
            .push(payload.parse().unwrap());
    }
    per_key
}

fn messages(range: std::ops::Range<u32>, keys: u32) -> impl Iterator<Item = Out> {
    range.map(move |i| Out {
        key: format!("k{}", i % keys),
        id: Some(format!("m-{i}")),
        payload: i.to_string(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_messages_keep_order_per_key_and_leave_the_queue_empty() {
    let queue = unique("volume");
    let (_conn, ch) = channel().await;
    declare(&ch, &queue).await;
    publish(&ch, &queue, messages(0..10_000, 200)).await;
    let mut rabbit = RabbitConfig::new(amqp_url(), &queue);
    rabbit.prefetch = 500;
    let seen = Seen::default();
    let run = start(&rabbit, PipelineConfig::default(), &seen, |_, _, _| Ok(())).await;
    let stats = stop_when(run, |s| s.processed >= 10_000).await;
    assert_eq!(stats.processed, 10_000);
    let per_key = order_per_key(&seen);
    assert_eq!(per_key.len(), 200);
    for (key, seqs) in &per_key {
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "order of {key}: {seqs:?}"
        );
        assert_eq!(seqs.len(), 50, "{key} handled once each");
    }
    assert_eq!(queue_len(&ch, &queue).await, 0, "everything acked");
    delete(&ch, &[&queue, &format!("{queue}.dlq")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_by_message_id_are_skipped() {
    let queue = unique("dups");
    let (_conn, ch) = channel().await;
    declare(&ch, &queue).await;
    publish(&ch, &queue, messages(0..500, 20)).await;
    publish(&ch, &queue, messages(0..500, 20)).await;
    let rabbit = RabbitConfig::new(amqp_url(), &queue);
    let seen = Seen::default();
    let run = start(&rabbit, PipelineConfig::default(), &seen, |_, _, _| Ok(())).await;
    let stats = stop_when(run, |s| s.processed + s.duplicates >= 1000).await;
    assert_eq!((stats.processed, stats.duplicates), (500, 500));
    assert_eq!(seen.lock().unwrap().len(), 500);
    assert_eq!(queue_len(&ch, &queue).await, 0);
    delete(&ch, &[&queue, &format!("{queue}.dlq")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_keep_order_and_poison_parks_its_key_in_the_dead_letter_queue() {
    let queue = unique("poison");
    let (_conn, ch) = channel().await;
    declare(&ch, &queue).await;
    publish(&ch, &queue, messages(0..100, 5)).await;
    let rabbit = RabbitConfig::new(amqp_url(), &queue);
    let config = PipelineConfig {
        on_dead_letter: seawall::DeadLetterPolicy::Park,
        ..PipelineConfig::default()
    };
    let seen = Seen::default();
    let run = start(&rabbit, config, &seen, |key, payload, attempt| {
        match (key, payload) {
            ("k1", "11") if attempt < 3 => Err(HandlerError::transient("503 from the ledger")),
            ("k3", "23") => Err(HandlerError::permanent("amount is negative")),
            _ => Ok(()),
        }
    })
    .await;
    let stats = stop_when(run, |s| s.processed + s.dead_lettered >= 100).await;
    // k3: 3, 8, 13, 18 processed; 23 poison; 28..98 parked behind it (15 messages).
    assert_eq!(stats.dead_lettered, 16);
    assert_eq!(stats.parked, 15);
    assert_eq!(stats.processed, 84);
    let per_key = order_per_key(&seen);
    assert_eq!(
        per_key["k1"],
        (0..20).map(|i| i * 5 + 1).collect::<Vec<_>>(),
        "k1 in order after its retries"
    );
    assert_eq!(per_key["k3"], vec![3, 8, 13, 18]);
    let letters = drain(&ch, &format!("{queue}.dlq")).await;
    assert_eq!(letters.len(), 16);
    let poison = &letters[0];
    assert_eq!(&poison.delivery.data[..], b"23");
    assert_eq!(
        header_text(poison, header::ERROR_KIND).as_deref(),
        Some("permanent")
    );
    assert_eq!(
        header_text(poison, header::ERROR).as_deref(),
        Some("amount is negative")
    );
    for name in [
        header::ATTEMPTS,
        header::SOURCE,
        header::DELIVERY_TAG,
        header::FIRST_FAILED_AT,
        header::FAILED_AT,
        header::IDEMPOTENCY_KEY,
        header::ORDERING_KEY,
    ] {
        assert!(
            header_text(poison, name).is_some(),
            "{name} on the dead letter"
        );
    }
    assert_eq!(
        header_text(poison, "x-count").as_deref(),
        Some("LongInt(7)"),
        "original typed header kept"
    );
    assert_eq!(
        poison
            .delivery
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.as_str()),
        Some("m-23")
    );
    assert_eq!(poison.delivery.properties.delivery_mode(), &Some(2));
    let parked: Vec<_> = letters[1..]
        .iter()
        .map(|l| String::from_utf8_lossy(&l.delivery.data).into_owned())
        .collect();
    assert_eq!(
        parked,
        (5..20).map(|i| (i * 5 + 3).to_string()).collect::<Vec<_>>()
    );
    for letter in &letters[1..] {
        assert_eq!(
            header_text(letter, header::ERROR_KIND).as_deref(),
            Some("parked")
        );
        assert_eq!(
            header_text(letter, header::BLOCKED_BY).as_deref(),
            Some("m-23")
        );
    }
    assert_eq!(queue_len(&ch, &queue).await, 0);
    delete(&ch, &[&queue, &format!("{queue}.dlq")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_queue_stops_start_up_naming_it() {
    let queue = unique("missing");
    let rabbit = RabbitConfig::new(amqp_url(), &queue);
    let err = RabbitSource::connect(rabbit)
        .await
        .err()
        .expect("no such queue");
    assert!(err.to_string().contains(&queue), "{err}");
    assert!(!err.is_recoverable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seawall_declares_the_queue_and_bindings_when_asked() {
    let queue = unique("declared");
    let exchange = unique("orders-x");
    let mut rabbit = RabbitConfig::new(amqp_url(), &queue);
    rabbit.declare = Some(seawall::rabbitmq::Declare {
        exchange: exchange.clone(),
        exchange_kind: "topic".into(),
        routing_keys: vec!["orders.#".into()],
    });
    let seen = Seen::default();
    let run = start(&rabbit, PipelineConfig::default(), &seen, |_, _, _| Ok(())).await;
    let (_conn, ch) = channel().await;
    for i in 0..10 {
        let properties = lapin::BasicProperties::default().with_message_id(format!("d-{i}").into());
        ch.basic_publish(
            exchange.as_str().into(),
            "orders.created".into(),
            Default::default(),
            b"x",
            properties,
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    let stats = stop_when(run, |s| s.processed >= 10).await;
    assert_eq!(stats.processed, 10);
    delete(&ch, &[&queue, &format!("{queue}.dlq")]).await;
    let _ = ch
        .exchange_delete(exchange.as_str().into(), Default::default())
        .await;
}
