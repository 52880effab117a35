//! Starting and running one route: connect its source, dead-letter sink and handler,
//! run its pipeline, and start it again after a failure that may go away.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::config::{ForwardSpec, HandlerSpec, RouteSpec, SourceSpec};
use super::handler::{Builtin, RouteHandler};
use crate::admin::{Measured, RouteMetrics, RouteState};
use crate::contract::{ContractCheck, ContractRegistry, Contracted};
use crate::dead_letter::DeadLetterSink;
use crate::error::Error;
use crate::http::HttpHandler;
use crate::kafka::{KafkaDeadLetters, KafkaForwarder, KafkaSource};
use crate::pipeline::{Pipeline, PipelineHandle, StatsSnapshot};
use crate::rabbitmq::{RabbitDeadLetters, RabbitForwarder, RabbitSource};
use crate::source::Source;
use crate::store::SledStore;

/// What a route needs besides its spec.
pub(crate) struct RouteContext {
    pub store_dir: PathBuf,
    pub contracts: Option<Arc<ContractRegistry>>,
    pub metrics: RouteMetrics,
    /// Turns true when the worker stops.
    pub stop: watch::Receiver<bool>,
}

/// Longest pause between two starts of a failing route.
const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);

/// Runs the route until the worker stops, starting it again after failures that may go
/// away (a broker that is down). A failure that needs a person (a bad setting, a missing
/// queue) ends the route; the other routes go on either way.
pub(crate) async fn supervise(spec: RouteSpec, mut ctx: RouteContext) -> Result<(), Error> {
    let mut delay = Duration::from_millis(500);
    loop {
        ctx.metrics.set_state(RouteState::Starting);
        let result = run_once(&spec, &ctx).await;
        if *ctx.stop.borrow() {
            ctx.metrics.set_state(RouteState::Stopped);
            return result.map(|_| ());
        }
        let err = match result {
            Ok(stats) => {
                // A source that ends by itself (a deleted queue, say) is a fault here.
                tracing::warn!(?stats, "route's source ended; starting it again");
                ctx.metrics
                    .set_state(RouteState::Failed("the source ended".to_owned()));
                None
            }
            Err(err) => {
                ctx.metrics.set_state(RouteState::Failed(err.to_string()));
                Some(err)
            }
        };
        if let Some(err) = err {
            if !err.is_recoverable() {
                tracing::error!(error = %err, "route failed and needs a person; other routes go on");
                return Err(err);
            }
            tracing::warn!(error = %err, retry_in = ?delay, "route failed; starting it again");
        }
        let stopped = tokio::select! {
            _ = tokio::time::sleep(delay) => false,
            _ = ctx.stop.wait_for(|stop| *stop) => true,
        };
        if stopped {
            ctx.metrics.set_state(RouteState::Stopped);
            return Ok(());
        }
        delay = (delay * 2).min(MAX_RESTART_DELAY);
    }
}

/// One start of the route, to the pipeline's end.
async fn run_once(spec: &RouteSpec, ctx: &RouteContext) -> Result<StatsSnapshot, Error> {
    let handler = build_handler(spec, ctx).await?;
    let store = SledStore::open(ctx.store_dir.join(&spec.name))?;
    match &spec.source {
        SourceSpec::Kafka(kafka) => {
            let source = KafkaSource::connect(kafka.clone())?;
            let lag = source.lag();
            ctx.metrics.set_lag_source(Box::new(move || {
                lag.get()
                    .into_iter()
                    .map(|(partition, lag)| (partition.to_string(), lag))
                    .collect()
            }));
            let reachable = source.reachable();
            let probe: ConnectedProbe = Box::new(move || reachable.is_reachable());
            let sink = KafkaDeadLetters::connect(kafka).await?;
            run_pipeline(spec, ctx, source, sink, handler, store, Some(probe)).await
        }
        SourceSpec::Rabbitmq(rabbit) => {
            let source = RabbitSource::connect(rabbit.clone()).await?;
            let connected = source.connected();
            let probe: ConnectedProbe = Box::new(move || connected.is_connected());
            let sink = Arc::new(RabbitDeadLetters::connect(rabbit).await?);
            let route_sink = Arc::clone(&sink);
            let result =
                run_pipeline(spec, ctx, source, route_sink, handler, store, Some(probe)).await;
            sink.close().await;
            result
        }
    }
}

