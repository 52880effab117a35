//! `seawall dlq replay` and `release` end to end: a worker process dead-letters real
//! messages, the operator fixes the cause and puts them back with the binary.

#![cfg(feature = "worker")]

#[path = "common/dlq_cli.rs"]
mod dlq_cli;
#[path = "common/dlq_replay.rs"]
mod dlq_replay;
#[path = "common/downstream.rs"]
mod downstream;
#[path = "common/kafka.rs"]
mod kafka;
#[path = "common/worker_proc.rs"]
mod worker_proc;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dlq_replay::*;
use downstream::Downstream;
use kafka::Record;
use serde_json::Value;
use worker_proc::WorkerProc;

const KEYS: usize = 50;
const COUNT: usize = 1000;

/// The failure cause of order `i`: half `amount`, three tenths `customer`, a fifth `sku`.
fn cause(i: usize) -> &'static str {
    match i % 10 {
        0..5 => "amount",
        5..8 => "customer",
        _ => "sku",
    }
}

fn order(key: usize, seq: usize, note: &str) -> Record {
    let key = format!("k{key:02}");
    Record {
        key: Some(key.clone()),
        payload: serde_json::json!({ "key": key, "seq": seq, "note": note }).to_string(),
        headers: vec![("idempotency-key".into(), format!("{key}-{seq}"))],
    }
}

fn route(topic: &str, url: &str, extra: &str) -> String {
    format!(
        r#"[routes.orders]
source.kafka = {{ brokers = "{}", group = "{topic}-g", topics = ["{topic}"], commit_interval = "100ms" }}
handler.http = {{ url = "{url}" }}
{extra}
"#,
        kafka::brokers()
    )
}

fn topic_len(topic: &str, partitions: i32) -> usize {
    kafka::read_all(topic, partitions).len()
}

fn group_counts(config: &Path) -> BTreeMap<String, (u64, String)> {
    json(config, &["groups", "--format", "json"])
        .into_iter()
        .map(|g| {
            let fp = g["fingerprint"].as_str().unwrap().to_owned();
            (fp, (g["count"].as_u64().unwrap(), fp_cause(&g)))
        })
        .collect()
}

