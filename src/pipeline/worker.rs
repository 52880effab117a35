//! Carries one message through admission, attempts and settlement. Decisions come from
//! [`decision`](super::decision); this module gathers facts and acts on them.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;

use super::attempt::{self, Failure};
use super::config::PipelineConfig;
use super::decision::{self, Admission, DeadLetterOrder, Decision, Next};
use super::durability::Durability;
use super::stats::{bump, Stats};
use super::store_health::StoreHealth;
use crate::breaker::{CallResult, CircuitBreaker, Permit};
use crate::dead_letter::{header, DeadLetter, DeadLetterInfo, DeadLetterKind, DeadLetterSink};
use crate::handler::Handler;
use crate::limits::LimitViolation;
use crate::message::Message;
use crate::rate_limit::RateLimiter;
use crate::retry::Backoff;
use crate::source::{Ack, Delivery};
use crate::store::{AttemptRecord, IdempotencyStore, KeyState, ParkRecord, SettledOutcome};

mod budget;
mod store_ops;

use budget::Budget;

/// Everything the workers of one pipeline share.
pub(crate) struct Shared<H, S, D> {
    pub handler: H,
    pub store: Arc<S>,
    pub sink: D,
    pub breaker: Arc<CircuitBreaker>,
    pub durability: Durability,
    pub health: StoreHealth,
    pub config: PipelineConfig,
    pub stats: Arc<Stats>,
    pub rate_limit: Option<RateLimiter>,
    /// Turns true when a graceful stop begins: waits (backoff, breaker) are abandoned.
    pub stopping: watch::Receiver<bool>,
}

/// A message admitted into the pipeline, with its keys worked out.
pub(crate) struct Job {
    pub delivery: Delivery,
    pub idempotency_key: Option<Bytes>,
    pub ordering_key: Option<Bytes>,
    pub violation: Option<LimitViolation>,
}

enum Fate {
    Processed,
    Duplicate,
    DeadLetter {
        order: DeadLetterOrder,
        attempts: u32,
        first_failed_at: Option<SystemTime>,
    },
}

/// Runs one job to its end. Returns early (abandoning the ack, so the broker redelivers)
/// only when the pipeline is stopping.
///
/// The job comes boxed and its message is used in place: a future keeps its arguments
/// for its whole life, so moving the message into locals or into the futures awaited
/// here would hold it two or three times in every message's task (which was 1.7 KiB;
/// tokio copies it into the task at spawn, and allocates it cache-aligned, past
/// malloc's fast caches).
pub(crate) async fn run<H, S, D>(shared: Arc<Shared<H, S, D>>, mut job: Box<Job>)
where
    H: Handler,
    S: IdempotencyStore,
    D: DeadLetterSink,
{
    let Job {
        delivery: Delivery { message, ack },
        idempotency_key,
        ordering_key,
        violation,
    } = &mut *job;
    let worker = Worker {
        shared: &shared,
        tracked: idempotency_key
            .take()
            .filter(|_| shared.config.idempotency.enabled),
        ordering_key: ordering_key.take(),
    };
    let Some((decision, crashes)) = worker.admit(message, violation.as_ref()).await else {
        return;
    };
    let fate = match decision {
        Decision::Run => match worker.attempts(message).await {
            Some(fate) => fate,
            None => return,
        },
        Decision::SkipDuplicate => Fate::Duplicate,
        // Attempts made before admission are the crashed ones (zero unless crash-loop).
        Decision::DeadLetter(order) => Fate::DeadLetter {
            attempts: if order.kind == DeadLetterKind::CrashLoop {
                crashes.crashes
            } else {
                0
            },
            first_failed_at: crashes
                .first_started_at
                .filter(|_| order.kind == DeadLetterKind::CrashLoop),
            order,
        },
    };
    // The ack goes to the settle; what else the job holds is dropped with it.
    let ack = std::mem::replace(ack, Ack::none());
    worker.settle(message, ack, fate).await;
}

struct Worker<'a, H, S, D> {
    shared: &'a Shared<H, S, D>,
    /// The idempotency key, when idempotency is on and the message has one.
    tracked: Option<Bytes>,
    ordering_key: Option<Bytes>,
}

