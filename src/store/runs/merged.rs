//! Several sources of entries in key order read as one, the newest source winning where
//! two hold the same key.

use crate::store::error::StoreError;
use crate::store::record::Record;

/// A key and its record.
pub(crate) type Entry = (Vec<u8>, Record);

/// Entries in key order, each key at most once.
pub(crate) type Source<'a> = Box<dyn Iterator<Item = Result<Entry, StoreError>> + 'a>;

/// The union of sources given newest first.
pub(crate) struct Merged<'a> {
    sources: Vec<Source<'a>>,
    heads: Vec<Option<Entry>>,
    started: bool,
    failed: bool,
}

impl<'a> Merged<'a> {
    pub(crate) fn new(sources: Vec<Source<'a>>) -> Self {
        let heads = sources.iter().map(|_| None).collect();
        Self {
            sources,
            heads,
            started: false,
            failed: false,
        }
    }

    fn refill(&mut self, source: usize) -> Result<(), StoreError> {
        self.heads[source] = self.sources[source].next().transpose()?;
        Ok(())
    }

    /// The source whose head has the smallest key; among equal keys, the newest.
    fn smallest(&self) -> Option<usize> {
        let mut best: Option<(usize, &[u8])> = None;
        for (source, head) in self.heads.iter().enumerate() {
            if let Some((key, _)) = head {
                if best.is_none_or(|(_, smallest)| key.as_slice() < smallest) {
                    best = Some((source, key));
                }
            }
        }
        best.map(|(source, _)| source)
    }

    fn advance(&mut self) -> Result<Option<Entry>, StoreError> {
        if !self.started {
            self.started = true;
            for source in 0..self.sources.len() {
                self.refill(source)?;
            }
        }
        let Some(winner) = self.smallest() else {
            return Ok(None);
        };
        let entry = self.heads[winner].take();
        self.refill(winner)?;
        if let Some((key, _)) = &entry {
            // Older sources holding the same key are shadowed: skip their entry.
            for older in winner + 1..self.sources.len() {
                if self.heads[older].as_ref().is_some_and(|(k, _)| k == key) {
                    self.refill(older)?;
                }
            }
        }
        Ok(entry)
    }
}

impl Iterator for Merged<'_> {
    type Item = Result<Entry, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let next = self.advance();
        self.failed = next.is_err();
        next.transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::record::{Settled, SettledOutcome};
    use std::time::{Duration, SystemTime};

    fn source(entries: &[(&str, u64)]) -> Source<'static> {
        let entries: Vec<Entry> = entries
            .iter()
            .map(|(key, secs)| {
                let record = Record::Settled(Settled {
                    outcome: SettledOutcome::Processed,
                    at: SystemTime::UNIX_EPOCH + Duration::from_secs(*secs),
                });
                (key.as_bytes().to_vec(), record)
            })
            .collect();
        Box::new(entries.into_iter().map(Ok))
    }

    #[test]
    fn keys_come_in_order_once_with_the_newest_record() {
        let merged = Merged::new(vec![
            source(&[("b", 3), ("d", 3)]),
            source(&[("a", 2), ("b", 2), ("c", 2)]),
            source(&[("b", 1), ("d", 1), ("e", 1)]),
        ]);
        let seen: Vec<(String, u64)> = merged
            .map(|entry| {
                let (key, record) = entry.unwrap();
                let secs = record.at().unwrap().duration_since(SystemTime::UNIX_EPOCH);
                (String::from_utf8(key).unwrap(), secs.unwrap().as_secs())
            })
            .collect();
        let expected = [("a", 2), ("b", 3), ("c", 2), ("d", 3), ("e", 1)];
        let expected: Vec<(String, u64)> =
            expected.iter().map(|(k, s)| (k.to_string(), *s)).collect();
        assert_eq!(seen, expected);
    }
}
