//! RabbitMQ source and dead-letter settings.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::error::ConfigError;
use crate::keys::{KeyRule, KeySource};

/// An AMQP URI whose password never appears in `Debug` or `Display` output.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct AmqpUrl(String);

impl AmqpUrl {
    /// Wraps a URI such as `amqp://user:pass@host:5672/%2f` or `amqps://…`.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URI with its password. Only for handing to the client library.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// The URI with the password replaced by `***`.
    pub fn redacted(&self) -> String {
        let Some((scheme, rest)) = self.0.split_once("://") else {
            return "<invalid AMQP URI>".to_owned();
        };
        let (authority, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        match authority.rsplit_once('@') {
            Some((user_info, host)) => {
                let user = user_info.split(':').next().unwrap_or("");
                let masked = if user_info.contains(':') { ":***" } else { "" };
                format!("{scheme}://{user}{masked}@{host}{path}")
            }
            None => self.0.clone(),
        }
    }
}

impl fmt::Debug for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AmqpUrl({})", self.redacted())
    }
}

impl fmt::Display for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Where to consume from and how.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RabbitConfig {
    /// The broker, `amqp://` or `amqps://` (TLS).
    pub url: AmqpUrl,
    /// The queue to consume.
    pub queue: String,
    /// Unacknowledged deliveries the broker may send ahead (`basic.qos`, default 500).
    #[serde(default = "default_prefetch")]
    pub prefetch: u16,
    /// Declare the queue and its bindings. Without it the queue must exist: it is
    /// declared passively and start-up fails naming it.
    #[serde(default)]
    pub declare: Option<Declare>,
    /// The header carrying the ordering key; the routing key is the fallback (default
    /// `ordering-key`).
    #[serde(default = "default_ordering_header")]
    pub ordering_header: String,
    /// The header carrying the idempotency key when `message_id` is not set (default
    /// `idempotency-key`).
    #[serde(default = "default_idempotency_header")]
    pub idempotency_header: String,
    /// Reconnection backoff.
    #[serde(default)]
    pub reconnect: ReconnectConfig,
    /// Where dead letters go.
    #[serde(default)]
    pub dead_letter: DeadLetterTarget,
    /// Extra trust for `amqps://` (default none: the system roots only).
    #[serde(default)]
    pub tls: Option<AmqpTls>,
}

/// TLS settings for `amqps://` connections. The broker's certificate is always checked
/// against the host name in the URL; this only adds roots to trust.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpTls {
    /// A PEM file of root CA certificates (a private or test CA), trusted in addition to
    /// the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

impl AmqpTls {
    /// The CA file's PEM text, checked to hold a certificate; `None` without a CA file.
    /// The error names the field (`tls.ca_file`).
    pub fn ca_pem(&self) -> Result<Option<String>, ConfigError> {
        const FIELD: &str = "tls.ca_file";
        let Some(path) = &self.ca_file else {
            return Ok(None);
        };
        let pem = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(FIELD, format!("cannot read {}: {e}", path.display())))?;
        if !pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(ConfigError::new(
                FIELD,
                format!("{} holds no PEM certificate", path.display()),
            ));
        }
        Ok(Some(pem))
    }
}

/// Queue and bindings Seawall declares.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Declare {
    /// Exchange to bind the queue to (declared durable). Empty: no binding.
    #[serde(default)]
    pub exchange: String,
    /// The exchange's type: `direct`, `fanout`, `topic` (default) or `headers`.
    #[serde(default = "default_exchange_kind")]
    pub exchange_kind: String,
    /// Binding keys (default `["#"]`).
    #[serde(default = "default_routing_keys")]
    pub routing_keys: Vec<String>,
}

/// Reconnect timing: jittered exponential backoff.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconnectConfig {
    /// First delay, before jitter (default 100ms).
    #[serde(with = "humantime_serde")]
    pub initial: Duration,
    /// Longest delay (default 30s).
    #[serde(with = "humantime_serde")]
    pub max: Duration,
}

impl Default for ReconnectConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
        }
    }
}

