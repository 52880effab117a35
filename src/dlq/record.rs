//! [`DlqRecord`]: one dead-lettered message as the operator tooling sees it, whichever tool
//! wrote it, and the message a replay sends back to its original source.

use std::fmt;
use std::time::SystemTime;

use bytes::Bytes;

use super::fingerprint::fingerprint;
use super::formats;
use crate::dead_letter::{header, within_rfc3339};
use crate::message::{Headers, Message};

/// The header Seawall's default idempotency rule reads first.
const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// The failure kind of a record whose headers do not say why it failed.
pub const UNKNOWN_KIND: &str = "unknown";

/// Which tool wrote a dead letter, judged by its headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DlqFormat {
    /// Seawall's `seawall.*` headers.
    Seawall,
    /// Spring Kafka's `DeadLetterPublishingRecoverer` (`kafka_dlt-*` headers).
    SpringKafka,
    /// Kafka Connect's dead-letter queue with `errors.deadletterqueue.context.headers.enable`
    /// (`__connect.errors.*` headers).
    KafkaConnect,
    /// None of the above: a message with no recognised failure headers.
    Unknown,
}

impl DlqFormat {
    /// A stable lower-case name for tables and JSON: `seawall`, `spring-kafka`,
    /// `kafka-connect` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            DlqFormat::Seawall => "seawall",
            DlqFormat::SpringKafka => "spring-kafka",
            DlqFormat::KafkaConnect => "kafka-connect",
            DlqFormat::Unknown => "unknown",
        }
    }
}

impl fmt::Display for DlqFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a dead letter's headers say about its failure. Every field a header did not
/// carry, or carried in a form that does not parse, is `None` (or empty / `unknown`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DlqFailure {
    /// Which tool wrote the record.
    pub format: DlqFormat,
    /// Why it failed: Seawall's kind (`permanent`, `exhausted`, …), or the simple class
    /// name of the exception for Spring Kafka and Kafka Connect (Connect's stage when it
    /// names no class); [`UNKNOWN_KIND`] when the headers do not say.
    pub kind: String,
    /// The error message (empty when none was recorded).
    pub error: String,
    /// Handler attempts made, when recorded (only Seawall records them).
    pub attempts: Option<u32>,
    /// The topic or queue the message originally came from: where a replay sends it.
    pub original_source: Option<String>,
    /// Its partition in the original topic.
    pub original_partition: Option<i32>,
    /// Its offset in the original partition.
    pub original_offset: Option<i64>,
    /// When it was dead-lettered: Seawall's `seawall.failed-at`; for the other formats the
    /// dead-letter record's own timestamp when the reader supplies it
    /// ([`DlqRecord::with_broker_timestamp`]), as they write no failure time.
    pub failed_at: Option<SystemTime>,
    /// The original message's own timestamp, when recorded (Spring Kafka's
    /// `kafka_dlt-original-timestamp`).
    pub original_timestamp: Option<SystemTime>,
    /// The idempotency key Seawall derived for it.
    pub idempotency_key: Option<Bytes>,
    /// The ordering key Seawall derived for it.
    pub ordering_key: Option<Bytes>,
    /// How often it has been replayed already (`seawall.replay-count`; 0 when absent).
    pub replay_count: u32,
}

impl DlqFailure {
    /// A failure nothing is known about.
    pub fn unknown() -> Self {
        Self {
            format: DlqFormat::Unknown,
            kind: UNKNOWN_KIND.to_owned(),
            error: String::new(),
            attempts: None,
            original_source: None,
            original_partition: None,
            original_offset: None,
            failed_at: None,
            original_timestamp: None,
            idempotency_key: None,
            ordering_key: None,
            replay_count: 0,
        }
    }
}

/// A replay that cannot be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// The record does not say which topic or queue it came from.
    #[error("dead letter `{id}` does not name its original topic or queue; it cannot be replayed")]
    NoDestination {
        /// The record's id.
        id: String,
    },
}

