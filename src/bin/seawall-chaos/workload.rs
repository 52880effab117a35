//! The workload: messages with a unique `(key, seq)`, an idempotency key and a checksum
//! of their fields carried in the body; a share produced twice, a share poison.

use serde_json::json;

/// Ordering keys the messages are spread over.
pub const KEYS: usize = 64;
/// One message in this many is undecodable (not JSON: the downstream answers 400).
const UNDECODABLE_EVERY: usize = 151;
/// One message in this many always fails (`"fail": true`: the downstream answers 422).
const FAILING_EVERY: usize = 97;
/// One message in this many is produced twice (same idempotency key, same bytes).
const DUPLICATE_ONE_IN: usize = 20;

/// What a message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Should reach the downstream and be accepted.
    Good,
    /// Bytes that are not JSON.
    Undecodable,
    /// JSON the downstream always refuses.
    Failing,
}

impl Kind {
    /// Poison: should be dead-lettered, never delivered.
    pub fn poison(self) -> bool {
        self != Kind::Good
    }
}

/// One message to produce.
#[derive(Clone, Debug)]
pub struct Msg {
    /// Idempotency key, unique per run.
    pub id: String,
    /// Ordering key (Kafka record key, RabbitMQ `ordering-key` header).
    pub key: String,
    /// Position in the key's sequence, from 1.
    pub seq: u64,
    /// The payload.
    pub body: Vec<u8>,
    /// What it is.
    pub kind: Kind,
}

/// FNV-1a 64 over the fields a body carries: what `sum` in the body must equal.
pub fn checksum(id: &str, key: &str, seq: u64, data: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in format!("{id}|{key}|{seq}|{data}").bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// `count` distinct messages plus duplicate copies (each right after its original);
/// ids start with `run`; the same seed gives the same workload.
pub fn generate(run: &str, count: usize, seed: u64) -> Vec<Msg> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut seqs = vec![0u64; KEYS];
    let mut out = Vec::with_capacity(count + count / DUPLICATE_ONE_IN + 1);
    for i in 0..count {
        let k = rng.usize(..KEYS);
        seqs[k] += 1;
        let (key, seq, id) = (format!("k{k:02}"), seqs[k], format!("{run}-{i}"));
        let kind = if i % UNDECODABLE_EVERY == UNDECODABLE_EVERY / 2 {
            Kind::Undecodable
        } else if i % FAILING_EVERY == FAILING_EVERY / 3 {
            Kind::Failing
        } else {
            Kind::Good
        };
        let data: String = (0..rng.usize(8..48)).map(|_| rng.alphanumeric()).collect();
        let body = match kind {
            Kind::Undecodable => format!("\u{1}not json {id} {data}").into_bytes(),
            _ => {
                let mut body = json!({"id": id, "key": key, "seq": seq, "data": data,
                    "sum": checksum(&id, &key, seq, &data)});
                if kind == Kind::Failing {
                    body["fail"] = json!(true);
                }
                body.to_string().into_bytes()
            }
        };
        let msg = Msg {
            id,
            key,
            seq,
            body,
            kind,
        };
        if rng.usize(..DUPLICATE_ONE_IN) == 0 {
            out.push(msg.clone());
        }
        out.push(msg);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn unique_ids_poison_and_duplicates() {
        let msgs = generate("r", 2000, 3);
        let ids: HashSet<&str> = msgs.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids.len(), 2000);
        assert!(msgs.len() > 2050, "duplicates: {}", msgs.len() - 2000);
        assert!(msgs.iter().any(|m| m.kind == Kind::Undecodable));
        assert!(msgs.iter().any(|m| m.kind == Kind::Failing));
        let good = msgs.iter().find(|m| m.kind == Kind::Good).unwrap();
        let body: serde_json::Value = serde_json::from_slice(&good.body).unwrap();
        let sum = checksum(
            &good.id,
            &good.key,
            good.seq,
            body["data"].as_str().unwrap(),
        );
        assert_eq!(body["sum"], sum.as_str());
    }
}
