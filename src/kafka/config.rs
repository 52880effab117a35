//! Kafka source and dead-letter settings.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use rdkafka::ClientConfig;
use serde::Deserialize;

use crate::error::ConfigError;

/// The producers' `message.max.bytes` unless configured: librdkafka's default
/// `receive.message.max.bytes`, the largest record a consumer takes in.
const PRODUCER_MAX_MESSAGE_BYTES: &str = "100000000";

/// librdkafka properties passed through as they are (TLS, SASL, tuning). Values of
/// properties that hold secrets never appear in `Debug` output or errors.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Properties(BTreeMap<String, String>);

impl Properties {
    /// Sets one property.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.0.insert(name.into(), value.into());
        self
    }

    fn apply(&self, config: &mut ClientConfig) {
        for (name, value) in &self.0 {
            config.set(name, value);
        }
    }
}

/// Whether a librdkafka property holds a secret (`sasl.password`, `ssl.key.password`,
/// `sasl.oauthbearer.client.secret`, …).
pub fn is_secret(name: &str) -> bool {
    name.contains("password")
        || name.contains("secret")
        || name.ends_with(".pem") && name.contains("key")
}

impl fmt::Debug for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.0
                    .iter()
                    .map(|(k, v)| (k, if is_secret(k) { "***" } else { v.as_str() })),
            )
            .finish()
    }
}

/// Where to consume from and how.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port]`.
    pub brokers: String,
    /// Consumer group id.
    pub group: String,
    /// Topics to subscribe to; a name starting with `^` is a regular expression.
    pub topics: Vec<String>,
    /// librdkafka properties for the consumer and the dead-letter producer. Seawall's own
    /// settings (`enable.auto.commit`, `enable.auto.offset.store`, `enable.idempotence`,
    /// `acks`) are not overridable.
    #[serde(default)]
    pub properties: Properties,
    /// How often completed offsets are committed (default 1s).
    #[serde(default = "default_commit_interval", with = "humantime_serde")]
    pub commit_interval: Duration,
    /// How long a revoke waits for the revoked partitions' running handlers (default 10s).
    #[serde(default = "default_revoke_timeout", with = "humantime_serde")]
    pub revoke_timeout: Duration,
    /// Where dead letters go.
    #[serde(default)]
    pub dead_letter: DeadLetterTopic,
}

/// The dead-letter topic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeadLetterTopic {
    /// One topic for every source topic. Default: `<topic>.dlq` per source topic.
    pub topic: Option<String>,
    /// Partitions for a dead-letter topic Seawall creates (default 1).
    pub partitions: Option<i32>,
}

fn default_commit_interval() -> Duration {
    Duration::from_secs(1)
}

fn default_revoke_timeout() -> Duration {
    Duration::from_secs(10)
}

impl KafkaConfig {
    /// Settings with defaults for `topics` in `group` on `brokers`.
    pub fn new(brokers: impl Into<String>, group: impl Into<String>, topics: &[&str]) -> Self {
        Self {
            brokers: brokers.into(),
            group: group.into(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            properties: Properties::default(),
            commit_interval: default_commit_interval(),
            revoke_timeout: default_revoke_timeout(),
            dead_letter: DeadLetterTopic::default(),
        }
    }

    /// Checks the settings; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.brokers.trim().is_empty() {
            return Err(ConfigError::new("brokers", "expected host:port"));
        }
        if self.group.is_empty() {
            return Err(ConfigError::new("group", "expected a consumer group id"));
        }
        if self.topics.is_empty() || self.topics.iter().any(String::is_empty) {
            return Err(ConfigError::new(
                "topics",
                "expected one or more topic names",
            ));
        }
        if self.commit_interval.is_zero() {
            return Err(ConfigError::new(
                "commit_interval",
                "expected a duration > 0",
            ));
        }
        Ok(())
    }

    /// Whether `topic` is one of this consumer's own dead-letter topics, reached through a
    /// pattern subscription (`^orders-.*` also matches `orders-eu.dlq`). The source leaves
    /// such records alone — never handled, never committed — instead of dead-lettering
    /// dead letters again. A topic named explicitly in `topics` is always consumed.
    pub fn is_own_dead_letter_topic(&self, topic: &str) -> bool {
        if self.topics.iter().any(|t| t == topic) {
            return false;
        }
        match &self.dead_letter.topic {
            Some(configured) => configured == topic,
            None => topic.ends_with(".dlq"),
        }
    }

    /// The dead-letter topic for messages from `topic`.
    pub fn dead_letter_topic(&self, topic: &str) -> String {
        self.dead_letter
            .topic
            .clone()
            .unwrap_or_else(|| format!("{topic}.dlq"))
    }

    pub(crate) fn consumer_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        self.properties.apply(&mut config);
        config
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", &self.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false");
        if !self.properties.0.contains_key("auto.offset.reset") {
            config.set("auto.offset.reset", "earliest");
        }
        config
    }

    /// Settings for a reader that assigns partitions itself (the `seawall dlq` commands):
    /// the pass-through properties less the group and commit ones, not the route's
    /// `group.id`, nothing committed or stored.
    pub(crate) fn reader_config(&self) -> ClientConfig {
        let mut config = self.without_group_properties();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest");
        // The read ends after a quiet second at the end of the topic; librdkafka's default
        // 500 ms fetch wait there would add to every command's time.
        if !self.properties.0.contains_key("fetch.wait.max.ms") {
            config.set("fetch.wait.max.ms", "100");
        }
        config
    }

    /// The pass-through properties less the consumer-group and commit ones, for clients
    /// that join no group: the producers (which would log warnings about them) and the
    /// dead-letter reader (which must not commit).
    fn without_group_properties(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (name, value) in &self.properties.0 {
            let group_or_commit = name.starts_with("group.")
                || name.starts_with("enable.auto.")
                || name.starts_with("auto.")
                || name == "session.timeout.ms";
            if !group_or_commit {
                config.set(name, value);
            }
        }
        config
    }

    pub(crate) fn producer_config(&self) -> ClientConfig {
        let mut config = self.without_group_properties();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all");
        // A dead letter or a replay is a record the consumer received, which can be up to
        // librdkafka's `receive.message.max.bytes` (100 MB); the producer's 1 MB default
        // would refuse larger ones in the client. The broker may still refuse (its own
        // size limit); the pipeline then keeps the dead letter without its content.
        if !self.properties.0.contains_key("message.max.bytes") {
            config.set("message.max.bytes", PRODUCER_MAX_MESSAGE_BYTES);
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug() {
        let mut config = KafkaConfig::new("b:9092", "g", &["t"]);
        config
            .properties
            .set("sasl.password", "canary-8472")
            .set("ssl.key.password", "canary-8473");
        config.properties.set("security.protocol", "SASL_SSL");
        let debug = format!("{config:?}");
        assert!(!debug.contains("canary"), "{debug}");
        assert!(debug.contains("SASL_SSL"));
    }

    #[test]
    fn seawall_owns_the_commit_settings() {
        let mut config = KafkaConfig::new("b:9092", "g", &["t"]);
        config.properties.set("enable.auto.commit", "true");
        assert_eq!(
            config.consumer_config().get("enable.auto.commit"),
            Some("false")
        );
        assert_eq!(config.producer_config().get("acks"), Some("all"));
        assert_eq!(config.validate(), Ok(()));
        config.topics.clear();
        assert_eq!(config.validate().unwrap_err().field(), "topics");
    }
}
