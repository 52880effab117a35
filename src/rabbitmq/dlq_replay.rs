//! [`RabbitReplayer`]: the RabbitMQ side of `seawall dlq replay`.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Confirmation};
use tokio::time::Instant;

use super::convert::replay_properties;
use super::dlq::RabbitDeadLetterQueue;
use super::error::{RabbitError, RabbitErrorKind};
use crate::dead_letter::header;
use crate::dlq::{BackendError, CanaryOutcome, Replay, ReplayBackend, Sent};

/// How long the canary check waits, once the destination queues are empty, for a replay
/// to be dead-lettered again.
const DEFAULT_SETTLE: Duration = Duration::from_secs(2);

/// How often the canary check looks at the queues.
const POLL: Duration = Duration::from_millis(100);

/// Replays dead letters held by a [`RabbitDeadLetterQueue`] (a [`ReplayBackend`]).
///
/// Each message goes to the default exchange with its destination queue as the routing
/// key, so it reaches exactly the route's queue and no other binding; persistent,
/// `mandatory` (a queue that does not exist fails the batch naming it) and with publisher
/// confirms, a batch published in one go and then confirmed. It keeps the dead letter's
/// AMQP properties (content type, correlation id, message id, timestamp, …) and carries
/// exactly the replay message's headers, those unchanged keeping their AMQP types.
///
/// The routing key of a replayed message is the queue name, not its original routing
/// key: a route whose ordering key falls back to the routing key (no ordering header)
/// sees replays under another key than the originals.
pub struct RabbitReplayer<'q> {
    queue: &'q mut RabbitDeadLetterQueue,
    channel: Channel,
    settle: Duration,
}

impl RabbitDeadLetterQueue {
    /// A replayer publishing on a channel of its own on this reader's connection;
    /// replayed dead letters are removed from this reader (acknowledged).
    pub async fn replayer(&mut self) -> Result<RabbitReplayer<'_>, RabbitError> {
        let context = "opening a channel to replay on";
        let channel = self
            .connection()
            .create_channel()
            .await
            .map_err(|e| RabbitError::new(RabbitErrorKind::Connect, context, e))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| RabbitError::new(RabbitErrorKind::Connect, context, e))?;
        Ok(RabbitReplayer {
            queue: self,
            channel,
            settle: DEFAULT_SETTLE,
        })
    }
}

