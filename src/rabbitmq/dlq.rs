//! Reading a RabbitMQ dead-letter queue for `seawall dlq` without consuming it.
//!
//! A queue cannot be read without taking messages off it, so the reader takes every
//! message with manual acknowledgement and holds them all unacknowledged on its channel.
//! Nothing is acknowledged unless a replay asks for it ([`RabbitDeadLetterQueue::remove`]);
//! closing the channel hands every other message back to the queue, and RabbitMQ puts
//! requeued messages back at their original positions, so a `list` or `show` neither loses
//! nor reorders dead letters. While the reader holds them, no other consumer of the
//! dead-letter queue sees them: a second reader at the same time gets only what the
//! first has not taken.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicGetOptions, BasicQosOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Acker, BasicProperties};

use super::config::RabbitConfig;
use super::connect::Link;
use super::convert::headers_from_table;
use super::error::{RabbitError, RabbitErrorKind};
use crate::dead_letter::header;
use crate::dlq::DlqRecord;
use crate::message::Headers;

/// How many new dead letters one [`RabbitDeadLetterQueue::take_new`] takes at most, so a
/// queue filling faster than it is read cannot keep the canary check looping.
const MAX_TAKE_NEW: usize = 10_000;

/// How long the reader waits for the next delivery before it checks whether the queue
/// still has messages ready for it.
const IDLE: Duration = Duration::from_millis(500);

/// A dead letter held unacknowledged on the reader's channel.
struct Held {
    acker: Acker,
    properties: BasicProperties,
}

/// Every message of a RabbitMQ dead-letter queue, taken off it and held unacknowledged
/// until [`close`](Self::close), as [`DlqRecord`]s in queue order.
///
/// Record ids are `<queue>/<dead-letter id>`, the `seawall.dead-letter-id` header Seawall's
/// dead-letter sink puts on every dead letter, so an id names the same dead letter on
/// every read and a replay ledger can store it. A foreign message without that header is
/// named `<queue>/<message_id>`, which is as stable as the publisher made its message ids
/// (a second message with an id already seen gets `<queue>/<message_id>#<position>`), and
/// without a message id `<queue>/#<position>`, its position in this read (0 the head),
/// which changes once earlier messages are removed.
///
/// The record's key is the dead letter's routing key, as the RabbitMQ source takes the
/// routing key as the message key (Seawall's sink keeps the original routing key). Its
/// failure time falls back to the AMQP `timestamp` property when the headers carry none
/// (for a foreign message this may be when the original was published).
pub struct RabbitDeadLetterQueue {
    queue: String,
    /// The broker, password redacted, for error messages.
    url: String,
    link: Link,
    records: Vec<DlqRecord>,
    held: HashMap<String, Held>,
    /// Messages taken so far: the next message's position.
    taken: usize,
    /// Every id given out, so no two records share one.
    ids: HashSet<String>,
}

impl RabbitDeadLetterQueue {
    /// Connects (as `seawall-dlq <queue>`), checks that `queue` exists and takes every
    /// message it holds, up to the count the broker reports at the start. Fails naming the
    /// queue when it does not exist (kind [`RabbitErrorKind::Topology`]), and with kind
    /// [`RabbitErrorKind::Timeout`] when all this takes longer than `timeout`; either way
    /// nothing is acknowledged and every message taken goes back to the queue.
    pub async fn open(
        config: &RabbitConfig,
        queue: &str,
        timeout: Duration,
    ) -> Result<Self, RabbitError> {
        let reading = async {
            let link = Link::open_with_tls(
                &config.url,
                config.tls.as_ref(),
                &format!("seawall-dlq {queue}"),
            )
            .await?;
            let mut dlq = Self {
                queue: queue.to_owned(),
                url: config.url.to_string(),
                link,
                records: Vec::new(),
                held: HashMap::new(),
                taken: 0,
                ids: HashSet::new(),
            };
            let count = dlq.message_count().await?;
            dlq.consume(count).await?;
            Ok(dlq)
        };
        // A read cut short drops its connection, which hands the messages back.
        tokio::time::timeout(timeout, reading).await.map_err(|_| {
            RabbitError::detected(
                RabbitErrorKind::Timeout,
                format!(
                    "reading dead-letter queue `{queue}` on {} took longer than {}",
                    config.url,
                    humantime::format_duration(timeout)
                ),
            )
        })?
    }

