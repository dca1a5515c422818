//! The extracted text, capped: a push past the cap keeps what fits (on a char boundary) and
//! stops the extractor with [`DocError::OutputFull`].

use cambot_protocol::documents::DocKind;

use super::error::DocError;

#[derive(Debug)]
pub struct Out {
    pub text: String,
    cap: usize,
    /// Why the text stops early, when it does.
    pub truncated: Option<String>,
    /// Pages, sheets or slides written.
    pub parts: u32,
    /// The format actually read.
    pub format: Option<DocKind>,
}

impl Out {
    pub fn new(cap: usize) -> Self {
        Self {
            text: String::new(),
            cap,
            truncated: None,
            parts: 0,
            format: None,
        }
    }

    pub fn push(&mut self, s: &str) -> Result<(), DocError> {
        let room = self.cap.saturating_sub(self.text.len());
        if s.len() <= room {
            self.text.push_str(s);
            return Ok(());
        }
        let mut end = room;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.text.push_str(&s[..end]);
        self.truncated = Some(format!("output cap of {} bytes reached", self.cap));
        Err(DocError::OutputFull)
    }

    /// Keeps the first reason only.
    pub fn mark_truncated(&mut self, why: String) {
        self.truncated.get_or_insert(why);
    }

    /// True when nothing but whitespace and markers was written.
    pub fn is_blank(&self) -> bool {
        self.text
            .lines()
            .all(|l| l.trim().is_empty() || l.starts_with("## Page ") || l.starts_with("## Slide "))
    }
}

/// A Markdown table; the first row is the header. `|` is escaped and line breaks become
/// `<br>` so that a cell never breaks the table.
pub fn markdown_table(rows: &[Vec<String>]) -> String {
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    if width == 0 {
        return String::new();
    }
    let cell = |s: &str| {
        s.trim()
            .replace('|', "\\|")
            .replace("\r\n", "<br>")
            .replace(['\n', '\r'], "<br>")
    };
    let mut md = String::new();
    for (i, row) in rows.iter().enumerate() {
        md.push('|');
        for c in 0..width {
            md.push(' ');
            md.push_str(&cell(row.get(c).map_or("", String::as_str)));
            md.push_str(" |");
        }
        md.push('\n');
        if i == 0 {
            md.push('|');
            for _ in 0..width {
                md.push_str(" --- |");
            }
            md.push('\n');
        }
    }
    md.push('\n');
    md
}
