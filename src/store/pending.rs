//! Records settled since the last flush, held in memory until a flush writes them as a
//! run. Lookups read them here, so a record is visible from the moment it is settled.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use super::record::Record;
use super::runs::Source;

type Entries = BTreeMap<Vec<u8>, Record>;

/// The records waiting for a flush.
///
/// Bounded by what the pipeline lets run between two flushes: every completion waits for
/// a flush, and intake stops while flushes fail.
#[derive(Default)]
pub(super) struct Pending {
    active: Mutex<Entries>,
    /// Taken by flushes that have not finished (or failed), oldest first: still read by
    /// lookups until the run holding them is in place.
    sealed: RwLock<Vec<Arc<Entries>>>,
}

impl Pending {
    // Each update is one insert or one swap: a poisoned lock holds consistent entries.
    fn active(&self) -> MutexGuard<'_, Entries> {
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sealed(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Entries>>> {
        self.sealed.read().unwrap_or_else(|p| p.into_inner())
    }

    fn sealed_mut(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Arc<Entries>>> {
        self.sealed.write().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn put(&self, key: &[u8], record: Record) {
        self.active().insert(key.to_vec(), record);
    }

    /// The newest pending record of `key`.
    pub(super) fn get(&self, key: &[u8]) -> Option<Record> {
        let active = self.active();
        if let Some(record) = active.get(key) {
            return Some(*record);
        }
        // Read while `active` is held, so a record moving to `sealed` is seen in one or
        // the other.
        let sealed = self.sealed();
        sealed
            .iter()
            .rev()
            .find_map(|entries| entries.get(key).copied())
    }

    /// Moves what is active behind the earlier sealed entries and returns all of them,
    /// oldest first: a flush starting now writes them.
    pub(super) fn seal(&self) -> Vec<Arc<Entries>> {
        let mut active = self.active();
        let mut sealed = self.sealed_mut();
        if !active.is_empty() {
            sealed.push(Arc::new(std::mem::take(&mut *active)));
        }
        sealed.clone()
    }

    /// Forgets the oldest `written` sealed entries: a run holding them is in place.
    pub(super) fn release(&self, written: usize) {
        let mut sealed = self.sealed_mut();
        let written = written.min(sealed.len());
        sealed.drain(..written);
    }

    /// Every pending entry, as sources newest first.
    pub(super) fn sources(&self) -> Vec<Source<'static>> {
        let active = Arc::new(self.active().clone());
        let sealed = self.sealed().clone();
        std::iter::once(active)
            .chain(sealed.into_iter().rev())
            .map(entries_source)
            .collect()
    }
}

/// Sealed entries as a source for a run writer, newest first. Borrowed: the flush holds
/// them until its run is written, so they are not copied a second time.
pub(super) fn sealed_sources(sealed: &[Arc<Entries>]) -> Vec<Source<'_>> {
    sealed
        .iter()
        .rev()
        .map(|entries| -> Source<'_> {
            Box::new(
                entries
                    .iter()
                    .map(|(key, record)| Ok((key.clone(), *record))),
            )
        })
        .collect()
}

/// A snapshot's entries as a source that owns them.
fn entries_source(entries: Arc<Entries>) -> Source<'static> {
    let copied: Vec<_> = entries
        .iter()
        .map(|(key, record)| (key.clone(), *record))
        .collect();
    Box::new(copied.into_iter().map(Ok))
}
