//! `seawall-chaos`: runs the real `seawall run` worker against Kafka or RabbitMQ under a
//! fault scenario and checks that nothing was lost, took effect twice, was reordered or
//! corrupted. See docs/chaos.md.

mod broker_restart;
mod check;
mod downstream;
mod group;
mod own_broker;
mod produce;
mod readiness;
mod restart_log;
mod restart_produce;
mod scenario;
mod slow;
mod store_fault;
mod worker;
mod workload;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};

use broker_restart::OwnBroker;
use downstream::Downstream;
use scenario::{Faults, Goal, Scenario};
use worker::{Role, Source, Worker};
use workload::Msg;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Broker {
    Kafka,
    Rabbitmq,
}

#[derive(Parser)]
#[command(
    name = "seawall-chaos",
    version,
    about = "Fault injection and delivery checks for the Seawall worker"
)]
struct Cli {
    /// The broker: a Kafka topic (KAFKA_BROKERS) or a RabbitMQ queue (AMQP_URL).
    #[arg(long, value_enum)]
    broker: Broker,
    /// The fault scenario.
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// Distinct messages (duplicate copies come on top).
    #[arg(long, default_value_t = 2000)]
    messages: usize,
    /// SIGKILLs (sigkill) or SIGTERMs (sigterm) to inject.
    #[arg(long, default_value_t = 3)]
    kills: usize,
    /// How long the downstream is down (downstream-outage).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    outage: Duration,
    /// How long a killed or stopped worker stays down before it is started again. On
    /// tansu 0.6, a Kafka member that joins while the killed one is still in the group
    /// (its session lasts 6 s) can be left with no partitions for good; 7s avoids that.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    restart_delay: Duration,
    /// Most calls per second the downstream may see during the outage, after its
    /// first two seconds (the breaker's reaction time).
    #[arg(long, default_value_t = 20.0)]
    max_outage_rate: f64,
    /// How the store's disk fails (store-fault); the outage lasts `--outage`.
    #[arg(long, value_enum, default_value = "disk-full")]
    store_fault: store_fault::StoreFault,
    /// Broker restarts to inject (broker-restart).
    #[arg(long, default_value_t = 2)]
    restarts: usize,
    /// How long the broker stays down at each restart (broker-restart).
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    broker_down: Duration,
    /// Messages per second the broker-restart producer sends, so the restarts fall
    /// while it produces.
    #[arg(long, default_value_t = 200.0)]
    produce_rate: f64,
    /// Give up waiting for deliveries after this long.
    #[arg(long, default_value = "150s", value_parser = humantime::parse_duration)]
    deadline: Duration,
    /// The `seawall` binary (default: next to this one).
    #[arg(long)]
    seawall: Option<PathBuf>,
    /// Workload seed (default: random; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Count every repeated acceptance as a duplicate effect, also those after a SIGKILL.
    #[arg(long)]
    strict: bool,
    #[command(flatten)]
    slow: slow::SlowArgs,
}

fn seawall_bin(cli: &Cli) -> anyhow::Result<PathBuf> {
    if let Some(path) = &cli.seawall {
        return Ok(path.clone());
    }
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name("seawall");
    if !path.exists() {
        bail!(
            "no seawall binary at {}: pass --seawall PATH",
            path.display()
        );
    }
    Ok(path)
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// Creates the run's topic or queue, on the broker at `own` (the run's own) if given.
async fn source(
    broker: Broker,
    scenario: Scenario,
    name: &str,
    own: Option<String>,
) -> anyhow::Result<Source> {
    Ok(match broker {
        Broker::Kafka => {
            let brokers = own.unwrap_or_else(|| env_or("KAFKA_BROKERS", "127.0.0.1:9092"));
            produce::create_topic(&brokers, name, 4).await?;
            Source::Kafka {
                brokers,
                topic: name.to_owned(),
            }
        }
        Broker::Rabbitmq => {
            let url =
                own.unwrap_or_else(|| env_or("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"));
            match scenario {
                Scenario::GroupKill => group::declare_single_active_queue(&url, name).await?,
                _ => produce::declare_queue(&url, name).await?,
            }
            Source::Rabbit {
                url,
                queue: name.to_owned(),
            }
        }
    })
}

async fn produce_all(source: &Source, msgs: &[Msg]) -> anyhow::Result<()> {
    match source {
        Source::Kafka { brokers, topic } => produce::to_kafka(brokers, topic, msgs).await,
        Source::Rabbit { url, queue } => produce::to_rabbitmq(url, queue, msgs).await,
    }
}

/// The dead letters of route `chaos`, via `seawall dlq list --format json`.
fn dead_letters(bin: &Path, config: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let out = std::process::Command::new(bin)
        .args([
            "dlq", "list", "--format", "json", "--route", "chaos", "--config",
        ])
        .arg(config)
        .output()?;
    if !out.status.success() {
        bail!("seawall dlq list: {}", String::from_utf8_lossy(&out.stderr));
    }
    let list: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).context("parsing `seawall dlq list` output")?;
    Ok(list
        .iter()
        .map(|l| {
            let text =
                |v: &serde_json::Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            (text(&l["idempotency_key"]), text(&l["kind"]))
        })
        .collect())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let ok = run(&cli).await?;
    std::process::exit(if ok { 0 } else { 1 });
}

