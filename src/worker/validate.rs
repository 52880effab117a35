//! Checks of one route's settings that serde cannot express.

use super::config::{ForwardSpec, HandlerSpec, RouteSpec, SourceSpec};
use crate::error::ConfigError;

/// Checks the route; the error's field is relative to the route (`retry.max_attempts`).
pub(crate) fn route(spec: &RouteSpec) -> Result<(), ConfigError> {
    spec.pipeline.validate()?;
    match &spec.source {
        SourceSpec::Kafka(kafka) => kafka.validate().map_err(|e| e.under("source.kafka"))?,
        SourceSpec::Rabbitmq(rabbit) => {
            rabbit.validate().map_err(|e| e.under("source.rabbitmq"))?
        }
    }
    match &spec.handler {
        HandlerSpec::Http(http) => http.validate().map_err(|e| e.under("handler.http"))?,
        HandlerSpec::Forward(ForwardSpec::Kafka(target)) => target
            .validate()
            .map_err(|e| e.under("handler.forward.kafka"))?,
        HandlerSpec::Forward(ForwardSpec::Rabbitmq(target)) => target
            .validate()
            .map_err(|e| e.under("handler.forward.rabbitmq"))?,
    }
    if let Some(contract) = &spec.contract {
        contract.validate().map_err(|e| e.under("contract"))?;
    }
    Ok(())
}
