//! [`read_dead_letters`]: every record of a dead-letter topic as [`DlqRecord`]s, read
//! outside any consumer group, for the `seawall dlq` commands.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError as ClientError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers as _, Message as _};
use rdkafka::{Offset, TopicPartitionList};

use super::config::KafkaConfig;
use super::error::KafkaError;
use crate::dlq::DlqRecord;
use crate::message::Headers;

/// How long the topic must stay quiet, once the end offsets fetched at the start are
/// reached, before the read counts as complete. Some Kafka-API brokers (tansu 0.6) report
/// high watermarks that lag what they have stored, so the watermark alone could stop the
/// read short.
const QUIET: Duration = Duration::from_secs(1);

/// One poll's wait: short, so the quiet period and the deadline are checked often.
const POLL: Duration = Duration::from_millis(100);

/// Reads every record of the dead-letter topic `topic`, from the beginning of each
/// partition up to its end, as [`DlqRecord`]s in partition, then offset order.
///
/// The reader assigns the partitions itself (no `subscribe`), so it never joins a consumer
/// group, and it never commits or stores an offset: it can run next to the worker and
/// leaves no group or offset on the broker. (librdkafka refuses `assign` without a
/// `group.id`, so it carries a throwaway one that is never joined or committed to; the
/// route's group is not used.)
///
/// It reads until every partition has reached the end offset fetched at the start (or
/// librdkafka reports its end, which covers trailing transaction markers) *and* no record
/// has arrived for about a second; the end offsets are then fetched again, and a
/// partition that grew is read on. It fails when `timeout` passes before the ends are
/// reached (a partial list would mislead). Records that arrive after the ends are
/// reached, while the read waits for quiet, are included.
///
/// A record's id is `<topic>/<partition>/<offset>`; the broker timestamp fills
/// [`DlqFailure::failed_at`](crate::dlq::DlqFailure::failed_at) when the headers carry no
/// failure time ([`DlqRecord::with_broker_timestamp`]). Blocking: call it from a blocking
/// thread in async code.
pub fn read_dead_letters(
    config: &KafkaConfig,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<DlqRecord>, KafkaError> {
    let context = || format!("reading dead-letter topic `{topic}`");
    let deadline = Instant::now() + timeout;
    let consumer: BaseConsumer = config
        .reader_config()
        .set("group.id", throwaway_group())
        .create()
        .map_err(|e| KafkaError::new("creating the dead-letter reader", e))?;
    let partitions =
        partitions(&consumer, topic, timeout).map_err(|e| KafkaError::new(context(), e))?;
    let mut ends = BTreeMap::new();
    let mut list = TopicPartitionList::new();
    for &partition in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, remaining(deadline))
            .map_err(|e| KafkaError::new(context(), e))?;
        ends.insert(
            partition,
            End {
                next: low,
                high,
                eof: false,
            },
        );
        list.add_partition_offset(topic, partition, Offset::Beginning)
            .map_err(|e| KafkaError::new(context(), e))?;
    }
    consumer
        .assign(&list)
        .map_err(|e| KafkaError::new(context(), e))?;
    let mut reading = Reading {
        consumer: &consumer,
        topic,
        ends,
        records: Vec::new(),
        last_error: None,
    };
    reading
        .run(deadline)
        .map_err(|e| KafkaError::new(context(), e))?;
    let mut records = reading.records;
    // Partitions interleave in arrival order; give callers a deterministic one.
    records.sort_by_key(|(partition, offset, _)| (*partition, *offset));
    Ok(records.into_iter().map(|(_, _, record)| record).collect())
}

/// Where a partition's read stands.
struct End {
    /// The offset after the last record read (the low watermark before any).
    next: i64,
    /// The end offset to reach: the high watermark.
    high: i64,
    /// librdkafka reported the end of the partition since the last record. This also ends
    /// a partition whose last offsets are transaction markers, which are never delivered,
    /// so `next` stays short of `high` there.
    eof: bool,
}

impl End {
    fn reached(&self) -> bool {
        self.next >= self.high || self.eof
    }
}

struct Reading<'a> {
    consumer: &'a BaseConsumer,
    topic: &'a str,
    ends: BTreeMap<i32, End>,
    records: Vec<(i32, i64, DlqRecord)>,
    last_error: Option<ClientError>,
}

