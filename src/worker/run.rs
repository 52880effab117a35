//! The worker process: every route concurrently, the admin listener, and shutdown.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use super::config::WorkerConfig;
use super::route::{supervise, RouteContext};
use crate::admin::Registry;
use crate::contract::{set_max_allocation_bytes, ContractRegistry};
use crate::error::Error;

/// How a worker run ended.
#[derive(Debug, Default)]
pub struct WorkerReport {
    /// Routes that stopped because of a failure that needs a person, with the error.
    pub failed: Vec<(String, String)>,
}

/// Runs every route of `config` until `stop` resolves, then stops them gracefully
/// (each within its `shutdown_deadline`). A route that fails does not stop the others.
pub async fn run_worker(
    config: WorkerConfig,
    registry: Registry,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<WorkerReport, Error> {
    let contracts = load_contracts(&config)?;
    let (stopping, stop_rx) = watch::channel(false);
    let admin = start_admin(&config, registry.clone()).await?;
    let mut routes = JoinSet::new();
    for (name, spec) in config.routes {
        let ctx = RouteContext {
            store_dir: config.store.path.clone(),
            contracts: contracts.clone(),
            metrics: registry.route(&name),
            stop: stop_rx.clone(),
        };
        let span = tracing::info_span!("route", route = %name);
        routes.spawn(async move { (name, supervise(spec, ctx).await) }.instrument(span));
    }
    tokio::spawn(async move {
        stop.await;
        tracing::info!("stopping: finishing running messages");
        stopping.send_replace(true);
    });
    let mut report = WorkerReport::default();
    while let Some(joined) = routes.join_next().await {
        match joined {
            Ok((_, Ok(()))) => {}
            Ok((name, Err(err))) => report.failed.push((name, err.to_string())),
            Err(panicked) => report
                .failed
                .push(("?".to_owned(), format!("route task panicked: {panicked}"))),
        }
    }
    if let Some(admin) = admin {
        admin.abort();
    }
    Ok(report)
}

fn load_contracts(config: &WorkerConfig) -> Result<Option<Arc<ContractRegistry>>, Error> {
    if config.routes.values().all(|r| r.contract.is_none()) {
        return Ok(None);
    }
    // Normally set already when the file was loaded; this covers configs built in code.
    set_max_allocation_bytes(config.contracts.max_allocation_bytes);
    let registry = ContractRegistry::load(&config.contracts.dir)
        .map_err(|e| crate::ConfigError::new("contracts.dir", e.to_string()))?;
    Ok(Some(Arc::new(registry)))
}

async fn start_admin(
    config: &WorkerConfig,
    registry: Registry,
) -> Result<Option<tokio::task::JoinHandle<()>>, Error> {
    let Some(listen) = config.admin_listen() else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        crate::ConfigError::new("admin.listen", format!("cannot listen on {listen}: {e}"))
    })?;
    tracing::info!(%listen, "admin listener: /metrics /healthz /readyz");
    // It serves until every route has stopped (readiness shows the stop meanwhile);
    // then the task is aborted.
    let shutdown = std::future::pending::<()>();
    Ok(Some(tokio::spawn(async move {
        if let Err(err) = crate::admin::serve(listener, registry, shutdown).await {
            tracing::error!(error = %err, "admin listener failed");
        }
    })))
}
