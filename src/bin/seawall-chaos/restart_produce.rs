//! The `broker-restart` producers: paced, so the restarts fall while producing, and
//! riding out a restart themselves. A message counts as produced once the broker
//! confirmed it; what was sent but not confirmed when the connection went is sent again
//! (in order), so a restart never loses a message on the producer's side. A copy sent
//! again that the broker had kept is a duplicate in the log, with the same idempotency
//! key: the worker's deduplication must absorb it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties};
use rdkafka::producer::FutureProducer;
use rdkafka::ClientConfig;

use crate::workload::Msg;

/// Messages awaited at a time: a small window keeps what a restart can catch small.
const WINDOW: usize = 50;
/// Give up when no message was confirmed for this long.
const STALL_LIMIT: Duration = Duration::from_secs(120);

/// What the producer did; `confirmed` is read while it runs.
#[derive(Debug, Default)]
pub struct Produced {
    /// Messages (duplicate copies included) the broker confirmed.
    pub confirmed: AtomicUsize,
    /// Messages sent again because their confirmation was lost.
    pub resent: AtomicUsize,
    /// Sessions that failed (lost connection, failed delivery) and were started again.
    pub reconnects: AtomicUsize,
}

/// At most `rate` messages per second (0: no limit), never catching up after a stall:
/// production goes on at that rate after a restart, so the next restart still falls
/// while producing.
#[derive(Debug)]
pub struct Pace {
    rate: f64,
    next: std::sync::Mutex<Instant>,
}

impl Pace {
    /// Starting now.
    pub fn new(rate: f64) -> Self {
        Self {
            rate,
            next: std::sync::Mutex::new(Instant::now()),
        }
    }

    async fn wait(&self) {
        if self.rate <= 0.0 {
            return;
        }
        let at = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let at = (*next).max(Instant::now());
            *next = at + Duration::from_secs_f64(1.0 / self.rate);
            at
        };
        tokio::time::sleep_until(at.into()).await;
    }
}

