//! A scriptable HTTP downstream for worker tests. The request body is an order as JSON;
//! its `note` says how to answer: `ok`, `503xN` (503 for the first N calls of that
//! idempotency key), `429` (429 with `Retry-After: 1` on the first call), `400`
//! (always), `fail:CAUSE` (400 with a cause-specific error naming the order's `seq`, until
//! `fix(CAUSE)`). `set_down(true)` answers 503 to everything.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

/// One request as the downstream saw it.
#[derive(Clone, Debug)]
pub struct Call {
    pub idempotency_key: String,
    pub body: serde_json::Value,
    pub headers: HeaderMap,
    pub status: u16,
    pub at: Instant,
}

#[derive(Default)]
struct Inner {
    calls: Mutex<Vec<Call>>,
    seen: Mutex<HashMap<String, u32>>,
    down: AtomicBool,
    fixed: Mutex<HashSet<String>>,
}

#[derive(Clone)]
pub struct Downstream {
    inner: Arc<Inner>,
    pub addr: SocketAddr,
}

impl Downstream {
    pub async fn start() -> Self {
        let inner = Arc::new(Inner::default());
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { inner, addr }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn set_down(&self, down: bool) {
        self.inner.down.store(down, Ordering::SeqCst);
    }

    /// Orders noted `fail:CAUSE` succeed from now on.
    pub fn fix(&self, cause: &str) {
        self.inner.fixed.lock().unwrap().insert(cause.to_owned());
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.calls.lock().unwrap().clone()
    }

    /// Successful deliveries (2xx), in arrival order.
    pub fn delivered(&self) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.status < 300)
            .collect()
    }

    /// Waits (at most `secs`) until `n` deliveries have succeeded.
    pub async fn until_delivered(&self, n: usize, secs: u64) {
        let deadline = Instant::now() + std::time::Duration::from_secs(secs);
        while self.delivered().len() < n && Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

async fn answer(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    let note = json["note"].as_str().unwrap_or("ok").to_owned();
    let nth = {
        let mut seen = inner.seen.lock().unwrap();
        let count = seen.entry(key.clone()).or_insert(0);
        *count += 1;
        *count
    };
    let failing = note
        .strip_prefix("fail:")
        .filter(|cause| !inner.fixed.lock().unwrap().contains(*cause))
        .map(|cause| failure_text(cause, json["seq"].as_u64().unwrap_or(0)));
    let (status, retry_after) = if inner.down.load(Ordering::SeqCst) {
        (503, None)
    } else if failing.is_some() || note == "400" {
        (400, None)
    } else if note == "429" && nth == 1 {
        (429, Some("1"))
    } else if let Some(n) = note.strip_prefix("503x") {
        if nth <= n.parse().unwrap_or(0) {
            (503, None)
        } else {
            (200, None)
        }
    } else {
        (200, None)
    };
    inner.calls.lock().unwrap().push(Call {
        idempotency_key: key,
        body: json,
        headers,
        status,
        at: Instant::now(),
    });
    let text = failing.unwrap_or_else(|| "answer".to_owned());
    let mut response = (StatusCode::from_u16(status).unwrap(), text).into_response();
    if let Some(after) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", after.parse().unwrap());
    }
    response
}

/// The error a `fail:CAUSE` order gets: the same words per cause, numbers and ids varying.
fn failure_text(cause: &str, seq: u64) -> String {
    match cause {
        "amount" => format!("amount -{} is negative", seq * 7 + 1),
        "customer" => format!("customer c-{} unknown", seq + 100),
        "sku" => format!("sku 'X{seq}' discontinued"),
        other => format!("{other} failed at {seq}"),
    }
}
