//! A run: records written together (one flush, or the merge of adjacent runs), in key
//! order, as blocks whose sled keys start with the run's id, plus a marker that says the
//! run was written whole.

use std::hash::BuildHasher;

use sled::IVec;

use super::block::{find, push_entry, BlockEntries, BLOCK_BYTES};
use crate::store::error::{StoreError, StoreErrorKind};
use crate::store::filter::probes;
use crate::store::record::{millis, Record};
use crate::store::sled_open::sled_error;

/// Bytes of an encoded [`RunId`] at the start of every block key.
pub(super) const ID_LEN: usize = 24;

/// Which flushes a run holds, `first..=last` in flush order, and how many times a sweep
/// rewrote it since.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct RunId {
    pub first: u64,
    pub last: u64,
    pub rewrite: u64,
}

impl RunId {
    pub(super) fn encode(&self) -> [u8; ID_LEN] {
        let mut out = [0; ID_LEN];
        out[..8].copy_from_slice(&self.first.to_be_bytes());
        out[8..16].copy_from_slice(&self.last.to_be_bytes());
        out[16..].copy_from_slice(&self.rewrite.to_be_bytes());
        out
    }

    /// The id at the start of a block key or marker key.
    pub(super) fn decode(bytes: &[u8]) -> Option<Self> {
        let word = |at: usize| Some(u64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?));
        Some(Self {
            first: word(0)?,
            last: word(8)?,
            rewrite: word(16)?,
        })
    }

    /// Whether this run holds everything `other` held, so `other` is what a merge or a
    /// sweep's rewrite left behind when the process stopped before removing it.
    pub(super) fn supersedes(&self, other: &RunId) -> bool {
        let contains = self.first <= other.first && other.last <= self.last;
        let same_range = (self.first, self.last) == (other.first, other.last);
        contains && (!same_range || self.rewrite > other.rewrite)
    }
}

/// A Bloom filter over one run's keys, sized for it (about 1% false positives).
struct RunFilter {
    bits: Vec<u64>,
    mask: u64,
}

impl RunFilter {
    fn with_capacity(keys: u64) -> Self {
        let bits = keys.saturating_mul(10).next_power_of_two().max(64);
        Self {
            bits: vec![0; (bits / 64) as usize],
            mask: bits - 1,
        }
    }

    fn insert(&mut self, hash: u64) {
        // The probes borrow nothing of `self`, so the bits are set as they are computed.
        for (word, mask) in probes(hash, self.mask) {
            self.bits[word] |= mask;
        }
    }

    fn may_contain(&self, hash: u64) -> bool {
        probes(hash, self.mask).all(|(word, mask)| self.bits[word] & mask != 0)
    }
}

/// A run as the store keeps it in memory: where its blocks are and what they hold.
pub(crate) struct Run {
    pub(super) id: RunId,
    /// The sled key of each block in key order: the run id, then the block's first key.
    fences: Vec<IVec>,
    filter: RunFilter,
    pub(super) len: u64,
    /// The newest record time in the run (ms), for sweeps.
    pub(super) newest_ms: u64,
    /// The oldest record time in the run (ms); 0 for a crash record without a time.
    pub(super) oldest_ms: u64,
}

impl Run {
    /// The record of `key` (hashed with the store's hasher), if this run holds one.
    pub(super) fn lookup(
        &self,
        blocks: &sled::Tree,
        key: &[u8],
        hash: u64,
    ) -> Result<Option<Record>, StoreError> {
        if !self.filter.may_contain(hash) {
            return Ok(None);
        }
        let after = self.fences.partition_point(|fence| &fence[ID_LEN..] <= key);
        let Some(fence) = after.checked_sub(1).map(|i| &self.fences[i]) else {
            return Ok(None);
        };
        match blocks.get(fence).map_err(sled_error)? {
            Some(block) => find(&block, key),
            None => Err(missing_block(self.id)),
        }
    }

    /// Every entry, in key order.
    pub(super) fn entries<'a>(&'a self, blocks: &'a sled::Tree) -> RunEntries<'a> {
        RunEntries {
            run: self,
            blocks,
            next_block: 0,
            current: Vec::new().into_iter(),
        }
    }

    /// Removes the run's blocks and marker.
    pub(super) fn remove(&self, blocks: &sled::Tree, markers: &sled::Tree) -> sled::Result<()> {
        markers.remove(self.id.encode())?;
        for fence in &self.fences {
            blocks.remove(fence)?;
        }
        Ok(())
    }
}

fn missing_block(id: RunId) -> StoreError {
    StoreError::new(
        StoreErrorKind::Corrupt,
        format!("a block of record run {id:?} is missing"),
    )
}

/// The entries of a run in key order, read a block at a time.
pub(super) struct RunEntries<'a> {
    run: &'a Run,
    blocks: &'a sled::Tree,
    next_block: usize,
    current: std::vec::IntoIter<(Vec<u8>, Record)>,
}

