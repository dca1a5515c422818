//! A document corpus written by code (no binaries checked in): PDFs in hand-written PDF syntax,
//! DOCX/XLSX/PPTX as ZIP + XML, and the hostile variants of issue 27 (zip bombs, entity
//! expansion, XXE, looping and deep PDF object graphs, 100 000 pages, unsafe member names).

use std::io::Cursor;
use std::io::Write;

use zip::ZipWriter;
use zip::write::SimpleFileOptions;

/// Text for a PDF string literal.
fn pdf_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('(', "\\(")
        .replace(')', "\\)")
}

/// A PDF from numbered objects (object `i + 1` is `objects[i]`), with a correct xref table.
pub fn pdf_from_objects(objects: &[Vec<u8>], trailer_extra: &str) -> Vec<u8> {
    let mut pdf = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (i, body) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        pdf.extend_from_slice(body);
        pdf.extend_from_slice(b"\nendobj\n");
    }
    let xref = pdf.len();
    pdf.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for o in offsets {
        pdf.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    pdf.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R {trailer_extra} >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    pdf
}

fn stream(content: &str) -> Vec<u8> {
    format!(
        "<< /Length {} >>\nstream\n{content}\nendstream",
        content.len()
    )
    .into_bytes()
}

/// A content stream drawing each `(x, y, text)` in Helvetica 11.
fn draw(lines: &[(u32, u32, String)]) -> String {
    lines
        .iter()
        .map(|(x, y, t)| format!("BT /F1 11 Tf {x} {y} Td ({}) Tj ET", pdf_escape(t)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A PDF with one page per entry; each page's lines drawn top-down.
pub fn pdf_pages(pages: &[&str]) -> Vec<u8> {
    let drawn: Vec<Vec<(u32, u32, String)>> = pages
        .iter()
        .map(|p| {
            p.lines()
                .enumerate()
                .map(|(i, l)| (72, 720 - 16 * i as u32, l.to_owned()))
                .collect()
        })
        .collect();
    pdf_drawn(&drawn, "")
}

/// A page whose two columns are drawn row by row (left line i, then right line i): the
/// reading order must still be the whole left column, then the right one.
pub fn pdf_two_columns(left: &[&str], right: &[&str]) -> Vec<u8> {
    let mut lines = Vec::new();
    for i in 0..left.len().max(right.len()) {
        let y = 720 - 16 * i as u32;
        if let Some(l) = left.get(i) {
            lines.push((72, y, (*l).to_owned()));
        }
        if let Some(r) = right.get(i) {
            lines.push((320, y, (*r).to_owned()));
        }
    }
    pdf_drawn(&[lines], "")
}

fn pdf_drawn(pages: &[Vec<(u32, u32, String)>], page_extra: &str) -> Vec<u8> {
    let n = pages.len();
    let kids: Vec<String> = (0..n).map(|i| format!("{} 0 R", 4 + 2 * i)).collect();
    let mut objects = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        format!("<< /Type /Pages /Kids [{}] /Count {n} >>", kids.join(" ")).into_bytes(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
            .to_vec(),
    ];
    for (i, lines) in pages.iter().enumerate() {
        objects.push(
            format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R {page_extra} >>",
                5 + 2 * i
            )
            .into_bytes(),
        );
        objects.push(stream(&draw(lines)));
    }
    pdf_from_objects(&objects, "")
}

/// `n` pages sharing one content stream that prints `text`.
pub fn pdf_many_pages(n: usize, text: &str) -> Vec<u8> {
    let kids: Vec<String> = (0..n).map(|i| format!("{} 0 R", 5 + i)).collect();
    let mut objects = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        format!("<< /Type /Pages /Kids [{}] /Count {n} >>", kids.join(" ")).into_bytes(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_vec(),
        stream(&draw(&[(72, 720, text.to_owned())])),
    ];
    for _ in 0..n {
        objects.push(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents 4 0 R >>"
                .to_vec(),
        );
    }
    pdf_from_objects(&objects, "")
}

/// A page tree whose root lists itself among its kids (plus one real page).
pub fn pdf_page_tree_loop(text: &str) -> Vec<u8> {
    let objects = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [2 0 R 4 0 R] /Count 2 >>".to_vec(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents 5 0 R >>".to_vec(),
        stream(&draw(&[(72, 720, text.to_owned())])),
    ];
    pdf_from_objects(&objects, "")
}

/// A page whose dictionary holds an array nested `depth` deep.
pub fn pdf_deep_nesting(depth: usize, text: &str) -> Vec<u8> {
    let deep = format!("/Deep {}{}", "[".repeat(depth), "]".repeat(depth));
    pdf_drawn(&[vec![(72, 720, text.to_owned())]], &deep)
}

/// A PDF with a standard security handler whose user password is not empty: no reader can
/// open it without the password.
pub fn pdf_encrypted() -> Vec<u8> {
    let mut objects = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>".to_vec(),
        stream("BT ET"),
    ];
    let o = "A1".repeat(32);
    let u = "5B".repeat(32);
    objects
        .push(format!("<< /Filter /Standard /V 1 /R 2 /O <{o}> /U <{u}> /P -44 >>").into_bytes());
    let id = "0123456789ABCDEF0123456789ABCDEF";
    pdf_from_objects(&objects, &format!("/Encrypt 5 0 R /ID [<{id}> <{id}>]"))
}

