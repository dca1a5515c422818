//! DOCX: one walk over `word/document.xml`. Paragraphs become lines, `Heading N`/`Title`
//! styles become `#` headings, list paragraphs `- ` items, tables Markdown tables (a table
//! nested in a cell is flattened into that cell's text).

use std::io::BufReader;
use std::io::Read;

use cambot_protocol::documents::DocKind;

use super::error::DocError;
use super::limits::MAX_ENTRY_BYTES;
use super::out::Out;
use super::out::markdown_table;
use super::xml::Node;
use super::xml::attr;
use super::xml::local;
use super::xml::walk;
use super::zipguard::Package;

const PART: &str = "word/document.xml";

#[derive(Default)]
struct Table {
    rows: Vec<Vec<String>>,
    row: Vec<String>,
    cell: String,
}

#[derive(Default)]
struct State {
    para: String,
    heading: Option<usize>,
    list: bool,
    in_text: bool,
    in_props: bool,
    tables: Vec<Table>,
}

pub fn extract(mut pkg: Package, out: &mut Out) -> Result<(), DocError> {
    out.format = Some(DocKind::Docx);
    let entry = pkg
        .archive
        .by_name(PART)
        .map_err(|e| DocError::Malformed(format!("{PART}: {e}")))?;
    let src = BufReader::new(entry.take(MAX_ENTRY_BYTES));
    let mut st = State::default();
    walk(src, PART, |node| match node {
        Node::Open(e) => {
            match local(e).as_str() {
                "p" => {
                    st.para.clear();
                    st.heading = None;
                    st.list = false;
                }
                "pPr" => st.in_props = true,
                "pStyle" => st.heading = attr(e, "val").and_then(|v| heading_level(&v)),
                "numPr" => st.list = true,
                "t" => st.in_text = true,
                "tab" if !st.in_props => st.para.push('\t'),
                "br" | "cr" => st.para.push('\n'),
                "tbl" => st.tables.push(Table::default()),
                "tr" => {
                    if let Some(t) = st.tables.last_mut() {
                        t.row.clear();
                    }
                }
                "tc" => {
                    if let Some(t) = st.tables.last_mut() {
                        t.cell.clear();
                    }
                }
                _ => {}
            }
            Ok(())
        }
        Node::Close(name) => {
            match name {
                "t" => st.in_text = false,
                "pPr" => st.in_props = false,
                "p" => finish_paragraph(&mut st, out)?,
                "tc" => {
                    if let Some(t) = st.tables.last_mut() {
                        let cell = std::mem::take(&mut t.cell);
                        t.row.push(cell);
                    }
                }
                "tr" => {
                    if let Some(t) = st.tables.last_mut() {
                        let row = std::mem::take(&mut t.row);
                        t.rows.push(row);
                    }
                }
                "tbl" => {
                    if let Some(t) = st.tables.pop() {
                        match st.tables.last_mut() {
                            Some(outer) => {
                                let flat: Vec<String> =
                                    t.rows.iter().map(|r| r.join(" / ")).collect();
                                append(&mut outer.cell, &flat.join("; "));
                            }
                            None => out.push(&markdown_table(&t.rows))?,
                        }
                    }
                }
                _ => {}
            }
            Ok(())
        }
        Node::Text(s) => {
            if st.in_text {
                st.para.push_str(s);
            }
            Ok(())
        }
    })
}

fn append(cell: &mut String, text: &str) {
    if text.trim().is_empty() {
        return;
    }
    if !cell.is_empty() {
        cell.push('\n');
    }
    cell.push_str(text.trim());
}

fn finish_paragraph(st: &mut State, out: &mut Out) -> Result<(), DocError> {
    let para = std::mem::take(&mut st.para);
    if let Some(t) = st.tables.last_mut() {
        append(&mut t.cell, &para);
        return Ok(());
    }
    let text = para.trim();
    if text.is_empty() {
        return Ok(());
    }
    match (st.heading, st.list) {
        (Some(level), _) => out.push(&format!("{} {text}\n\n", "#".repeat(level))),
        (None, true) => out.push(&format!("- {text}\n")),
        (None, false) => out.push(&format!("{text}\n\n")),
    }
}

fn heading_level(style: &str) -> Option<usize> {
    if style.eq_ignore_ascii_case("title") {
        return Some(1);
    }
    let rest = style
        .strip_prefix("Heading")
        .or_else(|| style.strip_prefix("heading"))?;
    let n: usize = rest.trim().parse().ok()?;
    (n >= 1).then_some(n.min(6))
}
