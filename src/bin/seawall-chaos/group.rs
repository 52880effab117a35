//! Fault 6, `group-kill`: a second worker, the partner, consumes the same source as the
//! worker the scenario SIGKILLs and restarts, and runs throughout. It has the same route
//! and consumer group but its own directory, hence its own idempotency store, and its
//! own admin port: two deployments of one service. On RabbitMQ the queue is declared
//! with `x-single-active-consumer`, so only one of them consumes at a time and order
//! per key can hold (two competing consumers would interleave a key's messages).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};

use crate::scenario::Scenario;
use crate::worker::{self, Role, Source, Worker};

/// Declares the durable `queue` with a single active consumer. Seawall's source
/// declares a queue it is not told to create passively, which accepts the queue's
/// arguments as they are: the broker, not the consumer, enforces the single consumer.
pub async fn declare_single_active_queue(url: &str, queue: &str) -> anyhow::Result<()> {
    let connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .context("connecting to RabbitMQ")?;
    let channel = connection.create_channel().await?;
    let mut arguments = FieldTable::default();
    arguments.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
    channel
        .queue_declare(queue.into(), QueueDeclareOptions::durable(), arguments)
        .await
        .with_context(|| format!("declaring single-active-consumer queue `{queue}`"))?;
    let _ = connection.close(200, "done".into()).await;
    Ok(())
}

/// The worker that is never killed.
pub struct Partner {
    worker: Worker,
}

/// How the partner ended.
pub struct PartnerEnd {
    stopped_cleanly: bool,
    assigned: usize,
    log: PathBuf,
}

impl Partner {
    /// Writes its config into `dir/partner` (so its `store` is `dir/partner/store`),
    /// starts it and waits until it is ready.
    pub async fn start(
        bin: &Path,
        source: &Source,
        downstream: &str,
        dir: &Path,
    ) -> anyhow::Result<Self> {
        let dir = dir.join("partner");
        std::fs::create_dir_all(&dir)?;
        let admin = format!("127.0.0.1:{}", worker::free_port()?);
        let config = dir.join("seawall.toml");
        let text = worker::config(source, downstream, &admin);
        let mut worker = Worker::new(bin, &config, text, Role::Partner, &admin, &dir);
        worker
            .start()
            .await
            .context("starting the partner worker")?;
        Ok(Self { worker })
    }

    /// Starts one if `scenario` is group-kill.
    pub async fn start_if(
        scenario: Scenario,
        bin: &Path,
        source: &Source,
        downstream: &str,
        dir: &Path,
    ) -> anyhow::Result<Option<Self>> {
        match scenario {
            Scenario::GroupKill => Ok(Some(Self::start(bin, source, downstream, dir).await?)),
            _ => Ok(None),
        }
    }

    /// Stops `partner`, if any: [`Partner::stop`].
    pub async fn stop_if(partner: Option<Self>) -> anyhow::Result<Option<PartnerEnd>> {
        match partner {
            Some(partner) => Ok(Some(partner.stop().await?)),
            None => Ok(None),
        }
    }

    /// Stops it gracefully; how often it was assigned partitions (each rebalance the
    /// other worker's kills and restarts caused).
    pub async fn stop(mut self) -> anyhow::Result<PartnerEnd> {
        let ended = self.worker.terminate(Duration::from_secs(30)).await?;
        let log = self.worker.log_path().to_owned();
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        Ok(PartnerEnd {
            stopped_cleanly: ended.is_some_and(|(status, _)| status.success()),
            assigned: text.matches("partitions assigned").count(),
            log,
        })
    }
}

impl PartnerEnd {
    /// Prints how the partner fared; whether it ran throughout and stopped cleanly.
    pub fn print(&self, kafka: bool) -> bool {
        let rebalances = if kafka {
            format!(", {} partition assignments", self.assigned)
        } else {
            String::new()
        };
        println!(
            "partner worker           never killed; stopped cleanly at the end: {}{rebalances} ({})",
            self.stopped_cleanly,
            self.log.display()
        );
        self.stopped_cleanly
    }
}
