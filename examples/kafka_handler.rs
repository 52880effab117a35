//! An application embedding Seawall with its own handler, consuming Kafka.
//!
//! Reads JSON orders from a topic and "reserves stock" for each: a handler that is a
//! plain struct implementing `Handler`. Malformed orders are dead-lettered to
//! `<topic>.dlq`, a flaky warehouse is retried with backoff, and each customer's orders
//! run in order.
//!
//! Run (with a Kafka-API broker on 127.0.0.1:9092, e.g. after `scripts/brokers.sh`):
//! `cargo run --example kafka_handler -- 127.0.0.1:9092 orders`
//! Stop with Ctrl-C: the pipeline finishes running messages and commits what is done.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use seawall::kafka::{KafkaConfig, KafkaDeadLetters, KafkaSource};
use seawall::{Handler, HandlerError, Message, Pipeline, PipelineConfig, SledStore};

/// The application's logic: parse, then call the (here simulated) warehouse.
struct ReserveStock {
    reserved: AtomicU64,
}

impl Handler for ReserveStock {
    async fn handle(&self, message: &Message) -> Result<(), HandlerError> {
        let order: serde_json::Value = serde_json::from_slice(message.payload())
            .map_err(|e| HandlerError::permanent(format!("order is not JSON: {e}")))?;
        let Some(sku) = order["sku"].as_str() else {
            return Err(HandlerError::permanent("order has no `sku`"));
        };
        // A warehouse that times out now and then: transient, so retried in place
        // while this customer's later orders wait behind it.
        if fastrand::u8(..) < 8 {
            return Err(HandlerError::transient("warehouse timed out"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        let n = self.reserved.fetch_add(1, Ordering::Relaxed) + 1;
        println!("reserved {sku} (attempt {}, total {n})", message.attempt());
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "seawall=info".into()))
        .init();
    let mut args = std::env::args().skip(1);
    let brokers = args.next().unwrap_or_else(|| "127.0.0.1:9092".into());
    let topic = args.next().unwrap_or_else(|| "orders".into());
    let kafka = KafkaConfig::new(brokers, "reserve-stock", &[topic.as_str()]);
    let mut config = PipelineConfig::default();
    config.retry.initial_backoff = Duration::from_millis(50);
    let pipeline = Pipeline::builder()
        .source(KafkaSource::connect(kafka.clone())?)
        .dead_letter(KafkaDeadLetters::connect(&kafka).await?)
        .handler(ReserveStock {
            reserved: AtomicU64::new(0),
        })
        .store(SledStore::open(
            std::env::temp_dir().join("seawall-reserve-stock"),
        )?)
        .config(config)
        .build()?;
    let handle = pipeline.handle();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        handle.shutdown();
    });
    let stats = pipeline.run().await?;
    println!("{stats:#?}");
    Ok(())
}
