//! A canary password in a Kafka route's SASL settings, in a RabbitMQ route's AMQP URL
//! and in an HTTP handler's URL and header must appear in no output of the `seawall`
//! binary — `run`, `check`, `check --offline`, config errors — at trace level (librdkafka's
//! own `debug = all` logging included), nor in `Debug` output of the loaded config.
//! The admin listener binds to loopback unless told otherwise.
//!
//! The brokers need not accept the credentials: a refused login exercises the error paths,
//! which are where secrets tend to slip out. `KAFKA_BROKERS` and `AMQP_URL` name the
//! brokers (default `127.0.0.1:9092` and `127.0.0.1:5672`).
#![cfg(feature = "worker")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const CANARY: &str = "canary-5c1e7a";

fn kafka_brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// `host:port/vhost` of `AMQP_URL`, to put the canary credentials in front of.
fn amqp_host() -> String {
    let url = std::env::var("AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    rest.rsplit_once('@').map_or(rest, |(_, h)| h).to_owned()
}

/// Kafka SASL properties with the canary as the password, and librdkafka's own debug
/// logging on, which dumps the client configuration.
fn sasl_properties() -> String {
    format!(
        r#"{{ "security.protocol" = "SASL_PLAINTEXT", "sasl.mechanisms" = "PLAIN", "sasl.username" = "svc", "sasl.password" = "{CANARY}", "debug" = "all", "socket.timeout.ms" = "3000" }}"#
    )
}

/// Routes carrying the canary everywhere a secret may be configured. Each route's handler
/// connects before its source, so the routes are arranged for every client to really
/// try its login: the Kafka SASL consumer, the Kafka SASL forwarder, the RabbitMQ source
/// and the RabbitMQ forwarder.
fn config() -> String {
    let brokers = kafka_brokers();
    let properties = sasl_properties();
    let amqp = format!("amqp://guest:{CANARY}@{}", amqp_host());
    format!(
        r#"shutdown_deadline = "3s"

[store]
path = "store"

[admin]
enabled = false

[routes.kafka-sasl]
source.kafka = {{ brokers = "{brokers}", group = "seawall-secrets", topics = ["seawall-secrets"], properties = {properties} }}
handler.http = {{ url = "http://svc:{CANARY}@127.0.0.1:9/in", headers = {{ authorization = "Bearer {CANARY}" }} }}

[routes.rabbit]
source.rabbitmq = {{ url = "{amqp}", queue = "seawall-secrets" }}
handler.http = {{ url = "http://127.0.0.1:9/in" }}

[routes.forward-kafka]
source.rabbitmq = {{ url = "{amqp}", queue = "seawall-secrets" }}
handler.forward.kafka = {{ brokers = "{brokers}", topic = "seawall-secrets-out", properties = {properties} }}

[routes.forward-rabbit]
source.kafka = {{ brokers = "{brokers}", group = "seawall-secrets-2", topics = ["seawall-secrets"] }}
handler.forward.rabbitmq = {{ url = "{amqp}", exchange = "" }}
"#
    )
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("seawall.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn command(args: &[&str], config: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_seawall"));
    command
        .args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "trace")
        .stdin(Stdio::null());
    command
}

/// The canary as text, and as the `Debug` of its bytes (`[99, 97, …]`, how the AMQP
/// client prints a login frame) and in hex.
fn canary_forms() -> [String; 3] {
    let bytes = CANARY.as_bytes();
    let decimal: Vec<String> = bytes.iter().map(u8::to_string).collect();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    [CANARY.to_owned(), decimal.join(", "), hex]
}

/// Fails naming the line if the canary, in any of its forms, is in the output.
fn assert_no_canary(what: &str, output: &Output) {
    for (stream, bytes) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
        let text = String::from_utf8_lossy(bytes);
        for form in canary_forms() {
            if let Some(line) = text.lines().find(|l| l.contains(&form)) {
                panic!("{what}: the canary password ({form}) is in {stream}:\n{line}");
            }
        }
    }
}

