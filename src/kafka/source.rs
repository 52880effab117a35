//! The consumer-group source.
//!
//! A poll thread owns the rdkafka consumer and keeps polling whatever the pipeline does,
//! so the consumer never falls out of its group: when the pipeline stops pulling (full,
//! breaker open, store failing), the thread pauses its partitions instead of waiting.
//! Offsets are committed only from the completion tracker — periodically, on revoke and
//! on close — and never for a partition this consumer no longer owns.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::config::KafkaConfig;
use super::context::{commit, SeawallContext};
use super::convert::to_message;
use super::error::KafkaError;
pub use super::lag::{Lag, Reachable};
use super::partitions::{PartitionIds, Partitions};
use crate::message::Message;
use crate::source::{Ack, Delivery, Intake, Source, SourceError};
use crate::tracker::PartitionId;

const CHANNEL: usize = 1024;
const POLL: Duration = Duration::from_millis(50);
const LAG_EVERY: Duration = Duration::from_secs(5);
const FULL_GRACE: Duration = Duration::from_millis(200);
/// How often a consumer that lost its cluster checks whether it is back, and how long
/// one check may block the poll thread.
const PROBE_EVERY: Duration = Duration::from_secs(1);
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Longest wait at shutdown for the revoke that unsubscribing causes.
const UNSUBSCRIBE_GRACE: Duration = Duration::from_secs(15);

struct Control {
    stop: AtomicBool,
    final_commit: AtomicBool,
    intake_open: AtomicBool,
}

/// Consumes Kafka topics in a consumer group. Build with [`KafkaSource::connect`].
pub struct KafkaSource {
    deliveries: mpsc::Receiver<Delivery>,
    control: Arc<Control>,
    thread: Option<JoinHandle<()>>,
    lag: Lag,
    connected: Arc<AtomicBool>,
}

impl KafkaSource {
    /// Creates the consumer and subscribes. Fails on a bad property or subscription.
    pub fn connect(config: KafkaConfig) -> Result<Self, crate::Error> {
        config.validate()?;
        let partitions = Arc::new(Partitions::default());
        let reassigned = Arc::new(AtomicBool::new(false));
        let connected = Arc::new(AtomicBool::new(true));
        let context = SeawallContext {
            partitions: Arc::clone(&partitions),
            revoke_timeout: config.revoke_timeout,
            reassigned: Arc::clone(&reassigned),
            connected: Arc::clone(&connected),
        };
        let consumer: BaseConsumer<SeawallContext> = config
            .consumer_config()
            .create_with_context(context)
            .map_err(|e| KafkaError::new("creating the Kafka consumer", e))?;
        let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| KafkaError::new(format!("subscribing to {topics:?}"), e))?;
        let (tx, deliveries) = mpsc::channel(CHANNEL);
        let control = Arc::new(Control {
            stop: AtomicBool::new(false),
            final_commit: AtomicBool::new(true),
            intake_open: AtomicBool::new(true),
        });
        let lag = Lag::default();
        let poller = Poller {
            consumer,
            partitions,
            reassigned,
            tx,
            control: Arc::clone(&control),
            lag: lag.clone(),
            connected: Arc::clone(&connected),
            commit_interval: config.commit_interval,
            has_patterns: config.topics.iter().any(|t| t.starts_with('^')),
            config,
            left_alone: HashSet::new(),
            pending: VecDeque::new(),
            paused: false,
            ids: PartitionIds::default(),
        };
        let thread = std::thread::Builder::new()
            .name("seawall-kafka-poll".into())
            .spawn(move || poller.run())
            .map_err(|e| {
                KafkaError::new(
                    "starting the poll thread",
                    rdkafka::error::KafkaError::ClientCreation(e.to_string()),
                )
            })?;
        Ok(Self {
            deliveries,
            control,
            thread: Some(thread),
            lag,
            connected,
        })
    }

    /// Consumer lag per owned partition.
    pub fn lag(&self) -> Lag {
        self.lag.clone()
    }

    /// Whether the cluster answers now.
    pub fn reachable(&self) -> Reachable {
        Reachable(Arc::clone(&self.connected))
    }
}

impl Source for KafkaSource {
    async fn next(&mut self) -> Option<Result<Delivery, SourceError>> {
        self.deliveries.recv().await.map(Ok)
    }

