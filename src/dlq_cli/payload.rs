//! Showing bytes to a person: header values and keys as text or hex, payloads as pretty
//! JSON, text or a hex dump.

use std::fmt::Write as _;

/// Bytes per hex-dump line.
const DUMP_WIDTH: usize = 16;

/// Whether `bytes` read as text: UTF-8 with no control characters but tab, CR and LF. Binary
/// data can be valid UTF-8 (a small protobuf message often is); control characters give it
/// away.
fn as_text(bytes: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(bytes).ok()?;
    let clean = text
        .chars()
        .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'));
    clean.then_some(text)
}

/// A key or header value on one line: the text when it reads as text, else `0x` and hex
/// (Spring Kafka's big-endian partition and offset headers, for one).
pub(super) fn text_or_hex(bytes: &[u8]) -> String {
    match as_text(bytes) {
        Some(text) if !text.contains(['\n', '\r']) => text.to_owned(),
        _ => format!("0x{}", hex(bytes)),
    }
}

/// Lower-case hex, no separators.
pub(super) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// How a payload is shown.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Rendered {
    /// Valid JSON, re-indented.
    Json(String),
    /// UTF-8 text, as it is.
    Text(String),
    /// Anything else: a hex dump.
    Binary(String),
}

impl Rendered {
    /// The name shown in the payload's heading.
    pub(super) fn label(&self) -> &'static str {
        match self {
            Rendered::Json(_) => "json",
            Rendered::Text(_) => "text",
            Rendered::Binary(_) => "binary",
        }
    }

    /// What is printed.
    pub(super) fn body(&self) -> &str {
        match self {
            Rendered::Json(s) | Rendered::Text(s) | Rendered::Binary(s) => s,
        }
    }
}

/// A payload as pretty JSON when it parses as JSON, else as text when it reads as text,
/// else as a hex dump.
pub(super) fn render_payload(payload: &[u8]) -> Rendered {
    let is_json = serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_ok();
    match as_text(payload) {
        Some(text) if is_json => Rendered::Json(pretty_json(text)),
        Some(text) => Rendered::Text(text.to_owned()),
        None => Rendered::Binary(hex_dump(payload)),
    }
}

/// Re-indents valid JSON text by two spaces. Works on the text rather than a parsed value
/// so member order and number spelling stay exactly as sent.
fn pretty_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    let mut depth = 0usize;
    let (mut in_string, mut escaped) = (false, false);
    let mut chars = text.trim().chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                while chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
                // An empty object or array stays `{}` / `[]`.
                if let Some(close) = chars.next_if(|c| matches!(c, '}' | ']')) {
                    out.push(close);
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_ascii_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

fn newline(out: &mut String, depth: usize) {
    out.push('\n');
    for _ in 0..depth {
        out.push_str("  ");
    }
}

/// `hexdump -C` style: offset, 16 bytes in hex (a gap after 8), and the printable ASCII
/// column (`.` for the rest).
pub(super) fn hex_dump(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 5);
    for (line, chunk) in bytes.chunks(DUMP_WIDTH).enumerate() {
        let _ = write!(out, "{:08x} ", line * DUMP_WIDTH);
        for i in 0..DUMP_WIDTH {
            if i == DUMP_WIDTH / 2 {
                out.push(' ');
            }
            match chunk.get(i) {
                Some(byte) => {
                    let _ = write!(out, " {byte:02x}");
                }
                None => out.push_str("   "),
            }
        }
        out.push_str("  |");
        out.extend(chunk.iter().map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '.'
            }
        }));
        out.push_str("|\n");
    }
    let _ = writeln!(out, "{:08x}", bytes.len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_reindented_in_order() {
        let rendered = render_payload(br#"{"b":1,"a":[1, 2],"e":{},"s":"x,{\"y\":1}"}"#);
        let expected = "{\n  \"b\": 1,\n  \"a\": [\n    1,\n    2\n  ],\n  \"e\": {},\n  \"s\": \"x,{\\\"y\\\":1}\"\n}";
        assert_eq!(rendered, Rendered::Json(expected.to_owned()));
    }

    #[test]
    fn text_and_binary() {
        assert_eq!(
            render_payload(b"not json\tat all\n"),
            Rendered::Text("not json\tat all\n".into())
        );
        let dump = hex_dump(b"0123456789abcdef\x00\xff");
        assert_eq!(
            dump,
            "00000000  30 31 32 33 34 35 36 37  38 39 61 62 63 64 65 66  |0123456789abcdef|\n\
             00000010  00 ff                                             |..|\n\
             00000012\n"
        );
        assert_eq!(render_payload(b"\x00\x01").label(), "binary");
    }

    #[test]
    fn header_values() {
        assert_eq!(text_or_hex(b"orders"), "orders");
        assert_eq!(text_or_hex(&3i32.to_be_bytes()), "0x00000003");
        assert_eq!(text_or_hex(b"a\nb"), "0x610a62");
    }
}
