//! Checking one payload against a route's contract.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;

use super::error::{ContractError, ContractViolation};
use super::registry::{Contract, ContractRegistry};
use super::{depth, json_in, json_out, set_max_allocation_bytes};
use super::{ContractSpec, Encoding, DEFAULT_MAX_ALLOCATION_BYTES};

/// The single-object marker, before the fingerprint.
const SINGLE_OBJECT_MARKER: [u8; 2] = [0xC3, 0x01];
const SINGLE_OBJECT_HEADER: usize = 10;

/// Checks payloads against one route's contract. Cheap to share: hold it in an `Arc` or
/// clone it (the registry is shared).
#[derive(Clone, Debug)]
pub struct ContractCheck {
    registry: Arc<ContractRegistry>,
    contract: Option<Arc<Contract>>,
    encoding: Encoding,
    transcode_json: bool,
}

impl ContractCheck {
    /// Builds the check for `spec`. Fails when the spec is inconsistent (names the field)
    /// or names a contract the registry lacks (lists the names it has). Sets the decoder's
    /// allocation bound to [`DEFAULT_MAX_ALLOCATION_BYTES`] unless one is already in force.
    pub fn new(
        registry: Arc<ContractRegistry>,
        spec: &ContractSpec,
    ) -> Result<Self, ContractError> {
        spec.validate()?;
        let contract = match &spec.name {
            None => None,
            Some(name) => {
                Some(
                    registry
                        .get_arc(name)
                        .cloned()
                        .ok_or_else(|| ContractError::Unknown {
                            name: name.clone(),
                            known: registry.names().into_iter().map(String::from).collect(),
                        })?,
                )
            }
        };
        set_max_allocation_bytes(DEFAULT_MAX_ALLOCATION_BYTES);
        Ok(Self {
            registry,
            contract,
            encoding: spec.encoding,
            transcode_json: spec.transcode_json,
        })
    }

    /// The route's contract, when the spec names one.
    pub fn contract(&self) -> Option<&Contract> {
        self.contract.as_deref()
    }

    /// The encoding checked.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Whether the handler is to get JSON instead of the original payload.
    pub fn transcode_json(&self) -> bool {
        self.transcode_json
    }

    /// Decodes `payload` and checks it against the contract. Never panics: a decoder panic
    /// is returned as [`ContractViolation::DecoderPanic`].
    pub fn check(&self, payload: &[u8]) -> Result<Decoded, ContractViolation> {
        match self.encoding {
            Encoding::Binary => match &self.contract {
                Some(contract) => decode_binary(contract, payload),
                None => Err(no_contract()),
            },
            Encoding::SingleObject => self.check_single_object(payload),
            Encoding::Json => match &self.contract {
                Some(contract) => check_json(contract, payload),
                None => Err(no_contract()),
            },
        }
    }

    fn check_single_object(&self, payload: &[u8]) -> Result<Decoded, ContractViolation> {
        if payload.len() < SINGLE_OBJECT_HEADER {
            return Err(ContractViolation::NotSingleObject {
                reason: format!(
                    "{} bytes, shorter than the {SINGLE_OBJECT_HEADER}-byte header",
                    payload.len()
                ),
            });
        }
        let (header, datum) = payload.split_at(SINGLE_OBJECT_HEADER);
        if header[..2] != SINGLE_OBJECT_MARKER {
            return Err(ContractViolation::NotSingleObject {
                reason: format!("marker {:02X} {:02X}, expected C3 01", header[0], header[1]),
            });
        }
        let mut fingerprint = [0u8; 8];
        fingerprint.copy_from_slice(&header[2..]);
        let fingerprint = u64::from_le_bytes(fingerprint);
        let found = self
            .registry
            .by_fingerprint_arc(fingerprint)
            .ok_or(ContractViolation::UnknownFingerprint { fingerprint })?;
        if let Some(expected) = &self.contract {
            if expected.fingerprint() != fingerprint {
                return Err(ContractViolation::WrongSchema {
                    expected: expected.full_name().to_string(),
                    found: found.full_name().to_string(),
                });
            }
        }
        decode_binary(found, datum)
    }
}

/// `ContractSpec::validate` makes this unreachable; kept as a violation, not a panic.
fn no_contract() -> ContractViolation {
    ContractViolation::NotAvro {
        schema: "(none)".into(),
        reason: "the route names no contract".into(),
    }
}

