//! The sample workload: orders (or payments) from ten customers, with the troubles an
//! integration meets — a slow customer, a flaky one, a few poison messages and producer
//! retries that send some messages twice.

use std::collections::{BTreeMap, HashMap};

use serde_json::json;

/// The customers; `slow-sam` and `flaky-fred` get special treatment from the downstream.
pub const CUSTOMERS: [&str; 10] = [
    "alice",
    "bob",
    "carol",
    "dave",
    "erin",
    "flaky-fred",
    "grace",
    "heidi",
    "ivan",
    "slow-sam",
];

/// Every how-many-th message is poison (the downstream rejects it with 400).
const POISON_EVERY: usize = 25;
/// One message in this many is produced twice (a producer retry after a lost ack).
const DUPLICATE_ONE_IN: usize = 10;

/// What a message is meant to exercise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// An ordinary message.
    Normal,
    /// From `slow-sam`: the downstream takes 300 ms.
    Slow,
    /// From `flaky-fred`: the downstream fails twice with 503 first.
    Flaky,
    /// Contains `"poison"`: the downstream rejects it, Seawall dead-letters it.
    Poison,
    /// A second copy of the message before it, same idempotency key.
    Duplicate,
}

impl Class {
    /// A short label for the producer's summary.
    pub fn label(self) -> &'static str {
        match self {
            Class::Normal => "normal",
            Class::Slow => "slow (slow-sam)",
            Class::Flaky => "flaky (flaky-fred)",
            Class::Poison => "poison",
            Class::Duplicate => "duplicate copies",
        }
    }
}

/// One message to produce.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    /// The idempotency key, unique per run and route.
    pub key: String,
    /// The customer: Kafka record key, RabbitMQ routing and ordering key.
    pub customer: &'static str,
    /// Position in the customer's sequence on this route.
    pub seq: u64,
    /// The JSON body.
    pub payload: String,
    /// What it exercises.
    pub class: Class,
}

/// `count` distinct messages (plus duplicate copies) whose keys start with `prefix`;
/// the same `seed` gives the same workload.
pub fn generate(prefix: &str, count: usize, seed: u64) -> Vec<Item> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut seqs: HashMap<&'static str, u64> = HashMap::new();
    let mut items = Vec::with_capacity(count + count / DUPLICATE_ONE_IN + 1);
    for i in 0..count {
        let customer = CUSTOMERS[rng.usize(..CUSTOMERS.len())];
        let seq = seqs.entry(customer).or_insert(0);
        *seq += 1;
        let key = format!("{prefix}-{i}");
        let poison = i % POISON_EVERY == POISON_EVERY / 2;
        let mut body = json!({
            "id": key,
            "customer": customer,
            "seq": *seq,
            "amount": (rng.u32(100..100_000) as f64) / 100.0,
            "currency": "EUR",
        });
        if poison {
            body["note"] = json!("poison");
        }
        let class = match customer {
            _ if poison => Class::Poison,
            "slow-sam" => Class::Slow,
            "flaky-fred" => Class::Flaky,
            _ => Class::Normal,
        };
        let item = Item {
            key,
            customer,
            seq: *seq,
            payload: body.to_string(),
            class,
        };
        if rng.usize(..DUPLICATE_ONE_IN) == 0 {
            let copy = Item {
                class: Class::Duplicate,
                ..item.clone()
            };
            items.push(item);
            items.push(copy);
        } else {
            items.push(item);
        }
    }
    items
}

/// Counts by class, and how many distinct messages the downstream should accept.
#[derive(Debug, Default, PartialEq)]
pub struct Tally {
    /// Messages sent per class.
    pub by_class: BTreeMap<Class, usize>,
    /// Messages sent in all, copies included.
    pub sent: usize,
    /// Distinct messages the downstream should accept (all but the poison ones).
    pub expect_delivered: usize,
}

/// Tallies a workload.
pub fn tally(items: &[Item]) -> Tally {
    let mut tally = Tally::default();
    for item in items {
        *tally.by_class.entry(item.class).or_default() += 1;
        tally.sent += 1;
        if !matches!(item.class, Class::Poison | Class::Duplicate) {
            tally.expect_delivered += 1;
        }
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn the_workload_has_every_trouble_and_consistent_keys() {
        let items = generate("run1-o", 400, 7);
        let t = tally(&items);
        for class in [
            Class::Normal,
            Class::Slow,
            Class::Flaky,
            Class::Poison,
            Class::Duplicate,
        ] {
            assert!(
                t.by_class.get(&class).copied().unwrap_or(0) > 0,
                "{class:?}"
            );
        }
        assert_eq!(t.by_class[&Class::Poison], 400 / POISON_EVERY);
        let distinct: HashSet<&str> = items.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(distinct.len(), 400);
        assert_eq!(t.sent, 400 + t.by_class[&Class::Duplicate]);
        assert_eq!(t.expect_delivered, 400 - t.by_class[&Class::Poison]);
        // A copy repeats the message right before it, byte for byte.
        for pair in items.windows(2) {
            if pair[1].class == Class::Duplicate {
                assert_eq!(pair[0].key, pair[1].key);
                assert_eq!(pair[0].payload, pair[1].payload);
            }
        }
    }

    #[test]
    fn sequences_increase_per_customer_and_payloads_say_so() {
        let items = generate("p", 200, 1);
        let mut last: HashMap<&str, u64> = HashMap::new();
        for item in items.iter().filter(|i| i.class != Class::Duplicate) {
            let previous = last.insert(item.customer, item.seq).unwrap_or(0);
            assert_eq!(item.seq, previous + 1, "{item:?}");
            let body: serde_json::Value = serde_json::from_str(&item.payload).unwrap();
            assert_eq!(body["seq"], item.seq);
            assert_eq!(body["customer"], item.customer);
            assert_eq!(body["id"], item.key.as_str());
            assert_eq!(
                item.payload.contains("\"poison\""),
                item.class == Class::Poison
            );
        }
        assert_eq!(generate("p", 200, 1), items, "deterministic per seed");
    }
}
