//! The `broker-restart` scenario: the broker itself goes away mid-run, while the paced
//! producer is producing and the worker consuming, and comes back with its data
//! (RabbitMQ: `stop_app`/`start_app` of a node of the run's own; Kafka: a tansu of the
//! run's own on PostgreSQL storage, stopped with SIGTERM and SIGKILL in turn). The
//! worker is never restarted: it must reconnect by itself, and since it never dies, any
//! repeated effect is a duplicate effect.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::downstream::{Call, Downstream};
use crate::own_broker::{Halt, OwnRabbit, OwnTansu};
use crate::readiness::Readiness;
use crate::restart_produce::{self, Pace, Produced};
use crate::scenario::{Faults, Goal};
use crate::worker::Source;
use crate::workload::Msg;
use crate::{Broker, Cli};

pub use crate::restart_log::LogCount;

/// The broker the run owns.
pub enum OwnBroker {
    Rabbit(OwnRabbit),
    Tansu(OwnTansu),
}

impl OwnBroker {
    /// Starts one for `broker`, its files in `dir`.
    pub async fn start(
        broker: Broker,
        run_id: &str,
        dir: &std::path::Path,
    ) -> anyhow::Result<Self> {
        Ok(match broker {
            Broker::Rabbitmq => Self::Rabbit(OwnRabbit::start(run_id, dir).await?),
            Broker::Kafka => Self::Tansu(OwnTansu::start(run_id, dir).await?),
        })
    }

    /// The AMQP URL or the Kafka bootstrap address.
    pub fn address(&self) -> String {
        match self {
            Self::Rabbit(r) => r.url(),
            Self::Tansu(t) => t.brokers(),
        }
    }

    /// Restart `n` (from 0): tansu alternates SIGTERM and SIGKILL, starting with SIGTERM.
    async fn stop(&mut self, n: usize) -> anyhow::Result<Halt> {
        match self {
            Self::Rabbit(r) => r.stop_app().await.map(|()| Halt::StopApp),
            Self::Tansu(t) => {
                let how = if n.is_multiple_of(2) {
                    Halt::Sigterm
                } else {
                    Halt::Sigkill
                };
                t.stop(how).await.map(|()| how)
            }
        }
    }

    /// Starts it again; when it accepted connections.
    async fn start_again(&mut self) -> anyhow::Result<Instant> {
        match self {
            Self::Rabbit(r) => r.start_app().await,
            Self::Tansu(t) => t.start_again().await,
        }
    }

    /// Stops it for good; after a failed run keeps what helps to look into it.
    pub async fn shut_down(&mut self, ok: bool) -> anyhow::Result<()> {
        match self {
            Self::Rabbit(r) => r.shut_down().await,
            Self::Tansu(t) => t.shut_down(ok).await,
        }
    }
}

/// One restart as it happened.
#[derive(Debug)]
pub struct Restart {
    pub how: Halt,
    /// Messages confirmed to the producer, and delivered, when it began.
    pub at_produced: usize,
    pub at_delivered: usize,
    pub stopped_at: Instant,
    /// When the broker accepted connections again.
    pub up_at: Instant,
    /// Whether `/readyz` went not ready from the stop on.
    pub noticed: bool,
    /// From `up_at` until `/readyz` became ready again (`None`: not within 60 s; zero
    /// if it never went not ready).
    pub ready_after: Option<Duration>,
}

/// What the scenario saw, besides the checker's figures.
#[derive(Debug, Default)]
pub struct Record {
    pub restarts: Vec<Restart>,
    pub produced: Arc<Produced>,
    /// The workload's own duplicate copies (same idempotency key produced twice).
    pub workload_copies: usize,
    /// The worker's `seawall_messages_total{outcome="duplicate"}` before it stopped.
    pub absorbed: Option<f64>,
    /// Kafka: the topic read back after the run.
    pub log: Option<LogCount>,
}

/// What `drive` needs.
pub struct Setup<'a> {
    pub goal: &'a Goal,
    pub downstream: &'a Downstream,
    pub source: Arc<Source>,
    pub msgs: Arc<Vec<Msg>>,
    pub restarts: usize,
    pub down: Duration,
    /// Messages per second the producer sends.
    pub rate: f64,
    /// The worker's `/readyz`, watched.
    pub readiness: Readiness,
}

