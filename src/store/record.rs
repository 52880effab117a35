//! Store records and their fixed binary encodings (no serde on the hot path).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::error::{StoreError, StoreErrorKind};

/// How a message was settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SettledOutcome {
    /// The handler succeeded.
    Processed,
    /// The message went to the dead-letter route.
    DeadLettered,
}

/// A settled idempotency record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settled {
    /// Processed or dead-lettered.
    pub outcome: SettledOutcome,
    /// When it was settled.
    pub at: SystemTime,
}

/// What earlier runs of the process left about a message not yet settled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttemptRecord {
    /// Attempts during which the process died (abort, OOM kill, segfault).
    pub crashes: u32,
    /// When the first of those attempts started.
    pub first_started_at: Option<SystemTime>,
}

/// What the store knows about an idempotency key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyState {
    /// The settled record, if one exists within the dedup window.
    pub settled: Option<Settled>,
    /// Crashes recorded for it.
    pub attempts: AttemptRecord,
}

/// Why an ordering key is parked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParkRecord {
    /// The message blocking the key (its idempotency key, or its position).
    pub blocked_by: String,
    /// When the key was parked.
    pub since: SystemTime,
}

pub(crate) fn millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn from_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn corrupt(what: &str, len: usize) -> StoreError {
    StoreError::new(
        StoreErrorKind::Corrupt,
        format!("{what} record has {len} bytes"),
    )
}

/// The last millisecond RFC 3339 can write (9999-12-31T23:59:59.999Z). The store writes
/// the clock's time; a later one is corrupt data, and `seawall store parked` or a dead
/// letter's headers could not show it.
const LAST_TIME_MILLIS: u64 = 253_402_300_799_999;

fn time_at(what: &str, bytes: &[u8], at: usize) -> Result<SystemTime, StoreError> {
    let ms = u64_at(bytes, at);
    if ms > LAST_TIME_MILLIS {
        return Err(StoreError::new(
            StoreErrorKind::Corrupt,
            format!("{what} record holds a time past the year 9999 ({ms} ms)"),
        ));
    }
    Ok(from_millis(ms))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut buf = [0u8; 8];
    buf.copy_from_slice(&bytes[at..at + 8]);
    u64::from_be_bytes(buf)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut buf = [0u8; 4];
    buf.copy_from_slice(&bytes[at..at + 4]);
    u32::from_be_bytes(buf)
}

/// A record in the store's main tree: settled, or crashed on in earlier runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Record {
    Settled(Settled),
    Crashed(AttemptRecord),
}

impl Record {
    pub(crate) fn encode(&self) -> Vec<u8> {
        match self {
            Record::Settled(settled) => {
                let mut out = Vec::with_capacity(9);
                out.push(match settled.outcome {
                    SettledOutcome::Processed => b'p',
                    SettledOutcome::DeadLettered => b'd',
                });
                out.extend_from_slice(&millis(settled.at).to_be_bytes());
                out
            }
            Record::Crashed(attempts) => {
                let mut out = Vec::with_capacity(13);
                out.push(b'c');
                out.extend_from_slice(&attempts.crashes.to_be_bytes());
                let first = attempts.first_started_at.map(millis).unwrap_or(0);
                out.extend_from_slice(&first.to_be_bytes());
                out
            }
        }
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let settled = |outcome| {
            Ok(Record::Settled(Settled {
                outcome,
                at: time_at("idempotency", bytes, 1)?,
            }))
        };
        match (bytes.first(), bytes.len()) {
            (Some(b'p'), 9) => settled(SettledOutcome::Processed),
            (Some(b'd'), 9) => settled(SettledOutcome::DeadLettered),
            (Some(b'c'), 13) => {
                let first = match u64_at(bytes, 5) {
                    0 => None,
                    _ => Some(time_at("crash", bytes, 5)?),
                };
                Ok(Record::Crashed(AttemptRecord {
                    crashes: u32_at(bytes, 1),
                    first_started_at: first,
                }))
            }
            _ => Err(corrupt("idempotency", bytes.len())),
        }
    }

