//! XLSX: calamine's streaming cell reader (never `worksheet_range`, which allocates the whole
//! bounding box: a sheet with cells at A1 and XFD1048576 would need 512 GiB). One
//! `## Sheet: name` section per sheet, as a Markdown table of the rows and columns that have
//! cells; at most [`MAX_CELLS`] cells and [`MAX_COLUMNS`] columns.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::fs::File;
use std::io::BufReader;

use calamine::DataRef;
use calamine::Reader;
use calamine::Xlsx;
use cambot_protocol::documents::DocKind;

use super::error::DocError;
use super::error::printable;
use super::limits::MAX_CELLS;
use super::limits::MAX_COLUMNS;
use super::out::Out;
use super::out::markdown_table;

fn bad(e: calamine::XlsxError) -> DocError {
    DocError::Malformed(format!("the workbook cannot be read: {e}"))
}

pub fn extract(path: &str, out: &mut Out) -> Result<(), DocError> {
    out.format = Some(DocKind::Xlsx);
    let file = File::open(path).map_err(|e| DocError::io("cannot open the document", e))?;
    let mut book: Xlsx<_> = Xlsx::new(BufReader::new(file)).map_err(bad)?;
    let mut cells = 0usize;
    for name in book.sheet_names() {
        out.parts += 1;
        out.push(&format!("## Sheet: {}\n\n", printable(&name)))?;
        let mut reader = book.worksheet_cells_reader(&name).map_err(bad)?;
        let mut rows: BTreeMap<u32, Vec<(u32, String)>> = BTreeMap::new();
        let mut cols = BTreeSet::new();
        while let Some(cell) = reader.next_cell().map_err(bad)? {
            let value = render(cell.get_value());
            if value.is_empty() {
                continue;
            }
            cells += 1;
            if cells > MAX_CELLS {
                out.mark_truncated(format!("cell cap of {MAX_CELLS} cells reached"));
                break;
            }
            let (row, col) = cell.get_position();
            if !cols.contains(&col) && cols.len() >= MAX_COLUMNS {
                out.mark_truncated(format!("column cap of {MAX_COLUMNS} columns reached"));
                continue;
            }
            cols.insert(col);
            rows.entry(row).or_default().push((col, value));
        }
        drop(reader);
        if rows.is_empty() {
            out.push("(empty sheet)\n\n")?;
        } else {
            let index: BTreeMap<u32, usize> =
                cols.iter().enumerate().map(|(i, c)| (*c, i)).collect();
            let table: Vec<Vec<String>> = rows
                .into_values()
                .map(|cells| {
                    let mut row = vec![String::new(); index.len()];
                    for (col, v) in cells {
                        if let Some(i) = index.get(&col) {
                            row[*i] = v;
                        }
                    }
                    row
                })
                .collect();
            out.push(&markdown_table(&table))?;
        }
        if cells > MAX_CELLS {
            break;
        }
    }
    Ok(())
}

fn render(v: &DataRef<'_>) -> String {
    match v {
        DataRef::Int(i) => i.to_string(),
        DataRef::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{f:.0}"),
        DataRef::Float(f) => f.to_string(),
        DataRef::String(s) => s.clone(),
        DataRef::SharedString(s) => (*s).to_owned(),
        DataRef::Bool(b) => if *b { "TRUE" } else { "FALSE" }.to_owned(),
        DataRef::DateTime(d) => match d.as_datetime() {
            Some(dt) if dt.time() == chrono::NaiveTime::MIN => dt.format("%Y-%m-%d").to_string(),
            Some(dt) => dt.format("%Y-%m-%d %H:%M:%S").to_string(),
            None => d.to_string(),
        },
        DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => s.clone(),
        DataRef::Error(e) => e.to_string(),
        DataRef::Empty => String::new(),
    }
}
