//! `seawall check`: reach every broker and downstream a config names, consuming nothing.

use std::time::Duration;

use super::config::{ForwardSpec, HandlerSpec, RouteSpec, SourceSpec};
use crate::http::HttpConfig;
use crate::kafka::{missing_topics, KafkaConfig, KafkaForwarder};
use crate::rabbitmq::{probe_queue, RabbitForwarder};

/// How long one connectivity probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// One line of the check's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// `routes.<name>.source`, `routes.<name>.handler`.
    pub what: String,
    /// What was reached, secrets redacted.
    pub target: String,
    /// `Ok` or why not.
    pub outcome: Result<(), String>,
}

impl RouteSpec {
    /// One line saying what the route connects, with secrets redacted.
    pub fn summary(&self) -> String {
        let source = match &self.source {
            SourceSpec::Kafka(k) => format!("kafka {:?} (group {})", k.topics, k.group),
            SourceSpec::Rabbitmq(r) => format!("rabbitmq queue `{}` on {}", r.queue, r.url),
        };
        let handler = match &self.handler {
            HandlerSpec::Http(h) => format!("http {} {}", h.method, redacted_url(&h.url)),
            HandlerSpec::Forward(ForwardSpec::Kafka(t)) => {
                format!("forward to kafka topic `{}` on {}", t.topic, t.brokers)
            }
            HandlerSpec::Forward(ForwardSpec::Rabbitmq(t)) => {
                format!("forward to rabbitmq exchange `{}` on {}", t.exchange, t.url)
            }
        };
        let contract = self
            .contract
            .as_ref()
            .map(|c| {
                format!(
                    ", contract `{}` ({})",
                    c.name.as_deref().unwrap_or("any"),
                    c.encoding.as_str()
                )
            })
            .unwrap_or_default();
        format!("{source} -> {handler}{contract}")
    }
}

/// Probes the route's source and handler target.
pub async fn probe_route(route: &RouteSpec) -> Vec<Probe> {
    let at = format!("routes.{}", route.name);
    vec![
        probe_source(&at, &route.source).await,
        probe_handler(&at, &route.handler).await,
    ]
}

async fn probe_source(at: &str, source: &SourceSpec) -> Probe {
    let what = format!("{at}.source");
    match source {
        SourceSpec::Kafka(kafka) => Probe {
            what,
            target: format!("kafka {} topics {:?}", kafka.brokers, kafka.topics),
            outcome: kafka_topics(kafka, kafka.topics.clone()).await,
        },
        SourceSpec::Rabbitmq(rabbit) => Probe {
            what,
            target: format!("rabbitmq {} queue `{}`", rabbit.url, rabbit.queue),
            outcome: bounded(async { probe_queue(rabbit).await.map_err(|e| e.to_string()) }).await,
        },
    }
}

async fn kafka_topics(kafka: &KafkaConfig, topics: Vec<String>) -> Result<(), String> {
    match missing_topics(kafka, topics, PROBE_TIMEOUT).await {
        Ok(missing) if missing.is_empty() => Ok(()),
        Ok(missing) => Err(format!("no such topic: {}", missing.join(", "))),
        Err(err) => Err(err.to_string()),
    }
}

async fn probe_handler(at: &str, handler: &HandlerSpec) -> Probe {
    let what = format!("{at}.handler");
    match handler {
        HandlerSpec::Http(http) => Probe {
            what,
            target: format!("http {} {}", http.method, redacted_url(&http.url)),
            outcome: tcp_reachable(http).await,
        },
        HandlerSpec::Forward(ForwardSpec::Kafka(target)) => Probe {
            what,
            target: format!("forward kafka {} topic `{}`", target.brokers, target.topic),
            outcome: bounded(async {
                KafkaForwarder::connect(target.clone())
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
            .await,
        },
        HandlerSpec::Forward(ForwardSpec::Rabbitmq(target)) => Probe {
            what,
            target: format!(
                "forward rabbitmq {} exchange `{}`",
                target.url, target.exchange
            ),
            outcome: bounded(async {
                RabbitForwarder::connect(target.clone())
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
            .await,
        },
    }
}

async fn bounded(
    probe: impl std::future::Future<Output = Result<(), String>>,
) -> Result<(), String> {
    tokio::time::timeout(PROBE_TIMEOUT, probe)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {PROBE_TIMEOUT:?}")))
}

/// The URL without user info, for display.
fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}{tail}"),
        None => url.to_owned(),
    }
}

/// Opens (and closes) a TCP connection to the endpoint: proves the host and port answer
/// without sending a request a downstream would act on.
async fn tcp_reachable(http: &HttpConfig) -> Result<(), String> {
    let Some((host, port)) = host_port(&http.url) else {
        return Err(format!(
            "cannot read host and port from `{}`",
            redacted_url(&http.url)
        ));
    };
    bounded(async move {
        tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map(drop)
            .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))
    })
    .await
}

fn host_port(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        443
    } else {
        80
    };
    match host_port.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
            let port = port.parse().ok()?;
            Some((host.trim_matches(['[', ']']).to_owned(), port))
        }
        _ => Some((host_port.trim_matches(['[', ']']).to_owned(), default_port)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_from_urls() {
        assert_eq!(host_port("http://a:8080/x"), Some(("a".into(), 8080)));
        assert_eq!(host_port("https://u:p@b/x"), Some(("b".into(), 443)));
        assert_eq!(host_port("http://[::1]:81/"), Some(("::1".into(), 81)));
        assert_eq!(redacted_url("https://u:secret@b/x"), "https://***@b/x");
        assert_eq!(redacted_url("http://a/b@c"), "http://a/b@c");
        assert_eq!(redacted_url("http://a:1/x"), "http://a:1/x");
    }
}
