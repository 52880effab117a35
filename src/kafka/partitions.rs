//! What the Kafka source knows about its partitions: which it owns, what is in flight,
//! and the commit point of each. Shared by the poll thread, the rebalance callbacks and
//! the acks the pipeline settles.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::source::Settle;
use crate::tracker::{CompletionTracker, PartitionId};

struct Owned {
    epoch: u64,
    /// Revoke in progress: no more dispatching, completions still count.
    draining: bool,
    /// True while this epoch owns the partition and is not draining. Each ack holds a
    /// copy, so the pipeline asks "revoked?" before every dispatch without the lock the
    /// poll thread takes for every message.
    dispatchable: Arc<AtomicBool>,
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
            let previous = state.owned.insert(
                partition.clone(),
                Owned {
                    epoch,
                    draining: false,
                    dispatchable: Arc::new(AtomicBool::new(true)),
                    outstanding: 0,
                },
            );
            // An assign without a revoke before it still ends the older epoch's acks.
            if let Some(previous) = previous {
                previous.dispatchable.store(false, Ordering::SeqCst);
            }
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
        let dispatchable = match self
            .lock()
            .owned
            .get_mut(&partition)
            .filter(|o| o.epoch == epoch)
        {
            Some(owned) => {
                owned.outstanding += 1;
                Arc::clone(&owned.dispatchable)
            }
            None => Arc::new(AtomicBool::new(false)),
        };
        KafkaAck {
            partitions: Arc::clone(self),
            partition,
            offset,
            epoch,
            dispatchable,
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
            // Only a drain waits, and it marks the partition draining (under this lock)
            // before it does: a wake per message would be a system call per message.
            if owned.draining {
                self.settled.notify_all();
            }
        }
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
                owned.dispatchable.store(false, Ordering::SeqCst);
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
            if let Some(owned) = state.owned.remove(partition) {
                owned.dispatchable.store(false, Ordering::SeqCst);
            }
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

/// The partition ids the poll thread has seen, so a record reuses its partition's id
/// (and topic name) instead of allocating them: this runs for every record.
#[derive(Default)]
pub(crate) struct PartitionIds {
    /// Records come in runs from one partition: the last one is checked first.
    last: Option<PartitionId>,
    by_topic: HashMap<Arc<str>, HashMap<i32, PartitionId>>,
    remembered: usize,
}

/// Partitions remembered at most; past it the list starts over (a pattern subscription
/// can see topics come and go).
const MAX_REMEMBERED: usize = 4096;

impl PartitionIds {
    pub(crate) fn get(&mut self, topic: &str, partition: i32) -> PartitionId {
        if let Some(last) = &self.last {
            if last.partition == partition && &*last.topic == topic {
                return last.clone();
            }
        }
        let known = self
            .by_topic
            .get(topic)
            .and_then(|partitions| partitions.get(&partition));
        let id = match known {
            Some(id) => id.clone(),
            None => self.remember(topic, partition),
        };
        self.last = Some(id.clone());
        id
    }

    fn remember(&mut self, topic: &str, partition: i32) -> PartitionId {
        if self.remembered >= MAX_REMEMBERED {
            self.by_topic.clear();
            self.remembered = 0;
        }
        let id = match self.by_topic.get_key_value(topic) {
            Some((name, _)) => PartitionId::new(Arc::clone(name), partition),
            None => PartitionId::new(topic, partition),
        };
        self.by_topic
            .entry(Arc::clone(&id.topic))
            .or_default()
            .insert(partition, id.clone());
        self.remembered += 1;
        id
    }
}

/// Settles one Kafka delivery against the partition bookkeeping.
pub(crate) struct KafkaAck {
    partitions: Arc<Partitions>,
    partition: PartitionId,
    offset: i64,
    epoch: u64,
    dispatchable: Arc<AtomicBool>,
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
        !self.dispatchable.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(topic: &str, n: i32) -> (Arc<Partitions>, PartitionId) {
        let partitions = Arc::new(Partitions::default());
        let id = PartitionId::new(topic, n);
        partitions.assign(std::slice::from_ref(&id));
        (partitions, id)
    }

    fn delivered(partitions: &Arc<Partitions>, id: &PartitionId, offset: i64) -> Box<KafkaAck> {
        let epoch = partitions.track(id, offset).expect("owned");
        Box::new(partitions.ack(id.clone(), offset, epoch))
    }

    #[test]
    fn acks_are_revoked_by_a_drain_a_revoke_and_a_new_assignment() {
        let (partitions, id) = owned("orders", 0);
        let ack = delivered(&partitions, &id, 0);
        assert!(!ack.is_revoked());
        partitions.drain(std::slice::from_ref(&id), Duration::ZERO);
        assert!(ack.is_revoked(), "draining: no more dispatching");

        let (partitions, id) = owned("orders", 1);
        let ack = delivered(&partitions, &id, 0);
        partitions.revoke(std::slice::from_ref(&id));
        assert!(ack.is_revoked(), "revoked");

        let (partitions, id) = owned("orders", 2);
        let older = delivered(&partitions, &id, 0);
        partitions.assign(std::slice::from_ref(&id));
        assert!(older.is_revoked(), "an older epoch's ack");
        assert!(!delivered(&partitions, &id, 1).is_revoked());
    }

    #[test]
    fn a_drain_returns_as_soon_as_the_last_delivery_settles() {
        let (partitions, id) = owned("orders", 0);
        let acks: Vec<_> = (0..3).map(|o| delivered(&partitions, &id, o)).collect();
        let settler = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            for ack in acks {
                ack.complete();
            }
        });
        let began = Instant::now();
        partitions.drain(std::slice::from_ref(&id), Duration::from_secs(30));
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "woken, not timed out"
        );
        settler.join().expect("settler");
        assert_eq!(partitions.to_commit(None), [(id, 3)]);
    }

    #[test]
    fn records_of_one_partition_share_its_id() {
        let mut ids = PartitionIds::default();
        let first = ids.get("orders", 0);
        let again = ids.get("orders", 0);
        assert!(Arc::ptr_eq(&first.topic, &again.topic));
        let other = ids.get("orders", 1);
        assert_eq!(other, PartitionId::new("orders", 1));
        assert!(Arc::ptr_eq(&first.topic, &other.topic), "one topic name");
        assert_eq!(ids.get("payments", 0), PartitionId::new("payments", 0));
        assert!(Arc::ptr_eq(&ids.get("orders", 0).topic, &first.topic));
    }
}
