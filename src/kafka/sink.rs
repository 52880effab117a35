//! Dead-letter topics: an idempotent producer with `acks=all`; a dead letter counts as
//! written only when its delivery report says so.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::config::KafkaConfig;
use super::convert::to_record_headers;
use super::error::KafkaError;
use super::probe::topic_exists;
use crate::dead_letter::{DeadLetter, DeadLetterSink, SinkError};

/// Produces dead letters to `<topic>.dlq` (or one configured topic), keeping the original
/// key — so a partitioned dead-letter topic keeps per-key order — and headers, with the
/// `seawall.*` headers added.
pub struct KafkaDeadLetters {
    producer: FutureProducer,
    config: KafkaConfig,
    /// Dead-letter topics known to exist: those of named topics from start-up, those of
    /// pattern-matched topics from their first dead letter on.
    ensured: Mutex<HashSet<String>>,
}

impl KafkaDeadLetters {
    /// Creates the producer and makes sure the dead-letter topic of every named source
    /// topic exists, creating it when the broker allows; otherwise start-up fails naming
    /// the topic. (Topics matched by a pattern get theirs checked or created the same way
    /// at their first dead letter.)
    pub async fn connect(config: &KafkaConfig) -> Result<Self, crate::Error> {
        config.validate()?;
        let producer: FutureProducer = config
            .producer_config()
            .create()
            .map_err(|e| KafkaError::new("creating the dead-letter producer", e))?;
        let sink = Self {
            producer,
            config: config.clone(),
            ensured: Mutex::new(HashSet::new()),
        };
        let named: Vec<String> = config
            .topics
            .iter()
            .filter(|t| !t.starts_with('^'))
            .map(|t| config.dead_letter_topic(t))
            .collect();
        sink.ensure_topics(&named).await?;
        Ok(sink)
    }

    /// Whether `topic` exists; a failed metadata request counts as missing, and creating
    /// it then says what is wrong.
    async fn exists(&self, topic: &str) -> bool {
        topic_exists(&self.producer, topic).await.unwrap_or(false)
    }

    fn is_ensured(&self, topic: &str) -> bool {
        self.ensured
            .lock()
            .map(|known| known.contains(topic))
            .unwrap_or(false)
    }

    async fn ensure_topics(&self, topics: &[String]) -> Result<(), KafkaError> {
        let mut missing = Vec::new();
        for topic in topics {
            if !self.exists(topic).await {
                missing.push(topic);
            }
        }
        if !missing.is_empty() {
            self.create_topics(&missing).await?;
        }
        if let Ok(mut known) = self.ensured.lock() {
            known.extend(topics.iter().cloned());
        }
        Ok(())
    }

    async fn create_topics(&self, missing: &[&String]) -> Result<(), KafkaError> {
        let admin: AdminClient<DefaultClientContext> = self
            .config
            .producer_config()
            .create()
            .map_err(|e| KafkaError::new("creating the admin client", e))?;
        let partitions = self.config.dead_letter.partitions.unwrap_or(1);
        let new: Vec<NewTopic<'_>> = missing
            .iter()
            .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(-1)))
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = admin
            .create_topics(&new, &options)
            .await
            .map_err(|e| KafkaError::new(format!("creating dead-letter topics {missing:?}"), e))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(KafkaError::new(
                        format!("dead-letter topic `{topic}` does not exist and cannot be created"),
                        rdkafka::error::KafkaError::AdminOp(code),
                    ))
                }
            }
        }
        Ok(())
    }
}

impl DeadLetterSink for KafkaDeadLetters {
    async fn send(&self, letter: &DeadLetter) -> Result<(), SinkError> {
        let topic = self.config.dead_letter_topic(&letter.info.source);
        if !self.is_ensured(&topic) {
            let topics = [topic.clone()];
            self.ensure_topics(&topics)
                .await
                .map_err(|e| SinkError::new(e.to_string()))?;
        }
        let headers = to_record_headers(&letter.headers());
        let mut record = FutureRecord::to(&topic)
            .payload(&letter.message.payload()[..])
            .headers(headers);
        if let Some(key) = letter.key() {
            record = record.key(&key[..]);
        }
        match self.producer.send(record, Duration::from_secs(30)).await {
            Ok(_) => Ok(()),
            Err((err, _)) => {
                let text = format!("producing to dead-letter topic `{topic}`: {err}");
                let too_large =
                    err.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageSizeTooLarge);
                Err(if too_large {
                    SinkError::too_large(text)
                } else {
                    SinkError::new(text)
                })
            }
        }
    }
}
