//! Doors for the cargo-fuzz targets in `fuzz/` into decoders that have no public path of
//! their own. Compiled only under `--cfg fuzzing`, which cargo-fuzz sets, so ordinary
//! builds neither expose nor compile them; each is a thin call into the code the
//! pipeline runs.

#[cfg(feature = "http")]
use std::time::{Duration, SystemTime};

use crate::store::record::Record;
use crate::store::{KeyState, ParkRecord, StoreError};

/// Decodes a record of the store's idempotency tree and reports the state a lookup at
/// `not_before` would see.
pub fn decode_idempotency_record(
    bytes: &[u8],
    not_before: std::time::SystemTime,
) -> Result<KeyState, StoreError> {
    Record::decode(bytes).map(|record| record.state(not_before))
}

/// Encodes a key state the way the store writes it: the settled record when there is
/// one, else the crash record.
pub fn encode_idempotency_record(state: &KeyState) -> Vec<u8> {
    match state.settled {
        Some(settled) => Record::Settled(settled).encode(),
        None => Record::Crashed(state.attempts).encode(),
    }
}

/// Decodes a record of the store's park tree.
pub fn decode_park_record(bytes: &[u8]) -> Result<ParkRecord, StoreError> {
    ParkRecord::decode(bytes)
}

/// Encodes a park record the way the store writes it.
pub fn encode_park_record(record: &ParkRecord) -> Vec<u8> {
    record.encode()
}

/// The HTTP handler's reading of a `Retry-After` header value.
#[cfg(feature = "http")]
pub fn retry_after(value: &[u8], now: SystemTime, max: Duration) -> Option<Duration> {
    crate::http::classify::retry_after(value, now, max)
}
