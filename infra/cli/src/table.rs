//! Plain aligned text tables (no dependency) and JSON output.

use std::io::Write;

use anyhow::Result;
use serde::Serialize;

/// Writes `rows` under `headers`, columns padded to their widest cell.
pub(crate) fn print(out: &mut dyn Write, headers: &[&str], rows: &[Vec<String>]) -> Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                text.push_str(cell);
                text.push_str(&" ".repeat(pad + 2));
            }
        }
        text.trim_end().to_owned()
    };
    writeln!(out, "{}", line(headers.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

/// Pretty JSON on its own line.
pub(crate) fn json<T: Serialize + ?Sized>(out: &mut dyn Write, value: &T) -> Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

/// A listing: `items` as JSON with `--json`, else a table of one
/// `row(item)` per item under `headers`. The one way a command lists.
pub(crate) fn list<T: Serialize>(
    out: &mut dyn Write,
    json: bool,
    items: &[T],
    headers: &[&str],
    row: impl Fn(&T) -> Vec<String>,
) -> Result<()> {
    if json {
        return self::json(out, items);
    }
    let rows: Vec<Vec<String>> = items.iter().map(row).collect();
    print(out, headers, &rows)
}

/// `-` for an empty cell.
pub(crate) fn or_dash(s: impl Into<String>) -> String {
    let s = s.into();
    if s.is_empty() { "-".into() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(json: bool) -> String {
        let mut out = Vec::new();
        let items = [("a", 1), ("bbb", 22)];
        list(&mut out, json, &items, &["NAME", "N"], |(name, n)| {
            vec![(*name).to_owned(), n.to_string()]
        })
        .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_listing_is_a_table_or_the_items_as_json() {
        assert_eq!(listed(false), "NAME  N\na     1\nbbb   22\n");
        let back: serde_json::Value = serde_json::from_str(&listed(true)).unwrap();
        assert_eq!(back, serde_json::json!([["a", 1], ["bbb", 22]]));
    }
}
