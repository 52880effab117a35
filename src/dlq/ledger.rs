//! [`ReplayLedger`]: which dead letters a route has replayed, kept in a file so an
//! interrupted replay resumes where it stopped and a repeated one sends nothing twice; and
//! [`append_audit`], the operators' audit trail of replays.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// The ids of the dead letters replayed from one route, one per line in an append-only
/// file. An id is written only after the broker confirmed the replayed message, and the
/// file is synced after each batch, so a crash can at worst forget the last batch — which
/// a resumed replay then sends again, and the pipeline's idempotency check skips.
#[derive(Debug)]
pub struct ReplayLedger {
    path: PathBuf,
    replayed: HashSet<String>,
}

impl ReplayLedger {
    /// Opens (or starts) the ledger at `path`, creating its directory.
    pub fn open(path: impl Into<PathBuf>) -> io::Result<Self> {
        let path = path.into();
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let replayed = match File::open(&path) {
            Ok(file) => read_ids(file)?,
            Err(err) if err.kind() == io::ErrorKind::NotFound => HashSet::new(),
            Err(err) => return Err(err),
        };
        Ok(Self { path, replayed })
    }

    /// Where the ledger lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the dead letter `id` was replayed already.
    pub fn contains(&self, id: &str) -> bool {
        self.replayed.contains(id)
    }

    /// How many ids the ledger holds.
    pub fn len(&self) -> usize {
        self.replayed.len()
    }

    /// Whether the ledger is empty.
    pub fn is_empty(&self) -> bool {
        self.replayed.is_empty()
    }

    /// Records `ids` as replayed, durably (the file is synced before this returns).
    pub fn record<'a>(&mut self, ids: impl IntoIterator<Item = &'a str>) -> io::Result<()> {
        let mut lines = String::new();
        let mut added = Vec::new();
        for id in ids {
            if !self.replayed.contains(id) {
                lines.push_str(id);
                lines.push('\n');
                added.push(id.to_owned());
            }
        }
        if lines.is_empty() {
            return Ok(());
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        file.write_all(lines.as_bytes())?;
        file.sync_data()?;
        self.replayed.extend(added);
        Ok(())
    }
}

fn read_ids(file: File) -> io::Result<HashSet<String>> {
    let mut ids = HashSet::new();
    for line in BufReader::new(file).lines() {
        let line = line?;
        // A line cut short by a crash has no newline; its id was not confirmed as
        // written, so sending it again is the safe side — but a cut line cannot be told
        // from a whole one here, and the pipeline skips a second copy anyway.
        if !line.is_empty() {
            ids.insert(line);
        }
    }
    Ok(ids)
}

/// One replay as the audit trail records it.
#[derive(Clone, Debug)]
pub struct AuditEntry<'a> {
    /// Who ran it (the login name, or `unknown`).
    pub who: &'a str,
    /// The route.
    pub route: &'a str,
    /// The command as typed: subcommand and filters.
    pub command: &'a str,
    /// Dead letters the filters selected.
    pub selected: usize,
    /// Messages sent.
    pub sent: usize,
    /// Selected, but replayed before (skipped).
    pub skipped: usize,
    /// Selected, but refused (replayed too often, no destination, or behind one of those).
    pub refused: usize,
    /// How it ended: `done`, `dry-run`, `canary-failed`, `interrupted`, `failed: …`.
    pub outcome: &'a str,
}

/// Appends one line for `entry` to the audit log at `path` (created when missing), with
/// the current time in RFC 3339, and syncs it.
pub fn append_audit(path: &Path, entry: &AuditEntry<'_>) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let line = format!(
        "{} who={} route={} command={:?} selected={} sent={} skipped={} refused={} outcome={:?}\n",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
        entry.who,
        entry.route,
        entry.command,
        entry.selected,
        entry.sent,
        entry.skipped,
        entry.refused,
        entry.outcome,
    );
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(line.as_bytes())?;
    file.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_ids_survive_a_reopen_once_each() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dlq").join("orders.replayed");
        let mut ledger = ReplayLedger::open(&path).unwrap();
        assert!(ledger.is_empty());
        ledger.record(["t/0/1", "t/0/2"]).unwrap();
        ledger.record(["t/0/2", "t/0/3"]).unwrap();
        let reopened = ReplayLedger::open(&path).unwrap();
        assert_eq!(reopened.len(), 3);
        assert!(reopened.contains("t/0/3") && !reopened.contains("t/0/4"));
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text, "t/0/1\nt/0/2\nt/0/3\n");
    }

    #[test]
    fn audit_lines_append() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dlq-audit.log");
        let entry = AuditEntry {
            who: "alice",
            route: "orders",
            command: "replay --kind permanent",
            selected: 3,
            sent: 2,
            skipped: 1,
            refused: 0,
            outcome: "done",
        };
        append_audit(&path, &entry).unwrap();
        append_audit(&path, &entry).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.contains(
            "who=alice route=orders command=\"replay --kind permanent\" selected=3 sent=2"
        ));
    }
}
