//! The fault-injection checker, bounded: each scenario of `seawall-chaos` on both
//! brokers (2,000 messages, 3 faults, a 5 s outage). The long version: docs/chaos.md.
//! Needs the brokers (`KAFKA_BROKERS`, `AMQP_URL`; default 127.0.0.1:9092 and
//! amqp://guest:guest@127.0.0.1:5672/%2f).

#![cfg(all(feature = "demo", feature = "worker"))]

use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

/// One run at a time: each keeps a worker, a producer and a broker busy on 2 cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn chaos(broker: &str, scenario: &str) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_seawall-chaos"))
        .args(["--broker", broker, "--scenario", scenario])
        .args(["--messages", "2000", "--kills", "3", "--outage", "5s"])
        .args([
            "--deadline",
            "90s",
            "--seawall",
            env!("CARGO_BIN_EXE_seawall"),
        ])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!("{report}\n({broker} {scenario}: {:?})", started.elapsed());
    assert!(
        out.status.success(),
        "{broker} {scenario}: {}\n{report}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn kafka_sigkill() {
    chaos("kafka", "sigkill");
}

#[test]
fn rabbitmq_sigkill() {
    chaos("rabbitmq", "sigkill");
}

#[test]
fn kafka_sigterm() {
    chaos("kafka", "sigterm");
}

#[test]
fn rabbitmq_sigterm() {
    chaos("rabbitmq", "sigterm");
}

#[test]
fn kafka_downstream_outage() {
    chaos("kafka", "downstream-outage");
}

#[test]
fn rabbitmq_downstream_outage() {
    chaos("rabbitmq", "downstream-outage");
}