/// One dead-lettered message, broker-neutral: what `list` and `show` display and `replay`
/// sends back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DlqRecord {
    /// The reader's id for the record, e.g. `topic/partition/offset` for a Kafka DLQ topic
    /// or a position for a queue. Written to `seawall.replay-of` on replay.
    pub id: String,
    /// The message key, as the dead letter carries it (the original key for Seawall and
    /// Spring Kafka).
    pub key: Option<Bytes>,
    /// The payload, as dead-lettered (unchanged from the original for all three formats).
    pub payload: Bytes,
    /// All headers, failure headers included.
    pub headers: Headers,
    /// The message id the dead letter carries (AMQP `message_id`); a replay keeps it, as
    /// a RabbitMQ route's idempotency key is read from it by default.
    pub message_id: Option<Bytes>,
    /// The failure, parsed from the headers.
    pub failure: DlqFailure,
}

impl DlqRecord {
    /// Builds a record and parses its failure from the headers. Never fails: missing or
    /// garbled headers leave the fields they would fill `None`, and the kind
    /// [`UNKNOWN_KIND`] when no kind can be read.
    pub fn parse(
        id: impl Into<String>,
        key: Option<Bytes>,
        payload: impl Into<Bytes>,
        headers: Headers,
    ) -> Self {
        let failure = formats::parse_failure(&headers);
        Self {
            id: id.into(),
            key,
            payload: payload.into(),
            headers,
            message_id: None,
            failure,
        }
    }

    /// Sets the message id (AMQP `message_id`) the dead letter carries.
    pub fn with_message_id(mut self, id: impl Into<Bytes>) -> Self {
        self.message_id = Some(id.into());
        self
    }

    /// Fills [`DlqFailure::failed_at`] from the dead-letter record's own broker timestamp
    /// when the headers carried no failure time (Spring Kafka and Kafka Connect write
    /// none; the record was produced when the message was dead-lettered). A time from the
    /// headers is kept, and so is no time at all rather than one the tooling cannot show
    /// (before 1970 or after 9999): a producer sets a Kafka record's timestamp to what it
    /// likes.
    pub fn with_broker_timestamp(mut self, at: SystemTime) -> Self {
        if within_rfc3339(at) {
            self.failure.failed_at.get_or_insert(at);
        }
        self
    }

    /// The key per-key order is kept under: Seawall's ordering key when recorded, else
    /// the message key.
    pub fn order_key(&self) -> Option<&Bytes> {
        self.failure.ordering_key.as_ref().or(self.key.as_ref())
    }

