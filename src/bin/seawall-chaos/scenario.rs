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
    /// The store's disk turns full or read-only for a while (`--store-fault`), then
    /// takes writes again.
    StoreFault,
    /// Every downstream call takes `--downstream-delay` while a backlog waits: memory
    /// stays bounded, no rebalance or reconnect (see slow.rs).
    SlowDownstream,
    /// Two workers share the topic (or a single-active-consumer queue); one is SIGKILLed
    /// K times and restarted, the other runs throughout (see group.rs).
    GroupKill,
    /// The broker (a RabbitMQ node or a tansu of the run's own) stopped and started
    /// again K times mid-run; see broker_restart.rs.
    BrokerRestart,
}

impl Scenario {
    /// Whether its faults are SIGKILLs of the worker.
    fn kills(self) -> bool {
        matches!(self, Scenario::Sigkill | Scenario::GroupKill)
    }

    /// Whether it injects no counted faults (the run is complete without them).
    fn needs_no_faults(self) -> bool {
        matches!(self, Scenario::DownstreamOutage | Scenario::SlowDownstream)
    }
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
    /// How long a killed or stopped worker stays down before it is started again.
    pub restart_delay: Duration,
    /// The store's disk, for the store-fault scenario.
    pub disk: Option<crate::store_fault::Disk>,
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
    pub kills: Vec<crate::check::Kill>,
    pub stops: Vec<Stop>,
    pub outage: Option<(Instant, Instant)>,
    pub outage_over: bool,
    pub store_fault: crate::store_fault::Record,
    pub complete: bool,
    /// The broker-restart scenario's own record.
    pub broker: Option<crate::broker_restart::Record>,
}

impl Faults {
    /// Whether a fault happened that can make a dead letter be written twice: a SIGKILL,
    /// or a broker restart (a publish stored but not confirmed is published again).
    pub fn explain_repeats(&self) -> bool {
        !self.kills.is_empty() || self.broker.as_ref().is_some_and(|b| !b.restarts.is_empty())
    }
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
            faults.complete = match scenario {
                Scenario::StoreFault => faults.store_fault.ready_again.is_some(),
                _ => injected >= goal.faults || scenario.needs_no_faults(),
            };
            break;
        }
        if last_shown.elapsed() > Duration::from_secs(5) {
            println!("  … {accepted}/{} delivered, {injected} faults", goal.good);
            last_shown = Instant::now();
        }
        match scenario {
            Scenario::Sigkill | Scenario::Sigterm | Scenario::GroupKill
                if injected < goal.faults && accepted >= next_at =>
            {
                tokio::time::sleep(Duration::from_millis(fastrand::u64(0..30))).await;
                inject(scenario, worker, &mut faults).await?;
                tokio::time::sleep(goal.restart_delay).await;
                worker.start().await?;
                next_at = match scenario {
                    // The partner keeps delivering while the killed worker restarts, so
                    // a point relative to progress could fall past the end: the k-th
                    // kill falls in the k-th slot of the run (at once if that is past).
                    Scenario::GroupKill => slot_point(gap, faults.kills.len()),
                    _ => downstream.progress().0 + rand_share(gap),
                };
            }
            Scenario::DownstreamOutage => outage(goal, downstream, accepted, &mut faults),
            Scenario::StoreFault => store_fault(goal, worker, accepted, &mut faults).await?,
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

/// A random point in slot `slot` (of width `gap`) of the deliveries.
fn slot_point(gap: usize, slot: usize) -> usize {
    slot * gap + fastrand::usize(..gap.max(1))
}

async fn inject(
    scenario: Scenario,
    worker: &mut Worker,
    faults: &mut Faults,
) -> anyhow::Result<()> {
    if scenario.kills() {
        // Taken before the signal: whatever the process wrote before it died follows.
        let kill = crate::check::Kill {
            at: Instant::now(),
            worker: worker.name(),
        };
        worker.kill()?;
        faults.kills.push(kill);
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

/// Fails the store's disk once a fifth is delivered, repairs it after `goal.outage`, and
/// watches `/readyz` throughout.
async fn store_fault(
    goal: &Goal,
    worker: &Worker,
    accepted: usize,
    faults: &mut Faults,
) -> anyhow::Result<()> {
    let Some(disk) = &goal.disk else {
        anyhow::bail!("the store-fault scenario needs --store-fault");
    };
    let record = &mut faults.store_fault;
    let now = Instant::now();
    match (record.injected, record.repaired) {
        (None, _) if accepted >= goal.good / 5 => {
            disk.inject()?;
            record.injected = Some(now);
            println!("  store's disk failed at {accepted} delivered");
        }
        (Some(injected), None) => {
            if record.not_ready.is_none() && !worker.is_ready().await {
                record.not_ready = Some(Instant::now());
            }
            if now >= injected + goal.outage {
                disk.repair(Duration::from_secs(30)).await?;
                record.repaired = Some(Instant::now());
                println!("  store's disk repaired after {:?}", now - injected);
            }
        }
        (Some(_), Some(_)) if record.ready_again.is_none() && worker.is_ready().await => {
            record.ready_again = Some(Instant::now());
        }
        _ => {}
    }
    Ok(())
}
