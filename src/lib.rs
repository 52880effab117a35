//! Seawall: a message-bus integration broker and consumer framework.
//!
//! Adapters feed one broker-agnostic pipeline that skips duplicates by idempotency key,
//! keeps order per key while running different keys concurrently, retries transient
//! failures with backoff, stops pulling behind an open circuit breaker, and sends poison
//! messages to a dead-letter route with the reason. See `docs/pipeline.md` for the
//! guarantees in full.
//!
//! ```no_run
//! use seawall::{handler_fn, HandlerError, Message, MemoryDeadLetters, MemorySource, Pipeline, SledStore};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let (publisher, source) = MemorySource::new("orders", 4, 1024);
//! let pipeline = Pipeline::builder()
//!     .source(source)
//!     .handler(handler_fn(|message: Message| async move {
//!         if message.payload().is_empty() {
//!             return Err(HandlerError::permanent("empty order"));
//!         }
//!         Ok(())
//!     }))
//!     .store(SledStore::open("./seawall-store")?)
//!     .dead_letter(MemoryDeadLetters::new())
//!     .build()?;
//! publisher.publish(Message::new("{}").with_key("customer-1")).await?;
//! drop(publisher);
//! let stats = pipeline.run().await?;
//! println!("{stats:?}");
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

#[cfg(feature = "admin")]
pub mod admin;
mod breaker;
#[cfg(feature = "contracts")]
pub mod contract;
mod dead_letter;
pub mod dlq;
mod error;
#[cfg(fuzzing)]
pub mod fuzzing;
mod handler;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "kafka")]
pub mod kafka;
mod keys;
mod limits;
mod message;
mod pipeline;
#[cfg(feature = "rabbitmq")]
pub mod rabbitmq;
mod rate_limit;
mod retry;
mod sequencer;
mod source;
pub mod store;
mod tracker;
pub mod transport;
#[cfg(feature = "worker")]
pub mod worker;

pub use breaker::{BreakerConfig, BreakerState, CallResult, CircuitBreaker, Permit};
pub use dead_letter::{
    header, DeadLetter, DeadLetterInfo, DeadLetterKind, DeadLetterSink, HeaderDecodeError,
    SinkError,
};
pub use error::{ConfigError, Error};
pub use handler::{handler_fn, BoxError, FailureClass, Handler, HandlerError, HandlerFn};
pub use keys::{KeyRule, KeySource};
pub use limits::{LimitViolation, Limits};
pub use message::{Headers, Message, Native, Origin, Position};
pub use pipeline::{
    DeadLetterPolicy, DurabilityConfig, IdempotencyConfig, OrderingConfig, Pipeline,
    PipelineBuilder, PipelineConfig, PipelineHandle, StatsSnapshot,
};
pub use rate_limit::RateLimitConfig;
pub use retry::{Backoff, RetryConfig};
pub use source::{Ack, Delivery, Intake, Settle, Source, SourceError};
pub use store::{IdempotencyStore, MemoryStore, SledStore, StoreError};
pub use tracker::{CompletionTracker, OffsetOutOfOrder, PartitionId};
pub use transport::memory::{MemoryDeadLetters, MemoryLedger, MemoryPublisher, MemorySource};
