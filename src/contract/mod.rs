//! Avro contracts: hold every message of a route to a schema before the handler sees it.
//!
//! A [`ContractRegistry`] loads the `*.avsc` files of a directory; a [`ContractCheck`]
//! built from a route's [`ContractSpec`] decodes each payload ([`Encoding::Binary`],
//! [`Encoding::SingleObject`] or [`Encoding::Json`]) and returns a [`Decoded`] value or a
//! [`ContractViolation`]; the [`Contracted`] handler layer dead-letters violations (kind
//! `contract`, never retried) and can hand the inner handler JSON instead of Avro. See
//! `docs/contracts.md`.
//!
//! ```no_run
//! use std::{path::Path, sync::Arc};
//! use seawall::contract::{ContractCheck, ContractRegistry, ContractSpec, Encoding};
//!
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = Arc::new(ContractRegistry::load(Path::new("schemas"))?);
//! let spec = ContractSpec { name: Some("order".into()), encoding: Encoding::Json, transcode_json: false };
//! let check = ContractCheck::new(registry, &spec)?;
//! let order = check.check(br#"{"id":"o-1","customer":"c-1","amount":9.5}"#)?;
//! assert_eq!(order.to_json()["currency"], "EUR");
//! # Ok(()) }
//! ```

mod check;
mod depth;
mod error;
mod json_in;
mod json_out;
mod layer;
mod registry;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

pub use check::{ContractCheck, Decoded};
pub use depth::MAX_NESTING_DEPTH;
pub use error::{ContractError, ContractViolation};
pub use layer::Contracted;
pub use registry::{Contract, ContractRegistry};

/// The allocation bound the worker gives the Avro decoder unless configured otherwise:
/// 16 MiB. A length field claiming more is a violation, not an allocation.
pub const DEFAULT_MAX_ALLOCATION_BYTES: usize = 16 * 1024 * 1024;

/// Sets the most bytes the Avro decoder may allocate for one string, bytes value or
/// collection, and returns the bound in force.
///
/// apache-avro keeps this bound in a process-wide cell that can be set **once**: the first
/// call (or the first decode, which sets apache-avro's own 512 MiB default) wins, and
/// later calls return the value already in force. Call it before building any
/// [`ContractCheck`]; [`ContractCheck::new`] itself sets [`DEFAULT_MAX_ALLOCATION_BYTES`]
/// if nothing has been set yet.
pub fn set_max_allocation_bytes(bytes: usize) -> usize {
    apache_avro::util::max_allocation_bytes(bytes)
}

/// How a route's payloads are encoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    /// A bare Avro binary datum written with the route's named contract.
    #[default]
    Binary,
    /// Avro single-object encoding: `C3 01`, the writer schema's 8-byte little-endian
    /// Rabin fingerprint, then the binary datum. The fingerprint picks the contract.
    SingleObject,
    /// A JSON document checked against the contract: objects for records, plain values
    /// for unions.
    Json,
}

impl Encoding {
    /// The name used in configuration (`binary`, `single-object`, `json`).
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Binary => "binary",
            Encoding::SingleObject => "single-object",
            Encoding::Json => "json",
        }
    }
}

/// A route's `contract = { ... }` setting.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContractSpec {
    /// The contract's file stem or full name. Required for `binary` and `json`; for
    /// `single-object` it restricts the route to that one schema (otherwise any contract
    /// of the registry is accepted).
    #[serde(default)]
    pub name: Option<String>,
    /// How payloads are encoded (default `binary`).
    #[serde(default)]
    pub encoding: Encoding,
    /// Hand the handler the message as JSON (`content-type: application/json`) instead of
    /// the original payload (default `false`).
    #[serde(default)]
    pub transcode_json: bool,
}

impl ContractSpec {
    /// Checks the settings agree with each other; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match (&self.name, self.encoding) {
            (None, Encoding::Binary | Encoding::Json) => Err(ConfigError::new(
                "contract.name",
                format!(
                    "required for encoding {}: the payload does not say its schema",
                    self.encoding.as_str()
                ),
            )),
            (Some(name), _) if name.trim().is_empty() => {
                Err(ConfigError::new("contract.name", "must not be empty"))
            }
            _ => Ok(()),
        }
    }
}
