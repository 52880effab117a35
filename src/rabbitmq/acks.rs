//! Acks for the queue source: one task sends them in order, drops those of a lost
//! channel, and never waits on one for long.
//!
//! lapin resolves an ack once its frame is handed to the connection's I/O loop. If that
//! loop has already ended (the broker went away and the channel is not yet marked
//! poisoned), the ack is dropped and its promise never resolves. One such ack used to
//! stall the task for good: every later ack, those of the next connection included,
//! waited behind it, the broker stopped at `prefetch` unacknowledged deliveries, and the
//! source delivered nothing more although it had reconnected. So each ack gets
//! [`ACK_WAIT`]; one that takes longer is given up, which costs a redelivery at worst
//! (the idempotency store absorbs it).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lapin::options::BasicAckOptions;
use lapin::Acker;
use tokio::sync::mpsc;

use crate::source::Settle;

/// How long one ack may take to reach the connection. Far above what a live connection
/// needs (microseconds), and short enough that a lost one delays the next connection's
/// acks by no more than this.
pub(crate) const ACK_WAIT: Duration = Duration::from_secs(5);

/// A delivery's acknowledgement handle, as the ack task needs it.
pub(crate) trait Ackable: Send + 'static {
    /// False once the channel it came from is known to be closed.
    fn usable(&self) -> bool;
    /// Acks; resolves once the ack is on its way to the broker.
    fn ack(self) -> impl Future<Output = Result<(), String>> + Send;
}

impl Ackable for Acker {
    fn usable(&self) -> bool {
        Acker::usable(self)
    }

    async fn ack(self) -> Result<(), String> {
        Acker::ack(&self, BasicAckOptions::default())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// An ack on its way to the ack task, tagged with its connection's generation.
pub(crate) struct AckCommand<A> {
    pub generation: u64,
    pub acker: A,
}

/// What the pipeline settles: completing sends the ack to the ack task.
pub(crate) struct RabbitAck {
    pub generation: u64,
    pub acker: Acker,
    pub acks: mpsc::Sender<AckCommand<Acker>>,
}

impl Settle for RabbitAck {
    fn complete(self: Box<Self>) {
        let command = AckCommand {
            generation: self.generation,
            acker: self.acker,
        };
        // The queue holds more than the broker lets be unacknowledged, so it is full only
        // if the ack task stalls; then ack from a task of its own rather than lose it.
        if let Err(mpsc::error::TrySendError::Full(command)) = self.acks.try_send(command) {
            tokio::spawn(async move {
                let _ = tokio::time::timeout(ACK_WAIT, command.acker.ack()).await;
            });
        }
    }

    fn abandon(self: Box<Self>) {
        // Left unacknowledged: the broker redelivers it when the channel closes.
    }
}

/// Sends acks in arrival order until every sender is gone. An ack of an earlier
/// connection (`current` has moved on) is dropped, so a delivery tag is never acked on a
/// channel it did not come from; one that does not go out within `wait` is given up.
pub(crate) async fn ack_loop<A: Ackable>(
    mut commands: mpsc::Receiver<AckCommand<A>>,
    current: Arc<AtomicU64>,
    wait: Duration,
) {
    while let Some(command) = commands.recv().await {
        if command.generation != current.load(Ordering::SeqCst) || !command.acker.usable() {
            tracing::debug!(
                "dropping the ack of a delivery from a lost channel; the broker redelivers it"
            );
            continue;
        }
        match tokio::time::timeout(wait, command.acker.ack()).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "ack failed; the broker will redeliver the message");
            }
            Err(_) => tracing::warn!(
                wait = ?wait,
                "an ack did not reach the connection in time (lost connection?); giving it up, the broker redelivers the message"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// An ack that records itself, or (like lapin's after its I/O loop ended) never
    /// resolves.
    struct FakeAck {
        id: u32,
        hangs: bool,
        done: Arc<Mutex<Vec<u32>>>,
    }

    impl Ackable for FakeAck {
        fn usable(&self) -> bool {
            true
        }

        async fn ack(self) -> Result<(), String> {
            if self.hangs {
                std::future::pending::<()>().await;
            }
            self.done.lock().map_err(|e| e.to_string())?.push(self.id);
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_ack_that_never_resolves_does_not_stall_the_ones_after_it() {
        let done = Arc::new(Mutex::new(Vec::new()));
        let current = Arc::new(AtomicU64::new(1));
        let (tx, rx) = mpsc::channel(8);
        let task = tokio::spawn(ack_loop(rx, Arc::clone(&current), ACK_WAIT));
        for (id, hangs) in [(1, false), (2, true), (3, false), (4, false)] {
            let acker = FakeAck {
                id,
                hangs,
                done: Arc::clone(&done),
            };
            tx.send(AckCommand {
                generation: 1,
                acker,
            })
            .await
            .map_err(|_| "ack task gone")
            .unwrap();
        }
        drop(tx);
        tokio::time::timeout(ACK_WAIT * 3, task)
            .await
            .expect("the ack task stalled behind an ack that never resolves")
            .unwrap();
        assert_eq!(*done.lock().unwrap(), vec![1, 3, 4]);
    }

    #[tokio::test(start_paused = true)]
    async fn acks_of_an_earlier_connection_are_dropped() {
        let done = Arc::new(Mutex::new(Vec::new()));
        let current = Arc::new(AtomicU64::new(2));
        let (tx, rx) = mpsc::channel(8);
        let task = tokio::spawn(ack_loop(rx, current, ACK_WAIT));
        for (id, generation) in [(1, 1), (2, 2)] {
            let acker = FakeAck {
                id,
                hangs: false,
                done: Arc::clone(&done),
            };
            tx.send(AckCommand { generation, acker })
                .await
                .map_err(|_| "ack task gone")
                .unwrap();
        }
        drop(tx);
        task.await.unwrap();
        assert_eq!(*done.lock().unwrap(), vec![2]);
    }
}