/// Runs `session` from the first unconfirmed message until all are confirmed, starting
/// it again after each failure; fails after `STALL_LIMIT` without progress.
async fn until_confirmed<F, Fut>(
    total: usize,
    stats: &Produced,
    mut session: F,
) -> anyhow::Result<()>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = (usize, anyhow::Result<()>)>,
{
    let mut from = 0;
    let mut progress_at = Instant::now();
    while from < total {
        let (confirmed_to, result) = session(from).await;
        if confirmed_to > from {
            progress_at = Instant::now();
        }
        from = confirmed_to;
        stats.confirmed.store(from, Ordering::SeqCst);
        if let Err(e) = result {
            if progress_at.elapsed() > STALL_LIMIT {
                return Err(e.context(format!("no message confirmed for {STALL_LIMIT:?}")));
            }
            stats.reconnects.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// Publishes to `queue` as `produce::to_rabbitmq` does, paced, reconnecting.
pub async fn to_rabbitmq(
    url: &str,
    queue: &str,
    msgs: &[Msg],
    pace: &Pace,
    stats: &Produced,
) -> anyhow::Result<()> {
    until_confirmed(msgs.len(), stats, |from| {
        rabbit_session(url, queue, msgs, from, pace, stats)
    })
    .await
}

/// One connection's worth: returns how far messages are confirmed, and why it ended.
async fn rabbit_session(
    url: &str,
    queue: &str,
    msgs: &[Msg],
    mut from: usize,
    pace: &Pace,
    stats: &Produced,
) -> (usize, anyhow::Result<()>) {
    let connect = Connection::connect(url, ConnectionProperties::default());
    let connection = match answered(connect).await {
        Ok(c) => c,
        Err(e) => return (from, Err(e).context("connecting to RabbitMQ")),
    };
    let result = async {
        let channel = answered(connection.create_channel()).await?;
        answered(channel.confirm_select(ConfirmSelectOptions::default())).await?;
        while from < msgs.len() {
            let end = (from + WINDOW).min(msgs.len());
            let mut confirms = Vec::with_capacity(WINDOW);
            for msg in msgs.iter().take(end).skip(from) {
                pace.wait().await;
                let sent = answered(channel.basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    &msg.body,
                    rabbit_properties(msg),
                ))
                .await;
                match sent {
                    Ok(confirm) => confirms.push(confirm),
                    Err(e) => {
                        stats.resent.fetch_add(confirms.len(), Ordering::SeqCst);
                        return Err(e);
                    }
                }
            }
            for (n, confirm) in confirms.into_iter().enumerate() {
                let outcome = answered(confirm).await;
                if !matches!(outcome, Ok(Confirmation::Ack(_))) {
                    stats.resent.fetch_add(end - from, Ordering::SeqCst);
                    bail!(
                        "message {} not confirmed: {outcome:?} ({n} of the window were)",
                        from
                    );
                }
                from += 1;
                stats.confirmed.store(from, Ordering::SeqCst);
            }
        }
        Ok::<(), anyhow::Error>(())
    }
    .await;
    let _ = answered(connection.close(200, "done".into())).await;
    (from, result)
}

/// How long lapin may take to answer. One handed to a connection whose I/O loop has just
/// ended (the broker going down) never answers at all; this turns that into an error, so
/// the session ends and a new one re-sends what was not confirmed.
const ANSWER_WAIT: Duration = Duration::from_secs(10);

async fn answered<T>(
    call: impl std::future::Future<Output = Result<T, lapin::Error>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(ANSWER_WAIT, call).await {
        Ok(result) => Ok(result?),
        Err(_) => bail!("RabbitMQ did not answer within {ANSWER_WAIT:?}"),
    }
}

/// Persistent, `message_id` and header `idempotency-key` = id, header `ordering-key`.
fn rabbit_properties(msg: &Msg) -> BasicProperties {
    let mut headers = FieldTable::default();
    for (name, value) in [("idempotency-key", &msg.id), ("ordering-key", &msg.key)] {
        headers.insert(
            name.into(),
            AMQPValue::LongString(LongString::from(value.clone())),
        );
    }
    BasicProperties::default()
        .with_headers(headers)
        .with_message_id(msg.id.as_str().into())
        .with_delivery_mode(2)
}

/// Produces to `topic` as `produce::to_kafka` does, paced; a new producer after a failed
/// delivery (an idempotent producer's error can be fatal to it).
pub async fn to_kafka(
    brokers: &str,
    topic: &str,
    msgs: &[Msg],
    pace: &Pace,
    stats: &Produced,
) -> anyhow::Result<()> {
    until_confirmed(msgs.len(), stats, |from| {
        kafka_session(brokers, topic, msgs, from, pace, stats)
    })
    .await
}

async fn kafka_session(
    brokers: &str,
    topic: &str,
    msgs: &[Msg],
    mut from: usize,
    pace: &Pace,
    stats: &Produced,
) -> (usize, anyhow::Result<()>) {
    let producer: FutureProducer = match ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
        .set("max.in.flight.requests.per.connection", "1")
        .set("batch.num.messages", "1")
        // librdkafka retries through a broker restart by itself for this long.
        .set("message.timeout.ms", "120000")
        .create()
    {
        Ok(p) => p,
        Err(e) => return (from, Err(e).context("Kafka producer")),
    };
    while from < msgs.len() {
        let end = (from + WINDOW).min(msgs.len());
        let mut pending = Vec::with_capacity(WINDOW);
        for msg in msgs.iter().take(end).skip(from) {
            pace.wait().await;
            let record = crate::produce::kafka_record(topic, msg);
            match producer.send_result(record) {
                Ok(delivery) => pending.push(delivery),
                Err((e, _)) => return (from, Err(e).context("queueing a Kafka message")),
            }
        }
        let mut failed = None;
        for delivery in pending {
            match delivery.await {
                Ok(Ok(_)) if failed.is_none() => {
                    from += 1;
                    stats.confirmed.store(from, Ordering::SeqCst);
                }
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => failed = failed.or(Some(anyhow::Error::new(e))),
                Err(_) => failed = failed.or(Some(anyhow::anyhow!("producer dropped a delivery"))),
            }
        }
        if let Some(e) = failed {
            stats.resent.fetch_add(end - from, Ordering::SeqCst);
            return (from, Err(e));
        }
    }
    (from, Ok(()))
}
