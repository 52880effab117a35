//! Reading the failure headers of the three dead-letter formats: Seawall's `seawall.*`,
//! Spring Kafka's `kafka_dlt-*` and Kafka Connect's `__connect.errors.*`.
//!
//! Every reader is lenient: a header that is missing or does not parse leaves its field
//! unknown rather than failing the record, because an operator must still be able to list
//! and inspect a half-garbled dead letter.

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::record::{DlqFailure, DlqFormat, UNKNOWN_KIND};
use crate::dead_letter::{header, within_rfc3339, DeadLetterKind};
use crate::message::Headers;

const SPRING_PREFIX: &str = "kafka_dlt-";
const CONNECT_PREFIX: &str = "__connect.errors.";

mod spring {
    pub const TOPIC: &str = "kafka_dlt-original-topic";
    pub const PARTITION: &str = "kafka_dlt-original-partition";
    pub const OFFSET: &str = "kafka_dlt-original-offset";
    pub const TIMESTAMP: &str = "kafka_dlt-original-timestamp";
    pub const FQCN: &str = "kafka_dlt-exception-fqcn";
    pub const MESSAGE: &str = "kafka_dlt-exception-message";
    pub const CAUSE_FQCN: &str = "kafka_dlt-exception-cause-fqcn";
    pub const KEY_FQCN: &str = "kafka_dlt-key-exception-fqcn";
    pub const KEY_MESSAGE: &str = "kafka_dlt-key-exception-message";
}

mod connect {
    pub const TOPIC: &str = "__connect.errors.topic";
    pub const PARTITION: &str = "__connect.errors.partition";
    pub const OFFSET: &str = "__connect.errors.offset";
    pub const CLASS: &str = "__connect.errors.exception.class.name";
    pub const MESSAGE: &str = "__connect.errors.exception.message";
    pub const STAGE: &str = "__connect.errors.stage";
}

/// Spring wraps every listener failure in this; the cause class says more.
const SPRING_WRAPPER: &str = "ListenerExecutionFailedException";

/// Reads whichever format the headers are in. Seawall's headers win over foreign ones: a
/// foreign dead letter Seawall consumed and dead-lettered again keeps the foreign headers
/// but failed last in Seawall.
pub(super) fn parse_failure(headers: &Headers) -> DlqFailure {
    let mut failure = if header::FAILURE_HEADERS
        .iter()
        .any(|name| headers.get(name).is_some())
    {
        seawall(headers)
    } else if headers.iter().any(|(n, _)| n.starts_with(SPRING_PREFIX)) {
        spring(headers)
    } else if headers.iter().any(|(n, _)| n.starts_with(CONNECT_PREFIX)) {
        connect(headers)
    } else {
        DlqFailure::unknown()
    };
    failure.replay_count = text(headers, header::REPLAY_COUNT)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    failure
}

/// True for every header a replay must not carry back: the failure headers of all three
/// formats, an earlier replay's marker and count (replaced by new ones) and the RabbitMQ
/// sink's dead-letter id (a message that fails again gets a new one).
pub(super) fn is_dead_letter_header(name: &str) -> bool {
    header::FAILURE_HEADERS.contains(&name)
        || name == header::DEAD_LETTER_ID
        || name == header::REPLAY_OF
        || name == header::REPLAY_COUNT
        || name == header::RELEASE_PARK
        || name.starts_with(SPRING_PREFIX)
        || name.starts_with(CONNECT_PREFIX)
}

fn seawall(headers: &Headers) -> DlqFailure {
    // Field by field rather than `DeadLetterInfo::from_headers`, which rejects the whole
    // record when one header is missing or garbled.
    let kind = text(headers, header::ERROR_KIND)
        .and_then(|k| DeadLetterKind::from_str(k.trim()).ok())
        .map_or(UNKNOWN_KIND, DeadLetterKind::as_str);
    DlqFailure {
        format: DlqFormat::Seawall,
        kind: kind.to_owned(),
        error: lossy(headers, header::ERROR),
        attempts: parsed(headers, header::ATTEMPTS),
        original_source: source(headers, header::SOURCE),
        original_partition: parsed(headers, header::PARTITION),
        original_offset: parsed(headers, header::OFFSET),
        failed_at: text(headers, header::FAILED_AT)
            .and_then(|v| humantime::parse_rfc3339_weak(v.trim()).ok()),
        idempotency_key: headers.get_last(header::IDEMPOTENCY_KEY).cloned(),
        ordering_key: headers.get_last(header::ORDERING_KEY).cloned(),
        ..DlqFailure::unknown()
    }
}

