//! The `seawall` command. For now it inspects and maintains an idempotency store; the
//! worker (`seawall run`) and the dead-letter tooling (`seawall dlq`) build on the same
//! library.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::{Parser, Subcommand};
use seawall::{IdempotencyStore, SledStore};

#[derive(Parser)]
#[command(
    name = "seawall",
    version,
    about = "Message-bus integration broker and consumer framework"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect or maintain an idempotency store (the worker must not be running on it).
    Store {
        /// The store's directory.
        #[arg(long)]
        path: PathBuf,
        #[command(subcommand)]
        action: StoreAction,
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

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "seawall=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Store { path, action } => store_command(&path, action),
    }
}

fn store_command(path: &std::path::Path, action: StoreAction) -> anyhow::Result<()> {
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
    Ok(())
}
