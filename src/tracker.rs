//! Completion tracking for offset-based sources: per partition, the highest offset below
//! which every message is complete, the only safe commit point.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;

/// A topic partition.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionId {
    /// Topic name.
    pub topic: Arc<str>,
    /// Partition number.
    pub partition: i32,
}

impl PartitionId {
    /// A partition of `topic`.
    pub fn new(topic: impl Into<Arc<str>>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// An offset was tracked out of order: offsets of a partition must arrive increasing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("offset {offset} of {partition} arrived after offset {last}")]
pub struct OffsetOutOfOrder {
    /// The partition.
    pub partition: PartitionId,
    /// The offset that arrived.
    pub offset: i64,
    /// The last offset tracked before it.
    pub last: i64,
}

#[derive(Default)]
struct PartitionTrack {
    /// Offsets tracked and not yet passed by the commit point, increasing, with done flags.
    pending: VecDeque<(i64, bool)>,
    /// One past the last offset the commit point passed.
    floor: Option<i64>,
    last: Option<i64>,
}

impl PartitionTrack {
    fn commit_point(&self) -> Option<i64> {
        match self.pending.front() {
            Some(&(offset, _)) => Some(offset),
            None => self.floor,
        }
    }

    fn complete(&mut self, offset: i64) -> bool {
        let Ok(index) = self.pending.binary_search_by_key(&offset, |&(o, _)| o) else {
            return false;
        };
        if self.pending[index].1 {
            return false;
        }
        self.pending[index].1 = true;
        while let Some(&(front, true)) = self.pending.front() {
            self.floor = Some(front + 1);
            self.pending.pop_front();
        }
        true
    }
}

/// Tracks which offsets are in flight and which are complete, per partition.
///
/// Offsets may have gaps (compaction, transaction markers): a commit point only ever
/// stands on an offset that was tracked, or one past the last completed one.
#[derive(Default)]
pub struct CompletionTracker {
    partitions: HashMap<PartitionId, PartitionTrack>,
}

impl CompletionTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts tracking a received offset. Offsets of one partition must increase.
    pub fn track(&mut self, partition: &PartitionId, offset: i64) -> Result<(), OffsetOutOfOrder> {
        let track = self.partitions.entry(partition.clone()).or_default();
        if let Some(last) = track.last {
            if offset <= last {
                return Err(OffsetOutOfOrder {
                    partition: partition.clone(),
                    offset,
                    last,
                });
            }
        }
        track.last = Some(offset);
        track.pending.push_back((offset, false));
        Ok(())
    }

    /// Marks a tracked offset complete. Returns false for an offset not tracked (or from
    /// a revoked partition) or already complete.
    pub fn complete(&mut self, partition: &PartitionId, offset: i64) -> bool {
        self.partitions
            .get_mut(partition)
            .is_some_and(|track| track.complete(offset))
    }

    /// The offset to commit for `partition`: every offset below it is complete. `None`
    /// before anything was tracked.
    pub fn commit_point(&self, partition: &PartitionId) -> Option<i64> {
        self.partitions.get(partition)?.commit_point()
    }

    /// Commit points of every tracked partition.
    pub fn commit_points(&self) -> Vec<(PartitionId, i64)> {
        let mut points: Vec<_> = self
            .partitions
            .iter()
            .filter_map(|(p, t)| Some((p.clone(), t.commit_point()?)))
            .collect();
        points.sort();
        points
    }

    /// Offsets tracked and not yet passed by the commit point.
    pub fn pending(&self, partition: &PartitionId) -> usize {
        self.partitions
            .get(partition)
            .map_or(0, |t| t.pending.len())
    }

    /// Forgets a partition (revoked): later completions for it are ignored.
    pub fn revoke(&mut self, partition: &PartitionId) -> Option<i64> {
        self.partitions.remove(partition)?.commit_point()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_point_waits_for_the_lowest_incomplete() {
        let p = PartitionId::new("t", 0);
        let mut tracker = CompletionTracker::new();
        for offset in [10, 11, 12, 15] {
            tracker.track(&p, offset).unwrap();
        }
        assert_eq!(tracker.commit_point(&p), Some(10));
        assert!(tracker.complete(&p, 11));
        assert!(tracker.complete(&p, 15));
        assert_eq!(tracker.commit_point(&p), Some(10));
        assert!(tracker.complete(&p, 10));
        assert_eq!(tracker.commit_point(&p), Some(12));
        assert!(tracker.complete(&p, 12));
        assert_eq!(tracker.commit_point(&p), Some(16));
        assert!(!tracker.complete(&p, 12), "second completion is ignored");
    }

    #[test]
    fn out_of_order_tracking_is_refused() {
        let p = PartitionId::new("t", 1);
        let mut tracker = CompletionTracker::new();
        tracker.track(&p, 5).unwrap();
        let err = tracker.track(&p, 5).unwrap_err();
        assert!(err.to_string().contains("t/1"));
    }

    #[test]
    fn revoked_partitions_ignore_completions() {
        let p = PartitionId::new("t", 2);
        let mut tracker = CompletionTracker::new();
        tracker.track(&p, 0).unwrap();
        assert_eq!(tracker.revoke(&p), Some(0));
        assert!(!tracker.complete(&p, 0));
        assert_eq!(tracker.commit_point(&p), None);
    }
}