impl RunEntries<'_> {
    fn load_block(&mut self, fence: &IVec) -> Result<(), StoreError> {
        let block = self
            .blocks
            .get(fence)
            .map_err(sled_error)?
            .ok_or_else(|| missing_block(self.run.id))?;
        let entries = BlockEntries::new(&block)
            .map(|entry| entry.map(|(key, record)| (key.to_vec(), record)))
            .collect::<Result<Vec<_>, _>>()?;
        self.current = entries.into_iter();
        Ok(())
    }
}

impl Iterator for RunEntries<'_> {
    type Item = Result<(Vec<u8>, Record), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(entry) = self.current.next() {
                return Some(Ok(entry));
            }
            let fence = self.run.fences.get(self.next_block)?;
            self.next_block += 1;
            if let Err(err) = self.load_block(fence) {
                self.next_block = self.run.fences.len();
                return Some(Err(err));
            }
        }
    }
}

/// Gathers what a [`Run`] keeps in memory, from entries given in key order.
pub(super) struct RunBuilder<'h, H> {
    run: Run,
    hasher: &'h H,
}

impl<'h, H: BuildHasher> RunBuilder<'h, H> {
    pub(super) fn new(id: RunId, capacity: u64, hasher: &'h H) -> Self {
        let run = Run {
            id,
            fences: Vec::new(),
            filter: RunFilter::with_capacity(capacity),
            len: 0,
            newest_ms: 0,
            oldest_ms: u64::MAX,
        };
        Self { run, hasher }
    }

    pub(super) fn note(&mut self, key: &[u8], record: &Record) {
        self.run.filter.insert(self.hasher.hash_one(key));
        self.run.len += 1;
        let at = record.at().map_or(0, millis);
        self.run.newest_ms = self.run.newest_ms.max(at);
        self.run.oldest_ms = self.run.oldest_ms.min(at);
    }

    pub(super) fn fence(&mut self, block_key: IVec) {
        self.run.fences.push(block_key);
    }

    pub(super) fn finish(mut self) -> Run {
        self.run.oldest_ms = self.run.oldest_ms.min(self.run.newest_ms);
        self.run
    }
}

/// Writes a run's blocks from entries given in key order, then its marker.
pub(super) struct RunWriter<'a, H> {
    blocks: &'a sled::Tree,
    builder: RunBuilder<'a, H>,
    block: Vec<u8>,
    block_key: Vec<u8>,
}

impl<'a, H: BuildHasher> RunWriter<'a, H> {
    pub(super) fn new(blocks: &'a sled::Tree, id: RunId, capacity: u64, hasher: &'a H) -> Self {
        Self {
            blocks,
            builder: RunBuilder::new(id, capacity, hasher),
            block: Vec::with_capacity(BLOCK_BYTES + 512),
            block_key: Vec::new(),
        }
    }

    pub(super) fn push(&mut self, key: &[u8], record: &Record) -> sled::Result<()> {
        if self.block.is_empty() {
            self.block_key.clear();
            self.block_key
                .extend_from_slice(&self.builder.run.id.encode());
            self.block_key.extend_from_slice(key);
        }
        push_entry(&mut self.block, key, record);
        self.builder.note(key, record);
        if self.block.len() >= BLOCK_BYTES {
            self.write_block()?;
        }
        Ok(())
    }

    fn write_block(&mut self) -> sled::Result<()> {
        let key = IVec::from(self.block_key.as_slice());
        self.blocks.insert(&key, self.block.as_slice())?;
        self.block.clear();
        self.builder.fence(key);
        Ok(())
    }

    /// Writes the last block and the marker saying how many records the run holds.
    pub(super) fn finish(mut self, markers: &sled::Tree) -> sled::Result<Run> {
        if !self.block.is_empty() {
            self.write_block()?;
        }
        let run = self.builder.finish();
        markers.insert(run.id.encode(), &run.len.to_be_bytes()[..])?;
        Ok(run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_supersedes_what_it_was_merged_or_rewritten_from() {
        let id = |first, last, rewrite| RunId {
            first,
            last,
            rewrite,
        };
        assert!(id(1, 4, 0).supersedes(&id(1, 2, 0)));
        assert!(id(1, 4, 0).supersedes(&id(3, 4, 5)));
        assert!(id(1, 4, 1).supersedes(&id(1, 4, 0)));
        assert!(!id(1, 4, 0).supersedes(&id(1, 4, 0)));
        assert!(!id(1, 4, 0).supersedes(&id(1, 4, 1)));
        assert!(!id(1, 4, 0).supersedes(&id(4, 5, 0)));
        assert_eq!(RunId::decode(&id(7, 9, 2).encode()), Some(id(7, 9, 2)));
    }

    #[test]
    fn the_filter_holds_what_was_inserted() {
        let hasher = std::hash::RandomState::new();
        let mut filter = RunFilter::with_capacity(10_000);
        for i in 0..10_000u32 {
            filter.insert(hasher.hash_one(i.to_be_bytes()));
        }
        assert!((0..10_000u32).all(|i| filter.may_contain(hasher.hash_one(i.to_be_bytes()))));
        let false_positives = (10_000..20_000u32)
            .filter(|i| filter.may_contain(hasher.hash_one(i.to_be_bytes())))
            .count();
        assert!(false_positives < 300, "{false_positives} false positives");
    }
}
