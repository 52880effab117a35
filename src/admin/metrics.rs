//! The registry of routes and what each route exposes.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::{PipelineHandle, StatsSnapshot};

use super::histogram::Histogram;

/// Reports consumer lag: one `(partition label, lag)` pair per partition the route owns.
/// Broker-agnostic: the Kafka source's `lag().get()` maps to it with the partition id
/// formatted as the label.
pub type LagSource = Box<dyn Fn() -> Vec<(String, i64)> + Send + Sync>;

/// Reports the size of the route's idempotency store (bytes or records, whichever the
/// store can tell cheaply), or `None` when it cannot tell now.
pub type StoreSizeSource = Box<dyn Fn() -> Option<u64> + Send + Sync>;

/// Where a route is in its life; `/readyz` is ready only when every route is `Running`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteState {
    /// Registered, connecting or building its pipeline.
    Starting,
    /// Its pipeline is consuming.
    Running,
    /// It stopped with an error (the reason, for `/readyz`).
    Failed(String),
    /// It stopped on purpose (shutdown).
    Stopped,
}

impl fmt::Display for RouteState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteState::Starting => f.write_str("starting"),
            RouteState::Running => f.write_str("running"),
            RouteState::Failed(why) => write!(f, "failed: {why}"),
            RouteState::Stopped => f.write_str("stopped"),
        }
    }
}

/// The metrics of every route of a worker. Cheap to clone: clones share the routes.
#[derive(Clone, Default)]
pub struct Registry {
    routes: Arc<Mutex<BTreeMap<String, RouteMetrics>>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("routes", &self.route_names())
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the route `name` (state `Starting`) and returns its handle. Registering
    /// a name again returns the handle already registered under it, so a restarted
    /// route keeps its histogram and its counters stay monotonic.
    pub fn route(&self, name: &str) -> RouteMetrics {
        lock(&self.routes)
            .entry(name.to_owned())
            .or_insert_with(|| RouteMetrics::new(name))
            .clone()
    }

    /// The registered route names, sorted.
    pub fn route_names(&self) -> Vec<String> {
        lock(&self.routes).keys().cloned().collect()
    }

    /// `Ok` when every registered route is `Running` (so also with no routes at all);
    /// otherwise each route that is not, with why (`starting`, `failed: <reason>`,
    /// `stopped`), sorted by route name.
    pub fn ready(&self) -> Result<(), Vec<(String, String)>> {
        let not_ready: Vec<(String, String)> = self
            .routes()
            .iter()
            .filter_map(|route| match route.state() {
                RouteState::Running => None,
                state => Some((route.name().to_owned(), state.to_string())),
            })
            .collect();
        if not_ready.is_empty() {
            Ok(())
        } else {
            Err(not_ready)
        }
    }

    /// The routes sorted by name; cloned out so a scrape never holds the registry lock
    /// while it calls into sources.
    pub(crate) fn routes(&self) -> Vec<RouteMetrics> {
        lock(&self.routes).values().cloned().collect()
    }
}

/// One route's metrics: what the worker updates and the scrape reads. Cheap to clone.
#[derive(Clone)]
pub struct RouteMetrics {
    inner: Arc<RouteInner>,
}

struct RouteInner {
    name: String,
    state: Mutex<RouteState>,
    pipeline: Mutex<Attached>,
    latency: Histogram,
    lag: Mutex<Option<SharedLag>>,
    store_size: Mutex<Option<SharedStoreSize>>,
}

/// Sources are kept behind `Arc` so a scrape can clone one out and call it unlocked.
type SharedLag = Arc<dyn Fn() -> Vec<(String, i64)> + Send + Sync>;
type SharedStoreSize = Arc<dyn Fn() -> Option<u64> + Send + Sync>;

/// The pipeline counters are read from, plus what earlier pipelines of the route had
/// counted when they were replaced.
#[derive(Default)]
struct Attached {
    handle: Option<PipelineHandle>,
    carried: Counters,
}

/// The monotonic counters of a [`StatsSnapshot`], by exposition outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counters(pub [u64; OUTCOMES.len()]);

/// The `outcome` label values of `seawall_messages_total`, in exposition order.
pub(crate) const OUTCOMES: [&str; 9] = [
    "received",
    "processed",
    "duplicate",
    "retried",
    "dead_lettered",
    "parked",
    "crash_loop",
    "panic",
    "timeout",
];

