//! What the source tells about itself while it runs: lag per partition and whether the
//! cluster answers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::tracker::PartitionId;

/// Per-partition lag: the high watermark less the commit point.
#[derive(Clone, Default)]
pub struct Lag(pub(super) Arc<Mutex<Vec<(PartitionId, i64)>>>);

impl Lag {
    /// Lag of every owned partition, as of the last measurement (every few seconds).
    pub fn get(&self) -> Vec<(PartitionId, i64)> {
        self.0.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

/// Whether the consumer reaches its cluster now (false from librdkafka's "all brokers
/// down" until a metadata request succeeds again), for readiness checks.
#[derive(Clone, Debug)]
pub struct Reachable(pub(super) Arc<AtomicBool>);

impl Reachable {
    /// True while the cluster answers.
    pub fn is_reachable(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}