/// Runs the command until it exits or `limit` passes, then SIGTERM, then SIGKILL.
fn run_for(mut command: Command, limit: Duration) -> Output {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    let started = Instant::now();
    while !waiter.is_finished() && started.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(100));
    }
    if !waiter.is_finished() {
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let terminated = Instant::now();
    while !waiter.is_finished() && terminated.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    if !waiter.is_finished() {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    waiter.join().unwrap()
}

#[test]
fn the_canary_is_in_no_output_of_run_and_check() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &config());
    let runs = [
        ("run", &["run"][..], Duration::from_secs(5)),
        (
            "run --log-format json",
            &["run", "--log-format", "json"][..],
            Duration::from_secs(3),
        ),
        ("check", &["check"][..], Duration::from_secs(60)),
        (
            "check --offline",
            &["check", "--offline"][..],
            Duration::from_secs(30),
        ),
    ];
    for (what, args, limit) in runs {
        let output = run_for(command(args, &path), limit);
        assert_no_canary(what, &output);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        // The routes really ran: librdkafka's debug log and the refused login are there.
        if what == "run" {
            assert!(stderr.contains("sasl.password"), "{what}: {stderr}");
            assert!(stderr.contains("ACCESS_REFUSED"), "{what}: {stderr}");
        }
        if what.starts_with("check") {
            assert!(stdout.contains("routes.rabbit"), "{what}: {stdout}{stderr}");
            assert!(stdout.contains("***"), "{what}: {stdout}");
        }
    }
}

#[test]
fn the_canary_is_in_no_config_error() {
    let good = config();
    let bad_files = [
        good.replace("queue = \"seawall-secrets\"", "queue = \"q\", prefetch = 0"),
        good.replace("amqp://guest:", "http://guest:"),
        good.replace(
            "group = \"seawall-secrets\"",
            "group = \"g\", gruop = \"x\"",
        ),
        good.replace("\"sasl.username\" = \"svc\"", "\"sasl.username\" = 5"),
        good.replace("\"Bearer ", "\"Bearer\n"),
        good.replace(&format!("{CANARY}@"), &format!("{CANARY}\"@")),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (n, text) in bad_files.iter().enumerate() {
        let path = write_config(dir.path(), text);
        for args in [&["check", "--offline"][..], &["run"][..]] {
            let output = run_for(command(args, &path), Duration::from_secs(30));
            assert_eq!(
                output.status.code(),
                Some(2),
                "file {n} {args:?}: {output:?}"
            );
            assert_no_canary(&format!("file {n} {args:?}"), &output);
            let error = seawall::worker::load(&path).unwrap_err();
            assert!(!error.to_string().contains(CANARY), "file {n}: {error}");
            assert!(
                !format!("{error:?}").contains(CANARY),
                "file {n}: {error:?}"
            );
        }
    }
}

#[test]
fn the_canary_is_in_no_debug_output() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &config());
    let config = seawall::worker::load(&path).unwrap();
    let debug = format!("{config:?} {config:#?}");
    assert!(!debug.contains(CANARY), "{debug}");
    for route in config.routes.values() {
        let text = format!("{route:?} {} {:?}", route.summary(), route.source);
        assert!(!text.contains(CANARY), "{text}");
    }
    // The settings are really there, only hidden.
    assert!(debug.contains("sasl.password"), "{debug}");
    assert!(debug.contains("guest"), "{debug}");
}

#[test]
fn the_admin_listener_is_loopback_unless_configured() {
    let dir = tempfile::tempdir().unwrap();
    let text = config().replace("[admin]\nenabled = false\n", "");
    let path = write_config(dir.path(), &text);
    let config = seawall::worker::load(&path).unwrap();
    let listen = config
        .admin_listen()
        .expect("the admin listener is on by default");
    assert!(listen.ip().is_loopback(), "{listen}");
    assert_eq!(listen.to_string(), "127.0.0.1:9464");
    let text = text.replace("[store]", "[admin]\nlisten = \"0.0.0.0:9464\"\n\n[store]");
    let config = seawall::worker::load(&write_config(dir.path(), &text)).unwrap();
    assert!(config
        .admin_listen()
        .is_some_and(|a| a.ip().is_unspecified()));
}