fn fp_cause(group: &Value) -> String {
    let fp = group["fingerprint"].as_str().unwrap();
    ["amount", "customer", "sku"]
        .into_iter()
        .find(|c| fp.contains(c))
        .unwrap_or("?")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_replayed_in_key_order_exactly_once_resumable_with_canary() {
    let topic = kafka::unique("replay");
    kafka::create_topic(&topic, 3).await;
    let downstream = Downstream::start().await;
    let worker = WorkerProc::start(&route(&topic, &downstream.url("/orders"), ""));
    let config = config_of(&worker);
    let orders = (0..COUNT).map(|i| order(i % KEYS, i / KEYS, &format!("fail:{}", cause(i))));
    kafka::produce(&topic, orders).await;
    let listed = until_dead_lettered(&config, COUNT, 120).await;
    assert_eq!(listed.len(), COUNT);

    // Three causes, three groups, with the right counts.
    let groups = group_counts(&config);
    let counts: BTreeMap<String, u64> = groups.values().map(|(n, c)| (c.clone(), *n)).collect();
    let expected = [("amount", 500), ("customer", 300), ("sku", 200)];
    assert_eq!(counts, expected.map(|(c, n)| (c.to_owned(), n)).into());
    let fingerprint = |cause: &str| {
        let found = groups.iter().find(|(_, (_, c))| c == cause);
        found.map(|(fp, _)| fp.clone()).unwrap()
    };
    let amount = fingerprint("amount");
    let before = topic_len(&topic, 3);
    assert_eq!(before, COUNT);

    // A dry run prints all 500 in order and sends nothing.
    downstream.fix("amount");
    let dry = json(
        &config,
        &[
            "replay",
            "--group",
            &amount,
            "--dry-run",
            "--format",
            "json",
        ],
    );
    assert_eq!(dry.len(), 500);
    assert!(dry.iter().all(|m| m["destination"] == topic.as_str()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(topic_len(&topic, 3), COUNT, "a dry run sent something");

    // Interrupted part-way, then resumed: each sent once.
    interrupted_replay(&config, &amount).await;
    let resumed = dlq(&config, &["replay", "--group", &amount]);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert_eq!(
        topic_len(&topic, 3),
        COUNT + 500,
        "a message was sent twice"
    );
    let again = dlq(&config, &["replay", "--group", &amount]);
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(said.contains("0 to send, 500 already replayed"), "{said}");
    assert_eq!(topic_len(&topic, 3), COUNT + 500);

    downstream.until_delivered(500, 60).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let delivered = deliveries(&downstream.calls());
    assert_eq!(delivered.len(), 500);
    assert_once_in_key_order(&delivered);

    // The other groups stay; the replayed one is hidden.
    let left = group_counts(&config);
    let mut causes: Vec<(String, u64)> = left.values().map(|(n, c)| (c.clone(), *n)).collect();
    causes.sort();
    assert_eq!(causes, [("customer".into(), 300), ("sku".into(), 200)]);

    // A canary of a group whose cause is not fixed stops the replay after it.
    let customer = fingerprint("customer");
    let canary = dlq(
        &config,
        &[
            "replay",
            "--group",
            &customer,
            "--canary",
            "3",
            "--canary-wait",
            "30s",
        ],
    );
    assert_eq!(
        canary.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&canary.stderr)
    );
    assert!(String::from_utf8_lossy(&canary.stderr).contains("canary-failed"));
    assert_eq!(topic_len(&topic, 3), COUNT + 503);
    let audit = std::fs::read_to_string(worker.dir.path().join("store/dlq-audit.log")).unwrap();
    assert!(
        audit.lines().count() >= 5 && audit.contains("outcome=\"canary-failed"),
        "{audit}"
    );
    let (status, _) = worker.stop(Duration::from_secs(30));
    assert!(status.success());
}

/// Starts a slow replay of `group`, interrupts it with SIGINT once some are sent, and
/// checks it stopped part-way with exit 130.
async fn interrupted_replay(config: &Path, group: &str) {
    let child = Command::new(env!("CARGO_BIN_EXE_seawall"))
        .args([
            "dlq", "replay", "--group", group, "--rate", "100", "--config",
        ])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ledger = config.parent().unwrap().join("store/dlq/orders.replayed");
    let deadline = Instant::now() + Duration::from_secs(30);
    while ledger_len(&ledger) < 100 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{said}");
    let sent = ledger_len(&ledger);
    assert!(
        (100..500).contains(&sent),
        "{sent} sent before the interrupt: {said}"
    );
}

fn ledger_len(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_released_key_keeps_its_order_and_a_spring_record_goes_home() {
    let topic = kafka::unique("release");
    kafka::create_topic(&topic, 2).await;
    let downstream = Downstream::start().await;
    let config = route(
        &topic,
        &downstream.url("/orders"),
        "on_dead_letter = \"park\"",
    );
    let worker = WorkerProc::start(&config);
    let config = config_of(&worker);
    // Key k02 fails at seq 3 and parks; its seq 4..9 are parked behind it.
    let orders = (0..50).map(|i| {
        let (key, seq) = (i % 5, i / 5);
        let note = if key == 2 && seq == 3 {
            "fail:amount"
        } else {
            "ok"
        };
        order(key, seq, note)
    });
    kafka::produce(&topic, orders).await;
    let parked = until_dead_lettered(&config, 7, 60).await;
    assert_eq!(parked.len(), 7);
    let kinds: Vec<&str> = parked.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "parked").count(),
        6,
        "{kinds:?}"
    );
    downstream.until_delivered(43, 30).await;

    // Not fixed yet: a dry run shows the blocker first, marked to lift the park.
    let dry = json(
        &config,
        &["release", "k02", "--dry-run", "--format", "json"],
    );
    let seqs: Vec<u64> = dry.iter().map(|m| payload_seq(&m["payload"])).collect();
    assert_eq!(seqs, [3, 4, 5, 6, 7, 8, 9]);
    let first_headers = dry[0]["headers"].to_string();
    assert!(
        first_headers.contains("seawall.release-park"),
        "{first_headers}"
    );

    downstream.fix("amount");
    dlq_ok(&config, &["release", "k02"]);
    kafka::produce(&topic, [order(2, 10, "ok")]).await;
    downstream.until_delivered(51, 60).await;
    let k02: Vec<u64> = deliveries(&downstream.calls())
        .into_iter()
        .filter(|(key, _)| key == "k02")
        .map(|(_, seq)| seq)
        .collect();
    assert_eq!(
        k02,
        (0..=10).collect::<Vec<u64>>(),
        "k02 out of order or parked again"
    );

    // A Spring Kafka dead letter in the route's DLQ topic goes back to its original topic.
    spring_record_replayed(&topic, &config, &downstream).await;
    let (status, _) = worker.stop(Duration::from_secs(30));
    assert!(status.success());
}

fn payload_seq(payload: &Value) -> u64 {
    let order: Value = serde_json::from_str(payload.as_str().unwrap()).unwrap();
    order["seq"].as_u64().unwrap()
}

async fn spring_record_replayed(topic: &str, config: &Path, downstream: &Downstream) {
    let payload = serde_json::json!({ "key": "k07", "seq": 0, "note": "ok" }).to_string();
    let headers = [
        ("kafka_dlt-original-topic", topic.as_bytes().to_vec()),
        ("kafka_dlt-original-partition", 1i32.to_be_bytes().to_vec()),
        ("kafka_dlt-original-offset", 12i64.to_be_bytes().to_vec()),
        (
            "kafka_dlt-exception-fqcn",
            b"com.example.OrderRejected".to_vec(),
        ),
        ("kafka_dlt-exception-message", b"no stock".to_vec()),
        ("idempotency-key", b"spring-k07-0".to_vec()),
    ];
    let letter = dlq_cli::Letter {
        key: Some(b"k07".to_vec()),
        payload: payload.into_bytes(),
        headers: headers.map(|(n, v)| (n.to_owned(), v)).to_vec(),
    };
    dlq_cli::produce(&format!("{topic}.dlq"), vec![letter]).await;
    let listed = until_dead_lettered(config, 8, 30).await;
    let spring = listed
        .iter()
        .find(|r| r["format"] == "spring-kafka")
        .unwrap();
    assert_eq!(spring["original_source"], topic);
    let id = spring["id"].as_str().unwrap();
    dlq_ok(config, &["replay", "--ids", id]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && !delivered_k07(downstream) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let call = downstream
        .delivered()
        .into_iter()
        .find(|c| c.idempotency_key == "spring-k07-0");
    let call = call.expect("the Spring dead letter was not delivered");
    assert!(call.headers.get("kafka_dlt-original-topic").is_none());
}

fn delivered_k07(downstream: &Downstream) -> bool {
    downstream
        .delivered()
        .iter()
        .any(|c| c.idempotency_key == "spring-k07-0")
}
