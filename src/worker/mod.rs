//! The worker behind `seawall run` (feature `worker`): routes from a config file, each a
//! pipeline from a Kafka or RabbitMQ source to a built-in handler (`http` or `forward`),
//! optionally behind an Avro contract; with metrics, readiness and graceful shutdown.
//! See `docs/worker.md`.

mod check;
mod config;
mod handler;
mod load;
mod locate;
mod route;
mod run;
mod validate;

pub use check::{probe_route, Probe};
pub use config::{
    ContractsSection, ForwardSpec, HandlerSpec, RouteSpec, SourceSpec, StoreSection, WorkerConfig,
};
pub use load::{load, load_with_env, parse, ConfigFileError, ENV_PREFIX};
pub use run::{run_worker, WorkerReport};
