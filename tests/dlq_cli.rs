//! `seawall dlq list`, `show` and `groups` against a real Kafka-API broker: the binary run
//! on a config file, on dead-letter topics written with real `seawall.*` and Spring Kafka
//! headers.
#![cfg(feature = "worker")]

#[path = "common/dlq_cli.rs"]
mod dlq_cli;
#[path = "common/kafka.rs"]
mod kafka;

use std::time::{Duration, Instant, SystemTime};

use dlq_cli::{
    config_file, failed_at, indexes, json, produce, rfc3339, seawall, seawall_letter, stdout,
    Letter, COLUMNS, COUNT, KEYS,
};
use kafka::{brokers, create_topic, unique};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_dead_letters_listed_grouped_and_shown() {
    let topic = unique("dlqcli");
    let dlq = format!("{topic}.dlq");
    let group = unique("dlqcli-group");
    create_topic(&dlq, 3).await;
    let base = SystemTime::now() - Duration::from_secs(3600);
    produce(
        &dlq,
        (0..COUNT)
            .map(|i| seawall_letter(&topic, base, i))
            .collect(),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), &topic, &group);
    let route = ["--route", "orders"];

    // Groups: three causes, 500 / 300 / 200.
    let groups = json(&config, &["groups", route[0], route[1], "--format", "json"]);
    let summary: Vec<(&str, u64)> = groups
        .iter()
        .map(|g| (g["kind"].as_str().unwrap(), g["count"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        summary,
        [("exhausted", 500), ("permanent", 300), ("contract", 200)]
    );
    assert_eq!(
        groups[0]["fingerprint"],
        "exhausted: timeout after <n>ms calling order <uuid>"
    );
    assert_eq!(
        groups[0]["first_seen"],
        rfc3339(failed_at(base, 0)).as_str()
    );
    assert_eq!(
        groups[0]["last_seen"],
        rfc3339(failed_at(base, 994)).as_str()
    );
    assert_eq!(
        groups[1]["example_id"].as_str().unwrap().split('/').next(),
        Some(dlq.as_str())
    );

    // Everything, timed; oldest first, across the three partitions.
    let started = Instant::now();
    let all = json(&config, &["list", route[0], route[1], "--format", "json"]);
    println!(
        "dlq list --format json on {COUNT} records: {:?}",
        started.elapsed()
    );
    assert_eq!(indexes(&all), (0..COUNT).collect::<Vec<_>>());
    let started = Instant::now();
    let table = stdout(&config, &["list", route[0], route[1]]);
    println!(
        "dlq list (table) on {COUNT} records: {:?}",
        started.elapsed()
    );
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), COUNT + 2, "{table}");
    assert!(
        lines[0].starts_with("ID ") && lines[0].ends_with("ERROR"),
        "{}",
        lines[0]
    );
    assert_eq!(lines[COUNT + 1], format!("({COUNT} dead letters)"));
    // Errors are cut to what the other columns leave of the width, but to no less than 20
    // characters (the ids and topic names here take about 130).
    let error_start = lines[0].find("ERROR").unwrap();
    let widest = COLUMNS.max(error_start + 20);
    assert!(lines.iter().all(|l| l.chars().count() <= widest), "{table}");
    // The long timeout errors are cut to fit, with a mark.
    assert!(
        lines[1].contains(" exhausted ") && lines[1].ends_with('…'),
        "{}",
        lines[1]
    );

    // One cause, in offset order within each partition and in failure order overall.
    let exhausted = json(
        &config,
        &[
            "list",
            route[0],
            route[1],
            "--kind",
            "exhausted",
            "--format",
            "json",
        ],
    );
    let expected: Vec<usize> = (0..COUNT).filter(|i| i % 10 < 5).collect();
    assert_eq!(indexes(&exhausted), expected);
    assert!(exhausted
        .iter()
        .all(|r| r["kind"] == "exhausted" && r["attempts"] == 5));
    let mut last_offset = std::collections::HashMap::new();
    for record in &exhausted {
        let id = record["id"].as_str().unwrap();
        let mut parts = id.rsplitn(3, '/');
        let offset: i64 = parts.next().unwrap().parse().unwrap();
        let partition = parts.next().unwrap().to_owned();
        assert_eq!(parts.next(), Some(dlq.as_str()));
        let previous = last_offset.insert(partition, offset).unwrap_or(-1);
        assert!(offset > previous, "{id} after offset {previous}");
    }

    // One key: 20 records, in order.
    let k7 = json(
        &config,
        &[
            "list", route[0], route[1], "--key", "k7", "--format", "json",
        ],
    );
    assert_eq!(
        indexes(&k7),
        (0..COUNT).filter(|i| i % KEYS == 7).collect::<Vec<_>>()
    );
    assert!(k7
        .iter()
        .all(|r| r["key"] == "k7" && r["ordering_key"] == "k7"));

    // Time windows: RFC 3339 and "ago".
    let since = rfc3339(failed_at(base, 500));
    let until = rfc3339(failed_at(base, 600));
    let window = json(
        &config,
        &[
            "list", route[0], route[1], "--since", &since, "--until", &until, "--format", "json",
        ],
    );
    assert_eq!(indexes(&window), (500..600).collect::<Vec<_>>());
    let recent = json(
        &config,
        &[
            "list", route[0], route[1], "--since", "2h", "--format", "json",
        ],
    );
    assert_eq!(recent.len(), COUNT);
    assert!(json(
        &config,
        &["list", route[0], route[1], "--until", "2h", "--format", "json"]
    )
    .is_empty());

    // A group by its fingerprint.
    let fingerprint = groups[2]["fingerprint"].as_str().unwrap();
    let contract = json(
        &config,
        &[
            "list",
            route[0],
            route[1],
            "--group",
            fingerprint,
            "--format",
            "json",
        ],
    );
    assert_eq!(
        indexes(&contract),
        (0..COUNT).filter(|i| i % 10 >= 8).collect::<Vec<_>>()
    );

    // Show: a JSON payload pretty-printed, headers listed.
    let first = all[0]["id"].as_str().unwrap();
    let shown = stdout(&config, &["show", first, route[0], route[1]]);
    for expected in [
        "kind            exhausted",
        "attempts        5",
        &format!("source          {topic}/0/0"),
        &format!("failed at       {}", rfc3339(failed_at(base, 0))),
        "headers (11):",
        "  traceparent: 00-trace-0",
        "  seawall.error-kind: exhausted",
        "  seawall.idempotency-key: idem-0",
        "payload (",
        "bytes, json):\n{\n  \"order\": 0,\n  \"customer\": \"k0\",\n  \"lines\": [\n    {\n      \"sku\": \"A-1\",",
    ] {
        assert!(shown.contains(expected), "missing {expected:?} in\n{shown}");
    }
    // A binary payload as a hex dump.
    let last = all[COUNT - 1]["id"].as_str().unwrap();
    let shown = stdout(&config, &["show", last, route[0], route[1]]);
    assert!(
        shown.contains("payload (40 bytes, binary):\n00000000  80 a5 ca ef"),
        "{shown}"
    );
    assert!(
        shown.contains("\n00000020  ") && shown.ends_with("\n00000028\n"),
        "{shown}"
    );

    // Ids that are not there.
    let missing = seawall(
        &config,
        &["show", &format!("{dlq}/0/999999"), "--route", "orders"],
    );
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no dead letter"));
    let foreign = seawall(&config, &["show", "other.dlq/0/1", "--route", "orders"]);
    assert_eq!(foreign.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&foreign.stderr).contains(&dlq));

    assert_no_group_committed(&dlq, 3, &group);
}

