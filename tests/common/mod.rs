//! A harness running the full pipeline on the in-memory transport.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use seawall::{
    Error, Handler, HandlerError, MemoryDeadLetters, MemoryLedger, MemoryPublisher, MemorySource,
    MemoryStore, Message, Pipeline, PipelineConfig, PipelineHandle, StatsSnapshot,
};
use tokio::task::JoinHandle;

pub struct Harness<St: seawall::IdempotencyStore = Arc<MemoryStore>> {
    pub publisher: Option<MemoryPublisher>,
    pub ledger: MemoryLedger,
    pub letters: MemoryDeadLetters,
    pub store: St,
    pub handle: PipelineHandle,
    pub run: JoinHandle<Result<StatsSnapshot, Error>>,
}

/// A config with fast retries, so tests on a real clock stay quick.
pub fn quick_config() -> PipelineConfig {
    let mut config = PipelineConfig::default();
    config.retry.initial_backoff = Duration::from_millis(1);
    config.retry.max_backoff = Duration::from_millis(5);
    config.durability.flush_interval = Duration::from_millis(1);
    config
}

pub fn start<H: Handler>(config: PipelineConfig, handler: H) -> Harness {
    start_with_store(config, handler, Arc::new(MemoryStore::new()))
}

pub fn start_with_store<H: Handler, St>(
    config: PipelineConfig,
    handler: H,
    store: St,
) -> Harness<St>
where
    St: seawall::IdempotencyStore + Clone,
{
    let (publisher, source) = MemorySource::new("orders", 4, 64);
    let ledger = source.ledger();
    let letters = MemoryDeadLetters::new();
    let pipeline = Pipeline::builder()
        .source(source)
        .handler(handler)
        .store(store.clone())
        .dead_letter(letters.clone())
        .config(config)
        .build()
        .expect("valid config");
    let handle = pipeline.handle();
    Harness {
        publisher: Some(publisher),
        ledger,
        letters,
        store,
        handle,
        run: tokio::spawn(pipeline.run()),
    }
}

impl<St: seawall::IdempotencyStore> Harness<St> {
    pub async fn publish(&self, message: Message) {
        let publisher = self.publisher.as_ref().expect("still publishing");
        publisher.publish(message).await.expect("source alive");
    }

    /// Ends the source and waits for the pipeline to settle everything.
    pub async fn finish(mut self) -> (StatsSnapshot, Self) {
        self.publisher = None;
        let stats = (&mut self.run)
            .await
            .expect("pipeline task")
            .expect("pipeline run");
        (stats, self)
    }
}

/// A message with key `key` and payload `seq`, idempotency key `key-seq`.
pub fn keyed(key: &str, seq: u32) -> Message {
    Message::new(seq.to_string())
        .with_key(key.to_owned())
        .with_header("idempotency-key", format!("{key}-{seq}"))
}

/// Records every call as (key, payload) and answers with a scripted outcome.
#[derive(Clone)]
pub struct Recorder<F> {
    pub calls: Arc<Mutex<Vec<(String, String, u32)>>>,
    script: Arc<F>,
}

impl<F> Recorder<F>
where
    F: Fn(&str, &str, u32) -> Result<(), HandlerError> + Send + Sync + 'static,
{
    pub fn new(script: F) -> Self {
        Self {
            calls: Arc::default(),
            script: Arc::new(script),
        }
    }

    pub fn calls(&self) -> Vec<(String, String, u32)> {
        self.calls.lock().unwrap().clone()
    }

    /// Payloads handled successfully per key, in call order.
    pub fn for_key(&self, key: &str) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|(k, _, _)| k == key)
            .map(|(_, p, _)| p)
            .collect()
    }
}

impl<F> Handler for Recorder<F>
where
    F: Fn(&str, &str, u32) -> Result<(), HandlerError> + Send + Sync + 'static,
{
    async fn handle(&self, message: &Message) -> Result<(), HandlerError> {
        let key =
            String::from_utf8_lossy(message.key().map(|k| &k[..]).unwrap_or(b"")).into_owned();
        let payload = String::from_utf8_lossy(message.payload()).into_owned();
        self.calls
            .lock()
            .unwrap()
            .push((key.clone(), payload.clone(), message.attempt()));
        tokio::task::yield_now().await;
        (self.script)(&key, &payload, message.attempt())
    }
}
