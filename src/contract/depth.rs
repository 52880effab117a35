//! A bounded walk over a binary datum, run before apache-avro decodes a datum of a
//! schema that refers back to itself or has arrays.
//!
//! apache-avro's decoder recurses once per nesting level and has no depth bound; with a
//! recursive schema (a linked list, a tree) a datum can nest once per byte, so a few
//! kilobytes would overflow the stack and abort the process. And it bounds each array's
//! memory on its own, not the whole datum's: an array of 300,000 arrays of 300,000 nulls
//! takes about a megabyte on the wire and terabytes decoded. This walk only moves a
//! cursor (it allocates nothing), stops at [`MAX_NESTING_DEPTH`] and when items that take
//! no bytes would need more than the allocation bound to hold, and leaves every other
//! judgement to the decoder: when the bytes are malformed it stops and lets the decoder
//! say what is wrong.

use apache_avro::schema::{InnerDecimalSchema, UuidSchema};
use apache_avro::Schema;

use super::error::ContractViolation;
use super::registry::Contract;
use super::{set_max_allocation_bytes, DEFAULT_MAX_ALLOCATION_BYTES};

/// The deepest nesting (records, union branches, array items, map values) a datum of a
/// recursive schema may have. apache-avro's decoder takes about 3 KiB of stack per level
/// in an optimized build (so 128 levels stay far inside a 2 MiB tokio worker stack), but
/// about 70 KiB unoptimized, hence the lower bound in debug builds.
pub const MAX_NESTING_DEPTH: usize = if cfg!(debug_assertions) { 16 } else { 128 };

enum Stop {
    TooDeep,
    TooMany,
    /// Items that take no bytes would need more memory than the bound.
    TooManyFree,
    /// The bytes do not fit the schema; the decoder will say how.
    Malformed,
}

struct Walk<'a> {
    contract: &'a Contract,
    rest: &'a [u8],
    /// Array and map items left before the walk gives up; bounds its running time when
    /// items take no bytes (an array of nulls claiming 2^62 items).
    items_left: usize,
    /// Bytes left for decoded items that took no bytes of the datum (each costs the
    /// decoder a `Value`); items that take bytes are bounded by the payload's size.
    free_bytes_left: usize,
}

/// What the decoder holds per array item.
const ITEM_BYTES: usize = std::mem::size_of::<apache_avro::types::Value>();

/// Fails with [`ContractViolation::TooDeep`] when the datum nests deeper than
/// [`MAX_NESTING_DEPTH`]; passes anything else on to the decoder.
pub(crate) fn check(contract: &Contract, payload: &[u8]) -> Result<(), ContractViolation> {
    let bound = set_max_allocation_bytes(DEFAULT_MAX_ALLOCATION_BYTES);
    let mut walk = Walk {
        contract,
        rest: payload,
        items_left: bound,
        free_bytes_left: bound,
    };
    match walk.skip(contract.schema(), 0) {
        Ok(()) | Err(Stop::Malformed) => Ok(()),
        Err(Stop::TooDeep) => Err(ContractViolation::TooDeep {
            schema: contract.full_name().to_string(),
            limit: MAX_NESTING_DEPTH,
        }),
        Err(Stop::TooMany) => Err(ContractViolation::NotAvro {
            schema: contract.full_name().to_string(),
            reason: format!("more than {bound} array or map items"),
        }),
        Err(Stop::TooManyFree) => Err(ContractViolation::NotAvro {
            schema: contract.full_name().to_string(),
            reason: format!(
                "more than {} array items that take no bytes (each costs the decoder {ITEM_BYTES} \
                 bytes; the bound is {bound} bytes). Raise [contracts] max_allocation_bytes if \
                 such values are expected.",
                bound / ITEM_BYTES
            ),
        }),
    }
}

impl Walk<'_> {
    fn skip(&mut self, schema: &Schema, depth: usize) -> Result<(), Stop> {
        if depth > MAX_NESTING_DEPTH {
            return Err(Stop::TooDeep);
        }
        match self.contract.resolve(schema) {
            Schema::Null => Ok(()),
            Schema::Boolean => self.advance(1),
            Schema::Float => self.advance(4),
            Schema::Double => self.advance(8),
            Schema::Int
            | Schema::Long
            | Schema::Enum(_)
            | Schema::Date
            | Schema::TimeMillis
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => self.varint().map(drop),
            Schema::Bytes
            | Schema::String
            | Schema::BigDecimal
            | Schema::Uuid(UuidSchema::Bytes | UuidSchema::String) => {
                let len = self.length()?;
                self.advance(len)
            }
            Schema::Decimal(d) => match &d.inner {
                InnerDecimalSchema::Bytes => {
                    let len = self.length()?;
                    self.advance(len)
                }
                InnerDecimalSchema::Fixed(f) => self.advance(f.size),
            },
            Schema::Fixed(f) | Schema::Uuid(UuidSchema::Fixed(f)) => self.advance(f.size),
            Schema::Duration(_) => self.advance(12),
            Schema::Union(u) => {
                let index = usize::try_from(self.varint()?).map_err(|_| Stop::Malformed)?;
                let variant = u.variants().get(index).ok_or(Stop::Malformed)?;
                self.skip(variant, depth + 1)
            }
            Schema::Record(r) => r
                .fields
                .iter()
                .try_for_each(|field| self.skip(&field.schema, depth + 1)),
            Schema::Array(a) => self.blocks(|walk| {
                let before = walk.rest.len();
                walk.skip(&a.items, depth + 1)?;
                if walk.rest.len() == before {
                    walk.free_bytes_left = walk
                        .free_bytes_left
                        .checked_sub(ITEM_BYTES)
                        .ok_or(Stop::TooManyFree)?;
                }
                Ok(())
            }),
            Schema::Map(m) => self.blocks(|walk| {
                let len = walk.length()?;
                walk.advance(len)?;
                walk.skip(&m.types, depth + 1)
            }),
            // A name the contract does not define: the decoder will refuse it.
            Schema::Ref { .. } => Err(Stop::Malformed),
        }
    }

    /// Array and map blocks: a count, negative when a byte size follows, 0 at the end.
    fn blocks(&mut self, mut item: impl FnMut(&mut Self) -> Result<(), Stop>) -> Result<(), Stop> {
        loop {
            let count = self.varint()?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                self.varint()?;
            }
            let count = usize::try_from(count.unsigned_abs()).map_err(|_| Stop::Malformed)?;
            self.items_left = self.items_left.checked_sub(count).ok_or(Stop::TooMany)?;
            for _ in 0..count {
                item(self)?;
            }
        }
    }

    fn length(&mut self) -> Result<usize, Stop> {
        usize::try_from(self.varint()?).map_err(|_| Stop::Malformed)
    }

    fn advance(&mut self, len: usize) -> Result<(), Stop> {
        self.rest = self.rest.get(len..).ok_or(Stop::Malformed)?;
        Ok(())
    }

    /// A zig-zag varint long, at most 10 bytes.
    fn varint(&mut self) -> Result<i64, Stop> {
        let mut value: u64 = 0;
        for (i, &byte) in self.rest.iter().take(10).enumerate() {
            value |= u64::from(byte & 0x7F) << (7 * i);
            if byte & 0x80 == 0 {
                self.rest = &self.rest[i + 1..];
                return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
            }
        }
        Err(Stop::Malformed)
    }
}
