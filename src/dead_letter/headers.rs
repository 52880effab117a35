//! The `seawall.*` headers on a dead-letter copy: writing them, and reading them back for
//! the operator tooling.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::DeadLetterKind;
use crate::message::{Headers, Position};

/// Header names.
pub mod header {
    /// The error message (at most 4 KiB).
    pub const ERROR: &str = "seawall.error";
    /// The [`DeadLetterKind`](crate::DeadLetterKind) name.
    pub const ERROR_KIND: &str = "seawall.error-kind";
    /// Attempts made.
    pub const ATTEMPTS: &str = "seawall.attempts";
    /// The source (topic or queue) the message came from.
    pub const SOURCE: &str = "seawall.source";
    /// Its partition, for log sources.
    pub const PARTITION: &str = "seawall.partition";
    /// Its offset, for log sources.
    pub const OFFSET: &str = "seawall.offset";
    /// Its delivery tag, for queue sources.
    pub const DELIVERY_TAG: &str = "seawall.delivery-tag";
    /// When the first attempt failed (RFC 3339).
    pub const FIRST_FAILED_AT: &str = "seawall.first-failed-at";
    /// When it was dead-lettered (RFC 3339).
    pub const FAILED_AT: &str = "seawall.failed-at";
    /// The idempotency key, when it had one.
    pub const IDEMPOTENCY_KEY: &str = "seawall.idempotency-key";
    /// The ordering key, when it had one.
    pub const ORDERING_KEY: &str = "seawall.ordering-key";
    /// For kind `parked`: the message blocking the key.
    pub const BLOCKED_BY: &str = "seawall.blocked-by";
    /// Set on a replayed message: the dead letter it replays. A replay is handled even
    /// though its idempotency key is recorded as dead-lettered.
    pub const REPLAY_OF: &str = "seawall.replay-of";
    /// Set on a replayed message: how many times this message has been replayed
    /// (decimal; the first replay carries `1`). Kept when a replay is dead-lettered again,
    /// so the operator tooling can refuse a message replayed too often.
    pub const REPLAY_COUNT: &str = "seawall.replay-count";
    /// Set by `seawall dlq release` on the first replayed message of a parked key, with
    /// the ordering key as value: the pipeline runs that message although its key is
    /// parked, and releases the key when it is processed (if it fails again, the key
    /// stays parked behind it). The value must equal the message's ordering key.
    pub const RELEASE_PARK: &str = "seawall.release-park";
    /// Set by the RabbitMQ dead-letter sink on every dead letter: an id unique to that
    /// dead-letter copy, `<unix millis, hex>-<process random, 8 hex>-<counter>`. A queue
    /// has no offsets, so the operator tooling names a RabbitMQ dead letter by it
    /// (`<queue>/<id>`), which stays the same however often the queue is read. Not a
    /// failure header, but a replay drops it, so a message that fails again gets a new
    /// one.
    pub const DEAD_LETTER_ID: &str = "seawall.dead-letter-id";

    /// Set when the dead letter was too large for its route and was written without the
    /// original payload and headers: says what was left out. Replay refuses such a copy.
    pub const OMITTED: &str = "seawall.omitted";

    pub(crate) const FAILURE_HEADERS: [&str; 12] = [
        ERROR,
        ERROR_KIND,
        ATTEMPTS,
        SOURCE,
        PARTITION,
        OFFSET,
        DELIVERY_TAG,
        FIRST_FAILED_AT,
        FAILED_AT,
        IDEMPOTENCY_KEY,
        ORDERING_KEY,
        BLOCKED_BY,
    ];
}

const MAX_ERROR_BYTES: usize = 4096;

pub(crate) fn is_failure_header(name: &str) -> bool {
    header::FAILURE_HEADERS.contains(&name)
}

/// A fresh value for [`header::DEAD_LETTER_ID`]. The process part is drawn once, so two
/// processes dead-lettering in the same millisecond do not collide; the counter keeps
/// ids of one process apart within a millisecond.
// Only the RabbitMQ sink names its dead letters.
#[cfg_attr(not(feature = "rabbitmq"), allow(dead_code))]
pub(crate) fn new_dead_letter_id() -> String {
    static PROCESS: OnceLock<u32> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let process = *PROCESS.get_or_init(|| fastrand::u32(..));
    let millis = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{millis:x}-{process:08x}-{n}")
}

