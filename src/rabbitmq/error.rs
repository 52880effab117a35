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
    /// Reading a dead-letter queue took longer than allowed.
    Timeout,
    /// A dead-letter id that the dead-letter queue reader does not hold.
    UnknownId,
}

/// A RabbitMQ failure. Its text names the broker by its redacted URL and never carries a
/// password.
#[derive(Debug)]
pub struct RabbitError {
    kind: RabbitErrorKind,
    context: String,
    /// `None` for failures Seawall detects itself (a timeout, an unknown id, a refused
    /// publish); the context then says everything.
    source: Option<lapin::Error>,
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
            source: Some(source),
        }
    }

    /// An error with no client-library cause.
    pub(crate) fn detected(kind: RabbitErrorKind, context: impl Into<String>) -> Self {
        Self {
            kind,
            context: context.into(),
            source: None,
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
            RabbitErrorKind::Connect | RabbitErrorKind::Publish => {
                !self.source.as_ref().is_some_and(needs_a_person)
            }
            RabbitErrorKind::Timeout => true,
            RabbitErrorKind::Topology | RabbitErrorKind::UnknownId => false,
        }
    }
}

impl fmt::Display for RabbitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(source) => write!(f, "{}: {source}", self.context),
            None => f.write_str(&self.context),
        }
    }
}

impl std::error::Error for RabbitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
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
