//! The HTTP handler against a local scripted server: outcomes, headers, keep-alive.
#![cfg(feature = "http")]

mod common;
mod http_server;

use std::time::{Duration, Instant, SystemTime};

use common::{quick_config, start};
use http_server::{private_ca, Reply, TestServer};
use seawall::http::{HttpConfig, HttpError, HttpHandler, TlsConfig};
use seawall::{Handler, HandlerError, Message};

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn handler(url: String) -> HttpHandler {
    HttpHandler::new(HttpConfig::new(url)).expect("valid config")
}

/// One delivery of a small message to a server that always answers `reply`.
async fn deliver(reply: Reply) -> (Result<(), HandlerError>, TestServer) {
    let server = TestServer::fixed(reply).await;
    let result = handler(server.url("/in"))
        .handle(&Message::new("payload"))
        .await;
    (result, server)
}

#[tokio::test]
async fn ok_is_success_and_the_payload_is_the_body() {
    let (result, server) = deliver(Reply::status(200)).await;
    result.expect("2xx is success");
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        (requests[0].method.as_str(), requests[0].path.as_str()),
        ("POST", "/in")
    );
    assert_eq!(&requests[0].body[..], b"payload");
    assert_eq!(
        requests[0].header("content-type"),
        Some("application/octet-stream")
    );
}

#[tokio::test]
async fn server_errors_and_timeouts_by_status_are_transient() {
    for status in [503, 500, 408] {
        let (result, _server) = deliver(Reply::status(status)).await;
        let err = result.expect_err("not a success");
        assert!(err.is_transient(), "{status}: {err}");
        assert_eq!(err.retry_after(), None, "{status}");
        assert!(err.to_string().contains(&format!("HTTP {status}")), "{err}");
    }
}

#[tokio::test]
async fn too_many_requests_carries_retry_after_seconds() {
    let (result, _server) = deliver(Reply::status(429).header("retry-after", "2")).await;
    let err = result.expect_err("429");
    assert!(err.is_transient());
    assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
}

#[tokio::test]
async fn retry_after_as_an_http_date_and_clamped() {
    let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
    let (result, _server) = deliver(Reply::status(503).header("retry-after", at)).await;
    let delay = result.expect_err("503").retry_after().expect("a delay");
    assert!(
        delay > Duration::from_secs(25) && delay <= Duration::from_secs(30),
        "{delay:?}"
    );

    let server = TestServer::fixed(Reply::status(429).header("retry-after", "86400")).await;
    let mut config = HttpConfig::new(server.url("/in"));
    config.max_retry_after = Duration::from_secs(60);
    let err = HttpHandler::new(config)
        .unwrap()
        .handle(&Message::new("x"))
        .await
        .expect_err("429");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(60)), "clamped");
}

#[tokio::test]
async fn bad_request_is_permanent_and_quotes_the_body() {
    let body = format!("{{\"error\":\"sku missing\"}}{}", "z".repeat(500));
    let (result, server) = deliver(Reply::status(400).body(body)).await;
    let err = result.expect_err("400");
    assert!(!err.is_transient());
    let text = err.to_string();
    let expected = format!(
        "POST {}: HTTP 400 Bad Request: {{\"error\":\"sku missing\"}}",
        server.url("/in")
    );
    assert!(text.starts_with(&expected), "{text}");
    assert!(text.len() < expected.len() + 250, "only an excerpt: {text}");
}

#[tokio::test]
async fn not_found_is_permanent() {
    let (result, _server) = deliver(Reply::status(404)).await;
    let err = result.expect_err("404");
    assert!(!err.is_transient());
    assert!(err.to_string().contains("HTTP 404 Not Found"), "{err}");
}

#[tokio::test]
async fn redirects_are_not_followed_and_are_permanent() {
    let server = TestServer::scripted(|request| match request.path.as_str() {
        "/in" => Reply::status(302).header("location", "/moved"),
        _ => Reply::status(200),
    })
    .await;
    let err = handler(server.url("/in"))
        .handle(&Message::new("x"))
        .await
        .expect_err("302");
    assert!(!err.is_transient());
    assert!(
        err.to_string()
            .contains("HTTP 302 Found: redirect to /moved not followed"),
        "{err}"
    );
    let paths: Vec<_> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/in"]);
}

#[tokio::test]
async fn connection_refused_is_transient() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/in", closed.local_addr().unwrap());
    drop(closed);
    let err = handler(url)
        .handle(&Message::new("x"))
        .await
        .expect_err("refused");
    assert!(err.is_transient());
    assert!(err.to_string().contains("cannot connect"), "{err}");
}