/// The dead-letter exchange and queue.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeadLetterTarget {
    /// Exchange to publish dead letters to (default `<queue>.dlq`).
    pub exchange: Option<String>,
    /// Queue bound to it (default `<queue>.dlq`).
    pub queue: Option<String>,
    /// Do not declare the exchange and queue; they must exist.
    pub passive: bool,
}

fn default_prefetch() -> u16 {
    500
}

fn default_ordering_header() -> String {
    "ordering-key".to_owned()
}

fn default_idempotency_header() -> String {
    "idempotency-key".to_owned()
}

fn default_exchange_kind() -> String {
    "topic".to_owned()
}

fn default_routing_keys() -> Vec<String> {
    vec!["#".to_owned()]
}

impl RabbitConfig {
    /// Settings with defaults for `queue` on `url`.
    pub fn new(url: impl Into<String>, queue: impl Into<String>) -> Self {
        Self {
            url: AmqpUrl::new(url),
            queue: queue.into(),
            prefetch: default_prefetch(),
            declare: None,
            ordering_header: default_ordering_header(),
            idempotency_header: default_idempotency_header(),
            reconnect: ReconnectConfig::default(),
            dead_letter: DeadLetterTarget::default(),
            tls: None,
        }
    }

    /// Checks the settings; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.queue.is_empty() {
            return Err(ConfigError::new("queue", "expected a queue name"));
        }
        if self.prefetch == 0 {
            return Err(ConfigError::new("prefetch", "expected an integer >= 1"));
        }
        if !(self.url.0.starts_with("amqp://") || self.url.0.starts_with("amqps://")) {
            return Err(ConfigError::new(
                "url",
                format!("expected an amqp:// or amqps:// URI, got `{}`", self.url),
            ));
        }
        if let Some(tls) = &self.tls {
            tls.ca_pem()?;
        }
        if let Some(declare) = &self.declare {
            if !["direct", "fanout", "topic", "headers"].contains(&declare.exchange_kind.as_str()) {
                return Err(ConfigError::new(
                    "declare.exchange_kind",
                    "expected `direct`, `fanout`, `topic` or `headers`",
                ));
            }
        }
        Ok(())
    }

    /// The ordering rule for RabbitMQ: the ordering header, then the routing key.
    pub fn ordering_rule(&self) -> KeyRule {
        KeyRule::new([
            KeySource::Header(self.ordering_header.clone()),
            KeySource::MessageKey,
        ])
    }

    /// The idempotency rule for RabbitMQ: `message_id`, then the idempotency header.
    pub fn idempotency_rule(&self) -> KeyRule {
        KeyRule::new([
            KeySource::MessageId,
            KeySource::Header(self.idempotency_header.clone()),
        ])
    }

    /// The dead-letter exchange's name.
    pub fn dead_letter_exchange(&self) -> String {
        self.dead_letter
            .exchange
            .clone()
            .unwrap_or_else(|| format!("{}.dlq", self.queue))
    }

    /// The dead-letter queue's name.
    pub fn dead_letter_queue(&self) -> String {
        self.dead_letter
            .queue
            .clone()
            .unwrap_or_else(|| format!("{}.dlq", self.queue))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        let url = AmqpUrl::new("amqps://svc:s3cr3t-canary@rabbit.internal:5671/prod");
        assert_eq!(url.to_string(), "amqps://svc:***@rabbit.internal:5671/prod");
        assert!(!format!("{url:?}").contains("s3cr3t"));
        let config = RabbitConfig::new("amqp://u:canary@h/%2f", "q");
        assert!(!format!("{config:?}").contains("canary"));
        assert_eq!(AmqpUrl::new("amqp://h:5672").to_string(), "amqp://h:5672");
    }

    #[test]
    fn validation_names_the_field() {
        let mut config = RabbitConfig::new("http://h", "q");
        assert_eq!(config.validate().unwrap_err().field(), "url");
        config.url = AmqpUrl::new("amqp://h");
        config.prefetch = 0;
        assert_eq!(config.validate().unwrap_err().field(), "prefetch");
    }
}
