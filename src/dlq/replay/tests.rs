use std::sync::{Arc, Mutex};

use super::*;
use crate::message::Message;

/// A backend that records what it is asked and fails on request.
#[derive(Default)]
struct Recorder {
    sent: Arc<Mutex<Vec<String>>>,
    batches: Vec<usize>,
    replayed: Vec<String>,
    fail_sends_after: Option<usize>,
    canary: Option<CanaryOutcome>,
    sent_at: Vec<tokio::time::Instant>,
}

impl ReplayBackend for Recorder {
    async fn send(&mut self, batch: &[Replay]) -> Result<Vec<Sent>, BackendError> {
        let mut sent = self.sent.lock().unwrap();
        if self.fail_sends_after.is_some_and(|n| sent.len() >= n) {
            return Err("broker gone".into());
        }
        self.batches.push(batch.len());
        self.sent_at.push(tokio::time::Instant::now());
        sent.extend(batch.iter().map(|r| r.id.clone()));
        Ok(batch
            .iter()
            .map(|r| Sent {
                id: r.id.clone(),
                destination: r.destination.clone(),
                position: None,
            })
            .collect())
    }

    async fn replayed(&mut self, ids: &[String]) -> Result<(), BackendError> {
        self.replayed.extend_from_slice(ids);
        Ok(())
    }

    async fn outcome(&mut self, _: &[Sent], _: Duration) -> Result<CanaryOutcome, BackendError> {
        Ok(self.canary.clone().unwrap_or(CanaryOutcome::Passed))
    }
}

fn sends(n: usize) -> Vec<Replay> {
    (0..n)
        .map(|i| Replay {
            id: format!("d/0/{i}"),
            destination: "orders".into(),
            partition: Some(0),
            message: Message::new("x"),
        })
        .collect()
}

fn ledger() -> (tempfile::TempDir, ReplayLedger) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = ReplayLedger::open(dir.path().join("ledger")).unwrap();
    (dir, ledger)
}

async fn run(
    backend: &mut Recorder,
    ledger: &mut ReplayLedger,
    n: usize,
    settings: &ReplaySettings,
) -> Result<ReplaySummary, ReplayRunError> {
    let sends = sends(n);
    let mut seen = Vec::new();
    let result = run_replay(
        &sends,
        backend,
        ledger,
        settings,
        &mut |p| seen.push(p.sent),
        std::future::pending(),
    )
    .await;
    if let Ok(summary) = &result {
        assert_eq!(seen.last().copied().unwrap_or(0), summary.sent);
    }
    result
}

#[tokio::test]
async fn everything_goes_in_order_in_batches_and_into_the_ledger() {
    let (_dir, mut ledger) = ledger();
    let mut backend = Recorder::default();
    let settings = ReplaySettings {
        batch_size: 4,
        ..ReplaySettings::default()
    };
    let summary = run(&mut backend, &mut ledger, 10, &settings).await.unwrap();
    assert_eq!((summary.sent, summary.end), (10, ReplayEnd::Done));
    assert_eq!(backend.batches, [4, 4, 2]);
    let expected: Vec<String> = (0..10).map(|i| format!("d/0/{i}")).collect();
    assert_eq!(*backend.sent.lock().unwrap(), expected);
    assert_eq!(backend.replayed, expected);
    assert_eq!(ledger.len(), 10);
}

#[tokio::test]
async fn a_failing_canary_stops_the_rest() {
    let (_dir, mut ledger) = ledger();
    let mut backend = Recorder {
        canary: Some(CanaryOutcome::FailedAgain(vec!["d/0/1".into()])),
        ..Recorder::default()
    };
    let settings = ReplaySettings {
        canary: Some(3),
        ..ReplaySettings::default()
    };
    let summary = run(&mut backend, &mut ledger, 10, &settings).await.unwrap();
    assert_eq!(summary.sent, 3);
    assert_eq!(
        summary.end,
        ReplayEnd::CanaryFailed(CanaryOutcome::FailedAgain(vec!["d/0/1".into()]))
    );
    assert_eq!(backend.batches, [3]);
}

#[tokio::test]
async fn a_passing_canary_lets_the_rest_follow() {
    let (_dir, mut ledger) = ledger();
    let mut backend = Recorder::default();
    let settings = ReplaySettings {
        canary: Some(2),
        batch_size: 100,
        ..ReplaySettings::default()
    };
    let summary = run(&mut backend, &mut ledger, 10, &settings).await.unwrap();
    assert_eq!((summary.sent, summary.end), (10, ReplayEnd::Done));
    assert_eq!(backend.batches, [2, 8]);
}

#[tokio::test(start_paused = true)]
async fn the_rate_spaces_batches() {
    let (_dir, mut ledger) = ledger();
    let mut backend = Recorder::default();
    let settings = ReplaySettings {
        rate: Some(100.0),
        ..ReplaySettings::default()
    };
    let start = tokio::time::Instant::now();
    run(&mut backend, &mut ledger, 50, &settings).await.unwrap();
    // Batches of a tenth of a second's worth (10), each due when the rate allows.
    assert_eq!(backend.batches, [10; 5]);
    let offsets: Vec<u128> = backend
        .sent_at
        .iter()
        .map(|at| (*at - start).as_millis())
        .collect();
    assert_eq!(offsets, [0, 100, 200, 300, 400]);
}

#[tokio::test]
async fn a_failed_send_keeps_what_was_confirmed() {
    let (_dir, mut ledger) = ledger();
    let mut backend = Recorder {
        fail_sends_after: Some(4),
        ..Recorder::default()
    };
    let settings = ReplaySettings {
        batch_size: 2,
        ..ReplaySettings::default()
    };
    let err = run(&mut backend, &mut ledger, 10, &settings)
        .await
        .unwrap_err();
    assert!(matches!(err, ReplayRunError::Send { sent: 4, .. }), "{err}");
    assert_eq!(ledger.len(), 4);
}

#[tokio::test]
async fn a_stop_before_the_first_batch_sends_nothing() {
    let (_dir, mut ledger) = ledger();
    let mut backend = Recorder::default();
    let sends = sends(3);
    let summary = run_replay(
        &sends,
        &mut backend,
        &mut ledger,
        &ReplaySettings::default(),
        &mut |_| {},
        std::future::ready(()),
    )
    .await
    .unwrap();
    assert_eq!((summary.sent, summary.end), (0, ReplayEnd::Interrupted));
    assert!(backend.batches.is_empty());
}
