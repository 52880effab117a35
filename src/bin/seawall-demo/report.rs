//! Waits for the downstream to have everything, then says what happened on the way:
//! the worker's counters per route (from its Prometheus `/metrics`) and the downstream's
//! own view (delivered, duplicates, reordering).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Deserialize;

/// The metric counting messages per route and outcome.
const METRIC: &str = "seawall_messages_total";
/// Outcomes in the order the summary shows them.
const OUTCOMES: [&str; 6] = [
    "received",
    "processed",
    "duplicate",
    "retried",
    "dead_lettered",
    "parked",
];

/// `route -> outcome -> value` for `seawall_messages_total`.
pub type Counts = BTreeMap<String, BTreeMap<String, f64>>;

/// The fields of the downstream's `/stats` the report reads.
#[derive(Debug, Default, Deserialize)]
pub struct DownstreamStats {
    requests: u64,
    delivered: u64,
    duplicates: u64,
    out_of_order: u64,
    #[serde(default)]
    out_of_order_by_customer: BTreeMap<String, u64>,
    rejected: u64,
    transient: u64,
}

/// Parses Prometheus text exposition, keeping the `seawall_messages_total` samples.
pub fn parse_metrics(text: &str) -> Counts {
    let mut counts = Counts::new();
    for line in text.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix(METRIC) else {
            continue;
        };
        let Some((labels, value)) = split_sample(rest) else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let labels = parse_labels(labels);
        if let (Some(route), Some(outcome)) = (labels.get("route"), labels.get("outcome")) {
            *counts
                .entry(route.clone())
                .or_default()
                .entry(outcome.clone())
                .or_default() += value;
        }
    }
    counts
}

/// `{labels} value [timestamp]` into the label text and the value.
fn split_sample(rest: &str) -> Option<(&str, &str)> {
    let rest = rest.strip_prefix('{')?;
    // The closing brace is the first one outside a quoted value.
    let (mut quoted, mut escaped) = (false, false);
    let end = rest.char_indices().find_map(|(i, c)| {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(i),
            _ => {}
        }
        None
    })?;
    let value = rest[end + 1..].split_whitespace().next()?;
    Some((&rest[..end], value))
}

/// `a="x",b="y\"z"` into a map, unescaping values.
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        let name: String = chars
            .by_ref()
            .skip_while(|c| *c == ',' || c.is_whitespace())
            .take_while(|c| *c != '=')
            .collect();
        if chars.next() != Some('"') {
            return labels;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => break,
                },
                c => value.push(c),
            }
        }
        labels.insert(name.trim().to_owned(), value);
    }
}

/// Polls until the downstream has `expect` distinct deliveries or `timeout` passes;
/// prints the summary and returns whether the run was clean.
pub async fn run(
    downstream: &str,
    admin: &str,
    expect: u64,
    timeout: Duration,
) -> anyhow::Result<bool> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let deadline = Instant::now() + timeout;
    let mut stats = DownstreamStats::default();
    let mut last_shown = Instant::now();
    while Instant::now() < deadline {
        match fetch_stats(&client, downstream).await {
            Ok(now) => stats = now,
            Err(e) => eprintln!("report: {e:#}"),
        }
        if stats.delivered >= expect {
            break;
        }
        if last_shown.elapsed() >= Duration::from_secs(5) {
            println!("waiting: {}/{expect} delivered", stats.delivered);
            last_shown = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let timed_out = stats.delivered < expect;
    // The worker settles a message after the downstream answers: give its counters a
    // moment to catch up with what the downstream already has.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let counts = match fetch_metrics(&client, admin).await {
        Ok(counts) => counts,
        Err(e) => {
            eprintln!("report: {e:#}");
            Counts::new()
        }
    };
    print_worker(&counts);
    print_downstream(&stats, expect);
    let clean = !timed_out && stats.duplicates == 0 && stats.out_of_order == 0;
    match (timed_out, clean) {
        (true, _) => println!(
            "\nFAILED: only {} of {expect} delivered within {}",
            stats.delivered,
            humantime::format_duration(timeout)
        ),
        (false, false) => println!("\nFAILED: the downstream saw duplicates or reordering"),
        (false, true) => println!("\nOK: every message delivered once, in order per customer"),
    }
    Ok(clean)
}

