//! Tables, JSON and the detail view of `seawall dlq list`, `groups` and `show`.

use std::io::{self, Write};
use std::time::SystemTime;

use seawall::dlq::{DlqGroup, DlqRecord};
use serde_json::{json, Value};

use super::payload::{hex, render_payload, text_or_hex};

/// The table width when `COLUMNS` does not say.
const DEFAULT_WIDTH: usize = 120;
/// The error column never gets narrower than this, even on a narrow terminal.
const MIN_ERROR_WIDTH: usize = 20;
/// Keys longer than this are cut in the table (`show` has them in full).
const MAX_KEY_WIDTH: usize = 32;

/// A time as RFC 3339 to the second, for tables; `-` when unknown.
fn time_short(at: Option<SystemTime>) -> String {
    at.map_or_else(
        || "-".to_owned(),
        |at| humantime::format_rfc3339_seconds(at).to_string(),
    )
}

/// A time as RFC 3339 to the millisecond, for JSON and `show`; `null` when unknown.
fn time_json(at: Option<SystemTime>) -> Value {
    at.map_or(Value::Null, |at| {
        Value::String(humantime::format_rfc3339_millis(at).to_string())
    })
}

/// Bytes for JSON: a string when they read as text, else `{"hex": "…"}`.
fn bytes_json(bytes: Option<&[u8]>) -> Value {
    match bytes.map(std::str::from_utf8) {
        None => Value::Null,
        Some(Ok(text)) => Value::String(text.to_owned()),
        Some(Err(_)) => json!({ "hex": bytes.map(hex) }),
    }
}

/// Where the message came from: `topic/partition/offset`, as much of it as is known.
fn position(record: &DlqRecord) -> String {
    let failure = &record.failure;
    let mut out = failure
        .original_source
        .clone()
        .unwrap_or_else(|| "?".into());
    if let Some(partition) = failure.original_partition {
        out.push_str(&format!("/{partition}"));
    }
    if let Some(offset) = failure.original_offset {
        out.push_str(&format!("/{offset}"));
    }
    if out == "?" {
        return "-".into();
    }
    out
}

/// `text` on one line, cut to `width` characters with `…` when longer.
fn fit(text: &str, width: usize) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.chars().count() <= width {
        return line;
    }
    let mut cut: String = line.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse().ok())
        .filter(|&c: &usize| c > 0)
        .unwrap_or(DEFAULT_WIDTH)
}

/// Writes rows as columns separated by two spaces; the last column is not padded.
fn write_table<const N: usize>(
    out: &mut impl Write,
    header: [&str; N],
    rows: &[[String; N]],
) -> io::Result<()> {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header = header.map(str::to_owned);
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad + 2));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// The `list` table: one row per record, the error cut to what the width leaves.
pub(super) fn list_table(out: &mut impl Write, records: &[&DlqRecord]) -> io::Result<()> {
    let mut rows: Vec<[String; 7]> = records
        .iter()
        .map(|r| {
            [
                r.id.clone(),
                r.key
                    .as_deref()
                    .map_or_else(|| "-".into(), |k| fit(&text_or_hex(k), MAX_KEY_WIDTH)),
                r.failure.kind.clone(),
                position(r),
                r.failure
                    .attempts
                    .map_or_else(|| "-".into(), |a| a.to_string()),
                time_short(r.failure.failed_at),
                r.failure.error.clone(),
            ]
        })
        .collect();
    let header = [
        "ID",
        "KEY",
        "KIND",
        "SOURCE",
        "ATTEMPTS",
        "FAILED AT",
        "ERROR",
    ];
    let used: usize = (0..6)
        .map(|i| {
            rows.iter()
                .map(|row| row[i].chars().count())
                .max()
                .unwrap_or(0)
                .max(header[i].len())
                + 2
        })
        .sum();
    let error_width = terminal_width().saturating_sub(used).max(MIN_ERROR_WIDTH);
    for row in &mut rows {
        row[6] = fit(&row[6], error_width);
    }
    write_table(out, header, &rows)?;
    writeln!(out, "({} dead letters)", records.len())
}

/// One record for `list --format json`: every failure field, untruncated.
pub(super) fn record_json(record: &DlqRecord) -> Value {
    let f = &record.failure;
    json!({
        "id": record.id,
        "key": bytes_json(record.key.as_deref()),
        "format": f.format.as_str(),
        "kind": f.kind,
        "error": f.error,
        "attempts": f.attempts,
        "original_source": f.original_source,
        "original_partition": f.original_partition,
        "original_offset": f.original_offset,
        "failed_at": time_json(f.failed_at),
        "original_timestamp": time_json(f.original_timestamp),
        "idempotency_key": bytes_json(f.idempotency_key.as_deref()),
        "ordering_key": bytes_json(f.ordering_key.as_deref()),
        "replay_count": f.replay_count,
        "fingerprint": record.fingerprint(),
        "payload_bytes": record.payload.len(),
    })
}

