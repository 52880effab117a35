//! The parts of the sled store that a failed write makes it reopen: the database with its
//! trees, and the writes made since the last flush that succeeded.
//!
//! After an I/O error sled 0.34 keeps a sticky error and fails every later write, even
//! once the disk takes writes again; only a fresh open clears it. A fresh open loses what
//! the old database held in memory only, so the store keeps those writes
//! ([`Unflushed`]) and gives them to the reopened database before it counts as durable.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use sled::IVec;

use super::error::{StoreError, StoreErrorKind};

/// How long an open waits for sled's directory lock to be released by a database of
/// this process that was just closed.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether sled failed to open because the directory is locked. sled 0.34 reports it
/// only as text around the `WouldBlock` of `flock`.
fn is_lock_taken(err: &sled::Error) -> bool {
    matches!(err, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

/// The database and the trees the store uses (cheap to clone: handles to the same
/// database).
#[derive(Clone)]
pub(super) struct Trees {
    pub db: sled::Db,
    /// Records one per key, as stores before record runs wrote them; moved into a run
    /// at open.
    pub legacy_records: sled::Tree,
    /// The blocks of record runs (see [`super::runs`]).
    pub blocks: sled::Tree,
    /// One marker per record run written whole.
    pub markers: sled::Tree,
    pub parked: sled::Tree,
}

impl Trees {
    /// Opens the database in directory `path`.
    ///
    /// sled releases its directory lock a moment after the last handle of a database is
    /// dropped (its I/O threads hold the file a little longer), so opening again right
    /// after closing in the same process — a reopen after a failed write, a test — can
    /// find the lock still taken. That is retried for up to [`LOCK_WAIT`]; a lock held
    /// longer (another process using the store) is the error it was.
    pub(super) fn open(path: &Path) -> sled::Result<Self> {
        let config = sled::Config::new().path(path).flush_every_ms(Some(500));
        let began = std::time::Instant::now();
        loop {
            match config.open() {
                Ok(db) => return Self::from_db(db),
                Err(err) if is_lock_taken(&err) && began.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// A database in a temporary directory, removed when dropped.
    pub(super) fn temporary() -> sled::Result<Self> {
        Self::from_db(sled::Config::new().temporary(true).open()?)
    }

    fn from_db(db: sled::Db) -> sled::Result<Self> {
        Ok(Self {
            legacy_records: db.open_tree("records")?,
            blocks: db.open_tree("record-blocks")?,
            markers: db.open_tree("record-runs")?,
            parked: db.open_tree("parked")?,
            db,
        })
    }

    /// Writes a marker and flushes: succeeds only if the disk takes writes now.
    pub(super) fn probe(&self) -> sled::Result<()> {
        let now = super::record::millis(std::time::SystemTime::now());
        self.db
            .insert(b"seawall.write-probe", &now.to_be_bytes()[..])?;
        self.db.flush()?;
        Ok(())
    }
}

/// A sled failure as a store error: a full or read-only disk is
/// [`StoreErrorKind::Unavailable`].
pub(super) fn sled_error(err: sled::Error) -> StoreError {
    match err {
        sled::Error::Corruption { .. } => StoreError::new(StoreErrorKind::Corrupt, err),
        sled::Error::Io(io) => StoreError::from_io(io),
        other => StoreError::new(StoreErrorKind::Io, other),
    }
}

/// One write to the parked tree.
pub(super) struct Write {
    key: IVec,
    /// `None` for a removal.
    value: Option<IVec>,
}

/// The writes to the parked tree made since the last flush that succeeded, oldest first.
/// (Records wait in [`super::pending::Pending`] until a flush writes them.)
///
/// Bounded by what the pipeline lets run between two flushes: every completion waits
/// for a flush, and intake stops while flushes fail.
#[derive(Default)]
pub(super) struct Unflushed {
    writes: Mutex<Vec<Write>>,
}

impl Unflushed {
    fn lock(&self) -> MutexGuard<'_, Vec<Write>> {
        // Each update is one push or one swap: a poisoned lock holds a consistent list.
        self.writes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes a write that the database accepted.
    pub(super) fn note(&self, key: &[u8], value: Option<IVec>) {
        self.lock().push(Write {
            key: IVec::from(key),
            value,
        });
    }

    /// Takes every write noted so far: a flush starting now covers them.
    pub(super) fn take_all(&self) -> Vec<Write> {
        std::mem::take(&mut *self.lock())
    }

    /// Returns writes a failed flush did not make durable, ahead of the later ones.
    pub(super) fn put_back(&self, mut earlier: Vec<Write>) {
        let mut writes = self.lock();
        earlier.append(&mut writes);
        *writes = earlier;
    }

    /// Makes the noted writes again on `trees` (in order), keeping the notes.
    pub(super) fn replay(&self, trees: &Trees) -> sled::Result<usize> {
        let writes = self.lock();
        for write in writes.iter() {
            match &write.value {
                Some(value) => trees.parked.insert(&write.key, value.clone())?,
                None => trees.parked.remove(&write.key)?,
            };
        }
        Ok(writes.len())
    }

    /// Forgets every note: what they recorded is durable.
    pub(super) fn clear(&self) {
        self.lock().clear();
    }
}
