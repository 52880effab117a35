//! Sends the sample workload to Kafka (orders) and RabbitMQ (payments), and creates the
//! topic the worker consumes.

use std::time::Duration;

use anyhow::{bail, Context};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use lapin::{Confirmation, PublisherConfirm};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use crate::workload::{self, Item, Tally};

/// Deliveries awaited at a time: bounds what is in flight.
const WINDOW: usize = 500;

/// Creates `topic` with `partitions` unless it exists.
pub async fn create_topic(brokers: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("Kafka admin client")?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics([&new], &options)
        .await
        .with_context(|| format!("creating topic `{topic}` on {brokers}"))?;
    for result in results {
        match result {
            Ok(_) => println!("created topic {topic} ({partitions} partitions)"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                println!("topic {topic} exists")
            }
            Err((t, e)) => bail!("creating topic `{t}`: {e}"),
        }
    }
    Ok(())
}

/// Produces `items` to `topic`: key = customer, header `idempotency-key`.
pub async fn to_kafka(brokers: &str, topic: &str, items: &[Item]) -> anyhow::Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        // One request in flight: a retried batch cannot overtake the next one, so each
        // customer's messages reach the partition in order (the point of the demo).
        .set("max.in.flight.requests.per.connection", "1")
        // One record per batch: tansu 0.6 answers a fetch from inside a batch with the
        // next batch (see tests/common/kafka.rs).
        .set("batch.num.messages", "1")
        .set("message.timeout.ms", "30000")
        .create()
        .context("Kafka producer")?;
    let mut pending = Vec::with_capacity(WINDOW);
    for item in items {
        let headers = OwnedHeaders::new().insert(Header {
            key: "idempotency-key",
            value: Some(item.key.as_str()),
        });
        let record = FutureRecord::to(topic)
            .key(item.customer)
            .payload(&item.payload)
            .headers(headers);
        let delivery = producer
            .send_result(record)
            .map_err(|(e, _)| e)
            .context("queueing a record")?;
        pending.push(delivery);
        if pending.len() == WINDOW {
            settle_kafka(&mut pending).await?;
        }
    }
    settle_kafka(&mut pending).await
}

async fn settle_kafka(pending: &mut Vec<rdkafka::producer::DeliveryFuture>) -> anyhow::Result<()> {
    for delivery in pending.drain(..) {
        delivery
            .await
            .context("producer dropped a delivery")?
            .map_err(|(e, _)| e)
            .context("producing to Kafka")?;
    }
    Ok(())
}

/// Publishes `items` to the durable topic exchange `exchange`: routing key = customer,
/// headers `idempotency-key` and `ordering-key`, publisher confirms, `mandatory` so a
/// message no queue takes is an error rather than lost.
pub async fn to_rabbitmq(url: &str, exchange: &str, items: &[Item]) -> anyhow::Result<()> {
    let connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .context("connecting to RabbitMQ")?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    // The same declaration the worker's `declare = { exchange }` makes.
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("declaring exchange `{exchange}`"))?;
    let mandatory = BasicPublishOptions {
        mandatory: true,
        ..BasicPublishOptions::default()
    };
    let mut confirms = Vec::with_capacity(WINDOW);
    for item in items {
        let mut headers = FieldTable::default();
        for (name, value) in [
            ("idempotency-key", &*item.key),
            ("ordering-key", item.customer),
        ] {
            headers.insert(
                name.into(),
                AMQPValue::LongString(LongString::from(value.to_owned())),
            );
        }
        let properties = BasicProperties::default()
            .with_headers(headers)
            .with_content_type("application/json".into())
            .with_delivery_mode(2);
        let confirm = channel
            .basic_publish(
                exchange.into(),
                item.customer.into(),
                mandatory,
                item.payload.as_bytes(),
                properties,
            )
            .await?;
        confirms.push(confirm);
        if confirms.len() == WINDOW {
            settle_rabbit(&mut confirms, exchange).await?;
        }
    }
    settle_rabbit(&mut confirms, exchange).await?;
    let _ = connection.close(200, "done".into()).await;
    Ok(())
}

async fn settle_rabbit(confirms: &mut Vec<PublisherConfirm>, exchange: &str) -> anyhow::Result<()> {
    for confirm in confirms.drain(..) {
        match confirm.await? {
            Confirmation::Ack(None) => {}
            Confirmation::Ack(Some(_)) => bail!(
                "no queue is bound to exchange `{exchange}`: start the worker first \
                 (it declares and binds its queue)"
            ),
            other => bail!("RabbitMQ did not accept a message: {other:?}"),
        }
    }
    Ok(())
}

/// Prints what a route was sent.
pub fn print_tally(route: &str, destination: &str, tally: &Tally) {
    println!("{route} -> {destination}: {} messages sent", tally.sent);
    for (class, n) in &tally.by_class {
        println!("  {:<20} {n}", class.label());
    }
    println!("  {:<20} {}", "expected deliveries", tally.expect_delivered);
}

/// Both workloads: orders for Kafka, payments for RabbitMQ, keys unique to `run`.
pub fn workloads(run: &str, count: usize) -> (Vec<Item>, Vec<Item>) {
    (
        workload::generate(&format!("{run}-order"), count, 1),
        workload::generate(&format!("{run}-payment"), count, 2),
    )
}
