//! Circuit breaker over a rolling window of attempt outcomes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::watch;
use tokio::time::Instant;

/// When the breaker opens and how long it stays open.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Whether the breaker is used at all (default true).
    pub enabled: bool,
    /// Rolling window over which failures are counted (default 30s).
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Fewest attempts in the window before the breaker may open (default 20).
    pub min_calls: u32,
    /// Share of transient failures that opens it (default 0.5): over the window, or over
    /// the last `min_calls` attempts in it (so a sudden outage opens it at once even
    /// after a window full of successes).
    pub failure_ratio: f64,
    /// How long it stays open before one probe goes through (default 10s).
    #[serde(with = "humantime_serde")]
    pub cool_down: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            window: Duration::from_secs(30),
            min_calls: 20,
            failure_ratio: 0.5,
            cool_down: Duration::from_secs(10),
        }
    }
}

/// The breaker's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls flow.
    Closed,
    /// The downstream is failing: intake stops and retries are held.
    Open,
    /// One probe is allowed to find out whether the downstream is back.
    HalfOpen,
}

impl BreakerState {
    /// `closed`, `open` or `half-open`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }
}

/// How an attempt went, as the breaker counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallResult {
    /// The downstream answered (success, or a permanent rejection of the message).
    Success,
    /// A transient failure: timeout, 5xx, connection error.
    Failure,
    /// Says nothing about the downstream (a handler panic).
    Neutral,
}

const BUCKETS: u32 = 10;

struct Bucket {
    start: Instant,
    calls: u32,
    failures: u32,
}

struct Inner {
    state: BreakerState,
    buckets: VecDeque<Bucket>,
    /// When the last `min_calls` attempts in the window were made and whether each
    /// failed, newest last.
    recent: VecDeque<(Instant, bool)>,
    opened_at: Instant,
    probe_out: bool,
}

/// A circuit breaker shared by every worker of a pipeline.
pub struct CircuitBreaker {
    config: BreakerConfig,
    inner: Mutex<Inner>,
    state_tx: watch::Sender<BreakerState>,
}

/// Permission to make one attempt. Dropping a probe permit unrecorded frees the probe.
pub struct Permit {
    breaker: Arc<CircuitBreaker>,
    probe: bool,
    recorded: bool,
}

