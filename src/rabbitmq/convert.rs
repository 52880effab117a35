//! Between AMQP deliveries and Seawall messages.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;

use crate::dead_letter::is_failure_header;
use crate::message::{Headers, Message, Position};

/// What the adapter keeps of an AMQP delivery, so a RabbitMQ dead-letter sink keeps the
/// original properties and headers with their AMQP types.
#[derive(Clone, Debug)]
pub struct AmqpMeta {
    /// The exchange it was published to.
    pub exchange: String,
    /// Its routing key.
    pub routing_key: String,
    /// Its properties, headers included.
    pub properties: BasicProperties,
    /// Whether the broker redelivered it.
    pub redelivered: bool,
}

/// Text form of an AMQP header value: strings and byte arrays as they are, numbers and
/// booleans in decimal, anything nested as its debug form.
fn value_bytes(value: &AMQPValue) -> Bytes {
    match value {
        AMQPValue::LongString(s) => Bytes::copy_from_slice(s.as_bytes()),
        AMQPValue::ShortString(s) => Bytes::copy_from_slice(s.as_str().as_bytes()),
        AMQPValue::ByteArray(b) => Bytes::copy_from_slice(b.as_slice()),
        AMQPValue::Boolean(b) => Bytes::from(b.to_string()),
        AMQPValue::ShortShortInt(n) => Bytes::from(n.to_string()),
        AMQPValue::ShortShortUInt(n) => Bytes::from(n.to_string()),
        AMQPValue::ShortInt(n) => Bytes::from(n.to_string()),
        AMQPValue::ShortUInt(n) => Bytes::from(n.to_string()),
        AMQPValue::LongInt(n) => Bytes::from(n.to_string()),
        AMQPValue::LongUInt(n) => Bytes::from(n.to_string()),
        AMQPValue::LongLongInt(n) => Bytes::from(n.to_string()),
        AMQPValue::Float(n) => Bytes::from(n.to_string()),
        AMQPValue::Double(n) => Bytes::from(n.to_string()),
        AMQPValue::Timestamp(n) => Bytes::from(n.to_string()),
        AMQPValue::Void => Bytes::new(),
        other => Bytes::from(format!("{other:?}")),
    }
}

/// AMQP headers as Seawall headers (sorted by name, as AMQP tables are).
pub(crate) fn headers_from_table(table: Option<&FieldTable>) -> Headers {
    match table {
        Some(table) => table
            .inner()
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), value_bytes(value)))
            .collect(),
        None => Headers::new(),
    }
}

/// Seawall headers into an AMQP table, as long strings; a repeated name keeps its last
/// value (AMQP tables cannot repeat names).
pub(crate) fn merge_into_table(table: &mut FieldTable, headers: &Headers) {
    for (name, value) in headers.iter() {
        table.insert(
            ShortString::from(name),
            AMQPValue::LongString(LongString::from(value.to_vec())),
        );
    }
}

/// A delivery as a message from `queue`.
pub(crate) fn to_message(
    queue: &Arc<str>,
    delivery: lapin::message::Delivery,
) -> (Message, lapin::Acker) {
    let lapin::message::Delivery {
        delivery_tag,
        exchange,
        routing_key,
        redelivered,
        properties,
        data,
        acker,
    } = delivery;
    let mut message = Message::new(Bytes::from(data))
        .with_headers(headers_from_table(properties.headers().as_ref()))
        .with_origin(Arc::clone(queue), Position::DeliveryTag(delivery_tag));
    if !routing_key.as_str().is_empty() {
        message = message.with_key(routing_key.as_str().to_owned());
    }
    if let Some(id) = properties.message_id() {
        message = message.with_message_id(id.as_str().to_owned());
    }
    if let Some(seconds) = properties.timestamp() {
        message = message.with_timestamp(UNIX_EPOCH + Duration::from_secs(*seconds));
    }
    let meta = AmqpMeta {
        exchange: exchange.as_str().to_owned(),
        routing_key: routing_key.as_str().to_owned(),
        properties,
        redelivered,
    };
    (message.with_native(Arc::new(meta)), acker)
}

/// The properties for republishing `message` with the headers `added`: the original
/// AMQP properties and typed headers when it came from RabbitMQ, rebuilt from the message
/// otherwise; earlier `seawall.*` failure headers dropped; persistent either way.
pub(crate) fn properties_for(message: &Message, added: &Headers) -> BasicProperties {
    let (properties, mut table) = match message.native::<AmqpMeta>() {
        Some(meta) => {
            let table = meta.properties.headers().clone().unwrap_or_default();
            (meta.properties.clone(), table)
        }
        None => {
            let mut properties = BasicProperties::default();
            if let Some(id) = message.message_id() {
                properties =
                    properties.with_message_id(String::from_utf8_lossy(id).as_ref().into());
            }
            if let Some(at) = message.timestamp() {
                let seconds = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                properties = properties.with_timestamp(seconds);
            }
            let mut table = FieldTable::default();
            merge_into_table(&mut table, message.headers());
            (properties, table)
        }
    };
    let kept: std::collections::BTreeMap<_, _> = table
        .inner()
        .iter()
        .filter(|(name, _)| !is_failure_header(name.as_str()))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    table = FieldTable::from(kept);
    merge_into_table(&mut table, added);
    properties.with_headers(table).with_delivery_mode(2)
}

/// The properties for sending a replayed dead letter: the dead letter's own AMQP
/// properties (content type, correlation id, message id, timestamp, …) when known, with
/// exactly the replay message's headers, persistent. A header whose value is unchanged
/// from the dead letter keeps its AMQP type (`x-count` stays an integer); added or
/// changed ones are long strings. Without the original properties they are rebuilt from
/// the message.
pub(crate) fn replay_properties(
    original: Option<&BasicProperties>,
    message: &Message,
) -> BasicProperties {
    let Some(original) = original else {
        // The message's headers are already free of failure headers, so nothing is lost.
        return properties_for(message, &Headers::new());
    };
    let typed = original.headers().clone().unwrap_or_default();
    let mut table = FieldTable::default();
    for (name, value) in message.headers().iter() {
        let value = match typed.inner().get(name) {
            Some(amqp) if value_bytes(amqp) == *value => amqp.clone(),
            _ => AMQPValue::LongString(LongString::from(value.to_vec())),
        };
        table.insert(ShortString::from(name), value);
    }
    let mut properties = original.clone().with_headers(table).with_delivery_mode(2);
    if let Some(id) = message.message_id() {
        properties = properties.with_message_id(String::from_utf8_lossy(id).as_ref().into());
    }
    properties
}

/// The routing key a republished message keeps.
pub(crate) fn routing_key_for(message: &Message) -> String {
    match message.native::<AmqpMeta>() {
        Some(meta) => meta.routing_key.clone(),
        None => message
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default(),
    }
}
