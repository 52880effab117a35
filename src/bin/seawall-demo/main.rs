//! `seawall-demo`: the pieces of the sample flow around a `seawall run` worker — a
//! downstream HTTP service with realistic troubles, a producer for a sample workload on
//! Kafka and RabbitMQ, and a report of what arrived. `scripts/demo.sh` runs them all.

mod downstream;
mod produce;
mod report;
mod workload;

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "seawall-demo",
    version,
    about = "Sample flow for Seawall: downstream, producer, report"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// An HTTP service that records what it is sent: rejects payloads containing
    /// "poison" (400), is slow for `slow-sam`, fails twice per message for `flaky-fred`
    /// (503); `GET /stats` counts deliveries, duplicates and reordering.
    Downstream {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:18080")]
        listen: SocketAddr,
    },
    /// Creates the Kafka topic the worker consumes (before the worker subscribes).
    Setup {
        /// Kafka bootstrap servers.
        #[arg(long, default_value = "127.0.0.1:9092")]
        kafka: String,
        /// Topic to create.
        #[arg(long, default_value = "demo-orders")]
        topic: String,
        /// Its partitions.
        #[arg(long, default_value_t = 4)]
        partitions: i32,
    },
    /// Produces the sample workload: orders to a Kafka topic, payments to a RabbitMQ
    /// exchange; ~10 customers, a few poison messages, ~10% sent twice.
    Produce {
        /// Kafka bootstrap servers (omit to skip the Kafka workload).
        #[arg(long)]
        kafka: Option<String>,
        /// Kafka topic for orders (created if missing).
        #[arg(long, default_value = "demo-orders")]
        topic: String,
        /// Partitions when the topic is created.
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        /// RabbitMQ URI (omit to skip the RabbitMQ workload).
        #[arg(long)]
        amqp: Option<String>,
        /// RabbitMQ exchange for payments (a durable topic exchange).
        #[arg(long, default_value = "demo-payments")]
        exchange: String,
        /// Distinct messages per broker.
        #[arg(long, default_value_t = 200)]
        count: usize,
        /// Prefix of the idempotency keys (default: the current Unix time), so a second
        /// run is not deduplicated against the first.
        #[arg(long)]
        run_id: Option<String>,
    },
    /// Waits for the downstream to have N distinct deliveries, then prints what the
    /// worker and the downstream saw; fails on duplicates, reordering or timeout.
    Report {
        /// The downstream's base URL.
        #[arg(long, default_value = "http://127.0.0.1:18080")]
        downstream: String,
        /// The worker's admin listener.
        #[arg(long, default_value = "http://127.0.0.1:9464")]
        admin: String,
        /// Distinct deliveries to wait for (`produce` prints it).
        #[arg(long)]
        expect_delivered: u64,
        /// How long to wait, e.g. `120s`.
        #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Exits 0 if a GET of URL answers 2xx within 5 s (a healthcheck without curl).
    Probe {
        /// The URL, e.g. `http://127.0.0.1:9464/readyz`.
        url: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Downstream { listen } => downstream::serve(listen).await,
        Command::Setup {
            kafka,
            topic,
            partitions,
        } => produce::create_topic(&kafka, &topic, partitions).await,
        Command::Produce {
            kafka,
            topic,
            partitions,
            amqp,
            exchange,
            count,
            run_id,
        } => {
            let run = run_id.unwrap_or_else(unix_time);
            let (orders, payments) = produce::workloads(&run, count);
            let mut expect = 0;
            if let Some(brokers) = kafka {
                produce::create_topic(&brokers, &topic, partitions).await?;
                produce::to_kafka(&brokers, &topic, &orders).await?;
                let tally = workload::tally(&orders);
                produce::print_tally("orders", &format!("kafka topic {topic}"), &tally);
                expect += tally.expect_delivered;
            }
            if let Some(url) = amqp {
                produce::to_rabbitmq(&url, &exchange, &payments).await?;
                let tally = workload::tally(&payments);
                produce::print_tally("payments", &format!("exchange {exchange}"), &tally);
                expect += tally.expect_delivered;
            }
            // Machine-readable, for scripts/demo.sh.
            println!("expect-delivered: {expect}");
            Ok(())
        }
        Command::Report {
            downstream,
            admin,
            expect_delivered,
            timeout,
        } => {
            let clean = report::run(&downstream, &admin, expect_delivered, timeout).await?;
            std::process::exit(if clean { 0 } else { 1 });
        }
        Command::Probe { url } => report::probe(&url).await,
    }
}

fn unix_time() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs().to_string())
        .unwrap_or_else(|_| "run".to_owned())
}
