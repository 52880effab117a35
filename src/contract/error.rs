//! What can go wrong loading contracts, and what a message can do wrong against one.

use std::path::PathBuf;

use crate::error::ConfigError;

/// Contracts could not be loaded, or a route's `contract` setting is wrong. Raised at
/// start-up, never for a message.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    /// The directory or a file in it could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The directory holds no `*.avsc` file.
    #[error("no *.avsc contracts in {}", dir.display())]
    Empty {
        /// The directory searched.
        dir: PathBuf,
    },
    /// A file is not a valid Avro schema (or not JSON at all).
    #[error("invalid Avro schema in {}: {reason}", file.display())]
    Schema {
        /// The offending file.
        file: PathBuf,
        /// The parser's message.
        reason: String,
    },
    /// Two files define the same name, or a file stem equals another contract's full name.
    #[error("contract name {name} is defined by both {} and {}", first.display(), second.display())]
    Duplicate {
        /// The name claimed twice.
        name: String,
        /// The first file claiming it.
        first: PathBuf,
        /// The second file claiming it.
        second: PathBuf,
    },
    /// A route names a contract the registry does not hold.
    #[error("unknown contract {name:?}; known contracts: {}", known.join(", "))]
    Unknown {
        /// The name asked for.
        name: String,
        /// Every name the registry answers to, sorted.
        known: Vec<String>,
    },
    /// The route's `contract` setting is inconsistent (names the field).
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// How a message broke its contract. The `Display` text says exactly what was wrong; it
/// becomes the dead-letter reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContractViolation {
    /// The binary datum does not decode with the schema.
    #[error("not Avro binary for schema {schema}: {reason}")]
    NotAvro {
        /// Full name of the schema tried.
        schema: String,
        /// The decoder's message.
        reason: String,
    },
    /// The datum decoded but bytes were left over.
    #[error("trailing {count} bytes after the {schema} datum")]
    Trailing {
        /// Full name of the schema.
        schema: String,
        /// How many bytes were left.
        count: usize,
    },
    /// A recursive schema's datum nests deeper than the decoder is allowed to follow.
    #[error("datum for schema {schema} nests deeper than {limit} levels")]
    TooDeep {
        /// Full name of the schema.
        schema: String,
        /// The nesting bound.
        limit: usize,
    },
    /// The message lacks the single-object header (`C3 01` + 8-byte fingerprint).
    #[error("not Avro single-object encoding: {reason}")]
    NotSingleObject {
        /// What was wrong with the header.
        reason: String,
    },
    /// The single-object fingerprint matches no contract.
    #[error("single-object message written with unknown schema fingerprint {fingerprint:#018x}")]
    UnknownFingerprint {
        /// The fingerprint found in the header.
        fingerprint: u64,
    },
    /// The single-object message was written with another contract than the route's.
    #[error("single-object message written with schema {found}, expected {expected}")]
    WrongSchema {
        /// Full name of the route's contract.
        expected: String,
        /// Full name of the schema the fingerprint picked.
        found: String,
    },
    /// The payload is not a JSON document (syntax, bad UTF-8, nesting over 128 levels).
    #[error("not a JSON document: {reason}")]
    NotJson {
        /// The JSON parser's message.
        reason: String,
    },
    /// The JSON document does not match the schema.
    #[error("JSON {}: {reason}", if path.is_empty() { "document".to_string() } else { format!("field {path}") })]
    Json {
        /// Dotted path of the offending value (`items[2].sku`); empty for the document.
        path: String,
        /// What was expected and what was found.
        reason: String,
    },
    /// The decoder panicked (a bug in it); the message is treated as violating.
    #[error("the Avro decoder panicked on this message (schema {schema})")]
    DecoderPanic {
        /// Full name of the schema being decoded.
        schema: String,
    },
}
