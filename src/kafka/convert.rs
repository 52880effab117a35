//! Kafka records as Seawall messages: adapters translate, they do not decide.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rdkafka::message::{BorrowedMessage, Header, Headers as _, Message as _, OwnedHeaders};

use crate::message::{Headers, Message, Position};

/// A Kafka record as a Seawall message: key, payload, headers and timestamp as they are.
/// `topic` is the record's topic name, shared by every message of the topic.
pub(super) fn to_message(record: &BorrowedMessage<'_>, topic: Arc<str>) -> Message {
    let mut headers = Headers::new();
    if let Some(list) = record.headers() {
        for header in list.iter() {
            headers.push(
                header.key,
                Bytes::copy_from_slice(header.value.unwrap_or_default()),
            );
        }
    }
    let mut message = Message::new(Bytes::copy_from_slice(record.payload().unwrap_or_default()))
        .with_headers(headers)
        .with_origin(
            topic,
            Position::Offset {
                partition: record.partition(),
                offset: record.offset(),
            },
        );
    if let Some(key) = record.key() {
        message = message.with_key(Bytes::copy_from_slice(key));
    }
    if let Some(ms) = record.timestamp().to_millis() {
        if let Ok(ms) = u64::try_from(ms) {
            message = message.with_timestamp(std::time::UNIX_EPOCH + Duration::from_millis(ms));
        }
    }
    message
}

/// Seawall headers as Kafka record headers, in order.
pub(super) fn to_record_headers(headers: &Headers) -> OwnedHeaders {
    headers
        .iter()
        .fold(OwnedHeaders::new(), |list, (name, value)| {
            list.insert(Header {
                key: name,
                value: Some(&value[..]),
            })
        })
}
