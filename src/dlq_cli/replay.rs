//! `seawall dlq replay` and `seawall dlq release`: plan, print or send, audit.

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use seawall::dlq::{
    append_audit, plan_replay, run_replay, AuditEntry, DlqRecord, PlanOptions, ReplayBackend,
    ReplayEnd, ReplayLedger, ReplayPlan, ReplaySettings,
};
use seawall::kafka::KafkaReplayer;
use serde_json::json;

use super::payload::text_or_hex;
use super::progress::ProgressView;
use super::route::{dead_letter_topics, open_queue, Route, RouteSource};
use super::Format;

/// How a replay sends.
#[derive(Args)]
pub(crate) struct SendArgs {
    /// Print exactly what would be sent, and send nothing.
    #[arg(long)]
    dry_run: bool,
    /// `--dry-run` output: `table` for people, `json` (one array, payloads included).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// At most this many messages a second (default: as fast as the broker takes them).
    #[arg(long, value_parser = parse_rate)]
    rate: Option<f64>,
    /// Send this many first, wait for the route's outcome, and stop if any fails again.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    canary: Option<u32>,
    /// How long to wait for the canary's outcome.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    canary_wait: Duration,
    /// Refuse a dead letter replayed this many times already ...
    #[arg(long, default_value_t = 3)]
    max_replays: u32,
    /// ... unless this is given.
    #[arg(long)]
    force: bool,
    /// Messages per confirmed batch.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    batch: u32,
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate.is_finite() => Ok(rate),
        _ => Err(format!("expected messages a second > 0, got `{text}`")),
    }
}

/// One replay: the route, the selection, how to send, and for `release` the key.
pub(super) struct ReplayJob<'a> {
    pub route: &'a Route,
    pub send: &'a SendArgs,
    pub release: Option<Bytes>,
    /// The command line, for the audit log.
    pub command: String,
}

impl ReplayJob<'_> {
    /// Reads the route's dead letters, selects with `select`, and replays the selection.
    pub(super) async fn run(
        &self,
        select: impl Fn(&DlqRecord) -> bool,
    ) -> anyhow::Result<ExitCode> {
        match &self.route.source {
            RouteSource::Kafka(kafka) => {
                let records = self.route.read().await?;
                let selected: Vec<DlqRecord> = records.into_iter().filter(|r| select(r)).collect();
                let topics = dead_letter_topics(&self.route.name, kafka);
                let mut backend = KafkaReplayer::new(kafka, topics)?;
                self.execute(&selected, &mut backend).await
            }
            RouteSource::Rabbitmq(rabbit) => {
                let mut queue = open_queue(rabbit, self.route.timeout).await?;
                let selected: Vec<DlqRecord> = queue
                    .records()
                    .iter()
                    .filter(|r| select(r))
                    .cloned()
                    .collect();
                let result = match queue.replayer().await {
                    Ok(mut backend) => {
                        let header = rabbit.ordering_header.as_str();
                        self.execute_with(&selected, &mut backend, |plan| {
                            carry_ordering_key(plan, &selected, header)
                        })
                        .await
                    }
                    Err(err) => Err(err.into()),
                };
                // What was replayed is removed; the rest goes back in order.
                queue.close().await;
                result
            }
        }
    }

    async fn execute<B: ReplayBackend>(
        &self,
        selected: &[DlqRecord],
        backend: &mut B,
    ) -> anyhow::Result<ExitCode> {
        self.execute_with(selected, backend, |_| {}).await
    }

    /// Plans, lets `adjust` translate the plan for the broker, then prints or sends.
    async fn execute_with<B: ReplayBackend>(
        &self,
        selected: &[DlqRecord],
        backend: &mut B,
        adjust: impl FnOnce(&mut ReplayPlan),
    ) -> anyhow::Result<ExitCode> {
        let mut ledger = ReplayLedger::open(self.route.ledger_path())?;
        let options = PlanOptions {
            max_replays: self.send.max_replays,
            force: self.send.force,
            release: self.release.clone(),
        };
        let mut plan = plan_replay(selected, &ledger, &options);
        adjust(&mut plan);
        report_plan(selected.len(), &plan);
        if self.send.dry_run {
            print_dry_run(&plan, self.send.format)?;
            self.audit(selected.len(), &plan, 0, "dry-run")?;
            return Ok(ExitCode::SUCCESS);
        }
        let settings = ReplaySettings {
            batch_size: self.send.batch as usize,
            rate: self.send.rate,
            canary: self.send.canary.map(|k| k as usize),
            canary_wait: self.send.canary_wait,
        };
        let mut view = ProgressView::new();
        let result = run_replay(
            &plan.sends,
            backend,
            &mut ledger,
            &settings,
            &mut |p| view.update(p),
            interrupted(),
        )
        .await;
        let summary = match result {
            Ok(summary) => summary,
            Err(err) => {
                self.audit(selected.len(), &plan, 0, &format!("failed: {err}"))?;
                return Err(err.into());
            }
        };
        let (outcome, code) = match &summary.end {
            ReplayEnd::Done if plan.refused.is_empty() => ("done".to_owned(), ExitCode::SUCCESS),
            ReplayEnd::Done => ("done, some refused".to_owned(), ExitCode::from(1)),
            ReplayEnd::CanaryFailed(outcome) => {
                (format!("canary-failed: {outcome:?}"), ExitCode::from(1))
            }
            ReplayEnd::Interrupted => ("interrupted".to_owned(), ExitCode::from(130)),
        };
        eprintln!(
            "seawall dlq: replayed {} of {} in {:.1}s ({}); ledger {}",
            summary.sent,
            plan.sends.len(),
            summary.elapsed.as_secs_f64(),
            outcome,
            ledger.path().display()
        );
        self.audit(selected.len(), &plan, summary.sent, &outcome)?;
        Ok(code)
    }

    fn audit(
        &self,
        selected: usize,
        plan: &ReplayPlan,
        sent: usize,
        outcome: &str,
    ) -> io::Result<()> {
        let who = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "unknown".to_owned());
        append_audit(
            &self.route.audit_path(),
            &AuditEntry {
                who: &who,
                route: &self.route.name,
                command: &self.command,
                selected,
                sent,
                skipped: plan.already_replayed.len(),
                refused: plan.refused.len(),
                outcome,
            },
        )
    }
}

