//! The consumer's rebalance hooks and offset commits: what runs on revoke and assign, and
//! committing only what the completion tracker says is done.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::partitions::Partitions;
use crate::tracker::PartitionId;

/// Hooks into rebalances: drain and commit on revoke, start fresh on assign.
pub(super) struct SeawallContext {
    pub(super) partitions: Arc<Partitions>,
    pub(super) revoke_timeout: Duration,
    pub(super) reassigned: Arc<AtomicBool>,
    /// False from librdkafka's "all brokers down" until the poll thread reaches the
    /// cluster again.
    pub(super) connected: Arc<AtomicBool>,
}

impl ClientContext for SeawallContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.connected.store(false, Ordering::SeqCst);
        }
        tracing::warn!(%error, reason, "Kafka client error");
    }
}

fn partition_ids(list: &TopicPartitionList) -> Vec<PartitionId> {
    list.elements()
        .iter()
        .map(|e| PartitionId::new(e.topic(), e.partition()))
        .collect()
}

impl ConsumerContext for SeawallContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let revoked = partition_ids(list);
            tracing::info!(partitions = ?revoked, "partitions revoked: finishing their running messages");
            self.partitions.drain(&revoked, self.revoke_timeout);
            commit(consumer, &self.partitions, Some(&revoked), CommitMode::Sync);
            self.partitions.revoke(&revoked);
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            let assigned = partition_ids(list);
            tracing::info!(partitions = ?assigned, "partitions assigned");
            self.partitions.assign(&assigned);
            self.reassigned.store(true, Ordering::SeqCst);
        }
    }
}

/// Commits the commit points that moved; on failure they stay uncommitted and are tried
/// again next time.
pub(super) fn commit<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    partitions: &Partitions,
    only: Option<&[PartitionId]>,
    mode: CommitMode,
) {
    let offsets = partitions.to_commit(only);
    if offsets.is_empty() {
        return;
    }
    let mut list = TopicPartitionList::new();
    for (partition, offset) in &offsets {
        let added = list.add_partition_offset(
            &partition.topic,
            partition.partition,
            Offset::Offset(*offset),
        );
        if let Err(err) = added {
            tracing::warn!(error = %err, %partition, "bad offset to commit");
        }
    }
    match consumer.commit(&list, mode) {
        Ok(()) => partitions.committed(&offsets),
        Err(err) => {
            tracing::warn!(error = %err, "offset commit failed; retrying at the next interval")
        }
    }
}
