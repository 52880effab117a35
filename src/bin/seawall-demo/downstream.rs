//! A small downstream HTTP service that behaves like the systems Seawall protects: it
//! rejects poison, is slow for one customer and flaky for another, and keeps a ledger of
//! what it was sent so duplicates and reordering are visible (`GET /stats`).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

/// How long `slow-sam`'s requests take.
const SLOW: Duration = Duration::from_millis(300);
/// How many times each of `flaky-fred`'s messages fails with 503 before it succeeds.
const FLAKY_FAILURES: u32 = 2;
/// Requests kept for `GET /requests` (the oldest are dropped).
const KEEP_REQUESTS: usize = 10_000;

/// What the downstream answers to one request.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    /// The status code.
    pub status: StatusCode,
    /// How long to wait before answering.
    pub delay: Duration,
}

/// One request as received.
#[derive(Clone, Debug, Serialize)]
pub struct Request {
    path: String,
    idempotency_key: Option<String>,
    body: String,
    status: u16,
}

/// The downstream's counters, as `GET /stats` returns them.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Stats {
    /// Requests received.
    pub requests: u64,
    /// Requests answered 2xx.
    pub successful: u64,
    /// Distinct idempotency keys answered 2xx.
    pub delivered: u64,
    /// 2xx answers for a key already answered 2xx.
    pub duplicates: u64,
    /// First deliveries whose `seq` is below one already delivered for the same
    /// customer on the same path.
    pub out_of_order: u64,
    /// `out_of_order` per customer.
    pub out_of_order_by_customer: BTreeMap<String, u64>,
    /// Requests answered 400.
    pub rejected: u64,
    /// Requests answered 503.
    pub transient: u64,
    /// Distinct keys delivered per path.
    pub delivered_by_path: BTreeMap<String, u64>,
}

/// What the downstream has seen.
#[derive(Default)]
pub struct Ledger {
    stats: Stats,
    delivered_keys: HashSet<String>,
    failures: HashMap<String, u32>,
    last_seq: HashMap<(String, String), u64>,
    requests: VecDeque<Request>,
}

impl Ledger {
    /// Records a request and decides the answer.
    pub fn record(&mut self, path: &str, idempotency_key: Option<&str>, body: &[u8]) -> Answer {
        self.stats.requests += 1;
        let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        let key = idempotency_key
            .map(str::to_owned)
            .or_else(|| Some(parsed.as_ref()?.get("id")?.as_str()?.to_owned()));
        let poison = body.windows(8).any(|w| w == b"\"poison\"");
        let answer = match (&parsed, key) {
            (Some(body), Some(key)) if !poison => self.judge(path, key, body),
            _ => {
                self.stats.rejected += 1;
                Answer {
                    status: StatusCode::BAD_REQUEST,
                    delay: Duration::ZERO,
                }
            }
        };
        if self.requests.len() == KEEP_REQUESTS {
            self.requests.pop_front();
        }
        self.requests.push_back(Request {
            path: path.to_owned(),
            idempotency_key: idempotency_key.map(str::to_owned),
            body: String::from_utf8_lossy(body).into_owned(),
            status: answer.status.as_u16(),
        });
        answer
    }

    /// A well-formed, non-poison request: slow, flaky or delivered.
    fn judge(&mut self, path: &str, key: String, body: &serde_json::Value) -> Answer {
        let customer = body.get("customer").and_then(|c| c.as_str()).unwrap_or("");
        if customer == "flaky-fred" {
            let failures = self.failures.entry(key.clone()).or_insert(0);
            if *failures < FLAKY_FAILURES {
                *failures += 1;
                self.stats.transient += 1;
                return Answer {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    delay: Duration::ZERO,
                };
            }
        }
        self.stats.successful += 1;
        if self.delivered_keys.insert(key) {
            self.stats.delivered += 1;
            *self
                .stats
                .delivered_by_path
                .entry(path.to_owned())
                .or_default() += 1;
            if let Some(seq) = body.get("seq").and_then(|s| s.as_u64()) {
                self.check_order(path, customer, seq);
            }
        } else {
            self.stats.duplicates += 1;
        }
        let delay = if customer == "slow-sam" {
            SLOW
        } else {
            Duration::ZERO
        };
        Answer {
            status: StatusCode::OK,
            delay,
        }
    }

    fn check_order(&mut self, path: &str, customer: &str, seq: u64) {
        let last = self
            .last_seq
            .entry((path.to_owned(), customer.to_owned()))
            .or_insert(0);
        if seq < *last {
            self.stats.out_of_order += 1;
            *self
                .stats
                .out_of_order_by_customer
                .entry(customer.to_owned())
                .or_default() += 1;
        } else {
            *last = seq;
        }
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }
}

type Shared = Arc<Mutex<Ledger>>;

