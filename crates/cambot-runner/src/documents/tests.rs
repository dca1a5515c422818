//! The extractors on the generated corpus, in process (the sandboxed path and the host's
//! mapping are tested in cambot-agent's `documents` suite).

use cambot_protocol::documents::DocKind;
use cambot_protocol::documents::ExtractArgs;
use cambot_testkit::documents as corpus;

use super::DocError;
use super::Out;
use super::extract;

fn run(kind: DocKind, bytes: &[u8]) -> (Result<(), DocError>, Out) {
    run_capped(kind, bytes, 2 << 20, 500)
}

fn run_capped(kind: DocKind, bytes: &[u8], cap: u64, pages: u32) -> (Result<(), DocError>, Out) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("document");
    std::fs::write(&path, bytes).expect("write");
    let args = ExtractArgs {
        kind,
        max_pages: pages,
        max_output_bytes: cap,
        memory_bytes: 0,
        cpu_secs: 0,
        path: path.to_string_lossy().into_owned(),
    };
    let mut out = Out::new(cap as usize);
    let r = extract(&args, &mut out);
    (r, out)
}

#[test]
fn docx_headings_paragraphs_lists_and_tables() {
    let body = [
        corpus::w_p(Some("Heading1"), "Quarterly Report"),
        corpus::w_p(None, "Revenue grew &amp; costs fell."),
        corpus::w_table(&[&["Region", "Sales"], &["North", "12"], &["South|East", "7"]]),
        corpus::w_p(Some("Heading2"), "Outlook"),
    ]
    .concat();
    let (r, out) = run(DocKind::Office, &corpus::docx(&body));
    r.expect("docx");
    assert_eq!(out.format, Some(DocKind::Docx));
    assert_eq!(
        out.text,
        "# Quarterly Report\n\nRevenue grew & costs fell.\n\n| Region | Sales |\n| --- | --- |\n| North | 12 |\n| South\\|East | 7 |\n\n## Outlook\n\n"
    );
}

#[test]
fn xlsx_one_section_per_sheet_and_sparse_cells_stay_small() {
    let book = corpus::xlsx(&[
        ("Budget", &[&["Item", "Cost"], &["Rent", "1200"]]),
        ("Notes", &[&["hello"]]),
    ]);
    let (r, out) = run(DocKind::Xlsx, &book);
    r.expect("xlsx");
    assert!(
        out.text
            .starts_with("## Sheet: Budget\n\n| Item | Cost |\n| --- | --- |\n| Rent | 1200 |\n"),
        "{}",
        out.text
    );
    assert!(out.text.contains("## Sheet: Notes\n\n| hello |"));
    assert_eq!(out.parts, 2);
    // A1 and XFD1048576: the dense range would be 16384 x 1048576 cells.
    let sparse = corpus::xlsx_raw(&[(
        "Far",
        corpus::xlsx_sheet_xml(&[(0, 0, "first"), (1_048_575, 16_383, "last")]),
    )]);
    let (r, out) = run(DocKind::Xlsx, &sparse);
    r.expect("sparse xlsx");
    assert!(
        out.text.contains("| first |  |") && out.text.contains("|  | last |"),
        "{}",
        out.text
    );
}

#[test]
fn pptx_slides_in_order() {
    let (r, out) = run(
        DocKind::Pptx,
        &corpus::pptx(&[&["Intro", "Point A"], &["Second"]]),
    );
    r.expect("pptx");
    assert_eq!(
        out.text,
        "## Slide 1\n\nIntro\nPoint A\n\n## Slide 2\n\nSecond\n\n"
    );
}

#[test]
fn zip_bombs_entities_and_unsafe_names_are_refused() {
    let (r, _) = run(DocKind::Docx, &corpus::docx_zip_bomb(8 << 20));
    assert!(
        matches!(&r, Err(DocError::Limit(m)) if m.contains("zip bomb")),
        "{r:?}"
    );
    let laughs = corpus::docx_raw(&corpus::billion_laughs_xml("w:document"), &[]);
    let (r, _) = run(DocKind::Docx, &laughs);
    assert!(
        matches!(&r, Err(DocError::Malformed(m)) if m.contains("DOCTYPE")),
        "{r:?}"
    );
    for name in ["../evil.xml", "/etc/cron.d/x", "word/\u{1b}[2Jx.xml"] {
        let bytes = corpus::docx_raw(
            &corpus::docx_document_xml(&corpus::w_p(None, "hi")),
            &[(name, b"x".to_vec())],
        );
        let (r, _) = run(DocKind::Docx, &bytes);
        assert!(
            matches!(&r, Err(DocError::Malformed(m)) if m.contains("unsafe name")),
            "{name}: {r:?}"
        );
    }
    // 300 nested tables: the XML depth cap, not the stack.
    let deep = format!(
        "{}{}",
        "<w:tbl><w:tr><w:tc>".repeat(300),
        "</w:tc></w:tr></w:tbl>".repeat(300)
    );
    let (r, _) = run(DocKind::Docx, &corpus::docx(&deep));
    assert!(
        matches!(&r, Err(DocError::Limit(m)) if m.contains("nested deeper")),
        "{r:?}"
    );
}

#[test]
fn declared_kinds_are_checked_against_the_bytes() {
    let (r, _) = run(DocKind::Xlsx, &corpus::docx(&corpus::w_p(None, "x")));
    assert!(
        matches!(&r, Err(DocError::Unsupported(m)) if m.contains("declared as xlsx")),
        "{r:?}"
    );
    let (r, _) = run(DocKind::Pdf, b"PK\x03\x04 not a pdf");
    assert!(
        matches!(&r, Err(DocError::Unsupported(m)) if m.contains("ZIP")),
        "{r:?}"
    );
    let (r, _) = run(DocKind::Text, b"%PDF-1.4 hidden");
    assert!(matches!(r, Err(DocError::Unsupported(_))), "{r:?}");
    let (r, _) = run(
        DocKind::Office,
        &corpus::zip_of(&[("inner.zip", corpus::zip_of(&[("a.txt", b"a".to_vec())]))]),
    );
    assert!(
        matches!(&r, Err(DocError::Unsupported(m)) if m.contains("no Office document")),
        "{r:?}"
    );
}

#[test]
fn html_depth_is_capped_before_parsing_and_text_is_kept() {
    let (r, out) = run(
        DocKind::Html,
        b"<html><body><h1>Hi</h1><script>var leak=1;</script><p>Body text</p></body></html>",
    );
    r.expect("html");
    assert!(
        out.text.contains("# Hi") && out.text.contains("Body text"),
        "{}",
        out.text
    );
    assert!(!out.text.contains("leak"));
    let deep = format!("{}x{}", "<div>".repeat(100_000), "</div>".repeat(100_000));
    let (r, _) = run(DocKind::Html, deep.as_bytes());
    assert!(
        matches!(&r, Err(DocError::Limit(m)) if m.contains("nested deeper")),
        "{r:?}"
    );
}

#[test]
fn the_output_cap_cuts_on_a_char_boundary() {
    let text = "é".repeat(100);
    let (r, out) = run_capped(DocKind::Text, text.as_bytes(), 51, 10);
    assert!(matches!(r, Err(DocError::OutputFull)));
    assert_eq!(out.text.len(), 50);
    assert!(out.truncated.is_some());
}
