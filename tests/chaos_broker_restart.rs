//! Fault 3 of the fault-injection suite, bounded: the broker restarted twice mid-run
//! under `seawall-chaos --scenario broker-restart` (2,000 messages). Each run starts a
//! broker of its own — a RabbitMQ node (`rabbitmq-server`, as root or `rabbitmq`) or a
//! tansu on a fresh PostgreSQL database (`tansu` with the `postgres` feature; PostgreSQL
//! at `CHAOS_POSTGRES_URL`, default postgres://postgres@127.0.0.1:5432, trust auth) — so
//! the shared brokers other tests use are never stopped. Alone in its test binary, and
//! one run at a time: each keeps a broker, a worker and a producer busy on 2 cores.

#![cfg(all(feature = "demo", feature = "worker"))]

use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn broker_restart(broker: &str) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_seawall-chaos"))
        .args(["--broker", broker, "--scenario", "broker-restart"])
        .args([
            "--messages",
            "2000",
            "--restarts",
            "2",
            "--broker-down",
            "3s",
        ])
        .args(["--produce-rate", "200", "--deadline", "80s"])
        .args(["--seawall", env!("CARGO_BIN_EXE_seawall")])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "{report}\n({broker} broker-restart: {:?})",
        started.elapsed()
    );
    assert!(
        out.status.success(),
        "{broker} broker-restart: {}\n{report}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // The restarts really happened and the worker came back by itself each time.
    assert_eq!(report.matches("worker noticed: ").count(), 2, "{report}");
    assert!(!report.contains("NOT WITHIN"), "{report}");
}

#[test]
fn rabbitmq_broker_restart() {
    broker_restart("rabbitmq");
}

/// tansu 0.6's PostgreSQL storage sends ListOffsets (latest, read-committed) as SQL with
/// an unaliased subquery in FROM, which PostgreSQL before 16 rejects; the machine's own
/// PostgreSQL is 15, so `scripts/postgres16.sh` (run by scripts/test.sh) provides a 16
/// and names it in `CHAOS_POSTGRES_URL`.
#[test]
fn kafka_broker_restart() {
    assert!(
        std::env::var("CHAOS_POSTGRES_URL").is_ok_and(|url| !url.is_empty()),
        "CHAOS_POSTGRES_URL must name a PostgreSQL 16 or newer for tansu's storage: \
         eval \"$(scripts/postgres16.sh)\" (scripts/test.sh does)"
    );
    broker_restart("kafka");
}