async fn run(cli: &Cli) -> anyhow::Result<bool> {
    let bin = seawall_bin(cli)?;
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let run_id = format!("chaos-{}-{millis}", std::process::id());
    let seed = cli.seed.unwrap_or_else(|| fastrand::u64(..));
    println!(
        "{run_id}: {:?} {:?}, {} messages, seed {seed}",
        cli.broker, cli.scenario, cli.messages
    );
    let msgs = Arc::new(workload::generate(&run_id, cli.messages, seed));
    let dir = std::env::temp_dir().join(&run_id);
    std::fs::create_dir_all(&dir)?;
    let downstream = Downstream::start().await?;
    let mut own = match cli.scenario {
        Scenario::BrokerRestart => Some(OwnBroker::start(cli.broker, &run_id, &dir).await?),
        _ => None,
    };
    let address = own.as_ref().map(OwnBroker::address);
    let source = Arc::new(source(cli.broker, cli.scenario, &run_id, address).await?);
    let admin = format!("127.0.0.1:{}", worker::free_port()?);
    let config = dir.join("seawall.toml");
    let url = format!("http://{}", downstream.addr);
    let is_slow = cli.scenario == Scenario::SlowDownstream;
    let mut text =
        worker::config(&source, &url, &admin) + &slow::route_settings(&cli.slow, is_slow);
    if own.is_some() {
        text = broker_restart::tune_config(&text)?;
    }
    let mut worker = Worker::new(&bin, &config, text, Role::Main, &admin, &dir);
    let disk = (cli.scenario == Scenario::StoreFault)
        .then(|| store_fault::Disk::mount(cli.store_fault, &dir.join("store")))
        .transpose()?;
    worker.start().await?;
    let partner = group::Partner::start_if(cli.scenario, &bin, &source, &url, &dir).await?;
    let started = Instant::now();
    let finished = Arc::new(AtomicBool::new(false));
    let watch = slow::Watch::start_if(
        is_slow,
        &cli.slow,
        &worker,
        &downstream,
        &finished,
        cli.messages,
    )?;
    let mut goal = goal(cli, &msgs, started);
    goal.disk = disk;
    let mut faults = match own.as_mut() {
        Some(own) => {
            let setup = broker_restart::Setup::new(cli, &goal, &downstream, &admin, &source, &msgs);
            broker_restart::drive(setup, own).await?
        }
        None => {
            let extras = (&source, &msgs, &finished);
            drive(cli, &goal, &downstream, &mut worker, extras).await?
        }
    };
    let delivery_time = started.elapsed();
    let slow_findings = watch.map(|w| w.finish(&worker, goal.good)).transpose()?;
    // Late repeats would show up now; then a graceful stop flushes everything.
    tokio::time::sleep(Duration::from_secs(2)).await;
    broker_restart::before_stop(&mut faults, &admin).await;
    worker.terminate(Duration::from_secs(30)).await?;
    let partner_end = group::Partner::stop_if(partner).await?;
    let letters = dead_letters(&bin, &config)?;
    broker_restart::after_stop(&mut faults, &source, &msgs).await?;
    let calls = downstream.calls();
    let report = check::check(&check::Observed {
        msgs: &msgs,
        calls: &calls,
        kills: &faults.kills,
        dead_letters: &letters,
    });
    println!(
        "\n{run_id} ({:?}, {:?}), delivered in {:.1}s, {} worker starts:",
        cli.broker,
        cli.scenario,
        delivery_time.as_secs_f64(),
        worker.starts
    );
    check::print(&report, faults.explain_repeats(), cli.strict);
    let kafka = cli.broker == Broker::Kafka;
    let mut fault_ok = print_faults(cli, &faults, &calls)
        & slow_findings.is_none_or(|f| f.print(&cli.slow, kafka, worker.log_path()))
        & partner_end.is_none_or(|p| p.print(kafka));
    if cli.scenario == Scenario::StoreFault {
        fault_ok &= faults.store_fault.print(cli.store_fault, &calls);
    }
    let ok = verdict(cli, &report, &faults) && fault_ok;
    drop(goal); // Unmounts the store-fault disk before its directory goes.
    clean_up(&source, &dir, ok).await?;
    if let Some(own) = own.as_mut() {
        own.shut_down(ok).await?;
    }
    Ok(ok)
}