/// No consumer group the broker knows has an offset committed on `topic` (unique to the
/// test, so only the commands could have committed there), the route's group has none,
/// and no reader group exists (the reader never joins its throwaway group).
fn assert_no_group_committed(topic: &str, partitions: i32, route_group: &str) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    let groups = consumer
        .fetch_group_list(None, Duration::from_secs(10))
        .unwrap();
    let names: Vec<String> = groups
        .groups()
        .iter()
        .map(|g| g.name().to_owned())
        .collect();
    let readers: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with("seawall-dlq-reader-"))
        .collect();
    assert!(
        readers.is_empty(),
        "reader groups on the broker: {readers:?}"
    );
    for group in names.iter().map(String::as_str).chain([route_group]) {
        let committed = kafka::committed(group, topic, partitions);
        assert!(
            committed.iter().all(|&o| o == -1),
            "group {group} committed {committed:?} on {topic}"
        );
    }
    println!(
        "no offsets committed on {topic} by any of {} groups",
        names.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spring_kafka_dead_letter_is_listed_with_its_origin() {
    let topic = unique("dlqcli-spring");
    let dlq = format!("{topic}.dlq");
    create_topic(&dlq, 1).await;
    let headers = vec![
        (
            "kafka_dlt-original-topic".to_owned(),
            b"orders-spring".to_vec(),
        ),
        (
            "kafka_dlt-original-partition".to_owned(),
            3i32.to_be_bytes().to_vec(),
        ),
        (
            "kafka_dlt-original-offset".to_owned(),
            42i64.to_be_bytes().to_vec(),
        ),
        (
            "kafka_dlt-exception-fqcn".to_owned(),
            b"org.springframework.kafka.support.serializer.DeserializationException".to_vec(),
        ),
        (
            "kafka_dlt-exception-message".to_owned(),
            b"failed to deserialize; nested exception at byte 17".to_vec(),
        ),
    ];
    let before = SystemTime::now() - Duration::from_secs(1);
    produce(
        &dlq,
        vec![Letter {
            key: Some(b"cust-9".to_vec()),
            payload: b"not json at all".to_vec(),
            headers,
        }],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let group = unique("dlqcli-spring-group");
    let config = config_file(dir.path(), &topic, &group);
    let listed = json(&config, &["list", "--route", "orders", "--format", "json"]);
    assert_eq!(listed.len(), 1, "{listed:?}");
    let record = &listed[0];
    assert_eq!(record["id"], format!("{dlq}/0/0").as_str());
    assert_eq!(record["format"], "spring-kafka");
    assert_eq!(record["kind"], "DeserializationException");
    assert_eq!(record["original_source"], "orders-spring");
    assert_eq!(record["original_partition"], 3);
    assert_eq!(record["original_offset"], 42);
    assert_eq!(record["key"], "cust-9");
    // No failure time in Spring's headers: the dead-letter record's broker timestamp.
    let at = humantime::parse_rfc3339(record["failed_at"].as_str().unwrap()).unwrap();
    assert!(
        at >= before && at <= SystemTime::now() + Duration::from_secs(5),
        "{at:?}"
    );

    let table = stdout(
        &config,
        &[
            "list",
            "--route",
            "orders",
            "--kind",
            "deserializationexception",
        ],
    );
    assert!(
        table.contains("orders-spring/3/42") && table.contains("DeserializationException"),
        "{table}"
    );
    let shown = stdout(
        &config,
        &["show", &format!("{dlq}/0/0"), "--route", "orders"],
    );
    for expected in [
        "  kafka_dlt-original-partition: 0x00000003",
        "  kafka_dlt-original-offset: 0x000000000000002a",
        "  kafka_dlt-original-topic: orders-spring",
        "source          orders-spring/3/42",
        "payload (15 bytes, text):\nnot json at all\n",
    ] {
        assert!(shown.contains(expected), "missing {expected:?} in\n{shown}");
    }
    assert_no_group_committed(&dlq, 1, &group);
}

#[test]
fn unknown_routes_are_refused_and_a_missing_queue_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    // No broker is reached: the route is checked first.
    let config = config_file(dir.path(), "orders", "g");
    let out = seawall(&config, &["list", "--route", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no route `nope`") && err.contains("routes: orders, payments"),
        "{err}"
    );

    // A RabbitMQ route whose dead-letter queue was never declared has nothing to list.
    let out = seawall(&config, &["groups", "--route", "payments"]);
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.is_empty() || err.contains("payments.dlq"), "{err}");

    let out = seawall(&config, &["list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("--route is needed; routes: orders, payments"));

    let out = seawall(
        &config,
        &["list", "--route", "orders", "--since", "yesterday-ish"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("RFC 3339"));
}
