//! Reads a run's Kafka topic back after the `broker-restart` scenario: what the broker
//! holds, so duplicates *in the log* (a producer retry across the restart that the
//! broker did not deduplicate) can be told apart from duplicate *effects*.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::workload::Msg;

/// What the topic holds.
#[derive(Debug, Default)]
pub struct LogCount {
    /// Records in the topic.
    pub records: usize,
    /// Records beyond the copies the workload produced of each idempotency key.
    pub extra_copies: usize,
    /// First copies of a message whose seq is below one already in its key's log: an
    /// order the producer or broker broke, which no consumer could restore.
    pub out_of_order: usize,
}

/// Reads `partitions` partitions of `topic` up to their high watermarks.
pub async fn count(
    brokers: &str,
    topic: &str,
    partitions: i32,
    msgs: &[Msg],
) -> anyhow::Result<LogCount> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    let ids = tokio::task::spawn_blocking(move || read_ids(&brokers, &topic, partitions)).await??;
    let mut produced: HashMap<&str, (usize, &Msg)> = HashMap::new();
    for m in msgs {
        produced.entry(m.id.as_str()).or_insert((0, m)).0 += 1;
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut last_seq: HashMap<&str, u64> = HashMap::new();
    let mut out = LogCount {
        records: ids.len(),
        ..LogCount::default()
    };
    for id in &ids {
        let Some((copies, m)) = produced.get(id.as_str()) else {
            bail!("the topic holds a record `{id}` that was never produced");
        };
        let n = seen.entry(m.id.as_str()).or_default();
        *n += 1;
        if *n > *copies {
            out.extra_copies += 1;
        }
        if *n > 1 {
            continue;
        }
        let last = last_seq.entry(m.key.as_str()).or_default();
        if m.seq < *last {
            out.out_of_order += 1;
        }
        *last = (*last).max(m.seq);
    }
    Ok(out)
}

/// The `idempotency-key` header of every record, partition by partition, in log order.
fn read_ids(brokers: &str, topic: &str, partitions: i32) -> anyhow::Result<Vec<String>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .context("Kafka reader")?;
    let mut ids = Vec::new();
    for partition in 0..partitions {
        let (_, high) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))?;
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(topic, partition, Offset::Beginning)?;
        consumer.assign(&list)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut next = 0;
        while next < high {
            if Instant::now() > deadline {
                bail!("reading {topic}/{partition}: at {next} of {high} after 30s");
            }
            let Some(read) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let m = read?;
            next = m.offset() + 1;
            let id = m
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == "idempotency-key"))
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            ids.push(id);
        }
    }
    Ok(ids)
}