    fn set_intake(&mut self, intake: Intake) {
        self.control
            .intake_open
            .store(intake == Intake::Open, Ordering::SeqCst);
    }

    async fn close(&mut self) {
        self.control.stop.store(true, Ordering::SeqCst);
        // Deliveries never pulled abandon as they drop.
        self.deliveries.close();
        while self.deliveries.try_recv().is_ok() {}
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl Drop for KafkaSource {
    /// Dropped without [`Source::close`]: stop at once, committing nothing more (what a
    /// crash would leave behind, less the periodic commits already made).
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.control.final_commit.store(false, Ordering::SeqCst);
            self.control.stop.store(true, Ordering::SeqCst);
        }
    }
}

/// A fetched message waiting for room in the pipeline's queue.
struct Fetched {
    message: Message,
    partition: PartitionId,
    offset: i64,
    epoch: u64,
}

struct Poller {
    consumer: BaseConsumer<SeawallContext>,
    partitions: Arc<Partitions>,
    reassigned: Arc<AtomicBool>,
    tx: mpsc::Sender<Delivery>,
    control: Arc<Control>,
    lag: Lag,
    connected: Arc<AtomicBool>,
    commit_interval: Duration,
    config: KafkaConfig,
    /// Whether a topic is a pattern: only then can our own dead-letter topics be
    /// assigned, so only then is each record's topic checked.
    has_patterns: bool,
    left_alone: HashSet<String>,
    pending: VecDeque<Fetched>,
    paused: bool,
    ids: PartitionIds,
}

impl Poller {
    fn run(mut self) {
        let (mut last_commit, mut last_lag) = (Instant::now(), Instant::now());
        let mut last_probe = Instant::now();
        while !self.control.stop.load(Ordering::SeqCst) {
            if !self.hand_over() {
                break;
            }
            // Only after handing over: a queue that is still not empty means the
            // pipeline is full, and that pauses fetching.
            self.apply_pause();
            match self.consumer.poll(POLL) {
                Some(Ok(record))
                    if self.has_patterns
                        && self.config.is_own_dead_letter_topic(record.topic()) =>
                {
                    leave_alone(&mut self.left_alone, record.topic());
                }
                Some(Ok(record)) => {
                    if let Some(fetched) = fetch(&self.partitions, &mut self.ids, &record) {
                        self.pending.push_back(fetched);
                    }
                }
                Some(Err(err)) => tracing::warn!(error = %err, "Kafka poll error"),
                None => {}
            }
            if last_commit.elapsed() >= self.commit_interval {
                commit(&self.consumer, &self.partitions, None, CommitMode::Sync);
                last_commit = Instant::now();
            }
            if last_lag.elapsed() >= LAG_EVERY {
                self.measure_lag();
                last_lag = Instant::now();
            }
            if last_probe.elapsed() >= PROBE_EVERY {
                self.probe_cluster();
                last_probe = Instant::now();
            }
        }
        if self.control.final_commit.load(Ordering::SeqCst) {
            commit(&self.consumer, &self.partitions, None, CommitMode::Sync);
        }
        self.consumer.unsubscribe();
        self.settle_unsubscribe();
    }

    /// Polls until the revoke that unsubscribing causes has run. Left to the consumer's
    /// drop, that revoke runs inside librdkafka's close, where the rebalance-protocol
    /// query of rdkafka's rebalance callback can wait forever (seen with the mock
    /// cluster: the drop never returned).
    fn settle_unsubscribe(&mut self) {
        let deadline = Instant::now() + UNSUBSCRIBE_GRACE;
        while Instant::now() < deadline {
            let assigned = self.consumer.assignment().map_or(0, |list| list.count());
            if assigned == 0 {
                return;
            }
            // Records still buffered are dropped: they were never handed over, so
            // nothing past them is committed and the next owner reads them.
            let _ = self.consumer.poll(POLL);
        }
        tracing::warn!("partitions still assigned after unsubscribing; closing anyway");
    }

