//! Checking a JSON document against an Avro schema, the way JSON producers write it:
//! objects for records, plain values for unions (the Avro JSON encoding's `{"type": value}`
//! wrapper is accepted too), base64 for bytes and fixed, decimal strings or numbers for
//! decimals. The result is the document normalized to `Decoded::to_json`'s conventions,
//! with defaults filled in, so a transcoded message reads the same whatever its encoding.

use apache_avro::schema::{Schema, UuidSchema};
use base64::Engine as _;
use serde_json::{Map, Value as Json};

use super::error::ContractViolation;
use super::json_out::base64;
use super::registry::Contract;

type Checked = Result<Json, ContractViolation>;

/// Checks `document` against `contract`; the violation names the offending field.
pub(crate) fn check(contract: &Contract, document: &Json) -> Checked {
    let mut path = String::new();
    value(contract, contract.schema(), document, &mut path)
}

fn fail(path: &str, reason: impl Into<String>) -> ContractViolation {
    ContractViolation::Json {
        path: path.to_string(),
        reason: reason.into(),
    }
}

fn expected(path: &str, what: &str, got: &Json) -> ContractViolation {
    fail(path, format!("expected {what}, got {}", kind(got)))
}

fn kind(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

fn value(contract: &Contract, schema: &Schema, json: &Json, path: &mut String) -> Checked {
    let schema = contract.resolve(schema);
    let ok = || Ok(json.clone());
    match schema {
        Schema::Null if json.is_null() => ok(),
        Schema::Boolean if json.is_boolean() => ok(),
        Schema::Int | Schema::Date | Schema::TimeMillis => match json.as_i64() {
            Some(n) if i32::try_from(n).is_ok() => ok(),
            Some(_) => Err(fail(path, "integer out of the int range")),
            None => Err(expected(path, &schema_kind(schema), json)),
        },
        Schema::Long
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => match json.as_i64() {
            Some(_) => ok(),
            None => Err(expected(path, &schema_kind(schema), json)),
        },
        Schema::Float | Schema::Double => match json {
            Json::Number(_) => ok(),
            Json::String(s) if matches!(s.as_str(), "NaN" | "Infinity" | "-Infinity") => ok(),
            _ => Err(expected(path, &schema_kind(schema), json)),
        },
        Schema::String | Schema::Uuid(UuidSchema::String) if json.is_string() => {
            uuid(schema, json, path)
        }
        Schema::Uuid(_) => uuid(schema, json, path),
        Schema::Bytes => bytes(json, None, path),
        Schema::Fixed(f) => bytes(json, Some(f.size), path),
        Schema::Duration(_) => duration(json, path),
        Schema::Decimal(d) => decimal(json, d.precision, d.scale, path),
        Schema::BigDecimal => match json {
            Json::String(s) if s.parse::<apache_avro::BigDecimal>().is_ok() => ok(),
            Json::Number(n) => Ok(Json::String(n.to_string())),
            _ => Err(expected(path, "big-decimal", json)),
        },
        Schema::Enum(e) => match json.as_str() {
            Some(symbol) if e.symbols.iter().any(|s| s == symbol) => ok(),
            Some(symbol) => Err(fail(
                path,
                format!(
                    "{symbol:?} is not a symbol of enum {}",
                    e.name.fullname(None)
                ),
            )),
            None => Err(expected(path, &schema_kind(schema), json)),
        },
        Schema::Array(a) => {
            let items = json
                .as_array()
                .ok_or_else(|| expected(path, "array", json))?;
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                out.push(nested(path, &format!("[{i}]"), |p| {
                    value(contract, &a.items, item, p)
                })?);
            }
            Ok(Json::Array(out))
        }
        Schema::Map(m) => {
            let entries = json
                .as_object()
                .ok_or_else(|| expected(path, "map (object)", json))?;
            let mut out = Map::with_capacity(entries.len());
            for (k, v) in entries {
                let child = nested(path, &field_segment(path, k), |p| {
                    value(contract, &m.types, v, p)
                })?;
                out.insert(k.clone(), child);
            }
            Ok(Json::Object(out))
        }
        Schema::Record(_) => record(contract, schema, json, path),
        Schema::Union(u) => union(contract, u.variants(), json, path),
        _ => Err(expected(path, &schema_kind(schema), json)),
    }
}