enum Wait {
    Until(Instant),
    Change,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Arc<Self> {
        let (state_tx, _) = watch::channel(BreakerState::Closed);
        Arc::new(Self {
            config,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                buckets: VecDeque::new(),
                recent: VecDeque::new(),
                opened_at: Instant::now(),
                probe_out: false,
            }),
            state_tx,
        })
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        self.lock().state
    }

    /// Watches state changes.
    pub fn subscribe(&self) -> watch::Receiver<BreakerState> {
        self.state_tx.subscribe()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update below leaves Inner consistent between statements that could panic
        // (there are none), so a poisoned lock holds valid state.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until an attempt may be made: at once while closed; while open, until the
    /// cool-down ends and this caller becomes the probe; while half-open, until the probe's
    /// outcome is known.
    pub async fn acquire(self: &Arc<Self>) -> Permit {
        loop {
            let (wait, mut changes) = {
                let mut inner = self.lock();
                let changes = self.state_tx.subscribe();
                match self.try_acquire_locked(&mut inner) {
                    Ok(probe) => return self.permit(probe),
                    Err(wait) => (wait, changes),
                }
            };
            match wait {
                Wait::Until(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = changes.changed() => {}
                    }
                }
                Wait::Change => {
                    let _ = changes.changed().await;
                }
            }
        }
    }

    /// A permit at once if the breaker allows one now, without waiting.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let probe = self.try_acquire_locked(&mut self.lock()).ok()?;
        Some(self.permit(probe))
    }

    fn permit(self: &Arc<Self>, probe: bool) -> Permit {
        Permit {
            breaker: Arc::clone(self),
            probe,
            recorded: false,
        }
    }

    fn try_acquire_locked(&self, inner: &mut Inner) -> Result<bool, Wait> {
        if !self.config.enabled {
            return Ok(false);
        }
        match inner.state {
            BreakerState::Closed => Ok(false),
            BreakerState::Open => {
                let until = inner.opened_at + self.config.cool_down;
                if Instant::now() < until {
                    return Err(Wait::Until(until));
                }
                inner.probe_out = true;
                self.transition(inner, BreakerState::HalfOpen);
                Ok(true)
            }
            BreakerState::HalfOpen if !inner.probe_out => {
                inner.probe_out = true;
                Ok(true)
            }
            BreakerState::HalfOpen => Err(Wait::Change),
        }
    }

    /// Records an attempt's outcome; returns the state after it.
    pub fn record(&self, mut permit: Permit, result: CallResult) -> BreakerState {
        permit.recorded = true;
        let mut inner = self.lock();
        if !self.config.enabled {
            return inner.state;
        }
        if permit.probe {
            inner.probe_out = false;
            match result {
                CallResult::Success => {
                    inner.buckets.clear();
                    inner.recent.clear();
                    self.transition(&mut inner, BreakerState::Closed);
                }
                CallResult::Failure => self.open(&mut inner),
                // Says nothing: let another probe try.
                CallResult::Neutral => {
                    self.state_tx.send_replace(inner.state);
                }
            };
            return inner.state;
        }
        if inner.state == BreakerState::Closed && result != CallResult::Neutral {
            self.count(&mut inner, result == CallResult::Failure);
            if self.tripped(&inner) {
                self.open(&mut inner);
            }
        }
        inner.state
    }

    fn count(&self, inner: &mut Inner, failed: bool) {
        let now = Instant::now();
        let width = self.config.window / BUCKETS;
        while inner
            .buckets
            .front()
            .is_some_and(|b| now.duration_since(b.start) >= self.config.window)
        {
            inner.buckets.pop_front();
        }
        let fresh = inner
            .buckets
            .back()
            .is_none_or(|b| now.duration_since(b.start) >= width);
        if fresh {
            inner.buckets.push_back(Bucket {
                start: now,
                calls: 0,
                failures: 0,
            });
        }
        if let Some(bucket) = inner.buckets.back_mut() {
            bucket.calls += 1;
            bucket.failures += u32::from(failed);
        }
        let window = self.config.window;
        let full = self.config.min_calls.max(1) as usize;
        while inner
            .recent
            .front()
            .is_some_and(|&(at, _)| inner.recent.len() >= full || now.duration_since(at) >= window)
        {
            inner.recent.pop_front();
        }
        inner.recent.push_back((now, failed));
    }

    /// Open when the failure share reaches the ratio over the window — or over the last
    /// `min_calls` attempts alone: under load the window is still full of the successes
    /// from before an outage, and would open only after thousands of failures, while
    /// messages in flight spend their whole retry budget in a second and are
    /// dead-lettered for the outage (found by `seawall-chaos`).
    fn tripped(&self, inner: &Inner) -> bool {
        let min_calls = self.config.min_calls.max(1);
        let share_reached = |calls: u32, failures: u32| {
            calls >= min_calls
                && f64::from(failures) >= self.config.failure_ratio * f64::from(calls)
        };
        let calls: u32 = inner.buckets.iter().map(|b| b.calls).sum();
        let failures: u32 = inner.buckets.iter().map(|b| b.failures).sum();
        let recent_failures = inner.recent.iter().filter(|(_, failed)| *failed).count() as u32;
        share_reached(calls, failures) || share_reached(inner.recent.len() as u32, recent_failures)
    }

    fn open(&self, inner: &mut Inner) {
        inner.opened_at = Instant::now();
        inner.buckets.clear();
        inner.recent.clear();
        self.transition(inner, BreakerState::Open);
    }

    fn transition(&self, inner: &mut Inner, to: BreakerState) {
        let from = inner.state;
        inner.state = to;
        if from != to {
            match to {
                BreakerState::Open => tracing::warn!(
                    from = from.as_str(),
                    "circuit breaker opened: intake stopped, retries held"
                ),
                BreakerState::HalfOpen => {
                    tracing::info!("circuit breaker half-open: sending one probe")
                }
                BreakerState::Closed => {
                    tracing::info!("circuit breaker closed: downstream recovered")
                }
            }
        }
        self.state_tx.send_replace(to);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.probe && !self.recorded {
            let mut inner = self.breaker.lock();
            inner.probe_out = false;
            let state = inner.state;
            self.breaker.state_tx.send_replace(state);
        }
    }
}
