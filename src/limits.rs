//! Size limits checked before anything decodes a message.

use std::fmt;

use serde::Deserialize;

use crate::message::Message;

/// Bounds on what a message may carry. Anything over a bound is dead-lettered with kind
/// `oversize` without reaching the handler.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest payload in bytes (default 1 MiB).
    pub max_payload_bytes: usize,
    /// Most headers on one message, counting repeats (default 128).
    pub max_headers: usize,
    /// Largest single header, name plus value, in bytes (default 64 KiB).
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_payload_bytes: 1024 * 1024,
            max_headers: 128,
            max_header_bytes: 64 * 1024,
        }
    }
}

/// Which limit a message broke, with the figures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LimitViolation {
    /// The payload is too large.
    Payload {
        /// Actual size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Too many headers.
    HeaderCount {
        /// Actual count.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// One header is too large.
    HeaderSize {
        /// The header's name, cut to 64 bytes.
        name: String,
        /// Name plus value size.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

impl fmt::Display for LimitViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitViolation::Payload { size, limit } => write!(
                f,
                "payload is {size} bytes, over limits.max_payload_bytes = {limit}"
            ),
            LimitViolation::HeaderCount { count, limit } => {
                write!(
                    f,
                    "message has {count} headers, over limits.max_headers = {limit}"
                )
            }
            LimitViolation::HeaderSize { name, size, limit } => write!(
                f,
                "header `{name}` is {size} bytes, over limits.max_header_bytes = {limit}"
            ),
        }
    }
}

impl Limits {
    /// Checks `message` against every limit, cheapest first.
    pub fn check(&self, message: &Message) -> Result<(), LimitViolation> {
        let size = message.payload().len();
        if size > self.max_payload_bytes {
            return Err(LimitViolation::Payload {
                size,
                limit: self.max_payload_bytes,
            });
        }
        let count = message.headers().len();
        if count > self.max_headers {
            return Err(LimitViolation::HeaderCount {
                count,
                limit: self.max_headers,
            });
        }
        for (name, value) in message.headers().iter() {
            let size = name.len() + value.len();
            if size > self.max_header_bytes {
                return Err(LimitViolation::HeaderSize {
                    name: name.chars().take(64).collect(),
                    size,
                    limit: self.max_header_bytes,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tight() -> Limits {
        Limits {
            max_payload_bytes: 4,
            max_headers: 2,
            max_header_bytes: 8,
        }
    }

    #[test]
    fn within_limits_passes() {
        let msg = Message::new("abcd")
            .with_header("a", "1")
            .with_header("b", "2");
        assert_eq!(tight().check(&msg), Ok(()));
    }

    #[test]
    fn each_limit_is_named() {
        let big = tight().check(&Message::new("abcde")).unwrap_err();
        assert!(big.to_string().contains("max_payload_bytes"));
        let many = Message::new("a")
            .with_header("a", "")
            .with_header("b", "")
            .with_header("c", "");
        assert!(tight()
            .check(&many)
            .unwrap_err()
            .to_string()
            .contains("max_headers"));
        let wide = Message::new("a").with_header("name", "12345");
        let err = tight().check(&wide).unwrap_err().to_string();
        assert!(
            err.contains("`name`") && err.contains("max_header_bytes"),
            "{err}"
        );
    }
}
