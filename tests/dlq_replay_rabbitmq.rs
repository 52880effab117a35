//! `seawall dlq` on a RabbitMQ route end to end: a worker process dead-letters real
//! messages; listing leaves the queue as it was; a replay puts them back in key order.

#![cfg(feature = "worker")]

#[path = "common/dlq_replay.rs"]
mod dlq_replay;
#[path = "common/downstream.rs"]
mod downstream;
#[path = "common/rabbit.rs"]
mod rabbit;
#[path = "common/worker_proc.rs"]
mod worker_proc;

use std::time::Duration;

use dlq_replay::*;
use downstream::Downstream;
use serde_json::Value;
use worker_proc::WorkerProc;

#[tokio::test(flavor = "multi_thread")]
async fn a_rabbitmq_dead_letter_queue_is_listed_in_place_and_replayed_in_order() {
    let downstream = Downstream::start().await;
    let queue = rabbit::unique("dlq-cli");
    let (_connection, channel) = rabbit::channel().await;
    rabbit::declare(&channel, &queue).await;
    let config = format!(
        "[routes.payments]\nsource.rabbitmq = {{ url = \"{}\", queue = \"{queue}\" }}\nhandler.http = {{ url = \"{}\" }}\n",
        rabbit::amqp_url(),
        downstream.url("/payments")
    );
    let worker = WorkerProc::start(&config);
    let config = config_of(&worker);
    // 60 orders over 3 keys; every third fails until `sku` is fixed.
    let orders = (0..60).map(|i| {
        let (key, seq) = (format!("k{:02}", i % 3), i / 3);
        let note = if seq % 3 == 1 { "fail:sku" } else { "ok" };
        let payload = serde_json::json!({ "key": key, "seq": seq, "note": note });
        rabbit::Out {
            key: key.clone(),
            id: Some(format!("{key}-{seq}")),
            payload: payload.to_string(),
        }
    });
    rabbit::publish(&channel, &queue, orders).await;
    let first = until_dead_lettered(&config, 21, 60).await;
    assert_eq!(first.len(), 21);
    // Listing took nothing away and changed no order.
    let ids = |listed: &[Value]| -> Vec<String> {
        listed
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let again = json(&config, &["list", "--format", "json"]);
    assert_eq!(ids(&again), ids(&first));
    assert_eq!(
        rabbit::queue_len(&channel, &format!("{queue}.dlq")).await,
        21
    );

    downstream.fix("sku");
    dlq_ok(&config, &["replay", "--kind", "permanent"]);
    downstream.until_delivered(60, 60).await;
    let replayed: Vec<(String, u64)> = deliveries(&downstream.calls())
        .into_iter()
        .filter(|(_, seq)| seq % 3 == 1)
        .collect();
    assert_eq!(replayed.len(), 21);
    assert_once_in_key_order(&replayed);
    assert_eq!(
        rabbit::queue_len(&channel, &format!("{queue}.dlq")).await,
        0
    );
    let (status, _) = worker.stop(Duration::from_secs(30));
    assert!(status.success());
    rabbit::delete(&channel, &[&queue, &format!("{queue}.dlq")]).await;
}
