//! The RabbitMQ adapter (feature `rabbitmq`): a queue source with manual acks and
//! reconnects, a dead-letter exchange with publisher confirms, and the dead-letter queue
//! reader and replayer behind `seawall dlq` ([`RabbitDeadLetterQueue`],
//! [`RabbitReplayer`]).
//!
//! Adapters translate; the pipeline decides. This module maps deliveries to
//! [`Message`](crate::Message)s (routing key as the message key, AMQP headers as headers,
//! `message_id` as the message id) and acks what the pipeline completes.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use seawall::rabbitmq::{RabbitConfig, RabbitDeadLetters, RabbitSource};
//! use seawall::{handler_fn, Pipeline, PipelineConfig, SledStore};
//!
//! let rabbit = RabbitConfig::new("amqp://guest:guest@127.0.0.1:5672/%2f", "orders");
//! let mut config = PipelineConfig::default();
//! config.ordering.key = rabbit.ordering_rule();
//! config.idempotency.key = rabbit.idempotency_rule();
//! let pipeline = Pipeline::builder()
//!     .source(RabbitSource::connect(rabbit.clone()).await?)
//!     .dead_letter(RabbitDeadLetters::connect(&rabbit).await?)
//!     .handler(handler_fn(|_message| async { Ok(()) }))
//!     .store(SledStore::open("./orders-store")?)
//!     .config(config)
//!     .build()?;
//! pipeline.run().await?;
//! # Ok(()) }
//! ```

mod acks;
mod config;
mod connect;
mod convert;
mod dlq;
mod dlq_replay;
mod error;
mod forward;
mod sink;
mod source;

pub use config::{AmqpTls, AmqpUrl, DeadLetterTarget, Declare, RabbitConfig, ReconnectConfig};
pub(crate) use connect::probe_queue;
pub use convert::AmqpMeta;
pub use dlq::RabbitDeadLetterQueue;
pub use dlq_replay::RabbitReplayer;
pub use error::{RabbitError, RabbitErrorKind};
pub use forward::{RabbitForwarder, RabbitTarget};
pub use sink::RabbitDeadLetters;
pub use source::{Connected, ConnectionLosses, RabbitSource};
