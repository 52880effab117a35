//! The embedded default store, on sled, with an in-flight journal beside it.
//!
//! Settled records wait in memory ([`Pending`]) until the next flush writes them as a
//! run of sorted blocks ([`RecordRuns`]); parked keys are written to their own tree at
//! once. After a failed write the store reopens itself on
//! [`IdempotencyStore::recover`]: see [`sled_open`](super::sled_open) for why sled needs
//! that.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::SystemTime;

use bytes::Bytes;
use sled::IVec;

use super::error::{StoreError, StoreErrorKind};
use super::filter::KeyFilter;
use super::journal::{journal_key, InflightJournal};
use super::pending::Pending;
use super::record::{KeyState, ParkRecord, Record, Settled, SettledOutcome};
use super::runs::RecordRuns;
use super::sled_open::{sled_error, Trees, Unflushed};
use super::{IdempotencyStore, StoreStats};

mod merger;
mod records;
mod reopen;

use merger::Merger;

const JOURNAL_FILE: &str = "inflight.journal";

/// An [`IdempotencyStore`] in a directory: a sled database for records and parked keys,
/// and an in-flight journal for crash detection.
///
/// One process at a time may open a directory (sled holds a file lock).
pub struct SledStore {
    /// `None` while the store reopens after a failed write.
    trees: RwLock<Option<Trees>>,
    /// Set by a failed read or write: sled fails every later write until reopened.
    broken: Arc<AtomicBool>,
    /// Parked-key writes a reopened database must get again.
    unflushed: Unflushed,
    /// Records settled since the last flush.
    pending: Pending,
    /// The records flushes wrote.
    runs: Arc<RecordRuns>,
    /// One flush at a time: each writes what is pending as one run.
    flushing: Mutex<()>,
    /// One reopen at a time.
    reopening: Mutex<()>,
    /// How many keys are parked, so the check every message makes is free while none is.
    /// Exact because sled lets one process at a time open the directory.
    parked_count: AtomicUsize,
    journal: Option<InflightJournal>,
    /// Keys with a record, so a lookup of a new key skips the runs.
    filter: KeyFilter,
    /// Merges record runs in the background.
    merger: Mutex<Option<Merger>>,
    path: Option<PathBuf>,
}

impl Drop for SledStore {
    fn drop(&mut self) {
        // The merger holds the database, and so sled's lock on the directory: it must be
        // gone before the store counts as closed, or reopening the directory would fail.
        self.stop_merger();
    }
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.path)
            .finish()
    }
}

/// Locks `mutex`; what the store guards with mutexes is replaced whole, so a poisoned
/// lock holds a consistent value.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn reopening() -> StoreError {
    StoreError::new(
        StoreErrorKind::Unavailable,
        "the store is closed until it reopens after a failed write",
    )
}

