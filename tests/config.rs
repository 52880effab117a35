//! Settings: defaults, human-readable durations, unknown keys refused, bad values named.

use std::time::Duration;

use seawall::{DeadLetterPolicy, KeySource, PipelineConfig};

#[test]
fn a_full_config_reads_from_toml() {
    let config: PipelineConfig = toml::from_str(
        r#"
        max_in_flight = 64
        max_buffered = 1000
        handler_timeout = "250ms"
        on_dead_letter = "park"
        [idempotency]
        key = ["header:x-request-id", "message-id"]
        dedup_window = "2days"
        [ordering]
        key = ["header:customer", "message-key"]
        [retry]
        max_attempts = 8
        max_elapsed = "5m"
        [breaker]
        cool_down = "30s"
        [limits]
        max_payload_bytes = 4096
        "#,
    )
    .unwrap();
    config.validate().unwrap();
    assert_eq!(config.handler_timeout, Duration::from_millis(250));
    assert_eq!(config.on_dead_letter, DeadLetterPolicy::Park);
    assert_eq!(
        config.idempotency.dedup_window,
        Duration::from_secs(2 * 24 * 3600)
    );
    assert_eq!(
        config.idempotency.key.sources()[0],
        KeySource::Header("x-request-id".into())
    );
    assert_eq!(config.ordering.key.sources()[1], KeySource::MessageKey);
    assert_eq!(config.retry.max_attempts, 8);
    assert_eq!(config.breaker.cool_down, Duration::from_secs(30));
    assert_eq!(config.limits.max_payload_bytes, 4096);
    assert_eq!(
        config.limits.max_headers, 128,
        "unset fields keep their defaults"
    );
}

#[test]
fn an_empty_config_is_the_default() {
    let config: PipelineConfig = toml::from_str("").unwrap();
    assert_eq!(config, PipelineConfig::default());
    config.validate().unwrap();
}

#[test]
fn unknown_keys_are_refused_by_name() {
    let err = toml::from_str::<PipelineConfig>("[retry]\nmax_attempt = 3\n").unwrap_err();
    assert!(err.to_string().contains("max_attempt"), "{err}");
}

#[test]
fn bad_durations_and_key_sources_are_refused() {
    let err = toml::from_str::<PipelineConfig>("handler_timeout = \"fast\"").unwrap_err();
    assert!(
        err.to_string().contains("handler_timeout") || err.to_string().contains("fast"),
        "{err}"
    );
    let err = toml::from_str::<PipelineConfig>("[ordering]\nkey = [\"headr:x\"]").unwrap_err();
    assert!(err.to_string().contains("headr:x"), "{err}");
}

#[test]
fn out_of_range_values_name_the_field() {
    let cases: [(&str, &str); 5] = [
        ("[retry]\nmax_attempts = 0", "retry.max_attempts"),
        ("max_in_flight = 0", "max_in_flight"),
        ("max_in_flight = 10\nmax_buffered = 5", "max_buffered"),
        ("[breaker]\nfailure_ratio = 1.5", "breaker.failure_ratio"),
        (
            "[retry]\ninitial_backoff = \"1m\"\nmax_backoff = \"1s\"",
            "retry.initial_backoff",
        ),
    ];
    for (text, field) in cases {
        let config: PipelineConfig = toml::from_str(text).unwrap();
        let err = config.validate().unwrap_err();
        assert_eq!(err.field(), field, "{text}");
        let build = seawall::Pipeline::builder()
            .source(seawall::MemorySource::new("s", 1, 1).1)
            .handler(seawall::handler_fn(|_m| async { Ok(()) }))
            .store(seawall::MemoryStore::new())
            .dead_letter(seawall::MemoryDeadLetters::new())
            .config(config)
            .build();
        let message = build.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.contains(field),
            "build error names {field}: {message}"
        );
    }
}
