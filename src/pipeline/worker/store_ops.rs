//! A worker's store operations while the store may fail: retried, never charged to the
//! message (the pause around them: `store_health.rs`).

use super::super::store_health::store_backoff;
use super::Worker;
use crate::dead_letter::DeadLetterSink;
use crate::handler::Handler;
use crate::store::{IdempotencyStore, StoreError, StoreErrorKind};

impl<H: Handler, S: IdempotencyStore, D: DeadLetterSink> Worker<'_, H, S, D> {
    /// Runs a store operation, retrying while the store fails (the pipeline is paused
    /// then). A store failure never becomes the message's failure: the message is fine.
    pub(super) async fn store_op<T>(&self, op: impl Fn(&S) -> Result<T, StoreError>) -> Option<T> {
        match op(&self.shared.store) {
            Ok(value) => Some(value),
            Err(err) => {
                let outage = self.store_failed(&err);
                Box::pin(self.store_retry(op, outage)).await
            }
        }
    }

    /// Retries `op` with backoff, and during an outage at once when the probe finds the
    /// store writable. Success of the operation alone does not end an outage: a read may
    /// work while writes do not.
    async fn store_retry<T>(
        &self,
        op: impl Fn(&S) -> Result<T, StoreError>,
        mut outage: bool,
    ) -> Option<T> {
        let mut backoff = store_backoff();
        loop {
            let mut health = self.shared.health.subscribe();
            let delay = backoff.next_delay();
            let wait = async {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = health.wait_for(|writable| *writable), if outage => {}
                }
            };
            self.until_stopping(wait).await?;
            match op(&self.shared.store) {
                Ok(value) => return Some(value),
                Err(err) => outage = self.store_failed(&err),
            }
        }
    }

    /// Reports a store failure; returns whether it is an outage of the store (which
    /// pauses the pipeline) rather than one corrupt record (which holds this message).
    fn store_failed(&self, err: &StoreError) -> bool {
        if err.kind() == StoreErrorKind::Corrupt {
            tracing::warn!(error = %err, "corrupt store record: holding this message");
            return false;
        }
        self.shared.health.failed(err);
        true
    }

    /// Waits until the store takes writes (at once when it does).
    pub(super) async fn store_writable(&self) -> Option<()> {
        if self.shared.health.is_writable() {
            return Some(());
        }
        let mut health = self.shared.health.subscribe();
        let wait = health.wait_for(|writable| *writable);
        Box::pin(self.until_stopping(wait)).await.map(|_| ())
    }
}
