//! The hostile inputs of issue 7's bad-input suite, shared by the Kafka and RabbitMQ
//! runs: what each one is, which route it goes to, and what must become of it.
#![allow(dead_code)]

/// Which route a case is sent to: Avro binary (transcoded to JSON for the downstream)
/// or JSON, both held to the `order` contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Avro,
    Json,
}

/// What must happen to a case.
#[derive(Clone, Debug)]
pub enum Expect {
    /// Dead-lettered with this `seawall.error-kind`, the reason naming every fragment.
    DeadLetter {
        kind: &'static str,
        reason: &'static [&'static str],
    },
    /// Delivered to the downstream once, with this `Idempotency-Key` request header.
    Delivered { idempotency_header: String },
}

/// One hostile (or merely odd, but valid) message. Its ordering key is its name, so
/// every case has a key of its own and a dead letter never parks another case.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: &'static str,
    pub route: Route,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub expect: Expect,
}

/// How big a header value the broker can carry: RabbitMQ puts every header in one
/// content-header frame, which must fit in the negotiated `frame_max` (128 KiB by
/// default), so a 1 MiB header cannot reach a RabbitMQ consumer at all.
#[derive(Clone, Copy, Debug)]
pub struct Carry {
    pub big_header_bytes: usize,
}

pub const KAFKA: Carry = Carry {
    big_header_bytes: 1024 * 1024,
};
pub const RABBITMQ: Carry = Carry {
    big_header_bytes: 100 * 1024,
};

