//! The `seawall.*` header codec. Round trip: what the dead-letter sink writes for a
//! dead letter (`DeadLetter::headers`) reads back (`DeadLetterInfo::from_headers`) as the
//! same failure, up to the codec's documented cuts (error text at 4 KiB, times to the
//! millisecond within RFC 3339's years 1970-9999), and the operator tooling's lenient
//! reader (`DlqRecord::parse`) agrees with it. Decode: arbitrary `seawall.*` headers
//! never panic either reader.

#![no_main]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use seawall::dlq::{DlqFormat, DlqRecord};
use seawall::{header, DeadLetter, DeadLetterInfo, DeadLetterKind, Headers, Message, Position};

/// Every `seawall.*` name, so arbitrary header lists hit the codec's names.
const NAMES: [&str; 16] = [
    header::ERROR,
    header::ERROR_KIND,
    header::ATTEMPTS,
    header::SOURCE,
    header::PARTITION,
    header::OFFSET,
    header::DELIVERY_TAG,
    header::FIRST_FAILED_AT,
    header::FAILED_AT,
    header::IDEMPOTENCY_KEY,
    header::ORDERING_KEY,
    header::BLOCKED_BY,
    header::REPLAY_OF,
    header::REPLAY_COUNT,
    header::RELEASE_PARK,
    header::DEAD_LETTER_ID,
];

const MAX_ERROR_BYTES: usize = 4096;
/// 10000-01-01T00:00:00Z: RFC 3339 has four-digit years.
const END_OF_RFC3339: Duration = Duration::from_secs(253_402_300_800);

#[derive(Arbitrary, Debug)]
enum ArbitraryPosition {
    Offset { partition: i32, offset: i64 },
    DeliveryTag(u64),
    Unknown,
}

/// A time as seconds and nanoseconds either side of the epoch.
#[derive(Arbitrary, Debug)]
struct ArbitraryTime {
    before_epoch: bool,
    secs: u64,
    nanos: u32,
}

impl ArbitraryTime {
    fn get(&self) -> Option<SystemTime> {
        let offset = Duration::new(self.secs, self.nanos % 1_000_000_000);
        if self.before_epoch {
            SystemTime::UNIX_EPOCH.checked_sub(offset)
        } else {
            SystemTime::UNIX_EPOCH.checked_add(offset)
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    kind: u8,
    error: String,
    attempts: u32,
    source: String,
    position: ArbitraryPosition,
    first_failed_at: ArbitraryTime,
    failed_at: ArbitraryTime,
    idempotency_key: Option<Vec<u8>>,
    ordering_key: Option<Vec<u8>>,
    blocked_by: Option<String>,
    /// The original message's headers, `seawall.*` ones from an earlier dead-lettering
    /// among them.
    original: Vec<(u8, String, Vec<u8>)>,
    /// Headers as a garbled dead letter might carry them, for the decode-only half.
    garbled: Vec<(u8, Vec<u8>)>,
}

fn header_name(choice: u8, free: &str) -> String {
    match NAMES.get(usize::from(choice)) {
        Some(name) => (*name).to_owned(),
        None => free.to_owned(),
    }
}

fn position(p: &ArbitraryPosition) -> Position {
    match *p {
        ArbitraryPosition::Offset { partition, offset } => Position::Offset { partition, offset },
        ArbitraryPosition::DeliveryTag(tag) => Position::DeliveryTag(tag),
        ArbitraryPosition::Unknown => Position::Unknown,
    }
}

/// What the codec keeps of a time: milliseconds, within years 1970-9999.
fn as_written(at: SystemTime) -> SystemTime {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let since = since.min(END_OF_RFC3339 - Duration::from_millis(1));
    SystemTime::UNIX_EPOCH + Duration::from_millis(since.as_millis() as u64)
}

fn cut(text: &str) -> String {
    let mut end = text.len().min(MAX_ERROR_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

fn info(input: &Input) -> Option<DeadLetterInfo> {
    Some(DeadLetterInfo {
        kind: DeadLetterKind::ALL[usize::from(input.kind) % DeadLetterKind::ALL.len()],
        error: input.error.clone(),
        attempts: input.attempts,
        source: Arc::from(input.source.as_str()),
        position: position(&input.position),
        first_failed_at: input.first_failed_at.get()?,
        failed_at: input.failed_at.get()?,
        idempotency_key: input.idempotency_key.clone().map(Bytes::from),
        ordering_key: input.ordering_key.clone().map(Bytes::from),
        blocked_by: input.blocked_by.clone(),
    })
}

fn round_trip(input: &Input, info: DeadLetterInfo) {
    let original: Headers = input
        .original
        .iter()
        .map(|(choice, free, value)| (header_name(*choice, free), Bytes::from(value.clone())))
        .collect();
    let letter = DeadLetter {
        message: Message::new("payload").with_headers(original),
        info: info.clone(),
    };
    let written = letter.headers();
    let read = DeadLetterInfo::from_headers(&written).expect("the sink's headers decode");
    let expected = DeadLetterInfo {
        error: cut(&info.error),
        first_failed_at: as_written(info.first_failed_at),
        failed_at: as_written(info.failed_at),
        ..info.clone()
    };
    assert_eq!(read, expected);

    let record = DlqRecord::parse("dlq/0/0", None, "payload", written);
    let failure = &record.failure;
    assert_eq!(failure.format, DlqFormat::Seawall);
    assert_eq!(failure.kind, info.kind.as_str());
    assert_eq!(failure.error, expected.error);
    assert_eq!(failure.attempts, Some(info.attempts));
    assert_eq!(failure.failed_at, Some(expected.failed_at));
    assert_eq!(failure.idempotency_key, info.idempotency_key);
    assert_eq!(failure.ordering_key, info.ordering_key);
    if let Position::Offset { partition, offset } = info.position {
        assert_eq!(failure.original_partition, Some(partition));
        assert_eq!(failure.original_offset, Some(offset));
    }
    let trimmed = info.source.trim();
    let source = (!trimmed.is_empty()).then(|| trimmed.to_owned());
    assert_eq!(failure.original_source, source);
}

fuzz_target!(|input: Input| {
    if let Some(info) = info(&input) {
        round_trip(&input, info);
    }
    let garbled: Headers = input
        .garbled
        .iter()
        .map(|(choice, value)| (header_name(*choice, "x"), Bytes::from(value.clone())))
        .collect();
    if let Ok(info) = DeadLetterInfo::from_headers(&garbled) {
        // Whatever decodes can be written again.
        info.write_to(&mut Headers::new());
    }
    let record = DlqRecord::parse("dlq/0/1", None, "", garbled);
    let _ = record.fingerprint();
    let _ = record.replay_message();
});
