//! Runs on a real (temporary) sled database: merges, sweeps, and what a stopped flush or
//! merge leaves behind.

use std::time::{Duration, SystemTime};

use super::*;
use crate::store::record::{Settled, SettledOutcome};

fn settled(secs: u64) -> Record {
    Record::Settled(Settled {
        outcome: SettledOutcome::Processed,
        at: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
    })
}

fn entries(keys: impl Iterator<Item = u32>, secs: u64) -> Vec<Entry> {
    let mut entries: Vec<Entry> = keys
        .map(|i| (format!("key-{i:06}").into_bytes(), settled(secs)))
        .collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries
}

fn flush(runs: &RecordRuns, trees: &Trees, entries: Vec<Entry>) {
    let capacity = entries.len() as u64;
    let run = runs
        .write_flush(trees, entries.into_iter().map(Ok), capacity)
        .unwrap()
        .unwrap();
    trees.db.flush().unwrap();
    runs.publish(run);
}

fn secs_of(runs: &RecordRuns, trees: &Trees, key: u32) -> Option<u64> {
    let record = runs
        .lookup(trees, format!("key-{key:06}").as_bytes())
        .unwrap()?;
    let at = record.at()?.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    Some(at.as_secs())
}

#[test]
fn merges_keep_the_newest_record_of_every_key_and_few_runs() {
    let trees = Trees::temporary().unwrap();
    let runs = RecordRuns::load(&trees, &KeyFilter::new()).unwrap();
    for flush_no in 0..200u32 {
        // Each flush writes 100 new keys and rewrites 10 earlier ones.
        let new = flush_no * 100..flush_no * 100 + 100;
        let again = (0..10).map(|i| (flush_no * 37 + i * 101) % (flush_no * 100 + 1));
        let mut batch = entries(new.chain(again), u64::from(flush_no) + 1);
        batch.dedup_by(|a, b| a.0 == b.0);
        flush(&runs, &trees, batch);
        while runs.merge_once(&trees).unwrap() {}
    }
    // Flushes of ~110 records: size classes (powers of sixteen) holding runs of about
    // 110 and 1,760 records (and one of 28,160 once there are 28,160), with at most
    // fifteen runs in each.
    assert!(runs.count() <= 30, "{} runs for 20,000 keys", runs.count());
    let mut newest = std::collections::HashMap::new();
    for flush_no in 0..200u32 {
        for key in flush_no * 100..flush_no * 100 + 100 {
            newest.insert(key, u64::from(flush_no) + 1);
        }
        for i in 0..10 {
            newest.insert(
                (flush_no * 37 + i * 101) % (flush_no * 100 + 1),
                u64::from(flush_no) + 1,
            );
        }
    }
    for (key, secs) in &newest {
        assert_eq!(secs_of(&runs, &trees, *key), Some(*secs), "key {key}");
    }
    assert_eq!(secs_of(&runs, &trees, 20_000), None);
    let mut count = 0;
    runs.for_each(&trees, Vec::new(), |_, _| count += 1)
        .unwrap();
    assert_eq!(count, 20_000);
}

#[test]
fn flushes_of_very_different_sizes_do_not_pile_up_runs() {
    let trees = Trees::temporary().unwrap();
    let runs = RecordRuns::load(&trees, &KeyFilter::new()).unwrap();
    let mut next = 0u32;
    for flush_no in 0..120u32 {
        // 1, 200, 7, 1,000, ...: never sixteen neighbours of about the same size.
        let size = [1, 200, 7, 1_000][flush_no as usize % 4] * (1 + flush_no / 4);
        flush(&runs, &trees, entries(next..next + size, 1));
        next += size;
        while runs.merge_once(&trees).unwrap() {}
        assert!(runs.count() <= MAX_RUNS, "{} runs", runs.count());
    }
    let mut count = 0;
    runs.for_each(&trees, Vec::new(), |_, _| count += 1)
        .unwrap();
    assert_eq!(count, u64::from(next));
}

#[test]
fn a_sweep_drops_old_runs_whole_and_rewrites_mixed_ones() {
    let trees = Trees::temporary().unwrap();
    let runs = RecordRuns::load(&trees, &KeyFilter::new()).unwrap();
    flush(&runs, &trees, entries(0..100, 10)); // all old
    let mut mixed = entries(100..150, 10);
    mixed.extend(entries(150..200, 1_000));
    flush(&runs, &trees, mixed);
    flush(&runs, &trees, entries(200..300, 1_000)); // all fresh
    let cut = SystemTime::UNIX_EPOCH + Duration::from_secs(500);
    assert_eq!(runs.sweep(&trees, cut).unwrap(), 150);
    assert_eq!(secs_of(&runs, &trees, 42), None);
    assert_eq!(secs_of(&runs, &trees, 120), None);
    assert_eq!(secs_of(&runs, &trees, 160), Some(1_000));
    assert_eq!(secs_of(&runs, &trees, 250), Some(1_000));
    assert_eq!(runs.sweep(&trees, cut).unwrap(), 0);
    let reloaded = RecordRuns::load(&trees, &KeyFilter::new()).unwrap();
    let mut count = 0;
    reloaded
        .for_each(&trees, Vec::new(), |_, _| count += 1)
        .unwrap();
    assert_eq!(
        count, 150,
        "the rewritten run replaced the old one on disk too"
    );
}

#[test]
fn what_a_stopped_flush_or_merge_left_is_removed_at_open() {
    let trees = Trees::temporary().unwrap();
    let runs = RecordRuns::load(&trees, &KeyFilter::new()).unwrap();
    flush(&runs, &trees, entries(0..300, 1));
    flush(&runs, &trees, entries(200..400, 2));
    // A merge that wrote its output but stopped before removing its inputs.
    let (newer, older) = {
        let runs = runs.read();
        (Arc::clone(&runs[0]), Arc::clone(&runs[1]))
    };
    let id = RunId {
        first: older.id.first,
        last: newer.id.last,
        rewrite: 0,
    };
    let sources: Vec<Source<'_>> = vec![
        Box::new(newer.entries(&trees.blocks)),
        Box::new(older.entries(&trees.blocks)),
    ];
    runs.write_run(&trees, id, Merged::new(sources), 500)
        .unwrap();
    // A flush that stopped before its marker.
    let mut writer = RunWriter::new(
        &trees.blocks,
        RunId {
            first: 9,
            last: 9,
            rewrite: 0,
        },
        10,
        &runs.hasher,
    );
    for (key, record) in entries(1000..1200, 3) {
        writer.push(&key, &record).unwrap();
    }
    drop(writer);

    let filter = KeyFilter::new();
    let reloaded = RecordRuns::load(&trees, &filter).unwrap();
    assert_eq!(reloaded.count(), 1, "only the merged run is left");
    assert_eq!(secs_of(&reloaded, &trees, 100), Some(1));
    assert_eq!(secs_of(&reloaded, &trees, 250), Some(2));
    assert_eq!(secs_of(&reloaded, &trees, 1100), None);
    assert!(filter.may_contain(b"key-000399"));
    let blocks_left = trees.blocks.iter().count();
    let mut count = 0;
    reloaded
        .for_each(&trees, Vec::new(), |_, _| count += 1)
        .unwrap();
    assert_eq!(count, 400);
    assert!(blocks_left > 0 && trees.markers.len() == 1);
}
