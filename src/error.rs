//! The crate's error type, with an exhaustive classifier.

use std::fmt;

use crate::source::SourceError;
use crate::store::StoreError;

/// A setting that is out of range, naming the field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    field: String,
    reason: String,
}

impl ConfigError {
    /// `field` is the dotted path of the setting (`retry.max_attempts`).
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The setting's dotted path.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What is wrong with it.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The same error for a setting nested under `prefix` (`routes.orders`).
    pub fn under(self, prefix: &str) -> Self {
        Self {
            field: format!("{prefix}.{}", self.field),
            reason: self.reason,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// Why a pipeline could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is out of range.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The idempotency store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The source failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Kafka refused or could not be reached at start-up.
    #[cfg(feature = "kafka")]
    #[error(transparent)]
    Kafka(#[from] crate::kafka::KafkaError),
    /// RabbitMQ refused or could not be reached at start-up.
    #[cfg(feature = "rabbitmq")]
    #[error(transparent)]
    Rabbit(#[from] crate::rabbitmq::RabbitError),
}

impl Error {
    /// Whether starting again later, unchanged, may succeed. A bad setting or a corrupt
    /// store needs a person; a broker or disk that is down may come back.
    pub fn is_recoverable(&self) -> bool {
        match self {
            Error::Config(_) => false,
            Error::Store(err) => err.is_recoverable(),
            Error::Source(err) => err.is_recoverable(),
            #[cfg(feature = "kafka")]
            Error::Kafka(err) => err.is_recoverable(),
            #[cfg(feature = "rabbitmq")]
            Error::Rabbit(err) => err.is_recoverable(),
        }
    }
}
