//! RabbitMQ adapter errors.

use std::fmt;

/// What failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RabbitErrorKind {
    /// Connecting or opening a channel failed.
    Connect,
    /// The queue (or exchange) does not exist, or declaring it failed.
    Topology,
    /// A publish was refused or not confirmed.
    Publish,
}

/// A RabbitMQ failure. Its text names the broker by its redacted URL and never carries a
/// password.
#[derive(Debug)]
pub struct RabbitError {
    kind: RabbitErrorKind,
    context: String,
    source: lapin::Error,
}

impl RabbitError {
    pub(crate) fn new(
        kind: RabbitErrorKind,
        context: impl Into<String>,
        source: lapin::Error,
    ) -> Self {
        Self {
            kind,
            context: context.into(),
            source,
        }
    }

    /// What failed.
    pub fn kind(&self) -> RabbitErrorKind {
        self.kind
    }

    /// Whether trying again later may work: a broker that is down or restarting comes
    /// back; a missing queue or a refused login needs a person.
    pub fn is_recoverable(&self) -> bool {
        match self.kind {
            RabbitErrorKind::Connect | RabbitErrorKind::Publish => !needs_a_person(&self.source),
            RabbitErrorKind::Topology => false,
        }
    }
}

impl fmt::Display for RabbitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, self.source)
    }
}

impl std::error::Error for RabbitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Refusals that retrying cannot fix: wrong credentials or permissions, a missing or
/// differently declared queue, a protocol mismatch.
pub(crate) fn needs_a_person(err: &lapin::Error) -> bool {
    match err.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => matches!(amqp.get_id(), 403 | 404 | 406 | 530),
        lapin::ErrorKind::InvalidProtocolVersion(_) | lapin::ErrorKind::AuthProviderError(_) => {
            true
        }
        _ => false,
    }
}