/// The `groups` table.
pub(super) fn groups_table(out: &mut impl Write, groups: &[DlqGroup]) -> io::Result<()> {
    let rows: Vec<[String; 5]> = groups
        .iter()
        .map(|g| {
            [
                g.count.to_string(),
                time_short(g.first_seen),
                time_short(g.last_seen),
                g.example_id.clone(),
                g.fingerprint.clone(),
            ]
        })
        .collect();
    let header = ["COUNT", "FIRST SEEN", "LAST SEEN", "EXAMPLE", "FINGERPRINT"];
    write_table(out, header, &rows)?;
    let total: usize = groups.iter().map(|g| g.count).sum();
    writeln!(out, "({} groups, {total} dead letters)", groups.len())
}

/// One group for `groups --format json`.
pub(super) fn group_json(group: &DlqGroup) -> Value {
    json!({
        "fingerprint": group.fingerprint,
        "kind": group.kind,
        "count": group.count,
        "first_seen": time_json(group.first_seen),
        "last_seen": time_json(group.last_seen),
        "example_id": group.example_id,
        "example_error": group.example_error,
    })
}

/// `show`: the failure fields, every header, then the payload — decoded through the
/// route's contract to JSON when `decoded` holds its result, else as JSON, text or hex.
pub(super) fn show(
    out: &mut impl Write,
    record: &DlqRecord,
    decoded: Option<Result<(String, Value), String>>,
) -> io::Result<()> {
    let f = &record.failure;
    let text = |b: Option<&[u8]>| b.map_or_else(|| "-".to_owned(), text_or_hex);
    let time = |at: Option<SystemTime>| {
        at.map_or_else(
            || "-".to_owned(),
            |at| humantime::format_rfc3339_millis(at).to_string(),
        )
    };
    let fields = [
        ("id", record.id.clone()),
        ("key", text(record.key.as_deref())),
        ("format", f.format.to_string()),
        ("kind", f.kind.clone()),
        ("error", f.error.clone()),
        ("attempts", f.attempts.map_or("-".into(), |a| a.to_string())),
        ("source", position(record)),
        ("failed at", time(f.failed_at)),
        ("original time", time(f.original_timestamp)),
        ("idempotency key", text(f.idempotency_key.as_deref())),
        ("ordering key", text(f.ordering_key.as_deref())),
        ("replay count", f.replay_count.to_string()),
        ("fingerprint", record.fingerprint()),
    ];
    for (name, value) in fields {
        writeln!(out, "{name:<16}{value}")?;
    }
    writeln!(out, "\nheaders ({}):", record.headers.len())?;
    for (name, value) in record.headers.iter() {
        writeln!(out, "  {name}: {}", text_or_hex(value))?;
    }
    match decoded {
        Some(Ok((contract, value))) => {
            let len = record.payload.len();
            writeln!(
                out,
                "\npayload ({len} bytes, decoded with contract {contract}):"
            )?;
            let pretty = serde_json::to_string_pretty(&value).map_err(io::Error::other)?;
            return writeln!(out, "{pretty}");
        }
        Some(Err(violation)) => writeln!(out, "\ncontract: does not decode: {violation}")?,
        None => {}
    }
    let payload = render_payload(&record.payload);
    writeln!(
        out,
        "\npayload ({} bytes, {}):",
        record.payload.len(),
        payload.label()
    )?;
    let body = payload.body();
    write!(out, "{body}")?;
    if !body.ends_with('\n') {
        writeln!(out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(decoded: Option<Result<(String, Value), String>>) -> String {
        let record = DlqRecord::parse("t.dlq/0/1", None, &b"\x02\x06abc"[..], Default::default());
        let mut out = Vec::new();
        show(&mut out, &record, decoded).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_payload_that_decodes_through_the_contract_is_shown_as_json() {
        let decoded = Some(Ok(("order".to_owned(), json!({"id": "abc"}))));
        let text = shown(decoded);
        assert!(
            text.contains(
                "payload (5 bytes, decoded with contract order):\n{\n  \"id\": \"abc\"\n}"
            ),
            "{text}"
        );
        let text = shown(Some(Err("truncated".to_owned())));
        assert!(
            text.contains("contract: does not decode: truncated"),
            "{text}"
        );
        assert!(text.contains("payload (5 bytes, binary)"), "{text}");
        assert!(shown(None).contains("payload (5 bytes, binary)"));
    }

    #[test]
    fn fit_cuts_on_characters_and_flattens_lines() {
        assert_eq!(fit("short", 10), "short");
        assert_eq!(fit("line one\nline two", 9), "line one…");
        assert_eq!(fit("ééééé", 3), "éé…");
    }

    #[test]
    fn table_columns_line_up() {
        let mut out = Vec::new();
        let rows = [["a".to_owned(), "long value".to_owned(), "x".to_owned()]];
        write_table(&mut out, ["ID", "V", "LAST"], &rows).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ID  V           LAST\na   long value  x\n"
        );
    }
}
