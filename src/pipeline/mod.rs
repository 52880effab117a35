//! Assembling and running a pipeline.

mod attempt;
mod config;
mod decision;
mod durability;
mod runner;
mod stats;
mod store_health;
mod sweeper;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

pub use config::{
    DeadLetterPolicy, DurabilityConfig, IdempotencyConfig, OrderingConfig, PipelineConfig,
};
pub use stats::StatsSnapshot;

use self::durability::spawn_flusher;
use self::runner::Runner;
use self::stats::Stats;
use self::store_health::{spawn_prober, StoreHealth};
use self::worker::Shared;
use crate::breaker::{BreakerState, CircuitBreaker};
use crate::dead_letter::DeadLetterSink;
use crate::error::Error;
use crate::handler::Handler;
use crate::rate_limit::RateLimiter;
use crate::source::Source;
use crate::store::{IdempotencyStore, ParkRecord};

/// Assembles a [`Pipeline`] from a source, a handler, a store and a dead-letter sink.
/// `build` exists only once all four are given.
///
/// ```
/// use seawall::{handler_fn, MemoryDeadLetters, MemorySource, MemoryStore, Pipeline};
///
/// let (_publisher, source) = MemorySource::new("orders", 4, 1024);
/// let pipeline = Pipeline::builder()
///     .source(source)
///     .handler(handler_fn(|_message| async { Ok(()) }))
///     .store(MemoryStore::new())
///     .dead_letter(MemoryDeadLetters::new())
///     .build()
///     .expect("the default config is valid");
/// # drop(pipeline);
/// ```
pub struct PipelineBuilder<Src, H, S, D> {
    source: Src,
    handler: H,
    store: S,
    sink: D,
    config: PipelineConfig,
}

impl Default for PipelineBuilder<(), (), (), ()> {
    fn default() -> Self {
        Self {
            source: (),
            handler: (),
            store: (),
            sink: (),
            config: PipelineConfig::default(),
        }
    }
}

impl<Src, H, S, D> PipelineBuilder<Src, H, S, D> {
    /// Where messages come from.
    pub fn source<T: Source>(self, source: T) -> PipelineBuilder<T, H, S, D> {
        PipelineBuilder {
            source,
            handler: self.handler,
            store: self.store,
            sink: self.sink,
            config: self.config,
        }
    }

    /// What handles them.
    pub fn handler<T: Handler>(self, handler: T) -> PipelineBuilder<Src, T, S, D> {
        PipelineBuilder {
            source: self.source,
            handler,
            store: self.store,
            sink: self.sink,
            config: self.config,
        }
    }

    /// Where idempotency records, attempts and parked keys live.
    pub fn store<T: IdempotencyStore>(self, store: T) -> PipelineBuilder<Src, H, T, D> {
        PipelineBuilder {
            source: self.source,
            handler: self.handler,
            store,
            sink: self.sink,
            config: self.config,
        }
    }

    /// Where dead letters go.
    pub fn dead_letter<T: DeadLetterSink>(self, sink: T) -> PipelineBuilder<Src, H, S, T> {
        PipelineBuilder {
            source: self.source,
            handler: self.handler,
            store: self.store,
            sink,
            config: self.config,
        }
    }

    /// Settings (defaults otherwise).
    pub fn config(mut self, config: PipelineConfig) -> Self {
        self.config = config;
        self
    }
}

impl<Src: Source, H: Handler, S: IdempotencyStore, D: DeadLetterSink>
    PipelineBuilder<Src, H, S, D>
{
    /// Validates the settings and assembles the pipeline. Nothing runs until
    /// [`Pipeline::run`].
    pub fn build(self) -> Result<Pipeline<Src, H, S, D>, Error> {
        self.config.validate()?;
        let store = Arc::new(self.store);
        let handle = PipelineHandle {
            shutdown: Arc::new(watch::channel(false).0),
            stats: Arc::new(Stats::default()),
            breaker: CircuitBreaker::new(self.config.breaker.clone()),
            store: Arc::clone(&store) as Arc<dyn IdempotencyStore>,
            store_health: StoreHealth::new(),
        };
        Ok(Pipeline {
            source: self.source,
            handler: self.handler,
            store,
            sink: self.sink,
            config: self.config,
            handle,
        })
    }
}

/// A pipeline ready to run.
pub struct Pipeline<Src, H, S, D> {
    source: Src,
    handler: H,
    store: Arc<S>,
    sink: D,
    config: PipelineConfig,
    handle: PipelineHandle,
}

impl Pipeline<(), (), (), ()> {
    /// Starts assembling a pipeline.
    pub fn builder() -> PipelineBuilder<(), (), (), ()> {
        PipelineBuilder::default()
    }
}

