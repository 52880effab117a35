//! The checker: what the downstream accepted and what was dead-lettered, against what
//! was produced.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use crate::downstream::Call;
use crate::workload::{checksum, Kind, Msg};

/// Everything a run observed.
pub struct Observed<'a> {
    /// What was produced, duplicate copies included.
    pub msgs: &'a [Msg],
    /// Every call the downstream received, in arrival order.
    pub calls: &'a [Call],
    /// The SIGKILLs.
    pub kills: &'a [Kill],
    /// Dead letters: idempotency key and failure kind.
    pub dead_letters: &'a [(String, String)],
}

/// One SIGKILL.
pub struct Kill {
    /// When the signal was about to be sent.
    pub at: Instant,
    /// The name of the process it killed (its calls' `X-Chaos-Worker`).
    pub worker: String,
}

/// Whether a SIGKILL explains `again` accepting a message once more that `first` (the
/// process that made its first accepted call) had accepted: `first` was killed before
/// `again`, which another process made (its successor, or the partner). The names
/// matter, not only the times: a request written just before the kill can reach the
/// downstream after it. The partner is never killed, so nothing it had accepted is
/// explained.
fn repeat_explained(first: Option<&str>, again: &Call, kills: &[Kill]) -> bool {
    let Some(first) = first else {
        return false;
    };
    again.worker.as_deref() != Some(first)
        && kills.iter().any(|k| k.worker == first && k.at <= again.at)
}

/// The per-run figures.
#[derive(Debug, Default)]
pub struct Report {
    pub produced: usize,
    pub distinct: usize,
    pub poison: usize,
    pub delivered: usize,
    pub lost: usize,
    pub lost_dead_lettered: usize,
    pub accepted_calls: usize,
    pub repeats_after_kill: usize,
    pub repeats_unexplained: usize,
    pub reordered: usize,
    pub corrupted: usize,
    pub poison_accepted: usize,
    pub dead_lettered: usize,
    pub dead_letter_kinds: BTreeMap<String, usize>,
    pub poison_not_dead_lettered: usize,
    pub good_dead_lettered: usize,
    pub dead_lettered_twice: usize,
}

impl Report {
    /// Duplicate effects: repeats a SIGKILL does not explain; with `strict`, all.
    pub fn duplicate_effects(&self, strict: bool) -> usize {
        self.repeats_unexplained + if strict { self.repeats_after_kill } else { 0 }
    }

    /// Whether the dead letters are exactly the poison messages (as a set), and
    /// each once unless a fault explains a repeat (`faulted`) and not `strict`: a worker
    /// SIGKILLed after the write and before its ack, or a broker that went away after
    /// storing the write and before confirming it, so the worker wrote it again.
    pub fn dead_letters_exact(&self, faulted: bool, strict: bool) -> bool {
        let repeats_ok = self.dead_lettered_twice == 0 || (faulted && !strict);
        self.poison_not_dead_lettered == 0 && self.good_dead_lettered == 0 && repeats_ok
    }
}

/// The fields of an accepted body, if it parses.
fn fields(body: &[u8]) -> Option<(String, String, u64, String, String)> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let text = |name: &str| v[name].as_str().map(str::to_owned);
    Some((
        text("id")?,
        text("key")?,
        v["seq"].as_u64()?,
        text("data")?,
        text("sum")?,
    ))
}

/// Checks the run.
pub fn check(seen: &Observed) -> Report {
    let produced: HashMap<&str, &Msg> = seen.msgs.iter().map(|m| (m.id.as_str(), m)).collect();
    let mut r = Report {
        produced: seen.msgs.len(),
        distinct: produced.len(),
        poison: produced.values().filter(|m| m.kind.poison()).count(),
        ..Report::default()
    };
    // Each key's first acceptance: the process that made the call.
    let mut first: HashMap<String, Option<String>> = HashMap::new();
    let mut last_seq: HashMap<String, u64> = HashMap::new();
    for call in seen.calls.iter().filter(|c| c.accepted()) {
        r.accepted_calls += 1;
        let original = fields(&call.body).and_then(|(id, key, seq, data, sum)| {
            let m = produced.get(id.as_str())?;
            let intact = sum == checksum(&id, &key, seq, &data)
                && (m.key.as_str(), m.seq) == (key.as_str(), seq)
                && call.key.as_deref() == Some(id.as_str());
            intact.then_some(*m)
        });
        let Some(m) = original else {
            r.corrupted += 1;
            continue;
        };
        if m.kind.poison() {
            r.poison_accepted += 1;
        }
        if let Some(earlier) = first.get(&m.id) {
            match repeat_explained(earlier.as_deref(), call, seen.kills) {
                true => r.repeats_after_kill += 1,
                false => r.repeats_unexplained += 1,
            }
            continue;
        }
        first.insert(m.id.clone(), call.worker.clone());
        let last = last_seq.entry(m.key.clone()).or_insert(0);
        if m.seq < *last {
            r.reordered += 1;
        } else {
            *last = m.seq;
        }
    }
    r.delivered = first.len();
    r.lost = produced
        .values()
        .filter(|m| m.kind == Kind::Good && !first.contains_key(&m.id))
        .count();
    check_dead_letters(&mut r, &produced, seen.dead_letters);
    let dead: HashSet<&str> = seen
        .dead_letters
        .iter()
        .map(|(id, _)| id.as_str())
        .collect();
    r.lost_dead_lettered = produced
        .values()
        .filter(|m| {
            m.kind == Kind::Good && !first.contains_key(&m.id) && dead.contains(m.id.as_str())
        })
        .count();
    r
}

