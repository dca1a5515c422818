//! Plain text and Markdown pass through (lossy UTF-8, BOM dropped); CSV becomes a Markdown
//! table (RFC 4180 quoting; a separator `;` or tab is used when the first line has more of
//! them than commas).

use cambot_protocol::documents::DocKind;

use super::error::DocError;
use super::limits::MAX_CELLS;
use super::out::Out;
use super::out::markdown_table;

pub fn decode(bytes: &[u8]) -> String {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn extract_text(bytes: &[u8], kind: DocKind, out: &mut Out) -> Result<(), DocError> {
    out.format = Some(kind);
    let text = decode(bytes);
    if text.trim().is_empty() {
        return Err(DocError::Empty);
    }
    out.push(&text)?;
    if !text.ends_with('\n') {
        out.push("\n")?;
    }
    Ok(())
}

pub fn extract_csv(bytes: &[u8], out: &mut Out) -> Result<(), DocError> {
    out.format = Some(DocKind::Csv);
    let text = decode(bytes);
    let first = text.lines().next().unwrap_or("");
    let sep = [',', ';', '\t']
        .into_iter()
        .max_by_key(|c| first.matches(*c).count())
        .unwrap_or(',');
    let mut rows = Vec::new();
    let mut cells = 0usize;
    for row in parse(&text, sep) {
        cells += row.len();
        if cells > MAX_CELLS {
            out.mark_truncated(format!("cell cap of {MAX_CELLS} cells reached"));
            break;
        }
        rows.push(row);
    }
    if rows.iter().all(|r| r.iter().all(|c| c.trim().is_empty())) {
        return Err(DocError::Empty);
    }
    out.push(&markdown_table(&rows))
}

/// Rows of fields; quotes may hold separators, newlines and doubled quotes.
fn parse(text: &str, sep: char) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let (mut row, mut field) = (Vec::new(), String::new());
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, c) if c == sep => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

#[cfg(test)]
mod tests {
    #[test]
    fn csv_quotes_hold_separators_newlines_and_quotes() {
        let rows = super::parse("a,\"b,c\"\n\"x\"\"y\",\"l1\nl2\"\n", ',');
        assert_eq!(
            rows,
            vec![
                vec!["a".to_owned(), "b,c".to_owned()],
                vec!["x\"y".to_owned(), "l1\nl2".to_owned()]
            ]
        );
    }
}
