//! The worker rides out a RabbitMQ restart and connections closed by the server. Alone
//! in its test binary, because it closes every connection on the broker.
#![cfg(feature = "rabbitmq")]

#[path = "common/rabbit.rs"]
mod rabbit;
#[path = "common/run.rs"]
mod run;

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rabbit::{amqp_url, channel, declare, delete, publish, queue_len, unique, Out};
use seawall::rabbitmq::{RabbitConfig, RabbitDeadLetters, RabbitSource};
use seawall::{handler_fn, Message, PipelineConfig};

fn rabbitmqctl(args: &[&str]) {
    let out = Command::new("rabbitmqctl").args(args).output().expect(
        "this test restarts the broker with rabbitmqctl; run it on the machine that runs RabbitMQ (scripts/test.sh)",
    );
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_reconnects_by_itself_and_nothing_runs_twice() {
    let queue = unique("restart");
    let (conn, ch) = channel().await;
    declare(&ch, &queue).await;
    let total = 3000u32;
    publish(
        &ch,
        &queue,
        (0..total).map(|i| Out {
            key: format!("k{}", i % 50),
            id: Some(format!("m-{i}")),
            payload: i.to_string(),
        }),
    )
    .await;
    drop((ch, conn));

    let mut rabbit = RabbitConfig::new(amqp_url(), &queue);
    rabbit.prefetch = 200;
    rabbit.reconnect.initial = Duration::from_millis(50);
    rabbit.reconnect.max = Duration::from_millis(500);
    let mut config = PipelineConfig::default();
    config.ordering.key = rabbit.ordering_rule();
    config.idempotency.key = rabbit.idempotency_rule();
    let handled: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let order: Arc<Mutex<HashMap<String, Vec<u32>>>> = Arc::default();
    let (counts, keys) = (Arc::clone(&handled), Arc::clone(&order));
    let handler = handler_fn(move |m: Message| {
        let (counts, keys) = (Arc::clone(&counts), Arc::clone(&keys));
        async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            let id = String::from_utf8_lossy(m.message_id().unwrap()).into_owned();
            let key =
                String::from_utf8_lossy(m.headers().get("ordering-key").unwrap()).into_owned();
            *counts.lock().unwrap().entry(id).or_default() += 1;
            keys.lock()
                .unwrap()
                .entry(key)
                .or_default()
                .push(String::from_utf8_lossy(m.payload()).parse().unwrap());
            Ok(())
        }
    });
    let source = RabbitSource::connect(rabbit.clone()).await.unwrap();
    let losses = source.connection_losses();
    let running = run::spawn(
        source,
        RabbitDeadLetters::connect(&rabbit).await.unwrap(),
        handler,
        config,
    );
    let (handle, run) = (running.handle.clone(), running.task);
    let handled_count = || handled.lock().unwrap().len() as u32;

    while handled_count() < 500 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    rabbitmqctl(&["close_all_connections", "seawall restart test"]);
    while handled_count() < 1500 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    rabbitmqctl(&["stop_app"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    rabbitmqctl(&["start_app"]);
    rabbitmqctl(&["await_startup"]);

    for _ in 0..1200 {
        if handled_count() >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await; // let the last acks out
    handle.shutdown();
    run.await.unwrap().unwrap();

    let handled = handled.lock().unwrap().clone();
    assert_eq!(handled.len() as u32, total, "every message handled");
    let twice: Vec<_> = handled.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "handled more than once: {twice:?}");
    for (key, seqs) in order.lock().unwrap().iter() {
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "order of {key}: {seqs:?}"
        );
    }
    // Exactly the two faults injected: a stale delivery tag acked on a new channel would
    // have closed that channel too and shown up here as a third loss.
    assert_eq!(losses.get(), 2);
    let (_conn, ch) = channel().await;
    assert_eq!(
        queue_len(&ch, &queue).await,
        0,
        "everything acked after the reconnects"
    );
    delete(&ch, &[&queue, &format!("{queue}.dlq")]).await;
}
