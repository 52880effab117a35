//! The Prometheus text exposition format, version 0.0.4, written by hand: `# HELP` and
//! `# TYPE` once per family, then its samples, label values escaped.

use std::fmt::{Display, Write};

/// The `Content-Type` of the exposition text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Builds the exposition text family by family.
#[derive(Default)]
pub(crate) struct Exposition {
    out: String,
}

/// A metric family's type.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

impl Exposition {
    /// Starts a family: its `# HELP` and `# TYPE` lines. All its samples must follow
    /// before the next family starts (the format requires a family's samples together).
    pub(crate) fn family(&mut self, name: &str, help: &str, kind: Kind) {
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        escape_help(help, &mut self.out);
        self.out.push_str("\n# TYPE ");
        self.out.push_str(name);
        self.out.push(' ');
        self.out.push_str(kind.as_str());
        self.out.push('\n');
    }

    /// One sample line: `name{label="value",...} value`.
    pub(crate) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, label_value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(label);
                self.out.push_str("=\"");
                escape_label_value(label_value, &mut self.out);
                self.out.push('"');
            }
            self.out.push('}');
        }
        // Writing into a String cannot fail.
        let _ = writeln!(self.out, " {value}");
    }

    /// The text written so far.
    pub(crate) fn finish(self) -> String {
        self.out
    }
}

/// Label values escape backslash, double quote and line feed.
pub(crate) fn escape_label_value(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// HELP text escapes backslash and line feed (quotes stay as they are).
fn escape_help(help: &str, out: &mut String) {
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_escape_backslash_quote_and_newline() {
        let mut e = Exposition::default();
        e.sample("m", &[("route", "a\\b\"c\nd"), ("x", "plain")], 3);
        assert_eq!(e.finish(), "m{route=\"a\\\\b\\\"c\\nd\",x=\"plain\"} 3\n");
    }

    #[test]
    fn help_escapes_backslash_and_newline_but_not_quotes() {
        let mut e = Exposition::default();
        e.family("m_total", "says \"hi\"\\\nbye", Kind::Counter);
        assert_eq!(
            e.finish(),
            "# HELP m_total says \"hi\"\\\\\\nbye\n# TYPE m_total counter\n"
        );
    }

    #[test]
    fn no_labels_no_braces() {
        let mut e = Exposition::default();
        e.sample("up", &[], 1);
        assert_eq!(e.finish(), "up 1\n");
    }
}
