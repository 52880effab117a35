//! Finding where in the config file a setting is, so errors can name the line.

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// The parsed file with positions, to turn a dotted setting path into a line number.
pub(crate) struct Locator<'a> {
    text: &'a str,
    root: Option<Spanned<DeTable<'a>>>,
}

impl<'a> Locator<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Self {
            text,
            root: DeTable::parse(text).ok(),
        }
    }

    /// The line (1-based) of the deepest part of `path` present in the file: the key
    /// itself when it is there, else the nearest table that should hold it.
    pub(crate) fn line_of(&self, path: &[&str]) -> Option<usize> {
        let root = self.root.as_ref()?;
        let mut table = root.get_ref();
        let mut offset = None;
        for segment in path {
            let Some((key, value)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == *segment)
            else {
                break;
            };
            offset = Some(key.span().start);
            match value.get_ref() {
                DeValue::Table(inner) => table = inner,
                _ => break,
            }
        }
        offset.map(|at| self.line_at(at))
    }

    /// The line (1-based) holding byte `offset`.
    pub(crate) fn line_at(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "[store]\npath = \"x\"\n\n[routes.orders]\nretry = { max_attempts = 0 }\nsource.kafka.brokers = \"b\"\n\n[routes.orders.breaker]\nmin_calls = 0\n";

    #[test]
    fn finds_keys_in_headers_inline_tables_and_dotted_keys() {
        let locator = Locator::new(FILE);
        assert_eq!(locator.line_of(&["store", "path"]), Some(2));
        assert_eq!(
            locator.line_of(&["routes", "orders", "retry", "max_attempts"]),
            Some(5)
        );
        assert_eq!(
            locator.line_of(&["routes", "orders", "source", "kafka", "brokers"]),
            Some(6)
        );
        assert_eq!(
            locator.line_of(&["routes", "orders", "breaker", "min_calls"]),
            Some(9)
        );
    }

    #[test]
    fn a_missing_key_points_at_its_table() {
        let locator = Locator::new(FILE);
        assert_eq!(
            locator.line_of(&["routes", "orders", "retry", "multiplier"]),
            Some(5)
        );
        assert_eq!(locator.line_of(&["admin"]), None);
    }
}
