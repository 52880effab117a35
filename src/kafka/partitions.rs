//! What the Kafka source knows about its partitions: which it owns, what is in flight,
//! and the commit point of each. Shared by the poll thread, the rebalance callbacks and
//! the acks the pipeline settles.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::source::Settle;
use crate::tracker::{CompletionTracker, PartitionId};

struct Owned {
    epoch: u64,
    /// Revoke in progress: no more dispatching, completions still count.
    draining: bool,
    /// Deliveries handed to the pipeline and not yet completed or abandoned.
    outstanding: usize,
}

#[derive(Default)]
struct State {
    tracker: CompletionTracker,
    owned: HashMap<PartitionId, Owned>,
    committed: HashMap<PartitionId, i64>,
    next_epoch: u64,
}

/// Partition bookkeeping behind one lock.
#[derive(Default)]
pub(crate) struct Partitions {
    state: Mutex<State>,
    settled: Condvar,
}

impl Partitions {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update is a few map operations with nothing that can panic between them.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Partitions newly assigned to this consumer.
    pub(crate) fn assign(&self, partitions: &[PartitionId]) {
        let mut state = self.lock();
        for partition in partitions {
            state.next_epoch += 1;
            let epoch = state.next_epoch;
            state.tracker.revoke(partition);
            state.committed.remove(partition);
            state.owned.insert(
                partition.clone(),
                Owned {
                    epoch,
                    draining: false,
                    outstanding: 0,
                },
            );
        }
    }

    /// Starts tracking a fetched offset; returns the partition's epoch, or `None` if the
    /// partition is not (or no longer) owned, in which case the message is skipped.
    pub(crate) fn track(&self, partition: &PartitionId, offset: i64) -> Option<u64> {
        let mut state = self.lock();
        let epoch = state.owned.get(partition).filter(|o| !o.draining)?.epoch;
        if let Err(err) = state.tracker.track(partition, offset) {
            // A rewind (seek, reassignment from an older commit): start this partition's
            // tracking afresh from here.
            tracing::warn!(error = %err, "offsets went back; restarting the partition's tracking");
            state.tracker.revoke(partition);
            let _ = state.tracker.track(partition, offset);
        }
        Some(epoch)
    }

    /// An ack for a tracked offset, counted as handed to the pipeline.
    pub(crate) fn ack(
        self: &Arc<Self>,
        partition: PartitionId,
        offset: i64,
        epoch: u64,
    ) -> KafkaAck {
        if let Some(owned) = self
            .lock()
            .owned
            .get_mut(&partition)
            .filter(|o| o.epoch == epoch)
        {
            owned.outstanding += 1;
        }
        KafkaAck {
            partitions: Arc::clone(self),
            partition,
            offset,
            epoch,
        }
    }

    fn settle(&self, partition: &PartitionId, offset: i64, epoch: u64, completed: bool) {
        let mut state = self.lock();
        let State { owned, tracker, .. } = &mut *state;
        if let Some(owned) = owned.get_mut(partition).filter(|o| o.epoch == epoch) {
            owned.outstanding = owned.outstanding.saturating_sub(1);
            if completed {
                tracker.complete(partition, offset);
            }
            self.settled.notify_all();
        }
    }

    fn is_revoked(&self, partition: &PartitionId, epoch: u64) -> bool {
        !self
            .lock()
            .owned
            .get(partition)
            .is_some_and(|o| o.epoch == epoch && !o.draining)
    }

    /// Offsets to commit: each owned partition's commit point that moved since the last
    /// successful commit. Partitions being revoked are included when `draining` is set.
    pub(crate) fn to_commit(&self, only: Option<&[PartitionId]>) -> Vec<(PartitionId, i64)> {
        let state = self.lock();
        state
            .owned
            .keys()
            .filter(|p| only.is_none_or(|only| only.contains(p)))
            .filter_map(|p| Some((p.clone(), state.tracker.commit_point(p)?)))
            .filter(|(p, point)| state.committed.get(p) != Some(point))
            .collect()
    }

    /// Records a successful commit.
    pub(crate) fn committed(&self, offsets: &[(PartitionId, i64)]) {
        let mut state = self.lock();
        for (partition, offset) in offsets {
            if state.owned.contains_key(partition) {
                state.committed.insert(partition.clone(), *offset);
            }
        }
    }

    /// Stops dispatching `partitions` and waits up to `timeout` for what the pipeline
    /// holds of them to settle.
    pub(crate) fn drain(&self, partitions: &[PartitionId], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        for partition in partitions {
            if let Some(owned) = state.owned.get_mut(partition) {
                owned.draining = true;
            }
        }
        loop {
            let busy: usize = partitions
                .iter()
                .filter_map(|p| state.owned.get(p))
                .map(|o| o.outstanding)
                .sum();
            let now = Instant::now();
            if busy == 0 || now >= deadline {
                if busy > 0 {
                    tracing::warn!(
                        busy,
                        "revoke timeout: committing what is complete and moving on"
                    );
                }
                return;
            }
            state = match self.settled.wait_timeout(state, deadline - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Forgets revoked partitions: later completions for them are ignored.
    pub(crate) fn revoke(&self, partitions: &[PartitionId]) {
        let mut state = self.lock();
        for partition in partitions {
            state.owned.remove(partition);
            state.committed.remove(partition);
            state.tracker.revoke(partition);
        }
    }

    /// Owned partitions and their commit points, if anything was fetched (for lag).
    pub(crate) fn commit_points(&self) -> Vec<(PartitionId, Option<i64>)> {
        let state = self.lock();
        let mut points: Vec<_> = state
            .owned
            .keys()
            .map(|p| (p.clone(), state.tracker.commit_point(p)))
            .collect();
        points.sort();
        points
    }
}

/// Settles one Kafka delivery against the partition bookkeeping.
pub(crate) struct KafkaAck {
    partitions: Arc<Partitions>,
    partition: PartitionId,
    offset: i64,
    epoch: u64,
}

impl Settle for KafkaAck {
    fn complete(self: Box<Self>) {
        self.partitions
            .settle(&self.partition, self.offset, self.epoch, true);
    }

    fn abandon(self: Box<Self>) {
        self.partitions
            .settle(&self.partition, self.offset, self.epoch, false);
    }

    fn is_revoked(&self) -> bool {
        self.partitions.is_revoked(&self.partition, self.epoch)
    }
}