fn spring(headers: &Headers) -> DlqFailure {
    let value_fqcn = text(headers, spring::FQCN);
    let (class, message) = match value_fqcn {
        Some(class) => (Some(class), spring::MESSAGE),
        // A key that failed to deserialize is reported under its own headers.
        None => (text(headers, spring::KEY_FQCN), spring::KEY_MESSAGE),
    };
    let class = match (class.map(simple_name), text(headers, spring::CAUSE_FQCN)) {
        (Some(SPRING_WRAPPER), Some(cause)) => Some(simple_name(cause)),
        (class, _) => class,
    };
    DlqFailure {
        format: DlqFormat::SpringKafka,
        kind: kind_or_unknown(class),
        error: lossy(headers, message),
        original_source: source(headers, spring::TOPIC),
        original_partition: headers
            .get_last(spring::PARTITION)
            .and_then(|v| binary_or_text(v, i32::from_be_bytes)),
        original_offset: headers
            .get_last(spring::OFFSET)
            .and_then(|v| binary_or_text(v, i64::from_be_bytes)),
        original_timestamp: headers
            .get_last(spring::TIMESTAMP)
            .and_then(|v| binary_or_text(v, i64::from_be_bytes))
            .and_then(from_millis),
        ..DlqFailure::unknown()
    }
}

fn connect(headers: &Headers) -> DlqFailure {
    let class = text(headers, connect::CLASS).map(simple_name);
    let kind = class.or_else(|| text(headers, connect::STAGE).map(str::trim));
    DlqFailure {
        format: DlqFormat::KafkaConnect,
        kind: kind_or_unknown(kind),
        error: lossy(headers, connect::MESSAGE),
        original_source: source(headers, connect::TOPIC),
        // Connect writes these as decimal strings; accept big-endian binary as well.
        original_partition: headers
            .get_last(connect::PARTITION)
            .and_then(|v| text_or_binary(v, i32::from_be_bytes)),
        original_offset: headers
            .get_last(connect::OFFSET)
            .and_then(|v| text_or_binary(v, i64::from_be_bytes)),
        ..DlqFailure::unknown()
    }
}

/// The last value of a header, when it is UTF-8.
fn text<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    std::str::from_utf8(headers.get_last(name)?).ok()
}

