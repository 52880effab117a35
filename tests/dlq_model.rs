//! The dead-letter record model the `seawall dlq` commands use: records written by Seawall,
//! Spring Kafka and Kafka Connect parse to one view, replay to their original source, and
//! group by failure fingerprint.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use seawall::dlq::{
    fingerprint, group, replay_order, DlqFilter, DlqFormat, DlqRecord, ReplayError,
};
use seawall::{header, DeadLetter, DeadLetterInfo, DeadLetterKind, Headers, Message, Position};

fn at(millis: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(millis)
}

fn seawall_letter(key: &str, offset: i64, error: &str) -> DeadLetter {
    DeadLetter {
        message: Message::new(format!("{{\"offset\":{offset}}}"))
            .with_key(key.to_owned())
            .with_header("traceparent", "00-abc"),
        info: DeadLetterInfo {
            kind: DeadLetterKind::Exhausted,
            error: error.to_owned(),
            attempts: 5,
            source: Arc::from("orders"),
            position: Position::Offset {
                partition: 2,
                offset,
            },
            first_failed_at: at(1_763_000_000_000),
            failed_at: at(1_763_000_000_000 + offset as u64),
            idempotency_key: Some(Bytes::from(format!("idem-{offset}"))),
            ordering_key: Some(Bytes::from(key.to_owned())),
            blocked_by: None,
        },
    }
}

fn header_names(message: &Message) -> Vec<&str> {
    message.headers().iter().map(|(name, _)| name).collect()
}

fn header_text(message: &Message, name: &str) -> Option<String> {
    let value = message.headers().get(name)?;
    Some(String::from_utf8(value.to_vec()).unwrap())
}

#[test]
fn a_seawall_dead_letter_round_trips() {
    let letter = seawall_letter("customer-1", 77, "HTTP 503 from downstream");
    let record = DlqRecord::parse(
        "orders.dlq/0/12",
        letter.key().cloned(),
        letter.message.payload().clone(),
        letter.headers(),
    );
    let failure = &record.failure;
    assert_eq!(failure.format, DlqFormat::Seawall);
    assert_eq!(failure.kind, "exhausted");
    assert_eq!(failure.error, "HTTP 503 from downstream");
    assert_eq!(failure.attempts, Some(5));
    assert_eq!(failure.original_source.as_deref(), Some("orders"));
    assert_eq!(
        (failure.original_partition, failure.original_offset),
        (Some(2), Some(77))
    );
    assert_eq!(failure.failed_at, Some(at(1_763_000_000_077)));
    assert_eq!(failure.idempotency_key.as_deref(), Some(&b"idem-77"[..]));
    assert_eq!(failure.ordering_key.as_deref(), Some(&b"customer-1"[..]));
    assert_eq!(failure.replay_count, 0);

    let (destination, message) = record.replay_message().unwrap();
    assert_eq!(destination, "orders");
    assert_eq!(message.key().map(|k| &k[..]), Some(&b"customer-1"[..]));
    assert_eq!(message.payload(), letter.message.payload());
    // The original carried no idempotency header and no message id (its key came from
    // elsewhere): the recorded key goes along, so a second replay is a duplicate.
    assert_eq!(
        header_names(&message),
        [
            "traceparent",
            "idempotency-key",
            header::REPLAY_OF,
            header::REPLAY_COUNT
        ]
    );
    assert_eq!(
        header_text(&message, "idempotency-key").as_deref(),
        Some("idem-77")
    );
    assert_eq!(
        header_text(&message, header::REPLAY_OF).as_deref(),
        Some("orders.dlq/0/12")
    );
    assert_eq!(
        header_text(&message, header::REPLAY_COUNT).as_deref(),
        Some("1")
    );
}

#[test]
fn a_replay_dead_lettered_again_counts_its_replays() {
    // First failure, replay, second failure (the pipeline keeps the replay headers on the
    // dead-letter copy), second replay.
    let first = seawall_letter("k", 1, "boom");
    let record = DlqRecord::parse("dlq/0/1", first.key().cloned(), "p", first.headers());
    let (_, replayed) = record.replay_message().unwrap();
    let again = DeadLetter {
        message: replayed,
        info: seawall_letter("k", 9, "boom").info,
    };
    let record = DlqRecord::parse("dlq/0/2", again.key().cloned(), "p", again.headers());
    assert_eq!(record.failure.replay_count, 1);
    let (_, replayed) = record.replay_message().unwrap();
    // The first replay's `idempotency-key` is the message's own now: kept, not doubled.
    assert_eq!(
        header_names(&replayed),
        [
            "traceparent",
            "idempotency-key",
            header::REPLAY_OF,
            header::REPLAY_COUNT
        ]
    );
    assert_eq!(
        header_text(&replayed, header::REPLAY_COUNT).as_deref(),
        Some("2")
    );
    assert_eq!(
        header_text(&replayed, header::REPLAY_OF).as_deref(),
        Some("dlq/0/2")
    );
}

