//! The in-flight journal: which messages are inside a handler right now.
//!
//! Crash-loop detection needs to know, after the process died, which messages it died
//! on. Flushing the store before every handler call would cost a flush per attempt; the
//! journal instead writes the key into a slot of a small file with one `pwrite` and clears
//! it with another. A write that reached the kernel survives the death of the process
//! (abort, OOM kill, segfault), which is the failure this guards against; it may not
//! survive a power loss, which no message causes. At open, slots still set are the
//! messages the last run died on.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, RwLock};
use std::time::SystemTime;

use bytes::Bytes;

use super::error::{StoreError, StoreErrorKind};
use super::record::{from_millis, millis};

const SLOT: usize = 512;
const HEADER: usize = 1 + 8 + 2;
const MAX_KEY: usize = SLOT - HEADER;
const SET: u8 = 1;
const CLEAR: u8 = 0;

#[derive(Default)]
struct Slots {
    /// Each key inside a handler: its slot and when its attempt started.
    by_key: HashMap<Bytes, (u64, SystemTime), foldhash::fast::RandomState>,
    pool: SlotPool,
}

/// The slots not held by a key.
#[derive(Default)]
struct SlotPool {
    /// Taken last-freed first, so a slot a settled message left set is usually
    /// overwritten by the next entry soon after.
    free: Vec<u64>,
    /// By slot: free, but still set in the file (its message settled, see
    /// [`InflightJournal::leave_settled`]).
    stale: Vec<bool>,
    next: u64,
}

impl SlotPool {
    /// A free slot (or a new one at the end of the file), no longer stale: its entry is
    /// about to be written over it.
    fn take(&mut self) -> u64 {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.next += 1;
            self.stale.push(false);
            self.next - 1
        });
        self.mark(slot, false);
        slot
    }

    fn give_back(&mut self, slot: u64, stale: bool) {
        self.free.push(slot);
        self.mark(slot, stale);
    }

    fn mark(&mut self, slot: u64, stale: bool) {
        if let Some(flag) = self.stale.get_mut(slot as usize) {
            *flag = stale;
        }
    }
}

/// A file of fixed-size slots, one per message inside a handler.
pub(crate) struct InflightJournal {
    /// `None` between [`close`](Self::close) and a successful [`reopen`](Self::reopen).
    file: RwLock<Option<File>>,
    slots: Mutex<Slots>,
}

fn io(err: std::io::Error) -> StoreError {
    StoreError::from_io(err)
}

fn closed() -> StoreError {
    StoreError::new(
        StoreErrorKind::Unavailable,
        "the in-flight journal is closed until the store reopens",
    )
}

fn open_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

/// The form of a key the journal and the sled store use: the key itself, or for keys
/// longer than a slot, a prefix plus a hash of the whole key. The store keeps every
/// record under this form, so the crash records the journal produces match lookups.
pub(crate) fn journal_key(key: &[u8]) -> Cow<'_, [u8]> {
    if key.len() <= MAX_KEY {
        return Cow::Borrowed(key);
    }
    // FNV-1a: fixed, so the same long key maps to the same slot key in every run.
    let hash = key.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut short = key[..MAX_KEY - 17].to_vec();
    short.extend_from_slice(format!("#{hash:016x}").as_bytes());
    Cow::Owned(short)
}

impl InflightJournal {
    /// Opens the journal at `path`, returning the entries a dead run left behind (key,
    /// when its attempt started) and clearing them.
    pub(crate) fn open(path: &Path) -> Result<(Self, Vec<(Bytes, SystemTime)>), StoreError> {
        let open_err = |e: std::io::Error| StoreError::new(StoreErrorKind::Open, e).at(path);
        let mut file = open_file(path).map_err(open_err)?;
        let mut contents = Vec::new();
        file.read_to_end(&mut contents).map_err(open_err)?;
        let left_behind = contents.chunks(SLOT).filter_map(decode_slot).collect();
        let journal = Self {
            file: RwLock::new(Some(file)),
            slots: Mutex::new(Slots::default()),
        };
        Ok((journal, left_behind))
    }

    /// Clears the journal once what it held is recorded elsewhere.
    pub(crate) fn reset(&self) -> Result<(), StoreError> {
        self.with_file(|file| file.set_len(0))?;
        *self.lock() = Slots::default();
        Ok(())
    }