impl<Src: Source, H: Handler, S: IdempotencyStore, D: DeadLetterSink> Pipeline<Src, H, S, D> {
    /// A handle to stop the pipeline and watch it while it runs.
    pub fn handle(&self) -> PipelineHandle {
        self.handle.clone()
    }

    /// Runs until the source ends and every message is settled, or until
    /// [`PipelineHandle::shutdown`] and the graceful stop completes. Returns the final
    /// counters, or the error that stopped it.
    pub async fn run(self) -> Result<StatsSnapshot, Error> {
        let Pipeline {
            source,
            handler,
            store,
            sink,
            config,
            handle,
        } = self;
        let health = handle.store_health.clone();
        let prober = spawn_prober(Arc::clone(&store), health.clone());
        let (hard_stop, hard_stop_rx) = watch::channel(false);
        let (durability, flusher) = spawn_flusher(
            Arc::clone(&store),
            config.durability.clone(),
            health.clone(),
            hard_stop_rx,
        );
        let sweeper = config
            .idempotency
            .enabled
            .then(|| sweeper::spawn(Arc::clone(&store), &config.idempotency));
        let (stopping, stopping_rx) = watch::channel(false);
        let final_grace = config.shutdown_deadline.max(Duration::from_secs(1));
        let rate_limit = config.rate_limit.as_ref().map(RateLimiter::new);
        let shared = Arc::new(Shared {
            handler,
            store,
            sink,
            breaker: Arc::clone(&handle.breaker),
            durability,
            health,
            config,
            stats: Arc::clone(&handle.stats),
            rate_limit,
            stopping: stopping_rx,
        });
        let runner = Runner::new(source, shared, handle.shutdown.subscribe(), stopping);
        let (result, mut source) = runner.run().await;
        if let Some(sweeper) = sweeper {
            sweeper.abort();
        }
        // Every Durability is gone with the runner: the flusher makes a last flush and
        // releases what it holds. If the store will not flush, give up and abandon.
        let mut flusher = flusher;
        if tokio::time::timeout(final_grace, &mut flusher)
            .await
            .is_err()
        {
            tracing::error!("store would not flush at shutdown: abandoning unflushed completions");
            hard_stop.send_replace(true);
            let _ = flusher.await;
        }
        // Kept until now: a store that failed must recover for the last flush to succeed.
        prober.abort();
        source.close().await;
        result.map(|()| handle.stats())
    }
}

/// Controls and observes a pipeline from outside.
#[derive(Clone)]
pub struct PipelineHandle {
    shutdown: Arc<watch::Sender<bool>>,
    stats: Arc<Stats>,
    breaker: Arc<CircuitBreaker>,
    store: Arc<dyn IdempotencyStore>,
    store_health: StoreHealth,
}

impl PipelineHandle {
    /// Begins a graceful shutdown: stop pulling, let running handlers finish within
    /// `shutdown_deadline`, flush the store, complete what is done.
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// The counters now.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot(self.breaker.state())
    }

    /// The circuit breaker's state now.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    /// Watches the circuit breaker's state.
    pub fn breaker_changes(&self) -> watch::Receiver<BreakerState> {
        self.breaker.subscribe()
    }

    /// Whether the idempotency store takes durable writes. While it does not (a full or
    /// read-only disk), the pipeline is paused: it takes no messages, starts no handler
    /// call and completes nothing, and it resumes by itself once a probe succeeds.
    pub fn store_writable(&self) -> bool {
        self.store_health.is_writable()
    }

    /// Watches [`store_writable`](Self::store_writable).
    pub fn store_writable_changes(&self) -> watch::Receiver<bool> {
        self.store_health.subscribe()
    }

    /// Bytes the idempotency store takes on disk, when it can tell.
    pub fn store_size_on_disk(&self) -> Option<u64> {
        self.store.size_on_disk()
    }

    /// Parked ordering keys with what blocks them.
    pub fn parked_keys(&self) -> Result<Vec<(bytes::Bytes, ParkRecord)>, Error> {
        Ok(self.store.parked_keys()?)
    }

    /// Releases a parked key (durably); later messages of the key run again. Returns
    /// whether it was parked. Replaying what was parked is the operator tooling's job.
    pub fn release_key(&self, ordering_key: &[u8]) -> Result<bool, Error> {
        let released = self.store.release(ordering_key)?;
        self.store.flush()?;
        if released {
            tracing::info!(key = %String::from_utf8_lossy(ordering_key), "ordering key released");
        }
        Ok(released)
    }
}