/// A GET of `url` that answers 2xx within 5 s.
pub async fn probe(url: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    get(&client, url).await.map(drop)
}

async fn fetch_stats(client: &reqwest::Client, base: &str) -> anyhow::Result<DownstreamStats> {
    let url = format!("{}/stats", base.trim_end_matches('/'));
    let text = get(client, &url).await?;
    serde_json::from_str(&text).with_context(|| format!("parsing {url}"))
}

async fn fetch_metrics(client: &reqwest::Client, base: &str) -> anyhow::Result<Counts> {
    let url = format!("{}/metrics", base.trim_end_matches('/'));
    Ok(parse_metrics(&get(client, &url).await?))
}

async fn get(client: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    let response = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?
        .error_for_status()?;
    Ok(response.text().await?)
}

fn print_worker(counts: &Counts) {
    println!("\nSeawall, per route (from /metrics):");
    print!("  {:<12}", "route");
    for outcome in OUTCOMES {
        print!(" {outcome:>13}");
    }
    println!();
    if counts.is_empty() {
        println!("  (no {METRIC} samples)");
    }
    for (route, outcomes) in counts {
        print!("  {route:<12}");
        for outcome in OUTCOMES {
            print!(" {:>13}", outcomes.get(outcome).copied().unwrap_or(0.0));
        }
        println!();
    }
}

fn print_downstream(stats: &DownstreamStats, expect: u64) {
    println!("\nDownstream's view (from /stats):");
    println!("  requests              {}", stats.requests);
    println!(
        "  delivered (distinct)  {} of {expect} expected",
        stats.delivered
    );
    println!("  rejected (400)        {}", stats.rejected);
    println!("  unavailable (503)     {}", stats.transient);
    println!("  duplicate deliveries  {}", stats.duplicates);
    println!("  out-of-order          {}", stats.out_of_order);
    for (customer, n) in &stats.out_of_order_by_customer {
        println!("    {customer:<20} {n}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_messages_counter_per_route_and_outcome() {
        let text = r#"
# HELP seawall_messages_total Messages by route and outcome.
# TYPE seawall_messages_total counter
seawall_messages_total{route="orders",outcome="processed"} 181
seawall_messages_total{outcome="duplicate",route="orders"} 19 1700000000000
seawall_messages_total{route="payments",outcome="dead_lettered"} 8
seawall_messages_total{route="odd \"name\", {x}",outcome="retried"} 2.0
seawall_messages_total_created{route="orders",outcome="processed"} 1.7e9
seawall_in_flight{route="orders"} 3
seawall_messages_total{route="orders"} 5
garbage
"#;
        let counts = parse_metrics(text);
        assert_eq!(counts["orders"]["processed"], 181.0);
        assert_eq!(counts["orders"]["duplicate"], 19.0);
        assert_eq!(counts["payments"]["dead_lettered"], 8.0);
        assert_eq!(counts["odd \"name\", {x}"]["retried"], 2.0);
        assert_eq!(counts.len(), 3);
        assert_eq!(counts["orders"].len(), 2, "{counts:?}");
    }

    #[test]
    fn reads_the_downstreams_stats() {
        let json = r#"{"requests":10,"successful":8,"delivered":7,"duplicates":1,
            "out_of_order":2,"out_of_order_by_customer":{"bob":2},"rejected":1,
            "transient":1,"delivered_by_path":{"/orders":7}}"#;
        let stats: DownstreamStats = serde_json::from_str(json).unwrap();
        assert_eq!(
            (stats.delivered, stats.duplicates, stats.out_of_order),
            (7, 1, 2)
        );
        assert_eq!(stats.out_of_order_by_customer["bob"], 2);
    }
}
