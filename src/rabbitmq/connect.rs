//! Connections, channels and the topology Seawall declares.

use std::time::Duration;

use lapin::options::{
    BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::tcp::OwnedTLSConfig;
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, Consumer, ExchangeKind};

use super::config::{AmqpTls, AmqpUrl, RabbitConfig};
use super::error::{RabbitError, RabbitErrorKind};

/// How long opening a connection and its channel may take.
const OPEN_WAIT: Duration = Duration::from_secs(30);

/// A connection with one channel.
pub(crate) struct Link {
    pub connection: Connection,
    pub channel: Channel,
}

impl Link {
    /// Connects trusting also the CA of `tls` (for `amqps://`); the broker's certificate
    /// must name the URL's host either way.
    pub(crate) async fn open_with_tls(
        url: &AmqpUrl,
        tls: Option<&AmqpTls>,
        name: &str,
    ) -> Result<Self, RabbitError> {
        let context = || format!("connecting to {url}");
        let properties = ConnectionProperties::default().with_connection_name(name.into());
        let tls_config = OwnedTLSConfig {
            identity: None,
            cert_chain: match tls {
                Some(tls) => tls.ca_pem().map_err(|e| {
                    RabbitError::detected(RabbitErrorKind::Connect, format!("{}: {e}", context()))
                })?,
                None => None,
            },
        };
        let runtime = lapin::runtime::default_runtime()
            .map_err(|e| RabbitError::new(RabbitErrorKind::Connect, context(), e))?;
        let open = async {
            let connection =
                Connection::connect_with_config(url.expose(), properties, tls_config, runtime)
                    .await?;
            let channel = connection.create_channel().await?;
            Ok::<_, lapin::Error>(Self {
                connection,
                channel,
            })
        };
        // A broker that accepts the TCP connection but never finishes the handshake (one
        // still booting, or stopping) would otherwise hold a reconnect loop forever.
        match tokio::time::timeout(OPEN_WAIT, open).await {
            Ok(link) => link.map_err(|e| RabbitError::new(RabbitErrorKind::Connect, context(), e)),
            Err(_) => Err(RabbitError::detected(
                RabbitErrorKind::Connect,
                format!("{}: no answer within {OPEN_WAIT:?}", context()),
            )),
        }
    }

    /// Closes the channel and the connection, ignoring failures: the broker cleans up
    /// after a connection that is already gone.
    pub(crate) async fn close(&self) {
        let _ = self.channel.close(200, "seawall stopping".into()).await;
        let _ = self.connection.close(200, "seawall stopping".into()).await;
    }
}

fn exchange_kind(name: &str) -> ExchangeKind {
    match name {
        "direct" => ExchangeKind::Direct,
        "fanout" => ExchangeKind::Fanout,
        "headers" => ExchangeKind::Headers,
        _ => ExchangeKind::Topic,
    }
}

fn topology(context: String) -> impl FnOnce(lapin::Error) -> RabbitError {
    move |e| RabbitError::new(RabbitErrorKind::Topology, context, e)
}

/// Declares the source queue and its bindings, or checks that it exists.
async fn declare_source(channel: &Channel, config: &RabbitConfig) -> Result<(), RabbitError> {
    let queue = config.queue.as_str();
    let Some(declare) = &config.declare else {
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(queue.into(), passive, FieldTable::default())
            .await
            .map_err(topology(format!(
                "queue `{queue}` does not exist on {}",
                config.url
            )))?;
        return Ok(());
    };
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await
        .map_err(topology(format!("declaring queue `{queue}`")))?;
    if declare.exchange.is_empty() {
        return Ok(());
    }
    let exchange = declare.exchange.as_str();
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            exchange.into(),
            exchange_kind(&declare.exchange_kind),
            durable,
            FieldTable::default(),
        )
        .await
        .map_err(topology(format!("declaring exchange `{exchange}`")))?;
    for key in &declare.routing_keys {
        channel
            .queue_bind(
                queue.into(),
                exchange.into(),
                key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(topology(format!(
                "binding queue `{queue}` to `{exchange}` with `{key}`"
            )))?;
    }
    Ok(())
}

