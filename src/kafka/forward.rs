//! The `forward` handler's Kafka side: publishes each message to a topic, keeping key and
//! headers, and succeeds only once the broker acknowledged the write (`acks=all`).

use std::time::Duration;

use rdkafka::error::{KafkaError as ClientError, RDKafkaErrorCode};
use rdkafka::message::Header;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Deserialize;

use super::config::{KafkaConfig, Properties};
use super::convert::to_record_headers;
use super::error::KafkaError;
use super::probe::topic_exists;
use crate::error::ConfigError;
use crate::handler::{Handler, HandlerError};
use crate::message::Message;

/// The header Seawall's default idempotency rule reads first.
const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// Where and how to forward.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaTarget {
    /// Bootstrap servers of the target cluster, `host:port[,host:port]`.
    pub brokers: String,
    /// The topic written to. It must exist (checked at start-up).
    pub topic: String,
    /// librdkafka producer properties (TLS, SASL, tuning). `enable.idempotence` and
    /// `acks` are Seawall's.
    #[serde(default)]
    pub properties: Properties,
    /// Longest wait for the broker's acknowledgement of one message (default 30s).
    #[serde(default = "default_delivery_timeout", with = "humantime_serde")]
    pub delivery_timeout: Duration,
}

fn default_delivery_timeout() -> Duration {
    Duration::from_secs(30)
}

impl KafkaTarget {
    /// Checks the settings; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.brokers.trim().is_empty() {
            return Err(ConfigError::new("brokers", "expected host:port"));
        }
        if self.topic.is_empty() {
            return Err(ConfigError::new("topic", "expected a topic name"));
        }
        if self.delivery_timeout.is_zero() {
            return Err(ConfigError::new(
                "delivery_timeout",
                "expected a duration > 0",
            ));
        }
        Ok(())
    }
}

/// Forwards messages to a Kafka topic with an idempotent producer. The record key is the
/// message's ordering key (else its broker key), so the target topic keeps per-key order; headers (trace context included) are
/// copied as they are, plus `idempotency-key` (the derived key) when absent.
pub struct KafkaForwarder {
    producer: FutureProducer,
    target: KafkaTarget,
}

impl KafkaForwarder {
    /// Creates the producer and checks that the topic exists; fails naming it.
    pub async fn connect(target: KafkaTarget) -> Result<Self, crate::Error> {
        target.validate()?;
        let mut client = KafkaConfig::new(target.brokers.clone(), "-", &[&target.topic]);
        client.properties = target.properties.clone();
        let producer: FutureProducer = client
            .producer_config()
            .set(
                "message.timeout.ms",
                target.delivery_timeout.as_millis().to_string(),
            )
            .create()
            .map_err(|e| KafkaError::new("creating the forwarding producer", e))?;
        let found = topic_exists(&producer, &target.topic).await;
        match found {
            Ok(true) => Ok(Self { producer, target }),
            Ok(false) => Err(KafkaError::new(
                format!("forward target topic `{}` does not exist", target.topic),
                ClientError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition),
            )
            .into()),
            Err(e) => Err(KafkaError::new(
                format!("checking forward target topic `{}`", target.topic),
                e,
            )
            .into()),
        }
    }
}

/// Failures that another attempt cannot fix: the record itself is refused.
fn is_permanent(err: &ClientError) -> bool {
    matches!(
        err.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidMessageSize
        )
    )
}

impl Handler for KafkaForwarder {
    async fn handle(&self, message: &Message) -> Result<(), HandlerError> {
        let mut headers = to_record_headers(message.headers());
        // So a Seawall consuming the target deduplicates a forward repeated after a crash.
        if message.headers().get(IDEMPOTENCY_HEADER).is_none() {
            if let Some(key) = message.idempotency_key() {
                headers = headers.insert(Header {
                    key: IDEMPOTENCY_HEADER,
                    value: Some(&key[..]),
                });
            }
        }
        let mut record = FutureRecord::to(&self.target.topic)
            .payload(&message.payload()[..])
            .headers(headers);
        if let Some(key) = message.ordering_key().or(message.key()) {
            record = record.key(&key[..]);
        }
        match self
            .producer
            .send(record, self.target.delivery_timeout)
            .await
        {
            Ok(_) => Ok(()),
            Err((err, _)) => {
                let what = format!("forwarding to topic `{}`: {err}", self.target.topic);
                Err(if is_permanent(&err) {
                    HandlerError::permanent(what)
                } else {
                    HandlerError::transient(what)
                })
            }
        }
    }
}