/// A ZIP archive of `(name, bytes)` members, deflated. (Writing to memory cannot fail but for
/// a bug in the corpus, which panics the test.)
pub fn zip_of(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
    match try_zip_of(members) {
        Ok(bytes) => bytes,
        Err(e) => panic!("cannot write the zip corpus: {e}"),
    }
}

fn try_zip_of(members: &[(&str, Vec<u8>)]) -> zip::result::ZipResult<Vec<u8>> {
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(members.iter().any(|(_, b)| b.len() > u32::MAX as usize / 2));
    for (name, bytes) in members {
        w.start_file(*name, opts)?;
        w.write_all(bytes)?;
    }
    Ok(w.finish()?.into_inner())
}

const CT_DOCX: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>"#;
const RELS_DOCX: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>"#;

/// `word/document.xml` around a body (`<w:p>`, `<w:tbl>` ... elements).
pub fn docx_document_xml(body: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>{body}</w:body></w:document>"#
    )
}

/// A DOCX whose `word/document.xml` is exactly `document_xml`, plus `extra` members.
pub fn docx_raw(document_xml: &str, extra: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut members = vec![
        ("[Content_Types].xml", CT_DOCX.as_bytes().to_vec()),
        ("_rels/.rels", RELS_DOCX.as_bytes().to_vec()),
        ("word/document.xml", document_xml.as_bytes().to_vec()),
    ];
    members.extend(extra.iter().cloned());
    zip_of(&members)
}

pub fn docx(body: &str) -> Vec<u8> {
    docx_raw(&docx_document_xml(body), &[])
}

