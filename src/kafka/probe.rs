//! Connectivity checks for `seawall check`: reach the cluster, look topics up, consume
//! nothing and join no group.

use std::time::Duration;

use rdkafka::error::KafkaError as ClientError;
use rdkafka::producer::{BaseProducer, FutureProducer, Producer};

use super::config::KafkaConfig;
use super::error::KafkaError;

/// Which of `topics` the cluster does not have (patterns are not looked up). Fails when
/// the cluster cannot be reached within `timeout`.
// Used by `seawall check`, so only with the worker.
#[cfg_attr(not(feature = "worker"), allow(dead_code))]
pub(crate) async fn missing_topics(
    config: &KafkaConfig,
    topics: Vec<String>,
    timeout: Duration,
) -> Result<Vec<String>, KafkaError> {
    let client: BaseProducer = config
        .producer_config()
        .create()
        .map_err(|e| KafkaError::new("creating a client", e))?;
    let brokers = config.brokers.clone();
    tokio::task::spawn_blocking(move || {
        let metadata = client
            .client()
            .fetch_metadata(None, timeout)
            .map_err(|e| KafkaError::new(format!("reaching {brokers}"), e))?;
        let known: Vec<&str> = metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| t.name())
            .collect();
        Ok(topics
            .into_iter()
            .filter(|t| !t.starts_with('^') && !known.contains(&t.as_str()))
            .collect())
    })
    .await
    .unwrap_or_else(|e| {
        Err(KafkaError::new(
            format!("checking topics: {e}"),
            rdkafka::error::KafkaError::Canceled,
        ))
    })
}

/// Whether `topic` exists with partitions, per the cluster's metadata. The metadata call
/// blocks, so it runs on a blocking thread.
pub(crate) async fn topic_exists(
    producer: &FutureProducer,
    topic: &str,
) -> Result<bool, ClientError> {
    let (producer, topic) = (producer.clone(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        producer
            .client()
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .map(|m| {
                m.topics()
                    .iter()
                    .any(|t| t.error().is_none() && !t.partitions().is_empty())
            })
    })
    .await
    .unwrap_or(Err(ClientError::Canceled))
}
