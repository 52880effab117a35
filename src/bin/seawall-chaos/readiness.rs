//! Watches the worker's `/readyz` in the background and remembers each change, so a
//! broker restart can be matched with when the worker noticed and when it was back.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How often `/readyz` is asked.
const EVERY: Duration = Duration::from_millis(50);

/// The changes seen so far: when, and ready or not.
#[derive(Clone, Default)]
pub struct Readiness {
    changes: Arc<Mutex<Vec<(Instant, bool)>>>,
}

impl Readiness {
    /// Polls `http://{admin}/readyz` until the process ends (the task is detached: the
    /// run's process exits right after the report).
    pub fn watch(admin: &str) -> Self {
        let watched = Self::default();
        let (changes, url) = (watched.clone(), format!("http://{admin}/readyz"));
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            loop {
                let answer = client.get(&url).timeout(EVERY * 10).send().await;
                changes.saw(
                    Instant::now(),
                    answer.is_ok_and(|r| r.status().is_success()),
                );
                tokio::time::sleep(EVERY).await;
            }
        });
        watched
    }

    fn lock(&self) -> MutexGuard<'_, Vec<(Instant, bool)>> {
        self.changes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn saw(&self, at: Instant, ready: bool) {
        let mut changes = self.lock();
        if changes.last().is_none_or(|(_, was)| *was != ready) {
            changes.push((at, ready));
        }
    }

    /// Whether it is ready now (as last polled).
    pub fn ready(&self) -> bool {
        self.lock().last().is_some_and(|(_, ready)| *ready)
    }

    /// Whether it went not ready at or after `since`.
    pub fn went_down_since(&self, since: Instant) -> bool {
        self.lock().iter().any(|(at, ready)| !ready && *at >= since)
    }

    /// When it last became ready.
    pub fn ready_since(&self) -> Option<Instant> {
        self.lock()
            .iter()
            .rev()
            .find(|(_, ready)| *ready)
            .map(|(at, _)| *at)
    }
}
