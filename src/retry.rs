//! Retry budget and exponential backoff with full jitter.

use std::time::Duration;

use backon::BackoffBuilder;
use serde::Deserialize;

/// How transient failures are retried in place.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts in all, the first included (default 5). At least 1.
    pub max_attempts: u32,
    /// Longest time from the first failure to giving up (default 5m). Time spent held by
    /// an open circuit breaker does not count.
    #[serde(with = "humantime_serde")]
    pub max_elapsed: Duration,
    /// Backoff before the first retry, before jitter (default 200ms).
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Cap on a single backoff (default 30s).
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Growth factor between backoffs (default 2.0). At least 1.0.
    pub multiplier: f32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            max_elapsed: Duration::from_secs(300),
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            multiplier: 2.0,
        }
    }
}

impl RetryConfig {
    /// A fresh backoff sequence for one message.
    pub fn backoff(&self) -> Backoff {
        Backoff::new(self.initial_backoff, self.max_backoff, self.multiplier)
    }
}

/// Exponential backoff with full jitter: each delay is uniform in `[0, nominal]`, where the
/// nominal delay grows by the multiplier up to the cap.
///
/// backon builds the nominal sequence; its own jitter adds `[0, delay)` on top of the
/// delay, which keeps retries of many keys bunched. Full jitter spreads them (AWS
/// Architecture Blog, "Exponential Backoff and Jitter"), which is what a recovering
/// downstream needs.
pub struct Backoff {
    nominal: backon::ExponentialBackoff,
    cap: Duration,
    rng: fastrand::Rng,
}

impl Backoff {
    /// A backoff starting at `initial`, capped at `cap`, growing by `multiplier`.
    pub fn new(initial: Duration, cap: Duration, multiplier: f32) -> Self {
        let nominal = backon::ExponentialBuilder::default()
            .with_min_delay(initial)
            .with_max_delay(cap)
            .with_factor(multiplier.max(1.0))
            .without_max_times()
            .build();
        Self {
            nominal,
            cap,
            rng: fastrand::Rng::new(),
        }
    }

    /// Makes the jitter repeatable (tests).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.rng = fastrand::Rng::with_seed(seed);
        self
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let nominal = self.nominal.next().unwrap_or(self.cap).min(self.cap);
        nominal.mul_f64(self.rng.f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_under_the_growing_nominal_and_the_cap() {
        let mut backoff =
            Backoff::new(Duration::from_millis(100), Duration::from_secs(1), 2.0).with_seed(7);
        let nominal = [100u64, 200, 400, 800, 1000, 1000];
        let mut total = Duration::ZERO;
        for n in nominal {
            let d = backoff.next_delay();
            assert!(d <= Duration::from_millis(n), "{d:?} > {n}ms");
            total += d;
        }
        assert!(total > Duration::ZERO, "jitter is not always zero");
    }

    #[test]
    fn jitter_spreads_delays() {
        let delays: Vec<_> = (0..50)
            .map(|seed| {
                Backoff::new(Duration::from_secs(1), Duration::from_secs(1), 2.0)
                    .with_seed(seed)
                    .next_delay()
            })
            .collect();
        let min = delays.iter().min().unwrap();
        let max = delays.iter().max().unwrap();
        assert!(*max - *min > Duration::from_millis(500), "{min:?}..{max:?}");
    }
}
