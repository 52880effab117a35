//! The embedded default store, on sled, with an in-flight journal beside it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::SystemTime;

use bytes::Bytes;

use super::error::{StoreError, StoreErrorKind};
use super::filter::KeyFilter;
use super::journal::{journal_key, InflightJournal};
use super::record::{KeyState, ParkRecord, Record, Settled, SettledOutcome};
use super::{IdempotencyStore, StoreStats};

const JOURNAL_FILE: &str = "inflight.journal";

/// An [`IdempotencyStore`] in a directory: a sled database for records and parked keys,
/// and an in-flight journal for crash detection.
///
/// One process at a time may open a directory (sled holds a file lock).
pub struct SledStore {
    db: sled::Db,
    records: sled::Tree,
    parked: sled::Tree,
    /// How many keys are parked, so the check every message makes is free while none is.
    /// Exact because sled lets one process at a time open the directory.
    parked_count: AtomicUsize,
    journal: Option<InflightJournal>,
    /// Keys with a record, so a lookup of a new key skips the tree.
    filter: Arc<KeyFilter>,
    /// Fills the filter with the keys held at open, in the background.
    loader: Option<FilterLoader>,
    path: Option<PathBuf>,
}

struct FilterLoader {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Drop for SledStore {
    fn drop(&mut self) {
        // The loader holds the tree, and so sled's lock on the directory: it must be gone
        // before the store counts as closed, or reopening the directory would fail.
        if let Some(loader) = self.loader.take() {
            loader.stop.store(true, Ordering::SeqCst);
            let _ = loader.thread.join();
        }
    }
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.path)
            .finish()
    }
}

fn io(err: sled::Error) -> StoreError {
    match err {
        sled::Error::Corruption { .. } => StoreError::new(StoreErrorKind::Corrupt, err),
        other => StoreError::new(StoreErrorKind::Io, other),
    }
}

