//! Producing the workload to a Kafka topic or a RabbitMQ queue, and setting them up.

use std::time::Duration;

use anyhow::{bail, Context};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties, PublisherConfirm};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use crate::workload::Msg;

/// Deliveries awaited at a time.
const WINDOW: usize = 500;

/// Creates `topic` with `partitions`.
pub async fn create_topic(brokers: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("Kafka admin client")?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics([&new], &options).await? {
        if let Err((t, e)) = result {
            bail!("creating topic `{t}`: {e}");
        }
    }
    Ok(())
}

/// Produces `msgs` in order: record key = ordering key, header `idempotency-key`.
pub async fn to_kafka(brokers: &str, topic: &str, msgs: &[Msg]) -> anyhow::Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        // Idempotent, one request in flight: a retried batch never overtakes the next,
        // so per-key order reaches the partition as produced.
        .set("enable.idempotence", "true")
        .set("max.in.flight.requests.per.connection", "1")
        // tansu 0.6 answers a fetch from inside a batch with the next batch.
        .set("batch.num.messages", "1")
        .set("message.timeout.ms", "60000")
        .create()
        .context("Kafka producer")?;
    let mut pending: Vec<DeliveryFuture> = Vec::with_capacity(WINDOW);
    for msg in msgs {
        let record = kafka_record(topic, msg);
        let delivery = producer.send_result(record).map_err(|(e, _)| e)?;
        pending.push(delivery);
        if pending.len() == WINDOW {
            settle_kafka(&mut pending).await?;
        }
    }
    settle_kafka(&mut pending).await
}

/// A workload message as a record: key = ordering key, header `idempotency-key` = id.
pub fn kafka_record<'a>(topic: &'a str, msg: &'a Msg) -> FutureRecord<'a, String, Vec<u8>> {
    let headers = OwnedHeaders::new().insert(Header {
        key: "idempotency-key",
        value: Some(msg.id.as_str()),
    });
    FutureRecord::to(topic)
        .key(&msg.key)
        .payload(&msg.body)
        .headers(headers)
}

async fn settle_kafka(pending: &mut Vec<DeliveryFuture>) -> anyhow::Result<()> {
    for delivery in pending.drain(..) {
        delivery
            .await
            .context("producer dropped a delivery")?
            .map_err(|(e, _)| e)
            .context("producing to Kafka")?;
    }
    Ok(())
}

async fn channel(url: &str) -> anyhow::Result<(Connection, lapin::Channel)> {
    let connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .context("connecting to RabbitMQ")?;
    let channel = connection.create_channel().await?;
    Ok((connection, channel))
}

/// Declares the durable `queue` the worker consumes.
pub async fn declare_queue(url: &str, queue: &str) -> anyhow::Result<()> {
    let (connection, channel) = channel(url).await?;
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("declaring queue `{queue}`"))?;
    let _ = connection.close(200, "done".into()).await;
    Ok(())
}

/// Deletes the queues (the run's own, at the end).
pub async fn delete_queues(url: &str, queues: &[&str]) -> anyhow::Result<()> {
    let (connection, channel) = channel(url).await?;
    for queue in queues {
        let _ = channel
            .queue_delete((*queue).into(), QueueDeleteOptions::default())
            .await;
    }
    let _ = connection.close(200, "done".into()).await;
    Ok(())
}

/// Publishes `msgs` to `queue` through the default exchange, persistent, with
/// confirms: `message_id` and header `idempotency-key` = id, header `ordering-key`.
pub async fn to_rabbitmq(url: &str, queue: &str, msgs: &[Msg]) -> anyhow::Result<()> {
    let (connection, channel) = channel(url).await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut confirms = Vec::with_capacity(WINDOW);
    for msg in msgs {
        let mut headers = FieldTable::default();
        for (name, value) in [("idempotency-key", &msg.id), ("ordering-key", &msg.key)] {
            headers.insert(
                name.into(),
                AMQPValue::LongString(LongString::from(value.clone())),
            );
        }
        let properties = BasicProperties::default()
            .with_headers(headers)
            .with_message_id(msg.id.as_str().into())
            .with_delivery_mode(2);
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                &msg.body,
                properties,
            )
            .await?;
        confirms.push(confirm);
        if confirms.len() == WINDOW {
            settle_rabbit(&mut confirms).await?;
        }
    }
    settle_rabbit(&mut confirms).await?;
    let _ = connection.close(200, "done".into()).await;
    Ok(())
}

async fn settle_rabbit(confirms: &mut Vec<PublisherConfirm>) -> anyhow::Result<()> {
    for confirm in confirms.drain(..) {
        match confirm.await? {
            Confirmation::Ack(_) => {}
            other => bail!("RabbitMQ did not accept a message: {other:?}"),
        }
    }
    Ok(())
}
