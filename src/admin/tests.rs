//! Registry and rendering without a pipeline; `tests/admin.rs` runs real pipelines.

use std::time::Duration;

use super::*;

fn lines_of(text: &str, family: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with(family))
        .map(str::to_owned)
        .collect()
}

#[test]
fn readiness_needs_every_route_running() {
    let registry = Registry::new();
    assert_eq!(registry.ready(), Ok(()), "no routes: nothing is waiting");
    let orders = registry.route("orders");
    let audit = registry.route("audit");
    assert_eq!(
        registry.ready(),
        Err(vec![
            ("audit".into(), "starting".into()),
            ("orders".into(), "starting".into())
        ])
    );
    orders.set_state(RouteState::Running);
    audit.set_state(RouteState::Running);
    assert_eq!(registry.ready(), Ok(()));
    audit.set_state(RouteState::Failed("broker down".into()));
    orders.set_state(RouteState::Stopped);
    assert_eq!(
        registry.ready(),
        Err(vec![
            ("audit".into(), "failed: broker down".into()),
            ("orders".into(), "stopped".into())
        ])
    );
}

#[test]
fn registering_again_returns_the_same_route() {
    let registry = Registry::new();
    registry.route("orders").set_state(RouteState::Running);
    assert_eq!(registry.route("orders").state(), RouteState::Running);
    assert_eq!(registry.route_names(), vec!["orders".to_owned()]);
}

#[test]
fn route_up_follows_state_and_routes_are_sorted() {
    let registry = Registry::new();
    registry.route("zeta").set_state(RouteState::Running);
    registry.route("alpha");
    let text = registry.render();
    assert_eq!(
        lines_of(&text, "seawall_route_up{"),
        vec![
            "seawall_route_up{route=\"alpha\"} 0",
            "seawall_route_up{route=\"zeta\"} 1"
        ]
    );
    assert_eq!(text, registry.render(), "deterministic");
}

#[test]
fn families_appear_once_with_help_and_type() {
    let registry = Registry::new();
    registry.route("a");
    registry.route("b");
    let text = registry.render();
    for (family, kind) in [
        ("seawall_build_info", "gauge"),
        ("seawall_route_up", "gauge"),
        ("seawall_messages_total", "counter"),
        ("seawall_in_flight", "gauge"),
        ("seawall_buffered", "gauge"),
        ("seawall_breaker_state", "gauge"),
        ("seawall_handler_duration_seconds", "histogram"),
        ("seawall_consumer_lag", "gauge"),
        ("seawall_store_size", "gauge"),
    ] {
        let type_line = format!("# TYPE {family} {kind}");
        assert_eq!(text.matches(&type_line).count(), 1, "{type_line}");
        assert_eq!(text.matches(&format!("# HELP {family} ")).count(), 1);
    }
    let version = env!("CARGO_PKG_VERSION");
    assert!(text.contains(&format!("seawall_build_info{{version=\"{version}\"}} 1\n")));
    // Nothing attached: no pipeline samples, but a histogram (all zero) per route.
    assert!(lines_of(&text, "seawall_messages_total{").is_empty());
    assert!(text.contains("seawall_handler_duration_seconds_count{route=\"b\"} 0\n"));
}

#[test]
fn histogram_renders_cumulative_buckets_sum_and_count() {
    let registry = Registry::new();
    let route = registry.route("r");
    for ms in [1, 3, 3, 40, 900] {
        route.observe_handler_latency(Duration::from_millis(ms));
    }
    route.observe_handler_latency(Duration::from_secs(45));
    let text = registry.render();
    let expected: Vec<String> = [
        ("0.001", 1),
        ("0.0025", 1),
        ("0.005", 3),
        ("0.01", 3),
        ("0.025", 3),
        ("0.05", 4),
        ("0.1", 4),
        ("0.25", 4),
        ("0.5", 4),
        ("1", 5),
        ("2.5", 5),
        ("5", 5),
        ("10", 5),
        ("30", 5),
        ("+Inf", 6),
    ]
    .iter()
    .map(|(le, n)| {
        format!("seawall_handler_duration_seconds_bucket{{route=\"r\",le=\"{le}\"}} {n}")
    })
    .collect();
    assert_eq!(
        lines_of(&text, "seawall_handler_duration_seconds_bucket"),
        expected
    );
    assert!(text.contains("seawall_handler_duration_seconds_sum{route=\"r\"} 45.947\n"));
    assert!(text.contains("seawall_handler_duration_seconds_count{route=\"r\"} 6\n"));
}

#[test]
fn lag_and_store_size_come_from_their_sources() {
    let registry = Registry::new();
    let route = registry.route("orders");
    let text = registry.render();
    assert!(lines_of(&text, "seawall_consumer_lag{").is_empty());
    assert!(lines_of(&text, "seawall_store_size{").is_empty());
    route.set_lag_source(Box::new(|| {
        vec![
            ("orders/10".into(), 7),
            ("orders/2".into(), 0),
            ("audit/3".into(), 5),
            ("orders/1".into(), -1),
        ]
    }));
    route.set_store_size_source(Box::new(|| Some(4096)));
    let text = registry.render();
    assert_eq!(
        lines_of(&text, "seawall_consumer_lag{"),
        vec![
            "seawall_consumer_lag{route=\"orders\",partition=\"audit/3\"} 5",
            "seawall_consumer_lag{route=\"orders\",partition=\"orders/1\"} -1",
            "seawall_consumer_lag{route=\"orders\",partition=\"orders/2\"} 0",
            "seawall_consumer_lag{route=\"orders\",partition=\"orders/10\"} 7",
        ]
    );
    assert_eq!(
        lines_of(&text, "seawall_store_size{"),
        vec!["seawall_store_size{route=\"orders\"} 4096"]
    );
    route.set_store_size_source(Box::new(|| None));
    assert!(lines_of(&registry.render(), "seawall_store_size{").is_empty());
}

#[test]
fn route_names_are_escaped_in_labels() {
    let registry = Registry::new();
    registry.route("we\"ird\\na\nme");
    let text = registry.render();
    assert!(
        text.contains("seawall_route_up{route=\"we\\\"ird\\\\na\\nme\"} 0\n"),
        "{text}"
    );
    // Every line is a comment or a sample: no raw newline leaked from the name.
    assert!(text
        .lines()
        .all(|l| l.starts_with("# ") || l.starts_with("seawall_")));
}

#[test]
fn config_defaults_to_loopback_and_rejects_unknown_fields() {
    let config = AdminConfig::default();
    assert!(config.listen.ip().is_loopback());
    assert_eq!(config.listen.port(), 9464);
    assert!(config.enabled);
    let parsed: AdminConfig = toml::from_str("listen = \"0.0.0.0:9000\"").unwrap();
    assert_eq!(parsed.listen, "0.0.0.0:9000".parse().unwrap());
    assert!(parsed.enabled);
    let empty: AdminConfig = toml::from_str("").unwrap();
    assert_eq!(empty, AdminConfig::default());
    let disabled: AdminConfig = toml::from_str("enabled = false").unwrap();
    assert!(!disabled.enabled);
    assert!(toml::from_str::<AdminConfig>("listne = \"127.0.0.1:1\"").is_err());
    assert!(toml::from_str::<AdminConfig>("listen = \"localhost\"").is_err());
}