/// What a dead-letter copy records about the failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetterInfo {
    /// Why.
    pub kind: DeadLetterKind,
    /// The last error message.
    pub error: String,
    /// Attempts made (0 when the handler was never called).
    pub attempts: u32,
    /// Source name.
    pub source: Arc<str>,
    /// Position in the source.
    pub position: Position,
    /// When the first attempt failed.
    pub first_failed_at: SystemTime,
    /// When it was dead-lettered.
    pub failed_at: SystemTime,
    /// Idempotency key, if any.
    pub idempotency_key: Option<Bytes>,
    /// Ordering key, if any.
    pub ordering_key: Option<Bytes>,
    /// For `parked`: the blocking message.
    pub blocked_by: Option<String>,
}

/// A `seawall.*` header missing or unreadable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderDecodeError {
    /// A required header is absent.
    #[error("dead-letter header `{0}` is missing")]
    Missing(&'static str),
    /// A header's value does not parse.
    #[error("dead-letter header `{name}` has an invalid value: {reason}")]
    Invalid {
        /// Header name.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
}

fn truncate(text: &str) -> &str {
    if text.len() <= MAX_ERROR_BYTES {
        return text;
    }
    let mut end = MAX_ERROR_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The last millisecond RFC 3339 can write: its years have four digits.
const LAST_RFC3339_MILLIS: u64 = 253_402_300_799_999;

/// `at` as RFC 3339 to the millisecond. A time outside the years 1970-9999 (a clock set
/// far wrong, a corrupt store record's crash time) is written as the nearest end of that
/// range: humantime panics on such a time, and a dead letter must be written whatever
/// its times say.
fn rfc3339(at: SystemTime) -> String {
    let at = at.clamp(SystemTime::UNIX_EPOCH, last_rfc3339());
    humantime::format_rfc3339_millis(at).to_string()
}

fn last_rfc3339() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(LAST_RFC3339_MILLIS)
}

/// Whether `at` can be shown as RFC 3339 (years 1970-9999), the form every time takes
/// in a dead letter's headers and in the operator tooling's output.
pub(crate) fn within_rfc3339(at: SystemTime) -> bool {
    (SystemTime::UNIX_EPOCH..=last_rfc3339()).contains(&at)
}

impl DeadLetterInfo {
    /// Appends the `seawall.*` headers.
    pub fn write_to(&self, headers: &mut Headers) {
        headers.push(header::ERROR, truncate(&self.error).to_owned());
        headers.push(header::ERROR_KIND, self.kind.as_str());
        headers.push(header::ATTEMPTS, self.attempts.to_string());
        headers.push(header::SOURCE, self.source.to_string());
        match self.position {
            Position::Offset { partition, offset } => {
                headers.push(header::PARTITION, partition.to_string());
                headers.push(header::OFFSET, offset.to_string());
            }
            Position::DeliveryTag(tag) => headers.push(header::DELIVERY_TAG, tag.to_string()),
            Position::Unknown => {}
        }
        headers.push(header::FIRST_FAILED_AT, rfc3339(self.first_failed_at));
        headers.push(header::FAILED_AT, rfc3339(self.failed_at));
        if let Some(key) = &self.idempotency_key {
            headers.push(header::IDEMPOTENCY_KEY, key.clone());
        }
        if let Some(key) = &self.ordering_key {
            headers.push(header::ORDERING_KEY, key.clone());
        }
        if let Some(blocker) = &self.blocked_by {
            headers.push(header::BLOCKED_BY, blocker.clone());
        }
    }

    /// Reads the `seawall.*` headers back. The last value of a repeated header wins.
    pub fn from_headers(headers: &Headers) -> Result<Self, HeaderDecodeError> {
        let kind = text(headers, header::ERROR_KIND)?;
        let kind = kind.parse().map_err(|reason| HeaderDecodeError::Invalid {
            name: header::ERROR_KIND,
            reason,
        })?;
        let partition = optional(headers, header::PARTITION)?;
        let offset = optional(headers, header::OFFSET)?;
        let tag = optional(headers, header::DELIVERY_TAG)?;
        let position = match (partition, offset, tag) {
            (Some(partition), Some(offset), _) => Position::Offset { partition, offset },
            (_, _, Some(tag)) => Position::DeliveryTag(tag),
            _ => Position::Unknown,
        };
        Ok(Self {
            kind,
            error: text(headers, header::ERROR)?,
            attempts: parsed(headers, header::ATTEMPTS)?,
            source: Arc::from(text(headers, header::SOURCE)?),
            position,
            first_failed_at: time(headers, header::FIRST_FAILED_AT)?,
            failed_at: time(headers, header::FAILED_AT)?,
            idempotency_key: headers.get_last(header::IDEMPOTENCY_KEY).cloned(),
            ordering_key: headers.get_last(header::ORDERING_KEY).cloned(),
            blocked_by: optional_text(headers, header::BLOCKED_BY)?,
        })
    }
}

fn optional_text(
    headers: &Headers,
    name: &'static str,
) -> Result<Option<String>, HeaderDecodeError> {
    headers
        .get_last(name)
        .map(|value| {
            String::from_utf8(value.to_vec()).map_err(|_| HeaderDecodeError::Invalid {
                name,
                reason: "not UTF-8".into(),
            })
        })
        .transpose()
}

fn text(headers: &Headers, name: &'static str) -> Result<String, HeaderDecodeError> {
    optional_text(headers, name)?.ok_or(HeaderDecodeError::Missing(name))
}

fn optional<T>(headers: &Headers, name: &'static str) -> Result<Option<T>, HeaderDecodeError>
where
    T: std::str::FromStr,
    T::Err: fmt::Display,
{
    optional_text(headers, name)?
        .map(|value| {
            value
                .parse()
                .map_err(|e: T::Err| HeaderDecodeError::Invalid {
                    name,
                    reason: format!("`{value}`: {e}"),
                })
        })
        .transpose()
}

fn parsed<T>(headers: &Headers, name: &'static str) -> Result<T, HeaderDecodeError>
where
    T: std::str::FromStr,
    T::Err: fmt::Display,
{
    optional(headers, name)?.ok_or(HeaderDecodeError::Missing(name))
}

fn time(headers: &Headers, name: &'static str) -> Result<SystemTime, HeaderDecodeError> {
    let value = text(headers, name)?;
    humantime::parse_rfc3339_weak(&value).map_err(|e| HeaderDecodeError::Invalid {
        name,
        reason: format!("`{value}`: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> DeadLetterInfo {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_763_000_000_250);
        DeadLetterInfo {
            kind: DeadLetterKind::Parked,
            error: "blocked".into(),
            attempts: 0,
            source: Arc::from("orders"),
            position: Position::Offset {
                partition: 3,
                offset: 77,
            },
            first_failed_at: at,
            failed_at: at + Duration::from_secs(1),
            idempotency_key: Some(Bytes::from_static(b"id-1")),
            ordering_key: Some(Bytes::from_static(b"customer-9")),
            blocked_by: Some("id-0".into()),
        }
    }

    #[test]
    fn headers_round_trip() {
        let mut headers = Headers::new();
        headers.push("traceparent", "00-abc");
        info().write_to(&mut headers);
        assert_eq!(
            headers.get("traceparent").map(|v| &v[..]),
            Some(&b"00-abc"[..])
        );
        assert_eq!(DeadLetterInfo::from_headers(&headers).unwrap(), info());
    }

    /// Found by the `store_record` fuzz target: a corrupt crash record's first-start time
    /// (u64::MAX milliseconds) made writing the dead letter's headers panic.
    #[test]
    fn times_outside_rfc3339_years_are_written_clamped() {
        let mut far = info();
        far.first_failed_at = SystemTime::UNIX_EPOCH + Duration::from_millis(u64::MAX);
        far.failed_at = SystemTime::UNIX_EPOCH - Duration::from_secs(1);
        let mut headers = Headers::new();
        far.write_to(&mut headers);
        let read = DeadLetterInfo::from_headers(&headers).unwrap();
        assert_eq!(read.first_failed_at, last_rfc3339());
        assert_eq!(read.failed_at, SystemTime::UNIX_EPOCH);
        assert_eq!(
            headers.get(header::FIRST_FAILED_AT).map(|v| &v[..]),
            Some(&b"9999-12-31T23:59:59.999Z"[..])
        );
    }

    #[test]
    fn dead_letter_ids_differ() {
        let a = new_dead_letter_id();
        let b = new_dead_letter_id();
        assert_ne!(a, b);
        assert_eq!(a.split('-').count(), 3, "{a}");
    }

    #[test]
    fn long_errors_are_cut_on_a_char_boundary() {
        let long = "é".repeat(5000);
        let cut = truncate(&long);
        assert!(cut.len() <= MAX_ERROR_BYTES && cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn missing_and_bad_headers_are_named() {
        let err = DeadLetterInfo::from_headers(&Headers::new()).unwrap_err();
        assert_eq!(err, HeaderDecodeError::Missing(header::ERROR_KIND));
        let mut headers = Headers::new();
        info().write_to(&mut headers);
        headers.push(header::ATTEMPTS, "many");
        let err = DeadLetterInfo::from_headers(&headers)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("seawall.attempts") && err.contains("many"),
            "{err}"
        );
    }
}