/// A paragraph, optionally in a style (`Heading1`, `Title`, ...).
pub fn w_p(style: Option<&str>, text: &str) -> String {
    let props = style
        .map(|s| format!(r#"<w:pPr><w:pStyle w:val="{s}"/></w:pPr>"#))
        .unwrap_or_default();
    format!("<w:p>{props}<w:r><w:t xml:space=\"preserve\">{text}</w:t></w:r></w:p>")
}

/// A table of rows of cell texts.
pub fn w_table(rows: &[&[&str]]) -> String {
    let rows: String = rows
        .iter()
        .map(|r| {
            let cells: String = r
                .iter()
                .map(|c| format!("<w:tc>{}</w:tc>", w_p(None, c)))
                .collect();
            format!("<w:tr>{cells}</w:tr>")
        })
        .collect();
    format!("<w:tbl>{rows}</w:tbl>")
}

/// A DOCX whose `document.xml` inflates to `bytes` of whitespace inside a paragraph.
pub fn docx_zip_bomb(bytes: usize) -> Vec<u8> {
    let mut xml = docx_document_xml(&w_p(None, "before the bomb")).into_bytes();
    let tail = xml.split_off(xml.len() - "</w:body></w:document>".len());
    xml.resize(xml.len() + bytes, b' ');
    xml.extend_from_slice(&tail);
    zip_of(&[
        ("[Content_Types].xml", CT_DOCX.as_bytes().to_vec()),
        ("_rels/.rels", RELS_DOCX.as_bytes().to_vec()),
        ("word/document.xml", xml),
    ])
}

/// Billion laughs: ten levels of ten-fold entity expansion.
pub fn billion_laughs_xml(root: &str) -> String {
    let mut dtd = String::from(r#"<!ENTITY lol0 "lol">"#);
    for i in 1..10 {
        let refs = format!("&lol{};", i - 1).repeat(10);
        dtd.push_str(&format!(r#"<!ENTITY lol{i} "{refs}">"#));
    }
    format!(
        r#"<?xml version="1.0"?><!DOCTYPE {root} [{dtd}]><{root} xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>&lol9;</w:t></w:r></w:p></w:body></{root}>"#
    )
}

/// An external entity pointing at a host file.
pub fn xxe_xml(root: &str, host_path: &str) -> String {
    format!(
        r#"<?xml version="1.0"?><!DOCTYPE {root} [<!ENTITY xxe SYSTEM "file://{host_path}">]><{root} xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>&xxe;</w:t></w:r></w:p></w:body></{root}>"#
    )
}

const CT_XLSX: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/></Types>"#;

/// Column letters of a 0-based index (0 = A, 16383 = XFD).
pub fn column_name(mut i: u32) -> String {
    let mut s = Vec::new();
    loop {
        s.push(b'A' + (i % 26) as u8);
        if i < 26 {
            break;
        }
        i = i / 26 - 1;
    }
    s.reverse();
    String::from_utf8(s).unwrap_or_default()
}

/// A sheet's XML from `(row, column, text)` cells (0-based), as inline strings.
pub fn xlsx_sheet_xml(cells: &[(u32, u32, &str)]) -> String {
    let mut rows: std::collections::BTreeMap<u32, Vec<(u32, &str)>> = Default::default();
    for (r, c, t) in cells {
        rows.entry(*r).or_default().push((*c, t));
    }
    let body: String = rows
        .iter()
        .map(|(r, cs)| {
            let cells: String = cs
                .iter()
                .map(|(c, t)| {
                    format!(
                        r#"<c r="{}{}" t="inlineStr"><is><t>{t}</t></is></c>"#,
                        column_name(*c),
                        r + 1
                    )
                })
                .collect();
            format!(r#"<row r="{}">{cells}</row>"#, r + 1)
        })
        .collect();
    format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>{body}</sheetData></worksheet>"#
    )
}

/// An XLSX of `(sheet name, sheet XML)`.
pub fn xlsx_raw(sheets: &[(&str, String)]) -> Vec<u8> {
    let entries: String = sheets
        .iter()
        .enumerate()
        .map(|(i, (n, _))| {
            format!(
                r#"<sheet name="{n}" sheetId="{}" r:id="rId{}"/>"#,
                i + 1,
                i + 1
            )
        })
        .collect();
    let workbook = format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets>{entries}</sheets></workbook>"#
    );
    let rels: String = (0..sheets.len())
        .map(|i| format!(r#"<Relationship Id="rId{}" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet{}.xml"/>"#, i + 1, i + 1))
        .collect();
    let rels = format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">{rels}</Relationships>"#
    );
    let root_rels = RELS_DOCX.replace("word/document.xml", "xl/workbook.xml");
    let names: Vec<String> = (0..sheets.len())
        .map(|i| format!("xl/worksheets/sheet{}.xml", i + 1))
        .collect();
    let mut members = vec![
        ("[Content_Types].xml", CT_XLSX.as_bytes().to_vec()),
        ("_rels/.rels", root_rels.into_bytes()),
        ("xl/workbook.xml", workbook.into_bytes()),
        ("xl/_rels/workbook.xml.rels", rels.into_bytes()),
    ];
    for (name, (_, xml)) in names.iter().zip(sheets) {
        members.push((name.as_str(), xml.as_bytes().to_vec()));
    }
    zip_of(&members)
}

/// An XLSX of sheets given as rows of cell texts.
pub fn xlsx(sheets: &[(&str, &[&[&str]])]) -> Vec<u8> {
    let sheets: Vec<(&str, String)> = sheets
        .iter()
        .map(|(name, rows)| {
            let cells: Vec<(u32, u32, &str)> = rows
                .iter()
                .enumerate()
                .flat_map(|(r, row)| {
                    row.iter()
                        .enumerate()
                        .map(move |(c, t)| (r as u32, c as u32, *t))
                })
                .collect();
            (*name, xlsx_sheet_xml(&cells))
        })
        .collect();
    xlsx_raw(&sheets)
}

/// A PPTX with one slide per entry (each a list of paragraphs).
pub fn pptx(slides: &[&[&str]]) -> Vec<u8> {
    let ct = CT_DOCX.replace(
        r#"<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>"#,
        r#"<Override PartName="/ppt/presentation.xml" ContentType="application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml"/>"#,
    );
    let mut members = vec![
        ("[Content_Types].xml".to_owned(), ct.into_bytes()),
        (
            "ppt/presentation.xml".to_owned(),
            br#"<?xml version="1.0"?><p:presentation xmlns:p="http://schemas.openxmlformats.org/presentationml/2006/main"/>"#.to_vec(),
        ),
    ];
    for (i, paras) in slides.iter().enumerate() {
        let body: String = paras
            .iter()
            .map(|p| format!("<a:p><a:r><a:t>{p}</a:t></a:r></a:p>"))
            .collect();
        members.push((
            format!("ppt/slides/slide{}.xml", i + 1),
            format!(r#"<?xml version="1.0"?><p:sld xmlns:p="http://schemas.openxmlformats.org/presentationml/2006/main" xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main"><p:cSld><p:spTree><p:sp><p:txBody>{body}</p:txBody></p:sp></p:spTree></p:cSld></p:sld>"#).into_bytes(),
        ));
    }
    let refs: Vec<(&str, Vec<u8>)> = members
        .iter()
        .map(|(n, b)| (n.as_str(), b.clone()))
        .collect();
    zip_of(&refs)
}
