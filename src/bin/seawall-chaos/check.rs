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
    /// When the worker was SIGKILLed.
    pub kills: &'a [Instant],
    /// Dead letters: idempotency key and failure kind.
    pub dead_letters: &'a [(String, String)],
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
    // When each key was first accepted, and whether by group-kill's partner.
    let mut first: HashMap<String, (Instant, bool)> = HashMap::new();
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
        if let Some(&(at, by_partner)) = first.get(&m.id) {
            // The partner is never killed: a kill cannot explain repeating its effects.
            let killed_between =
                !by_partner && seen.kills.iter().any(|k| at <= *k && *k <= call.at);
            match killed_between {
                true => r.repeats_after_kill += 1,
                false => r.repeats_unexplained += 1,
            }
            continue;
        }
        let by_partner = call.worker.as_deref() == Some(crate::group::PARTNER);
        first.insert(m.id.clone(), (call.at, by_partner));
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
