//! Contract registry loading and its errors, recursive and logical-type schemas, the
//! route setting, and the `Contracted` handler layer.
#![cfg(feature = "contracts")]

use std::path::Path;
use std::sync::{Arc, Mutex};

use apache_avro::rabin::Rabin;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::{Decimal, Schema, Uuid};
use seawall::contract::{
    ContractCheck, ContractError, ContractRegistry, ContractSpec, ContractViolation, Contracted,
    Encoding, MAX_NESTING_DEPTH,
};
use seawall::{handler_fn, Handler, Message};
use serde_json::json;

fn shipped() -> Arc<ContractRegistry> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    Arc::new(ContractRegistry::load(&dir).unwrap())
}

fn spec(name: Option<&str>, encoding: Encoding, transcode_json: bool) -> ContractSpec {
    ContractSpec {
        name: name.map(String::from),
        encoding,
        transcode_json,
    }
}

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

/// A binary check against the one schema `text`, loaded from `<name>.avsc`.
fn binary_check_of(name: &str, text: &str) -> ContractCheck {
    let dir = dir_with(&[(&format!("{name}.avsc"), text)]);
    let registry = ContractRegistry::load(dir.path()).unwrap();
    ContractCheck::new(
        Arc::new(registry),
        &spec(Some(name), Encoding::Binary, false),
    )
    .unwrap()
}

#[test]
fn registry_answers_to_stems_full_names_and_fingerprints() {
    let registry = shipped();
    let order = registry.get("order").unwrap();
    assert_eq!(order.full_name(), "com.example.Order");
    assert!(std::ptr::eq(
        order,
        registry.get("com.example.Order").unwrap()
    ));
    assert!(std::ptr::eq(
        order,
        registry.by_fingerprint(order.fingerprint()).unwrap()
    ));
    assert_eq!(
        registry.names(),
        [
            "address",
            "com.example.Address",
            "com.example.Customer",
            "com.example.Order",
            "customer",
            "order"
        ]
    );
    // customer.avsc uses Address from address.avsc: its fingerprint must be that of the
    // schema with Address written inline, which is what a producer's writer computes.
    let inline = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/customer.avsc"),
    )
    .unwrap()
    .replace(
        r#""type": "Address""#,
        r#""type": {"type": "record", "name": "Address", "fields": [
                {"name": "street", "type": "string"}, {"name": "city", "type": "string"},
                {"name": "country", "type": "string", "default": "DE"}]}"#,
    );
    let standalone = Schema::parse_str(&inline).unwrap().fingerprint::<Rabin>();
    let expected = u64::from_le_bytes(standalone.bytes.try_into().unwrap());
    assert_eq!(registry.get("customer").unwrap().fingerprint(), expected);
}

#[test]
fn registry_errors_name_the_file_or_directory() {
    let broken = dir_with(&[
        ("order.avsc", include_str!("../schemas/order.avsc")),
        (
            "broken.avsc",
            r#"{"type":"record","name":"B","fields":[{"name":"x","type":"Nope"}]}"#,
        ),
    ]);
    let err = ContractRegistry::load(broken.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("broken.avsc") && err.starts_with("invalid Avro schema"),
        "{err}"
    );

    let syntax = dir_with(&[("half.avsc", "{\"type\": ")]);
    let err = ContractRegistry::load(syntax.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("half.avsc"), "{err}");

    let empty = dir_with(&[("readme.txt", "not a schema")]);
    let err = ContractRegistry::load(empty.path()).unwrap_err();
    assert!(matches!(err, ContractError::Empty { .. }));
    assert!(err
        .to_string()
        .contains(&empty.path().display().to_string()));

    let missing = empty.path().join("nowhere");
    let err = ContractRegistry::load(&missing).unwrap_err().to_string();
    assert!(
        err.starts_with("cannot read") && err.contains("nowhere"),
        "{err}"
    );
}

#[test]
fn route_settings_are_validated() {
    let err = ContractCheck::new(shipped(), &spec(Some("invoice"), Encoding::Binary, false))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "unknown contract \"invoice\"; known contracts: address, com.example.Address, \
         com.example.Customer, com.example.Order, customer, order"
    );
    let err = ContractCheck::new(shipped(), &spec(None, Encoding::Json, false)).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("contract.name: required for encoding json"),
        "{err}"
    );
    assert!(ContractCheck::new(shipped(), &spec(None, Encoding::SingleObject, false)).is_ok());

    #[derive(serde::Deserialize)]
    struct Route {
        contract: ContractSpec,
    }
    let route: Route = toml::from_str(
        r#"contract = { name = "order", encoding = "single-object", transcode_json = true }"#,
    )
    .unwrap();
    assert_eq!(
        route.contract,
        spec(Some("order"), Encoding::SingleObject, true)
    );
    let route: Route = toml::from_str(r#"contract = { name = "order" }"#).unwrap();
    assert_eq!(route.contract, spec(Some("order"), Encoding::Binary, false));
    let err = toml::from_str::<Route>(r#"contract = { name = "order", encodng = "json" }"#)
        .err()
        .unwrap();
    assert!(err.to_string().contains("unknown field `encodng`"), "{err}");
}

const NODE: &str = r#"{"type":"record","name":"Node","namespace":"t","fields":[
    {"name":"value","type":"int"},{"name":"next","type":["null","Node"],"default":null}]}"#;

