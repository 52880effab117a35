//! [`run_replay`]: sends a [`ReplayPlan`]'s messages through a broker's
//! [`ReplayBackend`] in order, at a rate, canary first, recording each confirmed batch in
//! the [`ReplayLedger`].

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::ledger::ReplayLedger;
use super::plan::Replay;

/// An error from a broker while replaying.
pub type BackendError = Box<dyn std::error::Error + Send + Sync>;

/// Where one replayed message landed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// The dead letter's id.
    pub id: String,
    /// The topic or queue it was sent to.
    pub destination: String,
    /// Its partition and offset there, for a log (Kafka); `None` for a queue.
    pub position: Option<(i32, i64)>,
}

/// How the route dealt with canary messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CanaryOutcome {
    /// The route finished with every one and none was dead-lettered again.
    Passed,
    /// These ids were dead-lettered again.
    FailedAgain(Vec<String>),
    /// The wait ran out before the route finished with these ids.
    Unsettled(Vec<String>),
}

/// A broker's side of a replay: the adapter translates, the replay decides.
pub trait ReplayBackend {
    /// Sends `batch` in order and returns when the broker has durably accepted every
    /// message (delivery reports, publisher confirms), with where each landed. Messages of
    /// one key must land in the order given.
    fn send(
        &mut self,
        batch: &[Replay],
    ) -> impl Future<Output = Result<Vec<Sent>, BackendError>> + Send;

    /// The batch is durably re-published: a queue removes these dead letters from the
    /// dead-letter queue; a log keeps them (the ledger remembers them).
    fn replayed(&mut self, ids: &[String])
        -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Waits, up to `wait`, until the route has finished with `sent` (processed or
    /// dead-lettered again), and tells which.
    fn outcome(
        &mut self,
        sent: &[Sent],
        wait: Duration,
    ) -> impl Future<Output = Result<CanaryOutcome, BackendError>> + Send;
}

/// How to send.
#[derive(Clone, Debug)]
pub struct ReplaySettings {
    /// Messages per batch (each batch is confirmed, then recorded in the ledger).
    pub batch_size: usize,
    /// At most this many messages a second; `None` sends as fast as the broker takes them.
    pub rate: Option<f64>,
    /// Send this many first, wait for their outcome, and stop if any fails again.
    pub canary: Option<usize>,
    /// How long to wait for the canary's outcome.
    pub canary_wait: Duration,
}

impl Default for ReplaySettings {
    fn default() -> Self {
        Self {
            batch_size: 1_000,
            rate: None,
            canary: None,
            canary_wait: Duration::from_secs(60),
        }
    }
}

/// Progress, after each batch.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Sent so far in this run.
    pub sent: usize,
    /// To send in this run.
    pub total: usize,
    /// Since the run started.
    pub elapsed: Duration,
}

impl Progress {
    /// Messages a second so far.
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-3)
    }

    /// The time left at the rate so far, once something was sent.
    pub fn eta(&self) -> Option<Duration> {
        let rate = self.rate();
        (self.sent > 0 && rate > 0.0)
            .then(|| Duration::from_secs_f64((self.total - self.sent) as f64 / rate))
    }
}

/// How a replay run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplayEnd {
    /// Everything was sent.
    Done,
    /// The canary did not pass; nothing after it was sent.
    CanaryFailed(CanaryOutcome),
    /// `stop` resolved; what was sent is in the ledger.
    Interrupted,
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct ReplaySummary {
    /// Messages sent and confirmed.
    pub sent: usize,
    /// How it ended.
    pub end: ReplayEnd,
    /// From first send to the last confirmation.
    pub elapsed: Duration,
}

/// A replay run that failed part-way; what was confirmed before is in the ledger.
#[derive(Debug, thiserror::Error)]
pub enum ReplayRunError {
    /// The broker refused or lost a batch.
    #[error("sending replayed messages failed after {sent} were confirmed: {source}")]
    Send {
        /// Confirmed before the failure.
        sent: usize,
        /// The broker's error.
        source: BackendError,
    },
    /// The ledger could not be written: stop rather than forget what was sent.
    #[error("writing the replay ledger failed after {sent} were confirmed: {source}")]
    Ledger {
        /// Confirmed before the failure.
        sent: usize,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Sends `sends` through `backend`: canary first when asked, then batches paced to the
/// rate; after each confirmed batch its ids go into `ledger` and the backend is told
/// they are replayed. `progress` is called after each batch; when `stop` resolves the run
/// ends after the batch in flight (a batch is never cut short).
pub async fn run_replay<B: ReplayBackend>(
    sends: &[Replay],
    backend: &mut B,
    ledger: &mut ReplayLedger,
    settings: &ReplaySettings,
    progress: &mut (dyn FnMut(Progress) + Send),
    stop: impl Future<Output = ()>,
) -> Result<ReplaySummary, ReplayRunError> {
    let started = Instant::now();
    let mut stop = std::pin::pin!(stop);
    let mut sent = 0;
    let mut canary = settings.canary.filter(|&k| k > 0);
    let batch_size = settings.batch_size.max(1);
    let end = loop {
        if sent == sends.len() {
            break ReplayEnd::Done;
        }
        let size = match canary {
            Some(k) => k,
            None => paced_batch(settings.rate, batch_size),
        };
        let batch = &sends[sent..(sent + size).min(sends.len())];
        // A batch in flight is finished, never cut: its confirmations go to the ledger.
        if futures::FutureExt::now_or_never(&mut stop).is_some() {
            break ReplayEnd::Interrupted;
        }
        let confirmed = send_batch(backend, ledger, batch, sent).await?;
        sent += batch.len();
        progress(Progress {
            sent,
            total: sends.len(),
            elapsed: started.elapsed(),
        });
        if canary.take().is_some() {
            let outcome = backend
                .outcome(&confirmed, settings.canary_wait)
                .await
                .map_err(|source| ReplayRunError::Send { sent, source })?;
            if outcome != CanaryOutcome::Passed {
                break ReplayEnd::CanaryFailed(outcome);
            }
        }
        if let Some(rate) = settings.rate {
            let due = started + Duration::from_secs_f64(sent as f64 / rate);
            tokio::select! {
                biased;
                () = &mut stop => break ReplayEnd::Interrupted,
                () = tokio::time::sleep_until(due) => {}
            }
        }
    };
    Ok(ReplaySummary {
        sent,
        end,
        elapsed: started.elapsed(),
    })
}

/// A batch of about a tenth of a second's worth at `rate`, so the pacing is smooth.
fn paced_batch(rate: Option<f64>, batch_size: usize) -> usize {
    match rate {
        Some(rate) => ((rate / 10.0).ceil() as usize).clamp(1, batch_size),
        None => batch_size,
    }
}

async fn send_batch<B: ReplayBackend>(
    backend: &mut B,
    ledger: &mut ReplayLedger,
    batch: &[Replay],
    sent_before: usize,
) -> Result<Vec<Sent>, ReplayRunError> {
    let send_error = |sent, source| ReplayRunError::Send { sent, source };
    let confirmed = backend
        .send(batch)
        .await
        .map_err(|e| send_error(sent_before, e))?;
    let sent = sent_before + batch.len();
    ledger
        .record(batch.iter().map(|r| r.id.as_str()))
        .map_err(|source| ReplayRunError::Ledger { sent, source })?;
    let ids: Vec<String> = batch.iter().map(|r| r.id.clone()).collect();
    backend
        .replayed(&ids)
        .await
        .map_err(|e| send_error(sent, e))?;
    Ok(confirmed)
}

#[cfg(test)]
mod tests;