#[test]
fn a_spring_kafka_record_parses_and_replays_to_its_topic() {
    let headers: Headers = [
        ("kafka_dlt-original-topic", Bytes::from_static(b"payments")),
        (
            "kafka_dlt-original-partition",
            Bytes::copy_from_slice(&3i32.to_be_bytes()),
        ),
        (
            "kafka_dlt-original-offset",
            Bytes::copy_from_slice(&42i64.to_be_bytes()),
        ),
        (
            "kafka_dlt-original-timestamp",
            Bytes::copy_from_slice(&1_763_000_000_500i64.to_be_bytes()),
        ),
        (
            "kafka_dlt-exception-fqcn",
            Bytes::from_static(
                b"org.springframework.kafka.support.serializer.DeserializationException",
            ),
        ),
        (
            "kafka_dlt-exception-message",
            Bytes::from_static(b"failed to deserialize; nested exception is ..."),
        ),
        (
            "kafka_dlt-exception-stacktrace",
            Bytes::from_static(b"at ..."),
        ),
        ("b3", Bytes::from_static(b"80f198ee56343ba8")),
    ]
    .into_iter()
    .collect();
    let record = DlqRecord::parse(
        "payments.DLT/0/5",
        Some(Bytes::from_static(b"acct-9")),
        "garbage",
        headers,
    );
    let failure = &record.failure;
    assert_eq!(failure.format, DlqFormat::SpringKafka);
    assert_eq!(failure.kind, "DeserializationException");
    assert_eq!(
        failure.error,
        "failed to deserialize; nested exception is ..."
    );
    assert_eq!(failure.original_source.as_deref(), Some("payments"));
    assert_eq!(failure.original_partition, Some(3));
    assert_eq!(failure.original_offset, Some(42));
    assert_eq!(failure.original_timestamp, Some(at(1_763_000_000_500)));
    assert_eq!(failure.failed_at, None);
    assert_eq!(failure.attempts, None);

    let (destination, message) = record.replay_message().unwrap();
    assert_eq!(destination, "payments");
    assert_eq!(message.key().map(|k| &k[..]), Some(&b"acct-9"[..]));
    assert_eq!(&message.payload()[..], b"garbage");
    assert_eq!(
        header_names(&message),
        ["b3", header::REPLAY_OF, header::REPLAY_COUNT]
    );
}

#[test]
fn a_kafka_connect_record_parses_and_replays_to_its_topic() {
    let headers: Headers = [
        ("__connect.errors.topic", "inventory"),
        ("__connect.errors.partition", "1"),
        ("__connect.errors.offset", "1234"),
        ("__connect.errors.stage", "VALUE_CONVERTER"),
        (
            "__connect.errors.class.name",
            "org.apache.kafka.connect.json.JsonConverter",
        ),
        ("__connect.errors.connector.name", "inventory-sink"),
        (
            "__connect.errors.exception.class.name",
            "org.apache.kafka.connect.errors.DataException",
        ),
        (
            "__connect.errors.exception.message",
            "Converting byte[] to Kafka Connect data failed due to serialization error",
        ),
        ("app", "shop"),
    ]
    .into_iter()
    .collect();
    let record = DlqRecord::parse("dlq-inventory/0/9", None, "{", headers);
    let failure = &record.failure;
    assert_eq!(failure.format, DlqFormat::KafkaConnect);
    assert_eq!(failure.kind, "DataException");
    assert!(failure.error.starts_with("Converting byte[]"));
    assert_eq!(failure.original_source.as_deref(), Some("inventory"));
    assert_eq!(
        (failure.original_partition, failure.original_offset),
        (Some(1), Some(1234))
    );

    let (destination, message) = record.replay_message().unwrap();
    assert_eq!(destination, "inventory");
    assert_eq!(message.key(), None);
    assert_eq!(
        header_names(&message),
        ["app", header::REPLAY_OF, header::REPLAY_COUNT]
    );
}

#[test]
fn a_record_without_failure_headers_is_listed_but_not_replayed() {
    let headers: Headers = [("traceparent", "00-abc")].into_iter().collect();
    let record = DlqRecord::parse("q/3", None, "x", headers);
    assert_eq!(record.failure.format, DlqFormat::Unknown);
    assert_eq!(record.failure.kind, "unknown");
    assert!(matches!(
        record.replay_message(),
        Err(ReplayError::NoDestination { id }) if id == "q/3"
    ));
}

