//! TLS to RabbitMQ (`amqps://`) and Kafka (`SSL`) checks the broker's host name: with a
//! CA made here and trusted through the config (`tls.ca_file`, `ssl.ca.location`), a
//! certificate for `wrong.example` is refused, and one for `127.0.0.1` from the same CA
//! passes the handshake — so the refusal is for the name, not the CA.
//!
//! The "brokers" are TLS listeners in this test, one per route so each client's
//! handshakes are counted apart, that complete the handshake and hang up;
//! `seawall check` (at `RUST_LOG=librdkafka=debug`, which shows librdkafka's TLS errors)
//! is pointed at them.
#![cfg(feature = "worker")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A test CA (PEM) and acceptors with certificates it signed for `names`.
fn ca_and_acceptors(names: &[&[&str]]) -> (String, Vec<TlsAcceptor>) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    // rcgen gives every certificate the same default subject, and a leaf whose subject
    // equals its issuer's looks self-signed to OpenSSL (librdkafka), which refuses it
    // whatever its names: the CA and each leaf get names of their own.
    ca_params.distinguished_name = distinguished_name("seawall test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let acceptors = names
        .iter()
        .map(|names| {
            let key = KeyPair::generate().unwrap();
            let sans: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
            let mut params = CertificateParams::new(sans).unwrap();
            params.distinguished_name = distinguished_name(names[0]);
            let cert = params.signed_by(&key, &ca).unwrap();
            let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let config = rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![cert.der().clone()], key)
                .unwrap();
            TlsAcceptor::from(Arc::new(config))
        })
        .collect();
    (ca.pem(), acceptors)
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

/// A listener that completes TLS handshakes, counts them, and hangs up.
async fn tls_listener(acceptor: TlsAcceptor) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&handshakes);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let counted = Arc::clone(&counted);
            tokio::spawn(async move {
                if acceptor.accept(stream).await.is_ok() {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    (port, handshakes)
}

/// Listener ports: AMQP wrong, AMQP right, Kafka wrong, Kafka right.
fn config(ca: &str, ports: [u16; 4]) -> String {
    let route = |name: &str, port: u16, amqp: bool| {
        let source = if amqp {
            format!(
                r#"source.rabbitmq = {{ url = "amqps://guest:guest@127.0.0.1:{port}/%2f", queue = "q", tls = {{ ca_file = "{ca}" }} }}"#
            )
        } else {
            format!(
                r#"source.kafka = {{ brokers = "localhost:{port}", group = "g", topics = ["t"], properties = {{ "security.protocol" = "SSL", "ssl.ca.location" = "{ca}", "debug" = "security,broker" }} }}"#
            )
        };
        format!("[routes.{name}]\n{source}\nhandler.http = {{ url = \"http://127.0.0.1:9/\" }}\n\n")
    };
    [
        route("rabbit-wrong", ports[0], true),
        route("rabbit-right", ports[1], true),
        route("kafka-wrong", ports[2], false),
        route("kafka-right", ports[3], false),
    ]
    .concat()
}

/// The line of `seawall check`'s report for `what`.
fn report_line<'a>(stdout: &'a str, what: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.contains(what))
        .unwrap_or_else(|| panic!("no `{what}` in:\n{stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_host_is_refused() {
    let (ca, acceptors) = ca_and_acceptors(&[&["wrong.example"], &["127.0.0.1", "localhost"]]);
    let (rabbit_wrong, rabbit_wrong_handshakes) = tls_listener(acceptors[0].clone()).await;
    let (rabbit_right, rabbit_right_handshakes) = tls_listener(acceptors[1].clone()).await;
    let (kafka_wrong, kafka_wrong_handshakes) = tls_listener(acceptors[0].clone()).await;
    let (kafka_right, kafka_right_handshakes) = tls_listener(acceptors[1].clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca).unwrap();
    let path = dir.path().join("seawall.toml");
    std::fs::write(
        &path,
        config(
            &ca_path.display().to_string(),
            [rabbit_wrong, rabbit_right, kafka_wrong, kafka_right],
        ),
    )
    .unwrap();

    let started = std::time::Instant::now();
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_seawall"))
        .args(["check", "--config"])
        .arg(&path)
        .env("RUST_LOG", "seawall=info,librdkafka=debug")
        .output();
    // The listeners run on the runtime's other threads meanwhile.
    let output = tokio::task::spawn_blocking(move || check.unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let all = format!("{stdout}\n{stderr}");
    assert!(
        started.elapsed().as_secs() < 30,
        "check took {:?}",
        started.elapsed()
    );

    // RabbitMQ: the wrong name is refused by name; the right one passes TLS and then
    // fails only because this is no AMQP broker.
    let rabbit_wrong = report_line(&stdout, "routes.rabbit-wrong.source");
    assert!(
        rabbit_wrong.contains("NotValidForName") || rabbit_wrong.contains("not valid for name"),
        "{rabbit_wrong}"
    );
    let rabbit_right = report_line(&stdout, "routes.rabbit-right.source");
    assert!(
        !rabbit_right.to_lowercase().contains("certificate"),
        "{rabbit_right}"
    );

    // Kafka: the wrong listener saw no completed handshake (below), the right one did.
    assert!(report_line(&stdout, "routes.kafka-wrong.source").contains("FAILED"));

    // Nobody completed a handshake with the wrong name; both clients did with the right
    // one, from the same CA: the refusal is for the name.
    let count = |handshakes: &Arc<AtomicUsize>| handshakes.load(Ordering::SeqCst);
    println!(
        "handshakes: AMQP wrong {}, right {}; Kafka wrong {}, right {}",
        count(&rabbit_wrong_handshakes),
        count(&rabbit_right_handshakes),
        count(&kafka_wrong_handshakes),
        count(&kafka_right_handshakes)
    );
    assert_eq!(count(&rabbit_wrong_handshakes), 0, "{all}");
    assert_eq!(count(&kafka_wrong_handshakes), 0, "{all}");
    assert!(count(&rabbit_right_handshakes) >= 1, "{all}");
    assert!(count(&kafka_right_handshakes) >= 1, "{all}");
}
