//! Per-key sequencing: items of one lane run one at a time in arrival order; lanes run
//! concurrently. A pure data structure; the pipeline drives it.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};

use bytes::Bytes;

/// What an item is sequenced by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Lane {
    /// Same ordering key: strictly one at a time, in arrival order.
    Ordered(Bytes),
    /// No ordering key, but the same idempotency key: serialised so that a duplicate
    /// arriving while its original runs is checked after the original settles.
    Deduplicated(Bytes),
    /// Neither key: runs as soon as there is room.
    Free,
}

/// A lane exists while one of its items is ready or running; `waiting` holds the rest.
struct LaneQueue<T> {
    waiting: VecDeque<T>,
}

/// Lanes of waiting items plus a queue of items ready to run.
pub struct Sequencer<T> {
    /// foldhash: randomly seeded, and a quarter of SipHash's cost on short keys; every
    /// message is looked up here when it comes in and when it finishes.
    lanes: HashMap<Lane, LaneQueue<T>, foldhash::fast::RandomState>,
    ready: VecDeque<(Lane, T)>,
    len: usize,
}

impl<T> Default for Sequencer<T> {
    fn default() -> Self {
        Self {
            lanes: HashMap::default(),
            ready: VecDeque::new(),
            len: 0,
        }
    }
}

impl<T> Sequencer<T> {
    /// An empty sequencer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Items held, waiting, ready or running (until [`Sequencer::finish`]).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds an item at the back of its lane.
    pub fn push(&mut self, lane: Lane, item: T) {
        self.len += 1;
        if lane == Lane::Free {
            self.ready.push_back((lane, item));
            return;
        }
        match self.lanes.entry(lane) {
            Entry::Occupied(mut queue) => queue.get_mut().waiting.push_back(item),
            Entry::Vacant(vacant) => {
                let lane = vacant.key().clone();
                vacant.insert(LaneQueue {
                    waiting: VecDeque::new(),
                });
                self.ready.push_back((lane, item));
            }
        }
    }

    /// The next item allowed to run. Its lane stays busy until [`Sequencer::finish`].
    pub fn pop_ready(&mut self) -> Option<(Lane, T)> {
        self.ready.pop_front()
    }

    /// Marks the running item of `lane` finished and readies the lane's next item.
    pub fn finish(&mut self, lane: &Lane) {
        self.len = self.len.saturating_sub(1);
        if *lane == Lane::Free {
            return;
        }
        let Some(queue) = self.lanes.get_mut(lane) else {
            return;
        };
        match queue.waiting.pop_front() {
            Some(next) => self.ready.push_back((lane.clone(), next)),
            None => {
                self.lanes.remove(lane);
            }
        }
    }

    /// Removes every item not yet running for which `drop` is true (a revoked partition's
    /// items, say) and returns them. Running items are untouched.
    pub fn drain_waiting(&mut self, mut drop: impl FnMut(&T) -> bool) -> Vec<T> {
        let mut removed = Vec::new();
        for queue in self.lanes.values_mut() {
            let (gone, kept): (VecDeque<T>, VecDeque<T>) =
                queue.waiting.drain(..).partition(|item| drop(item));
            queue.waiting = kept;
            self.len -= gone.len();
            removed.extend(gone);
        }
        for (lane, item) in std::mem::take(&mut self.ready) {
            if drop(&item) {
                removed.push(item);
                // The lane's head leaves without running: its next item takes its place.
                self.finish(&lane);
            } else {
                self.ready.push_back((lane, item));
            }
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(k: &str) -> Lane {
        Lane::Ordered(Bytes::copy_from_slice(k.as_bytes()))
    }

    #[test]
    fn same_lane_waits_for_finish() {
        let mut seq = Sequencer::new();
        seq.push(lane("a"), 1);
        seq.push(lane("a"), 2);
        seq.push(lane("b"), 3);
        assert_eq!(seq.pop_ready(), Some((lane("a"), 1)));
        assert_eq!(seq.pop_ready(), Some((lane("b"), 3)));
        assert_eq!(seq.pop_ready(), None);
        seq.finish(&lane("a"));
        assert_eq!(seq.pop_ready(), Some((lane("a"), 2)));
        assert_eq!(seq.len(), 2);
    }

    #[test]
    fn free_items_run_at_once() {
        let mut seq = Sequencer::new();
        seq.push(Lane::Free, 1);
        seq.push(Lane::Free, 2);
        assert_eq!(seq.pop_ready().map(|(_, i)| i), Some(1));
        assert_eq!(seq.pop_ready().map(|(_, i)| i), Some(2));
    }

    #[test]
    fn drain_keeps_running_items_and_order() {
        let mut seq = Sequencer::new();
        for i in 0..6 {
            seq.push(lane(if i % 2 == 0 { "even" } else { "odd" }), i);
        }
        let (running_lane, running) = seq.pop_ready().unwrap();
        assert_eq!(running, 0);
        let removed = seq.drain_waiting(|i| *i >= 3);
        assert_eq!(removed.len(), 3);
        seq.finish(&running_lane);
        let mut rest = Vec::new();
        while let Some((l, i)) = seq.pop_ready() {
            rest.push(i);
            seq.finish(&l);
            while let Some((l2, j)) = seq.pop_ready() {
                rest.push(j);
                seq.finish(&l2);
            }
        }
        rest.sort();
        assert_eq!(rest, vec![1, 2]);
        assert!(seq.is_empty());
    }
}

#[cfg(test)]
mod proptests;