#[test]
fn recursive_schemas_are_depth_bounded() {
    let check = binary_check_of("node", NODE);
    // value 1, next -> value 2, next -> null
    let shallow = [0x02, 0x02, 0x04, 0x00];
    assert_eq!(
        check.check(&shallow).unwrap().to_json(),
        json!({"value": 1, "next": {"value": 2, "next": null}})
    );
    // Just under the bound (each node is two levels: the record and the union branch)
    // decodes and converts on a test thread's 2 MiB stack, the size of a tokio worker's.
    let nodes = MAX_NESTING_DEPTH / 2 - 1;
    let mut near: Vec<u8> = [0x00, 0x02].repeat(nodes);
    near.extend_from_slice(&[0x00, 0x00]);
    let mut json = check.check(&near).unwrap().to_json();
    for _ in 0..nodes {
        json = json["next"].take();
    }
    assert_eq!(json, json!({"value": 0, "next": null}));
    // 100,000 levels would overflow the decoder's stack.
    let mut deep: Vec<u8> = [0x00, 0x02].repeat(100_000);
    deep.extend_from_slice(&[0x00, 0x00]);
    let err = check.check(&deep).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("datum for schema t.Node nests deeper than {MAX_NESTING_DEPTH} levels")
    );
}

const GRID: &str = r#"{"type":"record","name":"Grid","namespace":"t","fields":[
    {"name":"rows","type":{"type":"array","items":{"type":"array","items":"null"}}}]}"#;

/// `rows` as `outer` arrays of `inner` nulls: about 4 bytes per row on the wire.
fn grid_datum(outer: i64, inner: i64) -> Vec<u8> {
    let zigzag = |n: i64| {
        let mut v = ((n << 1) ^ (n >> 63)) as u64;
        let mut out = Vec::new();
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
        out
    };
    let mut datum = zigzag(outer);
    for _ in 0..outer {
        datum.extend(zigzag(inner));
        datum.push(0);
    }
    datum.push(0);
    datum
}

/// apache-avro bounds each array's memory on its own, so nested arrays of items that
/// take no bytes multiply: 2,000 rows of 2,000 nulls are 8 KB on the wire and ~220 MB
/// decoded (with 300,000 × 300,000, terabytes). The walk refuses them before decoding.
#[test]
fn nested_arrays_of_zero_byte_items_are_refused_before_decoding() {
    let check = binary_check_of("grid", GRID);
    let small = grid_datum(2, 3);
    assert_eq!(
        check.check(&small).unwrap().to_json(),
        json!({"rows": [[null, null, null], [null, null, null]]})
    );
    // Within the bound (16 MiB): 100 × 1,000 nulls decode.
    assert!(check.check(&grid_datum(100, 1_000)).is_ok());
    let hostile = grid_datum(2_000, 2_000);
    assert!(hostile.len() < 10_000, "{} bytes", hostile.len());
    let err = check.check(&hostile).unwrap_err().to_string();
    assert!(
        err.starts_with("not Avro binary for schema t.Grid"),
        "{err}"
    );
    assert!(err.contains("array items that take no bytes"), "{err}");
    assert!(err.contains("[contracts] max_allocation_bytes"), "{err}");
}

const PAYMENT: &str = r#"{"type":"record","name":"Payment","namespace":"t","fields":[
    {"name":"amount","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}},
    {"name":"id","type":{"type":"string","logicalType":"uuid"}},
    {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}},
    {"name":"day","type":{"type":"int","logicalType":"date"}},
    {"name":"blob","type":"bytes"},
    {"name":"hash","type":{"type":"fixed","name":"Hash","size":4}},
    {"name":"ratio","type":"float"}]}"#;