impl SledStore {
    /// Opens (creating if needed) the store in directory `path`, and records a crash for
    /// every message the previous run died on.
    ///
    /// Fails with the path named when the directory cannot be created or locked, or the
    /// database in it is corrupt.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let open_err = |e| StoreError::new(StoreErrorKind::Open, e).at(path);
        let db = sled::Config::new()
            .path(path)
            .flush_every_ms(Some(500))
            .open()
            .map_err(open_err)?;
        let (journal, left_behind) = InflightJournal::open(&path.join(JOURNAL_FILE))?;
        let mut store = Self::from_db(db, Some(path.to_path_buf()))?;
        store.record_crashes(&left_behind)?;
        journal.reset().map_err(|e| e.at(path))?;
        store.journal = Some(journal);
        store.start_filter_loader();
        Ok(store)
    }

    /// Puts every key held at open into the filter on a background thread, so a large
    /// store opens at once; until it is done, every lookup reads the tree.
    fn start_filter_loader(&mut self) {
        if self.records.is_empty() {
            self.filter.mark_complete();
            return;
        }
        let (records, filter) = (self.records.clone(), Arc::clone(&self.filter));
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
            Ok(thread) => self.loader = Some(FilterLoader { stop, thread }),
            Err(err) => {
                tracing::warn!(error = %err, "no thread for the key filter: every lookup reads the store")
            }
        }
    }

    /// A store in a temporary directory that is removed when the store is dropped. It
    /// keeps no journal, since nothing of it outlives the process.
    pub fn temporary() -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .map_err(|e| StoreError::new(StoreErrorKind::Open, e))?;
        let store = Self::from_db(db, None)?;
        store.filter.mark_complete(); // A temporary store starts empty.
        Ok(store)
    }

    fn from_db(db: sled::Db, path: Option<PathBuf>) -> Result<Self, StoreError> {
        let tree = |name: &str| {
            db.open_tree(name).map_err(|e| {
                let err = StoreError::new(StoreErrorKind::Open, e);
                match &path {
                    Some(p) => err.at(p),
                    None => err,
                }
            })
        };
        let parked = tree("parked")?;
        Ok(Self {
            records: tree("records")?,
            parked_count: AtomicUsize::new(parked.len()),
            parked,
            db,
            journal: None,
            filter: Arc::new(KeyFilter::new()),
            loader: None,
            path,
        })
    }

    fn record_crashes(&mut self, left_behind: &[(Bytes, SystemTime)]) -> Result<(), StoreError> {
        for (key, started) in left_behind {
            let previous = self.record(key)?;
            if let Some(record) = Record::crashed_again(previous, *started) {
                self.filter.insert(key);
                self.records
                    .insert(&key[..], record.encode())
                    .map_err(|e| self.tag(io(e)))?;
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

    fn record(&self, key: &[u8]) -> Result<Option<Record>, StoreError> {
        match self.records.get(key).map_err(|e| self.tag(io(e)))? {
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
        match &self.journal {
            Some(journal) => journal
                .enter(&journal_key(key), now)
                .map_err(|e| self.tag(e)),
            None => Ok(()),
        }
    }

    fn end_attempt(&self, key: &[u8]) -> Result<(), StoreError> {
        match &self.journal {
            Some(journal) => journal.leave(&journal_key(key)).map_err(|e| self.tag(e)),
            None => Ok(()),
        }
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
        self.records
            .insert(&key[..], record.encode())
            .map_err(|e| self.tag(io(e)))?;
        self.end_attempt(&key)
    }

    fn park(&self, ordering_key: &[u8], record: &ParkRecord) -> Result<(), StoreError> {
        let previous = self
            .parked
            .insert(ordering_key, record.encode())
            .map_err(|e| self.tag(io(e)))?;
        if previous.is_none() {
            self.parked_count.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }

    fn parked(&self, ordering_key: &[u8]) -> Result<Option<ParkRecord>, StoreError> {
        if self.parked_count.load(Ordering::SeqCst) == 0 {
            return Ok(None);
        }
        match self.parked.get(ordering_key).map_err(|e| self.tag(io(e)))? {
            Some(bytes) => ParkRecord::decode(&bytes)
                .map(Some)
                .map_err(|e| self.tag(e)),
            None => Ok(None),
        }
    }

    fn parked_keys(&self) -> Result<Vec<(Bytes, ParkRecord)>, StoreError> {
        self.parked
            .iter()
            .map(|entry| {
                let (key, value) = entry.map_err(io)?;
                Ok((Bytes::copy_from_slice(&key), ParkRecord::decode(&value)?))
            })
            .collect::<Result<_, StoreError>>()
            .map_err(|e| self.tag(e))
    }

    fn release(&self, ordering_key: &[u8]) -> Result<bool, StoreError> {
        let removed = self
            .parked
            .remove(ordering_key)
            .map_err(|e| self.tag(io(e)))?;
        if removed.is_some() {
            self.parked_count.fetch_sub(1, Ordering::SeqCst);
        }
        Ok(removed.is_some())
    }

    fn sweep(&self, older_than: SystemTime) -> Result<u64, StoreError> {
        let mut removed = 0;
        for entry in self.records.iter() {
            let (key, value) = entry.map_err(|e| self.tag(io(e)))?;
            // An undecodable record is swept too: it can never match again.
            let expired =
                Record::decode(&value).map_or(true, |r| r.at().is_none_or(|at| at < older_than));
            if expired {
                self.records.remove(&key).map_err(|e| self.tag(io(e)))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(|e| self.tag(io(e)))?;
        Ok(())
    }

    fn size_on_disk(&self) -> Option<u64> {
        self.db.size_on_disk().ok()
    }

    fn stats(&self) -> Result<StoreStats, StoreError> {
        let mut stats = StoreStats {
            parked: self.parked.len() as u64,
            ..StoreStats::default()
        };
        for entry in self.records.iter() {
            let (_, value) = entry.map_err(|e| self.tag(io(e)))?;
            match Record::decode(&value) {
                Ok(Record::Crashed(_)) => stats.crashed += 1,
                _ => stats.settled += 1,
            }
        }
        Ok(stats)
    }
}
