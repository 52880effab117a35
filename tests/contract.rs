//! Contract checks against the shipped `schemas/`: each encoding, hostile payloads,
//! wrong schemas. Run with `cargo test --no-default-features --features contracts`.
#![cfg(feature = "contracts")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::GenericSingleObjectWriter;
use seawall::contract::{
    Contract, ContractCheck, ContractRegistry, ContractSpec, ContractViolation, Encoding,
};
use serde_json::json;

/// Records the largest single allocation of the test process, so the hostile-length tests
/// can show the decoder never asked for the memory a length field claimed.
struct PeakAlloc;
static LARGEST_ALLOCATION: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST_ALLOCATION.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST_ALLOCATION.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST_ALLOCATION.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: PeakAlloc = PeakAlloc;

fn registry() -> Arc<ContractRegistry> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    Arc::new(ContractRegistry::load(&dir).expect("shipped schemas load"))
}

fn check(name: Option<&str>, encoding: Encoding) -> ContractCheck {
    let spec = ContractSpec {
        name: name.map(String::from),
        encoding,
        transcode_json: false,
    };
    ContractCheck::new(registry(), &spec).expect("valid spec")
}

fn order() -> Value {
    Value::Record(vec![
        ("id".into(), Value::String("o-1".into())),
        ("customer".into(), Value::String("c-1".into())),
        ("amount".into(), Value::Double(12.5)),
        ("currency".into(), Value::String("EUR".into())),
        (
            "note".into(),
            Value::Union(1, Box::new(Value::String("rush".into()))),
        ),
    ])
}

fn customer() -> Value {
    let address = Value::Record(vec![
        ("street".into(), Value::String("Main St 1".into())),
        ("city".into(), Value::String("Berlin".into())),
        ("country".into(), Value::String("DE".into())),
    ]);
    Value::Record(vec![
        ("id".into(), Value::String("c-1".into())),
        ("name".into(), Value::String("Ada".into())),
        ("email".into(), Value::Union(0, Box::new(Value::Null))),
        ("address".into(), address),
        ("tier".into(), Value::Enum(1, "GOLD".into())),
    ])
}

fn binary(contract: &Contract, value: Value) -> Vec<u8> {
    GenericDatumWriter::builder(contract.schema())
        .build()
        .unwrap()
        .write_value_to_vec(value)
        .unwrap()
}

fn single_object(contract: &Contract, value: Value) -> Vec<u8> {
    let mut writer = GenericSingleObjectWriter::new_with_capacity(contract.schema(), 256).unwrap();
    let mut out = Vec::new();
    writer.write_value(value, &mut out).unwrap();
    out
}

fn violation(check: &ContractCheck, payload: &[u8]) -> ContractViolation {
    check
        .check(payload)
        .expect_err("payload must violate the contract")
}

fn order_json() -> serde_json::Value {
    json!({"id": "o-1", "customer": "c-1", "amount": 12.5, "currency": "EUR", "note": "rush"})
}

#[test]
fn binary_order_passes_and_converts_to_json() {
    let registry = registry();
    let bytes = binary(registry.get("order").unwrap(), order());
    let decoded = check(Some("order"), Encoding::Binary)
        .check(&bytes)
        .unwrap();
    assert_eq!(decoded.contract().full_name(), "com.example.Order");
    assert_eq!(decoded.to_json(), order_json());
}

