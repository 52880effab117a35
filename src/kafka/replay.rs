//! [`KafkaReplayer`]: the Kafka side of `seawall dlq replay` — republishes dead letters to
//! their original topics with an idempotent producer, and watches the route's consumer
//! group and dead-letter topics for a canary's outcome.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError as ClientError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::config::KafkaConfig;
use super::convert::to_record_headers;
use super::dlq_reader::read_dead_letters;
use super::error::KafkaError;
use crate::dead_letter::header;
use crate::dlq::{BackendError, CanaryOutcome, Replay, ReplayBackend, Sent};

/// How long one metadata or offset request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Republishes replays to Kafka. Each message goes to its original partition when the
/// topic still has it (so a key stays where its later messages go, whichever partitioner
/// wrote them), else where the key hashes to. The producer is idempotent with
/// `acks=all`, so messages of one partition land in the order sent, once.
pub struct KafkaReplayer {
    config: KafkaConfig,
    producer: FutureProducer,
    /// Partition counts of the destinations seen so far.
    partitions: HashMap<String, i32>,
    /// The route's dead-letter topics, read for a canary's outcome.
    dead_letter_topics: BTreeSet<String>,
}

impl KafkaReplayer {
    /// A replayer for the route `config`, whose dead letters live in
    /// `dead_letter_topics`.
    pub fn new(
        config: &KafkaConfig,
        dead_letter_topics: BTreeSet<String>,
    ) -> Result<Self, KafkaError> {
        let producer = config
            .producer_config()
            // Large batches: a replay is a bulk send, confirmed batch by batch.
            .set("linger.ms", "20")
            .create()
            .map_err(|e| KafkaError::new("creating the replay producer", e))?;
        Ok(Self {
            config: config.clone(),
            producer,
            partitions: HashMap::new(),
            dead_letter_topics,
        })
    }

    /// The destination's partition count, looked up once (blocking metadata call).
    async fn partition_count(&mut self, topic: &str) -> Result<i32, KafkaError> {
        if let Some(&count) = self.partitions.get(topic) {
            return Ok(count);
        }
        let (producer, name) = (self.producer.clone(), topic.to_owned());
        let count = tokio::task::spawn_blocking(move || {
            let metadata = producer
                .client()
                .fetch_metadata(Some(&name), REQUEST_TIMEOUT)?;
            let found = metadata.topics().iter().find(|t| t.name() == name);
            match found {
                Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                    Ok(t.partitions().len() as i32)
                }
                _ => Err(ClientError::MetadataFetch(
                    RDKafkaErrorCode::UnknownTopicOrPartition,
                )),
            }
        })
        .await
        .unwrap_or(Err(ClientError::Canceled))
        .map_err(|e| KafkaError::new(format!("replay destination topic `{topic}`"), e))?;
        self.partitions.insert(topic.to_owned(), count);
        Ok(count)
    }

    /// Queues one record, waiting while librdkafka's local queue is full.
    async fn enqueue(
        &self,
        replay: &Replay,
        partition: Option<i32>,
    ) -> Result<DeliveryFuture, KafkaError> {
        let message = &replay.message;
        loop {
            let mut record = FutureRecord::to(&replay.destination)
                .payload(&message.payload()[..])
                .headers(to_record_headers(message.headers()));
            if let Some(key) = message.key() {
                record = record.key(&key[..]);
            }
            if let Some(partition) = partition {
                record = record.partition(partition);
            }
            match self.producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((ClientError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((err, _)) => {
                    let what = format!("replaying `{}` to `{}`", replay.id, replay.destination);
                    return Err(KafkaError::new(what, err));
                }
            }
        }
    }
}

