//! Arbitrary header sets through every reader of header values: the dead-letter record
//! the operator tooling builds (Seawall, Spring Kafka and Kafka Connect formats), its
//! fingerprint and replay message, key extraction, the size limits and the HTTP
//! handler's `Retry-After`. None may panic; each keeps its documented promises.

#![no_main]

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use seawall::dlq::DlqRecord;
use seawall::{header, Headers, KeyRule, KeySource, LimitViolation, Limits, Message, Position};

/// Names the readers look for, so arbitrary lists hit them often.
const NAMES: [&str; 24] = [
    header::ERROR,
    header::ERROR_KIND,
    header::ATTEMPTS,
    header::SOURCE,
    header::PARTITION,
    header::OFFSET,
    header::FAILED_AT,
    header::IDEMPOTENCY_KEY,
    header::ORDERING_KEY,
    header::REPLAY_COUNT,
    header::REPLAY_OF,
    "kafka_dlt-original-topic",
    "kafka_dlt-original-partition",
    "kafka_dlt-original-offset",
    "kafka_dlt-original-timestamp",
    "kafka_dlt-exception-fqcn",
    "kafka_dlt-exception-cause-fqcn",
    "kafka_dlt-key-exception-fqcn",
    "kafka_dlt-exception-message",
    "__connect.errors.topic",
    "__connect.errors.partition",
    "__connect.errors.offset",
    "__connect.errors.exception.class.name",
    "__connect.errors.stage",
];

/// A header value in the shapes the readers decode, or raw bytes.
#[derive(Arbitrary, Debug)]
enum Value {
    Raw(Vec<u8>),
    Decimal(i64),
    BigEndian32(i32),
    BigEndian64(i64),
    Time { secs: u64, millis: u16 },
}

impl Value {
    fn bytes(&self) -> Bytes {
        match self {
            Value::Raw(raw) => Bytes::from(raw.clone()),
            Value::Decimal(n) => Bytes::from(n.to_string()),
            Value::BigEndian32(n) => Bytes::copy_from_slice(&n.to_be_bytes()),
            Value::BigEndian64(n) => Bytes::copy_from_slice(&n.to_be_bytes()),
            Value::Time { secs, millis } => {
                let since = Duration::from_secs(secs % 300_000_000_000)
                    + Duration::from_millis(u64::from(*millis));
                let at = SystemTime::UNIX_EPOCH + since;
                let mut text = String::new();
                // Years past 9999 do not format; the raw digits then stand in.
                if write!(text, "{}", humantime::format_rfc3339_millis(at)).is_err() {
                    text = secs.to_string();
                }
                Bytes::from(text)
            }
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    headers: Vec<(u8, String, Value)>,
    key: Option<Vec<u8>>,
    message_id: Option<Vec<u8>>,
    payload_len: u16,
    /// Key sources as a route's configuration spells them.
    rule: Vec<String>,
    limits: (u16, u8, u16),
    broker_millis: Option<u64>,
    now_secs: u32,
    max_retry_after_secs: u32,
}

/// `seawall dlq list` and `show` print every time a record holds as RFC 3339.
fn assert_renders(at: Option<SystemTime>) {
    if let Some(at) = at {
        let mut text = String::new();
        write!(text, "{}", humantime::format_rfc3339_millis(at))
            .unwrap_or_else(|_| panic!("{at:?} does not render as RFC 3339"));
    }
}

fn check_keys(input: &Input, message: &Message) {
    for spec in &input.rule {
        if let Ok(source) = spec.parse::<KeySource>() {
            assert_eq!(source.to_string().parse::<KeySource>(), Ok(source));
        }
    }
    let rule = KeyRule::new(input.rule.iter().filter_map(|s| s.parse().ok()));
    for rule in [
        rule,
        KeyRule::default_idempotency(),
        KeyRule::default_ordering(),
    ] {
        if let Some(key) = rule.extract(message) {
            assert!(!key.is_empty(), "an empty key is no key");
        }
    }
}

fn check_limits(input: &Input, message: &Message) {
    let (payload, count, size) = input.limits;
    let limits = Limits {
        max_payload_bytes: usize::from(payload),
        max_headers: usize::from(count),
        max_header_bytes: usize::from(size),
    };
    match limits.check(message) {
        Ok(()) => {
            assert!(message.payload().len() <= limits.max_payload_bytes);
            assert!(message.headers().len() <= limits.max_headers);
        }
        Err(LimitViolation::Payload { size, limit }) => assert!(size > limit),
        Err(LimitViolation::HeaderCount { count, limit }) => assert!(count > limit),
        Err(LimitViolation::HeaderSize { name, size, limit }) => {
            assert!(size > limit && name.chars().count() <= 64)
        }
    }
}

fn check_record(input: &Input, headers: &Headers) {
    let key = input.key.clone().map(Bytes::from);
    let mut record = DlqRecord::parse("dlq/0/7", key, vec![0; 3], headers.clone());
    if let Some(millis) = input.broker_millis {
        if let Some(at) = SystemTime::UNIX_EPOCH.checked_add(Duration::from_millis(millis)) {
            record = record.with_broker_timestamp(at);
        }
    }
    assert_renders(record.failure.failed_at);
    assert_renders(record.failure.original_timestamp);
    let _ = record.fingerprint();
    let _ = record.order_key();
    if let Ok((destination, message)) = record.replay_message() {
        assert!(!destination.trim().is_empty());
        let count = message.headers().get_last(header::REPLAY_COUNT).cloned();
        let expected = record.failure.replay_count.saturating_add(1).to_string();
        assert_eq!(count.as_deref(), Some(expected.as_bytes()));
    }
}

fuzz_target!(|input: Input| {
    let headers: Headers = input
        .headers
        .iter()
        .map(|(choice, free, value)| {
            let name = NAMES.get(usize::from(*choice)).map_or(free.as_str(), |n| n);
            (name.to_owned(), value.bytes())
        })
        .collect();
    let mut message = Message::new(vec![0u8; usize::from(input.payload_len)])
        .with_headers(headers.clone())
        .with_origin(
            "orders",
            Position::Offset {
                partition: 1,
                offset: 2,
            },
        );
    if let Some(key) = &input.key {
        message = message.with_key(key.clone());
    }
    if let Some(id) = &input.message_id {
        message = message.with_message_id(id.clone());
    }
    check_keys(&input, &message);
    check_limits(&input, &message);
    check_record(&input, &headers);
    let _ = seawall::DeadLetterInfo::from_headers(&headers);
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(input.now_secs));
    let max = Duration::from_secs(u64::from(input.max_retry_after_secs));
    for value in headers
        .get_all("retry-after")
        .chain(headers.iter().map(|(_, v)| v))
    {
        if let Some(delay) = seawall::fuzzing::retry_after(value, now, max) {
            assert!(delay <= max);
        }
    }
});