/// A header's text for display: invalid UTF-8 is replaced rather than dropped.
fn lossy(headers: &Headers, name: &str) -> String {
    headers
        .get_last(name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

fn parsed<T: FromStr>(headers: &Headers, name: &str) -> Option<T> {
    text(headers, name)?.trim().parse().ok()
}

/// A topic or queue name: UTF-8 and not blank (a lossy or empty name would replay to
/// the wrong place).
fn source(headers: &Headers, name: &str) -> Option<String> {
    let value = text(headers, name)?.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

fn kind_or_unknown(kind: Option<&str>) -> String {
    match kind {
        Some(kind) if !kind.is_empty() => kind.to_owned(),
        _ => UNKNOWN_KIND.to_owned(),
    }
}

/// `com.example.Outer$Inner` → `Inner`.
fn simple_name(class: &str) -> &str {
    let class = class.trim();
    class.rsplit(['.', '$']).next().unwrap_or(class)
}

/// A big-endian integer of exactly `N` bytes, else decimal ASCII text.
fn binary_or_text<T: FromStr, const N: usize>(
    value: &Bytes,
    from_be: fn([u8; N]) -> T,
) -> Option<T> {
    match <[u8; N]>::try_from(&value[..]) {
        Ok(raw) => Some(from_be(raw)),
        Err(_) => decimal(value),
    }
}

/// Decimal ASCII text, else a big-endian integer of exactly `N` bytes.
fn text_or_binary<T: FromStr, const N: usize>(
    value: &Bytes,
    from_be: fn([u8; N]) -> T,
) -> Option<T> {
    decimal(value).or_else(|| <[u8; N]>::try_from(&value[..]).ok().map(from_be))
}

fn decimal<T: FromStr>(value: &[u8]) -> Option<T> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A time the tooling can show (RFC 3339, years 1970-9999), else none: the header is
/// whatever the writer put there.
fn from_millis(millis: i64) -> Option<SystemTime> {
    let millis = u64::try_from(millis).ok()?;
    SystemTime::UNIX_EPOCH
        .checked_add(Duration::from_millis(millis))
        .filter(|at| within_rfc3339(*at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(entries: &[(&str, &[u8])]) -> Headers {
        entries
            .iter()
            .map(|(n, v)| (*n, Bytes::copy_from_slice(v)))
            .collect()
    }

    #[test]
    fn spring_binary_and_text_positions() {
        let binary = spring(&headers(&[
            (spring::PARTITION, &7i32.to_be_bytes()),
            (spring::OFFSET, &(1i64 << 40).to_be_bytes()),
            (spring::TIMESTAMP, &1_700_000_000_123i64.to_be_bytes()),
        ]));
        assert_eq!(binary.original_partition, Some(7));
        assert_eq!(binary.original_offset, Some(1 << 40));
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(binary.original_timestamp, Some(at));
        // A timestamp past the year 9999 is no timestamp (`seawall dlq show` renders it).
        let far = spring(&headers(&[(spring::TIMESTAMP, &i64::MAX.to_be_bytes())]));
        assert_eq!(far.original_timestamp, None);
        let text = spring(&headers(&[
            (spring::PARTITION, b"12"),
            (spring::OFFSET, b"123456"),
        ]));
        assert_eq!(text.original_partition, Some(12));
        assert_eq!(text.original_offset, Some(123_456));
        let garbled = spring(&headers(&[
            (spring::PARTITION, b"x1"),
            (spring::OFFSET, b"\x01\x02\x03"),
        ]));
        assert_eq!(garbled.original_partition, None);
        assert_eq!(garbled.original_offset, None);
        assert_eq!(garbled.kind, UNKNOWN_KIND);
    }

    #[test]
    fn spring_kind_unwraps_the_listener_wrapper() {
        let wrapped = spring(&headers(&[
            (
                spring::FQCN,
                b"org.springframework.kafka.listener.ListenerExecutionFailedException",
            ),
            (spring::CAUSE_FQCN, b"com.example.Orders$StockException"),
            (spring::MESSAGE, b"Listener failed; no stock"),
        ]));
        assert_eq!(wrapped.kind, "StockException");
        assert_eq!(wrapped.error, "Listener failed; no stock");
        let key = spring(&headers(&[
            (
                spring::KEY_FQCN,
                b"org.springframework.kafka.support.serializer.DeserializationException",
            ),
            (spring::KEY_MESSAGE, b"bad key"),
        ]));
        assert_eq!(
            (key.kind.as_str(), key.error.as_str()),
            ("DeserializationException", "bad key")
        );
    }

    #[test]
    fn connect_falls_back_to_the_stage() {
        let failure = connect(&headers(&[
            (connect::TOPIC, b"payments"),
            (connect::PARTITION, b"2"),
            (connect::OFFSET, b"99"),
            (connect::STAGE, b"VALUE_CONVERTER"),
        ]));
        assert_eq!(failure.kind, "VALUE_CONVERTER");
        assert_eq!(failure.original_source.as_deref(), Some("payments"));
        assert_eq!(
            (failure.original_partition, failure.original_offset),
            (Some(2), Some(99))
        );
    }

    #[test]
    fn garbled_seawall_headers_leave_fields_unknown() {
        let failure = parse_failure(&headers(&[
            (header::ERROR_KIND, b"exploded"),
            (header::ERROR, b"bad \xff byte"),
            (header::ATTEMPTS, b"many"),
            (header::SOURCE, b"  "),
            (header::OFFSET, b"12"),
            (header::FAILED_AT, b"yesterday"),
            (header::REPLAY_COUNT, b"two"),
        ]));
        assert_eq!(failure.format, DlqFormat::Seawall);
        assert_eq!(failure.kind, UNKNOWN_KIND);
        assert_eq!(failure.error, "bad \u{fffd} byte");
        assert_eq!(failure.attempts, None);
        assert_eq!(failure.original_source, None);
        assert_eq!(failure.original_offset, Some(12));
        assert_eq!(failure.failed_at, None);
        assert_eq!(failure.replay_count, 0);
    }

    #[test]
    fn seawall_headers_win_over_foreign_ones() {
        let failure = parse_failure(&headers(&[
            (spring::TOPIC, b"orders"),
            (header::ERROR_KIND, b"contract"),
            (header::SOURCE, b"orders-retry"),
        ]));
        assert_eq!(failure.format, DlqFormat::Seawall);
        assert_eq!(failure.original_source.as_deref(), Some("orders-retry"));
    }

    #[test]
    fn dead_letter_headers_are_recognised() {
        for name in [
            header::ERROR,
            header::BLOCKED_BY,
            header::REPLAY_OF,
            header::REPLAY_COUNT,
            header::DEAD_LETTER_ID,
            spring::FQCN,
            "kafka_dlt-exception-stacktrace",
            connect::STAGE,
            "__connect.errors.connector.name",
        ] {
            assert!(is_dead_letter_header(name), "{name}");
        }
        for name in [
            "traceparent",
            "idempotency-key",
            "seawall.custom",
            "kafka_dltx",
        ] {
            assert!(!is_dead_letter_header(name), "{name}");
        }
    }
}
