//! Helpers for tests/dlq_cli.rs: dead-letter records with raw header bytes, Seawall's
//! own dead letters in three failure causes, a config file, and running `seawall dlq`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use seawall::{DeadLetter, DeadLetterInfo, DeadLetterKind, Message, Position};
use serde_json::Value;

use super::kafka::{self, brokers};

pub const COUNT: usize = 1000;
pub const KEYS: usize = 50;
/// The terminal width the commands are run with.
pub const COLUMNS: usize = 150;

/// One dead-letter record to produce, headers as raw bytes.
pub struct Letter {
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

pub async fn produce(topic: &str, letters: Vec<Letter>) {
    let producer = kafka::producer(&brokers());
    let mut pending = Vec::new();
    for letter in &letters {
        let headers = letter
            .headers
            .iter()
            .fold(OwnedHeaders::new(), |h, (name, value)| {
                h.insert(Header {
                    key: name,
                    value: Some(value),
                })
            });
        let mut record = FutureRecord::to(topic)
            .payload(&letter.payload)
            .headers(headers);
        if let Some(key) = &letter.key {
            record = record.key(key);
        }
        pending.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
    }
    for delivery in pending {
        delivery.await.unwrap().map_err(|(e, _)| e).unwrap();
    }
}

/// The failure of record `i`: three causes whose errors differ only in numbers and ids.
pub fn cause(i: usize) -> (DeadLetterKind, String) {
    match i % 10 {
        0..5 => (
            DeadLetterKind::Exhausted,
            format!(
                "timeout after {}ms calling order {:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
                1000 + i * 7,
                i * 2_654_435,
                i % 65_536,
                i % 4096,
                (i * 7) % 4096,
                i * 31_337
            ),
        ),
        5..8 => (
            DeadLetterKind::Permanent,
            format!("HTTP 400: field 'amount' must be positive in order {i}"),
        ),
        _ => (
            DeadLetterKind::Contract,
            format!("record {i} does not match the contract at byte {}", i * 13),
        ),
    }
}

pub fn failed_at(base: SystemTime, i: usize) -> SystemTime {
    base + Duration::from_millis(i as u64)
}

/// Record `i` as Seawall dead-letters it: a JSON payload, except the last, binary one.
pub fn seawall_letter(source: &str, base: SystemTime, i: usize) -> Letter {
    let key = format!("k{}", i % KEYS);
    let payload = if i == COUNT - 1 {
        (0u8..40).map(|b| b.wrapping_mul(37) ^ 0x80).collect()
    } else {
        format!(r#"{{"order":{i},"customer":"{key}","lines":[{{"sku":"A-1","qty":2}}]}}"#)
            .into_bytes()
    };
    let (kind, error) = cause(i);
    let letter = DeadLetter {
        message: Message::new(payload.clone())
            .with_key(key.clone())
            .with_header("traceparent", format!("00-trace-{i}")),
        info: DeadLetterInfo {
            kind,
            error,
            attempts: if kind == DeadLetterKind::Exhausted {
                5
            } else {
                1
            },
            source: Arc::from(source),
            position: Position::Offset {
                partition: (i % 4) as i32,
                offset: i as i64,
            },
            first_failed_at: failed_at(base, i),
            failed_at: failed_at(base, i),
            idempotency_key: Some(Bytes::from(format!("idem-{i}"))),
            ordering_key: Some(Bytes::from(key.clone())),
            blocked_by: None,
        },
    };
    Letter {
        key: Some(key.into_bytes()),
        payload,
        headers: letter
            .headers()
            .iter()
            .map(|(name, value)| (name.to_owned(), value.to_vec()))
            .collect(),
    }
}

/// A config with a Kafka route `orders` on `topic` and a RabbitMQ route `payments`.
pub fn config_file(dir: &Path, topic: &str, group: &str) -> PathBuf {
    let path = dir.join("seawall.toml");
    let text = format!(
        r#"[routes.orders]
source.kafka = {{ brokers = "{}", group = "{group}", topics = ["{topic}"] }}
handler.http = {{ url = "http://127.0.0.1:9/orders" }}

[routes.payments]
source.rabbitmq = {{ url = "amqp://guest:guest@127.0.0.1:5672/%2f", queue = "payments" }}
handler.http = {{ url = "http://127.0.0.1:9/payments" }}
"#,
        brokers()
    );
    std::fs::write(&path, text).unwrap();
    path
}

pub fn seawall(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seawall"))
        .arg("dlq")
        .args(args)
        .arg("--config")
        .arg(config)
        .env("COLUMNS", COLUMNS.to_string())
        .output()
        .unwrap()
}

/// Runs a command that must succeed; its stdout.
pub fn stdout(config: &Path, args: &[&str]) -> String {
    let out = seawall(config, args);
    assert!(
        out.status.success(),
        "seawall dlq {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn json(config: &Path, args: &[&str]) -> Vec<Value> {
    let text = stdout(config, args);
    serde_json::from_str::<Vec<Value>>(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The original offsets (= the index `i` produced) of listed records, in list order.
pub fn indexes(records: &[Value]) -> Vec<usize> {
    records
        .iter()
        .map(|r| r["original_offset"].as_u64().unwrap() as usize)
        .collect()
}

pub fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}