/// Runs `f` with `segment` appended to the path, then restores the path.
fn nested(path: &mut String, segment: &str, f: impl FnOnce(&mut String) -> Checked) -> Checked {
    let len = path.len();
    path.push_str(segment);
    let result = f(path);
    path.truncate(len);
    result
}

fn field_segment(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!(".{name}")
    }
}

fn record(contract: &Contract, schema: &Schema, json: &Json, path: &mut String) -> Checked {
    let Schema::Record(r) = schema else {
        return Err(expected(path, &schema_kind(schema), json));
    };
    let object = json
        .as_object()
        .ok_or_else(|| expected(path, &schema_kind(schema), json))?;
    if let Some(unknown) = object.keys().find(|k| !r.lookup.contains_key(*k)) {
        let segment = field_segment(path, unknown);
        return Err(fail(
            &format!("{path}{segment}"),
            format!("not a field of record {}", r.name.fullname(None)),
        ));
    }
    let mut out = Map::with_capacity(r.fields.len());
    for field in &r.fields {
        let segment = field_segment(path, &field.name);
        let checked = match (object.get(&field.name), &field.default) {
            (Some(v), _) => nested(path, &segment, |p| value(contract, &field.schema, v, p))?,
            (None, Some(default)) => default_json(contract, &field.schema, default),
            (None, None) => return Err(fail(&format!("{path}{segment}"), "missing (no default)")),
        };
        out.insert(field.name.clone(), checked);
    }
    Ok(Json::Object(out))
}

/// A schema default as the document would carry it. Avro writes bytes and fixed defaults
/// as strings of code points 0-255; the normalized form is base64.
fn default_json(contract: &Contract, schema: &Schema, default: &Json) -> Json {
    let schema = match contract.resolve(schema) {
        Schema::Union(u) => u.variants().first().map(|s| contract.resolve(s)),
        other => Some(other),
    };
    match (schema, default) {
        (Some(Schema::Bytes | Schema::Fixed(_)), Json::String(s)) => {
            let raw: Vec<u8> = s.chars().map(|c| u32::from(c) as u8).collect();
            Json::String(base64(&raw))
        }
        _ => default.clone(),
    }
}

fn union(contract: &Contract, variants: &[Schema], json: &Json, path: &mut String) -> Checked {
    let mut only_error = None;
    let candidates = variants
        .iter()
        .filter(|v| !matches!(contract.resolve(v), Schema::Null))
        .count();
    for variant in variants {
        match value(contract, variant, json, path) {
            Ok(checked) => return Ok(checked),
            Err(err) => only_error = Some(err),
        }
    }
    // The Avro JSON encoding wraps a non-null union value as {"<type name>": value}.
    if let Some((name, inner)) = json
        .as_object()
        .filter(|o| o.len() == 1)
        .and_then(|o| o.iter().next())
    {
        if let Some(variant) = variants.iter().find(|v| branch_name(contract, v) == *name) {
            return value(contract, variant, inner, path);
        }
    }
    // With one non-null branch (an optional field) its own error says more than a list.
    match only_error {
        Some(err) if candidates == 1 && !json.is_null() => Err(err),
        _ => {
            let names: Vec<String> = variants.iter().map(|v| branch_name(contract, v)).collect();
            Err(expected(
                path,
                &format!("one of [{}]", names.join(", ")),
                json,
            ))
        }
    }
}

fn branch_name(contract: &Contract, schema: &Schema) -> String {
    match contract.resolve(schema).name() {
        Some(name) => name.fullname(None),
        None => schema_kind(contract.resolve(schema)),
    }
}

