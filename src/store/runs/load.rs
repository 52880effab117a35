//! Reading the runs on disk at open: their fences and filters are rebuilt from the
//! blocks, and what a stopped flush, merge or sweep left behind is removed.

use std::collections::HashMap;
use std::hash::BuildHasher;

use sled::IVec;

use super::block::BlockEntries;
use super::run::{Run, RunBuilder, RunId, ID_LEN};
use crate::store::error::StoreError;
use crate::store::filter::KeyFilter;
use crate::store::sled_open::{sled_error, Trees};

/// The runs on disk, newest first, with every key put into `filter`.
pub(super) fn load_runs<H: BuildHasher>(
    trees: &Trees,
    hasher: &H,
    filter: &KeyFilter,
) -> Result<Vec<Run>, StoreError> {
    let mut sizes = HashMap::new();
    for marker in trees.markers.iter() {
        let (key, value) = marker.map_err(sled_error)?;
        let size = value.as_ref().try_into().map(u64::from_be_bytes);
        match (RunId::decode(&key), size) {
            (Some(id), Ok(size)) if key.len() == ID_LEN => sizes.insert(id, (key, size)),
            _ => {
                tracing::warn!(marker = ?key, "removing an unreadable record-run marker");
                trees.markers.remove(&key).map_err(sled_error)?;
                None
            }
        };
    }
    let mut loader = Loader {
        hasher,
        filter,
        sizes: &sizes,
        runs: Vec::new(),
        current: None,
        discard: Vec::new(),
    };
    for block in trees.blocks.iter() {
        let (key, block) = block.map_err(sled_error)?;
        loader.block(key, &block);
    }
    loader.finish_run();
    for key in &loader.discard {
        trees.blocks.remove(key).map_err(sled_error)?;
    }
    let mut runs = loader.runs;
    remove_superseded(trees, &mut runs)?;
    for (id, (key, _)) in &sizes {
        if !runs.iter().any(|run| run.id == *id) {
            trees.markers.remove(key).map_err(sled_error)?;
        }
    }
    runs.sort_by_key(|run| std::cmp::Reverse(run.id.last));
    Ok(runs)
}

/// A run being read: its builder and the size its marker gives, or `None` for a run
/// without a marker.
type Reading<'a, H> = (RunId, Option<(RunBuilder<'a, H>, u64)>);

struct Loader<'a, H> {
    hasher: &'a H,
    filter: &'a KeyFilter,
    sizes: &'a HashMap<RunId, (IVec, u64)>,
    runs: Vec<Run>,
    /// The run being read, or `None` for blocks of a run without a marker.
    current: Option<Reading<'a, H>>,
    /// Blocks to remove: of runs never finished, or unreadable.
    discard: Vec<IVec>,
}

impl<'a, H: BuildHasher> Loader<'a, H> {
    fn block(&mut self, key: IVec, block: &[u8]) {
        let Some(id) = RunId::decode(&key) else {
            tracing::warn!(block = ?key, "removing a record block with an unreadable key");
            self.discard.push(key);
            return;
        };
        if self.current.as_ref().map(|(current, _)| *current) != Some(id) {
            self.finish_run();
            let builder = self
                .sizes
                .get(&id)
                .map(|(_, size)| (RunBuilder::new(id, *size, self.hasher), *size));
            self.current = Some((id, builder));
        }
        let Some((_, Some((builder, _)))) = &mut self.current else {
            self.discard.push(key); // A flush or merge the process stopped in.
            return;
        };
        let entries = BlockEntries::new(block).collect::<Result<Vec<_>, StoreError>>();
        match entries {
            Ok(entries) => {
                for (entry_key, record) in entries {
                    builder.note(entry_key, &record);
                    self.filter.insert(entry_key);
                }
                builder.fence(key);
            }
            Err(err) => {
                tracing::error!(error = %err, run = ?id, "removing an unreadable record block: the idempotency records in it are lost");
                self.discard.push(key);
            }
        }
    }

    fn finish_run(&mut self) {
        if let Some((id, Some((builder, size)))) = self.current.take() {
            let run = builder.finish();
            if run.len != size {
                tracing::warn!(run = ?id, expected = size, found = run.len, "a record run holds fewer records than written");
            }
            self.runs.push(run);
        }
    }
}

/// Removes runs a merge or rewrite replaced but did not get to remove.
fn remove_superseded(trees: &Trees, runs: &mut Vec<Run>) -> Result<(), StoreError> {
    let superseded: Vec<usize> = (0..runs.len())
        .filter(|&i| runs.iter().any(|other| other.id.supersedes(&runs[i].id)))
        .collect();
    for &i in superseded.iter().rev() {
        let run = runs.remove(i);
        run.remove(&trees.blocks, &trees.markers)
            .map_err(sled_error)?;
    }
    Ok(())
}
