//! Fault injection: drives the worker through a scenario while the workload is
//! delivered, until everything arrived or the deadline passed.

use std::time::{Duration, Instant};

use crate::downstream::Downstream;
use crate::worker::{Worker, SHUTDOWN_DEADLINE};

/// The fault scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// SIGKILL the worker K times at random moments, restarting it each time.
    Sigkill,
    /// SIGTERM the worker K times under load, checking it exits in time; restart.
    Sigterm,
    /// The downstream answers 503 for a while, then recovers.
    DownstreamOutage,
}

/// What the run should see before it is complete.
pub struct Goal {
    /// Distinct idempotency keys the downstream must accept.
    pub good: usize,
    /// Distinct poison keys the downstream must have refused.
    pub poison: usize,
    /// Faults to inject (kills or stops).
    pub faults: usize,
    /// How long the downstream stays down.
    pub outage: Duration,
    /// When to give up.
    pub deadline: Instant,
}

/// One graceful stop.
pub struct Stop {
    /// Exit status 0.
    pub clean: bool,
    /// How long the exit took (`None`: not within the deadline plus 5 s; killed).
    pub took: Option<Duration>,
}

/// What was injected, and whether the run completed.
#[derive(Default)]
pub struct Faults {
    pub kills: Vec<Instant>,
    pub stops: Vec<Stop>,
    pub outage: Option<(Instant, Instant)>,
    pub outage_over: bool,
    pub complete: bool,
}

/// Runs `scenario` until the goal is met (and the producer `finished`) or the deadline.
pub async fn drive(
    scenario: Scenario,
    goal: &Goal,
    downstream: &Downstream,
    worker: &mut Worker,
    finished: impl Fn() -> bool,
) -> anyhow::Result<Faults> {
    let mut faults = Faults::default();
    let gap = goal.good / (goal.faults + 1);
    let mut next_at = rand_share(gap);
    let mut last_shown = Instant::now();
    while Instant::now() < goal.deadline {
        let (accepted, refused) = downstream.progress();
        let injected = faults.kills.len() + faults.stops.len();
        if accepted >= goal.good && refused >= goal.poison && finished() {
            faults.complete = injected >= goal.faults || scenario == Scenario::DownstreamOutage;
            break;
        }
        if last_shown.elapsed() > Duration::from_secs(5) {
            println!("  … {accepted}/{} delivered, {injected} faults", goal.good);
            last_shown = Instant::now();
        }
        match scenario {
            Scenario::Sigkill | Scenario::Sigterm
                if injected < goal.faults && accepted >= next_at =>
            {
                tokio::time::sleep(Duration::from_millis(fastrand::u64(0..30))).await;
                inject(scenario, worker, &mut faults).await?;
                worker.start().await?;
                next_at = downstream.progress().0 + rand_share(gap);
            }
            Scenario::DownstreamOutage => outage(goal, downstream, accepted, &mut faults),
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if faults.outage.is_some() && !faults.outage_over {
        downstream.set_down(false);
        faults.outage = faults.outage.map(|(start, _)| (start, Instant::now()));
        faults.outage_over = true;
    }
    Ok(faults)
}

/// Between 30% and 100% of `gap`, at least 1.
fn rand_share(gap: usize) -> usize {
    (gap * fastrand::usize(30..=100) / 100).max(1)
}

async fn inject(
    scenario: Scenario,
    worker: &mut Worker,
    faults: &mut Faults,
) -> anyhow::Result<()> {
    if scenario == Scenario::Sigkill {
        worker.kill()?;
        faults.kills.push(Instant::now());
        println!("  SIGKILL {}", faults.kills.len());
        return Ok(());
    }
    let limit = SHUTDOWN_DEADLINE + Duration::from_secs(5);
    let stop = match worker.terminate(limit).await? {
        Some((status, took)) => Stop {
            clean: status.success(),
            took: Some(took),
        },
        None => Stop {
            clean: false,
            took: None,
        },
    };
    println!(
        "  SIGTERM {}: exit clean {}, took {:?}",
        faults.stops.len() + 1,
        stop.clean,
        stop.took
    );
    faults.stops.push(stop);
    Ok(())
}

/// Takes the downstream down once a fifth is delivered, up again after `goal.outage`.
fn outage(goal: &Goal, downstream: &Downstream, accepted: usize, faults: &mut Faults) {
    let now = Instant::now();
    match faults.outage {
        None if accepted >= goal.good / 5 => {
            downstream.set_down(true);
            faults.outage = Some((now, now + goal.outage));
            println!(
                "  downstream down at {accepted} delivered ({})",
                humantime::format_rfc3339_millis(std::time::SystemTime::now())
            );
        }
        Some((start, end)) if now >= end && !faults.outage_over => {
            downstream.set_down(false);
            faults.outage = Some((start, now));
            faults.outage_over = true;
            println!("  downstream up again after {:?}", now - start);
        }
        _ => {}
    }
}