/// The Avro type name used in messages (`double`, `record com.example.Order`).
fn schema_kind(schema: &Schema) -> String {
    match schema {
        Schema::Record(r) => format!("record {}", r.name.fullname(None)),
        Schema::Enum(e) => format!("enum {}", e.name.fullname(None)),
        Schema::Fixed(f) => format!("fixed {}", f.name.fullname(None)),
        Schema::Null => "null".into(),
        Schema::Boolean => "boolean".into(),
        Schema::Int => "int".into(),
        Schema::Long => "long".into(),
        Schema::Float => "float".into(),
        Schema::Double => "double".into(),
        Schema::Bytes => "bytes".into(),
        Schema::String => "string".into(),
        Schema::Array(_) => "array".into(),
        Schema::Map(_) => "map".into(),
        Schema::Union(_) => "union".into(),
        Schema::Decimal(_) => "decimal".into(),
        Schema::BigDecimal => "big-decimal".into(),
        Schema::Uuid(_) => "uuid".into(),
        Schema::Date => "date (int)".into(),
        Schema::TimeMillis => "time-millis (int)".into(),
        Schema::TimeMicros => "time-micros (long)".into(),
        Schema::TimestampMillis => "timestamp-millis (long)".into(),
        Schema::TimestampMicros => "timestamp-micros (long)".into(),
        Schema::TimestampNanos => "timestamp-nanos (long)".into(),
        Schema::LocalTimestampMillis => "local-timestamp-millis (long)".into(),
        Schema::LocalTimestampMicros => "local-timestamp-micros (long)".into(),
        Schema::LocalTimestampNanos => "local-timestamp-nanos (long)".into(),
        Schema::Duration(_) => "duration".into(),
        Schema::Ref { name } => name.fullname(None),
    }
}

fn uuid(schema: &Schema, json: &Json, path: &str) -> Checked {
    match (schema, json.as_str()) {
        (Schema::String, Some(_)) => Ok(json.clone()),
        (_, Some(s)) if apache_avro::Uuid::parse_str(s).is_ok() => Ok(json.clone()),
        (_, Some(s)) => Err(fail(path, format!("{s:?} is not a UUID"))),
        (_, None) => Err(expected(path, &schema_kind(schema), json)),
    }
}

fn bytes(json: &Json, size: Option<usize>, path: &str) -> Checked {
    let text = json
        .as_str()
        .ok_or_else(|| expected(path, "base64 string", json))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|err| fail(path, format!("not base64: {err}")))?;
    match size {
        Some(size) if raw.len() != size => Err(fail(
            path,
            format!("fixed of {size} bytes, got {} bytes", raw.len()),
        )),
        _ => Ok(json.clone()),
    }
}

fn duration(json: &Json, path: &str) -> Checked {
    let object = json
        .as_object()
        .ok_or_else(|| expected(path, "duration object {months, days, millis}", json))?;
    let mut out = Map::new();
    for part in ["months", "days", "millis"] {
        let n = object.get(part).and_then(Json::as_u64).unwrap_or(0);
        if u32::try_from(n).is_err() {
            return Err(fail(path, format!("duration {part} over 2^32-1")));
        }
        out.insert(part.to_string(), Json::from(n));
    }
    Ok(Json::Object(out))
}

/// A decimal as a string (`"12.30"`) or a number; normalized to a string with exactly
/// `scale` fraction digits, refused when it needs more digits than the schema allows.
fn decimal(json: &Json, precision: usize, scale: usize, path: &str) -> Checked {
    let text = match json {
        Json::String(s) => s.clone(),
        Json::Number(n) => n.to_string(),
        _ => return Err(expected(path, "decimal (string or number)", json)),
    };
    let invalid = || {
        fail(
            path,
            format!("{text:?} is not a decimal with scale {scale}"),
        )
    };
    let (sign, unsigned) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text.as_str()),
    };
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits(int) || !digits(frac) || frac.len() > scale {
        return Err(invalid());
    }
    let int = int.trim_start_matches('0');
    if int.len() + scale > precision {
        return Err(fail(
            path,
            format!("{text} has more than {precision} digits"),
        ));
    }
    let int = if int.is_empty() { "0" } else { int };
    let normalized = if scale == 0 {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac:0<scale$}")
    };
    Ok(Json::String(normalized))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_normalize_and_respect_precision() {
        let ok = |j: Json| decimal(&j, 6, 2, "amount").map_err(|e| e.to_string());
        assert_eq!(ok(Json::from("12.3")), Ok(Json::from("12.30")));
        assert_eq!(ok(serde_json::json!(-7)), Ok(Json::from("-7.00")));
        assert!(ok(Json::from("1.234")).is_err());
        assert!(ok(Json::from("12345.0")).is_err());
        assert!(ok(Json::from("1e3")).is_err());
        assert!(ok(Json::from(".5")).is_err());
    }
}