    /// The dead-letter queue's name.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The dead letters held, in queue order (those taken during a replay's canary check
    /// at the end).
    pub fn records(&self) -> &[DlqRecord] {
        &self.records
    }

    /// Acknowledges the dead letters `ids` (they were replayed): the broker deletes them.
    /// Fails with kind [`RabbitErrorKind::UnknownId`], acknowledging nothing, when an id
    /// is not held.
    pub async fn remove(&mut self, ids: &[String]) -> Result<(), RabbitError> {
        if let Some(unknown) = ids.iter().find(|id| !self.held.contains_key(id.as_str())) {
            return Err(RabbitError::detected(
                RabbitErrorKind::UnknownId,
                format!(
                    "dead letter `{unknown}` is not held from queue `{}`",
                    self.queue
                ),
            ));
        }
        let removed: HashSet<&str> = ids.iter().map(String::as_str).collect();
        for id in ids {
            let Some(held) = self.held.remove(id.as_str()) else {
                continue;
            };
            let context = || format!("acknowledging dead letter `{id}` in `{}`", self.queue);
            let acked = held
                .acker
                .ack(BasicAckOptions::default())
                .await
                .map_err(|e| RabbitError::new(RabbitErrorKind::Connect, context(), e))?;
            if !acked {
                return Err(RabbitError::detected(
                    RabbitErrorKind::Connect,
                    format!("{}: the channel is closed", context()),
                ));
            }
        }
        self.records.retain(|r| !removed.contains(r.id.as_str()));
        Ok(())
    }

    /// Closes the channel and the connection: every dead letter not removed goes back to
    /// the queue at its original position. (Dropping the reader closes the connection
    /// too, without waiting for it.)
    pub async fn close(self) {
        self.link.close().await;
    }

    /// The AMQP properties the dead letter `id` carries, when it is held.
    pub(crate) fn properties_of(&self, id: &str) -> Option<&BasicProperties> {
        self.held.get(id).map(|h| &h.properties)
    }

    pub(crate) fn connection(&self) -> &lapin::Connection {
        &self.link.connection
    }

    /// Takes what arrived in the queue since it was read (at most [`MAX_TAKE_NEW`]);
    /// returns where the new records are in [`records`](Self::records).
    pub(crate) async fn take_new(&mut self) -> Result<Range<usize>, RabbitError> {
        let before = self.records.len();
        self.take_up_to(MAX_TAKE_NEW).await?;
        Ok(before..self.records.len())
    }

    /// The number of ready messages, by a passive declare, which fails naming the queue
    /// when it does not exist.
    async fn message_count(&self) -> Result<u32, RabbitError> {
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let queue = self
            .link
            .channel
            .queue_declare(self.queue.as_str().into(), passive, FieldTable::default())
            .await
            .map_err(|e| {
                let context = format!(
                    "dead-letter queue `{}` does not exist on {}",
                    self.queue, self.url
                );
                RabbitError::new(RabbitErrorKind::Topology, context, e)
            })?;
        Ok(queue.message_count())
    }

