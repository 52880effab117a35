//! A scriptable HTTP downstream for worker tests. The request body is an order as JSON;
//! its `note` says how to answer: `ok`, `503xN` (503 for the first N calls of that
//! idempotency key), `429` (429 with `Retry-After: 1` on the first call), `400`
//! (always). `set_down(true)` answers 503 to everything.
#![allow(dead_code)]

use std::collections::HashMap;
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
    let (status, retry_after) = if inner.down.load(Ordering::SeqCst) {
        (503, None)
    } else if note == "400" {
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
    let mut response = (StatusCode::from_u16(status).unwrap(), "answer").into_response();
    if let Some(after) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", after.parse().unwrap());
    }
    response
}