    /// The record's failure fingerprint: see [`fingerprint`].
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.failure.kind, &self.failure.error)
    }

    /// The message to republish and where to: the original source (topic or queue), with
    /// the original key, message id and payload, and the headers less every failure header of the
    /// three formats, plus `seawall.replay-of = <id>` and
    /// `seawall.replay-count = <replay_count + 1>` (replacing earlier values), and the
    /// recorded idempotency key as an `idempotency-key` header when the message has
    /// neither that header nor a message id (its key was derived from its position).
    pub fn replay_message(&self) -> Result<(String, Message), ReplayError> {
        let destination =
            self.failure
                .original_source
                .clone()
                .ok_or_else(|| ReplayError::NoDestination {
                    id: self.id.clone(),
                })?;
        let mut headers = self.headers.clone();
        headers.retain(|name, _| !formats::is_dead_letter_header(name));
        // A key derived from the position (no header, no message id) would change with
        // the replay's new position; carrying the recorded one as the header Seawall's
        // default rule reads first keeps a repeated replay a duplicate.
        let has_own_key = headers.get(IDEMPOTENCY_HEADER).is_some() || self.message_id.is_some();
        if let (false, Some(key)) = (has_own_key, &self.failure.idempotency_key) {
            headers.push(IDEMPOTENCY_HEADER, key.clone());
        }
        headers.push(header::REPLAY_OF, self.id.clone());
        let count = self.failure.replay_count.saturating_add(1);
        headers.push(header::REPLAY_COUNT, count.to_string());
        let mut message = Message::new(self.payload.clone()).with_headers(headers);
        if let Some(key) = &self.key {
            message = message.with_key(key.clone());
        }
        if let Some(id) = &self.message_id {
            message = message.with_message_id(id.clone());
        }
        Ok((destination, message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spring_headers() -> Headers {
        [
            ("traceparent", Bytes::from_static(b"00-abc")),
            ("kafka_dlt-original-topic", Bytes::from_static(b"orders")),
            (
                "kafka_dlt-original-partition",
                Bytes::copy_from_slice(&3i32.to_be_bytes()),
            ),
            (
                "kafka_dlt-original-offset",
                Bytes::copy_from_slice(&42i64.to_be_bytes()),
            ),
            (
                "kafka_dlt-exception-fqcn",
                Bytes::from_static(b"com.example.OrderRejected"),
            ),
            (
                "kafka_dlt-exception-message",
                Bytes::from_static(b"no stock"),
            ),
            (header::REPLAY_COUNT, Bytes::from_static(b"2")),
            (header::REPLAY_OF, Bytes::from_static(b"dlt/0/1")),
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn replay_targets_the_original_source_and_counts_up() {
        let record = DlqRecord::parse(
            "orders.DLT/0/7",
            Some(Bytes::from_static(b"customer-1")),
            "payload",
            spring_headers(),
        );
        assert_eq!(record.failure.replay_count, 2);
        let (destination, message) = record.replay_message().unwrap();
        assert_eq!(destination, "orders");
        assert_eq!(message.key().map(|k| &k[..]), Some(&b"customer-1"[..]));
        assert_eq!(&message.payload()[..], b"payload");
        let names: Vec<_> = message.headers().iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            ["traceparent", header::REPLAY_OF, header::REPLAY_COUNT]
        );
        let get = |name| message.headers().get(name).map(|v| v.to_vec());
        assert_eq!(get(header::REPLAY_OF), Some(b"orders.DLT/0/7".to_vec()));
        assert_eq!(get(header::REPLAY_COUNT), Some(b"3".to_vec()));
    }

    #[test]
    fn replay_without_a_source_is_refused() {
        let record = DlqRecord::parse("q/5", None, "x", Headers::new());
        assert_eq!(record.failure, DlqFailure::unknown());
        let err = record.replay_message().unwrap_err();
        assert_eq!(
            err,
            ReplayError::NoDestination {
                id: "q/5".to_owned()
            }
        );
        assert!(err.to_string().contains("q/5"));
    }

    #[test]
    fn broker_timestamp_fills_only_a_missing_failure_time() {
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let record = DlqRecord::parse("x", None, "", spring_headers()).with_broker_timestamp(at);
        assert_eq!(record.failure.failed_at, Some(at));
        let mut record = record;
        let earlier = at - std::time::Duration::from_secs(5);
        record.failure.failed_at = Some(earlier);
        let record = record.with_broker_timestamp(at);
        assert_eq!(record.failure.failed_at, Some(earlier));
    }

    /// Found by the `headers` fuzz target: a dead letter whose broker timestamp lies past
    /// the year 9999 made `seawall dlq list` panic rendering it.
    #[test]
    fn broker_timestamps_rfc3339_cannot_show_are_ignored() {
        let far = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(71_776_123_356_184_575);
        let record = DlqRecord::parse("x", None, "", spring_headers()).with_broker_timestamp(far);
        assert_eq!(record.failure.failed_at, None);
        let early = SystemTime::UNIX_EPOCH - std::time::Duration::from_secs(1);
        let record = record.with_broker_timestamp(early);
        assert_eq!(record.failure.failed_at, None);
    }

    #[test]
    fn order_key_prefers_the_ordering_key() {
        let mut record = DlqRecord::parse("x", Some(Bytes::from_static(b"k")), "", Headers::new());
        assert_eq!(record.order_key().map(|k| &k[..]), Some(&b"k"[..]));
        record.failure.ordering_key = Some(Bytes::from_static(b"o"));
        assert_eq!(record.order_key().map(|k| &k[..]), Some(&b"o"[..]));
    }
}
