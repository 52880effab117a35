//! Which headers a message's request carries, and which win.

use super::*;

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn plan(prefix: Option<&str>) -> HeaderPlan {
    let mut fixed = HeaderMap::new();
    fixed.insert("authorization", HeaderValue::from_static("Bearer s3cret"));
    HeaderPlan {
        fixed,
        prefix: prefix.map(str::to_owned),
        content_type: None,
    }
}

fn value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap())
}

#[test]
fn message_headers_are_sent_prefixed_only_when_asked() {
    let message = Message::new("x")
        .with_header("tenant", "acme")
        .with_header("tenant", "beta")
        .with_header("bad name", "v")
        .with_header("bin", &b"a\nb"[..]);
    let without = plan(None).headers_for(&message);
    assert!(without.keys().all(|k| !k.as_str().contains("tenant")));
    let with = plan(Some("x-msg-")).headers_for(&message);
    let tenants: Vec<_> = with.get_all("x-msg-tenant").iter().collect();
    assert_eq!(tenants, ["acme", "beta"], "repeats are kept in order");
    assert!(with.get("x-msg-bad name").is_none());
    assert!(with.get("x-msg-bin").is_none(), "invalid value skipped");
}

#[test]
fn static_headers_win_and_framing_headers_are_never_taken_from_the_message() {
    let message = Message::new("x")
        .with_header("authorization", "Bearer forged")
        .with_header("content-length", "1")
        .with_header("Host", "evil.test")
        .with_header("x-ok", "1");
    let headers = plan(Some("")).headers_for(&message);
    assert_eq!(value(&headers, "authorization"), Some("Bearer s3cret"));
    assert!(headers.get("content-length").is_none());
    assert!(headers.get("host").is_none());
    assert_eq!(value(&headers, "x-ok"), Some("1"));
}

#[test]
fn content_type_comes_from_config_then_message_then_default() {
    let json = Message::new("{}").with_header("Content-Type", "application/json");
    assert_eq!(
        value(&plan(None).headers_for(&json), "content-type"),
        Some("application/json")
    );
    let plain = Message::new("x");
    assert_eq!(
        value(&plan(None).headers_for(&plain), "content-type"),
        Some("application/octet-stream")
    );
    let mut configured = plan(None);
    configured.content_type = Some(HeaderValue::from_static("text/csv"));
    assert_eq!(
        value(&configured.headers_for(&json), "content-type"),
        Some("text/csv")
    );
}

#[test]
fn trace_context_is_copied_unprefixed_only_when_valid() {
    let traced = Message::new("x")
        .with_header("traceparent", PARENT)
        .with_header("tracestate", "vendor=abc");
    let headers = plan(Some("x-msg-")).headers_for(&traced);
    assert_eq!(value(&headers, "traceparent"), Some(PARENT));
    assert_eq!(value(&headers, "tracestate"), Some("vendor=abc"));
    let orphan_state = Message::new("x")
        .with_header("traceparent", "garbage")
        .with_header("tracestate", "vendor=abc");
    let headers = plan(None).headers_for(&orphan_state);
    assert!(headers.get("traceparent").is_none() && headers.get("tracestate").is_none());
}

#[test]
fn traceparent_syntax() {
    assert!(is_traceparent(PARENT.as_bytes()));
    let bad = [
        "",
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-ff",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba9g2b7-01",
    ];
    for value in bad {
        assert!(!is_traceparent(value.as_bytes()), "{value}");
    }
}

#[test]
fn idempotency_key_is_sent_as_is_or_in_hex() {
    let mut message = Message::new("x");
    assert!(plan(None)
        .headers_for(&message)
        .get("idempotency-key")
        .is_none());
    message.set_idempotency_key(Some(Bytes::from_static(b"order-42")));
    let headers = plan(None).headers_for(&message);
    assert_eq!(value(&headers, "idempotency-key"), Some("order-42"));
    assert_eq!(idempotency_value(b"\x00\xffA"), "00ff41");
    assert_eq!(idempotency_value(b"has space"), "686173207370616365");
    assert_eq!(idempotency_value("é".as_bytes()), "c3a9");
}
