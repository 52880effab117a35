//! A fixed-bucket latency histogram on atomics, so observing never takes a lock on the
//! handler's hot path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (inclusive, as Prometheus' `le` is) in nanoseconds, with the exact `le`
/// label each is exposed under. Written out rather than formatted from floats so the
/// labels never drift into `0.0025000000000000001`.
pub(crate) const BUCKETS: [(u64, &str); 14] = [
    (1_000_000, "0.001"),
    (2_500_000, "0.0025"),
    (5_000_000, "0.005"),
    (10_000_000, "0.01"),
    (25_000_000, "0.025"),
    (50_000_000, "0.05"),
    (100_000_000, "0.1"),
    (250_000_000, "0.25"),
    (500_000_000, "0.5"),
    (1_000_000_000, "1"),
    (2_500_000_000, "2.5"),
    (5_000_000_000, "5"),
    (10_000_000_000, "10"),
    (30_000_000_000, "30"),
];

/// Counts per bucket (not cumulative; one extra slot for values above the last bound)
/// and the sum of all observations.
#[derive(Debug)]
pub(crate) struct Histogram {
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

/// A consistent-enough copy for one scrape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HistogramSnapshot {
    /// Cumulative counts, one per entry of [`BUCKETS`].
    pub cumulative: [u64; BUCKETS.len()],
    /// All observations (the `+Inf` bucket).
    pub count: u64,
    /// Sum of all observations in nanoseconds.
    pub sum_nanos: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    /// Records one observation.
    pub(crate) fn observe(&self, elapsed: Duration) {
        // Saturate: a call longer than 584 years is still "above every bucket".
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let slot = BUCKETS
            .iter()
            .position(|(bound, _)| nanos <= *bound)
            .unwrap_or(BUCKETS.len());
        self.counts[slot].fetch_add(1, Ordering::Relaxed);
        // Saturating, so one absurd observation cannot wrap the sum back to small values.
        let _ = self
            .sum_nanos
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |sum| {
                Some(sum.saturating_add(nanos))
            });
    }

    /// Cumulative bucket counts. The total is derived from the buckets rather than kept
    /// apart, so `_count` always equals the `+Inf` bucket even while calls are observed
    /// concurrently with a scrape.
    pub(crate) fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = [0u64; BUCKETS.len()];
        let mut running = 0u64;
        for (slot, total) in cumulative.iter_mut().enumerate() {
            running += self.counts[slot].load(Ordering::Relaxed);
            *total = running;
        }
        let count = running + self.counts[BUCKETS.len()].load(Ordering::Relaxed);
        HistogramSnapshot {
            cumulative,
            count,
            sum_nanos: self.sum_nanos.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn bounds_are_inclusive_and_counts_cumulative() {
        let h = Histogram::default();
        h.observe(ms(1)); // exactly on the first bound: le="0.001"
        h.observe(Duration::from_nanos(1_000_001)); // just above: le="0.0025"
        h.observe(ms(7)); // le="0.01"
        h.observe(ms(7));
        h.observe(Duration::from_secs(2)); // le="2.5"
        let s = h.snapshot();
        assert_eq!(
            s.cumulative,
            [1, 2, 2, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5],
            "each bucket holds everything at or below its bound"
        );
        assert_eq!(s.count, 5);
        assert_eq!(
            s.sum_nanos,
            1_000_000 + 1_000_001 + 14_000_000 + 2_000_000_000
        );
    }

    #[test]
    fn above_the_last_bound_only_the_total_counts_it() {
        let h = Histogram::default();
        h.observe(Duration::from_secs(31));
        h.observe(Duration::MAX);
        let s = h.snapshot();
        assert_eq!(s.cumulative, [0; BUCKETS.len()]);
        assert_eq!(s.count, 2);
    }

    #[test]
    fn labels_match_bounds() {
        for (nanos, label) in BUCKETS {
            let seconds: f64 = label.parse().unwrap();
            assert_eq!((seconds * 1e9).round() as u64, nanos, "{label}");
        }
        assert!(BUCKETS.windows(2).all(|w| w[0].0 < w[1].0), "ascending");
    }
}