impl<H: Handler, S: IdempotencyStore, D: DeadLetterSink> Worker<'_, H, S, D> {
    fn config(&self) -> &PipelineConfig {
        &self.shared.config
    }

    async fn admit(
        &self,
        message: &Message,
        violation: Option<&LimitViolation>,
    ) -> Option<(Decision, AttemptRecord)> {
        let not_before = SystemTime::now()
            .checked_sub(self.config().idempotency.dedup_window)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let state = match &self.tracked {
            Some(key) => self.store_op(|s| s.lookup(key, not_before)).await?,
            None => KeyState::default(),
        };
        let parked = match &self.ordering_key {
            Some(key) => self.store_op(|s| s.parked(key)).await?,
            None => None,
        };
        let admission = Admission {
            violation,
            settled: state.settled,
            attempts: state.attempts,
            is_replay: message.headers().get(header::REPLAY_OF).is_some(),
            parked: parked.as_ref(),
            releases_park: self.releases_park(message),
        };
        Some((decision::admit(&admission, self.config()), state.attempts))
    }

    /// Whether `message` is the replay `seawall dlq release` marked to lift its key's
    /// park: the marker must name this message's own ordering key.
    fn releases_park(&self, message: &Message) -> bool {
        let headers = message.headers();
        headers.get(header::REPLAY_OF).is_some()
            && self
                .ordering_key
                .as_ref()
                .is_some_and(|key| headers.get_last(header::RELEASE_PARK) == Some(key))
    }

    async fn attempts(&self, message: &mut Message) -> Option<Fate> {
        let config = self.config();
        let mut budget = Budget::new();
        loop {
            self.rate_limit(&mut budget).await?;
            let permit = self.permit(&mut budget).await?;
            // A handler call whose outcome the store cannot record would run again after
            // a restart: none starts while the store cannot write.
            self.store_writable().await?;
            budget.attempt += 1;
            tracing::Span::current().record("attempt", budget.attempt);
            if let Some(key) = &self.tracked {
                self.store_op(|s| s.begin_attempt(key, SystemTime::now()))
                    .await?;
                // A retried write can go through while the store is still failing (a
                // read-only disk may take a write into a page it has cached): the call
                // waits for the probe all the same.
                self.store_writable().await?;
            }
            message.set_attempt(budget.attempt);
            let handler = &self.shared.handler;
            let failure = match attempt::call(handler, message, config.handler_timeout).await {
                Ok(()) => {
                    self.shared.breaker.record(permit, CallResult::Success);
                    return Some(Fate::Processed);
                }
                Err(failure) => failure,
            };
            self.count_failure(&failure);
            if let Some(key) = &self.tracked {
                self.store_op(|s| s.end_attempt(key)).await?;
            }
            let breaker = self.shared.breaker.record(permit, failure.call_result());
            let facts = budget.after(&failure, breaker, config);
            match decision::after_failure(&facts, config) {
                Next::Retry(delay) => {
                    bump(&self.shared.stats.retries);
                    tracing::debug!(attempt = budget.attempt, error = %failure.describe(), delay = ?delay, "retrying");
                    Box::pin(self.until_stopping(tokio::time::sleep(delay))).await?;
                }
                Next::DeadLetter(order) => {
                    return Some(Fate::DeadLetter {
                        order,
                        attempts: budget.attempt,
                        first_failed_at: budget.first_failed_at,
                    });
                }
            }
        }
    }

    /// Waits for the rate limit's slot; like the breaker's hold, not charged to the
    /// retry budget.
    async fn rate_limit(&self, budget: &mut Budget) -> Option<()> {
        let Some(limiter) = &self.shared.rate_limit else {
            return Some(());
        };
        let waiting = Instant::now();
        Box::pin(self.until_stopping(limiter.acquire())).await?;
        budget.held += waiting.elapsed();
        Some(())
    }

    /// The breaker's permission for the next attempt; time spent waiting for it is
    /// not charged to the retry budget.
    async fn permit(&self, budget: &mut Budget) -> Option<Permit> {
        if let Some(permit) = self.shared.breaker.try_acquire() {
            return Some(permit);
        }
        let waiting = Instant::now();
        // Boxed: waiting is rare, and keeping its state out of this future keeps every
        // message's task small.
        let permit = Box::pin(self.until_stopping(self.shared.breaker.acquire())).await?;
        budget.held += waiting.elapsed();
        Some(permit)
    }

    fn count_failure(&self, failure: &Failure) {
        match failure {
            Failure::Panic(_) => bump(&self.shared.stats.panics),
            Failure::Timeout(_) => bump(&self.shared.stats.timeouts),
            Failure::Handler(_) => {}
        }
    }

    async fn settle(&self, message: &Message, ack: Ack, fate: Fate) {
        let stats = &self.shared.stats;
        match fate {
            Fate::Duplicate => bump(&stats.duplicates),
            Fate::Processed => {
                if let Some(key) = &self.tracked {
                    let now = SystemTime::now();
                    let settled = self.store_op(|s| s.settle(key, SettledOutcome::Processed, now));
                    if settled.await.is_none() {
                        return;
                    }
                }
                if let Some(key) = self
                    .ordering_key
                    .as_ref()
                    .filter(|_| self.releases_park(message))
                {
                    if self.store_op(|s| s.release(key)).await.is_none() {
                        return;
                    }
                    tracing::info!(key = %String::from_utf8_lossy(key), "parked key released by a replay");
                }
                bump(&stats.processed);
            }
            Fate::DeadLetter {
                order,
                attempts,
                first_failed_at,
            } => {
                let dead_letter = self.dead_letter(message, order, attempts, first_failed_at);
                if Box::pin(dead_letter).await.is_none() {
                    return;
                }
            }
        }
        self.shared.durability.release(ack).await;
    }

    async fn dead_letter(
        &self,
        message: &Message,
        order: DeadLetterOrder,
        attempts: u32,
        first_failed_at: Option<SystemTime>,
    ) -> Option<()> {
        let now = SystemTime::now();
        let kind = order.kind;
        let letter = DeadLetter {
            info: DeadLetterInfo {
                kind,
                error: order.error,
                attempts,
                source: Arc::clone(&message.origin().source),
                position: message.origin().position.clone(),
                first_failed_at: first_failed_at.unwrap_or(now),
                failed_at: now,
                idempotency_key: self.tracked.clone(),
                ordering_key: self.ordering_key.clone(),
                blocked_by: order.blocked_by,
            },
            // A copy (its parts are shared, not copied): dead letters are rare, and
            // every message's task is smaller for taking the message by reference.
            message: message.clone(),
        };
        self.send_dead_letter(&letter).await?;
        if let Some(key) = &self.tracked {
            self.store_op(|s| s.settle(key, SettledOutcome::DeadLettered, now))
                .await?;
        }
        let policy = self.config().on_dead_letter;
        if let Some(ordering_key) = self
            .ordering_key
            .as_ref()
            .filter(|_| decision::parks_key(kind, policy))
        {
            let record = ParkRecord {
                blocked_by: blocker_name(&letter),
                since: now,
            };
            self.store_op(|s| s.park(ordering_key, &record)).await?;
            tracing::warn!(key = %String::from_utf8_lossy(ordering_key), blocked_by = %record.blocked_by, "ordering key parked");
        }
        self.count_dead_letter(kind);
        tracing::info!(kind = kind.as_str(), error = %letter.info.error, "dead-lettered");
        Some(())
    }

    fn count_dead_letter(&self, kind: DeadLetterKind) {
        let stats = &self.shared.stats;
        bump(&stats.dead_lettered);
        match kind {
            DeadLetterKind::Parked => bump(&stats.parked),
            DeadLetterKind::CrashLoop => bump(&stats.crash_loops),
            _ => {}
        }
    }

    /// Sends until the sink confirms; while it fails, this key does not advance. A letter
    /// too large for the route goes without its payload and headers (retrying the same
    /// bytes could never succeed, and the key would stall behind it for good).
    async fn send_dead_letter(&self, letter: &DeadLetter) -> Option<()> {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10), 2.0);
        let mut trimmed = None;
        loop {
            let sending = trimmed.as_ref().unwrap_or(letter);
            match self.shared.sink.send(sending).await {
                Ok(()) => return Some(()),
                Err(err) if err.is_too_large() && trimmed.is_none() => {
                    tracing::warn!(error = %err, "dead letter too large for its route; sending it without payload and headers");
                    trimmed = Some(letter.without_content());
                    continue;
                }
                Err(err) => tracing::warn!(error = %err, "dead-letter write failed; retrying"),
            }
            self.until_stopping(tokio::time::sleep(backoff.next_delay()))
                .await?;
        }
    }

    /// Awaits `wait`, or gives up with `None` when the pipeline starts stopping.
    async fn until_stopping<T>(&self, wait: impl std::future::Future<Output = T>) -> Option<T> {
        let mut stopping = self.shared.stopping.clone();
        tokio::select! {
            value = wait => Some(value),
            _ = stopping.wait_for(|stop| *stop) => None,
        }
    }
}

/// Names the message blocking a parked key: its idempotency key, else its position.
fn blocker_name(letter: &DeadLetter) -> String {
    match &letter.info.idempotency_key {
        Some(key) => String::from_utf8_lossy(key).into_owned(),
        None => format!("{} {}", letter.info.source, letter.info.position),
    }
}
