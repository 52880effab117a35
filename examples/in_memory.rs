//! The whole pipeline on the in-memory transport: a sample order flow with duplicates, a
//! downstream that is flaky for one key, poison messages, and a parked key. Prints what
//! happened to each message class and the dead letters with their `seawall.*` headers.
//!
//! Run: `cargo run --example in_memory`

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use seawall::{
    handler_fn, DeadLetterInfo, DeadLetterPolicy, HandlerError, MemoryDeadLetters, MemorySource,
    Message, Pipeline, PipelineConfig, SledStore,
};

fn order(customer: &str, seq: u32, body: &str) -> Message {
    Message::new(body.to_owned())
        .with_key(customer.to_owned())
        .with_header("idempotency-key", format!("{customer}-order-{seq}"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "seawall=warn".into()))
        .init();
    let store_dir = std::env::temp_dir().join(format!("seawall-example-{}", std::process::id()));
    let mut config = PipelineConfig::default();
    config.retry.initial_backoff = Duration::from_millis(20);
    config.on_dead_letter = DeadLetterPolicy::Park;

    // The downstream: refuses malformed orders for good, and is flaky for "carol".
    let flaky = Arc::new(AtomicU32::new(0));
    let handled = Arc::new(AtomicU32::new(0));
    let (flaky_calls, handled_count) = (Arc::clone(&flaky), Arc::clone(&handled));
    let handler = handler_fn(move |message: Message| {
        let (flaky, handled) = (Arc::clone(&flaky_calls), Arc::clone(&handled_count));
        async move {
            if message.payload().starts_with(b"not json") {
                return Err(HandlerError::permanent(
                    "payload is not JSON: expected `{` at byte 0",
                ));
            }
            if message.key().is_some_and(|k| k == "carol")
                && flaky.fetch_add(1, Ordering::SeqCst) < 3
            {
                return Err(HandlerError::transient("503 Service Unavailable"));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
            handled.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });

    let (publisher, source) = MemorySource::new("orders", 4, 256);
    let ledger = source.ledger();
    let letters = MemoryDeadLetters::new();
    let pipeline = Pipeline::builder()
        .source(source)
        .handler(handler)
        .store(SledStore::open(&store_dir)?)
        .dead_letter(letters.clone())
        .config(config)
        .build()?;
    let handle = pipeline.handle();
    let running = tokio::spawn(pipeline.run());

    let mut published = 0;
    for seq in 0..20 {
        for customer in ["alice", "bob", "carol"] {
            publisher
                .publish(order(customer, seq, r#"{"qty":1}"#))
                .await?;
            published += 1;
        }
        if seq % 5 == 0 {
            // The producer retried after a timeout: the same order again.
            publisher
                .publish(order("alice", seq, r#"{"qty":1}"#))
                .await?;
            published += 1;
        }
    }
    // Dave's second order is poison; with `park`, his later orders wait behind it.
    for (seq, body) in [
        (0, r#"{"qty":2}"#),
        (1, "not json"),
        (2, r#"{"qty":3}"#),
        (3, r#"{"qty":4}"#),
    ] {
        publisher.publish(order("dave", seq, body)).await?;
        published += 1;
    }
    drop(publisher);
    let stats = running.await??;

    println!("published            {published}");
    println!("handled              {}", handled.load(Ordering::SeqCst));
    println!("processed            {}", stats.processed);
    println!("skipped (duplicates) {}", stats.duplicates);
    println!("retries              {}", stats.retries);
    println!(
        "dead-lettered        {} (of which parked: {})",
        stats.dead_lettered, stats.parked
    );
    println!("completed at source  {}", ledger.completed_count());
    println!(
        "commit points        {:?}",
        ledger
            .commit_points()
            .iter()
            .map(|(p, o)| format!("{p}@{o}"))
            .collect::<Vec<_>>()
    );
    println!(
        "parked keys          {:?}",
        handle
            .parked_keys()?
            .iter()
            .map(|(k, r)| (
                String::from_utf8_lossy(k).into_owned(),
                r.blocked_by.clone()
            ))
            .collect::<Vec<_>>()
    );
    println!("\ndead letters:");
    for letter in letters.letters() {
        let info = DeadLetterInfo::from_headers(&letter.headers())?;
        println!(
            "  {:<10} key={} payload={:?} attempts={} error={:?}",
            info.kind,
            String::from_utf8_lossy(letter.key().map(|k| &k[..]).unwrap_or(b"")),
            String::from_utf8_lossy(letter.message.payload()),
            info.attempts,
            info.error
        );
    }
    std::fs::remove_dir_all(&store_dir)?;
    Ok(())
}
