//! The embedded default store, on sled, with an in-flight journal beside it.
//!
//! After a failed write the store reopens itself on [`IdempotencyStore::recover`]: see
//! [`sled_open`](super::sled_open) for why sled needs that.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::SystemTime;

use bytes::Bytes;
use sled::IVec;

use super::error::{StoreError, StoreErrorKind};
use super::filter::KeyFilter;
use super::journal::{journal_key, InflightJournal};
use super::record::{KeyState, ParkRecord, Record, Settled, SettledOutcome};
use super::sled_open::{sled_error, TreeName, Trees, Unflushed};
use super::{IdempotencyStore, StoreStats};

mod reopen;

const JOURNAL_FILE: &str = "inflight.journal";

/// An [`IdempotencyStore`] in a directory: a sled database for records and parked keys,
/// and an in-flight journal for crash detection.
///
/// One process at a time may open a directory (sled holds a file lock).
pub struct SledStore {
    /// `None` while the store reopens after a failed write.
    trees: RwLock<Option<Trees>>,
    /// Set by a failed read or write: sled fails every later write until reopened.
    broken: AtomicBool,
    /// Writes a reopened database must get again.
    unflushed: Unflushed,
    /// One reopen at a time.
    reopening: Mutex<()>,
    /// How many keys are parked, so the check every message makes is free while none is.
    /// Exact because sled lets one process at a time open the directory.
    parked_count: AtomicUsize,
    journal: Option<InflightJournal>,
    /// Keys with a record, so a lookup of a new key skips the tree.
    filter: Arc<KeyFilter>,
    /// Fills the filter with the keys held at open, in the background.
    loader: Mutex<Option<FilterLoader>>,
    path: Option<PathBuf>,
}

struct FilterLoader {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl FilterLoader {
    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.thread.join();
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        // The loader holds the tree, and so sled's lock on the directory: it must be gone
        // before the store counts as closed, or reopening the directory would fail.
        self.stop_loader();
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
        let mut store = Self::from_trees(trees, Some(path.to_path_buf()));
        store.record_crashes(&left_behind)?;
        journal.reset().map_err(|e| e.at(path))?;
        store.journal = Some(journal);
        store.start_filter_loader();
        Ok(store)
    }

    /// Puts every key held at open into the filter on a background thread, so a large
    /// store opens at once; until it is done, every lookup reads the tree.
    fn start_filter_loader(&self) {
        let records = match &*self.read_trees() {
            Some(trees) if !trees.records.is_empty() => trees.records.clone(),
            _ => {
                self.filter.mark_complete();
                return;
            }
        };
        let filter = Arc::clone(&self.filter);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let spawned = std::thread::Builder::new()
            .name("seawall-store-filter".into())
            .spawn(move || {
                for key in records.iter().keys() {
                    if stopped.load(Ordering::Relaxed) {
                        return;
                    }
                    match key {
                        Ok(key) => filter.insert(&key),
                        Err(err) => {
                            tracing::warn!(error = %err, "reading the store's keys failed: every lookup reads the store");
                            return;
                        }
                    }
                }
                filter.mark_complete();
            });
        match spawned {
            Ok(thread) => *lock(&self.loader) = Some(FilterLoader { stop, thread }),
            Err(err) => {
                tracing::warn!(error = %err, "no thread for the key filter: every lookup reads the store")
            }
        }
    }

    fn stop_loader(&self) {
        if let Some(loader) = lock(&self.loader).take() {
            loader.stop();
        }
    }

    /// A store in a temporary directory that is removed when the store is dropped. It
    /// keeps no journal, since nothing of it outlives the process, and cannot reopen.
    pub fn temporary() -> Result<Self, StoreError> {
        let trees = Trees::temporary().map_err(|e| StoreError::new(StoreErrorKind::Open, e))?;
        let store = Self::from_trees(trees, None);
        store.filter.mark_complete(); // A temporary store starts empty.
        Ok(store)
    }

    fn from_trees(trees: Trees, path: Option<PathBuf>) -> Self {
        Self {
            parked_count: AtomicUsize::new(trees.parked.len()),
            trees: RwLock::new(Some(trees)),
            broken: AtomicBool::new(false),
            unflushed: Unflushed::default(),
            reopening: Mutex::new(()),
            journal: None,
            filter: Arc::new(KeyFilter::new()),
            loader: Mutex::new(None),
            path,
        }
    }

    fn record_crashes(&mut self, left_behind: &[(Bytes, SystemTime)]) -> Result<(), StoreError> {
        for (key, started) in left_behind {
            let previous = self.record(key)?;
            if let Some(record) = Record::crashed_again(previous, *started) {
                self.filter.insert(key);
                self.write(TreeName::Records, key, Some(record.encode().into()))?;
                tracing::warn!(key = %String::from_utf8_lossy(key), "the previous run died while handling this message");
            }
        }
        if !left_behind.is_empty() {
            self.flush()?;
        }
        Ok(())
    }

