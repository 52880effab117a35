//! Fault 5, `slow-downstream`: every downstream call takes `--downstream-delay` while a
//! backlog waits on the broker. Samples the worker's resident memory as the backlog
//! drains (it must stay under `--max-rss-mib` and must not grow with the backlog), and
//! reads the worker's log for rebalances (Kafka) or reconnects (RabbitMQ): a slow
//! pipeline must not cost the worker its partitions or its consumer.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::downstream::Downstream;
use crate::worker::Worker;
use crate::workload::KEYS;

/// The scenario's own options.
#[derive(clap::Args, Debug)]
pub struct SlowArgs {
    /// How long every downstream call takes (slow-downstream).
    #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
    pub downstream_delay: Duration,
    /// Most resident memory the worker may reach, in MiB (slow-downstream). The default
    /// is the worker's bounds with room to spare: 60–75 MiB measured early in a bounded
    /// run (debug build), plus at most 64 MiB of librdkafka prefetch and `max_buffered`
    /// messages (see docs/chaos.md).
    #[arg(long, default_value_t = 256)]
    pub max_rss_mib: u64,
    /// The route's `max_buffered` (slow-downstream; default: the worker's, 10,000).
    #[arg(long)]
    pub max_buffered: Option<usize>,
}

/// Route settings the scenario adds to the generated config (appended to its last
/// table, `[routes.chaos]`).
pub fn route_settings(args: &SlowArgs, active: bool) -> String {
    match (active, args.max_buffered) {
        (true, Some(n)) => format!("max_buffered = {n}\n"),
        _ => String::new(),
    }
}

/// One memory sample.
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// Distinct keys the downstream had accepted.
    accepted: usize,
    /// The worker's resident set, KiB.
    rss_kib: u64,
}

/// Watches the worker while the scenario runs.
pub struct Watch {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    pid: u32,
    started: Instant,
    backlog_at_produced: Arc<Mutex<Option<usize>>>,
}

/// What the watch saw.
pub struct Findings {
    peak_rss_kib: u64,
    high_water_kib: u64,
    at_share: Vec<(usize, Option<u64>)>,
    backlog_at_produced: Option<usize>,
    assigned: usize,
    revoked: usize,
    reconnects: usize,
    rate: f64,
}

/// Reads `VmRSS` or `VmHWM` (KiB) from /proc/PID/status.
fn proc_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

impl Watch {
    /// When `active`: sets the downstream's delay and samples the worker every 100 ms
    /// until [`Watch::finish`]. `produced` is set once all `distinct` messages are.
    pub fn start_if(
        active: bool,
        args: &SlowArgs,
        worker: &Worker,
        downstream: &Downstream,
        produced: &Arc<AtomicBool>,
        distinct: usize,
    ) -> anyhow::Result<Option<Self>> {
        if !active {
            return Ok(None);
        }
        let produced = produced.clone();
        downstream.set_delay(args.downstream_delay);
        let pid = worker.pid().context("the worker is not running")?;
        let watch = Self {
            samples: Arc::default(),
            stop: Arc::default(),
            pid,
            started: Instant::now(),
            backlog_at_produced: Arc::default(),
        };
        let (samples, stop, backlog) = (
            watch.samples.clone(),
            watch.stop.clone(),
            watch.backlog_at_produced.clone(),
        );
        let downstream = downstream.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let (accepted, refused) = downstream.progress();
                if let Some(rss_kib) = proc_kib(pid, "VmRSS") {
                    let sample = Sample { accepted, rss_kib };
                    samples
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(sample);
                }
                if produced.load(Ordering::SeqCst) {
                    let mut backlog = backlog.lock().unwrap_or_else(|p| p.into_inner());
                    backlog.get_or_insert(distinct.saturating_sub(accepted + refused));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Ok(Some(watch))
    }

    /// Stops sampling (call before the worker is stopped, so the shutdown's revoke is
    /// not counted) and gathers the findings; `good` is the number of messages to deliver.
    pub fn finish(&self, worker: &Worker, good: usize) -> anyhow::Result<Findings> {
        self.stop.store(true, Ordering::SeqCst);
        let high_water_kib = proc_kib(self.pid, "VmHWM").unwrap_or(0);
        let samples = self
            .samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let at = |share: usize| {
            samples
                .iter()
                .find(|s| s.accepted * 100 >= good * share)
                .map(|s| s.rss_kib)
        };
        let log = std::fs::read_to_string(worker.log_path())
            .with_context(|| format!("reading {}", worker.log_path().display()))?;
        let accepted = samples.last().map_or(0, |s| s.accepted);
        Ok(Findings {
            peak_rss_kib: samples.iter().map(|s| s.rss_kib).max().unwrap_or(0),
            high_water_kib,
            at_share: [10, 50, 90].iter().map(|&s| (s, at(s))).collect(),
            backlog_at_produced: *self
                .backlog_at_produced
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
            assigned: log.matches("partitions assigned").count(),
            revoked: log.matches("partitions revoked").count(),
            reconnects: log.matches("RabbitMQ connection lost").count(),
            rate: accepted as f64 / self.started.elapsed().as_secs_f64().max(0.001),
        })
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

impl Findings {
    /// Prints the figures; whether memory stayed under the bound and the worker kept
    /// its partitions (one assignment, no revoke) or its consumer (no reconnect).
    pub fn print(&self, args: &SlowArgs, kafka: bool, log: &Path) -> bool {
        let limit_kib = args.max_rss_mib * 1024;
        let rss_ok = self.high_water_kib.max(self.peak_rss_kib) <= limit_kib;
        let shares: Vec<String> = self
            .at_share
            .iter()
            .map(|(share, kib)| format!("{share}%: {}", kib.map_or("-".into(), mib)))
            .collect();
        let most = KEYS as f64 / args.downstream_delay.as_secs_f64().max(0.001);
        println!(
            "slow downstream          {:?} a call; {:.0} deliveries/s (at most {most:.0}/s: {KEYS} keys, one call each at a time); backlog when all was produced {}",
            args.downstream_delay,
            self.rate,
            self.backlog_at_produced.map_or("-".into(), |b| b.to_string())
        );
        println!(
            "worker memory            peak RSS {} (VmHWM {}, bound {} MiB{}); RSS at {}",
            mib(self.peak_rss_kib),
            mib(self.high_water_kib),
            args.max_rss_mib,
            if rss_ok { "" } else { ", EXCEEDED" },
            shares.join(", ")
        );
        let steady = if kafka {
            println!(
                "rebalances               {} assignments, {} revokes (must be 1 and 0; {})",
                self.assigned,
                self.revoked,
                log.display()
            );
            self.assigned == 1 && self.revoked == 0
        } else {
            println!(
                "reconnects               {} (must be 0; {})",
                self.reconnects,
                log.display()
            );
            self.reconnects == 0
        };
        if !steady {
            println!("FAILED: the worker lost its partitions or its consumer while the downstream was slow");
        }
        rss_ok && steady
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_memory() {
        let rss = proc_kib(std::process::id(), "VmRSS").unwrap();
        let hwm = proc_kib(std::process::id(), "VmHWM").unwrap();
        assert!(rss > 0 && hwm >= rss, "rss {rss} hwm {hwm}");
        assert_eq!(proc_kib(std::process::id(), "NoSuchField"), None);
    }
}