/// The decoder's message, less its advice to call an apache-avro function: an operator
/// raises the bound with `[contracts] max_allocation_bytes`.
fn decoder_reason(err: &apache_avro::Error) -> String {
    const LIBRARY_ADVICE: &str = "Change the limit using `apache_avro::util::max_allocation_bytes`";
    let text = err.to_string();
    match text.find(LIBRARY_ADVICE) {
        Some(at) => format!(
            "{} Raise [contracts] max_allocation_bytes if such values are expected.",
            text[..at].trim_end()
        ),
        None => text,
    }
}

fn decode_binary(contract: &Arc<Contract>, payload: &[u8]) -> Result<Decoded, ContractViolation> {
    let schema_name = || contract.full_name().to_string();
    // apache-avro recurses once per nesting level with no bound of its own; a datum of a
    // recursive schema could nest as deep as it has bytes and overflow the stack, which
    // no catch_unwind can stop. And nested arrays of items that take no bytes multiply
    // into more memory than any one array's bound allows. Walk such datums first,
    // without allocating.
    if contract.needs_walk() {
        depth::check(contract, payload)?;
    }
    let decoded = catch_unwind(AssertUnwindSafe(|| {
        let reader = GenericDatumReader::builder(contract.schema()).build()?;
        let mut input = Guarded {
            rest: payload,
            overrun: false,
        };
        let value = reader.read_value(&mut input)?;
        Ok::<_, apache_avro::Error>((value, input))
    }));
    match decoded {
        Err(_) => Err(ContractViolation::DecoderPanic {
            schema: schema_name(),
        }),
        Ok(Ok((_, input))) if input.overrun => Err(ContractViolation::NotAvro {
            schema: schema_name(),
            reason: "the datum ends early (truncated)".into(),
        }),
        Ok(Err(err)) => Err(ContractViolation::NotAvro {
            schema: schema_name(),
            reason: decoder_reason(&err),
        }),
        Ok(Ok((_, input))) if !input.rest.is_empty() => Err(ContractViolation::Trailing {
            schema: schema_name(),
            count: input.rest.len(),
        }),
        Ok(Ok((value, _))) => Ok(Decoded {
            contract: Arc::clone(contract),
            body: Body::Avro(value),
        }),
    }
}

/// The payload as the decoder reads it, noting any read past its end.
///
/// apache-avro 0.22 turns an end of input inside a string, boolean or union index into a
/// null value instead of an error, so a truncated payload could decode "successfully".
/// A valid datum never asks for bytes that are not there.
struct Guarded<'a> {
    rest: &'a [u8],
    overrun: bool,
}

impl std::io::Read for Guarded<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.len() > self.rest.len() {
            self.overrun = true;
        }
        self.rest.read(buf)
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        if buf.len() > self.rest.len() {
            self.overrun = true;
        }
        self.rest.read_exact(buf)
    }
}

fn check_json(contract: &Arc<Contract>, payload: &[u8]) -> Result<Decoded, ContractViolation> {
    // serde_json refuses nesting deeper than 128 levels, so neither parsing nor the
    // recursive check below can exhaust the stack.
    let document: serde_json::Value =
        serde_json::from_slice(payload).map_err(|err| ContractViolation::NotJson {
            reason: err.to_string(),
        })?;
    let normalized = json_in::check(contract, &document)?;
    Ok(Decoded {
        contract: Arc::clone(contract),
        body: Body::Json(normalized),
    })
}

/// A payload that passed its contract.
#[derive(Clone, Debug)]
pub struct Decoded {
    contract: Arc<Contract>,
    body: Body,
}

#[derive(Clone, Debug)]
enum Body {
    Avro(Value),
    /// Already normalized to the same conventions as [`Decoded::to_json`].
    Json(serde_json::Value),
}

impl Decoded {
    /// The contract the payload matched (for single-object, the one its fingerprint
    /// picked).
    pub fn contract(&self) -> &Contract {
        &self.contract
    }

    /// The decoded Avro value, for binary and single-object payloads.
    pub fn avro(&self) -> Option<&Value> {
        match &self.body {
            Body::Avro(value) => Some(value),
            Body::Json(_) => None,
        }
    }

    /// The value as JSON: records as objects, unions as the plain branch value, enums as
    /// their symbol, bytes and fixed as standard base64 strings, decimals as exact decimal
    /// strings (`"12.30"`), uuids as strings, dates, times and timestamps as their Avro
    /// numbers (days, milli/microseconds since midnight or the epoch), durations as
    /// `{"months", "days", "millis"}`, non-finite floats as `"NaN"`, `"Infinity"`,
    /// `"-Infinity"`. For JSON payloads: the document with defaults filled in.
    pub fn to_json(&self) -> serde_json::Value {
        match &self.body {
            Body::Avro(value) => json_out::to_json(&self.contract, self.contract.schema(), value),
            Body::Json(value) => value.clone(),
        }
    }
}
