//! [`plan_replay`]: which of the selected dead letters a replay sends, in what order, and
//! which it skips or refuses and why.

use std::collections::HashSet;
use std::fmt;

use bytes::Bytes;

use super::ledger::ReplayLedger;
use super::order::replay_order;
use super::record::DlqRecord;
use crate::dead_letter::header;
use crate::message::Message;

/// One message a replay sends.
#[derive(Clone, Debug)]
pub struct Replay {
    /// The dead letter's id.
    pub id: String,
    /// The original topic or queue.
    pub destination: String,
    /// The original partition, when known: a replay goes back to it, so the key stays on
    /// the partition its later messages use whatever partitioner wrote them.
    pub partition: Option<i32>,
    /// What to send: see [`DlqRecord::replay_message`].
    pub message: Message,
}

/// Why a selected dead letter is not sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// It does not name its original topic or queue.
    NoDestination,
    /// It was replayed `count` times already, the limit is `max`, and `--force` was not given.
    ReplayedTooOften {
        /// Replays so far.
        count: u32,
        /// The limit.
        max: u32,
    },
    /// It was written without the original payload and headers (too large for its
    /// dead-letter route); sending it would send an empty message.
    ContentOmitted,
    /// An earlier dead letter of the same key was refused: sending this one first would
    /// break the key's order.
    BehindRefused {
        /// The refused dead letter it waits behind.
        id: String,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NoDestination => f.write_str("does not name its original topic or queue"),
            Refusal::ContentOmitted => f.write_str(
                "kept without its payload and headers (too large for the dead-letter route); the original is at the source position its headers name",
            ),
            Refusal::ReplayedTooOften { count, max } => write!(
                f,
                "replayed {count} times already (limit {max}; --force replays it anyway)"
            ),
            Refusal::BehindRefused { id } => {
                write!(
                    f,
                    "held to keep its key's order: `{id}` before it is refused"
                )
            }
        }
    }
}

/// What a replay will do with a selection.
#[derive(Clone, Debug, Default)]
pub struct ReplayPlan {
    /// What to send, in sending order.
    pub sends: Vec<Replay>,
    /// Ids replayed before, by an earlier (perhaps interrupted) run: not sent again.
    pub already_replayed: Vec<String>,
    /// Ids not sent, and why.
    pub refused: Vec<(String, Refusal)>,
}

/// How to plan.
#[derive(Clone, Debug)]
pub struct PlanOptions {
    /// A dead letter replayed this many times already is refused ...
    pub max_replays: u32,
    /// ... unless this is set.
    pub force: bool,
    /// For `seawall dlq release`: the parked ordering key. The first message sent carries
    /// [`header::RELEASE_PARK`] with it, so the pipeline lets it through the park and
    /// releases the key once it is processed.
    pub release: Option<Bytes>,
}

impl Default for PlanOptions {
    fn default() -> Self {
        Self {
            max_replays: 3,
            force: false,
            release: None,
        }
    }
}

/// Plans the replay of `records` (the selection): puts them in [`replay_order`], skips
/// those `ledger` holds, and refuses those with no destination or replayed too often —
/// and, so a key's order holds, every later dead letter of a refused one's key.
pub fn plan_replay(
    records: &[DlqRecord],
    ledger: &ReplayLedger,
    options: &PlanOptions,
) -> ReplayPlan {
    let mut plan = ReplayPlan::default();
    let mut blocked: HashSet<&[u8]> = HashSet::new();
    let mut blocker_of = std::collections::HashMap::new();
    for index in replay_order(records) {
        let record = &records[index];
        if ledger.contains(&record.id) {
            plan.already_replayed.push(record.id.clone());
            continue;
        }
        let key = record.order_key().map(|k| &k[..]);
        if let Some(key) = key.filter(|k| blocked.contains(k)) {
            let id: &String = blocker_of.get(key).unwrap_or(&record.id);
            let refusal = Refusal::BehindRefused { id: id.clone() };
            plan.refused.push((record.id.clone(), refusal));
            continue;
        }
        match replay_of(record, options) {
            Ok(replay) => plan.sends.push(replay),
            Err(refusal) => {
                if let Some(key) = key {
                    blocked.insert(key);
                    blocker_of.insert(key, record.id.clone());
                }
                plan.refused.push((record.id.clone(), refusal));
            }
        }
    }
    if let (Some(key), Some(first)) = (&options.release, plan.sends.first_mut()) {
        first.message = first
            .message
            .clone()
            .with_header(header::RELEASE_PARK, key.clone());
    }
    plan
}

