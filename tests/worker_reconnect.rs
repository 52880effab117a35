//! Readiness follows the broker connection: a route whose RabbitMQ connection is lost is
//! not ready until it has reconnected. (Its own binary: it closes every connection of
//! the broker, which would disturb tests running beside it.)
#![cfg(feature = "worker")]

#[path = "common/rabbit.rs"]
mod rabbit;
#[path = "common/worker_proc.rs"]
mod worker_proc;

use std::process::Command;
use std::time::{Duration, Instant};

use worker_proc::WorkerProc;

fn readyz(worker: &WorkerProc) -> (u16, String) {
    worker.get("/readyz").unwrap_or((0, String::new()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_makes_the_route_not_ready_until_it_reconnects() {
    let queue = rabbit::unique("e2e-reconnect");
    let (connection, channel) = rabbit::channel().await;
    rabbit::declare(&channel, &queue).await;
    let config = format!(
        r#"[routes.flaky-link]
source.rabbitmq = {{ url = "{}", queue = "{queue}", reconnect = {{ initial = "3s", max = "3s" }} }}
handler.http = {{ url = "http://127.0.0.1:1/" }}
"#,
        rabbit::amqp_url(),
    );
    let worker = WorkerProc::start(&config);
    assert_eq!(readyz(&worker).0, 200);
    let out = Command::new("rabbitmqctl")
        .args(["close_all_connections", "seawall readiness test"])
        .output()
        .expect("this test closes connections with rabbitmqctl; run it on the machine that runs RabbitMQ (scripts/test.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut seen_down = None;
    while Instant::now() < deadline {
        let (code, body) = readyz(&worker);
        if code == 503 {
            seen_down = Some(body);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let body = seen_down.expect("not ready while reconnecting");
    assert!(
        body.contains("flaky-link: failed: lost the broker connection"),
        "{body}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while readyz(&worker).0 != 200 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(readyz(&worker).0, 200, "ready again after reconnecting");
    let (status, log) = worker.stop(Duration::from_secs(30));
    assert!(status.success(), "{status}\n{log}");
    drop(connection);
    let (_connection, channel) = rabbit::channel().await;
    rabbit::delete(&channel, &[&queue, &format!("{queue}.dlq")]).await;
}
