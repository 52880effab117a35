//! `seawall dlq`: the operators' read-only view of a route's dead letters — `list`, `show`
//! and `groups` — for Kafka routes. Replay, release and RabbitMQ queues are not built yet.

mod payload;
mod render;

use std::collections::BTreeSet;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use seawall::dlq::{group, DlqFilter, DlqRecord};
use seawall::kafka::{read_dead_letters, KafkaConfig};
use seawall::worker::{self, SourceSpec};

/// The `seawall dlq` subcommands.
#[derive(Subcommand)]
pub(crate) enum DlqCommand {
    /// List a route's dead letters, oldest first (by failure time).
    List {
        #[command(flatten)]
        route: RouteArgs,
        #[command(flatten)]
        filter: FilterArgs,
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
        /// `table` for people, `json` (one array) for scripts.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
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

/// Runs one `seawall dlq` command. Exit codes: 0 done, 1 the dead letter asked for is not
/// there, 2 a bad config, route or a route kind not supported yet.
pub(crate) fn run(command: DlqCommand) -> anyhow::Result<ExitCode> {
    let route = match &command {
        DlqCommand::List { route, .. }
        | DlqCommand::Show { route, .. }
        | DlqCommand::Groups { route, .. } => route,
    };
    let (name, kafka) = match kafka_route(route) {
        Ok(found) => found,
        Err(message) => {
            eprintln!("seawall dlq: {message}");
            return Ok(ExitCode::from(2));
        }
    };
    let timeout = route.timeout;
    let out = &mut BufWriter::new(io::stdout().lock());
    let result = match &command {
        DlqCommand::List { filter, format, .. } => {
            let records = read_route(&name, &kafka, timeout)?;
            list(out, &records, filter, *format).map(|()| ExitCode::SUCCESS)
        }
        DlqCommand::Groups { format, .. } => {
            let records = read_route(&name, &kafka, timeout)?;
            groups(out, &records, *format).map(|()| ExitCode::SUCCESS)
        }
        DlqCommand::Show { id, .. } => return show(out, &name, &kafka, id, timeout),
    };
    finish(out, result)
}

/// Flushes; a closed pipe (`seawall dlq list | head`) is not an error.
fn finish(out: &mut impl Write, result: io::Result<ExitCode>) -> anyhow::Result<ExitCode> {
    match result.and_then(|code| out.flush().map(|()| code)) {
        Ok(code) => Ok(code),
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(err) => Err(err).context("writing the output"),
    }
}

/// The route's name and Kafka settings, or what to tell the operator.
fn kafka_route(args: &RouteArgs) -> Result<(String, KafkaConfig), String> {
    let config = worker::load(&args.config).map_err(|err| err.to_string())?;
    let names = || {
        let names: Vec<&str> = config.routes.keys().map(String::as_str).collect();
        names.join(", ")
    };
    let name = match (&args.route, config.routes.len()) {
        (Some(name), _) => name.clone(),
        (None, 1) => config.routes.keys().next().cloned().unwrap_or_default(),
        (None, _) => return Err(format!("--route is needed; routes: {}", names())),
    };
    let Some(spec) = config.routes.get(&name) else {
        return Err(format!(
            "no route `{name}` in {}; routes: {}",
            args.config.display(),
            names()
        ));
    };
    match &spec.source {
        SourceSpec::Kafka(kafka) => Ok((name, kafka.clone())),
        SourceSpec::Rabbitmq(_) => Err(format!(
            "RabbitMQ dead-letter queues are not supported yet (route {name})"
        )),
    }
}

/// The route's dead-letter topics: the configured one, or `<topic>.dlq` per named topic.
/// Topics reached through a pattern have dead-letter topics only the broker knows; they are
/// named on stderr, not read.
fn dead_letter_topics(name: &str, kafka: &KafkaConfig) -> BTreeSet<String> {
    if let Some(topic) = &kafka.dead_letter.topic {
        return BTreeSet::from([topic.clone()]);
    }
    let mut topics = BTreeSet::new();
    for topic in &kafka.topics {
        if topic.starts_with('^') {
            eprintln!(
                "seawall dlq: route {name}: dead letters of topics matching `{topic}` are not read \
                 (their dead-letter topics are not known; set dead_letter.topic)"
            );
        } else {
            topics.insert(kafka.dead_letter_topic(topic));
        }
    }
    topics
}

/// Every dead letter of the route, topic by topic.
fn read_route(
    name: &str,
    kafka: &KafkaConfig,
    timeout: Duration,
) -> anyhow::Result<Vec<DlqRecord>> {
    let topics = dead_letter_topics(name, kafka);
    anyhow::ensure!(
        !topics.is_empty(),
        "route {name} has no dead-letter topic to read"
    );
    let mut records = Vec::new();
    for topic in &topics {
        records.extend(read_dead_letters(kafka, topic, timeout)?);
    }
    Ok(records)
}

fn list(
    out: &mut impl Write,
    records: &[DlqRecord],
    filter: &FilterArgs,
    format: Format,
) -> io::Result<()> {
    let filter = DlqFilter {
        key: filter.key.clone(),
        kind: filter.kind.clone(),
        since: filter.since,
        until: filter.until,
        group: filter.group.clone(),
    };
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
    name: &str,
    kafka: &KafkaConfig,
    id: &str,
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    let topics = dead_letter_topics(name, kafka);
    // The id is `topic/partition/offset`; topic names cannot contain `/`.
    let topic = id.split('/').next().unwrap_or_default();
    if !topics.contains(topic) {
        let known: Vec<&str> = topics.iter().map(String::as_str).collect();
        eprintln!(
            "seawall dlq: `{id}` is not an id in route {name}'s dead-letter topics ({}); ids look like topic/partition/offset",
            known.join(", ")
        );
        return Ok(ExitCode::from(2));
    }
    let records = read_dead_letters(kafka, topic, timeout)?;
    let Some(record) = records.iter().find(|r| r.id == id) else {
        eprintln!("seawall dlq: no dead letter `{id}` in topic {topic}");
        return Ok(ExitCode::from(1));
    };
    let result = render::show(out, record).map(|()| ExitCode::SUCCESS);
    finish(out, result)
}
