//! A RabbitMQ for the tests: `AMQP_URL`, else a container started with Docker, else a
//! failure that says how to provide one. Tests never skip silently.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

const HOW: &str = "the RabbitMQ tests need a broker: set AMQP_URL \
(for example amqp://guest:guest@127.0.0.1:5672/%2f, as scripts/test.sh does), \
or install Docker so the tests can start a rabbitmq:3.13 container";

pub fn amqp_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| match std::env::var("AMQP_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => docker_rabbit().unwrap_or_else(|why| panic!("{HOW} ({why})")),
    })
    .clone()
}

fn docker_rabbit() -> Result<String, String> {
    let run = std::process::Command::new("docker")
        .args([
            "run",
            "-d",
            "--rm",
            "-P",
            "--label",
            "seawall-test",
            "rabbitmq:3.13",
        ])
        .output()
        .map_err(|e| format!("docker: {e}"))?;
    if !run.status.success() {
        return Err(format!(
            "docker run: {}",
            String::from_utf8_lossy(&run.stderr).trim()
        ));
    }
    let id = String::from_utf8_lossy(&run.stdout).trim().to_owned();
    let port = std::process::Command::new("docker")
        .args(["port", &id, "5672/tcp"])
        .output()
        .map_err(|e| format!("docker port: {e}"))?;
    let mapped = String::from_utf8_lossy(&port.stdout);
    let port = mapped
        .lines()
        .next()
        .and_then(|l| l.rsplit(':').next())
        .ok_or("no mapped port")?
        .trim()
        .to_owned();
    let url = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
    // The tests call this from inside a runtime; wait for the broker on a thread of its own.
    let probe = url.clone();
    let ready = std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
        for _ in 0..120 {
            if runtime
                .block_on(Connection::connect(&probe, ConnectionProperties::default()))
                .is_ok()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        Err("the container did not accept connections within 60s".to_owned())
    });
    ready
        .join()
        .map_err(|_| "waiting for the container panicked".to_owned())??;
    Ok(url)
}

/// A queue name no other test uses.
pub fn unique(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "seawall-test-{name}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

pub async fn channel() -> (Connection, Channel) {
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .expect(HOW);
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    (connection, channel)
}

pub async fn declare(channel: &Channel, queue: &str) {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await
        .unwrap();
}

/// One message to publish: ordering header, message id, payload.
pub struct Out {
    pub key: String,
    pub id: Option<String>,
    pub payload: String,
}

pub async fn publish(channel: &Channel, queue: &str, messages: impl IntoIterator<Item = Out>) {
    let mut confirms = Vec::new();
    for out in messages {
        let mut headers = FieldTable::default();
        headers.insert(
            "ordering-key".into(),
            AMQPValue::LongString(LongString::from(out.key.clone())),
        );
        headers.insert("x-count".into(), AMQPValue::LongInt(7));
        let mut properties = BasicProperties::default()
            .with_headers(headers)
            .with_delivery_mode(2);
        if let Some(id) = out.id {
            properties = properties.with_message_id(id.into());
        }
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                out.payload.as_bytes(),
                properties,
            )
            .await
            .unwrap();
        confirms.push(confirm);
        if confirms.len() >= 500 {
            for confirm in confirms.drain(..) {
                confirm.await.unwrap();
            }
        }
    }
    for confirm in confirms {
        confirm.await.unwrap();
    }
}

pub async fn queue_len(channel: &Channel, queue: &str) -> u32 {
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
        .unwrap()
        .message_count()
}

/// Takes every message off `queue` (acking them), in order.
pub async fn drain(channel: &Channel, queue: &str) -> Vec<lapin::message::BasicGetMessage> {
    let mut out = Vec::new();
    while let Some(message) = channel
        .basic_get(queue.into(), BasicGetOptions::default())
        .await
        .unwrap()
    {
        message
            .delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .unwrap();
        out.push(message);
    }
    out
}

pub async fn delete(channel: &Channel, queues: &[&str]) {
    for queue in queues {
        let _ = channel
            .queue_delete((*queue).into(), QueueDeleteOptions::default())
            .await;
    }
}

pub fn header_text(message: &lapin::message::BasicGetMessage, name: &str) -> Option<String> {
    let headers = message.delivery.properties.headers().as_ref()?;
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        other => Some(format!("{other:?}")),
    }
}
