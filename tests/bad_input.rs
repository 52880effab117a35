//! Hostile input through the real worker (`seawall run`) on both brokers: oversize
//! payloads, 10,000 headers, a huge header, garbage Avro, JSON nested 100,000 deep,
//! invalid UTF-8. Each must be dead-lettered with a reason that names what was wrong,
//! the worker must neither panic, nor balloon, nor hang: valid messages sent after them
//! are still delivered, and it stops cleanly.

#![cfg(all(feature = "worker", feature = "contracts"))]

#[path = "common/bad_input.rs"]
mod bad_input;
#[path = "common/downstream.rs"]
mod downstream;
#[path = "common/kafka.rs"]
mod kafka;
#[path = "common/rabbit.rs"]
mod rabbit;
#[path = "common/worker_proc.rs"]
mod worker_proc;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bad_input::{Case, Expect, Route};
use downstream::Downstream;
use worker_proc::WorkerProc;

/// Far above what the worker needs (the 2 MiB payload and 1 MiB header are held a few
/// times over); a worker that copied hostile input without bound would cross it.
const MAX_PEAK_RSS_MIB: u64 = 1024;

/// What the run found for one case: its dead letters' kind, reason and payload.
#[derive(Debug, Default)]
struct Outcome {
    dead_letters: Vec<Letter>,
}

#[derive(Debug)]
struct Letter {
    kind: String,
    reason: String,
    /// The payload as text, invalid UTF-8 replaced (the Kafka test reader's form).
    payload: String,
}

/// Files a dead letter under its case (its ordering key), from its `seawall.*` headers.
fn note_letter(
    outcomes: &mut BTreeMap<String, Outcome>,
    header: impl Fn(&'static str) -> String,
    payload: String,
) {
    outcomes
        .entry(header("seawall.ordering-key"))
        .or_default()
        .dead_letters
        .push(Letter {
            kind: header("seawall.error-kind"),
            reason: header("seawall.error"),
            payload,
        });
}

fn route_settings() -> &'static str {
    "retry = { max_attempts = 2, initial_backoff = \"20ms\", max_backoff = \"50ms\" }\n\
     durability = { flush_interval = \"1ms\" }\n"
}

fn contract(route: Route) -> &'static str {
    match route {
        Route::Avro => {
            r#"contract = { name = "order", encoding = "binary", transcode_json = true }"#
        }
        Route::Json => r#"contract = { name = "order", encoding = "json" }"#,
    }
}

/// Checks every case's outcome, the downstream's calls and the worker's health.
fn check(cases: &[Case], outcomes: &BTreeMap<String, Outcome>, downstream: &Downstream) {
    let delivered = downstream.delivered();
    for case in cases {
        let found = outcomes.get(case.name);
        let letters = found.map(|o| o.dead_letters.as_slice()).unwrap_or_default();
        let shown: Vec<(&str, &str)> = letters
            .iter()
            .map(|l| (l.kind.as_str(), l.reason.as_str()))
            .collect();
        println!("{}: {shown:?}", case.name);
        match &case.expect {
            Expect::DeadLetter { kind, reason } => {
                assert_eq!(
                    letters.len(),
                    1,
                    "{}: one dead letter: {letters:?}",
                    case.name
                );
                let Letter {
                    kind: got_kind,
                    reason: got_reason,
                    payload,
                } = &letters[0];
                assert_eq!(got_kind, kind, "{}: kind ({got_reason})", case.name);
                // Nothing lost: the dead letter carries the original payload.
                assert!(
                    *payload == String::from_utf8_lossy(&case.payload),
                    "{}: dead letter's payload ({} bytes) is not the original",
                    case.name,
                    payload.len()
                );
                for fragment in *reason {
                    assert!(
                        got_reason.contains(fragment),
                        "{}: reason `{got_reason}` lacks `{fragment}`",
                        case.name
                    );
                }
            }
            Expect::Delivered { idempotency_header } => {
                assert!(
                    letters.is_empty(),
                    "{}: dead-lettered {letters:?}",
                    case.name
                );
                let calls = delivered
                    .iter()
                    .filter(|c| c.idempotency_key == *idempotency_header)
                    .count();
                assert_eq!(calls, 1, "{}: delivered once", case.name);
            }
        }
    }
    let valid = cases
        .iter()
        .filter(|c| matches!(c.expect, Expect::Delivered { .. }))
        .count();
    assert_eq!(
        delivered.len(),
        valid,
        "only the valid cases reach the downstream"
    );
}

fn finish(worker: WorkerProc) {
    let peak = bad_input::peak_rss_mib(worker.pid()).expect("the worker's /proc status");
    println!("worker peak RSS: {peak} MiB");
    assert!(
        worker.get("/healthz").is_some_and(|(code, _)| code == 200),
        "the worker answers /healthz after the hostile input"
    );
    let (status, log) = worker.stop(Duration::from_secs(30));
    assert!(status.success(), "{status}\n{log}");
    assert!(!log.contains("panicked"), "the worker panicked:\n{log}");
    assert!(peak < MAX_PEAK_RSS_MIB, "peak RSS {peak} MiB");
}

