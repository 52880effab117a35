//! Avro values as JSON, in the conventions documented on `Decoded::to_json`.

use apache_avro::schema::{DecimalSchema, Schema};
use apache_avro::types::Value;
use base64::Engine as _;
use num_bigint::BigInt;
use serde_json::{Map, Number, Value as Json};

use super::registry::Contract;

/// Converts `value`, decoded with `schema` (a part of `contract`'s schema), to JSON. The
/// schema is needed for decimal scales; where value and schema disagree (they cannot
/// after a successful decode) the value is converted on its own.
pub(crate) fn to_json(contract: &Contract, schema: &Schema, value: &Value) -> Json {
    let schema = contract.resolve(schema);
    match (value, schema) {
        (Value::Union(index, inner), Schema::Union(u)) => match u.variants().get(*index as usize) {
            Some(variant) => to_json(contract, variant, inner),
            None => plain(inner),
        },
        (Value::Record(fields), Schema::Record(r)) => {
            let mut object = Map::with_capacity(fields.len());
            for (name, field_value) in fields {
                let json = match r.lookup.get(name).and_then(|&i| r.fields.get(i)) {
                    Some(field) => to_json(contract, &field.schema, field_value),
                    None => plain(field_value),
                };
                object.insert(name.clone(), json);
            }
            Json::Object(object)
        }
        (Value::Array(items), Schema::Array(a)) => Json::Array(
            items
                .iter()
                .map(|item| to_json(contract, &a.items, item))
                .collect(),
        ),
        (Value::Map(entries), Schema::Map(m)) => Json::Object(
            entries
                .iter()
                .map(|(k, v)| (k.clone(), to_json(contract, &m.types, v)))
                .collect(),
        ),
        (Value::Decimal(decimal), Schema::Decimal(DecimalSchema { scale, .. })) => {
            match Vec::<u8>::try_from(decimal) {
                Ok(bytes) => Json::String(decimal_string(&bytes, *scale)),
                Err(_) => Json::Null,
            }
        }
        _ => plain(value),
    }
}

/// Converts a value without its schema (decimals then print their unscaled value).
fn plain(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Int(n) | Value::Date(n) | Value::TimeMillis(n) => Json::from(*n),
        Value::Long(n)
        | Value::TimeMicros(n)
        | Value::TimestampMillis(n)
        | Value::TimestampMicros(n)
        | Value::TimestampNanos(n)
        | Value::LocalTimestampMillis(n)
        | Value::LocalTimestampMicros(n)
        | Value::LocalTimestampNanos(n) => Json::from(*n),
        Value::Float(f) => float(f64::from(*f)),
        Value::Double(f) => float(*f),
        Value::Bytes(bytes) | Value::Fixed(_, bytes) => Json::String(base64(bytes)),
        Value::String(s) => Json::String(s.clone()),
        Value::Enum(_, symbol) => Json::String(symbol.clone()),
        Value::Union(_, inner) => plain(inner),
        Value::Array(items) => Json::Array(items.iter().map(plain).collect()),
        Value::Map(entries) => {
            Json::Object(entries.iter().map(|(k, v)| (k.clone(), plain(v))).collect())
        }
        Value::Record(fields) => {
            Json::Object(fields.iter().map(|(k, v)| (k.clone(), plain(v))).collect())
        }
        Value::Decimal(decimal) => match Vec::<u8>::try_from(decimal) {
            Ok(bytes) => Json::String(decimal_string(&bytes, 0)),
            Err(_) => Json::Null,
        },
        Value::BigDecimal(big) => Json::String(big.to_string()),
        Value::Duration(d) => {
            let mut object = Map::new();
            object.insert("months".into(), Json::from(u32::from(d.months())));
            object.insert("days".into(), Json::from(u32::from(d.days())));
            object.insert("millis".into(), Json::from(u32::from(d.millis())));
            Json::Object(object)
        }
        Value::Uuid(uuid) => Json::String(uuid.to_string()),
    }
}

/// JSON has no NaN or infinities: those become the strings Avro's JSON encoding and
/// Jackson use.
pub(crate) fn float(f: f64) -> Json {
    match Number::from_f64(f) {
        Some(n) => Json::Number(n),
        None if f.is_nan() => Json::String("NaN".into()),
        None if f > 0.0 => Json::String("Infinity".into()),
        None => Json::String("-Infinity".into()),
    }
}

/// Standard, padded base64.
pub(crate) fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The exact decimal text of a two's-complement big-endian unscaled value.
fn decimal_string(bytes: &[u8], scale: usize) -> String {
    let unscaled = BigInt::from_signed_bytes_be(bytes);
    let digits = unscaled.magnitude().to_string();
    let sign = if unscaled.sign() == num_bigint::Sign::Minus {
        "-"
    } else {
        ""
    };
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{sign}{int}.{frac}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_print_exactly() {
        assert_eq!(decimal_string(&[0x04, 0xD2], 2), "12.34");
        assert_eq!(decimal_string(&[0xFB, 0x2E], 2), "-12.34");
        assert_eq!(decimal_string(&[0x05], 3), "0.005");
        assert_eq!(decimal_string(&[0x00], 0), "0");
        assert_eq!(decimal_string(&[0x00], 2), "0.00");
    }

    #[test]
    fn non_finite_floats_become_strings() {
        assert_eq!(float(f64::NAN), Json::String("NaN".into()));
        assert_eq!(float(f64::NEG_INFINITY), Json::String("-Infinity".into()));
        assert_eq!(float(1.5), serde_json::json!(1.5));
    }
}
