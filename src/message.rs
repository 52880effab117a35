//! The broker-agnostic message every handler sees.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

/// Ordered message headers. Names may repeat; values are raw bytes.
///
/// Cloning is cheap (the entries are shared until one side changes them), because the
/// pipeline hands the same headers to every attempt and to the dead-letter copy.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Arc<Vec<(String, Bytes)>>,
}

impl Headers {
    /// Empty headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a header, keeping any earlier one of the same name.
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<Bytes>) {
        Arc::make_mut(&mut self.entries).push((name.into(), value.into()));
    }

    /// The first value under `name`.
    pub fn get(&self, name: &str) -> Option<&Bytes> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The last value under `name` (the newest when a header was appended again).
    pub fn get_last(&self, name: &str) -> Option<&Bytes> {
        self.entries
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// Every value under `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Bytes> + 'a {
        self.entries
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// Removes every header whose name matches `predicate`.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &Bytes) -> bool) {
        if self.entries.iter().all(|(n, v)| keep(n, v)) {
            return;
        }
        Arc::make_mut(&mut self.entries).retain(|(n, v)| keep(n, v));
    }

    /// All headers in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Bytes)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v))
    }

    /// Number of headers, counting repeats.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no headers.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(n, v)| (n, v)))
            .finish()
    }
}

impl<N: Into<String>, V: Into<Bytes>> FromIterator<(N, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        let entries = iter
            .into_iter()
            .map(|(n, v)| (n.into(), v.into()))
            .collect();
        Self {
            entries: Arc::new(entries),
        }
    }
}

/// Where in its source a message sits.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Position {
    /// A log position (Kafka): partition and offset.
    Offset {
        /// Partition number.
        partition: i32,
        /// Offset within the partition.
        offset: i64,
    },
    /// A queue delivery (RabbitMQ): the delivery tag, valid only on its channel.
    DeliveryTag(u64),
    /// The source gives no position.
    Unknown,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Offset { partition, offset } => {
                write!(f, "partition {partition} offset {offset}")
            }
            Position::DeliveryTag(tag) => write!(f, "delivery-tag {tag}"),
            Position::Unknown => f.write_str("unknown position"),
        }
    }
}

/// Where a message came from: the source's name (topic or queue) and the position in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// Topic, queue or other source name.
    pub source: Arc<str>,
    /// Position within the source.
    pub position: Position,
}

impl Default for Origin {
    fn default() -> Self {
        Self {
            source: Arc::from(""),
            position: Position::Unknown,
        }
    }
}

/// What an adapter keeps of the broker's own view of a message (AMQP properties, say),
/// so a dead-letter sink or forwarder for the same broker can keep them. Opaque to
/// everything else.
pub type Native = Arc<dyn Any + Send + Sync>;

/// One message as the pipeline and handlers see it, whatever broker it came from.
#[derive(Clone, Default)]
pub struct Message {
    key: Option<Bytes>,
    payload: Bytes,
    headers: Headers,
    message_id: Option<Bytes>,
    origin: Origin,
    timestamp: Option<SystemTime>,
    attempt: u32,
    idempotency_key: Option<Bytes>,
    ordering_key: Option<Bytes>,
    native: Option<Native>,
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("key", &self.key)
            .field("payload", &self.payload)
            .field("headers", &self.headers)
            .field("message_id", &self.message_id)
            .field("origin", &self.origin)
            .field("timestamp", &self.timestamp)
            .field("attempt", &self.attempt)
            .field("idempotency_key", &self.idempotency_key)
            .field("ordering_key", &self.ordering_key)
            .finish_non_exhaustive()
    }
}

impl Message {
    /// A message with this payload and nothing else set.
    pub fn new(payload: impl Into<Bytes>) -> Self {
        Self {
            payload: payload.into(),
            ..Self::default()
        }
    }

    /// Sets the broker key (Kafka key; the adapter's choice for other brokers).
    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Replaces the payload, keeping everything else (key, headers, id, origin, attempt,
    /// idempotency key). For handler layers that pass on a re-encoded message.
    pub fn with_payload(mut self, payload: impl Into<Bytes>) -> Self {
        self.payload = payload.into();
        self
    }

    /// Appends a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push(name, value);
        self
    }

    /// Replaces all headers.
    pub fn with_headers(mut self, headers: Headers) -> Self {
        self.headers = headers;
        self
    }

    /// Sets the broker's message id (AMQP `message_id` property).
    pub fn with_message_id(mut self, id: impl Into<Bytes>) -> Self {
        self.message_id = Some(id.into());
        self
    }

    /// Sets the origin.
    pub fn with_origin(mut self, source: impl Into<Arc<str>>, position: Position) -> Self {
        self.origin = Origin {
            source: source.into(),
            position,
        };
        self
    }

    /// Sets the broker timestamp.
    pub fn with_timestamp(mut self, at: SystemTime) -> Self {
        self.timestamp = Some(at);
        self
    }

    /// Attaches the adapter's native view of the message.
    pub fn with_native(mut self, native: Native) -> Self {
        self.native = Some(native);
        self
    }

    /// The adapter's native view, if it is of type `T`.
    pub fn native<T: Any>(&self) -> Option<&T> {
        self.native.as_deref()?.downcast_ref()
    }

    /// The broker key, if any.
    pub fn key(&self) -> Option<&Bytes> {
        self.key.as_ref()
    }

    /// The payload, undecoded.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The headers.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The broker's message id, if any.
    pub fn message_id(&self) -> Option<&Bytes> {
        self.message_id.as_ref()
    }

    /// Where the message came from.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The broker timestamp, if any.
    pub fn timestamp(&self) -> Option<SystemTime> {
        self.timestamp
    }

    /// The attempt number of the current handler call, starting at 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The idempotency key the pipeline derived for this message (from the route's key
    /// rule), when idempotency is on and the message has one. Handlers pass it on to
    /// downstreams that deduplicate too (the HTTP handler sends it as `Idempotency-Key`).
    pub fn idempotency_key(&self) -> Option<&Bytes> {
        self.idempotency_key.as_ref()
    }

    pub(crate) fn set_idempotency_key(&mut self, key: Option<Bytes>) {
        self.idempotency_key = key;
    }

    /// The ordering key the pipeline derived for this message (from the route's key
    /// rule), when it has one. The Kafka `forward` handler uses it as the record key, so
    /// the target topic keeps the same per-key order.
    pub fn ordering_key(&self) -> Option<&Bytes> {
        self.ordering_key.as_ref()
    }

    pub(crate) fn set_ordering_key(&mut self, key: Option<Bytes>) {
        self.ordering_key = key;
    }

    pub(crate) fn set_attempt(&mut self, attempt: u32) {
        self.attempt = attempt;
    }
}
