//! Group flushing: store writes become durable in groups, and completions are released
//! to the source only after the flush of their group.

use std::sync::Arc;

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::config::DurabilityConfig;
use super::store_health::{store_backoff, StoreHealth};
use crate::source::Ack;
use crate::store::IdempotencyStore;

/// Hands completions to the flusher task.
#[derive(Clone)]
pub(crate) struct Durability {
    tx: mpsc::Sender<Ack>,
}

impl Durability {
    /// Completes `ack` once every store write made before the call is durable.
    pub(crate) async fn release(&self, ack: Ack) {
        // If the flusher is gone the ack comes back and is dropped, abandoning it: the
        // broker redelivers and the store deduplicates.
        match self.tx.try_send(ack) {
            Ok(()) | Err(TrySendError::Closed(_)) => {}
            // Boxed: waiting for room is rare, and its state would otherwise sit in every
            // message's task.
            Err(TrySendError::Full(ack)) => {
                let _ = Box::pin(self.tx.send(ack)).await;
            }
        }
    }
}

/// Starts the flusher. It ends when every [`Durability`] is dropped (after a last flush)
/// or when `hard_stop` turns true (abandoning what it holds).
pub(crate) fn spawn_flusher<S: IdempotencyStore>(
    store: Arc<S>,
    config: DurabilityConfig,
    health: StoreHealth,
    hard_stop: watch::Receiver<bool>,
) -> (Durability, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(config.max_group.max(1));
    let flusher = Flusher {
        store,
        config,
        health,
        hard_stop,
        rx,
    };
    (Durability { tx }, tokio::spawn(flusher.run()))
}

struct Flusher<S> {
    store: Arc<S>,
    config: DurabilityConfig,
    health: StoreHealth,
    hard_stop: watch::Receiver<bool>,
    rx: mpsc::Receiver<Ack>,
}

impl<S: IdempotencyStore> Flusher<S> {
    async fn run(mut self) {
        // One vector for every group: growing a new one each time cost more than the
        // flush's own bookkeeping (reallocations of a few KiB each make glibc's malloc
        // consolidate its free lists).
        let mut group = Vec::with_capacity(self.config.max_group.clamp(1, 4096));
        while let Some(first) = self.rx.recv().await {
            self.gather(first, &mut group).await;
            if !self.flush_until_durable().await {
                return; // Hard stop: dropping the group abandons its acks.
            }
            for ack in group.drain(..) {
                ack.complete();
            }
        }
    }

    /// Collects a group into `group`: whatever arrives within `flush_interval`, up to
    /// `max_group`.
    async fn gather(&mut self, first: Ack, group: &mut Vec<Ack>) {
        let deadline = Instant::now() + self.config.flush_interval;
        group.push(first);
        while group.len() < self.config.max_group {
            let next = match self.rx.try_recv() {
                Ok(ack) => Some(ack),
                Err(_) => tokio::time::timeout_at(deadline, self.rx.recv())
                    .await
                    .ok()
                    .flatten(),
            };
            let Some(ack) = next else { break };
            group.push(ack);
        }
    }

    /// Flushes, retrying while the store fails. Returns false on a hard stop.
    async fn flush_until_durable(&mut self) -> bool {
        let mut backoff = store_backoff();
        loop {
            let result = if self.store.flush_blocks() {
                let store = Arc::clone(&self.store);
                tokio::task::spawn_blocking(move || store.flush()).await
            } else {
                Ok(self.store.flush())
            };
            match result {
                Ok(Ok(())) => {
                    self.health.writable();
                    return true;
                }
                Ok(Err(err)) => self.health.failed(&err),
                Err(join) => tracing::error!(error = %join, "store flush task failed"),
            }
            if *self.hard_stop.borrow() {
                return false;
            }
            let mut health = self.health.subscribe();
            tokio::select! {
                _ = tokio::time::sleep(backoff.next_delay()) => {}
                // The probe brought the store back: flush at once.
                _ = health.wait_for(|writable| *writable) => {}
                changed = self.hard_stop.changed() => {
                    if changed.is_err() {
                        return false; // The pipeline is gone.
                    }
                }
            }
        }
    }
}
