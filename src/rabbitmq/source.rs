//! The queue source: consumes with manual acks, acks what the pipeline completes, and
//! reconnects by itself.
//!
//! A driver task owns the connection. Deliveries go to the pipeline through a bounded
//! queue; while the pipeline does not pull, the driver waits and the broker stops at
//! `prefetch` unacknowledged deliveries — that is the backpressure. Acks go through an
//! ack task that drops any ack for a delivery of an earlier connection, so a delivery tag
//! is never acked on a channel it did not come from. Seawall never requeues to retry:
//! a requeue would break per-key order.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use lapin::Acker;
use lapin::Consumer;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::acks::{ack_loop, AckCommand, RabbitAck, ACK_WAIT};
use super::config::RabbitConfig;
use super::connect::{open_consumer, Link};
use super::convert::to_message;
use super::error::RabbitError;
use crate::retry::Backoff;
use crate::source::{Ack, Delivery, Source, SourceError};

/// Counts the connections a source lost (and re-established), for observing it.
#[derive(Clone, Debug)]
pub struct ConnectionLosses(Arc<AtomicU64>);

impl ConnectionLosses {
    /// Connections lost so far.
    pub fn get(&self) -> u64 {
        // The generation starts at 1 and goes up by one per loss.
        self.0.load(Ordering::SeqCst) - 1
    }
}

/// Whether a source is connected now (false from a lost connection until the
/// reconnect succeeds), for readiness checks.
#[derive(Clone, Debug)]
pub struct Connected(Arc<AtomicBool>);

impl Connected {
    /// True while the source has a live connection and consumer.
    pub fn is_connected(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Consumes a RabbitMQ queue. Build with [`RabbitSource::connect`].
pub struct RabbitSource {
    generation: Arc<AtomicU64>,
    connected: Arc<AtomicBool>,
    deliveries: mpsc::Receiver<Delivery>,
    stop: watch::Sender<bool>,
    driver: Option<JoinHandle<()>>,
}

impl RabbitSource {
    /// Connects, declares (or checks) the queue and starts consuming. Fails naming the
    /// queue if it does not exist and Seawall is not to declare it.
    pub async fn connect(config: RabbitConfig) -> Result<Self, crate::Error> {
        config.validate()?;
        let generation = Arc::new(AtomicU64::new(1));
        let connected = Arc::new(AtomicBool::new(true));
        let tag = format!("seawall-{}-{}", std::process::id(), config.queue);
        let (link, consumer) = open_consumer(&config, &tag).await?;
        let capacity = usize::from(config.prefetch).max(1);
        let (deliveries_tx, deliveries) = mpsc::channel(capacity);
        let (acks_tx, acks_rx) = mpsc::channel(capacity * 4 + 64);
        let (stop, stop_rx) = watch::channel(false);
        let ack_task = tokio::spawn(ack_loop(acks_rx, Arc::clone(&generation), ACK_WAIT));
        let driver = Driver {
            queue: Arc::from(config.queue.as_str()),
            tag,
            config,
            deliveries: deliveries_tx,
            acks: acks_tx,
            generation: Arc::clone(&generation),
            connected: Arc::clone(&connected),
            stop: stop_rx,
        };
        let session = Session {
            link,
            consumer,
            generation: 1,
        };
        Ok(Self {
            generation,
            connected,
            deliveries,
            stop,
            driver: Some(tokio::spawn(driver.run(session, ack_task))),
        })
    }
}

impl RabbitSource {
    /// A counter of the connections this source lost and re-established.
    pub fn connection_losses(&self) -> ConnectionLosses {
        ConnectionLosses(Arc::clone(&self.generation))
    }

    /// Whether the source is connected now.
    pub fn connected(&self) -> Connected {
        Connected(Arc::clone(&self.connected))
    }
}

impl Source for RabbitSource {
    async fn next(&mut self) -> Option<Result<Delivery, SourceError>> {
        self.deliveries.recv().await.map(Ok)
    }

    async fn close(&mut self) {
        self.stop.send_replace(true);
        // Deliveries never pulled abandon as they drop, releasing their ack senders.
        self.deliveries.close();
        while self.deliveries.try_recv().is_ok() {}
        if let Some(driver) = self.driver.take() {
            let _ = driver.await;
        }
    }
}

impl Drop for RabbitSource {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

struct Session {
    link: Link,
    consumer: Consumer,
    generation: u64,
}

enum Ended {
    Stopped,
    Lost(String),
}

struct Driver {
    queue: Arc<str>,
    tag: String,
    config: RabbitConfig,
    deliveries: mpsc::Sender<Delivery>,
    acks: mpsc::Sender<AckCommand<Acker>>,
    generation: Arc<AtomicU64>,
    connected: Arc<AtomicBool>,
    stop: watch::Receiver<bool>,
}

impl Driver {
    async fn run(mut self, mut session: Session, ack_task: JoinHandle<()>) {
        loop {
            let ended = self.forward(&mut session).await;
            if let Ended::Lost(reason) = ended {
                // Acks still queued for the lost channel must not reach the next one.
                self.generation.fetch_add(1, Ordering::SeqCst);
                self.connected.store(false, Ordering::SeqCst);
                tracing::warn!(queue = %self.queue, %reason, "RabbitMQ connection lost; reconnecting");
                session.link.close().await;
                match self.reconnect().await {
                    Some(next) => {
                        session = next;
                        continue;
                    }
                    None => break,
                }
            }
            // Stopped: let the last acks out before the connection closes.
            drop(self.acks);
            let _ = ack_task.await;
            session.link.close().await;
            return;
        }
        drop(self.acks);
        let _ = ack_task.await;
    }

    async fn forward(&mut self, session: &mut Session) -> Ended {
        loop {
            let next = tokio::select! {
                next = session.consumer.next() => next,
                _ = self.stop.wait_for(|stop| *stop) => return Ended::Stopped,
            };
            let delivery = match next {
                Some(Ok(delivery)) => delivery,
                Some(Err(err)) => return Ended::Lost(err.to_string()),
                None => return Ended::Lost("the broker cancelled the consumer".to_owned()),
            };
            let (message, acker) = to_message(&self.queue, delivery);
            let ack = Ack::new(RabbitAck {
                generation: session.generation,
                acker,
                acks: self.acks.clone(),
            });
            tokio::select! {
                sent = self.deliveries.send(Delivery::new(message, ack)) => {
                    if sent.is_err() {
                        return Ended::Stopped;
                    }
                }
                _ = self.stop.wait_for(|stop| *stop) => return Ended::Stopped,
            }
        }
    }

    async fn reconnect(&mut self) -> Option<Session> {
        let reconnect = &self.config.reconnect;
        let mut backoff = Backoff::new(reconnect.initial, reconnect.max, 2.0);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(backoff.next_delay()) => {}
                _ = self.stop.wait_for(|stop| *stop) => return None,
            }
            match open_consumer(&self.config, &self.tag).await {
                Ok((link, consumer)) => {
                    tracing::info!(queue = %self.queue, "reconnected to RabbitMQ");
                    self.connected.store(true, Ordering::SeqCst);
                    let generation = self.generation.load(Ordering::SeqCst);
                    return Some(Session {
                        link,
                        consumer,
                        generation,
                    });
                }
                Err(err) => report_reconnect_failure(&err),
            }
        }
    }
}

fn report_reconnect_failure(err: &RabbitError) {
    tracing::warn!(error = %err, recoverable = err.is_recoverable(), "reconnecting to RabbitMQ failed; retrying");
}
