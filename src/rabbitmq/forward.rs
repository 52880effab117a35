//! The `forward` handler's RabbitMQ side: publishes each message to an exchange with
//! publisher confirms, and succeeds only once the broker confirmed it.

use lapin::options::BasicPublishOptions;
use lapin::Confirmation;
use serde::Deserialize;
use tokio::sync::Mutex;

use super::config::{AmqpTls, AmqpUrl};
use super::connect::{open_publisher, Link};
use super::convert::{properties_for, routing_key_for};
use super::error::RabbitError;
use crate::error::ConfigError;
use crate::handler::{Handler, HandlerError};
use crate::message::{Headers, Message};

/// The header Seawall's RabbitMQ sources read the ordering key from by default.
const ORDERING_HEADER: &str = "ordering-key";

/// Where and how to forward.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RabbitTarget {
    /// The broker, `amqp://` or `amqps://`.
    pub url: AmqpUrl,
    /// The exchange published to; it must exist (checked at start-up). `""` is the
    /// default exchange, which routes to the queue named by the routing key.
    pub exchange: String,
    /// A fixed routing key. Default: the original routing key for a message from
    /// RabbitMQ, else the message key (the Kafka key on a Kafka-to-RabbitMQ bridge).
    #[serde(default)]
    pub routing_key: Option<String>,
    /// Extra trust for `amqps://` (default none: the system roots only).
    #[serde(default)]
    pub tls: Option<AmqpTls>,
}

impl RabbitTarget {
    /// Checks the settings; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.url.expose().starts_with("amqp://") || self.url.expose().starts_with("amqps://"))
        {
            return Err(ConfigError::new(
                "url",
                "expected an amqp:// or amqps:// URI",
            ));
        }
        if let Some(tls) = &self.tls {
            tls.ca_pem()?;
        }
        Ok(())
    }
}

/// Forwards messages to an exchange, persistent, keeping headers (trace context
/// included) and, for messages from RabbitMQ, their AMQP properties. A message without a
/// `message_id` gets its idempotency key as one, so a Seawall consuming the target
/// deduplicates a forward repeated after a crash, and its ordering key as the
/// `ordering-key` header when that is absent, so the target keeps the per-key order.
pub struct RabbitForwarder {
    target: RabbitTarget,
    link: Mutex<Option<Link>>,
}

impl RabbitForwarder {
    /// Connects and checks that the exchange exists; fails naming it.
    pub async fn connect(target: RabbitTarget) -> Result<Self, crate::Error> {
        target.validate()?;
        let tls = target.tls.as_ref();
        let link = open_publisher(&target.url, tls, "seawall forward", &target.exchange).await?;
        Ok(Self {
            target,
            link: Mutex::new(Some(link)),
        })
    }

    async fn channel(&self) -> Result<lapin::Channel, RabbitError> {
        let mut link = self.link.lock().await;
        if let Some(open) = link.as_ref() {
            if open.channel.status().connected() {
                return Ok(open.channel.clone());
            }
        }
        *link = None;
        let target = &self.target;
        let reopened = open_publisher(
            &target.url,
            target.tls.as_ref(),
            "seawall forward",
            &target.exchange,
        )
        .await?;
        let channel = reopened.channel.clone();
        *link = Some(reopened);
        Ok(channel)
    }

    async fn publish(&self, message: &Message) -> Result<(), HandlerError> {
        let exchange = &self.target.exchange;
        let channel = self.channel().await.map_err(HandlerError::transient)?;
        // A Seawall consuming the target orders by this header first.
        let mut added = Headers::new();
        if let Some(key) = message.ordering_key() {
            if message.headers().get(ORDERING_HEADER).is_none() {
                added.push(ORDERING_HEADER, key.clone());
            }
        }
        let mut properties = properties_for(message, &added);
        if properties.message_id().is_none() {
            if let Some(key) = message.idempotency_key() {
                let id = String::from_utf8_lossy(key);
                properties = properties.with_message_id(id.as_ref().into());
            }
        }
        let routing_key = match &self.target.routing_key {
            Some(fixed) => fixed.clone(),
            None => routing_key_for(message),
        };
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let publishing = channel
            .basic_publish(
                exchange.as_str().into(),
                routing_key.as_str().into(),
                options,
                message.payload(),
                properties,
            )
            .await
            .map_err(|e| HandlerError::transient(format!("publishing to `{exchange}`: {e}")))?;
        let confirm = publishing
            .await
            .map_err(|e| HandlerError::transient(format!("publishing to `{exchange}`: {e}")))?;
        match confirm {
            Confirmation::Ack(None) => Ok(()),
            // No queue is bound for it: a topology fault someone will fix, so retried
            // (and held by the breaker) rather than dead-lettered or dropped.
            Confirmation::Ack(Some(_)) => Err(HandlerError::transient(format!(
                "exchange `{exchange}` routed routing key `{routing_key}` to no queue"
            ))),
            Confirmation::Nack(_) => Err(HandlerError::transient(format!(
                "the broker refused the message on exchange `{exchange}`"
            ))),
            Confirmation::NotRequested => Err(HandlerError::transient(
                "publisher confirms are off on the forwarding channel",
            )),
        }
    }
}

impl Handler for RabbitForwarder {
    async fn handle(&self, message: &Message) -> Result<(), HandlerError> {
        let result = self.publish(message).await;
        if result.is_err() {
            // A failed publish may have closed the channel: start afresh next time.
            if let Some(link) = self.link.lock().await.take() {
                link.close().await;
            }
        }
        result
    }
}