    /// The key's state as lookups report it.
    pub(crate) fn state(&self, not_before: SystemTime) -> KeyState {
        match self {
            Record::Settled(settled) => KeyState {
                settled: (settled.at >= not_before).then_some(*settled),
                attempts: AttemptRecord::default(),
            },
            Record::Crashed(attempts) => KeyState {
                settled: None,
                attempts: *attempts,
            },
        }
    }

    /// When the record was written (for a crash record, the first crashed attempt).
    pub(crate) fn at(&self) -> Option<SystemTime> {
        match self {
            Record::Settled(settled) => Some(settled.at),
            Record::Crashed(attempts) => attempts.first_started_at,
        }
    }

    /// The record after one more crash during an attempt started at `started`.
    pub(crate) fn crashed_again(previous: Option<Record>, started: SystemTime) -> Option<Record> {
        let prior = match previous {
            Some(Record::Settled(_)) => return None, // Settled before the crash.
            Some(Record::Crashed(attempts)) => attempts,
            None => AttemptRecord::default(),
        };
        Some(Record::Crashed(AttemptRecord {
            crashes: prior.crashes.saturating_add(1),
            first_started_at: Some(prior.first_started_at.map_or(started, |f| f.min(started))),
        }))
    }
}

impl ParkRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.blocked_by.len());
        out.extend_from_slice(&millis(self.since).to_be_bytes());
        out.extend_from_slice(self.blocked_by.as_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        if bytes.len() < 8 {
            return Err(corrupt("park", bytes.len()));
        }
        Ok(Self {
            since: time_at("park", bytes, 0)?,
            blocked_by: String::from_utf8_lossy(&bytes[8..]).into_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let at = from_millis(1_700_000_000_123);
        let settled = Record::Settled(Settled {
            outcome: SettledOutcome::DeadLettered,
            at,
        });
        assert_eq!(Record::decode(&settled.encode()).unwrap(), settled);
        let crashed =
            Record::crashed_again(Record::crashed_again(None, at), at + Duration::from_secs(1));
        let crashed = crashed.unwrap();
        assert_eq!(crashed.state(at).attempts.crashes, 2);
        assert_eq!(crashed.at(), Some(at));
        assert_eq!(Record::decode(&crashed.encode()).unwrap(), crashed);
        assert_eq!(Record::crashed_again(Some(settled), at), None);
        let park = ParkRecord {
            blocked_by: "order-7".into(),
            since: at,
        };
        assert_eq!(ParkRecord::decode(&park.encode()).unwrap(), park);
    }

    #[test]
    fn short_records_are_corrupt_not_panics() {
        assert_eq!(
            Record::decode(b"p").unwrap_err().kind(),
            StoreErrorKind::Corrupt
        );
        assert!(Record::decode(&[b'c'; 3]).is_err());
        assert!(Record::decode(&[]).is_err());
        assert!(ParkRecord::decode(&[0; 7]).is_err());
    }

    /// Found by the `store_record` fuzz target (its first input): a park record whose time
    /// is past the year 9999 made `seawall store parked` panic printing it, and a crash
    /// record's made dead-lettering panic. Such a time is corrupt data.
    #[test]
    fn times_past_the_year_9999_are_corrupt() {
        let park = ParkRecord::decode(b"d\x00\x00\x01\x8b\xcf\xe5\x69\xc8").unwrap_err();
        assert_eq!(park.kind(), StoreErrorKind::Corrupt);
        assert!(park.to_string().contains("9999"), "{park}");
        let mut crash = vec![b'c', 0, 0, 0, 1];
        crash.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(
            Record::decode(&crash).unwrap_err().kind(),
            StoreErrorKind::Corrupt
        );
        let mut settled = vec![b'p'];
        settled.extend_from_slice(&(LAST_TIME_MILLIS + 1).to_be_bytes());
        assert!(Record::decode(&settled).is_err());
        settled[1..].copy_from_slice(&LAST_TIME_MILLIS.to_be_bytes());
        assert!(Record::decode(&settled).is_ok());
    }
}
