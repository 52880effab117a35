//! The background thread that merges record runs after flushes add them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::store::error::StoreErrorKind;
use crate::store::runs::RecordRuns;
use crate::store::sled_open::Trees;

/// A running merge thread.
pub(super) struct Merger {
    /// One wake-up waits at most: merges run until none is due, whatever woke them.
    wake: SyncSender<()>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Merger {
    /// Starts the thread; `None` (merges do not run, lookups read more runs) if the
    /// system has no thread to give.
    pub(super) fn start(
        runs: Arc<RecordRuns>,
        trees: Trees,
        broken: Arc<AtomicBool>,
    ) -> Option<Self> {
        let (wake, woken) = sync_channel(1);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let spawned = std::thread::Builder::new()
            .name("seawall-store-merge".into())
            .spawn(move || merge_when_woken(&runs, &trees, &broken, &stopped, &woken));
        match spawned {
            Ok(thread) => {
                let merger = Self { wake, stop, thread };
                merger.wake(); // Runs loaded at open may be due a merge.
                Some(merger)
            }
            Err(err) => {
                tracing::warn!(error = %err, "no thread to merge record runs: lookups read every run");
                None
            }
        }
    }

    pub(super) fn wake(&self) {
        // Full means a wake-up already waits.
        let _ = self.wake.try_send(());
    }

    /// Stops the thread after the merge under way, and waits for it.
    pub(super) fn stop(self) {
        let Self { wake, stop, thread } = self;
        stop.store(true, Ordering::SeqCst);
        drop(wake);
        let _ = thread.join();
    }
}

fn merge_when_woken(
    runs: &RecordRuns,
    trees: &Trees,
    broken: &AtomicBool,
    stop: &AtomicBool,
    woken: &Receiver<()>,
) {
    while woken.recv().is_ok() {
        while !stop.load(Ordering::SeqCst) {
            match runs.merge_once(trees) {
                Ok(true) => {}
                Ok(false) => break,
                Err(err) => {
                    tracing::warn!(error = %err, "merging record runs failed; lookups read more runs until a merge works");
                    if err.kind() != StoreErrorKind::Corrupt {
                        broken.store(true, Ordering::SeqCst);
                    }
                    break;
                }
            }
        }
        if stop.load(Ordering::SeqCst) {
            return;
        }
    }
}
