//! The pipeline's main loop: pulls deliveries while there is room, sequences them by key,
//! dispatches runnable ones to workers, and stops gracefully.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::FutureExt;
use tokio::sync::watch;
use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;
use tracing::Instrument;

use super::worker::{self, Job, Shared};
use crate::breaker::BreakerState;
use crate::dead_letter::DeadLetterSink;
use crate::error::Error;
use crate::handler::Handler;
use crate::sequencer::{Lane, Sequencer};
use crate::source::{Delivery, Intake, Source, SourceError};
use crate::store::IdempotencyStore;

/// What, besides room, decides whether the pipeline takes more messages.
#[derive(Clone, Copy)]
struct Gates {
    stopping: bool,
    store_healthy: bool,
    breaker_closed: bool,
}

/// Most deliveries taken from the source in one turn of the main loop.
const PULL_BATCH: usize = 64;

pub(crate) struct Runner<Src, H, S, D> {
    pub source: Src,
    pub shared: Arc<Shared<H, S, D>>,
    pub shutdown: watch::Receiver<bool>,
    pub stopping: watch::Sender<bool>,
    /// Jobs boxed: a job is a few hundred bytes, moved into the sequencer, out of it and
    /// into its task, whose state would otherwise hold it twice (see `worker::run`).
    sequencer: Sequencer<Box<Job>>,
    jobs: JoinSet<()>,
    lanes: HashMap<tokio::task::Id, Lane, foldhash::fast::RandomState>,
    intake: Intake,
    source_done: bool,
}

