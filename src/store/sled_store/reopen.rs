//! Bringing the store back after a failed write (a full or read-only disk).

use std::path::Path;
use std::sync::atomic::Ordering;

use super::{lock, SledStore, JOURNAL_FILE};
use crate::store::error::{StoreError, StoreErrorKind};
use crate::store::sled_open::{sled_error, Trees};

impl SledStore {
    /// Succeeds once the store takes durable writes again, reopening it if a write
    /// failed since it was opened.
    pub(super) fn recover_writes(&self) -> Result<(), StoreError> {
        let _one = lock(&self.reopening);
        if !self.broken.load(Ordering::SeqCst) {
            return self.with(|trees| trees.probe().map_err(sled_error));
        }
        match &self.path {
            Some(path) => self.reopen(path),
            None => Err(StoreError::new(
                StoreErrorKind::Unavailable,
                "a temporary store cannot reopen after a failed write",
            )),
        }
    }

    /// Closes the database and the journal and opens them again, giving the new database
    /// the writes the old one had not made durable. Fails, leaving the store closed, while
    /// the disk still refuses writes.
    fn reopen(&self, path: &Path) -> Result<(), StoreError> {
        let _no_flush = lock(&self.flushing);
        self.stop_merger();
        // Everything closes before anything opens: sled locks the directory, and a disk
        // that failed can only be remounted once no file on it is open.
        drop(self.trees.write().unwrap_or_else(|p| p.into_inner()).take());
        if let Some(journal) = &self.journal {
            journal.close();
        }
        let trees = Trees::open(path).map_err(|e| self.tag(sled_error(e)))?;
        // Runs a failed flush or merge left half written are removed here.
        self.runs
            .reload(&trees, &self.filter)
            .map_err(|e| self.tag(e))?;
        let replayed = self
            .unflushed
            .replay(&trees)
            .map_err(|e| self.tag(sled_error(e)))?;
        // The records pending since before the failure, as a run, durable.
        self.persist(&trees).map_err(|e| self.tag(e))?;
        trees.probe().map_err(|e| self.tag(sled_error(e)))?;
        if let Some(journal) = &self.journal {
            journal
                .reopen(&path.join(JOURNAL_FILE))
                .map_err(|e| self.tag(e))?;
        }
        // Nothing was written meanwhile (the trees were closed): every note is durable.
        self.unflushed.clear();
        self.parked_count
            .store(trees.parked.len(), Ordering::SeqCst);
        *self.trees.write().unwrap_or_else(|p| p.into_inner()) = Some(trees);
        self.broken.store(false, Ordering::SeqCst);
        self.start_merger();
        tracing::info!(path = %path.display(), replayed, "idempotency store reopened");
        Ok(())
    }
}