    /// Takes the first `count` messages through a consumer, which the broker feeds without
    /// a round trip per message (10,000 messages: 0.8 s against 3.2–4.1 s with one
    /// `basic.get` each, debug build, local broker).
    /// A prefetch of `count` stops the broker there, since nothing is acknowledged; above
    /// the largest prefetch AMQP allows the prefetch is unlimited, and whatever the broker
    /// delivers before the consumer is cancelled is held as well.
    async fn consume(&mut self, count: u32) -> Result<(), RabbitError> {
        if count == 0 {
            return Ok(());
        }
        let context = format!("reading dead-letter queue `{}`", self.queue);
        let error = |e| RabbitError::new(RabbitErrorKind::Connect, context.clone(), e);
        let channel = self.link.channel.clone();
        let prefetch = u16::try_from(count).unwrap_or(0);
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await
            .map_err(error)?;
        let tag = format!("seawall-dlq-{}", std::process::id());
        let mut consumer = channel
            .basic_consume(
                self.queue.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(error)?;
        let mut delivered = 0;
        while delivered < count {
            let next = match tokio::time::timeout(IDLE, consumer.next()).await {
                Ok(next) => next,
                // Someone else took messages since the count (another reader holds
                // them): stop once the queue has nothing ready rather than wait for them.
                Err(_) if self.message_count().await? == 0 => break,
                Err(_) => continue,
            };
            match next {
                Some(delivery) => self.hold(delivery.map_err(error)?),
                // Cancelled by the broker (the queue was deleted): what came is all there is.
                None => return Ok(()),
            }
            delivered += 1;
        }
        channel
            .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
            .await
            .map_err(error)?;
        // Deliveries the broker sent before it took the cancel are ours too.
        while let Some(delivery) = consumer.next().await {
            self.hold(delivery.map_err(error)?);
        }
        Ok(())
    }

    /// Takes messages one `basic.get` at a time until `limit` are taken or the queue is
    /// empty.
    async fn take_up_to(&mut self, limit: usize) -> Result<(), RabbitError> {
        let options = BasicGetOptions { no_ack: false };
        for _ in 0..limit {
            let got = self
                .link
                .channel
                .basic_get(self.queue.as_str().into(), options)
                .await
                .map_err(|e| {
                    let context = format!("reading dead-letter queue `{}`", self.queue);
                    RabbitError::new(RabbitErrorKind::Connect, context, e)
                })?;
            match got {
                Some(message) => self.hold(message.delivery),
                None => break,
            }
        }
        Ok(())
    }

    fn hold(&mut self, delivery: Delivery) {
        let position = self.taken;
        self.taken += 1;
        let Delivery {
            routing_key,
            properties,
            data,
            acker,
            ..
        } = delivery;
        let headers = headers_from_table(properties.headers().as_ref());
        let message_id = properties.message_id().as_ref().map(|id| id.as_str());
        let id = record_id(&self.queue, &headers, message_id, position, &self.ids);
        self.ids.insert(id.clone());
        let key = (!routing_key.as_str().is_empty())
            .then(|| Bytes::copy_from_slice(routing_key.as_str().as_bytes()));
        let mut record = DlqRecord::parse(id.clone(), key, data, headers);
        if let Some(message_id) = message_id {
            record = record.with_message_id(message_id.to_owned());
        }
        if let Some(seconds) = properties.timestamp() {
            if let Some(at) = broker_time(*seconds) {
                record = record.with_broker_timestamp(at);
            }
        }
        self.records.push(record);
        self.held.insert(id, Held { acker, properties });
    }
}

/// The id of the dead letter at `position`: see [`RabbitDeadLetterQueue`].
fn record_id(
    queue: &str,
    headers: &Headers,
    message_id: Option<&str>,
    position: usize,
    used: &HashSet<String>,
) -> String {
    let dead_letter_id = headers
        .get_last(header::DEAD_LETTER_ID)
        .and_then(|v| std::str::from_utf8(v).ok())
        .filter(|v| !v.is_empty());
    let id = match (dead_letter_id, message_id.filter(|id| !id.is_empty())) {
        (Some(id), _) | (None, Some(id)) => format!("{queue}/{id}"),
        (None, None) => return format!("{queue}/#{position}"),
    };
    if used.contains(&id) {
        format!("{id}#{position}")
    } else {
        id
    }
}

/// An AMQP `timestamp` (seconds, set by the publisher) as a time; none when it overflows
/// the clock (adding it would panic).
fn broker_time(seconds: u64) -> Option<SystemTime> {
    UNIX_EPOCH.checked_add(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Same class as the `headers` fuzz target's finding: a publisher's timestamp of 2^64-1
    /// seconds made reading the dead-letter queue panic.
    #[test]
    fn out_of_range_timestamps_are_no_time() {
        assert_eq!(broker_time(u64::MAX), None);
        assert_eq!(
            broker_time(1_700_000_000),
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
    }

    #[test]
    fn ids_prefer_the_dead_letter_id_then_the_message_id_then_the_position() {
        let used = HashSet::new();
        let mut headers = Headers::new();
        assert_eq!(record_id("q.dlq", &headers, None, 4, &used), "q.dlq/#4");
        assert_eq!(
            record_id("q.dlq", &headers, Some("m-1"), 4, &used),
            "q.dlq/m-1"
        );
        headers.push(header::DEAD_LETTER_ID, "18c-ab-7");
        assert_eq!(
            record_id("q.dlq", &headers, Some("m-1"), 4, &used),
            "q.dlq/18c-ab-7"
        );
    }

    #[test]
    fn a_repeated_id_gets_its_position() {
        let used: HashSet<String> = ["q.dlq/m-1".to_owned()].into();
        assert_eq!(
            record_id("q.dlq", &Headers::new(), Some("m-1"), 9, &used),
            "q.dlq/m-1#9"
        );
    }
}