fn check_dead_letters(
    r: &mut Report,
    produced: &HashMap<&str, &Msg>,
    letters: &[(String, String)],
) {
    r.dead_lettered = letters.len();
    let mut ids = HashSet::new();
    for (id, kind) in letters {
        *r.dead_letter_kinds.entry(kind.clone()).or_default() += 1;
        if !ids.insert(id.as_str()) {
            r.dead_lettered_twice += 1;
            continue;
        }
        if !produced.get(id.as_str()).is_some_and(|m| m.kind.poison()) {
            r.good_dead_lettered += 1;
        }
    }
    r.poison_not_dead_lettered = produced
        .values()
        .filter(|m| m.kind.poison() && !ids.contains(m.id.as_str()))
        .count();
}

/// Calls per second in `[from, to)`: the mean and the busiest whole second.
pub fn call_rate(calls: &[Call], from: Instant, to: Instant) -> (f64, usize) {
    let inside: Vec<&Call> = calls.iter().filter(|c| from <= c.at && c.at < to).collect();
    let secs = to.duration_since(from).as_secs_f64().max(0.001);
    let mut per_second: BTreeMap<u64, usize> = BTreeMap::new();
    for c in &inside {
        *per_second
            .entry(c.at.duration_since(from).as_secs())
            .or_default() += 1;
    }
    let peak = per_second.values().copied().max().unwrap_or(0);
    (inside.len() as f64 / secs, peak)
}

/// Prints the report.
pub fn print(r: &Report, faulted: bool, strict: bool) {
    println!(
        "produced                 {} ({} distinct, {} poison)",
        r.produced, r.distinct, r.poison
    );
    println!(
        "delivered (distinct)     {} ({} accepted calls)",
        r.delivered, r.accepted_calls
    );
    println!(
        "lost                     {} (of which dead-lettered {})",
        r.lost, r.lost_dead_lettered
    );
    println!(
        "repeated after a SIGKILL {} (same idempotency key accepted again)",
        r.repeats_after_kill
    );
    println!(
        "duplicate effects        {}{}",
        r.duplicate_effects(strict),
        if strict { " (strict)" } else { "" }
    );
    println!("reordered                {}", r.reordered);
    println!("corrupted                {}", r.corrupted);
    println!("poison accepted          {}", r.poison_accepted);
    println!(
        "dead-lettered            {} {:?}",
        r.dead_lettered, r.dead_letter_kinds
    );
    println!(
        "  exactly the poison ones: {} (poison missing {}, not poison {}, again after a kill or broker restart {})",
        if r.dead_letters_exact(faulted, strict) { "yes" } else { "NO" },
        r.poison_not_dead_lettered,
        r.good_dead_lettered,
        r.dead_lettered_twice
    );
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn call(worker: &str, at: Instant) -> Call {
        Call {
            at,
            key: None,
            worker: Some(worker.into()),
            body: Default::default(),
            status: 200,
        }
    }

    #[test]
    fn a_repeat_is_explained_only_by_killing_the_process_that_had_it_accepted() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let kills = [Kill {
            at: at(10),
            worker: "main-1".into(),
        }];
        // (first accepted by, repeated by, at ms, explained)
        let cases = [
            // main-1's request may reach the downstream after its kill; a repeat by
            // another process after the kill is explained even with no kill between the
            // two calls.
            (Some("main-1"), "partner", 30, true),
            (Some("main-1"), "main-2", 30, true),
            // Before the kill, or by the same process: not explained.
            (Some("main-1"), "partner", 5, false),
            (Some("main-1"), "main-1", 30, false),
            // A process that was not killed, the partner, or an unnamed call: never.
            (Some("main-2"), "main-3", 30, false),
            (Some("partner"), "main-2", 30, false),
            (None, "main-2", 30, false),
        ];
        for (first, again, ms, explained) in cases {
            assert_eq!(
                repeat_explained(first, &call(again, at(ms)), &kills),
                explained,
                "first {first:?}, again {again} at {ms} ms"
            );
        }
    }
}