impl ReplayBackend for KafkaReplayer {
    async fn send(&mut self, batch: &[Replay]) -> Result<Vec<Sent>, BackendError> {
        let mut deliveries = Vec::with_capacity(batch.len());
        for replay in batch {
            let count = self.partition_count(&replay.destination).await?;
            let partition = replay.partition.filter(|&p| (0..count).contains(&p));
            deliveries.push(self.enqueue(replay, partition).await?);
        }
        let mut sent = Vec::with_capacity(batch.len());
        for (replay, delivery) in batch.iter().zip(deliveries) {
            let what = || format!("replaying `{}` to `{}`", replay.id, replay.destination);
            let (partition, offset) = match delivery.await {
                Ok(Ok(delivered)) => (delivered.partition, delivered.offset),
                Ok(Err((err, _))) => return Err(KafkaError::new(what(), err).into()),
                Err(_) => return Err(KafkaError::new(what(), ClientError::Canceled).into()),
            };
            sent.push(Sent {
                id: replay.id.clone(),
                destination: replay.destination.clone(),
                position: Some((partition, offset)),
            });
        }
        Ok(sent)
    }

    async fn replayed(&mut self, _ids: &[String]) -> Result<(), BackendError> {
        // A dead-letter topic is a log: records stay, the ledger remembers them.
        Ok(())
    }

    async fn outcome(
        &mut self,
        sent: &[Sent],
        wait: Duration,
    ) -> Result<CanaryOutcome, BackendError> {
        let deadline = Instant::now() + wait;
        let config = self.config.clone();
        let positions: Vec<(String, i32, i64)> = sent
            .iter()
            .filter_map(|s| s.position.map(|(p, o)| (s.destination.clone(), p, o)))
            .collect();
        // The route commits an offset only once everything before it is finished —
        // processed or dead-lettered — so a commit past a canary means its outcome is
        // final and its dead letter, if any, is written.
        let pending =
            tokio::task::spawn_blocking(move || wait_for_commits(&config, &positions, deadline))
                .await
                .unwrap_or_else(|e| {
                    Err(KafkaError::new(
                        format!("watching the canary: {e}"),
                        ClientError::Canceled,
                    ))
                })?;
        let ids: HashSet<&str> = sent.iter().map(|s| s.id.as_str()).collect();
        let mut failed = Vec::new();
        for topic in &self.dead_letter_topics {
            let records = read_dead_letters(&self.config, topic, wait.max(REQUEST_TIMEOUT))?;
            for record in records {
                let replay_of = record.headers.get_last(header::REPLAY_OF);
                if let Some(of) = replay_of.and_then(|v| std::str::from_utf8(v).ok()) {
                    if ids.contains(of) {
                        failed.push(of.to_owned());
                    }
                }
            }
        }
        if !failed.is_empty() {
            return Ok(CanaryOutcome::FailedAgain(failed));
        }
        if !pending.is_empty() {
            let unsettled = sent
                .iter()
                .filter(|s| {
                    s.position
                        .is_some_and(|(p, o)| pending.contains(&(s.destination.clone(), p, o)))
                })
                .map(|s| s.id.clone())
                .collect();
            return Ok(CanaryOutcome::Unsettled(unsettled));
        }
        Ok(CanaryOutcome::Passed)
    }
}

/// Polls the route's committed offsets until each position is below its partition's
/// commit, or the deadline; returns the positions still uncommitted. Only reads the
/// group's offsets (OffsetFetch): it never joins the group or commits.
fn wait_for_commits(
    config: &KafkaConfig,
    positions: &[(String, i32, i64)],
    deadline: Instant,
) -> Result<Vec<(String, i32, i64)>, KafkaError> {
    let consumer: BaseConsumer = config
        .consumer_config()
        .create()
        .map_err(|e| KafkaError::new("creating the offset reader", e))?;
    let mut list = TopicPartitionList::new();
    for (topic, partition, _) in positions {
        if list.find_partition(topic, *partition).is_none() {
            list.add_partition(topic, *partition);
        }
    }
    loop {
        let committed = consumer
            .committed_offsets(list.clone(), REQUEST_TIMEOUT)
            .map_err(|e| {
                KafkaError::new(format!("reading group `{}`'s offsets", config.group), e)
            })?;
        let pending: Vec<(String, i32, i64)> = positions
            .iter()
            .filter(|(topic, partition, offset)| {
                let next = committed
                    .find_partition(topic, *partition)
                    .map(|e| e.offset());
                !matches!(next, Some(Offset::Offset(next)) if next > *offset)
            })
            .cloned()
            .collect();
        if pending.is_empty() || Instant::now() >= deadline {
            return Ok(pending);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