impl SledStore {
    /// Opens (creating if needed) the store in directory `path`, and records a crash for
    /// every message the previous run died on.
    ///
    /// Fails with the path named when the directory cannot be created or locked, or the
    /// database in it is corrupt.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let trees =
            Trees::open(path).map_err(|e| StoreError::new(StoreErrorKind::Open, e).at(path))?;
        let (journal, left_behind) = InflightJournal::open(&path.join(JOURNAL_FILE))?;
        let mut store = Self::from_trees(trees, Some(path.to_path_buf()))?;
        store.migrate_legacy_records()?;
        store.record_crashes(&left_behind)?;
        journal.reset().map_err(|e| e.at(path))?;
        store.journal = Some(journal);
        store.start_merger();
        Ok(store)
    }

    /// A store in a temporary directory that is removed when the store is dropped. It
    /// keeps no journal, since nothing of it outlives the process, and cannot reopen.
    pub fn temporary() -> Result<Self, StoreError> {
        let trees = Trees::temporary().map_err(|e| StoreError::new(StoreErrorKind::Open, e))?;
        let store = Self::from_trees(trees, None)?;
        store.start_merger();
        Ok(store)
    }

    fn from_trees(trees: Trees, path: Option<PathBuf>) -> Result<Self, StoreError> {
        let filter = KeyFilter::new();
        let tag = |err: StoreError| match &path {
            Some(p) => err.at(p),
            None => err,
        };
        let runs = RecordRuns::load(&trees, &filter).map_err(tag)?;
        Ok(Self {
            parked_count: AtomicUsize::new(trees.parked.len()),
            trees: RwLock::new(Some(trees)),
            broken: Arc::new(AtomicBool::new(false)),
            unflushed: Unflushed::default(),
            pending: Pending::default(),
            runs: Arc::new(runs),
            flushing: Mutex::new(()),
            reopening: Mutex::new(()),
            journal: None,
            filter,
            merger: Mutex::new(None),
            path,
        })
    }

    fn start_merger(&self) {
        let trees = self.read_trees().clone();
        if let Some(trees) = trees {
            let merger = Merger::start(Arc::clone(&self.runs), trees, Arc::clone(&self.broken));
            *lock(&self.merger) = merger;
        }
    }

    fn stop_merger(&self) {
        if let Some(merger) = lock(&self.merger).take() {
            merger.stop();
        }
    }

    fn wake_merger(&self) {
        if let Some(merger) = lock(&self.merger).as_ref() {
            merger.wake();
        }
    }

    /// The directory, unless temporary.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// How many record runs a lookup may read from (at most fifteen per factor of
    /// sixteen in size, and never more than 32, once background merges catch up).
    pub fn record_runs(&self) -> usize {
        self.runs.count()
    }

    fn tag(&self, err: StoreError) -> StoreError {
        match &self.path {
            Some(p) => err.at(p),
            None => err,
        }
    }

    fn read_trees(&self) -> std::sync::RwLockReadGuard<'_, Option<Trees>> {
        // Replaced whole under the write lock: a poisoned lock holds a consistent value.
        self.trees.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `op` on the open trees; a failure other than corrupt data marks the store
    /// for a reopen.
    fn with<T>(&self, op: impl FnOnce(&Trees) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let trees = self.read_trees();
        let trees = trees.as_ref().ok_or_else(|| self.tag(reopening()))?;
        op(trees).map_err(|e| self.failed(e))
    }

    /// Notes a failure: unless it is a corrupt record, the store reopens before its next
    /// write can succeed.
    fn failed(&self, err: StoreError) -> StoreError {
        if err.kind() != StoreErrorKind::Corrupt {
            self.broken.store(true, Ordering::SeqCst);
        }
        self.tag(err)
    }

    /// Writes (or with `None` removes) a parked key, noting it for a reopen. Returns
    /// whether the key was there before.
    fn write_parked(&self, key: &[u8], value: Option<IVec>) -> Result<bool, StoreError> {
        // The note is made under the same read lock as the write, so a reopen, which
        // takes the write lock, sees every write the old database accepted.
        self.with(|trees| {
            let previous = match &value {
                Some(value) => trees.parked.insert(key, value.clone()),
                None => trees.parked.remove(key),
            }
            .map_err(sled_error)?;
            self.unflushed.note(key, value);
            Ok(previous.is_some())
        })
    }

    fn journal_op(
        &self,
        op: impl FnOnce(&InflightJournal) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        match &self.journal {
            Some(journal) => op(journal).map_err(|e| self.failed(e)),
            None => Ok(()),
        }
    }

    /// The newest record of `key` (a journal key): pending, or in the runs.
    fn record(&self, key: &[u8]) -> Result<Option<Record>, StoreError> {
        match self.pending.get(key) {
            Some(record) => Ok(Some(record)),
            None => self.with(|trees| self.runs.lookup(trees, key)),
        }
    }
}

impl IdempotencyStore for SledStore {
    fn lookup(&self, key: &[u8], not_before: SystemTime) -> Result<KeyState, StoreError> {
        let key = journal_key(key);
        if !self.filter.may_contain(&key) {
            return Ok(KeyState::default());
        }
        let record = self.record(&key)?;
        Ok(record.map(|r| r.state(not_before)).unwrap_or_default())
    }

