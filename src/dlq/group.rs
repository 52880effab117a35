//! [`group`]: dead letters counted per failure [`fingerprint`](fn@super::fingerprint), for
//! `seawall dlq groups`.

use std::collections::HashMap;
use std::time::SystemTime;

use super::record::DlqRecord;

/// Dead letters sharing one fingerprint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DlqGroup {
    /// The shared fingerprint (what `--group` selects).
    pub fingerprint: String,
    /// The failure kind.
    pub kind: String,
    /// The error message of the first record seen.
    pub example_error: String,
    /// How many records share the fingerprint.
    pub count: usize,
    /// The earliest failure time among them, when any record has one.
    pub first_seen: Option<SystemTime>,
    /// The latest failure time among them, when any record has one.
    pub last_seen: Option<SystemTime>,
    /// The id of the first record seen.
    pub example_id: String,
}

/// Groups records by [`fingerprint`](fn@super::fingerprint), most frequent first (ties by
/// fingerprint).
pub fn group<'a>(records: impl IntoIterator<Item = &'a DlqRecord>) -> Vec<DlqGroup> {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut groups: Vec<DlqGroup> = Vec::new();
    for record in records {
        let print = record.fingerprint();
        let slot = match index.get(&print) {
            Some(&slot) => slot,
            None => {
                groups.push(DlqGroup {
                    fingerprint: print.clone(),
                    kind: record.failure.kind.clone(),
                    example_error: record.failure.error.clone(),
                    count: 0,
                    first_seen: None,
                    last_seen: None,
                    example_id: record.id.clone(),
                });
                index.insert(print, groups.len() - 1);
                groups.len() - 1
            }
        };
        let group = &mut groups[slot];
        group.count += 1;
        if let Some(at) = record.failure.failed_at {
            group.first_seen = Some(group.first_seen.map_or(at, |seen| seen.min(at)));
            group.last_seen = Some(group.last_seen.map_or(at, |seen| seen.max(at)));
        }
    }
    groups.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.fingerprint.cmp(&b.fingerprint))
    });
    groups
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::message::Headers;

    fn record(id: &str, kind: &str, error: &str, at_secs: Option<u64>) -> DlqRecord {
        let mut record = DlqRecord::parse(id, None, "", Headers::new());
        record.failure.kind = kind.to_owned();
        record.failure.error = error.to_owned();
        record.failure.failed_at = at_secs.map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        record
    }

    #[test]
    fn counts_spans_and_examples_per_fingerprint() {
        let records = [
            record("1", "permanent", "order 7 rejected", Some(50)),
            record("2", "exhausted", "timeout", None),
            record("3", "permanent", "order 8 rejected", Some(10)),
            record("4", "permanent", "order 9 rejected", None),
            record("5", "contract", "bad field 'x'", Some(5)),
        ];
        let groups = group(&records);
        let at = |s| Some(SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(
            groups[0],
            DlqGroup {
                fingerprint: "permanent: order <n> rejected".into(),
                kind: "permanent".into(),
                example_error: "order 7 rejected".into(),
                count: 3,
                first_seen: at(10),
                last_seen: at(50),
                example_id: "1".into(),
            }
        );
        // Ties by fingerprint: `contract…` before `exhausted`.
        let rest: Vec<_> = groups[1..]
            .iter()
            .map(|g| (g.fingerprint.as_str(), g.count, g.first_seen))
            .collect();
        assert_eq!(
            rest,
            [
                ("contract: bad field <value>", 1, at(5)),
                ("exhausted: timeout", 1, None)
            ]
        );
    }

    #[test]
    fn no_records_no_groups() {
        assert!(group(&[]).is_empty());
    }
}