    /// Pauses every assigned partition while the pipeline does not take more — it said
    /// so, or the hand-over queue stayed full for `FULL_GRACE` — and resumes them when it
    /// does. A queue that is full for a moment is waited out instead: pausing makes the
    /// client drop what it prefetched and fetch it again.
    fn apply_pause(&mut self) {
        if !self.pending.is_empty() && self.control.intake_open.load(Ordering::SeqCst) {
            let waited = Instant::now();
            while !self.pending.is_empty() && waited.elapsed() < FULL_GRACE {
                std::thread::sleep(Duration::from_millis(1));
                if !self.hand_over() {
                    return;
                }
            }
        }
        let want = !self.control.intake_open.load(Ordering::SeqCst) || !self.pending.is_empty();
        let reassigned = self.reassigned.swap(false, Ordering::SeqCst);
        if want == self.paused && !reassigned {
            return;
        }
        let Ok(assignment) = self.consumer.assignment() else {
            return;
        };
        let result = if want {
            self.consumer.pause(&assignment)
        } else {
            self.consumer.resume(&assignment)
        };
        match result {
            Ok(()) => self.paused = want,
            Err(err) => tracing::warn!(error = %err, "pausing or resuming partitions failed"),
        }
    }

    /// Hands fetched messages to the pipeline while it has room. Returns false when the
    /// pipeline is gone.
    fn hand_over(&mut self) -> bool {
        while let Some(fetched) = self.pending.pop_front() {
            let permit = match self.tx.try_reserve() {
                Ok(permit) => permit,
                Err(mpsc::error::TrySendError::Full(())) => {
                    self.pending.push_front(fetched);
                    return true;
                }
                Err(mpsc::error::TrySendError::Closed(())) => return false,
            };
            let Fetched {
                message,
                partition,
                offset,
                epoch,
            } = fetched;
            let ack = self.partitions.ack(partition, offset, epoch);
            permit.send(Delivery::new(message, Ack::new(ack)));
        }
        true
    }

    /// After "all brokers down", asks for metadata until the cluster answers again.
    fn probe_cluster(&self) {
        if self.connected.load(Ordering::SeqCst) {
            return;
        }
        if self.consumer.fetch_metadata(None, PROBE_TIMEOUT).is_ok() {
            tracing::info!("Kafka cluster reachable again");
            self.connected.store(true, Ordering::SeqCst);
        }
    }

    /// Lag of every owned partition: the high watermark less the commit point; for a
    /// partition nothing was tracked on yet, less the fetch position, or the committed
    /// offset before the first fetch.
    fn measure_lag(&self) {
        let positions = self.consumer.position().ok();
        let mut lag = Vec::new();
        for (partition, point) in self.partitions.commit_points() {
            let Ok((low, high)) = self.consumer.fetch_watermarks(
                &partition.topic,
                partition.partition,
                Duration::from_secs(1),
            ) else {
                continue;
            };
            let from = point
                .or_else(|| offset_in(positions.as_ref(), &partition))
                .or_else(|| self.committed(&partition))
                .unwrap_or(low);
            lag.push((partition, (high - from).max(0)));
        }
        if let Ok(mut shared) = self.lag.0.lock() {
            *shared = lag;
        }
    }

    /// The group's committed offset for `partition` (a broker round trip).
    fn committed(&self, partition: &PartitionId) -> Option<i64> {
        let mut list = TopicPartitionList::new();
        list.add_partition(&partition.topic, partition.partition);
        let committed = self
            .consumer
            .committed_offsets(list, Duration::from_secs(1))
            .ok()?;
        offset_in(Some(&committed), partition)
    }
}

/// The offset `list` holds for `partition`, if it is a real offset.
fn offset_in(list: Option<&TopicPartitionList>, partition: &PartitionId) -> Option<i64> {
    match list?
        .find_partition(&partition.topic, partition.partition)?
        .offset()
    {
        Offset::Offset(offset) => Some(offset),
        _ => None,
    }
}

/// Notes, once per topic, that a pattern matched one of our own dead-letter topics.
fn leave_alone(left_alone: &mut HashSet<String>, topic: &str) {
    if left_alone.insert(topic.to_owned()) {
        tracing::info!(
            topic,
            "the subscription pattern matches this dead-letter topic: its records are left alone"
        );
    }
}

/// Tracks a fetched record; `None` if its partition is not (or no longer) ours.
fn fetch(
    partitions: &Partitions,
    ids: &mut PartitionIds,
    record: &BorrowedMessage<'_>,
) -> Option<Fetched> {
    let partition = ids.get(record.topic(), record.partition());
    let offset = record.offset();
    let epoch = partitions.track(&partition, offset)?;
    Some(Fetched {
        message: to_message(record, Arc::clone(&partition.topic)),
        partition,
        offset,
        epoch,
    })
}
