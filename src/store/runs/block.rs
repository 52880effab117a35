//! Blocks: the unit records are written in. A block holds a few KiB of records in key
//! order under one sled key, so a flush of a thousand settled messages costs a handful
//! of sled inserts instead of a thousand.
//!
//! Encoding, repeated to the end of the block: key length (u16, big-endian), key,
//! record length (u8), record ([`Record::encode`]).

use crate::store::error::{StoreError, StoreErrorKind};
use crate::store::record::Record;

/// A block is written once it holds this many bytes.
pub(super) const BLOCK_BYTES: usize = 4096;

/// Appends one entry to a block being built.
pub(super) fn push_entry(block: &mut Vec<u8>, key: &[u8], record: &Record) {
    // Keys are journal keys (at most a journal slot long), far below u16::MAX.
    let key_len = u16::try_from(key.len()).unwrap_or(u16::MAX);
    block.extend_from_slice(&key_len.to_be_bytes());
    block.extend_from_slice(&key[..usize::from(key_len)]);
    let record = record.encode();
    block.push(record.len() as u8); // 9 or 13 bytes.
    block.extend_from_slice(&record);
}

/// The entries of an encoded block, in key order.
pub(crate) struct BlockEntries<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> BlockEntries<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], StoreError> {
        let end = self
            .at
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len());
        let end = end.ok_or_else(|| {
            StoreError::new(
                StoreErrorKind::Corrupt,
                format!(
                    "record block of {} bytes ends inside the entry at byte {}",
                    self.bytes.len(),
                    self.at
                ),
            )
        })?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn entry(&mut self) -> Result<(&'a [u8], Record), StoreError> {
        let key_len = self.take(2)?;
        let key = self.take(usize::from(u16::from_be_bytes([key_len[0], key_len[1]])))?;
        let record_len = self.take(1)?[0];
        let record = Record::decode(self.take(usize::from(record_len))?)?;
        Ok((key, record))
    }
}

impl<'a> Iterator for BlockEntries<'a> {
    type Item = Result<(&'a [u8], Record), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.bytes.len() {
            return None;
        }
        let entry = self.entry();
        if entry.is_err() {
            self.at = self.bytes.len(); // Nothing after a bad entry can be trusted.
        }
        Some(entry)
    }
}

/// The record of `key` in an encoded block.
pub(super) fn find(block: &[u8], key: &[u8]) -> Result<Option<Record>, StoreError> {
    for entry in BlockEntries::new(block) {
        let (held, record) = entry?;
        match held.cmp(key) {
            std::cmp::Ordering::Less => continue,
            std::cmp::Ordering::Equal => return Ok(Some(record)),
            std::cmp::Ordering::Greater => break,
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::record::{Settled, SettledOutcome};
    use std::time::{Duration, SystemTime};

    fn settled(secs: u64) -> Record {
        Record::Settled(Settled {
            outcome: SettledOutcome::Processed,
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
        })
    }

    #[test]
    fn entries_round_trip_and_are_found_by_key() {
        let mut block = Vec::new();
        for i in 0..50u64 {
            push_entry(&mut block, format!("key-{i:03}").as_bytes(), &settled(i));
        }
        let read: Vec<_> = BlockEntries::new(&block).map(|e| e.unwrap()).collect();
        assert_eq!(read.len(), 50);
        assert_eq!(read[7], (&b"key-007"[..], settled(7)));
        assert_eq!(find(&block, b"key-042").unwrap(), Some(settled(42)));
        assert_eq!(find(&block, b"key-0425").unwrap(), None);
        assert_eq!(find(&block, b"a").unwrap(), None);
    }

    #[test]
    fn a_cut_block_is_corrupt_not_a_panic() {
        let mut block = Vec::new();
        push_entry(&mut block, b"key", &settled(1));
        for cut in 0..block.len() {
            let all: Vec<_> = BlockEntries::new(&block[..cut]).collect();
            assert!(all.iter().all(|e| e.is_err()) || cut == 0, "cut at {cut}");
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_decode_or_fail_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let decoded: Vec<_> = BlockEntries::new(&bytes).collect();
            let good: Vec<_> = decoded.iter().take_while(|e| e.is_ok()).collect();
            // Whatever decodes is written back the same way.
            let mut again = Vec::new();
            for entry in good.iter().copied().flatten() {
                push_entry(&mut again, entry.0, &entry.1);
            }
            proptest::prop_assert_eq!(&bytes[..again.len()], &again[..]);
            let _ = find(&bytes, b"key");
        }
    }
}
