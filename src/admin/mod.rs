//! Observability for the worker: Prometheus metrics and the admin HTTP listener.
//!
//! A [`Registry`] holds one [`RouteMetrics`] per route. The worker registers each route,
//! [`attach`](RouteMetrics::attach)es its pipeline, wraps its handler in [`Measured`],
//! and sets its [`RouteState`]; [`serve`] answers `/metrics`, `/healthz` and `/readyz`.
//! Counters are read from the pipeline at scrape time, so nothing is counted twice.
//! Metric names and meanings: `docs/observability.md`.
//!
//! ```no_run
//! use seawall::admin::{serve, AdminConfig, Measured, Registry, RouteState};
//! use seawall::{handler_fn, MemoryDeadLetters, MemorySource, MemoryStore, Message, Pipeline};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = Registry::new();
//! let orders = registry.route("orders");
//! let (_publisher, source) = MemorySource::new("orders", 4, 1024);
//! let pipeline = Pipeline::builder()
//!     .source(source)
//!     .handler(Measured::new(orders.clone(), handler_fn(|_m: Message| async { Ok(()) })))
//!     .store(MemoryStore::new())
//!     .dead_letter(MemoryDeadLetters::new())
//!     .build()?;
//! orders.attach(pipeline.handle());
//!
//! let config = AdminConfig::default();
//! let listener = tokio::net::TcpListener::bind(config.listen).await?;
//! tokio::spawn(serve(listener, registry.clone(), std::future::pending()));
//! orders.set_state(RouteState::Running);
//! let result = pipeline.run().await;
//! orders.set_state(match &result {
//!     Ok(_) => RouteState::Stopped,
//!     Err(e) => RouteState::Failed(e.to_string()),
//! });
//! # Ok(()) }
//! ```

mod histogram;
mod measured;
mod metrics;
mod render;
mod server;
mod text;

use std::net::{Ipv4Addr, SocketAddr};

use serde::Deserialize;

pub use measured::Measured;
pub use metrics::{LagSource, Registry, RouteMetrics, RouteState, StoreSizeSource};
pub use server::serve;
pub use text::CONTENT_TYPE;

/// The `[admin]` section of the worker config.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address of the admin listener. Default `127.0.0.1:9464`: loopback on purpose, as
    /// the endpoints have no authentication and `/metrics` names routes and partitions;
    /// bind a routable address only where the network is trusted.
    pub listen: SocketAddr,
    /// Whether to serve the admin endpoints at all. Default `true`.
    pub enabled: bool,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 9464)),
            enabled: true,
        }
    }
}

#[cfg(test)]
mod tests;