impl RabbitReplayer<'_> {
    /// How long the canary check waits, once the destination queues are empty, for a
    /// canary message to come back dead-lettered (default 2 s; the remaining wait when
    /// that is shorter).
    pub fn with_settle(mut self, settle: Duration) -> Self {
        self.settle = settle;
        self
    }

    /// Publishes the whole batch, then awaits every confirmation.
    async fn publish(&mut self, batch: &[Replay]) -> Result<Vec<Sent>, RabbitError> {
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let mut confirms = Vec::with_capacity(batch.len());
        for replay in batch {
            let properties =
                replay_properties(self.queue.properties_of(&replay.id), &replay.message);
            let confirm = self
                .channel
                .basic_publish(
                    "".into(),
                    replay.destination.as_str().into(),
                    options,
                    replay.message.payload(),
                    properties,
                )
                .await
                .map_err(|e| publish_error(replay, e))?;
            confirms.push(confirm);
        }
        let mut sent = Vec::with_capacity(batch.len());
        for (replay, confirm) in batch.iter().zip(confirms) {
            let confirmation = confirm.await.map_err(|e| publish_error(replay, e))?;
            check(replay, confirmation)?;
            sent.push(Sent {
                id: replay.id.clone(),
                destination: replay.destination.clone(),
                position: None,
            });
        }
        Ok(sent)
    }

    /// See [`ReplayBackend::outcome`]: polls the dead-letter queue for replays of `sent`
    /// dead-lettered again, until the destination queues are empty and then the settle
    /// time passed, or `wait` ran out.
    async fn canary(
        &mut self,
        sent: &[Sent],
        wait: Duration,
    ) -> Result<CanaryOutcome, RabbitError> {
        if sent.is_empty() {
            return Ok(CanaryOutcome::Passed);
        }
        let deadline = Instant::now() + wait;
        let ids: HashSet<&str> = sent.iter().map(|s| s.id.as_str()).collect();
        let destinations: BTreeSet<&str> = sent.iter().map(|s| s.destination.as_str()).collect();
        let mut failed: Vec<String> = Vec::new();
        let mut drained_at = None;
        loop {
            for record in self.new_dead_letters().await? {
                if ids.contains(record.as_str()) && !failed.contains(&record) {
                    failed.push(record);
                }
            }
            if failed.len() == ids.len() {
                break;
            }
            let now = Instant::now();
            if drained_at.is_none() && self.drained(&destinations).await? {
                drained_at = Some(now);
            }
            let settled = drained_at.is_some_and(|at| now >= at + self.settle);
            if settled || now >= deadline {
                break;
            }
            tokio::time::sleep(POLL.min(deadline - now)).await;
        }
        Ok(if !failed.is_empty() {
            CanaryOutcome::FailedAgain(failed)
        } else if drained_at.is_none() {
            CanaryOutcome::Unsettled(sent.iter().map(|s| s.id.clone()).collect())
        } else {
            CanaryOutcome::Passed
        })
    }

    /// Takes the dead letters that arrived since the last look (they stay held and
    /// listed) and returns the `seawall.replay-of` of each that has one.
    async fn new_dead_letters(&mut self) -> Result<Vec<String>, RabbitError> {
        let new = self.queue.take_new().await?;
        Ok(self.queue.records()[new]
            .iter()
            .filter_map(|r| r.headers.get_last(header::REPLAY_OF))
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect())
    }

    /// Whether every queue in `queues` holds no ready message.
    async fn drained(&self, queues: &BTreeSet<&str>) -> Result<bool, RabbitError> {
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        for queue in queues {
            let declared = self
                .channel
                .queue_declare((*queue).into(), passive, FieldTable::default())
                .await
                .map_err(|e| {
                    let context = format!("checking queue `{queue}` after the canary");
                    RabbitError::new(RabbitErrorKind::Topology, context, e)
                })?;
            if declared.message_count() > 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

fn publish_error(replay: &Replay, e: lapin::Error) -> RabbitError {
    let context = format!(
        "replaying dead letter `{}` to queue `{}`",
        replay.id, replay.destination
    );
    RabbitError::new(RabbitErrorKind::Publish, context, e)
}

fn check(replay: &Replay, confirmation: Confirmation) -> Result<(), RabbitError> {
    let (id, queue) = (&replay.id, &replay.destination);
    let refusal = match confirmation {
        Confirmation::Ack(None) => return Ok(()),
        Confirmation::Ack(Some(_)) => {
            format!("replaying dead letter `{id}`: queue `{queue}` does not exist (the message was returned unroutable)")
        }
        Confirmation::Nack(_) => {
            format!("replaying dead letter `{id}`: the broker refused it for queue `{queue}`")
        }
        Confirmation::NotRequested => {
            format!("replaying dead letter `{id}`: publisher confirms are off")
        }
    };
    Err(RabbitError::detected(RabbitErrorKind::Publish, refusal))
}

impl ReplayBackend for RabbitReplayer<'_> {
    async fn send(&mut self, batch: &[Replay]) -> Result<Vec<Sent>, BackendError> {
        Ok(self.publish(batch).await?)
    }

    async fn replayed(&mut self, ids: &[String]) -> Result<(), BackendError> {
        Ok(self.queue.remove(ids).await?)
    }

    async fn outcome(
        &mut self,
        sent: &[Sent],
        wait: Duration,
    ) -> Result<CanaryOutcome, BackendError> {
        Ok(self.canary(sent, wait).await?)
    }
}
