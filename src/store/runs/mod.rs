//! Settled and crash records, written in runs: each flush writes the records settled
//! since the last one as a run of sorted blocks, and a background merge folds adjacent
//! runs together so lookups read few of them.
//!
//! This is what lets the store cost one sled insert per few KiB of records instead of one
//! per message (sled's insert is ~10 µs of CPU, more than the rest of the pipeline's work
//! on a message). Runs are kept newest first, their size classes (powers of
//! [`FAN_IN`], sixteen) never growing towards the newer end; sixteen adjacent runs of
//! one class are merged into one, so a record is rewritten about log16(records / flush
//! size) times in its life, and there are at most fifteen runs per class (never more
//! than [`MAX_RUNS`] in all).
//!
//! A run is written whole before it counts: its blocks, then a marker with its size, then
//! a flush. At open, blocks without a marker (a flush or merge the process died in) are
//! removed, as are runs a finished merge or rewrite superseded.

mod block;
mod load;
mod merged;
mod run;

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::SystemTime;

use foldhash::quality::RandomState;

pub(crate) use merged::{Entry, Merged, Source};
pub(crate) use run::Run;
use run::{RunId, RunWriter};

use super::error::StoreError;
use super::filter::KeyFilter;
use super::record::{millis, Record};
use super::sled_open::{sled_error, Trees};

/// How many runs of about the same size a merge folds into one: each record is
/// rewritten about log16(records / records per flush) times. Merging is most of the
/// store's CPU per message after the journal: eight rather than four halved it (the
/// Kafka bench: 64% → 71% of the plain consumer, median of seven runs each), sixteen
/// rather than eight takes a quarter off again at the design load (1.7 million keys in
/// flushes of a few hundred: 3.1 rewrites instead of 4.2; the bench: 78% → 90%, median
/// of six runs each, interleaved, 11.4 → 9.7 µs of CPU per message). Only a key the
/// store may hold is looked up in the runs, where each run answers from an in-memory
/// filter first, and a record is still read from one block.
const FAN_IN: usize = 16;

/// Runs beyond which the smallest adjacent pair is merged whatever their sizes, so
/// flushes of very different sizes cannot pile up runs a lookup has to check.
const MAX_RUNS: usize = 32;

/// The runs of a store, newest first.
pub(super) struct RecordRuns {
    /// Held for reading across a lookup's block reads, so blocks are removed only from
    /// runs no lookup can reach any more.
    runs: RwLock<Vec<Arc<Run>>>,
    next_flush: AtomicU64,
    hasher: RandomState,
    /// One merge or sweep at a time: each replaces runs it read before.
    maintenance: Mutex<()>,
}

impl RecordRuns {
    /// Reads the runs on disk, putting every key into `filter`.
    pub(super) fn load(trees: &Trees, filter: &KeyFilter) -> Result<Self, StoreError> {
        let hasher = RandomState::default();
        let runs = load::load_runs(trees, &hasher, filter)?;
        let next = runs.iter().map(|r| r.id.last + 1).max().unwrap_or(1);
        Ok(Self {
            runs: RwLock::new(runs.into_iter().map(Arc::new).collect()),
            next_flush: AtomicU64::new(next),
            hasher,
            maintenance: Mutex::new(()),
        })
    }

    /// Reads the runs again, from a reopened database.
    pub(super) fn reload(&self, trees: &Trees, filter: &KeyFilter) -> Result<(), StoreError> {
        let _one = self.maintenance();
        let runs = load::load_runs(trees, &self.hasher, filter)?;
        let next = runs.iter().map(|r| r.id.last + 1).max().unwrap_or(1);
        self.next_flush.fetch_max(next, Ordering::SeqCst);
        *self.runs.write().unwrap_or_else(|p| p.into_inner()) =
            runs.into_iter().map(Arc::new).collect();
        Ok(())
    }

