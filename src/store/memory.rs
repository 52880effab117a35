//! An in-memory store for tests and throwaway pipelines. Nothing survives the process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use bytes::Bytes;

use super::error::{StoreError, StoreErrorKind};
use super::record::{KeyState, ParkRecord, Record, Settled, SettledOutcome};
use super::{IdempotencyStore, StoreStats};

#[derive(Default)]
struct Tables {
    records: HashMap<Bytes, Record>,
    in_flight: HashMap<Bytes, SystemTime>,
    parked: HashMap<Bytes, ParkRecord>,
    failing: bool,
}

/// An [`IdempotencyStore`] in memory.
///
/// Two hooks drive the pipeline's failure paths in tests: [`MemoryStore::set_failing`]
/// makes every write fail (a full disk), and [`MemoryStore::simulate_crash`] does to the
/// store what a process crash and restart would do to a durable one.
#[derive(Default)]
pub struct MemoryStore {
    tables: Mutex<Tables>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// While `failing`, every write and flush returns an I/O error (as on a full disk).
    pub fn set_failing(&self, failing: bool) {
        self.lock().failing = failing;
    }

    /// Counts a crash for every attempt in progress, as reopening a durable store after
    /// the process died would.
    pub fn simulate_crash(&self) {
        let mut tables = self.lock();
        let in_flight: Vec<_> = tables.in_flight.drain().collect();
        for (key, started) in in_flight {
            let previous = tables.records.get(&key).copied();
            if let Some(record) = Record::crashed_again(previous, started) {
                tables.records.insert(key, record);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        // A panic while holding this lock cannot leave the maps half-updated (each
        // operation is one insert or remove), so a poisoned lock is safe to reuse.
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn writable(&self) -> Result<std::sync::MutexGuard<'_, Tables>, StoreError> {
        let tables = self.lock();
        if tables.failing {
            return Err(StoreError::new(
                StoreErrorKind::Unavailable,
                "memory store set to fail",
            ));
        }
        Ok(tables)
    }
}

impl IdempotencyStore for MemoryStore {
    fn lookup(&self, key: &[u8], not_before: SystemTime) -> Result<KeyState, StoreError> {
        let tables = self.lock();
        Ok(tables
            .records
            .get(key)
            .map(|r| r.state(not_before))
            .unwrap_or_default())
    }

    fn begin_attempt(&self, key: &[u8], now: SystemTime) -> Result<(), StoreError> {
        self.writable()?
            .in_flight
            .insert(Bytes::copy_from_slice(key), now);
        Ok(())
    }

    fn end_attempt(&self, key: &[u8]) -> Result<(), StoreError> {
        self.writable()?.in_flight.remove(key);
        Ok(())
    }

    fn settle(
        &self,
        key: &[u8],
        outcome: SettledOutcome,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let mut tables = self.writable()?;
        let key = Bytes::copy_from_slice(key);
        tables.in_flight.remove(&key);
        tables
            .records
            .insert(key, Record::Settled(Settled { outcome, at: now }));
        Ok(())
    }

    fn park(&self, ordering_key: &[u8], record: &ParkRecord) -> Result<(), StoreError> {
        let mut tables = self.writable()?;
        tables
            .parked
            .insert(Bytes::copy_from_slice(ordering_key), record.clone());
        Ok(())
    }

    fn parked(&self, ordering_key: &[u8]) -> Result<Option<ParkRecord>, StoreError> {
        Ok(self.lock().parked.get(ordering_key).cloned())
    }

    fn parked_keys(&self) -> Result<Vec<(Bytes, ParkRecord)>, StoreError> {
        let tables = self.lock();
        Ok(tables
            .parked
            .iter()
            .map(|(k, r)| (k.clone(), r.clone()))
            .collect())
    }

    fn release(&self, ordering_key: &[u8]) -> Result<bool, StoreError> {
        Ok(self.writable()?.parked.remove(ordering_key).is_some())
    }

    fn sweep(&self, older_than: SystemTime) -> Result<u64, StoreError> {
        let mut tables = self.writable()?;
        let before = tables.records.len();
        tables
            .records
            .retain(|_, r| r.at().is_some_and(|at| at >= older_than));
        Ok((before - tables.records.len()) as u64)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.writable().map(|_| ())
    }

    fn flush_blocks(&self) -> bool {
        false
    }

    fn stats(&self) -> Result<StoreStats, StoreError> {
        let tables = self.lock();
        let crashed = tables
            .records
            .values()
            .filter(|r| matches!(r, Record::Crashed(_)))
            .count() as u64;
        Ok(StoreStats {
            settled: tables.records.len() as u64 - crashed,
            crashed,
            parked: tables.parked.len() as u64,
        })
    }
}
