//! An in-memory source and dead-letter sink, so applications can test their handlers
//! against the full pipeline without a broker.
//!
//! The source behaves like one partitioned topic: keyed messages go to a partition by key
//! hash, every message gets an increasing offset, and a [`MemoryLedger`] records what the
//! pipeline completed and abandoned, with commit points from a [`CompletionTracker`].

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;

use crate::dead_letter::{DeadLetter, DeadLetterSink, SinkError};
use crate::message::{Message, Position};
use crate::source::{Ack, Delivery, Settle, Source, SourceError};
use crate::tracker::{CompletionTracker, PartitionId};

/// The source was dropped; nothing more can be published.
#[derive(Debug, thiserror::Error)]
#[error("memory source `{0}` is gone")]
pub struct SourceGone(Arc<str>);

/// Publishes into a [`MemorySource`]. Clone freely; the source ends once every publisher
/// is dropped and the queue is drained.
#[derive(Clone)]
pub struct MemoryPublisher {
    name: Arc<str>,
    tx: mpsc::Sender<Message>,
}

impl MemoryPublisher {
    /// Publishes one message, waiting while the source's queue is full.
    pub async fn publish(&self, message: Message) -> Result<(), SourceGone> {
        self.tx
            .send(message)
            .await
            .map_err(|_| SourceGone(Arc::clone(&self.name)))
    }
}

#[derive(Default)]
struct LedgerState {
    tracker: CompletionTracker,
    completed: Vec<Position>,
    abandoned: Vec<Message>,
}

/// What the pipeline did with a memory source's deliveries.
#[derive(Clone, Default)]
pub struct MemoryLedger {
    state: Arc<Mutex<LedgerState>>,
}

impl MemoryLedger {
    fn lock(&self) -> MutexGuard<'_, LedgerState> {
        // Each update is a single push or tracker call; a poisoned lock is still whole.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Positions of completed deliveries, in completion order.
    pub fn completed(&self) -> Vec<Position> {
        self.lock().completed.clone()
    }

    /// How many deliveries were completed.
    pub fn completed_count(&self) -> usize {
        self.lock().completed.len()
    }

    /// Messages abandoned unfinished (they would be redelivered by a broker).
    pub fn abandoned(&self) -> Vec<Message> {
        self.lock().abandoned.clone()
    }

    /// Per partition, the offset a Kafka consumer would commit.
    pub fn commit_points(&self) -> Vec<(PartitionId, i64)> {
        self.lock().tracker.commit_points()
    }
}

struct MemorySettle {
    ledger: MemoryLedger,
    partition: PartitionId,
    offset: i64,
    message: Message,
}

impl Settle for MemorySettle {
    fn complete(self: Box<Self>) {
        let mut state = self.ledger.lock();
        state.tracker.complete(&self.partition, self.offset);
        state.completed.push(self.message.origin().position.clone());
    }

    fn abandon(self: Box<Self>) {
        self.ledger.lock().abandoned.push(self.message);
    }
}

/// A source fed by [`MemoryPublisher`]s.
pub struct MemorySource {
    name: Arc<str>,
    rx: mpsc::Receiver<Message>,
    next_offsets: Vec<i64>,
    round_robin: usize,
    ledger: MemoryLedger,
}

impl MemorySource {
    /// A source named `name` with `partitions` partitions (at least 1) and a queue of
    /// `capacity` messages (at least 1), and its publisher.
    pub fn new(name: &str, partitions: usize, capacity: usize) -> (MemoryPublisher, MemorySource) {
        let name: Arc<str> = Arc::from(name);
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let publisher = MemoryPublisher {
            name: Arc::clone(&name),
            tx,
        };
        let source = MemorySource {
            name,
            rx,
            next_offsets: vec![0; partitions.max(1)],
            round_robin: 0,
            ledger: MemoryLedger::default(),
        };
        (publisher, source)
    }

    /// The ledger of completions and abandonments.
    pub fn ledger(&self) -> MemoryLedger {
        self.ledger.clone()
    }

    fn partition_for(&mut self, message: &Message) -> usize {
        let count = self.next_offsets.len();
        match message.key() {
            Some(key) => {
                let mut hasher = DefaultHasher::new();
                key.hash(&mut hasher);
                (hasher.finish() % count as u64) as usize
            }
            None => {
                self.round_robin = (self.round_robin + 1) % count;
                self.round_robin
            }
        }
    }

    fn deliver(&mut self, message: Message) -> Delivery {
        let partition = self.partition_for(&message);
        let offset = self.next_offsets[partition];
        self.next_offsets[partition] += 1;
        let partition_id = PartitionId::new(Arc::clone(&self.name), partition as i32);
        // Offsets are assigned here, increasing per partition, so tracking cannot fail.
        let _ = self.ledger.lock().tracker.track(&partition_id, offset);
        let message = message.with_origin(
            Arc::clone(&self.name),
            Position::Offset {
                partition: partition as i32,
                offset,
            },
        );
        let ack = Ack::new(MemorySettle {
            ledger: self.ledger.clone(),
            partition: partition_id,
            offset,
            message: message.clone(),
        });
        Delivery::new(message, ack)
    }
}

impl Source for MemorySource {
    async fn next(&mut self) -> Option<Result<Delivery, SourceError>> {
        let message = self.rx.recv().await?;
        Some(Ok(self.deliver(message)))
    }
}

#[derive(Default)]
struct SinkState {
    letters: Vec<DeadLetter>,
    fail_next: u32,
    max_payload_bytes: Option<usize>,
}

/// A dead-letter sink that keeps letters in memory.
#[derive(Clone, Default)]
pub struct MemoryDeadLetters {
    state: Arc<Mutex<SinkState>>,
}

impl MemoryDeadLetters {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, SinkState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every letter written, in order.
    pub fn letters(&self) -> Vec<DeadLetter> {
        self.lock().letters.clone()
    }

    /// How many letters were written.
    pub fn len(&self) -> usize {
        self.lock().letters.len()
    }

    /// True when nothing was dead-lettered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes the next `count` writes fail, as an unreachable dead-letter topic would.
    pub fn fail_next(&self, count: u32) {
        self.lock().fail_next = count;
    }

    /// Refuses letters whose payload is over `bytes` as too large, as a dead-letter topic
    /// with a smaller size limit than the source's would.
    pub fn refuse_payloads_over(&self, bytes: usize) {
        self.lock().max_payload_bytes = Some(bytes);
    }
}

impl DeadLetterSink for MemoryDeadLetters {
    async fn send(&self, letter: &DeadLetter) -> Result<(), SinkError> {
        let mut state = self.lock();
        if state.fail_next > 0 {
            state.fail_next -= 1;
            return Err(SinkError::new("memory dead-letter sink set to fail"));
        }
        let size = letter.message.payload().len();
        if state.max_payload_bytes.is_some_and(|max| size > max) {
            return Err(SinkError::too_large(format!(
                "a {size}-byte payload is over the memory dead-letter sink's limit"
            )));
        }
        state.letters.push(letter.clone());
        Ok(())
    }
}