    fn read(&self) -> RwLockReadGuard<'_, Vec<Arc<Run>>> {
        // Replaced whole or edited in one step: a poisoned lock holds a consistent list.
        self.runs.read().unwrap_or_else(|p| p.into_inner())
    }

    fn maintenance(&self) -> std::sync::MutexGuard<'_, ()> {
        self.maintenance.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many runs there are.
    pub(super) fn count(&self) -> usize {
        self.read().len()
    }

    /// The newest record of `key` in the runs.
    pub(super) fn lookup(&self, trees: &Trees, key: &[u8]) -> Result<Option<Record>, StoreError> {
        let hash = self.hasher.hash_one(key);
        for run in self.read().iter() {
            if let Some(record) = run.lookup(&trees.blocks, key, hash)? {
                return Ok(Some(record));
            }
        }
        Ok(None)
    }

    /// Writes `entries` (in key order, at most `capacity`) as the run of a new flush. It
    /// counts once [`publish`](Self::publish)ed after the flush made it durable.
    pub(super) fn write_flush(
        &self,
        trees: &Trees,
        entries: impl Iterator<Item = Result<Entry, StoreError>>,
        capacity: u64,
    ) -> Result<Option<Run>, StoreError> {
        let flush = self.next_flush.fetch_add(1, Ordering::SeqCst);
        let id = RunId {
            first: flush,
            last: flush,
            rewrite: 0,
        };
        self.write_run(trees, id, entries, capacity)
    }

    fn write_run(
        &self,
        trees: &Trees,
        id: RunId,
        entries: impl Iterator<Item = Result<Entry, StoreError>>,
        capacity: u64,
    ) -> Result<Option<Run>, StoreError> {
        let mut writer = RunWriter::new(&trees.blocks, id, capacity, &self.hasher);
        let mut written = false;
        for entry in entries {
            let (key, record) = entry?;
            writer.push(&key, &record).map_err(sled_error)?;
            written = true;
        }
        if !written {
            return Ok(None);
        }
        writer.finish(&trees.markers).map(Some).map_err(sled_error)
    }

    /// Makes a durable flush run visible to lookups, as the newest.
    pub(super) fn publish(&self, run: Run) {
        let mut runs = self.runs.write().unwrap_or_else(|p| p.into_inner());
        runs.insert(0, Arc::new(run));
    }

    /// Puts `new` where `old` (adjacent runs, newest first) were.
    fn replace(&self, old: &[&Arc<Run>], new: Option<Run>) {
        let mut runs = self.runs.write().unwrap_or_else(|p| p.into_inner());
        let at = runs
            .iter()
            .position(|run| old.iter().any(|o| Arc::ptr_eq(run, o)));
        runs.retain(|run| !old.iter().any(|o| Arc::ptr_eq(run, o)));
        if let (Some(at), Some(new)) = (at, new) {
            runs.insert(at, Arc::new(new));
        }
    }

    /// The adjacent runs to merge next, newest first. Size classes (powers of
    /// [`FAN_IN`]) are kept from growing towards newer runs: a run of a larger class
    /// than the older one beside it is merged with it (a flush larger than the one
    /// before, or a small run a merge overtook). Then the oldest [`FAN_IN`] adjacent runs
    /// of one class are merged; past [`MAX_RUNS`] runs, the adjacent pair smallest
    /// together.
    fn next_merge(&self) -> Option<Vec<Arc<Run>>> {
        let runs = self.read();
        let class = |run: &Arc<Run>| run.len.max(1).ilog2() / FAN_IN.ilog2();
        let inverted = runs
            .windows(2)
            .rposition(|pair| class(&pair[0]) > class(&pair[1]));
        let similar = || {
            runs.windows(FAN_IN)
                .rposition(|window| window.iter().all(|run| class(run) == class(&window[0])))
        };
        let (at, count) = match (inverted, similar()) {
            (Some(at), _) => (at, 2),
            (None, Some(at)) => (at, FAN_IN),
            (None, None) if runs.len() > MAX_RUNS => {
                let pair_sizes = runs.windows(2).map(|pair| pair[0].len + pair[1].len);
                let at = pair_sizes.enumerate().min_by_key(|(_, size)| *size)?.0;
                (at, 2)
            }
            (None, None) => return None,
        };
        Some(runs[at..at + count].to_vec())
    }

    /// Merges one set of runs if one is due; returns whether it did.
    pub(super) fn merge_once(&self, trees: &Trees) -> Result<bool, StoreError> {
        let _one = self.maintenance();
        let Some(inputs) = self.next_merge() else {
            return Ok(false);
        };
        let (Some(newest), Some(oldest)) = (inputs.first(), inputs.last()) else {
            return Ok(false);
        };
        let id = RunId {
            first: oldest.id.first,
            last: newest.id.last,
            rewrite: 0,
        };
        let sources: Vec<Source<'_>> = inputs
            .iter()
            .map(|run| Box::new(run.entries(&trees.blocks)) as Source<'_>)
            .collect();
        let capacity = inputs.iter().map(|run| run.len).sum();
        let merged = self.write_run(trees, id, Merged::new(sources), capacity)?;
        // Durable before the inputs go; should the process stop before they do, the
        // next open removes them as superseded.
        trees.db.flush().map_err(sled_error)?;
        self.replace(&inputs.iter().collect::<Vec<_>>(), merged);
        for run in &inputs {
            run.remove(&trees.blocks, &trees.markers)
                .map_err(sled_error)?;
        }
        Ok(true)
    }

    /// Removes records older than `older_than`: whole runs when all of theirs are, by
    /// rewriting a run otherwise. Returns how many records went.
    pub(super) fn sweep(&self, trees: &Trees, older_than: SystemTime) -> Result<u64, StoreError> {
        let _one = self.maintenance();
        // Records hold whole milliseconds: one is older than `older_than` if below this.
        let cut = millis(older_than)
            + u64::from(older_than > super::record::from_millis(millis(older_than)));
        let expired = |record: &Record| record.at().map_or(0, millis) < cut;
        let runs: Vec<Arc<Run>> = self.read().clone();
        let mut removed = 0;
        for run in runs.iter().filter(|run| run.oldest_ms < cut) {
            let mut dropped = 0;
            let kept = if run.newest_ms < cut {
                dropped = run.len;
                None
            } else {
                let id = RunId {
                    rewrite: run.id.rewrite + 1,
                    ..run.id
                };
                let entries = run.entries(&trees.blocks).filter(|entry| {
                    let gone = entry.as_ref().is_ok_and(|(_, record)| expired(record));
                    dropped += u64::from(gone);
                    !gone
                });
                let kept = self.write_run(trees, id, entries, run.len)?;
                trees.db.flush().map_err(sled_error)?;
                kept
            };
            self.replace(&[run], kept);
            run.remove(&trees.blocks, &trees.markers)
                .map_err(sled_error)?;
            removed += dropped;
        }
        Ok(removed)
    }

    /// Every record, newest of each key, with `newer` (newest first) in front of the runs.
    pub(super) fn for_each(
        &self,
        trees: &Trees,
        newer: Vec<Source<'_>>,
        mut each: impl FnMut(&[u8], &Record),
    ) -> Result<(), StoreError> {
        let runs = self.read();
        let mut sources = newer;
        for run in runs.iter() {
            sources.push(Box::new(run.entries(&trees.blocks)));
        }
        for entry in Merged::new(sources) {
            let (key, record) = entry?;
            each(&key, &record);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
