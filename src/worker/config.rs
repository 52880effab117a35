//! The worker's settings: the shared sections and one [`RouteSpec`] per route.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::admin::AdminConfig;
use crate::contract::ContractSpec;
use crate::http::HttpConfig;
use crate::kafka::{KafkaConfig, KafkaTarget};
use crate::pipeline::PipelineConfig;
use crate::rabbitmq::{RabbitConfig, RabbitTarget};

/// Everything `seawall run` reads. Paths are relative to the config file's directory.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Where the idempotency stores live.
    pub store: StoreSection,
    /// The admin listener.
    pub admin: AdminConfig,
    /// Where contracts come from.
    pub contracts: ContractsSection,
    /// How long a graceful shutdown may take in all (default 30s).
    pub shutdown_deadline: std::time::Duration,
    /// The routes, by name.
    pub routes: BTreeMap<String, RouteSpec>,
}

/// The `[store]` section.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// The directory holding one sled store per route, `<path>/<route>` (default
    /// `seawall-data`).
    pub path: PathBuf,
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            path: PathBuf::from("seawall-data"),
        }
    }
}

/// The `[contracts]` section.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContractsSection {
    /// The directory of `.avsc` files (default `schemas`).
    pub dir: PathBuf,
    /// apache-avro's allocation bound, so a hostile length field cannot exhaust memory
    /// (default 16 MiB).
    pub max_allocation_bytes: usize,
}

impl Default for ContractsSection {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("schemas"),
            max_allocation_bytes: crate::contract::DEFAULT_MAX_ALLOCATION_BYTES,
        }
    }
}

/// One route: where messages come from, what checks them, what handles them, and the
/// pipeline settings in between.
#[derive(Clone, Debug)]
pub struct RouteSpec {
    /// The route's name (its key under `[routes]`).
    pub name: String,
    /// Where messages come from; the dead-letter destination is part of it.
    pub source: SourceSpec,
    /// The contract messages must match, if any.
    pub contract: Option<ContractSpec>,
    /// What handles each message.
    pub handler: HandlerSpec,
    /// Retries, breaker, rate limit, timeouts, keys, dead-letter policy.
    pub pipeline: PipelineConfig,
}

/// A route's source.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum SourceSpec {
    /// A Kafka consumer group; dead letters go to `<topic>.dlq` unless configured.
    Kafka(KafkaConfig),
    /// A RabbitMQ queue; dead letters go to `<queue>.dlq` unless configured.
    Rabbitmq(RabbitConfig),
}

/// A route's handler.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum HandlerSpec {
    /// Deliver to an HTTP endpoint.
    Http(HttpConfig),
    /// Publish to a Kafka topic or a RabbitMQ exchange.
    Forward(ForwardSpec),
}

/// Where `forward` publishes.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum ForwardSpec {
    /// A Kafka topic.
    Kafka(KafkaTarget),
    /// A RabbitMQ exchange.
    Rabbitmq(RabbitTarget),
}

/// The top-level sections other than the routes, as they appear in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Sections {
    #[serde(default)]
    pub store: StoreSection,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub contracts: ContractsSection,
    #[serde(default = "default_shutdown_deadline", with = "humantime_serde")]
    pub shutdown_deadline: std::time::Duration,
    #[serde(default)]
    pub routes: BTreeMap<String, toml::Table>,
}

fn default_shutdown_deadline() -> std::time::Duration {
    std::time::Duration::from_secs(30)
}

impl WorkerConfig {
    /// The admin listener's address, when it is enabled.
    pub fn admin_listen(&self) -> Option<SocketAddr> {
        self.admin.enabled.then_some(self.admin.listen)
    }
}
