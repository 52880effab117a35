//! What a message has used of its retry budget across its attempts.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::breaker::BreakerState;
use crate::pipeline::attempt::Failure;
use crate::pipeline::config::PipelineConfig;
use crate::pipeline::decision::AfterFailure;
use crate::retry::Backoff;

/// What a message has used of its retry budget.
pub(super) struct Budget {
    pub(super) attempt: u32,
    /// Failed attempts made while the breaker stayed closed.
    counted: u32,
    began: Instant,
    /// Time spent held by the breaker.
    pub(super) held: Duration,
    pub(super) first_failed_at: Option<SystemTime>,
    backoff: Option<Backoff>,
}

impl Budget {
    pub(super) fn new() -> Self {
        Self {
            attempt: 0,
            counted: 0,
            began: Instant::now(),
            held: Duration::ZERO,
            first_failed_at: None,
            backoff: None,
        }
    }

    /// Records a failure and gathers the facts the decision needs.
    pub(super) fn after<'f>(
        &mut self,
        failure: &'f Failure,
        breaker: BreakerState,
        config: &PipelineConfig,
    ) -> AfterFailure<'f> {
        self.first_failed_at.get_or_insert_with(SystemTime::now);
        self.counted += u32::from(breaker == BreakerState::Closed);
        let backoff = self.backoff.get_or_insert_with(|| config.retry.backoff());
        AfterFailure {
            failure,
            budget_attempts: self.counted,
            budget_elapsed: self.began.elapsed().saturating_sub(self.held),
            breaker,
            backoff: backoff.next_delay(),
        }
    }
}