/// A replay reaches its queue through the default exchange, so its routing key — a
/// RabbitMQ route's ordering key when no ordering header is set — becomes the queue's
/// name. The ordering key the dead letter recorded goes along as the route's ordering
/// header, which the route reads first, so the key's order holds.
fn carry_ordering_key(plan: &mut ReplayPlan, records: &[DlqRecord], header: &str) {
    let recorded: std::collections::HashMap<&str, &Bytes> = records
        .iter()
        .filter_map(|r| Some((r.id.as_str(), r.failure.ordering_key.as_ref()?)))
        .collect();
    for replay in &mut plan.sends {
        let Some(key) = recorded.get(replay.id.as_str()) else {
            continue;
        };
        if replay.message.headers().get(header).is_none() {
            replay.message = replay.message.clone().with_header(header, (*key).clone());
        }
    }
}

/// Resolves on SIGINT or SIGTERM: the run stops after the batch in flight.
async fn interrupted() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = ctrl_c.await;
}

/// What will happen, on stderr: counts, and every refusal with its reason.
fn report_plan(selected: usize, plan: &ReplayPlan) {
    eprintln!(
        "seawall dlq: {selected} selected: {} to send, {} already replayed (skipped), {} refused",
        plan.sends.len(),
        plan.already_replayed.len(),
        plan.refused.len()
    );
    for (id, refusal) in &plan.refused {
        eprintln!("seawall dlq: not replaying `{id}`: {refusal}");
    }
}

fn print_dry_run(plan: &ReplayPlan, format: Format) -> io::Result<()> {
    let out = &mut io::BufWriter::new(io::stdout().lock());
    match format {
        Format::Json => {
            let array: Vec<_> = plan.sends.iter().map(replay_json).collect();
            serde_json::to_writer_pretty(&mut *out, &array)?;
            writeln!(out)?;
        }
        Format::Table => {
            for (n, replay) in plan.sends.iter().enumerate() {
                let m = &replay.message;
                let partition = replay
                    .partition
                    .map_or(String::new(), |p| format!(" partition {p}"));
                let key = m.key().map_or("-".to_owned(), |k| text_or_hex(k));
                writeln!(
                    out,
                    "{:>6}  {} -> {}{partition}  key {key}",
                    n + 1,
                    replay.id,
                    replay.destination
                )?;
                for (name, value) in m.headers().iter() {
                    writeln!(out, "        {name}: {}", text_or_hex(value))?;
                }
                writeln!(
                    out,
                    "        payload ({} bytes): {}",
                    m.payload().len(),
                    text_or_hex(m.payload())
                )?;
            }
            writeln!(
                out,
                "(dry run: {} would be sent, nothing was)",
                plan.sends.len()
            )?;
        }
    }
    out.flush()
}

fn replay_json(replay: &seawall::dlq::Replay) -> serde_json::Value {
    let m = &replay.message;
    let headers: Vec<_> = m
        .headers()
        .iter()
        .map(|(name, value)| json!([name, text_or_hex(value)]))
        .collect();
    json!({
        "id": replay.id,
        "destination": replay.destination,
        "partition": replay.partition,
        "key": m.key().map(|k| text_or_hex(k)),
        "message_id": m.message_id().map(|k| text_or_hex(k)),
        "headers": headers,
        "payload": text_or_hex(m.payload()),
    })
}
