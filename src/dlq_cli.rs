//! `seawall dlq`: the operators' view of a route's dead letters — `list`, `show`,
//! `groups` — and putting them back: `replay` and `release`.

mod payload;
mod progress;
mod render;
mod replay;
mod route;

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use bytes::Bytes;
use clap::{Args, Subcommand, ValueEnum};
use seawall::dlq::{group, DlqFilter, DlqRecord, ReplayLedger};

use replay::{ReplayJob, SendArgs};
use route::RouteSource;

/// The `seawall dlq` subcommands.
#[derive(Subcommand)]
pub(crate) enum DlqCommand {
    /// List a route's dead letters, oldest first (by failure time).
    List {
        #[command(flatten)]
        route: RouteArgs,
        #[command(flatten)]
        filter: FilterArgs,
        /// Include dead letters already replayed (hidden by default).
        #[arg(long)]
        all: bool,
        /// `table` for people, `json` (one array) for scripts.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show one dead letter in full: failure, every header, and the payload.
    Show {
        /// The id `list` printed: `topic/partition/offset`.
        id: String,
        #[command(flatten)]
        route: RouteArgs,
    },
    /// Dead letters grouped by failure fingerprint, most frequent first.
    Groups {
        #[command(flatten)]
        route: RouteArgs,
        /// Include dead letters already replayed (hidden by default).
        #[arg(long)]
        all: bool,
        /// `table` for people, `json` (one array) for scripts.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Republish dead letters to their original topic or queue, in their original order
    /// per key. Remembers what it sent: a repeated or resumed replay sends nothing twice.
    Replay {
        #[command(flatten)]
        route: RouteArgs,
        #[command(flatten)]
        filter: FilterArgs,
        /// Only these dead letters (ids as `list` prints them, comma-separated).
        #[arg(long, value_delimiter = ',')]
        ids: Vec<String>,
        #[command(flatten)]
        send: SendArgs,
    },
    /// Release a parked ordering key: its dead letters are replayed in order, the first
    /// marked to lift the park, so the key's order holds.
    Release {
        /// The parked ordering key, as text.
        key: String,
        #[command(flatten)]
        route: RouteArgs,
        #[command(flatten)]
        send: SendArgs,
    },
}

/// Which route's dead letters, from which config file.
#[derive(Args)]
pub(crate) struct RouteArgs {
    /// The config file `seawall run` reads.
    #[arg(long, short)]
    config: PathBuf,
    /// The route; may be left out when the config has only one.
    #[arg(long, short)]
    route: Option<String>,
    /// How long reading the dead-letter topics may take.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// `list`'s selection; every criterion given must match.
#[derive(Args)]
pub(crate) struct FilterArgs {
    /// The message key (or Seawall's ordering key) equals this.
    #[arg(long)]
    key: Option<String>,
    /// The failure kind (`permanent`, `exhausted`, an exception name, …), any case.
    #[arg(long)]
    kind: Option<String>,
    /// Failed at or after: RFC 3339 in UTC (`2025-11-13T09:00:00Z`) or a duration ago (`2h`).
    #[arg(long, value_parser = parse_time)]
    since: Option<SystemTime>,
    /// Failed before: RFC 3339 in UTC or a duration ago.
    #[arg(long, value_parser = parse_time)]
    until: Option<SystemTime>,
    /// The failure fingerprint, as `groups` prints it.
    #[arg(long)]
    group: Option<String>,
}

/// Output format.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    Table,
    Json,
}

/// An RFC 3339 time, or a humantime duration meaning that long ago.
fn parse_time(text: &str) -> Result<SystemTime, String> {
    if let Ok(at) = humantime::parse_rfc3339_weak(text) {
        return Ok(at);
    }
    let ago = humantime::parse_duration(text).map_err(|_| {
        format!(
            "expected an RFC 3339 time (2025-11-13T09:00:00Z) or a duration ago (2h), got `{text}`"
        )
    })?;
    SystemTime::now()
        .checked_sub(ago)
        .ok_or_else(|| format!("`{text}` ago is before 1970"))
}

/// Runs one `seawall dlq` command. Exit codes: 0 done; 1 the dead letter asked for is
/// not there, a replay refused some or its canary failed; 2 a bad config or route;
/// 130 a replay interrupted (what was sent is remembered).
pub(crate) fn run(command: DlqCommand) -> anyhow::Result<ExitCode> {
    let args = match &command {
        DlqCommand::List { route, .. }
        | DlqCommand::Show { route, .. }
        | DlqCommand::Groups { route, .. }
        | DlqCommand::Replay { route, .. }
        | DlqCommand::Release { route, .. } => route,
    };
    let route = match route::resolve(args) {
        Ok(found) => found,
        Err(message) => {
            eprintln!("seawall dlq: {message}");
            return Ok(ExitCode::from(2));
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run_on(command, &route))
}

async fn run_on(command: DlqCommand, route: &route::Route) -> anyhow::Result<ExitCode> {
    let out = &mut BufWriter::new(io::stdout().lock());
    let result = match &command {
        DlqCommand::List {
            filter,
            format,
            all,
            ..
        } => {
            let records = unreplayed(route, route.read().await?, *all)?;
            list(out, &records, filter, *format).map(|()| ExitCode::SUCCESS)
        }
        DlqCommand::Groups { format, all, .. } => {
            let records = unreplayed(route, route.read().await?, *all)?;
            groups(out, &records, *format).map(|()| ExitCode::SUCCESS)
        }
        DlqCommand::Show { id, .. } => {
            let Some(records) = records_holding(route, id).await? else {
                return Ok(ExitCode::from(2));
            };
            show(out, route, &records, id)
        }
        DlqCommand::Replay {
            filter, ids, send, ..
        } => {
            let filter = filter.to_filter();
            let job = job(route, send, None);
            let select =
                |r: &DlqRecord| filter.matches(r) && (ids.is_empty() || ids.contains(&r.id));
            return job.run(select).await;
        }
        DlqCommand::Release { key, send, .. } => {
            let key = Bytes::from(key.clone());
            let job = job(route, send, Some(key.clone()));
            return job.run(|r: &DlqRecord| r.order_key() == Some(&key)).await;
        }
    };
    finish(out, result)
}

/// `records` less those the route's replay ledger holds, unless `all`; says how many
/// were hidden.
fn unreplayed(
    route: &route::Route,
    records: Vec<DlqRecord>,
    all: bool,
) -> anyhow::Result<Vec<DlqRecord>> {
    let path = route.ledger_path();
    if all || !path.exists() {
        return Ok(records);
    }
    let ledger = ReplayLedger::open(path)?;
    let total = records.len();
    let kept: Vec<DlqRecord> = records
        .into_iter()
        .filter(|r| !ledger.contains(&r.id))
        .collect();
    if kept.len() < total {
        eprintln!(
            "seawall dlq: {} replayed dead letters hidden (--all shows them)",
            total - kept.len()
        );
    }
    Ok(kept)
}

/// The dead letters where `id` can be: for a Kafka route only the topic the id names
/// (`topic/partition/offset`), which must be one of the route's; `None` when it is not,
/// after telling the operator.
async fn records_holding(route: &route::Route, id: &str) -> anyhow::Result<Option<Vec<DlqRecord>>> {
    let RouteSource::Kafka(kafka) = &route.source else {
        return Ok(Some(route.read().await?));
    };
    let topics = route::dead_letter_topics(&route.name, kafka);
    // Topic names cannot contain `/`.
    let topic = id.split('/').next().unwrap_or_default();
    if !topics.contains(topic) {
        let known: Vec<&str> = topics.iter().map(String::as_str).collect();
        eprintln!(
            "seawall dlq: `{id}` is not an id in route {}'s dead-letter topics ({}); ids look like topic/partition/offset",
            route.name,
            known.join(", ")
        );
        return Ok(None);
    }
    let only = std::collections::BTreeSet::from([topic.to_owned()]);
    Ok(Some(
        route::read_kafka(kafka.clone(), only, route.timeout).await?,
    ))
}

fn job<'a>(route: &'a route::Route, send: &'a SendArgs, release: Option<Bytes>) -> ReplayJob<'a> {
    let command: Vec<String> = std::env::args().skip(1).collect();
    ReplayJob {
        route,
        send,
        release,
        command: command.join(" "),
    }
}

/// Flushes; a closed pipe (`seawall dlq list | head`) is not an error.
fn finish(out: &mut impl Write, result: io::Result<ExitCode>) -> anyhow::Result<ExitCode> {
    match result.and_then(|code| out.flush().map(|()| code)) {
        Ok(code) => Ok(code),
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(err) => Err(err).context("writing the output"),
    }
}

impl FilterArgs {
    fn to_filter(&self) -> DlqFilter {
        DlqFilter {
            key: self.key.clone(),
            kind: self.kind.clone(),
            since: self.since,
            until: self.until,
            group: self.group.clone(),
        }
    }
}

fn list(
    out: &mut impl Write,
    records: &[DlqRecord],
    filter: &FilterArgs,
    format: Format,
) -> io::Result<()> {
    let filter = filter.to_filter();
    let mut selected: Vec<&DlqRecord> = records.iter().filter(|r| filter.matches(r)).collect();
    // Stable: records failing at the same time (or with no time, listed first) keep the
    // reader's topic, partition and offset order.
    selected.sort_by_key(|r| r.failure.failed_at);
    match format {
        Format::Table => render::list_table(out, &selected),
        Format::Json => {
            let array: Vec<_> = selected.iter().map(|r| render::record_json(r)).collect();
            serde_json::to_writer_pretty(&mut *out, &array)?;
            writeln!(out)
        }
    }
}

fn groups(out: &mut impl Write, records: &[DlqRecord], format: Format) -> io::Result<()> {
    let groups = group(records);
    match format {
        Format::Table => render::groups_table(out, &groups),
        Format::Json => {
            let array: Vec<_> = groups.iter().map(render::group_json).collect();
            serde_json::to_writer_pretty(&mut *out, &array)?;
            writeln!(out)
        }
    }
}

fn show(
    out: &mut impl Write,
    route: &route::Route,
    records: &[DlqRecord],
    id: &str,
) -> io::Result<ExitCode> {
    let Some(record) = records.iter().find(|r| r.id == id) else {
        eprintln!(
            "seawall dlq: no dead letter `{id}` in route {}'s dead letters (ids as `seawall dlq list` prints them)",
            route.name
        );
        return Ok(ExitCode::from(1));
    };
    let decoded = route.contract.as_ref().map(|check| {
        check
            .check(&record.payload)
            .map(|d| (d.contract().name().to_owned(), d.to_json()))
            .map_err(|violation| violation.to_string())
    });
    render::show(out, record, decoded).map(|()| ExitCode::SUCCESS)
}