#[test]
fn fingerprints_ignore_variable_parts_but_not_causes() {
    let timeout_a = fingerprint(
        "exhausted",
        "timeout after 3000ms calling order 8f14e45f-ceea-467f-a0e6-1c2b3d4e5f60",
    );
    let timeout_b = fingerprint(
        "exhausted",
        "timeout after 2500ms calling order 1b4e28ba-2fa1-11d2-883f-0016d3cca427",
    );
    assert_eq!(timeout_a, timeout_b);
    assert_eq!(
        timeout_a,
        "exhausted: timeout after <n>ms calling order <uuid>"
    );

    let amount = fingerprint("permanent", "HTTP 400: field 'amount' must be positive");
    let currency = fingerprint("permanent", "HTTP 400: field 'currency' must be positive");
    assert_eq!(amount, currency);
    assert_ne!(fingerprint("permanent", "HTTP 503"), amount);
    // A status code is the cause, not a variable part.
    assert_ne!(
        fingerprint("permanent", "HTTP 503: upstream failed"),
        fingerprint("permanent", "HTTP 500: upstream failed")
    );
    // The kind is part of the fingerprint.
    assert_ne!(
        fingerprint("contract", "HTTP 400: field 'amount' must be positive"),
        amount
    );
}

/// 1,000 dead letters over 50 keys with three causes, as the end-to-end test has.
fn three_causes(count: usize) -> Vec<DlqRecord> {
    (0..count)
        .map(|i| {
            let (kind, error) = match i % 10 {
                0..=4 => (
                    DeadLetterKind::Exhausted,
                    format!(
                        "timeout after {}ms calling order {:08x}-ceea-467f-a0e6-1c2b3d4e5f60",
                        1000 + i,
                        i
                    ),
                ),
                5..=7 => (
                    DeadLetterKind::Permanent,
                    format!("HTTP 400: field 'f{i}' must be positive"),
                ),
                _ => (
                    DeadLetterKind::Contract,
                    format!(
                        "record {i} at 2025-11-13T09:15:{:02}Z does not match schema",
                        i % 60
                    ),
                ),
            };
            let mut letter = seawall_letter(&format!("key-{}", i % 50), i as i64, &error);
            letter.info.kind = kind;
            DlqRecord::parse(
                format!("orders.dlq/0/{i}"),
                letter.key().cloned(),
                letter.message.payload().clone(),
                letter.headers(),
            )
        })
        .collect()
}

#[test]
fn a_thousand_records_over_three_causes_make_three_groups() {
    let records = three_causes(1_000);
    let groups = group(&records);
    let summary: Vec<_> = groups
        .iter()
        .map(|g| (g.kind.as_str(), g.count, g.example_id.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("exhausted", 500, "orders.dlq/0/0"),
            ("permanent", 300, "orders.dlq/0/5"),
            ("contract", 200, "orders.dlq/0/8"),
        ]
    );
    assert_eq!(groups[0].first_seen, Some(at(1_763_000_000_000)));
    assert_eq!(groups[0].last_seen, Some(at(1_763_000_000_994)));

    // Selecting one group by its fingerprint gives exactly its members.
    let filter = DlqFilter {
        group: Some(groups[1].fingerprint.clone()),
        ..DlqFilter::default()
    };
    let selected = records.iter().filter(|r| filter.matches(r)).count();
    assert_eq!(selected, 300);
}

#[test]
fn a_replay_selection_goes_back_in_per_key_offset_order() {
    // The dead-letter topic holds the records out of offset order (two DLQ partitions
    // read one after the other, say).
    let mut records = three_causes(200);
    records.reverse();
    let order = replay_order(&records);
    for key in 0..50 {
        let key = format!("key-{key}");
        let offsets: Vec<i64> = order
            .iter()
            .map(|&i| &records[i])
            .filter(|r| r.key.as_deref() == Some(key.as_bytes()))
            .map(|r| r.failure.original_offset.unwrap())
            .collect();
        assert!(
            offsets.windows(2).all(|w| w[0] < w[1]),
            "{key}: {offsets:?}"
        );
        assert_eq!(offsets.len(), 4);
    }
}

#[test]
fn a_hundred_thousand_records_group_quickly() {
    let records = three_causes(100_000);
    let started = Instant::now();
    let groups = group(&records);
    let elapsed = started.elapsed();
    println!(
        "grouped {} records into {} groups in {elapsed:?} ({} build)",
        records.len(),
        groups.len(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    let counts: Vec<usize> = groups.iter().map(|g| g.count).collect();
    assert_eq!(counts, [50_000, 30_000, 20_000]);
}