impl Reading<'_> {
    fn run(&mut self, deadline: Instant) -> Result<(), ClientError> {
        let mut last_record = Instant::now();
        loop {
            match self.consumer.poll(POLL) {
                Some(Ok(message)) => {
                    self.take(&message);
                    last_record = Instant::now();
                }
                Some(Err(ClientError::PartitionEOF(partition))) => {
                    if let Some(end) = self.ends.get_mut(&partition) {
                        end.eof = true;
                    }
                }
                // Transient (a broker restarting): librdkafka retries by itself.
                Some(Err(err)) => self.last_error = Some(err),
                None => {}
            }
            let reached = self.reached();
            if reached && last_record.elapsed() >= QUIET && !self.grown(deadline) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                if reached {
                    return Ok(());
                }
                return Err(self.timed_out());
            }
        }
    }

    fn take(&mut self, message: &BorrowedMessage<'_>) {
        let (partition, offset) = (message.partition(), message.offset());
        if let Some(end) = self.ends.get_mut(&partition) {
            end.next = end.next.max(offset + 1);
            // More records than the last end-of-partition knew of: wait for the next one.
            end.eof = false;
        }
        let id = format!("{}/{partition}/{offset}", self.topic);
        self.records
            .push((partition, offset, to_record(id, message)));
    }

    fn reached(&self) -> bool {
        self.ends.values().all(End::reached)
    }

    /// Whether a partition's high watermark has grown since it was last fetched, fetched
    /// anew before the read ends (the one fetched at the start may have lagged). A grown
    /// partition is read on to its new end.
    fn grown(&mut self, deadline: Instant) -> bool {
        let mut grown = false;
        for (&partition, end) in self.ends.iter_mut() {
            if let Ok((_, high)) =
                self.consumer
                    .fetch_watermarks(self.topic, partition, remaining(deadline))
            {
                if high > end.high {
                    end.high = high;
                    end.eof = false;
                    grown = true;
                }
            }
        }
        grown
    }

    fn timed_out(&mut self) -> ClientError {
        let short: Vec<String> = self
            .ends
            .iter()
            .filter(|(_, end)| !end.reached())
            .map(|(p, end)| format!("partition {p} at {} of {}", end.next, end.high))
            .collect();
        tracing::warn!(topic = self.topic, behind = ?short, last_error = ?self.last_error, "dead-letter read timed out");
        self.last_error
            .take()
            .unwrap_or(ClientError::Global(RDKafkaErrorCode::OperationTimedOut))
    }
}

/// The topic's partitions; an error when the topic does not exist.
fn partitions(
    consumer: &BaseConsumer,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<i32>, ClientError> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let missing = ClientError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition);
    let found = metadata.topics().iter().find(|t| t.name() == topic);
    let Some(found) = found else {
        return Err(missing);
    };
    if let Some(code) = found.error() {
        return Err(ClientError::MetadataFetch(code.into()));
    }
    let partitions: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
    if partitions.is_empty() {
        return Err(missing);
    }
    Ok(partitions)
}

/// A `group.id` no group uses: `seawall-dlq-reader-<pid>-<nanos>`.
fn throwaway_group() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("seawall-dlq-reader-{}-{nanos}", std::process::id())
}

fn remaining(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(100))
}

/// A Kafka record as a dead letter: key, payload and headers as they are (a header
/// without a value reads as empty).
fn to_record(id: String, message: &BorrowedMessage<'_>) -> DlqRecord {
    let mut headers = Headers::new();
    if let Some(list) = message.headers() {
        for header in list.iter() {
            headers.push(
                header.key,
                Bytes::copy_from_slice(header.value.unwrap_or_default()),
            );
        }
    }
    let key = message.key().map(Bytes::copy_from_slice);
    let payload = Bytes::copy_from_slice(message.payload().unwrap_or_default());
    let record = DlqRecord::parse(id, key, payload, headers);
    let millis = message
        .timestamp()
        .to_millis()
        .and_then(|ms| u64::try_from(ms).ok());
    match millis {
        Some(ms) => record.with_broker_timestamp(UNIX_EPOCH + Duration::from_millis(ms)),
        None => record,
    }
}