async fn build_handler(spec: &RouteSpec, ctx: &RouteContext) -> Result<RouteHandler, Error> {
    let builtin = match &spec.handler {
        HandlerSpec::Http(http) => Builtin::Http(
            HttpHandler::new(http.clone())
                .map_err(|e| crate::ConfigError::new("handler.http", e.to_string()))?,
        ),
        HandlerSpec::Forward(ForwardSpec::Kafka(target)) => {
            Builtin::ForwardKafka(KafkaForwarder::connect(target.clone()).await?)
        }
        HandlerSpec::Forward(ForwardSpec::Rabbitmq(target)) => {
            Builtin::ForwardRabbit(RabbitForwarder::connect(target.clone()).await?)
        }
    };
    let measured = Measured::new(ctx.metrics.clone(), builtin);
    let (Some(contract), Some(registry)) = (&spec.contract, &ctx.contracts) else {
        return Ok(RouteHandler::Unchecked(measured));
    };
    let check = ContractCheck::new(Arc::clone(registry), contract)
        .map_err(|e| crate::ConfigError::new("contract", e.to_string()))?;
    Ok(RouteHandler::Checked(Contracted::new(check, measured)))
}

/// Tells whether the source is connected now.
type ConnectedProbe = Box<dyn Fn() -> bool + Send + Sync>;

/// Keeps readiness in step with the source's connection and the store: a route whose
/// source lost its broker and is reconnecting, or whose store cannot write (a full or
/// read-only disk, the pipeline paused), is not ready.
async fn watch_readiness(
    metrics: RouteMetrics,
    connected: Option<ConnectedProbe>,
    pipeline: PipelineHandle,
) {
    let mut marked_down = false;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let down = if !connected.as_ref().is_none_or(|up| up()) {
            Some("lost the broker connection; reconnecting")
        } else if !pipeline.store_writable() {
            Some("the idempotency store cannot write; paused until it can")
        } else {
            None
        };
        match (metrics.state(), down) {
            (RouteState::Running, Some(why)) => {
                metrics.set_state(RouteState::Failed(why.to_owned()));
                marked_down = true;
            }
            (RouteState::Failed(was), Some(why)) if marked_down && was != why => {
                metrics.set_state(RouteState::Failed(why.to_owned()));
            }
            (RouteState::Failed(_), None) if marked_down => {
                metrics.set_state(RouteState::Running);
                marked_down = false;
            }
            _ => {}
        }
    }
}

async fn run_pipeline<Src: Source, D: DeadLetterSink>(
    spec: &RouteSpec,
    ctx: &RouteContext,
    source: Src,
    sink: D,
    handler: RouteHandler,
    store: SledStore,
    connected: Option<ConnectedProbe>,
) -> Result<StatsSnapshot, Error> {
    let pipeline = Pipeline::builder()
        .source(source)
        .dead_letter(sink)
        .handler(handler)
        .store(store)
        .config(spec.pipeline.clone())
        .build()?;
    let handle = pipeline.handle();
    let readiness = handle.clone();
    ctx.metrics.attach(handle.clone());
    let sized = handle.clone();
    ctx.metrics
        .set_store_size_source(Box::new(move || sized.store_size_on_disk()));
    ctx.metrics.set_state(RouteState::Running);
    tracing::info!("route running");
    let mut stop = ctx.stop.clone();
    let metrics = ctx.metrics.clone();
    let stopper = tokio::spawn(async move {
        if stop.wait_for(|stop| *stop).await.is_ok() {
            // Not ready from the first moment of a stop: it takes no new work.
            metrics.set_state(RouteState::Stopped);
            handle.shutdown();
        }
    });
    let watcher = tokio::spawn(watch_readiness(ctx.metrics.clone(), connected, readiness));
    let result = pipeline.run().await;
    stopper.abort();
    watcher.abort();
    result
}
