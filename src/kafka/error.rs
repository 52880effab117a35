//! Kafka adapter errors.

use std::fmt;

use rdkafka::error::{KafkaError as ClientError, RDKafkaErrorCode};

/// A Kafka failure, with what Seawall was doing. Property values (passwords included)
/// never appear in it, in `Display` or `Debug`.
pub struct KafkaError {
    context: String,
    source: ClientError,
}

impl KafkaError {
    pub(crate) fn new(context: impl Into<String>, source: ClientError) -> Self {
        Self {
            context: context.into(),
            source,
        }
    }

    /// Whether the failure is that a topic or partition does not exist.
    pub fn is_unknown_topic(&self) -> bool {
        matches!(
            self.source.rdkafka_error_code(),
            Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic)
        )
    }

    /// Whether trying again later may work: a broker that is down comes back; bad
    /// credentials, a bad property or a refused topic need a person.
    pub fn is_recoverable(&self) -> bool {
        let code = self.source.rdkafka_error_code();
        !matches!(
            self.source,
            ClientError::ClientConfig(..)
                | ClientError::ClientCreation(_)
                | ClientError::Subscription(_)
        ) && !matches!(
            code,
            Some(
                RDKafkaErrorCode::SaslAuthenticationFailed
                    | RDKafkaErrorCode::TopicAuthorizationFailed
                    | RDKafkaErrorCode::GroupAuthorizationFailed
                    | RDKafkaErrorCode::InvalidConfig
                    | RDKafkaErrorCode::PolicyViolation
            )
        )
    }
}

impl fmt::Display for KafkaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // ClientConfig errors quote the offending value; for a secret that would leak it.
        match &self.source {
            ClientError::ClientConfig(_, _, name, _) if super::config::is_secret(name) => {
                write!(f, "{}: invalid value for property `{name}`", self.context)
            }
            other => write!(f, "{}: {other}", self.context),
        }
    }
}

impl fmt::Debug for KafkaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KafkaError({self})")
    }
}

impl std::error::Error for KafkaError {}