#[tokio::test]
async fn a_server_slower_than_the_timeout_is_transient() {
    let server = TestServer::fixed(Reply::status(200).delay(Duration::from_secs(3))).await;
    let mut config = HttpConfig::new(server.url("/slow"));
    config.timeout = Duration::from_millis(200);
    let started = Instant::now();
    let err = HttpHandler::new(config)
        .unwrap()
        .handle(&Message::new("x"))
        .await
        .expect_err("timed out");
    assert!(err.is_transient());
    assert!(err.to_string().contains("timed out"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn every_header_arrives() {
    let server = TestServer::fixed(Reply::status(204)).await;
    let mut config = HttpConfig::new(server.url("/in"));
    config.method = "PUT".into();
    config.header_prefix = Some("x-msg-".into());
    config
        .headers
        .insert("authorization".into(), "Bearer s3cret".into());
    config.headers.insert("x-tenant".into(), "acme".into());
    let message = Message::new("{}")
        .with_header("content-type", "application/json")
        .with_header("traceparent", PARENT)
        .with_header("tracestate", "vendor=1")
        .with_header("order-id", "42")
        .with_header("idempotency-key", "order-42");
    // Through the pipeline, which derives the idempotency key from the header.
    let harness = start(quick_config(), HttpHandler::new(config).unwrap());
    harness.publish(message).await;
    let (stats, _) = harness.finish().await;
    assert_eq!(stats.processed, 1);
    let requests = server.requests();
    let request = &requests[0];
    assert_eq!(request.method, "PUT");
    assert_eq!(request.header("idempotency-key"), Some("order-42"));
    assert_eq!(request.header("x-msg-order-id"), Some("42"));
    assert_eq!(request.header("x-msg-idempotency-key"), Some("order-42"));
    assert_eq!(request.header("traceparent"), Some(PARENT));
    assert_eq!(request.header("tracestate"), Some("vendor=1"));
    assert_eq!(request.header("authorization"), Some("Bearer s3cret"));
    assert_eq!(request.header("x-tenant"), Some("acme"));
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert!(request
        .header("user-agent")
        .unwrap()
        .starts_with("seawall/"));
}

#[tokio::test]
async fn the_pipeline_retries_503_and_dead_letters_400() {
    let server = TestServer::scripted(|request| match &request.body[..] {
        b"flaky" => Reply::status(503),
        _ => Reply::status(400).body("rejected"),
    })
    .await;
    let harness = start(quick_config(), handler(server.url("/in")));
    harness.publish(Message::new("flaky").with_key("a")).await;
    harness.publish(Message::new("bad").with_key("b")).await;
    let (stats, harness) = harness.finish().await;
    assert_eq!(stats.dead_lettered, 2);
    let attempts = |body: &[u8]| {
        server
            .requests()
            .iter()
            .filter(|r| &r.body[..] == body)
            .count()
    };
    assert_eq!(attempts(b"bad"), 1, "400 is not retried");
    assert_eq!(
        attempts(b"flaky") as u32,
        quick_config().retry.max_attempts,
        "503 is retried"
    );
    let letters = harness.letters.letters();
    let bad = letters
        .iter()
        .find(|l| &l.message.payload()[..] == b"bad")
        .unwrap();
    assert!(
        bad.info.error.contains("HTTP 400 Bad Request: rejected"),
        "{:?}",
        bad.info
    );
}

#[tokio::test]
async fn sequential_requests_reuse_keep_alive_connections() {
    let server = TestServer::fixed(Reply::status(200).body("ok")).await;
    let handler = handler(server.url("/in"));
    for n in 0..20 {
        handler
            .handle(&Message::new(n.to_string()))
            .await
            .expect("2xx");
    }
    assert_eq!(server.requests().len(), 20);
    assert!(
        server.connections() <= 2,
        "{} connections",
        server.connections()
    );
}

#[tokio::test]
async fn secrets_never_show_in_debug_or_errors() {
    let server = TestServer::fixed(Reply::status(401).body("who are you")).await;
    let mut config = HttpConfig::new(server.url("/in").replace("http://", "http://bob:pa55@"));
    config.headers.insert("x-api-key".into(), "s3cret".into());
    let shown = format!("{config:?}");
    assert!(
        !shown.contains("s3cret") && !shown.contains("pa55"),
        "{shown}"
    );
    let handler = HttpHandler::new(config).unwrap();
    let shown = format!("{handler:?}");
    assert!(
        !shown.contains("s3cret") && !shown.contains("pa55"),
        "{shown}"
    );
    let err = handler.handle(&Message::new("x")).await.expect_err("401");
    let text = format!("{err} {err:?}");
    assert!(
        !text.contains("s3cret") && !text.contains("pa55") && !text.contains("bob"),
        "{text}"
    );
    assert_eq!(server.requests()[0].header("x-api-key"), Some("s3cret"));
}

#[tokio::test]
async fn invalid_settings_are_named() {
    let field = |config: HttpConfig| match HttpHandler::new(config) {
        Err(HttpError::Config(err)) => err.field().to_owned(),
        other => panic!("expected a config error, got {other:?}"),
    };
    assert_eq!(field(HttpConfig::new("amqp://h/")), "http.url");
    let mut bad_method = HttpConfig::new("http://h/");
    bad_method.method = "GET POST".into();
    assert_eq!(field(bad_method), "http.method");
    let mut bad_header = HttpConfig::new("http://h/");
    bad_header.headers.insert("x-a".into(), "two\nlines".into());
    assert_eq!(field(bad_header), "http.headers.x-a");
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("ca.pem");
    std::fs::write(&not_pem, "not a certificate").unwrap();
    let mut bad_ca = HttpConfig::new("https://h/");
    bad_ca.tls = Some(TlsConfig {
        ca_file: Some(not_pem),
    });
    assert_eq!(field(bad_ca), "http.tls.ca_file");
}

#[tokio::test]
async fn https_trusts_a_private_ca_only_when_given_its_file() {
    let (ca_pem, acceptor) = private_ca();
    let server = TestServer::tls(Reply::status(200), acceptor).await;
    let url = format!("https://localhost:{}/in", server.addr.port());

    let untrusted = handler(url.clone()).handle(&Message::new("x")).await;
    let err = untrusted.expect_err("unknown CA");
    assert!(err.is_transient(), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let mut config = HttpConfig::new(url);
    config.tls = Some(TlsConfig {
        ca_file: Some(ca_file),
    });
    HttpHandler::new(config)
        .unwrap()
        .handle(&Message::new("over tls"))
        .await
        .expect("trusted through ca_file");
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(&requests[0].body[..], b"over tls");
}