/// The service's routes over a shared ledger.
pub fn router(ledger: Shared) -> Router {
    Router::new()
        .route("/stats", get(stats))
        .route("/requests", get(requests))
        .fallback(receive)
        .with_state(ledger)
}

/// Serves on `listen` until Ctrl-C or SIGTERM.
pub async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("downstream listening on http://{}", listener.local_addr()?);
    let app = router(Shared::default());
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn stats(State(ledger): State<Shared>) -> Json<Stats> {
    Json(lock(&ledger).stats())
}

async fn requests(State(ledger): State<Shared>) -> Json<Vec<Request>> {
    Json(lock(&ledger).requests.iter().cloned().collect())
}

async fn receive(
    State(ledger): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    if method != Method::POST && method != Method::PUT {
        return StatusCode::METHOD_NOT_ALLOWED;
    }
    // The HTTP handler sends the key as `Idempotency-Key`; with `header_prefix` the
    // message's own header arrives too, as a fallback.
    let key = ["idempotency-key", "x-msg-idempotency-key"]
        .iter()
        .find_map(|name| headers.get(*name)?.to_str().ok());
    let answer = lock(&ledger).record(uri.path(), key, &body);
    println!(
        "{} {} key={} -> {}",
        method,
        uri.path(),
        key.unwrap_or("-"),
        answer.status.as_u16()
    );
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    answer.status
}

/// The ledger, even if a handler panicked while holding it (the counters stay usable).
fn lock(ledger: &Shared) -> std::sync::MutexGuard<'_, Ledger> {
    ledger
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(id: &str, customer: &str, seq: u64) -> Vec<u8> {
        serde_json::json!({"id": id, "customer": customer, "seq": seq, "amount": 1.0})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn counts_deliveries_duplicates_and_reordering() {
        let mut l = Ledger::default();
        assert_eq!(
            l.record("/orders", Some("a1"), &order("a1", "alice", 1))
                .status,
            200
        );
        assert_eq!(
            l.record("/orders", Some("a3"), &order("a3", "alice", 3))
                .status,
            200
        );
        assert_eq!(
            l.record("/orders", Some("a2"), &order("a2", "alice", 2))
                .status,
            200
        );
        assert_eq!(
            l.record("/orders", Some("a3"), &order("a3", "alice", 3))
                .status,
            200
        );
        // Same customer, other path: a sequence of its own.
        l.record("/payments", Some("p1"), &order("p1", "alice", 1));
        let s = l.stats();
        assert_eq!((s.requests, s.successful, s.delivered), (5, 5, 4));
        assert_eq!((s.duplicates, s.out_of_order), (1, 1));
        assert_eq!(s.out_of_order_by_customer["alice"], 1);
        assert_eq!(s.delivered_by_path["/orders"], 3);
    }

    #[test]
    fn poison_is_rejected_fred_fails_twice_sam_is_slow() {
        let mut l = Ledger::default();
        let mut poison = order("x", "bob", 1);
        poison.truncate(poison.len() - 1);
        poison.extend_from_slice(br#","note":"poison"}"#);
        assert_eq!(l.record("/o", Some("x"), &poison).status, 400);
        assert_eq!(l.record("/o", Some("y"), b"not json").status, 400);
        let fred = order("f1", "flaky-fred", 1);
        assert_eq!(l.record("/o", Some("f1"), &fred).status, 503);
        assert_eq!(l.record("/o", Some("f1"), &fred).status, 503);
        assert_eq!(l.record("/o", Some("f1"), &fred).status, 200);
        // Another key of fred's fails twice on its own.
        let fred2 = order("f2", "flaky-fred", 2);
        assert_eq!(l.record("/o", Some("f2"), &fred2).status, 503);
        let sam = l.record("/o", None, &order("s1", "slow-sam", 1));
        assert_eq!((sam.status, sam.delay), (StatusCode::OK, SLOW));
        let s = l.stats();
        assert_eq!(
            (s.rejected, s.transient, s.delivered, s.duplicates),
            (2, 3, 2, 0)
        );
    }

    #[tokio::test]
    async fn serves_over_http() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server =
            tokio::spawn(async move { axum::serve(listener, router(Shared::default())).await });
        let client = reqwest::Client::new();
        let base = format!("http://{addr}");
        for _ in 0..2 {
            let status = client
                .post(format!("{base}/orders"))
                .header("Idempotency-Key", "k1")
                .body(order("k1", "carol", 1))
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, 200);
        }
        let stats: serde_json::Value = serde_json::from_str(
            &client
                .get(format!("{base}/stats"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        )
        .unwrap();
        assert_eq!(stats["delivered"], 1);
        assert_eq!(stats["duplicates"], 1);
        assert_eq!(stats["requests"], 2);
        let requests = client
            .get(format!("{base}/requests"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            requests.contains("\"idempotency_key\":\"k1\""),
            "{requests}"
        );
        server.abort();
    }
}
