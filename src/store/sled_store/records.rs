//! Writing records: a flush's run, the crash records made at open, and the move of
//! records an older store wrote one per key.

use bytes::Bytes;
use std::time::SystemTime;

use super::SledStore;
use crate::store::error::StoreError;
use crate::store::pending::sealed_sources;
use crate::store::record::Record;
use crate::store::runs::Merged;
use crate::store::sled_open::{sled_error, Trees};

impl SledStore {
    /// Writes what is pending as a run and makes every write so far durable; the run
    /// counts, and the pending records are let go, only once that worked.
    pub(super) fn persist(&self, trees: &Trees) -> Result<(), StoreError> {
        let sealed = self.pending.seal();
        let capacity: u64 = sealed.iter().map(|entries| entries.len() as u64).sum();
        let run = if capacity == 0 {
            None
        } else {
            let entries = Merged::new(sealed_sources(&sealed));
            self.runs.write_flush(trees, entries, capacity)?
        };
        trees.db.flush().map_err(sled_error)?;
        let wrote = run.is_some();
        if let Some(run) = run {
            self.runs.publish(run);
        }
        self.pending.release(sealed.len());
        if wrote {
            self.wake_merger();
        }
        Ok(())
    }

    /// Records a crash for each message the previous run died on.
    pub(super) fn record_crashes(
        &mut self,
        left_behind: &[(Bytes, SystemTime)],
    ) -> Result<(), StoreError> {
        for (key, started) in left_behind {
            let previous = self.record(key)?;
            if let Some(record) = Record::crashed_again(previous, started.to_owned()) {
                self.filter.insert(key);
                self.pending.put(key, record);
                tracing::warn!(key = %String::from_utf8_lossy(key), "the previous run died while handling this message");
            }
        }
        if !left_behind.is_empty() {
            crate::store::IdempotencyStore::flush(self)?;
        }
        Ok(())
    }

    /// Moves records kept one per key (by stores before record runs) into a run.
    pub(super) fn migrate_legacy_records(&self) -> Result<(), StoreError> {
        let moved = self.with(|trees| {
            if trees.legacy_records.is_empty() {
                return Ok(0);
            }
            let mut moved = 0u64;
            for entry in trees.legacy_records.iter() {
                let (key, value) = entry.map_err(sled_error)?;
                match Record::decode(&value) {
                    Ok(record) => {
                        self.filter.insert(&key);
                        self.pending.put(&key, record);
                        moved += 1;
                    }
                    // It could never match again: the old sweep dropped these too.
                    Err(err) => {
                        tracing::warn!(error = %err, "dropping an unreadable idempotency record")
                    }
                }
            }
            self.persist(trees)?;
            trees.legacy_records.clear().map_err(sled_error)?;
            trees.db.flush().map_err(sled_error)?;
            Ok(moved)
        })?;
        if moved > 0 {
            tracing::info!(
                records = moved,
                "idempotency records moved into a record run"
            );
        }
        Ok(())
    }
}