    /// Closes the file, so a disk that failed can be unmounted; entries fail until
    /// [`reopen`](Self::reopen).
    pub(crate) fn close(&self) {
        *self.file.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Opens the journal at `path` again while this process runs: what the file holds is
    /// replaced by the entries of the messages inside a handler now.
    pub(crate) fn reopen(&self, path: &Path) -> Result<(), StoreError> {
        // The slots stay locked until the new file is in place, so no entry made or
        // cleared meanwhile is missed.
        let mut slots = self.lock();
        let file = open_file(path).map_err(io)?;
        file.set_len(0).map_err(io)?;
        slots.pool.stale.fill(false);
        for (key, (slot, at)) in &slots.by_key {
            write_entry(&file, key, *slot, *at).map_err(io)?;
        }
        *self.file.write().unwrap_or_else(|p| p.into_inner()) = Some(file);
        Ok(())
    }

    fn with_file(&self, op: impl FnOnce(&File) -> std::io::Result<()>) -> Result<(), StoreError> {
        // A poisoned lock holds a file or none, both consistent.
        let file = self.file.read().unwrap_or_else(|p| p.into_inner());
        op(file.as_ref().ok_or_else(closed)?).map_err(io)
    }

    fn lock(&self) -> MutexGuard<'_, Slots> {
        // Slot bookkeeping is updated in single statements; a poisoned lock is consistent.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks `key` as inside a handler since `now`.
    /// `key` must be in its journal form ([`journal_key`]).
    pub(crate) fn enter(&self, key: &[u8], now: SystemTime) -> Result<(), StoreError> {
        let slot = {
            let mut slots = self.lock();
            let Slots { by_key, pool } = &mut *slots;
            // One hash per call: the key is copied before the check, which only a
            // duplicate entry (already inside a handler) wastes.
            let (slot, _) = match by_key.entry(Bytes::copy_from_slice(key)) {
                Entry::Occupied(_) => return Ok(()),
                Entry::Vacant(vacant) => *vacant.insert((pool.take(), now)),
            };
            slot
        };
        // Written outside the lock: this runs before every handler call.
        let written = self.with_file(|file| write_entry(file, key, slot, now));
        if written.is_err() {
            // Not entered after all, so a retry writes the entry again. What the slot
            // holds now is unknown: it is cleared with the stale ones.
            let mut slots = self.lock();
            slots.by_key.remove(key);
            slots.pool.give_back(slot, true);
        }
        written
    }

    /// Marks `key` as no longer inside a handler: its call failed, and it may wait a
    /// while for its retry, so the slot is cleared now.
    pub(crate) fn leave(&self, key: &[u8]) -> Result<(), StoreError> {
        let Some((key, (slot, at))) = self.lock().by_key.remove_entry(key) else {
            return Ok(());
        };
        // The slot is freed only once its clear is written: an entry written into it
        // before that would be cleared with it.
        let cleared = self.with_file(|file| file.write_all_at(&[CLEAR], slot * SLOT as u64));
        let mut slots = self.lock();
        match cleared {
            Ok(()) => slots.pool.give_back(slot, false),
            // Still entered, so a retry clears it.
            Err(_) => {
                slots.by_key.insert(key, (slot, at));
            }
        }
        cleared
    }

    /// Marks `key`, whose message just settled, as no longer inside a handler, without
    /// writing: the slot stays set in the file until the next entry overwrites it or
    /// [`clear_stale`](Self::clear_stale) clears it. That saves a write per message;
    /// until then a crash counts the message as one it died on, which is what it is to
    /// the broker too (its completion is released only after the next flush, which
    /// clears its slot first), and a settled record found at start-up outranks the slot.
    pub(crate) fn leave_settled(&self, key: &[u8]) {
        let mut slots = self.lock();
        if let Some((slot, _)) = slots.by_key.remove(key) {
            slots.pool.give_back(slot, true);
        }
    }

    /// Clears the slots settled messages left set. Called by every flush, before the
    /// completions it releases.
    pub(crate) fn clear_stale(&self) -> Result<(), StoreError> {
        // Under the lock, so no entry is written into a slot while it is cleared.
        let mut slots = self.lock();
        let SlotPool { free, stale, .. } = &mut slots.pool;
        for &slot in free.iter() {
            let Some(flag) = stale.get_mut(slot as usize).filter(|flag| **flag) else {
                continue;
            };
            self.with_file(|file| file.write_all_at(&[CLEAR], slot * SLOT as u64))?;
            *flag = false;
        }
        Ok(())
    }
}

impl Drop for InflightJournal {
    fn drop(&mut self) {
        // A store let go without a crash leaves no settled message behind as one it died
        // on. If this fails, they are counted once; nothing else is lost.
        if let Err(err) = self.clear_stale() {
            tracing::debug!(error = %err, "in-flight journal: stale slots not cleared");
        }
    }
}

/// Writes the entry of `key` into `slot`.
fn write_entry(file: &File, key: &[u8], slot: u64, at: SystemTime) -> std::io::Result<()> {
    // Built on the stack: this runs before every handler call.
    let mut entry = [0u8; SLOT];
    entry[0] = SET;
    entry[1..9].copy_from_slice(&millis(at).to_be_bytes());
    entry[9..HEADER].copy_from_slice(&(key.len() as u16).to_be_bytes());
    entry[HEADER..HEADER + key.len()].copy_from_slice(key);
    file.write_all_at(&entry[..HEADER + key.len()], slot * SLOT as u64)
}

fn decode_slot(slot: &[u8]) -> Option<(Bytes, SystemTime)> {
    if slot.len() < HEADER || slot[0] != SET {
        return None;
    }
    let mut at = [0u8; 8];
    at.copy_from_slice(&slot[1..9]);
    let len = usize::from(u16::from_be_bytes([slot[9], slot[10]]));
    let key = slot.get(HEADER..HEADER + len)?;
    Some((
        Bytes::copy_from_slice(key),
        from_millis(u64::from_be_bytes(at)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_left_set_are_reported_at_open() {
        let dir = std::env::temp_dir().join(format!("seawall-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("inflight.journal");
        let now = from_millis(1_700_000_000_000);
        {
            let (journal, left) = InflightJournal::open(&path).unwrap();
            assert!(left.is_empty());
            for key in ["a", "b", "c"] {
                journal.enter(&Bytes::from(key), now).unwrap();
            }
            journal.leave(b"b").unwrap();
            journal.enter(&Bytes::from("d"), now).unwrap(); // reuses b's slot
        }
        let (journal, mut left) = InflightJournal::open(&path).unwrap();
        left.sort();
        let keys: Vec<_> = left.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(keys, ["a", "c", "d"]);
        assert_eq!(left[0].1, now);
        journal.reset().unwrap();
        drop(journal);
        assert!(InflightJournal::open(&path).unwrap().1.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn left_behind(path: &Path) -> Vec<Bytes> {
        let mut keys: Vec<_> = InflightJournal::open(path)
            .unwrap()
            .1
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        keys.sort();
        keys
    }

    #[test]
    fn settled_slots_stay_set_until_overwritten_or_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inflight.journal");
        let now = from_millis(1_700_000_000_000);
        let (journal, _) = InflightJournal::open(&path).unwrap();
        for key in ["a", "b", "c"] {
            journal.enter(key.as_bytes(), now).unwrap();
        }
        journal.leave_settled(b"a");
        journal.leave_settled(b"b");
        // Nothing written yet: a crash now would report all three.
        assert_eq!(left_behind(&path), ["a", "b", "c"]);
        // The next entry takes the slot freed last (b's) and overwrites it.
        journal.enter(b"d", now).unwrap();
        assert_eq!(left_behind(&path), ["a", "c", "d"]);
        journal.clear_stale().unwrap();
        assert_eq!(left_behind(&path), ["c", "d"]);
        // A failed call's slot is cleared at once.
        journal.leave(b"c").unwrap();
        assert_eq!(left_behind(&path), ["d"]);
        journal.leave_settled(b"d");
        drop(journal);
        assert!(left_behind(&path).is_empty(), "dropping the journal clears");
    }

    #[test]
    fn long_keys_get_a_stable_short_form() {
        let long = vec![b'x'; 2000];
        let short = journal_key(&long);
        assert!(short.len() <= MAX_KEY);
        assert_eq!(short, journal_key(&long));
        let mut other = long.clone();
        other[1999] = b'y';
        assert_ne!(short, journal_key(&other));
    }
}
