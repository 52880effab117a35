//! The worker binary end to end: `seawall run` as a process with a config file, against
//! the real brokers and a local HTTP downstream.

#![cfg(feature = "worker")]

#[path = "common/downstream.rs"]
mod downstream;
#[path = "common/kafka.rs"]
mod kafka;
#[path = "common/rabbit.rs"]
mod rabbit;
#[path = "common/worker_proc.rs"]
mod worker_proc;

use std::collections::BTreeMap;
use std::time::Duration;

use downstream::{Call, Downstream};
use kafka::Record;
use worker_proc::WorkerProc;

fn order(customer: &str, seq: u32, note: &str) -> String {
    serde_json::json!({
        "id": format!("{customer}-{seq}"),
        "customer": customer,
        "amount": f64::from(seq) + 0.5,
        "currency": "EUR",
        "note": note,
    })
    .to_string()
}

/// Successful deliveries per customer, in arrival order, as order ids.
fn by_customer(calls: &[Call]) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for call in calls {
        map.entry(call.body["customer"].as_str().unwrap_or("?").to_owned())
            .or_default()
            .push(call.body["id"].as_str().unwrap_or("?").to_owned());
    }
    map
}

fn seq_of(id: &str) -> u32 {
    id.rsplit('-').next().unwrap().parse().unwrap()
}

fn assert_in_order(delivered: &[Call]) {
    for (customer, ids) in by_customer(delivered) {
        let seqs: Vec<u32> = ids.iter().map(|id| seq_of(id)).collect();
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        assert_eq!(seqs, sorted, "order of {customer}");
    }
}

/// The workload: 5 customers x 8 orders; customer c1's order 2 fails twice with 503,
/// c2's order 3 gets a 429 with Retry-After first, c3's order 5 is refused with 400, and
/// c4's order 4 breaks the contract (no `amount`).
fn workload() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for seq in 0..8 {
        for c in 0..5 {
            let customer = format!("c{c}");
            let note = match (c, seq) {
                (1, 2) => "503x2",
                (2, 3) => "429",
                (3, 5) => "400",
                _ => "ok",
            };
            let mut payload = order(&customer, seq, note);
            if (c, seq) == (4, 4) {
                payload = r#"{"id":"c4-4","customer":"c4"}"#.to_owned();
            }
            out.push((customer.clone(), format!("{customer}-{seq}"), payload));
        }
    }
    out
}

fn route_settings() -> &'static str {
    r#"contract = { name = "order", encoding = "json" }
retry = { max_attempts = 5, initial_backoff = "50ms", max_backoff = "200ms" }
durability = { flush_interval = "1ms" }
"#
}

