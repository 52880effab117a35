//! The recording downstream: an HTTP service that logs every request with the time it
//! arrived and what it answered. Every 2xx is a side effect. It is deliberately not
//! idempotent: it accepts a repeated idempotency key again, so repeats are visible.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Router;

/// One request as received.
#[derive(Clone, Debug)]
pub struct Call {
    /// When it arrived.
    pub at: Instant,
    /// Its `Idempotency-Key` header.
    pub key: Option<String>,
    /// Which worker process made it: its `X-Chaos-Worker` header (`main-2`, `partner`).
    pub worker: Option<String>,
    /// The body.
    pub body: Bytes,
    /// What the downstream answered.
    pub status: u16,
}

impl Call {
    /// Whether the call took effect.
    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

#[derive(Default)]
struct Ledger {
    calls: Vec<Call>,
    accepted: HashSet<String>,
    refused: HashSet<String>,
    down: bool,
    /// How long every call waits before it is answered (a slow downstream).
    delay: Duration,
}

/// A running downstream.
#[derive(Clone)]
pub struct Downstream {
    ledger: Arc<Mutex<Ledger>>,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Downstream {
    /// Serves on a free loopback port until the process ends.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let app = Router::new().fallback(receive).with_state(ledger.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { ledger, addr })
    }

    fn lock(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answers 503 to everything while `down`.
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    /// Makes every later call wait `delay` before it is answered (and recorded).
    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    /// Distinct idempotency keys accepted, and distinct keys refused with a 4xx.
    pub fn progress(&self) -> (usize, usize) {
        let ledger = self.lock();
        (ledger.accepted.len(), ledger.refused.len())
    }

    /// Every call so far, in arrival order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }
}

/// 503 while down; 400 for a body that is not JSON, 422 for `"fail": true`; else 200.
fn answer(down: bool, body: &[u8]) -> StatusCode {
    if down {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Err(_) => StatusCode::BAD_REQUEST,
        Ok(v) if v["fail"] == serde_json::json!(true) => StatusCode::UNPROCESSABLE_ENTITY,
        Ok(_) => StatusCode::OK,
    }
}

async fn receive(
    State(ledger): State<Arc<Mutex<Ledger>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let delay = ledger.lock().unwrap_or_else(|p| p.into_inner()).delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let worker = headers
        .get(crate::worker::WORKER_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut ledger = ledger.lock().unwrap_or_else(|p| p.into_inner());
    let status = answer(ledger.down, &body);
    if let Some(key) = &key {
        if status.is_success() {
            ledger.accepted.insert(key.clone());
        } else if status.is_client_error() {
            ledger.refused.insert(key.clone());
        }
    }
    ledger.calls.push(Call {
        at: Instant::now(),
        key,
        worker,
        body,
        status: status.as_u16(),
    });
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        assert_eq!(answer(true, b"{}"), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer(false, b"\x01x"), StatusCode::BAD_REQUEST);
        assert_eq!(answer(false, br#"{"fail":true}"#), 422);
        assert_eq!(answer(false, br#"{"id":"a"}"#), StatusCode::OK);
    }
}