impl<Src, H, S, D> Runner<Src, H, S, D>
where
    Src: Source,
    H: Handler,
    S: IdempotencyStore,
    D: DeadLetterSink,
{
    pub(crate) fn new(
        source: Src,
        shared: Arc<Shared<H, S, D>>,
        shutdown: watch::Receiver<bool>,
        stopping: watch::Sender<bool>,
    ) -> Self {
        Self {
            source,
            shared,
            shutdown,
            stopping,
            sequencer: Sequencer::new(),
            jobs: JoinSet::new(),
            lanes: HashMap::default(),
            intake: Intake::Open,
            source_done: false,
        }
    }

    /// Runs until the source ends and everything is settled, or until a stop completes.
    /// Returns the fatal source error, if that is what stopped it, and the source, to be
    /// closed once the last completions are released.
    pub(crate) async fn run(mut self) -> (Result<(), Error>, Src) {
        let mut breaker = self.shared.breaker.subscribe();
        let mut health = self.shared.health.subscribe();
        let mut deadline: Option<Instant> = None;
        let mut fatal: Option<SourceError> = None;
        loop {
            self.dispatch();
            self.publish_gauges();
            if self.finished(deadline.is_some()) {
                break;
            }
            // Read once per turn: a change wakes the loop through `changed()` below.
            let gates = Gates {
                stopping: deadline.is_some(),
                store_healthy: *health.borrow(),
                breaker_closed: *breaker.borrow() == BreakerState::Closed,
            };
            let pull = self.should_pull(gates);
            self.set_intake(pull);
            tokio::select! {
                biased;
                changed = self.shutdown.changed(), if deadline.is_none() => {
                    if changed.is_ok() && *self.shutdown.borrow() {
                        deadline = Some(self.begin_stop());
                    }
                }
                Some(joined) = self.jobs.join_next_with_id() => self.job_done(joined),
                _ = sleep_until_or_never(deadline) => {
                    tracing::warn!(running = self.jobs.len(), "shutdown deadline passed: abandoning running handlers");
                    break;
                }
                next = self.source.next(), if pull => {
                    let mut failed = self.on_next(next);
                    if failed.is_none() {
                        failed = self.pull_ready(gates);
                    }
                    if let Some(err) = failed {
                        fatal = Some(err);
                        deadline = Some(self.begin_stop());
                    }
                }
                _ = breaker.changed() => {}
                _ = health.changed() => {}
            }
        }
        self.jobs.abort_all();
        while let Some(joined) = self.jobs.join_next_with_id().await {
            self.job_done(joined);
        }
        self.publish_gauges();
        let result = fatal.map_or(Ok(()), |err| Err(Error::Source(err)));
        (result, self.source)
    }

    /// Takes what the source has ready without waiting, so a busy source costs one turn of
    /// the main loop per batch rather than per message.
    fn pull_ready(&mut self, gates: Gates) -> Option<SourceError> {
        for _ in 0..PULL_BATCH {
            if !self.should_pull(gates) {
                break;
            }
            let next = self.source.next().now_or_never()?;
            if let Some(fatal) = self.on_next(next) {
                return Some(fatal);
            }
        }
        None
    }

    /// Handles what the source gave; returns a fatal error.
    fn on_next(&mut self, next: Option<Result<Delivery, SourceError>>) -> Option<SourceError> {
        match next {
            Some(Ok(delivery)) => self.admit(delivery),
            Some(Err(err)) if err.is_recoverable() => {
                tracing::warn!(error = %err, "source error; continuing")
            }
            Some(Err(err)) => {
                tracing::error!(error = %err, "source failed: stopping");
                return Some(err);
            }
            None => self.source_done = true,
        }
        None
    }

    fn finished(&self, stopping: bool) -> bool {
        let idle = self.jobs.is_empty();
        if stopping {
            idle
        } else {
            idle && self.source_done && self.sequencer.is_empty()
        }
    }

    fn should_pull(&self, gates: Gates) -> bool {
        let breaker_allows = gates.breaker_closed
            // With nothing held, one message may come in to serve as the breaker's probe.
            || (self.sequencer.is_empty() && self.jobs.is_empty());
        !gates.stopping
            && !self.source_done
            && gates.store_healthy
            && breaker_allows
            && self.sequencer.len() < self.shared.config.max_buffered
    }

    fn set_intake(&mut self, pull: bool) {
        let intake = if pull { Intake::Open } else { Intake::Paused };
        if intake != self.intake {
            self.intake = intake;
            self.source.set_intake(intake);
        }
    }

    fn admit(&mut self, mut delivery: Delivery) {
        super::stats::bump(&self.shared.stats.received);
        let config = &self.shared.config;
        let message = &delivery.message;
        let violation = config.limits.check(message).err();
        let idempotency_key = config
            .idempotency
            .enabled
            .then(|| config.idempotency.key.extract(message))
            .flatten();
        let ordering_key = config.ordering.key.extract(message);
        let lane = match (&ordering_key, &idempotency_key) {
            (Some(key), _) => Lane::Ordered(key.clone()),
            (None, Some(key)) => Lane::Deduplicated(key.clone()),
            (None, None) => Lane::Free,
        };
        delivery
            .message
            .set_idempotency_key(idempotency_key.clone());
        delivery.message.set_ordering_key(ordering_key.clone());
        let job = Box::new(Job {
            delivery,
            idempotency_key,
            ordering_key,
            violation,
        });
        self.sequencer.push(lane, job);
    }

    fn dispatch(&mut self) {
        while self.jobs.len() < self.shared.config.max_in_flight {
            let Some((lane, job)) = self.sequencer.pop_ready() else {
                return;
            };
            if job.delivery.ack.is_revoked() {
                // Its partition went to another consumer, which will handle it; dropping
                // the job abandons it, and the lane moves on.
                self.sequencer.finish(&lane);
                continue;
            }
            let origin = job.delivery.message.origin();
            let span = tracing::debug_span!(
                "message",
                source = %origin.source,
                position = %origin.position,
                key = ?job.ordering_key,
                attempt = tracing::field::Empty,
            );
            let task = worker::run(Arc::clone(&self.shared), job).instrument(span);
            let handle = self.jobs.spawn(task);
            self.lanes.insert(handle.id(), lane);
        }
    }

    fn job_done(&mut self, joined: Result<(tokio::task::Id, ()), JoinError>) {
        let id = match joined {
            Ok((id, ())) => id,
            Err(err) => {
                if err.is_panic() {
                    // Handler panics are caught inside the worker; this is a Seawall bug.
                    // The job's ack was dropped, so the broker will redeliver the message.
                    tracing::error!(error = %err, "pipeline worker panicked");
                }
                err.id()
            }
        };
        if let Some(lane) = self.lanes.remove(&id) {
            self.sequencer.finish(&lane);
        }
    }

    /// Stops intake, tells workers to abandon their waits, and drops every message not
    /// yet running (their acks abandon them, so the broker redelivers).
    fn begin_stop(&mut self) -> Instant {
        tracing::info!(
            running = self.jobs.len(),
            "stopping: no new messages; waiting for running handlers"
        );
        self.stopping.send_replace(true);
        let dropped = self.sequencer.drain_waiting(|_| true);
        drop(dropped);
        Instant::now() + self.shared.config.shutdown_deadline
    }

    fn publish_gauges(&self) {
        let stats = &self.shared.stats;
        stats
            .in_flight
            .store(self.jobs.len() as u64, Ordering::Relaxed);
        stats
            .buffered
            .store(self.sequencer.len() as u64, Ordering::Relaxed);
    }
}

async fn sleep_until_or_never(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
