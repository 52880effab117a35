//! The `seawall` binary's store commands.

use std::process::Command;
use std::time::{Duration, SystemTime};

use seawall::store::{ParkRecord, SettledOutcome};
use seawall::{IdempotencyStore, SledStore};

fn seawall(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_seawall"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn stats_parked_release_and_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    {
        let store = SledStore::open(dir.path()).unwrap();
        let old = SystemTime::now() - Duration::from_secs(30 * 24 * 3600);
        store
            .settle(b"old", SettledOutcome::Processed, old)
            .unwrap();
        store
            .settle(b"new", SettledOutcome::Processed, SystemTime::now())
            .unwrap();
        let park = ParkRecord {
            blocked_by: "order-9".into(),
            since: SystemTime::now(),
        };
        store.park(b"customer-1", &park).unwrap();
        store.flush().unwrap();
    }
    let out = seawall(&["store", "--path", path, "stats"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("settled   2") && text.contains("parked    1"),
        "{text}"
    );
    let out = seawall(&["store", "--path", path, "parked"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("customer-1\tblocked by order-9"));
    let out = seawall(&["store", "--path", path, "sweep", "--older-than", "7days"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("removed 1"));
    assert!(seawall(&["store", "--path", path, "release", "customer-1"])
        .status
        .success());
    let again = seawall(&["store", "--path", path, "release", "customer-1"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not parked"));
}

#[test]
fn a_missing_store_is_named() {
    let out = seawall(&["store", "--path", "/nonexistent/seawall-store", "stats"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/seawall-store"));
}
