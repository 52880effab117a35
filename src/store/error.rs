use std::fmt;
use std::path::PathBuf;

use crate::handler::BoxError;

/// What went wrong in a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The store could not be opened (bad path, permissions, lock held, corruption).
    Open,
    /// A read or write failed (disk full, read-only, I/O error).
    Io,
    /// A stored record could not be decoded.
    Corrupt,
}

/// A store failure, naming the store's path when it has one.
#[derive(Debug)]
pub struct StoreError {
    kind: StoreErrorKind,
    path: Option<PathBuf>,
    source: BoxError,
}

impl StoreError {
    /// A new error of `kind`.
    pub fn new(kind: StoreErrorKind, source: impl Into<BoxError>) -> Self {
        Self {
            kind,
            path: None,
            source: source.into(),
        }
    }

    /// Names the store's path in the error.
    pub fn at(mut self, path: impl Into<PathBuf>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// Whether waiting and trying again may succeed (a full disk may be cleared; a
    /// corrupt record or a store that cannot open needs an operator).
    pub fn is_recoverable(&self) -> bool {
        match self.kind {
            StoreErrorKind::Io => true,
            StoreErrorKind::Open | StoreErrorKind::Corrupt => false,
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            StoreErrorKind::Open => "cannot open idempotency store",
            StoreErrorKind::Io => "idempotency store I/O failed",
            StoreErrorKind::Corrupt => "idempotency store holds a corrupt record",
        };
        match &self.path {
            Some(path) => write!(f, "{what} at {}: {}", path.display(), self.source),
            None => write!(f, "{what}: {}", self.source),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
}
