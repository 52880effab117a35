//! The worker's config file: every mistake stops start-up with the file, line and field
//! named; environment variables override settings; secrets stay out of the output.
#![cfg(feature = "worker")]

use std::path::Path;
use std::process::Command;

use seawall::worker::{parse, HandlerSpec, SourceSpec};

const GOOD: &str = r#"# a route from Kafka to HTTP
[routes.orders]
source.kafka = { brokers = "127.0.0.1:9092", group = "g", topics = ["orders"] }
handler.http = { url = "http://127.0.0.1:8080/orders" }
contract = { name = "order", encoding = "json" }

[routes.orders.retry]
max_attempts = 3
initial_backoff = "250ms"

[routes.payments]
source.rabbitmq = { url = "amqp://guest:canary-5521@127.0.0.1:5672/%2f", queue = "payments" }
handler.forward.kafka = { brokers = "127.0.0.1:9092", topic = "payments-out" }
"#;

fn schemas() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas"))
}

fn parse_str(text: &str, env: &[(&str, &str)]) -> Result<seawall::worker::WorkerConfig, String> {
    let text = format!(
        "[contracts]\ndir = {:?}\n{text}",
        schemas().display().to_string()
    );
    let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
    parse(&text, "seawall.toml", Path::new("."), env).map_err(|e| e.to_string())
}

#[test]
fn a_good_file_gives_typed_routes_with_defaults() {
    let config = parse_str(GOOD, &[]).unwrap();
    let orders = &config.routes["orders"];
    assert!(matches!(orders.source, SourceSpec::Kafka(_)));
    assert!(matches!(orders.handler, HandlerSpec::Http(_)));
    assert_eq!(orders.pipeline.retry.max_attempts, 3);
    assert_eq!(
        orders.pipeline.handler_timeout,
        std::time::Duration::from_secs(30)
    );
    let payments = &config.routes["payments"];
    // RabbitMQ routes take their keys from headers and message ids by default.
    assert_eq!(
        format!("{:?}", payments.pipeline.ordering.key),
        format!(
            "{:?}",
            seawall::rabbitmq::RabbitConfig::new("amqp://x", "q").ordering_rule()
        )
    );
    assert!(!format!("{config:?}").contains("canary-5521"));
}

#[test]
fn mistakes_name_the_file_line_and_field() {
    let cases = [
        (
            GOOD.replace("max_attempts = 3", "max_attempts = 0"),
            "seawall.toml:10: routes.orders.retry.max_attempts: expected an integer >= 1",
        ),
        (
            GOOD.replace("initial_backoff = \"250ms\"", "initial_backoff = \"soon\""),
            "seawall.toml:11: routes.orders.retry.initial_backoff:",
        ),
        (
            GOOD.replace("max_attempts = 3", "max_attempts = 3\nmax_attemps = 4"),
            "seawall.toml:11: routes.orders.retry.max_attemps: unknown field `max_attemps`, expected one of `max_attempts`",
        ),
        (
            GOOD.replace("\"order\"", "\"invoice\""),
            "seawall.toml:7: routes.orders.contract.name: ",
        ),
        (
            GOOD.replace("[routes.orders.retry]", "[routes.orders.retry"),
            "seawall.toml:9:",
        ),
    ];
    for (text, expected) in cases {
        let err = parse_str(&text, &[]).unwrap_err();
        assert!(
            err.starts_with(expected),
            "expected `{expected}…`, got `{err}`"
        );
    }
}

#[test]
fn environment_variables_override_and_are_named_in_errors() {
    let config = parse_str(
        GOOD,
        &[
            ("SEAWALL__ROUTES__ORDERS__RETRY__MAX_ATTEMPTS", "7"),
            (
                "SEAWALL__ROUTES__ORDERS__SOURCE__KAFKA__TOPICS",
                r#"["a", "b"]"#,
            ),
            ("SEAWALL__ADMIN__LISTEN", "127.0.0.1:9999"),
            ("UNRELATED", "x"),
        ],
    )
    .unwrap();
    let orders = &config.routes["orders"];
    assert_eq!(orders.pipeline.retry.max_attempts, 7);
    match &orders.source {
        SourceSpec::Kafka(kafka) => assert_eq!(kafka.topics, ["a", "b"]),
        other => panic!("{other:?}"),
    }
    assert_eq!(config.admin.listen.port(), 9999);
    let err = parse_str(
        GOOD,
        &[("SEAWALL__ROUTES__ORDERS__RETRY__MAX_ATTEMPTS", "0")],
    )
    .unwrap_err();
    assert_eq!(
        err,
        "environment SEAWALL__ROUTES__ORDERS__RETRY__MAX_ATTEMPTS: routes.orders.retry.max_attempts: expected an integer >= 1"
    );
}

fn seawall(args: &[&str], config: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[contracts]\ndir = {:?}\n{config}",
        schemas().display().to_string()
    );
    let path = dir.path().join("seawall.toml");
    std::fs::write(&path, text).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_seawall"))
        .args(args)
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_binary_refuses_a_bad_file_with_the_documented_message() {
    let bad = GOOD.replace("max_attempts = 3", "max_attempts = 0");
    for command in [&["check", "--offline"][..], &["run"][..]] {
        let (code, _, stderr) = seawall(command, &bad);
        assert_eq!(code, 2, "{command:?}: {stderr}");
        assert!(
            stderr.contains(
                "seawall.toml:10: routes.orders.retry.max_attempts: expected an integer >= 1"
            ),
            "{command:?}: {stderr}"
        );
    }
    let missing_schema = GOOD.replace("\"order\"", "\"invoice\"");
    let (code, _, stderr) = seawall(&["check", "--offline"], &missing_schema);
    assert_eq!(code, 2);
    assert!(stderr.contains("routes.orders.contract.name"), "{stderr}");
    assert!(stderr.contains("invoice"), "{stderr}");
}

#[test]
fn check_shows_routes_with_secrets_redacted() {
    let (code, stdout, stderr) = seawall(&["check", "--offline"], GOOD);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("routes.orders"), "{stdout}");
    assert!(stdout.contains("routes.payments"), "{stdout}");
    assert!(!stdout.contains("canary-5521") && !stderr.contains("canary-5521"));
    assert!(stdout.contains("guest:***@"), "{stdout}");
}

#[test]
fn ca_files_are_relative_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"[routes.payments]
source.rabbitmq = { url = "amqps://guest:guest@127.0.0.1:5671/%2f", queue = "p", tls = { ca_file = "certs/amqp-ca.pem" } }
handler.http = { url = "https://127.0.0.1:8443/p", tls = { ca_file = "certs/http-ca.pem" } }
"#;
    let parsed = || parse(text, "seawall.toml", dir.path(), std::iter::empty());
    // Both files are read at load, and looked for beside the config, not in the
    // working directory.
    let err = parsed().unwrap_err().to_string();
    let amqp_ca = dir.path().join("certs/amqp-ca.pem");
    assert!(err.contains(&amqp_ca.display().to_string()), "{err}");
    std::fs::create_dir(dir.path().join("certs")).unwrap();
    let pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    std::fs::write(&amqp_ca, pem).unwrap();
    let err = parsed().unwrap_err().to_string();
    let http_ca = dir.path().join("certs/http-ca.pem");
    assert!(err.contains(&http_ca.display().to_string()), "{err}");
}
