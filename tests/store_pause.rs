//! No handler call starts while the idempotency store cannot write, even when one of its
//! writes goes through during the outage (as a read-only disk may take a write into a
//! page it has cached). Found by the read-only store-fault chaos run: a call reached the
//! downstream seconds into the outage.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use common::{keyed, quick_config, start_with_store, Recorder};
use seawall::store::{
    IdempotencyStore, KeyState, MemoryStore, ParkRecord, SettledOutcome, StoreError,
    StoreErrorKind, StoreStats,
};

/// A store whose disk is broken until `repair`: flushes and probes fail, and so does the
/// first attempt write; later attempt writes go through, as into a cached page.
#[derive(Clone, Default)]
struct CachedPageDisk {
    inner: Arc<MemoryStore>,
    broken: Arc<AtomicBool>,
    refused: Arc<AtomicU32>,
}

impl CachedPageDisk {
    fn unavailable() -> StoreError {
        StoreError::new(StoreErrorKind::Unavailable, "read-only file system (test)")
    }

    fn broken(&self) -> bool {
        self.broken.load(Ordering::SeqCst)
    }
}

impl IdempotencyStore for CachedPageDisk {
    fn lookup(&self, key: &[u8], not_before: SystemTime) -> Result<KeyState, StoreError> {
        self.inner.lookup(key, not_before)
    }
    fn begin_attempt(&self, key: &[u8], now: SystemTime) -> Result<(), StoreError> {
        if self.broken() && self.refused.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(Self::unavailable());
        }
        self.inner.begin_attempt(key, now)
    }
    fn end_attempt(&self, key: &[u8]) -> Result<(), StoreError> {
        self.inner.end_attempt(key)
    }
    fn settle(
        &self,
        key: &[u8],
        outcome: SettledOutcome,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        self.inner.settle(key, outcome, now)
    }
    fn park(&self, key: &[u8], record: &ParkRecord) -> Result<(), StoreError> {
        self.inner.park(key, record)
    }
    fn parked(&self, key: &[u8]) -> Result<Option<ParkRecord>, StoreError> {
        self.inner.parked(key)
    }
    fn parked_keys(&self) -> Result<Vec<(Bytes, ParkRecord)>, StoreError> {
        self.inner.parked_keys()
    }
    fn release(&self, key: &[u8]) -> Result<bool, StoreError> {
        self.inner.release(key)
    }
    fn sweep(&self, older_than: SystemTime) -> Result<u64, StoreError> {
        self.inner.sweep(older_than)
    }
    fn flush(&self) -> Result<(), StoreError> {
        if self.broken() {
            return Err(Self::unavailable());
        }
        self.inner.flush()
    }
    fn recover(&self) -> Result<(), StoreError> {
        if self.broken() {
            return Err(Self::unavailable());
        }
        Ok(())
    }
    fn stats(&self) -> Result<StoreStats, StoreError> {
        self.inner.stats()
    }
}

#[tokio::test]
async fn a_write_that_goes_through_during_an_outage_does_not_start_the_call() {
    let disk = CachedPageDisk::default();
    disk.broken.store(true, Ordering::SeqCst);
    let recorder = Recorder::new(|_: &str, _: &str, _: u32| Ok(()));
    let harness = start_with_store(quick_config(), recorder.clone(), disk.clone());
    harness.publish(keyed("k", 1)).await;
    // The attempt write fails (the outage begins), its retry goes through some 50 ms
    // later; the probe keeps failing. Nothing may be called meanwhile.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        disk.refused.load(Ordering::SeqCst) >= 2,
        "the retry went through"
    );
    assert_eq!(recorder.calls().len(), 0, "called during the outage");
    disk.broken.store(false, Ordering::SeqCst);
    let (stats, _) = harness.finish().await;
    assert_eq!(stats.processed, 1);
    assert_eq!(recorder.calls().len(), 1);
}
