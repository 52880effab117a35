//! [`DlqFilter`]: the `--key`, `--kind`, `--since`, `--until` and `--group` selection of
//! `seawall dlq list` and `replay`.

use std::time::SystemTime;

use super::record::DlqRecord;

/// Which dead letters to select. Every criterion set must match; an empty filter matches
/// everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DlqFilter {
    /// The message key or Seawall's ordering key equals this (as UTF-8 bytes).
    pub key: Option<String>,
    /// The failure kind equals this, ignoring ASCII case (`permanent`,
    /// `DeserializationException`, `unknown`, …).
    pub kind: Option<String>,
    /// Failed at or after this time. A record with no failure time does not match.
    pub since: Option<SystemTime>,
    /// Failed before this time. A record with no failure time does not match.
    pub until: Option<SystemTime>,
    /// The record's [`fingerprint`](fn@super::fingerprint) equals this.
    pub group: Option<String>,
}

impl DlqFilter {
    /// True when the record meets every criterion set.
    pub fn matches(&self, record: &DlqRecord) -> bool {
        self.key_matches(record)
            && self
                .kind
                .as_ref()
                .is_none_or(|kind| kind.eq_ignore_ascii_case(&record.failure.kind))
            && self.time_matches(record.failure.failed_at)
            // Last: the fingerprint is the only costly criterion.
            && self
                .group
                .as_ref()
                .is_none_or(|group| *group == record.fingerprint())
    }

    fn key_matches(&self, record: &DlqRecord) -> bool {
        let Some(wanted) = &self.key else {
            return true;
        };
        let wanted = wanted.as_bytes();
        [record.key.as_ref(), record.failure.ordering_key.as_ref()]
            .into_iter()
            .flatten()
            .any(|key| key[..] == *wanted)
    }

    fn time_matches(&self, failed_at: Option<SystemTime>) -> bool {
        if self.since.is_none() && self.until.is_none() {
            return true;
        }
        let Some(at) = failed_at else {
            return false;
        };
        self.since.is_none_or(|since| at >= since) && self.until.is_none_or(|until| at < until)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::message::Headers;

    fn record(key: &str, kind: &str, error: &str, at_secs: Option<u64>) -> DlqRecord {
        let mut record =
            DlqRecord::parse("id", Some(Bytes::from(key.to_owned())), "", Headers::new());
        record.failure.kind = kind.to_owned();
        record.failure.error = error.to_owned();
        record.failure.failed_at = at_secs.map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        record
    }

    fn at(secs: u64) -> Option<SystemTime> {
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
    }

    #[test]
    fn empty_filter_matches_everything() {
        assert!(DlqFilter::default().matches(&record("k", "permanent", "x", None)));
    }

    #[test]
    fn key_matches_the_message_or_ordering_key() {
        let filter = DlqFilter {
            key: Some("customer-1".into()),
            ..DlqFilter::default()
        };
        assert!(filter.matches(&record("customer-1", "permanent", "", None)));
        assert!(!filter.matches(&record("customer-10", "permanent", "", None)));
        let mut by_ordering_key = record("other", "permanent", "", None);
        by_ordering_key.failure.ordering_key = Some(Bytes::from_static(b"customer-1"));
        assert!(filter.matches(&by_ordering_key));
    }

    #[test]
    fn kind_ignores_case() {
        let filter = DlqFilter {
            kind: Some("Permanent".into()),
            ..DlqFilter::default()
        };
        assert!(filter.matches(&record("k", "permanent", "", None)));
        assert!(!filter.matches(&record("k", "exhausted", "", None)));
    }

    #[test]
    fn time_window_is_half_open_and_needs_a_time() {
        let filter = DlqFilter {
            since: at(100),
            until: at(200),
            ..DlqFilter::default()
        };
        assert!(filter.matches(&record("k", "p", "", Some(100))));
        assert!(filter.matches(&record("k", "p", "", Some(199))));
        assert!(!filter.matches(&record("k", "p", "", Some(200))));
        assert!(!filter.matches(&record("k", "p", "", Some(99))));
        assert!(!filter.matches(&record("k", "p", "", None)));
        let open_ended = DlqFilter {
            since: at(100),
            ..DlqFilter::default()
        };
        assert!(open_ended.matches(&record("k", "p", "", Some(10_000))));
    }

    #[test]
    fn group_selects_by_fingerprint() {
        let record = record("k", "permanent", "order 17 rejected", None);
        let filter = DlqFilter {
            group: Some("permanent: order <n> rejected".into()),
            ..DlqFilter::default()
        };
        assert!(filter.matches(&record));
        let other = DlqFilter {
            group: Some("exhausted: order <n> rejected".into()),
            ..DlqFilter::default()
        };
        assert!(!other.matches(&record));
    }
}
