use std::fmt;
use std::path::PathBuf;

use crate::handler::BoxError;

/// What went wrong in a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The store could not be opened (bad path, permissions, lock held, corruption).
    Open,
    /// The disk refuses writes: it is full, out of quota or read-only. The data is fine;
    /// the store works again once the disk takes writes again.
    Unavailable,
    /// Another read or write failed (an I/O error).
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

    /// A failed read or write: [`StoreErrorKind::Unavailable`] when the disk refuses
    /// writes (full, over quota, read-only), [`StoreErrorKind::Io`] otherwise.
    pub fn from_io(err: std::io::Error) -> Self {
        let kind = if refuses_writes(&err) {
            StoreErrorKind::Unavailable
        } else {
            StoreErrorKind::Io
        };
        Self::new(kind, err)
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
            StoreErrorKind::Unavailable | StoreErrorKind::Io => true,
            StoreErrorKind::Open | StoreErrorKind::Corrupt => false,
        }
    }

    /// Whether the disk refuses writes (full, over quota, read-only) rather than the
    /// store being broken.
    pub fn is_storage_unavailable(&self) -> bool {
        match self.kind {
            StoreErrorKind::Unavailable => true,
            StoreErrorKind::Open | StoreErrorKind::Io | StoreErrorKind::Corrupt => false,
        }
    }
}

/// Whether an I/O error says the disk takes no more writes, as opposed to a fault of
/// the device or of the data.
fn refuses_writes(err: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        err.kind(),
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded | ErrorKind::ReadOnlyFilesystem
    )
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            StoreErrorKind::Open => "cannot open idempotency store",
            StoreErrorKind::Unavailable => "idempotency store cannot write",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_or_read_only_disk_is_unavailable_and_recoverable() {
        for errno in [28, 30, 122] {
            // ENOSPC, EROFS, EDQUOT
            let err = StoreError::from_io(std::io::Error::from_raw_os_error(errno));
            assert!(err.is_storage_unavailable(), "errno {errno}");
            assert!(err.is_recoverable(), "errno {errno}");
        }
        let eio = StoreError::from_io(std::io::Error::from_raw_os_error(5));
        assert_eq!(eio.kind(), StoreErrorKind::Io);
        assert!(!eio.is_storage_unavailable());
        assert!(eio.is_recoverable());
    }
}
