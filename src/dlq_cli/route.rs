//! Which route a `seawall dlq` command works on, where its dead letters live, and reading
//! them.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use seawall::contract::{ContractCheck, ContractRegistry};
use seawall::dlq::DlqRecord;
use seawall::kafka::{read_dead_letters, KafkaConfig};
use seawall::rabbitmq::{RabbitConfig, RabbitDeadLetterQueue, RabbitErrorKind};
use seawall::worker::{self, SourceSpec};

use super::RouteArgs;

/// A route's dead-letter side.
pub(super) struct Route {
    /// The route's name.
    pub name: String,
    /// Where its messages come from (and so where its dead letters go).
    pub source: RouteSource,
    /// The worker's store directory: the replay ledger and audit log live beside the
    /// route stores.
    pub store_dir: PathBuf,
    /// How long reading the dead letters may take.
    pub timeout: Duration,
    /// The route's contract check, when it has one: `show` decodes payloads with it.
    pub contract: Option<ContractCheck>,
}

/// The broker a route reads.
pub(super) enum RouteSource {
    Kafka(KafkaConfig),
    Rabbitmq(RabbitConfig),
}

/// The route named by `args` (or the config's only one), or what to tell the operator.
pub(super) fn resolve(args: &RouteArgs) -> Result<Route, String> {
    let config = worker::load(&args.config).map_err(|err| err.to_string())?;
    let names = || {
        let names: Vec<&str> = config.routes.keys().map(String::as_str).collect();
        names.join(", ")
    };
    let name = match (&args.route, config.routes.len()) {
        (Some(name), _) => name.clone(),
        (None, 1) => config.routes.keys().next().cloned().unwrap_or_default(),
        (None, _) => return Err(format!("--route is needed; routes: {}", names())),
    };
    let Some(spec) = config.routes.get(&name) else {
        return Err(format!(
            "no route `{name}` in {}; routes: {}",
            args.config.display(),
            names()
        ));
    };
    let source = match &spec.source {
        SourceSpec::Kafka(kafka) => RouteSource::Kafka(kafka.clone()),
        SourceSpec::Rabbitmq(rabbit) => RouteSource::Rabbitmq(rabbit.clone()),
    };
    let contract = match &spec.contract {
        Some(contract) => {
            let registry =
                ContractRegistry::load(&config.contracts.dir).map_err(|e| e.to_string())?;
            Some(ContractCheck::new(Arc::new(registry), contract).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    Ok(Route {
        name,
        source,
        store_dir: config.store.path.clone(),
        timeout: args.timeout,
        contract,
    })
}

impl Route {
    /// Where replays of this route are remembered.
    pub fn ledger_path(&self) -> PathBuf {
        self.store_dir
            .join("dlq")
            .join(format!("{}.replayed", self.name))
    }

    /// The audit log of replays, for every route.
    pub fn audit_path(&self) -> PathBuf {
        self.store_dir.join("dlq-audit.log")
    }

    /// Every dead letter of the route, in the dead-letter topics' or queue's order.
    pub async fn read(&self) -> anyhow::Result<Vec<DlqRecord>> {
        match &self.source {
            RouteSource::Kafka(kafka) => {
                let topics = dead_letter_topics(&self.name, kafka);
                read_kafka(kafka.clone(), topics, self.timeout).await
            }
            RouteSource::Rabbitmq(rabbit) => {
                let opened =
                    RabbitDeadLetterQueue::open(rabbit, &rabbit.dead_letter_queue(), self.timeout)
                        .await;
                let dead_letters = match opened {
                    Err(err) if err.kind() == RabbitErrorKind::Topology => {
                        eprintln!("seawall dlq: {err} (nothing dead-lettered yet?)");
                        return Ok(Vec::new());
                    }
                    opened => opened?,
                };
                let records = dead_letters.records().to_vec();
                // Nothing removed: every message goes back to its place in the queue.
                dead_letters.close().await;
                Ok(records)
            }
        }
    }
}

/// The route's dead-letter queue, every message in it taken and held (unacknowledged)
/// until `close`, which puts back what was not removed, in order.
pub(super) async fn open_queue(
    rabbit: &RabbitConfig,
    timeout: Duration,
) -> anyhow::Result<RabbitDeadLetterQueue> {
    let queue = rabbit.dead_letter_queue();
    Ok(RabbitDeadLetterQueue::open(rabbit, &queue, timeout).await?)
}

/// A Kafka route's dead-letter topics: the configured one, or `<topic>.dlq` per named
/// topic. Topics reached through a pattern have dead-letter topics only the broker knows;
/// they are named on stderr, not read.
pub(super) fn dead_letter_topics(name: &str, kafka: &KafkaConfig) -> BTreeSet<String> {
    if let Some(topic) = &kafka.dead_letter.topic {
        return BTreeSet::from([topic.clone()]);
    }
    let mut topics = BTreeSet::new();
    for topic in &kafka.topics {
        if topic.starts_with('^') {
            eprintln!(
                "seawall dlq: route {name}: dead letters of topics matching `{topic}` are not read \
                 (their dead-letter topics are not known; set dead_letter.topic)"
            );
        } else {
            topics.insert(kafka.dead_letter_topic(topic));
        }
    }
    topics
}

/// Every record of `topics`. A topic that does not exist yet holds nothing (the worker
/// creates it with its first dead letter); that is said on stderr.
pub(super) async fn read_kafka(
    kafka: KafkaConfig,
    topics: BTreeSet<String>,
    timeout: Duration,
) -> anyhow::Result<Vec<DlqRecord>> {
    anyhow::ensure!(
        !topics.is_empty(),
        "the route has no dead-letter topic to read"
    );
    tokio::task::spawn_blocking(move || {
        let mut records = Vec::new();
        for topic in &topics {
            match read_dead_letters(&kafka, topic, timeout) {
                Ok(read) => records.extend(read),
                Err(err) if err.is_unknown_topic() => {
                    eprintln!("seawall dlq: dead-letter topic `{topic}` does not exist yet: nothing dead-lettered");
                }
                Err(err) => return Err(err.into()),
            }
        }
        Ok(records)
    })
    .await?
}
