//! Helpers for the `seawall dlq replay` end-to-end tests: running the command against a
//! worker's config, waiting for dead letters, checking deliveries.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::downstream::Call;
use super::worker_proc::WorkerProc;

pub fn config_of(worker: &WorkerProc) -> PathBuf {
    worker.dir.path().join("seawall.toml")
}

pub fn dlq(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seawall"))
        .arg("dlq")
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

pub fn dlq_ok(config: &Path, args: &[&str]) -> String {
    let out = dlq(config, args);
    assert!(
        out.status.success(),
        "seawall dlq {args:?}: {:?}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn json(config: &Path, args: &[&str]) -> Vec<Value> {
    let text = dlq_ok(config, args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Waits until `seawall dlq list` shows `n` dead letters.
pub async fn until_dead_lettered(config: &Path, n: usize, secs: u64) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let listed = json(config, &["list", "--format", "json", "--all"]);
        if listed.len() >= n || Instant::now() > deadline {
            return listed;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Records in the topic (each partition read to its end).
/// (key, seq) of each successful delivery, in arrival order.
pub fn deliveries(calls: &[Call]) -> Vec<(String, u64)> {
    calls
        .iter()
        .filter(|c| c.status < 300)
        .map(|c| {
            let key = c.body["key"].as_str().unwrap().to_owned();
            (key, c.body["seq"].as_u64().unwrap())
        })
        .collect()
}

pub fn assert_once_in_key_order(delivered: &[(String, u64)]) {
    let mut seen = HashSet::new();
    let mut last: BTreeMap<&str, u64> = BTreeMap::new();
    for (key, seq) in delivered {
        assert!(seen.insert((key, seq)), "{key}/{seq} delivered twice");
        if let Some(prev) = last.insert(key, *seq) {
            assert!(prev < *seq, "{key}: {seq} after {prev}");
        }
    }
}
