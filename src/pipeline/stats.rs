//! Counters the pipeline keeps about itself.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::breaker::BreakerState;

/// Live counters, updated by the pipeline.
#[derive(Default, Debug)]
pub(crate) struct Stats {
    pub received: AtomicU64,
    pub processed: AtomicU64,
    pub duplicates: AtomicU64,
    pub retries: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub parked: AtomicU64,
    pub crash_loops: AtomicU64,
    pub panics: AtomicU64,
    pub timeouts: AtomicU64,
    pub in_flight: AtomicU64,
    pub buffered: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A point-in-time copy of a pipeline's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Messages taken from the source.
    pub received: u64,
    /// Handled successfully.
    pub processed: u64,
    /// Skipped because their idempotency key was already settled.
    pub duplicates: u64,
    /// Retries scheduled (attempts after the first).
    pub retries: u64,
    /// Dead-lettered for any reason, parked ones included.
    pub dead_lettered: u64,
    /// Dead-lettered as `parked`.
    pub parked: u64,
    /// Dead-lettered as `crash-loop`.
    pub crash_loops: u64,
    /// Handler panics caught.
    pub panics: u64,
    /// Handler calls that timed out.
    pub timeouts: u64,
    /// Handler calls (with their retries) running now.
    pub in_flight: u64,
    /// Messages held now, running or waiting.
    pub buffered: u64,
    /// The circuit breaker's state.
    pub breaker: BreakerState,
}

impl Stats {
    pub(crate) fn snapshot(&self, breaker: BreakerState) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            received: get(&self.received),
            processed: get(&self.processed),
            duplicates: get(&self.duplicates),
            retries: get(&self.retries),
            dead_lettered: get(&self.dead_lettered),
            parked: get(&self.parked),
            crash_loops: get(&self.crash_loops),
            panics: get(&self.panics),
            timeouts: get(&self.timeouts),
            in_flight: get(&self.in_flight),
            buffered: get(&self.buffered),
            breaker,
        }
    }
}
