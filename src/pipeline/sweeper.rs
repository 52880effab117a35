//! Removes expired idempotency records now and then, so the store does not grow without
//! bound. Lookups ignore expired records anyway; sweeping only reclaims space.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::task::JoinHandle;

use super::config::IdempotencyConfig;
use crate::store::IdempotencyStore;

pub(crate) fn spawn<S: IdempotencyStore>(
    store: Arc<S>,
    config: &IdempotencyConfig,
) -> JoinHandle<()> {
    let window = config.dedup_window;
    let interval = config.sweep_interval;
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let Some(cutoff) = SystemTime::now().checked_sub(window) else {
                continue;
            };
            let store = Arc::clone(&store);
            match tokio::task::spawn_blocking(move || store.sweep(cutoff)).await {
                Ok(Ok(removed)) => tracing::debug!(removed, "swept expired idempotency records"),
                Ok(Err(err)) => {
                    tracing::warn!(error = %err, "sweeping expired idempotency records failed")
                }
                Err(err) => tracing::warn!(error = %err, "sweep task failed"),
            }
        }
    })
}