fn dead_letter_count(cases: &[Case], route: Route) -> usize {
    cases
        .iter()
        .filter(|c| c.route == route && matches!(c.expect, Expect::DeadLetter { .. }))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_hostile_input_is_dead_lettered_with_its_reason() {
    let cases = bad_input::cases(bad_input::KAFKA);
    let downstream = Downstream::start().await;
    let avro = kafka::unique("bad-avro");
    let json = kafka::unique("bad-json");
    kafka::create_topic(&avro, 1).await;
    kafka::create_topic(&json, 1).await;
    let mut config = String::new();
    for (name, topic, route) in [("avro", &avro, Route::Avro), ("json", &json, Route::Json)] {
        config.push_str(&format!(
            "[routes.{name}]\nsource.kafka = {{ brokers = \"{}\", group = \"{topic}-g\", topics = [\"{topic}\"], commit_interval = \"100ms\" }}\nhandler.http = {{ url = \"{}\" }}\n{}\n{}",
            kafka::brokers(),
            downstream.url("/"),
            contract(route),
            route_settings()
        ));
    }
    let worker = WorkerProc::start(&config);
    kafka_raw::produce(&avro, &json, &cases).await;
    downstream.until_delivered(2, 60).await;
    let mut outcomes = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for (topic, route) in [(&avro, Route::Avro), (&json, Route::Json)] {
        let want = dead_letter_count(&cases, route);
        let mut letters = Vec::new();
        while letters.len() < want && Instant::now() < deadline {
            letters = kafka::read_all(&format!("{topic}.dlq"), 1);
        }
        for letter in letters {
            let text = |name| letter.header(name).unwrap_or("").to_owned();
            note_letter(&mut outcomes, text, letter.payload.clone());
        }
    }
    check(&cases, &outcomes, &downstream);
    finish(worker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_hostile_input_is_dead_lettered_with_its_reason() {
    let cases = bad_input::cases(bad_input::RABBITMQ);
    let downstream = Downstream::start().await;
    let (_connection, channel) = rabbit::channel().await;
    let avro = rabbit::unique("bad-avro");
    let json = rabbit::unique("bad-json");
    let mut config = String::new();
    for (name, queue, route) in [("avro", &avro, Route::Avro), ("json", &json, Route::Json)] {
        rabbit::declare(&channel, queue).await;
        config.push_str(&format!(
            "[routes.{name}]\nsource.rabbitmq = {{ url = \"{}\", queue = \"{queue}\" }}\nhandler.http = {{ url = \"{}\" }}\n{}\n{}",
            rabbit::amqp_url(),
            downstream.url("/"),
            contract(route),
            route_settings()
        ));
    }
    let worker = WorkerProc::start(&config);
    rabbit_raw::publish(&channel, &avro, &json, &cases).await;
    downstream.until_delivered(2, 60).await;
    let mut outcomes = BTreeMap::new();
    for (queue, route) in [(&avro, Route::Avro), (&json, Route::Json)] {
        let dlq = format!("{queue}.dlq");
        let want = dead_letter_count(&cases, route);
        let mut letters = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while letters.len() < want && Instant::now() < deadline {
            letters.extend(rabbit::drain(&channel, &dlq).await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for letter in &letters {
            let text = |name| rabbit::header_text(letter, name).unwrap_or_default();
            let payload = String::from_utf8_lossy(&letter.delivery.data).into_owned();
            note_letter(&mut outcomes, text, payload);
        }
        rabbit::delete(&channel, &[queue, &dlq]).await;
    }
    check(&cases, &outcomes, &downstream);
    finish(worker);
}

mod kafka_raw {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::ClientConfig;

    use super::bad_input::{Case, Route};

    /// Produces every case as raw bytes, the key being its name.
    pub async fn produce(avro: &str, json: &str, cases: &[Case]) {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", super::kafka::brokers())
            // The 2 MiB payload and 1 MiB header are over librdkafka's 1 MB default.
            .set("message.max.bytes", "10000000")
            .create()
            .expect("producer");
        for case in cases {
            let headers = case.headers.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
                h.insert(Header {
                    key: k,
                    value: Some(v.as_slice()),
                })
            });
            let topic = if case.route == Route::Avro {
                avro
            } else {
                json
            };
            let record = FutureRecord::to(topic)
                .key(case.name)
                .payload(&case.payload)
                .headers(headers);
            producer
                .send(record, std::time::Duration::from_secs(30))
                .await
                .unwrap_or_else(|(e, _)| panic!("producing {}: {e}", case.name));
        }
    }
}

mod rabbit_raw {
    use lapin::options::BasicPublishOptions;
    use lapin::types::{AMQPValue, FieldTable, LongString};
    use lapin::{BasicProperties, Channel};

    use super::bad_input::{Case, Route};

    /// Publishes every case as raw bytes with its name as the ordering header and, unless
    /// it brings an idempotency header of its own, as its message id.
    pub async fn publish(channel: &Channel, avro: &str, json: &str, cases: &[Case]) {
        for case in cases {
            let mut headers = FieldTable::default();
            headers.insert(
                "ordering-key".into(),
                AMQPValue::LongString(LongString::from(case.name)),
            );
            for (name, value) in &case.headers {
                headers.insert(
                    name.as_str().into(),
                    AMQPValue::LongString(LongString::from(value.clone())),
                );
            }
            let mut properties = BasicProperties::default()
                .with_headers(headers)
                .with_delivery_mode(2);
            if !case.headers.iter().any(|(n, _)| n == "idempotency-key") {
                properties = properties.with_message_id(case.name.into());
            }
            let queue = if case.route == Route::Avro {
                avro
            } else {
                json
            };
            channel
                .basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    &case.payload,
                    properties,
                )
                .await
                .unwrap_or_else(|e| panic!("publishing {}: {e}", case.name))
                .await
                .unwrap_or_else(|e| panic!("confirming {}: {e}", case.name));
        }
    }
}
