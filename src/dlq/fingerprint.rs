//! Failure fingerprints: the error kind plus the error message with its variable parts
//! (numbers, ids, timestamps, quoted values) replaced, so dead letters with the same cause
//! group together.

/// Only this much of an error message is normalised: enough to tell causes apart, and it
/// keeps grouping 100,000 records with long stack-trace messages fast.
const MAX_SCAN_BYTES: usize = 1024;

/// Numbers right after these words (case-insensitive; `HTTP/1.1 503`, `status: 404`,
/// `exit code 137`) are kept, because they name the cause rather than vary with it.
const CAUSE_WORDS: [&str; 5] = ["http", "status", "code", "errno", "sqlstate"];

/// The fingerprint of a failure: `kind: normalised error` (just `kind` when the error is
/// empty). In the message, placeholders replace
/// - UUIDs with `<uuid>`, hex ids of 8 or more hex digits (letters and digits) with `<id>`,
/// - ISO 8601 dates and timestamps with `<time>`,
/// - numbers (integers, decimals, `0x1f` hex) with `<n>`, except a number right after
///   `HTTP`, `status`, `code`, `errno` or `sqlstate`,
/// - quoted values (`'…'`, `"…"`, `` `…` ``) and e-mail addresses with `<value>`,
///
/// and whitespace runs collapse to one space. Only the first 1 KiB of the message counts.
/// Deterministic: the same input always gives the same fingerprint.
pub fn fingerprint(kind: &str, error: &str) -> String {
    let normalised = normalise(head(error.trim()));
    let kind = kind.trim();
    if normalised.is_empty() {
        return kind.to_owned();
    }
    let mut out = String::with_capacity(kind.len() + 2 + normalised.len());
    out.push_str(kind);
    out.push_str(": ");
    out.push_str(&normalised);
    out
}

fn head(text: &str) -> &str {
    if text.len() <= MAX_SCAN_BYTES {
        return text;
    }
    let mut end = MAX_SCAN_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// One pass over the bytes. Decisions look only at ASCII, so every cut falls on a UTF-8
/// character boundary and other characters are copied through unchanged.
fn normalise(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            if !out.is_empty() {
                out.push(' ');
            }
            continue;
        }
        let at_word_start = i == 0 || !b[i - 1].is_ascii_alphanumeric();
        if at_word_start {
            if let Some((end, placeholder)) = token_at(b, i) {
                out.push_str(placeholder);
                i = end;
                continue;
            }
        }
        if c.is_ascii_digit() {
            let end = number_end(b, i);
            if at_word_start && follows_cause_word(b, i) {
                out.push_str(&text[i..end]);
            } else {
                out.push_str("<n>");
            }
            i = end;
            continue;
        }
        let len = text[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&text[i..i + len]);
        i += len;
    }
    out.truncate(out.trim_end().len());
    out
}

/// A placeholder token starting at `i` (a word start): its end and placeholder.
fn token_at(b: &[u8], i: usize) -> Option<(usize, &'static str)> {
    if let Some(end) = quoted_end(b, i) {
        return Some((end, "<value>"));
    }
    if let Some(end) = email_end(b, i) {
        return Some((end, "<value>"));
    }
    if is_uuid(b, i) {
        return Some((i + 36, "<uuid>"));
    }
    if let Some(end) = timestamp_end(b, i) {
        return Some((end, "<time>"));
    }
    if matches!(b.get(i..i + 2), Some(b"0x" | b"0X")) {
        let end = run(b, i + 2, |c| c.is_ascii_hexdigit());
        if end > i + 2 && !b.get(end).is_some_and(u8::is_ascii_alphanumeric) {
            return Some((end, "<n>"));
        }
    }
    let end = run(b, i, |c| c.is_ascii_alphanumeric());
    let word = &b[i..end];
    let hex_id = word.len() >= 8
        && word.iter().all(u8::is_ascii_hexdigit)
        && word.iter().any(u8::is_ascii_digit)
        && word.iter().any(u8::is_ascii_alphabetic);
    hex_id.then_some((end, "<id>"))
}

