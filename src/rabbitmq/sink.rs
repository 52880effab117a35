//! The dead-letter exchange: publishes with confirms and keeps the original properties.

use std::time::Duration;

use lapin::options::BasicPublishOptions;
use lapin::Confirmation;
use tokio::sync::Mutex;

use super::config::RabbitConfig;
use super::connect::{open_dead_letter_publisher, Link};
use super::convert::{properties_for, routing_key_for};
use super::error::RabbitError;
use crate::dead_letter::{header, new_dead_letter_id, DeadLetter, DeadLetterSink, SinkError};
use crate::message::Headers;

/// How long the broker may take to confirm a dead letter before the write counts as
/// failed (and is retried on a fresh connection).
const CONFIRM_WAIT: Duration = Duration::from_secs(30);

/// Publishes dead letters to an exchange (by default a fanout `<queue>.dlq` bound to a
/// durable `<queue>.dlq` queue), persistent, and returns only once the broker confirmed.
/// The original AMQP properties and typed headers are kept; `seawall.*` headers are added,
/// among them a unique `seawall.dead-letter-id` naming the copy for `seawall dlq`.
pub struct RabbitDeadLetters {
    config: RabbitConfig,
    exchange: String,
    link: Mutex<Option<Link>>,
}

impl RabbitDeadLetters {
    /// Connects and declares (or, with `dead_letter.passive`, checks) the dead-letter
    /// exchange and queue. Fails naming what is missing.
    pub async fn connect(config: &RabbitConfig) -> Result<Self, RabbitError> {
        let link = open_dead_letter_publisher(config).await?;
        Ok(Self {
            exchange: config.dead_letter_exchange(),
            config: config.clone(),
            link: Mutex::new(Some(link)),
        })
    }

    async fn channel(&self) -> Result<lapin::Channel, SinkError> {
        let mut link = self.link.lock().await;
        if let Some(open) = link.as_ref() {
            if open.channel.status().connected() {
                return Ok(open.channel.clone());
            }
        }
        *link = None;
        let reopened = open_dead_letter_publisher(&self.config)
            .await
            .map_err(SinkError::new)?;
        let channel = reopened.channel.clone();
        *link = Some(reopened);
        Ok(channel)
    }

    /// Closes the connection.
    pub async fn close(&self) {
        if let Some(link) = self.link.lock().await.take() {
            link.close().await;
        }
    }

    async fn publish(&self, letter: &DeadLetter) -> Result<(), SinkError> {
        let channel = self.channel().await?;
        let mut added = Headers::new();
        letter.info.write_to(&mut added);
        // A queue has no offsets: this id is how the operator tooling names the copy.
        added.push(header::DEAD_LETTER_ID, new_dead_letter_id());
        let properties = properties_for(&letter.message, &added);
        let routing_key = routing_key_for(&letter.message);
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let publish = async {
            channel
                .basic_publish(
                    self.exchange.as_str().into(),
                    routing_key.as_str().into(),
                    options,
                    letter.message.payload(),
                    properties,
                )
                .await?
                .await
        };
        // A publish handed to a connection whose I/O loop has just ended is never
        // confirmed nor failed by lapin; without a bound this key would wait for good.
        let confirm = tokio::time::timeout(CONFIRM_WAIT, publish)
            .await
            .map_err(|_| {
                SinkError::new(format!(
                    "no confirm for the dead letter on exchange `{}` within {CONFIRM_WAIT:?}",
                    self.exchange
                ))
            })?
            .map_err(SinkError::new)?;
        match confirm {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_)) => Err(SinkError::new(format!(
                "dead-letter exchange `{}` routed the message to no queue",
                self.exchange
            ))),
            Confirmation::Nack(_) => Err(SinkError::new(format!(
                "the broker refused the dead letter on exchange `{}`",
                self.exchange
            ))),
            Confirmation::NotRequested => Err(SinkError::new(
                "publisher confirms are off on the dead-letter channel",
            )),
        }
    }
}

impl DeadLetterSink for RabbitDeadLetters {
    async fn send(&self, letter: &DeadLetter) -> Result<(), SinkError> {
        let result = self.publish(letter).await;
        if result.is_err() {
            // Start from a fresh connection next time: a failed publish may have closed
            // the channel.
            let broken = self.link.lock().await.take();
            if let Some(link) = broken {
                link.close().await;
            }
        }
        result
    }
}