#[test]
fn single_object_picks_the_schema_by_fingerprint() {
    let registry = registry();
    let order_bytes = single_object(registry.get("order").unwrap(), order());
    let customer_bytes = single_object(registry.get("customer").unwrap(), customer());
    assert_eq!(&order_bytes[..2], &[0xC3, 0x01]);
    let fingerprint = u64::from_le_bytes(order_bytes[2..10].try_into().unwrap());
    assert_eq!(fingerprint, registry.get("order").unwrap().fingerprint());

    let any = check(None, Encoding::SingleObject);
    assert_eq!(any.check(&order_bytes).unwrap().to_json(), order_json());
    let decoded = any.check(&customer_bytes).unwrap();
    assert_eq!(decoded.contract().name(), "customer");
    assert_eq!(decoded.to_json()["address"]["city"], "Berlin");
    assert_eq!(decoded.to_json()["email"], serde_json::Value::Null);
    assert_eq!(decoded.to_json()["tier"], "GOLD");

    let orders_only = check(Some("order"), Encoding::SingleObject);
    let err = violation(&orders_only, &customer_bytes);
    assert_eq!(
        err.to_string(),
        "single-object message written with schema com.example.Customer, expected com.example.Order"
    );
}

#[test]
fn single_object_framing_errors() {
    let registry = registry();
    let check = check(None, Encoding::SingleObject);
    let mut bytes = single_object(registry.get("order").unwrap(), order());
    assert!(matches!(
        violation(&check, &bytes[..7]),
        ContractViolation::NotSingleObject { .. }
    ));
    bytes[2] ^= 0xFF;
    let err = violation(&check, &bytes);
    assert!(
        matches!(err, ContractViolation::UnknownFingerprint { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("unknown schema fingerprint 0x"),
        "{err}"
    );
    bytes[2] ^= 0xFF;
    bytes[0] = b'{';
    assert!(violation(&check, &bytes)
        .to_string()
        .contains("marker 7B 01"));
}

#[test]
fn json_order_passes_with_defaults_and_plain_unions() {
    let check = check(Some("com.example.Order"), Encoding::Json);
    let decoded = check
        .check(br#"{"id":"o-1","customer":"c-1","amount":12.5,"note":"rush"}"#)
        .unwrap();
    assert_eq!(decoded.to_json(), order_json());
    let decoded = check
        .check(br#"{"id":"o-2","customer":"c-1","amount":3,"note":{"string":"x"}}"#)
        .unwrap();
    assert_eq!(decoded.to_json()["note"], "x");
    assert_eq!(decoded.to_json()["currency"], "EUR");
    let decoded = check
        .check(br#"{"id":"o-3","customer":"c","amount":1.0}"#)
        .unwrap();
    assert_eq!(decoded.to_json()["note"], serde_json::Value::Null);
}

#[test]
fn json_violations_name_the_field() {
    let check = check(Some("order"), Encoding::Json);
    let err = violation(&check, br#"{"id":"o-1","customer":"c-1","amount":"12.5"}"#);
    assert_eq!(
        err.to_string(),
        "JSON field amount: expected double, got string"
    );
    let err = violation(&check, br#"{"id":"o-1","amount":1}"#);
    assert_eq!(err.to_string(), "JSON field customer: missing (no default)");
    let err = violation(&check, br#"{"id":"o","customer":"c","amount":1,"note":5}"#);
    assert_eq!(
        err.to_string(),
        "JSON field note: expected string, got integer"
    );
    let err = violation(
        &check,
        br#"{"id":"o","customer":"c","amount":1,"extra":true}"#,
    );
    assert!(
        err.to_string().starts_with("JSON field extra: not a field"),
        "{err}"
    );
    let err = violation(&check, br#"[1,2]"#);
    assert_eq!(
        err.to_string(),
        "JSON document: expected record com.example.Order, got array"
    );
    let err = violation(&check, b"{\"id\": \"\xFF\"}");
    assert!(matches!(err, ContractViolation::NotJson { .. }), "{err}");

    let customers = check_for("customer", Encoding::Json);
    let err = violation(
        &customers,
        br#"{"id":"c","name":"n","address":{"street":"s","city":7},"tier":"GOLD"}"#,
    );
    assert_eq!(
        err.to_string(),
        "JSON field address.city: expected string, got integer"
    );
    let err = violation(
        &customers,
        br#"{"id":"c","name":"n","address":{"street":"s","city":"B"},"tier":"PLATIN"}"#,
    );
    assert!(
        err.to_string().contains("\"PLATIN\" is not a symbol"),
        "{err}"
    );
}

fn check_for(name: &str, encoding: Encoding) -> ContractCheck {
    check(Some(name), encoding)
}

#[test]
fn deeply_nested_json_is_a_violation_not_a_stack_overflow() {
    let check = check(Some("order"), Encoding::Json);
    let depth = 100_000;
    let payload = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let err = violation(&check, payload.as_bytes());
    assert!(
        err.to_string().contains("recursion limit exceeded"),
        "{err}"
    );
    let payload = format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth));
    assert!(matches!(
        violation(&check, payload.as_bytes()),
        ContractViolation::NotJson { .. }
    ));
}

#[test]
fn garbage_truncated_and_trailing_bytes_are_violations() {
    let registry = registry();
    let check = check(Some("order"), Encoding::Binary);
    let bytes = binary(registry.get("order").unwrap(), order());
    for garbage in [
        &b""[..],
        b"\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF",
        b"hello world",
    ] {
        let err = violation(&check, garbage);
        assert!(
            err.to_string()
                .starts_with("not Avro binary for schema com.example.Order"),
            "{err}"
        );
    }
    // Every strict prefix is truncated, including cuts inside the last string, where
    // apache-avro itself would return a null instead of an error.
    for cut in 0..bytes.len() {
        let err = violation(&check, &bytes[..cut]);
        assert!(
            matches!(err, ContractViolation::NotAvro { .. }),
            "cut {cut}: {err}"
        );
    }
    let mut trailing = bytes.clone();
    trailing.extend_from_slice(&[1, 2, 3]);
    let err = violation(&check, &trailing);
    assert_eq!(
        err.to_string(),
        "trailing 3 bytes after the com.example.Order datum"
    );
}

#[test]
fn wrong_schema_and_bad_utf8_are_violations() {
    let registry = registry();
    let check = check(Some("order"), Encoding::Binary);
    let customer_bytes = binary(registry.get("customer").unwrap(), customer());
    let err = violation(&check, &customer_bytes);
    assert!(err.to_string().contains("com.example.Order"), "{err}");
    // id = "o\xFF1": a valid length, bytes that are not UTF-8.
    let mut bytes = vec![0x06, b'o', 0xFF, b'1'];
    bytes.extend_from_slice(&binary(registry.get("order").unwrap(), order())[4..]);
    let err = violation(&check, &bytes);
    assert!(
        err.to_string()
            .starts_with("not Avro binary for schema com.example.Order"),
        "{err}"
    );
}

#[test]
fn huge_length_fields_fail_fast_without_allocating() {
    let check = check(Some("order"), Encoding::Binary);
    // The id string claims 2^31 bytes (zig-zag 2^32), then 64 MiB (zig-zag 2^27): both
    // over the 16 MiB bound, the second under apache-avro's own 512 MiB default.
    let claims: [&[u8]; 2] = [&[0x80, 0x80, 0x80, 0x80, 0x10], &[0x80, 0x80, 0x80, 0x40]];
    for claim in claims {
        let mut payload = claim.to_vec();
        payload.extend_from_slice(b"abc");
        let started = Instant::now();
        let err = violation(&check, &payload);
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(
            err.to_string()
                .starts_with("not Avro binary for schema com.example.Order"),
            "{err}"
        );
    }
    let largest = LARGEST_ALLOCATION.load(Ordering::Relaxed);
    assert!(largest < 32 << 20, "largest allocation {largest} bytes");
    assert_eq!(
        seawall::contract::set_max_allocation_bytes(1),
        seawall::contract::DEFAULT_MAX_ALLOCATION_BYTES
    );
}

#[test]
fn payload_checks_never_panic_on_random_bytes() {
    let registry = registry();
    let mut bytes = binary(registry.get("customer").unwrap(), customer());
    let check = check(Some("customer"), Encoding::Binary);
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    for _ in 0..2_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let at = (state as usize) % bytes.len();
        bytes[at] = (state >> 32) as u8;
        let _ = check.check(&bytes);
    }
}