/// The end of the first index from `i` where `keep` fails.
fn run(b: &[u8], mut i: usize, keep: impl Fn(&u8) -> bool) -> usize {
    while i < b.len() && keep(&b[i]) {
        i += 1;
    }
    i
}

/// Digits with any `.digits` parts (`3.14`, `10.0.0.1`).
fn number_end(b: &[u8], i: usize) -> usize {
    let mut end = run(b, i, u8::is_ascii_digit);
    while b.get(end) == Some(&b'.') && b.get(end + 1).is_some_and(u8::is_ascii_digit) {
        end = run(b, end + 1, u8::is_ascii_digit);
    }
    end
}

/// A quoted value: the matching closing quote on the same line. A `'` closes only before a
/// non-alphanumeric, so apostrophes (`can't`) are not taken for quotes.
fn quoted_end(b: &[u8], i: usize) -> Option<usize> {
    let quote = b[i];
    if !matches!(quote, b'\'' | b'"' | b'`') {
        return None;
    }
    let mut j = i + 1;
    while j < b.len() && b[j] != b'\n' {
        let closes = b[j] == quote
            && (quote != b'\'' || !b.get(j + 1).is_some_and(u8::is_ascii_alphanumeric));
        if closes {
            return Some(j + 1);
        }
        j += 1;
    }
    None
}

fn email_end(b: &[u8], i: usize) -> Option<usize> {
    let local = |c: &u8| c.is_ascii_alphanumeric() || b"._%+-".contains(c);
    let at = run(b, i, local);
    if at == i || b.get(at) != Some(&b'@') {
        return None;
    }
    let end = run(b, at + 1, |c| {
        c.is_ascii_alphanumeric() || b".-".contains(c)
    });
    // Do not swallow a sentence's full stop after the address.
    let domain = b[at + 1..end].trim_ascii_end();
    let domain = domain.strip_suffix(b".").unwrap_or(domain);
    let dot = domain.iter().rposition(|&c| c == b'.')?;
    let tld_ok = dot > 0 && dot + 1 < domain.len();
    tld_ok.then_some(at + 1 + domain.len())
}

fn is_uuid(b: &[u8], i: usize) -> bool {
    let Some(candidate) = b.get(i..i + 36) else {
        return false;
    };
    let shape_ok = candidate.iter().enumerate().all(|(k, c)| match k {
        8 | 13 | 18 | 23 => *c == b'-',
        _ => c.is_ascii_hexdigit(),
    });
    shape_ok && !b.get(i + 36).is_some_and(u8::is_ascii_alphanumeric)
}

/// `YYYY-MM-DD`, optionally with `[T ]hh:mm[:ss[.frac]]` and `Z` or a `±hh[:]mm` offset.
fn timestamp_end(b: &[u8], i: usize) -> Option<usize> {
    let mut pos = i;
    for (width, sep) in [(4, Some(b'-')), (2, Some(b'-')), (2, None)] {
        pos = digits(b, pos, width)?;
        if let Some(sep) = sep {
            pos = expect(b, pos, sep)?;
        }
    }
    let time = [b'T', b't', b' ']
        .iter()
        .find_map(|&sep| expect(b, pos, sep))
        .and_then(|p| digits(b, p, 2))
        .and_then(|p| expect(b, p, b':'))
        .and_then(|p| digits(b, p, 2));
    let Some(mut end) = time else {
        return Some(pos);
    };
    if let Some(p) = expect(b, end, b':').and_then(|p| digits(b, p, 2)) {
        end = p;
        if let Some(p) = expect(b, end, b'.').or_else(|| expect(b, end, b',')) {
            let frac = run(b, p, u8::is_ascii_digit);
            end = if frac > p { frac } else { end };
        }
    }
    if let Some(p) = expect(b, end, b'Z').or_else(|| expect(b, end, b'z')) {
        return Some(p);
    }
    let offset = expect(b, end, b'+')
        .or_else(|| expect(b, end, b'-'))
        .and_then(|p| digits(b, p, 2))
        .map(|p| {
            let colon = expect(b, p, b':').unwrap_or(p);
            digits(b, colon, 2).unwrap_or(p)
        });
    Some(offset.unwrap_or(end))
}

