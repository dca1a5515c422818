//! Paging through an extracted document: parts (the extractor's `## Page N`, `## Sheet: name`
//! and `## Slide N` markers) and character windows, each answer saying what it holds and how
//! to ask for the next part, so that a long document never floods the context.

use cambot_protocol::documents::DocKind;
use cambot_protocol::documents::StatusLine;

use super::document::provenance;

/// Characters returned by a call that does not say.
pub const DEFAULT_WINDOW_CHARS: usize = 20_000;
/// Characters one call returns at most.
pub const MAX_WINDOW_CHARS: usize = 50_000;

/// What a call asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// 1-based part (page, sheet or slide); `None`: the whole text.
    pub page: Option<usize>,
    /// Characters to skip in the selected text.
    pub offset: usize,
    pub max_chars: usize,
}

/// An extracted document, split into its parts.
#[derive(Debug)]
pub struct Document {
    text: String,
    status: StatusLine,
    /// Byte ranges of the parts in `text`, in order.
    parts: Vec<(usize, usize)>,
}

impl Document {
    pub fn new(text: String, status: StatusLine) -> Self {
        let parts = split_parts(&text, status.format);
        Self {
            text,
            status,
            parts,
        }
    }

    fn part_name(&self) -> &'static str {
        match self.status.format {
            Some(DocKind::Pdf) => "page",
            Some(DocKind::Xlsx) => "sheet",
            Some(DocKind::Pptx) => "slide",
            _ => "part",
        }
    }

    /// The answer to one call: a header line, the window, a footer saying what comes next.
    pub fn window(&self, shown: &str, req: &Request) -> Result<String, String> {
        let name = self.part_name();
        let (body, scope) = match req.page {
            None => (self.text.as_str(), String::new()),
            Some(n) if self.parts.is_empty() => {
                if n == 1 {
                    (self.text.as_str(), String::new())
                } else {
                    return Err(format!(
                        "{shown} has no {name}s: read it without `page` (offset/max_chars page through it)"
                    ));
                }
            }
            Some(n) => match n.checked_sub(1).and_then(|i| self.parts.get(i)) {
                Some(&(start, end)) => (&self.text[start..end], format!("{name} {n}, ")),
                None => {
                    return Err(format!(
                        "{shown} has {} {name}s (1 to {}); there is no {name} {n}",
                        self.parts.len(),
                        self.parts.len()
                    ));
                }
            },
        };
        let total = body.chars().count();
        if req.offset > total {
            return Err(format!(
                "offset {} is past the end: the {}text has {total} characters",
                req.offset,
                if scope.is_empty() {
                    String::new()
                } else {
                    format!("{} ", scope.trim_end_matches(", "))
                }
            ));
        }
        let end = (req.offset + req.max_chars).min(total);
        let slice = char_slice(body, req.offset, end);
        let format = self
            .status
            .format
            .map_or_else(|| "document".to_owned(), |k| k.as_str().to_owned());
        let parts = if self.parts.is_empty() {
            String::new()
        } else {
            format!(", {} {name}s", self.parts.len())
        };
        let mut out = format!(
            "[read_document {shown}: {format}{parts}; showing {scope}characters {}-{end} of {total}]\n",
            req.offset
        );
        out.push_str(slice);
        if !out.ends_with('\n') {
            out.push('\n');
        }
        let page_arg = req
            .page
            .map_or_else(String::new, |p| format!(", \"page\": {p}"));
        if end < total {
            out.push_str(&format!(
                "[more: call read_document with {{\"path\": \"{shown}\"{page_arg}, \"offset\": {end}}} for the next characters]\n"
            ));
        } else if let Some(p) = req.page.filter(|p| *p < self.parts.len()) {
            out.push_str(&format!(
                "[end of {name} {p}; next: {{\"path\": \"{shown}\", \"page\": {}}}]\n",
                p + 1
            ));
        } else {
            out.push_str("[end of the document]\n");
        }
        if let Some(why) = self
            .status
            .detail
            .as_deref()
            .filter(|_| self.status.truncated)
        {
            out.push_str(&format!("[the extraction stopped early: {why}]\n"));
        }
        if let Some(p) = &self.status.process {
            out.push_str(&provenance(p));
            out.push('\n');
        }
        Ok(out)
    }
}

/// The characters `[from, to)` of `s`.
fn char_slice(s: &str, from: usize, to: usize) -> &str {
    let byte = |n: usize| s.char_indices().nth(n).map_or(s.len(), |(i, _)| i);
    let start = byte(from);
    let end = start
        + s[start..]
            .char_indices()
            .nth(to - from)
            .map_or(s.len() - start, |(i, _)| i);
    &s[start..end]
}

