//! The Kafka adapter (feature `kafka`): a consumer-group source that commits only what
//! the pipeline completed, and dead-letter topics.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use seawall::kafka::{KafkaConfig, KafkaDeadLetters, KafkaSource};
//! use seawall::{handler_fn, Pipeline, SledStore};
//!
//! let kafka = KafkaConfig::new("127.0.0.1:9092", "orders-worker", &["orders"]);
//! let pipeline = Pipeline::builder()
//!     .source(KafkaSource::connect(kafka.clone())?)
//!     .dead_letter(KafkaDeadLetters::connect(&kafka).await?)
//!     .handler(handler_fn(|_message| async { Ok(()) }))
//!     .store(SledStore::open("./orders-store")?)
//!     .build()?;
//! pipeline.run().await?;
//! # Ok(()) }
//! ```

mod config;
mod context;
mod convert;
mod dlq_reader;
mod error;
mod forward;
mod lag;
mod partitions;
mod probe;
mod replay;
mod sink;
mod source;

pub use config::{is_secret, DeadLetterTopic, KafkaConfig, Properties};
pub use dlq_reader::read_dead_letters;
pub use error::KafkaError;
pub use forward::{KafkaForwarder, KafkaTarget};
#[cfg(feature = "worker")]
pub(crate) use probe::missing_topics;
pub use replay::KafkaReplayer;
pub use sink::KafkaDeadLetters;
pub use source::{KafkaSource, Lag, Reachable};