    fn begin_attempt(&self, key: &[u8], now: SystemTime) -> Result<(), StoreError> {
        self.journal_op(|journal| journal.enter(&journal_key(key), now))
    }

    fn end_attempt(&self, key: &[u8]) -> Result<(), StoreError> {
        self.journal_op(|journal| journal.leave(&journal_key(key)))
    }

    fn settle(
        &self,
        key: &[u8],
        outcome: SettledOutcome,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let key = journal_key(key);
        // Into the filter first, so no lookup can find the key missing from it.
        self.filter.insert(&key);
        self.pending
            .put(&key, Record::Settled(Settled { outcome, at: now }));
        if let Some(journal) = &self.journal {
            journal.leave_settled(&key);
        }
        Ok(())
    }

    fn park(&self, ordering_key: &[u8], record: &ParkRecord) -> Result<(), StoreError> {
        let existed = self.write_parked(ordering_key, Some(record.encode().into()))?;
        if !existed {
            self.parked_count.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }

    fn parked(&self, ordering_key: &[u8]) -> Result<Option<ParkRecord>, StoreError> {
        if self.parked_count.load(Ordering::SeqCst) == 0 {
            return Ok(None);
        }
        match self.with(|t| t.parked.get(ordering_key).map_err(sled_error))? {
            Some(bytes) => ParkRecord::decode(&bytes)
                .map(Some)
                .map_err(|e| self.tag(e)),
            None => Ok(None),
        }
    }

    fn parked_keys(&self) -> Result<Vec<(Bytes, ParkRecord)>, StoreError> {
        let entries = self.with(|t| {
            t.parked
                .iter()
                .collect::<sled::Result<Vec<_>>>()
                .map_err(sled_error)
        })?;
        entries
            .into_iter()
            .map(|(key, value)| Ok((Bytes::copy_from_slice(&key), ParkRecord::decode(&value)?)))
            .collect::<Result<_, StoreError>>()
            .map_err(|e| self.tag(e))
    }

    fn release(&self, ordering_key: &[u8]) -> Result<bool, StoreError> {
        let removed = self.write_parked(ordering_key, None)?;
        if removed {
            self.parked_count.fetch_sub(1, Ordering::SeqCst);
        }
        Ok(removed)
    }

    fn sweep(&self, older_than: SystemTime) -> Result<u64, StoreError> {
        // What is pending is written first, so the sweep sees every record.
        self.flush()?;
        let removed = self.with(|trees| self.runs.sweep(trees, older_than))?;
        self.wake_merger();
        Ok(removed)
    }

    fn flush(&self) -> Result<(), StoreError> {
        let _one = lock(&self.flushing);
        // Before the completions this flush releases: see `InflightJournal::leave_settled`.
        self.journal_op(InflightJournal::clear_stale)?;
        let covered = self.unflushed.take_all();
        let result = self.with(|trees| self.persist(trees));
        if result.is_err() {
            self.unflushed.put_back(covered);
        }
        result
    }

    fn recover(&self) -> Result<(), StoreError> {
        self.recover_writes()
    }

    fn size_on_disk(&self) -> Option<u64> {
        // Read at every metrics scrape: a failure here is no reason to reopen.
        let trees = self.read_trees();
        trees.as_ref()?.db.size_on_disk().ok()
    }

    fn stats(&self) -> Result<StoreStats, StoreError> {
        let mut stats = StoreStats {
            parked: self.with(|t| Ok(t.parked.len() as u64))?,
            ..StoreStats::default()
        };
        self.with(|trees| {
            self.runs
                .for_each(trees, self.pending.sources(), |_, record| match record {
                    Record::Crashed(_) => stats.crashed += 1,
                    Record::Settled(_) => stats.settled += 1,
                })
        })?;
        Ok(stats)
    }
}