/// Opens a consuming channel: prefetch, topology, `basic.consume` with manual acks.
pub(crate) async fn open_consumer(
    config: &RabbitConfig,
    tag: &str,
) -> Result<(Link, Consumer), RabbitError> {
    let name = format!("seawall source {}", config.queue);
    let link = Link::open_with_tls(&config.url, config.tls.as_ref(), &name).await?;
    link.channel
        .basic_qos(config.prefetch, BasicQosOptions::default())
        .await
        .map_err(|e| RabbitError::new(RabbitErrorKind::Connect, "setting prefetch", e))?;
    declare_source(&link.channel, config).await?;
    let consumer = link
        .channel
        .basic_consume(
            config.queue.as_str().into(),
            tag.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(topology(format!("consuming from queue `{}`", config.queue)))?;
    Ok((link, consumer))
}

/// Opens a publishing channel with confirms and checks that `exchange` exists (the
/// default exchange, `""`, always does).
pub(crate) async fn open_publisher(
    url: &AmqpUrl,
    tls: Option<&AmqpTls>,
    name: &str,
    exchange: &str,
) -> Result<Link, RabbitError> {
    let link = Link::open_with_tls(url, tls, name).await?;
    link.channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| {
            RabbitError::new(RabbitErrorKind::Connect, "enabling publisher confirms", e)
        })?;
    if !exchange.is_empty() {
        let passive = ExchangeDeclareOptions {
            passive: true,
            ..ExchangeDeclareOptions::default()
        };
        link.channel
            .exchange_declare(
                exchange.into(),
                ExchangeKind::Topic,
                passive,
                FieldTable::default(),
            )
            .await
            .map_err(topology(format!("exchange `{exchange}`")))?;
    }
    Ok(link)
}

/// Opens a publishing channel with confirms, and declares (or checks) the dead-letter
/// exchange and queue.
pub(crate) async fn open_dead_letter_publisher(config: &RabbitConfig) -> Result<Link, RabbitError> {
    let name = format!("seawall dead-letter {}", config.queue);
    let link = open_publisher(&config.url, config.tls.as_ref(), &name, "").await?;
    let exchange = config.dead_letter_exchange();
    let queue = config.dead_letter_queue();
    let passive = config.dead_letter.passive;
    let exchange_options = ExchangeDeclareOptions {
        durable: true,
        passive,
        ..ExchangeDeclareOptions::default()
    };
    link.channel
        .exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Fanout,
            exchange_options,
            FieldTable::default(),
        )
        .await
        .map_err(topology(format!("dead-letter exchange `{exchange}`")))?;
    let queue_options = QueueDeclareOptions {
        durable: true,
        passive,
        ..QueueDeclareOptions::default()
    };
    link.channel
        .queue_declare(queue.as_str().into(), queue_options, FieldTable::default())
        .await
        .map_err(topology(format!("dead-letter queue `{queue}`")))?;
    if !passive {
        link.channel
            .queue_bind(
                queue.as_str().into(),
                exchange.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(topology(format!("binding `{queue}` to `{exchange}`")))?;
    }
    Ok(link)
}

/// Connects and, when Seawall does not declare the queue, checks that it exists; for
/// `seawall check`. Consumes nothing.
pub(crate) async fn probe_queue(config: &RabbitConfig) -> Result<(), RabbitError> {
    let link = Link::open_with_tls(&config.url, config.tls.as_ref(), "seawall check").await?;
    let result = if config.declare.is_none() {
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        link.channel
            .queue_declare(config.queue.as_str().into(), passive, FieldTable::default())
            .await
            .map(|_| ())
            .map_err(topology(format!("queue `{}`", config.queue)))
    } else {
        Ok(())
    };
    link.close().await;
    result
}
