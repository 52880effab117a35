//! `Registry::render`: every family in a fixed order, routes sorted by name within it.

use crate::breaker::BreakerState;

use super::histogram::BUCKETS;
use super::metrics::{PipelineView, Registry, RouteMetrics, RouteState, OUTCOMES};
use super::text::{Exposition, Kind};

/// The `state` label values of `seawall_breaker_state`, in exposition order.
const BREAKER_STATES: [(BreakerState, &str); 3] = [
    (BreakerState::Closed, "closed"),
    (BreakerState::Open, "open"),
    (BreakerState::HalfOpen, "half_open"),
];

/// One route as read for one scrape: everything read once, so every family of the
/// scrape sees the same values.
struct Scraped {
    route: RouteMetrics,
    pipeline: Option<PipelineView>,
    lag: Vec<(String, i64)>,
    store_size: Option<u64>,
}

impl Registry {
    /// The Prometheus text exposition (format 0.0.4) of every route; deterministic:
    /// families in a fixed order, routes sorted by name. Families read from the pipeline
    /// are left out for a route with no pipeline attached yet, lag and store size for a
    /// route without their source.
    pub fn render(&self) -> String {
        let routes: Vec<Scraped> = self
            .routes()
            .into_iter()
            .map(|route| Scraped {
                pipeline: route.pipeline_view(),
                lag: route.lag(),
                store_size: route.store_size(),
                route,
            })
            .collect();
        let mut out = Exposition::default();
        out.family(
            "seawall_build_info",
            "Seawall build; the value is always 1.",
            Kind::Gauge,
        );
        out.sample(
            "seawall_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1,
        );
        route_families(&mut out, &routes);
        pipeline_families(&mut out, &routes);
        latency_family(&mut out, &routes);
        source_families(&mut out, &routes);
        out.finish()
    }
}

fn route_families(out: &mut Exposition, routes: &[Scraped]) {
    out.family(
        "seawall_route_up",
        "1 when the route's pipeline is running, 0 while starting, failed or stopped.",
        Kind::Gauge,
    );
    for r in routes {
        let up = u8::from(r.route.state() == RouteState::Running);
        out.sample("seawall_route_up", &[("route", r.route.name())], up);
    }
}

fn pipeline_families(out: &mut Exposition, routes: &[Scraped]) {
    let attached = || {
        routes
            .iter()
            .filter_map(|r| Some((r.route.name(), r.pipeline.as_ref()?)))
    };
    out.family(
        "seawall_messages_total",
        "Messages by outcome: received from the source, processed, skipped as duplicate, \
         retried (attempts after the first), dead_lettered (parked ones included), parked, \
         crash_loop, handler panic, handler timeout.",
        Kind::Counter,
    );
    for (name, view) in attached() {
        for (outcome, value) in OUTCOMES.iter().zip(view.counters.0) {
            let labels = [("route", name), ("outcome", *outcome)];
            out.sample("seawall_messages_total", &labels, value);
        }
    }
    out.family(
        "seawall_in_flight",
        "Handler calls (with their retries) running now.",
        Kind::Gauge,
    );
    for (name, view) in attached() {
        out.sample(
            "seawall_in_flight",
            &[("route", name)],
            view.stats.in_flight,
        );
    }
    out.family(
        "seawall_buffered",
        "Messages held now, running or waiting.",
        Kind::Gauge,
    );
    for (name, view) in attached() {
        out.sample("seawall_buffered", &[("route", name)], view.stats.buffered);
    }
    out.family(
        "seawall_breaker_state",
        "1 for the circuit breaker's current state, 0 for the others.",
        Kind::Gauge,
    );
    for (name, view) in attached() {
        for (state, label) in BREAKER_STATES {
            let value = u8::from(view.stats.breaker == state);
            out.sample(
                "seawall_breaker_state",
                &[("route", name), ("state", label)],
                value,
            );
        }
    }
}

fn latency_family(out: &mut Exposition, routes: &[Scraped]) {
    out.family(
        "seawall_handler_duration_seconds",
        "Duration of handler calls, successful, failed, panicked or timed out.",
        Kind::Histogram,
    );
    for r in routes {
        let name = r.route.name();
        let snapshot = r.route.latency().snapshot();
        for ((_, le), count) in BUCKETS.iter().zip(snapshot.cumulative) {
            out.sample(
                "seawall_handler_duration_seconds_bucket",
                &[("route", name), ("le", le)],
                count,
            );
        }
        out.sample(
            "seawall_handler_duration_seconds_bucket",
            &[("route", name), ("le", "+Inf")],
            snapshot.count,
        );
        // Nanoseconds to seconds as a float: exact enough for any rate() over it.
        let seconds = snapshot.sum_nanos as f64 / 1e9;
        out.sample(
            "seawall_handler_duration_seconds_sum",
            &[("route", name)],
            seconds,
        );
        out.sample(
            "seawall_handler_duration_seconds_count",
            &[("route", name)],
            snapshot.count,
        );
    }
}

fn source_families(out: &mut Exposition, routes: &[Scraped]) {
    out.family(
        "seawall_consumer_lag",
        "Messages the route's consumer is behind the end of each partition.",
        Kind::Gauge,
    );
    for r in routes {
        for (partition, lag) in &r.lag {
            let labels = [("route", r.route.name()), ("partition", partition.as_str())];
            out.sample("seawall_consumer_lag", &labels, lag);
        }
    }
    out.family(
        "seawall_store_size",
        "Size of the route's idempotency store (bytes or records, as the store reports).",
        Kind::Gauge,
    );
    for r in routes {
        if let Some(size) = r.store_size {
            out.sample("seawall_store_size", &[("route", r.route.name())], size);
        }
    }
}