fn zigzag_varint(n: i64) -> Vec<u8> {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    let mut out = Vec::new();
    loop {
        let byte = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

fn avro_string(s: &[u8]) -> Vec<u8> {
    let mut out = zigzag_varint(s.len() as i64);
    out.extend_from_slice(s);
    out
}

/// A valid `com.example.Order` datum in Avro binary.
pub fn avro_order(id: &str, customer: &str, amount: f64) -> Vec<u8> {
    let mut out = avro_string(id.as_bytes());
    out.extend(avro_string(customer.as_bytes()));
    out.extend(amount.to_le_bytes());
    out.extend(avro_string(b"EUR"));
    out.push(0); // note: union branch 0, null
    out
}

pub fn json_order(id: &str, customer: &str) -> Vec<u8> {
    serde_json::json!({ "id": id, "customer": customer, "amount": 12.5 })
        .to_string()
        .into_bytes()
}

fn dead(kind: &'static str, reason: &'static [&'static str]) -> Expect {
    Expect::DeadLetter { kind, reason }
}

fn case(name: &'static str, route: Route, payload: Vec<u8>, expect: Expect) -> Case {
    Case {
        name,
        route,
        payload,
        headers: Vec::new(),
        expect,
    }
}

/// Every case, hostile ones first, then two valid messages per route that must still be
/// delivered afterwards (the worker neither died nor hung on what came before).
pub fn cases(carry: Carry) -> Vec<Case> {
    let mut all = limit_cases(carry);
    all.extend(avro_cases());
    all.extend(json_cases());
    all.extend(valid_cases());
    all
}

fn limit_cases(carry: Carry) -> Vec<Case> {
    let order = || avro_order("o-1", "c-1", 1.0);
    let mut oversize = case(
        "oversize-payload",
        Route::Avro,
        vec![b'x'; 2 * 1024 * 1024],
        dead(
            "oversize",
            &["payload is 2097152 bytes", "max_payload_bytes"],
        ),
    );
    oversize.payload[..4].copy_from_slice(&order()[..4]);
    let mut many = case(
        "ten-thousand-headers",
        Route::Avro,
        order(),
        dead("oversize", &["headers, over limits.max_headers = 128"]),
    );
    many.headers = (0..10_000)
        .map(|i| (format!("h{i}"), b"v".to_vec()))
        .collect();
    let mut big = case(
        "huge-header",
        Route::Avro,
        order(),
        dead("oversize", &["header `big`", "max_header_bytes"]),
    );
    big.headers = vec![("big".to_owned(), vec![b'v'; carry.big_header_bytes])];
    vec![oversize, many, big]
}

fn avro_cases() -> Vec<Case> {
    let mut huge_length = zigzag_varint(1 << 31);
    huge_length.extend_from_slice(b"abc");
    let mut negative_length = zigzag_varint(-5);
    negative_length.extend_from_slice(b"abc");
    let valid = avro_order("o-2", "c-2", 2.0);
    let truncated = valid[..valid.len() / 2].to_vec();
    let mut trailing = valid.clone();
    trailing.extend_from_slice(b"garbage");
    // A datum of another schema ({n: long, flag: boolean}): 5, true.
    let wrong_schema = vec![0x0a, 0x01];
    vec![
        case(
            "avro-length-2^31",
            Route::Avro,
            huge_length,
            dead(
                "contract",
                &["com.example.Order", "allocate 2147483648 bytes"],
            ),
        ),
        case(
            "avro-negative-length",
            Route::Avro,
            negative_length,
            dead("contract", &["com.example.Order", "-5"]),
        ),
        case(
            "avro-truncated",
            Route::Avro,
            truncated,
            dead(
                "contract",
                &["com.example.Order", "failed to fill whole buffer"],
            ),
        ),
        case(
            "avro-trailing-bytes",
            Route::Avro,
            trailing,
            dead("contract", &["trailing 7 bytes"]),
        ),
        case(
            "avro-wrong-schema",
            Route::Avro,
            wrong_schema,
            dead(
                "contract",
                &["not Avro binary for schema com.example.Order"],
            ),
        ),
    ]
}

fn json_cases() -> Vec<Case> {
    let depth = 100_000;
    let mut deep = vec![b'['; depth];
    deep.extend(vec![b']'; depth]);
    let mut deep_object = Vec::new();
    for _ in 0..depth {
        deep_object.extend_from_slice(br#"{"a":"#);
    }
    deep_object.extend_from_slice(b"1");
    deep_object.extend(vec![b'}'; depth]);
    let mut bad_utf8 = br#"{"id":"o-3","customer":""#.to_vec();
    bad_utf8.extend_from_slice(&[0xff, 0xfe, 0xc3]);
    bad_utf8.extend_from_slice(br#"","amount":1.5}"#);
    vec![
        case(
            "json-100000-deep-array",
            Route::Json,
            deep,
            dead("contract", &["not a JSON document", "recursion limit"]),
        ),
        case(
            "json-100000-deep-object",
            Route::Json,
            deep_object,
            dead("contract", &["not a JSON document", "recursion limit"]),
        ),
        case(
            "json-invalid-utf8",
            Route::Json,
            bad_utf8,
            dead("contract", &["not a JSON document", "invalid unicode"]),
        ),
        case(
            "json-not-json",
            Route::Json,
            b"\x00\x01not json at all\xff".to_vec(),
            dead("contract", &["not a JSON document"]),
        ),
    ]
}

/// Valid messages, one of them with an idempotency key that is not text: the HTTP
/// request carries it hex-encoded, so it is neither altered nor merged with another.
fn valid_cases() -> Vec<Case> {
    let mut binary_key = case(
        "valid-binary-idempotency-key",
        Route::Json,
        json_order("o-5", "c-5"),
        Expect::Delivered {
            idempotency_header: "ff000a6b".to_owned(),
        },
    );
    binary_key.headers = vec![("idempotency-key".to_owned(), vec![0xff, 0x00, b'\n', b'k'])];
    let mut valid_avro = case(
        "valid-avro",
        Route::Avro,
        avro_order("o-4", "c-4", 4.0),
        Expect::Delivered {
            idempotency_header: "valid-avro".to_owned(),
        },
    );
    valid_avro.headers = vec![("idempotency-key".to_owned(), b"valid-avro".to_vec())];
    vec![valid_avro, binary_key]
}

/// Peak resident memory of process `pid` in MiB (VmHWM), if it can be read.
pub fn peak_rss_mib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}