fn replay_of(record: &DlqRecord, options: &PlanOptions) -> Result<Replay, Refusal> {
    if record.headers.get(header::OMITTED).is_some() {
        return Err(Refusal::ContentOmitted);
    }
    let count = record.failure.replay_count;
    if count >= options.max_replays && !options.force {
        return Err(Refusal::ReplayedTooOften {
            count,
            max: options.max_replays,
        });
    }
    let (destination, message) = record
        .replay_message()
        .map_err(|_| Refusal::NoDestination)?;
    Ok(Replay {
        id: record.id.clone(),
        destination,
        partition: record.failure.original_partition,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Headers;

    fn record(id: &str, key: &str, offset: i64, replays: u32) -> DlqRecord {
        let mut headers = Headers::new();
        headers.push(header::SOURCE, "orders");
        headers.push(header::PARTITION, "0");
        headers.push(header::OFFSET, offset.to_string());
        headers.push(header::ERROR_KIND, "permanent");
        headers.push(header::REPLAY_COUNT, replays.to_string());
        DlqRecord::parse(id, Some(Bytes::from(key.to_owned())), "p", headers)
    }

    fn ledger(ids: &[&str]) -> (tempfile::TempDir, ReplayLedger) {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = ReplayLedger::open(dir.path().join("l")).unwrap();
        ledger.record(ids.iter().copied()).unwrap();
        (dir, ledger)
    }

    #[test]
    fn sends_in_key_order_and_skips_what_was_replayed() {
        let records = [
            record("d/0/0", "a", 5, 0),
            record("d/0/1", "b", 6, 0),
            record("d/0/2", "a", 2, 0),
        ];
        let (_dir, ledger) = ledger(&["d/0/1"]);
        let plan = plan_replay(&records, &ledger, &PlanOptions::default());
        let ids: Vec<&str> = plan.sends.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["d/0/2", "d/0/0"]);
        assert_eq!(plan.already_replayed, ["d/0/1"]);
        assert_eq!(plan.sends[0].destination, "orders");
        assert_eq!(plan.sends[0].partition, Some(0));
    }

    #[test]
    fn a_refused_dead_letter_holds_its_key_back_unless_forced() {
        let records = [
            record("d/0/0", "a", 1, 3),
            record("d/0/1", "a", 2, 0),
            record("d/0/2", "b", 3, 0),
        ];
        let (_dir, ledger) = ledger(&[]);
        let plan = plan_replay(&records, &ledger, &PlanOptions::default());
        let ids: Vec<&str> = plan.sends.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["d/0/2"]);
        assert_eq!(
            plan.refused,
            [
                (
                    "d/0/0".to_owned(),
                    Refusal::ReplayedTooOften { count: 3, max: 3 }
                ),
                (
                    "d/0/1".to_owned(),
                    Refusal::BehindRefused { id: "d/0/0".into() }
                ),
            ]
        );
        let forced = PlanOptions {
            force: true,
            ..PlanOptions::default()
        };
        assert_eq!(plan_replay(&records, &ledger, &forced).sends.len(), 3);
    }

    #[test]
    fn a_release_marks_only_the_first_message() {
        let records = [record("d/0/0", "a", 1, 0), record("d/0/1", "a", 2, 0)];
        let (_dir, ledger) = ledger(&[]);
        let options = PlanOptions {
            release: Some(Bytes::from_static(b"a")),
            ..PlanOptions::default()
        };
        let plan = plan_replay(&records, &ledger, &options);
        let marks: Vec<bool> = plan
            .sends
            .iter()
            .map(|r| r.message.headers().get(header::RELEASE_PARK).is_some())
            .collect();
        assert_eq!(marks, [true, false]);
    }

    #[test]
    fn a_dead_letter_kept_without_content_is_refused_even_forced() {
        let mut omitted = record("d/0/0", "a", 1, 0);
        omitted
            .headers
            .push(header::OMITTED, "payload (2097152 bytes) left out");
        let records = [omitted, record("d/0/1", "a", 2, 0)];
        let (_dir, ledger) = ledger(&[]);
        let forced = PlanOptions {
            force: true,
            ..PlanOptions::default()
        };
        let plan = plan_replay(&records, &ledger, &forced);
        assert!(plan.sends.is_empty());
        assert_eq!(plan.refused[0].1, Refusal::ContentOmitted);
    }
}
