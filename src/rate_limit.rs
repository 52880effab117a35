//! A shared rate limit on handler calls, so a recovering downstream is not flooded.

use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

/// At most `per_second` handler calls a second on average, with bursts of up to `burst`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Sustained calls per second (> 0; fractions allowed, e.g. `0.5`).
    pub per_second: f64,
    /// Calls that may go at once after a quiet spell (default 1).
    #[serde(default = "default_burst")]
    pub burst: u32,
}

fn default_burst() -> u32 {
    1
}

/// A generic cell rate limiter: each call reserves the next free slot under one lock, so
/// waiters are served in arrival order and nothing loops or polls.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    interval: Duration,
    tolerance: Duration,
    /// When the next call would be due if calls came exactly every `interval`.
    due: Mutex<Option<Instant>>,
}

impl RateLimiter {
    pub(crate) fn new(config: &RateLimitConfig) -> Self {
        let interval = Duration::from_secs_f64(1.0 / config.per_second);
        Self {
            interval,
            tolerance: interval * config.burst.saturating_sub(1),
            due: Mutex::new(None),
        }
    }

    /// How long the caller must wait before its call, reserving that slot.
    fn reserve(&self, now: Instant) -> Duration {
        // A poisoned lock only means another caller panicked between two plain
        // assignments; the value is still a valid instant.
        let mut due = self.due.lock().unwrap_or_else(|p| p.into_inner());
        let next = due.map_or(now, |d| d.max(now));
        *due = Some(next + self.interval);
        (next.checked_sub(self.tolerance).unwrap_or(now)).saturating_duration_since(now)
    }

    /// Waits for this call's slot.
    pub(crate) async fn acquire(&self) {
        let wait = self.reserve(Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: f64, burst: u32) -> RateLimiter {
        RateLimiter::new(&RateLimitConfig { per_second, burst })
    }

    #[test]
    fn a_burst_goes_at_once_then_calls_are_spaced() {
        let limiter = limiter(10.0, 3);
        let now = Instant::now();
        let waits: Vec<_> = (0..5).map(|_| limiter.reserve(now)).collect();
        assert_eq!(waits[..3], [Duration::ZERO; 3]);
        assert_eq!(waits[3], Duration::from_millis(100));
        assert_eq!(waits[4], Duration::from_millis(200));
    }

    #[test]
    fn quiet_time_refills_the_burst_but_not_beyond() {
        let limiter = limiter(10.0, 2);
        let start = Instant::now();
        for _ in 0..4 {
            limiter.reserve(start);
        }
        let later = start + Duration::from_secs(10);
        let waits: Vec<_> = (0..3).map(|_| limiter.reserve(later)).collect();
        assert_eq!(
            waits,
            [Duration::ZERO, Duration::ZERO, Duration::from_millis(100)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn acquire_holds_the_rate() {
        let limiter = limiter(50.0, 1);
        let start = Instant::now();
        for _ in 0..101 {
            limiter.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }
}
