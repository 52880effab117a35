//! The idempotency store: what has been processed, attempts in progress, parked keys.
//!
//! Writes become durable only at [`IdempotencyStore::flush`]; the pipeline groups many
//! writes behind one flush and releases completions only after it.

mod error;
mod filter;
mod journal;
mod memory;
mod pending;
pub(crate) mod record;
mod runs;
mod sled_open;
mod sled_store;

use std::time::SystemTime;

use bytes::Bytes;

pub use error::{StoreError, StoreErrorKind};
pub use memory::MemoryStore;
pub use record::{AttemptRecord, KeyState, ParkRecord, Settled, SettledOutcome};
pub use sled_store::SledStore;

/// Sizes of what a store holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Settled (processed or dead-lettered) idempotency records.
    pub settled: u64,
    /// Unsettled messages the process died on in earlier runs.
    pub crashed: u64,
    /// Parked ordering keys.
    pub parked: u64,
}

/// Storage for idempotency records, attempt counters and parked keys.
///
/// Methods are synchronous and expected to be fast (in-memory or embedded); the pipeline
/// calls [`flush`](IdempotencyStore::flush), the only slow one, from a blocking thread.
pub trait IdempotencyStore: Send + Sync + 'static {
    /// What is known about `key`: its settled record if not older than `not_before`, and
    /// the crashes recorded for it.
    fn lookup(&self, key: &[u8], not_before: SystemTime) -> Result<KeyState, StoreError>;

    /// Records that a handler call for `key` starts. Once this returns, the record must
    /// survive a crash of this process without a flush: if the process dies before
    /// [`end_attempt`](IdempotencyStore::end_attempt), or before the
    /// [`flush`](IdempotencyStore::flush) that makes a [`settle`](IdempotencyStore::settle)
    /// durable, the next run counts a crash for `key` (a store may also forget it at
    /// `settle`).
    fn begin_attempt(&self, key: &[u8], now: SystemTime) -> Result<(), StoreError>;

    /// Records that the handler call returned (with a failure).
    fn end_attempt(&self, key: &[u8]) -> Result<(), StoreError>;

    /// Records the final outcome for `key`, ends its attempt and forgets its crashes.
    fn settle(
        &self,
        key: &[u8],
        outcome: SettledOutcome,
        now: SystemTime,
    ) -> Result<(), StoreError>;

    /// Parks an ordering key behind the message that blocks it.
    fn park(&self, ordering_key: &[u8], record: &ParkRecord) -> Result<(), StoreError>;

    /// The park record of an ordering key, if it is parked.
    fn parked(&self, ordering_key: &[u8]) -> Result<Option<ParkRecord>, StoreError>;

    /// Every parked key with its record.
    fn parked_keys(&self) -> Result<Vec<(Bytes, ParkRecord)>, StoreError>;

    /// Releases a parked key; returns whether it was parked.
    fn release(&self, ordering_key: &[u8]) -> Result<bool, StoreError>;

    /// Removes records (settled or crashed) older than `older_than`; returns how many went.
    fn sweep(&self, older_than: SystemTime) -> Result<u64, StoreError>;

    /// Makes every write so far durable. May block.
    fn flush(&self) -> Result<(), StoreError>;

    /// Called while the store is failing, with backoff: succeeds only once a durable
    /// write works again, doing whatever the store needs to get there (the sled store
    /// reopens its database). Writes accepted before the failure are kept. May block.
    /// The default probes with [`flush`](IdempotencyStore::flush).
    fn recover(&self) -> Result<(), StoreError> {
        self.flush()
    }

    /// Whether [`flush`](IdempotencyStore::flush) blocks on I/O, so the pipeline must call
    /// it from a blocking thread (default true).
    fn flush_blocks(&self) -> bool {
        true
    }

    /// Counts of what the store holds.
    fn stats(&self) -> Result<StoreStats, StoreError>;

    /// Bytes the store takes on disk, when it keeps data on disk and can tell cheaply
    /// (read at every metrics scrape; default `None`).
    fn size_on_disk(&self) -> Option<u64> {
        None
    }
}

impl<S: IdempotencyStore + ?Sized> IdempotencyStore for std::sync::Arc<S> {
    fn lookup(&self, key: &[u8], not_before: SystemTime) -> Result<KeyState, StoreError> {
        (**self).lookup(key, not_before)
    }
    fn begin_attempt(&self, key: &[u8], now: SystemTime) -> Result<(), StoreError> {
        (**self).begin_attempt(key, now)
    }
    fn end_attempt(&self, key: &[u8]) -> Result<(), StoreError> {
        (**self).end_attempt(key)
    }
    fn settle(
        &self,
        key: &[u8],
        outcome: SettledOutcome,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        (**self).settle(key, outcome, now)
    }
    fn park(&self, ordering_key: &[u8], record: &ParkRecord) -> Result<(), StoreError> {
        (**self).park(ordering_key, record)
    }
    fn parked(&self, ordering_key: &[u8]) -> Result<Option<ParkRecord>, StoreError> {
        (**self).parked(ordering_key)
    }
    fn parked_keys(&self) -> Result<Vec<(Bytes, ParkRecord)>, StoreError> {
        (**self).parked_keys()
    }
    fn release(&self, ordering_key: &[u8]) -> Result<bool, StoreError> {
        (**self).release(ordering_key)
    }
    fn sweep(&self, older_than: SystemTime) -> Result<u64, StoreError> {
        (**self).sweep(older_than)
    }
    fn flush(&self) -> Result<(), StoreError> {
        (**self).flush()
    }
    fn flush_blocks(&self) -> bool {
        (**self).flush_blocks()
    }
    fn recover(&self) -> Result<(), StoreError> {
        (**self).recover()
    }
    fn stats(&self) -> Result<StoreStats, StoreError> {
        (**self).stats()
    }
    fn size_on_disk(&self) -> Option<u64> {
        (**self).size_on_disk()
    }
}
