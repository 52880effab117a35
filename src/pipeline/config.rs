//! Pipeline settings, with their defaults and the checks made at build time.

use std::time::Duration;

use serde::Deserialize;

use crate::breaker::BreakerConfig;
use crate::error::ConfigError;
use crate::keys::KeyRule;
use crate::limits::Limits;
use crate::rate_limit::RateLimitConfig;
use crate::retry::RetryConfig;

/// Every pipeline setting. Each has a default; unknown keys are refused when
/// deserialising.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Most handler calls running at once, over all keys (default 256).
    pub max_in_flight: usize,
    /// Most messages held in memory, running or waiting (default 10000). When full, the
    /// pipeline stops pulling from the source.
    pub max_buffered: usize,
    /// Longest a handler call may take; a timeout is a transient failure (default 30s).
    #[serde(with = "humantime_serde")]
    pub handler_timeout: Duration,
    /// Size limits.
    pub limits: Limits,
    /// Deduplication and crash-loop detection.
    pub idempotency: IdempotencyConfig,
    /// Per-key ordering.
    pub ordering: OrderingConfig,
    /// Retries of transient failures.
    pub retry: RetryConfig,
    /// The circuit breaker.
    pub breaker: BreakerConfig,
    /// Most handler calls per second, retries included (default: no limit).
    pub rate_limit: Option<RateLimitConfig>,
    /// What happens to later messages of a key after one is dead-lettered.
    pub on_dead_letter: DeadLetterPolicy,
    /// Group flushing of the store.
    pub durability: DurabilityConfig,
    /// How long a graceful shutdown waits for running handlers (default 30s).
    #[serde(with = "humantime_serde")]
    pub shutdown_deadline: Duration,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 256,
            max_buffered: 10_000,
            handler_timeout: Duration::from_secs(30),
            limits: Limits::default(),
            idempotency: IdempotencyConfig::default(),
            ordering: OrderingConfig::default(),
            retry: RetryConfig::default(),
            breaker: BreakerConfig::default(),
            rate_limit: None,
            on_dead_letter: DeadLetterPolicy::Continue,
            durability: DurabilityConfig::default(),
            shutdown_deadline: Duration::from_secs(30),
        }
    }
}

/// Idempotency settings.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdempotencyConfig {
    /// Whether messages are deduplicated and attempts recorded (default true).
    pub enabled: bool,
    /// Where the idempotency key comes from, first match wins (default
    /// `["header:idempotency-key", "message-id", "position"]`).
    pub key: KeyRule,
    /// How long a settled key is remembered (default 7 days).
    #[serde(with = "humantime_serde")]
    pub dedup_window: Duration,
    /// How often expired records are swept (default 10m).
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// Dead-letter a message as `crash-loop` when the process died during
    /// `retry.max_attempts` of its attempts (default true). Attempts are always journaled
    /// (two small file writes each); this decides whether crashes lead to dead-lettering.
    pub crash_guard: bool,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            key: KeyRule::default_idempotency(),
            dedup_window: Duration::from_secs(7 * 24 * 3600),
            sweep_interval: Duration::from_secs(600),
            crash_guard: true,
        }
    }
}

/// Ordering settings.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrderingConfig {
    /// Where the ordering key comes from, first match wins (default `["message-key"]`;
    /// `[]` turns ordering off).
    pub key: KeyRule,
}

impl Default for OrderingConfig {
    fn default() -> Self {
        Self {
            key: KeyRule::default_ordering(),
        }
    }
}

/// What happens to a key's later messages after one of its messages is dead-lettered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeadLetterPolicy {
    /// Later messages proceed.
    #[default]
    Continue,
    /// Later messages are dead-lettered too, as `parked`, until the key is released.
    Park,
}

/// How store writes are grouped behind one flush.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DurabilityConfig {
    /// Longest a completion waits for others to share its flush (default 2ms).
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Most records in one flush group (default 1024).
    pub max_group: usize,
}

impl Default for DurabilityConfig {
    fn default() -> Self {
        Self {
            flush_interval: Duration::from_millis(2),
            max_group: 1024,
        }
    }
}

fn check(ok: bool, field: &str, reason: &str) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(field, reason))
    }
}

impl PipelineConfig {
    /// Checks every setting; the error names the first bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check(
            self.max_in_flight >= 1,
            "max_in_flight",
            "expected an integer >= 1",
        )?;
        check(
            self.max_buffered >= self.max_in_flight,
            "max_buffered",
            "expected an integer >= max_in_flight",
        )?;
        check(
            !self.handler_timeout.is_zero(),
            "handler_timeout",
            "expected a duration > 0",
        )?;
        check(
            !self.shutdown_deadline.is_zero(),
            "shutdown_deadline",
            "expected a duration > 0",
        )?;
        self.validate_limits()?;
        self.validate_retry()?;
        self.validate_breaker()?;
        if let Some(rate) = &self.rate_limit {
            check(
                rate.per_second.is_finite() && rate.per_second > 0.0,
                "rate_limit.per_second",
                "expected a number > 0",
            )?;
            check(
                rate.burst >= 1,
                "rate_limit.burst",
                "expected an integer >= 1",
            )?;
        }
        let idem = &self.idempotency;
        check(
            !idem.dedup_window.is_zero(),
            "idempotency.dedup_window",
            "expected a duration > 0",
        )?;
        check(
            !idem.sweep_interval.is_zero(),
            "idempotency.sweep_interval",
            "expected a duration > 0",
        )?;
        check(
            self.durability.max_group >= 1,
            "durability.max_group",
            "expected an integer >= 1",
        )
    }

    fn validate_limits(&self) -> Result<(), ConfigError> {
        let limits = &self.limits;
        check(
            limits.max_payload_bytes >= 1,
            "limits.max_payload_bytes",
            "expected an integer >= 1",
        )?;
        check(
            limits.max_headers >= 1,
            "limits.max_headers",
            "expected an integer >= 1",
        )?;
        check(
            limits.max_header_bytes >= 1,
            "limits.max_header_bytes",
            "expected an integer >= 1",
        )
    }

    fn validate_retry(&self) -> Result<(), ConfigError> {
        let retry = &self.retry;
        check(
            retry.max_attempts >= 1,
            "retry.max_attempts",
            "expected an integer >= 1",
        )?;
        check(
            retry.multiplier >= 1.0,
            "retry.multiplier",
            "expected a number >= 1.0",
        )?;
        check(
            retry.initial_backoff <= retry.max_backoff,
            "retry.initial_backoff",
            "expected a duration <= retry.max_backoff",
        )
    }

    fn validate_breaker(&self) -> Result<(), ConfigError> {
        let breaker = &self.breaker;
        check(
            breaker.failure_ratio > 0.0 && breaker.failure_ratio <= 1.0,
            "breaker.failure_ratio",
            "expected a number in (0, 1]",
        )?;
        check(
            breaker.min_calls >= 1,
            "breaker.min_calls",
            "expected an integer >= 1",
        )?;
        check(
            !breaker.window.is_zero(),
            "breaker.window",
            "expected a duration > 0",
        )?;
        check(
            !breaker.cool_down.is_zero(),
            "breaker.cool_down",
            "expected a duration > 0",
        )
    }
}
