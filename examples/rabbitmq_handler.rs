//! An application embedding Seawall with its own handler, consuming a RabbitMQ queue.
//!
//! Sends a welcome e-mail (simulated) per `user-registered` event, with a closure as the
//! handler. Events carry their idempotency key as `message_id`, so a redelivered event
//! sends no second e-mail; a bad address is dead-lettered to `<queue>.dlq` with the
//! reason; an outage of the mail service opens the circuit breaker instead of
//! dead-lettering everything.
//!
//! Run: `cargo run --example rabbitmq_handler -- amqp://guest:guest@127.0.0.1:5672/%2f registrations`
//! Stop with Ctrl-C.

use std::time::Duration;

use seawall::rabbitmq::{Declare, RabbitConfig, RabbitDeadLetters, RabbitSource};
use seawall::{handler_fn, HandlerError, Message, Pipeline, PipelineConfig, SledStore};

async fn send_welcome(address: &str) -> Result<(), HandlerError> {
    if !address.contains('@') {
        return Err(HandlerError::permanent(format!(
            "`{address}` is not an e-mail address"
        )));
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    println!("welcome mail sent to {address}");
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "seawall=info".into()))
        .init();
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let queue = args.next().unwrap_or_else(|| "registrations".into());
    let mut rabbit = RabbitConfig::new(url, queue);
    rabbit.declare = Some(Declare {
        exchange: "users".into(),
        exchange_kind: "topic".into(),
        routing_keys: vec!["user.registered".into()],
    });
    let mut config = PipelineConfig::default();
    config.ordering.key = rabbit.ordering_rule();
    config.idempotency.key = rabbit.idempotency_rule();
    let pipeline = Pipeline::builder()
        .source(RabbitSource::connect(rabbit.clone()).await?)
        .dead_letter(RabbitDeadLetters::connect(&rabbit).await?)
        .handler(handler_fn(|message: Message| async move {
            let address = String::from_utf8_lossy(message.payload()).trim().to_owned();
            send_welcome(&address).await
        }))
        .store(SledStore::open(
            std::env::temp_dir().join("seawall-welcome-mail"),
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
