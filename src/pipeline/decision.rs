//! The one place where the pipeline decides a message's fate: run it, skip it, retry it,
//! dead-letter it, park its key. Everything else gathers facts and carries decisions out.

use std::time::Duration;

use super::attempt::Failure;
use super::config::{DeadLetterPolicy, PipelineConfig};
use crate::breaker::BreakerState;
use crate::dead_letter::DeadLetterKind;
use crate::limits::LimitViolation;
use crate::store::{AttemptRecord, ParkRecord, Settled, SettledOutcome};

/// What to do with a message.
#[derive(Debug, PartialEq)]
pub(crate) enum Decision {
    /// Call the handler.
    Run,
    /// Complete it without calling the handler: it was settled before.
    SkipDuplicate,
    /// Send it to the dead-letter route.
    DeadLetter(DeadLetterOrder),
}

/// What to do after a failed attempt.
#[derive(Debug, PartialEq)]
pub(crate) enum Next {
    /// Call the handler again after the delay.
    Retry(Duration),
    /// Give up: send it to the dead-letter route.
    DeadLetter(DeadLetterOrder),
}

/// A message to dead-letter, and why.
#[derive(Debug, PartialEq)]
pub(crate) struct DeadLetterOrder {
    pub kind: DeadLetterKind,
    pub error: String,
    pub blocked_by: Option<String>,
}

fn order(kind: DeadLetterKind, error: String) -> DeadLetterOrder {
    DeadLetterOrder {
        kind,
        error,
        blocked_by: None,
    }
}

/// What is known about a message before its first attempt.
pub(crate) struct Admission<'a> {
    pub violation: Option<&'a LimitViolation>,
    pub settled: Option<Settled>,
    /// Crashes during this message's attempts in earlier runs of the process.
    pub attempts: AttemptRecord,
    pub is_replay: bool,
    pub parked: Option<&'a ParkRecord>,
    /// An operator's `dlq release` of this message's parked key: it runs through the park.
    pub releases_park: bool,
}

/// Before anything runs: limits, then duplicates, then a parked key, then a crash loop.
pub(crate) fn admit(facts: &Admission<'_>, config: &PipelineConfig) -> Decision {
    if let Some(violation) = facts.violation {
        return Decision::DeadLetter(order(DeadLetterKind::Oversize, violation.to_string()));
    }
    match facts.settled.map(|s| s.outcome) {
        Some(SettledOutcome::Processed) => return Decision::SkipDuplicate,
        // A dead-lettered key is skipped too (it is in the dead-letter route already),
        // unless this is an operator's replay of it.
        Some(SettledOutcome::DeadLettered) if !facts.is_replay => return Decision::SkipDuplicate,
        _ => {}
    }
    if let Some(park) = facts.parked.filter(|_| !facts.releases_park) {
        return Decision::DeadLetter(DeadLetterOrder {
            kind: DeadLetterKind::Parked,
            error: format!("ordering key is parked behind {}", park.blocked_by),
            blocked_by: Some(park.blocked_by.clone()),
        });
    }
    let crashes = facts.attempts.crashes;
    if config.idempotency.crash_guard && crashes >= config.retry.max_attempts {
        return Decision::DeadLetter(order(
            DeadLetterKind::CrashLoop,
            format!("the process died during {crashes} attempts to handle this message"),
        ));
    }
    Decision::Run
}

/// What is known after a failed attempt.
pub(crate) struct AfterFailure<'a> {
    pub failure: &'a Failure,
    /// Failed attempts made while the breaker stayed closed.
    pub budget_attempts: u32,
    /// Time since the first attempt, less time held by the breaker.
    pub budget_elapsed: Duration,
    /// The breaker after this failure was recorded.
    pub breaker: BreakerState,
    /// The backoff the schedule gives next.
    pub backoff: Duration,
}

/// After a failed attempt: dead-letter permanent failures; retry transient ones within
/// the budget; never give up on a message because the downstream is down.
pub(crate) fn after_failure(facts: &AfterFailure<'_>, config: &PipelineConfig) -> Next {
    let error = facts.failure.describe();
    if facts.failure.is_contract_violation() {
        return Next::DeadLetter(order(DeadLetterKind::Contract, error));
    }
    if facts.failure.is_permanent() {
        return Next::DeadLetter(order(DeadLetterKind::Permanent, error));
    }
    let delay = facts
        .failure
        .retry_after()
        .map_or(facts.backoff, |hint| hint.max(facts.backoff));
    if facts.breaker != BreakerState::Closed {
        // The breaker holds this retry until the downstream is back; the budget is for
        // failures of the message, not of the downstream.
        return Next::Retry(delay);
    }
    let retry = &config.retry;
    if facts.budget_attempts >= retry.max_attempts {
        return Next::DeadLetter(order(
            DeadLetterKind::Exhausted,
            format!("gave up after {} attempts: {error}", facts.budget_attempts),
        ));
    }
    if facts.budget_elapsed + delay > retry.max_elapsed {
        return Next::DeadLetter(order(
            DeadLetterKind::Exhausted,
            format!(
                "gave up after {} (retry.max_elapsed {}): {error}",
                humantime::format_duration(round(facts.budget_elapsed)),
                humantime::format_duration(retry.max_elapsed)
            ),
        ));
    }
    Next::Retry(delay)
}