impl Counters {
    fn of(s: &StatsSnapshot) -> Self {
        Counters([
            s.received,
            s.processed,
            s.duplicates,
            s.retries,
            s.dead_lettered,
            s.parked,
            s.crash_loops,
            s.panics,
            s.timeouts,
        ])
    }

    fn plus(self, other: Counters) -> Self {
        Counters(std::array::from_fn(|i| {
            self.0[i].saturating_add(other.0[i])
        }))
    }
}

/// What a scrape reads of the attached pipeline.
pub(crate) struct PipelineView {
    pub counters: Counters,
    pub stats: StatsSnapshot,
}

impl fmt::Debug for RouteMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteMetrics")
            .field("name", &self.inner.name)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl RouteMetrics {
    fn new(name: &str) -> Self {
        Self {
            inner: Arc::new(RouteInner {
                name: name.to_owned(),
                state: Mutex::new(RouteState::Starting),
                pipeline: Mutex::new(Attached::default()),
                latency: Histogram::default(),
                lag: Mutex::new(None),
                store_size: Mutex::new(None),
            }),
        }
    }

    /// The route's name (its `route` label).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Reads the pipeline's counters and gauges from `handle` at scrape time. Attaching
    /// the pipeline that replaces a failed one keeps `seawall_messages_total` monotonic:
    /// what the old pipeline had counted is carried over.
    pub fn attach(&self, handle: PipelineHandle) {
        let mut attached = lock(&self.inner.pipeline);
        if let Some(old) = attached.handle.take() {
            attached.carried = attached.carried.plus(Counters::of(&old.stats()));
        }
        attached.handle = Some(handle);
    }

    /// Sets the route's state (readiness and `seawall_route_up`).
    pub fn set_state(&self, state: RouteState) {
        *lock(&self.inner.state) = state;
    }

    /// The route's state now.
    pub fn state(&self) -> RouteState {
        lock(&self.inner.state).clone()
    }

    /// Records one handler call's duration into `seawall_handler_duration_seconds`.
    /// Lock-free; see also [`Measured`](super::Measured), which does it for every call.
    pub fn observe_handler_latency(&self, elapsed: Duration) {
        self.inner.latency.observe(elapsed);
    }

    /// Sets where `seawall_consumer_lag` comes from; called at every scrape, so it
    /// should only read values the source already keeps.
    pub fn set_lag_source(&self, source: LagSource) {
        *lock(&self.inner.lag) = Some(Arc::from(source));
    }

    /// Sets where `seawall_store_size` comes from; called at every scrape.
    pub fn set_store_size_source(&self, source: StoreSizeSource) {
        *lock(&self.inner.store_size) = Some(Arc::from(source));
    }

    pub(crate) fn pipeline_view(&self) -> Option<PipelineView> {
        let attached = lock(&self.inner.pipeline);
        let stats = attached.handle.as_ref()?.stats();
        Some(PipelineView {
            counters: attached.carried.plus(Counters::of(&stats)),
            stats,
        })
    }

    pub(crate) fn latency(&self) -> &Histogram {
        &self.inner.latency
    }

    /// Lag per partition, sorted by partition label; empty without a source.
    pub(crate) fn lag(&self) -> Vec<(String, i64)> {
        // Clone the source out so the closure runs without the lock held.
        let source = lock(&self.inner.lag).clone();
        let mut lag = source.map(|f| f()).unwrap_or_default();
        lag.sort_by(|a, b| natural(&a.0).cmp(&natural(&b.0)).then(a.0.cmp(&b.0)));
        lag
    }

    pub(crate) fn store_size(&self) -> Option<u64> {
        let source = lock(&self.inner.store_size).clone();
        source.and_then(|f| f())
    }
}

/// Sort key putting a label's trailing number in numeric order, so `orders/2` comes
/// before `orders/10` (Kafka partitions are labelled `topic/partition`).
fn natural(label: &str) -> (&str, Option<u64>) {
    let digits = label.len() - label.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (prefix, number) = label.split_at(label.len() - digits);
    (prefix, number.parse().ok())
}

/// Metrics must keep working after a panic elsewhere: a poisoned lock still holds
/// consistent data here (every critical section is a plain assignment or read).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