/// The parts of an extraction, by its format's marker. Page and slide markers must count up
/// from 1, so a line of the document's own text that looks like one does not split it.
fn split_parts(text: &str, format: Option<DocKind>) -> Vec<(usize, usize)> {
    let prefix = match format {
        Some(DocKind::Pdf) => "## Page ",
        Some(DocKind::Pptx) => "## Slide ",
        Some(DocKind::Xlsx) => "## Sheet: ",
        _ => return Vec::new(),
    };
    let numbered = !matches!(format, Some(DocKind::Xlsx));
    let mut starts = Vec::new();
    let mut pos = 0usize;
    for line in text.split_inclusive('\n') {
        if let Some(rest) = line.strip_prefix(prefix) {
            let next = (starts.len() + 1).to_string();
            if !numbered || rest.trim_end() == next {
                starts.push(pos);
            }
        }
        pos += line.len();
    }
    let mut parts = Vec::with_capacity(starts.len());
    for (i, &s) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or_else(|| {
            // The last part ends before the extractor's `[truncated: ...]` marker, if any.
            text[s..]
                .rfind("\n[truncated: ")
                .map_or(text.len(), |t| s + t + 1)
        });
        parts.push((s, end));
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use cambot_protocol::documents::ExtractStatus;

    fn doc(text: &str, format: DocKind) -> Document {
        Document::new(
            text.to_owned(),
            StatusLine {
                status: ExtractStatus::Ok,
                format: Some(format),
                parts: None,
                truncated: false,
                detail: None,
                process: None,
            },
        )
    }

    fn req(page: Option<usize>, offset: usize, max_chars: usize) -> Request {
        Request {
            page,
            offset,
            max_chars,
        }
    }

    #[test]
    fn pages_are_selected_by_their_markers_and_the_answer_says_what_comes_next() {
        let d = doc(
            "## Page 1\n\nalpha\n## Page 7 is not a marker\n\n## Page 2\n\nbeta gamma\n\n",
            DocKind::Pdf,
        );
        let p2 = d.window("/workspace/x.pdf", &req(Some(2), 0, 100)).unwrap();
        assert!(p2.starts_with("[read_document /workspace/x.pdf: pdf, 2 pages; showing page 2, characters 0-23 of 23]\n## Page 2\n\nbeta gamma"), "{p2}");
        assert!(p2.contains("[end of the document]"), "{p2}");
        let p1 = d.window("/workspace/x.pdf", &req(Some(1), 0, 100)).unwrap();
        assert!(p1.contains("## Page 7 is not a marker"), "{p1}");
        assert!(
            p1.contains(r#"next: {"path": "/workspace/x.pdf", "page": 2}"#),
            "{p1}"
        );
        let err = d
            .window("/workspace/x.pdf", &req(Some(3), 0, 100))
            .unwrap_err();
        assert!(err.contains("has 2 pages"), "{err}");
    }

    #[test]
    fn character_windows_page_through_long_text_without_cutting_a_character() {
        let text = "é".repeat(30);
        let d = doc(&text, DocKind::Text);
        let w = d.window("/workspace/a.txt", &req(None, 0, 10)).unwrap();
        assert!(w.contains("characters 0-10 of 30"), "{w}");
        assert!(
            w.contains(&"é".repeat(10)) && !w.contains(&"é".repeat(11)),
            "{w}"
        );
        assert!(
            w.contains(r#"{"path": "/workspace/a.txt", "offset": 10}"#),
            "{w}"
        );
        let last = d.window("/workspace/a.txt", &req(None, 25, 10)).unwrap();
        assert!(last.contains("characters 25-30 of 30") && last.contains("[end of the document]"));
        assert!(d.window("/workspace/a.txt", &req(None, 31, 10)).is_err());
        // No parts: page 1 is the whole text, page 2 does not exist.
        assert!(d.window("/workspace/a.txt", &req(Some(1), 0, 5)).is_ok());
        assert!(d.window("/workspace/a.txt", &req(Some(2), 0, 5)).is_err());
    }

    #[test]
    fn sheets_are_parts_and_a_truncation_marker_is_not_part_of_the_last_one() {
        let d = doc(
            "## Sheet: A\n\n| x |\n| --- |\n\n## Sheet: B\n\n| y |\n\n[truncated: cell cap]\n",
            DocKind::Xlsx,
        );
        let b = d.window("/w/s.xlsx", &req(Some(2), 0, 1000)).unwrap();
        assert!(b.contains("xlsx, 2 sheets; showing sheet 2"), "{b}");
        assert!(!b.contains("truncated: cell cap"), "{b}");
    }
}
