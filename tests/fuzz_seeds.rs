//! The `contract` fuzz target's committed seeds are valid payloads of their contracts.
//! `fuzz/seeds/make_seeds.py` encodes them by hand (single-object fingerprints included),
//! so a seed that stops decoding means the script or the contract layer changed, and the
//! fuzzer would start from garbage instead of from real encodings.
#![cfg(feature = "contracts")]

use std::path::Path;
use std::sync::Arc;

use seawall::contract::{ContractCheck, ContractRegistry, ContractSpec, Encoding};

/// `kitchen-single-object-0` → (`kitchen`, single-object); `any-…` names no contract.
fn spec_for(file: &str) -> ContractSpec {
    let (stem, rest) = file
        .split_once('-')
        .expect("seed names are STEM-ENCODING-N");
    let encoding = if rest.starts_with("binary") {
        Encoding::Binary
    } else if rest.starts_with("json") {
        Encoding::Json
    } else if rest.starts_with("single-object") {
        Encoding::SingleObject
    } else {
        panic!("seed {file}: unknown encoding")
    };
    ContractSpec {
        name: (stem != "any").then(|| stem.to_owned()),
        encoding,
        transcode_json: false,
    }
}

#[test]
fn contract_seeds_are_valid_payloads() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let registry = Arc::new(ContractRegistry::load(&fuzz.join("schemas")).unwrap());
    let mut checked = 0;
    for entry in std::fs::read_dir(fuzz.join("seeds/contract")).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let seed = std::fs::read(&path).unwrap();
        let check = ContractCheck::new(Arc::clone(&registry), &spec_for(&file)).unwrap();
        // The first byte picks the fuzz target's check; the payload follows.
        let decoded = check.check(&seed[1..]);
        assert!(decoded.is_ok(), "seed {file}: {:?}", decoded.err());
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} contract seeds");
}