fn round(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

/// Whether dead-lettering a message (that has an ordering key) parks that key.
pub(crate) fn parks_key(kind: DeadLetterKind, policy: DeadLetterPolicy) -> bool {
    policy == DeadLetterPolicy::Park && kind != DeadLetterKind::Parked
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::HandlerError;

    fn transient() -> Failure {
        Failure::Handler(HandlerError::transient("503"))
    }

    fn facts(failure: &Failure, attempts: u32, breaker: BreakerState) -> AfterFailure<'_> {
        AfterFailure {
            failure,
            budget_attempts: attempts,
            budget_elapsed: Duration::from_secs(1),
            breaker,
            backoff: Duration::from_millis(100),
        }
    }

    #[test]
    fn permanent_failures_dead_letter_at_once() {
        let failure = Failure::Handler(HandlerError::permanent("bad"));
        let decision = after_failure(
            &facts(&failure, 1, BreakerState::Closed),
            &PipelineConfig::default(),
        );
        assert!(matches!(
            decision,
            Next::DeadLetter(DeadLetterOrder {
                kind: DeadLetterKind::Permanent,
                ..
            })
        ));
    }

    #[test]
    fn contract_violations_dead_letter_as_contract_even_while_open() {
        let failure = Failure::Handler(HandlerError::contract("field `id` missing"));
        let decision = after_failure(
            &facts(&failure, 1, BreakerState::Open),
            &PipelineConfig::default(),
        );
        assert!(matches!(
            decision,
            Next::DeadLetter(DeadLetterOrder {
                kind: DeadLetterKind::Contract,
                ..
            })
        ));
    }

    #[test]
    fn exhausted_budget_dead_letters_only_while_closed() {
        let config = PipelineConfig::default();
        let failure = transient();
        let closed = after_failure(&facts(&failure, 5, BreakerState::Closed), &config);
        assert!(matches!(
            closed,
            Next::DeadLetter(DeadLetterOrder {
                kind: DeadLetterKind::Exhausted,
                ..
            })
        ));
        let open = after_failure(&facts(&failure, 5, BreakerState::Open), &config);
        assert!(matches!(open, Next::Retry(_)), "{open:?}");
    }

    #[test]
    fn retry_after_hint_is_honoured() {
        let failure = Failure::Handler(
            HandlerError::transient("429").with_retry_after(Duration::from_secs(3)),
        );
        let decision = after_failure(
            &facts(&failure, 1, BreakerState::Closed),
            &PipelineConfig::default(),
        );
        assert_eq!(decision, Next::Retry(Duration::from_secs(3)));
    }

    #[test]
    fn duplicates_skip_unless_replayed_dead_letters() {
        let at = std::time::SystemTime::now();
        let config = PipelineConfig::default();
        let mut admission = Admission {
            violation: None,
            settled: Some(Settled {
                outcome: SettledOutcome::DeadLettered,
                at,
            }),
            attempts: AttemptRecord::default(),
            is_replay: false,
            parked: None,
            releases_park: false,
        };
        assert_eq!(admit(&admission, &config), Decision::SkipDuplicate);
        admission.is_replay = true;
        assert_eq!(admit(&admission, &config), Decision::Run);
        admission.settled = Some(Settled {
            outcome: SettledOutcome::Processed,
            at,
        });
        assert_eq!(admit(&admission, &config), Decision::SkipDuplicate);
    }

    #[test]
    fn crash_loop_needs_max_attempts_crashes() {
        let mut config = PipelineConfig::default();
        let mut admission = Admission {
            violation: None,
            settled: None,
            attempts: AttemptRecord {
                crashes: 4,
                first_started_at: None,
            },
            is_replay: false,
            parked: None,
            releases_park: false,
        };
        assert_eq!(admit(&admission, &config), Decision::Run);
        admission.attempts.crashes = 5;
        assert!(matches!(
            admit(&admission, &config),
            Decision::DeadLetter(DeadLetterOrder {
                kind: DeadLetterKind::CrashLoop,
                ..
            })
        ));
        config.idempotency.crash_guard = false;
        assert_eq!(admit(&admission, &config), Decision::Run);
    }

    #[test]
    fn a_parked_key_holds_everything_but_its_release() {
        let park = ParkRecord {
            blocked_by: "order-7".into(),
            since: std::time::SystemTime::now(),
        };
        let mut admission = Admission {
            violation: None,
            settled: None,
            attempts: AttemptRecord::default(),
            is_replay: true,
            parked: Some(&park),
            releases_park: false,
        };
        let config = PipelineConfig::default();
        assert!(matches!(
            admit(&admission, &config),
            Decision::DeadLetter(DeadLetterOrder {
                kind: DeadLetterKind::Parked,
                ..
            })
        ));
        admission.releases_park = true;
        assert_eq!(admit(&admission, &config), Decision::Run);
    }
}