impl<'a> Setup<'a> {
    /// From the command line.
    pub fn new(
        cli: &Cli,
        goal: &'a Goal,
        downstream: &'a Downstream,
        admin: &str,
        source: &Arc<Source>,
        msgs: &Arc<Vec<Msg>>,
    ) -> Self {
        Self {
            goal,
            downstream,
            source: source.clone(),
            msgs: msgs.clone(),
            restarts: cli.restarts,
            down: cli.broker_down,
            rate: cli.produce_rate,
            readiness: Readiness::watch(admin),
        }
    }
}

/// Produces (paced) and restarts the broker `restarts` times, each at a random point of
/// its share of the production, until everything is delivered or the deadline.
pub async fn drive(s: Setup<'_>, own: &mut OwnBroker) -> anyhow::Result<Faults> {
    let produced = Arc::new(Produced::default());
    let producer = spawn_producer(s.source.clone(), s.msgs.clone(), produced.clone(), s.rate);
    let slice = s.msgs.len() / (s.restarts + 1);
    let point = |n: usize| slice * n + (slice * fastrand::usize(30..=100) / 100).max(1);
    let mut record = Record {
        produced: produced.clone(),
        workload_copies: s.msgs.len() - s.goal.good - s.goal.poison,
        ..Record::default()
    };
    let mut faults = Faults::default();
    let mut next_at = point(0);
    let mut last_shown = Instant::now();
    while Instant::now() < s.goal.deadline {
        let (accepted, refused) = s.downstream.progress();
        let confirmed = produced.confirmed.load(Ordering::SeqCst);
        let all_restarts = record.restarts.len() >= s.restarts;
        if accepted >= s.goal.good && refused >= s.goal.poison && producer.is_finished() {
            faults.complete = all_restarts;
            break;
        }
        if last_shown.elapsed() > Duration::from_secs(5) {
            println!(
                "  … {confirmed} produced, {accepted}/{} delivered, {} restarts",
                s.goal.good,
                record.restarts.len()
            );
            last_shown = Instant::now();
        }
        if !all_restarts && (confirmed >= next_at || producer.is_finished()) {
            let restart = restart(&s, own, record.restarts.len(), confirmed).await?;
            record.restarts.push(restart);
            next_at = point(record.restarts.len());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if producer.is_finished() {
        producer.await??;
    } else {
        producer.abort();
        println!("  the producer had not finished by the deadline");
    }
    faults.broker = Some(record);
    Ok(faults)
}

fn spawn_producer(
    source: Arc<Source>,
    msgs: Arc<Vec<Msg>>,
    stats: Arc<Produced>,
    rate: f64,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    let pace = Pace::new(rate);
    tokio::spawn(async move {
        match &*source {
            Source::Kafka { brokers, topic } => {
                restart_produce::to_kafka(brokers, topic, &msgs, &pace, &stats).await
            }
            Source::Rabbit { url, queue } => {
                restart_produce::to_rabbitmq(url, queue, &msgs, &pace, &stats).await
            }
        }
    })
}

/// Stops the broker, keeps it down for `s.down`, starts it again and waits (60 s at
/// most) for the worker to be ready again.
async fn restart(
    s: &Setup<'_>,
    own: &mut OwnBroker,
    n: usize,
    confirmed: usize,
) -> anyhow::Result<Restart> {
    let at_delivered = s.downstream.progress().0;
    let stop_began = Instant::now();
    let how = own.stop(n).await?;
    // Down from when the stop command returned: rabbitmqctl itself takes a second.
    let stopped_at = Instant::now();
    println!(
        "  restart {}: {how:?} at {confirmed} produced, {at_delivered} delivered",
        n + 1
    );
    tokio::time::sleep_until((stopped_at + s.down).into()).await;
    let up_at = own.start_again().await?;
    while !s.readiness.ready() && up_at.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let noticed = s.readiness.went_down_since(stop_began);
    let ready_after = match (s.readiness.ready(), s.readiness.ready_since()) {
        (true, Some(at)) => Some(at.saturating_duration_since(up_at)),
        _ => None,
    };
    println!(
        "  broker up after {:?}; worker ready {ready_after:?} later",
        up_at - stopped_at
    );
    Ok(Restart {
        how,
        at_produced: confirmed,
        at_delivered,
        stopped_at,
        up_at,
        noticed,
        ready_after,
    })
}

/// Before the worker stops: reads how many duplicates it skipped.
pub async fn before_stop(faults: &mut Faults, admin: &str) {
    let Some(record) = faults.broker.as_mut() else {
        return;
    };
    let text = match reqwest::get(format!("http://{admin}/metrics")).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    record.absorbed = text
        .lines()
        .find(|l| l.starts_with("seawall_messages_total{") && l.contains("outcome=\"duplicate\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok());
}

/// The worker's reconnect backoff, capped at 1 s for this scenario. The defaults cap it
/// at 30 s (RabbitMQ `reconnect.max`) and 10 s (librdkafka `reconnect.backoff.max.ms`):
/// after a few seconds down, the worker could then idle for many seconds once the broker
/// is back (measured: 10.6 s after 5.7 s down on RabbitMQ), and the next restart would
/// no longer fall while producing. What is tested is what a restart does to the
/// messages, not how long the backoff waits.
pub fn tune_config(text: &str) -> anyhow::Result<String> {
    let mut config: toml::Table = text.parse()?;
    let source = config
        .get_mut("routes")
        .and_then(|r| r.get_mut("chaos"))
        .and_then(|c| c.get_mut("source"))
        .and_then(toml::Value::as_table_mut)
        .ok_or_else(|| anyhow::anyhow!("no routes.chaos.source in the generated config"))?;
    if let Some(rabbit) = source
        .get_mut("rabbitmq")
        .and_then(toml::Value::as_table_mut)
    {
        let reconnect: toml::Table = "initial = \"100ms\"\nmax = \"1s\"".parse()?;
        rabbit.insert("reconnect".into(), reconnect.into());
    }
    if let Some(kafka) = source.get_mut("kafka").and_then(toml::Value::as_table_mut) {
        let properties = kafka
            .entry("properties")
            .or_insert_with(|| toml::Table::new().into());
        if let Some(p) = properties.as_table_mut() {
            p.insert("reconnect.backoff.max.ms".into(), "1000".into());
        }
    }
    Ok(toml::to_string(&config)?)
}

/// After the worker stopped: Kafka's topic read back (4 partitions, as created).
pub async fn after_stop(faults: &mut Faults, source: &Source, msgs: &[Msg]) -> anyhow::Result<()> {
    if let (Some(record), Source::Kafka { brokers, topic }) = (faults.broker.as_mut(), source) {
        record.log = Some(crate::restart_log::count(brokers, topic, 4, msgs).await?);
    }
    Ok(())
}

/// Prints the restarts and the duplicates; whether the worker came back every time.
pub fn print(record: &Record, calls: &[Call]) -> bool {
    let mut ok = true;
    for (i, r) in record.restarts.iter().enumerate() {
        let first = calls
            .iter()
            .find(|c| c.accepted() && c.at > r.up_at)
            .map(|c| c.at - r.up_at);
        ok &= r.ready_after.is_some();
        println!(
            "restart {}                {:?} at {} produced, {} delivered: down {:.1}s; worker noticed: {}; ready again {}; first delivery {} after the broker was up",
            i + 1,
            r.how,
            r.at_produced,
            r.at_delivered,
            (r.up_at - r.stopped_at).as_secs_f64(),
            r.noticed,
            r.ready_after.map_or("NOT WITHIN 60s".to_owned(), |d| format!("{:.2}s after", d.as_secs_f64())),
            first.map_or("none".to_owned(), |d| format!("{:.2}s", d.as_secs_f64())),
        );
    }
    let p = &record.produced;
    println!(
        "producer                 {} sessions restarted, {} messages sent again (confirmation lost)",
        p.reconnects.load(Ordering::SeqCst),
        p.resent.load(Ordering::SeqCst)
    );
    let absorbed = record
        .absorbed
        .map_or("unknown".to_owned(), |n| n.to_string());
    println!(
        "duplicates absorbed      {absorbed} (worker outcome `duplicate`; the workload itself has {} copies)",
        record.workload_copies
    );
    if let Some(log) = &record.log {
        println!(
            "in the topic             {} records: {} extra copies beyond the workload's (same idempotency key), {} out of order per key",
            log.records, log.extra_copies, log.out_of_order
        );
    }
    ok
}