    /// The directory, unless temporary.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
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

    /// Runs `op` on the open trees; a failure marks the store for a reopen.
    fn with<T>(&self, op: impl FnOnce(&Trees) -> sled::Result<T>) -> Result<T, StoreError> {
        let trees = self.read_trees();
        let trees = trees.as_ref().ok_or_else(|| self.tag(reopening()))?;
        op(trees).map_err(|e| self.failed(sled_error(e)))
    }

    /// Notes a failure: unless it is a corrupt record, the store reopens before its next
    /// write can succeed.
    fn failed(&self, err: StoreError) -> StoreError {
        if err.kind() != StoreErrorKind::Corrupt {
            self.broken.store(true, Ordering::SeqCst);
        }
        self.tag(err)
    }

    /// Writes (or with `None` removes) `key` in `tree`, noting it for a reopen. Returns
    /// whether the key was there before.
    fn write(&self, tree: TreeName, key: &[u8], value: Option<IVec>) -> Result<bool, StoreError> {
        // The note is made under the same read lock as the write, so a reopen, which
        // takes the write lock, sees every write the old database accepted.
        let trees = self.read_trees();
        let trees = trees.as_ref().ok_or_else(|| self.tag(reopening()))?;
        let target = match tree {
            TreeName::Records => &trees.records,
            TreeName::Parked => &trees.parked,
        };
        let previous = match &value {
            Some(value) => target.insert(key, value.clone()),
            None => target.remove(key),
        }
        .map_err(|e| self.failed(sled_error(e)))?;
        self.unflushed.note(tree, key, value);
        Ok(previous.is_some())
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

    fn record(&self, key: &[u8]) -> Result<Option<Record>, StoreError> {
        match self.with(|t| t.records.get(key))? {
            Some(bytes) => Record::decode(&bytes).map(Some).map_err(|e| self.tag(e)),
            None => Ok(None),
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
        let record = Record::Settled(Settled { outcome, at: now });
        self.filter.insert(&key);
        self.write(TreeName::Records, &key, Some(record.encode().into()))?;
        self.end_attempt(&key)
    }

    fn park(&self, ordering_key: &[u8], record: &ParkRecord) -> Result<(), StoreError> {
        let existed = self.write(TreeName::Parked, ordering_key, Some(record.encode().into()))?;
        if !existed {
            self.parked_count.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }

    fn parked(&self, ordering_key: &[u8]) -> Result<Option<ParkRecord>, StoreError> {
        if self.parked_count.load(Ordering::SeqCst) == 0 {
            return Ok(None);
        }
        match self.with(|t| t.parked.get(ordering_key))? {
            Some(bytes) => ParkRecord::decode(&bytes)
                .map(Some)
                .map_err(|e| self.tag(e)),
            None => Ok(None),
        }
    }

    fn parked_keys(&self) -> Result<Vec<(Bytes, ParkRecord)>, StoreError> {
        let entries = self.with(|t| t.parked.iter().collect::<sled::Result<Vec<_>>>())?;
        entries
            .into_iter()
            .map(|(key, value)| Ok((Bytes::copy_from_slice(&key), ParkRecord::decode(&value)?)))
            .collect::<Result<_, StoreError>>()
            .map_err(|e| self.tag(e))
    }

    fn release(&self, ordering_key: &[u8]) -> Result<bool, StoreError> {
        let removed = self.write(TreeName::Parked, ordering_key, None)?;
        if removed {
            self.parked_count.fetch_sub(1, Ordering::SeqCst);
        }
        Ok(removed)
    }

    fn sweep(&self, older_than: SystemTime) -> Result<u64, StoreError> {
        // Removals are not noted for a reopen: an expired record that comes back is
        // ignored by lookups and swept again.
        self.with(|t| {
            let mut removed = 0;
            for entry in t.records.iter() {
                let (key, value) = entry?;
                // An undecodable record is swept too: it can never match again.
                let expired = Record::decode(&value)
                    .map_or(true, |r| r.at().is_none_or(|at| at < older_than));
                if expired {
                    t.records.remove(&key)?;
                    removed += 1;
                }
            }
            Ok(removed)
        })
    }

    fn flush(&self) -> Result<(), StoreError> {
        let covered = self.unflushed.take_all();
        match self.with(|t| t.db.flush()) {
            Ok(_) => Ok(()),
            Err(err) => {
                self.unflushed.put_back(covered);
                Err(err)
            }
        }
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
        self.with(|t| {
            let mut stats = StoreStats {
                parked: t.parked.len() as u64,
                ..StoreStats::default()
            };
            for value in t.records.iter().values() {
                match Record::decode(&value?) {
                    Ok(Record::Crashed(_)) => stats.crashed += 1,
                    _ => stats.settled += 1,
                }
            }
            Ok(stats)
        })
    }
}
