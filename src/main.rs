//! The `seawall` command: the worker (`seawall run`), its config check (`seawall check`)
//! and idempotency-store maintenance (`seawall store`).

mod dlq_cli;
mod worker_cli;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::{Parser, Subcommand};
use seawall::{IdempotencyStore, SledStore};

/// A worker allocates and frees a few small buffers per message, many of them on another
/// thread than the one that allocated them; mimalloc is cheaper at that than glibc's
/// malloc (the Kafka bench: median of twelve interleaved runs 80% → 86% of the plain
/// consumer). Only the binary chooses: the library never sets an allocator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "seawall",
    version,
    about = "Message-bus integration broker and consumer framework"
)]
struct Cli {
    /// Log format: human-readable `text`, or `json` (one object per line). Filter with
    /// `RUST_LOG` (default `seawall=info`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the worker: every route of the config file, until SIGTERM or SIGINT.
    Run {
        /// The config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate the config file, its contracts and connectivity to every broker and
    /// downstream, without consuming anything.
    Check {
        /// The config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Only validate the file and contracts; reach nothing.
        #[arg(long)]
        offline: bool,
    },
    /// Inspect or maintain an idempotency store (the worker must not be running on it).
    Store {
        /// The store's directory.
        #[arg(long)]
        path: PathBuf,
        #[command(subcommand)]
        action: StoreAction,
    },
    /// A route's dead letters: list, show, groups, replay, release.
    Dlq {
        #[command(subcommand)]
        action: dlq_cli::DlqCommand,
    },
}

#[derive(Subcommand)]
enum StoreAction {
    /// Counts of settled records, messages crashed on, and parked keys.
    Stats,
    /// Parked ordering keys and the message blocking each.
    Parked,
    /// Release a parked ordering key.
    Release {
        /// The ordering key, as UTF-8 text.
        key: String,
    },
    /// Remove settled records older than the dedup window.
    Sweep {
        /// The dedup window, e.g. `7days`.
        #[arg(long, default_value = "7days", value_parser = humantime::parse_duration)]
        older_than: Duration,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Run { config } => worker_cli::run(&config),
        Command::Check { config, offline } => worker_cli::check(&config, offline),
        Command::Store { path, action } => store_command(&path, action),
        Command::Dlq { action } => dlq_cli::run(action),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "seawall=info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.finish().with(secret_safe_levels()).init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .finish()
            .with(secret_safe_levels())
            .init(),
    }
}

/// Caps the AMQP client's logging at `debug`, whatever `RUST_LOG` asks for: at `trace`,
/// lapin prints every frame it writes, among them the `Connection.StartOk` that carries
/// the login (`\0user\0password`, as a list of byte values) — a password in the log —
/// and every message body. librdkafka needs no cap: its `debug` output (`debug = "all"`)
/// shows `sasl.password` and the other sensitive properties as `[redacted]`.
/// `tests/secrets.rs` checks both at `RUST_LOG=trace`.
fn secret_safe_levels() -> tracing_subscriber::filter::Targets {
    use tracing_subscriber::filter::LevelFilter;
    tracing_subscriber::filter::Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_target("lapin", LevelFilter::DEBUG)
        .with_target("amq_protocol", LevelFilter::DEBUG)
        .with_target("amq_protocol_tcp", LevelFilter::DEBUG)
}

fn store_command(
    path: &std::path::Path,
    action: StoreAction,
) -> anyhow::Result<std::process::ExitCode> {
    if !path.exists() {
        anyhow::bail!("no idempotency store at {}", path.display());
    }
    let store = SledStore::open(path)?;
    match action {
        StoreAction::Stats => {
            let stats = store.stats()?;
            println!("settled   {}", stats.settled);
            println!("crashed   {}", stats.crashed);
            println!("parked    {}", stats.parked);
        }
        StoreAction::Parked => {
            for (key, record) in store.parked_keys()? {
                let since = humantime::format_rfc3339_seconds(record.since);
                println!(
                    "{}\tblocked by {}\tsince {since}",
                    String::from_utf8_lossy(&key),
                    record.blocked_by
                );
            }
        }
        StoreAction::Release { key } => {
            let released = store.release(key.as_bytes())?;
            store.flush()?;
            anyhow::ensure!(released, "ordering key `{key}` is not parked");
            println!("released {key}");
        }
        StoreAction::Sweep { older_than } => {
            let cutoff = SystemTime::now()
                .checked_sub(older_than)
                .context("--older-than reaches before 1970")?;
            let removed = store.sweep(cutoff)?;
            store.flush()?;
            println!("removed {removed} expired records");
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}
