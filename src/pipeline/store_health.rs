//! Whether the store takes durable writes, and the probe that finds out when it does
//! again.
//!
//! A store that cannot write (a full or read-only disk) must not make the pipeline
//! complete, dead-letter or give up on messages: the messages are fine. The pipeline
//! pauses instead: intake stops, no handler call starts, completions wait for a flush,
//! and one probe task calls [`IdempotencyStore::recover`] with backoff until it
//! succeeds. Only a flush or a probe that succeeded declares the store healthy again,
//! so a read that happens to work does not resume intake early.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::retry::Backoff;
use crate::store::{IdempotencyStore, StoreError};

/// Whether the store is accepting writes. The pipeline stops pulling while it is not.
#[derive(Clone)]
pub(crate) struct StoreHealth {
    tx: Arc<watch::Sender<bool>>,
    /// When the current outage began, for the log line that ends it.
    down_since: Arc<Mutex<Option<Instant>>>,
}

impl StoreHealth {
    pub(crate) fn new() -> Self {
        Self {
            tx: Arc::new(watch::channel(true).0),
            down_since: Arc::new(Mutex::new(None)),
        }
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }

    /// Whether the store takes writes now.
    pub(crate) fn is_writable(&self) -> bool {
        *self.tx.borrow()
    }

    /// A store operation failed. Logs a warning when this begins an outage; repeats of
    /// the failure during it go to debug, so an outage is one line, not a flood.
    pub(crate) fn failed(&self, err: &StoreError) {
        let began = self
            .tx
            .send_if_modified(|writable| std::mem::replace(writable, false));
        if began {
            *self.lock() = Some(Instant::now());
            tracing::warn!(
                error = %err,
                storage_unavailable = err.is_storage_unavailable(),
                "idempotency store cannot write: pipeline paused (no intake, nothing completed) until a probe succeeds"
            );
        } else {
            tracing::debug!(error = %err, "idempotency store still failing");
        }
    }

    /// A durable write succeeded (a flush or a probe).
    pub(crate) fn writable(&self) {
        let ended = self
            .tx
            .send_if_modified(|writable| !std::mem::replace(writable, true));
        if ended {
            let paused = self.lock().take().map(|since| since.elapsed());
            tracing::info!(paused_for = ?paused.unwrap_or_default(), "idempotency store writable again: pipeline resumed");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        // Holds one value replaced whole: a poisoned lock is consistent.
        self.down_since.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A store-failure backoff: short at first, at most a few seconds apart.
pub(crate) fn store_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(50), Duration::from_secs(5), 2.0)
}

/// Starts the probe: whenever the store turns unhealthy, it calls
/// [`IdempotencyStore::recover`] with backoff until that succeeds.
pub(crate) fn spawn_prober<S: IdempotencyStore>(
    store: Arc<S>,
    health: StoreHealth,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut changes = health.subscribe();
        loop {
            if changes.wait_for(|writable| !*writable).await.is_err() {
                return;
            }
            let mut backoff = store_backoff();
            while !health.is_writable() {
                tokio::select! {
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                    // Something else (a flush) found the store writable first.
                    _ = changes.wait_for(|writable| *writable) => break,
                }
                let store = Arc::clone(&store);
                match tokio::task::spawn_blocking(move || store.recover()).await {
                    Ok(Ok(())) => health.writable(),
                    Ok(Err(err)) => health.failed(&err),
                    Err(join) => tracing::warn!(error = %join, "store probe task failed"),
                }
            }
        }
    })
}
