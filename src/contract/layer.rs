//! The handler layer that holds messages to their contract.

use crate::handler::{Handler, HandlerError};
use crate::message::Message;

use super::check::ContractCheck;

/// The content type a transcoded message carries.
const JSON_CONTENT_TYPE: &str = "application/json";

/// Wraps a handler: each message is checked against the route's contract first. A
/// violation returns [`HandlerError::contract`] (dead-lettered at once with kind
/// `contract`, with the violation as reason) and the inner handler is not called. A
/// message that passes goes to the inner handler unchanged, or, with `transcode_json`,
/// with its payload replaced by the JSON encoding and `content-type: application/json`
/// (key, other headers, message id, origin, attempt and idempotency key kept).
pub struct Contracted<H> {
    check: ContractCheck,
    inner: H,
}

impl<H: Handler> Contracted<H> {
    /// Checks messages with `check` before `inner` sees them.
    pub fn new(check: ContractCheck, inner: H) -> Self {
        Self { check, inner }
    }

    /// The check applied.
    pub fn check(&self) -> &ContractCheck {
        &self.check
    }

    /// The wrapped handler.
    pub fn inner(&self) -> &H {
        &self.inner
    }

    /// The message the inner handler is to see, or the contract error.
    fn admit(&self, message: &Message) -> Result<Option<Message>, HandlerError> {
        let decoded = self
            .check
            .check(message.payload())
            .map_err(HandlerError::contract)?;
        if !self.check.transcode_json() {
            return Ok(None);
        }
        // A serde_json::Value always serializes (string keys, finite numbers).
        let json = serde_json::to_vec(&decoded.to_json()).map_err(HandlerError::permanent)?;
        let mut headers = message.headers().clone();
        headers.retain(|name, _| !name.eq_ignore_ascii_case("content-type"));
        headers.push("content-type", JSON_CONTENT_TYPE);
        Ok(Some(
            message.clone().with_payload(json).with_headers(headers),
        ))
    }
}

impl<H: Handler> Handler for Contracted<H> {
    async fn handle(&self, message: &Message) -> Result<(), HandlerError> {
        match self.admit(message)? {
            Some(transcoded) => self.inner.handle(&transcoded).await,
            None => self.inner.handle(message).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::contract::{ContractRegistry, ContractSpec, Encoding};

    #[test]
    fn transcoding_keeps_the_pipeline_fields() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
        let registry = Arc::new(ContractRegistry::load(&dir).unwrap());
        let spec = ContractSpec {
            name: Some("order".into()),
            encoding: Encoding::Json,
            transcode_json: true,
        };
        let check = ContractCheck::new(registry, &spec).unwrap();
        let layer = Contracted::new(check, crate::handler_fn(|_: Message| async { Ok(()) }));
        let mut message = Message::new(r#"{"id":"o","customer":"c","amount":1}"#).with_origin(
            "orders",
            crate::Position::Offset {
                partition: 3,
                offset: 9,
            },
        );
        message.set_attempt(2);
        message.set_idempotency_key(Some(Bytes::from_static(b"k-1")));
        let passed = layer.admit(&message).unwrap().unwrap();
        assert_eq!(passed.attempt(), 2);
        assert_eq!(passed.idempotency_key().unwrap(), "k-1");
        assert_eq!(passed.origin(), message.origin());
        let json: serde_json::Value = serde_json::from_slice(passed.payload()).unwrap();
        assert_eq!(json["currency"], "EUR");
    }
}
