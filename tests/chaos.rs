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
    chaos_with(broker, scenario, &["--messages", "2000"]);
}

/// A run with its own message count and scenario options.
fn chaos_with(broker: &str, scenario: &str, args: &[&str]) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_seawall-chaos"))
        .args(["--broker", broker, "--scenario", scenario])
        .args(args)
        .args(["--kills", "3", "--outage", "5s"])
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

// The store-fault runs mount the store's disk: they need root, and fail (never skip)
// without it.

#[test]
fn rabbitmq_store_disk_full() {
    chaos_with("rabbitmq", "store-fault", &["--store-fault", "disk-full"]);
}

#[test]
fn rabbitmq_store_read_only() {
    chaos_with("rabbitmq", "store-fault", &["--store-fault", "read-only"]);
}

#[test]
fn kafka_store_disk_full() {
    chaos_with("kafka", "store-fault", &["--store-fault", "disk-full"]);
}

/// Fault 5: a 200 ms downstream and a backlog six times the route's `max_buffered`.
const SLOW: &[&str] = &["--messages", "6000", "--max-buffered", "1000"];

#[test]
fn kafka_slow_downstream() {
    chaos_with("kafka", "slow-downstream", SLOW);
}

#[test]
fn rabbitmq_slow_downstream() {
    chaos_with("rabbitmq", "slow-downstream", SLOW);
}

/// Fails intermittently against tansu 0.6 (1 of 4 bounded runs): its group coordinator
/// gave a joining member a partition the partner had not yet revoked, so both consumed it
/// for about 2 s (docs/chaos.md, "group-kill on tansu"). Run it with `--ignored`.
#[test]
#[ignore = "tansu 0.6 assigns a partition before its owner revoked it; run with --ignored"]
fn kafka_group_kill() {
    chaos("kafka", "group-kill");
}

#[test]
fn rabbitmq_group_kill() {
    chaos("rabbitmq", "group-kill");
}
