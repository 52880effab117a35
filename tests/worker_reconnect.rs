//! Readiness follows the broker connection: a route whose broker connection is lost is
//! not ready until it has reconnected. (Its own binary: the Kafka test stops a broker.)
#![cfg(feature = "worker")]

#[path = "common/link.rs"]
mod link;
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
    // The worker reaches RabbitMQ through a link the test cuts: the route stays
    // disconnected (each reconnect refused) until the test has seen it not ready.
    let link = link::Link::start(broker_address(&rabbit::amqp_url())).await;
    let config = format!(
        r#"[routes.flaky-link]
source.rabbitmq = {{ url = "{}", queue = "{queue}", reconnect = {{ initial = "500ms", max = "500ms" }} }}
handler.http = {{ url = "http://127.0.0.1:1/" }}
"#,
        through_link(&rabbit::amqp_url(), link.port()),
    );
    let worker = WorkerProc::start(&config);
    assert_eq!(readyz(&worker).0, 200);
    link.cut();
    let deadline = Instant::now() + Duration::from_secs(20);
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
    // Refused reconnects keep it not ready.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(readyz(&worker).0, 503, "not ready while reconnects fail");
    link.restore();
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

/// `host:port` of an `amqp://user:pass@host:port/vhost` URL.
fn broker_address(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let after_user = after_scheme
        .rsplit_once('@')
        .map_or(after_scheme, |(_, rest)| rest);
    let address = after_user.split('/').next().unwrap_or(after_user);
    if address.contains(':') {
        address.to_owned()
    } else {
        format!("{address}:5672")
    }
}

/// The same URL with its host (and port) replaced by the link's loopback port.
fn through_link(url: &str, port: u16) -> String {
    let address = broker_address(url);
    // A URL without a port names only the host; broker_address added 5672 to it.
    let written = if url.contains(&address) {
        address.as_str()
    } else {
        address.trim_end_matches(":5672")
    };
    url.replacen(written, &format!("127.0.0.1:{port}"), 1)
}

/// A private Kafka-API broker on its own port, so stopping it disturbs no other test.
struct PrivateBroker {
    child: std::process::Child,
    port: u16,
}

impl PrivateBroker {
    fn start(port: u16) -> Self {
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new("tansu")
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("this test runs its own `tansu` broker; install it as scripts/test.sh does");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not start on {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { child, port }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_route_is_not_ready_while_its_cluster_is_down() {
    let port = worker_proc::free_port();
    let mut broker = PrivateBroker::start(port);
    let config = format!(
        r#"[routes.orders]
source.kafka = {{ brokers = "127.0.0.1:{}", group = "readiness", topics = ["readiness"], properties = {{ "reconnect.backoff.max.ms" = "500" }} }}
handler.http = {{ url = "http://127.0.0.1:1/" }}
"#,
        broker.port
    );
    let worker = WorkerProc::start(&config);
    broker.kill();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut body = String::new();
    while Instant::now() < deadline {
        let (code, text) = readyz(&worker);
        if code == 503 {
            body = text;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        body.contains("orders: failed: lost the broker connection"),
        "{body:?}\n{}",
        worker.log()
    );
    let _broker = PrivateBroker::start(port);
    let deadline = Instant::now() + Duration::from_secs(30);
    while readyz(&worker).0 != 200 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(readyz(&worker).0, 200, "ready again:\n{}", worker.log());
    let (status, log) = worker.stop(Duration::from_secs(30));
    assert!(status.success(), "{status}\n{log}");
}