#[test]
fn logical_types_convert_and_round_trip_through_json() {
    let dir = dir_with(&[("payment.avsc", PAYMENT)]);
    let registry = Arc::new(ContractRegistry::load(dir.path()).unwrap());
    let uuid = "67e55044-10b1-426f-9247-bb680e5fe0c8";
    let value = Value::Record(vec![
        (
            "amount".into(),
            Value::Decimal(Decimal::from(vec![0xFB, 0x2E])),
        ),
        ("id".into(), Value::Uuid(Uuid::parse_str(uuid).unwrap())),
        ("at".into(), Value::TimestampMillis(1_700_000_000_123)),
        ("day".into(), Value::Date(19_700)),
        ("blob".into(), Value::Bytes(vec![1, 2, 3])),
        ("hash".into(), Value::Fixed(4, vec![0xDE, 0xAD, 0xBE, 0xEF])),
        ("ratio".into(), Value::Float(f32::NAN)),
    ]);
    let schema = registry.get("payment").unwrap().schema();
    let bytes = GenericDatumWriter::builder(schema)
        .build()
        .unwrap()
        .write_value_to_vec(value)
        .unwrap();
    let binary = ContractCheck::new(
        registry.clone(),
        &spec(Some("payment"), Encoding::Binary, false),
    )
    .unwrap();
    let converted = binary.check(&bytes).unwrap().to_json();
    let expected = json!({"amount": "-12.34", "id": uuid, "at": 1_700_000_000_123_i64, "day": 19_700,
        "blob": "AQID", "hash": "3q2+7w==", "ratio": "NaN"});
    assert_eq!(converted, expected);
    // The JSON form is itself valid under the json encoding, and reads back the same.
    let json_check =
        ContractCheck::new(registry, &spec(Some("payment"), Encoding::Json, false)).unwrap();
    let again = json_check
        .check(&serde_json::to_vec(&converted).unwrap())
        .unwrap();
    assert_eq!(again.to_json(), expected);
    let mut bad = expected.clone();
    bad["hash"] = json!("AQID");
    let err = json_check
        .check(&serde_json::to_vec(&bad).unwrap())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "JSON field hash: fixed of 4 bytes, got 3 bytes"
    );
    bad["hash"] = expected["hash"].clone();
    bad["amount"] = json!("1.234");
    let err = json_check
        .check(&serde_json::to_vec(&bad).unwrap())
        .unwrap_err();
    assert!(
        matches!(err, ContractViolation::Json { ref path, .. } if path == "amount"),
        "{err}"
    );
}

type Seen = Arc<Mutex<Vec<Message>>>;

fn recording() -> (Seen, impl Handler) {
    let seen: Seen = Arc::default();
    let sink = seen.clone();
    let handler = handler_fn(move |message: Message| {
        let sink = sink.clone();
        async move {
            sink.lock().unwrap().push(message);
            Ok(())
        }
    });
    (seen, handler)
}

fn order_bytes(registry: &ContractRegistry) -> Vec<u8> {
    let value = Value::Record(vec![
        ("id".into(), Value::String("o-1".into())),
        ("customer".into(), Value::String("c-1".into())),
        ("amount".into(), Value::Double(12.5)),
        ("currency".into(), Value::String("EUR".into())),
        ("note".into(), Value::Union(0, Box::new(Value::Null))),
    ]);
    GenericDatumWriter::builder(registry.get("order").unwrap().schema())
        .build()
        .unwrap()
        .write_value_to_vec(value)
        .unwrap()
}

#[tokio::test]
async fn violations_dead_letter_without_calling_the_handler() {
    let (seen, inner) = recording();
    let check =
        ContractCheck::new(shipped(), &spec(Some("order"), Encoding::Binary, true)).unwrap();
    let layer = Contracted::new(check, inner);
    let err = layer
        .handle(&Message::new("not avro at all"))
        .await
        .unwrap_err();
    assert!(err.is_contract_violation() && !err.is_transient());
    assert!(
        err.to_string()
            .starts_with("not Avro binary for schema com.example.Order"),
        "{err}"
    );
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn transcoding_hands_the_handler_json() {
    let registry = shipped();
    let (seen, inner) = recording();
    let check = ContractCheck::new(
        registry.clone(),
        &spec(Some("order"), Encoding::Binary, true),
    )
    .unwrap();
    let layer = Contracted::new(check, inner);
    let message = Message::new(order_bytes(&registry))
        .with_key("c-1")
        .with_message_id("m-1")
        .with_header("Content-Type", "avro/binary")
        .with_header("x-trace", "t-1");
    layer.handle(&message).await.unwrap();
    let seen = seen.lock().unwrap();
    let got = &seen[0];
    let payload: serde_json::Value = serde_json::from_slice(got.payload()).unwrap();
    assert_eq!(
        payload,
        json!({"id": "o-1", "customer": "c-1", "amount": 12.5, "currency": "EUR", "note": null})
    );
    let content_types: Vec<_> = got
        .headers()
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        .collect();
    assert_eq!(
        content_types,
        [("content-type", &bytes::Bytes::from("application/json"))]
    );
    assert_eq!(got.headers().get("x-trace").unwrap(), "t-1");
    assert_eq!(got.key().unwrap(), "c-1");
    assert_eq!(got.message_id().unwrap(), "m-1");
}

#[tokio::test]
async fn without_transcoding_the_handler_gets_the_original() {
    let registry = shipped();
    let (seen, inner) = recording();
    let check = ContractCheck::new(
        registry.clone(),
        &spec(Some("order"), Encoding::Binary, false),
    )
    .unwrap();
    let layer = Contracted::new(check, inner);
    let bytes = order_bytes(&registry);
    layer.handle(&Message::new(bytes.clone())).await.unwrap();
    assert_eq!(seen.lock().unwrap()[0].payload().as_ref(), bytes.as_slice());
}
