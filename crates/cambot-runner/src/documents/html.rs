//! HTML through html2text, behind a linear nesting pre-scan: html5ever is quadratic in depth
//! (100 000 nested `<div>` cost 29 s of CPU), so deeper documents are refused up front.

use cambot_protocol::documents::DocKind;

use super::error::DocError;
use super::limits::MAX_HTML_DEPTH;
use super::out::Out;

/// Elements that never nest (void) or that the parser closes implicitly when a sibling opens.
const NOT_NESTING: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track",
    "wbr", "p", "li", "dt", "dd", "tr", "td", "th", "option", "optgroup", "thead", "tbody",
    "tfoot", "colgroup", "rb", "rt", "rtc", "rp", "html", "head", "body",
];

pub fn extract(bytes: &[u8], out: &mut Out) -> Result<(), DocError> {
    out.format = Some(DocKind::Html);
    let depth = max_depth(bytes);
    if depth > MAX_HTML_DEPTH {
        return Err(DocError::Limit(format!(
            "HTML nested deeper than {MAX_HTML_DEPTH} levels"
        )));
    }
    let text = html2text::config::plain()
        .allow_width_overflow()
        .string_from_read(bytes, 400)
        .map_err(|e| DocError::Malformed(format!("the HTML cannot be read: {e}")))?;
    if text.trim().is_empty() {
        return Err(DocError::Empty);
    }
    out.push(&text)
}

/// The deepest element nesting, over-estimated (unclosed elements count as open): a linear
/// scan of tag names, skipping comments and the bodies of `script`, `style` and `textarea`.
pub fn max_depth(bytes: &[u8]) -> usize {
    let lower = |b: &[u8]| b.to_ascii_lowercase();
    let (mut depth, mut max, mut i) = (0usize, 0usize, 0usize);
    while let Some(off) = bytes[i..].iter().position(|b| *b == b'<') {
        i += off + 1;
        if bytes[i..].starts_with(b"!--") {
            i = find(bytes, i, b"-->").unwrap_or(bytes.len());
            continue;
        }
        let closing = bytes.get(i) == Some(&b'/');
        let start = if closing { i + 1 } else { i };
        let len = bytes[start..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric())
            .count();
        if len == 0 {
            continue;
        }
        let name = lower(&bytes[start..start + len]);
        let end = bytes[start..]
            .iter()
            .position(|b| *b == b'>')
            .map(|p| start + p);
        let self_closing = end.is_some_and(|e| e > 0 && bytes[e - 1] == b'/');
        let name = String::from_utf8_lossy(&name).into_owned();
        if NOT_NESTING.contains(&name.as_str()) || self_closing {
            continue;
        }
        if closing {
            depth = depth.saturating_sub(1);
        } else {
            depth += 1;
            max = max.max(depth);
            if matches!(name.as_str(), "script" | "style" | "textarea" | "title") {
                let close = format!("</{name}");
                i = find_ci(bytes, i, close.as_bytes()).unwrap_or(bytes.len());
            }
        }
    }
    max
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p + needle.len())
}

fn find_ci(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
        .map(|p| from + p)
}