fn check_outcomes(downstream: &Downstream, worker: &WorkerProc, route: &str) {
    let delivered = downstream.delivered();
    let keys: Vec<&str> = delivered
        .iter()
        .map(|c| c.idempotency_key.as_str())
        .collect();
    let mut distinct = keys.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(keys.len(), 38, "each good order delivered once: {keys:?}");
    assert_eq!(distinct.len(), 38);
    assert_in_order(&delivered);
    // The 429 was honoured: the second call came at least a second after the first.
    let c2: Vec<Call> = downstream
        .calls()
        .into_iter()
        .filter(|c| c.idempotency_key == "c2-3")
        .collect();
    assert_eq!(c2.len(), 2, "429 then 200");
    assert!(c2[1].at.duration_since(c2[0].at) >= Duration::from_millis(950));
    // The 503s were retried in place, twice.
    let c1 = downstream
        .calls()
        .iter()
        .filter(|c| c.idempotency_key == "c1-2")
        .count();
    assert_eq!(c1, 3);
    // The contract violation never reached the downstream.
    assert!(downstream
        .calls()
        .iter()
        .all(|c| c.idempotency_key != "c4-4"));
    assert_eq!(worker.counter(route, "dead_lettered"), 2);
    assert_eq!(worker.counter(route, "processed"), 38);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_to_http_retries_honours_retry_after_and_dead_letters() {
    let downstream = Downstream::start().await;
    let topic = kafka::unique("e2e-orders");
    kafka::create_topic(&topic, 2).await;
    let config = format!(
        r#"[routes.orders]
source.kafka = {{ brokers = "{}", group = "{topic}-g", topics = ["{topic}"], commit_interval = "100ms" }}
handler.http = {{ url = "{}", header_prefix = "x-msg-" }}
{}"#,
        kafka::brokers(),
        downstream.url("/orders"),
        route_settings()
    );
    let worker = WorkerProc::start(&config);
    let records = workload()
        .into_iter()
        .map(|(customer, id, payload)| Record {
            key: Some(customer),
            payload,
            headers: vec![
                ("idempotency-key".into(), id),
                (
                    "traceparent".into(),
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
                ),
            ],
        });
    kafka::produce(&topic, records).await;
    downstream.until_delivered(38, 60).await;
    let dlq_topic = format!("{topic}.dlq");
    let mut letters = Vec::new();
    for _ in 0..100 {
        letters = kafka::read_all(&dlq_topic, 1);
        if letters.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check_outcomes(&downstream, &worker, "orders");
    let mut kinds: Vec<_> = letters
        .iter()
        .map(|l| {
            (
                l.header("seawall.error-kind").unwrap_or("").to_owned(),
                l.key.clone(),
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            ("contract".to_owned(), Some("c4".to_owned())),
            ("permanent".to_owned(), Some("c3".to_owned()))
        ]
    );
    let first = &downstream.delivered()[0];
    assert_eq!(
        first.headers["traceparent"],
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    );
    assert!(first.headers.contains_key("x-msg-idempotency-key"));
    let (status, log) = worker.stop(Duration::from_secs(30));
    assert!(status.success(), "{status}\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_to_http_retries_honours_retry_after_and_dead_letters() {
    let downstream = Downstream::start().await;
    let queue = rabbit::unique("e2e-orders");
    let (_connection, channel) = rabbit::channel().await;
    rabbit::declare(&channel, &queue).await;
    let config = format!(
        r#"[routes.payments]
source.rabbitmq = {{ url = "{}", queue = "{queue}" }}
handler.http = {{ url = "{}" }}
{}"#,
        rabbit::amqp_url(),
        downstream.url("/payments"),
        route_settings()
    );
    let worker = WorkerProc::start(&config);
    let messages = workload()
        .into_iter()
        .map(|(customer, id, payload)| rabbit::Out {
            key: customer,
            id: Some(id),
            payload,
        });
    rabbit::publish(&channel, &queue, messages).await;
    downstream.until_delivered(38, 60).await;
    let dlq = format!("{queue}.dlq");
    let mut letters = Vec::new();
    for _ in 0..100 {
        letters.extend(rabbit::drain(&channel, &dlq).await);
        if letters.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check_outcomes(&downstream, &worker, "payments");
    let mut kinds: Vec<_> = letters
        .iter()
        .map(|l| rabbit::header_text(l, "seawall.error-kind").unwrap_or_default())
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["contract", "permanent"]);
    let (status, log) = worker.stop(Duration::from_secs(30));
    assert!(status.success(), "{status}\n{log}");
    rabbit::delete(&channel, &[&queue, &dlq]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downstream_outage_opens_the_breaker_and_dead_letters_nothing() {
    let downstream = Downstream::start().await;
    downstream.set_down(true);
    let queue = rabbit::unique("e2e-outage");
    let (_connection, channel) = rabbit::channel().await;
    rabbit::declare(&channel, &queue).await;
    let config = format!(
        r#"[routes.outage]
source.rabbitmq = {{ url = "{}", queue = "{queue}" }}
handler.http = {{ url = "{}" }}
retry = {{ max_attempts = 3, initial_backoff = "20ms", max_backoff = "100ms" }}
breaker = {{ min_calls = 5, failure_ratio = 0.5, window = "2s", cool_down = "500ms" }}
durability = {{ flush_interval = "1ms" }}
"#,
        rabbit::amqp_url(),
        downstream.url("/"),
    );
    let worker = WorkerProc::start(&config);
    let messages = (0..60).map(|i| rabbit::Out {
        key: format!("k{}", i % 6),
        id: Some(format!("m{i}")),
        payload: order(&format!("k{}", i % 6), i / 6, "ok"),
    });
    rabbit::publish(&channel, &queue, messages).await;
    let mut saw_open = false;
    for _ in 0..50 {
        let (_, metrics) = worker.get("/metrics").unwrap_or_default();
        saw_open |= metrics.contains("seawall_breaker_state{route=\"outage\",state=\"open\"} 1");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let calls_while_down = downstream.calls().len();
    downstream.set_down(false);
    downstream.until_delivered(60, 60).await;
    assert!(saw_open, "the breaker opened during the outage");
    // Without the breaker, 60 messages x 3 attempts would have been spent in well under
    // the 5 s outage and all dead-lettered.
    assert!(
        calls_while_down < 120,
        "{calls_while_down} calls while down"
    );
    assert_eq!(downstream.delivered().len(), 60);
    assert_in_order(&downstream.delivered());
    assert_eq!(worker.counter("outage", "dead_lettered"), 0);
    let dlq = format!("{queue}.dlq");
    assert_eq!(rabbit::queue_len(&channel, &dlq).await, 0);
    let (status, log) = worker.stop(Duration::from_secs(30));
    assert!(status.success(), "{status}\n{log}");
    rabbit::delete(&channel, &[&queue, &dlq]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_forwards_kafka_to_rabbitmq_in_order_with_headers() {
    let topic = kafka::unique("e2e-bridge");
    kafka::create_topic(&topic, 2).await;
    let queue = rabbit::unique("e2e-bridge-out");
    let (_connection, channel) = rabbit::channel().await;
    rabbit::declare(&channel, &queue).await;
    // The default exchange routes by queue name: a fixed routing key sends everything
    // to the test queue.
    let config = format!(
        r#"[routes.bridge]
source.kafka = {{ brokers = "{}", group = "{topic}-g", topics = ["{topic}"] }}
handler.forward.rabbitmq = {{ url = "{}", exchange = "", routing_key = "{queue}" }}
durability = {{ flush_interval = "1ms" }}
"#,
        kafka::brokers(),
        rabbit::amqp_url(),
    );
    let worker = WorkerProc::start(&config);
    let records = (0..100).map(|i| Record {
        key: Some(format!("k{}", i % 5)),
        payload: order(&format!("k{}", i % 5), i / 5, "ok"),
        headers: vec![("idempotency-key".into(), format!("b{i}"))],
    });
    kafka::produce(&topic, records).await;
    let mut out = Vec::new();
    for _ in 0..300 {
        out.extend(rabbit::drain(&channel, &queue).await);
        if out.len() >= 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(out.len(), 100);
    let mut per_key: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for message in &out {
        let body: serde_json::Value = serde_json::from_slice(&message.delivery.data).unwrap();
        let id = body["id"].as_str().unwrap();
        per_key
            .entry(body["customer"].as_str().unwrap().to_owned())
            .or_default()
            .push(seq_of(id));
        assert!(rabbit::header_text(message, "idempotency-key").is_some());
        assert_eq!(
            rabbit::header_text(message, "ordering-key").as_deref(),
            body["customer"].as_str()
        );
    }
    for (key, seqs) in per_key {
        assert_eq!(seqs, (0..20).collect::<Vec<_>>(), "order of {key}");
    }
    let (status, log) = worker.stop(Duration::from_secs(30));
    assert!(status.success(), "{status}\n{log}");
    rabbit::delete(&channel, &[&queue]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_forwards_rabbitmq_to_kafka_keeping_keys_and_dedup_ids() {
    let queue = rabbit::unique("e2e-to-kafka");
    let (_connection, channel) = rabbit::channel().await;
    rabbit::declare(&channel, &queue).await;
    let topic = kafka::unique("e2e-from-rabbit");
    kafka::create_topic(&topic, 1).await;
    let config = format!(
        r#"[routes.to-kafka]
source.rabbitmq = {{ url = "{}", queue = "{queue}" }}
handler.forward.kafka = {{ brokers = "{}", topic = "{topic}" }}
durability = {{ flush_interval = "1ms" }}
"#,
        rabbit::amqp_url(),
        kafka::brokers(),
    );
    let worker = WorkerProc::start(&config);
    let messages = (0..50).map(|i| rabbit::Out {
        key: format!("k{}", i % 5),
        id: Some(format!("r{i}")),
        payload: order(&format!("k{}", i % 5), i / 5, "ok"),
    });
    rabbit::publish(&channel, &queue, messages).await;
    let mut out = Vec::new();
    for _ in 0..300 {
        out = kafka::read_all(&topic, 1);
        if out.len() >= 50 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(out.len(), 50);
    let mut per_key: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for record in &out {
        let body: serde_json::Value = serde_json::from_str(&record.payload).unwrap();
        // The ordering header became the Kafka key; the message id the idempotency key.
        assert_eq!(record.key.as_deref(), body["customer"].as_str());
        assert!(record
            .header("idempotency-key")
            .is_some_and(|id| id.starts_with('r')));
        per_key
            .entry(body["customer"].as_str().unwrap().to_owned())
            .or_default()
            .push(seq_of(body["id"].as_str().unwrap()));
    }
    for (key, seqs) in per_key {
        assert_eq!(seqs, (0..10).collect::<Vec<_>>(), "order of {key}");
    }
    let (status, log) = worker.stop(Duration::from_secs(30));
    assert!(status.success(), "{status}\n{log}");
    rabbit::delete(&channel, &[&queue, &format!("{queue}.dlq")]).await;
}

fn seawall_check(config: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seawall.toml");
    std::fs::write(&path, config).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_seawall"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reaches_every_broker_and_downstream_and_names_what_is_missing() {
    let downstream = Downstream::start().await;
    let queue = rabbit::unique("e2e-check");
    let (_connection, channel) = rabbit::channel().await;
    rabbit::declare(&channel, &queue).await;
    let topic = kafka::unique("e2e-check");
    kafka::create_topic(&topic, 1).await;
    let good = format!(
        r#"[routes.a]
source.rabbitmq = {{ url = "{amqp}", queue = "{queue}" }}
handler.http = {{ url = "{url}" }}

[routes.b]
source.kafka = {{ brokers = "{brokers}", group = "{topic}-g", topics = ["{topic}"] }}
handler.forward.rabbitmq = {{ url = "{amqp}", exchange = "amq.topic" }}
"#,
        amqp = rabbit::amqp_url(),
        url = downstream.url("/x"),
        brokers = kafka::brokers(),
    );
    let (code, text) = seawall_check(&good);
    assert_eq!(code, 0, "{text}");
    assert_eq!(text.matches("reachable").count(), 4, "{text}");
    let bad = good
        .replace(&queue, "seawall-no-such-queue")
        .replace(&topic, "seawall-no-such-topic")
        .replace(&downstream.addr.to_string(), "127.0.0.1:1");
    let (code, text) = seawall_check(&bad);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("seawall-no-such-queue"), "{text}");
    assert!(
        text.contains("no such topic: seawall-no-such-topic"),
        "{text}"
    );
    assert!(text.contains("cannot connect to 127.0.0.1:1"), "{text}");
    assert!(!text.contains("guest:guest"), "{text}");
    rabbit::delete(&channel, &[&queue]).await;
    // Nothing was consumed and no group was joined.
    let group = format!("{topic}-g");
    assert!(kafka::committed(&group, &topic, 1).iter().all(|&o| o < 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_waits_for_running_handlers_and_a_second_signal_exits_at_once() {
    // A downstream that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let queue = rabbit::unique("e2e-signals");
    let (_connection, channel) = rabbit::channel().await;
    rabbit::declare(&channel, &queue).await;
    let config = format!(
        r#"[routes.signals]
source.rabbitmq = {{ url = "{}", queue = "{queue}" }}
handler.http = {{ url = "http://{silent_addr}/", timeout = "60s" }}
handler_timeout = "60s"
"#,
        rabbit::amqp_url(),
    );
    let mut worker = WorkerProc::start(&config);
    let one = rabbit::Out {
        key: "k".into(),
        id: Some("stuck-1".into()),
        payload: order("k", 0, "ok"),
    };
    rabbit::publish(&channel, &queue, [one]).await;
    for _ in 0..100 {
        if worker
            .get("/metrics")
            .is_some_and(|(_, m)| m.contains("seawall_in_flight{route=\"signals\"} 1"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.terminate();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !worker.exited(),
        "the first signal waits for the running handler"
    );
    let (code, body) = worker.get("/readyz").unwrap();
    assert_eq!(code, 503, "not ready while stopping: {body}");
    worker.terminate();
    let started = std::time::Instant::now();
    let (status, log) = worker.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(130), "{log}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Not acknowledged: the broker has the message again for the next worker.
    for _ in 0..50 {
        if rabbit::queue_len(&channel, &queue).await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rabbit::queue_len(&channel, &queue).await, 1);
    rabbit::delete(&channel, &[&queue, &format!("{queue}.dlq")]).await;
}