/// The other scenarios: the producer as fast as it can, the faults on the worker.
async fn drive(
    cli: &Cli,
    goal: &Goal,
    downstream: &Downstream,
    worker: &mut Worker,
    (source, msgs, finished): (&Arc<Source>, &Arc<Vec<Msg>>, &Arc<AtomicBool>),
) -> anyhow::Result<Faults> {
    let producer = spawn_producer(source.clone(), msgs.clone(), finished.clone());
    let faults = scenario::drive(cli.scenario, goal, downstream, worker, || {
        finished.load(Ordering::SeqCst)
    })
    .await?;
    producer.await??;
    Ok(faults)
}

/// Produces the workload in the background; sets `finished` when done.
fn spawn_producer(
    source: Arc<Source>,
    msgs: Arc<Vec<Msg>>,
    finished: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    tokio::spawn(async move {
        let result = produce_all(&source, &msgs).await;
        finished.store(true, Ordering::SeqCst);
        result
    })
}

/// What must arrive: every distinct non-poison message, every poison one refused.
fn goal(cli: &Cli, msgs: &[Msg], started: Instant) -> Goal {
    let distinct: std::collections::HashMap<&str, &Msg> =
        msgs.iter().map(|m| (m.id.as_str(), m)).collect();
    let poison = distinct.values().filter(|m| m.kind.poison()).count();
    Goal {
        good: distinct.len() - poison,
        poison,
        faults: cli.kills,
        outage: cli.outage,
        restart_delay: cli.restart_delay,
        deadline: started + cli.deadline,
        disk: None,
    }
}

/// Deletes the run's queues; removes its directory after a clean run.
async fn clean_up(source: &Source, dir: &Path, ok: bool) -> anyhow::Result<()> {
    if let Source::Rabbit { url, queue } = source {
        produce::delete_queues(url, &[queue, &format!("{queue}.dlq")]).await?;
    }
    if ok {
        let _ = std::fs::remove_dir_all(dir);
    } else {
        println!("worker log and config kept in {}", dir.display());
    }
    Ok(())
}

/// Prints the scenario's own figures; whether they are within bounds.
fn print_faults(cli: &Cli, faults: &Faults, calls: &[downstream::Call]) -> bool {
    let mut ok = true;
    if !faults.kills.is_empty() {
        println!("SIGKILLs                 {}", faults.kills.len());
    }
    for (i, stop) in faults.stops.iter().enumerate() {
        let in_time = stop
            .took
            .is_some_and(|t| t <= worker::SHUTDOWN_DEADLINE + Duration::from_secs(5));
        ok &= in_time && stop.clean;
        println!(
            "SIGTERM {}                exit 0: {}, took {:?}{}",
            i + 1,
            stop.clean,
            stop.took,
            if in_time { "" } else { " NOT IN TIME" }
        );
    }
    if let Some(record) = &faults.broker {
        ok &= broker_restart::print(record, calls);
    }
    if let Some((start, end)) = faults.outage {
        let (mean, peak) = check::call_rate(calls, start, end);
        let settled = start + Duration::from_secs(2);
        let (after, after_peak) = check::call_rate(calls, settled.min(end), end);
        ok &= after <= cli.max_outage_rate;
        println!("outage                   {:.1}s: {mean:.1} calls/s (peak {peak}/s); after its first 2s {after:.1} calls/s (peak {after_peak}/s, bound {})", (end - start).as_secs_f64(), cli.max_outage_rate);
    }
    ok
}

fn verdict(cli: &Cli, r: &check::Report, faults: &Faults) -> bool {
    let mut problems = Vec::new();
    if !faults.complete {
        problems.push(
            "incomplete: not everything delivered (or not every fault injected) by the deadline",
        );
    }
    if r.lost > 0 {
        problems.push("messages lost");
    }
    if r.duplicate_effects(cli.strict) > 0 {
        problems.push("duplicate effects");
    }
    if r.reordered > 0 {
        problems.push("reordered");
    }
    if r.corrupted > 0 || r.poison_accepted > 0 {
        problems.push("corrupted (or poison accepted)");
    }
    if !r.dead_letters_exact(faults.explain_repeats(), cli.strict) {
        problems.push("dead letters are not exactly the poison messages");
    }
    for p in &problems {
        println!("FAILED: {p}");
    }
    if problems.is_empty() {
        println!("OK");
    }
    problems.is_empty()
}
