//! The handler a route runs: the built-in handler, timed, behind its contract check.

use crate::admin::Measured;
use crate::contract::Contracted;
use crate::handler::{Handler, HandlerError};
use crate::http::HttpHandler;
use crate::kafka::KafkaForwarder;
use crate::message::Message;
use crate::rabbitmq::RabbitForwarder;

/// One of the built-in handlers.
pub(crate) enum Builtin {
    Http(HttpHandler),
    ForwardKafka(KafkaForwarder),
    ForwardRabbit(RabbitForwarder),
}

impl Handler for Builtin {
    async fn handle(&self, message: &Message) -> Result<(), HandlerError> {
        match self {
            Builtin::Http(http) => http.handle(message).await,
            Builtin::ForwardKafka(kafka) => kafka.handle(message).await,
            Builtin::ForwardRabbit(rabbit) => rabbit.handle(message).await,
        }
    }
}

/// The full stack: with or without a contract in front.
pub(crate) enum RouteHandler {
    Checked(Contracted<Measured<Builtin>>),
    Unchecked(Measured<Builtin>),
}

impl Handler for RouteHandler {
    async fn handle(&self, message: &Message) -> Result<(), HandlerError> {
        match self {
            RouteHandler::Checked(checked) => checked.handle(message).await,
            RouteHandler::Unchecked(plain) => plain.handle(message).await,
        }
    }
}
