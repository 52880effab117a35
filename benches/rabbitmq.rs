//! RabbitMQ throughput: 100,000 small persistent messages consumed (a) by a plain lapin
//! consumer (manual ack per message, prefetch 1000) and (b) through Seawall (no-op
//! handler, idempotency on with sled, ordering on, prefetch 1000), in the same run
//! against the same broker. Prints messages/s of each and the ratio.
//!
//! Run: `AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f cargo bench --bench rabbitmq`

use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use seawall::rabbitmq::{RabbitConfig, RabbitDeadLetters, RabbitSource};
use seawall::{handler_fn, Message, Pipeline, PipelineConfig, SledStore};

const COUNT: u32 = 100_000;

fn url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

async fn channel() -> (Connection, Channel) {
    let connection = Connection::connect(&url(), ConnectionProperties::default())
        .await
        .expect("a RabbitMQ at AMQP_URL (scripts/brokers.sh starts one)");
    let channel = connection.create_channel().await.expect("channel");
    (connection, channel)
}

async fn fill(queue: &str) {
    let (_conn, ch) = channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    ch.queue_declare(
        queue.into(),
        QueueDeclareOptions::durable(),
        FieldTable::default(),
    )
    .await
    .expect("declare");
    let mut pending = Vec::new();
    for i in 0..COUNT {
        let mut headers = FieldTable::default();
        headers.insert(
            "ordering-key".into(),
            AMQPValue::LongString(LongString::from(format!("k{}", i % 1000))),
        );
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(format!("{queue}-{i}").into())
            .with_headers(headers);
        let confirm = ch
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                b"{\"n\":1}",
                properties,
            )
            .await
            .expect("publish");
        pending.push(confirm);
        if pending.len() == 1000 {
            for confirm in pending.drain(..) {
                confirm.await.expect("confirm");
            }
        }
    }
    for confirm in pending {
        confirm.await.expect("confirm");
    }
}

async fn plain(queue: &str) -> Duration {
    let (_conn, ch) = channel().await;
    ch.basic_qos(1000, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            "plain".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let start = Instant::now();
    let mut seen = 0;
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery.expect("delivery");
        delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .expect("ack");
        seen += 1;
        if seen == COUNT {
            break;
        }
    }
    start.elapsed()
}

async fn seawall(queue: &str) -> Duration {
    let mut rabbit = RabbitConfig::new(url(), queue);
    rabbit.prefetch = 1000;
    let mut config = PipelineConfig::default();
    config.ordering.key = rabbit.ordering_rule();
    config.idempotency.key = rabbit.idempotency_rule();
    let dir = tempfile::tempdir().expect("temp dir");
    let pipeline = Pipeline::builder()
        .source(RabbitSource::connect(rabbit.clone()).await.expect("source"))
        .dead_letter(RabbitDeadLetters::connect(&rabbit).await.expect("sink"))
        .handler(handler_fn(|_m: Message| async { Ok(()) }))
        .store(SledStore::open(dir.path()).expect("store"))
        .config(config)
        .build()
        .expect("pipeline");
    let handle = pipeline.handle();
    let start = Instant::now();
    let run = tokio::spawn(pipeline.run());
    while handle.stats().processed < u64::from(COUNT) {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = start.elapsed();
    handle.shutdown();
    run.await.expect("task").expect("run");
    elapsed
}

async fn delete(queues: &[&str]) {
    let (_conn, ch) = channel().await;
    for queue in queues {
        let _ = ch
            .queue_delete((*queue).into(), QueueDeleteOptions::default())
            .await;
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists benchmarks; nothing to list here.
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let id = std::process::id();
        let (a, b) = (
            format!("seawall-bench-plain-{id}"),
            format!("seawall-bench-seawall-{id}"),
        );
        fill(&a).await;
        fill(&b).await;
        let plain = plain(&a).await;
        let seawall = seawall(&b).await;
        let rate = |d: Duration| f64::from(COUNT) / d.as_secs_f64();
        println!(
            "rabbitmq/plain_lapin: {COUNT} messages in {plain:.2?}: {:.0} msg/s",
            rate(plain)
        );
        println!(
            "rabbitmq/seawall:     {COUNT} messages in {seawall:.2?}: {:.0} msg/s",
            rate(seawall)
        );
        println!(
            "rabbitmq/ratio:       {:.0}% of the plain consumer (target 90%)",
            100.0 * rate(seawall) / rate(plain)
        );
        delete(&[&a, &b, &format!("{b}.dlq")]).await;
    });
}
