//! Where idempotency and ordering keys come from.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use serde::Deserialize;

use crate::message::{Message, Position};

/// One place a key can be read from.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum KeySource {
    /// A header's first value (`"header:NAME"`).
    Header(String),
    /// The broker key (`"message-key"`): the Kafka key, or what the adapter maps there.
    MessageKey,
    /// The broker's message id (`"message-id"`): AMQP's `message_id` property.
    MessageId,
    /// The broker position (`"position"`): `source/partition/offset`. Only log positions
    /// are stable across redeliveries, so a delivery tag yields no key.
    Position,
}

impl KeySource {
    fn read(&self, message: &Message) -> Option<Bytes> {
        match self {
            KeySource::Header(name) => message.headers().get(name).cloned(),
            KeySource::MessageKey => message.key().cloned(),
            KeySource::MessageId => message.message_id().cloned(),
            KeySource::Position => match message.origin().position {
                Position::Offset { partition, offset } => {
                    let source = &message.origin().source;
                    Some(Bytes::from(format!("{source}/{partition}/{offset}")))
                }
                Position::DeliveryTag(_) | Position::Unknown => None,
            },
        }
        .filter(|key| !key.is_empty())
    }
}

impl FromStr for KeySource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "message-key" => Ok(KeySource::MessageKey),
            "message-id" => Ok(KeySource::MessageId),
            "position" => Ok(KeySource::Position),
            _ => match s.strip_prefix("header:") {
                Some(name) if !name.is_empty() => Ok(KeySource::Header(name.to_owned())),
                _ => Err(format!(
                    "unknown key source `{s}`: expected `header:NAME`, `message-key`, `message-id` or `position`"
                )),
            },
        }
    }
}

impl TryFrom<String> for KeySource {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Header(name) => write!(f, "header:{name}"),
            KeySource::MessageKey => f.write_str("message-key"),
            KeySource::MessageId => f.write_str("message-id"),
            KeySource::Position => f.write_str("position"),
        }
    }
}

/// An ordered list of key sources: the first one that yields a non-empty value wins.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct KeyRule(Vec<KeySource>);

impl KeyRule {
    /// A rule trying `sources` in order.
    pub fn new(sources: impl IntoIterator<Item = KeySource>) -> Self {
        Self(sources.into_iter().collect())
    }

    /// A rule that never yields a key.
    pub fn none() -> Self {
        Self(Vec::new())
    }

    /// The default idempotency rule: the `idempotency-key` header, then the message id,
    /// then the log position.
    pub fn default_idempotency() -> Self {
        Self::new([
            KeySource::Header("idempotency-key".to_owned()),
            KeySource::MessageId,
            KeySource::Position,
        ])
    }

    /// The default ordering rule: the broker key.
    pub fn default_ordering() -> Self {
        Self::new([KeySource::MessageKey])
    }

    /// The key for `message`, if any source yields one.
    pub fn extract(&self, message: &Message) -> Option<Bytes> {
        self.0.iter().find_map(|source| source.read(message))
    }

    /// The sources, in order.
    pub fn sources(&self) -> &[KeySource] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_source_that_yields_wins() {
        let rule: KeyRule = serde_json_like(&["header:id", "message-key"]);
        let keyed = Message::new("p").with_key("k");
        assert_eq!(rule.extract(&keyed).as_deref(), Some(&b"k"[..]));
        let both = keyed.with_header("id", "h");
        assert_eq!(rule.extract(&both).as_deref(), Some(&b"h"[..]));
        assert_eq!(rule.extract(&Message::new("p")), None);
    }

    #[test]
    fn position_key_only_for_log_positions() {
        let rule = KeyRule::new([KeySource::Position]);
        let logged = Message::new("p").with_origin(
            "orders",
            Position::Offset {
                partition: 2,
                offset: 9,
            },
        );
        assert_eq!(rule.extract(&logged).as_deref(), Some(&b"orders/2/9"[..]));
        let queued = Message::new("p").with_origin("q", Position::DeliveryTag(4));
        assert_eq!(rule.extract(&queued), None);
    }

    #[test]
    fn unknown_source_is_named_in_the_error() {
        let err = "headers:x".parse::<KeySource>().unwrap_err();
        assert!(err.contains("headers:x"), "{err}");
    }

    fn serde_json_like(items: &[&str]) -> KeyRule {
        KeyRule::new(items.iter().map(|s| s.parse().unwrap()))
    }
}