fn digits(b: &[u8], i: usize, width: usize) -> Option<usize> {
    let slice = b.get(i..i + width)?;
    slice.iter().all(u8::is_ascii_digit).then_some(i + width)
}

fn expect(b: &[u8], i: usize, c: u8) -> Option<usize> {
    (b.get(i) == Some(&c)).then_some(i + 1)
}

/// True when the word before `i` (skipping spaces, `:`, `=`, `/` and a version number
/// such as the `1.1` in `HTTP/1.1 503`) is a [`CAUSE_WORDS`] entry.
fn follows_cause_word(b: &[u8], i: usize) -> bool {
    let skip = |c: u8| b" :=/.#".contains(&c) || c.is_ascii_digit();
    // Bounded, so a message of many numbers stays linear.
    let floor = i.saturating_sub(24);
    let mut end = i;
    while end > floor && skip(b[end - 1]) {
        end -= 1;
    }
    let mut start = end;
    while start > 0 && b[start - 1].is_ascii_alphabetic() {
        start -= 1;
    }
    let word = &b[start..end];
    CAUSE_WORDS
        .iter()
        .any(|w| word.eq_ignore_ascii_case(w.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn norm(input: &str, expected: &str) {
        assert_eq!(normalise(input), expected, "input: {input:?}");
    }

    #[test]
    fn numbers_and_hex() {
        norm("timeout after 3000ms", "timeout after <n>ms");
        norm("took 3.25 s, limit 1,000", "took <n> s, limit <n>,<n>");
        norm("at 0x1f and 0XDEAD", "at <n> and <n>");
        norm("broker 10.0.0.1:9092 down", "broker <n>:<n> down");
        norm("order123 failed", "order<n> failed");
        norm("retry -5", "retry -<n>");
    }

    #[test]
    fn ids_and_uuids() {
        norm(
            "order 8f14e45f-ceea-467f-a0e6-1c2b3d4e5f60 gone",
            "order <uuid> gone",
        );
        norm("trace 4bf92f3577b34da6a3ce929d0e0e4736", "trace <id>");
        norm("ord_8f14e45fceea missing", "ord_<id> missing");
        // Short hex, hex-letter words and plain long numbers are not ids.
        norm("e5 cafe deadbeef", "e<n> cafe deadbeef");
        norm("id 12345678", "id <n>");
    }

    #[test]
    fn timestamps() {
        norm("at 2025-11-13T09:15:02.123Z", "at <time>");
        norm("at 2025-11-13 09:15:02+01:00 ok", "at <time> ok");
        norm("at 2025-11-13T09:15+0100", "at <time>");
        norm("on 2025-11-13.", "on <time>.");
    }

    #[test]
    fn quoted_values_and_emails() {
        norm(
            "field 'amount' must be positive",
            "field <value> must be positive",
        );
        norm(r#"key "a b c" and `x`"#, "key <value> and <value>");
        norm("can't parse 'x'", "can't parse <value>");
        norm("unterminated 'quote", "unterminated 'quote");
        norm("user jane.doe+1@example.co.uk.", "user <value>.");
        norm("not@mail and a@b", "not@mail and a@b");
    }

    #[test]
    fn cause_numbers_are_kept() {
        norm("HTTP 503: down", "HTTP 503: down");
        norm("HTTP/1.1 404 Not Found", "HTTP/1.1 404 Not Found");
        norm("status=500 after 3 tries", "status=500 after <n> tries");
        norm("exit code 137", "exit code 137");
    }

    #[test]
    fn whitespace_collapses_and_non_ascii_survives() {
        norm("  a \t\n b   ", "a b");
        norm("prix 12 € für Müller", "prix <n> € für Müller");
    }

    #[test]
    fn fingerprint_joins_kind_and_message() {
        assert_eq!(fingerprint("permanent", " bad 7 "), "permanent: bad <n>");
        assert_eq!(fingerprint("exhausted", ""), "exhausted");
        let long = format!("{} tail-differs", "x ".repeat(600));
        assert_eq!(
            fingerprint("k", &long),
            fingerprint("k", &format!("{long} more"))
        );
    }
}
