//! The admin module against real in-memory pipelines and a real listener.
#![cfg(feature = "admin")]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use seawall::admin::{serve, Measured, Registry, RouteMetrics, RouteState};
use seawall::{
    handler_fn, BreakerState, DeadLetterPolicy, HandlerError, MemoryDeadLetters, MemoryPublisher,
    MemorySource, MemoryStore, Message, Pipeline, PipelineConfig, PipelineHandle, StatsSnapshot,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

fn quick_config() -> PipelineConfig {
    let mut config = PipelineConfig::default();
    config.retry.initial_backoff = Duration::from_millis(1);
    config.retry.max_backoff = Duration::from_millis(5);
    config.durability.flush_interval = Duration::from_millis(1);
    config.on_dead_letter = DeadLetterPolicy::Continue;
    config
}

type Run = JoinHandle<Result<StatsSnapshot, seawall::Error>>;

/// Starts a pipeline whose handler is wrapped in `Measured` and attached to `route`.
fn start<H: seawall::Handler>(
    route: &RouteMetrics,
    config: PipelineConfig,
    handler: H,
) -> (MemoryPublisher, PipelineHandle, Run) {
    let (publisher, source) = MemorySource::new("orders", 4, 64);
    let pipeline = Pipeline::builder()
        .source(source)
        .handler(Measured::new(route.clone(), handler))
        .store(MemoryStore::new())
        .dead_letter(MemoryDeadLetters::new())
        .config(config)
        .build()
        .unwrap();
    let handle = pipeline.handle();
    route.attach(handle.clone());
    (publisher, handle, tokio::spawn(pipeline.run()))
}

fn order(n: u32, body: &str) -> Message {
    Message::new(body.to_owned())
        .with_key(format!("customer-{n}"))
        .with_header("idempotency-key", format!("order-{n}"))
}

async fn wait_until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

fn sample(text: &str, series: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ').map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_and_latency_match_a_real_run() {
    let registry = Registry::new();
    let route = registry.route("orders");
    let calls = Arc::new(AtomicU64::new(0));
    let flaky_failures = Arc::new(AtomicU64::new(0));
    let (c, f) = (Arc::clone(&calls), Arc::clone(&flaky_failures));
    let handler = handler_fn(move |m: Message| {
        let (calls, flaky) = (Arc::clone(&c), Arc::clone(&f));
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            match m.payload().as_ref() {
                b"bad" => Err(HandlerError::permanent("not an order")),
                b"flaky" if flaky.fetch_add(1, Ordering::SeqCst) == 0 => {
                    Err(HandlerError::transient("503"))
                }
                _ => Ok(()),
            }
        }
    });
    let (publisher, handle, run) = start(&route, quick_config(), handler);
    for n in 0..10 {
        publisher.publish(order(n, "{}")).await.unwrap();
    }
    for n in 10..13 {
        publisher.publish(order(n, "bad")).await.unwrap();
    }
    publisher.publish(order(13, "flaky")).await.unwrap();
    // Duplicates once their originals are settled, so they are skipped, not raced.
    wait_until("originals settled", || {
        let s = handle.stats();
        s.processed + s.dead_lettered == 14
    })
    .await;
    publisher.publish(order(0, "{}")).await.unwrap();
    publisher.publish(order(1, "{}")).await.unwrap();
    drop(publisher);
    let stats = run.await.unwrap().unwrap();
    assert_eq!(stats.duplicates, 2);

    let text = registry.render();
    let expected = [
        ("received", 16),
        ("processed", 11),
        ("duplicate", 2),
        ("retried", 1),
        ("dead_lettered", 3),
        ("parked", 0),
        ("crash_loop", 0),
        ("panic", 0),
        ("timeout", 0),
    ];
    for (outcome, value) in expected {
        let series = format!("seawall_messages_total{{route=\"orders\",outcome=\"{outcome}\"}}");
        assert_eq!(sample(&text, &series), Some(value.to_string()), "{series}");
    }
    let handler_calls = calls.load(Ordering::SeqCst);
    assert_eq!(handler_calls, 15, "10 good, 3 bad, the flaky one twice");
    let count = sample(
        &text,
        "seawall_handler_duration_seconds_count{route=\"orders\"}",
    );
    assert_eq!(count, Some(handler_calls.to_string()));
    let inf = sample(
        &text,
        "seawall_handler_duration_seconds_bucket{route=\"orders\",le=\"+Inf\"}",
    );
    assert_eq!(inf, Some(handler_calls.to_string()));
    assert_eq!(
        sample(&text, "seawall_in_flight{route=\"orders\"}").as_deref(),
        Some("0")
    );
    assert_eq!(
        sample(&text, "seawall_buffered{route=\"orders\"}").as_deref(),
        Some("0")
    );
    for (state, value) in [("closed", "1"), ("open", "0"), ("half_open", "0")] {
        let series = format!("seawall_breaker_state{{route=\"orders\",state=\"{state}\"}}");
        assert_eq!(sample(&text, &series).as_deref(), Some(value), "{series}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_breaker_shows_as_open() {
    let registry = Registry::new();
    let route = registry.route("orders");
    let mut config = quick_config();
    config.breaker.min_calls = 2;
    config.breaker.cool_down = Duration::from_secs(60);
    config.retry.max_attempts = 1000;
    config.shutdown_deadline = Duration::from_millis(100);
    let failing = handler_fn(|_m: Message| async { Err(HandlerError::transient("down")) });
    let (publisher, handle, run) = start(&route, config, failing);
    for n in 0..3 {
        publisher.publish(order(n, "{}")).await.unwrap();
    }
    wait_until("breaker open", || {
        handle.breaker_state() == BreakerState::Open
    })
    .await;
    let text = registry.render();
    for (state, value) in [("closed", "0"), ("open", "1"), ("half_open", "0")] {
        let series = format!("seawall_breaker_state{{route=\"orders\",state=\"{state}\"}}");
        assert_eq!(sample(&text, &series).as_deref(), Some(value), "{series}");
    }
    handle.shutdown();
    drop(publisher);
    let _ = run.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_pipeline_keeps_counters_monotonic() {
    let registry = Registry::new();
    let route = registry.route("orders");
    let ok = || handler_fn(|_m: Message| async { Ok(()) });
    let (publisher, _, run) = start(&route, quick_config(), ok());
    for n in 0..3 {
        publisher.publish(order(n, "{}")).await.unwrap();
    }
    drop(publisher);
    run.await.unwrap().unwrap();
    let (publisher, _, run) = start(&route, quick_config(), ok());
    for n in 3..5 {
        publisher.publish(order(n, "{}")).await.unwrap();
    }
    drop(publisher);
    run.await.unwrap().unwrap();
    let text = registry.render();
    let received = "seawall_messages_total{route=\"orders\",outcome=\"received\"}";
    assert_eq!(sample(&text, received).as_deref(), Some("5"));
    let count = "seawall_handler_duration_seconds_count{route=\"orders\"}";
    assert_eq!(sample(&text, count).as_deref(), Some("5"));
}

/// A minimal HTTP/1.1 client: one request, `Connection: close`, read to the end.
async fn get(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_answer_and_readiness_follows_route_state() {
    let registry = Registry::new();
    let orders = registry.route("orders");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, registry.clone(), async {
        let _ = stopped.await;
    }));

    let (status, head, body) = get(addr, "GET", "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert_eq!(body, registry.render());
    assert!(body.contains("seawall_route_up{route=\"orders\"} 0\n"));

    assert_eq!(get(addr, "GET", "/healthz").await.0, 200);
    assert_eq!(get(addr, "GET", "/healthz").await.2, "ok\n");

    let (status, _, body) = get(addr, "GET", "/readyz").await;
    assert_eq!((status, body.as_str()), (503, "orders: starting\n"));
    orders.set_state(RouteState::Running);
    let (status, _, body) = get(addr, "GET", "/readyz").await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    let (_, _, metrics) = get(addr, "GET", "/metrics?x=1").await;
    assert!(metrics.contains("seawall_route_up{route=\"orders\"} 1\n"));
    orders.set_state(RouteState::Failed("broker\nunreachable".into()));
    let (status, _, body) = get(addr, "GET", "/readyz").await;
    assert_eq!(
        (status, body.as_str()),
        (503, "orders: failed: broker unreachable\n")
    );

    assert_eq!(get(addr, "GET", "/nope").await.0, 404);
    assert_eq!(get(addr, "GET", "/").await.0, 404);
    let (status, head, _) = get(addr, "POST", "/metrics").await;
    assert_eq!(status, 405);
    assert!(head.contains("allow: get, head"));
    let (status, _, body) = get(addr, "HEAD", "/healthz").await;
    assert_eq!((status, body.as_str()), (200, ""));

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("serve returns after shutdown")
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_connection_does_not_block_shutdown_forever() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, Registry::new(), async {
        let _ = stopped.await;
    }));
    // A keep-alive client that sent one request and keeps the socket open.
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    stop.send(()).unwrap();
    // Well under the 5 s drain deadline: the idle connection is told to close, not
    // waited out.
    tokio::time::timeout(Duration::from_secs(2), server)
        .await
        .expect("an idle keep-alive connection is closed at shutdown")
        .unwrap()
        .unwrap();
}
